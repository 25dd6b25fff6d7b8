//! Init and media segments: CMAF headers written here, sample data
//! referenced for the host to splice.
//!
//! ```text
//! init.mp4     ftyp(iso6; iso6,cmfc) moov(trak, mvex)
//! {start}.m4s  styp(cmfs; cmfs,msdh) moof(mfhd, traf) mdat-header | SampleData(track, start, 0..size)
//! ```

use sluice_sdk::bmff::{self, BmffBox, FourCC, Styp};
use sluice_sdk::packaging::{fragment_response, fragment_samples};
use sluice_sdk::plugin::{CachePolicy, PresentationInfo, Response, TrackInfo, TrackKind};

use crate::{Error, timeline};

/// The `track_ID` inside every init and media segment. Each HLS rendition
/// is a single-track CMAF track file, so the presentation's track id (which
/// may be 0, invalid in ISO BMFF) stays out of the file; it lives in the URL.
const CMAF_TRACK_ID: u32 = 1;

/// The content type of a track's segments.
pub fn content_type(track: &TrackInfo) -> &'static str {
    match track.kind {
        TrackKind::Audio => "audio/mp4",
        _ => "video/mp4",
    }
}

/// The track as written into segments.
fn cmaf_track(track: &TrackInfo) -> TrackInfo {
    TrackInfo {
        id: CMAF_TRACK_ID,
        ..track.clone()
    }
}

/// The init segment of one track.
pub fn init(track: &TrackInfo) -> Result<Response, Error> {
    let body = bmff::init_segment(
        &[&cmaf_track(track)],
        FourCC::new(b"iso6"),
        &[FourCC::new(b"iso6"), FourCC::new(b"cmfc")],
    )?;
    Ok(Response::ok(
        content_type(track),
        CachePolicy::Immutable,
        body,
    ))
}

/// The media segment holding the fragment of `track` that starts at
/// `start`; [`Error::NotFound`] when the view has no such fragment.
pub fn media(
    view: &dyn sluice_sdk::plugin::View,
    info: &PresentationInfo,
    track: &TrackInfo,
    start: u64,
) -> Result<Response, Error> {
    let (samples, length) = fragment_samples(view, track.id, start)?;
    // mfhd wants 32 bits; the low bits of the media-time index still rise
    // by one per fragment.
    let sequence = timeline::sequence_number(start, track, info.fragment_duration_ms)? as u32;

    let mut head = Styp {
        major_brand: FourCC::new(b"cmfs"),
        minor_version: 0,
        compatible_brands: vec![FourCC::new(b"cmfs"), FourCC::new(b"msdh")],
    }
    .to_bytes()?;
    head.extend(bmff::fragment_header(
        sequence,
        CMAF_TRACK_ID,
        start,
        &samples,
    )?);

    Ok(fragment_response(
        head,
        track.id,
        start,
        length,
        content_type(track),
        CachePolicy::Immutable,
    ))
}
