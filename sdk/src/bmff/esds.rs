//! `esds` (ISO/IEC 14496-14 5.6): an MPEG-4 `ES_Descriptor` (ISO/IEC
//! 14496-1 7.2.6.5) with its `DecoderConfigDescriptor` (7.2.6.6),
//! `DecoderSpecificInfo` (7.2.6.7; the AudioSpecificConfig for AAC) and
//! `SLConfigDescriptor` (7.3.2.3.1), in the descriptors' own
//! tag-length-value encoding.

use super::fields::check_version;
use super::writer::{put_u16, put_u24, put_u32, put_version_flags};
use super::{BmffBox, Error, FourCC, Reader, Result};

/// `ES_DescrTag`.
const ES_DESCRIPTOR: u8 = 0x03;
/// `DecoderConfigDescrTag`.
const DECODER_CONFIG: u8 = 0x04;
/// `DecSpecificInfoTag`.
const DECODER_SPECIFIC_INFO: u8 = 0x05;
/// `SLConfigDescrTag`.
const SL_CONFIG: u8 = 0x06;

/// Object type indication of MPEG-4 Audio (AAC).
pub const OBJECT_TYPE_MPEG4_AUDIO: u8 = 0x40;
/// Stream type of audio streams.
pub const STREAM_TYPE_AUDIO: u8 = 0x05;

/// Largest length the 4-byte descriptor length encoding can express.
const MAX_DESCRIPTOR_LEN: usize = (1 << 28) - 1;

/// `esds`: the elementary stream descriptor of an `mp4a` sample entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Esds {
    /// Elementary stream id (0 in files, ISO/IEC 14496-14 3.1.2).
    pub es_id: u16,
    /// The codec family; [`OBJECT_TYPE_MPEG4_AUDIO`] for AAC.
    pub object_type_indication: u8,
    /// 6-bit stream type; [`STREAM_TYPE_AUDIO`] for audio.
    pub stream_type: u8,
    /// Decoder buffer size in bytes (24 bits).
    pub buffer_size_db: u32,
    /// Peak bitrate in bit/s over any one-second window (0: unknown).
    pub max_bitrate: u32,
    /// Average bitrate in bit/s (0: variable or unknown).
    pub avg_bitrate: u32,
    /// The decoder configuration (AudioSpecificConfig); empty: none.
    pub decoder_specific_info: Vec<u8>,
}

/// Appends a descriptor: tag, minimal-length size, body.
fn put_descriptor<F>(buf: &mut Vec<u8>, tag: u8, body: F) -> Result<()>
where
    F: FnOnce(&mut Vec<u8>) -> Result<()>,
{
    let mut inner = Vec::new();
    body(&mut inner)?;
    let len = inner.len();
    if len > MAX_DESCRIPTOR_LEN {
        return Err(Error::Overflow("descriptor length (2^28 - 1 at most)"));
    }
    buf.push(tag);
    // 7 bits per byte, most significant first, high bit = "more follows".
    let groups = (1..4).rev().filter(|&i| len >> (7 * i) != 0).count() + 1;
    for i in (0..groups).rev() {
        let more = if i == 0 { 0 } else { 0x80 };
        buf.push(((len >> (7 * i)) & 0x7f) as u8 | more);
    }
    buf.extend_from_slice(&inner);
    Ok(())
}

/// Reads a descriptor's tag and a reader over its body.
fn get_descriptor<'a>(r: &mut Reader<'a>) -> Result<(u8, Reader<'a>)> {
    let tag = r.u8()?;
    let mut len: usize = 0;
    for i in 0..4 {
        let b = r.u8()?;
        len = (len << 7) | usize::from(b & 0x7f);
        if b & 0x80 == 0 {
            break;
        }
        if i == 3 {
            return Err(Error::Invalid("descriptor length over 4 bytes".into()));
        }
    }
    Ok((tag, r.sub(len)?))
}

impl BmffBox for Esds {
    const TYPE: FourCC = FourCC::new(b"esds");

    fn encode_body(&self, buf: &mut Vec<u8>) -> Result<()> {
        if self.stream_type > 0x3f {
            return Err(Error::Overflow("esds stream type (6 bits)"));
        }
        put_version_flags(buf, 0, 0);
        put_descriptor(buf, ES_DESCRIPTOR, |buf| {
            put_u16(buf, self.es_id);
            buf.push(0); // no dependence, URL or OCR stream; priority 0
            put_descriptor(buf, DECODER_CONFIG, |buf| {
                buf.push(self.object_type_indication);
                // streamType(6) upStream(1)=0 reserved(1)=1
                buf.push((self.stream_type << 2) | 1);
                put_u24(buf, self.buffer_size_db, "esds bufferSizeDB (24 bits)")?;
                put_u32(buf, self.max_bitrate);
                put_u32(buf, self.avg_bitrate);
                if !self.decoder_specific_info.is_empty() {
                    put_descriptor(buf, DECODER_SPECIFIC_INFO, |buf| {
                        buf.extend_from_slice(&self.decoder_specific_info);
                        Ok(())
                    })?;
                }
                Ok(())
            })?;
            // Predefined SL configuration 2: "reserved for use in MP4 files".
            put_descriptor(buf, SL_CONFIG, |buf| {
                buf.push(2);
                Ok(())
            })
        })
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let (v, _) = r.version_flags()?;
        check_version(Self::TYPE, v, 0)?;
        let (tag, mut es) = get_descriptor(r)?;
        if tag != ES_DESCRIPTOR {
            return Err(Error::Invalid(format!(
                "esds starts with descriptor tag {tag:#04x}, not ES_Descriptor"
            )));
        }
        let es_id = es.u16()?;
        let flags = es.u8()?;
        if flags & 0x80 != 0 {
            es.skip(2)?; // dependsOn_ES_ID
        }
        if flags & 0x40 != 0 {
            let n = es.u8()?;
            es.skip(usize::from(n))?; // URLstring
        }
        if flags & 0x20 != 0 {
            es.skip(2)?; // OCR_ES_Id
        }
        let mut config = None;
        while !es.is_empty() {
            let (tag, mut d) = get_descriptor(&mut es)?;
            if tag != DECODER_CONFIG {
                continue;
            }
            if config.is_some() {
                return Err(Error::Invalid("two DecoderConfigDescriptors".into()));
            }
            let object_type_indication = d.u8()?;
            let stream_type = d.u8()? >> 2;
            let buffer_size_db = d.u24()?;
            let max_bitrate = d.u32()?;
            let avg_bitrate = d.u32()?;
            let mut decoder_specific_info = Vec::new();
            while !d.is_empty() {
                let (tag, mut info) = get_descriptor(&mut d)?;
                if tag == DECODER_SPECIFIC_INFO {
                    decoder_specific_info = info.rest().to_vec();
                }
            }
            config = Some(Esds {
                es_id,
                object_type_indication,
                stream_type,
                buffer_size_db,
                max_bitrate,
                avg_bitrate,
                decoder_specific_info,
            });
        }
        config.ok_or(Error::Invalid(
            "esds without a DecoderConfigDescriptor".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aac() -> Esds {
        Esds {
            es_id: 0,
            object_type_indication: OBJECT_TYPE_MPEG4_AUDIO,
            stream_type: STREAM_TYPE_AUDIO,
            buffer_size_db: 0,
            max_bitrate: 69_000,
            avg_bitrate: 69_000,
            decoder_specific_info: vec![0x11, 0x88],
        }
    }

    #[test]
    fn encodes_the_descriptor_tree() {
        let b = aac().to_bytes().unwrap();
        #[rustfmt::skip]
        let expect = [
            0, 0, 0, 39, b'e', b's', b'd', b's', 0, 0, 0, 0,
            0x03, 25, 0, 0, 0,
                0x04, 17, 0x40, 0x15, 0, 0, 0, 0, 1, 0x0d, 0x88, 0, 1, 0x0d, 0x88,
                    0x05, 2, 0x11, 0x88,
                0x06, 1, 2,
        ];
        assert_eq!(b, expect);
        assert_eq!(Esds::decode(&b).unwrap(), aac());
    }

    #[test]
    fn long_lengths_and_foreign_encodings() {
        let big = Esds {
            decoder_specific_info: vec![7; 300],
            ..aac()
        };
        let b = big.to_bytes().unwrap();
        assert_eq!(Esds::decode(&b).unwrap(), big);
        // ffmpeg's 4-byte length form, copied from its output.
        let ffmpeg = [
            0x00, 0x00, 0x00, 0x36, b'e', b's', b'd', b's', 0x00, 0x00, 0x00, 0x00, 0x03, 0x80,
            0x80, 0x80, 0x25, 0x00, 0x01, 0x00, 0x04, 0x80, 0x80, 0x80, 0x17, 0x40, 0x15, 0x00,
            0x00, 0x00, 0x00, 0x01, 0x13, 0x29, 0x00, 0x01, 0x13, 0x29, 0x05, 0x80, 0x80, 0x80,
            0x05, 0x11, 0x88, 0x56, 0xe5, 0x00, 0x06, 0x80, 0x80, 0x80, 0x01, 0x02,
        ];
        let e = Esds::decode(&ffmpeg).unwrap();
        assert_eq!(e.es_id, 1);
        assert_eq!(e.object_type_indication, 0x40);
        assert_eq!(e.stream_type, 5);
        assert_eq!(e.avg_bitrate, 0x11329);
        assert_eq!(e.decoder_specific_info, [0x11, 0x88, 0x56, 0xe5, 0x00]);
    }

    #[test]
    fn rejects_bad_trees() {
        let mut b = aac().to_bytes().unwrap();
        b[12] = 0x04; // not an ES_Descriptor
        assert!(Esds::decode(&b).is_err());
        let mut b = aac().to_bytes().unwrap();
        b[13] = 100; // longer than the box
        assert!(Esds::decode(&b).is_err());
        let bad = Esds {
            stream_type: 0x40,
            ..aac()
        };
        assert!(bad.to_bytes().is_err());
    }
}
