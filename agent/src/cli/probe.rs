//! `rampart probe live|ready`: asks the daemon's console, over its unix socket, whether it
//! is alive (`/healthz`) or ready (`/readyz`); exits 0 only for a 200. For orchestrators'
//! exec probes (the Kubernetes DaemonSet), so the console need not listen on the network.

use std::{path::PathBuf, time::Duration};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Which question.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Question {
    /// `/healthz`: the agent answers.
    Live,
    /// `/readyz`: a policy in force and not expired, every hook attached, the lineage
    /// writable.
    Ready,
}

/// Arguments of `rampart probe`.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// live or ready.
    #[arg(value_enum)]
    question: Question,
    /// The console's unix socket (`[console] socket`).
    #[arg(long, value_name = "PATH", default_value = rampart::console::serve::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Give up after this long.
    #[arg(long, value_name = "DURATION", default_value = "5s")]
    timeout: humantime::Duration,
}

/// Most bytes of an answer read.
const MAX_ANSWER: u64 = 64 * 1024;

impl ProbeArgs {
    pub fn run(self) -> Result<()> {
        let path = match self.question {
            Question::Live => "/healthz",
            Question::Ready => "/readyz",
        };
        let socket = self.socket.clone();
        let limit: Duration = self.timeout.into();
        let raw = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(async move {
                tokio::time::timeout(limit, async {
                    let mut s = tokio::net::UnixStream::connect(&socket)
                        .await
                        .with_context(|| {
                            format!("connecting to the console at {}", socket.display())
                        })?;
                    s.write_all(
                        format!(
                            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
                        )
                        .as_bytes(),
                    )
                    .await?;
                    let mut raw = Vec::new();
                    s.take(MAX_ANSWER).read_to_end(&mut raw).await?;
                    anyhow::Ok(raw)
                })
                .await
                .map_err(|_| {
                    anyhow::anyhow!("no answer from the console within {}", self.timeout)
                })?
            })?;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head.split_whitespace().nth(1).unwrap_or("?");
        if status != "200" {
            bail!("{path}: HTTP {status}: {}", body.trim());
        }
        println!("{path}: {}", body.trim());
        Ok(())
    }
}
