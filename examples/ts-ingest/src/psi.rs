//! Program specific information (ISO/IEC 13818-1 2.4.4): sections
//! reassembled from packets, their CRC, the program association table
//! (PAT, 2.4.4.3) and the program map table (PMT, 2.4.4.8).
//!
//! ```text
//!   packets of one PID ─▶ SectionBuffer (pointer_field, sections packed or spanning packets)
//!     ─▶ section: table_id │ syntax(1) 0 rr length(12) │ … │ CRC_32
//!     ─▶ crc32(section) == 0 ─▶ Pat::parse (table 0x00) │ Pmt::parse (table 0x02)
//! ```

/// `table_id` of the PAT.
pub const TABLE_PAT: u8 = 0x00;
/// `table_id` of a PMT section.
pub const TABLE_PMT: u8 = 0x02;
/// The PAT's PID.
pub const PAT_PID: u16 = 0x0000;

/// Longest PAT or PMT section: `section_length` is at most 1021.
pub const MAX_SECTION: usize = 3 + 1021;

/// The `descriptor_tag` of an ISO 639 language descriptor (2.6.18).
const LANGUAGE_DESCRIPTOR: u8 = 0x0a;

/// CRC-32 of MPEG-2 sections (polynomial 0x04C11DB7, initial value all
/// ones, not reflected, no final XOR). Over a whole section, its own
/// `CRC_32` included, the result is 0.
pub fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = (i as u32) << 24;
            let mut bit = 0;
            while bit < 8 {
                c = if c & 0x8000_0000 != 0 {
                    (c << 1) ^ 0x04c1_1db7
                } else {
                    c << 1
                };
                bit += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    data.iter().fold(0xffff_ffff, |crc, &b| {
        (crc << 8) ^ TABLE[usize::from((crc >> 24) as u8 ^ b)]
    })
}

/// Reassembles the sections of one PID from packet payloads.
#[derive(Debug, Default)]
pub struct SectionBuffer {
    buf: Vec<u8>,
    /// A section is in progress (its start was seen).
    active: bool,
}

/// What [`SectionBuffer::push`] gave up on.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    /// Sections cut short by the start of the next one.
    pub truncated: u32,
    /// Sections declaring more than [`MAX_SECTION`] bytes, or pointer
    /// fields past the packet.
    pub invalid: u32,
}

impl SectionBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        SectionBuffer::default()
    }

    /// Forgets the section in progress (after a continuity gap).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.active = false;
    }

    /// Feeds one packet's payload; complete sections are appended to `out`
    /// (whole, `table_id` to `CRC_32`, not yet checked).
    pub fn push(&mut self, unit_start: bool, payload: &[u8], out: &mut Vec<Vec<u8>>) -> Dropped {
        let mut dropped = Dropped::default();
        if !unit_start {
            if self.active {
                self.buf.extend_from_slice(payload);
                self.drain(out, &mut dropped);
            }
            return dropped;
        }
        let Some((&pointer, rest)) = payload.split_first() else {
            self.reset();
            dropped.invalid += 1;
            return dropped;
        };
        let Some((tail, start)) = rest.split_at_checked(usize::from(pointer)) else {
            self.reset();
            dropped.invalid += 1;
            return dropped;
        };
        if self.active {
            self.buf.extend_from_slice(tail);
            self.drain(out, &mut dropped);
            if self.active && !self.buf.is_empty() {
                dropped.truncated += 1;
            }
        }
        self.buf.clear();
        self.buf.extend_from_slice(start);
        self.active = true;
        self.drain(out, &mut dropped);
        dropped
    }

    /// Takes every complete section off the front of the buffer.
    fn drain(&mut self, out: &mut Vec<Vec<u8>>, dropped: &mut Dropped) {
        loop {
            match self.buf.first() {
                None => return,
                // Stuffing: the rest of the packet is padding.
                Some(0xff) => {
                    self.reset();
                    return;
                }
                Some(_) => {}
            }
            let Some(head) = self.buf.first_chunk::<3>() else {
                return;
            };
            let total = 3 + ((usize::from(head[1] & 0x0f) << 8) | usize::from(head[2]));
            if total > MAX_SECTION {
                dropped.invalid += 1;
                self.reset();
                return;
            }
            if self.buf.len() < total {
                return;
            }
            out.push(self.buf[..total].to_vec());
            self.buf.drain(..total);
        }
    }
}

/// What is wrong with a section that passed its CRC.
pub type TableError = String;

/// The fields of a long-form section header (after `table_id` and
/// `section_length`), and the body between it and the CRC.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LongSection<'a> {
    table_id: u8,
    /// `transport_stream_id` (PAT) or `program_number` (PMT).
    id: u16,
    version: u8,
    current_next: bool,
    section_number: u8,
    body: &'a [u8],
}

fn long_section(section: &[u8]) -> Result<LongSection<'_>, TableError> {
    if section.len() < 12 {
        return Err(format!("section of {} bytes is too short", section.len()));
    }
    if section[1] & 0x80 == 0 {
        return Err("section_syntax_indicator is 0".into());
    }
    let length = (usize::from(section[1] & 0x0f) << 8) | usize::from(section[2]);
    if length + 3 != section.len() {
        return Err(format!(
            "section_length {length} does not match the section's {} bytes",
            section.len()
        ));
    }
    Ok(LongSection {
        table_id: section[0],
        id: u16::from_be_bytes([section[3], section[4]]),
        version: (section[5] >> 1) & 0x1f,
        current_next: section[5] & 1 == 1,
        section_number: section[6],
        body: &section[8..section.len() - 4],
    })
}

fn pid13(hi: u8, lo: u8) -> u16 {
    (u16::from(hi & 0x1f) << 8) | u16::from(lo)
}

/// One program of a PAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatEntry {
    /// `program_number` (0: the network information table).
    pub program_number: u16,
    /// The PID of its PMT (or of the NIT for program 0).
    pub pid: u16,
}

/// A program association section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pat {
    /// `transport_stream_id`.
    pub transport_stream_id: u16,
    /// `version_number`.
    pub version: u8,
    /// `current_next_indicator`: applies now (else: the next version).
    pub current_next: bool,
    /// `section_number`.
    pub section_number: u8,
    /// The programs, in order.
    pub programs: Vec<PatEntry>,
}

impl Pat {
    /// Parses a PAT section (its CRC already checked).
    pub fn parse(section: &[u8]) -> Result<Pat, TableError> {
        let s = long_section(section)?;
        if s.table_id != TABLE_PAT {
            return Err(format!("table_id {:#04x} is not a PAT", s.table_id));
        }
        if s.body.len() % 4 != 0 {
            return Err(format!(
                "PAT program loop of {} bytes is not a multiple of 4",
                s.body.len()
            ));
        }
        let programs = s
            .body
            .chunks_exact(4)
            .map(|e| PatEntry {
                program_number: u16::from_be_bytes([e[0], e[1]]),
                pid: pid13(e[2], e[3]),
            })
            .collect();
        Ok(Pat {
            transport_stream_id: s.id,
            version: s.version,
            current_next: s.current_next,
            section_number: s.section_number,
            programs,
        })
    }

    /// The first program that is not the network information table.
    pub fn first_program(&self) -> Option<PatEntry> {
        self.programs
            .iter()
            .copied()
            .find(|p| p.program_number != 0)
    }
}

/// One elementary stream of a PMT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PmtStream {
    /// `stream_type` (0x1B H.264, 0x0F AAC in ADTS, …).
    pub stream_type: u8,
    /// `elementary_PID`.
    pub pid: u16,
    /// The ISO 639-2 code of its language descriptor, if any.
    pub language: Option<[u8; 3]>,
}

/// A program map section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pmt {
    /// `program_number`.
    pub program_number: u16,
    /// `version_number`.
    pub version: u8,
    /// `current_next_indicator`.
    pub current_next: bool,
    /// `PCR_PID`.
    pub pcr_pid: u16,
    /// The elementary streams, in order.
    pub streams: Vec<PmtStream>,
}

/// Splits `n` bytes off the front of `data`.
fn take<'a>(data: &mut &'a [u8], n: usize, what: &str) -> Result<&'a [u8], TableError> {
    let Some((head, rest)) = data.split_at_checked(n) else {
        return Err(format!(
            "{what} of {n} bytes runs past the section ({} left)",
            data.len()
        ));
    };
    *data = rest;
    Ok(head)
}

/// The language of an ISO 639 language descriptor in `descriptors`.
fn language(mut descriptors: &[u8]) -> Result<Option<[u8; 3]>, TableError> {
    let mut found = None;
    while !descriptors.is_empty() {
        let head = take(&mut descriptors, 2, "descriptor header")?;
        let body = take(&mut descriptors, usize::from(head[1]), "descriptor")?;
        if head[0] == LANGUAGE_DESCRIPTOR
            && found.is_none()
            && let Some(code) = body.first_chunk::<3>()
        {
            found = Some(*code);
        }
    }
    Ok(found)
}

impl Pmt {
    /// Parses a PMT section (its CRC already checked).
    pub fn parse(section: &[u8]) -> Result<Pmt, TableError> {
        let s = long_section(section)?;
        if s.table_id != TABLE_PMT {
            return Err(format!("table_id {:#04x} is not a PMT", s.table_id));
        }
        let mut body = s.body;
        let head = take(&mut body, 4, "PMT header")?;
        let pcr_pid = pid13(head[0], head[1]);
        let info_length = (usize::from(head[2] & 0x0f) << 8) | usize::from(head[3]);
        take(&mut body, info_length, "program_info")?;
        let mut streams = Vec::new();
        while !body.is_empty() {
            let e = take(&mut body, 5, "elementary stream entry")?;
            let es_info_length = (usize::from(e[3] & 0x0f) << 8) | usize::from(e[4]);
            let descriptors = take(&mut body, es_info_length, "ES_info")?;
            streams.push(PmtStream {
                stream_type: e[0],
                pid: pid13(e[1], e[2]),
                language: language(descriptors)?,
            });
        }
        Ok(Pmt {
            program_number: s.id,
            version: s.version,
            current_next: s.current_next,
            pcr_pid,
            streams,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzing::synth;

    #[test]
    fn crc_of_known_values() {
        // The CRC-32/MPEG-2 check value.
        assert_eq!(crc32(b"123456789"), 0x0376_e6e7);
        // A section with its CRC appended checks to zero.
        let pat = synth::pat_section(1, 0x1000, 0);
        assert_eq!(crc32(&pat), 0);
    }

    #[test]
    fn pat_and_pmt_round_trip_the_synthetic_tables() {
        let pat = Pat::parse(&synth::pat_section(1, 0x1000, 3)).unwrap();
        assert_eq!(pat.version, 3);
        assert!(pat.current_next);
        assert_eq!(
            pat.first_program(),
            Some(PatEntry {
                program_number: 1,
                pid: 0x1000
            })
        );
        let pmt = Pmt::parse(&synth::pmt_section(
            1,
            0,
            &[
                synth::Es::new(0x1b, 0x100),
                synth::Es::new(0x0f, 0x101).language(*b"fra"),
                synth::Es::new(0x06, 0x102),
            ],
        ))
        .unwrap();
        assert_eq!(pmt.program_number, 1);
        assert_eq!(pmt.pcr_pid, 0x100);
        assert_eq!(pmt.streams.len(), 3);
        assert_eq!(pmt.streams[1].language, Some(*b"fra"));
        assert_eq!(pmt.streams[2].stream_type, 0x06);
    }

    #[test]
    fn bad_lengths_are_errors() {
        let mut pmt = synth::pmt_section(1, 0, &[synth::Es::new(0x1b, 0x100)]);
        // ES_info_length past the section.
        let n = pmt.len();
        pmt[n - 5] = 0x20;
        assert!(Pmt::parse(&pmt).is_err());
        assert!(Pat::parse(&[0; 11]).is_err());
        let mut pat = synth::pat_section(1, 0x1000, 0);
        pat[2] += 1;
        assert!(Pat::parse(&pat).is_err());
    }

    #[test]
    fn sections_spanning_packets_packed_and_stuffed() {
        let a = synth::pmt_section(1, 0, &[synth::Es::new(0x1b, 0x100); 40]);
        assert!(a.len() > 184);
        let b = synth::pat_section(1, 0x1000, 0);
        let mut stream = vec![0u8]; // pointer_field
        stream.extend_from_slice(&a);
        stream.extend_from_slice(&b);
        stream.extend_from_slice(&[0xff; 7]);
        let mut buf = SectionBuffer::new();
        let mut out = Vec::new();
        let (first, rest) = stream.split_at(184);
        assert_eq!(buf.push(true, first, &mut out), Dropped::default());
        assert!(out.is_empty());
        for piece in rest.chunks(184) {
            assert_eq!(buf.push(false, piece, &mut out), Dropped::default());
        }
        assert_eq!(out, vec![a.clone(), b.clone()]);
        // A new section start cuts one in progress short.
        let mut out = Vec::new();
        buf.push(true, &[0, a[0], a[1], a[2], a[3]], &mut out);
        let d = buf.push(true, &[0, b[0], b[1], b[2]], &mut out);
        assert_eq!(d.truncated, 1);
        // A pointer past the payload is invalid.
        assert_eq!(buf.push(true, &[9, 1, 2], &mut out).invalid, 1);
    }
}
