//! The URL layout below the manifest root, parsed strictly and built from
//! the same constants so the two cannot drift apart.
//!
//! ```text
//! Manifest                                          client manifest (host maps it to mss)
//! Manifest(format=mss)                              the same
//! QualityLevels({bitrate})/Fragments({name}={t})    a fragment (the `Url` template, relative
//!                                                   to the manifest; the host routes
//!                                                   `QualityLevels(` to mss)
//! mss/QualityLevels({bitrate})/Fragments({name}={t})  the same, prefixed form
//! ```
//!
//! `{name}` is the `StreamIndex` `Name` (`video`, `audio`, `audio_en`, …),
//! `{bitrate}` the `QualityLevel` `Bitrate` (unique within a `StreamIndex`,
//! see `manifest.rs`) and `{t}` the fragment's start in the stream's
//! `TimeScale` (the track's own ticks).

use sluice_sdk::packaging::decimal;

/// The format this packager serves.
pub const FORMAT: &str = "mss";

const MANIFEST: &str = "Manifest";
const MANIFEST_FORMAT: &str = "Manifest(format=mss)";
const PREFIX: &str = "mss/";

/// What a request path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// The client manifest.
    Manifest,
    /// One fragment of one quality level.
    Fragment {
        /// `StreamIndex` name.
        stream: String,
        /// `QualityLevel` bitrate.
        bitrate: u32,
        /// Start in track ticks.
        start: u64,
    },
}

impl Resource {
    /// Parses a path below the manifest root; `None` for anything that is
    /// not exactly one of the shapes above (numbers in canonical decimal).
    pub fn parse(path: &str) -> Option<Resource> {
        if path == MANIFEST || path == MANIFEST_FORMAT {
            return Some(Resource::Manifest);
        }
        let path = path.strip_prefix(PREFIX).unwrap_or(path);
        let rest = path.strip_prefix("QualityLevels(")?;
        let (bitrate, rest) = rest.split_once(")/Fragments(")?;
        let bitrate = u32::try_from(decimal(bitrate)?).ok()?;
        let (stream, start) = rest.strip_suffix(')')?.split_once('=')?;
        if !valid_name(stream) {
            return None;
        }
        Some(Resource::Fragment {
            stream: stream.to_owned(),
            bitrate,
            start: decimal(start)?,
        })
    }
}

/// Whether `name` may name a `StreamIndex`: 1 to 64 of `[a-z0-9_-]`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// The `Url` template of a `StreamIndex` named `name`.
pub fn url_template(name: &str) -> String {
    format!("QualityLevels({{bitrate}})/Fragments({name}={{start time}})")
}

/// A fragment's URL, the template resolved (what a client requests).
#[cfg(test)]
pub fn fragment_url(name: &str, bitrate: u32, start: u64) -> String {
    url_template(name)
        .replace("{bitrate}", &bitrate.to_string())
        .replace("{start time}", &start.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_shape() {
        assert_eq!(Resource::parse("Manifest"), Some(Resource::Manifest));
        assert_eq!(
            Resource::parse("Manifest(format=mss)"),
            Some(Resource::Manifest)
        );
        let f = Resource::Fragment {
            stream: "audio_en".into(),
            bitrate: 128_000,
            start: 96_000,
        };
        assert_eq!(
            Resource::parse("QualityLevels(128000)/Fragments(audio_en=96000)"),
            Some(f.clone())
        );
        assert_eq!(
            Resource::parse("mss/QualityLevels(128000)/Fragments(audio_en=96000)"),
            Some(f)
        );
        assert_eq!(
            Resource::parse(&fragment_url("video", u32::MAX, u64::MAX)),
            Some(Resource::Fragment {
                stream: "video".into(),
                bitrate: u32::MAX,
                start: u64::MAX
            })
        );
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "manifest",
            "Manifest/",
            "Manifest(format=m3u8-cmaf)",
            "mss/Manifest(format=mss)/x",
            "QualityLevels(1)",
            "QualityLevels(1)/Fragments(video=1",
            "QualityLevels(1)/Fragments(video=1)/",
            "QualityLevels(01)/Fragments(video=1)",
            "QualityLevels()/Fragments(video=1)",
            "QualityLevels(4294967296)/Fragments(video=1)",
            "QualityLevels(1)/Fragments(video=01)",
            "QualityLevels(1)/Fragments(video=18446744073709551616)",
            "QualityLevels(1)/Fragments(=1)",
            "QualityLevels(1)/Fragments(Video=1)",
            "QualityLevels(1)/Fragments(video=1=2)",
            "QualityLevels(1)/Fragments(vi/deo=1)",
            "QualityLevels(1)/Fragments(video)",
            "QualityLevels(+1)/Fragments(video=1)",
            "mss/mss/QualityLevels(1)/Fragments(video=1)",
            "/QualityLevels(1)/Fragments(video=1)",
        ] {
            assert_eq!(Resource::parse(bad), None, "{bad:?}");
        }
    }
}
