//! `rampart`: the agent's command line (the subcommands are in `cli/`).

mod cli;

use std::{io::IsTerminal, process::ExitCode};

use clap::{Parser, Subcommand};
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
    Run(cli::run::RunArgs),
    Release(cli::release::ReleaseArgs),
    BreakGlass(cli::break_glass::BreakGlassArgs),
    #[command(subcommand)]
    Policy(cli::policy::PolicyCommand),
    Keygen(cli::keygen::KeygenArgs),
    #[command(subcommand)]
    Trust(cli::trust::TrustCommand),
    Status(cli::status::StatusArgs),
    #[command(subcommand)]
    State(cli::state::StateCommand),
    #[command(subcommand)]
    Lineage(cli::lineage::LineageCommand),
    Console(cli::console::ConsoleArgs),
    /// Ask the running daemon's console (unix socket) whether it is alive or ready; exit 0
    /// only if so (for orchestrators' exec probes, e.g. the Kubernetes DaemonSet)
    Probe(cli::probe::ProbeArgs),
}

impl Command {
    /// Whether this runs as the daemon (or acts for it): errors are then also logged.
    fn is_daemon(&self) -> bool {
        matches!(self, Self::Run(_) | Self::Release(_))
    }

    fn run(self) -> anyhow::Result<ExitCode> {
        let done = |r: anyhow::Result<()>| r.map(|()| ExitCode::SUCCESS);
        match self {
            Self::Run(args) => done(args.run()),
            Self::Release(args) => done(args.run()),
            Self::BreakGlass(args) => done(args.run()),
            Self::Policy(command) => done(command.run()),
            Self::Keygen(args) => done(args.run()),
            Self::Trust(command) => done(command.run()),
            Self::Status(args) => done(args.run()),
            Self::State(command) => done(command.run()),
            Self::Lineage(command) => command.run(),
            Self::Console(args) => done(args.run()),
            Self::Probe(args) => done(args.run()),
        }
    }
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
    let daemon = cli.command.is_daemon();
    match cli.command.run() {
        Ok(code) => code,
        Err(e) => {
            // On a terminal the plain line is the message; for the daemon under a log
            // collector, the structured record too.
            if daemon && !std::io::stderr().is_terminal() {
                tracing::error!(error = %format!("{e:#}"), "rampart failed");
            }
            eprintln!("rampart: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap's own consistency checks of every subcommand and flag (conflicting names,
    /// groups, defaults), which otherwise only fire when that subcommand is parsed.
    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
