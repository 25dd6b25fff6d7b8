//! Init and media segments: headers written here, sample data referenced
//! for the host to splice. The two flavours differ only in their brands.
//!
//! ```text
//!              csf (isoff-live)                 cmaf (CMAF profile)
//! init.mp4     ftyp(iso6; iso6,dash,msdh)      ftyp(cmf2; iso6,cmfc,cmf2)   + moov(trak, mvex)
//! {start}.m4s  styp(msdh; msdh,dash)           styp(cmfs; cmfs,msdh)        + moof(mfhd, traf)
//!                                                                           + mdat header | SampleData
//! ```

use sluice_sdk::bmff::{self, FourCC, Styp};
use sluice_sdk::packaging::{fragment_response, fragment_samples};
use sluice_sdk::plugin::{CachePolicy, PresentationInfo, Response, TrackInfo, TrackKind, View};

use crate::paths::Flavour;
use crate::{Error, timeline};

/// The `track_ID` inside every segment: each Representation is a
/// single-track file, and the presentation's track id (may be 0, invalid
/// in ISO BMFF) lives in the URL only.
pub const FILE_TRACK_ID: u32 = 1;

/// The MIME type of a track's segments.
pub fn mime_type(track: &TrackInfo) -> &'static str {
    match track.kind {
        TrackKind::Audio => "audio/mp4",
        _ => "video/mp4",
    }
}

fn init_brands(flavour: Flavour) -> (FourCC, Vec<FourCC>) {
    match flavour {
        Flavour::Csf => (
            FourCC::new(b"iso6"),
            vec![
                FourCC::new(b"iso6"),
                FourCC::new(b"dash"),
                FourCC::new(b"msdh"),
            ],
        ),
        Flavour::Cmaf => (
            FourCC::new(b"cmf2"),
            vec![
                FourCC::new(b"iso6"),
                FourCC::new(b"cmfc"),
                FourCC::new(b"cmf2"),
            ],
        ),
    }
}

fn styp(flavour: Flavour) -> Styp {
    let (major, compatible) = match flavour {
        Flavour::Csf => (
            FourCC::new(b"msdh"),
            vec![FourCC::new(b"msdh"), FourCC::new(b"dash")],
        ),
        Flavour::Cmaf => (
            FourCC::new(b"cmfs"),
            vec![FourCC::new(b"cmfs"), FourCC::new(b"msdh")],
        ),
    };
    Styp {
        major_brand: major,
        minor_version: 0,
        compatible_brands: compatible,
    }
}

/// The init segment of one track.
pub fn init(flavour: Flavour, track: &TrackInfo) -> Result<Response, Error> {
    let file_track = TrackInfo {
        id: FILE_TRACK_ID,
        ..track.clone()
    };
    let (major, compatible) = init_brands(flavour);
    let body = bmff::init_segment(&[&file_track], major, &compatible)?;
    Ok(Response::ok(mime_type(track), CachePolicy::Immutable, body))
}

/// The media segment holding the fragment of `track` that starts at
/// `start`; [`Error::NotFound`] when the view has no such fragment (beyond
/// the live edge, or unknown).
pub fn media(
    flavour: Flavour,
    view: &dyn View,
    info: &PresentationInfo,
    track: &TrackInfo,
    start: u64,
) -> Result<Response, Error> {
    use sluice_sdk::bmff::BmffBox as _;
    let (samples, length) = fragment_samples(view, track.id, start)?;
    // mfhd has 32 bits; the low bits of the media-time index still rise by
    // one per fragment.
    let sequence = timeline::sequence_number(start, track, info.fragment_duration_ms)? as u32;

    let mut head = styp(flavour).to_bytes()?;
    head.extend(bmff::fragment_header(
        sequence,
        FILE_TRACK_ID,
        start,
        &samples,
    )?);
    Ok(fragment_response(
        head,
        track.id,
        start,
        length,
        mime_type(track),
        CachePolicy::Immutable,
    ))
}
