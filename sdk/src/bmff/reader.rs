//! Reading boxes: the incremental [`Header`] parser, a bounds-checked
//! [`Reader`] over a slice, and iteration over child boxes.

use super::{Error, FourCC, Result};

/// The `uuid` box type, whose header carries a 16-byte user type.
const UUID: FourCC = FourCC::new(b"uuid");

/// How far a box extends, as its header declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoxSize {
    /// The total size in bytes, header included.
    Known(u64),
    /// Size 0: the box extends to the end of its parent (or of the file).
    ToEnd,
}

/// A parsed box header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The box type.
    pub fourcc: FourCC,
    /// The declared size.
    pub size: BoxSize,
    /// Header length in bytes: 8, 16 with a 64-bit size, plus 16 for `uuid`.
    pub header_len: u8,
    /// The user type of a `uuid` box.
    pub user_type: Option<[u8; 16]>,
}

impl Header {
    /// Parses the box header at the start of `buf`.
    ///
    /// `Ok(None)` when `buf` is too short to hold the whole header (feed
    /// more bytes). An error when the declared size is smaller than the
    /// header or larger than `limit` (checked here, before anyone buffers
    /// or allocates for the box). A size of 0 ([`BoxSize::ToEnd`]) cannot
    /// be checked against `limit`; the caller bounds it.
    pub fn parse(buf: &[u8], limit: u64) -> Result<Option<Header>> {
        let mut r = Reader::new(buf);
        let (Ok(size32), Ok(fourcc)) = (r.u32(), r.fourcc()) else {
            return Ok(None);
        };
        let mut header_len: u64 = 8;
        let size = match size32 {
            0 => BoxSize::ToEnd,
            1 => {
                let Ok(large) = r.u64() else {
                    return Ok(None);
                };
                header_len = 16;
                BoxSize::Known(large)
            }
            n => BoxSize::Known(u64::from(n)),
        };
        if fourcc == UUID {
            header_len += 16;
        }
        // Validate the size as soon as it is known: a caller buffering
        // towards it learns of a bad one from the first bytes.
        if let BoxSize::Known(size) = size {
            if size < header_len {
                return Err(Error::BoxTooShort {
                    fourcc,
                    size,
                    header_len,
                });
            }
            if size > limit {
                return Err(Error::BoxTooLarge {
                    fourcc,
                    size,
                    limit,
                });
            }
        }
        let user_type = if fourcc == UUID {
            let Ok(t) = r.array::<16>() else {
                return Ok(None);
            };
            Some(t)
        } else {
            None
        };
        Ok(Some(Header {
            fourcc,
            size,
            header_len: header_len as u8,
            user_type,
        }))
    }

    /// The total box size if it is declared.
    pub fn box_len(&self) -> Option<u64> {
        match self.size {
            BoxSize::Known(n) => Some(n),
            BoxSize::ToEnd => None,
        }
    }

    /// The body size if the total size is declared.
    pub fn body_len(&self) -> Option<u64> {
        self.box_len().map(|n| n - u64::from(self.header_len))
    }
}

/// A complete box inside a buffer: its header and its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoxRef<'a> {
    /// The parsed header.
    pub header: Header,
    /// The body: everything after the header, up to the box's end.
    pub body: &'a [u8],
}

impl<'a> BoxRef<'a> {
    /// The box type.
    pub fn fourcc(&self) -> FourCC {
        self.header.fourcc
    }

    /// A reader over the body.
    pub fn reader(&self) -> Reader<'a> {
        Reader::new(self.body)
    }

    /// The child boxes (for container boxes whose body is only boxes).
    pub fn children(&self) -> Children<'a> {
        Children(Reader::new(self.body))
    }

    /// The total size in bytes, header included.
    pub fn len(&self) -> usize {
        usize::from(self.header.header_len) + self.body.len()
    }

    /// Whether the box is empty; never, a box has at least a header.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// A bounds-checked big-endian reader over a slice. Every read past the
/// end is an [`Error::UnexpectedEnd`]; nothing here panics on any input.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    /// Bytes left to read.
    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Bytes read so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(Error::UnexpectedEnd {
                wanted: n as u64,
                remaining: self.remaining() as u64,
            });
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let s = self.bytes(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    /// Skips `n` bytes.
    pub fn skip(&mut self, n: usize) -> Result<()> {
        self.bytes(n).map(drop)
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.data[self.pos..];
        self.pos = self.data.len();
        s
    }

    /// A reader over the next `len` bytes, which this reader skips.
    pub fn sub(&mut self, len: usize) -> Result<Reader<'a>> {
        self.bytes(len).map(Reader::new)
    }

    /// Checks that everything was read (no trailing data).
    pub fn finish(&self) -> Result<()> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(Error::TrailingData(n as u64)),
        }
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    /// Big-endian 16 bits.
    pub fn u16(&mut self) -> Result<u16> {
        self.array().map(u16::from_be_bytes)
    }

    /// Big-endian 24 bits.
    pub fn u24(&mut self) -> Result<u32> {
        let [a, b, c] = self.array()?;
        Ok(u32::from_be_bytes([0, a, b, c]))
    }

    /// Big-endian 32 bits.
    pub fn u32(&mut self) -> Result<u32> {
        self.array().map(u32::from_be_bytes)
    }

    /// Big-endian 64 bits.
    pub fn u64(&mut self) -> Result<u64> {
        self.array().map(u64::from_be_bytes)
    }

    /// Big-endian signed 16 bits.
    pub fn i16(&mut self) -> Result<i16> {
        self.array().map(i16::from_be_bytes)
    }

    /// Big-endian signed 32 bits.
    pub fn i32(&mut self) -> Result<i32> {
        self.array().map(i32::from_be_bytes)
    }

    /// A four-character code.
    pub fn fourcc(&mut self) -> Result<FourCC> {
        self.array().map(FourCC)
    }

    /// A full box's version and 24-bit flags.
    pub fn version_flags(&mut self) -> Result<(u8, u32)> {
        let v = self.u32()?;
        Ok(((v >> 24) as u8, v & 0x00ff_ffff))
    }

    /// A 32-bit entry count whose entries take at least `entry_len` bytes
    /// each: an error, before anything is allocated, when the rest of the
    /// box cannot hold that many. Entries of zero length are capped at
    /// `cap` instead.
    pub fn entry_count(&mut self, fourcc: FourCC, entry_len: usize, cap: u32) -> Result<usize> {
        let count = self.u32()?;
        let fits = match entry_len {
            0 => count <= cap,
            n => u64::from(count) * n as u64 <= self.remaining() as u64,
        };
        if !fits {
            return Err(Error::TooManyEntries {
                fourcc,
                count: u64::from(count),
            });
        }
        usize::try_from(count).map_err(|_| Error::Overflow("entry count"))
    }

    /// The next complete box, or `None` at the end.
    ///
    /// This reader holds a complete parent, so a box that extends past the
    /// end is an error ([`Error::BoxOverrun`]), not "need more"; a size of 0
    /// takes everything left.
    pub fn next_box(&mut self) -> Result<Option<BoxRef<'a>>> {
        if self.is_empty() {
            return Ok(None);
        }
        let available = self.remaining() as u64;
        let header = match Header::parse(&self.data[self.pos..], u64::MAX)? {
            Some(h) => h,
            None => {
                return Err(Error::UnexpectedEnd {
                    wanted: 8,
                    remaining: available,
                });
            }
        };
        let size = header.box_len().unwrap_or(available);
        if size > available {
            return Err(Error::BoxOverrun {
                fourcc: header.fourcc,
                size,
                available,
            });
        }
        // `size <= available`, which is a `usize`.
        let size = size as usize;
        let b = self.bytes(size)?;
        Ok(Some(BoxRef {
            header,
            body: &b[usize::from(header.header_len)..],
        }))
    }

    /// Iterates over the boxes in the rest of this reader.
    pub fn children(&mut self) -> Children<'a> {
        Children(Reader::new(self.rest()))
    }
}

/// An iterator over consecutive boxes filling a buffer; yields the first
/// error once and then stops.
#[derive(Debug, Clone)]
pub struct Children<'a>(Reader<'a>);

impl<'a> Iterator for Children<'a> {
    type Item = Result<BoxRef<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.0.next_box() {
            Ok(Some(b)) => Some(Ok(b)),
            Ok(None) => None,
            Err(e) => {
                // Stop after the first error.
                self.0.rest();
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_needs_more_on_short_buffers() {
        assert_eq!(Header::parse(&[], 100), Ok(None));
        assert_eq!(
            Header::parse(&[0, 0, 0, 16, b'f', b'r', b'e'], 100),
            Ok(None)
        );
        // Largesize without the 64-bit field yet.
        assert_eq!(
            Header::parse(&[0, 0, 0, 1, b'm', b'd', b'a', b't', 0, 0], 100),
            Ok(None)
        );
        // uuid without its user type yet.
        assert_eq!(
            Header::parse(&[0, 0, 0, 40, b'u', b'u', b'i', b'd', 1, 2, 3], 100),
            Ok(None)
        );
        // ... but a bad size is an error before the user type arrives.
        assert!(Header::parse(&[0, 0, 0, 20, b'u', b'u', b'i', b'd'], 100).is_err());
        assert!(Header::parse(&[0, 0, 1, 0, b'u', b'u', b'i', b'd'], 100).is_err());
    }

    #[test]
    fn header_sizes() {
        let h = Header::parse(&[0, 0, 0, 16, b'f', b'r', b'e', b'e'], 100)
            .unwrap()
            .unwrap();
        assert_eq!(h.fourcc, FourCC::new(b"free"));
        assert_eq!(h.size, BoxSize::Known(16));
        assert_eq!(h.header_len, 8);
        assert_eq!(h.body_len(), Some(8));

        // Size 0: to the end.
        let h = Header::parse(&[0, 0, 0, 0, b'm', b'd', b'a', b't'], 100)
            .unwrap()
            .unwrap();
        assert_eq!(h.size, BoxSize::ToEnd);
        assert_eq!(h.box_len(), None);

        // Largesize.
        let mut b = vec![0, 0, 0, 1];
        b.extend_from_slice(b"mdat");
        b.extend_from_slice(&(5u64 << 32).to_be_bytes());
        let h = Header::parse(&b, u64::MAX).unwrap().unwrap();
        assert_eq!(h.size, BoxSize::Known(5 << 32));
        assert_eq!(h.header_len, 16);

        // uuid.
        let mut b = vec![0, 0, 0, 24];
        b.extend_from_slice(b"uuid");
        b.extend_from_slice(&[7; 16]);
        let h = Header::parse(&b, 100).unwrap().unwrap();
        assert_eq!(h.header_len, 24);
        assert_eq!(h.user_type, Some([7; 16]));
        assert_eq!(h.body_len(), Some(0));
    }

    #[test]
    fn header_errors() {
        // Shorter than its own header.
        assert!(matches!(
            Header::parse(&[0, 0, 0, 7, b'f', b'r', b'e', b'e'], 100),
            Err(Error::BoxTooShort { size: 7, .. })
        ));
        let mut b = vec![0, 0, 0, 1];
        b.extend_from_slice(b"mdat");
        b.extend_from_slice(&15u64.to_be_bytes());
        assert!(matches!(
            Header::parse(&b, 100),
            Err(Error::BoxTooShort {
                size: 15,
                header_len: 16,
                ..
            })
        ));
        let mut b = vec![0, 0, 0, 20];
        b.extend_from_slice(b"uuid");
        b.extend_from_slice(&[0; 16]);
        assert!(matches!(
            Header::parse(&b, 100),
            Err(Error::BoxTooShort { .. })
        ));
        // Over the limit: refused from the header alone.
        assert_eq!(
            Header::parse(&[0xff, 0, 0, 0, b'm', b'o', b'o', b'v'], 1 << 20),
            Err(Error::BoxTooLarge {
                fourcc: FourCC::new(b"moov"),
                size: 0xff00_0000,
                limit: 1 << 20
            })
        );
    }

    #[test]
    fn reader_reads_and_bounds() {
        let data = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
        let mut r = Reader::new(&data);
        assert_eq!(r.u8().unwrap(), 1);
        assert_eq!(r.u16().unwrap(), 0x0203);
        assert_eq!(r.u24().unwrap(), 0x040506);
        assert_eq!(r.u32().unwrap(), 0x0708090a);
        let mut sub = r.sub(3).unwrap();
        assert_eq!(sub.bytes(2).unwrap(), &[11, 12]);
        assert_eq!(sub.finish(), Err(Error::TrailingData(1)));
        assert!(sub.u16().is_err());
        assert_eq!(r.remaining(), 2);
        assert_eq!(
            r.u32(),
            Err(Error::UnexpectedEnd {
                wanted: 4,
                remaining: 2
            })
        );
        assert_eq!(r.i16().unwrap(), 0x0e0f);
        r.finish().unwrap();
        assert!(r.sub(1).is_err());
    }

    #[test]
    fn entry_count_checks_before_allocating() {
        let mut b = 1_000_000u32.to_be_bytes().to_vec();
        b.extend_from_slice(&[0; 8]);
        let fourcc = FourCC::new(b"stco");
        assert!(matches!(
            Reader::new(&b).entry_count(fourcc, 4, 0),
            Err(Error::TooManyEntries { .. })
        ));
        let mut b = 2u32.to_be_bytes().to_vec();
        b.extend_from_slice(&[0; 8]);
        assert_eq!(Reader::new(&b).entry_count(fourcc, 4, 0), Ok(2));
        assert_eq!(Reader::new(&b).entry_count(fourcc, 0, 2), Ok(2));
        assert!(Reader::new(&b).entry_count(fourcc, 0, 1).is_err());
    }

    #[test]
    fn children_iterate_and_stop_at_errors() {
        let mut b = Vec::new();
        b.extend_from_slice(&[0, 0, 0, 9]);
        b.extend_from_slice(b"free");
        b.push(42);
        b.extend_from_slice(&[0, 0, 0, 0]);
        b.extend_from_slice(b"skip");
        b.extend_from_slice(&[1, 2, 3]);
        let kids: Vec<_> = Reader::new(&b).children().collect::<Result<_>>().unwrap();
        assert_eq!(kids.len(), 2);
        assert_eq!(kids[0].fourcc(), FourCC::new(b"free"));
        assert_eq!(kids[0].body, &[42]);
        assert_eq!(kids[1].body, &[1, 2, 3]);
        assert_eq!(kids[1].len(), 11);

        // A box running past its parent.
        let mut b = vec![0, 0, 0, 50];
        b.extend_from_slice(b"free");
        let mut it = Reader::new(&b).children();
        assert!(matches!(
            it.next(),
            Some(Err(Error::BoxOverrun { size: 50, .. }))
        ));
        assert!(it.next().is_none());

        // A partial header at the end.
        let mut it = Reader::new(&[0, 0, 0]).children();
        assert!(matches!(it.next(), Some(Err(Error::UnexpectedEnd { .. }))));
        assert!(it.next().is_none());
    }
}
