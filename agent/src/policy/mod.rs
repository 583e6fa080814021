//! Policy: sources (YAML), compilation to kernel map contents, and explanation of the
//! kernel's decisions.

pub mod cli;
pub mod compile;
pub mod explain;
pub mod host;
pub mod source;

#[cfg(test)]
mod tests;

pub use compile::{compile, CompiledPolicy, Literal, Resolver};
pub use source::{PolicyDocument, PolicySource};
