//! Shared between the in-guest scenario runner and the host harness: the console protocol,
//! a loopback HTTP GET, and a real OCI registry (Debian's `docker-registry`) on loopback.
#![warn(missing_docs)]

pub mod http;
pub mod protocol;
pub mod registry;
