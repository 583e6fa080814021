//! Pushing and pulling a bundle artifact with the ORAS project's `oci-client`.
//!
//! Invariant: a pull returns bytes only from a manifest of [`ARTIFACT_TYPE`] with exactly
//! one [`LAYER_TYPE`] layer of at most [`MAX_BUNDLE_BYTES`], read with that cap and checked
//! against the layer's sha256 digest. What they are worth is then for the bundle checks to
//! say: the registry is untrusted transport.

use std::{collections::BTreeMap, path::Path, time::Duration};

use anyhow::{bail, Context, Result};
use oci_client::{
    client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol, Config, ImageLayer},
    manifest::{OciImageManifest, OciManifest},
    secrets::RegistryAuth,
    Reference,
};
use sha2::{Digest, Sha256};
use tokio_stream::StreamExt;

use super::{
    artifact::{Described, ARTIFACT_TYPE, EMPTY_CONFIG, EMPTY_CONFIG_TYPE, LAYER_TYPE},
    credentials::Credentials,
    locator::{OciRef, Target},
};
use crate::bundle::verify::MAX_BUNDLE_BYTES;

/// How long a connection may take to open, and a response to go quiet.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// See [`CONNECT_TIMEOUT`].
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("rampart/", env!("CARGO_PKG_VERSION"));

/// A registry client with its credentials.
pub struct Registry {
    client: oci_client::Client,
    auth: RegistryAuth,
}

/// A pulled bundle.
#[derive(Debug)]
pub struct Pulled {
    /// The manifest digest the reference resolved to.
    pub digest: String,
    /// The layer's bytes: the bundle file as pushed.
    pub bytes: Vec<u8>,
    /// The manifest's annotations (informative, unverified).
    pub annotations: BTreeMap<String, String>,
}

impl Registry {
    /// A client: HTTPS (with `ca`, a PEM file of extra roots, if given) or plain HTTP.
    pub fn new(plain_http: bool, credentials: &Credentials, ca: Option<&Path>) -> Result<Self> {
        super::install_tls_provider();
        // Plain HTTP needs no roots, but the client is built with TLS all the same: an
        // explicit set keeps it from looking for (and failing without) the system's.
        let (roots, origin) = super::roots::load(ca)?;
        // oci-client 0.18 builds a default reqwest client beside the configured one, and
        // that one panics on a host without system CA certificates (even for plain HTTP):
        // say so instead.
        if origin == super::roots::Origin::Builtin {
            bail!(
                "this host has no CA certificates (e.g. /etc/ssl/certs/ca-certificates.crt); \
                 the OCI client needs them even for plain HTTP: install the ca-certificates \
                 package (or, in a container image, add it)"
            );
        }
        let tls_certs_only = roots
            .into_iter()
            .map(|data| Certificate {
                encoding: CertificateEncoding::Der,
                data,
            })
            .collect();
        let config = ClientConfig {
            protocol: if plain_http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            tls_certs_only,
            // A bundle artifact has no platform index: an index is refused, not resolved.
            platform_resolver: None,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            user_agent: USER_AGENT,
            ..ClientConfig::default()
        };
        let auth = match credentials {
            Credentials::Anonymous => RegistryAuth::Anonymous,
            Credentials::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            Credentials::Bearer(t) => RegistryAuth::Bearer(t.clone()),
        };
        // Never let a panic building the client take the agent down.
        let client = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            oci_client::Client::new(config)
        }))
        .map_err(|_| anyhow::anyhow!("the OCI client could not be built (see the panic above)"))?;
        Ok(Self { client, auth })
    }

    /// Pushes `bytes` as the bundle artifact at `at` (a tag); returns the manifest digest.
    pub async fn push(&self, at: &OciRef, bytes: Vec<u8>, described: Described) -> Result<String> {
        let Target::Tag(_) = &at.target else {
            bail!("push to a tag (oci://HOST/REPO:TAG), not to a digest");
        };
        let reference = reference(at);
        let layers = [ImageLayer::new(
            bytes,
            LAYER_TYPE.to_owned(),
            Some(described.layer),
        )];
        let config = Config::new(EMPTY_CONFIG.to_vec(), EMPTY_CONFIG_TYPE.to_owned(), None);
        let mut manifest = OciImageManifest::build(&layers, &config, Some(described.manifest));
        manifest.artifact_type = Some(ARTIFACT_TYPE.to_owned());
        self.client
            .push(&reference, &layers, config, &self.auth, Some(manifest))
            .await
            .map_err(|e| anyhow::anyhow!("pushing to {at}: {e}"))?;
        self.resolve(at).await
    }

    /// The manifest digest `at` names now (a HEAD request for a tag).
    pub async fn resolve(&self, at: &OciRef) -> Result<String> {
        if let Target::Digest(d) = &at.target {
            return Ok(d.clone());
        }
        self.client
            .fetch_manifest_digest(&reference(at), &self.auth)
            .await
            .map_err(|e| anyhow::anyhow!("resolving {at}: {e}"))
    }

    /// Pulls the bundle at `at` (by `digest` if given, so that what was resolved is what is
    /// read).
    pub async fn pull(&self, at: &OciRef, digest: Option<&str>) -> Result<Pulled> {
        let reference = match digest {
            Some(d) => Reference::with_digest(at.registry.clone(), at.repository.clone(), d.into()),
            None => reference(at),
        };
        let (manifest, digest) = self
            .client
            .pull_manifest(&reference, &self.auth)
            .await
            .map_err(|e| anyhow::anyhow!("pulling the manifest of {at}: {e}"))?;
        let OciManifest::Image(manifest) = manifest else {
            bail!("{at} is an image index, not a Rampart bundle artifact");
        };
        let layer = bundle_layer(&manifest).with_context(|| format!("{at} ({digest})"))?;
        let mut stream = self
            .client
            .pull_blob_stream(&reference, &layer)
            .await
            .map_err(|e| anyhow::anyhow!("pulling the bundle layer of {at}: {e}"))?;
        let declared = usize::try_from(layer.size).unwrap_or(usize::MAX);
        let mut bytes = Vec::with_capacity(declared);
        let mut hash = Sha256::new();
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| anyhow::anyhow!("reading the bundle layer of {at}: {e}"))?;
            if bytes.len() + chunk.len() > declared {
                bail!(
                    "{at}: the registry sent more than the {declared} bytes the manifest declares"
                );
            }
            hash.update(&chunk);
            bytes.extend_from_slice(&chunk);
        }
        let actual = format!("sha256:{}", crate::bundle::keys::hex(&hash.finalize()));
        if actual != layer.digest {
            bail!(
                "{at}: the bundle layer's bytes hash to {actual}, not {}",
                layer.digest
            );
        }
        Ok(Pulled {
            digest,
            bytes,
            annotations: manifest.annotations.unwrap_or_default(),
        })
    }
}

/// The one bundle layer of a manifest, checked before any of it is read.
fn bundle_layer(m: &OciImageManifest) -> Result<oci_client::manifest::OciDescriptor> {
    match m.artifact_type.as_deref() {
        Some(ARTIFACT_TYPE) => {}
        other => bail!(
            "not a Rampart bundle artifact (artifactType {}, expected {ARTIFACT_TYPE})",
            other.unwrap_or("absent")
        ),
    }
    let [layer] = m.layers.as_slice() else {
        bail!(
            "a bundle artifact has exactly one layer; this one has {}",
            m.layers.len()
        );
    };
    if layer.media_type != LAYER_TYPE {
        bail!("the layer is {}, expected {LAYER_TYPE}", layer.media_type);
    }
    if layer.size <= 0 || layer.size as u64 > MAX_BUNDLE_BYTES {
        bail!(
            "the layer declares {} bytes; a bundle is 1 to {MAX_BUNDLE_BYTES} bytes",
            layer.size
        );
    }
    Ok(layer.clone())
}

fn reference(at: &OciRef) -> Reference {
    match &at.target {
        Target::Tag(t) => {
            Reference::with_tag(at.registry.clone(), at.repository.clone(), t.clone())
        }
        Target::Digest(d) => {
            Reference::with_digest(at.registry.clone(), at.repository.clone(), d.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_client::manifest::OciDescriptor;

    fn manifest(artifact: Option<&str>, layers: Vec<(&str, i64)>) -> OciImageManifest {
        OciImageManifest {
            artifact_type: artifact.map(str::to_owned),
            layers: layers
                .into_iter()
                .map(|(t, size)| OciDescriptor {
                    media_type: t.into(),
                    size,
                    digest: format!("sha256:{}", "0".repeat(64)),
                    ..OciDescriptor::default()
                })
                .collect(),
            ..OciImageManifest::default()
        }
    }

    #[test]
    fn only_a_single_capped_bundle_layer_of_the_artifact_type_is_read() {
        assert!(bundle_layer(&manifest(Some(ARTIFACT_TYPE), vec![(LAYER_TYPE, 900)])).is_ok());
        for (m, expect) in [
            (
                manifest(None, vec![(LAYER_TYPE, 900)]),
                "artifactType absent",
            ),
            (
                manifest(
                    Some("application/vnd.oci.image.config.v1+json"),
                    vec![(LAYER_TYPE, 9)],
                ),
                "not a Rampart bundle artifact",
            ),
            (manifest(Some(ARTIFACT_TYPE), vec![]), "has 0"),
            (
                manifest(Some(ARTIFACT_TYPE), vec![(LAYER_TYPE, 9), (LAYER_TYPE, 9)]),
                "has 2",
            ),
            (
                manifest(Some(ARTIFACT_TYPE), vec![("application/octet-stream", 9)]),
                "expected application/vnd.rampart",
            ),
            (
                manifest(Some(ARTIFACT_TYPE), vec![(LAYER_TYPE, 0)]),
                "declares 0 bytes",
            ),
            (
                manifest(Some(ARTIFACT_TYPE), vec![(LAYER_TYPE, 1 << 40)]),
                "declares 1099511627776 bytes",
            ),
        ] {
            let e = format!("{:#}", bundle_layer(&m).unwrap_err());
            assert!(e.contains(expect), "{expect}: {e}");
        }
    }
}
