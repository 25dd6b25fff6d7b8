//! [`MediaDemuxer`]: FLV audio/video tag bodies to tracks and samples.

use super::{AacPacketType, AudioTagHeader, AvcPacketType, FrameType, VideoTagHeader};
use super::{sound_format, video_codec};
use crate::aac::AudioSpecificConfig;
use crate::amf0::Value;
use crate::h264::{self, AvcDecoderConfig};
use crate::plugin::{Event, Sample, SessionError, TrackInfo, TrackKind};
use crate::time::mul_div_round_signed;

/// Result of demuxing: events, or why the session cannot go on.
pub type Result<T> = std::result::Result<T, SessionError>;

/// The 90 kHz clock video samples are stamped in.
const VIDEO_TIMESCALE: u32 = 90_000;

/// Turns FLV audio and video tag bodies (H.264 and AAC) into
/// [`Event::Track`] and [`Event::Samples`].
///
/// Shared by the RTMP ingest adapter (RTMP audio/video messages carry FLV
/// tag bodies) and by file-based sources. Timestamps come in as unwrapped
/// milliseconds.
///
/// - Video: track `video_track`, fourcc `avc1`, timescale 90000,
///   `dts = ms * 90`, composition offset `cts_ms * 90`, duration 0 (the
///   host derives it), keyframe = FLV frame type 1; codec string, width and
///   height from the SPS; `codec_private` is the `avcC` as received (with
///   the length size patched to 4 when the stream used 1 or 2 bytes, since
///   samples are rewritten to 4-byte lengths).
/// - Audio: track `audio_track`, fourcc `mp4a`, timescale = the AAC core
///   sample rate, `codec_private` = the AudioSpecificConfig. Timestamps are
///   sample-accurate: a running position advancing one frame (1024, or 960)
///   per frame, anchored on the first frame's millisecond timestamp and
///   re-anchored only when the FLV timestamp strays from it by more than
///   two frames. Duration = the frame length.
/// - A track is (re-)declared when its sequence header arrives or changes.
///   Media before the sequence header is dropped and counted
///   ([`MediaDemuxer::dropped_samples`]).
/// - Other codecs are [`SessionError::Unsupported`].
#[derive(Debug, Clone)]
pub struct MediaDemuxer {
    stream: String,
    video_track: u32,
    audio_track: u32,
    video: Option<VideoState>,
    audio: Option<AudioState>,
    meta: Metadata,
    dropped: u64,
}

#[derive(Debug, Clone)]
struct VideoState {
    /// The sequence header as received (to spot changes).
    received: Vec<u8>,
    nal_length_size: u8,
    track: TrackInfo,
}

#[derive(Debug, Clone)]
struct AudioState {
    received: Vec<u8>,
    frame_length: i64,
    track: TrackInfo,
    /// The position (in samples) the next frame is expected at.
    next: Option<i64>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Metadata {
    video_bitrate: u32,
    audio_bitrate: u32,
    width: u32,
    height: u32,
}

/// A finite, non-negative metadata number scaled and rounded into `u32`.
fn meta_u32(v: Option<&Value>, scale: f64) -> u32 {
    match v.and_then(Value::as_number) {
        Some(n) if n.is_finite() && n > 0.0 && n * scale < f64::from(u32::MAX) => {
            (n * scale).round() as u32
        }
        _ => 0,
    }
}

fn ms_to_ticks(ms: i64, timescale: u32) -> Result<i64> {
    mul_div_round_signed(ms, u64::from(timescale), 1000)
        .map_err(|_| SessionError::Malformed(format!("timestamp {ms} ms out of range")))
}

impl MediaDemuxer {
    /// A demuxer for one stream (rendition) declaring `video_track` and
    /// `audio_track` as the track ids.
    pub fn new(stream: &str, video_track: u32, audio_track: u32) -> Self {
        MediaDemuxer {
            stream: stream.to_owned(),
            video_track,
            audio_track,
            video: None,
            audio: None,
            meta: Metadata::default(),
            dropped: 0,
        }
    }

    /// Takes `onMetaData` (an object or ECMA array): `videodatarate` and
    /// `audiodatarate` (kbit/s) become the tracks' bitrates, `width` and
    /// `height` stand in when the SPS cannot be read. Applies to tracks
    /// declared after the call (publishers send metadata first).
    pub fn set_metadata(&mut self, metadata: &Value) {
        self.meta = Metadata {
            video_bitrate: meta_u32(metadata.get("videodatarate"), 1000.0),
            audio_bitrate: meta_u32(metadata.get("audiodatarate"), 1000.0),
            width: meta_u32(metadata.get("width"), 1.0),
            height: meta_u32(metadata.get("height"), 1.0),
        };
    }

    /// Media packets dropped because they came before their sequence header
    /// or were empty.
    pub fn dropped_samples(&self) -> u64 {
        self.dropped
    }

    /// The video track as last declared.
    pub fn video_track(&self) -> Option<&TrackInfo> {
        self.video.as_ref().map(|v| &v.track)
    }

    /// The audio track as last declared.
    pub fn audio_track(&self) -> Option<&TrackInfo> {
        self.audio.as_ref().map(|a| &a.track)
    }

    /// Takes a video tag body with its (unwrapped) timestamp in milliseconds.
    pub fn push_video(&mut self, timestamp_ms: i64, body: &[u8]) -> Result<Vec<Event>> {
        if body.is_empty() {
            self.dropped += 1;
            return Ok(Vec::new());
        }
        let (header, payload) = VideoTagHeader::parse(body)?;
        if header.frame_type == FrameType::Command {
            return Ok(Vec::new());
        }
        if header.codec_id != video_codec::AVC {
            let name = match header.codec_id {
                video_codec::H263 => "Sorenson H.263",
                video_codec::SCREEN => "Screen video",
                video_codec::VP6 => "VP6",
                video_codec::HEVC_LEGACY => "HEVC (non-standard codec id 12)",
                _ => "unknown",
            };
            return Err(SessionError::Unsupported(format!(
                "FLV video codec id {} ({name}); only H.264 is supported",
                header.codec_id
            )));
        }
        match header.avc_packet_type {
            Some(AvcPacketType::SequenceHeader) => self.video_config(payload),
            Some(AvcPacketType::Nalu) => self.video_sample(timestamp_ms, &header, payload),
            Some(AvcPacketType::EndOfSequence) | None => Ok(Vec::new()),
        }
    }

    fn video_config(&mut self, payload: &[u8]) -> Result<Vec<Event>> {
        if self.video.as_ref().is_some_and(|v| v.received == payload) {
            return Ok(Vec::new());
        }
        let config = AvcDecoderConfig::parse(payload)?;
        let mut track = TrackInfo::new(self.video_track, TrackKind::Video, VIDEO_TIMESCALE);
        track.fourcc = "avc1".into();
        track.codec = config.codec_string();
        track.stream = self.stream.clone();
        track.bitrate = self.meta.video_bitrate;
        match config.parse_sps() {
            Ok(sps) => {
                track.width = sps.width;
                track.height = sps.height;
            }
            Err(_) => {
                track.width = self.meta.width;
                track.height = self.meta.height;
            }
        }
        track.codec_private = payload.to_vec();
        if config.nal_length_size != 4 {
            // Samples are rewritten to 4-byte lengths: say so in the record.
            if let Some(b) = track.codec_private.get_mut(4) {
                *b |= 0x03;
            }
        }
        self.video = Some(VideoState {
            received: payload.to_vec(),
            nal_length_size: config.nal_length_size,
            track: track.clone(),
        });
        Ok(vec![Event::Track(track)])
    }

    fn video_sample(
        &mut self,
        timestamp_ms: i64,
        header: &VideoTagHeader,
        payload: &[u8],
    ) -> Result<Vec<Event>> {
        let Some(video) = &self.video else {
            self.dropped += 1;
            return Ok(Vec::new());
        };
        if payload.is_empty() {
            self.dropped += 1;
            return Ok(Vec::new());
        }
        let data = if video.nal_length_size == 4 {
            // Check the framing so that packagers can trust it.
            for nal in h264::nal_units(payload, 4) {
                nal?;
            }
            payload.to_vec()
        } else {
            let mut out = Vec::with_capacity(payload.len() + payload.len() / 4);
            h264::to_length_size_4(payload, video.nal_length_size, &mut out)?;
            out
        };
        let sample = Sample {
            track: video.track.id,
            dts: ms_to_ticks(timestamp_ms, VIDEO_TIMESCALE)?,
            // |cts| < 2^23 ms, so 90 × cts fits in an i32.
            composition_offset: header.composition_time * 90,
            duration: 0,
            keyframe: header.frame_type == FrameType::Key,
            data,
        };
        Ok(vec![Event::Samples(vec![sample])])
    }

    /// Takes an audio tag body with its (unwrapped) timestamp in milliseconds.
    pub fn push_audio(&mut self, timestamp_ms: i64, body: &[u8]) -> Result<Vec<Event>> {
        if body.is_empty() {
            self.dropped += 1;
            return Ok(Vec::new());
        }
        let (header, payload) = AudioTagHeader::parse(body)?;
        if header.sound_format != sound_format::AAC {
            let name = match header.sound_format {
                0 => "linear PCM",
                1 => "ADPCM",
                sound_format::MP3 => "MP3",
                3 => "linear PCM (little endian)",
                4..=6 => "Nellymoser",
                7 => "G.711 A-law",
                8 => "G.711 mu-law",
                sound_format::SPEEX => "Speex",
                14 => "MP3 8 kHz",
                _ => "unknown",
            };
            return Err(SessionError::Unsupported(format!(
                "FLV sound format {} ({name}); only AAC is supported",
                header.sound_format
            )));
        }
        match header.aac_packet_type {
            Some(AacPacketType::SequenceHeader) => self.audio_config(&header, payload),
            Some(AacPacketType::Raw) => self.audio_sample(timestamp_ms, payload),
            None => Ok(Vec::new()),
        }
    }

    fn audio_config(&mut self, header: &AudioTagHeader, payload: &[u8]) -> Result<Vec<Event>> {
        if self.audio.as_ref().is_some_and(|a| a.received == payload) {
            return Ok(Vec::new());
        }
        let config = AudioSpecificConfig::parse(payload)?;
        let mut track = TrackInfo::new(
            self.audio_track,
            TrackKind::Audio,
            config.sampling_frequency,
        );
        track.fourcc = "mp4a".into();
        track.codec = config.codec_string();
        track.stream = self.stream.clone();
        track.bitrate = self.meta.audio_bitrate;
        track.sample_rate = config.sampling_frequency;
        track.channels = if config.channels > 0 {
            config.channels
        } else {
            u16::from(header.sound_type) + 1
        };
        track.codec_private = payload.to_vec();
        self.audio = Some(AudioState {
            received: payload.to_vec(),
            frame_length: i64::from(config.frame_length),
            track: track.clone(),
            next: None,
        });
        Ok(vec![Event::Track(track)])
    }

    fn audio_sample(&mut self, timestamp_ms: i64, payload: &[u8]) -> Result<Vec<Event>> {
        let Some(audio) = &mut self.audio else {
            self.dropped += 1;
            return Ok(Vec::new());
        };
        if payload.is_empty() {
            self.dropped += 1;
            return Ok(Vec::new());
        }
        let frame = audio.frame_length;
        let stamped = ms_to_ticks(timestamp_ms, audio.track.timescale)?;
        let dts = match audio.next {
            Some(next) if stamped.abs_diff(next) <= 2 * frame.unsigned_abs() => next,
            // First frame, or a jump / encoder restart: re-anchor.
            _ => stamped,
        };
        audio.next = dts.checked_add(frame);
        let sample = Sample {
            track: audio.track.id,
            dts,
            composition_offset: 0,
            duration: frame as u32,
            keyframe: true,
            data: payload.to_vec(),
        };
        Ok(vec![Event::Samples(vec![sample])])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPS: &[u8] = &[
        0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03,
        0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x0f, 0x16, 0x2d, 0x96,
    ];
    const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

    fn avcc(length_size: u8) -> Vec<u8> {
        let mut c = AvcDecoderConfig::from_parameter_sets(vec![SPS.to_vec()], vec![PPS.to_vec()])
            .expect("valid");
        c.nal_length_size = length_size;
        c.to_bytes()
    }

    fn video_body(key: bool, packet: AvcPacketType, cts: i32, payload: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        VideoTagHeader {
            frame_type: if key {
                FrameType::Key
            } else {
                FrameType::Inter
            },
            codec_id: video_codec::AVC,
            avc_packet_type: Some(packet),
            composition_time: cts,
        }
        .write(&mut b);
        b.extend_from_slice(payload);
        b
    }

    fn audio_body(packet: AacPacketType, payload: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        AudioTagHeader::aac(packet).write(&mut b);
        b.extend_from_slice(payload);
        b
    }

    fn samples(events: Vec<Event>) -> Vec<Sample> {
        events
            .into_iter()
            .flat_map(|e| match e {
                Event::Samples(s) => s,
                other => panic!("expected samples, got {other:?}"),
            })
            .collect()
    }

    #[test]
    fn video_track_and_samples() {
        let mut d = MediaDemuxer::new("720p", 1, 2);
        d.set_metadata(&Value::EcmaArray(vec![
            ("videodatarate".into(), Value::Number(2500.0)),
            ("audiodatarate".into(), Value::Number(128.0)),
        ]));
        // Before the sequence header: dropped.
        let nalu = [0, 0, 0, 2, 0x65, 0x88];
        assert!(
            d.push_video(0, &video_body(true, AvcPacketType::Nalu, 0, &nalu))
                .expect("ok")
                .is_empty()
        );
        assert_eq!(d.dropped_samples(), 1);

        let cfg = avcc(4);
        let ev = d
            .push_video(0, &video_body(true, AvcPacketType::SequenceHeader, 0, &cfg))
            .expect("ok");
        let [Event::Track(t)] = ev.as_slice() else {
            panic!("expected a track: {ev:?}")
        };
        assert_eq!(t.id, 1);
        assert_eq!(t.fourcc, "avc1");
        assert_eq!(t.codec, "avc1.64001e");
        assert_eq!(t.timescale, 90_000);
        assert_eq!((t.width, t.height), (640, 360));
        assert_eq!(t.bitrate, 2_500_000);
        assert_eq!(t.stream, "720p");
        assert_eq!(t.codec_private, cfg);

        // The same header again: nothing.
        assert!(
            d.push_video(0, &video_body(true, AvcPacketType::SequenceHeader, 0, &cfg))
                .expect("ok")
                .is_empty()
        );

        let s = samples(
            d.push_video(40, &video_body(true, AvcPacketType::Nalu, 80, &nalu))
                .expect("ok"),
        );
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].dts, 3600);
        assert_eq!(s[0].composition_offset, 7200);
        assert!(s[0].keyframe);
        assert_eq!(s[0].data, nalu);
        let s = samples(
            d.push_video(-80, &video_body(false, AvcPacketType::Nalu, -40, &nalu))
                .expect("ok"),
        );
        assert_eq!(s[0].dts, -7200);
        assert_eq!(s[0].composition_offset, -3600);
        assert!(!s[0].keyframe);

        // Broken NAL framing is an error.
        assert!(matches!(
            d.push_video(
                80,
                &video_body(false, AvcPacketType::Nalu, 0, &[0, 0, 0, 9, 1])
            ),
            Err(SessionError::Malformed(_))
        ));
    }

    #[test]
    fn two_byte_lengths_are_widened() {
        let mut d = MediaDemuxer::new("s", 1, 2);
        let cfg = avcc(2);
        let ev = d
            .push_video(0, &video_body(true, AvcPacketType::SequenceHeader, 0, &cfg))
            .expect("ok");
        let Event::Track(t) = &ev[0] else {
            panic!("track")
        };
        assert_eq!(t.codec_private[4] & 3, 3);
        let s = samples(
            d.push_video(
                0,
                &video_body(true, AvcPacketType::Nalu, 0, &[0, 2, 0x65, 0x88]),
            )
            .expect("ok"),
        );
        assert_eq!(s[0].data, [0, 0, 0, 2, 0x65, 0x88]);
    }

    #[test]
    fn audio_running_position() {
        let mut d = MediaDemuxer::new("s", 1, 2);
        assert!(
            d.push_audio(0, &audio_body(AacPacketType::Raw, &[1]))
                .expect("ok")
                .is_empty()
        );
        let asc = [0x11, 0x88]; // LC, 48 kHz, mono
        let ev = d
            .push_audio(0, &audio_body(AacPacketType::SequenceHeader, &asc))
            .expect("ok");
        let Event::Track(t) = &ev[0] else {
            panic!("track")
        };
        assert_eq!(t.id, 2);
        assert_eq!(t.codec, "mp4a.40.2");
        assert_eq!(t.timescale, 48_000);
        assert_eq!(t.sample_rate, 48_000);
        assert_eq!(t.channels, 1);
        assert_eq!(t.codec_private, asc);

        // 1024 samples at 48 kHz = 21.333 ms: FLV timestamps 1000, 1021,
        // 1043, 1064, ... (rounded to ms) give exact 1024 steps.
        let mut dts = Vec::new();
        for i in 0..50i64 {
            let ms = 1000 + (i * 1024 * 1000) / 48_000;
            let s = samples(
                d.push_audio(ms, &audio_body(AacPacketType::Raw, &[0x21, 0x10]))
                    .expect("ok"),
            );
            assert_eq!(s[0].duration, 1024);
            assert!(s[0].keyframe);
            dts.push(s[0].dts);
        }
        assert_eq!(dts[0], 48_000);
        assert!(dts.windows(2).all(|w| w[1] - w[0] == 1024), "{dts:?}");

        // A jump of a second re-anchors.
        let s = samples(
            d.push_audio(3000, &audio_body(AacPacketType::Raw, &[0x21]))
                .expect("ok"),
        );
        assert_eq!(s[0].dts, 144_000);
        // A 1-frame-late timestamp does not.
        let s = samples(
            d.push_audio(3000 + 42, &audio_body(AacPacketType::Raw, &[0x21]))
                .expect("ok"),
        );
        assert_eq!(s[0].dts, 144_000 + 1024);
    }

    #[test]
    fn unsupported_codecs() {
        let mut d = MediaDemuxer::new("s", 1, 2);
        assert!(matches!(
            d.push_video(0, &[0x12, 0, 0]),
            Err(SessionError::Unsupported(_))
        ));
        assert!(matches!(
            d.push_audio(0, &[0x2f, 0xff, 0xfb]),
            Err(SessionError::Unsupported(_))
        ));
        assert!(matches!(
            d.push_video(0, &[0x9c, 0, 0, 0, 0]),
            Err(SessionError::Unsupported(_))
        ));
        // A video command frame is ignored.
        assert!(d.push_video(0, &[0x57, 0]).expect("ok").is_empty());
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u64 = 0x0bad_5eed_1234_5678;
        let mut d = MediaDemuxer::new("s", 1, 2);
        let _ = d.push_video(
            0,
            &video_body(true, AvcPacketType::SequenceHeader, 0, &avcc(4)),
        );
        let _ = d.push_audio(0, &audio_body(AacPacketType::SequenceHeader, &[0x12, 0x10]));
        for i in 0..20_000i64 {
            let len = (x % 24) as usize;
            let mut buf = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf.push(x as u8);
            }
            let ts = if i % 7 == 0 { i64::MAX - i } else { i };
            if i % 2 == 0 {
                if let Some(b) = buf.first_mut() {
                    *b = 0x17 | (*b & 0x20);
                }
                let _ = d.push_video(ts, &buf);
            } else {
                if let Some(b) = buf.first_mut() {
                    *b = 0xaf;
                }
                let _ = d.push_audio(ts, &buf);
            }
        }
    }
}
