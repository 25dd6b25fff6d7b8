//! Chunk stream encoding: messages in, chunks out, with compressed headers.

use std::collections::HashMap;

use super::{DEFAULT_CHUNK_SIZE, EXTENDED_TIMESTAMP, MAX_EFFECTIVE_CHUNK_SIZE, Message};

/// What the encoder remembers of the last message per chunk stream.
#[derive(Debug, Clone, Copy)]
struct Prev {
    timestamp: u32,
    /// The timestamp field value written (absolute for type 0, else the delta).
    field: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
}

/// Cuts messages into chunks at our chunk size.
///
/// Headers are compressed as the peer's decoder expects (the rules
/// ffmpeg's writer follows): type 0 for the first message on a chunk
/// stream, a different message stream or a timestamp going back; type 1
/// for a new length or type; type 2 for a new delta; type 3 when even the
/// delta repeats. Timestamps of 0xFFFFFF and above travel as extended
/// timestamps, repeated on every continuation chunk.
#[derive(Debug)]
pub struct ChunkEncoder {
    chunk_size: u32,
    prev: HashMap<u32, Prev>,
}

impl Default for ChunkEncoder {
    fn default() -> Self {
        ChunkEncoder {
            chunk_size: DEFAULT_CHUNK_SIZE,
            prev: HashMap::new(),
        }
    }
}

impl ChunkEncoder {
    /// An encoder at the default chunk size (128).
    pub fn new() -> Self {
        Self::default()
    }

    /// Our chunk size in effect.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Changes our chunk size; call it right after writing the Set Chunk
    /// Size message that announces it.
    pub fn set_chunk_size(&mut self, size: u32) {
        self.chunk_size = size.clamp(1, MAX_EFFECTIVE_CHUNK_SIZE);
    }

    /// Appends `msg` as chunks to `out`. Payloads beyond 16 MiB - 1 (the
    /// largest message length) are cut; `csid` is clamped to 2..=65599.
    pub fn write(&mut self, out: &mut Vec<u8>, msg: &Message) {
        let csid = msg
            .csid
            .clamp(super::MIN_CHUNK_STREAM_ID, super::MAX_CHUNK_STREAM_ID);
        let payload = &msg.payload[..msg.payload.len().min(0x00ff_ffff)];
        let length = payload.len() as u32;
        let prev = self.prev.get(&csid).copied();
        let delta_ok = prev.is_some_and(|p| {
            p.stream_id == msg.stream_id
                && msg.timestamp >= p.timestamp
                // A fresh type-0 start is clearer than a huge delta.
                && msg.timestamp - p.timestamp < 0x8000_0000
        });
        let (fmt, field) = match prev {
            Some(p) if delta_ok => {
                let delta = msg.timestamp - p.timestamp;
                let fmt = if p.length != length || p.type_id != msg.type_id {
                    1
                } else if p.field != delta {
                    2
                } else {
                    3
                };
                (fmt, delta)
            }
            _ => (0, msg.timestamp),
        };
        let extended = field >= EXTENDED_TIMESTAMP;
        let ts24 = field.min(EXTENDED_TIMESTAMP);
        write_basic_header(out, fmt, csid);
        if fmt <= 2 {
            out.extend_from_slice(&ts24.to_be_bytes()[1..]);
        }
        if fmt <= 1 {
            out.extend_from_slice(&length.to_be_bytes()[1..]);
            out.push(msg.type_id);
        }
        if fmt == 0 {
            out.extend_from_slice(&msg.stream_id.to_le_bytes());
        }
        if extended {
            out.extend_from_slice(&field.to_be_bytes());
        }
        let mut chunks = payload.chunks(self.chunk_size as usize);
        if let Some(first) = chunks.next() {
            out.extend_from_slice(first);
        }
        for chunk in chunks {
            write_basic_header(out, 3, csid);
            if extended {
                out.extend_from_slice(&field.to_be_bytes());
            }
            out.extend_from_slice(chunk);
        }
        self.prev.insert(
            csid,
            Prev {
                timestamp: msg.timestamp,
                field,
                length,
                type_id: msg.type_id,
                stream_id: msg.stream_id,
            },
        );
    }
}

/// Appends a basic header (1, 2 or 3 bytes by chunk stream id).
pub fn write_basic_header(out: &mut Vec<u8>, fmt: u8, csid: u32) {
    let fmt = (fmt & 3) << 6;
    match csid {
        0..=63 => out.push(fmt | csid as u8),
        64..=319 => out.extend_from_slice(&[fmt, (csid - 64) as u8]),
        _ => {
            let v = csid - 64;
            out.extend_from_slice(&[fmt | 1, v as u8, (v >> 8) as u8]);
        }
    }
}
