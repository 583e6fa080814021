//! `rampart state init|show`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use rampart::{
    bundle::state::StateDir,
    daemon::defaults,
    kernel::pinned_state as mark,
    support::time::{rfc3339, unix_now},
};
use rampart_common::maps;

/// The anti-rollback state: the highest bundle and trust root versions this host accepted.
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Initialise the state of a host that has accepted no bundle yet.
    ///
    /// The agent refuses every bundle while the state file is missing, so that deleting it
    /// cannot reset the anti-rollback mark; this is the deliberate first step on a new host
    /// (`cargo xtask install` runs it). The time is recorded in the file. An existing state
    /// is never overwritten.
    Init {
        /// The state directory (`policy.state_dir` of the configuration).
        #[arg(long, value_name = "DIR", default_value = defaults::STATE_DIR)]
        state: PathBuf,
        /// Succeed without a change when a state file exists (an orchestrator's first step
        /// on every start, e.g. the Kubernetes DaemonSet's init container). The pinned copy
        /// of the mark still refuses a rollback after the file was deleted, until the
        /// node reboots.
        #[arg(long)]
        if_missing: bool,
    },
    /// Show the state file and, if enforcement is pinned, the pinned copy of the mark.
    Show {
        /// The state directory.
        #[arg(long, value_name = "DIR", default_value = defaults::STATE_DIR)]
        state: PathBuf,
        /// The pin directory whose copy of the mark to show.
        #[arg(long, value_name = "DIR", default_value = defaults::PIN_DIR)]
        pin_dir: PathBuf,
    },
}

impl StateCommand {
    pub fn run(self) -> Result<()> {
        match self {
            Self::Init { state, if_missing } => {
                let dir = StateDir::new(&state);
                if if_missing && dir.file().exists() {
                    println!("{} exists; not changed", dir.file().display());
                    return Ok(());
                }
                let made = dir.init(unix_now())?;
                println!(
                    "initialised {} at {}: no bundle accepted yet; bundles of any version \
                     are accepted from now on, never an older one than the last",
                    dir.file().display(),
                    made.initialised_at.map(rfc3339).unwrap_or_default()
                );
                Ok(())
            }
            Self::Show { state, pin_dir } => {
                let dir = StateDir::new(&state);
                let held = dir.load()?;
                println!(
                    "{}: version {} digest {} trust root version {}{}",
                    dir.file().display(),
                    held.version,
                    if held.digest.is_empty() {
                        "-"
                    } else {
                        &held.digest
                    },
                    held.trust_version,
                    held.initialised_at
                        .map(|t| format!(" (initialised {})", rfc3339(t)))
                        .unwrap_or_default()
                );
                match mark::read_mark(&pin_dir).context("the pinned copy")? {
                    Some(m) => println!(
                        "{}: version {} digest {} trust root version {}",
                        mark::pin_path(&pin_dir, maps::ROLLBACK_MARK).display(),
                        m.version,
                        m.digest,
                        m.trust_version
                    ),
                    None => println!(
                        "{}: not pinned",
                        mark::pin_path(&pin_dir, maps::ROLLBACK_MARK).display()
                    ),
                }
                Ok(())
            }
        }
    }
}
