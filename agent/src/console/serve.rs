//! Where the console listens (`[console]`): a unix socket and loopback by default, other
//! addresses only with TLS and a bearer token. A listener that cannot bind is logged and
//! retried; it never stops the daemon.
//!
//! Invariant: a TCP listener on an address other than loopback is never served without
//! TLS and the token ([`Settings::check`] refuses such a configuration).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{bail, Context, Result};
use axum::{middleware, Router};
use serde::Deserialize;
use tokio::{net::TcpListener, task::JoinSet};
use tokio_rustls::{server::TlsStream, TlsAcceptor};
use tracing::{info, warn};

use super::guard::{self, RateLimit, Token};

/// The default TCP listener (the Prometheus exporter port range's 9464).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";
/// The default unix socket.
pub const DEFAULT_SOCKET: &str = "/run/rampart/console.sock";

const RETRY_BIND: Duration = Duration::from_secs(5);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// `[console]` of the configuration file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Serve the console at all (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// TCP addresses (default 127.0.0.1:9464). Not loopback: needs tls_cert, tls_key and
    /// token_file.
    #[serde(default = "default_listen")]
    pub listen: Vec<SocketAddr>,
    /// A unix socket (mode 0600), default /run/rampart/console.sock; "" for none.
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// PEM certificate chain and private key: every TCP listener serves TLS.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// A file holding the bearer token every TCP request must carry.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Requests per second per listener (and the burst: twice that).
    #[serde(default = "default_rate")]
    pub requests_per_second: u32,
}

fn yes() -> bool {
    true
}
fn default_listen() -> Vec<SocketAddr> {
    DEFAULT_LISTEN.parse().into_iter().collect()
}
fn default_socket() -> PathBuf {
    DEFAULT_SOCKET.into()
}
fn default_rate() -> u32 {
    50
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: default_listen(),
            socket: default_socket(),
            tls_cert: None,
            tls_key: None,
            token_file: None,
            requests_per_second: default_rate(),
        }
    }
}

impl Settings {
    /// Loopback only, on `listen` (the offline console's and `--console-listen`'s form).
    pub fn loopback(listen: SocketAddr) -> Self {
        Self {
            listen: vec![listen],
            socket: PathBuf::new(),
            ..Self::default()
        }
    }

    /// Refuses what would expose the console off-host without TLS and a token, or half a
    /// TLS configuration.
    pub fn check(&self) -> Result<()> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            bail!("console: tls_cert and tls_key go together");
        }
        for addr in &self.listen {
            if !addr.ip().is_loopback() && (self.tls_cert.is_none() || self.token_file.is_none()) {
                bail!(
                    "console: listen = {addr} is reachable from other hosts; it needs tls_cert, \
                     tls_key and token_file (or listen on 127.0.0.1)"
                );
            }
        }
        if self.requests_per_second == 0 {
            bail!("console: requests_per_second must be at least 1");
        }
        Ok(())
    }

    /// Starts every listener on the current runtime, serving `router`. Files (certificate,
    /// key, token) are read now: an error there is returned and nothing is served.
    pub fn spawn(&self, router: Router) -> Result<()> {
        if !self.enabled {
            return Ok(());
        }
        self.check()?;
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(c), Some(k)) => Some(acceptor(c, k)?),
            _ => None,
        };
        let token = self.token_file.as_deref().map(Token::read).transpose()?;
        let rate = f64::from(self.requests_per_second);
        for addr in self.listen.clone() {
            let mut r = router.clone().layer(middleware::from_fn_with_state(
                RateLimit::new(rate, 2.0 * rate),
                guard::rate,
            ));
            if let Some(t) = &token {
                r = r.layer(middleware::from_fn_with_state(t.clone(), guard::bearer));
            }
            let tls = tls.clone();
            tokio::spawn(async move {
                let mut warned = false;
                loop {
                    match TcpListener::bind(addr).await {
                        Ok(l) => {
                            info!(%addr, tls = tls.is_some(), "console listening");
                            let served = match &tls {
                                Some(a) => {
                                    axum::serve(TlsListener::new(l, a.clone()), r.clone()).await
                                }
                                None => axum::serve(l, r.clone()).await,
                            };
                            if let Err(e) = served {
                                warn!(%addr, error = %e, "console listener failed; binding again");
                            }
                        }
                        Err(e) if !warned => {
                            warned = true;
                            warn!(%addr, error = %e,
                                "console cannot listen (retrying every 5 s); enforcement is not affected");
                        }
                        Err(_) => {}
                    }
                    tokio::time::sleep(RETRY_BIND).await;
                }
            });
        }
        if !self.socket.as_os_str().is_empty() {
            let listener = bind_socket(&self.socket)?;
            let r = router.layer(middleware::from_fn_with_state(
                RateLimit::new(rate, 2.0 * rate),
                guard::rate,
            ));
            let path = self.socket.clone();
            tokio::spawn(async move {
                info!(socket = %path.display(), "console listening");
                if let Err(e) = axum::serve(listener, r).await {
                    warn!(socket = %path.display(), error = %e, "console socket failed");
                }
            });
        }
        Ok(())
    }
}

/// Binds the unix socket (root only), replacing a stale one.
fn bind_socket(path: &Path) -> Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            bail!(
                "{} exists and is not a socket; remove it or set [console] socket",
                path.display()
            );
        }
        std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("binding the console socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    Ok(listener)
}

/// A TLS acceptor for the certificate chain and key in these PEM files.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor> {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("console tls_cert {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| {
            format!(
                "console tls_cert {}: not a PEM certificate chain",
                cert.display()
            )
        })?;
    if certs.is_empty() {
        bail!("console tls_cert {}: no certificate in it", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("console tls_key {}: not a PEM private key", key.display()))?;
    // ring, not aws-lc-rs: the static musl build of the agent then needs no cmake or nasm.
    // Its key exchanges lack the post-quantum hybrid, which the console does not need.
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("console TLS certificate and key do not match")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// TCP connections completing their TLS handshakes side by side (a slow client holds only
/// its own handshake, for at most [`HANDSHAKE_TIMEOUT`]).
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Option<(TlsStream<tokio::net::TcpStream>, SocketAddr)>>,
}

impl TlsListener {
    /// TLS over `tcp`.
    pub fn new(tcp: TcpListener, acceptor: TlsAcceptor) -> Self {
        Self {
            tcp,
            acceptor,
            handshakes: JoinSet::new(),
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                conn = self.tcp.accept() => match conn {
                    Ok((stream, addr)) => {
                        let acceptor = self.acceptor.clone();
                        self.handshakes.spawn(async move {
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(tls)) => Some((tls, addr)),
                                _ => None,
                            }
                        });
                    }
                    // Out of descriptors and the like: wait, as axum's own listener does.
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                },
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Ok(Some(conn)) = done {
                        return conn;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}
