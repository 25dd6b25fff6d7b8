//! HLS playlists (RFC 8216bis) as typed models, serialised at the end.
//!
//! Only what this packager emits is modelled. Times are integers
//! (milliseconds), formatted here: durations with three decimals, dates
//! as RFC 3339 in UTC with milliseconds.

use std::fmt::Write as _;

/// The protocol version both playlist kinds declare (`EXT-X-MAP` in a
/// playlist without I-frames only needs 6; 7 is what CMAF guidance uses).
pub const VERSION: u32 = 7;

/// The protocol version of the TS format's playlists (nothing past 3 is used).
pub const VERSION_TS: u32 = 3;

/// The multivariant (master) playlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultivariantPlaylist {
    /// `EXT-X-VERSION`.
    pub version: u32,
    /// `EXT-X-MEDIA` renditions (audio).
    pub renditions: Vec<AudioRendition>,
    /// `EXT-X-STREAM-INF` variants.
    pub variants: Vec<VariantStream>,
    /// `EXT-X-I-FRAME-STREAM-INF` playlists (another plugin's).
    pub iframe_streams: Vec<IFrameStream>,
}

/// An `EXT-X-I-FRAME-STREAM-INF` tag: an I-frame-only playlist of one
/// video track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IFrameStream {
    /// `BANDWIDTH`: peak I-frame bit rate, bit/s.
    pub bandwidth: u64,
    /// `CODECS` (the video codec).
    pub codecs: Vec<String>,
    /// `RESOLUTION` (width, height).
    pub resolution: Option<(u32, u32)>,
    /// `URI` of the I-frame playlist.
    pub uri: String,
}

/// An `EXT-X-MEDIA:TYPE=AUDIO` rendition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioRendition {
    /// `GROUP-ID`.
    pub group_id: String,
    /// `NAME`, unique within the group.
    pub name: String,
    /// `LANGUAGE` (BCP 47), when known.
    pub language: Option<String>,
    /// `DEFAULT=YES`.
    pub default: bool,
    /// `AUTOSELECT=YES`.
    pub autoselect: bool,
    /// `CHANNELS`, when known.
    pub channels: Option<u16>,
    /// The media playlist; `None` for a rendition carried in the
    /// variant's own segments.
    pub uri: Option<String>,
}

/// An `EXT-X-STREAM-INF` variant and its URI line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariantStream {
    /// `BANDWIDTH`: peak segment bit rate, bit/s.
    pub bandwidth: u64,
    /// `AVERAGE-BANDWIDTH`, bit/s.
    pub average_bandwidth: Option<u64>,
    /// `CODECS`, each an RFC 6381 string.
    pub codecs: Vec<String>,
    /// `RESOLUTION` (width, height).
    pub resolution: Option<(u32, u32)>,
    /// `FRAME-RATE` in thousandths of a frame per second.
    pub frame_rate_milli: Option<u64>,
    /// `AUDIO` group id.
    pub audio_group: Option<String>,
    /// The media playlist.
    pub uri: String,
}

/// A media playlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaPlaylist {
    /// `EXT-X-VERSION`.
    pub version: u32,
    /// `EXT-X-TARGETDURATION` in whole seconds.
    pub target_duration: u64,
    /// `EXT-X-MEDIA-SEQUENCE` of the first segment.
    pub media_sequence: u64,
    /// `EXT-X-DISCONTINUITY-SEQUENCE`, when written.
    pub discontinuity_sequence: Option<u64>,
    /// `EXT-X-MAP` URI (the init segment), if any.
    pub map_uri: Option<String>,
    /// What follows a segment's start in its URI (`.m4s`, `.ts`): segment
    /// URIs are `{start}{suffix}`, written without a string per segment.
    pub segment_suffix: &'static str,
    /// The segments, oldest first.
    pub segments: Vec<Segment>,
    /// `EXT-X-ENDLIST`: no segment will be added.
    pub end_list: bool,
}

/// One media segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// `EXTINF` duration in milliseconds.
    pub duration_ms: u64,
    /// `EXT-X-PROGRAM-DATE-TIME` as Unix milliseconds.
    pub program_date_time_ms: Option<i64>,
    /// `EXT-X-DISCONTINUITY` before this segment.
    pub discontinuity: bool,
    /// The segment's start in media time: its URI is this number and the
    /// playlist's `segment_suffix`.
    pub start: u64,
}

/// An attribute list (RFC 8216bis 4.2), built in order.
#[derive(Default)]
struct Attributes(String);

impl Attributes {
    fn sep(&mut self, name: &str) {
        if !self.0.is_empty() {
            self.0.push(',');
        }
        self.0.push_str(name);
        self.0.push('=');
    }

    /// A decimal-integer.
    fn integer(mut self, name: &str, v: u64) -> Self {
        self.sep(name);
        let _ = write!(self.0, "{v}");
        self
    }

    /// A decimal-floating-point with three decimals, from thousandths.
    fn milli(mut self, name: &str, v: u64) -> Self {
        self.sep(name);
        self.0.push_str(&milli(v));
        self
    }

    /// A decimal-resolution.
    fn resolution(mut self, name: &str, (w, h): (u32, u32)) -> Self {
        self.sep(name);
        let _ = write!(self.0, "{w}x{h}");
        self
    }

    /// An enumerated-string (our values are fixed tokens).
    fn enumerated(mut self, name: &str, v: &str) -> Self {
        self.sep(name);
        self.0.push_str(v);
        self
    }

    /// A quoted-string. A quoted-string cannot hold `"`, CR or LF: those
    /// are replaced (`'` and spaces) rather than allowed to break the line.
    fn quoted(mut self, name: &str, v: &str) -> Self {
        self.sep(name);
        self.0.push('"');
        self.0.extend(v.chars().map(|c| match c {
            '"' => '\'',
            '\r' | '\n' => ' ',
            c => c,
        }));
        self.0.push('"');
        self
    }

    fn yes_no(self, name: &str, v: bool) -> Self {
        self.enumerated(name, if v { "YES" } else { "NO" })
    }
}

/// `1234` thousandths as `1.234`.
fn milli(v: u64) -> String {
    format!("{}.{:03}", v / 1000, v % 1000)
}

/// A playlist being written, one tag or URI per line.
struct Writer(String);

impl Writer {
    fn new() -> Self {
        Writer(String::from("#EXTM3U\n"))
    }

    fn line(&mut self, s: &str) {
        self.0.push_str(s);
        self.0.push('\n');
    }

    fn tag(&mut self, tag: &str, value: impl std::fmt::Display) {
        let _ = writeln!(self.0, "#{tag}:{value}");
    }

    fn attributes(&mut self, tag: &str, a: Attributes) {
        self.tag(tag, a.0);
    }
}

impl MultivariantPlaylist {
    /// The playlist text.
    pub fn serialize(&self) -> String {
        let mut w = Writer::new();
        w.tag("EXT-X-VERSION", self.version);
        w.line("#EXT-X-INDEPENDENT-SEGMENTS");
        for r in &self.renditions {
            let mut a = Attributes::default()
                .enumerated("TYPE", "AUDIO")
                .quoted("GROUP-ID", &r.group_id)
                .quoted("NAME", &r.name);
            if let Some(l) = &r.language {
                a = a.quoted("LANGUAGE", l);
            }
            a = a
                .yes_no("DEFAULT", r.default)
                .yes_no("AUTOSELECT", r.autoselect);
            if let Some(c) = r.channels {
                a = a.quoted("CHANNELS", &c.to_string());
            }
            if let Some(u) = &r.uri {
                a = a.quoted("URI", u);
            }
            w.attributes("EXT-X-MEDIA", a);
        }
        for v in &self.variants {
            let mut a = Attributes::default().integer("BANDWIDTH", v.bandwidth);
            if let Some(b) = v.average_bandwidth {
                a = a.integer("AVERAGE-BANDWIDTH", b);
            }
            if !v.codecs.is_empty() {
                a = a.quoted("CODECS", &v.codecs.join(","));
            }
            if let Some(r) = v.resolution {
                a = a.resolution("RESOLUTION", r);
            }
            if let Some(f) = v.frame_rate_milli {
                a = a.milli("FRAME-RATE", f);
            }
            if let Some(g) = &v.audio_group {
                a = a.quoted("AUDIO", g);
            }
            w.attributes("EXT-X-STREAM-INF", a);
            w.line(&v.uri);
        }
        for f in &self.iframe_streams {
            let mut a = Attributes::default().integer("BANDWIDTH", f.bandwidth);
            if !f.codecs.is_empty() {
                a = a.quoted("CODECS", &f.codecs.join(","));
            }
            if let Some(r) = f.resolution {
                a = a.resolution("RESOLUTION", r);
            }
            a = a.quoted("URI", &f.uri);
            w.attributes("EXT-X-I-FRAME-STREAM-INF", a);
        }
        w.0
    }
}

impl MediaPlaylist {
    /// The playlist text.
    ///
    /// `EXT-X-PROGRAM-DATE-TIME` is written on the first segment, after
    /// every discontinuity and on the first segment of each minute of
    /// wall-clock time, not on every segment: a client carries the date
    /// forward through `EXTINF` (RFC 8216bis 4.4.4.6), and a 25 h DVR
    /// playlist stays half the size. The choice depends only on the
    /// segments' own dates, so every node writes the same tags.
    pub fn serialize(&self) -> String {
        // About 40 bytes per segment line pair, plus dates once a minute.
        let mut w = Writer(String::with_capacity(256 + self.segments.len() * 40));
        w.0.push_str("#EXTM3U\n");
        w.tag("EXT-X-VERSION", self.version);
        w.tag("EXT-X-TARGETDURATION", self.target_duration);
        w.tag("EXT-X-MEDIA-SEQUENCE", self.media_sequence);
        if let Some(d) = self.discontinuity_sequence {
            w.tag("EXT-X-DISCONTINUITY-SEQUENCE", d);
        }
        w.line("#EXT-X-INDEPENDENT-SEGMENTS");
        if let Some(m) = &self.map_uri {
            w.attributes("EXT-X-MAP", Attributes::default().quoted("URI", m));
        }
        let mut last_minute = None;
        for s in &self.segments {
            if s.discontinuity {
                w.line("#EXT-X-DISCONTINUITY");
            }
            if let Some(t) = s.program_date_time_ms {
                let minute = t.div_euclid(60_000);
                if (s.discontinuity || last_minute != Some(minute))
                    && let Some(date) = rfc3339_millis(t)
                {
                    w.tag("EXT-X-PROGRAM-DATE-TIME", date);
                }
                last_minute = Some(minute);
            }
            // `#EXTINF:2.000,` without the formatting machinery: this loop
            // runs once per segment of a DVR window (45,000 for 25 h).
            let mut digits = itoa::Buffer::new();
            w.0.push_str("#EXTINF:");
            w.0.push_str(digits.format(s.duration_ms / 1000));
            let ms = s.duration_ms % 1000;
            w.0.push(char::from(b'.'));
            for d in [ms / 100, ms / 10 % 10, ms % 10] {
                w.0.push(char::from(b'0' + d as u8));
            }
            w.0.push_str(",\n");
            w.0.push_str(digits.format(s.start));
            w.line(self.segment_suffix);
        }
        if self.end_list {
            w.line("#EXT-X-ENDLIST");
        }
        w.0
    }
}

/// Unix milliseconds as RFC 3339 UTC with milliseconds
/// (`2024-02-29T23:59:59.123Z`); `None` outside years 0000..=9999.
pub fn rfc3339_millis(unix_ms: i64) -> Option<String> {
    const MS_PER_DAY: i64 = 86_400_000;
    let days = unix_ms.div_euclid(MS_PER_DAY);
    let ms_of_day = unix_ms.rem_euclid(MS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return None;
    }
    let (secs, ms) = (ms_of_day / 1000, ms_of_day % 1000);
    Some(format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    ))
}

/// The proleptic Gregorian (year, month, day) of a day count since
/// 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(
            rfc3339_millis(0).as_deref(),
            Some("1970-01-01T00:00:00.000Z")
        );
        assert_eq!(
            rfc3339_millis(951_868_799_999).as_deref(),
            Some("2000-02-29T23:59:59.999Z")
        );
        assert_eq!(
            rfc3339_millis(1_709_251_200_123).as_deref(),
            Some("2024-03-01T00:00:00.123Z")
        );
        assert_eq!(
            rfc3339_millis(-1).as_deref(),
            Some("1969-12-31T23:59:59.999Z")
        );
        assert_eq!(
            rfc3339_millis(4_102_444_800_000).as_deref(),
            Some("2100-01-01T00:00:00.000Z")
        );
        assert_eq!(
            rfc3339_millis(253_402_300_799_999).as_deref(),
            Some("9999-12-31T23:59:59.999Z")
        );
        assert_eq!(rfc3339_millis(253_402_300_800_000), None);
        assert_eq!(rfc3339_millis(i64::MIN), None);
        assert_eq!(rfc3339_millis(i64::MAX), None);
    }

    #[test]
    fn civil_from_days_matches_a_day_by_day_walk() {
        // Walk forward from 1970-01-01 for 1200 years, checking every day.
        let (mut y, mut m, mut d) = (1970i64, 1u32, 1u32);
        for days in 0..(1200 * 366) {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn quoted_strings_cannot_break_out() {
        let a = Attributes::default()
            .quoted("NAME", "a\"b\r\nc")
            .integer("X", 1);
        assert_eq!(a.0, "NAME=\"a'b  c\",X=1");
    }

    #[test]
    fn serialises_a_media_playlist() {
        let p = MediaPlaylist {
            version: VERSION,
            target_duration: 2,
            media_sequence: 500,
            discontinuity_sequence: None,
            map_uri: Some("init.mp4".into()),
            segment_suffix: ".m4s",
            segments: vec![
                Segment {
                    duration_ms: 2000,
                    program_date_time_ms: Some(1_000),
                    discontinuity: false,
                    start: 90_000_000,
                },
                Segment {
                    duration_ms: 1_960,
                    program_date_time_ms: Some(3_000),
                    discontinuity: true,
                    start: 90_180_000,
                },
            ],
            end_list: true,
        };
        assert_eq!(
            p.serialize(),
            "#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:500
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI=\"init.mp4\"
#EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:00:01.000Z
#EXTINF:2.000,
90000000.m4s
#EXT-X-DISCONTINUITY
#EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:00:03.000Z
#EXTINF:1.960,
90180000.m4s
#EXT-X-ENDLIST
"
        );
    }

    #[test]
    fn serialises_a_multivariant_playlist() {
        let p = MultivariantPlaylist {
            iframe_streams: Vec::new(),
            version: VERSION,
            renditions: vec![AudioRendition {
                group_id: "audio".into(),
                name: "English".into(),
                language: Some("en".into()),
                default: true,
                autoselect: true,
                channels: Some(2),
                uri: Some("m3u8-cmaf/t2/index.m3u8".into()),
            }],
            variants: vec![VariantStream {
                bandwidth: 1_200_000,
                average_bandwidth: Some(1_000_000),
                codecs: vec!["avc1.64001f".into(), "mp4a.40.2".into()],
                resolution: Some((1280, 720)),
                frame_rate_milli: Some(29_970),
                audio_group: Some("audio".into()),
                uri: "m3u8-cmaf/t1/index.m3u8".into(),
            }],
        };
        assert_eq!(
            p.serialize(),
            "#EXTM3U
#EXT-X-VERSION:7
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"English\",LANGUAGE=\"en\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"m3u8-cmaf/t2/index.m3u8\"
#EXT-X-STREAM-INF:BANDWIDTH=1200000,AVERAGE-BANDWIDTH=1000000,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720,FRAME-RATE=29.970,AUDIO=\"audio\"
m3u8-cmaf/t1/index.m3u8
"
        );
    }
}
