//! The lineage: every decision, policy change, agent start and stop, gap and checkpoint as
//! a hash-chained JSON Lines record, in segment files, the leaves of a Merkle tree whose
//! roots are signed as checkpoints. Nothing here
//! needs a kernel or prints. The format is specified in docs/lineage-format.md.

#![forbid(unsafe_code)]

pub mod anchor;
pub mod decision;
pub mod filter;
pub mod note;
pub mod proof;
pub mod record;
pub mod segment;
pub mod tree;
pub mod verify;
pub mod writer;

#[cfg(test)]
mod proof_tests;
#[cfg(test)]
mod tests;
