//! A track's fragments as the view holds them, and the media-time
//! arithmetic that numbers them. HDS fragment numbers derive from media
//! time, never from a counter, so every node agrees:
//!
//! ```text
//! start (ticks) ─▶ start_ms = floor(start * 1000 / timescale)
//!               ─▶ number   = round(start_ms / grid_ms) + 1      (HDS counts from 1)
//! ```

use sluice_sdk::packaging::{self, fragment_index};
use sluice_sdk::plugin::{Fragment, TrackInfo, View};
use sluice_sdk::time::mul_div_floor;

pub use sluice_sdk::packaging::fragments;

use crate::Error;

/// Ticks of `track` as milliseconds, rounded down.
pub fn ticks_to_ms(ticks: u64, track: &TrackInfo) -> Result<u64, Error> {
    Ok(packaging::ticks_to_ms(ticks, track.timescale.max(1))?)
}

/// The HDS fragment number of a fragment starting at `start` ticks:
/// `round(start_ms / grid) + 1`.
pub fn fragment_number(start: u64, track: &TrackInfo, grid_ms: u32) -> Result<u32, Error> {
    let index = fragment_index(start, track.timescale.max(1), grid_ms)?;
    index
        .checked_add(1)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or(Error::Overflow("fragment number"))
}

/// The fragment of `track` whose number is `number`, looking only near
/// where media time puts it (bounded work); `None` when the view has none.
pub fn find(
    view: &dyn View,
    track: &TrackInfo,
    grid_ms: u32,
    number: u32,
) -> Result<Option<Fragment>, Error> {
    let grid = u64::from(grid_ms.max(1));
    // A fragment numbered N starts within half a grid of (N - 1) * grid.
    let target_ms = u64::from(number.saturating_sub(1)) * grid;
    let from_ms = target_ms.saturating_sub(grid / 2 + 1);
    let from = mul_div_floor(from_ms, u64::from(track.timescale.max(1)), 1000)?;
    for f in view.fragments(track.id, from, 4) {
        if f.start < from {
            continue;
        }
        let n = fragment_number(f.start, track, grid_ms)?;
        if n == number {
            return Ok(Some(f));
        }
        if n > number {
            break;
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::plugin::{MemoryView, PresentationState, SampleEntry, TrackKind};

    fn track(timescale: u32) -> TrackInfo {
        TrackInfo::new(1, TrackKind::Video, timescale)
    }

    #[test]
    fn numbers_come_from_media_time() {
        let v = track(90_000);
        assert_eq!(fragment_number(0, &v, 2000).ok(), Some(1));
        assert_eq!(fragment_number(180_000, &v, 2000).ok(), Some(2));
        assert_eq!(fragment_number(90_000_000, &v, 2000).ok(), Some(501));
        let a = track(48_000);
        assert_eq!(fragment_number(95_232, &a, 2000).ok(), Some(2)); // 1984 ms
        assert_eq!(fragment_number(96_256, &a, 2000).ok(), Some(2)); // 2005 ms
        assert_eq!(fragment_number(90_000, &v, 0).ok(), Some(1001));
        assert!(fragment_number(u64::MAX, &track(1), 2000).is_err());
        // More than 2^32 fragments do not wrap.
        assert!(fragment_number(u64::from(u32::MAX) * 2, &track(1), 1000).is_err());
    }

    #[test]
    fn finds_by_number_with_jitter_and_gaps() {
        let mut view = MemoryView::new(PresentationState::Live, 2000, None);
        let a = TrackInfo::new(3, TrackKind::Audio, 48_000);
        view.add_track(a.clone());
        let s = SampleEntry {
            duration: 1024,
            size: 1,
            composition_offset: 0,
            keyframe: true,
        };
        // 1984 ms, 4011 ms, then a gap, 10005 ms.
        for start in [95_232u64, 192_528, 480_240] {
            view.push(3, start, vec![s; 94], vec![0; 94], false);
        }
        let start = |n| find(&view, &a, 2000, n).ok().flatten().map(|f| f.start);
        assert_eq!(start(2), Some(95_232));
        assert_eq!(start(3), Some(192_528));
        assert_eq!(start(4), None);
        assert_eq!(start(6), Some(480_240));
        assert_eq!(start(1), None);
        assert_eq!(start(7), None);
        assert_eq!(start(u32::MAX), None);
    }
}
