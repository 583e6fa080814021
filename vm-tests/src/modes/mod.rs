//! What the guest does once booted, chosen by `rampart.mode=` on the kernel command line:
//! the scenario suite (default), the demo, or the benchmarks.

pub mod bench;
pub mod demo;
pub mod suite;
