//! H.264 / AVC: the `avcC` decoder configuration record (ISO/IEC 14496-15
//! 5.3.3), sequence parameter set parsing (ITU-T H.264 7.3.2.1), NAL unit
//! iteration and conversion between length-prefixed (ISO BMFF, FLV) and
//! Annex B (MPEG-TS) framing.
//!
//! ```text
//!   FLV AVC sequence header ─▶ AvcDecoderConfig::parse ─▶ codec_string(), sps() ─▶ Sps
//!   FLV AVC NALU packet ─▶ NalUnits (length-prefixed) ─▶ to_annex_b ─▶ TS packager
//! ```

use std::fmt;

/// Errors of H.264 parsing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum H264Error {
    /// The input ends inside a structure.
    #[error("H.264 {0} truncated")]
    Truncated(&'static str),
    /// A field holds a value the specification does not allow.
    #[error("invalid H.264 {0}")]
    Invalid(&'static str),
    /// Valid but not handled here.
    #[error("unsupported H.264 {0}")]
    Unsupported(&'static str),
}

/// Result of H.264 parsing.
pub type Result<T> = std::result::Result<T, H264Error>;

impl From<H264Error> for crate::plugin::SessionError {
    fn from(e: H264Error) -> Self {
        match e {
            H264Error::Unsupported(_) => Self::Unsupported(e.to_string()),
            _ => Self::Malformed(e.to_string()),
        }
    }
}

/// NAL unit types (H.264 table 7-1) this crate names.
pub mod nal_type {
    /// Coded slice of a non-IDR picture.
    pub const SLICE: u8 = 1;
    /// Coded slice of an IDR picture.
    pub const IDR: u8 = 5;
    /// Supplemental enhancement information.
    pub const SEI: u8 = 6;
    /// Sequence parameter set.
    pub const SPS: u8 = 7;
    /// Picture parameter set.
    pub const PPS: u8 = 8;
    /// Access unit delimiter.
    pub const AUD: u8 = 9;
    /// End of sequence.
    pub const END_OF_SEQUENCE: u8 = 10;
    /// End of stream.
    pub const END_OF_STREAM: u8 = 11;
    /// Filler data.
    pub const FILLER: u8 = 12;
    /// Sequence parameter set extension.
    pub const SPS_EXT: u8 = 13;
}

/// The type of a NAL unit (the low 5 bits of its first byte).
pub fn nal_unit_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|b| b & 0x1f)
}

// ---------------------------------------------------------------------------
// Bit reading (shared with the AAC module).

/// The bit reader ran past the end of its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BitsExhausted;

/// An MSB-first bit reader with Exp-Golomb codes.
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    /// Position in bits.
    pos: usize,
}

impl<'a> BitReader<'a> {
    /// A reader at the first bit of `data`.
    pub(crate) fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos: 0 }
    }

    /// Bits not yet read.
    pub(crate) fn bits_left(&self) -> usize {
        self.data.len() * 8 - self.pos
    }

    /// One bit.
    pub(crate) fn bit(&mut self) -> std::result::Result<bool, BitsExhausted> {
        let byte = self.data.get(self.pos / 8).ok_or(BitsExhausted)?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Ok(bit == 1)
    }

    /// `n` bits (at most 32) as an unsigned number.
    pub(crate) fn bits(&mut self, n: u32) -> std::result::Result<u32, BitsExhausted> {
        debug_assert!(n <= 32);
        if self.bits_left() < n as usize {
            return Err(BitsExhausted);
        }
        let mut v: u64 = 0;
        for _ in 0..n {
            v = (v << 1) | u64::from(self.bit()?);
        }
        Ok(v as u32)
    }

    /// Skips `n` bits.
    pub(crate) fn skip(&mut self, n: usize) -> std::result::Result<(), BitsExhausted> {
        if self.bits_left() < n {
            return Err(BitsExhausted);
        }
        self.pos += n;
        Ok(())
    }

    /// Skips to the next byte boundary.
    pub(crate) fn byte_align(&mut self) {
        self.pos = self.pos.div_ceil(8) * 8;
    }

    /// An unsigned Exp-Golomb code, `ue(v)`.
    pub(crate) fn ue(&mut self) -> std::result::Result<u32, BitsExhausted> {
        let mut zeros = 0u32;
        while !self.bit()? {
            zeros += 1;
            if zeros > 31 {
                // Longer codes do not fit in 32 bits; treat as garbage.
                return Err(BitsExhausted);
            }
        }
        let rest = self.bits(zeros)?;
        Ok((((1u64 << zeros) - 1) + u64::from(rest)).min(u64::from(u32::MAX)) as u32)
    }

    /// A signed Exp-Golomb code, `se(v)`.
    pub(crate) fn se(&mut self) -> std::result::Result<i32, BitsExhausted> {
        let k = i64::from(self.ue()?);
        let v = if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) };
        Ok(v as i32)
    }
}

/// Removes emulation prevention bytes (`00 00 03` → `00 00`), giving the
/// raw byte sequence payload of a NAL unit.
pub fn to_rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0usize;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        if b == 0 {
            zeros += 1;
        } else {
            zeros = 0;
        }
        out.push(b);
    }
    out
}

// ---------------------------------------------------------------------------
// Sequence parameter set.

/// Frame timing from the VUI (`time_scale / (2 * num_units_in_tick)` frames
/// per second for progressive content).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VuiTiming {
    /// `num_units_in_tick`.
    pub num_units_in_tick: u32,
    /// `time_scale`.
    pub time_scale: u32,
    /// `fixed_frame_rate_flag`.
    pub fixed_frame_rate: bool,
}

/// The fields of a sequence parameter set that packagers and players need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sps {
    /// `profile_idc` (66 baseline, 77 main, 100 high, ...).
    pub profile_idc: u8,
    /// The constraint flags byte (`constraint_set0_flag` in the top bit).
    pub constraint_flags: u8,
    /// `level_idc` (level × 10).
    pub level_idc: u8,
    /// `seq_parameter_set_id`.
    pub id: u32,
    /// `chroma_format_idc` (1 = 4:2:0 unless the profile says otherwise).
    pub chroma_format_idc: u32,
    /// `separate_colour_plane_flag`.
    pub separate_colour_plane: bool,
    /// Luma bit depth.
    pub bit_depth_luma: u8,
    /// Chroma bit depth.
    pub bit_depth_chroma: u8,
    /// `log2_max_frame_num_minus4 + 4`.
    pub log2_max_frame_num: u8,
    /// `pic_order_cnt_type`.
    pub pic_order_cnt_type: u32,
    /// `max_num_ref_frames`.
    pub max_num_ref_frames: u32,
    /// `frame_mbs_only_flag`: false for interlaced-capable streams.
    pub frame_mbs_only: bool,
    /// Displayed width in pixels (after frame cropping).
    pub width: u32,
    /// Displayed height in pixels (after frame cropping).
    pub height: u32,
    /// Sample aspect ratio from the VUI, when signalled.
    pub sample_aspect_ratio: Option<(u16, u16)>,
    /// Timing from the VUI, when signalled.
    pub timing: Option<VuiTiming>,
}

/// `profile_idc` values whose SPS carries chroma format and bit depths.
fn has_chroma_info(profile_idc: u8) -> bool {
    matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    )
}

/// Sample aspect ratios for `aspect_ratio_idc` 1..=16 (table E-1).
const SAR_TABLE: [(u16, u16); 16] = [
    (1, 1),
    (12, 11),
    (10, 11),
    (16, 11),
    (40, 33),
    (24, 11),
    (20, 11),
    (32, 11),
    (80, 33),
    (18, 11),
    (15, 11),
    (64, 33),
    (160, 99),
    (4, 3),
    (3, 2),
    (2, 1),
];

impl Sps {
    /// Parses an SPS NAL unit (starting with its NAL header byte, with
    /// emulation prevention bytes still in place).
    pub fn parse(nal: &[u8]) -> Result<Sps> {
        if nal_unit_type(nal) != Some(nal_type::SPS) {
            return Err(H264Error::Invalid("SPS NAL unit type"));
        }
        let rbsp = to_rbsp(&nal[1..]);
        let t = |_| H264Error::Truncated("SPS");
        let mut r = BitReader::new(&rbsp);
        let profile_idc = r.bits(8).map_err(t)? as u8;
        let constraint_flags = r.bits(8).map_err(t)? as u8;
        let level_idc = r.bits(8).map_err(t)? as u8;
        let id = r.ue().map_err(t)?;
        if id > 31 {
            return Err(H264Error::Invalid("seq_parameter_set_id"));
        }
        let mut chroma_format_idc = 1;
        let mut separate_colour_plane = false;
        let mut bit_depth_luma = 8;
        let mut bit_depth_chroma = 8;
        if has_chroma_info(profile_idc) {
            chroma_format_idc = r.ue().map_err(t)?;
            if chroma_format_idc > 3 {
                return Err(H264Error::Invalid("chroma_format_idc"));
            }
            if chroma_format_idc == 3 {
                separate_colour_plane = r.bit().map_err(t)?;
            }
            let luma = r.ue().map_err(t)?;
            let chroma = r.ue().map_err(t)?;
            if luma > 6 || chroma > 6 {
                return Err(H264Error::Invalid("bit depth"));
            }
            bit_depth_luma = 8 + luma as u8;
            bit_depth_chroma = 8 + chroma as u8;
            let _qpprime_y_zero_transform_bypass = r.bit().map_err(t)?;
            if r.bit().map_err(t)? {
                let lists = if chroma_format_idc == 3 { 12 } else { 8 };
                for i in 0..lists {
                    if r.bit().map_err(t)? {
                        skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 }).map_err(t)?;
                    }
                }
            }
        }
        let log2_max_frame_num_minus4 = r.ue().map_err(t)?;
        if log2_max_frame_num_minus4 > 12 {
            return Err(H264Error::Invalid("log2_max_frame_num_minus4"));
        }
        let pic_order_cnt_type = r.ue().map_err(t)?;
        match pic_order_cnt_type {
            0 => {
                if r.ue().map_err(t)? > 12 {
                    return Err(H264Error::Invalid("log2_max_pic_order_cnt_lsb_minus4"));
                }
            }
            1 => {
                let _delta_pic_order_always_zero = r.bit().map_err(t)?;
                let _offset_for_non_ref_pic = r.se().map_err(t)?;
                let _offset_for_top_to_bottom_field = r.se().map_err(t)?;
                let cycle = r.ue().map_err(t)?;
                if cycle > 255 {
                    return Err(H264Error::Invalid("num_ref_frames_in_pic_order_cnt_cycle"));
                }
                for _ in 0..cycle {
                    r.se().map_err(t)?;
                }
            }
            2 => {}
            _ => return Err(H264Error::Invalid("pic_order_cnt_type")),
        }
        let max_num_ref_frames = r.ue().map_err(t)?;
        let _gaps_in_frame_num_allowed = r.bit().map_err(t)?;
        let width_mbs = u64::from(r.ue().map_err(t)?) + 1;
        let height_map_units = u64::from(r.ue().map_err(t)?) + 1;
        let frame_mbs_only = r.bit().map_err(t)?;
        if !frame_mbs_only {
            let _mb_adaptive_frame_field = r.bit().map_err(t)?;
        }
        let _direct_8x8_inference = r.bit().map_err(t)?;
        let mut crop = [0u64; 4];
        if r.bit().map_err(t)? {
            for c in &mut crop {
                *c = u64::from(r.ue().map_err(t)?);
            }
        }
        let field_factor: u64 = if frame_mbs_only { 1 } else { 2 };
        let chroma_array_type = if separate_colour_plane {
            0
        } else {
            chroma_format_idc
        };
        let (crop_x, crop_y) = match chroma_array_type {
            0 => (1, field_factor),
            1 => (2, 2 * field_factor),
            2 => (2, field_factor),
            _ => (1, field_factor),
        };
        let coded_w = width_mbs * 16;
        let coded_h = field_factor * height_map_units * 16;
        let cut_w = (crop[0] + crop[1]) * crop_x;
        let cut_h = (crop[2] + crop[3]) * crop_y;
        if cut_w >= coded_w || cut_h >= coded_h {
            return Err(H264Error::Invalid("frame cropping"));
        }
        let width =
            u32::try_from(coded_w - cut_w).map_err(|_| H264Error::Invalid("picture width"))?;
        let height =
            u32::try_from(coded_h - cut_h).map_err(|_| H264Error::Invalid("picture height"))?;

        let mut sps = Sps {
            profile_idc,
            constraint_flags,
            level_idc,
            id,
            chroma_format_idc,
            separate_colour_plane,
            bit_depth_luma,
            bit_depth_chroma,
            log2_max_frame_num: log2_max_frame_num_minus4 as u8 + 4,
            pic_order_cnt_type,
            max_num_ref_frames,
            frame_mbs_only,
            width,
            height,
            sample_aspect_ratio: None,
            timing: None,
        };
        // The VUI is optional information: a damaged one loses only itself.
        if r.bit().unwrap_or(false) {
            let _ = parse_vui(&mut r, &mut sps);
        }
        Ok(sps)
    }

    /// Frames per second as a reduced fraction, from the VUI timing
    /// (`time_scale / (2 * num_units_in_tick)`), when signalled.
    pub fn frame_rate(&self) -> Option<(u32, u32)> {
        let t = self.timing?;
        if t.num_units_in_tick == 0 || t.time_scale == 0 {
            return None;
        }
        let num = u64::from(t.time_scale);
        let den = 2 * u64::from(t.num_units_in_tick);
        let g = gcd(num, den);
        Some((u32::try_from(num / g).ok()?, u32::try_from(den / g).ok()?))
    }

    /// The RFC 6381 codec string, `avc1.PPCCLL`.
    pub fn codec_string(&self) -> String {
        format!(
            "avc1.{:02x}{:02x}{:02x}",
            self.profile_idc, self.constraint_flags, self.level_idc
        )
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.max(1)
}

fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> std::result::Result<(), BitsExhausted> {
    let mut last: i32 = 8;
    let mut next: i32 = 8;
    for _ in 0..size {
        if next != 0 {
            // delta_scale is -128..=127 in a valid stream; any se(v) value
            // (up to ±2^31) must not overflow.
            let delta = r.se()?;
            next = (i64::from(last) + i64::from(delta)).rem_euclid(256) as i32;
        }
        if next != 0 {
            last = next;
        }
    }
    Ok(())
}

fn parse_vui(r: &mut BitReader<'_>, sps: &mut Sps) -> std::result::Result<(), BitsExhausted> {
    if r.bit()? {
        let idc = r.bits(8)?;
        if idc == 255 {
            let w = r.bits(16)? as u16;
            let h = r.bits(16)? as u16;
            if w != 0 && h != 0 {
                sps.sample_aspect_ratio = Some((w, h));
            }
        } else if (1..=16).contains(&idc) {
            sps.sample_aspect_ratio = Some(SAR_TABLE[idc as usize - 1]);
        }
    }
    if r.bit()? {
        let _overscan_appropriate = r.bit()?;
    }
    if r.bit()? {
        let _video_format = r.bits(3)?;
        let _full_range = r.bit()?;
        if r.bit()? {
            r.skip(24)?;
        }
    }
    if r.bit()? {
        r.ue()?;
        r.ue()?;
    }
    if r.bit()? {
        let num_units_in_tick = r.bits(32)?;
        let time_scale = r.bits(32)?;
        let fixed_frame_rate = r.bit()?;
        sps.timing = Some(VuiTiming {
            num_units_in_tick,
            time_scale,
            fixed_frame_rate,
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// avcC.

/// The high-profile extension of the `avcC` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcConfigExt {
    /// `chroma_format` (2 bits).
    pub chroma_format: u8,
    /// `bit_depth_luma_minus8` (3 bits).
    pub bit_depth_luma_minus8: u8,
    /// `bit_depth_chroma_minus8` (3 bits).
    pub bit_depth_chroma_minus8: u8,
    /// Sequence parameter set extension NAL units.
    pub sps_ext: Vec<Vec<u8>>,
}

/// The `AVCDecoderConfigurationRecord` (`avcC` box payload, FLV AVC
/// sequence header body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcDecoderConfig {
    /// `AVCProfileIndication`.
    pub profile: u8,
    /// `profile_compatibility`.
    pub compatibility: u8,
    /// `AVCLevelIndication`.
    pub level: u8,
    /// Bytes in each NAL unit length prefix of the samples (1, 2 or 4).
    pub nal_length_size: u8,
    /// Sequence parameter set NAL units.
    pub sps: Vec<Vec<u8>>,
    /// Picture parameter set NAL units.
    pub pps: Vec<Vec<u8>>,
    /// High-profile extension, when present.
    pub ext: Option<AvcConfigExt>,
}

struct ByteReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> ByteReader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.data.len() - self.pos < n {
            return Err(H264Error::Truncated("avcC"));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn nal_list(&mut self, count: usize) -> Result<Vec<Vec<u8>>> {
        // Each entry takes at least its two length bytes.
        if count * 2 > self.data.len() - self.pos {
            return Err(H264Error::Truncated("avcC"));
        }
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let len = self.take(2)?;
            let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
            out.push(self.take(len)?.to_vec());
        }
        Ok(out)
    }
}

impl AvcDecoderConfig {
    /// Parses an `avcC` payload. Bytes after the record are ignored (some
    /// encoders pad it), and a damaged high-profile extension is dropped.
    pub fn parse(data: &[u8]) -> Result<AvcDecoderConfig> {
        let mut r = ByteReader { data, pos: 0 };
        let version = r.u8()?;
        if version != 1 {
            return Err(H264Error::Unsupported("avcC configuration version"));
        }
        let profile = r.u8()?;
        let compatibility = r.u8()?;
        let level = r.u8()?;
        let nal_length_size = (r.u8()? & 0x03) + 1;
        if nal_length_size == 3 {
            return Err(H264Error::Invalid("avcC NAL length size 3"));
        }
        let num_sps = usize::from(r.u8()? & 0x1f);
        let sps = r.nal_list(num_sps)?;
        let num_pps = usize::from(r.u8()?);
        let pps = r.nal_list(num_pps)?;
        let ext = if matches!(profile, 100 | 110 | 122 | 144) && r.data.len() - r.pos >= 4 {
            let mut parse_ext = || -> Result<AvcConfigExt> {
                let chroma_format = r.u8()? & 0x03;
                let bit_depth_luma_minus8 = r.u8()? & 0x07;
                let bit_depth_chroma_minus8 = r.u8()? & 0x07;
                let n = usize::from(r.u8()?);
                let sps_ext = r.nal_list(n)?;
                Ok(AvcConfigExt {
                    chroma_format,
                    bit_depth_luma_minus8,
                    bit_depth_chroma_minus8,
                    sps_ext,
                })
            };
            parse_ext().ok()
        } else {
            None
        };
        Ok(AvcDecoderConfig {
            profile,
            compatibility,
            level,
            nal_length_size,
            sps,
            pps,
            ext,
        })
    }

    /// Builds a record from parameter sets (as found in an Annex B stream),
    /// with 4-byte NAL lengths.
    pub fn from_parameter_sets(sps: Vec<Vec<u8>>, pps: Vec<Vec<u8>>) -> Result<Self> {
        let first = sps.first().ok_or(H264Error::Invalid("no SPS"))?;
        let parsed = Sps::parse(first)?;
        if sps.len() > 31 || pps.len() > 255 {
            return Err(H264Error::Invalid("parameter set count"));
        }
        if sps
            .iter()
            .chain(&pps)
            .any(|p| p.len() > usize::from(u16::MAX))
        {
            return Err(H264Error::Invalid("parameter set length"));
        }
        let ext = matches!(parsed.profile_idc, 100 | 110 | 122 | 144).then(|| AvcConfigExt {
            chroma_format: parsed.chroma_format_idc as u8,
            bit_depth_luma_minus8: parsed.bit_depth_luma - 8,
            bit_depth_chroma_minus8: parsed.bit_depth_chroma - 8,
            sps_ext: Vec::new(),
        });
        Ok(AvcDecoderConfig {
            profile: parsed.profile_idc,
            compatibility: parsed.constraint_flags,
            level: parsed.level_idc,
            nal_length_size: 4,
            sps,
            pps,
            ext,
        })
    }

    /// Appends the record to `out`. Lists longer than the format allows
    /// (31 SPS, 255 PPS, 65535-byte units) are cut.
    pub fn write(&self, out: &mut Vec<u8>) {
        fn list(out: &mut Vec<u8>, items: &[Vec<u8>]) {
            for p in items {
                let len = p.len().min(usize::from(u16::MAX));
                out.extend_from_slice(&(len as u16).to_be_bytes());
                out.extend_from_slice(&p[..len]);
            }
        }
        out.push(1);
        out.push(self.profile);
        out.push(self.compatibility);
        out.push(self.level);
        out.push(0xfc | (self.nal_length_size.clamp(1, 4) - 1));
        let sps = &self.sps[..self.sps.len().min(31)];
        out.push(0xe0 | sps.len() as u8);
        list(out, sps);
        let pps = &self.pps[..self.pps.len().min(255)];
        out.push(pps.len() as u8);
        list(out, pps);
        if let Some(ext) = &self.ext {
            out.push(0xfc | (ext.chroma_format & 0x03));
            out.push(0xf8 | (ext.bit_depth_luma_minus8 & 0x07));
            out.push(0xf8 | (ext.bit_depth_chroma_minus8 & 0x07));
            let sps_ext = &ext.sps_ext[..ext.sps_ext.len().min(255)];
            out.push(sps_ext.len() as u8);
            list(out, sps_ext);
        }
    }

    /// The record as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out);
        out
    }

    /// The RFC 6381 codec string, `avc1.PPCCLL`, from the record's header.
    pub fn codec_string(&self) -> String {
        format!(
            "avc1.{:02x}{:02x}{:02x}",
            self.profile, self.compatibility, self.level
        )
    }

    /// Parses the first SPS.
    pub fn parse_sps(&self) -> Result<Sps> {
        Sps::parse(self.sps.first().ok_or(H264Error::Invalid("no SPS"))?)
    }

    /// Appends the SPS and PPS units in Annex B form (4-byte start codes),
    /// as a TS packager puts them before each IDR picture.
    pub fn write_parameter_sets_annex_b(&self, out: &mut Vec<u8>) {
        for p in self.sps.iter().chain(&self.pps) {
            out.extend_from_slice(&[0, 0, 0, 1]);
            out.extend_from_slice(p);
        }
    }
}

impl fmt::Display for AvcDecoderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} SPS, {} PPS, {}-byte lengths)",
            self.codec_string(),
            self.sps.len(),
            self.pps.len(),
            self.nal_length_size
        )
    }
}

// ---------------------------------------------------------------------------
// NAL unit framing.

/// NAL units of a length-prefixed sample (ISO BMFF / FLV form).
///
/// Yields an error, then stops, when a length runs past the end.
#[derive(Debug, Clone)]
pub struct NalUnits<'a> {
    data: &'a [u8],
    length_size: usize,
    failed: bool,
}

/// Iterates the NAL units of `data`, each prefixed by a big-endian length
/// of `length_size` bytes (1 to 4).
pub fn nal_units(data: &[u8], length_size: u8) -> NalUnits<'_> {
    NalUnits {
        data,
        length_size: usize::from(length_size.clamp(1, 4)),
        failed: false,
    }
}

impl<'a> Iterator for NalUnits<'a> {
    type Item = Result<&'a [u8]>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.data.is_empty() || self.failed {
            return None;
        }
        if self.data.len() < self.length_size {
            self.failed = true;
            return Some(Err(H264Error::Truncated("NAL unit length")));
        }
        let (len_bytes, rest) = self.data.split_at(self.length_size);
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        if len > rest.len() {
            self.failed = true;
            return Some(Err(H264Error::Truncated("NAL unit")));
        }
        let (nal, rest) = rest.split_at(len);
        self.data = rest;
        Some(Ok(nal))
    }
}

/// Rewrites length-prefixed NAL units with `from` -byte lengths to 4-byte
/// lengths (the form Sluice samples use), appending to `out`.
pub fn to_length_size_4(data: &[u8], from: u8, out: &mut Vec<u8>) -> Result<()> {
    out.reserve(data.len() + data.len() / 2);
    for nal in nal_units(data, from) {
        let nal = nal?;
        let len = u32::try_from(nal.len()).map_err(|_| H264Error::Invalid("NAL unit length"))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(nal);
    }
    Ok(())
}

/// Converts length-prefixed NAL units to Annex B (4-byte start codes),
/// appending to `out`.
pub fn to_annex_b(data: &[u8], length_size: u8, out: &mut Vec<u8>) -> Result<()> {
    out.reserve(data.len());
    for nal in nal_units(data, length_size) {
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal?);
    }
    Ok(())
}

/// NAL units of an Annex B byte stream (start codes `00 00 01` or
/// `00 00 00 01`); trailing zero bytes of each unit are dropped.
#[derive(Debug, Clone)]
pub struct AnnexBUnits<'a> {
    rest: &'a [u8],
}

/// Iterates the NAL units of an Annex B byte stream. Bytes before the
/// first start code are skipped.
pub fn annex_b_units(data: &[u8]) -> AnnexBUnits<'_> {
    let rest = match find_start_code(data) {
        Some((_, after)) => &data[after..],
        None => &[],
    };
    AnnexBUnits { rest }
}

/// Finds the next `00 00 01`; returns its offset and the offset after it.
fn find_start_code(data: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i + 2] > 1 {
            i += 3;
        } else if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            return Some((i, i + 3));
        } else {
            i += 1;
        }
    }
    None
}

impl<'a> Iterator for AnnexBUnits<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let (unit, rest) = match find_start_code(self.rest) {
                Some((at, after)) => (&self.rest[..at], &self.rest[after..]),
                None => (self.rest, &[][..]),
            };
            self.rest = rest;
            let mut end = unit.len();
            while end > 0 && unit[end - 1] == 0 {
                end -= 1;
            }
            if end > 0 {
                return Some(&unit[..end]);
            }
        }
    }
}

/// Converts an Annex B byte stream to 4-byte length-prefixed NAL units,
/// appending to `out`.
pub fn annex_b_to_length_prefixed(data: &[u8], out: &mut Vec<u8>) {
    out.reserve(data.len());
    for nal in annex_b_units(data) {
        // A unit cannot exceed the input, which fits in memory; cap anyway.
        let len = u32::try_from(nal.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(nal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_list_deltas_out_of_range_do_not_overflow() {
        // Found by the flv_tags fuzz target: se(v) = 2^31 - 1 as the first
        // delta_scale (ue 2^32 - 3: 31 zeros, a one, 31 bits 1…10), then
        // nothing. It used to overflow `last + delta`.
        let mut r = BitReader::new(&[0, 0, 0, 1, 0xff, 0xff, 0xff, 0xfd]);
        assert_eq!(r.se(), Ok(i32::MAX));
        let mut r = BitReader::new(&[0, 0, 0, 1, 0xff, 0xff, 0xff, 0xfd]);
        assert_eq!(skip_scaling_list(&mut r, 16), Err(BitsExhausted));
        // A valid list of one delta reads to its end.
        let mut r = BitReader::new(&[0b0101_0000]); // se(v) = 1
        assert_eq!(skip_scaling_list(&mut r, 1), Ok(()));
    }

    /// x264 High profile SPS, 640x360 (coded 640x368, cropped), 30 fps
    /// (`ffmpeg -f lavfi -i testsrc2=s=640x360:r=30 -c:v libx264 -profile:v high`).
    pub(crate) const SPS_HIGH_640X360: &[u8] = &[
        0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03,
        0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x0f, 0x16, 0x2d, 0x96,
    ];
    pub(crate) const PPS_HIGH: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];
    /// x264 constrained baseline SPS, 320x240 at 25 fps.
    const SPS_BASELINE_320X240: &[u8] = &[
        0x67, 0x42, 0xc0, 0x0d, 0xd9, 0x01, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10,
        0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x42, 0xa4, 0x80,
    ];

    #[test]
    fn exp_golomb() {
        // 1 | 010 | 011 | 00100 | 00101 → ue 0,1,2,3,4
        let data = [0b1010_0110, 0b0100_0010, 0b1000_0000];
        let mut r = BitReader::new(&data);
        assert_eq!(r.ue(), Ok(0));
        assert_eq!(r.ue(), Ok(1));
        assert_eq!(r.ue(), Ok(2));
        assert_eq!(r.ue(), Ok(3));
        assert_eq!(r.ue(), Ok(4));
        let data = [0b0100_1110];
        let mut r = BitReader::new(&data);
        assert_eq!(r.se(), Ok(1));
        assert_eq!(r.se(), Ok(-1));
        assert_eq!(r.se(), Ok(0));
        // All zeros never ends.
        let mut r = BitReader::new(&[0u8; 8]);
        assert_eq!(r.ue(), Err(BitsExhausted));
    }

    #[test]
    fn rbsp_removes_emulation_prevention() {
        assert_eq!(
            to_rbsp(&[0, 0, 3, 1, 0, 0, 3, 0, 0, 3]),
            vec![0, 0, 1, 0, 0, 0, 0]
        );
    }

    #[test]
    fn parses_x264_high_sps() {
        let sps = Sps::parse(SPS_HIGH_640X360).expect("parses");
        assert_eq!(sps.profile_idc, 100);
        assert_eq!(sps.level_idc, 30);
        assert_eq!(sps.chroma_format_idc, 1);
        assert_eq!(sps.bit_depth_luma, 8);
        assert!(sps.frame_mbs_only);
        assert_eq!((sps.width, sps.height), (640, 360));
        assert_eq!(sps.frame_rate(), Some((30, 1)));
        assert_eq!(sps.sample_aspect_ratio, Some((1, 1)));
        assert_eq!(sps.codec_string(), "avc1.64001e");
    }

    #[test]
    fn parses_x264_baseline_sps() {
        let sps = Sps::parse(SPS_BASELINE_320X240).expect("parses");
        assert_eq!(sps.profile_idc, 66);
        assert_eq!(sps.constraint_flags, 0xc0);
        assert_eq!((sps.width, sps.height), (320, 240));
        assert_eq!(sps.frame_rate(), Some((25, 1)));
        assert_eq!(sps.codec_string(), "avc1.42c00d");
    }

    #[test]
    fn truncated_sps_errors() {
        for cut in 1..11 {
            assert!(Sps::parse(&SPS_HIGH_640X360[..cut]).is_err(), "cut {cut}");
        }
        // Without the VUI the picture size still parses.
        let sps = Sps::parse(&SPS_HIGH_640X360[..11]).expect("no VUI needed");
        assert_eq!(sps.timing, None);
        assert_eq!((sps.width, sps.height), (640, 360));
    }

    #[test]
    fn avcc_round_trip() {
        let cfg = AvcDecoderConfig::from_parameter_sets(
            vec![SPS_HIGH_640X360.to_vec()],
            vec![PPS_HIGH.to_vec()],
        )
        .expect("builds");
        assert_eq!(cfg.codec_string(), "avc1.64001e");
        let bytes = cfg.to_bytes();
        assert_eq!(&bytes[..6], &[1, 0x64, 0, 0x1e, 0xff, 0xe1]);
        let back = AvcDecoderConfig::parse(&bytes).expect("parses");
        assert_eq!(back, cfg);
        assert_eq!(back.parse_sps().expect("sps").width, 640);
        for cut in 0..bytes.len() - 4 {
            assert!(AvcDecoderConfig::parse(&bytes[..cut]).is_err(), "cut {cut}");
        }
        // Without the high-profile extension (as many encoders write it).
        let short = &bytes[..bytes.len() - 4];
        let cfg2 = AvcDecoderConfig::parse(short).expect("parses");
        assert_eq!(cfg2.ext, None);
        assert_eq!(cfg2.to_bytes(), short);
    }

    #[test]
    fn length_prefixed_and_annex_b() {
        let sample = [0, 0, 0, 2, 0x09, 0xf0, 0, 0, 0, 3, 0x65, 0x88, 0x84];
        let nals: Vec<_> = nal_units(&sample, 4).collect::<Result<_>>().expect("valid");
        assert_eq!(nals, vec![&[0x09, 0xf0][..], &[0x65, 0x88, 0x84][..]]);
        assert_eq!(nal_unit_type(nals[1]), Some(nal_type::IDR));

        let mut annex_b = Vec::new();
        to_annex_b(&sample, 4, &mut annex_b).expect("valid");
        assert_eq!(
            annex_b,
            [0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1, 0x65, 0x88, 0x84]
        );
        let mut back = Vec::new();
        annex_b_to_length_prefixed(&annex_b, &mut back);
        assert_eq!(back, sample);

        // Three-byte start codes, leading garbage, trailing zeros.
        let stream = [0xff, 0, 0, 1, 0x67, 0x42, 0, 0, 0, 0, 1, 0x68, 0xce, 0, 0];
        let units: Vec<_> = annex_b_units(&stream).collect();
        assert_eq!(units, vec![&[0x67, 0x42][..], &[0x68, 0xce][..]]);

        // Two-byte lengths widen to four.
        let mut wide = Vec::new();
        to_length_size_4(&[0, 2, 0x09, 0xf0], 2, &mut wide).expect("valid");
        assert_eq!(wide, [0, 0, 0, 2, 0x09, 0xf0]);

        // A length running past the end is an error, once.
        let mut it = nal_units(&[0, 0, 0, 9, 1], 4);
        assert!(matches!(it.next(), Some(Err(H264Error::Truncated(_)))));
        assert!(it.next().is_none());
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for i in 0..20_000 {
            let len = (x % 48) as usize;
            let mut buf = Vec::with_capacity(len + 1);
            buf.push(0x67);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf.push(x as u8);
            }
            if i % 2 == 0 {
                // Keep a plausible header so that deeper fields get reached.
                buf.truncate(1);
                buf.extend_from_slice(&SPS_HIGH_640X360[1..4]);
                buf.push(x as u8);
                buf.push((x >> 8) as u8);
            }
            let _ = Sps::parse(&buf);
            let _ = AvcDecoderConfig::parse(&buf[1..]);
            let _ = nal_units(&buf, (x % 5) as u8).count();
            let _ = annex_b_units(&buf).count();
        }
    }
}
