//! File and segment type boxes: `ftyp` (ISO/IEC 14496-12 4.3) and `styp`
//! (8.16.2), which share one layout.

use super::writer::put_u32;
use super::{BmffBox, FourCC, Reader, Result};

/// Reads a brand list (major, minor, compatible brands).
fn decode_brands(r: &mut Reader<'_>) -> Result<(FourCC, u32, Vec<FourCC>)> {
    let major = r.fourcc()?;
    let minor = r.u32()?;
    let mut compatible = Vec::with_capacity(r.remaining() / 4);
    while !r.is_empty() {
        compatible.push(r.fourcc()?);
    }
    Ok((major, minor, compatible))
}

fn encode_brands(buf: &mut Vec<u8>, major: FourCC, minor: u32, compatible: &[FourCC]) {
    buf.extend_from_slice(&major.0);
    put_u32(buf, minor);
    for b in compatible {
        buf.extend_from_slice(&b.0);
    }
}

/// `ftyp`: the brands a file conforms to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ftyp {
    /// The best-use brand.
    pub major_brand: FourCC,
    /// Minor version of the major brand.
    pub minor_version: u32,
    /// Every brand the file conforms to.
    pub compatible_brands: Vec<FourCC>,
}

impl BmffBox for Ftyp {
    const TYPE: FourCC = FourCC::new(b"ftyp");

    fn encode_body(&self, buf: &mut Vec<u8>) -> Result<()> {
        encode_brands(
            buf,
            self.major_brand,
            self.minor_version,
            &self.compatible_brands,
        );
        Ok(())
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let (major_brand, minor_version, compatible_brands) = decode_brands(r)?;
        Ok(Ftyp {
            major_brand,
            minor_version,
            compatible_brands,
        })
    }
}

/// `styp`: the brands a media segment conforms to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Styp {
    /// The best-use brand.
    pub major_brand: FourCC,
    /// Minor version of the major brand.
    pub minor_version: u32,
    /// Every brand the segment conforms to.
    pub compatible_brands: Vec<FourCC>,
}

impl BmffBox for Styp {
    const TYPE: FourCC = FourCC::new(b"styp");

    fn encode_body(&self, buf: &mut Vec<u8>) -> Result<()> {
        encode_brands(
            buf,
            self.major_brand,
            self.minor_version,
            &self.compatible_brands,
        );
        Ok(())
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let (major_brand, minor_version, compatible_brands) = decode_brands(r)?;
        Ok(Styp {
            major_brand,
            minor_version,
            compatible_brands,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bmff::Error;

    #[test]
    fn round_trips() {
        let f = Ftyp {
            major_brand: FourCC::new(b"iso6"),
            minor_version: 0,
            compatible_brands: vec![FourCC::new(b"iso6"), FourCC::new(b"cmfc")],
        };
        let b = f.to_bytes().unwrap();
        assert_eq!(b.len(), 24);
        assert_eq!(Ftyp::decode(&b).unwrap(), f);
        let s = Styp {
            major_brand: FourCC::new(b"cmfs"),
            minor_version: 1,
            compatible_brands: vec![],
        };
        assert_eq!(Styp::decode(&s.to_bytes().unwrap()).unwrap(), s);
        // The wrong type, a brand cut short.
        assert!(matches!(Styp::decode(&b), Err(Error::UnexpectedBox { .. })));
        let mut cut = b.clone();
        cut.truncate(22);
        cut[3] = 22;
        assert!(Ftyp::decode(&cut).is_err());
    }
}
