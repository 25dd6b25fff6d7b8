//! The two playlists (RFC 8216bis) as typed models, serialised at the end.
//!
//! Only what this packager emits is modelled. Durations are integer
//! milliseconds, written with three decimals.

use std::fmt::Write as _;

/// `EXT-X-VERSION` of both playlists. `EXT-X-BYTERANGE` and
/// `EXT-X-I-FRAMES-ONLY` need 4 and `EXT-X-MAP` in an I-frame playlist 5;
/// fMP4 (CMAF) segments are declared with 7, as the built-in HLS packager
/// does.
pub const VERSION: u32 = 7;

/// The multivariant playlist: one I-frame stream per video track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultivariantPlaylist {
    /// `EXT-X-VERSION`.
    pub version: u32,
    /// The `EXT-X-I-FRAME-STREAM-INF` tags.
    pub streams: Vec<IFrameStream>,
}

/// One `EXT-X-I-FRAME-STREAM-INF` tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IFrameStream {
    /// `BANDWIDTH`: the peak bit rate of the I-frame entries (each entry's
    /// byte range over its duration), bit/s.
    pub bandwidth: u64,
    /// `AVERAGE-BANDWIDTH`: all entries' bytes over their total duration,
    /// bit/s.
    pub average_bandwidth: u64,
    /// `CODECS` (RFC 6381), when known.
    pub codecs: Option<String>,
    /// `RESOLUTION` (width, height), when known.
    pub resolution: Option<(u32, u32)>,
    /// `URI`: the I-frame playlist.
    pub uri: String,
}

/// A media playlist with `EXT-X-I-FRAMES-ONLY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IFramePlaylist {
    /// `EXT-X-VERSION`.
    pub version: u32,
    /// `EXT-X-TARGETDURATION`, whole seconds.
    pub target_duration: u64,
    /// `EXT-X-MEDIA-SEQUENCE` of the first entry.
    pub media_sequence: u64,
    /// `EXT-X-DISCONTINUITY-SEQUENCE`, when written.
    pub discontinuity_sequence: Option<u64>,
    /// `EXT-X-MAP` URI (the init segment).
    pub map_uri: String,
    /// The entries, oldest first.
    pub entries: Vec<IFrameEntry>,
    /// `EXT-X-ENDLIST`: no entry will be added.
    pub end_list: bool,
}

/// One I-frame: a byte range of a media segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IFrameEntry {
    /// `EXTINF`: the time until the next I-frame, milliseconds.
    pub duration_ms: u64,
    /// `EXT-X-DISCONTINUITY` before this entry.
    pub discontinuity: bool,
    /// `EXT-X-BYTERANGE` length.
    pub length: u64,
    /// `EXT-X-BYTERANGE` offset.
    pub offset: u64,
    /// The segment URI.
    pub uri: String,
}

/// An attribute list (RFC 8216bis 4.2), built in order.
#[derive(Default)]
struct Attributes(String);

impl Attributes {
    fn name(&mut self, name: &str) {
        if !self.0.is_empty() {
            self.0.push(',');
        }
        self.0.push_str(name);
        self.0.push('=');
    }

    /// A decimal-integer.
    fn integer(mut self, name: &str, v: u64) -> Self {
        self.name(name);
        let _ = write!(self.0, "{v}");
        self
    }

    /// A decimal-resolution.
    fn resolution(mut self, name: &str, (w, h): (u32, u32)) -> Self {
        self.name(name);
        let _ = write!(self.0, "{w}x{h}");
        self
    }

    /// A quoted-string. It cannot hold `"`, CR or LF: those become `'` and
    /// spaces rather than break the line (codec strings come from ingest).
    fn quoted(mut self, name: &str, v: &str) -> Self {
        self.name(name);
        self.0.push('"');
        self.0.extend(v.chars().map(|c| match c {
            '"' => '\'',
            '\r' | '\n' => ' ',
            c => c,
        }));
        self.0.push('"');
        self
    }
}

/// Thousandths as a decimal-floating-point with three decimals.
fn milli(v: u64) -> String {
    format!("{}.{:03}", v / 1000, v % 1000)
}

impl MultivariantPlaylist {
    /// The playlist text.
    pub fn serialize(&self) -> String {
        let mut out = String::from("#EXTM3U\n");
        let _ = writeln!(out, "#EXT-X-VERSION:{}", self.version);
        out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
        for s in &self.streams {
            let mut a = Attributes::default()
                .integer("BANDWIDTH", s.bandwidth)
                .integer("AVERAGE-BANDWIDTH", s.average_bandwidth);
            if let Some(c) = &s.codecs {
                a = a.quoted("CODECS", c);
            }
            if let Some(r) = s.resolution {
                a = a.resolution("RESOLUTION", r);
            }
            a = a.quoted("URI", &s.uri);
            let _ = writeln!(out, "#EXT-X-I-FRAME-STREAM-INF:{}", a.0);
        }
        out
    }
}

impl IFramePlaylist {
    /// The playlist text.
    pub fn serialize(&self) -> String {
        let mut out = String::with_capacity(256 + self.entries.len() * 64);
        out.push_str("#EXTM3U\n");
        let _ = writeln!(out, "#EXT-X-VERSION:{}", self.version);
        let _ = writeln!(out, "#EXT-X-TARGETDURATION:{}", self.target_duration);
        let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{}", self.media_sequence);
        if let Some(d) = self.discontinuity_sequence {
            let _ = writeln!(out, "#EXT-X-DISCONTINUITY-SEQUENCE:{d}");
        }
        out.push_str("#EXT-X-I-FRAMES-ONLY\n");
        let map = Attributes::default().quoted("URI", &self.map_uri);
        let _ = writeln!(out, "#EXT-X-MAP:{}", map.0);
        for e in &self.entries {
            if e.discontinuity {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            let _ = writeln!(out, "#EXTINF:{},", milli(e.duration_ms));
            let _ = writeln!(out, "#EXT-X-BYTERANGE:{}@{}", e.length, e.offset);
            out.push_str(&e.uri);
            out.push('\n');
        }
        if self.end_list {
            out.push_str("#EXT-X-ENDLIST\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_an_iframe_playlist() {
        let entry = |duration_ms, discontinuity, length, offset, uri: &str| IFrameEntry {
            duration_ms,
            discontinuity,
            length,
            offset,
            uri: uri.into(),
        };
        let p = IFramePlaylist {
            version: VERSION,
            target_duration: 2,
            media_sequence: 500,
            discontinuity_sequence: Some(3),
            map_uri: "init.mp4".into(),
            entries: vec![
                entry(1000, false, 5120, 36, "90000000.m4s"),
                entry(960, false, 4800, 20_000, "90000000.m4s"),
                entry(1040, true, 6000, 36, "90180000.m4s"),
            ],
            end_list: true,
        };
        assert_eq!(
            p.serialize(),
            "#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:500
#EXT-X-DISCONTINUITY-SEQUENCE:3
#EXT-X-I-FRAMES-ONLY
#EXT-X-MAP:URI=\"init.mp4\"
#EXTINF:1.000,
#EXT-X-BYTERANGE:5120@36
90000000.m4s
#EXTINF:0.960,
#EXT-X-BYTERANGE:4800@20000
90000000.m4s
#EXT-X-DISCONTINUITY
#EXTINF:1.040,
#EXT-X-BYTERANGE:6000@36
90180000.m4s
#EXT-X-ENDLIST
"
        );
    }

    #[test]
    fn serialises_a_multivariant_playlist() {
        let p = MultivariantPlaylist {
            version: VERSION,
            streams: vec![
                IFrameStream {
                    bandwidth: 86_000,
                    average_bandwidth: 80_000,
                    codecs: Some("avc1.64000d".into()),
                    resolution: Some((320, 240)),
                    uri: "m3u8-iframes/t1/iframes.m3u8".into(),
                },
                IFrameStream {
                    bandwidth: 1,
                    average_bandwidth: 1,
                    codecs: Some("a\"b\r\nc".into()),
                    resolution: None,
                    uri: "m3u8-iframes/t9/iframes.m3u8".into(),
                },
            ],
        };
        assert_eq!(
            p.serialize(),
            "#EXTM3U
#EXT-X-VERSION:7
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=86000,AVERAGE-BANDWIDTH=80000,CODECS=\"avc1.64000d\",RESOLUTION=320x240,URI=\"m3u8-iframes/t1/iframes.m3u8\"
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=1,AVERAGE-BANDWIDTH=1,CODECS=\"a'b  c\",URI=\"m3u8-iframes/t9/iframes.m3u8\"
"
        );
    }
}
