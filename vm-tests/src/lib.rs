//! Shared between the in-guest scenario runner and the host harness: the console protocol.
pub mod protocol;
