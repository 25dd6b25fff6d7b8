//! FLV (Adobe Flash Video File Format Specification 10.1, annex E): the file
//! header, tag headers, the audio and video tag body headers for AAC and
//! AVC, script data, and [`MediaDemuxer`], which turns FLV audio/video tag
//! bodies (from a file, or from RTMP messages, which carry the same bodies)
//! into Sluice tracks and samples.
//!
//! ```text
//!   FLV file ─▶ read_file ─▶ Tags ─▶ Tag { header, body }
//!   RTMP audio/video message body ─┐
//!   FLV tag body ──────────────────┴▶ MediaDemuxer ─▶ Event::Track / Event::Samples
//! ```

mod demux;

pub use demux::MediaDemuxer;

use crate::amf0::{self, Value};
use crate::plugin::SessionError;

/// Errors of FLV parsing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlvError {
    /// The input ends inside a structure.
    #[error("FLV {0} truncated")]
    Truncated(&'static str),
    /// A field holds a value the format does not allow.
    #[error("invalid FLV {0}")]
    Invalid(&'static str),
    /// Valid but not handled (a codec, enhanced RTMP).
    #[error("unsupported: {0}")]
    Unsupported(String),
}

/// Result of FLV parsing.
pub type Result<T> = std::result::Result<T, FlvError>;

impl From<FlvError> for SessionError {
    fn from(e: FlvError) -> Self {
        match e {
            FlvError::Unsupported(_) => SessionError::Unsupported(e.to_string()),
            _ => SessionError::Malformed(e.to_string()),
        }
    }
}

/// The 9-byte FLV file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    /// File version (1).
    pub version: u8,
    /// The file declares audio tags.
    pub has_audio: bool,
    /// The file declares video tags.
    pub has_video: bool,
    /// Offset of the first `PreviousTagSize` field (9 for version 1).
    pub data_offset: u32,
}

impl FileHeader {
    /// Size of the header in bytes.
    pub const SIZE: usize = 9;

    /// Parses the header from the start of a file.
    pub fn parse(data: &[u8]) -> Result<FileHeader> {
        let h = data
            .get(..Self::SIZE)
            .ok_or(FlvError::Truncated("file header"))?;
        if &h[..3] != b"FLV" {
            return Err(FlvError::Invalid("signature"));
        }
        let data_offset = u32::from_be_bytes([h[5], h[6], h[7], h[8]]);
        if (data_offset as usize) < Self::SIZE {
            return Err(FlvError::Invalid("data offset"));
        }
        Ok(FileHeader {
            version: h[3],
            has_audio: h[4] & 0x04 != 0,
            has_video: h[4] & 0x01 != 0,
            data_offset,
        })
    }

    /// Appends the header and `PreviousTagSize0` (4 zero bytes).
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"FLV");
        out.push(self.version);
        out.push(u8::from(self.has_audio) << 2 | u8::from(self.has_video));
        out.extend_from_slice(&(Self::SIZE as u32).to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
    }
}

/// What a tag carries (also the RTMP message type id of the same data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TagType {
    /// Audio (8).
    Audio,
    /// Video (9).
    Video,
    /// Script data, AMF0 (18).
    Script,
    /// Anything else.
    Other(u8),
}

impl TagType {
    /// The type from its 5-bit code.
    pub fn from_u8(v: u8) -> TagType {
        match v {
            8 => TagType::Audio,
            9 => TagType::Video,
            18 => TagType::Script,
            o => TagType::Other(o),
        }
    }

    /// The 5-bit code.
    pub fn as_u8(self) -> u8 {
        match self {
            TagType::Audio => 8,
            TagType::Video => 9,
            TagType::Script => 18,
            TagType::Other(o) => o,
        }
    }
}

/// The 11-byte tag header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagHeader {
    /// What the tag carries.
    pub tag_type: TagType,
    /// The body is encrypted or otherwise pre-processed (not supported).
    pub filtered: bool,
    /// Body length in bytes.
    pub data_size: u32,
    /// Timestamp in milliseconds (24 bits plus the extension byte).
    pub timestamp: u32,
    /// Stream id (always 0 in files).
    pub stream_id: u32,
}

impl TagHeader {
    /// Size of the header in bytes.
    pub const SIZE: usize = 11;

    /// Parses a tag header.
    pub fn parse(data: &[u8]) -> Result<TagHeader> {
        let h = data
            .get(..Self::SIZE)
            .ok_or(FlvError::Truncated("tag header"))?;
        Ok(TagHeader {
            tag_type: TagType::from_u8(h[0] & 0x1f),
            filtered: h[0] & 0x20 != 0,
            data_size: u32::from_be_bytes([0, h[1], h[2], h[3]]),
            timestamp: u32::from_be_bytes([h[7], h[4], h[5], h[6]]),
            stream_id: u32::from_be_bytes([0, h[8], h[9], h[10]]),
        })
    }

    /// Appends the header. `data_size` and `stream_id` are cut to 24 bits.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.push((u8::from(self.filtered) << 5) | (self.tag_type.as_u8() & 0x1f));
        out.extend_from_slice(&self.data_size.to_be_bytes()[1..]);
        let ts = self.timestamp.to_be_bytes();
        out.extend_from_slice(&[ts[1], ts[2], ts[3], ts[0]]);
        out.extend_from_slice(&self.stream_id.to_be_bytes()[1..]);
    }
}

/// Appends a whole tag: header, body and the `PreviousTagSize` after it.
pub fn write_tag(out: &mut Vec<u8>, tag_type: TagType, timestamp: u32, body: &[u8]) -> Result<()> {
    let data_size = u32::try_from(body.len())
        .ok()
        .filter(|&n| n < 1 << 24)
        .ok_or(FlvError::Invalid("tag body longer than 16 MiB"))?;
    TagHeader {
        tag_type,
        filtered: false,
        data_size,
        timestamp,
        stream_id: 0,
    }
    .write(out);
    out.extend_from_slice(body);
    out.extend_from_slice(&(data_size + TagHeader::SIZE as u32).to_be_bytes());
    Ok(())
}

/// One tag: its header and body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag<'a> {
    /// The header.
    pub header: TagHeader,
    /// The body (`data_size` bytes).
    pub body: &'a [u8],
}

/// Tags in a byte sequence of `tag, PreviousTagSize, tag, PreviousTagSize...`
/// (a file body after `PreviousTagSize0`, or an RTMP aggregate message).
///
/// Yields an error, then stops, when a tag runs past the end. A missing
/// final `PreviousTagSize` is tolerated.
#[derive(Debug, Clone)]
pub struct Tags<'a> {
    rest: &'a [u8],
    failed: bool,
}

/// Iterates the tags of `data` (see [`Tags`]).
pub fn tags(data: &[u8]) -> Tags<'_> {
    Tags {
        rest: data,
        failed: false,
    }
}

/// Parses a file header and iterates the tags after it.
pub fn read_file(data: &[u8]) -> Result<(FileHeader, Tags<'_>)> {
    let header = FileHeader::parse(data)?;
    // Skip the header (and anything the offset says to) and PreviousTagSize0.
    let start = (header.data_offset as usize).saturating_add(4);
    let rest = data
        .get(start..)
        .ok_or(FlvError::Truncated("file header"))?;
    Ok((header, tags(rest)))
}

impl<'a> Iterator for Tags<'a> {
    type Item = Result<Tag<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() || self.failed {
            return None;
        }
        let header = match TagHeader::parse(self.rest) {
            Ok(h) => h,
            Err(e) => {
                self.failed = true;
                return Some(Err(e));
            }
        };
        let end = TagHeader::SIZE + header.data_size as usize;
        let Some(body) = self.rest.get(TagHeader::SIZE..end) else {
            self.failed = true;
            return Some(Err(FlvError::Truncated("tag body")));
        };
        self.rest = self.rest.get(end + 4..).unwrap_or(&[]);
        Some(Ok(Tag { header, body }))
    }
}

/// Video codec ids (`CodecID` of the video tag header).
pub mod video_codec {
    /// Sorenson H.263.
    pub const H263: u8 = 2;
    /// Screen video.
    pub const SCREEN: u8 = 3;
    /// On2 VP6.
    pub const VP6: u8 = 4;
    /// H.264 / AVC.
    pub const AVC: u8 = 7;
    /// HEVC as some non-standard encoders send it (before enhanced RTMP).
    pub const HEVC_LEGACY: u8 = 12;
}

/// Sound formats (`SoundFormat` of the audio tag header).
pub mod sound_format {
    /// MP3.
    pub const MP3: u8 = 2;
    /// AAC.
    pub const AAC: u8 = 10;
    /// Speex.
    pub const SPEEX: u8 = 11;
    /// Enhanced RTMP extended audio header.
    pub const EX_HEADER: u8 = 9;
}

/// The video frame type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameType {
    /// A key frame (random access point).
    Key,
    /// An inter frame.
    Inter,
    /// A disposable inter frame (H.263 only).
    Disposable,
    /// A generated key frame (server use).
    Generated,
    /// A video info / command frame (no picture).
    Command,
    /// Any other value.
    Reserved(u8),
}

impl FrameType {
    fn from_u8(v: u8) -> FrameType {
        match v {
            1 => FrameType::Key,
            2 => FrameType::Inter,
            3 => FrameType::Disposable,
            4 => FrameType::Generated,
            5 => FrameType::Command,
            o => FrameType::Reserved(o),
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            FrameType::Key => 1,
            FrameType::Inter => 2,
            FrameType::Disposable => 3,
            FrameType::Generated => 4,
            FrameType::Command => 5,
            FrameType::Reserved(o) => o & 0x0f,
        }
    }
}

/// `AVCPacketType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AvcPacketType {
    /// The `AVCDecoderConfigurationRecord`.
    SequenceHeader,
    /// One or more length-prefixed NAL units (one access unit).
    Nalu,
    /// End of sequence (empty body).
    EndOfSequence,
}

/// The header of a video tag body (1 byte, plus 4 for AVC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoTagHeader {
    /// Frame type.
    pub frame_type: FrameType,
    /// Codec id ([`video_codec`]).
    pub codec_id: u8,
    /// For AVC: the packet type.
    pub avc_packet_type: Option<AvcPacketType>,
    /// For AVC: composition time offset in milliseconds (signed 24 bits).
    pub composition_time: i32,
}

impl VideoTagHeader {
    /// Parses the header of a video tag body; returns it and the payload
    /// after it. Enhanced RTMP headers are reported as unsupported.
    pub fn parse(body: &[u8]) -> Result<(VideoTagHeader, &[u8])> {
        let b0 = *body.first().ok_or(FlvError::Truncated("video tag"))?;
        if b0 & 0x80 != 0 {
            return Err(FlvError::Unsupported(
                "enhanced RTMP video (ExVideoTagHeader)".into(),
            ));
        }
        let frame_type = FrameType::from_u8(b0 >> 4);
        let codec_id = b0 & 0x0f;
        if codec_id != video_codec::AVC || frame_type == FrameType::Command {
            return Ok((
                VideoTagHeader {
                    frame_type,
                    codec_id,
                    avc_packet_type: None,
                    composition_time: 0,
                },
                &body[1..],
            ));
        }
        let h = body
            .get(1..5)
            .ok_or(FlvError::Truncated("AVC video tag header"))?;
        let avc_packet_type = match h[0] {
            0 => AvcPacketType::SequenceHeader,
            1 => AvcPacketType::Nalu,
            2 => AvcPacketType::EndOfSequence,
            _ => return Err(FlvError::Invalid("AVCPacketType")),
        };
        // Sign-extend the 24-bit composition time.
        let composition_time = i32::from_be_bytes([h[1], h[2], h[3], 0]) >> 8;
        Ok((
            VideoTagHeader {
                frame_type,
                codec_id,
                avc_packet_type: Some(avc_packet_type),
                composition_time,
            },
            &body[5..],
        ))
    }

    /// Appends the header (the composition time is cut to 24 bits).
    pub fn write(&self, out: &mut Vec<u8>) {
        out.push((self.frame_type.as_u8() << 4) | (self.codec_id & 0x0f));
        if let Some(t) = self.avc_packet_type {
            out.push(match t {
                AvcPacketType::SequenceHeader => 0,
                AvcPacketType::Nalu => 1,
                AvcPacketType::EndOfSequence => 2,
            });
            out.extend_from_slice(&self.composition_time.to_be_bytes()[1..]);
        }
    }
}

/// `AACPacketType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AacPacketType {
    /// The `AudioSpecificConfig`.
    SequenceHeader,
    /// One raw AAC frame.
    Raw,
}

/// The header of an audio tag body (1 byte, plus 1 for AAC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioTagHeader {
    /// Sound format ([`sound_format`]).
    pub sound_format: u8,
    /// Sound rate code (0: 5.5 kHz, 1: 11 kHz, 2: 22 kHz, 3: 44 kHz).
    pub sound_rate: u8,
    /// Sample size code (0: 8 bits, 1: 16 bits).
    pub sound_size: u8,
    /// Channels code (0: mono, 1: stereo).
    pub sound_type: u8,
    /// For AAC: the packet type.
    pub aac_packet_type: Option<AacPacketType>,
}

impl AudioTagHeader {
    /// Parses the header of an audio tag body; returns it and the payload.
    pub fn parse(body: &[u8]) -> Result<(AudioTagHeader, &[u8])> {
        let b0 = *body.first().ok_or(FlvError::Truncated("audio tag"))?;
        let sound_format = b0 >> 4;
        if sound_format == sound_format::EX_HEADER {
            return Err(FlvError::Unsupported(
                "enhanced RTMP audio (ExAudioTagHeader)".into(),
            ));
        }
        let mut h = AudioTagHeader {
            sound_format,
            sound_rate: (b0 >> 2) & 3,
            sound_size: (b0 >> 1) & 1,
            sound_type: b0 & 1,
            aac_packet_type: None,
        };
        if sound_format != sound_format::AAC {
            return Ok((h, &body[1..]));
        }
        let t = *body
            .get(1)
            .ok_or(FlvError::Truncated("AAC audio tag header"))?;
        h.aac_packet_type = Some(match t {
            0 => AacPacketType::SequenceHeader,
            1 => AacPacketType::Raw,
            _ => return Err(FlvError::Invalid("AACPacketType")),
        });
        Ok((h, &body[2..]))
    }

    /// The usual header for AAC (the rate/size/type bits are fixed at
    /// 44 kHz, 16 bits, stereo for AAC; decoders read the config instead).
    pub fn aac(packet_type: AacPacketType) -> AudioTagHeader {
        AudioTagHeader {
            sound_format: sound_format::AAC,
            sound_rate: 3,
            sound_size: 1,
            sound_type: 1,
            aac_packet_type: Some(packet_type),
        }
    }

    /// Appends the header.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(
            (self.sound_format << 4)
                | ((self.sound_rate & 3) << 2)
                | ((self.sound_size & 1) << 1)
                | (self.sound_type & 1),
        );
        if let Some(t) = self.aac_packet_type {
            out.push(match t {
                AacPacketType::SequenceHeader => 0,
                AacPacketType::Raw => 1,
            });
        }
    }
}

/// Decodes a script data tag body (or an RTMP data message): AMF0 values.
pub fn parse_script_data(body: &[u8]) -> std::result::Result<Vec<Value>, amf0::Amf0Error> {
    amf0::decode_all(body)
}

/// Finds the metadata object in script data: `onMetaData, {...}` as files
/// carry it, or `@setDataFrame, onMetaData, {...}` as RTMP publishers send it.
pub fn find_metadata(values: &[Value]) -> Option<&Value> {
    let rest = match values.first()?.as_str()? {
        "@setDataFrame" => values.get(1..)?,
        _ => values,
    };
    if rest.first()?.as_str()? != "onMetaData" {
        return None;
    }
    rest.get(1).filter(|v| v.properties().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_header_round_trip() {
        let h = TagHeader {
            tag_type: TagType::Video,
            filtered: false,
            data_size: 0x012345,
            timestamp: 0x8765_4321,
            stream_id: 0,
        };
        let mut out = Vec::new();
        h.write(&mut out);
        assert_eq!(out, [9, 0x01, 0x23, 0x45, 0x65, 0x43, 0x21, 0x87, 0, 0, 0]);
        assert_eq!(TagHeader::parse(&out), Ok(h));
        assert!(TagHeader::parse(&out[..10]).is_err());
    }

    #[test]
    fn file_round_trip() {
        let mut file = Vec::new();
        FileHeader {
            version: 1,
            has_audio: true,
            has_video: true,
            data_offset: 9,
        }
        .write(&mut file);
        assert_eq!(&file[..13], b"FLV\x01\x05\0\0\0\x09\0\0\0\0");
        write_tag(&mut file, TagType::Audio, 0, &[0xaf, 0, 0x12, 0x10]).expect("fits");
        write_tag(&mut file, TagType::Video, 40, &[0x17, 1, 0, 0, 0x50]).expect("fits");
        let (h, tags) = read_file(&file).expect("parses");
        assert!(h.has_audio && h.has_video);
        let tags: Vec<_> = tags.collect::<Result<_>>().expect("valid");
        assert_eq!(tags.len(), 2);
        assert_eq!(tags[1].header.tag_type, TagType::Video);
        assert_eq!(tags[1].header.timestamp, 40);
        assert_eq!(tags[1].body, &[0x17, 1, 0, 0, 0x50]);

        // Truncated in the second tag: one tag, then an error, then nothing.
        let cut = &file[..file.len() - 6];
        let (_, mut tags) = read_file(cut).expect("header");
        assert!(tags.next().expect("one").is_ok());
        assert!(tags.next().expect("error").is_err());
        assert!(tags.next().is_none());
    }

    #[test]
    fn video_tag_header_signed_composition_time() {
        let (h, rest) = VideoTagHeader::parse(&[0x27, 1, 0xff, 0xff, 0xd8, 0xaa]).expect("parses");
        assert_eq!(h.frame_type, FrameType::Inter);
        assert_eq!(h.codec_id, video_codec::AVC);
        assert_eq!(h.avc_packet_type, Some(AvcPacketType::Nalu));
        assert_eq!(h.composition_time, -40);
        assert_eq!(rest, &[0xaa]);
        let mut out = Vec::new();
        h.write(&mut out);
        assert_eq!(out, [0x27, 1, 0xff, 0xff, 0xd8]);

        let (h, _) = VideoTagHeader::parse(&[0x17, 0, 0, 0, 80]).expect("parses");
        assert_eq!(h.frame_type, FrameType::Key);
        assert_eq!(h.avc_packet_type, Some(AvcPacketType::SequenceHeader));
        assert_eq!(h.composition_time, 80);

        assert!(VideoTagHeader::parse(&[0x17, 1, 0]).is_err());
        assert!(matches!(
            VideoTagHeader::parse(&[0x90, 0, 0, 0, 0]),
            Err(FlvError::Unsupported(_))
        ));
    }

    #[test]
    fn audio_tag_header() {
        let (h, rest) = AudioTagHeader::parse(&[0xaf, 0x01, 0x21]).expect("parses");
        assert_eq!(h, AudioTagHeader::aac(AacPacketType::Raw));
        assert_eq!(rest, &[0x21]);
        let mut out = Vec::new();
        h.write(&mut out);
        assert_eq!(out, [0xaf, 0x01]);
        let (h, _) = AudioTagHeader::parse(&[0x2f, 0xff]).expect("mp3 parses");
        assert_eq!(h.sound_format, sound_format::MP3);
        assert!(AudioTagHeader::parse(&[0xaf]).is_err());
    }

    #[test]
    fn finds_metadata_both_ways() {
        let meta = Value::EcmaArray(vec![("width".into(), Value::Number(320.0))]);
        let file = [Value::string("onMetaData"), meta.clone()];
        assert_eq!(find_metadata(&file), Some(&meta));
        let rtmp = [
            Value::string("@setDataFrame"),
            Value::string("onMetaData"),
            meta.clone(),
        ];
        assert_eq!(find_metadata(&rtmp), Some(&meta));
        assert_eq!(find_metadata(&[Value::string("onCuePoint"), meta]), None);
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u64 = 0x1234_5678_9abc_def1;
        for _ in 0..20_000 {
            let len = (x % 40) as usize;
            let mut buf = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf.push(x as u8);
            }
            let _ = tags(&buf).count();
            let _ = VideoTagHeader::parse(&buf);
            let _ = AudioTagHeader::parse(&buf);
            let _ = read_file(&buf);
        }
    }
}
