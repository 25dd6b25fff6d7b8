//! The sample table: `stbl` (ISO/IEC 14496-12 8.5.1), `stsd` (8.5.2) with
//! the `avc1` (ISO/IEC 14496-15 5.4.2) and `mp4a` (ISO/IEC 14496-14 5.6)
//! sample entries, `stts` (8.6.1.2), `stsc` (8.7.4), `stsz` (8.7.3), `stco`
//! (8.7.5). Fragmented files carry empty tables; the samples are in `moof`.

use super::esds::Esds;
use super::fields::{check_version, once};
use super::writer::{put_count, put_u16, put_u32, put_version_flags};
use super::{BmffBox, Error, FourCC, Reader, Result, write_box};

/// `stbl`: the sample table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stbl {
    /// Sample descriptions.
    pub stsd: Stsd,
    /// Decode time to sample.
    pub stts: Stts,
    /// Sample to chunk.
    pub stsc: Stsc,
    /// Sample sizes.
    pub stsz: Stsz,
    /// Chunk offsets.
    pub stco: Stco,
}

impl BmffBox for Stbl {
    const TYPE: FourCC = FourCC::new(b"stbl");

    fn encode_body(&self, buf: &mut Vec<u8>) -> Result<()> {
        self.stsd.encode(buf)?;
        self.stts.encode(buf)?;
        self.stsc.encode(buf)?;
        self.stsz.encode(buf)?;
        self.stco.encode(buf)
    }

    /// Reads the table; `stsd` is required, the other tables default to
    /// empty when absent.
    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let (mut stsd, mut stts, mut stsc, mut stsz, mut stco) = (None, None, None, None, None);
        for b in r.children() {
            let b = b?;
            let t = b.fourcc();
            match &t.0 {
                b"stsd" => once(&mut stsd, Stsd::from_box(&b)?, t)?,
                b"stts" => once(&mut stts, Stts::from_box(&b)?, t)?,
                b"stsc" => once(&mut stsc, Stsc::from_box(&b)?, t)?,
                b"stsz" => once(&mut stsz, Stsz::from_box(&b)?, t)?,
                b"stco" => once(&mut stco, Stco::from_box(&b)?, t)?,
                _ => {}
            }
        }
        Ok(Stbl {
            stsd: stsd.ok_or(Error::MissingBox(Stsd::TYPE))?,
            stts: stts.unwrap_or_default(),
            stsc: stsc.unwrap_or_default(),
            stsz: stsz.unwrap_or_default(),
            stco: stco.unwrap_or_default(),
        })
    }
}

/// `stsd`: the sample descriptions (codec configurations).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stsd {
    /// The entries, referenced by 1-based index.
    pub entries: Vec<SampleDescription>,
}

impl BmffBox for Stsd {
    const TYPE: FourCC = FourCC::new(b"stsd");

    fn encode_body(&self, buf: &mut Vec<u8>) -> Result<()> {
        put_version_flags(buf, 0, 0);
        put_count(buf, self.entries.len(), "stsd entry count")?;
        for e in &self.entries {
            match e {
                SampleDescription::Avc1(a) => a.encode(buf)?,
                SampleDescription::Mp4a(m) => m.encode(buf)?,
                SampleDescription::Other { fourcc, body } => write_box(buf, *fourcc, |buf| {
                    buf.extend_from_slice(body);
                    Ok(())
                })?,
            }
        }
        Ok(())
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let (v, _) = r.version_flags()?;
        check_version(Self::TYPE, v, 1)?;
        let count = r.entry_count(Self::TYPE, 8, 0)?;
        let mut entries = Vec::with_capacity(count);
        let mut kids = r.children();
        for _ in 0..count {
            let b = kids
                .next()
                .ok_or(Error::Invalid("stsd entry count beyond its entries".into()))??;
            entries.push(match &b.fourcc().0 {
                b"avc1" => SampleDescription::Avc1(Avc1::from_box(&b)?),
                b"mp4a" => SampleDescription::Mp4a(Mp4a::from_box(&b)?),
                _ => SampleDescription::Other {
                    fourcc: b.fourcc(),
                    body: b.body.to_vec(),
                },
            });
        }
        if let Some(extra) = kids.next() {
            return Err(Error::TrailingData(extra?.len() as u64));
        }
        Ok(Stsd { entries })
    }
}

/// One sample description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SampleDescription {
    /// H.264 with out-of-band parameter sets.
    Avc1(Avc1),
    /// MPEG-4 audio (AAC).
    Mp4a(Mp4a),
    /// Any other sample entry, kept as its raw body.
    Other {
        /// The sample entry type.
        fourcc: FourCC,
        /// The body as read.
        body: Vec<u8>,
    },
}

/// Reads the `SampleEntry` head (6 reserved bytes, data reference index).
fn decode_sample_entry_head(r: &mut Reader<'_>) -> Result<u16> {
    r.skip(6)?;
    r.u16()
}

/// Writes the `SampleEntry` head.
fn encode_sample_entry_head(buf: &mut Vec<u8>, data_reference_index: u16) {
    buf.extend_from_slice(&[0; 6]);
    put_u16(buf, data_reference_index);
}

const AVCC: FourCC = FourCC::new(b"avcC");

/// `avc1`: an H.264 visual sample entry with its `avcC` configuration.
/// Resolution, frame count and the final pre-defined field are written as
/// their defaults (72 dpi, 1, -1) and not kept when read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Avc1 {
    /// 1-based index into `dref`.
    pub data_reference_index: u16,
    /// Coded width in pixels.
    pub width: u16,
    /// Coded height in pixels.
    pub height: u16,
    /// Informative encoder name, at most 31 bytes.
    pub compressor_name: String,
    /// Colour depth (`0x18`).
    pub depth: u16,
    /// The `AVCDecoderConfigurationRecord` (the body of `avcC`), opaque here.
    pub avcc: Vec<u8>,
}

impl BmffBox for Avc1 {
    const TYPE: FourCC = FourCC::new(b"avc1");

    fn encode_body(&self, buf: &mut Vec<u8>) -> Result<()> {
        let name = self.compressor_name.as_bytes();
        if name.len() > 31 {
            return Err(Error::Overflow("avc1 compressor name (31 bytes at most)"));
        }
        encode_sample_entry_head(buf, self.data_reference_index);
        buf.extend_from_slice(&[0; 16]); // pre_defined, reserved
        put_u16(buf, self.width);
        put_u16(buf, self.height);
        put_u32(buf, 0x0048_0000); // 72 dpi
        put_u32(buf, 0x0048_0000);
        put_u32(buf, 0); // reserved
        put_u16(buf, 1); // frame_count
        let mut compressor = [0u8; 32];
        compressor[0] = name.len() as u8;
        compressor[1..=name.len()].copy_from_slice(name);
        buf.extend_from_slice(&compressor);
        put_u16(buf, self.depth);
        buf.extend_from_slice(&(-1i16).to_be_bytes());
        write_box(buf, AVCC, |buf| {
            buf.extend_from_slice(&self.avcc);
            Ok(())
        })
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let data_reference_index = decode_sample_entry_head(r)?;
        r.skip(16)?;
        let width = r.u16()?;
        let height = r.u16()?;
        r.skip(4 + 4 + 4 + 2)?;
        let compressor = r.array::<32>()?;
        let len = usize::from(compressor[0]).min(31);
        let mut compressor_name = String::from_utf8_lossy(&compressor[1..=len]).into_owned();
        // Each invalid byte became a 3-byte U+FFFD: cut back to what the
        // field holds, so that the entry encodes again.
        if compressor_name.len() > 31 {
            let mut end = 31;
            while !compressor_name.is_char_boundary(end) {
                end -= 1;
            }
            compressor_name.truncate(end);
        }
        let depth = r.u16()?;
        r.skip(2)?;
        let mut avcc = None;
        for b in r.children() {
            let b = b?;
            if b.fourcc() == AVCC {
                once(&mut avcc, b.body.to_vec(), AVCC)?;
            }
        }
        Ok(Avc1 {
            data_reference_index,
            width,
            height,
            compressor_name,
            depth,
            avcc: avcc.ok_or(Error::MissingBox(AVCC))?,
        })
    }
}

/// `mp4a`: an MPEG-4 audio sample entry with its `esds`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mp4a {
    /// 1-based index into `dref`.
    pub data_reference_index: u16,
    /// Channel count.
    pub channel_count: u16,
    /// Bits per sample (16).
    pub sample_size: u16,
    /// Samples per second; rates above 65535 do not fit the 16.16 field
    /// and are written as 0 (the decoder configuration carries the rate).
    pub sample_rate: u32,
    /// The elementary stream descriptor.
    pub esds: Esds,
}

impl BmffBox for Mp4a {
    const TYPE: FourCC = FourCC::new(b"mp4a");

    fn encode_body(&self, buf: &mut Vec<u8>) -> Result<()> {
        encode_sample_entry_head(buf, self.data_reference_index);
        buf.extend_from_slice(&[0; 8]); // reserved (QuickTime: version 0)
        put_u16(buf, self.channel_count);
        put_u16(buf, self.sample_size);
        buf.extend_from_slice(&[0; 4]); // pre_defined, reserved
        let rate = if self.sample_rate <= 0xffff {
            self.sample_rate << 16
        } else {
            0
        };
        put_u32(buf, rate);
        self.esds.encode(buf)
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let data_reference_index = decode_sample_entry_head(r)?;
        let qt_version = r.u16()?;
        if qt_version != 0 {
            return Err(Error::Unsupported(format!(
                "QuickTime sound description version {qt_version}"
            )));
        }
        r.skip(6)?;
        let channel_count = r.u16()?;
        let sample_size = r.u16()?;
        r.skip(4)?;
        let sample_rate = r.u32()? >> 16;
        let mut esds = None;
        for b in r.children() {
            let b = b?;
            if b.fourcc() == Esds::TYPE {
                once(&mut esds, Esds::from_box(&b)?, Esds::TYPE)?;
            }
        }
        Ok(Mp4a {
            data_reference_index,
            channel_count,
            sample_size,
            sample_rate,
            esds: esds.ok_or(Error::MissingBox(Esds::TYPE))?,
        })
    }
}

/// One run of samples with the same duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SttsEntry {
    /// Number of consecutive samples.
    pub sample_count: u32,
    /// Their duration in ticks.
    pub sample_delta: u32,
}

/// `stts`: decode time to sample.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stts {
    /// The runs.
    pub entries: Vec<SttsEntry>,
}

impl BmffBox for Stts {
    const TYPE: FourCC = FourCC::new(b"stts");

    fn encode_body(&self, buf: &mut Vec<u8>) -> Result<()> {
        put_version_flags(buf, 0, 0);
        put_count(buf, self.entries.len(), "stts entry count")?;
        for e in &self.entries {
            put_u32(buf, e.sample_count);
            put_u32(buf, e.sample_delta);
        }
        Ok(())
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let (v, _) = r.version_flags()?;
        check_version(Self::TYPE, v, 0)?;
        let n = r.entry_count(Self::TYPE, 8, 0)?;
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            entries.push(SttsEntry {
                sample_count: r.u32()?,
                sample_delta: r.u32()?,
            });
        }
        Ok(Stts { entries })
    }
}

/// One run of chunks with the same number of samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StscEntry {
    /// 1-based index of the first chunk of the run.
    pub first_chunk: u32,
    /// Samples in each chunk.
    pub samples_per_chunk: u32,
    /// 1-based index into `stsd`.
    pub sample_description_index: u32,
}

/// `stsc`: sample to chunk.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stsc {
    /// The runs.
    pub entries: Vec<StscEntry>,
}

impl BmffBox for Stsc {
    const TYPE: FourCC = FourCC::new(b"stsc");

    fn encode_body(&self, buf: &mut Vec<u8>) -> Result<()> {
        put_version_flags(buf, 0, 0);
        put_count(buf, self.entries.len(), "stsc entry count")?;
        for e in &self.entries {
            put_u32(buf, e.first_chunk);
            put_u32(buf, e.samples_per_chunk);
            put_u32(buf, e.sample_description_index);
        }
        Ok(())
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let (v, _) = r.version_flags()?;
        check_version(Self::TYPE, v, 0)?;
        let n = r.entry_count(Self::TYPE, 12, 0)?;
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            entries.push(StscEntry {
                first_chunk: r.u32()?,
                samples_per_chunk: r.u32()?,
                sample_description_index: r.u32()?,
            });
        }
        Ok(Stsc { entries })
    }
}

/// `stsz`: sample sizes, either one size for all or one per sample.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stsz {
    /// The size of every sample, or 0 when `sizes` lists them.
    pub sample_size: u32,
    /// The number of samples when `sample_size` is not 0 (ignored, and
    /// written as `sizes.len()`, otherwise).
    pub sample_count: u32,
    /// Per-sample sizes when `sample_size` is 0.
    pub sizes: Vec<u32>,
}

impl BmffBox for Stsz {
    const TYPE: FourCC = FourCC::new(b"stsz");

    fn encode_body(&self, buf: &mut Vec<u8>) -> Result<()> {
        put_version_flags(buf, 0, 0);
        put_u32(buf, self.sample_size);
        if self.sample_size == 0 {
            put_count(buf, self.sizes.len(), "stsz sample count")?;
            for &s in &self.sizes {
                put_u32(buf, s);
            }
        } else {
            put_u32(buf, self.sample_count);
        }
        Ok(())
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let (v, _) = r.version_flags()?;
        check_version(Self::TYPE, v, 0)?;
        let sample_size = r.u32()?;
        if sample_size != 0 {
            return Ok(Stsz {
                sample_size,
                sample_count: r.u32()?,
                sizes: Vec::new(),
            });
        }
        let n = r.entry_count(Self::TYPE, 4, 0)?;
        let mut sizes = Vec::with_capacity(n);
        for _ in 0..n {
            sizes.push(r.u32()?);
        }
        Ok(Stsz {
            sample_size,
            sample_count: sizes.len() as u32,
            sizes,
        })
    }
}

/// `stco`: 32-bit chunk offsets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stco {
    /// File offset of each chunk.
    pub offsets: Vec<u32>,
}

impl BmffBox for Stco {
    const TYPE: FourCC = FourCC::new(b"stco");

    fn encode_body(&self, buf: &mut Vec<u8>) -> Result<()> {
        put_version_flags(buf, 0, 0);
        put_count(buf, self.offsets.len(), "stco entry count")?;
        for &o in &self.offsets {
            put_u32(buf, o);
        }
        Ok(())
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let (v, _) = r.version_flags()?;
        check_version(Self::TYPE, v, 0)?;
        let n = r.entry_count(Self::TYPE, 4, 0)?;
        let mut offsets = Vec::with_capacity(n);
        for _ in 0..n {
            offsets.push(r.u32()?);
        }
        Ok(Stco { offsets })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A real `avcC` from x264 (High profile, level 1.3, 320x240).
    pub(crate) const AVCC: [u8; 46] = [
        0x01, 0x64, 0x00, 0x0d, 0xff, 0xe1, 0x00, 0x19, 0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41,
        0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1,
        0x42, 0x99, 0x60, 0x01, 0x00, 0x06, 0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0, 0xfd, 0xf8, 0xf8,
        0x00,
    ];

    pub(crate) fn avc1() -> Avc1 {
        Avc1 {
            data_reference_index: 1,
            width: 320,
            height: 240,
            compressor_name: "sluice".into(),
            depth: 0x18,
            avcc: AVCC.to_vec(),
        }
    }

    pub(crate) fn mp4a() -> Mp4a {
        Mp4a {
            data_reference_index: 1,
            channel_count: 2,
            sample_size: 16,
            sample_rate: 48_000,
            esds: Esds {
                es_id: 0,
                object_type_indication: 0x40,
                stream_type: 5,
                buffer_size_db: 0,
                max_bitrate: 128_000,
                avg_bitrate: 128_000,
                decoder_specific_info: vec![0x11, 0x90],
            },
        }
    }

    #[test]
    fn sample_entries_round_trip() {
        let a = avc1();
        let b = a.to_bytes().unwrap();
        assert_eq!(b.len(), 8 + 78 + 8 + AVCC.len());
        assert_eq!(Avc1::decode(&b).unwrap(), a);
        let m = mp4a();
        let b = m.to_bytes().unwrap();
        assert_eq!(&b[8 + 24..8 + 28], &[0xbb, 0x80, 0, 0]);
        assert_eq!(Mp4a::decode(&b).unwrap(), m);
        let too_long = Avc1 {
            compressor_name: "x".repeat(32),
            ..avc1()
        };
        assert!(too_long.to_bytes().is_err());
    }

    /// Found by the `fmp4` fuzz target: a compressor name that is not
    /// UTF-8 decoded to more than the 31 bytes `encode` accepts.
    #[test]
    fn avc1_with_a_compressor_name_that_is_not_utf8_round_trips() {
        let mut b = avc1().to_bytes().unwrap();
        let at = b
            .windows(7)
            .position(|w| w == b"\x06sluice")
            .expect("compressor name");
        b[at] = 31;
        b[at + 1..at + 32].fill(0xff);
        let a = Avc1::decode(&b).expect("decodes");
        assert!(a.compressor_name.len() <= 31, "{:?}", a.compressor_name);
        assert_eq!(a.compressor_name, "\u{fffd}".repeat(10));
        let again = a.to_bytes().expect("encodes");
        assert_eq!(Avc1::decode(&again).expect("decodes again"), a);

        // The fuzzer's input, minimised: five bytes that are not UTF-8 in
        // a 31-byte name.
        let fuzzed: [u8; 161] = [
            0x00, 0x00, 0x00, 0xa1, 0x61, 0x76, 0x63, 0x31, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x02, 0x80, 0x01, 0x68, 0x00, 0x48, 0x00, 0x00, 0x00, 0x48,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xfb, 0x8c, 0x86, 0x91, 0x8b, 0x98,
            0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x3c, 0x21,
            0x5b, 0x43, 0x44, 0x41, 0x54, 0x41, 0x5b, 0x00, 0x00, 0x3c, 0x00, 0x00, 0x00, 0x18,
            0xff, 0xff, 0x00, 0x00, 0x00, 0x37, 0x61, 0x76, 0x63, 0x43, 0x01, 0x64, 0x00, 0x1e,
            0xff, 0xe1, 0x00, 0x1a, 0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x20, 0x74, 0x00, 0x3c, 0x00, 0x01, 0x97, 0x00, 0x00, 0xdf, 0xfe, 0x1d,
            0x78, 0x00, 0x00, 0x00, 0x20, 0x74, 0x00, 0x00, 0x3c, 0x00, 0x00, 0x00, 0x02, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x6d, 0x76, 0x65, 0x78, 0x00, 0x00, 0xdf, 0xfe, 0x1d,
            0x78, 0x00, 0x00, 0x00, 0x20, 0x00, 0x3c,
        ];
        let a = Avc1::decode(&fuzzed).expect("decodes");
        assert!(a.compressor_name.len() <= 31, "{:?}", a.compressor_name);
        assert_eq!(Avc1::decode(&a.to_bytes().expect("encodes")), Ok(a));
    }

    #[test]
    fn stsd_round_trips_with_unknown_entries() {
        let s = Stsd {
            entries: vec![
                SampleDescription::Avc1(avc1()),
                SampleDescription::Mp4a(mp4a()),
                SampleDescription::Other {
                    fourcc: FourCC::new(b"hvc1"),
                    body: vec![1, 2, 3],
                },
            ],
        };
        assert_eq!(Stsd::decode(&s.to_bytes().unwrap()).unwrap(), s);
        // A declared count that the body cannot hold.
        let mut b = Stsd::default().to_bytes().unwrap();
        b[15] = 9;
        assert!(matches!(
            Stsd::decode(&b),
            Err(Error::TooManyEntries { .. })
        ));
    }

    #[test]
    fn tables_round_trip() {
        let stbl = Stbl {
            stsd: Stsd {
                entries: vec![SampleDescription::Avc1(avc1())],
            },
            stts: Stts {
                entries: vec![SttsEntry {
                    sample_count: 3,
                    sample_delta: 3600,
                }],
            },
            stsc: Stsc {
                entries: vec![StscEntry {
                    first_chunk: 1,
                    samples_per_chunk: 3,
                    sample_description_index: 1,
                }],
            },
            stsz: Stsz {
                sample_size: 0,
                sample_count: 3,
                sizes: vec![10, 20, 30],
            },
            stco: Stco { offsets: vec![48] },
        };
        assert_eq!(Stbl::decode(&stbl.to_bytes().unwrap()).unwrap(), stbl);
        let uniform = Stsz {
            sample_size: 6,
            sample_count: 1000,
            sizes: vec![],
        };
        let b = uniform.to_bytes().unwrap();
        assert_eq!(b.len(), 20);
        assert_eq!(Stsz::decode(&b).unwrap(), uniform);
        // Empty tables, as in a fragmented file.
        let empty = Stbl::default();
        let b = empty.to_bytes().unwrap();
        assert_eq!(b.len(), 8 + 16 + 16 + 16 + 20 + 16);
        assert_eq!(Stbl::decode(&b).unwrap(), empty);
    }
}
