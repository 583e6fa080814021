//! `rampart`: the agent's command line.

use std::{io::IsTerminal, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use rampart::{
    daemon::{self, RunConfig},
    policy::cli,
};
use tracing_subscriber::EnvFilter;

/// Rampart: a kernel-level runtime enforcer. Inside governed cgroups, every exec, file
/// open and outbound connection that policy does not allow is denied by BPF-LSM and cgroup
/// programs.
#[derive(Debug, Parser)]
#[command(name = "rampart", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load the kernel programs and enforce policy files until SIGINT/SIGTERM (as root).
    ///
    /// Each policy governs the cgroups in its spec.governs (relative to the cgroup v2 root)
    /// and all of their descendants: there, every exec, open, executable mapping, connect
    /// and addressed send is denied with EPERM unless a rule allows it (or recorded and
    /// allowed, in audit mode). Processes outside governed cgroups are never affected.
    /// Exec rules are pinned to the identity (device, inode) of the file when loaded.
    /// Decisions are written to stdout as JSON lines (denials; all decisions with
    /// `events: all`); logs go to stderr (JSON when not a terminal, level from RAMPART_LOG).
    /// Readiness is signalled with sd_notify READY=1. Enforcement stops when this process
    /// exits (pinning arrives with the daemon work). Policies loaded this way are unsigned
    /// and carry version 0.
    Run {
        /// A policy file (YAML, one or more documents); repeatable.
        #[arg(long = "policy", value_name = "FILE", required = true)]
        policies: Vec<PathBuf>,
    },
    /// Check, compile and explain policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Check policy files and compile them to the kernel's map contents.
    ///
    /// Prints a summary per policy; errors name the file, line and field. The compiled
    /// maps (JSON) are byte-identical for identical inputs.
    Compile {
        /// Policy files (YAML).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Write the compiled maps (JSON) to this file.
        #[arg(short = 'o', long = "out", value_name = "FILE")]
        out: Option<PathBuf>,
        /// Resolve paths (symlinks) and pin exec identities against this host's files,
        /// exactly as `rampart run` does when it loads the policy.
        #[arg(long)]
        host: bool,
    },
    /// Compute the decision the kernel will make for a request, and why.
    ///
    /// The policy is compiled and resolved against this host as `rampart run` loads it,
    /// and the request path is resolved as the kernel resolves it (symlinks followed).
    /// An exec is judged when the program is opened (read,exec) and when it runs.
    #[command(group(clap::ArgGroup::new("request").required(true).multiple(true)))]
    Explain {
        /// Policy files (YAML).
        #[arg(long = "policy", value_name = "FILE", required = true)]
        policies: Vec<PathBuf>,
        /// The policy to use when the files hold several.
        #[arg(long)]
        name: Option<String>,
        /// Judge execve of this program (repeatable, as are the other requests).
        #[arg(long, value_name = "PATH", group = "request")]
        exec: Vec<String>,
        /// Judge opening this file (with --access).
        #[arg(long, value_name = "PATH", group = "request", requires = "access")]
        open: Vec<String>,
        /// Access for --open: read, write, exec, comma-separated (applies to every --open).
        #[arg(long, value_name = "LIST")]
        access: Option<String>,
        /// Judge mapping this file executable (mmap/mprotect with PROT_EXEC).
        #[arg(long = "map-exec", value_name = "PATH", group = "request")]
        map_exec: Vec<String>,
        /// Judge connect() to ADDR:PORT/PROTO, e.g. 10.0.0.1:443/tcp or [::1]:53/udp.
        #[arg(long, value_name = "ENDPOINT", group = "request")]
        connect: Vec<String>,
        /// Judge sendto() without connect to ADDR:PORT/PROTO.
        #[arg(long, value_name = "ENDPOINT", group = "request")]
        send: Vec<String>,
        /// Judge every request in FILE, one per line: `exec PATH`, `open PATH read,write`,
        /// `map-exec PATH`, `connect ADDR:PORT/tcp`, `send ADDR:PORT/udp` (# comments).
        #[arg(long, value_name = "FILE", group = "request")]
        requests: Option<PathBuf>,
        /// One JSON object per request instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// The request lines an `explain` invocation asks about.
fn explain_requests(
    exec: Vec<String>,
    open: Vec<String>,
    access: Option<String>,
    map_exec: Vec<String>,
    connect: Vec<String>,
    send: Vec<String>,
    requests: Option<PathBuf>,
) -> anyhow::Result<Vec<String>> {
    let mut lines = Vec::new();
    lines.extend(exec.iter().map(|p| format!("exec {p}")));
    let access = access.unwrap_or_default();
    lines.extend(open.iter().map(|p| format!("open {p} {access}")));
    lines.extend(map_exec.iter().map(|p| format!("map-exec {p}")));
    lines.extend(connect.iter().map(|e| format!("connect {e}")));
    lines.extend(send.iter().map(|e| format!("send {e}")));
    if let Some(file) = requests {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
        lines.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned),
        );
    }
    Ok(lines)
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
        Command::Run { policies } => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(daemon::run(RunConfig { policies }))),
        Command::Policy(PolicyCommand::Compile { files, out, host }) => {
            cli::compile_command(&files, out.as_deref(), host)
        }
        Command::Policy(PolicyCommand::Explain {
            policies,
            name,
            exec,
            open,
            access,
            map_exec,
            connect,
            send,
            requests,
            json,
        }) => explain_requests(exec, open, access, map_exec, connect, send, requests)
            .and_then(|lines| cli::explain_command(&policies, name.as_deref(), &lines, json)),
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
