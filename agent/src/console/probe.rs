//! Asking a console over its unix socket (`rampart probe`): one HTTP/1.1 GET, the status
//! and body of the answer. For orchestrators' exec probes, so the console need not listen on
//! the network for them.

use std::{path::Path, time::Duration};

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Most bytes of an answer read.
const MAX_ANSWER: u64 = 64 * 1024;

/// GETs `path` from the console at `socket`, within `limit`: the status and the body.
pub async fn ask(socket: &Path, path: &str, limit: Duration) -> Result<(u16, String)> {
    let raw = tokio::time::timeout(limit, async {
        let mut s = tokio::net::UnixStream::connect(socket)
            .await
            .with_context(|| format!("connecting to the console at {}", socket.display()))?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        s.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        s.take(MAX_ANSWER).read_to_end(&mut raw).await?;
        anyhow::Ok(raw)
    })
    .await
    .map_err(|_| {
        anyhow::anyhow!(
            "no answer from the console at {} within {limit:?}",
            socket.display()
        )
    })??;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("the console's answer has no end of headers")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("the console's answer has no status")?;
    Ok((status, body.to_owned()))
}
