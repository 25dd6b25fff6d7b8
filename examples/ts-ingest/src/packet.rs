//! Transport stream packets (ISO/IEC 13818-1 2.4.3.2) and the adaptation
//! field (2.4.3.4), and the [`Framer`] that finds them in a byte stream.
//!
//! ```text
//!   sync 0x47 │ TEI PUSI prio PID(13) │ scrambling(2) adaptation(2) CC(4) │ [adaptation field] [payload]
//!   └──────────────────────────── 188 bytes ──────────────────────────────────────────────────────┘
//! ```

use sluice_sdk::plugin::{self, LogLevel};

use crate::error::{Error, Result};

/// Bytes in a transport stream packet.
pub const PACKET_SIZE: usize = 188;
/// The first byte of every packet.
pub const SYNC_BYTE: u8 = 0x47;
/// The PID of null (stuffing) packets.
pub const NULL_PID: u16 = 0x1fff;

/// Most bytes skipped in one search for sync before the stream is
/// declared not to be a transport stream (about 87 packets).
pub const MAX_RESYNC_BYTES: usize = 16 << 10;

/// Packets confirmed by a sync byte 188 bytes on before a candidate is
/// taken when searching for sync.
const CONFIRMATIONS: usize = 2;

/// Bytes taken from the input at a time, so that a large piece is never
/// copied whole.
const FEED_STEP: usize = 64 << 10;

/// Lost-sync events logged as warnings; later ones are logged at debug.
const MAX_LOGGED_RESYNCS: u64 = 8;

/// One packet's header fields and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// `transport_error_indicator`: the packet is known to be damaged.
    pub transport_error: bool,
    /// `payload_unit_start_indicator`: a PES packet or PSI section starts here.
    pub unit_start: bool,
    /// The packet identifier.
    pub pid: u16,
    /// `transport_scrambling_control` (0: not scrambled).
    pub scrambling: u8,
    /// Whether the packet has a payload (`adaptation_field_control` 01 or 11).
    pub has_payload: bool,
    /// `continuity_counter`.
    pub continuity_counter: u8,
    /// The adaptation field's `discontinuity_indicator`.
    pub discontinuity: bool,
    /// The payload (empty when there is none).
    pub payload: &'a [u8],
}

/// Why a packet cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketError {
    /// The first byte is not 0x47.
    NoSync,
    /// `adaptation_field_control` 00 (reserved).
    ReservedAdaptationControl,
    /// An adaptation field longer than the packet.
    AdaptationFieldLength(u8),
}

impl std::fmt::Display for PacketError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PacketError::NoSync => f.write_str("no sync byte"),
            PacketError::ReservedAdaptationControl => {
                f.write_str("adaptation_field_control 00 (reserved)")
            }
            PacketError::AdaptationFieldLength(n) => {
                write!(f, "adaptation field of {n} bytes does not fit the packet")
            }
        }
    }
}

/// The PID of a packet, read even when the rest does not parse.
pub fn pid_of(bytes: &[u8; PACKET_SIZE]) -> u16 {
    (u16::from(bytes[1] & 0x1f) << 8) | u16::from(bytes[2])
}

impl<'a> Packet<'a> {
    /// Reads one packet.
    pub fn parse(bytes: &'a [u8; PACKET_SIZE]) -> Result<Packet<'a>, PacketError> {
        if bytes[0] != SYNC_BYTE {
            return Err(PacketError::NoSync);
        }
        let transport_error = bytes[1] & 0x80 != 0;
        let unit_start = bytes[1] & 0x40 != 0;
        let pid = pid_of(bytes);
        let scrambling = bytes[3] >> 6;
        let control = (bytes[3] >> 4) & 0x03;
        let continuity_counter = bytes[3] & 0x0f;
        let (has_adaptation, has_payload) = match control {
            0b01 => (false, true),
            0b10 => (true, false),
            0b11 => (true, true),
            _ => return Err(PacketError::ReservedAdaptationControl),
        };
        let mut discontinuity = false;
        let mut payload_start = 4;
        if has_adaptation {
            let length = bytes[4];
            // 183 fills the packet (no payload); 0 is a single stuffing byte.
            if usize::from(length) > PACKET_SIZE - 5 {
                return Err(PacketError::AdaptationFieldLength(length));
            }
            if length > 0 {
                discontinuity = bytes[5] & 0x80 != 0;
            }
            payload_start = 5 + usize::from(length);
        }
        let payload = if has_payload {
            &bytes[payload_start..]
        } else {
            &[]
        };
        Ok(Packet {
            transport_error,
            unit_start,
            pid,
            scrambling,
            has_payload,
            continuity_counter,
            discontinuity,
            payload,
        })
    }
}

/// Finds 188-byte packets in a byte stream fed in arbitrary pieces.
///
/// At the start it assumes the stream is aligned. A packet is taken when
/// it starts with 0x47 and the next one does too. When that fails it
/// searches on byte by byte for a 0x47 followed by two more 188 bytes
/// apart, waiting for more input when it cannot yet tell; a search that skips more than [`MAX_RESYNC_BYTES`] is
/// [`Error::LostSync`]. Every decision depends on the bytes alone, never
/// on where the input was cut.
#[derive(Debug)]
pub struct Framer {
    buf: Vec<u8>,
    /// Next unread byte of `buf`.
    pos: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    /// In sync: the byte at `pos` starts a packet.
    synced: bool,
    /// Bytes skipped in the current search.
    skipped: usize,
    /// Stream offset where the current search started.
    lost_at: u64,
    /// Bytes skipped in all searches.
    skipped_total: u64,
    /// Searches that found sync again.
    resyncs: u64,
}

impl Default for Framer {
    fn default() -> Self {
        Framer::new()
    }
}

impl Framer {
    /// A framer at the start of a stream.
    pub fn new() -> Self {
        Framer {
            buf: Vec::new(),
            pos: 0,
            base: 0,
            synced: true,
            skipped: 0,
            lost_at: 0,
            skipped_total: 0,
            resyncs: 0,
        }
    }

    /// How many bytes of `data` to take at a time (then read the packets
    /// they complete before taking more), so that a large piece is not
    /// copied whole.
    pub const STEP: usize = FEED_STEP;

    /// Adds bytes (at most a few packets' worth of older ones stay
    /// buffered: call [`Framer::next_packet`] until it says `None` first).
    pub fn push(&mut self, data: &[u8]) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.base += self.pos as u64;
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered and not yet framed.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Stream offset of the next unread byte.
    pub fn position(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Bytes skipped while searching for sync, in all.
    pub fn skipped_total(&self) -> u64 {
        self.skipped_total
    }

    /// Times sync was found again after it was lost.
    pub fn resyncs(&self) -> u64 {
        self.resyncs
    }

    /// The next packet and its stream offset, `None` when more input is
    /// needed.
    ///
    /// A packet is taken when it starts with 0x47 and so does the byte
    /// after it; the last packet of the stream has no byte after it and is
    /// taken by [`Framer::last_packet`] at the end.
    pub fn next_packet(&mut self) -> Result<Option<([u8; PACKET_SIZE], u64)>> {
        loop {
            let rest = &self.buf[self.pos..];
            if self.synced {
                if rest.len() <= PACKET_SIZE {
                    return Ok(None);
                }
                if rest[0] == SYNC_BYTE && rest[PACKET_SIZE] == SYNC_BYTE {
                    return Ok(Some(self.take()));
                }
                self.lose_sync();
                continue;
            }
            // Searching: skip to the next 0x47.
            let Some(at) = rest.iter().position(|&b| b == SYNC_BYTE) else {
                let n = rest.len();
                self.skip(n)?;
                return Ok(None);
            };
            self.skip(at)?;
            let rest = &self.buf[self.pos..];
            if rest.len() <= CONFIRMATIONS * PACKET_SIZE {
                return Ok(None);
            }
            let confirmed =
                (1..=CONFIRMATIONS).all(|k| rest.get(k * PACKET_SIZE) == Some(&SYNC_BYTE));
            if confirmed {
                self.synced = true;
                self.resyncs += 1;
                plugin::log(
                    LogLevel::Info,
                    &format!(
                        "sync found again at stream offset {} after {} bytes",
                        self.position(),
                        self.skipped
                    ),
                );
            } else {
                self.skip(1)?;
            }
        }
    }

    /// At the end of the stream (after [`Framer::next_packet`] said
    /// `None`): the last packet, when what is left is exactly one packet in
    /// sync. Anything else left is dropped (see [`Framer::buffered`]).
    pub fn last_packet(&mut self) -> Option<([u8; PACKET_SIZE], u64)> {
        let rest = &self.buf[self.pos..];
        (self.synced && rest.len() == PACKET_SIZE && rest[0] == SYNC_BYTE).then(|| self.take())
    }

    fn take(&mut self) -> ([u8; PACKET_SIZE], u64) {
        let mut packet = [0u8; PACKET_SIZE];
        packet.copy_from_slice(&self.buf[self.pos..self.pos + PACKET_SIZE]);
        let offset = self.position();
        self.pos += PACKET_SIZE;
        (packet, offset)
    }

    fn lose_sync(&mut self) {
        self.synced = false;
        self.skipped = 0;
        self.lost_at = self.position();
        let level = if self.resyncs < MAX_LOGGED_RESYNCS {
            LogLevel::Warn
        } else {
            LogLevel::Debug
        };
        plugin::log(
            level,
            &format!(
                "lost sync at stream offset {}; searching for 0x47",
                self.lost_at
            ),
        );
    }

    /// Skips `n` bytes of a search; past the bound, stops exactly one byte
    /// over it (so the error and the counters do not depend on how the
    /// input was cut) and fails.
    fn skip(&mut self, n: usize) -> Result<()> {
        let room = MAX_RESYNC_BYTES + 1 - self.skipped;
        let n = n.min(room);
        self.pos += n;
        self.skipped += n;
        self.skipped_total += n as u64;
        if self.skipped > MAX_RESYNC_BYTES {
            return Err(Error::LostSync {
                offset: self.lost_at,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(pid: u16, cc: u8, fill: u8) -> [u8; PACKET_SIZE] {
        let mut p = [fill; PACKET_SIZE];
        p[0] = SYNC_BYTE;
        p[1] = (pid >> 8) as u8 & 0x1f;
        p[2] = pid as u8;
        p[3] = 0x10 | cc;
        p
    }

    fn frame_all(f: &mut Framer) -> Result<Vec<u64>> {
        let mut offsets = Vec::new();
        while let Some((_, at)) = f.next_packet()? {
            offsets.push(at);
        }
        Ok(offsets)
    }

    #[test]
    fn the_last_packet_waits_for_the_end() {
        let mut f = Framer::new();
        f.push(&packet(1, 0, 0));
        assert_eq!(frame_all(&mut f).unwrap(), Vec::<u64>::new());
        f.push(&packet(1, 1, 0));
        assert_eq!(frame_all(&mut f).unwrap(), vec![0]);
        assert_eq!(f.last_packet().map(|(_, at)| at), Some(188));
        assert_eq!(f.buffered(), 0);
        // A partial packet at the end is not one.
        let mut f = Framer::new();
        f.push(&packet(1, 0, 0)[..100]);
        assert_eq!(frame_all(&mut f).unwrap(), Vec::<u64>::new());
        assert_eq!(f.last_packet(), None);
        assert_eq!(f.buffered(), 100);
    }

    #[test]
    fn header_fields_and_adaptation_field() {
        let mut p = packet(0x100, 7, 0xaa);
        p[1] |= 0x40;
        p[3] = 0x30 | 7; // adaptation field and payload
        p[4] = 7;
        p[5] = 0x80; // discontinuity
        let parsed = Packet::parse(&p).unwrap();
        assert!(parsed.unit_start && parsed.discontinuity && parsed.has_payload);
        assert_eq!(parsed.pid, 0x100);
        assert_eq!(parsed.continuity_counter, 7);
        assert_eq!(parsed.payload.len(), PACKET_SIZE - 5 - 7);
        p[4] = 183;
        assert_eq!(Packet::parse(&p).unwrap().payload, &[] as &[u8]);
        p[4] = 184;
        assert_eq!(
            Packet::parse(&p),
            Err(PacketError::AdaptationFieldLength(184))
        );
        p[3] = 0x20;
        p[4] = 183;
        let parsed = Packet::parse(&p).unwrap();
        assert!(!parsed.has_payload && parsed.payload.is_empty());
        p[3] = 0x00;
        assert_eq!(
            Packet::parse(&p),
            Err(PacketError::ReservedAdaptationControl)
        );
    }

    #[test]
    fn resync_after_garbage_in_any_pieces() {
        let mut stream = Vec::new();
        stream.extend_from_slice(&packet(1, 0, 0));
        stream.extend_from_slice(&[0x47, 1, 2, 0x47, 9]);
        for cc in 1..5 {
            stream.extend_from_slice(&packet(1, cc, 0x11));
        }
        for step in [1, 5, 187, 188, 189, 1000] {
            let mut f = Framer::new();
            let mut offsets = Vec::new();
            for piece in stream.chunks(step) {
                f.push(piece);
                offsets.extend(frame_all(&mut f).unwrap());
            }
            offsets.extend(f.last_packet().map(|(_, at)| at));
            assert_eq!(offsets, vec![0, 193, 381, 569, 757], "step {step}");
            assert_eq!(f.skipped_total(), 5);
            assert_eq!(f.resyncs(), 1);
            assert_eq!(f.buffered(), 0);
        }
    }

    #[test]
    fn garbage_beyond_the_bound_is_lost_sync() {
        let mut f = Framer::new();
        f.push(&[0u8; MAX_RESYNC_BYTES]);
        assert_eq!(frame_all(&mut f).unwrap(), Vec::<u64>::new());
        f.push(&[0u8; 2]);
        assert_eq!(frame_all(&mut f), Err(Error::LostSync { offset: 0 }));
        assert_eq!(f.skipped_total(), MAX_RESYNC_BYTES as u64 + 1);
    }

    #[test]
    fn a_lone_sync_byte_every_188_is_not_enough_without_its_confirmations() {
        // 0x47 at 0 (taken: the start is assumed aligned), then a
        // 192-byte layout (M2TS): never two confirmations.
        let mut stream = Vec::new();
        for _ in 0..200 {
            stream.extend_from_slice(&[0, 0, 0, 0]);
            stream.extend_from_slice(&packet(1, 0, 0x11));
        }
        let mut f = Framer::new();
        f.push(&stream);
        assert!(matches!(frame_all(&mut f), Err(Error::LostSync { .. })));
    }
}
