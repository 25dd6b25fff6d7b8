//! A small MPEG-2 transport stream muxer (ISO/IEC 13818-1): one program,
//! PAT/PMT once at the start, one PES per access unit, 188-byte packets.
//!
//! ```text
//!  PAT(pid 0) PMT(pid 0x1000) ─┬─ PES(video 0x100: PTS/DTS, PCR in the first packet)
//!                              └─ PES(audio 0x101: PTS)   interleaved as the caller orders them
//!
//!  packet: 47 | pusi pid | afc cc | [adaptation field: PCR, RAI, stuffing] | payload
//! ```
//!
//! Continuity counters: PAT and PMT start from a caller-given seed (the
//! segment's sequence number: one packet each per segment, so consecutive
//! segments continue each other). Elementary PIDs start at 0, and the last
//! PES of each PID in a segment is spread over extra packets (stuffing)
//! until its counter is back at 0, so each segment is reproducible on its
//! own *and* concatenated segments count on without a jump (ffmpeg's HLS
//! demuxer reads segments as one stream and flags a jump as corruption).
//! Work is linear in the payload: every byte goes into exactly one packet.

/// Bytes per transport packet.
pub const PACKET: usize = 188;
/// The PAT's PID.
pub const PAT_PID: u16 = 0;
/// The PMT's PID.
pub const PMT_PID: u16 = 0x1000;
/// Stream type of H.264 video.
pub const STREAM_TYPE_H264: u8 = 0x1b;
/// Stream type of AAC in ADTS.
pub const STREAM_TYPE_ADTS: u8 = 0x0f;
/// PES stream id of the first video stream.
pub const STREAM_ID_VIDEO: u8 = 0xe0;
/// PES stream id of the first audio stream.
pub const STREAM_ID_AUDIO: u8 = 0xc0;
/// Timestamps wrap at 33 bits.
pub const TIMESTAMP_MASK: u64 = (1 << 33) - 1;

/// The MPEG-2 CRC-32 of PSI sections: polynomial 0x04C11DB7, initial
/// value all ones, no reflection, no final XOR. Written here (a dozen
/// lines) rather than taking a crate for one table-less loop.
pub fn crc32_mpeg2(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// One elementary stream of the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stream {
    /// Its PID.
    pub pid: u16,
    /// PMT stream type.
    pub stream_type: u8,
    /// PES stream id.
    pub stream_id: u8,
}

/// A transport stream being written.
pub struct Muxer {
    out: Vec<u8>,
    streams: Vec<Stream>,
    pcr_pid: u16,
    /// Next continuity counter per PID: PAT, PMT, then `streams`.
    cc: Vec<(u16, u8)>,
}

impl Muxer {
    /// A muxer for one program of `streams`, PCR carried on `pcr_pid`,
    /// the PAT's and PMT's continuity counters starting at `table_cc & 15`,
    /// the elementary streams' at 0.
    pub fn new(streams: &[Stream], pcr_pid: u16, table_cc: u64) -> Muxer {
        let seed = (table_cc & 0x0f) as u8;
        let cc = [(PAT_PID, seed), (PMT_PID, seed)]
            .into_iter()
            .chain(streams.iter().map(|s| (s.pid, 0)))
            .collect();
        Muxer {
            out: Vec::new(),
            streams: streams.to_vec(),
            pcr_pid,
            cc,
        }
    }

    /// Reserves room for about `bytes` of payload.
    pub fn reserve(&mut self, bytes: usize) {
        self.out.reserve(bytes + bytes / 40 + 2 * PACKET);
    }

    fn cc_of(&self, pid: u16) -> u8 {
        self.cc
            .iter()
            .find(|(p, _)| *p == pid)
            .map_or(0, |(_, c)| *c)
    }

    fn next_cc(&mut self, pid: u16) -> u8 {
        match self.cc.iter_mut().find(|(p, _)| *p == pid) {
            Some((_, c)) => {
                let v = *c;
                *c = (v + 1) & 0x0f;
                v
            }
            None => 0,
        }
    }

    /// Writes the PAT and the PMT, one packet each.
    pub fn write_tables(&mut self) {
        // PAT: program 1 → PMT PID.
        let mut pat = vec![0x00, 0, 0, 0x00, 0x01, 0xc1, 0x00, 0x00, 0x00, 0x01];
        pat.extend_from_slice(&[0xe0 | (PMT_PID >> 8) as u8, PMT_PID as u8]);
        self.write_section(PAT_PID, pat);
        // PMT: PCR PID, no program descriptors, one entry per stream.
        let mut pmt = vec![0x02, 0, 0, 0x00, 0x01, 0xc1, 0x00, 0x00];
        pmt.extend_from_slice(&[
            0xe0 | (self.pcr_pid >> 8) as u8,
            self.pcr_pid as u8,
            0xf0,
            0x00,
        ]);
        for s in &self.streams {
            pmt.extend_from_slice(&[
                s.stream_type,
                0xe0 | (s.pid >> 8) as u8,
                s.pid as u8,
                0xf0,
                0x00,
            ]);
        }
        self.write_section(PMT_PID, pmt);
    }

    /// Completes a section (length, CRC) and writes it in one packet,
    /// padded with 0xff. Our sections are far below one packet.
    fn write_section(&mut self, pid: u16, mut section: Vec<u8>) {
        // section_length counts from after the length field through the CRC.
        let length = section.len() - 3 + 4;
        section[1] = 0xb0 | ((length >> 8) as u8 & 0x0f);
        section[2] = length as u8;
        let crc = crc32_mpeg2(&section);
        section.extend_from_slice(&crc.to_be_bytes());
        let cc = self.next_cc(pid);
        let start = self.out.len();
        self.out.extend_from_slice(&[
            0x47,
            0x40 | (pid >> 8) as u8 & 0x1f,
            pid as u8,
            0x10 | cc,
            0x00, // pointer_field
        ]);
        self.out.extend_from_slice(&section);
        self.out.resize(start + PACKET, 0xff);
    }

    /// Writes one access unit of `stream` as a PES packet. `pts`/`dts` in
    /// 90 kHz (wrapped to 33 bits here); `dts` is left out when equal to
    /// `pts`. `pcr` (90 kHz base) goes into the first packet's adaptation
    /// field, with the random access indicator when `keyframe`. `close`:
    /// the stream's last PES in this segment, padded (see the module docs)
    /// so the PID's continuity counter ends back at 0.
    #[allow(clippy::too_many_arguments)]
    pub fn write_pes(
        &mut self,
        stream: Stream,
        pts: u64,
        dts: u64,
        keyframe: bool,
        pcr: Option<u64>,
        data: &[u8],
        close: bool,
    ) {
        let (pts, dts) = (pts & TIMESTAMP_MASK, dts & TIMESTAMP_MASK);
        let with_dts = pts != dts;
        // A closing PES needs 33 bytes at least to be spread over enough
        // packets; a tiny one gets PES header stuffing (at most 32 bytes).
        let stuffing = if close {
            33usize.saturating_sub(9 + if with_dts { 10 } else { 5 } + data.len())
        } else {
            0
        };
        let header_len = if with_dts { 10 } else { 5 } + stuffing;
        let mut pes = Vec::with_capacity(9 + header_len);
        pes.extend_from_slice(&[0, 0, 1, stream.stream_id]);
        // PES_packet_length: 0 (unbounded) for video, or when it would not fit.
        let length = 3 + header_len + data.len();
        let length = if stream.stream_id & 0xf0 == STREAM_ID_VIDEO || length > 0xffff {
            0
        } else {
            length
        };
        pes.extend_from_slice(&(length as u16).to_be_bytes());
        pes.push(0x84); // '10', data_alignment_indicator
        pes.push(if with_dts { 0xc0 } else { 0x80 });
        pes.push(header_len as u8);
        timestamp(&mut pes, if with_dts { 0x3 } else { 0x2 }, pts);
        if with_dts {
            timestamp(&mut pes, 0x1, dts);
        }
        pes.resize(pes.len() + stuffing, 0xff);

        let first_af = AdaptationField {
            pcr: pcr.map(|p| p & TIMESTAMP_MASK),
            random_access: keyframe,
        };
        let total = pes.len() + data.len();
        // Bytes sent one per packet at the end, to land the counter on 0.
        let spread = if close {
            let cur = usize::from(self.cc_of(stream.pid));
            (0..32usize.min(total - 1))
                .find(|&e| (cur + packets_for(total - e, first_af.len()) + e).is_multiple_of(16))
        } else {
            None
        }
        .unwrap_or(0);
        let (data, tail) = if spread == 0 {
            (data, &[][..])
        } else if spread <= data.len() {
            data.split_at(data.len() - spread)
        } else {
            // Tiny payload: spread over the header too (rare; copy it).
            pes.extend_from_slice(data);
            let whole = std::mem::take(&mut pes);
            let (a, b) = whole.split_at(total - spread);
            self.write_packets(stream.pid, first_af, a, &[]);
            for byte in b.chunks(1) {
                let cc = self.next_cc(stream.pid);
                self.packet(stream.pid, false, cc, AdaptationField::default(), byte, &[]);
            }
            return;
        };
        self.write_packets(stream.pid, first_af, &pes, data);
        for byte in tail.chunks(1) {
            let cc = self.next_cc(stream.pid);
            self.packet(stream.pid, false, cc, AdaptationField::default(), byte, &[]);
        }
    }

    /// Packetizes `head` then `rest` (one PES), filling packets.
    fn write_packets(&mut self, pid: u16, first_af: AdaptationField, head: &[u8], rest: &[u8]) {
        let mut first = true;
        let (mut head, mut rest) = (head, rest);
        while first || !head.is_empty() || !rest.is_empty() {
            let cc = self.next_cc(pid);
            let af = if first {
                first_af
            } else {
                AdaptationField::default()
            };
            let (h, r) = self.packet(pid, first, cc, af, head, rest);
            head = &head[h..];
            rest = &rest[r..];
            first = false;
        }
    }

    /// Writes one packet of `pid` carrying as much of `a` then `b` as fits;
    /// returns how much of each it took. A short payload is padded with
    /// adaptation-field stuffing.
    fn packet(
        &mut self,
        pid: u16,
        start: bool,
        cc: u8,
        af: AdaptationField,
        a: &[u8],
        b: &[u8],
    ) -> (usize, usize) {
        let mut field: Vec<u8> = Vec::new(); // after the length byte
        let mut af_len = 0usize; // whole field, length byte included
        if af.pcr.is_some() || af.random_access {
            field.push(
                if af.random_access { 0x40 } else { 0 } | if af.pcr.is_some() { 0x10 } else { 0 },
            );
            if let Some(p) = af.pcr {
                field.extend_from_slice(&[
                    (p >> 25) as u8,
                    (p >> 17) as u8,
                    (p >> 9) as u8,
                    (p >> 1) as u8,
                    ((p & 1) as u8) << 7 | 0x7e,
                    0x00,
                ]);
            }
            af_len = 1 + field.len();
        }
        let space = PACKET - 4 - af_len;
        let available = a.len() + b.len();
        if available < space {
            let stuffing = space - available;
            if af_len == 0 {
                if stuffing >= 2 {
                    field.push(0x00);
                    field.resize(stuffing - 1, 0xff);
                }
                af_len = stuffing;
            } else {
                field.resize(field.len() + stuffing, 0xff);
                af_len += stuffing;
            }
        }
        let payload = PACKET - 4 - af_len;
        let control = match (af_len > 0, payload > 0) {
            (true, true) => 0x30,
            (true, false) => 0x20,
            _ => 0x10,
        };
        self.out.extend_from_slice(&[
            0x47,
            if start { 0x40 } else { 0 } | (pid >> 8) as u8 & 0x1f,
            pid as u8,
            control | cc,
        ]);
        if af_len > 0 {
            self.out.push((af_len - 1) as u8);
            self.out.extend_from_slice(&field);
        }
        let take_a = a.len().min(payload);
        let take_b = b.len().min(payload - take_a);
        self.out.extend_from_slice(&a[..take_a]);
        self.out.extend_from_slice(&b[..take_b]);
        (take_a, take_b)
    }

    /// The stream written so far.
    pub fn finish(self) -> Vec<u8> {
        self.out
    }
}

/// What goes into a packet's adaptation field besides stuffing.
#[derive(Debug, Clone, Copy, Default)]
struct AdaptationField {
    pcr: Option<u64>,
    random_access: bool,
}

impl AdaptationField {
    /// Bytes of the field, length byte included, before stuffing.
    fn len(&self) -> usize {
        match (self.pcr.is_some(), self.random_access) {
            (true, _) => 8,
            (false, true) => 2,
            (false, false) => 0,
        }
    }
}

/// Packets one PES of `len` bytes takes when the first packet's adaptation
/// field is `first_af` bytes.
fn packets_for(len: usize, first_af: usize) -> usize {
    let first = PACKET - 4 - first_af;
    1 + len.saturating_sub(first).div_ceil(PACKET - 4)
}

/// A 33-bit PTS or DTS with its 4-bit prefix and marker bits.
fn timestamp(out: &mut Vec<u8>, prefix: u8, ts: u64) {
    out.extend_from_slice(&[
        (prefix << 4) | (((ts >> 29) as u8) & 0x0e) | 1,
        (ts >> 22) as u8,
        (((ts >> 14) as u8) & 0xfe) | 1,
        (ts >> 7) as u8,
        (((ts << 1) as u8) & 0xfe) | 1,
    ]);
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const VIDEO: Stream = Stream {
        pid: 0x100,
        stream_type: STREAM_TYPE_H264,
        stream_id: STREAM_ID_VIDEO,
    };
    const AUDIO: Stream = Stream {
        pid: 0x101,
        stream_type: STREAM_TYPE_ADTS,
        stream_id: STREAM_ID_AUDIO,
    };

    /// One parsed transport packet.
    #[derive(Debug, Clone)]
    pub(crate) struct Packet {
        pub pid: u16,
        pub start: bool,
        pub cc: u8,
        pub has_payload: bool,
        pub pcr: Option<u64>,
        pub random_access: bool,
        pub payload: Vec<u8>,
    }

    /// Splits a stream into packets, checking the fixed fields.
    pub(crate) fn parse(ts: &[u8]) -> Vec<Packet> {
        assert_eq!(ts.len() % PACKET, 0, "whole packets");
        ts.chunks(PACKET)
            .map(|p| {
                assert_eq!(p[0], 0x47, "sync byte");
                assert_eq!(p[1] & 0x80, 0, "no transport error");
                let control = p[3] >> 4 & 3;
                assert_ne!(control, 0);
                let mut at = 4;
                let (mut pcr, mut random_access) = (None, false);
                if control & 2 != 0 {
                    let len = p[4] as usize;
                    assert!(len <= 183);
                    if len > 0 {
                        let flags = p[5];
                        random_access = flags & 0x40 != 0;
                        if flags & 0x10 != 0 {
                            let b = &p[6..12];
                            pcr = Some(
                                (u64::from(b[0]) << 25)
                                    | (u64::from(b[1]) << 17)
                                    | (u64::from(b[2]) << 9)
                                    | (u64::from(b[3]) << 1)
                                    | u64::from(b[4] >> 7),
                            );
                        }
                    }
                    at = 5 + len;
                }
                if control & 1 == 0 {
                    assert_eq!(at, PACKET, "adaptation only fills the packet");
                }
                Packet {
                    pid: (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]),
                    start: p[1] & 0x40 != 0,
                    cc: p[3] & 0x0f,
                    has_payload: control & 1 != 0,
                    pcr,
                    random_access,
                    payload: p[at..].to_vec(),
                }
            })
            .collect()
    }

    /// A reassembled PES: stream id, PTS, DTS, payload.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) struct Pes {
        pub pid: u16,
        pub stream_id: u8,
        pub pts: u64,
        pub dts: Option<u64>,
        pub data: Vec<u8>,
    }

    fn read_ts(b: &[u8]) -> u64 {
        assert_eq!(b[0] & 1, 1);
        assert_eq!(b[2] & 1, 1);
        assert_eq!(b[4] & 1, 1);
        (u64::from(b[0] >> 1 & 7) << 30)
            | (u64::from(b[1]) << 22)
            | (u64::from(b[2] >> 1) << 15)
            | (u64::from(b[3]) << 7)
            | u64::from(b[4] >> 1)
    }

    /// Reassembles the PES packets of every elementary PID, in order.
    pub(crate) fn pes(packets: &[Packet]) -> Vec<Pes> {
        let mut out: Vec<(u16, Vec<u8>)> = Vec::new();
        for p in packets
            .iter()
            .filter(|p| p.pid != PAT_PID && p.pid != PMT_PID)
        {
            if p.start {
                out.push((p.pid, Vec::new()));
            }
            let (_, buf) = out.iter_mut().rev().find(|(pid, _)| *pid == p.pid).unwrap();
            buf.extend_from_slice(&p.payload);
        }
        out.into_iter()
            .map(|(pid, b)| {
                assert_eq!(&b[..3], &[0, 0, 1]);
                let length = usize::from(u16::from_be_bytes([b[4], b[5]]));
                let flags = b[7];
                let header_len = b[8] as usize;
                let data = b[9 + header_len..].to_vec();
                if length != 0 {
                    assert_eq!(length, b.len() - 6, "PES_packet_length");
                }
                Pes {
                    pid,
                    stream_id: b[3],
                    pts: read_ts(&b[9..14]),
                    dts: (flags & 0x40 != 0).then(|| read_ts(&b[14..19])),
                    data,
                }
            })
            .collect()
    }

    /// Checks a section in a PSI packet: CRC over the whole section is 0
    /// when the CRC is included (MPEG-2 CRC property); returns the body.
    pub(crate) fn section(p: &Packet) -> Vec<u8> {
        assert!(p.start);
        let pointer = p.payload[0] as usize;
        let s = &p.payload[1 + pointer..];
        let len = (usize::from(s[1] & 0x0f) << 8) | usize::from(s[2]);
        let whole = &s[..3 + len];
        assert_eq!(crc32_mpeg2(whole), 0, "CRC");
        assert!(s[3 + len..].iter().all(|&b| b == 0xff), "padding");
        whole.to_vec()
    }

    #[test]
    fn closing_pads_any_size_back_to_counter_zero() {
        for n in [
            0usize, 1, 5, 20, 169, 170, 183, 184, 185, 367, 368, 1000, 5000,
        ] {
            for before in 0..3 {
                let mut m = Muxer::new(&[AUDIO], AUDIO.pid, 0);
                let data: Vec<u8> = (0..n).map(|i| i as u8).collect();
                for _ in 0..before {
                    m.write_pes(AUDIO, 1, 1, false, Some(1), &data, false);
                }
                m.write_pes(AUDIO, 9, 9, false, Some(9), &data, true);
                let packets = parse(&m.finish());
                assert_eq!(packets.len() % 16, 0, "{n} bytes after {before}");
                let units = pes(&packets);
                assert_eq!(units.len(), before + 1);
                assert!(units.iter().all(|u| u.data == data), "{n}");
                assert_eq!(units[before].pts, 9);
            }
        }
    }

    #[test]
    fn crc_matches_the_mpeg2_check_value() {
        assert_eq!(crc32_mpeg2(b"123456789"), 0x0376_e6e7);
        assert_eq!(crc32_mpeg2(b""), 0xffff_ffff);
        // A known PAT (program 1 → PMT 0x1000, ts id 1), as ffmpeg writes it.
        let pat = [
            0x00, 0xb0, 0x0d, 0x00, 0x01, 0xc1, 0x00, 0x00, 0x00, 0x01, 0xf0, 0x00,
        ];
        assert_eq!(crc32_mpeg2(&pat), 0x2ab1_04b2);
    }

    #[test]
    fn tables_describe_the_program() {
        let mut m = Muxer::new(&[VIDEO, AUDIO], VIDEO.pid, 5);
        m.write_tables();
        let ts = m.finish();
        let p = parse(&ts);
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].pid, p[0].cc), (PAT_PID, 5));
        assert_eq!((p[1].pid, p[1].cc), (PMT_PID, 5));
        let pat = section(&p[0]);
        assert_eq!(pat[0], 0x00);
        assert_eq!(&pat[8..12], &[0x00, 0x01, 0xf0, 0x00]);
        let pmt = section(&p[1]);
        assert_eq!(pmt[0], 0x02);
        assert_eq!(&pmt[8..10], &[0xe1, 0x00], "PCR PID");
        assert_eq!(
            &pmt[12..22],
            &[0x1b, 0xe1, 0x00, 0xf0, 0x00, 0x0f, 0xe1, 0x01, 0xf0, 0x00]
        );
    }

    #[test]
    fn pes_round_trip_with_stuffing_and_counters() {
        let mut m = Muxer::new(&[VIDEO, AUDIO], VIDEO.pid, 14);
        m.write_tables();
        let big: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let frames: Vec<Vec<u8>> = [0usize, 1, 2, 183, 184, 165, 166, 167, 400]
            .iter()
            .map(|&n| big[..n].to_vec())
            .collect();
        let wrap = (1u64 << 33) + 7;
        m.write_pes(VIDEO, wrap + 3000, wrap, true, Some(wrap), &big, false);
        for (i, f) in frames.iter().enumerate() {
            let t = 1000 * i as u64;
            let last = i + 1 == frames.len();
            m.write_pes(AUDIO, t, t, false, None, f, last);
            m.write_pes(VIDEO, t + 3600, t, false, Some(t), f, last);
        }
        let ts = m.finish();
        let packets = parse(&ts);

        // Counters rise by one per payload-carrying packet of each PID,
        // from 0, wrapping at 16, and close back on 0.
        for pid in [VIDEO.pid, AUDIO.pid] {
            let ccs: Vec<u8> = packets
                .iter()
                .filter(|p| p.pid == pid)
                .map(|p| {
                    assert!(p.has_payload);
                    p.cc
                })
                .collect();
            for (i, cc) in ccs.iter().enumerate() {
                assert_eq!(*cc as usize, i % 16, "pid {pid:#x}");
            }
            assert_eq!(ccs.len() % 16, 0, "pid {pid:#x} closes on 0");
        }
        // PCR only on video PES starts, with the random access flag on the
        // keyframe only.
        for p in &packets {
            assert_eq!(p.pcr.is_some(), p.pid == VIDEO.pid && p.start, "{p:?}");
        }
        let first_video = packets.iter().find(|p| p.pid == VIDEO.pid).unwrap();
        assert!(first_video.random_access);
        assert_eq!(first_video.pcr, Some(7));
        assert_eq!(
            packets.iter().filter(|p| p.random_access).count(),
            1,
            "one keyframe"
        );

        let pes = pes(&packets);
        assert_eq!(pes.len(), 1 + 2 * frames.len());
        assert_eq!(pes[0].data, big);
        assert_eq!((pes[0].pts, pes[0].dts), (3007, Some(7)), "33-bit wrap");
        assert_eq!(pes[0].stream_id, STREAM_ID_VIDEO);
        for (i, f) in frames.iter().enumerate() {
            let t = 1000 * i as u64;
            let (a, v) = (&pes[1 + 2 * i], &pes[2 + 2 * i]);
            assert_eq!((a.stream_id, a.pts, a.dts), (STREAM_ID_AUDIO, t, None));
            assert_eq!(&a.data, f, "audio {i}");
            assert_eq!((v.pts, v.dts), (t + 3600, Some(t)));
            assert_eq!(&v.data, f, "video {i}");
        }
    }
}
