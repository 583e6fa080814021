//! `rampart run`: load, govern, enforce until told to stop.

use std::{collections::HashSet, path::PathBuf, time::SystemTime};

use anyhow::{Context, Result};
use tokio::io::{unix::AsyncFd, Interest};
use tracing::{error, info, warn};

pub use crate::intake::{BundleLocation, BundleSource, PolicyOrigin};
use crate::{
    btf::Btf,
    bundle::{cli as bundle_cli, unix_now},
    cgroup,
    config::Fallback,
    control,
    intake::{no_policy, prepare, DirWatch, Incoming, Refusal},
    layout,
    loader::Enforcer,
    policy::compile::CompiledPolicy,
    preflight,
    recorder::{drain, LineageSettings, Recorder},
    swap::{self, Generation},
};

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
    /// With no valid policy at start: these cgroups fall back to deny-all or audit
    /// (None: the agent refuses to start).
    pub no_policy: Option<(Vec<String>, Fallback)>,
    /// The control socket (`policy push`, `status`), if any.
    pub control_socket: Option<PathBuf>,
    /// The configuration file this came from (re-read on SIGHUP).
    pub config_file: Option<PathBuf>,
}

impl RunConfig {
    /// Policy flags the host configuration adds to every slot it loads.
    fn extra_flags(&self) -> u32 {
        if self.audit_when_expired {
            rampart_common::policy_flags::EXPIRED_AUDIT
        } else {
            0
        }
    }

    /// Re-reads the configuration file: the policy settings take effect now; the lineage,
    /// pin directory and control socket are fixed for the process (a change is logged).
    fn reread(&mut self) -> Result<()> {
        let Some(path) = self.config_file.clone() else {
            return Ok(());
        };
        let mut next = RunConfig::from(crate::config::Config::read(&path)?);
        next.config_file = Some(path);
        let fixed =
            |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
        if fixed(&next.lineage, &self.lineage)
            || next.pin_dir != self.pin_dir
            || next.control_socket != self.control_socket
        {
            warn!("[lineage] and [daemon] changes take effect at the next restart");
        }
        self.origin = next.origin;
        self.no_policy = next.no_policy;
        self.audit_when_expired = next.audit_when_expired;
        Ok(())
    }
}

impl From<crate::config::Config> for RunConfig {
    fn from(c: crate::config::Config) -> Self {
        let p = c.policy;
        Self {
            origin: PolicyOrigin::Bundle(BundleSource {
                location: BundleLocation::Dir(p.bundle_dir),
                trust: p.trust,
                state: p.state_dir,
                scope: p.scope,
                clock_skew: p.clock_skew.as_secs(),
                allowed: Some(p.governs.clone()),
            }),
            lineage: c.lineage.map(|l| LineageSettings {
                dir: l.dir,
                host_key: l.host_key,
                checkpoint_every: l.checkpoint_every,
                checkpoint_interval: l.checkpoint_interval,
                segment_bytes: l.segment_bytes,
            }),
            audit_when_expired: p.on_expiry == Fallback::Audit,
            pin_dir: Some(c.daemon.pin_dir),
            no_policy: Some((p.governs, p.on_no_policy)),
            control_socket: Some(c.daemon.control_socket),
            config_file: None,
        }
    }
}

/// Bundle files already refused (path, size, mtime): refused once, not at every reload.
type Reported = HashSet<(PathBuf, u64, Option<SystemTime>)>;

/// Verifies and compiles the configured policy; bundles of a directory that were refused
/// are logged and recorded once each.
fn intake(
    config: &RunConfig,
    recorder: &mut Recorder,
    reported: &mut Reported,
) -> Result<Incoming, Refusal> {
    let extra_flags = config.extra_flags();
    let mut skipped = Vec::new();
    let result = prepare(&config.origin, extra_flags, &mut skipped);
    for (path, r) in skipped {
        let meta = std::fs::metadata(&path).ok();
        let key = (
            path.clone(),
            meta.as_ref().map_or(0, |m| m.len()),
            meta.and_then(|m| m.modified().ok()),
        );
        if reported.insert(key) {
            let error = format!("{}: {:#}", path.display(), r.error);
            warn!(code = r.code, error = %error, "bundle refused; not loaded");
            recorder.policy_refused(r.code, &error);
        }
    }
    result
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

/// The generations events may come from, newest first (for annotating them).
fn generations(in_force: Option<&InForce>) -> Vec<&Generation> {
    in_force.map_or_else(Vec::new, |f| {
        std::iter::once(&f.current)
            .chain(f.previous.as_ref())
            .collect()
    })
}

/// A duration in milliseconds, to 0.1 ms, for logs.
fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

/// The policy in force and the one before it (events already in the ring may come from it).
struct InForce {
    current: Generation,
    previous: Option<Generation>,
    digest: Option<String>,
    expires_at: Option<u64>,
    scope: Option<String>,
    signers: Vec<String>,
}

/// Loads `incoming` over what is in force; on success records the bundle in the
/// anti-rollback state and logs the change.
fn apply(
    enforcer: &mut Enforcer,
    recorder: &mut Recorder,
    hierarchy: &std::path::Path,
    in_force: Option<InForce>,
    mut incoming: Incoming,
) -> (Option<InForce>, Result<(), Refusal>) {
    warn_missing_programs(&incoming.policies);
    let current = in_force.as_ref().map(|f| &f.current);
    let generation = match swap::switch(
        enforcer,
        hierarchy,
        current,
        incoming.policies,
        incoming.info,
        &mut incoming.times,
    ) {
        Ok(g) => g,
        Err(e) => return (in_force, Err(Refusal::new("load", e))),
    };
    let t = incoming.times;
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
                verify_ms = ms(t.verify), compile_ms = ms(t.compile), install_ms = ms(t.install),
                switch_ms = ms(t.switch), retire_ms = ms(t.retire),
                in_force_ms = ms(t.to_in_force()),
                "policy in force"
            );
            (
                Some(verified.digest.clone()),
                Some(verified.payload.expires_at),
            )
        }
        None => {
            info!(
                version = 0,
                compile_ms = ms(t.compile),
                install_ms = ms(t.install),
                switch_ms = ms(t.switch),
                retire_ms = ms(t.retire),
                in_force_ms = ms(t.to_in_force()),
                "policy in force (unsigned local files)"
            );
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
        scope: incoming
            .bundle
            .as_ref()
            .map(|(v, _)| v.payload.scope.clone()),
        signers,
    };
    (Some(forced), Ok(()))
}

/// Runs the enforcer until SIGINT or SIGTERM; SIGHUP reloads the policy (a bundle that
/// fails any check changes nothing).
pub async fn run(mut config: RunConfig) -> Result<()> {
    preflight::check_kernel()?;
    let raw = Btf::from_sys_fs().context("reading /sys/kernel/btf/vmlinux")?;
    let btf = Btf::parse(&raw).context("parsing the kernel's BTF")?;
    let layout = layout::resolve(&btf).context(
        "this kernel's struct layout is not one Rampart can read; please report the kernel version",
    )?;
    let hierarchy = cgroup::hierarchy_root()?;
    let mut recorder = Recorder::open(config.lineage.as_ref(), 0)?;

    // Verify and compile before touching the kernel: a bad policy changes nothing.
    let mut reported = Reported::new();
    let incoming = match intake(&config, &mut recorder, &mut reported) {
        Ok(i) => i,
        Err(r) => match &config.no_policy {
            Some((cgroups, fallback)) => {
                refused(&r, None, &mut recorder);
                warn!(fallback = ?fallback, cgroups = %cgroups.join(","),
                    "no valid policy: the configured cgroups fall back to policy.on_no_policy");
                no_policy(cgroups, *fallback)
            }
            None => {
                recorder.policy_refused(r.code, &format!("{:#}", r.error));
                recorder.close("no valid policy at start");
                return Err(r.error.context(format!("policy refused ({})", r.code)));
            }
        },
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
                scope: None,
                signers: Vec::new(),
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
    let bundle_dir = match &config.origin {
        PolicyOrigin::Bundle(BundleSource {
            location: BundleLocation::Dir(dir),
            ..
        }) => Some(dir.as_path()),
        _ => None,
    };
    let mut dir_watch = DirWatch::new(bundle_dir)?;
    let mut reload_at: Option<tokio::time::Instant> = None;
    let mut released = false;
    let control = match &config.control_socket {
        Some(path) => Some(control::bind(path)?),
        None => None,
    };
    // Lineage durability (at least every 100 ms) and the kernel's drop counter.
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let expiry = expiry_timer(in_force.as_ref().and_then(|f| f.expires_at));
        tokio::select! {
            stopped = &mut stop => { stopped?; break; }
            guard = ring.readable_mut() => {
                let mut guard = guard.context("waiting for kernel events")?;
                drain(guard.get_inner_mut(), &generations(in_force.as_ref()), &mut recorder);
                guard.clear_ready();
            }
            _ = tick.tick() => {
                recorder.drops(enforcer.event_drops()?);
                recorder.tick();
            }
            _ = hup.recv() => {
                info!("SIGHUP received: re-reading the configuration, reloading the policy (and re-pinning programs)");
                if let Err(e) = config.reread() {
                    error!(error = %format!("{e:#}"), "configuration not reloaded; the previous one stays");
                    recorder.policy_refused("config-invalid", &format!("{e:#}"));
                }
                // Events of the generation about to be retired are annotated first.
                drain(ring.get_mut(), &generations(in_force.as_ref()), &mut recorder);
                reload(&config, &mut enforcer, &mut recorder, &hierarchy, &mut in_force, &mut reported, true);
            }
            conn = accept(control.as_ref()) => {
                // A failed accept (e.g. out of descriptors) must not stop the enforcer.
                let mut stream = match conn {
                    Ok(s) => s,
                    Err(e) => {
                        warn!(error = %format!("{e:#}"), "control socket accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                drain(ring.get_mut(), &generations(in_force.as_ref()), &mut recorder);
                let response = match control::read_request(&mut stream).await {
                    Err(e) => control::Response::Error { error: format!("{e:#}") },
                    Ok(control::Request::Status) => control::Response::Status(Box::new(
                        status(&config, &enforcer, &recorder, in_force.as_ref()),
                    )),
                    Ok(control::Request::Push { bundle }) => push(
                        &config, &bundle, &mut enforcer, &mut recorder, &hierarchy, &mut in_force,
                    ),
                    Ok(control::Request::Release) => match &config.pin_dir {
                        None => control::Response::Error {
                            error: "this daemon is not pinned: stopping it ends enforcement".into(),
                        },
                        Some(dir) => match crate::loader::release(dir) {
                            Ok((links, maps)) => {
                                warn!(pin_dir = %dir.display(), links, maps,
                                    "released (break-glass): nothing is enforced");
                                recorder.release(&dir.display().to_string(), links as u64, maps as u64);
                                released = true;
                                control::Response::Released { links: links as u64, maps: maps as u64 }
                            }
                            Err(e) => control::Response::Error { error: format!("{e:#}") },
                        },
                    },
                };
                if let Err(e) = control::write_response(&mut stream, &response).await {
                    warn!(error = %format!("{e:#}"), "cannot answer on the control socket");
                }
                if released {
                    break;
                }
            }
            _ = dir_watch.changed() => {
                // Let a burst of changes (a copy, several files) settle into one reload.
                reload_at = Some(tokio::time::Instant::now() + std::time::Duration::from_millis(100));
            }
            _ = deadline(reload_at) => {
                reload_at = None;
                drain(ring.get_mut(), &generations(in_force.as_ref()), &mut recorder);
                reload(&config, &mut enforcer, &mut recorder, &hierarchy, &mut in_force, &mut reported, false);
            }
            _ = expiry => {
                warn!("the bundle in force has expired: governed cgroups now fail closed \
                    (reason policy-expired) until a newer bundle is loaded");
                if let Some(f) = in_force.as_mut() { f.expires_at = None; }
            }
        }
    }
    // Events written between the last wake-up and the signal are still owed.
    drain(
        ring.get_mut(),
        &generations(in_force.as_ref()),
        &mut recorder,
    );
    recorder.drops(enforcer.event_drops()?);
    recorder.close(if released {
        "released"
    } else {
        "SIGTERM or SIGINT"
    });
    let decisions = enforcer.decisions()?;
    let fields: Vec<String> = decisions
        .iter()
        .map(|(r, n)| format!("{}={n}", r.name()))
        .collect();
    let drops = enforcer.event_drops()?;
    match &config.pin_dir {
        Some(_) if released => info!(decisions = %fields.join(","), event_drops = drops,
            "stopping after the release; nothing is enforced"),
        Some(dir) => info!(decisions = %fields.join(","), event_drops = drops,
            pin_dir = %dir.display(),
            "stopping; enforcement stays pinned (`rampart release` removes it)"),
        None => info!(decisions = %fields.join(","), event_drops = drops,
            "stopping; enforcement ends with this process"),
    }
    Ok(())
}

/// Verifies, compiles and swaps in the configured policy; a refusal keeps the one in force.
/// Unless `force`, the bundle already in force is not loaded again.
fn reload(
    config: &RunConfig,
    enforcer: &mut Enforcer,
    recorder: &mut Recorder,
    hierarchy: &std::path::Path,
    in_force: &mut Option<InForce>,
    reported: &mut Reported,
    force: bool,
) {
    match intake(config, recorder, reported) {
        Ok(incoming) => {
            let digest = incoming.bundle.as_ref().map(|(v, _)| v.digest.as_str());
            let current = in_force.as_ref().and_then(|f| f.digest.as_deref());
            if !force && digest.is_some() && digest == current {
                return;
            }
            let (next, loaded) = apply(enforcer, recorder, hierarchy, in_force.take(), incoming);
            *in_force = next;
            if let Err(r) = loaded {
                refused(&r, in_force.as_ref(), recorder);
            }
        }
        Err(r) => refused(&r, in_force.as_ref(), recorder),
    }
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

/// The next connection on the control socket (never, without one).
async fn accept(listener: Option<&tokio::net::UnixListener>) -> Result<tokio::net::UnixStream> {
    match listener {
        Some(l) => Ok(l
            .accept()
            .await
            .context("accepting on the control socket")?
            .0),
        None => std::future::pending().await,
    }
}

/// What `rampart status` shows.
fn status(
    config: &RunConfig,
    enforcer: &Enforcer,
    recorder: &Recorder,
    in_force: Option<&InForce>,
) -> serde_json::Value {
    let decisions: serde_json::Map<String, serde_json::Value> = enforcer
        .decisions()
        .unwrap_or_default()
        .into_iter()
        .map(|(r, n)| (r.name().to_owned(), n.into()))
        .collect();
    let current = in_force.map(|f| &f.current);
    serde_json::json!({
        "version": current.map(|g| g.info.version),
        "digest": in_force.and_then(|f| f.digest.clone()),
        "scope": in_force.and_then(|f| f.scope.clone()),
        "expires": in_force.and_then(|f| f.expires_at).map(bundle_cli::rfc3339),
        "signers": in_force.map(|f| f.signers.clone()).unwrap_or_default(),
        "policies": current.map(|g| g.policies.iter().map(|(_, p)| p.name.clone()).collect::<Vec<_>>()),
        "governed": current.map(|g| g.governed.iter().map(|(_, c)| c.path.display().to_string()).collect::<Vec<_>>()),
        "pinned": enforcer.pinned(),
        "pin_dir": config.pin_dir.as_ref().map(|d| d.display().to_string()),
        "decisions": decisions,
        "event_drops": enforcer.event_drops().ok(),
        "lineage": recorder.lineage_status(),
    })
}

/// `rampart policy push`: verifies the bundle exactly as one from the bundle directory,
/// loads it if it is valid and newer, and keeps it in the directory.
fn push(
    config: &RunConfig,
    b64: &str,
    enforcer: &mut Enforcer,
    recorder: &mut Recorder,
    hierarchy: &std::path::Path,
    in_force: &mut Option<InForce>,
) -> control::Response {
    let rejected = |code: &str, error: String| control::Response::Rejected {
        code: code.into(),
        error,
    };
    let PolicyOrigin::Bundle(src) = &config.origin else {
        return rejected(
            "no-bundle-dir",
            "this daemon loads local policy files".into(),
        );
    };
    let BundleLocation::Dir(dir) = &src.location else {
        return rejected(
            "no-bundle-dir",
            "this daemon was started on one bundle file; run it with --config to accept pushes"
                .into(),
        );
    };
    let bytes = match control::decode_bundle(b64) {
        Ok(b) => b,
        Err(e) => return rejected("malformed-envelope", format!("{e:#}")),
    };
    let tmp = dir.join(format!(".push-{}.tmp", std::process::id()));
    if let Err(e) = std::fs::write(&tmp, &bytes) {
        return rejected("io", format!("writing {}: {e}", tmp.display()));
    }
    let origin = PolicyOrigin::Bundle(BundleSource {
        location: BundleLocation::File(tmp.clone()),
        ..src.clone()
    });
    let extra_flags = config.extra_flags();
    let result = prepare(&origin, extra_flags, &mut Vec::new()).and_then(|incoming| {
        let version = incoming.info.version;
        let digest = incoming
            .bundle
            .as_ref()
            .map(|(v, _)| v.digest.clone())
            .unwrap_or_default();
        if in_force.as_ref().and_then(|f| f.digest.as_deref()) == Some(digest.as_str()) {
            return Err(Refusal::new(
                "already-in-force",
                anyhow::anyhow!("version {version} is already in force"),
            ));
        }
        let (next, loaded) = apply(enforcer, recorder, hierarchy, in_force.take(), incoming);
        *in_force = next;
        loaded.map(|()| (version, digest))
    });
    match result {
        Ok((version, digest)) => {
            let kept = dir.join(format!("pushed-v{version}.rpb"));
            if let Err(e) = std::fs::rename(&tmp, &kept) {
                warn!(error = %e, "the pushed bundle is in force but could not be kept in the bundle directory");
            }
            control::Response::Loaded { version, digest }
        }
        Err(r) => {
            let _ = std::fs::remove_file(&tmp);
            refused(&r, in_force.as_ref(), recorder);
            rejected(r.code, format!("{:#}", r.error))
        }
    }
}

/// Completes at `at` (never, without one).
async fn deadline(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
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
