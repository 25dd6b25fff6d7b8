//! `fragment_object`: the asset store's fragment object codec
//! (`host/src/storage/codec.rs`, compiled in here with `#[path]` so that
//! the fuzz crate does not depend on the host and wasmtime).
//!
//! The input is a stored object as read back from disk or a bucket:
//! [`codec::decode_fragment`] must return an error or a fragment, never
//! panic, and a fragment it returns must re-encode to exactly the input
//! (the format has one encoding per fragment) with its payload a slice of
//! the input. The input also builds a fragment (sample sizes from its
//! bytes), whose object must decode back to it, while the object cut short
//! or with one byte changed must not decode.

use bytes::Bytes;
use sluice_sdk::plugin::SampleEntry;

/// The host's `media::segmenter::Fragment`, field for field (the codec
/// builds it, so a field added on one side only does not compile).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    /// Decode time of the first sample (its name).
    pub start: u64,
    /// Duration in ticks.
    pub duration: u64,
    /// Sample table.
    pub samples: Vec<SampleEntry>,
    /// Payload: every sample's bytes in decode order.
    pub data: Bytes,
    /// A discontinuity precedes this fragment.
    pub discontinuity: bool,
}

#[path = "../../host/src/storage/codec.rs"]
pub mod codec;

/// A fragment made from `data`: up to 16 samples whose sizes are the
/// first bytes, the rest of the bytes (cycled) as payload.
pub fn synth(data: &[u8]) -> Fragment {
    let (n, rest) = data.split_first().map_or((0, data), |(&n, r)| (n & 15, r));
    let sizes: Vec<u32> = rest
        .iter()
        .take(usize::from(n))
        .map(|&b| u32::from(b))
        .collect();
    let total: u32 = sizes.iter().sum();
    let fill = rest.get(sizes.len()..).unwrap_or(&[]);
    let payload: Vec<u8> = (0..total as usize)
        .map(|i| fill.get(i % fill.len().max(1)).copied().unwrap_or(0))
        .collect();
    let start = rest
        .iter()
        .fold(0u64, |a, &b| a.rotate_left(5) ^ u64::from(b));
    Fragment {
        start,
        duration: u64::from(total) * 7,
        samples: sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| SampleEntry {
                duration: 1000 + i as u32,
                size,
                composition_offset: i32::from(size as u8 as i8) * 100,
                keyframe: size % 2 == 0,
            })
            .collect(),
        data: Bytes::from(payload),
        discontinuity: n % 3 == 0,
    }
}

/// One fuzz input.
pub fn fuzz(data: &[u8]) {
    let input = Bytes::copy_from_slice(data);
    if let Ok(f) = codec::decode_fragment(input.clone()) {
        assert_eq!(
            codec::encode_fragment(&f),
            input,
            "re-encoding changed the bytes"
        );
        assert!(
            codec::check_fragment(&f).is_none(),
            "decoded an unstorable fragment"
        );
        if !f.data.is_empty() {
            assert_eq!(
                f.data.as_ptr() as usize + f.data.len(),
                input.as_ptr() as usize + input.len(),
                "the payload is not a slice of the input"
            );
        }
    }
    let _ = codec::decode_header(data);

    let f = synth(data);
    assert!(codec::check_fragment(&f).is_none());
    let object = codec::encode_fragment(&f);
    let back = codec::decode_fragment(object.clone()).expect("an encoded fragment decodes");
    assert_eq!(back, f, "round trip changed the fragment");
    // Cut short, one byte longer, one byte changed: refused.
    let at = usize::from(data.first().copied().unwrap_or(0)) * 7 % object.len();
    assert!(
        codec::decode_fragment(object.slice(..at)).is_err(),
        "a prefix of {at} bytes decoded"
    );
    let mut longer = object.to_vec();
    longer.push(data.last().copied().unwrap_or(0));
    assert!(
        codec::decode_fragment(Bytes::from(longer)).is_err(),
        "a longer object decoded"
    );
    let mut changed = object.to_vec();
    changed[at] ^= data.get(1).copied().filter(|&b| b != 0).unwrap_or(0x80);
    assert!(
        codec::decode_fragment(Bytes::from(changed)).is_err(),
        "byte {at} changed decoded"
    );
}

/// The seeds: valid objects (empty, one sample, several with a
/// discontinuity) and a torn one.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let several = synth(&[4, 10, 0, 200, 33, 1, 2, 3, 4, 5]);
    let object = codec::encode_fragment(&several).to_vec();
    vec![
        ("gen-empty", codec::encode_fragment(&synth(&[])).to_vec()),
        (
            "gen-one-sample",
            codec::encode_fragment(&synth(&[1, 40, 9])).to_vec(),
        ),
        ("gen-several", object.clone()),
        ("gen-torn", object[..object.len() / 2].to_vec()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_decode_as_named() {
        for (name, bytes) in seeds() {
            let decoded = codec::decode_fragment(Bytes::from(bytes.clone()));
            assert_eq!(decoded.is_ok(), name != "gen-torn", "{name}: {decoded:?}");
            fuzz(&bytes);
        }
    }
}
