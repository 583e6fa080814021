//! Small helpers every layer shares: durable, size-capped files and clocks.

#![warn(missing_docs)]

pub mod files;
pub mod time;
