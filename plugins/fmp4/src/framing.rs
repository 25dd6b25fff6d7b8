//! Top-level box framing of the POST body: bytes arrive in arbitrary
//! pieces; a box is handed on only once all of it is buffered.
//!
//! ```text
//!   feed(piece) ─▶ Framer::push ─▶ Framer::next_box ─▶ None (need more)
//!                                                   └─▶ TopBox { header, offset, bytes }
//! ```
//!
//! A box's declared size is checked against the limit as soon as its
//! header is in, so an oversize box is refused before it is buffered.

use sluice_sdk::bmff::{self, BoxRef, BoxSize, Header};

use crate::error::{Error, Result};

/// One complete top-level box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopBox {
    /// Its header.
    pub header: Header,
    /// Stream offset of its first byte (header included), counted from the
    /// start of the POST body.
    pub offset: u64,
    /// The whole box, header included.
    pub bytes: Vec<u8>,
}

impl TopBox {
    /// The box as a [`BoxRef`] for the SDK's typed boxes.
    pub fn as_box_ref(&self) -> BoxRef<'_> {
        BoxRef {
            header: self.header,
            body: &self.bytes[usize::from(self.header.header_len)..],
        }
    }

    /// Stream offset of the first body byte.
    pub fn body_offset(&self) -> u64 {
        self.offset + u64::from(self.header.header_len)
    }

    /// Stream offset just past the box.
    pub fn end_offset(&self) -> u64 {
        self.offset + self.bytes.len() as u64
    }
}

/// Splits a byte stream into top-level boxes.
#[derive(Debug, Clone)]
pub struct Framer {
    /// Unread bytes are `buf[start..]`.
    buf: Vec<u8>,
    start: usize,
    /// Stream offset of `buf[start]`.
    offset: u64,
    /// Largest box accepted.
    limit: u64,
}

impl Framer {
    /// A framer accepting boxes of at most `limit` bytes.
    pub fn new(limit: u32) -> Self {
        Framer {
            buf: Vec::new(),
            start: 0,
            offset: 0,
            limit: u64::from(limit),
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 && (self.start == self.buf.len() || self.start >= self.buf.len() / 2) {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered and not yet part of a complete box.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Stream offset of the next unread byte.
    pub fn position(&self) -> u64 {
        self.offset
    }

    /// The next complete box; `Ok(None)` when more bytes are needed.
    pub fn next_box(&mut self) -> Result<Option<TopBox>> {
        let rest = &self.buf[self.start..];
        let header = match Header::parse(rest, self.limit) {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(None),
            Err(bmff::Error::BoxTooLarge {
                fourcc,
                size,
                limit,
            }) => {
                return Err(Error::BoxTooLarge {
                    fourcc,
                    size,
                    limit,
                });
            }
            Err(e) => return Err(Error::bmff(peek_fourcc(rest), e)),
        };
        let size = match header.size {
            BoxSize::Known(n) => n,
            BoxSize::ToEnd => return Err(Error::UnboundedBox(header.fourcc)),
        };
        // `size <= limit <= u32::MAX`, so it fits a usize on every target.
        let Ok(size) = usize::try_from(size) else {
            return Err(Error::Overflow(format!("box size {size}")));
        };
        if rest.len() < size {
            return Ok(None);
        }
        let bytes = rest[..size].to_vec();
        let offset = self.offset;
        self.start += size;
        self.offset += size as u64;
        Ok(Some(TopBox {
            header,
            offset,
            bytes,
        }))
    }
}

/// The type of the box starting `buf`, for error messages.
fn peek_fourcc(buf: &[u8]) -> bmff::FourCC {
    buf.get(4..8)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map_or(bmff::FourCC::new(b"????"), bmff::FourCC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free(len: u32) -> Vec<u8> {
        let mut b = len.to_be_bytes().to_vec();
        b.extend_from_slice(b"free");
        b.resize(len as usize, 7);
        b
    }

    #[test]
    fn boxes_come_out_whole_whatever_the_pieces() {
        let mut input = free(12);
        input.extend(free(8));
        input.extend(free(300));
        for step in [1, 2, 3, 7, 100, 1000] {
            let mut f = Framer::new(1000);
            let mut got = Vec::new();
            for piece in input.chunks(step) {
                f.push(piece);
                while let Some(b) = f.next_box().unwrap() {
                    got.push((b.offset, b.bytes.len(), b.as_box_ref().body.len()));
                }
            }
            assert_eq!(got, vec![(0, 12, 4), (12, 8, 0), (20, 300, 292)]);
            assert_eq!(f.buffered(), 0);
            assert_eq!(f.position(), 320);
        }
    }

    #[test]
    fn oversize_and_unbounded_boxes_are_refused_from_the_header() {
        let mut f = Framer::new(100);
        f.push(&[0, 0, 0, 101, b'm', b'd', b'a', b't']);
        assert!(matches!(
            f.next_box(),
            Err(Error::BoxTooLarge {
                size: 101,
                limit: 100,
                ..
            })
        ));
        let mut f = Framer::new(100);
        f.push(&[0, 0, 0, 0, b'm', b'd', b'a', b't']);
        assert!(matches!(f.next_box(), Err(Error::UnboundedBox(_))));
        let mut f = Framer::new(100);
        f.push(&[0, 0, 0, 3, b'f', b'r', b'e', b'e']);
        assert!(matches!(f.next_box(), Err(Error::Box { .. })));
        // A 64-bit size over the limit, before its body.
        let mut f = Framer::new(100);
        let mut b = vec![0, 0, 0, 1];
        b.extend_from_slice(b"mdat");
        b.extend_from_slice(&(1u64 << 40).to_be_bytes());
        f.push(&b);
        assert!(matches!(f.next_box(), Err(Error::BoxTooLarge { .. })));
    }
}
