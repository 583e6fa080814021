//! `rampart release`: the break-glass.

use std::{
    io::{BufRead, IsTerminal, Write},
    path::PathBuf,
};

use anyhow::{bail, Context, Result};
use clap::Args;
use rampart::{
    daemon::{control, defaults},
    kernel::pins,
};

/// Break-glass: detach every pinned Rampart program and remove its maps (as root).
///
/// Through a running daemon (--socket) the release is recorded in its lineage and the
/// daemon exits; the daemon obeys only a client outside every governed cgroup that has a
/// terminal or presents a break-glass token (--token, from `rampart break-glass`). With no
/// daemon the pins are removed directly (logged only). Governed cgroups are no longer
/// enforced afterwards. Asks for confirmation on a terminal unless --yes; refuses without
/// a terminal unless --yes.
#[derive(Debug, Args)]
pub struct ReleaseArgs {
    /// The pin directory of the agent to release (when no daemon answers on --socket).
    #[arg(long, value_name = "DIR", default_value = defaults::PIN_DIR)]
    pin_dir: PathBuf,
    /// A running daemon's control socket: the daemon records the release in its lineage,
    /// detaches everything and exits.
    #[arg(long, value_name = "PATH", default_value = defaults::CONTROL_SOCKET)]
    socket: PathBuf,
    /// A break-glass token signed by the trust root (`rampart break-glass`), for a release
    /// through the daemon from a client without a terminal.
    #[arg(long, value_name = "FILE")]
    token: Option<PathBuf>,
    /// Do not ask.
    #[arg(long)]
    yes: bool,
}

impl ReleaseArgs {
    pub fn run(self) -> Result<()> {
        let Self {
            pin_dir: dir,
            socket,
            token,
            yes,
        } = self;
        let token = match &token {
            Some(path) => Some(
                rampart::support::files::read_capped(
                    path,
                    rampart::bundle::break_glass::MAX_TOKEN_BYTES,
                )
                .with_context(|| format!("reading the break-glass token {}", path.display()))?,
            ),
            None => None,
        };
        let daemon = socket.exists();
        if !daemon && !dir.exists() {
            bail!(
                "nothing is pinned at {} and no daemon answers on {}",
                dir.display(),
                socket.display()
            );
        }
        if !yes {
            if !std::io::stdin().is_terminal() {
                bail!("refusing to release without a terminal to confirm; pass --yes");
            }
            eprint!(
                "Detach every Rampart program pinned under {} and stop enforcement? [y/N] ",
                dir.display()
            );
            std::io::stderr().flush()?;
            let mut answer = String::new();
            std::io::stdin().lock().read_line(&mut answer)?;
            if !matches!(answer.trim(), "y" | "Y" | "yes") {
                bail!("not released");
            }
        }
        if let Some((links, maps)) = control::release_via_daemon(&socket, token.as_deref())? {
            println!(
                "released by the daemon on {}: {links} links detached, {maps} maps removed, \
                 recorded in its lineage; it has stopped; nothing is enforced",
                socket.display()
            );
            return Ok(());
        }
        let (links, maps) = pins::release(&dir)?;
        tracing::warn!(pin_dir = %dir.display(), links, maps, "released: enforcement removed (break-glass)");
        println!(
            "released {}: {links} links detached, {maps} maps removed; nothing is enforced (no \
             daemon was running, so this is logged, not recorded in a lineage)",
            dir.display()
        );
        Ok(())
    }
}
