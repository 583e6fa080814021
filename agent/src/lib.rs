//! The Rampart agent as a library, in layers (see docs/ARCHITECTURE.md):
//!
//! - [`policy`], [`bundle`], [`lineage`]: pure libraries (no kernel, no printing, no
//!   unsafe): policy sources and their compilation, signed bundles, the hash-chained record.
//! - [`kernel`]: BTF, the enforcer and its pins, cgroups, events; [`kernel::sys`] holds all
//!   libc FFI.
//! - [`k8s`]: the kubelet's pod cgroup layouts (pure).
//! - [`remote`]: bundles from an OCI registry or an HTTPS URL (untrusted transport).
//! - [`replay`]: recomputing a lineage's decisions from its archived bundles (pure).
//! - [`daemon`]: `rampart run` (configuration, intake, swap, recorder, control socket).
//! - [`support`]: durable files and clocks shared by all of them.
//!
//! The command line itself lives in the binary (`src/main.rs`, `src/cli/`).

pub mod bundle;
pub mod console;
pub mod daemon;
pub mod k8s;
pub mod kernel;
pub mod lineage;
pub mod policy;
pub mod remote;
pub mod replay;
pub mod support;
