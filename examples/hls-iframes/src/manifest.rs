//! Playlist models built from the presentation view.
//!
//! ```text
//!  View::fragments ─▶ per fragment: View::samples ─▶ segment::Layout ─▶ Chunk::iframe_range
//!                                                                        │
//!                          Listing (entries: segment, range, duration) ◀─┘
//!                            ├─▶ iframe_playlist (EXTINF, EXT-X-BYTERANGE)
//!                            └─▶ multivariant (BANDWIDTH from the same ranges)
//! ```
//!
//! Like the built-in HLS packager, everything derives from media time:
//! `EXT-X-MEDIA-SEQUENCE` is the first listed fragment's index on the
//! fragment grid (`round(start_ms / fragment_ms)`), the discontinuity
//! sequence is the host's count for that fragment, and segment names are
//! fragment starts, so every node lists the same entries.
//!
//! One entry per fragment: the keyframe that begins it (the host's grid
//! cuts video at keyframes), lasting to the fragment's end. So an entry's
//! number is its fragment's grid index, stable across reloads of a live
//! playlist as RFC 8216 asks. Listing every keyframe of a GOP shorter than
//! a fragment would need the count of keyframes before the window (which
//! the view does not offer) to number entries stably; the segments are
//! already laid out for it (a `moof` per keyframe).

use sluice_sdk::h264::AvcDecoderConfig;
use sluice_sdk::packaging::{
    Error, fragment_index, fragment_samples, fragments, ticks_to_ms_round,
};
use sluice_sdk::plugin::{PresentationState, TrackInfo, View};
use sluice_sdk::time::{mul_div_ceil, mul_div_round};

use crate::paths::{init_uri, playlist_uri, segment_uri};
use crate::playlist::{IFrameEntry, IFramePlaylist, IFrameStream, MultivariantPlaylist, VERSION};
use crate::segment::{ByteRange, HeaderLengths, Layout, servable};

/// The track with this id if this packager serves it (a video track the
/// SDK's box writer can describe); [`Error::NotFound`] otherwise.
pub fn find_track(view: &dyn View, id: u32) -> Result<TrackInfo, Error> {
    sluice_sdk::packaging::find_track(view, id, servable)
}

/// One I-frame of the listed window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Start of the fragment (segment) holding it.
    pub start: u64,
    /// Where it lies in that segment.
    pub range: ByteRange,
    /// Ticks until the next entry.
    pub duration: u64,
    /// A discontinuity precedes it.
    pub discontinuity: bool,
}

/// A track's I-frames over the fragments the view holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// The I-frames, oldest first.
    pub entries: Vec<Entry>,
    /// Index on the fragment grid of the first entry's fragment.
    pub media_sequence: u64,
    /// The host's discontinuity sequence number of that fragment.
    pub discontinuity_sequence: u32,
}

/// Lists `track`'s I-frames over every fragment the view holds (the host
/// bounds the window): each fragment's first keyframe, lasting until the
/// next fragment's; samples at the start of a fragment before its first
/// keyframe extend the previous entry, unless a discontinuity separates
/// them.
/// [`Error::NotFound`] while the track has no keyframe.
pub fn listing(view: &dyn View, track: &TrackInfo) -> Result<Listing, Error> {
    let fragment_ms = view.info().fragment_duration_ms;
    let mut entries: Vec<Entry> = Vec::new();
    let mut first = None;
    let mut lengths = HeaderLengths::default();
    for f in fragments(view, track.id) {
        let (samples, _) = fragment_samples(view, track.id, f.start)?;
        let layout = Layout::new(track, f.start, &samples, &mut lengths)?;
        // Nothing listed precedes the first entry to be discontinuous with.
        let mut discontinuity = f.discontinuity && !entries.is_empty();
        let mut listed = false;
        for chunk in &layout.chunks {
            match chunk.iframe_range() {
                // The fragment's first keyframe (where the fragment grid
                // cuts video): its entry.
                Some(range) if !listed => {
                    listed = true;
                    first.get_or_insert(f);
                    entries.push(Entry {
                        start: f.start,
                        range,
                        duration: chunk.duration,
                        discontinuity: std::mem::take(&mut discontinuity),
                    });
                }
                // Later keyframes of the fragment, and samples before its
                // first keyframe, extend the entry before them.
                _ if listed || !f.discontinuity => {
                    if let Some(last) = entries.last_mut() {
                        last.duration = last
                            .duration
                            .checked_add(chunk.duration)
                            .ok_or(Error::Overflow("I-frame duration"))?;
                    }
                }
                _ => {}
            }
        }
    }
    let first =
        first.ok_or_else(|| Error::NotFound(format!("no I-frames in track {} yet", track.id)))?;
    Ok(Listing {
        entries,
        media_sequence: fragment_index(first.start, track.timescale, fragment_ms)?,
        discontinuity_sequence: first.discontinuity_sequence,
    })
}

/// The I-frame playlist of video track `id`.
pub fn iframe_playlist(view: &dyn View, id: u32) -> Result<IFramePlaylist, Error> {
    let track = find_track(view, id)?;
    let info = view.info();
    let listing = listing(view, &track)?;
    let ts = u64::from(track.timescale);
    // RFC 8216: every EXTINF, rounded to the nearest second, is at most the
    // target duration. Never below the fragment grid: a live playlist
    // changes once a fragment, and clients reload it by this duration.
    let mut target_duration = u64::from(info.fragment_duration_ms).div_ceil(1000).max(1);
    let mut entries = Vec::with_capacity(listing.entries.len());
    for e in &listing.entries {
        target_duration = target_duration.max(mul_div_round(e.duration, 1, ts)?);
        entries.push(IFrameEntry {
            duration_ms: ticks_to_ms_round(e.duration, track.timescale)?,
            discontinuity: e.discontinuity,
            length: e.range.length,
            offset: e.range.offset,
            uri: segment_uri(e.start),
        });
    }
    let discontinuity_sequence =
        (listing.discontinuity_sequence > 0).then_some(u64::from(listing.discontinuity_sequence));
    Ok(IFramePlaylist {
        version: VERSION,
        target_duration,
        media_sequence: listing.media_sequence,
        discontinuity_sequence,
        map_uri: init_uri().into(),
        entries,
        end_list: info.state == PresentationState::Ended,
    })
}

/// The I-frame bit rates of a listing, bit/s: the peak over entries (an
/// entry's bytes over its duration, rounded up so no entry is understated)
/// and the average over the window.
pub fn bandwidth(listing: &Listing, track: &TrackInfo) -> Result<(u64, u64), Error> {
    let ts = u64::from(track.timescale);
    let (mut peak, mut bytes, mut ticks) = (0u64, 0u64, 0u64);
    for e in &listing.entries {
        let bits = e
            .range
            .length
            .checked_mul(8)
            .ok_or(Error::Overflow("bandwidth"))?;
        if e.duration > 0 {
            peak = peak.max(mul_div_ceil(bits, ts, e.duration)?);
        }
        bytes = bytes.saturating_add(e.range.length);
        ticks = ticks.saturating_add(e.duration);
    }
    let average = if ticks > 0 {
        mul_div_round(bytes.saturating_mul(8), ts, ticks)?
    } else {
        peak
    };
    Ok((peak, average))
}

/// The RFC 6381 codec string: the track's own, or derived from its `avcC`.
fn codecs(track: &TrackInfo) -> Option<String> {
    if !track.codec.is_empty() {
        return Some(track.codec.clone());
    }
    AvcDecoderConfig::parse(&track.codec_private)
        .ok()
        .map(|c| c.codec_string())
}

/// The multivariant playlist: one I-frame stream per video track with at
/// least one keyframe; audio, subtitle and data tracks are not listed.
/// [`Error::NotFound`] while no video track has a keyframe.
pub fn multivariant(view: &dyn View) -> Result<MultivariantPlaylist, Error> {
    let mut streams = Vec::new();
    for track in view.tracks().into_iter().filter(servable) {
        let listing = match listing(view, &track) {
            Ok(l) => l,
            Err(Error::NotFound(_)) => continue,
            Err(e) => return Err(e),
        };
        let (bandwidth, average_bandwidth) = bandwidth(&listing, &track)?;
        streams.push(IFrameStream {
            bandwidth,
            average_bandwidth,
            codecs: codecs(&track),
            resolution: (track.width > 0 && track.height > 0)
                .then_some((track.width, track.height)),
            uri: playlist_uri(track.id),
        });
    }
    if streams.is_empty() {
        return Err(Error::NotFound("no video track with I-frames yet".into()));
    }
    Ok(MultivariantPlaylist {
        version: VERSION,
        streams,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::plugin::{MemoryView, SampleEntry, TrackKind};
    use sluice_sdk::testing::{AVCC, payload};

    const FRAME: u32 = 3600;

    /// A fragment's samples from a pattern: `K` a keyframe, `p` any other.
    fn samples(pattern: &str) -> Vec<SampleEntry> {
        pattern
            .chars()
            .map(|c| SampleEntry {
                duration: FRAME,
                size: if c == 'K' { 1000 } else { 100 },
                composition_offset: 0,
                keyframe: c == 'K',
            })
            .collect()
    }

    fn video(id: u32) -> TrackInfo {
        TrackInfo {
            fourcc: "avc1".into(),
            codec_private: AVCC.to_vec(),
            width: 320,
            height: 240,
            ..TrackInfo::new(id, TrackKind::Video, 90_000)
        }
    }

    /// Track 1 with fragments of 10 frames (400 ms at 90 kHz) on a 400 ms
    /// grid, one per pattern, the flagged ones after a discontinuity.
    fn view(patterns: &[(&str, bool)]) -> MemoryView {
        let mut view = MemoryView::new(PresentationState::Live, 400, None);
        view.add_track(video(1));
        for (k, (pattern, discontinuity)) in patterns.iter().enumerate() {
            let s = samples(pattern);
            let size = s.iter().map(|s| s.size).sum();
            view.push(
                1,
                k as u64 * 36_000,
                s,
                payload(k as u64, size),
                *discontinuity,
            );
        }
        view
    }

    fn durations(l: &Listing) -> Vec<(u64, u64, bool)> {
        l.entries
            .iter()
            .map(|e| (e.start, e.duration / u64::from(FRAME), e.discontinuity))
            .collect()
    }

    #[test]
    fn one_entry_per_fragment_at_its_first_keyframe() {
        let v = view(&[
            // A second keyframe extends the fragment's entry.
            ("KppppKpppp", false),
            // Starts mid-GOP: its first 3 frames extend the entry before.
            ("pppKpppppp", false),
            // After a discontinuity the leading frames extend nothing.
            ("ppKppppppp", true),
            // No keyframe at all: the whole fragment extends the entry.
            ("pppppppppp", false),
            ("Kppppppppp", false),
        ]);
        let l = listing(&v, &video(1)).unwrap();
        assert_eq!(
            durations(&l),
            [
                (0, 13, false),
                (36_000, 7, false),
                (72_000, 18, true),
                (144_000, 10, false),
            ]
        );
        assert_eq!((l.media_sequence, l.discontinuity_sequence), (0, 0));

        let p = iframe_playlist(&v, 1).unwrap();
        // 18 frames of 40 ms: 0.72 s, within the grid's 1 s target.
        assert_eq!(p.target_duration, 1);
        assert_eq!(p.entries[2].duration_ms, 720);
        assert!(!p.end_list);
        let text = p.serialize();
        assert_eq!(text.matches("#EXT-X-DISCONTINUITY\n").count(), 1);
        assert!(!text.contains("#EXT-X-DISCONTINUITY-SEQUENCE"), "{text}");
    }

    #[test]
    fn sequences_follow_the_first_listed_fragment() {
        let mut v = view(&[
            ("Kppppppppp", false),
            ("Kppppppppp", true),
            ("Kppppppppp", false),
        ]);
        v.trim_before_ms(400);
        let p = iframe_playlist(&v, 1).unwrap();
        assert_eq!(p.media_sequence, 1);
        // The discontinuity before the first listed entry is not written,
        // but counted.
        assert_eq!(p.discontinuity_sequence, Some(1));
        assert!(p.entries.iter().all(|e| !e.discontinuity));
        assert_eq!(p.entries[0].uri, "36000.m4s");

        // A window whose first fragments have no keyframe starts at the
        // first that has one.
        let v = view(&[("pppppppppp", false), ("ppKppppppp", false)]);
        let l = listing(&v, &video(1)).unwrap();
        assert_eq!(durations(&l), [(36_000, 8, false)]);
        assert_eq!(l.media_sequence, 1);
    }

    #[test]
    fn nothing_to_list_is_not_found() {
        let v = view(&[("pppppppppp", false)]);
        assert!(matches!(iframe_playlist(&v, 1), Err(Error::NotFound(_))));
        assert!(matches!(multivariant(&v), Err(Error::NotFound(_))));
        assert!(matches!(iframe_playlist(&v, 2), Err(Error::NotFound(_))));
    }

    #[test]
    fn bandwidth_is_the_peak_and_the_average_of_the_ranges() {
        let v = view(&[("KppppKpppp", false), ("Kppppppppp", false)]);
        let l = listing(&v, &video(1)).unwrap();
        let (peak, average) = bandwidth(&l, &video(1)).unwrap();
        let bits: Vec<u64> = l.entries.iter().map(|e| e.range.length * 8).collect();
        // Two entries of 0.4 s each (one per fragment).
        assert_eq!(peak, bits[0].max(bits[1]).div_ceil(4) * 10);
        assert_eq!(average, (bits.iter().sum::<u64>() * 10).div_ceil(8));
        let m = multivariant(&v).unwrap();
        assert_eq!(m.streams[0].bandwidth, peak);
        assert_eq!(m.streams[0].codecs.as_deref(), Some("avc1.64000d"));
    }
}
