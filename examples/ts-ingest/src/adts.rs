//! AAC in ADTS (ISO/IEC 14496-3 1.A.2.2, ISO/IEC 13818-7 6.2): the
//! header, and the frames of an audio stream's PES payloads.
//!
//! ```text
//!   syncword 0xFFF │ ID │ layer 00 │ protection_absent │ profile(2) │ sf_index(4) │ private │
//!   channel_configuration(3) │ … │ aac_frame_length(13) │ fullness(11) │ raw_data_blocks-1 (2) │
//!   [crc_check(16) when protection_absent is 0] │ raw_data_block
//! ```
//!
//! Each frame becomes one sample of 1024 PCM samples; the track's
//! timescale is the sampling rate. The first frame that starts in a PES
//! takes the PES's PTS (rescaled from 90 kHz), the ones after it one frame
//! later each. A PTS within half a frame of where the previous frame
//! ended is taken as that end, so rounding and encoder jitter do not leave
//! one-tick gaps or overlaps. A frame cut by the end of a PES is completed
//! from the next one (and keeps the time it started with).

use sluice_sdk::aac::{AudioSpecificConfig, SAMPLING_FREQUENCIES};
use sluice_sdk::time::mul_div_round_signed;

use crate::clock;

/// Bytes of an ADTS header without CRC.
pub const HEADER_SIZE: usize = 7;
/// Bytes of an ADTS header with its CRC.
pub const HEADER_SIZE_CRC: usize = 9;
/// PCM samples per AAC frame in ADTS (no 960-sample frames).
pub const FRAME_SAMPLES: u32 = 1024;

/// An ADTS fixed and variable header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdtsHeader {
    /// `ID`: MPEG-2 AAC (true) or MPEG-4 (false).
    pub mpeg2: bool,
    /// `protection_absent`: no CRC follows the header.
    pub protection_absent: bool,
    /// `profile_ObjectType`: the audio object type minus 1.
    pub profile: u8,
    /// `sampling_frequency_index` (0..=12).
    pub sampling_frequency_index: u8,
    /// `channel_configuration` (0: a program config element inside).
    pub channel_configuration: u8,
    /// `aac_frame_length`: the whole frame, header included.
    pub frame_length: u16,
    /// `number_of_raw_data_blocks_in_frame` + 1.
    pub raw_data_blocks: u8,
}

/// Why bytes are not an ADTS header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdtsError {
    /// Fewer bytes than a header.
    Short,
    /// No syncword, or a layer other than 0.
    NoSync,
    /// `sampling_frequency_index` 13..=15 (reserved, escape).
    SamplingFrequencyIndex(u8),
    /// A frame length shorter than its header.
    FrameLength(u16),
}

impl AdtsHeader {
    /// Reads a header from the start of `b`.
    pub fn parse(b: &[u8]) -> Result<AdtsHeader, AdtsError> {
        let Some(h) = b.first_chunk::<HEADER_SIZE>() else {
            return Err(AdtsError::Short);
        };
        if !is_sync(h[0], h[1]) {
            return Err(AdtsError::NoSync);
        }
        let protection_absent = h[1] & 1 == 1;
        let sampling_frequency_index = (h[2] >> 2) & 0x0f;
        if usize::from(sampling_frequency_index) >= SAMPLING_FREQUENCIES.len() {
            return Err(AdtsError::SamplingFrequencyIndex(sampling_frequency_index));
        }
        let frame_length =
            (u16::from(h[3] & 0x03) << 11) | (u16::from(h[4]) << 3) | u16::from(h[5] >> 5);
        let header = AdtsHeader {
            mpeg2: h[1] & 0x08 != 0,
            protection_absent,
            profile: h[2] >> 6,
            sampling_frequency_index,
            channel_configuration: ((h[2] & 0x01) << 2) | (h[3] >> 6),
            frame_length,
            raw_data_blocks: (h[6] & 0x03) + 1,
        };
        if usize::from(frame_length) < header.header_len() {
            return Err(AdtsError::FrameLength(frame_length));
        }
        Ok(header)
    }

    /// Bytes of the header (with the CRC when present).
    pub fn header_len(&self) -> usize {
        if self.protection_absent {
            HEADER_SIZE
        } else {
            HEADER_SIZE_CRC
        }
    }

    /// The sampling rate in Hz.
    pub fn sampling_frequency(&self) -> u32 {
        SAMPLING_FREQUENCIES
            .get(usize::from(self.sampling_frequency_index))
            .copied()
            .unwrap_or(0)
    }

    /// The `AudioSpecificConfig` the header implies, or why there is none
    /// (a program config element, several raw data blocks per frame).
    pub fn config(&self) -> Result<AudioSpecificConfig, String> {
        if self.channel_configuration == 0 {
            return Err(
                "ADTS channel_configuration 0 (channels in a program config element) is not \
                 supported"
                    .into(),
            );
        }
        if self.raw_data_blocks > 1 {
            return Err(format!(
                "ADTS frames of {} raw data blocks are not supported",
                self.raw_data_blocks
            ));
        }
        AudioSpecificConfig::new(
            self.profile + 1,
            self.sampling_frequency(),
            self.channel_configuration,
        )
        .map_err(|e| format!("ADTS header: {e}"))
    }
}

/// Whether two bytes start an ADTS header: the syncword and layer 0.
fn is_sync(a: u8, b: u8) -> bool {
    a == 0xff && b & 0xf6 == 0xf0
}

/// One frame taken from a PES payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Its header.
    pub header: AdtsHeader,
    /// Decode time in the header's sampling rate; `None` when no time
    /// stamp reached it yet.
    pub time: Option<i64>,
    /// The raw data block (header and CRC removed).
    pub data: Vec<u8>,
}

/// Where a frame's time comes from, decided where the frame starts (its
/// rate is known only once its header is whole).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Basis {
    /// The first frame that starts in a PES: that PES's PTS (unwrapped,
    /// 90 kHz), if it has one.
    Pts(Option<i64>),
    /// The frame after one with this time.
    After(Option<i64>),
}

/// The ADTS frames of one audio PID, across its PES packets.
#[derive(Debug)]
pub struct AdtsStream {
    /// The start of a frame the last PES cut short.
    carry: Vec<u8>,
    /// Where the carried frame's time comes from.
    carry_basis: Basis,
    /// Where the last timed frame ended, in its rate, and that rate.
    next: Option<(i64, u32)>,
    /// Bytes skipped looking for a syncword.
    skipped: u64,
}

impl Default for AdtsStream {
    fn default() -> Self {
        AdtsStream::new()
    }
}

impl AdtsStream {
    /// A stream with nothing read.
    pub fn new() -> Self {
        AdtsStream {
            carry: Vec::new(),
            carry_basis: Basis::Pts(None),
            next: None,
            skipped: 0,
        }
    }

    /// Bytes skipped looking for a syncword, in all.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Forgets a frame in progress (after a continuity gap).
    pub fn reset(&mut self) {
        self.carry = Vec::new();
        self.carry_basis = Basis::Pts(None);
    }

    /// Bytes of a cut frame held for the next PES.
    pub fn carried(&self) -> usize {
        self.carry.len()
    }

    /// The frames of one PES payload whose PTS (unwrapped, 90 kHz) is
    /// `pts`. Bytes that are not ADTS are skipped; a header that asks for
    /// what is not supported is an error.
    pub fn frames(&mut self, pts: Option<i64>, payload: &[u8]) -> Result<Vec<Frame>, String> {
        let carried = self.carry.len();
        let carry_basis = self.carry_basis;
        let joined;
        let data: &[u8] = if carried == 0 {
            payload
        } else {
            let mut v = std::mem::take(&mut self.carry);
            v.extend_from_slice(payload);
            joined = v;
            &joined
        };
        let mut frames = Vec::new();
        let mut first_in_pes = true;
        let mut previous: Option<i64> = None;
        let mut at = 0;
        while at < data.len() {
            let rest = &data[at..];
            let header = match AdtsHeader::parse(rest) {
                Ok(h) => Some(h),
                Err(AdtsError::Short) if is_partial_sync(rest) => None,
                Err(_) => {
                    // Not a header here: on to the next syncword.
                    let next = next_sync(data, at + 1);
                    self.skipped += (next - at) as u64;
                    at = next;
                    continue;
                }
            };
            let basis = if at < carried {
                carry_basis
            } else if first_in_pes {
                first_in_pes = false;
                Basis::Pts(pts)
            } else {
                Basis::After(previous)
            };
            let end = header.map_or(usize::MAX, |h| at + usize::from(h.frame_length));
            let Some(header) = header.filter(|_| end <= data.len()) else {
                // Cut by the end of the PES: completed by the next one.
                self.carry = rest.to_vec();
                self.carry_basis = basis;
                break;
            };
            let rate = header.config()?.sampling_frequency;
            let time = self.resolve(basis, rate);
            if let Some(t) = time {
                self.next = Some((t.saturating_add(i64::from(FRAME_SAMPLES)), rate));
            }
            previous = time;
            frames.push(Frame {
                header,
                time,
                data: data[at + header.header_len()..end].to_vec(),
            });
            at = end;
        }
        Ok(frames)
    }

    /// The time of a frame in `rate` ticks.
    fn resolve(&self, basis: Basis, rate: u32) -> Option<i64> {
        match basis {
            Basis::Pts(Some(pts)) => Some(self.snap(rescale(pts, rate), rate)),
            Basis::After(Some(t)) => Some(t.saturating_add(i64::from(FRAME_SAMPLES))),
            Basis::Pts(None) | Basis::After(None) => self.continued(rate),
        }
    }

    /// The end of the last timed frame, if it was in `rate`.
    fn continued(&self, rate: u32) -> Option<i64> {
        self.next.filter(|&(_, r)| r == rate).map(|(t, _)| t)
    }

    /// `t`, or where the last frame ended when that is within half a frame.
    fn snap(&self, t: i64, rate: u32) -> i64 {
        match self.continued(rate) {
            Some(next) if t.abs_diff(next) <= u64::from(FRAME_SAMPLES / 2) => next,
            _ => t,
        }
    }
}

/// The offset of the next possible syncword in `data` from `from` on (a
/// lone 0xff at the end counts), or its length.
fn next_sync(data: &[u8], from: usize) -> usize {
    (from..data.len())
        .find(|&i| data[i] == 0xff && data.get(i + 1).is_none_or(|&b| is_sync(0xff, b)))
        .unwrap_or(data.len())
}

/// Whether `b` (shorter than a header) could be the start of one.
fn is_partial_sync(b: &[u8]) -> bool {
    match b {
        [0xff] => true,
        [a, c, ..] => is_sync(*a, *c),
        _ => false,
    }
}

/// A 90 kHz time in `rate` ticks, rounded to nearest.
fn rescale(t90: i64, rate: u32) -> i64 {
    // |t90| stays far below 2^63 / 96000: a saturated value only for
    // hostile times, and never a panic.
    mul_div_round_signed(t90, u64::from(rate), u64::from(clock::TIMESCALE)).unwrap_or(if t90 < 0 {
        i64::MIN / 2
    } else {
        i64::MAX / 2
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzing::synth;

    #[test]
    fn header_fields() {
        let f = synth::adts_frame(2, 3, 2, 100, false, 1);
        let h = AdtsHeader::parse(&f).unwrap();
        assert_eq!(h.profile, 1);
        assert_eq!(h.sampling_frequency(), 48000);
        assert_eq!(h.channel_configuration, 2);
        assert_eq!(usize::from(h.frame_length), f.len());
        assert_eq!(h.header_len(), 7);
        let c = h.config().unwrap();
        assert_eq!(c.codec_string(), "mp4a.40.2");
        assert_eq!(c.to_bytes().unwrap(), vec![0x11, 0x90]);
        let f = synth::adts_frame(2, 4, 1, 50, true, 1);
        let h = AdtsHeader::parse(&f).unwrap();
        assert!(!h.protection_absent);
        assert_eq!(h.header_len(), 9);
        assert_eq!(h.sampling_frequency(), 44100);
    }

    #[test]
    fn header_errors() {
        assert_eq!(AdtsHeader::parse(&[0xff, 0xf1]), Err(AdtsError::Short));
        assert_eq!(
            AdtsHeader::parse(&[0xff, 0xf3, 0, 0, 0, 0, 0]),
            Err(AdtsError::NoSync)
        );
        let mut f = synth::adts_frame(2, 3, 2, 10, false, 1);
        f[2] = (f[2] & !0x3c) | (13 << 2);
        assert_eq!(
            AdtsHeader::parse(&f),
            Err(AdtsError::SamplingFrequencyIndex(13))
        );
        let mut f = synth::adts_frame(2, 3, 2, 10, false, 1);
        f[3] &= 0xfc;
        f[4] = 0;
        f[5] &= 0x1f;
        assert_eq!(AdtsHeader::parse(&f), Err(AdtsError::FrameLength(0)));
        let f = synth::adts_frame(2, 3, 0, 10, false, 1);
        assert!(AdtsHeader::parse(&f).unwrap().config().is_err());
        let mut f = synth::adts_frame(2, 3, 1, 10, false, 1);
        f[6] |= 1;
        let h = AdtsHeader::parse(&f).unwrap();
        assert_eq!(h.raw_data_blocks, 2);
        assert!(h.config().is_err());
    }

    #[test]
    fn frames_take_the_pes_time_then_count_on() {
        let mut s = AdtsStream::new();
        let mut pes = Vec::new();
        for i in 0..3 {
            pes.extend_from_slice(&synth::adts_frame(2, 3, 1, 20 + i, i == 1, i as u8));
        }
        let frames = s.frames(Some(90_000), &pes).unwrap();
        let times: Vec<_> = frames.iter().map(|f| f.time).collect();
        assert_eq!(times, vec![Some(48_000), Some(49_024), Some(50_048)]);
        assert_eq!(frames[1].data.len(), 21);
        // The next PES's time, one tick off the continuation, snaps to it.
        let frames = s
            .frames(
                Some(rescale_back(51_072) + 1),
                &synth::adts_frame(2, 3, 1, 9, false, 7),
            )
            .unwrap();
        assert_eq!(frames[0].time, Some(51_072));
        // A jump is kept.
        let frames = s
            .frames(
                Some(rescale_back(60_000)),
                &synth::adts_frame(2, 3, 1, 9, false, 7),
            )
            .unwrap();
        assert_eq!(frames[0].time, Some(60_000));
    }

    fn rescale_back(t48: i64) -> i64 {
        t48 * 90_000 / 48_000
    }

    #[test]
    fn a_frame_cut_by_the_pes_end_completes_from_the_next() {
        let a = synth::adts_frame(2, 3, 1, 40, false, 1);
        let b = synth::adts_frame(2, 3, 1, 40, false, 2);
        let mut first = a.clone();
        first.extend_from_slice(&b[..3]);
        let mut s = AdtsStream::new();
        let frames = s.frames(Some(0), &first).unwrap();
        assert_eq!(frames.len(), 1);
        assert_eq!(s.carried(), 3);
        let c = synth::adts_frame(2, 3, 1, 40, false, 3);
        let mut second = b[3..].to_vec();
        second.extend_from_slice(&c);
        // The PES's PTS belongs to the first frame that starts in it (c).
        let frames = s.frames(Some(rescale_back(2048)), &second).unwrap();
        let times: Vec<_> = frames.iter().map(|f| f.time).collect();
        assert_eq!(times, vec![Some(1024), Some(2048)]);
        assert_eq!(frames[0].data, b[7..]);
    }

    #[test]
    fn garbage_is_skipped() {
        let mut s = AdtsStream::new();
        let mut pes = vec![1, 2, 0xff, 0x00, 3];
        pes.extend_from_slice(&synth::adts_frame(2, 3, 1, 10, false, 1));
        let frames = s.frames(Some(0), &pes).unwrap();
        assert_eq!(frames.len(), 1);
        assert_eq!(s.skipped(), 5);
    }
}
