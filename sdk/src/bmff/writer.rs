//! Writing boxes: write the body, then patch the size in.

use super::{Error, FourCC, Result};

/// A box being written into a buffer: [`BoxWriter::start`] reserves the
/// header, the caller appends the body, [`BoxWriter::finish`] patches the
/// size (switching to a 64-bit `largesize` if the body needs it).
#[derive(Debug)]
#[must_use = "a box is incomplete until finish() patches its size"]
pub struct BoxWriter {
    start: usize,
}

impl BoxWriter {
    /// Writes a header with a placeholder size at the end of `buf`.
    pub fn start(buf: &mut Vec<u8>, fourcc: FourCC) -> Self {
        let start = buf.len();
        buf.extend_from_slice(&[0; 4]);
        buf.extend_from_slice(&fourcc.0);
        BoxWriter { start }
    }

    /// Writes a full box header (version and 24-bit flags) with a
    /// placeholder size at the end of `buf`.
    pub fn start_full(buf: &mut Vec<u8>, fourcc: FourCC, version: u8, flags: u32) -> Self {
        let w = Self::start(buf, fourcc);
        put_version_flags(buf, version, flags);
        w
    }

    /// Patches the size of the box: everything appended to `buf` since
    /// [`start`](Self::start) is its body.
    pub fn finish(self, buf: &mut Vec<u8>) {
        let size = (buf.len() - self.start) as u64;
        match u32::try_from(size) {
            Ok(size) => buf[self.start..self.start + 4].copy_from_slice(&size.to_be_bytes()),
            Err(_) => {
                // size = 1, then the 64-bit largesize after the type.
                buf[self.start..self.start + 4].copy_from_slice(&1u32.to_be_bytes());
                let large = (size + 8).to_be_bytes();
                let at = self.start + 8;
                buf.splice(at..at, large);
            }
        }
    }
}

/// Appends a box to `buf`: its header, the body `body` writes, and the
/// patched size.
pub fn write_box<F>(buf: &mut Vec<u8>, fourcc: FourCC, body: F) -> Result<()>
where
    F: FnOnce(&mut Vec<u8>) -> Result<()>,
{
    let w = BoxWriter::start(buf, fourcc);
    body(buf)?;
    w.finish(buf);
    Ok(())
}

/// Appends a full box (version and flags before the body) to `buf`.
pub fn write_full_box<F>(
    buf: &mut Vec<u8>,
    fourcc: FourCC,
    version: u8,
    flags: u32,
    body: F,
) -> Result<()>
where
    F: FnOnce(&mut Vec<u8>) -> Result<()>,
{
    let w = BoxWriter::start_full(buf, fourcc, version, flags);
    body(buf)?;
    w.finish(buf);
    Ok(())
}

/// Appends a full box's version and 24-bit flags.
pub fn put_version_flags(buf: &mut Vec<u8>, version: u8, flags: u32) {
    buf.extend_from_slice(&((u32::from(version) << 24) | (flags & 0x00ff_ffff)).to_be_bytes());
}

/// Appends a big-endian `u16`.
pub fn put_u16(buf: &mut Vec<u8>, v: u16) {
    buf.extend_from_slice(&v.to_be_bytes());
}

/// Appends a big-endian 24-bit value (the low 24 bits of `v`), or an error
/// if `v` does not fit.
pub fn put_u24(buf: &mut Vec<u8>, v: u32, what: &'static str) -> Result<()> {
    if v > 0x00ff_ffff {
        return Err(Error::Overflow(what));
    }
    buf.extend_from_slice(&v.to_be_bytes()[1..]);
    Ok(())
}

/// Appends a big-endian `u32`.
pub fn put_u32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_be_bytes());
}

/// Appends a big-endian `u64`.
pub fn put_u64(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&v.to_be_bytes());
}

/// Appends a 32-bit entry count, or an error if `n` does not fit.
pub fn put_count(buf: &mut Vec<u8>, n: usize, what: &'static str) -> Result<()> {
    put_u32(buf, u32::try_from(n).map_err(|_| Error::Overflow(what))?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bmff::Reader;

    #[test]
    fn write_box_patches_size() {
        let mut buf = vec![0xaa];
        write_box(&mut buf, FourCC::new(b"free"), |b| {
            b.extend_from_slice(&[1, 2, 3]);
            Ok(())
        })
        .unwrap();
        assert_eq!(&buf[1..], &[0, 0, 0, 11, b'f', b'r', b'e', b'e', 1, 2, 3]);

        let mut buf = Vec::new();
        write_full_box(&mut buf, FourCC::new(b"mfhd"), 1, 0x020001, |b| {
            put_u32(b, 7);
            Ok(())
        })
        .unwrap();
        assert_eq!(
            buf,
            [0, 0, 0, 16, b'm', b'f', b'h', b'd', 1, 2, 0, 1, 0, 0, 0, 7]
        );
    }

    #[test]
    fn nested_boxes_and_errors() {
        let mut buf = Vec::new();
        write_box(&mut buf, FourCC::new(b"moov"), |b| {
            write_box(b, FourCC::new(b"free"), |_| Ok(()))?;
            write_box(b, FourCC::new(b"skip"), |b| {
                b.push(9);
                Ok(())
            })
        })
        .unwrap();
        let outer = Reader::new(&buf).next_box().unwrap().unwrap();
        assert_eq!(outer.len(), buf.len());
        let kids: Vec<_> = outer.children().collect::<Result<_>>().unwrap();
        assert_eq!(kids.len(), 2);
        assert_eq!(kids[1].body, &[9]);

        let mut buf = Vec::new();
        let r = write_box(&mut buf, FourCC::new(b"free"), |_| {
            Err(Error::Overflow("test"))
        });
        assert_eq!(r, Err(Error::Overflow("test")));
        assert!(put_u24(&mut buf, 1 << 24, "x").is_err());
    }
}
