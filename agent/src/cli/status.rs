//! `rampart status`.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use rampart::daemon::{
    control::{self, Request, Response},
    defaults,
};

/// What the running daemon enforces: policy, governed cgroups, programs, counters,
/// lineage (over the control socket; root).
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The daemon's control socket.
    #[arg(long, value_name = "PATH", default_value = defaults::CONTROL_SOCKET)]
    socket: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl StatusArgs {
    pub fn run(self) -> Result<()> {
        let Self { socket, json } = self;
        let status = match control::call_blocking(&socket, &Request::Status)? {
            Response::Status(v) => *v,
            Response::Error { error } => bail!("{error}"),
            other => bail!("unexpected answer: {other:?}"),
        };
        if json {
            println!("{status}");
            return Ok(());
        }
        let get = |k: &str| status[k].to_string().trim_matches('"').to_owned();
        println!(
            "policy      version {} (digest {})",
            get("version"),
            get("digest")
        );
        println!(
            "            scope {}, expires {}",
            get("scope"),
            get("expires")
        );
        println!("            signers {}", get("signers"));
        println!("            policies {}", get("policies"));
        println!("governed    {}", get("governed"));
        println!("programs    pinned {} at {}", get("pinned"), get("pin_dir"));
        println!("decisions   {}", get("decisions"));
        println!(
            "drops       {} (quiet denials, no event due: {})",
            get("event_drops"),
            get("quiet_denials")
        );
        println!(
            "tamper      {} found, {} put back (pins removed, links detached while running)",
            status["tamper"]["found"], status["tamper"]["repaired"]
        );
        println!("lineage     {}", get("lineage"));
        Ok(())
    }
}
