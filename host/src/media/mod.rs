//! The media path inside the host: cutting tracks into fragments and the
//! live timeline they join.

pub mod segmenter;
pub mod timeline;
