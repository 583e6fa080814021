//! The control socket: a Unix stream socket (root only, mode 0600, in a 0700 directory)
//! over which `rampart policy push` hands the daemon a bundle and `rampart status` asks what
//! is in force. One JSON request line, one JSON response line.
//!
//! Invariant: the daemon answers only peers whose uid is 0 and that are outside every
//! governed cgroup ([`peer`](super::peer)), reads at most [`MAX_REQUEST_BYTES`] per request,
//! and serves each connection on a task of its own, so no client can hold the run loop
//! (ring draining, reloads) by connecting and sending nothing.

use std::{
    os::unix::fs::{DirBuilderExt, PermissionsExt},
    path::Path,
    time::Duration,
};

use anyhow::{bail, Context, Result};
use base64::{engine::general_purpose::STANDARD as B64, Engine};

use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    sync::{mpsc, oneshot},
};
use tracing::warn;

use super::peer::{self, Peer};
use crate::bundle::verify::MAX_BUNDLE_BYTES;

/// A request line is a bundle in base64 at most, plus a little.
pub const MAX_REQUEST_BYTES: u64 = MAX_BUNDLE_BYTES / 3 * 4 + 4096;

/// What a client asks.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// Verify and load this bundle (and keep it in the bundle directory).
    Push {
        /// The bundle file, base64.
        bundle: String,
    },
    /// What is in force.
    Status,
    /// Break-glass: record, detach everything, and stop. Obeyed from a client with a
    /// controlling terminal, or with a break-glass token signed by the trust root.
    Release {
        /// The token file, base64.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
    },
}

/// What the daemon answers.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Response {
    /// The pushed bundle is in force.
    Loaded {
        /// Its version.
        version: u64,
        /// Its digest.
        digest: String,
    },
    /// The pushed bundle was refused; the policy in force is unchanged.
    Rejected {
        /// The stable refusal code.
        code: String,
        /// Why.
        error: String,
    },
    /// The status object (`rampart status --json`).
    Status(Box<serde_json::Value>),
    /// Released: nothing is enforced; the daemon stops.
    Released {
        /// Links detached.
        links: u64,
        /// Maps removed.
        maps: u64,
    },
    /// The request could not be served.
    Error {
        /// Why.
        error: String,
    },
}

/// Binds the socket: its directory 0700, the socket 0600, a stale socket replaced.
pub fn bind(path: &Path) -> Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        std::fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("binding the control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// How long a client has to send its request line, and to take its answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads one request line from a connection (at most [`MAX_REQUEST_BYTES`], within
/// [`CLIENT_TIMEOUT`]).
pub async fn read_request(stream: &mut UnixStream) -> Result<Request> {
    let mut line = String::new();
    let mut reader = BufReader::new(stream.take(MAX_REQUEST_BYTES));
    tokio::time::timeout(CLIENT_TIMEOUT, reader.read_line(&mut line))
        .await
        .context("the request did not arrive within 10 s")??;
    if !line.ends_with('\n') {
        bail!("the request is not one complete line (or is over {MAX_REQUEST_BYTES} bytes)");
    }
    serde_json::from_str(&line).context("not a control request")
}

/// What a connection task hands the run loop.
#[derive(Debug)]
pub enum Inbound {
    /// A request from an admitted peer, the peer, and where its answer goes.
    Request(Request, Peer, oneshot::Sender<Response>),
    /// A peer was refused (see [`peer`](super::peer)); nothing it asked is done.
    Refused {
        /// Who, as far as it was established.
        peer: Option<Peer>,
        /// Why.
        error: String,
    },
    /// The answer was written (or could not be): after a release, the loop may end.
    Answered,
}

/// Serves one connection on a task of its own: identifies and admits the peer (outside
/// every cgroup in `guarded`), reads one request, hands it to the run loop on `to_loop`,
/// writes the answer. A silent or slow client holds only its own task, never the loop.
pub async fn serve(mut stream: UnixStream, guarded: Vec<String>, to_loop: mpsc::Sender<Inbound>) {
    let response = match admitted(&stream, &guarded) {
        Err((peer, e)) => {
            let error = format!("{e:#}");
            warn!(error = %error, "control request refused");
            let _ = to_loop
                .send(Inbound::Refused {
                    peer,
                    error: error.clone(),
                })
                .await;
            Response::Error { error }
        }
        Ok(peer) => match read_request(&mut stream).await {
            Err(e) => Response::Error {
                error: format!("{e:#}"),
            },
            Ok(request) => {
                let (answer, answered) = oneshot::channel();
                match to_loop.send(Inbound::Request(request, peer, answer)).await {
                    Ok(()) => answered.await.unwrap_or_else(|_| Response::Error {
                        error: "the daemon stopped before answering".into(),
                    }),
                    Err(_) => Response::Error {
                        error: "the daemon is stopping".into(),
                    },
                }
            }
        },
    };
    match tokio::time::timeout(CLIENT_TIMEOUT, write_response(&mut stream, &response)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %format!("{e:#}"), "cannot answer on the control socket"),
        Err(_) => warn!("a control client did not take its answer within 10 s"),
    }
    let _ = to_loop.send(Inbound::Answered).await;
}

/// Identifies the peer and admits it, or says who was refused and why.
fn admitted(
    stream: &UnixStream,
    guarded: &[String],
) -> std::result::Result<Peer, (Option<Peer>, anyhow::Error)> {
    let peer = peer::identify(stream).map_err(|e| (None, e))?;
    match peer::admit(&peer, guarded) {
        Ok(()) => Ok(peer),
        Err(e) => Err((Some(peer), e)),
    }
}

/// Writes one response line.
pub async fn write_response(stream: &mut UnixStream, response: &Response) -> Result<()> {
    let mut line = serde_json::to_vec(response)?;
    line.push(b'\n');
    stream.write_all(&line).await?;
    Ok(())
}

/// Client side: sends one request and returns the response.
pub async fn call(socket: &Path, request: &Request) -> Result<Response> {
    let mut stream = UnixStream::connect(socket).await.with_context(|| {
        format!(
            "connecting to {} (is `rampart run --config` running, and are you root?)",
            socket.display()
        )
    })?;
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    stream.write_all(&line).await?;
    let mut reader = BufReader::new(stream);
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(60), reader.read_line(&mut answer))
        .await
        .context("no answer from the daemon within 60 s")??;
    serde_json::from_str(&answer).with_context(|| format!("unexpected answer: {answer}"))
}

/// Client side, for the CLI: one request, answered, on a runtime of its own.
pub fn call_blocking(socket: &Path, request: &Request) -> Result<Response> {
    runtime()?.block_on(call(socket, request))
}

/// Asks a running daemon to release (it records the release in its lineage, detaches
/// everything and exits), with a break-glass token if given. `Ok(None)` when no daemon
/// answers on `socket`.
pub fn release_via_daemon(socket: &Path, token: Option<&[u8]>) -> Result<Option<(u64, u64)>> {
    if !socket.exists() {
        return Ok(None);
    }
    let rt = runtime()?;
    if rt.block_on(UnixStream::connect(socket)).is_err() {
        return Ok(None);
    }
    let request = Request::Release {
        token: token.map(|t| B64.encode(t)),
    };
    match rt.block_on(call(socket, &request))? {
        Response::Released { links, maps } => Ok(Some((links, maps))),
        Response::Error { error } => bail!("{error}"),
        other => bail!("unexpected answer: {other:?}"),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Encodes a bundle for [`Request::Push`].
pub fn encode_bundle(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// Decodes a pushed bundle.
pub fn decode_bundle(b64: &str) -> Result<Vec<u8>> {
    B64.decode(b64).context("the pushed bundle is not base64")
}
