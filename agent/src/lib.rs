//! The Rampart agent as a library: one module per concern, so the binary stays a thin CLI.

pub mod btf;
pub mod bundle;
pub mod cgroup;
pub mod config;
pub mod control;
pub mod daemon;
pub mod events;
pub mod file_id;
pub mod intake;
pub mod layout;
pub mod lineage;
pub mod loader;
pub mod policy;
pub mod preflight;
pub mod recorder;
pub mod swap;
