//! Shared between the in-guest scenario runner and the host harness: the console protocol.
#![warn(missing_docs)]

pub mod protocol;
