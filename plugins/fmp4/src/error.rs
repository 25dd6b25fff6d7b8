//! The adapter's errors and how they reach the host ([`SessionError`]).

use sluice_sdk::bmff::{self, FourCC};
use sluice_sdk::plugin::SessionError;

/// Why a stream cannot be read on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A box declares a size over the session's `max_message_size`;
    /// refused from its header, before anything is buffered for it.
    #[error("box {fourcc} declares {size} bytes, over the limit of {limit}")]
    BoxTooLarge {
        /// The box type.
        fourcc: FourCC,
        /// The declared size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A top-level box declares size 0 ("to the end of the stream"), which
    /// a live stream cannot bound.
    #[error("top-level box {0} declares size 0 (to the end of the stream)")]
    UnboundedBox(FourCC),
    /// A box does not parse.
    #[error("box {fourcc}: {source}")]
    Box {
        /// The top-level box it belongs to.
        fourcc: FourCC,
        /// What is wrong with it.
        source: bmff::Error,
    },
    /// A box is valid on its own but out of place (`moof` before `moov`,
    /// `moof` whose data no `mdat` holds).
    #[error("{0}")]
    Sequence(String),
    /// Sample data lies outside the `mdat` that follows its `moof`.
    #[error(
        "track {track}: sample data at stream offset {offset} (+{size}) lies outside the mdat \
         at {mdat_start}..{mdat_end}"
    )]
    DataOutOfBounds {
        /// The track.
        track: u32,
        /// Stream offset of the sample's first byte.
        offset: u64,
        /// Sample size.
        size: u32,
        /// Stream offset of the mdat's first payload byte.
        mdat_start: u64,
        /// Stream offset just past the mdat.
        mdat_end: u64,
    },
    /// A time, offset or count does not fit its type.
    #[error("overflow: {0}")]
    Overflow(String),
    /// A codec configuration or sample does not parse.
    #[error("track {track}: {message}")]
    Codec {
        /// The track.
        track: u32,
        /// What is wrong.
        message: String,
    },
    /// More tracks, or more samples in one fragment, than allowed.
    #[error("{0}")]
    Limit(String),
}

/// Result of the adapter's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an ISO BMFF error found in the top-level box `fourcc`.
    pub fn bmff(fourcc: FourCC, source: bmff::Error) -> Self {
        Error::Box { fourcc, source }
    }
}

impl From<Error> for SessionError {
    fn from(e: Error) -> Self {
        let text = e.to_string();
        match e {
            Error::BoxTooLarge { .. } | Error::Limit(_) => SessionError::Limit(text),
            Error::UnboundedBox(_) => SessionError::Unsupported(text),
            Error::Box {
                source: bmff::Error::Unsupported(_),
                ..
            } => SessionError::Unsupported(text),
            Error::Box { .. }
            | Error::Sequence(_)
            | Error::DataOutOfBounds { .. }
            | Error::Overflow(_)
            | Error::Codec { .. } => SessionError::Malformed(text),
        }
    }
}
