//! `rampart`: the agent's command line.

use std::{io::IsTerminal, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use rampart::daemon::{self, RunConfig};
use tracing_subscriber::EnvFilter;

/// Rampart: a kernel-level runtime enforcer. Inside governed cgroups, every exec that
/// policy does not allow is denied by a BPF-LSM program.
#[derive(Debug, Parser)]
#[command(name = "rampart", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load the kernel programs and enforce until SIGINT/SIGTERM (must run as root).
    ///
    /// Every exec by a task in a governed cgroup, or in any descendant cgroup, is denied with
    /// EPERM unless the binary is one of the --allow-exec files. Binaries are matched by
    /// identity (device and inode), so another name for a file (a hardlink, a symlink) is
    /// judged as that file. Processes outside governed cgroups are never affected.
    /// Every denial is written to stdout as one JSON line (pid, uid, comm, cgroup id, target
    /// device and inode, reason); logs go to stderr (JSON when not a terminal, level from
    /// RAMPART_LOG). Readiness is signalled with sd_notify READY=1. Enforcement stops when
    /// this process exits (pinning arrives with the daemon work).
    Run {
        /// A cgroup v2 directory to govern, e.g. /sys/fs/cgroup/workload.slice (repeatable).
        #[arg(long = "govern", value_name = "CGROUP_PATH", required = true)]
        govern: Vec<PathBuf>,
        /// A binary that governed tasks may execute (repeatable). Symlinks are resolved when
        /// the rule is loaded.
        #[arg(long = "allow-exec", value_name = "PATH")]
        allow_exec: Vec<PathBuf>,
    },
}

fn init_logging() {
    let filter = EnvFilter::try_from_env("RAMPART_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::io::stderr().is_terminal() {
        builder.init();
    } else {
        builder.json().flatten_event(true).init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Run { govern, allow_exec } => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(daemon::run(RunConfig { govern, allow_exec }))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // On a terminal the plain line is the message; elsewhere a log collector also
            // gets the structured record.
            if !std::io::stderr().is_terminal() {
                tracing::error!(error = %format!("{e:#}"), "rampart failed");
            }
            eprintln!("rampart: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
