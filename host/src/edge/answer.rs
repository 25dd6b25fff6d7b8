//! What a request to an upstream gives, whichever transport carried it.

use bytes::Bytes;
use http::StatusCode;

/// Why a request to an upstream failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// Connection, TLS or protocol failure, or a timeout.
    #[error("{0}")]
    Transport(String),
    /// The answer is larger than the request allows.
    #[error("answer larger than {0} bytes")]
    TooLarge(usize),
}

/// An upstream's answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status code.
    pub status: StatusCode,
    /// Body (bounded).
    pub body: Bytes,
}
