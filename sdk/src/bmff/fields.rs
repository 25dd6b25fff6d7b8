//! Field helpers shared by the typed boxes: versioned time fields, the
//! unity matrix, version checks and single-occurrence children.

use super::writer::{put_u32, put_u64};
use super::{Error, FourCC, Reader, Result};

/// The unity transformation matrix of `mvhd` and `tkhd`.
pub(super) const UNITY_MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// Sets `slot` to `value`, or an error if it is already set.
pub(super) fn once<T>(slot: &mut Option<T>, value: T, fourcc: FourCC) -> Result<()> {
    if slot.is_some() {
        return Err(Error::DuplicateBox(fourcc));
    }
    *slot = Some(value);
    Ok(())
}

/// The version `mvhd`, `tkhd` and `mdhd` need for their time fields: 0
/// when every value fits 32 bits, else 1 (64-bit fields).
pub(super) fn version_for(times: &[u64]) -> u8 {
    if times.iter().all(|&t| u32::try_from(t).is_ok()) {
        0
    } else {
        1
    }
}

/// Writes a time field in the width the version calls for.
pub(super) fn put_time(buf: &mut Vec<u8>, version: u8, t: u64) {
    if version == 1 {
        put_u64(buf, t);
    } else {
        // `version_for` chose 0 only when every value fits 32 bits.
        put_u32(buf, t as u32);
    }
}

/// Reads a time field in the width the version calls for.
pub(super) fn get_time(r: &mut Reader<'_>, version: u8) -> Result<u64> {
    if version == 1 {
        r.u64()
    } else {
        r.u32().map(u64::from)
    }
}

/// Checks that a full box has a version this module reads.
pub(super) fn check_version(fourcc: FourCC, version: u8, max: u8) -> Result<()> {
    if version > max {
        return Err(Error::Unsupported(format!("{fourcc} version {version}")));
    }
    Ok(())
}
