//! Signed bundles over the network: an OCI registry (`oci://HOST/REPO:TAG`) or an HTTPS
//! URL. Both are untrusted transport: what arrives is verified, scope-checked and held to
//! the anti-rollback rule exactly like a file in the bundle directory, by the daemon's
//! intake, never here.
//!
//! - [`locator`]: parsing a source, and when plain HTTP may be used;
//! - [`credentials`]: basic or bearer credentials from a file;
//! - [`artifact`]: the bundle as an OCI artifact (media types, annotations);
//! - [`oci`]: push, resolve and pull with `oci-client`;
//! - [`fetch`]: one poll of a source (a tag's digest, a URL's ETag);
//! - [`poll`]: the daemon's poller and its once-per-outage reporting;
//! - [`roots`]: the TLS roots, given to every client explicitly.

pub mod artifact;
pub mod credentials;
pub mod fetch;
pub mod locator;
pub mod oci;
pub mod poll;
pub mod roots;

/// Makes ring the process's TLS provider (reqwest is built without one, so the static musl
/// build needs no C toolchain beyond ring's). Installing twice is harmless.
pub fn install_tls_provider() {
    // ring lacks the post-quantum hybrid key exchange (hence the deprecation); registries
    // and bundle hosts do not need it, and aws-lc-rs would need cmake for musl.
    #[allow(deprecated)]
    let _ = rustls::crypto::ring::default_provider().install_default();
}
