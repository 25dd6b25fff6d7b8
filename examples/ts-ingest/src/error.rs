//! The adapter's errors and how they reach the host ([`SessionError`]).
//!
//! Damage a real link or capture produces (a lost sync byte, a continuity
//! gap, a packet flagged as errored, a table with a bad CRC, a PES cut
//! short) is not an error: what it touches is dropped, counted in
//! [`Stats`](crate::Stats) and logged, and the stream goes on. What ends a
//! session is input that cannot be a usable stream (no sync for too long,
//! no program, tables or codec data that do not parse), a limit, or a
//! feature this adapter does not take.

use std::fmt;

use sluice_sdk::plugin::SessionError;

/// Why a stream cannot be read on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// No run of sync bytes 188 bytes apart within the resynchronisation
    /// bound.
    LostSync {
        /// Stream offset where the search started.
        offset: u64,
    },
    /// Packets go on without a PAT and PMT to say what they carry.
    NoProgram {
        /// Packets read.
        packets: u64,
        /// PSI sections dropped for a bad CRC meanwhile.
        crc_errors: u64,
    },
    /// A PSI table passed its CRC but does not parse.
    Table {
        /// The PID it came on.
        pid: u16,
        /// What is wrong with it.
        message: String,
    },
    /// Codec data (SPS, PPS, ADTS header) does not parse.
    Codec {
        /// The elementary stream's PID.
        pid: u16,
        /// What is wrong.
        message: String,
    },
    /// Valid, but not something this adapter takes.
    Unsupported {
        /// The PID concerned (0 when none).
        pid: u16,
        /// What is not supported.
        message: String,
    },
    /// PES data buffered across all PIDs would exceed the session's
    /// `max_message_size`; refused before anything more is buffered.
    PesTooLarge {
        /// The PID whose packet would cross the limit.
        pid: u16,
        /// Bytes that would be buffered.
        size: u64,
        /// The limit.
        limit: u32,
    },
    /// More tracks than the session's `max_tracks`.
    TooManyTracks {
        /// Tracks asked for.
        wanted: usize,
        /// The limit.
        limit: u32,
    },
    /// A time does not fit its type.
    Overflow {
        /// The PID.
        pid: u16,
        /// Which value.
        what: &'static str,
    },
}

/// Result of the adapter's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::LostSync { offset } => write!(
                f,
                "no MPEG-TS sync (0x47 every 188 bytes) within {} bytes from stream offset \
                 {offset}; not a 188-byte transport stream",
                crate::packet::MAX_RESYNC_BYTES
            ),
            Error::NoProgram {
                packets,
                crc_errors,
            } => write!(
                f,
                "no valid PAT and PMT in the first {packets} packets ({crc_errors} PSI sections \
                 had a bad CRC)"
            ),
            Error::Table { pid, message } => write!(f, "PID {pid:#06x}: {message}"),
            Error::Codec { pid, message } => write!(f, "PID {pid:#06x}: {message}"),
            Error::Unsupported { pid, message } => write!(f, "PID {pid:#06x}: {message}"),
            Error::PesTooLarge { pid, size, limit } => write!(
                f,
                "PID {pid:#06x}: PES data would reach {size} bytes buffered, over the limit of \
                 {limit}"
            ),
            Error::TooManyTracks { wanted, limit } => {
                write!(f, "{wanted} tracks wanted, over the limit of {limit}")
            }
            Error::Overflow { pid, what } => write!(f, "PID {pid:#06x}: {what} overflows"),
        }
    }
}

impl std::error::Error for Error {}

impl From<Error> for SessionError {
    fn from(e: Error) -> Self {
        let text = e.to_string();
        match e {
            Error::PesTooLarge { .. } | Error::TooManyTracks { .. } => SessionError::Limit(text),
            Error::Unsupported { .. } => SessionError::Unsupported(text),
            Error::LostSync { .. }
            | Error::NoProgram { .. }
            | Error::Table { .. }
            | Error::Codec { .. }
            | Error::Overflow { .. } => SessionError::Malformed(text),
        }
    }
}
