//! The URL layout below the manifest root, parsed strictly and built from
//! the same constants so the two cannot drift apart.
//!
//! ```text
//! Manifest(format=m3u8-cmaf)          multivariant playlist
//! m3u8-cmaf/t{track}/index.m3u8       media playlist (relative to the above)
//! m3u8-cmaf/t{track}/init.mp4         init segment   (relative to the media playlist: init.mp4)
//! m3u8-cmaf/t{track}/{start}.m4s      media segment  (relative: {start}.m4s; start in track ticks)
//! ```

use sluice_sdk::packaging::{decimal, track_path};

/// The format this packager serves.
pub const FORMAT: &str = "m3u8-cmaf";

/// The multivariant playlist's path.
const MULTIVARIANT: &str = "Manifest(format=m3u8-cmaf)";
const MEDIA_PLAYLIST: &str = "index.m3u8";
const INIT: &str = "init.mp4";
pub(crate) const SEGMENT_SUFFIX: &str = ".m4s";

/// What a request path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// The multivariant playlist.
    Multivariant,
    /// A track's media playlist.
    MediaPlaylist {
        /// Track id.
        track: u32,
    },
    /// A track's initialisation segment.
    Init {
        /// Track id.
        track: u32,
    },
    /// A media segment: one fragment of a track.
    Segment {
        /// Track id.
        track: u32,
        /// The fragment's start in track ticks.
        start: u64,
    },
}

impl Resource {
    /// Parses a path below the manifest root; `None` for anything that is
    /// not exactly one of the shapes above (numbers in canonical decimal).
    pub fn parse(path: &str) -> Option<Resource> {
        if path == MULTIVARIANT {
            return Some(Resource::Multivariant);
        }
        let (track, leaf) = track_path(path, FORMAT)?;
        match leaf {
            MEDIA_PLAYLIST => Some(Resource::MediaPlaylist { track }),
            INIT => Some(Resource::Init { track }),
            _ => {
                let start = decimal(leaf.strip_suffix(SEGMENT_SUFFIX)?)?;
                Some(Resource::Segment { track, start })
            }
        }
    }
}

/// A track's media playlist, relative to the multivariant playlist.
pub fn media_playlist_uri(track: u32) -> String {
    format!("{FORMAT}/t{track}/{MEDIA_PLAYLIST}")
}

/// The init segment, relative to its media playlist.
pub fn init_uri() -> &'static str {
    INIT
}

/// A media segment, relative to its media playlist.
#[cfg(test)]
pub fn segment_uri(start: u64) -> String {
    format!("{start}{SEGMENT_SUFFIX}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_shape() {
        assert_eq!(
            Resource::parse("Manifest(format=m3u8-cmaf)"),
            Some(Resource::Multivariant)
        );
        assert_eq!(
            Resource::parse("m3u8-cmaf/t3/index.m3u8"),
            Some(Resource::MediaPlaylist { track: 3 })
        );
        assert_eq!(
            Resource::parse("m3u8-cmaf/t0/init.mp4"),
            Some(Resource::Init { track: 0 })
        );
        assert_eq!(
            Resource::parse("m3u8-cmaf/t4294967295/18446744073709551615.m4s"),
            Some(Resource::Segment {
                track: u32::MAX,
                start: u64::MAX
            })
        );
    }

    #[test]
    fn built_uris_parse_back() {
        let media = media_playlist_uri(12);
        assert_eq!(
            Resource::parse(&media),
            Some(Resource::MediaPlaylist { track: 12 })
        );
        let dir = media.trim_end_matches(MEDIA_PLAYLIST);
        assert_eq!(
            Resource::parse(&format!("{dir}{}", init_uri())),
            Some(Resource::Init { track: 12 })
        );
        assert_eq!(
            Resource::parse(&format!("{dir}{}", segment_uri(180_000))),
            Some(Resource::Segment {
                track: 12,
                start: 180_000
            })
        );
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "Manifest",
            "Manifest(format=m3u8-aapl)",
            "Manifest(format=m3u8-cmaf)/",
            "m3u8-cmaf",
            "m3u8-cmaf/t1",
            "m3u8-cmaf/t1/",
            "m3u8-cmaf/t1/index.m3u8/",
            "m3u8-cmaf//index.m3u8",
            "m3u8-cmaf/1/index.m3u8",
            "m3u8-cmaf/t/index.m3u8",
            "m3u8-cmaf/t01/index.m3u8",
            "m3u8-cmaf/t+1/index.m3u8",
            "m3u8-cmaf/t-1/index.m3u8",
            "m3u8-cmaf/t4294967296/index.m3u8",
            "m3u8-cmaf/t1/init.m4s",
            "m3u8-cmaf/t1/.m4s",
            "m3u8-cmaf/t1/007.m4s",
            "m3u8-cmaf/t1/1e3.m4s",
            "m3u8-cmaf/t1/18446744073709551616.m4s",
            "m3u8-cmaf/t1/12.mp4",
            "m3u8-cmaf/t1/12.m4s?x",
            "M3U8-CMAF/t1/index.m3u8",
            "m3u8-aapl/t1/index.m3u8",
            "/m3u8-cmaf/t1/index.m3u8",
            "m3u8-cmaf/t1/../t2/index.m3u8",
        ] {
            assert_eq!(Resource::parse(bad), None, "{bad:?}");
        }
    }
}
