//! H.264 in MPEG-TS (`stream_type` 0x1B, ITU-T H.264 Annex B byte stream):
//! one PES payload is one access unit, rewritten as a sample.
//!
//! ```text
//!   PES payload: 00 00 00 01 AUD │ 00 00 01 SPS │ 00 00 01 PPS │ 00 00 01 SEI │ 00 00 01 IDR slice …
//!     ─▶ SPS, PPS: kept by id ─▶ avcC (AvcDecoderConfig::from_parameter_sets), codec, size
//!     ─▶ sample: [len32 SEI][len32 IDR slice]…  (no AUD, SPS or PPS), keyframe = an IDR slice
//! ```
//!
//! The track is `avc1`: its parameter sets travel in the `avcC` of the
//! track declaration, which is re-declared when they change, and packagers
//! put them back in-band where their format wants them (HLS TS before
//! every keyframe). So they are taken out of the samples, as is the
//! access unit delimiter (TS packagers write their own).

use std::collections::BTreeMap;

use sluice_sdk::h264::{self, AvcDecoderConfig, Sps, nal_type};
use sluice_sdk::plugin::{TrackInfo, TrackKind};

use crate::clock;

/// Largest SPS or PPS kept (real ones are tens of bytes; scaling lists
/// take them to a few hundred).
pub const MAX_PARAMETER_SET: usize = 4096;

/// The parameter sets of one H.264 PID and the samples made from it.
#[derive(Debug, Default)]
pub struct AvcStream {
    /// SPS NAL units by `seq_parameter_set_id` (0..=31).
    sps: BTreeMap<u32, Vec<u8>>,
    /// PPS NAL units by `pic_parameter_set_id` (0..=255).
    pps: BTreeMap<u32, Vec<u8>>,
}

/// One access unit as a sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUnit {
    /// The NAL units with 4-byte lengths, without AUD, SPS and PPS.
    pub data: Vec<u8>,
    /// An IDR slice is present.
    pub keyframe: bool,
    /// An SPS or PPS that is new or different came with it.
    pub parameter_sets_changed: bool,
}

impl AvcStream {
    /// A stream with no parameter sets yet.
    pub fn new() -> Self {
        AvcStream::default()
    }

    /// Rewrites one access unit (an Annex B PES payload), keeping the
    /// parameter sets it carries.
    pub fn access_unit(&mut self, annex_b: &[u8]) -> Result<AccessUnit, String> {
        let mut data = Vec::with_capacity(annex_b.len());
        let mut keyframe = false;
        let mut changed = false;
        for nal in h264::annex_b_units(annex_b) {
            match h264::nal_unit_type(nal) {
                Some(nal_type::AUD) => {}
                Some(nal_type::SPS) => {
                    check_size(nal, "SPS")?;
                    let sps = Sps::parse(nal).map_err(|e| format!("SPS: {e}"))?;
                    changed |= keep(&mut self.sps, sps.id, nal);
                }
                Some(nal_type::PPS) => {
                    check_size(nal, "PPS")?;
                    let id = pps_id(nal)?;
                    changed |= keep(&mut self.pps, id, nal);
                }
                t => {
                    keyframe |= t == Some(nal_type::IDR);
                    // A NAL unit is no longer than the PES that holds it,
                    // and the session bounds PES sizes by a u32.
                    let len = u32::try_from(nal.len())
                        .map_err(|_| format!("NAL unit of {} bytes", nal.len()))?;
                    data.extend_from_slice(&len.to_be_bytes());
                    data.extend_from_slice(nal);
                }
            }
        }
        Ok(AccessUnit {
            data,
            keyframe,
            parameter_sets_changed: changed,
        })
    }

    /// The decoder configuration from the parameter sets kept, `None`
    /// until there is at least one SPS and one PPS.
    pub fn config(&self) -> Option<Result<AvcDecoderConfig, String>> {
        if self.sps.is_empty() || self.pps.is_empty() {
            return None;
        }
        let sps = self.sps.values().cloned().collect();
        let pps = self.pps.values().cloned().collect();
        Some(AvcDecoderConfig::from_parameter_sets(sps, pps).map_err(|e| format!("avcC: {e}")))
    }
}

/// The track declaration for a configuration: `avc1`, 90 kHz, the size of
/// the first SPS.
pub fn track_info(id: u32, stream: &str, config: &AvcDecoderConfig) -> Result<TrackInfo, String> {
    let sps = config.parse_sps().map_err(|e| format!("SPS: {e}"))?;
    Ok(TrackInfo {
        fourcc: "avc1".into(),
        codec: config.codec_string(),
        codec_private: config.to_bytes(),
        stream: stream.to_owned(),
        width: sps.width,
        height: sps.height,
        ..TrackInfo::new(id, TrackKind::Video, clock::TIMESCALE)
    })
}

fn check_size(nal: &[u8], what: &str) -> Result<(), String> {
    if nal.len() > MAX_PARAMETER_SET {
        return Err(format!(
            "{what} of {} bytes (at most {MAX_PARAMETER_SET} are kept)",
            nal.len()
        ));
    }
    Ok(())
}

/// Keeps `nal` as parameter set `id`; whether that changed anything.
fn keep(sets: &mut BTreeMap<u32, Vec<u8>>, id: u32, nal: &[u8]) -> bool {
    if sets.get(&id).is_some_and(|old| old == nal) {
        return false;
    }
    sets.insert(id, nal.to_vec());
    true
}

/// `pic_parameter_set_id` of a PPS (the first `ue(v)` after the NAL
/// header), checking the `seq_parameter_set_id` after it too.
fn pps_id(nal: &[u8]) -> Result<u32, String> {
    let rbsp = h264::to_rbsp(nal.get(1..).unwrap_or_default());
    let mut bits = Bits {
        data: &rbsp,
        pos: 0,
    };
    let pps = bits.ue().ok_or("PPS truncated")?;
    let sps = bits.ue().ok_or("PPS truncated")?;
    if pps > 255 || sps > 31 {
        return Err(format!(
            "PPS ids out of range (pic_parameter_set_id {pps}, seq_parameter_set_id {sps})"
        ));
    }
    Ok(pps)
}

/// Just enough of an Exp-Golomb reader for the ids at the start of a PPS.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn bit(&mut self) -> Option<u32> {
        let byte = self.data.get(self.pos / 8)?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(u32::from(bit))
    }

    /// `ue(v)`; `None` when truncated or longer than 32 bits.
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let mut rest: u64 = 0;
        for _ in 0..zeros {
            rest = (rest << 1) | u64::from(self.bit()?);
        }
        u32::try_from((1u64 << zeros) - 1 + rest).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzing::synth;

    fn au(nals: &[&[u8]]) -> Vec<u8> {
        synth::annex_b(nals)
    }

    #[test]
    fn parameter_sets_out_of_the_sample_and_into_the_config() {
        let sps = synth::sps(320, 240);
        let pps = synth::pps(0);
        let idr = synth::slice(true, 60, 1);
        let mut s = AvcStream::new();
        assert!(s.config().is_none());
        let unit = s
            .access_unit(&au(&[&[0x09, 0xf0], &sps, &pps, &[0x06, 5, 1, 0x80], &idr]))
            .unwrap();
        assert!(unit.keyframe && unit.parameter_sets_changed);
        let nals: Vec<&[u8]> = h264::nal_units(&unit.data, 4)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(nals, vec![&[0x06, 5, 1, 0x80][..], &idr[..]]);
        let config = s.config().unwrap().unwrap();
        assert_eq!(config.sps, vec![sps.clone()]);
        assert_eq!(config.pps, vec![pps.clone()]);
        let info = track_info(256, "720p", &config).unwrap();
        assert_eq!((info.width, info.height), (320, 240));
        assert_eq!(info.codec, "avc1.42c01e");
        assert_eq!(info.fourcc, "avc1");
        assert_eq!(info.timescale, 90_000);
        assert_eq!(
            AvcDecoderConfig::parse(&info.codec_private).unwrap(),
            config
        );
        // The same sets again change nothing; a new PPS does.
        let unit = s.access_unit(&au(&[&sps, &pps, &idr])).unwrap();
        assert!(!unit.parameter_sets_changed);
        let unit = s
            .access_unit(&au(&[&synth::pps(1), &synth::slice(false, 20, 2)]))
            .unwrap();
        assert!(unit.parameter_sets_changed && !unit.keyframe);
        assert_eq!(s.config().unwrap().unwrap().pps.len(), 2);
    }

    #[test]
    fn bad_parameter_sets_are_errors() {
        let mut s = AvcStream::new();
        assert!(s.access_unit(&au(&[&[0x67, 0x42]])).is_err());
        assert!(s.access_unit(&au(&[&[0x68]])).is_err());
        // pic_parameter_set_id 300: ue with 8 leading zeros.
        assert!(pps_id(&[0x68, 0x00, 0x96, 0x80]).is_err());
        let mut huge = vec![0x68, 0x80];
        huge.resize(MAX_PARAMETER_SET + 1, 0x55);
        assert!(s.access_unit(&au(&[&huge])).is_err());
    }

    #[test]
    fn exp_golomb() {
        // 1 | 010 | 011 | 00100 → 0, 1, 2, 3
        let mut b = Bits {
            data: &[0b1010_0110, 0b0100_0000],
            pos: 0,
        };
        assert_eq!(
            (b.ue(), b.ue(), b.ue(), b.ue()),
            (Some(0), Some(1), Some(2), Some(3))
        );
        assert_eq!(b.ue(), None);
        let mut b = Bits {
            data: &[0, 0, 0, 0, 0xff],
            pos: 0,
        };
        assert_eq!(b.ue(), None);
    }
}
