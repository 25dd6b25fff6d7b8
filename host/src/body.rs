//! The response body every listener sends: shared byte chunks, so that
//! payload slices are spliced into responses, never copied.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};

/// A response body made of shared byte chunks (payload slices are spliced,
/// not copied).
#[derive(Debug, Default)]
pub struct Body {
    parts: VecDeque<Bytes>,
}

impl Body {
    /// A body from parts.
    pub fn from_parts(parts: impl IntoIterator<Item = Bytes>) -> Self {
        Body {
            parts: parts.into_iter().filter(|p| !p.is_empty()).collect(),
        }
    }

    /// An empty body.
    pub fn empty() -> Self {
        Body::default()
    }

    /// A body of one chunk.
    pub fn text(s: impl Into<String>) -> Self {
        Body::from_parts([Bytes::from(s.into())])
    }

    /// The chunks, in order: the shared `Bytes`, not copies.
    pub(crate) fn into_chunks(self) -> impl Iterator<Item = Bytes> {
        self.parts.into_iter()
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.parts.pop_front().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.parts.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.parts.iter().map(|p| p.len() as u64).sum())
    }
}
