//! Where a node's delivery finds its presentations: its own channels and
//! archive (an ingest node), or its upstreams (an edge).

use std::sync::Arc;

use crate::archive::Archive;
use crate::channel::Channels;
use crate::edge::Edge;

/// Where presentations come from.
pub enum Origin {
    /// This node's channels and archive.
    Ingest {
        /// Channels (previews).
        channels: Arc<Channels>,
        /// Assets and locators.
        archive: Arc<Archive>,
    },
    /// Upstreams, through the edge's caches.
    Edge(Arc<Edge>),
}
