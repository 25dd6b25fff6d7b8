//! The checks behind Sluice's fuzz targets, and the seed inputs.
//!
//! Every streaming parser's target takes the fuzzer's bytes as
//! `[control][data]` (`fragment_object`, an object read whole, takes them
//! as is): the control bytes ([`split`]) choose where the data is cut, the
//! data is fed to the parser whole and in those pieces, and the two runs
//! must agree (events, errors, and everything else the parser exposes). Each run also checks
//! what the parser promises about its output (video samples framed with
//! 4-byte lengths, decode times that never go back, round trips).
//!
//! ```text
//!   fuzzer bytes ─▶ split ─▶ Input { data, cuts }
//!     ─▶ feed(data) whole ─────────┐
//!     ─▶ feed(piece) per piece ────┴▶ assert_eq!  + invariants on the events
//! ```
//!
//! [`seeds`] writes the committed seed corpora (`fuzz/seeds/<target>/`).

pub mod amf0;
pub mod events;
pub mod flv;
pub mod fmp4;
pub mod fragment;
pub mod rtmp;
pub mod seeds;
pub mod tier_frame;
pub mod ts_ingest;

/// The host's name rule (`host/src/names.rs`), for `tier_frame`.
#[path = "../../host/src/names.rs"]
pub mod names;

/// Fuzz input after its split control bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input<'a> {
    /// The bytes to parse.
    pub data: &'a [u8],
    /// Where to cut `data`, ascending; 0 and `data.len()` may appear
    /// (empty pieces are fed too).
    pub cuts: Vec<usize>,
}

/// Reads the split control bytes at the start of `input`.
///
/// The first byte `c` chooses: `c >= 0xf0` cuts every `(c & 0x0f) + 1`
/// bytes (`0xf0`: byte by byte); otherwise `c & 0x0f` cut points follow,
/// each two big-endian bytes taken modulo `data.len() + 1`. `None` when the
/// input is too short to hold its control bytes.
pub fn split(input: &[u8]) -> Option<Input<'_>> {
    let (&c, rest) = input.split_first()?;
    if c >= 0xf0 {
        let step = usize::from(c & 0x0f) + 1;
        let cuts = (step..rest.len()).step_by(step).collect();
        return Some(Input { data: rest, cuts });
    }
    let n = usize::from(c & 0x0f);
    let (points, data) = rest.split_at_checked(2 * n)?;
    let mut cuts: Vec<usize> = points
        .chunks_exact(2)
        .map(|p| usize::from(u16::from_be_bytes([p[0], p[1]])) % (data.len() + 1))
        .collect();
    cuts.sort_unstable();
    Some(Input { data, cuts })
}

/// The control byte that feeds the data whole (no cut).
pub const WHOLE: u8 = 0x00;

/// The control byte that cuts every `step` bytes (1 to 16).
pub fn every(step: u8) -> u8 {
    0xf0 | (step.clamp(1, 16) - 1)
}

/// Control bytes for explicit cut points (at most 15).
pub fn at(points: &[u16]) -> Vec<u8> {
    let points = &points[..points.len().min(15)];
    let mut c = vec![points.len() as u8];
    for p in points {
        c.extend_from_slice(&p.to_be_bytes());
    }
    c
}

/// The pieces of `data` ending at `cuts` (and the end).
pub fn pieces<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::with_capacity(cuts.len() + 1);
    let mut at = 0;
    for &end in cuts.iter().chain(std::iter::once(&data.len())) {
        let end = end.clamp(at, data.len());
        out.push(&data[at..end]);
        at = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_modes() {
        assert_eq!(split(&[]), None);
        assert_eq!(
            split(&[WHOLE, 1, 2, 3]),
            Some(Input {
                data: &[1, 2, 3],
                cuts: vec![]
            })
        );
        assert_eq!(
            split(&[every(1), 1, 2, 3]).map(|i| i.cuts),
            Some(vec![1, 2])
        );
        assert_eq!(
            split(&[every(2), 1, 2, 3, 4, 5]).map(|i| i.cuts),
            Some(vec![2, 4])
        );
        let mut v = at(&[7, 1]);
        v.extend_from_slice(&[9, 9, 9]);
        let i = split(&v).expect("long enough");
        assert_eq!(i.data, &[9, 9, 9]);
        assert_eq!(i.cuts, vec![1, 3]);
        assert_eq!(pieces(i.data, &i.cuts), vec![&[9][..], &[9, 9], &[]]);
        assert_eq!(split(&[2, 0, 1]), None);
    }
}
