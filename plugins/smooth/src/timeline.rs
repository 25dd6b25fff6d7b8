//! A track's fragments as the view holds them, and the media-time index
//! that numbers them (never a counter, so every node agrees).

use sluice_sdk::plugin::{Fragment, TrackInfo, View};
use sluice_sdk::time::{mul_div_floor, mul_div_round};

use crate::Error;

/// Fragments asked of the view per call.
const PAGE: u32 = 512;

/// Every fragment of `track` the view holds, oldest first (the host bounds
/// the window).
pub fn fragments(view: &dyn View, track: u32) -> Vec<Fragment> {
    let mut out: Vec<Fragment> = Vec::new();
    let mut from = 0u64;
    loop {
        let page = view.fragments(track, from, PAGE);
        let full = page.len() >= PAGE as usize;
        // Keep only what moves forward, so a misbehaving view cannot make
        // this loop forever or list a fragment twice.
        out.extend(page.into_iter().filter(|f| f.start >= from));
        let Some(next) = out.last().and_then(|f| f.start.checked_add(1)) else {
            break;
        };
        if !full || next <= from {
            break;
        }
        from = next;
    }
    out
}

/// The media-time index of a fragment, `round(start_ms / fragment_ms)`:
/// its `mfhd` sequence number (low 32 bits).
pub fn sequence_number(start: u64, track: &TrackInfo, fragment_ms: u32) -> Result<u32, Error> {
    let start_ms = mul_div_floor(start, 1000, u64::from(track.timescale))?;
    Ok(mul_div_round(start_ms, 1, u64::from(fragment_ms.max(1)))? as u32)
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
