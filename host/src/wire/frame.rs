//! The frames of `sluice-tier/1` (the protocol: `crate::quic::tier`): a 4-byte
//! big-endian length and that many bytes of JSON, at most [`MAX_FRAME`].
//!
//! Pure and bounded (no I/O, no allocation beyond the declared length of a
//! frame that passed the bound), so the fuzz crate compiles this file as
//! is (`fuzz/src/tier_frame.rs`): frames read whole or in any pieces must
//! give the same frames, and every value they decode to must survive a
//! round trip.

use std::collections::BTreeMap;

use bytes::{BufMut as _, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

/// Largest JSON frame (requests, answer heads, push heads).
pub const MAX_FRAME: usize = 16 * 1024;

/// A request frame.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Path and query below `/_tier/` to answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub get: Option<String>,
    /// Channel to push new fragments of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<String>,
    /// The tier token (`--tier-token`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// The head of an answer (a body follows a `get`'s).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// HTTP status code.
    pub status: u16,
    /// The response headers an edge or cache needs (lowercase names).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A subscription: per track, the start of the newest fragment when it
    /// began; only later fragments are pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<BTreeMap<u32, u64>>,
}

/// The head of a pushed fragment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushHead {
    /// Channel.
    pub channel: String,
    /// Track id.
    pub track: u32,
    /// Start, track ticks.
    pub start: u64,
    /// Content checksum, 16 hex digits (its upstream name).
    pub sum: String,
    /// Object bytes that follow.
    pub len: u64,
}

impl PushHead {
    /// The checksum it names, once the head is one an edge may accept: a
    /// valid channel name, 16 hex digits, an object of at most `max_len`
    /// bytes.
    pub fn checked(&self, max_len: u64) -> Result<u64, FrameError> {
        if !crate::names::valid_name(&self.channel) {
            return Err(FrameError::Invalid("bad channel name"));
        }
        if self.len > max_len {
            return Err(FrameError::Invalid("object too large"));
        }
        if self.sum.len() != 16 || !self.sum.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(FrameError::Invalid("checksum is not 16 hex digits"));
        }
        u64::from_str_radix(&self.sum, 16).map_err(|_| FrameError::Invalid("bad checksum"))
    }
}

/// Why a frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Its declared length exceeds the limit.
    #[error("frame of {0} bytes, more than allowed")]
    TooLarge(usize),
    /// The stream ended or failed inside the frame.
    #[error("stream ended inside a frame: {0}")]
    Read(String),
    /// Not the JSON of the value expected.
    #[error("bad frame: {0}")]
    Json(String),
    /// A value the protocol does not allow.
    #[error("bad frame: {0}")]
    Invalid(&'static str),
}

/// One frame: the length prefix and `value` as JSON.
pub fn encode_frame(value: &impl Serialize) -> Bytes {
    let json = serde_json::to_vec(value).unwrap_or_default();
    let mut b = BytesMut::with_capacity(4 + json.len());
    b.put_u32(u32::try_from(json.len()).unwrap_or(u32::MAX));
    b.put_slice(&json);
    b.freeze()
}

/// The payload length a frame prefix declares, checked against `max`.
pub fn frame_len(prefix: [u8; 4], max: usize) -> Result<usize, FrameError> {
    let len = usize::try_from(u32::from_be_bytes(prefix)).unwrap_or(usize::MAX);
    if len > max {
        return Err(FrameError::TooLarge(len));
    }
    Ok(len)
}

/// Decodes a frame's JSON as `T`.
pub fn decode<T: serde::de::DeserializeOwned>(frame: &[u8]) -> Result<T, FrameError> {
    serde_json::from_slice(frame).map_err(|e| FrameError::Json(e.to_string()))
}

/// Reads one frame from pieces of a stream, never past its end: feed it
/// at most [`FrameReader::needed`] bytes at a time.
#[derive(Debug, Clone)]
pub struct FrameReader {
    max: usize,
    prefix: [u8; 4],
    got: usize,
    buf: Option<Vec<u8>>,
}

impl FrameReader {
    /// A reader of one frame of at most `max` bytes.
    pub fn new(max: usize) -> FrameReader {
        FrameReader {
            max,
            prefix: [0; 4],
            got: 0,
            buf: None,
        }
    }

    /// Bytes still needed to complete the frame (0: complete).
    pub fn needed(&self) -> usize {
        match &self.buf {
            None => 4 - self.got,
            Some(b) => b.capacity() - b.len(),
        }
    }

    /// Whether no byte was fed yet.
    pub fn is_empty(&self) -> bool {
        self.got == 0
    }

    /// Takes up to [`FrameReader::needed`] bytes of `data`; returns how
    /// many it took. The payload is allocated once the prefix passed the
    /// bound, at exactly the declared length.
    pub fn feed(&mut self, data: &[u8]) -> Result<usize, FrameError> {
        let mut taken = 0;
        if self.buf.is_none() {
            let n = (4 - self.got).min(data.len());
            self.prefix[self.got..self.got + n].copy_from_slice(&data[..n]);
            self.got += n;
            taken = n;
            if self.got < 4 {
                return Ok(taken);
            }
            self.buf = Some(Vec::with_capacity(frame_len(self.prefix, self.max)?));
        }
        if let Some(buf) = self.buf.as_mut() {
            let n = (buf.capacity() - buf.len()).min(data.len() - taken);
            buf.extend_from_slice(&data[taken..taken + n]);
            taken += n;
        }
        Ok(taken)
    }

    /// The frame's JSON, once complete.
    pub fn frame(self) -> Option<Vec<u8>> {
        self.buf.filter(|b| b.len() == b.capacity())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_bounded_and_round_trip() {
        let req = Request {
            get: Some("/_tier/v1/health".into()),
            token: Some("t".into()),
            ..Request::default()
        };
        let f = encode_frame(&req);
        let prefix: [u8; 4] = f[..4].try_into().expect("four bytes");
        assert_eq!(frame_len(prefix, MAX_FRAME).ok(), Some(f.len() - 4));
        let back: Request = decode(&f[4..]).expect("valid JSON");
        assert_eq!(back, req);
        assert!(frame_len([0xff, 0xff, 0xff, 0xff], MAX_FRAME).is_err());
        assert!(
            frame_len(
                u32::try_from(MAX_FRAME + 1).unwrap_or(0).to_be_bytes(),
                MAX_FRAME
            )
            .is_err()
        );
        // Unknown fields are refused, not ignored.
        assert!(decode::<Request>(br#"{"get":"/x","put":1}"#).is_err());
        assert!(decode::<PushHead>(br#"{"channel":"a"}"#).is_err());
    }

    #[test]
    fn a_reader_takes_one_frame_in_any_pieces_and_no_more() {
        let f = encode_frame(&Head {
            status: 200,
            ..Head::default()
        });
        let mut stream = f.to_vec();
        stream.extend_from_slice(b"body");
        let mut r = FrameReader::new(MAX_FRAME);
        assert!(r.is_empty());
        let mut at = 0;
        while r.needed() > 0 {
            let end = (at + 3).min(stream.len()).min(at + r.needed());
            at += r.feed(&stream[at..end]).expect("within bounds");
        }
        assert_eq!(&stream[at..], b"body");
        let head: Head = decode(&r.frame().expect("complete")).expect("a head");
        assert_eq!(head.status, 200);
        // A declared length over the bound fails before any allocation.
        let mut r = FrameReader::new(8);
        assert_eq!(r.feed(&[0, 0, 0, 9]), Err(FrameError::TooLarge(9)));
        // A frame cut short is no frame.
        let mut r = FrameReader::new(MAX_FRAME);
        r.feed(&f[..6]).expect("within bounds");
        assert!(r.frame().is_none());
    }

    #[test]
    fn push_heads_are_checked() {
        let head = PushHead {
            channel: "ch1".into(),
            track: 1,
            start: 0,
            sum: "00000000000000ff".into(),
            len: 10,
        };
        assert_eq!(head.checked(10), Ok(0xff));
        assert!(head.checked(9).is_err());
        for (channel, sum) in [
            ("../x", "00000000000000ff"),
            ("ch1", "+0000000000000ff"),
            ("ch1", "ff"),
        ] {
            let bad = PushHead {
                channel: channel.into(),
                sum: sum.into(),
                ..head.clone()
            };
            assert!(bad.checked(10).is_err(), "{channel} {sum}");
        }
    }
}
