//! A track's fragments as the view holds them, and the media-time index
//! that numbers them (never a counter, so every node agrees).

use sluice_sdk::packaging::fragment_index;
use sluice_sdk::plugin::TrackInfo;

pub use sluice_sdk::packaging::fragments;

use crate::Error;

/// The media-time index of a fragment, `round(start_ms / fragment_ms)`:
/// its `mfhd` sequence number (low 32 bits).
pub fn sequence_number(start: u64, track: &TrackInfo, fragment_ms: u32) -> Result<u32, Error> {
    Ok(fragment_index(start, track.timescale, fragment_ms)? as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::plugin::TrackKind;

    #[test]
    fn sequence_numbers_come_from_media_time() {
        let v = TrackInfo::new(1, TrackKind::Video, 90_000);
        assert_eq!(sequence_number(0, &v, 2000).ok(), Some(0));
        assert_eq!(sequence_number(180_000, &v, 2000).ok(), Some(1));
        assert_eq!(sequence_number(90_000, &v, 0).ok(), Some(1000));
        let z = TrackInfo::new(1, TrackKind::Video, 0);
        assert!(sequence_number(1, &z, 2000).is_err());
    }
}
