//! `rampart run`: load, govern, enforce until told to stop.

use std::{io::Write, path::PathBuf};

use anyhow::{Context, Result};
use aya::maps::{MapData, RingBuf};
use tokio::io::{unix::AsyncFd, Interest};
use tracing::{info, warn};

use crate::{btf::Btf, cgroup::Cgroup, events, file_id, layout, loader::Enforcer, preflight};

/// What `rampart run` enforces. Interim: the allow list comes from the command line until
/// signed policy bundles land.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub govern: Vec<PathBuf>,
    pub allow_exec: Vec<PathBuf>,
}

/// Runs the enforcer until SIGINT or SIGTERM.
pub async fn run(config: RunConfig) -> Result<()> {
    let RunConfig { govern, allow_exec } = config;
    preflight::check_kernel()?;
    let raw = Btf::from_sys_fs().context("reading /sys/kernel/btf/vmlinux")?;
    let btf = Btf::parse(&raw).context("parsing the kernel's BTF")?;
    let layout = layout::resolve(&btf).context(
        "this kernel's struct layout is not one Rampart can read; please report the kernel version",
    )?;

    // Resolve everything before touching the kernel: a bad path changes nothing.
    let mut allowed = Vec::with_capacity(allow_exec.len());
    for path in &allow_exec {
        allowed.push((path, file_id::of_path(path).context("exec allow rule")?));
    }
    let cgroups = govern
        .iter()
        .map(|p| Cgroup::open(p))
        .collect::<Result<Vec<_>>>()?;
    anyhow::ensure!(
        !cgroups.is_empty(),
        "nothing to govern: pass --govern CGROUP_PATH"
    );

    let mut enforcer = Enforcer::load(&layout)?;
    for (rule, (path, id)) in allowed.iter().enumerate() {
        enforcer.allow_exec(*id, rule as u32)?;
        info!(rule, path = %path.display(), dev = id.dev, ino = id.ino, "exec allowed");
    }
    for cgroup in &cgroups {
        enforcer.govern(cgroup)?;
        info!(cgroup = %cgroup.path.display(), id = cgroup.id, "governing");
    }
    info!(
        governed = cgroups.len(),
        exec_rules = allowed.len(),
        "enforcing"
    );
    let events = enforcer.take_events()?;
    // SAFETY: the RingBuf owns its map's file descriptor (an OwnedFd inside MapData) for as
    // long as it lives, and as_raw_fd() always returns that same descriptor; the AsyncFd
    // owns the RingBuf, so the descriptor outlives the registration.
    let mut ring = unsafe { AsyncFd::register_with_interest(events, Interest::READABLE) }
        .map_err(std::io::Error::from)
        .context("polling the event ring")?;
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        warn!(error = %e, "could not notify the service manager of readiness");
    }

    let stop = wait_for_stop();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            stopped = &mut stop => { stopped?; break; }
            guard = ring.readable_mut() => {
                let mut guard = guard.context("waiting for kernel events")?;
                drain(guard.get_inner_mut());
                guard.clear_ready();
            }
        }
    }
    // Events written between the last wake-up and the signal are still owed.
    drain(ring.get_mut());
    let decisions = enforcer.decisions()?;
    let fields: Vec<String> = decisions
        .iter()
        .map(|(r, n)| format!("{}={n}", r.name()))
        .collect();
    info!(
        decisions = %fields.join(","),
        event_drops = enforcer.event_drops()?,
        "stopping; enforcement ends with this process"
    );
    Ok(())
}

/// Writes every pending event as a JSON line on stdout (the event sink until the lineage
/// replaces it). A malformed record is logged, never silently skipped.
fn drain(ring: &mut RingBuf<MapData>) {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    while let Some(item) = ring.next() {
        match events::parse(&item) {
            Ok(record) => match serde_json::to_string(&record) {
                Ok(line) => {
                    if let Err(e) = writeln!(out, "{line}") {
                        warn!(error = %e, "cannot write an event to stdout");
                    }
                }
                Err(e) => warn!(error = %e, "cannot serialise an event"),
            },
            Err(e) => warn!(error = %e, "malformed event from the kernel"),
        }
    }
    if let Err(e) = out.flush() {
        warn!(error = %e, "cannot flush events to stdout");
    }
}

async fn wait_for_stop() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = int.recv() => info!("SIGINT received"),
    }
    Ok(())
}
