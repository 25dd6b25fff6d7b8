//! PES packets (ISO/IEC 13818-1 2.4.3.6): reassembly from transport
//! packets and the header's PTS and DTS.
//!
//! ```text
//!   00 00 01 │ stream_id │ PES_packet_length(16) │ 10 flags… PTS_DTS_flags(2) … │ header_data_length │ [PTS] [DTS] … │ payload
//! ```
//!
//! A PES starts in a packet with `payload_unit_start_indicator` set and
//! ends where its `PES_packet_length` says, or, when that is 0 (video), at
//! the start of the next one on the same PID (or the end of the stream).

/// What a PES header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PesHeader {
    /// `stream_id` (0xE0..=0xEF video, 0xC0..=0xDF audio).
    pub stream_id: u8,
    /// Presentation time stamp, 33 bits, when present.
    pub pts: Option<u64>,
    /// Decode time stamp, 33 bits, when present (only with a PTS).
    pub dts: Option<u64>,
    /// Offset of the payload in the PES packet.
    pub payload_offset: usize,
}

/// Why a PES packet cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PesError {
    /// It does not start with `00 00 01`.
    StartCode,
    /// It ends inside its header.
    Truncated,
    /// `PTS_DTS_flags` is `01` (forbidden).
    DtsWithoutPts,
    /// The header's marker bits are not `10`.
    Marker,
}

impl std::fmt::Display for PesError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PesError::StartCode => "no packet_start_code_prefix",
            PesError::Truncated => "PES header truncated",
            PesError::DtsWithoutPts => "PTS_DTS_flags 01 (DTS without PTS)",
            PesError::Marker => "PES header marker bits are not 10",
        })
    }
}

/// Stream ids whose packets have no optional header (2.4.3.7): program
/// stream map, padding, private stream 2, ECM, EMM, DSMCC, directory, type E.
fn has_optional_header(stream_id: u8) -> bool {
    !matches!(
        stream_id,
        0xbc | 0xbe | 0xbf | 0xf0 | 0xf1 | 0xf2 | 0xf8 | 0xff
    )
}

/// A 33-bit time stamp in its 5-byte form (marker bits not checked).
fn timestamp(b: &[u8; 5]) -> u64 {
    (u64::from((b[0] >> 1) & 0x07) << 30)
        | (u64::from(b[1]) << 22)
        | (u64::from(b[2] >> 1) << 15)
        | (u64::from(b[3]) << 7)
        | u64::from(b[4] >> 1)
}

impl PesHeader {
    /// Reads the header of a PES packet (`pes` from its start code on).
    pub fn parse(pes: &[u8]) -> Result<PesHeader, PesError> {
        let Some(fixed) = pes.first_chunk::<6>() else {
            return Err(PesError::Truncated);
        };
        if fixed[..3] != [0, 0, 1] {
            return Err(PesError::StartCode);
        }
        let stream_id = fixed[3];
        if !has_optional_header(stream_id) {
            return Ok(PesHeader {
                stream_id,
                pts: None,
                dts: None,
                payload_offset: 6,
            });
        }
        let Some(opt) = pes.get(6..9) else {
            return Err(PesError::Truncated);
        };
        if opt[0] >> 6 != 0b10 {
            return Err(PesError::Marker);
        }
        let flags = opt[1] >> 6;
        let payload_offset = 9 + usize::from(opt[2]);
        let fields = pes.get(9..payload_offset).ok_or(PesError::Truncated)?;
        let stamp = |at: usize| {
            fields
                .get(at..at + 5)
                .and_then(|s| s.first_chunk::<5>())
                .map(timestamp)
                .ok_or(PesError::Truncated)
        };
        let (pts, dts) = match flags {
            0b00 => (None, None),
            0b10 => (Some(stamp(0)?), None),
            0b11 => (Some(stamp(0)?), Some(stamp(5)?)),
            _ => return Err(PesError::DtsWithoutPts),
        };
        Ok(PesHeader {
            stream_id,
            pts,
            dts,
            payload_offset,
        })
    }
}

/// What feeding a packet to a [`PesAssembler`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assembled {
    /// Nothing complete yet.
    Pending,
    /// A PES is complete (whole, from its start code).
    Complete(Vec<u8>),
}

/// Reassembles the PES packets of one PID.
#[derive(Debug, Default)]
pub struct PesAssembler {
    buf: Vec<u8>,
    active: bool,
    /// Bytes packets after the declared length carried (dropped).
    overrun: u64,
}

impl PesAssembler {
    /// An empty assembler.
    pub fn new() -> Self {
        PesAssembler::default()
    }

    /// Bytes buffered for the PES in progress.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Payload bytes seen past a PES's declared length and dropped.
    pub fn overrun(&self) -> u64 {
        self.overrun
    }

    /// Whether a PES is in progress.
    pub fn active(&self) -> bool {
        self.active
    }

    /// The size the PES in progress declares (`6 + PES_packet_length`),
    /// when it does.
    fn declared(&self) -> Option<usize> {
        let h = self.buf.first_chunk::<6>()?;
        let n = usize::from(u16::from_be_bytes([h[4], h[5]]));
        (n > 0).then_some(6 + n)
    }

    /// Forgets the PES in progress (after a continuity gap); returns the
    /// bytes dropped.
    pub fn reset(&mut self) -> usize {
        let n = self.buf.len();
        self.buf = Vec::new();
        self.active = false;
        n
    }

    /// Ends the PES in progress because another starts or the stream ends:
    /// complete unless it declared more bytes than it got (`Err` with the
    /// bytes dropped then).
    pub fn finish(&mut self) -> Result<Option<Vec<u8>>, usize> {
        if !self.active {
            return Ok(None);
        }
        self.active = false;
        let complete = match self.declared() {
            Some(n) => self.buf.len() >= n,
            None => self.buf.len() >= 6,
        };
        let buf = std::mem::take(&mut self.buf);
        if complete {
            Ok(Some(buf))
        } else if buf.is_empty() {
            Ok(None)
        } else {
            Err(buf.len())
        }
    }

    /// Appends a packet's payload to the PES in progress (the caller has
    /// finished the previous one on `unit_start`, and checked the size
    /// limit). Returns the PES when its declared length is reached.
    pub fn push(&mut self, unit_start: bool, payload: &[u8]) -> Assembled {
        if unit_start {
            self.buf.clear();
            self.active = true;
        } else if !self.active {
            return Assembled::Pending;
        }
        let room = match self.declared() {
            Some(n) => n.saturating_sub(self.buf.len()),
            None => usize::MAX,
        };
        let take = payload.len().min(room);
        self.buf.extend_from_slice(&payload[..take]);
        self.overrun += (payload.len() - take) as u64;
        match self.declared() {
            Some(n) if self.buf.len() >= n => {
                self.active = false;
                Assembled::Complete(std::mem::take(&mut self.buf))
            }
            _ => Assembled::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzing::synth;

    #[test]
    fn pts_and_dts() {
        let pes = synth::pes(0xe0, Some(0x1_2345_6789), Some(0x0_0000_0001), &[9], false);
        let h = PesHeader::parse(&pes).unwrap();
        assert_eq!(h.stream_id, 0xe0);
        assert_eq!(h.pts, Some(0x1_2345_6789));
        assert_eq!(h.dts, Some(1));
        assert_eq!(&pes[h.payload_offset..], &[9]);
        let pes = synth::pes(0xc0, Some((1 << 33) - 1), None, &[1, 2], true);
        let h = PesHeader::parse(&pes).unwrap();
        assert_eq!((h.pts, h.dts), (Some((1 << 33) - 1), None));
        assert_eq!(&pes[h.payload_offset..], &[1, 2]);
    }

    #[test]
    fn header_errors() {
        assert_eq!(PesHeader::parse(&[0, 0, 1]), Err(PesError::Truncated));
        assert_eq!(
            PesHeader::parse(&[0, 0, 2, 0xe0, 0, 0]),
            Err(PesError::StartCode)
        );
        assert_eq!(
            PesHeader::parse(&[0, 0, 1, 0xe0, 0, 0, 0x80, 0x80, 10, 0x21]),
            Err(PesError::Truncated)
        );
        assert_eq!(
            PesHeader::parse(&[0, 0, 1, 0xe0, 0, 0, 0x80, 0x40, 0]),
            Err(PesError::DtsWithoutPts)
        );
        assert_eq!(
            PesHeader::parse(&[0, 0, 1, 0xe0, 0, 0, 0x00, 0x00, 0]),
            Err(PesError::Marker)
        );
        // Padding has no optional header.
        assert_eq!(
            PesHeader::parse(&[0, 0, 1, 0xbe, 0, 0]).map(|h| h.payload_offset),
            Ok(6)
        );
    }

    #[test]
    fn declared_length_completes_and_unbounded_waits() {
        let pes = synth::pes(0xc0, Some(0), None, &[7; 300], true);
        let mut a = PesAssembler::new();
        assert_eq!(a.push(true, &pes[..184]), Assembled::Pending);
        let mut tail = pes[184..].to_vec();
        tail.extend_from_slice(&[0xff; 10]);
        assert_eq!(a.push(false, &tail), Assembled::Complete(pes.clone()));
        assert_eq!(a.overrun(), 10);
        assert!(!a.active());
        // Unbounded: complete at finish.
        let pes = synth::pes(0xe0, Some(0), None, &[7; 300], false);
        assert_eq!(a.push(true, &pes[..184]), Assembled::Pending);
        assert_eq!(a.push(false, &pes[184..]), Assembled::Pending);
        assert_eq!(a.finish(), Ok(Some(pes)));
        // Declared but cut short.
        let pes = synth::pes(0xc0, Some(0), None, &[7; 300], true);
        a.push(true, &pes[..184]);
        assert_eq!(a.finish(), Err(184));
        assert_eq!(a.finish(), Ok(None));
        // Continuation without a start is ignored.
        assert_eq!(a.push(false, &[1, 2, 3]), Assembled::Pending);
        assert_eq!(a.buffered(), 0);
    }
}
