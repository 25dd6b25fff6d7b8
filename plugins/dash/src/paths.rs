//! The URL layout below the manifest root, parsed strictly and built from
//! the same constants so the two cannot drift apart.
//!
//! ```text
//! Manifest(format=F)          the MPD                    (F = mpd-time-csf | mpd-time-cmaf)
//! F/t{track}/init.mp4         init segment               (SegmentTemplate@initialization)
//! F/t{track}/{start}.m4s      media segment, start in    (SegmentTemplate@media, $Time$)
//!                             track ticks (media time)
//! ```

use sluice_sdk::packaging::{decimal, track_path};

/// The two DASH flavours this packager serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// ISO BMFF live profile (`mpd-time-csf`).
    Csf,
    /// CMAF profile (`mpd-time-cmaf`).
    Cmaf,
}

impl Flavour {
    /// Both flavours.
    pub const ALL: [Flavour; 2] = [Flavour::Csf, Flavour::Cmaf];

    /// The format name (and first path segment).
    pub fn format(self) -> &'static str {
        match self {
            Flavour::Csf => "mpd-time-csf",
            Flavour::Cmaf => "mpd-time-cmaf",
        }
    }

    /// The flavour of a format name.
    pub fn from_format(format: &str) -> Option<Flavour> {
        Flavour::ALL.into_iter().find(|f| f.format() == format)
    }

    /// The MPD's path.
    pub fn manifest(self) -> String {
        format!("Manifest(format={})", self.format())
    }

    /// `SegmentTemplate@initialization`.
    pub fn init_template(self) -> String {
        format!("{}/t$RepresentationID$/{INIT}", self.format())
    }

    /// `SegmentTemplate@media`.
    pub fn media_template(self) -> String {
        format!(
            "{}/t$RepresentationID$/$Time${SEGMENT_SUFFIX}",
            self.format()
        )
    }
}

const INIT: &str = "init.mp4";
const SEGMENT_SUFFIX: &str = ".m4s";

/// What a request path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// The MPD.
    Manifest,
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
    /// Parses a path below the manifest root for `flavour`; `None` for
    /// anything not exactly one of the shapes above.
    pub fn parse(flavour: Flavour, path: &str) -> Option<Resource> {
        if path == flavour.manifest() {
            return Some(Resource::Manifest);
        }
        let (track, leaf) = track_path(path, flavour.format())?;
        if leaf == INIT {
            return Some(Resource::Init { track });
        }
        let start = decimal(leaf.strip_suffix(SEGMENT_SUFFIX)?)?;
        Some(Resource::Segment { track, start })
    }
}

/// The path of a segment, as a player expands the media template.
#[cfg(test)]
pub fn segment_path(flavour: Flavour, track: u32, start: u64) -> String {
    flavour
        .media_template()
        .replace("$RepresentationID$", &track.to_string())
        .replace("$Time$", &start.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_shape_and_templates_parse_back() {
        for f in Flavour::ALL {
            assert_eq!(Resource::parse(f, &f.manifest()), Some(Resource::Manifest));
            let init = f.init_template().replace("$RepresentationID$", "0");
            assert_eq!(Resource::parse(f, &init), Some(Resource::Init { track: 0 }));
            assert_eq!(
                Resource::parse(f, &segment_path(f, 4_294_967_295, u64::MAX)),
                Some(Resource::Segment {
                    track: u32::MAX,
                    start: u64::MAX
                })
            );
        }
    }

    #[test]
    fn rejects_everything_else() {
        let f = Flavour::Csf;
        for bad in [
            "",
            "Manifest(format=mpd-time-cmaf)",
            "mpd-time-cmaf/t1/init.mp4",
            "mpd-time-csf/t1",
            "mpd-time-csf/t1/",
            "mpd-time-csf/t01/init.mp4",
            "mpd-time-csf/1/init.mp4",
            "mpd-time-csf/t1/007.m4s",
            "mpd-time-csf/t1/.m4s",
            "mpd-time-csf/t1/18446744073709551616.m4s",
            "mpd-time-csf/t4294967296/init.mp4",
            "mpd-time-csf/t1/1.m4s/x",
            "/mpd-time-csf/t1/init.mp4",
            "mpd-time-csf/t1/../t2/init.mp4",
        ] {
            assert_eq!(Resource::parse(f, bad), None, "{bad:?}");
        }
    }
}
