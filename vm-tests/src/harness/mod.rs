//! What every scenario and mode stands on: the guest environment, agents, actions inside
//! cgroups and their outcomes, and the CLI. Nothing here knows a scenario.

pub mod agent;
pub mod cli;
pub mod daemon;
pub mod env;
pub mod fds;
pub mod observe;
pub mod ship;
pub mod unix;
