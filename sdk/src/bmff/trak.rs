//! A track and its media boxes: `trak` (ISO/IEC 14496-12 8.3.1), `tkhd`
//! (8.3.2), `mdia` (8.4.1), `mdhd` (8.4.2), `hdlr` (8.4.3), `minf`
//! (8.4.4), `vmhd`/`smhd`/`nmhd` (12.1.2, 12.2.2, 8.4.5.2), `dinf` (8.7.1),
//! `dref` and `url ` (8.7.2). The sample table is in [`stbl`](super::stbl).

use super::fields::{UNITY_MATRIX, check_version, get_time, once, put_time, version_for};
use super::stbl::Stbl;
use super::writer::{put_count, put_u16, put_u32, put_version_flags, write_full_box};
use super::{BmffBox, Error, FourCC, Reader, Result};

/// `trak`: one track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trak {
    /// Track header.
    pub tkhd: Tkhd,
    /// Media.
    pub mdia: Mdia,
}

impl BmffBox for Trak {
    const TYPE: FourCC = FourCC::new(b"trak");

    fn encode_body(&self, buf: &mut Vec<u8>) -> Result<()> {
        self.tkhd.encode(buf)?;
        self.mdia.encode(buf)
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let (mut tkhd, mut mdia) = (None, None);
        for b in r.children() {
            let b = b?;
            match &b.fourcc().0 {
                b"tkhd" => once(&mut tkhd, Tkhd::from_box(&b)?, b.fourcc())?,
                b"mdia" => once(&mut mdia, Mdia::from_box(&b)?, b.fourcc())?,
                _ => {}
            }
        }
        Ok(Trak {
            tkhd: tkhd.ok_or(Error::MissingBox(Tkhd::TYPE))?,
            mdia: mdia.ok_or(Error::MissingBox(Mdia::TYPE))?,
        })
    }
}

/// `tkhd`: track identity and presentation. The matrix is written as unity
/// and not kept when read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tkhd {
    /// Flags: 1 enabled, 2 in movie, 4 in preview.
    pub flags: u32,
    /// Seconds since 1904-01-01 UTC.
    pub creation_time: u64,
    /// Seconds since 1904-01-01 UTC.
    pub modification_time: u64,
    /// The track id (never 0).
    pub track_id: u32,
    /// Duration in the movie timescale (0 for fragmented files).
    pub duration: u64,
    /// Front-to-back order of visual tracks.
    pub layer: i16,
    /// Tracks of one group are alternatives to each other (0: none).
    pub alternate_group: i16,
    /// 8.8 fixed point; `0x0100` for audio, 0 otherwise.
    pub volume: u16,
    /// Visual width, 16.16 fixed point.
    pub width: u32,
    /// Visual height, 16.16 fixed point.
    pub height: u32,
}

impl BmffBox for Tkhd {
    const TYPE: FourCC = FourCC::new(b"tkhd");

    fn encode_body(&self, buf: &mut Vec<u8>) -> Result<()> {
        let v = version_for(&[self.creation_time, self.modification_time, self.duration]);
        put_version_flags(buf, v, self.flags);
        put_time(buf, v, self.creation_time);
        put_time(buf, v, self.modification_time);
        put_u32(buf, self.track_id);
        put_u32(buf, 0); // reserved
        put_time(buf, v, self.duration);
        buf.extend_from_slice(&[0; 8]); // reserved
        buf.extend_from_slice(&self.layer.to_be_bytes());
        buf.extend_from_slice(&self.alternate_group.to_be_bytes());
        put_u16(buf, self.volume);
        put_u16(buf, 0); // reserved
        for m in UNITY_MATRIX {
            put_u32(buf, m);
        }
        put_u32(buf, self.width);
        put_u32(buf, self.height);
        Ok(())
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let (v, flags) = r.version_flags()?;
        check_version(Self::TYPE, v, 1)?;
        let creation_time = get_time(r, v)?;
        let modification_time = get_time(r, v)?;
        let track_id = r.u32()?;
        r.skip(4)?;
        let duration = get_time(r, v)?;
        r.skip(8)?;
        let layer = r.i16()?;
        let alternate_group = r.i16()?;
        let volume = r.u16()?;
        r.skip(2 + 36)?;
        Ok(Tkhd {
            flags,
            creation_time,
            modification_time,
            track_id,
            duration,
            layer,
            alternate_group,
            volume,
            width: r.u32()?,
            height: r.u32()?,
        })
    }
}

/// `mdia`: the track's media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mdia {
    /// Media header.
    pub mdhd: Mdhd,
    /// Handler (media type).
    pub hdlr: Hdlr,
    /// Media information.
    pub minf: Minf,
}

impl BmffBox for Mdia {
    const TYPE: FourCC = FourCC::new(b"mdia");

    fn encode_body(&self, buf: &mut Vec<u8>) -> Result<()> {
        self.mdhd.encode(buf)?;
        self.hdlr.encode(buf)?;
        self.minf.encode(buf)
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let (mut mdhd, mut hdlr, mut minf) = (None, None, None);
        for b in r.children() {
            let b = b?;
            match &b.fourcc().0 {
                b"mdhd" => once(&mut mdhd, Mdhd::from_box(&b)?, b.fourcc())?,
                b"hdlr" => once(&mut hdlr, Hdlr::from_box(&b)?, b.fourcc())?,
                b"minf" => once(&mut minf, Minf::from_box(&b)?, b.fourcc())?,
                _ => {}
            }
        }
        Ok(Mdia {
            mdhd: mdhd.ok_or(Error::MissingBox(Mdhd::TYPE))?,
            hdlr: hdlr.ok_or(Error::MissingBox(Hdlr::TYPE))?,
            minf: minf.ok_or(Error::MissingBox(Minf::TYPE))?,
        })
    }
}

/// `mdhd`: the media timescale and language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mdhd {
    /// Seconds since 1904-01-01 UTC.
    pub creation_time: u64,
    /// Seconds since 1904-01-01 UTC.
    pub modification_time: u64,
    /// Ticks per second of every time value of the track.
    pub timescale: u32,
    /// Duration in ticks (0 for fragmented files).
    pub duration: u64,
    /// ISO 639-2/T code, three lower-case letters (`und` when unknown;
    /// decoding gives `und` for a field that does not hold three letters).
    pub language: [u8; 3],
}

impl Default for Mdhd {
    fn default() -> Self {
        Mdhd {
            creation_time: 0,
            modification_time: 0,
            timescale: 1000,
            duration: 0,
            language: *b"und",
        }
    }
}

impl BmffBox for Mdhd {
    const TYPE: FourCC = FourCC::new(b"mdhd");

    fn encode_body(&self, buf: &mut Vec<u8>) -> Result<()> {
        let v = version_for(&[self.creation_time, self.modification_time, self.duration]);
        put_version_flags(buf, v, 0);
        put_time(buf, v, self.creation_time);
        put_time(buf, v, self.modification_time);
        put_u32(buf, self.timescale);
        put_time(buf, v, self.duration);
        let mut packed: u16 = 0;
        for c in self.language {
            if !c.is_ascii_lowercase() {
                return Err(Error::Invalid(format!(
                    "mdhd language {:?}",
                    String::from_utf8_lossy(&self.language)
                )));
            }
            packed = (packed << 5) | u16::from(c - 0x60);
        }
        put_u16(buf, packed);
        put_u16(buf, 0); // pre_defined
        Ok(())
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let (v, _) = r.version_flags()?;
        check_version(Self::TYPE, v, 1)?;
        let creation_time = get_time(r, v)?;
        let modification_time = get_time(r, v)?;
        let timescale = r.u32()?;
        let duration = get_time(r, v)?;
        let packed = r.u16()?;
        r.skip(2)?;
        let letter = |shift: u16| ((packed >> shift) & 0x1f) as u8 + 0x60;
        let mut language = [letter(10), letter(5), letter(0)];
        // Five bits also hold '`' and '{'..DEL (a zero field, which some
        // muxers write, reads as "```"): not a language, so unknown, and
        // the box still encodes again.
        if !language.iter().all(u8::is_ascii_lowercase) {
            language = *b"und";
        }
        Ok(Mdhd {
            creation_time,
            modification_time,
            timescale,
            duration,
            language,
        })
    }
}

/// `hdlr`: the media type (`vide`, `soun`, ...) and a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hdlr {
    /// The handler type.
    pub handler_type: FourCC,
    /// A human-readable name (written NUL-terminated).
    pub name: String,
}

impl BmffBox for Hdlr {
    const TYPE: FourCC = FourCC::new(b"hdlr");

    fn encode_body(&self, buf: &mut Vec<u8>) -> Result<()> {
        if self.name.contains('\0') {
            return Err(Error::Invalid("hdlr name with a NUL".into()));
        }
        put_version_flags(buf, 0, 0);
        put_u32(buf, 0); // pre_defined
        buf.extend_from_slice(&self.handler_type.0);
        buf.extend_from_slice(&[0; 12]); // reserved
        buf.extend_from_slice(self.name.as_bytes());
        buf.push(0);
        Ok(())
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let (v, _) = r.version_flags()?;
        check_version(Self::TYPE, v, 0)?;
        r.skip(4)?;
        let handler_type = r.fourcc()?;
        r.skip(12)?;
        // The name runs to the first NUL; some writers pad or omit it.
        let rest = r.rest();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        Ok(Hdlr {
            handler_type,
            name: String::from_utf8_lossy(&rest[..end]).into_owned(),
        })
    }
}

/// The media-specific header inside `minf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaHeader {
    /// `vmhd`, for video.
    Video(Vmhd),
    /// `smhd`, for audio.
    Sound(Smhd),
    /// `nmhd`, for other media.
    Null,
}

/// `minf`: how to find and read the media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Minf {
    /// The media header; `None` when the file has one this module does not know.
    pub media_header: Option<MediaHeader>,
    /// Data references.
    pub dinf: Dinf,
    /// The sample table.
    pub stbl: Stbl,
}

const NMHD: FourCC = FourCC::new(b"nmhd");

impl BmffBox for Minf {
    const TYPE: FourCC = FourCC::new(b"minf");

    fn encode_body(&self, buf: &mut Vec<u8>) -> Result<()> {
        match &self.media_header {
            Some(MediaHeader::Video(v)) => v.encode(buf)?,
            Some(MediaHeader::Sound(s)) => s.encode(buf)?,
            Some(MediaHeader::Null) => write_full_box(buf, NMHD, 0, 0, |_| Ok(()))?,
            None => {}
        }
        self.dinf.encode(buf)?;
        self.stbl.encode(buf)
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let (mut media_header, mut dinf, mut stbl) = (None, None, None);
        for b in r.children() {
            let b = b?;
            match &b.fourcc().0 {
                b"vmhd" => once(
                    &mut media_header,
                    MediaHeader::Video(Vmhd::from_box(&b)?),
                    b.fourcc(),
                )?,
                b"smhd" => once(
                    &mut media_header,
                    MediaHeader::Sound(Smhd::from_box(&b)?),
                    b.fourcc(),
                )?,
                b"nmhd" => once(&mut media_header, MediaHeader::Null, b.fourcc())?,
                b"dinf" => once(&mut dinf, Dinf::from_box(&b)?, b.fourcc())?,
                b"stbl" => once(&mut stbl, Stbl::from_box(&b)?, b.fourcc())?,
                _ => {}
            }
        }
        Ok(Minf {
            media_header,
            dinf: dinf.ok_or(Error::MissingBox(Dinf::TYPE))?,
            stbl: stbl.ok_or(Error::MissingBox(Stbl::TYPE))?,
        })
    }
}

/// `vmhd`: video media header (written with flags 1, as required).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vmhd {
    /// Composition mode (0: copy).
    pub graphics_mode: u16,
    /// Red, green, blue for some graphics modes.
    pub opcolor: [u16; 3],
}

impl BmffBox for Vmhd {
    const TYPE: FourCC = FourCC::new(b"vmhd");

    fn encode_body(&self, buf: &mut Vec<u8>) -> Result<()> {
        put_version_flags(buf, 0, 1);
        put_u16(buf, self.graphics_mode);
        for c in self.opcolor {
            put_u16(buf, c);
        }
        Ok(())
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let (v, _) = r.version_flags()?;
        check_version(Self::TYPE, v, 0)?;
        Ok(Vmhd {
            graphics_mode: r.u16()?,
            opcolor: [r.u16()?, r.u16()?, r.u16()?],
        })
    }
}

/// `smhd`: sound media header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Smhd {
    /// Stereo balance, 8.8 fixed point (0: centre).
    pub balance: i16,
}

impl BmffBox for Smhd {
    const TYPE: FourCC = FourCC::new(b"smhd");

    fn encode_body(&self, buf: &mut Vec<u8>) -> Result<()> {
        put_version_flags(buf, 0, 0);
        buf.extend_from_slice(&self.balance.to_be_bytes());
        put_u16(buf, 0); // reserved
        Ok(())
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let (v, _) = r.version_flags()?;
        check_version(Self::TYPE, v, 0)?;
        let balance = r.i16()?;
        r.skip(2)?;
        Ok(Smhd { balance })
    }
}

/// `dinf`: data information.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dinf {
    /// The data reference table.
    pub dref: Dref,
}

impl BmffBox for Dinf {
    const TYPE: FourCC = FourCC::new(b"dinf");

    fn encode_body(&self, buf: &mut Vec<u8>) -> Result<()> {
        self.dref.encode(buf)
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let mut dref = None;
        for b in r.children() {
            let b = b?;
            if b.fourcc() == Dref::TYPE {
                once(&mut dref, Dref::from_box(&b)?, b.fourcc())?;
            }
        }
        Ok(Dinf {
            dref: dref.ok_or(Error::MissingBox(Dref::TYPE))?,
        })
    }
}

/// `dref`: where the media data is (for us: always "in this file").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dref {
    /// The entries, referenced by 1-based index from sample entries.
    pub entries: Vec<Url>,
}

impl Default for Dref {
    /// One self-contained `url ` entry.
    fn default() -> Self {
        Dref {
            entries: vec![Url::default()],
        }
    }
}

impl BmffBox for Dref {
    const TYPE: FourCC = FourCC::new(b"dref");

    fn encode_body(&self, buf: &mut Vec<u8>) -> Result<()> {
        put_version_flags(buf, 0, 0);
        put_count(buf, self.entries.len(), "dref entry count")?;
        for e in &self.entries {
            e.encode(buf)?;
        }
        Ok(())
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let (v, _) = r.version_flags()?;
        check_version(Self::TYPE, v, 0)?;
        // Each entry is a full box of at least 12 bytes.
        let count = r.entry_count(Self::TYPE, 12, 0)?;
        let mut entries = Vec::with_capacity(count);
        let mut kids = r.children();
        for _ in 0..count {
            let b = kids.next().ok_or(Error::MissingBox(Url::TYPE))??;
            if b.fourcc() != Url::TYPE {
                return Err(Error::Unsupported(format!("dref entry {}", b.fourcc())));
            }
            entries.push(Url::from_box(&b)?);
        }
        if let Some(extra) = kids.next() {
            return Err(Error::TrailingData(extra?.len() as u64));
        }
        Ok(Dref { entries })
    }
}

/// `url `: a data entry; flag 1 means "in this file" (no location).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// Flags; 1 = self-contained.
    pub flags: u32,
    /// The location, when not self-contained.
    pub location: String,
}

impl Default for Url {
    fn default() -> Self {
        Url {
            flags: 1,
            location: String::new(),
        }
    }
}

impl BmffBox for Url {
    const TYPE: FourCC = FourCC::new(b"url ");

    fn encode_body(&self, buf: &mut Vec<u8>) -> Result<()> {
        put_version_flags(buf, 0, self.flags);
        if self.flags & 1 == 0 {
            if self.location.contains('\0') {
                return Err(Error::Invalid("url location with a NUL".into()));
            }
            buf.extend_from_slice(self.location.as_bytes());
            buf.push(0);
        }
        Ok(())
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let (v, flags) = r.version_flags()?;
        check_version(Self::TYPE, v, 0)?;
        let rest = r.rest();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        Ok(Url {
            flags,
            location: String::from_utf8_lossy(&rest[..end]).into_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tkhd_round_trips() {
        let t = Tkhd {
            flags: 3,
            track_id: 7,
            volume: 0x0100,
            width: 320 << 16,
            height: 240 << 16,
            layer: -1,
            alternate_group: 1,
            ..Tkhd::default()
        };
        let b = t.to_bytes().unwrap();
        assert_eq!(b.len(), 92);
        assert_eq!(Tkhd::decode(&b).unwrap(), t);
        let t = Tkhd {
            modification_time: u64::from(u32::MAX) + 1,
            ..t
        };
        let b = t.to_bytes().unwrap();
        assert_eq!(b.len(), 104);
        assert_eq!(Tkhd::decode(&b).unwrap(), t);
    }

    #[test]
    fn mdhd_round_trips_and_packs_language() {
        let m = Mdhd {
            timescale: 90_000,
            language: *b"eng",
            ..Mdhd::default()
        };
        let b = m.to_bytes().unwrap();
        assert_eq!(b.len(), 32);
        // 'e'=5, 'n'=14, 'g'=7 → 0b00101_01110_00111
        assert_eq!(&b[28..30], &[0x15, 0xc7]);
        assert_eq!(Mdhd::decode(&b).unwrap(), m);
        let bad = Mdhd {
            language: *b"EN1",
            ..m
        };
        assert!(matches!(bad.to_bytes(), Err(Error::Invalid(_))));
    }

    /// Found by the `fmp4` fuzz target: a zero language field decoded to
    /// "```", which `encode` then refused.
    #[test]
    fn mdhd_with_a_language_field_that_is_no_language_round_trips() {
        for packed in [0x0000u16, 0x7fff, 0x15df] {
            let mut b = vec![0, 0, 0, 32];
            b.extend_from_slice(b"mdhd");
            b.extend_from_slice(&[0; 4]); // version 0, flags
            b.extend_from_slice(&21u32.to_be_bytes());
            b.extend_from_slice(&0xc700_0000u32.to_be_bytes());
            b.extend_from_slice(&10_344u32.to_be_bytes());
            b.extend_from_slice(&0x646c_0000u32.to_be_bytes());
            b.extend_from_slice(&packed.to_be_bytes());
            b.extend_from_slice(&[0, 0]);
            let m = Mdhd::decode(&b).expect("decodes");
            assert_eq!(&m.language, b"und", "{packed:#06x}");
            assert_eq!(m.timescale, 10_344);
            let again = m.to_bytes().expect("encodes");
            assert_eq!(Mdhd::decode(&again).expect("decodes again"), m);
        }
        // The fuzzer's input, minimised (language field 0x003c: "`a|").
        let fuzzed: [u8; 32] = [
            0x00, 0x00, 0x00, 0x20, 0x6d, 0x64, 0x68, 0x64, 0x00, 0x21, 0x00, 0x3c, 0x3c, 0xfe,
            0x1d, 0x00, 0x00, 0x00, 0x42, 0x5b, 0x1d, 0x3c, 0x64, 0x68, 0x1d, 0x00, 0x3c, 0x21,
            0x00, 0x3c, 0x00, 0x3c,
        ];
        let m = Mdhd::decode(&fuzzed).expect("decodes");
        assert_eq!(&m.language, b"und");
        assert_eq!(Mdhd::decode(&m.to_bytes().expect("encodes")), Ok(m));
    }

    #[test]
    fn hdlr_and_headers_round_trip() {
        let h = Hdlr {
            handler_type: FourCC::new(b"soun"),
            name: "SoundHandler".into(),
        };
        assert_eq!(Hdlr::decode(&h.to_bytes().unwrap()).unwrap(), h);
        let v = Vmhd::default();
        let b = v.to_bytes().unwrap();
        assert_eq!(b.len(), 20);
        assert_eq!(&b[8..12], &[0, 0, 0, 1]);
        assert_eq!(Vmhd::decode(&b).unwrap(), v);
        let s = Smhd { balance: -256 };
        assert_eq!(Smhd::decode(&s.to_bytes().unwrap()).unwrap(), s);
    }

    #[test]
    fn dinf_round_trips() {
        let d = Dinf::default();
        let b = d.to_bytes().unwrap();
        assert_eq!(b.len(), 36);
        assert_eq!(Dinf::decode(&b).unwrap(), d);
        let d = Dinf {
            dref: Dref {
                entries: vec![
                    Url::default(),
                    Url {
                        flags: 0,
                        location: "media.mp4".into(),
                    },
                ],
            },
        };
        assert_eq!(Dinf::decode(&d.to_bytes().unwrap()).unwrap(), d);
        // A count larger than the entries present.
        let mut b = Dref::default().to_bytes().unwrap();
        b[15] = 2;
        assert!(Dref::decode(&b).is_err());
    }

    #[test]
    fn minf_media_headers_round_trip() {
        for media_header in [
            Some(MediaHeader::Video(Vmhd::default())),
            Some(MediaHeader::Sound(Smhd::default())),
            Some(MediaHeader::Null),
            None,
        ] {
            let m = Minf {
                media_header,
                dinf: Dinf::default(),
                stbl: Stbl::default(),
            };
            assert_eq!(Minf::decode(&m.to_bytes().unwrap()).unwrap(), m);
        }
    }
}
