//! Signed policy bundles: keys, the envelope, the trust root, the payload, verification,
//! and the anti-rollback state. Nothing here touches the kernel or prints; a bundle that
//! fails any check never reaches the loader. The format is specified in
//! docs/bundle-format.md.

#![forbid(unsafe_code)]

pub mod break_glass;
pub mod envelope;
pub mod error;
pub mod keys;
pub mod payload;
pub mod scope;
pub mod state;
pub mod trust;
pub mod verify;

#[cfg(test)]
mod tests;

pub use envelope::Envelope;
pub use error::BundleError;
pub use keys::{KeyId, PublicKey, SecretKey};
pub use payload::Payload;
pub use trust::TrustRoot;
pub use verify::{verify, Context, VerifiedBundle};
