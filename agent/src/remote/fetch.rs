//! One poll of a remote source: has what it names changed since `last`, and if so, its
//! bytes. An OCI tag is resolved to a manifest digest (a HEAD request) and pulled only when
//! the digest changed; a URL is fetched with `If-None-Match` on the last `ETag`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::{
    credentials::Credentials,
    locator::{Locator, OciRef},
    oci::{Registry, CONNECT_TIMEOUT, READ_TIMEOUT, USER_AGENT},
};
use crate::bundle::verify::MAX_BUNDLE_BYTES;

/// How a source is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSettings {
    /// Where.
    pub locator: Locator,
    /// Credentials file (none: anonymous).
    pub credentials: Option<PathBuf>,
    /// Extra CA certificates (PEM) for HTTPS.
    pub ca_file: Option<PathBuf>,
    /// Plain HTTP to a host that is not loopback.
    pub allow_plain_http: bool,
    /// Between polls.
    pub interval: std::time::Duration,
}

/// What a poll found.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// The same as last time.
    Unchanged,
    /// Something new: its identity (manifest digest, or ETag / sha256 of the body) and bytes.
    New {
        /// The identity compared at the next poll.
        id: String,
        /// The bundle file.
        bytes: Vec<u8>,
    },
}

/// A source, ready to poll.
pub struct Remote {
    locator: Locator,
    transport: Transport,
}

enum Transport {
    Oci(Registry),
    Url {
        client: reqwest::Client,
        credentials: Credentials,
    },
}

impl Remote {
    /// Builds the client for `settings` (reading the credentials file now).
    pub fn new(settings: &RemoteSettings) -> Result<Self> {
        let plain = settings.locator.plain_http(settings.allow_plain_http)?;
        let credentials = match &settings.credentials {
            Some(path) => Credentials::read(path)?,
            None => Credentials::Anonymous,
        };
        let transport = match &settings.locator {
            Locator::Oci(_) => Transport::Oci(Registry::new(
                plain,
                &credentials,
                settings.ca_file.as_deref(),
            )?),
            Locator::Url { .. } => Transport::Url {
                client: url_client(settings.ca_file.as_deref())?,
                credentials,
            },
        };
        Ok(Self {
            locator: settings.locator.clone(),
            transport,
        })
    }

    /// Where this polls.
    pub fn locator(&self) -> &Locator {
        &self.locator
    }

    /// The registry client and reference, for an `oci://` source (push, pull with
    /// annotations); `None` for a URL.
    pub fn registry(&self) -> Option<(&OciRef, &Registry)> {
        match (&self.transport, &self.locator) {
            (Transport::Oci(registry), Locator::Oci(at)) => Some((at, registry)),
            _ => None,
        }
    }

    /// One poll.
    pub async fn poll(&self, last: Option<&str>) -> Result<Found> {
        match (&self.transport, &self.locator) {
            (Transport::Oci(registry), Locator::Oci(at)) => {
                let digest = registry.resolve(at).await?;
                if last == Some(digest.as_str()) {
                    return Ok(Found::Unchanged);
                }
                let pulled = registry.pull(at, Some(&digest)).await?;
                Ok(Found::New {
                    id: pulled.digest,
                    bytes: pulled.bytes,
                })
            }
            (
                Transport::Url {
                    client,
                    credentials,
                },
                Locator::Url { url, .. },
            ) => fetch_url(client, credentials, url, last).await,
            _ => bail!("internal: transport and locator disagree"),
        }
    }
}

fn url_client(ca: Option<&Path>) -> Result<reqwest::Client> {
    super::install_tls_provider();
    let b = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        // A redirect could lead from https to http, or off the configured host.
        .redirect(reqwest::redirect::Policy::none());
    let (roots, _) = super::roots::load(ca)?;
    let roots = roots
        .iter()
        .map(|der| reqwest::Certificate::from_der(der))
        .collect::<Result<Vec<_>, _>>()
        .context("a CA certificate reqwest cannot use")?;
    b.tls_certs_only(roots)
        .build()
        .context("building the HTTPS client")
}

async fn fetch_url(
    client: &reqwest::Client,
    credentials: &Credentials,
    url: &str,
    last: Option<&str>,
) -> Result<Found> {
    let mut request = client.get(url);
    request = match credentials {
        Credentials::Anonymous => request,
        Credentials::Basic { username, password } => request.basic_auth(username, Some(password)),
        Credentials::Bearer(t) => request.bearer_auth(t),
    };
    if let Some(tag) = last.and_then(|l| l.strip_prefix("etag:")) {
        request = request.header(reqwest::header::IF_NONE_MATCH, tag);
    }
    let mut response = request
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("GET {url}: {e}"))?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_MODIFIED {
        return Ok(Found::Unchanged);
    }
    if !status.is_success() {
        bail!("GET {url}: HTTP {status}");
    }
    if response
        .content_length()
        .is_some_and(|n| n > MAX_BUNDLE_BYTES)
    {
        bail!("GET {url}: the body is larger than a bundle may be ({MAX_BUNDLE_BYTES} bytes)");
    }
    let etag = response
        .headers()
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| anyhow::anyhow!("GET {url}: {e}"))?
    {
        if (bytes.len() + chunk.len()) as u64 > MAX_BUNDLE_BYTES {
            bail!("GET {url}: the body is larger than a bundle may be ({MAX_BUNDLE_BYTES} bytes)");
        }
        bytes.extend_from_slice(&chunk);
    }
    let id = match etag {
        Some(t) => format!("etag:{t}"),
        None => {
            use sha2::Digest;
            format!(
                "sha256:{}",
                crate::bundle::keys::hex(&sha2::Sha256::digest(&bytes))
            )
        }
    };
    if last == Some(id.as_str()) {
        return Ok(Found::Unchanged);
    }
    Ok(Found::New { id, bytes })
}
