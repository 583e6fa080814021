//! `rampart probe live|ready`: asks the daemon's console, over its unix socket, whether it
//! is alive (`/healthz`) or ready (`/readyz`); exits 0 only for a 200. For orchestrators'
//! exec probes (the Kubernetes DaemonSet), so the console need not listen on the network.

use std::path::PathBuf;

use anyhow::{bail, Result};

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

impl ProbeArgs {
    pub fn run(self) -> Result<()> {
        let path = match self.question {
            Question::Live => "/healthz",
            Question::Ready => "/readyz",
        };
        let (status, body) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(rampart::console::probe::ask(
                &self.socket,
                path,
                self.timeout.into(),
            ))?;
        if status != 200 {
            bail!("{path}: HTTP {status}: {}", body.trim());
        }
        println!("{path}: {}", body.trim());
        Ok(())
    }
}
