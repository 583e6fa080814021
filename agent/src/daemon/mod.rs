//! `rampart run`: load, govern, enforce until told to stop.
//!
//! [`Daemon`] holds the enforcer, the recorder and the policy in force, with one method
//! per input the run loop waits on: a ring batch, the tick, SIGHUP, a bundle directory
//! change, a control request, the expiry of the bundle in force. [`run`] is only the loop.

#![warn(missing_docs)]

pub mod config;
pub mod control;
pub mod defaults;
pub mod in_force;
pub mod intake;
pub mod peer;
pub mod prepare;
pub mod recorder;
pub mod release_auth;
pub mod run_config;
pub mod swap;
pub mod watch;

use std::{
    collections::HashSet,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, Result};
use aya::maps::{MapData, RingBuf};
use tracing::{error, info, warn};

use self::{
    control::{Inbound, Request, Response},
    in_force::InForce,
    intake::{no_policy, prepare, BundleLocation, Incoming, PolicyOrigin, Refusal},
    prepare::{Job, Prepared, Purpose},
    recorder::{drain, Recorder},
    run_config::RunConfig,
    swap::Generation,
    watch::DirWatch,
};
use crate::{
    console::{
        live::{Live, PolicyView},
        metrics::{HookLabel, Metrics, RequestLabels, StepLabel, TamperLabels},
    },
    kernel::{
        btf::Btf,
        cgroup,
        enforcer::Enforcer,
        events::{self, EventRing},
        layout, pinned_state, preflight,
    },
    support::time::{rfc3339, unix_now},
};

/// Ticks (100 ms) between integrity checks of the pins and links.
const INTEGRITY_TICKS: u32 = 10;

/// Bundle files already refused (path, size, mtime): refused once, not at every reload.
type Reported = HashSet<(PathBuf, u64, Option<SystemTime>)>;

/// The running enforcer and everything it answers for.
pub struct Daemon {
    config: RunConfig,
    enforcer: Enforcer,
    recorder: Recorder,
    /// The cgroup v2 mount governed cgroup names are relative to.
    hierarchy: PathBuf,
    in_force: Option<InForce>,
    reported: Reported,
    /// Set once a release was carried out: the loop ends.
    released: bool,
    /// Pushes received (numbers their files).
    pushes: u64,
    /// Ticks since the last integrity check of the pins and links.
    ticks: u32,
    /// Pins removed or links detached behind the agent's back, and how many were put back.
    tamper_found: u64,
    tamper_repaired: u64,
    /// What `/metrics` exports, and the snapshots the console shows.
    metrics: Arc<Metrics>,
    live: tokio::sync::watch::Sender<Live>,
    /// Every kernel hook this agent attached, and whether it is in place.
    hooks: Vec<(String, bool)>,
    /// The last policy load's steps and seconds.
    load_seconds: Vec<(String, f64)>,
    /// Whether the bundle in force has expired (until the next load).
    expired: bool,
    /// The compiled policies in force, shared with the console's explain form.
    compiled: Arc<Vec<crate::policy::compile::CompiledPolicy>>,
}

impl Daemon {
    /// Checks the kernel, verifies and compiles the policy (a bad one changes nothing),
    /// loads the programs (adopting what an earlier agent pinned) and puts the policy in
    /// force. Returns the daemon and the event ring it must drain.
    pub fn start(config: RunConfig) -> Result<(Self, EventRing)> {
        preflight::check_kernel()?;
        let raw = Btf::from_sys_fs().context("reading /sys/kernel/btf/vmlinux")?;
        let btf = Btf::parse(&raw).context("parsing the kernel's BTF")?;
        let layout = layout::resolve(&btf).context(
            "this kernel's struct layout is not one Rampart can read; please report the kernel \
             version",
        )?;
        let hooks = layout::lsm_hooks(&btf).context("choosing the LSM programs for this kernel")?;
        let hierarchy = cgroup::hierarchy_root()?;
        // With a remote source the daemon keeps what it pulls in the bundle directory: on a
        // new host (e.g. a new Kubernetes node) it makes that directory itself.
        if let (Some(_), Some(dir)) = (&config.remote, config.bundle_dir()) {
            if !dir.exists() {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .with_context(|| format!("creating the bundle directory {}", dir.display()))?;
            }
        }
        // The lineage's anchor as pinned by an earlier agent: a lineage cut back while no
        // agent ran is recorded as truncated when it opens.
        let pinned_anchor = match config.pin_dir.as_deref().map(pinned_state::read_anchor) {
            Some(Ok(a)) => a,
            Some(Err(e)) => {
                error!(error = %format!("{e:#}"),
                    "the pinned lineage anchor is unreadable; only the anchor file counts");
                None
            }
            None => None,
        };
        let mut recorder = Recorder::open(config.lineage.as_ref(), 0, pinned_anchor)?;
        let metrics = Arc::new(Metrics::new());
        recorder.set_metrics(metrics.clone());
        let prepare_started = Instant::now();

        // Verify and compile before touching the kernel: a bad policy changes nothing.
        let mut reported = Reported::new();
        let incoming = match intake(&config, &mut recorder, &mut reported) {
            Ok(i) => i,
            Err(r) => match &config.no_policy {
                Some((cgroups, fallback)) => {
                    log_refusal(&r, None, &mut recorder);
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
        let prepare_seconds = prepare_started.elapsed().as_secs_f64();
        let mut enforcer = match &config.pin_dir {
            Some(dir) => Enforcer::load_pinned(&layout, &hooks, &hierarchy, dir)?,
            None => Enforcer::load(&layout, &hooks, &hierarchy)?,
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
                InForce::adopted(g)
            })
        } else {
            None
        };
        recorder.start_drops(adopted.is_some(), enforcer.event_drops()?);
        let attached = hooks
            .iter()
            .copied()
            .chain(rampart_common::programs::SOCK_ADDR.iter().copied())
            .map(|h| (h.to_owned(), true))
            .collect();
        let mut daemon = Self {
            config,
            enforcer,
            recorder,
            hierarchy,
            in_force: adopted,
            reported,
            released: false,
            pushes: 0,
            ticks: 0,
            tamper_found: 0,
            tamper_repaired: 0,
            metrics,
            live: tokio::sync::watch::Sender::new(Live::default()),
            hooks: attached,
            load_seconds: Vec::new(),
            expired: false,
            compiled: Arc::new(Vec::new()),
        };
        daemon.observe_load("prepare", prepare_seconds);
        if let Err(r) = daemon.load(incoming) {
            daemon
                .recorder
                .policy_refused(r.code, &format!("{:#}", r.error));
            daemon.recorder.close("policy not loaded at start");
            return Err(r.error.context(format!("policy not loaded ({})", r.code)));
        }
        let retired = daemon.enforcer.retire_previous_links()?;
        if let Some(f) = &daemon.in_force {
            info!(
                governed = f.current.governed.len(),
                policies = f.current.policies.len(),
                pinned = daemon.enforcer.pinned(),
                earlier_links_detached = retired,
                "enforcing"
            );
        }
        let ring =
            events::watch_ring(daemon.enforcer.take_events()?).context("polling the event ring")?;
        daemon.publish();
        Ok((daemon, ring))
    }

    /// The kernel wrote events: record them all.
    pub fn on_ring(&mut self, ring: &mut RingBuf<MapData>) {
        let generations = in_force::generations(self.in_force.as_ref());
        drain(ring, &generations, &mut self.recorder);
    }

    /// Every 100 ms: the kernel's drop counter, lineage durability, and the lineage anchor;
    /// every second the integrity of the pins and links.
    pub fn on_tick(&mut self) -> Result<()> {
        self.recorder.drops(self.enforcer.event_drops()?);
        self.recorder.tick();
        self.keep_anchor();
        self.ticks += 1;
        if self.ticks >= INTEGRITY_TICKS {
            self.ticks = 0;
            self.check_integrity();
            self.publish();
        }
        Ok(())
    }

    /// Puts back any pin removed or link detached while the agent runs (not after a
    /// release, which removes them on purpose), recording each as `tamper`.
    fn check_integrity(&mut self) {
        if self.released {
            return;
        }
        for t in self.enforcer.check_integrity() {
            self.tamper_found += 1;
            self.metrics
                .tamper
                .get_or_create(&TamperLabels {
                    what: t.what.to_owned(),
                    repaired: t.error.is_none().to_string(),
                })
                .inc();
            if t.error.is_some() {
                for (hook, attached) in &mut self.hooks {
                    if t.object.contains(hook.as_str()) {
                        *attached = false;
                    }
                }
            }
            match &t.error {
                None => {
                    self.tamper_repaired += 1;
                    error!(what = t.what, object = %t.object,
                        "enforcement was tampered with while the agent ran; put back");
                }
                Some(e) => error!(what = t.what, object = %t.object, error = %e,
                    "enforcement was tampered with while the agent ran and could not be put back"),
            }
            self.recorder.tamper(t.what, &t.object, t.error.as_deref());
        }
    }

    /// Keeps the lineage's latest checkpoint in the state directory and the pinned map.
    fn keep_anchor(&mut self) {
        if let Some(anchor) = self.recorder.keep_anchor() {
            if let Err(e) = self.enforcer.record_anchor(&anchor) {
                error!(error = %format!("{e:#}"), "could not pin the lineage anchor");
            }
        }
    }

    /// SIGHUP: re-read the configuration; returns the preparation that re-verifies and
    /// recompiles the policy (loading it re-pins programs).
    pub fn on_hangup(&mut self) -> Job {
        info!("SIGHUP received: re-reading the configuration, reloading the policy (and re-pinning programs)");
        if let Err(e) = self.config.reread() {
            error!(error = %format!("{e:#}"), "configuration not reloaded; the previous one stays");
            self.recorder
                .policy_refused("config-invalid", &format!("{e:#}"));
        }
        self.job(Purpose::Reload { force: true })
    }

    /// The bundle directory changed (and settled): the preparation that finds a newer
    /// valid bundle, if any.
    pub fn on_bundle_change(&mut self) -> Job {
        self.job(Purpose::Reload { force: false })
    }

    fn job(&self, purpose: Purpose) -> Job {
        Job {
            origin: self.config.origin.clone(),
            extra_flags: self.config.extra_flags(),
            purpose,
        }
    }

    /// A preparation finished: loads its policy (if it is one to load) and answers a push.
    pub fn on_prepared(&mut self, ring: &mut RingBuf<MapData>, prepared: Prepared) {
        report_skipped(prepared.skipped, &mut self.recorder, &mut self.reported);
        // Events of the generation about to be retired are annotated first.
        self.on_ring(ring);
        self.observe_load("prepare", prepared.seconds);
        match prepared.purpose {
            Purpose::Reload { force } => self.reload(prepared.result, force),
            Purpose::Push { answer, tmp, dir } => {
                let response = self.finish_push(prepared.result, &tmp, &dir);
                let _ = answer.send(response);
            }
            Purpose::Pull {
                tmp,
                dir,
                source,
                id,
            } => self.finish_pull(prepared.result, &tmp, &dir, &source, &id),
        }
    }

    /// The bundle in force expired: the kernel now fails closed on its own.
    pub fn on_expiry(&mut self) {
        warn!(
            "the bundle in force has expired: governed cgroups now fail closed (reason \
             policy-expired) until a newer bundle is loaded"
        );
        if let Some(f) = self.in_force.as_mut() {
            f.expires_at = None;
            self.expired = true;
        }
        self.publish();
    }

    /// A request on the control socket: answered on `answer` now, or, for a push, once
    /// the returned preparation has finished ([`Daemon::on_prepared`]).
    pub fn on_control(
        &mut self,
        request: Request,
        peer: &peer::Peer,
        answer: tokio::sync::oneshot::Sender<Response>,
    ) -> Option<Job> {
        let now = match request {
            Request::Status => {
                self.count_control("status", "answered");
                Response::Status(Box::new(self.status()))
            }
            Request::Push { bundle } => match self.push(&bundle) {
                Ok((tmp, dir)) => return Some(self.job_for_push(answer, tmp, dir)),
                Err(refused) => {
                    self.count_control("push", "rejected");
                    refused
                }
            },
            Request::Release { token } => {
                let response = self.release(token.as_deref(), peer);
                let result = if matches!(response, Response::Released { .. }) {
                    "released"
                } else {
                    "refused"
                };
                self.count_control("release", result);
                response
            }
        };
        let _ = answer.send(now);
        None
    }

    fn job_for_push(
        &self,
        answer: tokio::sync::oneshot::Sender<Response>,
        tmp: PathBuf,
        dir: PathBuf,
    ) -> Job {
        let purpose = Purpose::Push {
            answer,
            tmp: tmp.clone(),
            dir,
        };
        self.job_for_staged(purpose, tmp)
    }

    /// The preparation of a staged bundle (pushed or pulled): the configured checks, on
    /// that one file.
    fn job_for_staged(&self, purpose: Purpose, tmp: PathBuf) -> Job {
        let mut job = self.job(purpose);
        if let PolicyOrigin::Bundle(src) = &mut job.origin {
            src.location = BundleLocation::File(tmp);
        }
        job
    }

    /// A control client was refused: recorded in the lineage.
    pub fn on_control_refused(&mut self, peer: Option<peer::Peer>, error: &str) {
        self.count_control("connection", "refused");
        let (pid, uid, cgroup) =
            peer.map_or((0, u32::MAX, String::new()), |p| (p.pid, p.uid, p.cgroup));
        self.recorder.control_refused(pid, uid, &cgroup, error);
    }

    /// The cgroups whose processes the control socket refuses: every governed name in
    /// force and every cgroup this host lets bundles govern (and, through
    /// [`cgroup::within`], everything below them).
    pub fn guarded_cgroups(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .in_force
            .iter()
            .flat_map(|f| {
                f.current
                    .governed
                    .iter()
                    .chain(f.previous.iter().flat_map(|p| p.governed.iter()))
            })
            .map(|(_, c)| c.name.clone())
            .filter(|n| !n.is_empty())
            .collect();
        names.extend(
            self.config
                .host_governs()
                .iter()
                .map(|g| cgroup::normalize(g).unwrap_or_else(|_| g.clone())),
        );
        names.sort();
        names.dedup();
        names
    }

    /// Whether a release ended enforcement (the loop then stops).
    pub fn released(&self) -> bool {
        self.released
    }

    /// When the bundle in force expires (Unix seconds), if it does.
    pub fn expires_at(&self) -> Option<u64> {
        self.in_force.as_ref().and_then(|f| f.expires_at)
    }

    /// Records what is still owed and logs the final counters. Enforcement stays pinned
    /// unless released (or never pinned).
    pub fn stop(mut self, ring: &mut RingBuf<MapData>) -> Result<()> {
        // Events written between the last wake-up and the signal are still owed.
        self.on_ring(ring);
        self.recorder.drops(self.enforcer.event_drops()?);
        self.recorder.close(if self.released {
            "released"
        } else {
            "SIGTERM or SIGINT"
        });
        // After a release the pins are gone: the anchor file alone keeps the mark.
        self.keep_anchor();
        let decisions = self.enforcer.decisions()?;
        let fields: Vec<String> = decisions
            .iter()
            .map(|(r, n)| format!("{}={n}", r.name()))
            .collect();
        let drops = self.enforcer.event_drops()?;
        let quiet = self.enforcer.quiet_denials()?;
        match &self.config.pin_dir {
            Some(_) if self.released => info!(decisions = %fields.join(","), event_drops = drops,
                quiet_denials = quiet, "stopping after the release; nothing is enforced"),
            Some(dir) => info!(decisions = %fields.join(","), event_drops = drops,
                quiet_denials = quiet, pin_dir = %dir.display(),
                "stopping; enforcement stays pinned (`rampart release` removes it)"),
            None => info!(decisions = %fields.join(","), event_drops = drops,
                quiet_denials = quiet, "stopping; enforcement ends with this process"),
        }
        Ok(())
    }

    /// Loads `incoming` over what is in force; on success records the bundle in the
    /// anti-rollback state and the change in the lineage. On error the policy in force is
    /// unchanged.
    fn load(&mut self, incoming: Incoming) -> Result<(), Refusal> {
        // Preparations finish in any order: the anti-rollback rule is checked again against
        // the state as it is now (a v4 prepared while v5 loaded must not follow it).
        if let Some((verified, state)) = &incoming.bundle {
            let refused = |e: crate::bundle::BundleError| Refusal::new(e.code(), e.into());
            let floor = state.floor().map_err(refused)?;
            crate::bundle::state::check(floor.as_ref(), verified).map_err(refused)?;
        }
        let resolve = |name: &str| cgroup::open_in_hierarchy(&self.hierarchy, name);
        let previous = self.in_force.take();
        let started = Instant::now();
        let (next, result) = in_force::apply(
            &mut self.enforcer,
            &mut self.recorder,
            &resolve,
            previous,
            incoming,
        );
        self.in_force = next;
        if result.is_ok() {
            self.observe_load("swap", started.elapsed().as_secs_f64());
            self.expired = false;
            self.compiled = Arc::new(
                self.in_force
                    .iter()
                    .flat_map(|f| f.current.policies.iter().map(|(_, p)| p.clone()))
                    .collect(),
            );
        }
        self.publish();
        result
    }

    /// Records how long a step of putting a policy in force took.
    fn observe_load(&mut self, step: &str, seconds: f64) {
        self.metrics
            .load_duration
            .get_or_create(&StepLabel { step: step.into() })
            .observe(seconds);
        if step == "prepare" {
            self.load_seconds.clear();
        }
        self.load_seconds.push((step.to_owned(), seconds));
    }

    /// Counts a control request by its result.
    fn count_control(&self, request: &str, result: &str) {
        self.metrics
            .control
            .get_or_create(&RequestLabels {
                request: request.into(),
                result: result.into(),
            })
            .inc();
    }

    /// Sets the gauges and hands the console a fresh snapshot.
    fn publish(&mut self) {
        let m = &self.metrics;
        let f = self.in_force.as_ref();
        m.policy_version.set(f.map_or(0, |f| {
            i64::try_from(f.current.info.version).unwrap_or(i64::MAX)
        }));
        m.policy_expiry
            .set(match (self.expired, f.and_then(|f| f.expires_at)) {
                (true, _) => 0.0,
                (false, Some(t)) => t.saturating_sub(unix_now()) as f64,
                (false, None) => f64::INFINITY,
            });
        for (hook, attached) in &self.hooks {
            m.hooks
                .get_or_create(&HookLabel { hook: hook.clone() })
                .set(i64::from(*attached));
        }
        let policy = f.map(|f| PolicyView {
            version: f.current.info.version,
            digest: f.digest.clone(),
            scope: f.scope.clone(),
            signers: f.signers.clone(),
            expires_at: f.expires_at,
            policies: f
                .current
                .policies
                .iter()
                .map(|(_, p)| p.name.clone())
                .collect(),
            governed: f.current.governed.iter().map(|(_, c)| c.label()).collect(),
            compiled: self.compiled.clone(),
            lineage_only: false,
        });
        self.live.send_replace(Live {
            started: true,
            policy,
            expired: self.expired,
            hooks: self.hooks.clone(),
            lineage_writable: self.recorder.writable(),
            lineage_records: self.recorder.records(),
            pinned: self.enforcer.pinned(),
            event_drops: self.enforcer.event_drops().unwrap_or(0),
            tamper_found: self.tamper_found,
            tamper_repaired: self.tamper_repaired,
            load_seconds: self.load_seconds.clone(),
        });
    }

    /// The console over this daemon's lineage, metrics and snapshots (the host key's public
    /// half checks the lineage).
    pub fn console(&self) -> Result<crate::console::Console> {
        let (dir, key) = match &self.config.lineage {
            Some(l) => {
                let secret = crate::bundle::keys::SecretKey::read(&l.host_key)
                    .with_context(|| format!("reading the host key {}", l.host_key.display()))?;
                (Some(l.dir.clone()), Some(secret.public()))
            }
            None => (None, None),
        };
        let mut console = crate::console::Console::new(dir, key);
        console.live = Some(self.live.subscribe());
        console.metrics = Some(self.metrics.clone());
        Ok(console)
    }

    /// Verifies, compiles and swaps in the configured policy; a refusal keeps the one in
    /// force. Unless `force`, the bundle already in force is not loaded again.
    fn reload(&mut self, prepared: Result<Incoming, Refusal>, force: bool) {
        match prepared {
            Ok(incoming) => {
                let digest = incoming.bundle.as_ref().map(|(v, _)| v.digest.as_str());
                let current = self.in_force.as_ref().and_then(|f| f.digest.as_deref());
                if !force && digest.is_some() && digest == current {
                    return;
                }
                if let Err(r) = self.load(incoming) {
                    log_refusal(&r, self.in_force.as_ref(), &mut self.recorder);
                }
            }
            Err(r) => log_refusal(&r, self.in_force.as_ref(), &mut self.recorder),
        }
    }

    /// What `rampart status` shows.
    fn status(&self) -> serde_json::Value {
        let decisions: serde_json::Map<String, serde_json::Value> = self
            .enforcer
            .decisions()
            .unwrap_or_default()
            .into_iter()
            .map(|(r, n)| (r.name().to_owned(), n.into()))
            .collect();
        let in_force = self.in_force.as_ref();
        let current = in_force.map(|f| &f.current);
        serde_json::json!({
            "version": current.map(|g| g.info.version),
            "digest": in_force.and_then(|f| f.digest.clone()),
            "scope": in_force.and_then(|f| f.scope.clone()),
            "expires": in_force.and_then(|f| f.expires_at).map(rfc3339),
            "signers": in_force.map(|f| f.signers.clone()).unwrap_or_default(),
            "policies": current.map(|g| g.policies.iter().map(|(_, p)| p.name.clone()).collect::<Vec<_>>()),
            "governed": current.map(|g| g.governed.iter().map(|(_, c)| c.label()).collect::<Vec<_>>()),
            "pinned": self.enforcer.pinned(),
            "pin_dir": self.config.pin_dir.as_ref().map(|d| d.display().to_string()),
            "decisions": decisions,
            "event_drops": self.enforcer.event_drops().ok(),
            "quiet_denials": self.enforcer.quiet_denials().ok(),
            "tamper": { "found": self.tamper_found, "repaired": self.tamper_repaired },
            "lineage": self.recorder.lineage_status(),
        })
    }

    /// `rampart policy push`: writes the bundle where it can be verified exactly as one
    /// from the bundle directory; returns that file and the directory, or the refusal.
    fn push(&mut self, b64: &str) -> Result<(PathBuf, PathBuf), Response> {
        let rejected = |code: &str, error: String| Response::Rejected {
            code: code.into(),
            error,
        };
        let PolicyOrigin::Bundle(src) = &self.config.origin else {
            return Err(rejected(
                "no-bundle-dir",
                "this daemon loads local policy files".into(),
            ));
        };
        let BundleLocation::Dir(dir) = &src.location else {
            return Err(rejected(
                "no-bundle-dir",
                "this daemon was started on one bundle file; run it with --config to accept \
                 pushes"
                    .into(),
            ));
        };
        let dir = dir.clone();
        let bytes = match control::decode_bundle(b64) {
            Ok(b) => b,
            Err(e) => return Err(rejected("malformed-envelope", format!("{e:#}"))),
        };
        let tmp = self
            .stage(&dir, &bytes, "push")
            .map_err(|e| rejected("io", e))?;
        Ok((tmp, dir))
    }

    /// Writes bytes handed to the daemon (pushed or pulled) where they can be verified
    /// exactly as a file of the bundle directory. Preparations may run side by side: each
    /// gets a file of its own.
    fn stage(
        &mut self,
        dir: &std::path::Path,
        bytes: &[u8],
        what: &str,
    ) -> Result<PathBuf, String> {
        self.pushes += 1;
        let tmp = dir.join(format!(
            ".{what}-{}-{}.tmp",
            std::process::id(),
            self.pushes
        ));
        std::fs::write(&tmp, bytes).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
        Ok(tmp)
    }

    /// A report of the remote source's poller: an outage begun or ended is recorded; a new
    /// bundle is staged, and the returned preparation verifies it like a pushed one.
    pub fn on_remote(&mut self, report: crate::remote::poll::Report) -> Option<Job> {
        use crate::remote::poll::Report;
        let (source, up) = match &report {
            Report::Unreachable { source, .. } => (source, false),
            Report::Restored { source, .. } | Report::Fetched { source, .. } => (source, true),
        };
        self.metrics
            .source_reachable
            .get_or_create(&crate::console::metrics::SourceLabel {
                source: source.clone(),
            })
            .set(i64::from(up));
        let Report::Fetched { source, id, bytes } = report else {
            self.recorder.policy_source(&report);
            return None;
        };
        let dir = self.config.bundle_dir()?.to_path_buf();
        match self.stage(&dir, &bytes, "pull") {
            Ok(tmp) => {
                let purpose = Purpose::Pull {
                    tmp: tmp.clone(),
                    dir,
                    source,
                    id,
                };
                Some(self.job_for_staged(purpose, tmp))
            }
            Err(e) => {
                let r = Refusal::new("io", anyhow::anyhow!("{source} ({id}): {e}"));
                log_refusal(&r, self.in_force.as_ref(), &mut self.recorder);
                None
            }
        }
    }

    /// A bundle from the remote source was prepared: loaded and kept if valid and newer;
    /// refused and recorded otherwise (the same bundle as in force again is not a refusal).
    fn finish_pull(
        &mut self,
        prepared: Result<Incoming, Refusal>,
        tmp: &std::path::Path,
        dir: &std::path::Path,
        source: &str,
        id: &str,
    ) {
        match self.keep_if_loaded(prepared, tmp, dir, "pulled") {
            Ok((version, digest)) => {
                info!(source, id, version, digest = %digest, "loaded the bundle the policy source serves");
            }
            Err(r) if r.code == "already-in-force" => {}
            Err(r) => {
                let r = Refusal::new(r.code, r.error.context(format!("{source} ({id})")));
                log_refusal(&r, self.in_force.as_ref(), &mut self.recorder);
            }
        }
    }

    /// Loads a staged bundle if it is valid and not already in force, and keeps it in the
    /// bundle directory as `PREFIX-vVERSION.rpb` (removing the daemon's own kept files of
    /// lower versions, which the anti-rollback rule would refuse anyway); a refused one is
    /// removed.
    fn keep_if_loaded(
        &mut self,
        prepared: Result<Incoming, Refusal>,
        tmp: &std::path::Path,
        dir: &std::path::Path,
        prefix: &str,
    ) -> Result<(u64, String), Refusal> {
        let result = prepared.and_then(|incoming| {
            let version = incoming.info.version;
            let digest = incoming
                .bundle
                .as_ref()
                .map(|(v, _)| v.digest.clone())
                .unwrap_or_default();
            if self.in_force.as_ref().and_then(|f| f.digest.as_deref()) == Some(digest.as_str()) {
                return Err(Refusal::new(
                    "already-in-force",
                    anyhow::anyhow!("version {version} is already in force"),
                ));
            }
            self.load(incoming).map(|()| (version, digest))
        });
        match &result {
            Ok((version, _)) => {
                let kept = dir.join(format!("{prefix}-v{version}.rpb"));
                if let Err(e) = std::fs::rename(tmp, &kept) {
                    warn!(error = %e, "the bundle is in force but could not be kept in the bundle directory");
                }
                prune_kept(dir, *version);
            }
            Err(_) => {
                let _ = std::fs::remove_file(tmp);
            }
        }
        result
    }

    /// A pushed bundle was prepared: loads it if it is valid and not already in force,
    /// and keeps it in the bundle directory.
    fn finish_push(
        &mut self,
        prepared: Result<Incoming, Refusal>,
        tmp: &std::path::Path,
        dir: &std::path::Path,
    ) -> Response {
        let result = self.keep_if_loaded(prepared, tmp, dir, "pushed");
        self.count_control("push", if result.is_ok() { "loaded" } else { "rejected" });
        match result {
            Ok((version, digest)) => Response::Loaded { version, digest },
            Err(r) => {
                log_refusal(&r, self.in_force.as_ref(), &mut self.recorder);
                Response::Rejected {
                    code: r.code.into(),
                    error: format!("{:#}", r.error),
                }
            }
        }
    }

    /// Break-glass through the daemon, on a terminal's or a token's authority: recorded,
    /// everything detached, then the loop ends.
    fn release(&mut self, token: Option<&str>, peer: &peer::Peer) -> Response {
        let Some(dir) = self.config.pin_dir.clone() else {
            return Response::Error {
                error: "this daemon is not pinned: stopping it ends enforcement".into(),
            };
        };
        let authority = match release_auth::authorise(&self.config.origin, token, peer, unix_now())
        {
            Ok(a) => a,
            Err(e) => {
                let error = format!("release refused: {e:#}");
                warn!(error = %error, pid = peer.pid, "control request refused");
                self.recorder
                    .control_refused(peer.pid, peer.uid, &peer.cgroup, &error);
                return Response::Error { error };
            }
        };
        match crate::kernel::pins::release(&dir) {
            Ok((links, maps)) => {
                warn!(pin_dir = %dir.display(), links, maps, authorised_by = authority.name(),
                    "released (break-glass): nothing is enforced");
                self.recorder.release(
                    &dir.display().to_string(),
                    links as u64,
                    maps as u64,
                    &authority,
                );
                self.released = true;
                Response::Released {
                    links: links as u64,
                    maps: maps as u64,
                }
            }
            Err(e) => Response::Error {
                error: format!("{e:#}"),
            },
        }
    }
}

/// Removes the daemon's own kept bundles (`pushed-vN.rpb`, `pulled-vN.rpb`) below
/// `version` from `dir`: once `version` is in force they can never load again, and a
/// directory that only grows would one day pass the scan's cap.
fn prune_kept(dir: &std::path::Path, version: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let older = ["pushed-v", "pulled-v"].iter().any(|p| {
            name.strip_prefix(p)
                .and_then(|rest| rest.strip_suffix(".rpb"))
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| n < version)
        });
        if older {
            if let Err(e) = std::fs::remove_file(entry.path()) {
                warn!(file = %entry.path().display(), error = %e, "could not remove a superseded bundle");
            }
        }
    }
}

/// Verifies and compiles the configured policy; bundles of a directory that were refused
/// are logged and recorded once each.
fn intake(
    config: &RunConfig,
    recorder: &mut Recorder,
    reported: &mut Reported,
) -> Result<Incoming, Refusal> {
    let mut skipped = Vec::new();
    let result = prepare(&config.origin, config.extra_flags(), &mut skipped);
    report_skipped(skipped, recorder, reported);
    result
}

/// Logs and records each refused bundle of a directory once.
fn report_skipped(
    skipped: Vec<(PathBuf, Refusal)>,
    recorder: &mut Recorder,
    reported: &mut Reported,
) {
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
}

/// Logs and records a refused policy: the old one stays in force.
fn log_refusal(r: &Refusal, in_force: Option<&InForce>, recorder: &mut Recorder) {
    recorder.policy_refused(r.code, &format!("{:#}", r.error));
    error!(
        code = r.code,
        error = %format!("{:#}", r.error),
        keeping_version = in_force.map(|f| f.current.info.version),
        "policy refused; the policy in force is unchanged"
    );
}

/// Runs the enforcer until SIGINT or SIGTERM (or a release through the control socket);
/// SIGHUP reloads the policy (a bundle that fails any check changes nothing).
pub async fn run(config: RunConfig) -> Result<()> {
    let (mut daemon, mut ring) = Daemon::start(config)?;
    // Ready means answering: the control socket is bound and the signal handlers are
    // installed first (a SIGTERM right after READY must stop the loop, not kill the process).
    let control = match &daemon.config.control_socket {
        Some(path) => Some(control::bind(path)?),
        None => None,
    };
    // The console is optional: one that cannot start is logged, and enforcement goes on.
    if let Some(settings) = daemon.config.console.clone() {
        match daemon.console() {
            Ok(console) => {
                let router = crate::console::router(Arc::new(console));
                if let Err(e) = settings.spawn(router) {
                    error!(error = %format!("{e:#}"), "the console is not served; enforcement is not affected");
                }
            }
            Err(e) => {
                error!(error = %format!("{e:#}"), "the console is not served; enforcement is not affected")
            }
        }
    }
    let stop = wait_for_stop()?;
    tokio::pin!(stop);
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        warn!(error = %e, "could not notify the service manager of readiness");
    }
    let mut dir_watch = DirWatch::new(daemon.config.bundle_dir())?;
    // The remote source's poller, on a task of its own: what it fetches comes here.
    let (remote_tx, mut remote_rx) = tokio::sync::mpsc::channel::<crate::remote::poll::Report>(4);
    let poll_now = Arc::new(tokio::sync::Notify::new());
    match (daemon.config.remote.clone(), daemon.config.bundle_dir()) {
        (Some(settings), Some(_)) => {
            info!(source = %settings.locator, every = %humantime::format_duration(settings.interval),
                "polling the policy source");
            tokio::spawn(crate::remote::poll::supervise(
                settings,
                poll_now.clone(),
                remote_tx,
            ));
        }
        (Some(_), None) => warn!("policy.source needs a bundle directory; not polled"),
        (None, _) => drop(remote_tx),
    }
    // Verification and compilation run on blocking threads; their results come here.
    let (prepared_tx, mut prepared_rx) = tokio::sync::mpsc::channel::<Prepared>(8);
    // Each connection is served on a task of its own; complete requests come here.
    let (to_loop, mut inbound) = tokio::sync::mpsc::channel::<Inbound>(16);
    // After a release: the loop ends once its answer is written, or at this deadline.
    let mut stop_at: Option<tokio::time::Instant> = None;
    let mut reload_at: Option<tokio::time::Instant> = None;
    // Lineage durability (at least every 100 ms) and the kernel's drop counter.
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let expiry = expiry_timer(daemon.expires_at());
        tokio::select! {
            stopped = &mut stop => { stopped?; break; }
            guard = ring.readable_mut() => {
                let mut guard = guard.context("waiting for kernel events")?;
                daemon.on_ring(guard.get_inner_mut());
                guard.clear_ready();
            }
            _ = tick.tick() => daemon.on_tick()?,
            _ = hup.recv() => {
                poll_now.notify_one();
                prepare::spawn(daemon.on_hangup(), prepared_tx.clone());
            }
            Some(report) = remote_rx.recv() => {
                if let Some(job) = daemon.on_remote(report) {
                    prepare::spawn(job, prepared_tx.clone());
                }
            }
            Some(prepared) = prepared_rx.recv() => daemon.on_prepared(ring.get_mut(), prepared),
            conn = accept(control.as_ref()), if stop_at.is_none() => {
                // A failed accept (e.g. out of descriptors) must not stop the enforcer.
                match conn {
                    Ok(stream) => {
                        let guarded = daemon.guarded_cgroups();
                        tokio::spawn(control::serve(stream, guarded, to_loop.clone()));
                    }
                    Err(e) => {
                        warn!(error = %format!("{e:#}"), "control socket accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            Some(message) = inbound.recv() => match message {
                Inbound::Request(request, peer, answer) => {
                    daemon.on_ring(ring.get_mut());
                    if let Some(job) = daemon.on_control(request, &peer, answer) {
                        prepare::spawn(job, prepared_tx.clone());
                    }
                    if daemon.released() {
                        stop_at = Some(tokio::time::Instant::now() + Duration::from_secs(2));
                    }
                }
                Inbound::Refused { peer, error } => daemon.on_control_refused(peer, &error),
                Inbound::Answered if daemon.released() => break,
                Inbound::Answered => {}
            },
            _ = deadline(stop_at) => break,
            _ = dir_watch.changed() => {
                // Let a burst of changes (a copy, several files) settle into one reload.
                reload_at = Some(tokio::time::Instant::now() + Duration::from_millis(100));
            }
            _ = deadline(reload_at) => {
                reload_at = None;
                prepare::spawn(daemon.on_bundle_change(), prepared_tx.clone());
            }
            _ = expiry => daemon.on_expiry(),
        }
    }
    daemon.stop(ring.get_mut())
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
            tokio::time::sleep(Duration::from_secs(left)).await;
        }
        None => std::future::pending().await,
    }
}

/// Installs the SIGTERM and SIGINT handlers now; the future completes at the first signal.
fn wait_for_stop() -> Result<impl std::future::Future<Output = Result<()>>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM received"),
            _ = int.recv() => info!("SIGINT received"),
        }
        Ok(())
    })
}
