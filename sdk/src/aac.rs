//! AAC: the `AudioSpecificConfig` (ISO/IEC 14496-3 1.6.2.1), RFC 6381
//! codec strings and ADTS headers (for MPEG-TS packaging).
//!
//! ```text
//!   FLV AAC sequence header ─▶ AudioSpecificConfig::parse ─▶ codec_string(), sample rate
//!   raw AAC frame ─▶ write_adts_header + frame ─▶ TS packager
//! ```

use crate::h264::{BitReader, BitsExhausted};

/// Errors of AAC parsing and ADTS writing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AacError {
    /// The input ends inside the structure.
    #[error("AudioSpecificConfig truncated")]
    Truncated,
    /// A field holds a reserved or impossible value.
    #[error("invalid AAC {0}")]
    Invalid(&'static str),
    /// The configuration cannot be expressed in an ADTS header.
    #[error("not expressible in ADTS: {0}")]
    NotAdts(&'static str),
}

/// Result of AAC parsing.
pub type Result<T> = std::result::Result<T, AacError>;

impl From<AacError> for crate::plugin::SessionError {
    fn from(e: AacError) -> Self {
        match e {
            AacError::NotAdts(_) => Self::Unsupported(e.to_string()),
            _ => Self::Malformed(e.to_string()),
        }
    }
}

impl From<BitsExhausted> for AacError {
    fn from(_: BitsExhausted) -> Self {
        AacError::Truncated
    }
}

/// Sampling frequencies by `samplingFrequencyIndex` (0..=12).
pub const SAMPLING_FREQUENCIES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// Audio object types this module names.
pub mod object_type {
    /// AAC Main.
    pub const AAC_MAIN: u8 = 1;
    /// AAC Low Complexity.
    pub const AAC_LC: u8 = 2;
    /// AAC Scalable Sample Rate.
    pub const AAC_SSR: u8 = 3;
    /// AAC Long Term Prediction.
    pub const AAC_LTP: u8 = 4;
    /// Spectral Band Replication (HE-AAC).
    pub const SBR: u8 = 5;
    /// Parametric Stereo (HE-AAC v2).
    pub const PS: u8 = 29;
}

/// A parsed `AudioSpecificConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioSpecificConfig {
    /// The audio object type signalled first: 5 or 29 for explicit
    /// hierarchical HE-AAC signalling, else the coding type (2 for AAC-LC).
    /// This is the `N` of `mp4a.40.N`.
    pub signalled_object_type: u8,
    /// The core coding type (2 for AAC-LC, also under SBR/PS).
    pub object_type: u8,
    /// `samplingFrequencyIndex` when the rate was given by index (ADTS needs it).
    pub sampling_frequency_index: Option<u8>,
    /// Core sampling frequency in Hz: the rate of the coded frames.
    pub sampling_frequency: u32,
    /// `channelConfiguration` (0: defined by a program config element).
    pub channel_configuration: u8,
    /// Channel count (from the configuration, or the program config element).
    pub channels: u16,
    /// Samples per frame at the core rate: 1024, or 960 with
    /// `frameLengthFlag`.
    pub frame_length: u16,
    /// SBR present (explicitly or by backward-compatible signalling).
    pub sbr: bool,
    /// Parametric stereo present.
    pub ps: bool,
    /// Output sampling frequency of SBR, when signalled.
    pub extension_sampling_frequency: Option<u32>,
}

fn read_object_type(r: &mut BitReader<'_>) -> Result<u8> {
    let aot = r.bits(5)? as u8;
    if aot == 31 {
        Ok(32 + r.bits(6)? as u8)
    } else {
        Ok(aot)
    }
}

fn read_frequency(r: &mut BitReader<'_>) -> Result<(Option<u8>, u32)> {
    let index = r.bits(4)? as u8;
    if index == 15 {
        let f = r.bits(24)?;
        if f == 0 {
            return Err(AacError::Invalid("sampling frequency 0"));
        }
        Ok((None, f))
    } else {
        let f = SAMPLING_FREQUENCIES
            .get(usize::from(index))
            .ok_or(AacError::Invalid("samplingFrequencyIndex"))?;
        Ok((Some(index), *f))
    }
}

/// Object types with a `GASpecificConfig`.
fn is_ga(aot: u8) -> bool {
    matches!(aot, 1..=4 | 6 | 7 | 17 | 19..=23)
}

/// Channels of a `program_config_element` (ISO/IEC 14496-3 4.4.1.1).
fn pce_channels(r: &mut BitReader<'_>) -> Result<u16> {
    r.skip(4 + 2 + 4)?; // element_instance_tag, object_type, sampling_frequency_index
    let front = r.bits(4)?;
    let side = r.bits(4)?;
    let back = r.bits(4)?;
    let lfe = r.bits(2)?;
    let assoc = r.bits(3)?;
    let cc = r.bits(4)?;
    // mono and stereo mixdown element numbers, matrix mixdown index and
    // pseudo surround flag
    for skip in [4, 4, 3] {
        if r.bit()? {
            r.skip(skip)?;
        }
    }
    let mut channels = 0u16;
    for _ in 0..front + side + back {
        channels += if r.bit()? { 2 } else { 1 };
        r.skip(4)?;
    }
    channels += lfe as u16;
    r.skip(4 * lfe as usize + 4 * assoc as usize + 5 * cc as usize)?;
    r.byte_align();
    let comment = r.bits(8)? as usize;
    r.skip(8 * comment)?;
    Ok(channels)
}

impl AudioSpecificConfig {
    /// Parses an `AudioSpecificConfig` (the FLV AAC sequence header body,
    /// the `esds` decoder specific info).
    pub fn parse(data: &[u8]) -> Result<AudioSpecificConfig> {
        let mut r = BitReader::new(data);
        let signalled = read_object_type(&mut r)?;
        if signalled == 0 {
            return Err(AacError::Invalid("audio object type 0"));
        }
        let (index, frequency) = read_frequency(&mut r)?;
        let channel_configuration = r.bits(4)? as u8;
        let mut object_type = signalled;
        let mut sbr = false;
        let mut ps = false;
        let mut extension_sampling_frequency = None;
        if signalled == object_type::SBR || signalled == object_type::PS {
            // Explicit hierarchical signalling: the extension rate, then the
            // core object type.
            sbr = true;
            ps = signalled == object_type::PS;
            let (_, ext) = read_frequency(&mut r)?;
            extension_sampling_frequency = Some(ext);
            object_type = read_object_type(&mut r)?;
            if object_type == 22 {
                // ER BSAC carries an extra channel configuration.
                r.skip(4)?;
            }
        }
        let mut frame_length = 1024;
        let mut channels = match channel_configuration {
            0 => 0,
            1..=6 => u16::from(channel_configuration),
            7 => 8,
            11 => 7,
            12 | 14 => 8,
            13 => 24,
            _ => return Err(AacError::Invalid("channelConfiguration")),
        };
        if is_ga(object_type) {
            if r.bit()? {
                frame_length = 960;
            }
            if r.bit()? {
                r.skip(14)?; // coreCoderDelay
            }
            let extension_flag = r.bit()?;
            if channel_configuration == 0 {
                channels = pce_channels(&mut r)?;
            }
            if matches!(object_type, 6 | 20) {
                r.skip(3)?; // layerNr
            }
            if extension_flag {
                if object_type == 22 {
                    r.skip(16)?;
                }
                if matches!(object_type, 17 | 19 | 20 | 23) {
                    r.skip(3)?;
                }
                r.skip(1)?; // extensionFlag3
            }
        }
        // Backward-compatible (implicit-in-header) SBR / PS signalling.
        if !sbr
            && r.bits_left() >= 16
            && r.bits(11).ok() == Some(0x2b7)
            && read_object_type(&mut r).ok() == Some(object_type::SBR)
            && r.bit().unwrap_or(false)
            && let Ok((_, ext)) = read_frequency(&mut r)
        {
            sbr = true;
            extension_sampling_frequency = Some(ext);
            if r.bits_left() >= 12 && r.bits(11).ok() == Some(0x548) {
                ps = r.bit().unwrap_or(false);
            }
        }
        Ok(AudioSpecificConfig {
            signalled_object_type: signalled,
            object_type,
            sampling_frequency_index: index,
            sampling_frequency: frequency,
            channel_configuration,
            channels,
            frame_length,
            sbr,
            ps,
            extension_sampling_frequency,
        })
    }

    /// A plain AAC config (no SBR/PS) for the given object type, rate and
    /// channel configuration; the rate must be one of [`SAMPLING_FREQUENCIES`].
    pub fn new(
        object_type: u8,
        sampling_frequency: u32,
        channel_configuration: u8,
    ) -> Result<Self> {
        let index = SAMPLING_FREQUENCIES
            .iter()
            .position(|&f| f == sampling_frequency)
            .ok_or(AacError::Invalid("sampling frequency"))? as u8;
        if !(1..=7).contains(&channel_configuration) || !(1..=30).contains(&object_type) {
            return Err(AacError::Invalid("channel configuration or object type"));
        }
        Ok(AudioSpecificConfig {
            signalled_object_type: object_type,
            object_type,
            sampling_frequency_index: Some(index),
            sampling_frequency,
            channel_configuration,
            channels: if channel_configuration == 7 {
                8
            } else {
                u16::from(channel_configuration)
            },
            frame_length: 1024,
            sbr: false,
            ps: false,
            extension_sampling_frequency: None,
        })
    }

    /// The two-byte `AudioSpecificConfig` of a plain config built with
    /// [`AudioSpecificConfig::new`] (index-coded rate, object type < 31).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let index = self
            .sampling_frequency_index
            .ok_or(AacError::NotAdts("explicit sampling frequency"))?;
        if self.object_type >= 31 || self.sbr {
            return Err(AacError::Invalid("only plain configs are written"));
        }
        let v: u16 = (u16::from(self.object_type) << 11)
            | (u16::from(index) << 7)
            | (u16::from(self.channel_configuration & 0x0f) << 3)
            | if self.frame_length == 960 { 4 } else { 0 };
        Ok(v.to_be_bytes().to_vec())
    }

    /// The RFC 6381 codec string, `mp4a.40.N`.
    pub fn codec_string(&self) -> String {
        format!("mp4a.40.{}", self.signalled_object_type)
    }

    /// Writes a 7-byte ADTS header (no CRC) for a raw frame of
    /// `payload_len` bytes.
    pub fn write_adts_header(&self, payload_len: usize, out: &mut Vec<u8>) -> Result<()> {
        let index = self
            .sampling_frequency_index
            .ok_or(AacError::NotAdts("explicit sampling frequency"))?;
        if !(1..=4).contains(&self.object_type) {
            return Err(AacError::NotAdts("object type"));
        }
        if !(1..=7).contains(&self.channel_configuration) {
            return Err(AacError::NotAdts("channel configuration"));
        }
        let frame_len = payload_len + 7;
        if frame_len > 0x1fff {
            return Err(AacError::NotAdts("frame longer than 8191 bytes"));
        }
        let profile = self.object_type - 1;
        let cc = self.channel_configuration;
        let len = frame_len as u16;
        out.extend_from_slice(&[
            0xff,
            0xf1, // MPEG-4, layer 0, no CRC
            (profile << 6) | (index << 2) | (cc >> 2),
            ((cc & 3) << 6) | (len >> 11) as u8,
            (len >> 3) as u8,
            (((len & 7) as u8) << 5) | 0x1f,
            0xfc, // buffer fullness 0x7ff, one raw data block
        ]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aac_lc_stereo_44100() {
        // What ffmpeg's aac encoder puts in FLV for 44.1 kHz stereo.
        let c = AudioSpecificConfig::parse(&[0x12, 0x10, 0x56, 0xe5, 0x00]).expect("parses");
        assert_eq!(c.object_type, 2);
        assert_eq!(c.sampling_frequency, 44100);
        assert_eq!(c.sampling_frequency_index, Some(4));
        assert_eq!(c.channels, 2);
        assert_eq!(c.frame_length, 1024);
        assert!(!c.sbr);
        assert_eq!(c.codec_string(), "mp4a.40.2");
        assert_eq!(c.to_bytes().expect("plain"), vec![0x12, 0x10]);
    }

    #[test]
    fn aac_lc_mono_48000_round_trip() {
        let c = AudioSpecificConfig::new(2, 48000, 1).expect("valid");
        let bytes = c.to_bytes().expect("plain");
        assert_eq!(bytes, vec![0x11, 0x88]);
        assert_eq!(AudioSpecificConfig::parse(&bytes).expect("parses"), c);
    }

    #[test]
    fn explicit_he_aac_v2() {
        // AOT 29, 24 kHz core (index 6), 1 channel, extension 48 kHz (3), core AOT 2.
        let bits: u32 = (29 << 27) | (6 << 23) | (1 << 19) | (3 << 15) | (2 << 10);
        let c = AudioSpecificConfig::parse(&bits.to_be_bytes()).expect("parses");
        assert_eq!(c.signalled_object_type, 29);
        assert_eq!(c.object_type, 2);
        assert!(c.sbr && c.ps);
        assert_eq!(c.sampling_frequency, 24000);
        assert_eq!(c.extension_sampling_frequency, Some(48000));
        assert_eq!(c.codec_string(), "mp4a.40.29");
    }

    #[test]
    fn backward_compatible_sbr() {
        // AAC-LC 22.05 kHz stereo, then sync extension 0x2b7, AOT 5, SBR
        // present, extension rate 44.1 kHz (index 4).
        // 00010 0111 0010 000 | 01010110111 00101 1 0100 + padding
        let c = AudioSpecificConfig::parse(&[0x13, 0x90, 0x56, 0xe5, 0xa0]).expect("parses");
        assert_eq!(c.object_type, 2);
        assert_eq!(c.sampling_frequency, 22050);
        assert!(c.sbr);
        assert!(!c.ps);
        assert_eq!(c.extension_sampling_frequency, Some(44100));
        assert_eq!(c.codec_string(), "mp4a.40.2");
    }

    #[test]
    fn escape_object_type_and_explicit_rate() {
        // AOT 31 + 6 bits (42 - 32 = 10): USAC-like; rate index 15 + 24 bits.
        let mut bits: u64 = 31;
        bits = (bits << 6) | 10;
        bits = (bits << 4) | 15;
        bits = (bits << 24) | 12345;
        bits = (bits << 4) | 2;
        let total = 5 + 6 + 4 + 24 + 4;
        let v = bits << (64 - total);
        let c = AudioSpecificConfig::parse(&v.to_be_bytes()).expect("parses");
        assert_eq!(c.object_type, 42);
        assert_eq!(c.sampling_frequency, 12345);
        assert_eq!(c.sampling_frequency_index, None);
        assert_eq!(c.channels, 2);
        let mut out = Vec::new();
        assert!(c.write_adts_header(10, &mut out).is_err());
    }

    #[test]
    fn frame_length_960() {
        let c = AudioSpecificConfig::parse(&[0x11, 0x8c]).expect("parses");
        assert_eq!(c.frame_length, 960);
    }

    #[test]
    fn program_config_element_channels() {
        // AAC-LC 48 kHz, channel configuration 0, then a PCE with one front
        // CPE, one front SCE and one LFE: 5.1-ish minus the back = 4 channels.
        let mut bits: Vec<bool> = Vec::new();
        let mut put = |v: u32, n: u32| {
            for i in (0..n).rev() {
                bits.push((v >> i) & 1 == 1);
            }
        };
        put(2, 5);
        put(3, 4);
        put(0, 4);
        put(0, 3); // frameLength, dependsOnCoreCoder, extension
        put(0, 4); // element_instance_tag
        put(1, 2); // object_type
        put(3, 4); // sf index
        put(2, 4); // front
        put(0, 4); // side
        put(0, 4); // back
        put(1, 2); // lfe
        put(0, 3); // assoc
        put(0, 4); // cc
        put(0, 3); // no mixdowns
        put(0, 1); // SCE
        put(0, 4);
        put(1, 1); // CPE
        put(1, 4);
        put(0, 4); // lfe tag
        put(0, 8); // (aligned) comment_field_bytes
        let bytes: Vec<u8> = bits
            .chunks(8)
            .map(|c| {
                c.iter()
                    .enumerate()
                    .fold(0u8, |a, (i, &b)| a | (u8::from(b) << (7 - i)))
            })
            .collect();
        let c = AudioSpecificConfig::parse(&bytes).expect("parses");
        assert_eq!(c.channel_configuration, 0);
        assert_eq!(c.channels, 4);
    }

    #[test]
    fn adts_header_matches_ffmpeg() {
        // ffmpeg's ADTS for 48 kHz mono LC: ff f1 4c 40 1b 7f fc for a
        // 219-byte frame (212-byte payload).
        let c = AudioSpecificConfig::new(2, 48000, 1).expect("valid");
        let mut out = Vec::new();
        c.write_adts_header(212, &mut out).expect("fits");
        assert_eq!(out, [0xff, 0xf1, 0x4c, 0x40, 0x1b, 0x7f, 0xfc]);
        assert!(c.write_adts_header(9000, &mut out).is_err());
    }

    #[test]
    fn truncated_and_invalid() {
        assert_eq!(AudioSpecificConfig::parse(&[]), Err(AacError::Truncated));
        assert_eq!(
            AudioSpecificConfig::parse(&[0x12]),
            Err(AacError::Truncated)
        );
        assert!(AudioSpecificConfig::parse(&[0x00, 0x00]).is_err());
        // Index 13 is reserved.
        assert!(AudioSpecificConfig::parse(&[0x16, 0x90]).is_err());
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u64 = 0xdead_beef_cafe_f00d;
        for _ in 0..20_000 {
            let len = (x % 12) as usize;
            let mut buf = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf.push(x as u8);
            }
            if let Ok(c) = AudioSpecificConfig::parse(&buf) {
                let _ = c.codec_string();
                let _ = c.write_adts_header(100, &mut Vec::new());
                let _ = c.to_bytes();
            }
        }
    }
}
