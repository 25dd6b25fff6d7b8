//! The built-in test source (placeholder until the FLV demuxer lands).
use std::sync::Arc;
use crate::channel::Channel;
use crate::config::IngestLimits;
/// Feeds the demo channel.
pub async fn run(_channel: Arc<Channel>, _limits: IngestLimits, _shutdown: tokio::sync::watch::Receiver<bool>) {}
