//! The lineage: every decision, policy change, agent start and stop, gap and checkpoint as
//! a hash-chained JSON Lines record, in segment files, with signed checkpoints. Nothing here
//! needs a kernel or prints. The format is specified in docs/lineage-format.md.

#![forbid(unsafe_code)]

pub mod anchor;
pub mod decision;
pub mod filter;
pub mod note;
pub mod record;
pub mod segment;
pub mod verify;
pub mod writer;

#[cfg(test)]
mod tests;
