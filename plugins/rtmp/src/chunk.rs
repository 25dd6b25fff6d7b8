//! The chunk stream (RTMP specification section 5.3): messages are cut into
//! chunks of at most the chunk size, each with a basic header (chunk stream
//! id and header format), a message header of type 0–3 and an optional
//! extended timestamp; chunks of different chunk streams interleave.
//!
//! ```text
//!   bytes ─▶ ChunkDecoder::decode ─▶ Message      Message ─▶ ChunkEncoder::write ─▶ bytes
//! ```

mod decode;
mod encode;

pub use decode::ChunkDecoder;
pub use encode::ChunkEncoder;

/// The chunk size both sides start with.
pub const DEFAULT_CHUNK_SIZE: u32 = 128;

/// Largest chunk size that has any effect (message lengths are 24 bits).
pub const MAX_EFFECTIVE_CHUNK_SIZE: u32 = 0x00ff_ffff;

/// Timestamp field value that announces an extended timestamp.
const EXTENDED_TIMESTAMP: u32 = 0x00ff_ffff;

/// Lowest and highest chunk stream ids (0 and 1 select the longer basic
/// header forms).
pub const MIN_CHUNK_STREAM_ID: u32 = 2;
/// Highest chunk stream id (3-byte basic header).
pub const MAX_CHUNK_STREAM_ID: u32 = 65599;

/// One RTMP message, as reassembled from chunks or to be cut into them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The chunk stream it travelled on.
    pub csid: u32,
    /// Timestamp in milliseconds (32 bits, wraps).
    pub timestamp: u32,
    /// Message type id (see [`crate::message::type_id`]).
    pub type_id: u8,
    /// Message stream id.
    pub stream_id: u32,
    /// The payload.
    pub payload: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::encode::write_basic_header;
    use crate::message::ProtocolControl;
    use sluice_sdk::plugin::SessionError;

    /// Decodes `input` fed in pieces ending at `splits`, applying Set Chunk
    /// Size and Abort as the session does.
    fn decode(input: &[u8], splits: &[usize], max: u32) -> Result<Vec<Message>, SessionError> {
        let mut d = ChunkDecoder::new(max);
        let mut out = Vec::new();
        let mut at = 0;
        for &end in splits.iter().chain(std::iter::once(&input.len())) {
            let mut piece = &input[at..end];
            at = end;
            while !piece.is_empty() {
                let (n, m) = d.decode(piece)?;
                piece = &piece[n..];
                if let Some(m) = m {
                    match ProtocolControl::parse(m.type_id, &m.payload)? {
                        Some(ProtocolControl::SetChunkSize(s)) => d.set_chunk_size(s)?,
                        Some(ProtocolControl::Abort(c)) => d.abort(c),
                        _ => {}
                    }
                    out.push(m);
                } else {
                    assert!(piece.is_empty(), "stopped early without a message");
                }
            }
        }
        Ok(out)
    }

    /// Decoding whole, in two pieces at every split point and byte by byte
    /// gives `expect`.
    fn check_all_splits(input: &[u8], expect: &[Message]) {
        assert_eq!(decode(input, &[], 1 << 20).expect("valid"), expect, "whole");
        for split in 1..input.len() {
            assert_eq!(
                decode(input, &[split], 1 << 20).expect("valid"),
                expect,
                "split at {split}"
            );
        }
        let all: Vec<usize> = (1..input.len()).collect();
        assert_eq!(
            decode(input, &all, 1 << 20).expect("valid"),
            expect,
            "byte by byte"
        );
    }

    fn payload(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_add(seed)).collect()
    }

    fn msg(csid: u32, timestamp: u32, type_id: u8, stream_id: u32, payload: Vec<u8>) -> Message {
        Message {
            csid,
            timestamp,
            type_id,
            stream_id,
            payload,
        }
    }

    /// A type-0 chunk header.
    fn fmt0(out: &mut Vec<u8>, csid: u32, ts: u32, len: usize, type_id: u8, stream_id: u32) {
        write_basic_header(out, 0, csid);
        out.extend_from_slice(&ts.min(0xff_ffff).to_be_bytes()[1..]);
        out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
        out.push(type_id);
        out.extend_from_slice(&stream_id.to_le_bytes());
        if ts >= 0xff_ffff {
            out.extend_from_slice(&ts.to_be_bytes());
        }
    }

    #[test]
    fn interleaved_chunk_streams() {
        let a = payload(300, 1);
        let b = payload(200, 2);
        let mut s = Vec::new();
        fmt0(&mut s, 4, 1000, 300, 8, 1);
        s.extend_from_slice(&a[..128]);
        fmt0(&mut s, 6, 1010, 200, 9, 1);
        s.extend_from_slice(&b[..128]);
        write_basic_header(&mut s, 3, 4);
        s.extend_from_slice(&a[128..256]);
        write_basic_header(&mut s, 3, 6);
        s.extend_from_slice(&b[128..]);
        write_basic_header(&mut s, 3, 4);
        s.extend_from_slice(&a[256..]);
        check_all_splits(&s, &[msg(6, 1010, 9, 1, b), msg(4, 1000, 8, 1, a)]);
    }

    #[test]
    fn extended_timestamps_type_0_and_type_3() {
        let a = payload(300, 3);
        let b = payload(300, 4);
        let c = payload(150, 5);
        let ts = 0x1234_5678;
        let mut s = Vec::new();
        // Type 0 with an extended timestamp, continuations repeat it.
        fmt0(&mut s, 5, ts, 300, 9, 1);
        for (i, part) in a.chunks(128).enumerate() {
            if i > 0 {
                write_basic_header(&mut s, 3, 5);
                s.extend_from_slice(&ts.to_be_bytes());
            }
            s.extend_from_slice(part);
        }
        // A type-3 header starting a message: the delta is the last
        // timestamp field (the type-0 absolute value), again extended.
        for part in b.chunks(128) {
            write_basic_header(&mut s, 3, 5);
            s.extend_from_slice(&ts.to_be_bytes());
            s.extend_from_slice(part);
        }
        // Type 1 with a small delta: no extended timestamp any more, on the
        // first chunk or the continuation.
        write_basic_header(&mut s, 1, 5);
        s.extend_from_slice(&[0, 0, 10, 0, 0, 150, 8]);
        s.extend_from_slice(&c[..128]);
        write_basic_header(&mut s, 3, 5);
        s.extend_from_slice(&c[128..]);
        // Type 2 with an extended delta, zero-length message (type 1 first).
        write_basic_header(&mut s, 1, 5);
        s.extend_from_slice(&[0xff, 0xff, 0xff, 0, 0, 0, 8]);
        s.extend_from_slice(&0x0100_0000u32.to_be_bytes());
        check_all_splits(
            &s,
            &[
                msg(5, ts, 9, 1, a),
                msg(5, ts.wrapping_mul(2), 9, 1, b),
                msg(5, ts.wrapping_mul(2) + 10, 8, 1, c),
                msg(5, ts.wrapping_mul(2) + 10 + 0x0100_0000, 8, 1, Vec::new()),
            ],
        );
    }

    #[test]
    fn chunk_size_changes_and_header_forms() {
        let mut enc = ChunkEncoder::new();
        let mut s = Vec::new();
        let mut expect = Vec::new();
        let mut push = |enc: &mut ChunkEncoder, s: &mut Vec<u8>, m: Message| {
            enc.write(s, &m);
            expect.push(m);
        };
        push(&mut enc, &mut s, msg(3, 0, 20, 0, payload(300, 7)));
        push(
            &mut enc,
            &mut s,
            ProtocolControl::SetChunkSize(50).to_message(),
        );
        enc.set_chunk_size(50);
        // Same type and length, growing timestamps: the encoder writes
        // header types 0, 2, 3, 3, 2, 3.
        for (i, ts) in [0u32, 40, 80, 120, 200, 240].into_iter().enumerate() {
            push(&mut enc, &mut s, msg(6, ts, 9, 1, payload(120, i as u8)));
        }
        // Two- and three-byte basic headers.
        push(&mut enc, &mut s, msg(100, 7, 8, 1, payload(60, 9)));
        push(&mut enc, &mut s, msg(1000, 8, 8, 1, payload(60, 10)));
        push(
            &mut enc,
            &mut s,
            ProtocolControl::SetChunkSize(1).to_message(),
        );
        enc.set_chunk_size(1);
        push(&mut enc, &mut s, msg(6, 280, 9, 1, payload(5, 11)));
        push(
            &mut enc,
            &mut s,
            ProtocolControl::SetChunkSize(65536).to_message(),
        );
        enc.set_chunk_size(65536);
        push(&mut enc, &mut s, msg(6, 300, 9, 1, payload(70_000, 12)));
        // Timestamps going backwards force a type-0 header.
        push(&mut enc, &mut s, msg(6, 100, 9, 1, payload(10, 13)));
        check_all_splits(&s, &expect);
    }

    #[test]
    fn abort_drops_the_partial_message() {
        let mut s = Vec::new();
        fmt0(&mut s, 4, 0, 300, 8, 1);
        s.extend_from_slice(&payload(128, 0));
        ChunkEncoder::new().write(&mut s, &ProtocolControl::Abort(4).to_message());
        fmt0(&mut s, 4, 50, 3, 8, 1);
        s.extend_from_slice(&[1, 2, 3]);
        check_all_splits(
            &s,
            &[
                ProtocolControl::Abort(4).to_message(),
                msg(4, 50, 8, 1, vec![1, 2, 3]),
            ],
        );
    }

    /// Found with the `rtmp_chunk` fuzz target's oracle (whole and split
    /// reads must fail alike): the bound on partial messages was checked
    /// against the bytes read so far, so the error depended on where the
    /// reads ended. It is now checked against each chunk's declared payload
    /// at its header.
    #[test]
    fn partial_message_bound_does_not_depend_on_the_reads() {
        // Limit 300: at most 2 * 300 + 4096 = 4696 bytes of partial
        // messages. At chunk size 299, sixteen 300-byte messages each one
        // chunk in hold 16 * 299 = 4784.
        let mut s = Vec::new();
        ChunkEncoder::new().write(&mut s, &ProtocolControl::SetChunkSize(299).to_message());
        let mut headers = Vec::new();
        for csid in 4..20 {
            headers.push(s.len());
            fmt0(&mut s, csid, 0, 300, 9, 1);
            s.extend_from_slice(&payload(299, csid as u8));
        }
        let last = *headers.last().expect("sixteen");
        let whole = decode(&s, &[], 300);
        assert!(matches!(whole, Err(SessionError::Limit(_))), "{whole:?}");
        // Cut inside the last chunk's payload, before and after the bound.
        for cut in [last + 12 + 100, last + 12 + 250, last + 5] {
            assert_eq!(decode(&s, &[cut], 300), whole, "cut at {cut}");
        }
        let all: Vec<usize> = (1..s.len()).collect();
        assert_eq!(decode(&s, &all, 300), whole, "byte by byte");
        // One byte less per chunk fits.
        let mut s = Vec::new();
        ChunkEncoder::new().write(&mut s, &ProtocolControl::SetChunkSize(293).to_message());
        for csid in 4..20 {
            fmt0(&mut s, csid, 0, 300, 9, 1);
            s.extend_from_slice(&payload(293, csid as u8));
        }
        assert_eq!(
            decode(&s, &[], 300),
            Ok(vec![ProtocolControl::SetChunkSize(293).to_message()])
        );
    }

    #[test]
    fn errors() {
        // Type 1 on a chunk stream never seen.
        assert!(matches!(
            decode(&[0x44, 0, 0, 0, 0, 0, 1, 8, 0], &[], 1000),
            Err(SessionError::Malformed(_))
        ));
        // Oversize message, refused at the header before any payload.
        let mut s = Vec::new();
        fmt0(&mut s, 4, 0, 1001, 9, 1);
        assert!(matches!(decode(&s, &[], 1000), Err(SessionError::Limit(_))));
        // A new header inside a message.
        let mut s = Vec::new();
        fmt0(&mut s, 4, 0, 300, 9, 1);
        s.extend_from_slice(&payload(128, 0));
        fmt0(&mut s, 4, 0, 3, 9, 1);
        assert!(matches!(
            decode(&s, &[], 1000),
            Err(SessionError::Malformed(_))
        ));
        // Too many chunk streams.
        let mut s = Vec::new();
        for csid in 2..100 {
            fmt0(&mut s, csid, 0, 10, 9, 1);
            s.push(0);
        }
        assert!(matches!(decode(&s, &[], 1000), Err(SessionError::Limit(_))));
        // Chunk size 0.
        let mut d = ChunkDecoder::new(1000);
        assert!(d.set_chunk_size(0).is_err());
        assert!(d.set_chunk_size(0x8000_0000).is_err());
        assert!(d.set_chunk_size(0x7fff_ffff).is_ok());
        assert_eq!(d.chunk_size(), MAX_EFFECTIVE_CHUNK_SIZE);
    }
}
