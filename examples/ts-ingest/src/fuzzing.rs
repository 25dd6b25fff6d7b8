//! Entry points for fuzz targets, and a synthetic stream builder for tests
//! and fuzz seeds. Not part of the API.

use sluice_sdk::plugin::{Event, IngestAdapter, SessionConfig, SessionError};

use crate::TsSession;
use crate::adts::{AdtsHeader, AdtsStream};
use crate::avc::AvcStream;
use crate::packet::{PACKET_SIZE, Packet};
use crate::pes::PesHeader;
use crate::psi::{Pat, Pmt, SectionBuffer};

/// Feeds `input` to `session` in pieces ending at `cuts` (and the end),
/// then closes it. Returns every event, in order, or the first error.
pub fn drive(
    session: &mut TsSession,
    input: &[u8],
    cuts: &[usize],
) -> Result<Vec<Event>, SessionError> {
    let mut events = Vec::new();
    let mut at = 0;
    for &end in cuts.iter().chain(std::iter::once(&input.len())) {
        let end = end.clamp(at, input.len());
        events.extend(session.feed(&input[at..end])?);
        at = end;
    }
    events.extend(session.close());
    Ok(events)
}

/// The configuration tests use: 1 MiB of PES, 8 tracks, stream `fuzz`.
pub fn config() -> SessionConfig {
    SessionConfig {
        remote_addr: "fuzz".into(),
        max_message_size: 1 << 20,
        max_tracks: 8,
        stream: "fuzz".into(),
    }
}

/// Feeds arbitrary bytes to a fresh session, cut every `data[0]` bytes.
pub fn session(data: &[u8]) {
    let Some((&k, data)) = data.split_first() else {
        return;
    };
    let step = usize::from(k).max(1);
    let cuts: Vec<usize> = (step..data.len()).step_by(step).collect();
    let mut s = TsSession::new(config());
    let _ = drive(&mut s, data, &cuts);
    let _ = s.close();
}

/// Feeds arbitrary bytes to the parsers the session uses, directly.
pub fn parsers(data: &[u8]) {
    for chunk in data.chunks_exact(PACKET_SIZE) {
        if let Some(p) = chunk.first_chunk::<PACKET_SIZE>() {
            let _ = Packet::parse(p);
        }
    }
    let _ = Pat::parse(data);
    let _ = Pmt::parse(data);
    let _ = PesHeader::parse(data);
    for at in 0..data.len().min(64) {
        let _ = AdtsHeader::parse(&data[at..]).map(|h| h.config());
    }
    let mut sections = SectionBuffer::new();
    let mut out = Vec::new();
    for (i, chunk) in data.chunks(184).enumerate() {
        sections.push(i == 0, chunk, &mut out);
    }
    let _ = AvcStream::new().access_unit(data);
    let mut audio = AdtsStream::new();
    let half = data.len() / 2;
    let _ = audio.frames(Some(0), &data[..half]);
    let _ = audio.frames(None, &data[half..]);
}

/// Synthetic transport streams, written by code.
pub mod synth {
    use std::collections::BTreeMap;

    use crate::packet::{PACKET_SIZE, SYNC_BYTE};
    use crate::psi::{TABLE_PAT, TABLE_PMT, crc32};

    /// The program number of [`stream`].
    pub const PROGRAM: u16 = 1;
    /// The PMT's PID.
    pub const PMT_PID: u16 = 0x1000;
    /// The H.264 stream's PID.
    pub const VIDEO_PID: u16 = 0x100;
    /// The AAC stream's PID.
    pub const AUDIO_PID: u16 = 0x101;
    /// A private data stream's PID (not taken).
    pub const DATA_PID: u16 = 0x102;
    /// 90 kHz ticks per video frame (25 fps).
    pub const FRAME_TICKS: u64 = 3600;
    /// 90 kHz ticks per AAC frame at 48 kHz.
    pub const AAC_TICKS: u64 = 1920;

    /// A long-form section with its CRC.
    fn section(table_id: u8, id: u16, version: u8, body: &[u8]) -> Vec<u8> {
        let length = 5 + body.len() + 4;
        let mut s = vec![table_id, 0xb0 | ((length >> 8) as u8 & 0x0f), length as u8];
        s.extend_from_slice(&id.to_be_bytes());
        s.push(0xc1 | ((version & 0x1f) << 1));
        s.extend_from_slice(&[0, 0]);
        s.extend_from_slice(body);
        let crc = crc32(&s);
        s.extend_from_slice(&crc.to_be_bytes());
        s
    }

    /// A PAT section listing one program.
    pub fn pat_section(program: u16, pmt_pid: u16, version: u8) -> Vec<u8> {
        let mut body = program.to_be_bytes().to_vec();
        body.extend_from_slice(&(0xe000 | pmt_pid).to_be_bytes());
        section(TABLE_PAT, 1, version, &body)
    }

    /// One elementary stream of a PMT.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Es {
        /// `stream_type`.
        pub stream_type: u8,
        /// `elementary_PID`.
        pub pid: u16,
        /// An ISO 639 language descriptor's code.
        pub language: Option<[u8; 3]>,
    }

    impl Es {
        /// A stream without descriptors.
        pub fn new(stream_type: u8, pid: u16) -> Self {
            Es {
                stream_type,
                pid,
                language: None,
            }
        }

        /// With a language descriptor.
        pub fn language(mut self, code: [u8; 3]) -> Self {
            self.language = Some(code);
            self
        }
    }

    /// A PMT section; the PCR is on the first stream's PID.
    pub fn pmt_section(program: u16, version: u8, streams: &[Es]) -> Vec<u8> {
        let pcr = streams.first().map_or(0x1fff, |e| e.pid);
        let mut body = (0xe000 | pcr).to_be_bytes().to_vec();
        body.extend_from_slice(&[0xf0, 0]);
        for e in streams {
            body.push(e.stream_type);
            body.extend_from_slice(&(0xe000 | e.pid).to_be_bytes());
            match e.language {
                Some(code) => {
                    body.extend_from_slice(&[0xf0, 6, 0x0a, 4]);
                    body.extend_from_slice(&code);
                    body.push(0);
                }
                None => body.extend_from_slice(&[0xf0, 0]),
            }
        }
        section(TABLE_PMT, program, version, &body)
    }

    fn timestamp(prefix: u8, t: u64) -> [u8; 5] {
        [
            (prefix << 4) | (((t >> 30) as u8 & 0x07) << 1) | 1,
            (t >> 22) as u8,
            (((t >> 15) as u8) << 1) | 1,
            (t >> 7) as u8,
            ((t as u8) << 1) | 1,
        ]
    }

    /// A PES packet; `bounded` writes its length (else 0, as video is).
    pub fn pes(
        stream_id: u8,
        pts: Option<u64>,
        dts: Option<u64>,
        payload: &[u8],
        bounded: bool,
    ) -> Vec<u8> {
        let mut fields = Vec::new();
        let flags = match (pts, dts) {
            (Some(p), Some(d)) => {
                fields.extend_from_slice(&timestamp(3, p));
                fields.extend_from_slice(&timestamp(1, d));
                0xc0
            }
            (Some(p), None) => {
                fields.extend_from_slice(&timestamp(2, p));
                0x80
            }
            _ => 0,
        };
        let length = if bounded {
            (3 + fields.len() + payload.len()).min(0xffff) as u16
        } else {
            0
        };
        let mut v = vec![0, 0, 1, stream_id];
        v.extend_from_slice(&length.to_be_bytes());
        v.extend_from_slice(&[0x84, flags, fields.len() as u8]);
        v.extend_from_slice(&fields);
        v.extend_from_slice(payload);
        v
    }

    /// Writes transport packets, counting continuity per PID.
    #[derive(Debug, Default)]
    pub struct Mux {
        out: Vec<u8>,
        cc: BTreeMap<u16, u8>,
    }

    impl Mux {
        /// An empty stream.
        pub fn new() -> Self {
            Mux::default()
        }

        /// One packet carrying `chunk` (at most 184 bytes), padded with
        /// an adaptation field.
        pub fn packet(&mut self, pid: u16, unit_start: bool, chunk: &[u8]) {
            let cc = self.cc.entry(pid).or_insert(0);
            let mut p = vec![
                SYNC_BYTE,
                (u8::from(unit_start) << 6) | ((pid >> 8) as u8 & 0x1f),
                pid as u8,
            ];
            let chunk = &chunk[..chunk.len().min(184)];
            let pad = 184 - chunk.len();
            if pad == 0 {
                p.push(0x10 | *cc);
            } else {
                p.push(0x30 | *cc);
                p.push((pad - 1) as u8);
                if pad > 1 {
                    p.push(0);
                    p.extend(std::iter::repeat_n(0xff, pad - 2));
                }
            }
            p.extend_from_slice(chunk);
            debug_assert_eq!(p.len(), PACKET_SIZE);
            *cc = (*cc + 1) & 0x0f;
            self.out.extend_from_slice(&p);
        }

        /// A PSI section (pointer field 0, stuffed with 0xff).
        pub fn psi(&mut self, pid: u16, section: &[u8]) {
            let mut data = vec![0];
            data.extend_from_slice(section);
            for (i, chunk) in data.chunks(184).enumerate() {
                let mut c = chunk.to_vec();
                c.resize(184, 0xff);
                self.packet(pid, i == 0, &c);
            }
        }

        /// A PES packet over as many packets as it takes.
        pub fn pes(&mut self, pid: u16, pes: &[u8]) {
            for (i, chunk) in pes.chunks(184).enumerate() {
                self.packet(pid, i == 0, chunk);
            }
        }

        /// Bytes as they are.
        pub fn raw(&mut self, bytes: &[u8]) {
            self.out.extend_from_slice(bytes);
        }

        /// The stream so far.
        pub fn bytes(&self) -> &[u8] {
            &self.out
        }

        /// The stream.
        pub fn into_bytes(self) -> Vec<u8> {
            self.out
        }
    }

    /// An MSB-first bit writer with Exp-Golomb codes.
    #[derive(Default)]
    struct Bits {
        bytes: Vec<u8>,
        used: u32,
    }

    impl Bits {
        fn put(&mut self, v: u32, n: u32) {
            for i in (0..n).rev() {
                if self.used.is_multiple_of(8) {
                    self.bytes.push(0);
                }
                if (v >> i) & 1 == 1
                    && let Some(last) = self.bytes.last_mut()
                {
                    *last |= 0x80 >> (self.used % 8);
                }
                self.used += 1;
            }
        }

        fn ue(&mut self, v: u32) {
            let x = u64::from(v) + 1;
            let len = 64 - x.leading_zeros();
            self.put(0, len - 1);
            for i in (0..len).rev() {
                self.put(((x >> i) & 1) as u32, 1);
            }
        }

        /// `rbsp_trailing_bits`, then emulation prevention.
        fn nal(mut self, header: u8) -> Vec<u8> {
            self.put(1, 1);
            while !self.used.is_multiple_of(8) {
                self.put(0, 1);
            }
            let mut out = vec![header];
            let mut zeros = 0;
            for b in self.bytes {
                if zeros >= 2 && b <= 3 {
                    out.push(3);
                    zeros = 0;
                }
                zeros = if b == 0 { zeros + 1 } else { 0 };
                out.push(b);
            }
            out
        }
    }

    /// A constrained baseline SPS (`avc1.42c01e`) of the given size.
    pub fn sps(width: u32, height: u32) -> Vec<u8> {
        let mut b = Bits::default();
        b.put(66, 8);
        b.put(0xc0, 8);
        b.put(30, 8);
        b.ue(0); // seq_parameter_set_id
        b.ue(0); // log2_max_frame_num_minus4
        b.ue(2); // pic_order_cnt_type
        b.ue(1); // max_num_ref_frames
        b.put(0, 1); // gaps_in_frame_num_value_allowed_flag
        let mbs_w = width.div_ceil(16).max(1);
        let mbs_h = height.div_ceil(16).max(1);
        b.ue(mbs_w - 1);
        b.ue(mbs_h - 1);
        b.put(1, 1); // frame_mbs_only_flag
        b.put(1, 1); // direct_8x8_inference_flag
        let (crop_w, crop_h) = (mbs_w * 16 - width, mbs_h * 16 - height);
        if crop_w > 0 || crop_h > 0 {
            b.put(1, 1);
            b.ue(0);
            b.ue(crop_w / 2);
            b.ue(0);
            b.ue(crop_h / 2);
        } else {
            b.put(0, 1);
        }
        b.put(0, 1); // vui_parameters_present_flag
        b.nal(0x67)
    }

    /// A PPS with the given id, for SPS 0.
    pub fn pps(id: u32) -> Vec<u8> {
        let mut b = Bits::default();
        b.ue(id);
        b.ue(0); // seq_parameter_set_id
        b.put(0, 2); // entropy_coding_mode_flag, bottom_field_pic_order…
        b.ue(0); // num_slice_groups_minus1
        b.ue(0); // num_ref_idx_l0_default_active_minus1
        b.ue(0); // num_ref_idx_l1_default_active_minus1
        b.put(0, 3); // weighted_pred_flag, weighted_bipred_idc
        b.ue(0); // pic_init_qp_minus26 (se 0)
        b.ue(0); // pic_init_qs_minus26
        b.ue(0); // chroma_qp_index_offset
        b.put(0b100, 3); // deblocking control, constrained intra, redundant
        b.nal(0x68)
    }

    /// A slice NAL unit (IDR or not) of `len` body bytes that never form
    /// a start code.
    pub fn slice(idr: bool, len: usize, seed: u8) -> Vec<u8> {
        let mut v = vec![if idr { 0x65 } else { 0x41 }];
        v.extend((0..len).map(|i| seed.wrapping_add((i as u8).wrapping_mul(7)) | 0x01));
        v
    }

    /// NAL units in Annex B form: a 4-byte start code, then 3-byte ones.
    pub fn annex_b(nals: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for (i, nal) in nals.iter().enumerate() {
            if i == 0 {
                v.push(0);
            }
            v.extend_from_slice(&[0, 0, 1]);
            v.extend_from_slice(nal);
        }
        v
    }

    /// An access unit as an encoder writes it: AUD, then on keyframes the
    /// SPS, PPS and an SEI, then one slice.
    pub fn access_unit(keyframe: bool, len: usize, seed: u8) -> Vec<u8> {
        let aud: &[u8] = &[0x09, 0xf0];
        let slice = slice(keyframe, len, seed);
        if keyframe {
            let (sps, pps) = (sps(320, 240), pps(0));
            annex_b(&[aud, &sps, &pps, &[0x06, 0x05, 0x01, 0x55, 0x80], &slice])
        } else {
            annex_b(&[aud, &slice])
        }
    }

    /// One ADTS frame: `object_type` 1..=4, `sf_index` into the sampling
    /// frequency table, `channels` the channel configuration, with a CRC
    /// when `crc`.
    pub fn adts_frame(
        object_type: u8,
        sf_index: u8,
        channels: u8,
        payload_len: usize,
        crc: bool,
        seed: u8,
    ) -> Vec<u8> {
        let header_len = if crc { 9 } else { 7 };
        let len = (header_len + payload_len).min(0x1fff);
        let mut v = vec![
            0xff,
            0xf0 | u8::from(!crc),
            ((object_type.wrapping_sub(1) & 3) << 6) | ((sf_index & 0x0f) << 2) | (channels >> 2),
            ((channels & 3) << 6) | ((len >> 11) as u8 & 0x03),
            (len >> 3) as u8,
            (((len & 7) as u8) << 5) | 0x1f,
            0xfc,
        ];
        if crc {
            v.extend_from_slice(&[0x12, 0x34]);
        }
        v.extend((0..len - header_len).map(|i| seed.wrapping_add(i as u8) & 0x7f));
        v
    }

    /// The PAT and PMT of [`stream`]: H.264 on [`VIDEO_PID`], AAC on
    /// [`AUDIO_PID`] (English), private data on [`DATA_PID`].
    pub fn tables(m: &mut Mux, version: u8) {
        m.psi(0, &pat_section(PROGRAM, PMT_PID, 0));
        m.psi(
            PMT_PID,
            &pmt_section(
                PROGRAM,
                version,
                &[
                    Es::new(0x1b, VIDEO_PID),
                    Es::new(0x0f, AUDIO_PID).language(*b"eng"),
                    Es::new(0x06, DATA_PID),
                ],
            ),
        );
    }

    /// The PAT and PMT packets alone.
    pub fn prelude() -> Vec<u8> {
        let mut m = Mux::new();
        tables(&mut m, 0);
        m.into_bytes()
    }

    /// Video decode order over presentation order: I0 P3 B1 B2 P6 B4 B5.
    pub const PRESENTATION: [u64; 7] = [0, 3, 1, 2, 6, 4, 5];

    /// Writes `frames` access units (a GOP of [`PRESENTATION`] order,
    /// repeated, keyframe first) and an audio PES of three 48 kHz stereo
    /// frames after every second one, times from `base` (90 kHz, wrapped
    /// to 33 bits).
    pub fn media(m: &mut Mux, base: u64, frames: usize) {
        let wrap = |t: u64| t & ((1 << 33) - 1);
        let mut audio = 0u64;
        for i in 0..frames {
            let gop = (i / PRESENTATION.len()) as u64 * PRESENTATION.len() as u64;
            let order = PRESENTATION[i % PRESENTATION.len()];
            let dts = base + i as u64 * FRAME_TICKS;
            let pts = base + (gop + order + 1) * FRAME_TICKS;
            let au = access_unit(i % PRESENTATION.len() == 0, 150 + 37 * (i % 5), i as u8);
            m.pes(
                VIDEO_PID,
                &pes(0xe0, Some(wrap(pts)), Some(wrap(dts)), &au, false),
            );
            if i % 2 == 0 {
                let mut payload = Vec::new();
                for k in 0..3 {
                    payload.extend_from_slice(&adts_frame(2, 3, 2, 20 + 3 * k, false, i as u8));
                }
                let t = base + FRAME_TICKS + audio * AAC_TICKS;
                m.pes(AUDIO_PID, &pes(0xc0, Some(wrap(t)), None, &payload, true));
                audio += 3;
            }
        }
    }

    /// A short stream: PAT, PMT, 7 video access units (one GOP with
    /// B-frames) and 4 audio PES of 3 frames each, times from 1 s on.
    pub fn stream() -> Vec<u8> {
        stream_at(90_000, 7)
    }

    /// [`stream`] with `frames` access units, times from `base`.
    pub fn stream_at(base: u64, frames: usize) -> Vec<u8> {
        let mut m = Mux::new();
        tables(&mut m, 0);
        media(&mut m, base, frames);
        m.into_bytes()
    }
}
