//! The live server manifest box ([MS-SSTR] 2.2.2, Smooth ingest): a
//! `uuid` box (A5D40B30-E814-11DD-BA2F-0800200C9A66) at the start of the
//! stream holding a SMIL 2.0 document that lists the stream's tracks.
//!
//! ```text
//!   <smil><body><switch>
//!     <video systemBitrate="2500000">
//!       <param name="trackID" value="1" valuetype="data"/>
//!       <param name="trackName" value="video" valuetype="data"/> ...
//!     </video>
//!     <audio systemBitrate="128000" systemLanguage="eng"> ... </audio>
//!   </switch></body></smil>
//! ```
//!
//! The manifest is optional and informative: what the adapter takes from
//! it (bitrate, language, track name per track id) only fills in what the
//! `moov` leaves unknown. The reader is a small, forgiving scanner over
//! tags and attributes, not a validating XML parser: anything it does not
//! recognise is skipped, and it never fails.

use sluice_sdk::bmff::BoxRef;

/// Most track entries kept from one manifest.
const MAX_TRACKS: usize = 256;

/// What a manifest track element is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// `<video>`.
    Video,
    /// `<audio>`.
    Audio,
    /// `<textstream>`.
    Text,
}

/// One track element of the manifest, with the attributes and `<param>`s
/// the adapter uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestTrack {
    /// Element kind.
    pub kind: ManifestKind,
    /// `trackID` param (or attribute): the `tkhd` track id it describes.
    pub track_id: Option<u32>,
    /// `systemBitrate` attribute (or param), bit/s.
    pub bitrate: Option<u32>,
    /// `systemLanguage` attribute (or param).
    pub language: Option<String>,
    /// `trackName` param (or attribute).
    pub name: Option<String>,
}

/// The tracks a live server manifest lists.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LiveManifest {
    /// Track elements in document order.
    pub tracks: Vec<ManifestTrack>,
}

impl LiveManifest {
    /// Reads the body of a live server manifest box (a full box header,
    /// then the XML). Bytes that are not UTF-8 are replaced.
    pub fn from_box(b: &BoxRef<'_>) -> Self {
        let xml = b.body.get(4..).unwrap_or_default();
        Self::parse(&String::from_utf8_lossy(xml))
    }

    /// Reads the track elements of a SMIL document.
    pub fn parse(xml: &str) -> Self {
        let mut tracks: Vec<ManifestTrack> = Vec::new();
        // The open track element, if any.
        let mut current: Option<ManifestTrack> = None;
        for tag in Tags::new(xml) {
            match tag {
                Tag::Open {
                    name,
                    attrs,
                    self_closing,
                } => {
                    let kind = match local_name(name) {
                        "video" => Some(ManifestKind::Video),
                        "audio" => Some(ManifestKind::Audio),
                        "textstream" => Some(ManifestKind::Text),
                        _ => None,
                    };
                    if let Some(kind) = kind {
                        if let Some(done) = current.take() {
                            tracks.push(done);
                        }
                        let mut t = ManifestTrack {
                            kind,
                            track_id: None,
                            bitrate: None,
                            language: None,
                            name: None,
                        };
                        for (k, v) in &attrs {
                            t.set(k, v);
                        }
                        if self_closing {
                            tracks.push(t);
                        } else {
                            current = Some(t);
                        }
                    } else if local_name(name) == "param"
                        && let Some(t) = current.as_mut()
                    {
                        let get = |key: &str| attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v);
                        if let (Some(k), Some(v)) = (get("name"), get("value")) {
                            t.set(k, v);
                        }
                    }
                }
                Tag::Close { name } => {
                    if matches!(local_name(name), "video" | "audio" | "textstream")
                        && let Some(done) = current.take()
                    {
                        tracks.push(done);
                    }
                }
            }
            if tracks.len() >= MAX_TRACKS {
                break;
            }
        }
        if let Some(done) = current
            && tracks.len() < MAX_TRACKS
        {
            tracks.push(done);
        }
        LiveManifest { tracks }
    }

    /// The entry describing track `id`.
    pub fn track(&self, id: u32) -> Option<&ManifestTrack> {
        self.tracks.iter().find(|t| t.track_id == Some(id))
    }
}

impl ManifestTrack {
    fn set(&mut self, key: &str, value: &str) {
        let value = value.trim();
        match key {
            "trackID" => self.track_id = value.parse().ok().or(self.track_id),
            "systemBitrate" => self.bitrate = value.parse().ok().or(self.bitrate),
            "systemLanguage" if !value.is_empty() => self.language = Some(value.to_owned()),
            "trackName" if !value.is_empty() => self.name = Some(value.to_owned()),
            _ => {}
        }
    }
}

/// The name without a namespace prefix (`smil:video` → `video`).
fn local_name(name: &str) -> &str {
    name.rsplit(':').next().unwrap_or(name)
}

/// A start, empty-element or end tag.
#[derive(Debug, PartialEq, Eq)]
enum Tag<'a> {
    Open {
        name: &'a str,
        attrs: Vec<(String, String)>,
        self_closing: bool,
    },
    Close {
        name: &'a str,
    },
}

/// Iterates the tags of a document, skipping text, comments, processing
/// instructions, declarations and CDATA.
struct Tags<'a> {
    rest: &'a str,
}

impl<'a> Tags<'a> {
    fn new(xml: &'a str) -> Self {
        Tags { rest: xml }
    }

    /// Drops everything up to and including `end`, or everything.
    fn skip_past(&mut self, end: &str) {
        self.rest = match self.rest.find(end) {
            Some(i) => &self.rest[i + end.len()..],
            None => "",
        };
    }
}

impl<'a> Iterator for Tags<'a> {
    type Item = Tag<'a>;

    fn next(&mut self) -> Option<Tag<'a>> {
        loop {
            let lt = self.rest.find('<')?;
            self.rest = &self.rest[lt..];
            if self.rest.starts_with("<!--") {
                self.skip_past("-->");
                continue;
            }
            if self.rest.starts_with("<![CDATA[") {
                self.skip_past("]]>");
                continue;
            }
            if self.rest.starts_with("<?") {
                self.skip_past("?>");
                continue;
            }
            if self.rest.starts_with("<!") {
                self.skip_past(">");
                continue;
            }
            // The tag runs to the first `>` outside quotes.
            let body = &self.rest[1..];
            let mut quote = None;
            let mut end = None;
            for (i, c) in body.char_indices() {
                match (quote, c) {
                    (None, '"' | '\'') => quote = Some(c),
                    (Some(q), c) if c == q => quote = None,
                    (None, '>') => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let Some(end) = end else {
                self.rest = "";
                return None;
            };
            let inner = &body[..end];
            self.rest = &body[end + 1..];
            if let Some(name) = inner.strip_prefix('/') {
                return Some(Tag::Close { name: name.trim() });
            }
            let (inner, self_closing) = match inner.strip_suffix('/') {
                Some(i) => (i, true),
                None => (inner, false),
            };
            let name_end = inner
                .find(|c: char| c.is_whitespace())
                .unwrap_or(inner.len());
            let name = &inner[..name_end];
            if name.is_empty() {
                continue;
            }
            return Some(Tag::Open {
                name,
                attrs: attributes(&inner[name_end..]),
                self_closing,
            });
        }
    }
}

/// Parses `name="value"` pairs (single or double quotes); stops at the
/// first thing that is not one.
fn attributes(mut s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    loop {
        s = s.trim_start();
        let Some(eq) = s.find('=') else {
            return out;
        };
        let name = s[..eq].trim();
        let after = s[eq + 1..].trim_start();
        let Some(q) = after.chars().next().filter(|c| *c == '"' || *c == '\'') else {
            return out;
        };
        let value_and_rest = &after[1..];
        let Some(close) = value_and_rest.find(q) else {
            return out;
        };
        if name.is_empty() || name.contains(char::is_whitespace) {
            return out;
        }
        out.push((name.to_owned(), unescape(&value_and_rest[..close])));
        s = &value_and_rest[close + 1..];
    }
}

/// Replaces the predefined entities and numeric character references.
fn unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let Some(semi) = rest.find(';').filter(|&i| i <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..semi];
        let c = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What ffmpeg 5.1 (`-f ismv -movflags isml`) writes.
    const FFMPEG: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<smil xmlns="http://www.w3.org/2001/SMIL20/Language">
<head>
<meta name="creator" content="Lavf59.27.100" />
</head>
<body>
<switch>
<video systemBitrate="0">
<param name="systemBitrate" value="0" valuetype="data"/>
<param name="trackID" value="1" valuetype="data"/>
<param name="systemLanguage" value="und" valuetype="data"/>
<param name="trackName" value="video" valuetype="data"/>
<param name="FourCC" value="H264" valuetype="data"/>
</video>
<audio systemBitrate="69000">
<param name="systemBitrate" value="69000" valuetype="data"/>
<param name="trackID" value="2" valuetype="data"/>
<param name="systemLanguage" value="und" valuetype="data"/>
<param name="trackName" value="audio" valuetype="data"/>
<param name="FourCC" value="AACL" valuetype="data"/>
</audio>
</switch>
</body>
</smil>
"#;

    #[test]
    fn reads_what_ffmpeg_writes() {
        let m = LiveManifest::parse(FFMPEG);
        assert_eq!(
            m.tracks,
            vec![
                ManifestTrack {
                    kind: ManifestKind::Video,
                    track_id: Some(1),
                    bitrate: Some(0),
                    language: Some("und".into()),
                    name: Some("video".into()),
                },
                ManifestTrack {
                    kind: ManifestKind::Audio,
                    track_id: Some(2),
                    bitrate: Some(69_000),
                    language: Some("und".into()),
                    name: Some("audio".into()),
                },
            ]
        );
        assert_eq!(m.track(2).and_then(|t| t.bitrate), Some(69_000));
        assert!(m.track(3).is_none());
    }

    #[test]
    fn attributes_entities_comments_and_prefixes() {
        let xml = r#"<!-- <video trackID="9"/> --><smil:audio systemBitrate='128000'
            systemLanguage="fr" trackName="a &amp; b &#x41;&#66; &bogus;"/>
            <video><![CDATA[<audio/>]]><param name="trackID" value=" 7 "/></video>"#;
        let m = LiveManifest::parse(xml);
        assert_eq!(m.tracks.len(), 2, "{m:?}");
        assert_eq!(m.tracks[0].bitrate, Some(128_000));
        assert_eq!(m.tracks[0].language.as_deref(), Some("fr"));
        assert_eq!(m.tracks[0].name.as_deref(), Some("a & b AB &bogus;"));
        assert_eq!(m.tracks[1].track_id, Some(7));
    }

    #[test]
    fn garbage_and_truncation_never_panic() {
        for n in 0..FFMPEG.len() {
            if FFMPEG.is_char_boundary(n) {
                let _ = LiveManifest::parse(&FFMPEG[..n]);
            }
        }
        for s in [
            "<",
            "<<<>>>",
            "<video",
            "<video a=\"",
            "<video a=>",
            "&#xffffffff;",
            "<>",
            "</>",
            "<video/><audio><audio>",
            "<param name='trackID' value='1'/>",
            "é<vidéo é='é'>",
        ] {
            let _ = LiveManifest::parse(s);
            let _ = unescape(s);
        }
        let many = "<video/>".repeat(1000);
        assert_eq!(LiveManifest::parse(&many).tracks.len(), MAX_TRACKS);
    }
}
