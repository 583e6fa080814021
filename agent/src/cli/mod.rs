//! The `rampart` command line: one module per subcommand, each with its `clap` arguments
//! and a `run`. They print and exit; everything else is the library's.

pub mod break_glass;
pub mod bundle;
pub mod console;
pub mod keygen;
pub mod keys;
pub mod lineage;
pub mod lineage_proof;
pub mod policy;
pub mod probe;
pub mod release;
pub mod remote;
pub mod run;
pub mod state;
pub mod status;
pub mod trust;
