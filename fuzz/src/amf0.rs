//! `amf0`: `decode_all`, `decode` value by value, and encode/decode round
//! trips.
//!
//! AMF0 is decoded a whole message at a time (an RTMP command, a script
//! tag), so the cuts here make a sequence of messages: each piece is
//! decoded on its own, re-encoded, and the concatenated encodings must
//! decode to the concatenated values. The whole input must decode the same
//! way with `decode_all` as with `decode` called value after value, and
//! whatever decodes must survive encode → decode unchanged.

use sluice_sdk::amf0::{self, Value};

use crate::{Input, pieces, split};

/// Inputs shorter than this cannot hold a string whose lossy UTF-8
/// decoding outgrows a short string (65535 bytes; an invalid byte becomes
/// three), so their values round-trip exactly, variant for variant.
const EXACT_ROUND_TRIP_LEN: usize = 65535 / 3;

/// Values compared structurally: `Debug` shows NaN as NaN on both sides,
/// where `PartialEq` says NaN differs from itself.
fn shape(values: &[Value]) -> String {
    format!("{values:?}")
}

/// `values` encoded, decoded again: the same values, and the same bytes
/// when encoded once more.
fn round_trip(values: &[Value], exact: bool) {
    let bytes = amf0::encode_all(values);
    let back = amf0::decode_all(&bytes)
        .unwrap_or_else(|e| panic!("re-encoded values do not decode: {e}; {values:?}"));
    assert_eq!(back.len(), values.len(), "value count changed");
    assert_eq!(amf0::encode_all(&back), bytes, "encoding is not stable");
    if exact {
        assert_eq!(shape(&back), shape(values), "round trip changed values");
    }
}

/// `decode` value after value, as `decode_all` promises to.
fn one_by_one(data: &[u8]) -> Result<Vec<Value>, amf0::Amf0Error> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let (v, used) = amf0::decode(&data[pos..])?;
        assert!(used > 0 && used <= data.len() - pos, "decode used {used}");
        out.push(v);
        pos += used;
    }
    Ok(out)
}

/// The `amf0` target.
pub fn fuzz(input: &[u8]) {
    let Some(Input { data, cuts }) = split(input) else {
        return;
    };
    let exact = data.len() < EXACT_ROUND_TRIP_LEN;
    let whole = amf0::decode_all(data);
    let stepwise = one_by_one(data);
    match (&whole, &stepwise) {
        (Ok(a), Ok(b)) => assert_eq!(shape(a), shape(b), "decode_all and decode differ"),
        (Err(a), Err(b)) => assert_eq!(a, b, "decode_all and decode fail differently"),
        _ => panic!("decode_all {whole:?} but decode value by value {stepwise:?}"),
    }
    if let Ok(values) = &whole {
        round_trip(values, exact);
    }
    // Each piece a message of its own.
    let mut all = Vec::new();
    let mut encoded = Vec::new();
    for piece in pieces(data, &cuts) {
        let Ok(values) = amf0::decode_all(piece) else {
            continue;
        };
        round_trip(&values, exact);
        encoded.extend(amf0::encode_all(&values));
        all.extend(values);
    }
    let joined = amf0::decode_all(&encoded)
        .unwrap_or_else(|e| panic!("concatenated encodings do not decode: {e}"));
    assert_eq!(
        amf0::encode_all(&joined),
        encoded,
        "concatenated encodings decode differently"
    );
    if exact {
        assert_eq!(
            shape(&joined),
            shape(&all),
            "concatenated encodings decode differently"
        );
    }
}
