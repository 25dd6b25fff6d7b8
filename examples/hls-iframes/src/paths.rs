//! The URL layout below the manifest root, parsed strictly and built from
//! the same constants so the two cannot drift apart.
//!
//! ```text
//! Manifest(format=m3u8-iframes)         multivariant playlist
//! m3u8-iframes/t{track}/iframes.m3u8    I-frame playlist (relative to the above)
//! m3u8-iframes/t{track}/init.mp4        init segment  (relative to the I-frame playlist: init.mp4)
//! m3u8-iframes/t{track}/{start}.m4s     media segment (relative: {start}.m4s; start in track ticks)
//! ```
//!
//! The shape is every built-in format's (`{format}/t{track}/{leaf}`, the
//! SDK's `track_path`), and the playlist's URI is the SDK's
//! `iframe_playlist_uri`, which the built-in HLS packager lists from its
//! own multivariant playlists when this plugin is loaded.
//! `{track}` is the presentation's track id and `{start}` the fragment's
//! decode time, both canonical decimals (no sign, no leading zero) within
//! `u32` and `u64`. Anything else parses to `None`, which the packager
//! answers with 404.

use sluice_sdk::packaging::{IFRAMES_FORMAT, decimal, iframe_playlist_uri, track_path};

/// The format this packager serves.
pub const FORMAT: &str = IFRAMES_FORMAT;

/// The multivariant playlist's path.
const MULTIVARIANT: &str = "Manifest(format=m3u8-iframes)";
/// The leaf of a track's I-frame playlist (as in the SDK's
/// `iframe_playlist_uri`).
const PLAYLIST: &str = "iframes.m3u8";
/// The leaf of a track's init segment.
const INIT: &str = "init.mp4";
/// What follows a fragment's start in a segment leaf.
const SEGMENT_SUFFIX: &str = ".m4s";

/// Longer paths name nothing: `m3u8-iframes/t` (14), a `u32` (10), `/`,
/// a `u64` (20) and `.m4s` (4) fit well within it.
const MAX_PATH_LEN: usize = 64;

/// What a request path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// The multivariant playlist.
    Multivariant,
    /// A video track's I-frame playlist.
    Playlist {
        /// Track id.
        track: u32,
    },
    /// A video track's initialisation segment.
    Init {
        /// Track id.
        track: u32,
    },
    /// A media segment: one fragment of a video track.
    Segment {
        /// Track id.
        track: u32,
        /// The fragment's start in track ticks.
        start: u64,
    },
}

impl Resource {
    /// Parses a path below the manifest root; `None` for anything that is
    /// not exactly one of the shapes above.
    pub fn parse(path: &str) -> Option<Resource> {
        if path.len() > MAX_PATH_LEN {
            return None;
        }
        if path == MULTIVARIANT {
            return Some(Resource::Multivariant);
        }
        let (track, leaf) = track_path(path, FORMAT)?;
        match leaf {
            PLAYLIST => Some(Resource::Playlist { track }),
            INIT => Some(Resource::Init { track }),
            _ => {
                let start = decimal(leaf.strip_suffix(SEGMENT_SUFFIX)?)?;
                Some(Resource::Segment { track, start })
            }
        }
    }
}

/// A track's I-frame playlist, relative to the multivariant playlist.
pub fn playlist_uri(track: u32) -> String {
    iframe_playlist_uri(track)
}

/// The init segment, relative to its I-frame playlist.
pub fn init_uri() -> &'static str {
    INIT
}

/// A media segment, relative to its I-frame playlist.
pub fn segment_uri(start: u64) -> String {
    format!("{start}{SEGMENT_SUFFIX}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_shape() {
        assert_eq!(
            Resource::parse("Manifest(format=m3u8-iframes)"),
            Some(Resource::Multivariant)
        );
        assert_eq!(
            Resource::parse("m3u8-iframes/t3/iframes.m3u8"),
            Some(Resource::Playlist { track: 3 })
        );
        assert_eq!(
            Resource::parse("m3u8-iframes/t0/init.mp4"),
            Some(Resource::Init { track: 0 })
        );
        assert_eq!(
            Resource::parse("m3u8-iframes/t4294967295/18446744073709551615.m4s"),
            Some(Resource::Segment {
                track: u32::MAX,
                start: u64::MAX
            })
        );
    }

    #[test]
    fn built_uris_parse_back() {
        let playlist = playlist_uri(12);
        assert_eq!(playlist, "m3u8-iframes/t12/iframes.m3u8");
        assert_eq!(
            Resource::parse(&playlist),
            Some(Resource::Playlist { track: 12 })
        );
        let dir = playlist.trim_end_matches(PLAYLIST);
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
        let long = format!("m3u8-iframes/t1/{}.m4s", "9".repeat(1 << 16));
        for bad in [
            "",
            "Manifest",
            "Manifest(format=m3u8-cmaf)",
            "Manifest(format=m3u8-iframes)/",
            "Manifest(format=m3u8-iframes",
            "m3u8-iframes",
            "m3u8-iframes/t1",
            "m3u8-iframes/t1/",
            "m3u8-iframes/t1/iframes.m3u8/",
            "m3u8-iframes//iframes.m3u8",
            "m3u8-iframes/1/iframes.m3u8",
            "m3u8-iframes/t01/iframes.m3u8",
            "m3u8-iframes/t+1/iframes.m3u8",
            "m3u8-iframes/t-1/iframes.m3u8",
            "m3u8-iframes/ 1/iframes.m3u8",
            "m3u8-iframes/t4294967296/iframes.m3u8",
            "m3u8-iframes/t1/index.m3u8",
            "m3u8-iframes/t1/IFRAMES.M3U8",
            "m3u8-iframes/t1/init.m4s",
            "m3u8-iframes/t1/.m4s",
            "m3u8-iframes/t1/007.m4s",
            "m3u8-iframes/t1/1e3.m4s",
            "m3u8-iframes/t1/-5.m4s",
            "m3u8-iframes/t1/18446744073709551616.m4s",
            "m3u8-iframes/t1/12.mp4",
            "m3u8-iframes/t1/12.m4s?x",
            "m3u8-iframes/t1/12.m4s.m4s",
            "m3u8-iframes/t1/١٢.m4s",
            "M3U8-IFRAMES/1/iframes.m3u8",
            "m3u8-cmaf/1/iframes.m3u8",
            "/m3u8-iframes/t1/iframes.m3u8",
            "m3u8-iframes/t1/../2/iframes.m3u8",
            "m3u8-iframes/../1/iframes.m3u8",
            "m3u8-iframes/t1/%2e%2e",
            "m3u8-iframes/t1/iframes.m3u8\0",
            &long,
        ] {
            assert_eq!(Resource::parse(bad), None, "{bad:?}");
        }
    }
}
