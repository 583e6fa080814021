//! Policy: sources (YAML), compilation to kernel map contents, and explanation of the
//! kernel's decisions. Nothing here prints or touches the kernel.

#![forbid(unsafe_code)]

pub mod compile;
pub mod explain;
pub mod host;
pub mod request;
pub mod resolutions;
pub mod source;

#[cfg(test)]
mod tests;

pub use compile::{compile, CompiledPolicy, Literal, Resolver};
pub use source::{PolicyDocument, PolicySource};
