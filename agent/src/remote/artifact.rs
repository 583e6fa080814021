//! A bundle as an OCI artifact (image-spec 1.1 "artifact" guidance): one layer holding the
//! bundle file byte for byte, an empty config, the artifact type, and annotations that let
//! a registry's UI and `rampart policy pull` show what it is before anything verifies it.
//!
//! Invariant: annotations are informative only. They are read from the bundle's own
//! (unverified) payload when pushing and are never trusted when pulling: the host verifies
//! the layer's bytes as it would a file in its bundle directory.

use std::collections::BTreeMap;

use anyhow::{bail, Result};

use crate::bundle::{
    envelope::Envelope,
    payload::{bundle_digest, Payload, BUNDLE_TYPE},
    verify::MAX_BUNDLE_BYTES,
};

/// The manifest's `artifactType`.
pub const ARTIFACT_TYPE: &str = "application/vnd.rampart.policy-bundle.v1";
/// The one layer's media type: the bundle file (a DSSE-style JSON envelope).
pub const LAYER_TYPE: &str = "application/vnd.rampart.policy-bundle.v1+json";
/// The config: image-spec's empty descriptor (`{}`).
pub const EMPTY_CONFIG_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// Its content.
pub const EMPTY_CONFIG: &[u8] = b"{}";

/// Annotation keys.
pub const VERSION: &str = "dev.rampart.bundle.version";
/// The bundle's scope.
pub const SCOPE: &str = "dev.rampart.bundle.scope";
/// Expiry, RFC 3339.
pub const EXPIRES: &str = "dev.rampart.bundle.expires";
/// The bundle digest (BLAKE3 over the payload, as `rampart status` shows it).
pub const DIGEST: &str = "dev.rampart.bundle.digest";
/// Image-spec's creation time (the bundle's issue time).
pub const CREATED: &str = "org.opencontainers.image.created";
/// The layer's file name (`oras pull` writes it under this name).
pub const TITLE: &str = "org.opencontainers.image.title";

/// What pushing a bundle publishes beside its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    /// The manifest's annotations.
    pub manifest: BTreeMap<String, String>,
    /// The layer's annotations.
    pub layer: BTreeMap<String, String>,
}

/// Reads a bundle file's payload (without verifying it: the publisher may not hold the
/// hosts' trust root) and describes it; a file that is not a bundle is refused.
pub fn describe(bytes: &[u8], file_name: &str) -> Result<Described> {
    if bytes.len() as u64 > MAX_BUNDLE_BYTES {
        bail!(
            "the bundle is {} bytes; hosts refuse bundles over {MAX_BUNDLE_BYTES}",
            bytes.len()
        );
    }
    let envelope = Envelope::parse(bytes, BUNDLE_TYPE)
        .map_err(|e| anyhow::anyhow!("not a Rampart bundle: {e}"))?;
    if envelope.signatures.is_empty() {
        bail!("the bundle is not signed (`rampart bundle sign` it first): hosts refuse it");
    }
    let payload = Payload::parse(&envelope.payload)
        .map_err(|e| anyhow::anyhow!("the bundle's payload is malformed: {e}"))?;
    let time = |secs: u64| crate::support::time::rfc3339(secs);
    let manifest = BTreeMap::from([
        (VERSION.to_owned(), payload.version.to_string()),
        (SCOPE.to_owned(), payload.scope.clone()),
        (EXPIRES.to_owned(), time(payload.expires_at)),
        (DIGEST.to_owned(), bundle_digest(&envelope.payload)),
        (CREATED.to_owned(), time(payload.issued_at)),
    ]);
    let layer = BTreeMap::from([(TITLE.to_owned(), title(file_name))]);
    Ok(Described { manifest, layer })
}

/// A file name safe to publish as the layer title: the last path component, or
/// `bundle.rpb`.
fn title(file_name: &str) -> String {
    let base = file_name.rsplit('/').next().unwrap_or_default();
    if base.is_empty()
        || base.starts_with('.')
        || !base
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        "bundle.rpb".into()
    } else {
        base.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_plain_file_names() {
        assert_eq!(title("/tmp/out/prod-v3.rpb"), "prod-v3.rpb");
        assert_eq!(title("../x/.hidden"), "bundle.rpb");
        assert_eq!(title("a b.rpb"), "bundle.rpb");
        assert_eq!(title("dir/"), "bundle.rpb");
    }

    #[test]
    fn what_is_not_a_signed_bundle_is_not_described() {
        let e = describe(b"{\"hello\": 1}", "x.rpb").unwrap_err();
        assert!(format!("{e}").contains("not a Rampart bundle"), "{e}");
        let e = describe(b"", "x.rpb").unwrap_err();
        assert!(format!("{e}").contains("not a Rampart bundle"), "{e}");
    }
}
