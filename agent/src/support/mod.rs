//! Small helpers every layer shares: durable, size-capped files and clocks.

pub mod files;
pub mod time;
