//! `rampart run`: load, govern, enforce until told to stop.

use std::{io::Write, path::PathBuf};

use anyhow::{Context, Result};
use aya::maps::{MapData, RingBuf};
use tokio::io::{unix::AsyncFd, Interest};
use tracing::{info, warn};

use crate::{
    btf::Btf,
    cgroup::{self, Cgroup},
    events::{self, DecisionRecord},
    layout,
    loader::Enforcer,
    policy::{self, compile::CompiledPolicy},
    preflight,
};

/// What `rampart run` enforces. Interim: policy files from the command line, unsigned
/// (version 0), until signed policy bundles land.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub policies: Vec<PathBuf>,
}

/// Runs the enforcer until SIGINT or SIGTERM.
pub async fn run(config: RunConfig) -> Result<()> {
    let RunConfig { policies } = config;
    preflight::check_kernel()?;
    let raw = Btf::from_sys_fs().context("reading /sys/kernel/btf/vmlinux")?;
    let btf = Btf::parse(&raw).context("parsing the kernel's BTF")?;
    let layout = layout::resolve(&btf).context(
        "this kernel's struct layout is not one Rampart can read; please report the kernel version",
    )?;

    // Compile and resolve everything before touching the kernel: a bad policy or path
    // changes nothing.
    let compiled = policy::host::compile_files(&policies, &policy::host::Host)?;
    let root = cgroup::hierarchy_root()?;
    let mut governed: Vec<(usize, Cgroup)> = Vec::new();
    for (slot, p) in compiled.iter().enumerate() {
        for name in &p.governs {
            governed.push((slot, cgroup::open_in_hierarchy(&root, name)?));
        }
        for e in p
            .paths
            .iter()
            .filter(|e| e.access & rampart_common::access::RUN != 0)
        {
            if e.identity.is_none() {
                warn!(policy = %p.name, path = %e.path,
                    "exec rule names a file that does not exist on this host; nothing runs from it");
            }
        }
    }

    let mut enforcer = Enforcer::load(&layout)?;
    for (slot, p) in compiled.iter().enumerate() {
        enforcer.install(slot as u32, 0, p)?;
        info!(
            policy = %p.name, slot, mode = ?p.mode, rules = p.rules.len(),
            path_entries = p.paths.len(), net_entries = p.net4.len() + p.net6.len(),
            "policy loaded"
        );
    }
    for (_, cgroup) in &governed {
        enforcer.attach_network(cgroup)?;
    }
    for (slot, cgroup) in &governed {
        enforcer.govern(cgroup, *slot as u32)?;
        info!(cgroup = %cgroup.path.display(), id = cgroup.id, policy = %compiled[*slot].name, "governing");
    }
    info!(
        governed = governed.len(),
        policies = compiled.len(),
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
                drain(guard.get_inner_mut(), &compiled);
                guard.clear_ready();
            }
        }
    }
    // Events written between the last wake-up and the signal are still owed.
    drain(ring.get_mut(), &compiled);
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
fn drain(ring: &mut RingBuf<MapData>, policies: &[CompiledPolicy]) {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    while let Some(item) = ring.next() {
        match events::parse(&item) {
            Ok(mut record) => match serde_json::to_string(annotate(&mut record, policies)) {
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

/// Names the policy and rule of a record from the policies loaded into the kernel.
fn annotate<'a>(record: &'a mut DecisionRecord, policies: &[CompiledPolicy]) -> &'a DecisionRecord {
    if let Some(p) = policies.get(record.policy_id as usize) {
        record.policy = Some(p.name.clone());
        record.rule = record
            .rule_id
            .and_then(|id| p.rule(id))
            .map(|r| r.field.clone());
    }
    record
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
