//! F4F fragments: one `mdat` whose payload is a run of FLV tags, video and
//! the muxed audio interleaved by decode time. Tag headers are written
//! here; sample payloads are referenced for the host to splice.
//!
//! ```text
//! Seg1-Frag{N}  mdat ─┬─ [AVC sequence header tag (avcC)]   at the first timestamp
//!                     ├─ [AAC sequence header tag (ASC)]    (every fragment: yt-dlp
//!                     │                                      concatenates mdat payloads)
//!                     └─ per sample, by decode time:
//!                        Bytes(PreviousTagSize of the tag before | tag header 11
//!                              | video 5: frame/codec, AVCPacketType 1, CTS ms  or audio 2: 0xAF 0x01)
//!                        SampleData(track, start, offset, size)
//!                     ... Bytes(PreviousTagSize of the last tag)
//! ```
//!
//! Timestamps are media time in milliseconds (cut to the FLV's 32 bits:
//! they wrap after 49.7 days of media time). The F4V spec's `afra` and
//! `moof` boxes are optional for HDS clients (OSMF, yt-dlp) and left out.

use sluice_sdk::flv::{
    AacPacketType, AudioTagHeader, AvcPacketType, FrameType, TagHeader, TagType, VideoTagHeader,
    video_codec,
};
use sluice_sdk::plugin::{
    BodyPart, CachePolicy, DataRef, Fragment, PresentationState, Response, SampleEntry, TrackInfo,
    TrackKind, View,
};
use sluice_sdk::time::mul_div_round;

use crate::manifest::Media;
use crate::{Error, timeline};

/// Content type of fragments.
pub const CONTENT_TYPE: &str = "video/f4f";

/// Largest FLV tag body (24-bit size).
const MAX_TAG_BODY: usize = (1 << 24) - 1;

/// One tag to write: its timestamp, header bytes after the tag header, and
/// the payload (bytes here or a reference).
struct Tag {
    ms: u64,
    kind: TagType,
    head: Vec<u8>,
    payload: Payload,
}

enum Payload {
    Bytes(Vec<u8>),
    Data(DataRef),
}

impl Payload {
    fn len(&self) -> usize {
        match self {
            Payload::Bytes(b) => b.len(),
            Payload::Data(r) => r.length as usize,
        }
    }
}

/// Milliseconds of a decode time.
fn ms(ticks: u64, track: &TrackInfo) -> Result<u64, Error> {
    Ok(mul_div_round(
        ticks,
        1000,
        u64::from(track.timescale.max(1)),
    )?)
}

/// Tags for every sample of one fragment.
fn sample_tags(
    track: &TrackInfo,
    fragment: &Fragment,
    samples: &[SampleEntry],
    out: &mut Vec<Tag>,
) -> Result<(), Error> {
    let mut dts = fragment.start;
    let mut offset = 0u32;
    for s in samples {
        let dts_ms = ms(dts, track)?;
        let mut head = Vec::with_capacity(5);
        match track.kind {
            TrackKind::Video => {
                let pts = dts
                    .checked_add_signed(i64::from(s.composition_offset))
                    .ok_or(Error::Overflow("presentation time"))?;
                let cts = i64::try_from(ms(pts, track)?).unwrap_or(i64::MAX)
                    - i64::try_from(dts_ms).unwrap_or(i64::MAX);
                let cts = i32::try_from(cts)
                    .ok()
                    .filter(|c| (-(1 << 23)..(1 << 23)).contains(c))
                    .ok_or(Error::Overflow("composition time"))?;
                VideoTagHeader {
                    frame_type: if s.keyframe {
                        FrameType::Key
                    } else {
                        FrameType::Inter
                    },
                    codec_id: video_codec::AVC,
                    avc_packet_type: Some(AvcPacketType::Nalu),
                    composition_time: cts,
                }
                .write(&mut head);
            }
            _ => AudioTagHeader::aac(AacPacketType::Raw).write(&mut head),
        }
        out.push(Tag {
            ms: dts_ms,
            kind: match track.kind {
                TrackKind::Video => TagType::Video,
                _ => TagType::Audio,
            },
            head,
            payload: Payload::Data(DataRef {
                track: track.id,
                start: fragment.start,
                offset,
                length: s.size,
            }),
        });
        dts = dts
            .checked_add(u64::from(s.duration))
            .ok_or(Error::Overflow("decode time"))?;
        offset = offset
            .checked_add(s.size)
            .ok_or(Error::Overflow("fragment payload size"))?;
    }
    Ok(())
}

/// The sequence header tag of a track.
fn sequence_header(track: &TrackInfo, at_ms: u64) -> Tag {
    let mut head = Vec::with_capacity(5);
    let kind = match track.kind {
        TrackKind::Video => {
            VideoTagHeader {
                frame_type: FrameType::Key,
                codec_id: video_codec::AVC,
                avc_packet_type: Some(AvcPacketType::SequenceHeader),
                composition_time: 0,
            }
            .write(&mut head);
            TagType::Video
        }
        _ => {
            AudioTagHeader::aac(AacPacketType::SequenceHeader).write(&mut head);
            TagType::Audio
        }
    };
    Tag {
        ms: at_ms,
        kind,
        head,
        payload: Payload::Bytes(track.codec_private.clone()),
    }
}

/// Whether a track is one this packager can carry in FLV.
fn supported(track: &TrackInfo) -> bool {
    match track.kind {
        TrackKind::Video => track.fourcc == "avc1" || track.fourcc == "avc3",
        TrackKind::Audio => track.fourcc == "mp4a",
        _ => false,
    }
}

/// Fragment `number` of `media`; [`Error::NotFound`] when the view does
/// not hold it (yet).
pub fn fragment(view: &dyn View, media: &Media, number: u32) -> Result<Response, Error> {
    let grid = view.info().fragment_duration_ms;
    let primary = &media.primary;
    let not_found = || Error::NotFound(format!("no fragment {number} of t{}", primary.id));
    if !supported(primary) {
        return Err(Error::Payload("only H.264 and AAC can be carried in FLV"));
    }
    let f = timeline::find(view, primary, grid, number)?.ok_or_else(not_found)?;
    let samples = view.samples(primary.id, f.start).ok_or_else(not_found)?;
    let mut tags = Vec::with_capacity(samples.len() * 2 + 2);
    sample_tags(primary, &f, &samples, &mut tags)?;

    let mut audio_track = None;
    if let Some(a) = media.audio.as_ref().filter(|a| supported(a)) {
        match timeline::find(view, a, grid, number)? {
            Some(af) => {
                let s = view.samples(a.id, af.start).ok_or_else(not_found)?;
                sample_tags(a, &af, &s, &mut tags)?;
                audio_track = Some(a);
            }
            None => {
                // Not there yet (live): wait, so an immutable fragment
                // never lacks its audio. A gap in the audio timeline
                // (fragments after this number exist), or an ended
                // presentation whose audio stopped first, is served without.
                let live = view.info().state == PresentationState::Live;
                let last = timeline::fragments(view, a.id)
                    .last()
                    .map(|l| timeline::fragment_number(l.start, a, grid))
                    .transpose()?;
                if live && last.is_none_or(|l| l < number) {
                    return Err(not_found());
                }
            }
        }
    }
    // By decode time; at equal times video first (stable).
    tags.sort_by_key(|t| (t.ms, t.kind != TagType::Video));
    let first_ms = tags.first().map_or(0, |t| t.ms);
    let mut headers = Vec::new();
    if primary.kind == TrackKind::Video {
        headers.push(sequence_header(primary, first_ms));
    }
    if let Some(a) = audio_track.or((primary.kind == TrackKind::Audio).then_some(primary)) {
        headers.push(sequence_header(a, first_ms));
    }

    let all: Vec<Tag> = headers.into_iter().chain(tags).collect();
    let mut payload_len = 0u64;
    for t in &all {
        let body = t.head.len() + t.payload.len();
        if body > MAX_TAG_BODY {
            return Err(Error::Overflow("FLV tag body"));
        }
        payload_len += (TagHeader::SIZE + body + 4) as u64;
    }
    let mut body: Vec<BodyPart> = Vec::with_capacity(all.len() * 2 + 1);
    let mut bytes = Vec::new();
    if let Ok(size) = u32::try_from(payload_len + 8) {
        bytes.extend_from_slice(&size.to_be_bytes());
        bytes.extend_from_slice(b"mdat");
    } else {
        bytes.extend_from_slice(&1u32.to_be_bytes());
        bytes.extend_from_slice(b"mdat");
        bytes.extend_from_slice(&(payload_len + 16).to_be_bytes());
    }
    for t in all {
        let data_size = (t.head.len() + t.payload.len()) as u32;
        TagHeader {
            tag_type: t.kind,
            filtered: false,
            data_size,
            // FLV timestamps are 32 bits: wrap, as RTMP does.
            timestamp: t.ms as u32,
            stream_id: 0,
        }
        .write(&mut bytes);
        bytes.extend_from_slice(&t.head);
        match t.payload {
            Payload::Bytes(b) => bytes.extend_from_slice(&b),
            Payload::Data(r) => {
                if r.length > 0 {
                    body.push(BodyPart::Bytes(std::mem::take(&mut bytes)));
                    body.push(BodyPart::SampleData(r));
                }
            }
        }
        bytes.extend_from_slice(&(data_size + TagHeader::SIZE as u32).to_be_bytes());
    }
    body.push(BodyPart::Bytes(bytes));
    Ok(Response {
        status: 200,
        content_type: CONTENT_TYPE.into(),
        cache: CachePolicy::Immutable,
        headers: Vec::new(),
        body,
    })
}
