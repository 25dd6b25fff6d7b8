//! The URL layout below the manifest root, parsed strictly and built from
//! the same constants so the two cannot drift apart.
//!
//! ```text
//! Manifest(format=f4m-f4f)            F4M manifest
//! f4m-f4f/t{track}/bootstrap.abst     bootstrap (abst box) of one media
//! f4m-f4f/t{track}/Seg1-Frag{N}       F4F fragment N (N = round(start_ms / grid) + 1;
//!                                     any segment number S > 0 in Seg{S}-Frag{N} is accepted)
//! ```
//!
//! A media's `url` attribute is `f4m-f4f/t{track}/`; clients append
//! `Seg1-Frag{N}` to it.

use sluice_sdk::packaging::{decimal, track_path};

/// The format this packager serves.
pub const FORMAT: &str = "f4m-f4f";

/// The manifest's path.
pub const MANIFEST: &str = "Manifest(format=f4m-f4f)";
const BOOTSTRAP: &str = "bootstrap.abst";
const SEGMENT_PREFIX: &str = "Seg";
const FRAGMENT_INFIX: &str = "-Frag";

/// What a request path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// The F4M manifest.
    Manifest,
    /// The bootstrap of the media whose primary track is `track`.
    Bootstrap {
        /// Track id.
        track: u32,
    },
    /// Fragment `number` of the media whose primary track is `track`.
    Fragment {
        /// Track id.
        track: u32,
        /// HDS fragment number (1-based, from media time).
        number: u32,
    },
}

impl Resource {
    /// Parses a path below the manifest root; `None` for anything that is
    /// not exactly one of the shapes above (numbers in canonical decimal).
    pub fn parse(path: &str) -> Option<Resource> {
        if path == MANIFEST {
            return Some(Resource::Manifest);
        }
        let (track, leaf) = track_path(path, FORMAT)?;
        if leaf == BOOTSTRAP {
            return Some(Resource::Bootstrap { track });
        }
        // `Seg{S}-Frag{N}`: the fragment number alone names the fragment.
        // Manifests only ever lead to segment 1, but a client that works
        // out the segment from the asrt as OSMF does (segment = first +
        // (N - 1) / FragmentsPerSegment) may land on another segment
        // number once a live window has slid; it gets the same fragment.
        let (segment, number) = leaf
            .strip_prefix(SEGMENT_PREFIX)?
            .split_once(FRAGMENT_INFIX)?;
        let segment = u32::try_from(decimal(segment)?).ok()?;
        let number = u32::try_from(decimal(number)?).ok()?;
        (segment > 0 && number > 0).then_some(Resource::Fragment { track, number })
    }
}

/// A media's base URL (relative to the manifest); fragment names follow it.
pub fn media_url(track: u32) -> String {
    format!("{FORMAT}/t{track}/")
}

/// A media's bootstrap URL (relative to the manifest).
pub fn bootstrap_url(track: u32) -> String {
    format!("{FORMAT}/t{track}/{BOOTSTRAP}")
}

/// A fragment's name, relative to its media URL.
#[cfg(test)]
pub fn fragment_name(number: u32) -> String {
    format!("{SEGMENT_PREFIX}1{FRAGMENT_INFIX}{number}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_shape() {
        assert_eq!(Resource::parse(MANIFEST), Some(Resource::Manifest));
        assert_eq!(
            Resource::parse("f4m-f4f/t0/bootstrap.abst"),
            Some(Resource::Bootstrap { track: 0 })
        );
        assert_eq!(
            Resource::parse("f4m-f4f/t4294967295/Seg1-Frag4294967295"),
            Some(Resource::Fragment {
                track: u32::MAX,
                number: u32::MAX
            })
        );
    }

    #[test]
    fn any_segment_number_names_the_same_fragment() {
        assert_eq!(
            Resource::parse("f4m-f4f/t1/Seg3-Frag12"),
            Some(Resource::Fragment {
                track: 1,
                number: 12
            })
        );
    }

    #[test]
    fn built_uris_parse_back() {
        assert_eq!(
            Resource::parse(&bootstrap_url(7)),
            Some(Resource::Bootstrap { track: 7 })
        );
        assert_eq!(
            Resource::parse(&format!("{}{}", media_url(7), fragment_name(12))),
            Some(Resource::Fragment {
                track: 7,
                number: 12
            })
        );
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "Manifest",
            "Manifest(format=m3u8-cmaf)",
            "f4m-f4f",
            "f4m-f4f/t1",
            "f4m-f4f/t1/",
            "f4m-f4f/t1/Seg1-Frag0",
            "f4m-f4f/t1/Seg1-Frag01",
            "f4m-f4f/t1/Seg0-Frag1",
            "f4m-f4f/t1/Seg01-Frag1",
            "f4m-f4f/t1/Seg-Frag1",
            "f4m-f4f/t1/Seg1Frag1",
            "f4m-f4f/t1/Seg1-Frag1-Frag2",
            "f4m-f4f/t1/Seg1-Frag",
            "f4m-f4f/t1/Seg1-Frag4294967296",
            "f4m-f4f/t1/Seg1-Frag1/",
            "f4m-f4f/t01/Seg1-Frag1",
            "f4m-f4f/1/Seg1-Frag1",
            "f4m-f4f/t1/bootstrap",
            "F4M-F4F/t1/Seg1-Frag1",
            "/f4m-f4f/t1/Seg1-Frag1",
            "f4m-f4f/t1/../t2/Seg1-Frag1",
        ] {
            assert_eq!(Resource::parse(bad), None, "{bad:?}");
        }
    }
}
