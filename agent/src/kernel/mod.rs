//! Everything that touches the running kernel: its BTF and struct layout, the enforcer (the
//! loaded programs, their maps and pins) and its integrity watch, cgroups, file
//! identities, preflight checks, the decoding of ring-buffer events, and [`sys`], the only
//! module that calls libc.

#![warn(missing_docs)]

pub mod btf;
pub mod cgroup;
pub mod cgroup_pattern;
pub mod enforcer;
pub mod event_access;
pub mod events;
pub mod file_id;
pub mod integrity;
pub mod layout;
pub mod pinned_state;
pub mod pins;
pub mod preflight;
pub mod sys;
