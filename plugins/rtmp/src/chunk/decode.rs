//! Chunk stream decoding: chunks in, whole messages out.

use std::collections::HashMap;

use sluice_sdk::plugin::SessionError;

use super::{EXTENDED_TIMESTAMP, MAX_EFFECTIVE_CHUNK_SIZE, Message};

type Result<T> = std::result::Result<T, SessionError>;

/// Most chunk streams a peer may use at once (encoders use a handful).
pub const MAX_CHUNK_STREAMS: usize = 64;

/// Longest chunk header: 3-byte basic header, 11-byte message header,
/// 4-byte extended timestamp.
const MAX_HEADER: usize = 18;

/// What the decoder remembers per chunk stream.
#[derive(Debug, Clone, Default)]
struct ChunkStream {
    /// Timestamp of the last message started on this chunk stream.
    timestamp: u32,
    /// The last timestamp field value (absolute after type 0, else the
    /// delta): a type-3 header that starts a message adds it again.
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// The last type 0–2 header carried an extended timestamp, so type-3
    /// chunks on this stream carry one too.
    extended: bool,
    /// The message being reassembled.
    partial: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Reading a chunk header (bytes gathered in `hdr`).
    Header,
    /// Copying `left` payload bytes of the current chunk into `csid`'s message.
    Payload { csid: u32, left: u32 },
}

/// Reassembles messages from the peer's chunk stream.
///
/// Sans-IO and streaming: [`ChunkDecoder::decode`] takes any slice of
/// input, keeps at most one partial chunk header (18 bytes) of it, copies
/// payload straight into the message being reassembled and stops after
/// each complete message, so the caller can act on it (a chunk size change,
/// a pause for authorisation) before the next one is decoded.
#[derive(Debug)]
pub struct ChunkDecoder {
    chunk_size: u32,
    max_message_size: u32,
    streams: HashMap<u32, ChunkStream>,
    state: State,
    hdr: [u8; MAX_HEADER],
    hdr_len: usize,
    /// Payload bytes held in partial messages, all chunk streams together.
    buffered: u64,
}

impl ChunkDecoder {
    /// A decoder at the default chunk size that refuses messages longer
    /// than `max_message_size`.
    pub fn new(max_message_size: u32) -> Self {
        ChunkDecoder {
            chunk_size: super::DEFAULT_CHUNK_SIZE,
            max_message_size,
            streams: HashMap::new(),
            state: State::Header,
            hdr: [0; MAX_HEADER],
            hdr_len: 0,
            buffered: 0,
        }
    }

    /// Most payload bytes held in partial messages, all chunk streams
    /// together: two messages of the largest size, and some slack.
    fn max_buffered(&self) -> u64 {
        2 * u64::from(self.max_message_size) + 4096
    }

    /// The peer's chunk size in effect.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Applies the peer's Set Chunk Size (1 to 2^31 - 1).
    pub fn set_chunk_size(&mut self, size: u32) -> Result<()> {
        if size == 0 || size > 0x7fff_ffff {
            return Err(SessionError::Malformed(format!(
                "Set Chunk Size {size} out of range"
            )));
        }
        self.chunk_size = size.min(MAX_EFFECTIVE_CHUNK_SIZE);
        Ok(())
    }

    /// Applies the peer's Abort Message: drops the partial message of `csid`.
    pub fn abort(&mut self, csid: u32) {
        if let Some(st) = self.streams.get_mut(&csid)
            && let Some(p) = st.partial.take()
        {
            self.buffered -= p.len() as u64;
        }
    }

    /// Bytes of the current header gathered so far, and how many the header
    /// needs in total as far as they tell.
    fn header_needed(&self) -> usize {
        let h = &self.hdr[..self.hdr_len];
        let Some(&b0) = h.first() else {
            return 1;
        };
        let basic = match b0 & 0x3f {
            0 => 2,
            1 => 3,
            _ => 1,
        };
        let fmt = b0 >> 6;
        let mh = [11, 7, 3, 0][usize::from(fmt)];
        if h.len() < basic + mh {
            return basic + mh;
        }
        let extended = if fmt < 3 {
            u32::from_be_bytes([0, h[basic], h[basic + 1], h[basic + 2]]) == EXTENDED_TIMESTAMP
        } else {
            self.streams
                .get(&basic_csid(h))
                .is_some_and(|st| st.extended)
        };
        basic + mh + if extended { 4 } else { 0 }
    }

    /// Decodes from `input` until one message is complete or the input is
    /// used up. Returns the bytes consumed (all of them unless a message
    /// completed) and the message, if one did.
    pub fn decode(&mut self, input: &[u8]) -> Result<(usize, Option<Message>)> {
        let mut pos = 0;
        loop {
            match self.state {
                State::Header => {
                    loop {
                        let need = self.header_needed();
                        if self.hdr_len >= need {
                            break;
                        }
                        let n = (need - self.hdr_len).min(input.len() - pos);
                        if n == 0 {
                            return Ok((pos, None));
                        }
                        self.hdr[self.hdr_len..self.hdr_len + n]
                            .copy_from_slice(&input[pos..pos + n]);
                        self.hdr_len += n;
                        pos += n;
                    }
                    let done = self.on_header()?;
                    self.hdr_len = 0;
                    if let Some(m) = done {
                        return Ok((pos, Some(m)));
                    }
                }
                State::Payload { csid, left } => {
                    let n = (left as usize).min(input.len() - pos);
                    if n == 0 {
                        return Ok((pos, None));
                    }
                    let Some(partial) = self
                        .streams
                        .get_mut(&csid)
                        .and_then(|st| st.partial.as_mut())
                    else {
                        // Only reachable if the message was aborted mid-chunk.
                        return Err(SessionError::Malformed(format!(
                            "payload for aborted message on chunk stream {csid}"
                        )));
                    };
                    partial.extend_from_slice(&input[pos..pos + n]);
                    self.buffered += n as u64;
                    pos += n;
                    let left = left - n as u32;
                    if left > 0 {
                        self.state = State::Payload { csid, left };
                        continue;
                    }
                    self.state = State::Header;
                    if let Some(m) = self.complete(csid) {
                        return Ok((pos, Some(m)));
                    }
                }
            }
        }
    }

    /// Acts on a complete chunk header in `hdr`; returns a message when it
    /// is complete already (zero length).
    fn on_header(&mut self) -> Result<Option<Message>> {
        let h = self.hdr;
        let b0 = h[0];
        let fmt = b0 >> 6;
        let csid = basic_csid(&h[..self.hdr_len]);
        let basic = match b0 & 0x3f {
            0 => 2,
            1 => 3,
            _ => 1,
        };
        let m = &h[basic..self.hdr_len];
        let u24 = |i: usize| u32::from_be_bytes([0, m[i], m[i + 1], m[i + 2]]);
        let is_new_stream = !self.streams.contains_key(&csid);
        if is_new_stream {
            if fmt != 0 {
                return Err(SessionError::Malformed(format!(
                    "chunk type {fmt} on chunk stream {csid} without a previous header"
                )));
            }
            if self.streams.len() >= MAX_CHUNK_STREAMS {
                return Err(SessionError::Limit(format!(
                    "more than {MAX_CHUNK_STREAMS} chunk streams"
                )));
            }
        }
        let max = self.max_message_size;
        let st = self.streams.entry(csid).or_default();
        if fmt == 3 && st.partial.is_some() {
            // A continuation chunk (its extended timestamp, if any, repeats
            // the first chunk's and has been read with the header).
        } else {
            if st.partial.is_some() {
                return Err(SessionError::Malformed(format!(
                    "chunk type {fmt} header inside a message on chunk stream {csid}"
                )));
            }
            let ext = |at: usize| u32::from_be_bytes([m[at], m[at + 1], m[at + 2], m[at + 3]]);
            match fmt {
                0 => {
                    let ts = u24(0);
                    st.length = u24(3);
                    st.type_id = m[6];
                    st.stream_id = u32::from_le_bytes([m[7], m[8], m[9], m[10]]);
                    st.extended = ts == EXTENDED_TIMESTAMP;
                    st.timestamp = if st.extended { ext(11) } else { ts };
                    st.delta = st.timestamp;
                }
                1 | 2 => {
                    let d = u24(0);
                    if fmt == 1 {
                        st.length = u24(3);
                        st.type_id = m[6];
                    }
                    let at = if fmt == 1 { 7 } else { 3 };
                    st.extended = d == EXTENDED_TIMESTAMP;
                    st.delta = if st.extended { ext(at) } else { d };
                    st.timestamp = st.timestamp.wrapping_add(st.delta);
                }
                _ => {
                    if st.extended {
                        st.delta = ext(0);
                    }
                    st.timestamp = st.timestamp.wrapping_add(st.delta);
                }
            }
            if st.length > max {
                return Err(SessionError::Limit(format!(
                    "message of {} bytes exceeds the limit of {max}",
                    st.length
                )));
            }
            // Grow with the data rather than trusting the declared length.
            st.partial = Some(Vec::with_capacity(
                (st.length as usize).min(self.chunk_size as usize),
            ));
        }
        let have = st.partial.as_ref().map_or(0, Vec::len) as u32;
        let left = (st.length - have).min(self.chunk_size);
        if left == 0 {
            // Zero-length message.
            return Ok(self.complete(csid));
        }
        // Bound the partial messages of all chunk streams by what this
        // chunk declares, before reading it: the outcome does not depend on
        // how the input is cut into reads.
        let total = self.buffered + u64::from(left);
        if total > self.max_buffered() {
            return Err(SessionError::Limit(format!(
                "{total} bytes of partial messages buffered"
            )));
        }
        self.state = State::Payload { csid, left };
        Ok(None)
    }

    /// If `csid`'s message is complete, takes it.
    fn complete(&mut self, csid: u32) -> Option<Message> {
        let st = self.streams.get_mut(&csid)?;
        let have = st.partial.as_ref()?.len();
        if have < st.length as usize {
            return None;
        }
        let payload = st.partial.take()?;
        self.buffered -= payload.len() as u64;
        Some(Message {
            csid,
            timestamp: st.timestamp,
            type_id: st.type_id,
            stream_id: st.stream_id,
            payload,
        })
    }
}

/// The chunk stream id of a basic header (which must be complete).
fn basic_csid(h: &[u8]) -> u32 {
    match h[0] & 0x3f {
        0 => 64 + u32::from(h[1]),
        1 => 64 + u32::from(h[1]) + 256 * u32::from(h[2]),
        id => u32::from(id),
    }
}
