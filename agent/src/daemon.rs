//! `rampart run`: load, govern, enforce until told to stop.

use std::{io::Write, path::PathBuf};

use anyhow::{Context, Result};
use aya::maps::{MapData, RingBuf};
use tokio::io::{unix::AsyncFd, Interest};
use tracing::{error, info, warn};

use crate::{
    btf::Btf,
    bundle::{
        cli as bundle_cli,
        state::{self, StateDir},
        unix_now, BundleError, TrustRoot, VerifiedBundle,
    },
    cgroup,
    events::{self, DecisionRecord},
    layout,
    loader::{Enforcer, SlotInfo},
    policy::{self, compile::CompiledPolicy, PolicySource},
    preflight,
    recorder::{LineageSettings, Recorder},
    swap::{self, Generation},
};

/// Where the policy comes from.
#[derive(Debug, Clone)]
pub enum PolicyOrigin {
    /// Unsigned local policy files (version 0): for development and first trials.
    Files(Vec<PathBuf>),
    /// A signed bundle, verified against a trust root, with anti-rollback state.
    Bundle(BundleSource),
}

/// A signed bundle and what it is checked against.
#[derive(Debug, Clone)]
pub struct BundleSource {
    pub bundle: PathBuf,
    pub trust: PathBuf,
    pub state: PathBuf,
    /// This host's scope (default: the trust root's).
    pub scope: Option<String>,
    pub clock_skew: u64,
}

/// What `rampart run` enforces.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub origin: PolicyOrigin,
    /// Where the lineage goes (none: decisions only on stdout).
    pub lineage: Option<LineageSettings>,
    /// When the bundle in force expires: audit (allow and record) instead of deny.
    pub audit_when_expired: bool,
    /// Where programs, links and maps are pinned (None: enforcement ends with the agent).
    pub pin_dir: Option<PathBuf>,
}

/// A policy set ready to load, and what to record once it is.
struct Incoming {
    policies: Vec<CompiledPolicy>,
    info: SlotInfo,
    bundle: Option<(VerifiedBundle, StateDir)>,
}

/// CLOCK_BOOTTIME now, in nanoseconds (the clock `bpf_ktime_get_boot_ns` reads).
fn boot_ns() -> Result<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid, owned `ts`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    anyhow::ensure!(rc == 0, "clock_gettime(CLOCK_BOOTTIME) failed");
    Ok(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// Reads, verifies and compiles the policy from `origin` (pinning exec identities anew),
/// changing nothing.
fn prepare(config: &RunConfig) -> Result<Incoming, Refusal> {
    let extra_flags = if config.audit_when_expired {
        rampart_common::policy_flags::EXPIRED_AUDIT
    } else {
        0
    };
    match &config.origin {
        PolicyOrigin::Files(files) => Ok(Incoming {
            policies: policy::host::compile_files(files, &policy::host::Host)
                .map_err(|e| Refusal::new("compile", e))?,
            info: SlotInfo {
                version: 0,
                expires_boot_ns: 0,
                extra_flags,
            },
            bundle: None,
        }),
        PolicyOrigin::Bundle(src) => {
            let refuse = |e: BundleError| Refusal::new(e.code(), anyhow::anyhow!(e));
            let trust = TrustRoot::read(&src.trust).map_err(refuse)?;
            let scope = src.scope.clone().unwrap_or_else(|| trust.scope.clone());
            let now = unix_now();
            let verified =
                bundle_cli::verify_file(&src.bundle, &trust, &scope, src.clock_skew, now)
                    .map_err(refuse)?;
            let state = StateDir::new(&src.state);
            // The same bundle again (a reload re-pins identities) passes; older or
            // equivocating ones do not.
            state::check(state.load().map_err(refuse)?.as_ref(), &verified).map_err(refuse)?;
            let sources = verified
                .payload
                .policies
                .iter()
                .map(|f| PolicySource::parse(&f.name, &f.source))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Refusal::new("compile", e.into()))?;
            let policies = policy::host::compile_sources(&sources, &policy::host::Host)
                .map_err(|e| Refusal::new("compile", e))?;
            let left = verified.payload.expires_at.saturating_sub(now);
            let expires_boot_ns = boot_ns()
                .map_err(|e| Refusal::new("clock", e))?
                .saturating_add(left.saturating_mul(1_000_000_000));
            Ok(Incoming {
                policies,
                info: SlotInfo {
                    version: verified.payload.version,
                    expires_boot_ns,
                    extra_flags,
                },
                bundle: Some((verified, state)),
            })
        }
    }
}

/// Why a policy was not loaded: a stable code and the full reason.
struct Refusal {
    code: &'static str,
    error: anyhow::Error,
}

impl Refusal {
    fn new(code: &'static str, error: anyhow::Error) -> Self {
        Self { code, error }
    }
}

/// Warns about exec rules that name nothing on this host.
fn warn_missing_programs(policies: &[CompiledPolicy]) {
    for p in policies {
        for e in p
            .paths
            .iter()
            .filter(|e| e.access & rampart_common::access::RUN != 0 && e.identity.is_none())
        {
            warn!(policy = %p.name, path = %e.path,
                "exec rule names a file that does not exist on this host; nothing runs from it");
        }
    }
}

/// The policy in force and the one before it (events already in the ring may come from it).
struct InForce {
    current: Generation,
    previous: Option<Generation>,
    digest: Option<String>,
    expires_at: Option<u64>,
}

/// Loads `incoming` over what is in force; on success records the bundle in the
/// anti-rollback state and logs the change.
fn apply(
    enforcer: &mut Enforcer,
    recorder: &mut Recorder,
    hierarchy: &std::path::Path,
    in_force: Option<InForce>,
    incoming: Incoming,
) -> (Option<InForce>, Result<(), Refusal>) {
    warn_missing_programs(&incoming.policies);
    let current = in_force.as_ref().map(|f| &f.current);
    let generation = match swap::switch(
        enforcer,
        hierarchy,
        current,
        incoming.policies,
        incoming.info,
    ) {
        Ok(g) => g,
        Err(e) => return (in_force, Err(Refusal::new("load", e))),
    };
    let (digest, expires_at) = match &incoming.bundle {
        Some((verified, state)) => {
            if let Err(e) = state.advance(verified, unix_now()) {
                // The kernel enforces the verified bundle; only its record failed.
                error!(error = %e, "bundle loaded, but the anti-rollback state was not advanced");
            }
            info!(
                version = verified.payload.version,
                digest = %verified.digest,
                scope = %verified.payload.scope,
                expires = %bundle_cli::rfc3339(verified.payload.expires_at),
                signers = %verified.signers.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
                "policy in force"
            );
            (
                Some(verified.digest.clone()),
                Some(verified.payload.expires_at),
            )
        }
        None => {
            info!(version = 0, "policy in force (unsigned local files)");
            (None, None)
        }
    };
    let names: Vec<String> = generation
        .policies
        .iter()
        .map(|(_, p)| p.name.clone())
        .collect();
    let signers: Vec<String> = incoming
        .bundle
        .as_ref()
        .map(|(v, _)| v.signers.iter().map(ToString::to_string).collect())
        .unwrap_or_default();
    recorder.policy_change(
        in_force
            .as_ref()
            .map(|f| (f.current.info.version, f.digest.as_deref())),
        (generation.info.version, digest.as_deref()),
        &signers,
        &names,
    );
    for (slot, p) in &generation.policies {
        info!(
            policy = %p.name, slot, mode = ?p.mode, rules = p.rules.len(),
            path_entries = p.paths.len(), net_entries = p.net4.len() + p.net6.len(),
            governs = %p.governs.join(","), "policy loaded"
        );
    }
    let forced = InForce {
        previous: in_force.map(|f| f.current),
        current: generation,
        digest,
        expires_at,
    };
    (Some(forced), Ok(()))
}

/// Runs the enforcer until SIGINT or SIGTERM; SIGHUP reloads the policy (a bundle that
/// fails any check changes nothing).
pub async fn run(config: RunConfig) -> Result<()> {
    preflight::check_kernel()?;
    let raw = Btf::from_sys_fs().context("reading /sys/kernel/btf/vmlinux")?;
    let btf = Btf::parse(&raw).context("parsing the kernel's BTF")?;
    let layout = layout::resolve(&btf).context(
        "this kernel's struct layout is not one Rampart can read; please report the kernel version",
    )?;
    let hierarchy = cgroup::hierarchy_root()?;
    let mut recorder = Recorder::open(config.lineage.as_ref(), 0)?;

    // Verify and compile before touching the kernel: a bad policy changes nothing.
    let incoming = match prepare(&config) {
        Ok(i) => i,
        Err(r) => {
            recorder.policy_refused(r.code, &format!("{:#}", r.error));
            recorder.close("no valid policy at start");
            return Err(r.error.context(format!("policy refused ({})", r.code)));
        }
    };
    let mut enforcer = match &config.pin_dir {
        Some(dir) => Enforcer::load_pinned(&layout, dir)?,
        None => Enforcer::load(&layout)?,
    };
    // What an earlier agent left pinned stays in force until the switch below replaces it.
    let adopted = if enforcer.pinned() {
        Generation::adopt(&mut enforcer)?.map(|g| {
            info!(
                version = g.info.version,
                slots = g.slots.len(),
                governed = g.governed.len(),
                "adopting the policy an earlier agent left pinned"
            );
            InForce {
                current: g,
                previous: None,
                digest: None,
                expires_at: None,
            }
        })
    } else {
        None
    };
    recorder.start_drops(adopted.is_some(), enforcer.event_drops()?);
    let (mut in_force, loaded) = apply(&mut enforcer, &mut recorder, &hierarchy, adopted, incoming);
    if let Err(r) = loaded {
        recorder.policy_refused(r.code, &format!("{:#}", r.error));
        recorder.close("policy not loaded at start");
        return Err(r.error.context(format!("policy not loaded ({})", r.code)));
    }
    let retired = enforcer.retire_previous_links()?;
    if let Some(f) = &in_force {
        info!(
            governed = f.current.governed.len(),
            policies = f.current.policies.len(),
            pinned = enforcer.pinned(),
            earlier_links_detached = retired,
            "enforcing"
        );
    }
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
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    // Lineage durability (at least every 100 ms) and the kernel's drop counter.
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let expiry = expiry_timer(in_force.as_ref().and_then(|f| f.expires_at));
        tokio::select! {
            stopped = &mut stop => { stopped?; break; }
            guard = ring.readable_mut() => {
                let mut guard = guard.context("waiting for kernel events")?;
                drain(guard.get_inner_mut(), in_force.as_ref(), &mut recorder);
                guard.clear_ready();
            }
            _ = tick.tick() => {
                recorder.drops(enforcer.event_drops()?);
                recorder.tick();
            }
            _ = hup.recv() => {
                info!("SIGHUP received: reloading the policy (and re-pinning programs)");
                // Events of the generation about to be retired are annotated first.
                drain(ring.get_mut(), in_force.as_ref(), &mut recorder);
                match prepare(&config) {
                    Ok(incoming) => {
                        let (next, loaded) = apply(&mut enforcer, &mut recorder, &hierarchy, in_force.take(), incoming);
                        in_force = next;
                        if let Err(r) = loaded {
                            refused(&r, in_force.as_ref(), &mut recorder);
                        }
                    }
                    Err(r) => refused(&r, in_force.as_ref(), &mut recorder),
                }
            }
            _ = expiry => {
                warn!("the bundle in force has expired: governed cgroups now fail closed \
                    (reason policy-expired) until a newer bundle is loaded");
                if let Some(f) = in_force.as_mut() { f.expires_at = None; }
            }
        }
    }
    // Events written between the last wake-up and the signal are still owed.
    drain(ring.get_mut(), in_force.as_ref(), &mut recorder);
    recorder.drops(enforcer.event_drops()?);
    recorder.close("SIGTERM or SIGINT");
    let decisions = enforcer.decisions()?;
    let fields: Vec<String> = decisions
        .iter()
        .map(|(r, n)| format!("{}={n}", r.name()))
        .collect();
    let drops = enforcer.event_drops()?;
    match &config.pin_dir {
        Some(dir) => info!(decisions = %fields.join(","), event_drops = drops,
            pin_dir = %dir.display(),
            "stopping; enforcement stays pinned (`rampart release` removes it)"),
        None => info!(decisions = %fields.join(","), event_drops = drops,
            "stopping; enforcement ends with this process"),
    }
    Ok(())
}

/// Logs and records a refused policy: the old one stays in force.
fn refused(r: &Refusal, in_force: Option<&InForce>, recorder: &mut Recorder) {
    recorder.policy_refused(r.code, &format!("{:#}", r.error));
    error!(
        code = r.code,
        error = %format!("{:#}", r.error),
        keeping_version = in_force.map(|f| f.current.info.version),
        "policy refused; the policy in force is unchanged"
    );
}

/// Completes when the bundle in force expires (never, without an expiry).
async fn expiry_timer(expires_at: Option<u64>) {
    match expires_at {
        Some(t) => {
            let left = t.saturating_sub(unix_now());
            tokio::time::sleep(std::time::Duration::from_secs(left)).await;
        }
        None => std::future::pending().await,
    }
}

/// Hands every pending event to the recorder (stdout and the lineage). A malformed record
/// is logged, never silently skipped.
fn drain(ring: &mut RingBuf<MapData>, in_force: Option<&InForce>, recorder: &mut Recorder) {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    while let Some(item) = ring.next() {
        match events::parse(&item) {
            Ok(mut record) => recorder.decision(&mut out, annotate(&mut record, in_force)),
            Err(e) => warn!(error = %e, "malformed event from the kernel"),
        }
    }
    if let Err(e) = out.flush() {
        warn!(error = %e, "cannot flush events to stdout");
    }
}

/// Names the policy and rule of a record from the generation that decided it.
fn annotate<'a>(record: &'a mut DecisionRecord, in_force: Option<&InForce>) -> &'a DecisionRecord {
    let policy = in_force.and_then(|f| {
        std::iter::once(&f.current)
            .chain(f.previous.as_ref())
            .find_map(|g| g.policy(record.policy_id, record.policy_version))
    });
    if let Some(p) = policy {
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
