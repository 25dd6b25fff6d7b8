//! Sluice host library.
pub mod plugins;
