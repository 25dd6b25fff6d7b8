//! Smooth fragments: `moof` and `mdat` header written here, sample data
//! referenced for the host to splice.
//!
//! ```text
//! moof ─┬─ mfhd (sequence number from media time)
//!       └─ traf ─┬─ tfhd (track 1, no default-base-is-moof: Smooth clients
//!                │        predate it; the first traf's base is the moof anyway)
//!                ├─ trun (data offset, per-sample duration/size/flags/CTO)
//!                ├─ uuid tfxd (this fragment's start and duration)
//!                └─ uuid tfrf (live only: the next fragments the view holds)
//! mdat header | SampleData(track, start, 0..size)
//! ```
//!
//! No `sdtp`: neither dash.js's MSS module nor GStreamer's mssdemux needs
//! it, and the `trun` sample flags carry the sync/non-sync information.

use sluice_sdk::bmff::smooth::{TFRF, UUID};
use sluice_sdk::bmff::writer::{put_u64, put_version_flags};
use sluice_sdk::bmff::{
    self, BmffBox, Mfhd, Tfhd, Tfxd, Trun, TrunSample, mdat_header, sample_flags, write_box,
};
use sluice_sdk::packaging::{fragment_response, fragment_samples, half_fragment_s};
use sluice_sdk::plugin::{
    CachePolicy, Fragment, PresentationInfo, PresentationState, Response, TrackInfo, TrackKind,
    View,
};

use crate::manifest::LOOKAHEAD;
use crate::{Error, timeline};

/// The `track_ID` in every fragment: each quality level is a track of its
/// own to the client, which builds its init from the manifest.
pub const TRACK_ID: u32 = 1;

/// `TfrfBox` ([MS-SSTR] 2.2.4.8): times and durations of the fragments
/// that follow this one.
// SDK candidate: belongs in `sluice_sdk::bmff::smooth` beside `Tfxd`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tfrf {
    /// (absolute time, duration) of each following fragment, in order.
    pub entries: Vec<(u64, u64)>,
}

impl Tfrf {
    /// Appends the box (version 1: 64-bit fields) to `buf`.
    pub fn encode(&self, buf: &mut Vec<u8>) -> bmff::Result<()> {
        let count = u8::try_from(self.entries.len())
            .map_err(|_| bmff::Error::Overflow("tfrf fragment count"))?;
        write_box(buf, UUID, |buf| {
            buf.extend_from_slice(&TFRF);
            put_version_flags(buf, 1, 0);
            buf.push(count);
            for &(t, d) in &self.entries {
                put_u64(buf, t);
                put_u64(buf, d);
            }
            Ok(())
        })
    }

    /// Decodes a `uuid` box with the [`TFRF`] user type (version 0: 32-bit
    /// fields, version 1: 64-bit), checking that the entries fill it.
    pub fn from_box(b: &bmff::BoxRef<'_>) -> bmff::Result<Self> {
        if !bmff::smooth::is_uuid(b, &TFRF) {
            return Err(bmff::Error::Invalid(format!(
                "{} is not a tfrf box",
                b.fourcc()
            )));
        }
        let mut r = b.reader();
        let (v, _) = r.version_flags()?;
        if v > 1 {
            return Err(bmff::Error::Invalid(format!("tfrf version {v}")));
        }
        let count = r.u8()?;
        let mut entries = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            entries.push(if v == 1 {
                (r.u64()?, r.u64()?)
            } else {
                (u64::from(r.u32()?), u64::from(r.u32()?))
            });
        }
        r.finish()?;
        Ok(Tfrf { entries })
    }
}

/// The content type of a track's fragments.
fn content_type(track: &TrackInfo) -> &'static str {
    match track.kind {
        TrackKind::Audio => "audio/mp4",
        _ => "video/mp4",
    }
}

/// The `moof` and `mdat` header of one fragment (the payload follows).
pub fn header(
    sequence: u32,
    fragment: &Fragment,
    samples: &[sluice_sdk::plugin::SampleEntry],
    lookahead: Option<&[Fragment]>,
) -> Result<Vec<u8>, Error> {
    let payload: u64 = samples.iter().map(|s| u64::from(s.size)).sum();
    let mdat = mdat_header(payload)?;
    let with_cto = samples.iter().any(|s| s.composition_offset != 0);
    let mut trun = Trun {
        data_offset: Some(0),
        first_sample_flags: None,
        samples: samples
            .iter()
            .map(|s| TrunSample {
                duration: Some(s.duration),
                size: Some(s.size),
                flags: Some(sample_flags(s.keyframe)),
                composition_offset: with_cto.then_some(s.composition_offset),
            })
            .collect(),
    };
    let build = |trun: &Trun| -> Result<Vec<u8>, Error> {
        let mut buf = Vec::new();
        write_box(&mut buf, bmff::FourCC::new(b"moof"), |buf| {
            Mfhd {
                sequence_number: sequence,
            }
            .encode(buf)?;
            write_box(buf, bmff::FourCC::new(b"traf"), |buf| {
                Tfhd {
                    track_id: TRACK_ID,
                    ..Tfhd::default()
                }
                .encode(buf)?;
                trun.encode(buf)?;
                Tfxd {
                    fragment_absolute_time: fragment.start,
                    fragment_duration: fragment.duration,
                }
                .encode(buf)?;
                if let Some(next) = lookahead {
                    Tfrf {
                        entries: next.iter().map(|f| (f.start, f.duration)).collect(),
                    }
                    .encode(buf)?;
                }
                Ok(())
            })
        })?;
        Ok(buf)
    };
    // The moof's length does not depend on the offset's value: measure,
    // then write again with the real offset.
    let len = build(&trun)?.len();
    trun.data_offset =
        Some(i32::try_from(len + mdat.len()).map_err(|_| Error::Overflow("trun data offset"))?);
    let mut out = build(&trun)?;
    out.extend_from_slice(&mdat);
    Ok(out)
}

/// The fragment of `track` starting at `start`; [`Error::NotFound`] when
/// the view has no such fragment.
pub fn response(
    view: &dyn View,
    info: &PresentationInfo,
    track: &TrackInfo,
    start: u64,
) -> Result<Response, Error> {
    let not_found = || Error::NotFound(format!("no fragment {start} in track {}", track.id));
    let listed = view.fragments(track.id, start, 1 + LOOKAHEAD as u32);
    let fragment = *listed
        .first()
        .filter(|f| f.start == start)
        .ok_or_else(not_found)?;
    let (samples, length) = fragment_samples(view, track.id, start)?;
    let live = info.state == PresentationState::Live;
    // Live fragments always carry a tfrf (dash.js requires one), empty at
    // the live edge; only fragments after this one, in order, count.
    let next: Vec<Fragment> = listed
        .iter()
        .skip(1)
        .filter(|f| f.start > start)
        .take(LOOKAHEAD)
        .copied()
        .collect();
    let sequence = timeline::sequence_number(start, track, info.fragment_duration_ms)?;
    let head = header(
        sequence,
        &fragment,
        &samples,
        live.then_some(next.as_slice()),
    )?;
    // A live fragment's tfrf grows as later fragments arrive, but clients
    // learn them from the manifest too; the bytes of a given fragment are
    // fixed once the lookahead is full or the presentation ended.
    let cache = if live && next.len() < LOOKAHEAD {
        CachePolicy::MaxAge(half_fragment_s(info.fragment_duration_ms))
    } else {
        CachePolicy::Immutable
    };
    Ok(fragment_response(
        head,
        track.id,
        start,
        length,
        content_type(track),
        cache,
    ))
}
