//! `flv_tags`: the file header, tag iteration, tag body headers and
//! [`MediaDemuxer`] fed each tag.
//!
//! [`flv::read_file`] and [`flv::tags`] work on a buffer; a reader that
//! receives a file in pieces calls them on what it has so far and keeps
//! only the tags that are complete (with their `PreviousTagSize`), and at
//! the end takes whatever is left. The tags it sees must be the tags the
//! whole file gives, errors included, and the demuxer fed them must emit
//! the same events.

use sluice_sdk::flv::{
    self, AudioTagHeader, FileHeader, FlvError, MediaDemuxer, TagHeader, TagType, VideoTagHeader,
};
use sluice_sdk::plugin::{Event, SessionError};
use sluice_sdk::time::RtmpClock;

use crate::events::{self, Promises};
use crate::{Input, pieces, split};

/// A tag as read, owning its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedTag {
    /// The header.
    pub header: TagHeader,
    /// The body.
    pub body: Vec<u8>,
}

/// What reading a file gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// The header, or why there is none.
    pub header: Result<FileHeader, FlvError>,
    /// The tags in order; an error ends them.
    pub tags: Vec<Result<OwnedTag, FlvError>>,
}

fn owned(t: Result<flv::Tag<'_>, FlvError>) -> Result<OwnedTag, FlvError> {
    t.map(|t| OwnedTag {
        header: t.header,
        body: t.body.to_vec(),
    })
}

/// Reads the whole file at once.
pub fn read_whole(data: &[u8]) -> File {
    match flv::read_file(data) {
        Ok((header, tags)) => File {
            header: Ok(header),
            tags: tags.map(owned).collect(),
        },
        Err(e) => File {
            header: Err(e),
            tags: Vec::new(),
        },
    }
}

/// Reads the file as it arrives in `pieces`.
pub fn read_streaming(pieces: &[&[u8]]) -> File {
    let mut buf: Vec<u8> = Vec::new();
    let mut header: Option<FileHeader> = None;
    // Start of the first tag not yet taken.
    let mut pos = 0;
    let mut tags = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        if header.is_none() {
            match flv::read_file(&buf) {
                Ok((h, _)) => {
                    header = Some(h);
                    pos = (h.data_offset as usize) + 4;
                }
                // Need more.
                Err(FlvError::Truncated(_)) => continue,
                Err(e) => {
                    return File {
                        header: Err(e),
                        tags,
                    };
                }
            }
        }
        // Complete tags only: header, body and PreviousTagSize.
        for t in flv::tags(&buf[pos..]) {
            let Ok(t) = t else { break };
            let len = TagHeader::SIZE + t.body.len() + 4;
            if pos + len > buf.len() {
                break;
            }
            tags.push(owned(Ok(t)));
            pos += len;
        }
    }
    // End of input: the header as it stands, and every tag left, a missing
    // last PreviousTagSize and a final error included.
    let header = match header {
        Some(h) => h,
        None => {
            return File {
                header: flv::read_file(&buf).map(|(h, _)| h),
                tags,
            };
        }
    };
    tags.extend(flv::tags(buf.get(pos..).unwrap_or_default()).map(owned));
    File {
        header: Ok(header),
        tags,
    }
}

/// The demuxer's output for each tag it was fed.
pub type Demuxed = Vec<Result<Vec<Event>, SessionError>>;

/// Feeds every tag to a [`MediaDemuxer`], as a file source would: script
/// data sets the metadata, audio and video go to the demuxer with their
/// timestamps unwrapped; an error is recorded and the next tag fed.
pub fn demux(file: &File) -> Demuxed {
    let mut d = MediaDemuxer::new("fuzz", 1, 2);
    let mut clock = RtmpClock::new();
    let mut out = Vec::new();
    for tag in file.tags.iter().flatten() {
        let ms = clock.unwrap(tag.header.timestamp);
        match tag.header.tag_type {
            TagType::Video => out.push(d.push_video(ms, &tag.body)),
            TagType::Audio => out.push(d.push_audio(ms, &tag.body)),
            TagType::Script => {
                if let Ok(values) = flv::parse_script_data(&tag.body)
                    && let Some(meta) = flv::find_metadata(&values)
                {
                    d.set_metadata(meta);
                }
            }
            TagType::Other(_) => {}
        }
    }
    out
}

/// Header write/parse round trips on every tag.
fn header_round_trips(file: &File) {
    if let Ok(h) = &file.header {
        let mut b = Vec::new();
        h.write(&mut b);
        let back = FileHeader::parse(&b).expect("a written file header parses");
        assert_eq!((back.has_audio, back.has_video), (h.has_audio, h.has_video));
    }
    for tag in file.tags.iter().flatten() {
        let mut b = Vec::new();
        tag.header.write(&mut b);
        assert_eq!(
            TagHeader::parse(&b),
            Ok(tag.header),
            "tag header round trip"
        );
        match tag.header.tag_type {
            TagType::Video => {
                if let Ok((h, rest)) = VideoTagHeader::parse(&tag.body) {
                    let mut b = Vec::new();
                    h.write(&mut b);
                    b.extend_from_slice(rest);
                    assert_eq!(
                        VideoTagHeader::parse(&b),
                        Ok((h, rest)),
                        "video tag header round trip"
                    );
                }
            }
            TagType::Audio => {
                if let Ok((h, rest)) = AudioTagHeader::parse(&tag.body) {
                    let mut b = Vec::new();
                    h.write(&mut b);
                    b.extend_from_slice(rest);
                    assert_eq!(
                        AudioTagHeader::parse(&b),
                        Ok((h, rest)),
                        "audio tag header round trip"
                    );
                }
            }
            TagType::Script | TagType::Other(_) => {}
        }
    }
}

/// The `flv_tags` target.
pub fn fuzz(input: &[u8]) {
    let Some(Input { data, cuts }) = split(input) else {
        return;
    };
    let whole = read_whole(data);
    let streamed = read_streaming(&pieces(data, &cuts));
    assert_eq!(whole, streamed, "whole and streamed reads differ");
    header_round_trips(&whole);
    let a = demux(&whole);
    let b = demux(&streamed);
    assert_eq!(a, b, "demuxing differs");
    let events: Vec<Event> = a.into_iter().flatten().flatten().collect();
    events::check(
        &events,
        Promises {
            avc_framing: true,
            forward_dts: false,
        },
    );
    // The tags as an RTMP aggregate message carries them.
    let _ = flv::tags(data).count();
}
