//! Init and media segments, and the layout both the segment body and the
//! playlist's byte ranges come from.
//!
//! A fragment is served as one segment of chunks, one chunk per keyframe:
//!
//! ```text
//! {start}.m4s  styp | moof mdat-hdr [K P B B P B B ..] | moof mdat-hdr [K B B P ..] | ..
//!                     └──── I-frame range ────┘          └──── I-frame range ────┘
//!                     chunk 0                            chunk 1
//! ```
//!
//! Each chunk is a `moof` (one `traf`, `tfdt` = the keyframe's decode
//! time, a `trun` over the keyframe and the samples up to the next one)
//! and the `mdat` that holds them. The I-frame byte range of a chunk covers
//! its `moof`, its `mdat` header and the keyframe's bytes: with the init
//! segment that is a file a decoder reads as one picture (the `trun` names
//! more samples than follow, and a decoder stops at the end of the range).
//! Samples before a fragment's first keyframe (a fragment that does not
//! start on one) form a leading chunk without an I-frame range.
//!
//! [`Layout`] computes every chunk's place once; the segment body
//! ([`Layout::body`]) and the playlist ([`Chunk::iframe_range`]) both read
//! it, so a byte range cannot point anywhere but where the segment puts
//! the keyframe. Header lengths come from the SDK's own writer
//! ([`bmff::fragment_header`]): a playlist of a 25 h window lays out
//! 90,000 chunks, so each distinct header shape is written once and its
//! length remembered ([`HeaderLengths`]), and the segment checks that the
//! headers it writes have exactly those lengths. Sample payloads stay with
//! the host: the body names them as [`BodyPart::SampleData`].

use std::collections::BTreeMap;
use std::ops::Range;

use sluice_sdk::bmff::{self, BmffBox, FourCC, Styp};
use sluice_sdk::packaging::{Error, ticks_to_ms};
use sluice_sdk::plugin::{
    BodyPart, CachePolicy, DataRef, Response, SampleEntry, TrackInfo, TrackKind,
};

/// The `track_ID` inside every init and media segment. Each I-frame
/// rendition is a single-track file, so the presentation's track id (which
/// may be 0, invalid in ISO BMFF) stays out of the file; it lives in the URL.
pub const FILE_TRACK_ID: u32 = 1;

/// The content type of init and media segments.
pub const CONTENT_TYPE: &str = "video/mp4";

/// A byte range of a segment, as `EXT-X-BYTERANGE:<length>@<offset>` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// Bytes in the range.
    pub length: u64,
    /// The first byte's offset from the start of the segment.
    pub offset: u64,
}

/// One chunk of a segment: a `moof` and an `mdat` over a run of samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Where the chunk's `moof` starts in the segment.
    pub offset: u64,
    /// Bytes of the `moof` and the `mdat` header.
    pub header_length: u64,
    /// The chunk's samples: indices into the fragment's sample table.
    pub samples: Range<usize>,
    /// Where the chunk's samples start in the fragment's payload.
    pub data_offset: u32,
    /// Bytes of the chunk's samples.
    pub data_length: u32,
    /// Decode time of the chunk's first sample, in track ticks.
    pub decode_time: u64,
    /// Duration of the chunk's samples, in track ticks: for a keyframe's
    /// chunk, the time until the next keyframe of the fragment (or its end).
    pub duration: u64,
    /// Size of the first sample when it is a keyframe; `None` for the
    /// leading non-keyframe samples of a fragment.
    pub keyframe_size: Option<u32>,
    /// The `mfhd` sequence number.
    sequence_number: u32,
}

impl Chunk {
    /// The chunk's I-frame: its `moof`, `mdat` header and the keyframe's
    /// bytes; `None` when the chunk does not start on a keyframe.
    pub fn iframe_range(&self) -> Option<ByteRange> {
        let size = self.keyframe_size?;
        Some(ByteRange {
            length: self.header_length + u64::from(size),
            offset: self.offset,
        })
    }

    /// Bytes of the whole chunk in the segment.
    fn len(&self) -> u64 {
        self.header_length + u64::from(self.data_length)
    }

    /// The chunk's `moof` and `mdat` header, written.
    fn header(&self, samples: &[SampleEntry]) -> Result<Vec<u8>, Error> {
        let run = samples
            .get(self.samples.clone())
            .ok_or(Error::Payload("chunk outside the sample table"))?;
        let header =
            bmff::fragment_header(self.sequence_number, FILE_TRACK_ID, self.decode_time, run)?;
        if header.len() as u64 != self.header_length {
            return Err(Error::Payload(
                "chunk header length differs from its layout",
            ));
        }
        Ok(header)
    }
}

/// What the length of a chunk header depends on: the number of samples,
/// whether the `trun` carries composition offsets, and whether the `mdat`
/// needs a 64-bit size. Every other field has a fixed width.
type HeaderShape = (usize, bool, bool);

/// Lengths of chunk headers by shape, each measured once by writing one.
#[derive(Debug, Default)]
pub struct HeaderLengths(BTreeMap<HeaderShape, u64>);

impl HeaderLengths {
    /// The length of the header [`bmff::fragment_header`] writes for `run`
    /// with `payload_length` bytes of payload.
    fn of(&mut self, run: &[SampleEntry], payload_length: u32) -> Result<u64, Error> {
        let shape = (
            run.len(),
            run.iter().any(|s| s.composition_offset != 0),
            u64::from(payload_length) + 8 > u64::from(u32::MAX),
        );
        if let Some(&n) = self.0.get(&shape) {
            return Ok(n);
        }
        let n = bmff::fragment_header(0, FILE_TRACK_ID, 0, run)?.len() as u64;
        self.0.insert(shape, n);
        Ok(n)
    }
}

/// The segment of one fragment, laid out: its `styp` and its chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The `styp` box the segment starts with.
    pub styp: Vec<u8>,
    /// The chunks in order.
    pub chunks: Vec<Chunk>,
}

impl Layout {
    /// Lays out the fragment of `track` starting at `start` with these
    /// samples; `lengths` remembers header lengths across calls.
    ///
    /// Each `moof`'s `mfhd` sequence number is its chunk's decode time in
    /// milliseconds, low 32 bits: it rises from chunk to chunk and from
    /// segment to segment, and derives from media time, so every node
    /// writes the same bytes.
    pub fn new(
        track: &TrackInfo,
        start: u64,
        samples: &[SampleEntry],
        lengths: &mut HeaderLengths,
    ) -> Result<Layout, Error> {
        let styp = Styp {
            major_brand: FourCC::new(b"cmfs"),
            minor_version: 0,
            compatible_brands: vec![FourCC::new(b"cmfs"), FourCC::new(b"msdh")],
        }
        .to_bytes()?;
        let mut chunks = Vec::new();
        let mut offset = styp.len() as u64;
        let (mut decode_time, mut data_offset, mut first) = (start, 0u32, 0usize);
        for run in samples.chunk_by(|_, next| !next.keyframe) {
            let duration = run.iter().map(|s| u64::from(s.duration)).sum::<u64>();
            let data_length = run
                .iter()
                .try_fold(0u32, |n, s| n.checked_add(s.size))
                .ok_or(Error::Overflow("chunk payload size"))?;
            let chunk = Chunk {
                offset,
                header_length: lengths.of(run, data_length)?,
                samples: first..first + run.len(),
                data_offset,
                data_length,
                decode_time,
                duration,
                keyframe_size: run.first().filter(|s| s.keyframe).map(|s| s.size),
                // Truncation intended: see above.
                sequence_number: ticks_to_ms(decode_time, track.timescale)? as u32,
            };
            offset = offset
                .checked_add(chunk.len())
                .ok_or(Error::Overflow("segment size"))?;
            decode_time = decode_time
                .checked_add(duration)
                .ok_or(Error::Overflow("chunk decode time"))?;
            data_offset = data_offset
                .checked_add(data_length)
                .ok_or(Error::Overflow("fragment payload size"))?;
            first += run.len();
            chunks.push(chunk);
        }
        Ok(Layout { styp, chunks })
    }

    /// Bytes of the whole segment.
    pub fn len(&self) -> u64 {
        self.chunks
            .last()
            .map_or(self.styp.len() as u64, |c| c.offset + c.len())
    }

    /// Whether the segment has no chunk (a fragment without samples).
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// The segment body: `styp` and each chunk's header written here, and
    /// each chunk's samples by reference to the fragment of presentation
    /// track `track` at `start`, for the host to splice in. `samples` is
    /// the sample table the layout was made from.
    pub fn body(
        &self,
        samples: &[SampleEntry],
        track: u32,
        start: u64,
    ) -> Result<Vec<BodyPart>, Error> {
        let mut body = Vec::with_capacity(1 + 2 * self.chunks.len());
        let mut bytes = self.styp.clone();
        for chunk in &self.chunks {
            bytes.extend_from_slice(&chunk.header(samples)?);
            if chunk.data_length > 0 {
                body.push(BodyPart::Bytes(std::mem::take(&mut bytes)));
                body.push(BodyPart::SampleData(DataRef {
                    track,
                    start,
                    offset: chunk.data_offset,
                    length: chunk.data_length,
                }));
            }
        }
        if !bytes.is_empty() {
            body.push(BodyPart::Bytes(bytes));
        }
        Ok(body)
    }
}

/// Whether this packager serves `track`: video with a sample entry the
/// SDK's box writer can describe.
pub fn servable(track: &TrackInfo) -> bool {
    track.kind == TrackKind::Video && bmff::is_supported(&track.fourcc)
}

/// The track as written into segments.
fn file_track(track: &TrackInfo) -> TrackInfo {
    TrackInfo {
        id: FILE_TRACK_ID,
        ..track.clone()
    }
}

/// The init segment of a video track.
pub fn init(track: &TrackInfo) -> Result<Response, Error> {
    let body = bmff::init_segment(
        &[&file_track(track)],
        FourCC::new(b"iso6"),
        &[FourCC::new(b"iso6"), FourCC::new(b"cmfc")],
    )?;
    Ok(Response::ok(CONTENT_TYPE, CachePolicy::Immutable, body))
}

/// The media segment of `track`'s fragment at `start`, whose sample table
/// is `samples`.
pub fn media(track: &TrackInfo, start: u64, samples: &[SampleEntry]) -> Result<Response, Error> {
    let layout = Layout::new(track, start, samples, &mut HeaderLengths::default())?;
    let body = layout.body(samples, track.id, start)?;
    Ok(Response {
        status: 200,
        content_type: CONTENT_TYPE.into(),
        cache: CachePolicy::Immutable,
        headers: Vec::new(),
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::bmff::{Moof, Reader};

    fn sample(size: u32, keyframe: bool) -> SampleEntry {
        SampleEntry {
            duration: 3600,
            size,
            composition_offset: if keyframe { 7200 } else { 0 },
            keyframe,
        }
    }

    fn video() -> TrackInfo {
        TrackInfo::new(7, TrackKind::Video, 90_000)
    }

    fn layout(start: u64, samples: &[SampleEntry]) -> Result<Layout, Error> {
        Layout::new(&video(), start, samples, &mut HeaderLengths::default())
    }

    /// The segment with sample `i`'s bytes all `i + 1`.
    fn assemble(layout: &Layout, samples: &[SampleEntry]) -> Vec<u8> {
        let payload: Vec<u8> = samples
            .iter()
            .enumerate()
            .flat_map(|(i, s)| std::iter::repeat_n(i as u8 + 1, s.size as usize))
            .collect();
        let mut out = Vec::new();
        for part in layout.body(samples, 7, 900).unwrap() {
            match part {
                BodyPart::Bytes(b) => out.extend(b),
                BodyPart::SampleData(r) => {
                    assert_eq!((r.track, r.start), (7, 900));
                    let from = r.offset as usize;
                    out.extend_from_slice(&payload[from..from + r.length as usize]);
                }
            }
        }
        out
    }

    #[test]
    fn one_chunk_per_keyframe_and_ranges_point_at_keyframes() {
        let samples = [
            sample(100, true),
            sample(10, false),
            sample(11, false),
            sample(90, true),
            sample(12, false),
        ];
        let layout = layout(900, &samples).unwrap();
        assert_eq!(layout.chunks.len(), 2);
        let segment = assemble(&layout, &samples);
        assert_eq!(segment.len() as u64, layout.len());
        assert!(segment.starts_with(&layout.styp));

        let times: Vec<_> = layout
            .chunks
            .iter()
            .map(|c| (c.decode_time, c.duration, c.data_offset, c.data_length))
            .collect();
        assert_eq!(times, [(900, 10_800, 0, 121), (11_700, 7200, 121, 102)]);

        let mut sequence_numbers = Vec::new();
        for (chunk, (first, size)) in layout.chunks.iter().zip([(1u8, 100), (4, 90)]) {
            let range = chunk.iframe_range().unwrap();
            let bytes = &segment[range.offset as usize..][..range.length as usize];
            // moof, then an mdat header, then exactly the keyframe's bytes.
            let mut r = Reader::new(bytes);
            let moof = Moof::from_box(&r.next_box().unwrap().unwrap()).unwrap();
            sequence_numbers.push(moof.mfhd.sequence_number);
            let traf = &moof.trafs[0];
            assert_eq!(traf.tfhd.track_id, FILE_TRACK_ID);
            assert_eq!(traf.tfdt.unwrap().base_media_decode_time, chunk.decode_time);
            assert_eq!(traf.truns[0].samples[0].size, Some(size));
            let rest = r.rest();
            assert_eq!(&rest[4..8], b"mdat");
            assert_eq!(rest.len(), 8 + size as usize);
            assert!(rest[8..].iter().all(|&b| b == first));
            // The trun's data offset lands on the keyframe.
            let at = traf.truns[0].data_offset.unwrap() as usize;
            assert_eq!(at, bytes.len() - size as usize);
        }
        // mfhd sequence numbers: decode time in ms.
        assert_eq!(sequence_numbers, [10, 130]);
    }

    #[test]
    fn remembered_header_lengths_match_written_headers() {
        // Fragments of different shapes through one memo: GOP lengths,
        // with and without composition offsets.
        let mut lengths = HeaderLengths::default();
        let shapes: [&[SampleEntry]; 4] = [
            &[sample(5, true), sample(6, false), sample(7, false)],
            &[sample(5, true), sample(6, false)],
            &[
                SampleEntry {
                    composition_offset: 0,
                    ..sample(9, true)
                },
                sample(6, false),
            ],
            &[sample(5, true), sample(6, false), sample(7, false)],
        ];
        for (k, samples) in shapes.iter().enumerate() {
            let layout = Layout::new(&video(), k as u64 * 1000, samples, &mut lengths).unwrap();
            let segment = assemble(&layout, samples);
            assert_eq!(segment.len() as u64, layout.len(), "shape {k}");
        }
        assert_eq!(lengths.0.len(), 3);
        // A layout used with another sample table is refused, not served.
        let layout = layout(0, shapes[0]).unwrap();
        assert!(layout.body(shapes[1], 7, 0).is_err());
    }

    #[test]
    fn leading_samples_without_a_keyframe_have_no_range() {
        let samples = [sample(5, false), sample(6, false), sample(70, true)];
        let layout = layout(900, &samples).unwrap();
        let ranges: Vec<_> = layout.chunks.iter().map(Chunk::iframe_range).collect();
        assert_eq!(ranges.len(), 2);
        assert_eq!(ranges[0], None);
        assert!(ranges[1].is_some());
        assert_eq!(assemble(&layout, &samples).len() as u64, layout.len());
    }

    #[test]
    fn every_sample_a_keyframe_and_empty_fragments() {
        let samples = vec![sample(3, true); 6];
        let l = layout(0, &samples).unwrap();
        assert_eq!(l.chunks.len(), 6);
        assert!(l.chunks.iter().all(|c| c.iframe_range().is_some()));
        assert_eq!(assemble(&l, &samples).len() as u64, l.len());

        let empty = layout(0, &[]).unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty.len(), empty.styp.len() as u64);
        assert_eq!(
            empty.body(&[], 7, 0).unwrap(),
            [BodyPart::Bytes(empty.styp.clone())]
        );
        // A zero-byte chunk is not referenced.
        let zero = [sample(0, true)];
        let l = layout(0, &zero).unwrap();
        assert!(
            l.body(&zero, 7, 0)
                .unwrap()
                .iter()
                .all(|p| matches!(p, BodyPart::Bytes(_)))
        );
    }

    #[test]
    fn arithmetic_fails_instead_of_wrapping() {
        let big = [sample(u32::MAX, true), sample(1, false)];
        assert!(layout(0, &big).is_err());
        let late = [sample(1, true), sample(1, true)];
        assert!(layout(u64::MAX - 100, &late).is_err());
        let mut zero = video();
        zero.timescale = 0;
        assert!(Layout::new(&zero, 0, &late, &mut HeaderLengths::default()).is_err());
    }
}
