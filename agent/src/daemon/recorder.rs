//! Where the daemon's records go: every decision to stdout as a JSON line and, when a
//! lineage is configured, every decision, policy change, refusal and loss into it.
//!
//! Invariant: kernel drops are never silent: each increase of the kernel's drop counter
//! becomes one gap record with the exact difference.

use std::{
    io::{BufWriter, Write},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, Result};
use aya::maps::{MapData, RingBuf};
use tracing::{error, info, warn};

use super::swap::Generation;
use crate::{
    bundle::keys::SecretKey,
    console::metrics::{CodeLabel, Metrics},
    kernel::events,
    lineage::anchor::{self, Anchor},
    lineage::writer::Stats,
    lineage::{
        decision::DecisionRecord,
        record::{Body, GapReason},
        writer::{Config, Stamp, Writer},
    },
    policy::resolutions::Resolutions,
    support::files::write_atomic,
};

/// Hands every pending kernel event to `recorder` (stdout and the lineage), naming the
/// policy and rule from the generation that decided it (`generations`, newest first). A
/// malformed record is logged, never silently skipped. Stdout is written once per batch.
pub fn drain(ring: &mut RingBuf<MapData>, generations: &[&Generation], recorder: &mut Recorder) {
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(64 * 1024, stdout.lock());
    drain_into(ring, generations, recorder, &mut out);
    if let Err(e) = out.flush() {
        warn!(error = %e, "cannot flush events to stdout");
    }
}

/// [`drain`], with the event lines written to `out`.
pub fn drain_into(
    ring: &mut RingBuf<MapData>,
    generations: &[&Generation],
    recorder: &mut Recorder,
    out: &mut impl Write,
) {
    while let Some(item) = ring.next() {
        match events::parse(&item) {
            Ok(mut record) => {
                annotate(&mut record, generations);
                recorder.decision(out, &record);
            }
            Err(e) => warn!(error = %e, "malformed event from the kernel"),
        }
    }
}

/// Names the policy and rule of a record from the generation that decided it.
fn annotate(record: &mut DecisionRecord, generations: &[&Generation]) {
    let policy = generations
        .iter()
        .find_map(|g| Some((*g, g.policy(record.policy_id, record.policy_version)?)));
    if let Some((g, p)) = policy {
        record.bundle = g.bundle.clone();
        record.policy = Some(p.name.clone());
        record.rule = record
            .rule_id
            .and_then(|id| p.rule(id))
            .map(|r| r.field.clone());
    }
}

/// The file in the lineage directory holding the kernel drop count already recorded.
pub const DROPS_FILE: &str = "kernel-drops";

/// Lineage settings of `rampart run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineageSettings {
    /// The lineage directory.
    pub dir: PathBuf,
    /// The host's secret key, which signs checkpoints.
    pub host_key: PathBuf,
    /// A checkpoint after this many records...
    pub checkpoint_every: u64,
    /// ...or this long after the last one.
    pub checkpoint_interval: Duration,
    /// A new segment past this many bytes.
    pub segment_bytes: u64,
    /// Where the lineage anchor (the last checkpoint) is kept outside the lineage directory
    /// (the state directory), if anywhere besides the pinned map.
    pub anchor_file: Option<PathBuf>,
}

/// Where decisions, policy changes, refusals and gaps are written.
pub struct Recorder {
    lineage: Option<Writer>,
    /// `DIR/kernel-drops`: the drop counter already accounted for, kept across restarts
    /// (the counter lives in a pinned map and outlives the agent).
    drops_file: Option<PathBuf>,
    /// The kernel's drop counter as last seen, and when.
    drops_seen: u64,
    drops_checked_ns: u64,
    /// Whether the lineage is failing (to log transitions, not every attempt).
    failing: bool,
    /// Where the anchor is kept in the state directory, and the anchor last kept.
    anchor_file: Option<PathBuf>,
    anchor_kept: Option<Anchor>,
    /// Where decisions, gaps and lineage writes are counted for `/metrics`, and the writer's
    /// figures already counted there.
    metrics: Arc<Metrics>,
    counted: Stats,
}

impl Recorder {
    /// Opens the lineage (if configured), which records the agent's start, and a
    /// `truncated` record if it falls short of its anchor: the higher of the anchor file
    /// and `pinned` (the copy in the pinned map).
    pub fn open(
        settings: Option<&LineageSettings>,
        policy_version: u64,
        pinned: Option<Anchor>,
    ) -> Result<Self> {
        let mut anchor_kept = None;
        let lineage = match settings {
            None => None,
            Some(s) => {
                let key = SecretKey::read(&s.host_key)
                    .map_err(|e| anyhow::anyhow!(e))
                    .context("reading the host key that signs lineage checkpoints")?;
                let mut cfg = Config::new(&s.dir);
                cfg.checkpoint_every = s.checkpoint_every;
                cfg.checkpoint_interval = s.checkpoint_interval;
                cfg.segment_bytes = s.segment_bytes;
                let file = match s.anchor_file.as_deref().map(anchor::read).transpose() {
                    Ok(a) => a.flatten(),
                    Err(e) => {
                        error!(error = %format!("{e:#}"),
                            "the lineage anchor file is unreadable; only the pinned copy counts");
                        None
                    }
                };
                let held = anchor::higher(file, pinned);
                let (w, recovery) = Writer::open(cfg, key, policy_version, held.as_ref())?;
                if let Some(a) = &recovery.truncated {
                    error!(anchored_size = a.size, anchored_lineage = %a.lineage,
                        found = recovery.records,
                        "the lineage was cut back or replaced while no agent ran; recorded as truncated");
                }
                anchor_kept = held;
                if let Some((bytes, aside)) = &recovery.torn {
                    warn!(bytes, kept_in = %aside.display(),
                        "the lineage ended in a torn record (a crash); kept aside and recorded as a gap");
                }
                if recovery.tree_rebuilt && recovery.records > 0 {
                    warn!(records = recovery.records,
                        "the lineage's tree file was missing, short or not this lineage's; rebuilt from the segments");
                }
                info!(dir = %s.dir.display(), records = w.len(), origin = w.origin(), "lineage open");
                Some(w)
            }
        };
        Ok(Self {
            lineage,
            drops_file: settings.map(|s| s.dir.join(DROPS_FILE)),
            drops_seen: 0,
            drops_checked_ns: Stamp::now().time_ns,
            failing: false,
            anchor_file: settings.and_then(|s| s.anchor_file.clone()),
            anchor_kept,
            metrics: Arc::new(Metrics::new()),
            counted: Stats::default(),
        })
    }

    /// Keeps the lineage's latest checkpoint as its anchor in the state directory, if it
    /// moved; returns it then, for the pinned copy.
    pub fn keep_anchor(&mut self) -> Option<Anchor> {
        let current = self.lineage.as_ref()?.anchor()?;
        if self.anchor_kept.as_ref() == Some(&current) {
            return None;
        }
        if let Some(path) = &self.anchor_file {
            if let Err(e) = anchor::write(path, &current) {
                error!(error = %format!("{e:#}"), "could not keep the lineage anchor file");
            }
        }
        self.anchor_kept = Some(current.clone());
        Some(current)
    }

    /// Logs a lineage failure once, and its recovery once.
    fn note(&mut self, result: Result<()>) {
        match result {
            Ok(()) if self.failing => {
                self.failing = false;
                info!("the lineage is being written again");
            }
            Ok(()) => {}
            Err(e) if !self.failing => {
                self.failing = true;
                error!(error = %format!("{e:#}"),
                    "cannot write the lineage; records are buffered and retried, then counted as a gap");
            }
            Err(_) => {}
        }
    }

    /// Counts into `metrics` from now on.
    pub fn set_metrics(&mut self, metrics: Arc<Metrics>) {
        self.metrics = metrics;
    }

    /// Whether the lineage is being written (None: no lineage).
    pub fn writable(&self) -> Option<bool> {
        self.lineage.as_ref().map(|_| !self.failing)
    }

    /// Records in the lineage (None: no lineage).
    pub fn records(&self) -> Option<u64> {
        self.lineage.as_ref().map(Writer::len)
    }

    /// Brings the lineage counters of `/metrics` up to the writer's figures.
    fn count_writes(&mut self) {
        let Some(w) = self.lineage.as_ref() else {
            return;
        };
        let now = w.stats();
        let m = &self.metrics;
        m.lineage_records
            .inc_by(now.records.saturating_sub(self.counted.records));
        m.lineage_bytes
            .inc_by(now.bytes.saturating_sub(self.counted.bytes));
        m.lineage_checkpoints
            .inc_by(now.checkpoints.saturating_sub(self.counted.checkpoints));
        m.gaps.inc_by(now.gaps.saturating_sub(self.counted.gaps));
        m.lost_events
            .inc_by(now.lost.saturating_sub(self.counted.lost));
        m.lineage_writable.set(i64::from(!self.failing));
        self.counted = now;
    }

    fn append(&mut self, stamp: Stamp, version: Option<u64>, body: &Body<'_>) {
        if let Some(w) = self.lineage.as_mut() {
            let r = w.append(stamp, version, body).map(drop);
            self.note(r);
        }
    }

    /// One kernel decision.
    pub fn decision(&mut self, out: &mut impl Write, record: &DecisionRecord) {
        match serde_json::to_string(record) {
            Ok(line) => {
                if let Err(e) = writeln!(out, "{line}") {
                    warn!(error = %e, "cannot write an event to stdout");
                }
            }
            Err(e) => warn!(error = %e, "cannot serialise an event"),
        }
        self.metrics.decision(
            record.decision,
            record.action,
            record.reason,
            record.policy.as_deref(),
        );
        self.append(
            Stamp::of_kernel(record.ktime_ns),
            Some(record.policy_version),
            &Body::Decision(record),
        );
    }

    /// Sets what the kernel's drop counter stood at when recording began. With maps adopted
    /// from an earlier agent, that is what it had recorded (`kernel-drops`), so drops while
    /// no agent ran become a gap now; without a record of it, `current` (logged).
    pub fn start_drops(&mut self, adopted: bool, current: u64) {
        self.drops_seen = if !adopted {
            current
        } else {
            let recorded = self
                .drops_file
                .as_ref()
                .and_then(|f| std::fs::read_to_string(f).ok())
                .and_then(|t| t.trim().parse::<u64>().ok());
            match recorded {
                Some(n) if n <= current => n,
                _ => {
                    warn!(
                        current,
                        "no record of the drops already accounted for; counting from now"
                    );
                    current
                }
            }
        };
    }

    fn save_drops(&self) {
        if let Some(f) = &self.drops_file {
            if let Err(e) = write_atomic(f, format!("{}\n", self.drops_seen).as_bytes(), 0o600) {
                warn!(error = %e, "cannot save the kernel drop count");
            }
        }
    }

    /// The kernel's drop counter now; an increase becomes a gap record.
    pub fn drops(&mut self, total: u64) {
        let now = Stamp::now();
        if total > self.drops_seen {
            let lost = total - self.drops_seen;
            self.metrics.ring_drops.inc_by(lost);
            warn!(
                lost,
                total, "the kernel's event ring was full; events lost (recorded as a gap)"
            );
            self.append(
                now,
                None,
                &Body::Gap {
                    source: "kernel-ring",
                    reason: GapReason::RingBufferFull,
                    lost,
                    from_ns: self.drops_checked_ns,
                    to_ns: now.time_ns,
                    detail: None,
                },
            );
            self.drops_seen = total;
            self.save_drops();
        }
        self.drops_checked_ns = now.time_ns;
    }

    /// A new policy is in force.
    pub fn policy_change(
        &mut self,
        old: Option<(u64, Option<&str>)>,
        new: (u64, Option<&str>),
        signers: &[String],
        policies: &[String],
        resolved: &Resolutions,
    ) {
        if let Some(w) = self.lineage.as_mut() {
            w.policy_version = new.0;
        }
        self.append(
            Stamp::now(),
            Some(new.0),
            &Body::PolicyChange {
                old_version: old.map_or(0, |o| o.0),
                new_version: new.0,
                old_digest: old.and_then(|o| o.1),
                new_digest: new.1,
                signers,
                policies,
                resolved: Some(resolved),
            },
        );
    }

    /// A policy was refused; the one in force stays.
    pub fn policy_refused(&mut self, code: &str, error: &str) {
        self.metrics
            .policy_refusals
            .get_or_create(&CodeLabel { code: code.into() })
            .inc();
        self.append(Stamp::now(), None, &Body::PolicyRefused { code, error });
    }

    /// The remote policy source became unreachable, or answers again.
    pub fn policy_source(&mut self, report: &crate::remote::poll::Report) {
        use crate::remote::poll::Report;
        let body = match report {
            Report::Unreachable { source, error } => Body::PolicySource {
                source,
                state: "unreachable",
                error: Some(error),
                down_seconds: None,
                failed_polls: None,
            },
            Report::Restored {
                source,
                down_seconds,
                failed_polls,
            } => Body::PolicySource {
                source,
                state: "reachable",
                error: None,
                down_seconds: Some(*down_seconds),
                failed_polls: Some(*failed_polls),
            },
            Report::Fetched { .. } => return,
        };
        self.append(Stamp::now(), None, &body);
    }

    /// The lineage's size, head and origin, for `rampart status`.
    pub fn lineage_status(&self) -> Option<serde_json::Value> {
        self.lineage.as_ref().map(
            |w| serde_json::json!({"records": w.len(), "head": w.head(), "origin": w.origin()}),
        )
    }

    /// `rampart release` detached everything, on `authority`.
    pub fn release(
        &mut self,
        pin_dir: &str,
        links: u64,
        maps: u64,
        authority: &super::release_auth::Authority,
    ) {
        let token = match authority {
            super::release_auth::Authority::Token(t) => Some(t),
            super::release_auth::Authority::Terminal => None,
        };
        self.append(
            Stamp::now(),
            None,
            &Body::Release {
                pin_dir,
                links,
                maps,
                authorised_by: authority.name(),
                nonce: token.map(|t| t.payload.nonce.as_str()),
                reason: token.map(|t| t.payload.reason.as_str()),
                signers: token.map_or(&[], |t| t.signers.as_slice()),
            },
        );
    }

    /// A control-socket client was refused.
    pub fn control_refused(&mut self, pid: i32, uid: u32, cgroup: &str, error: &str) {
        self.append(
            Stamp::now(),
            None,
            &Body::ControlRefused {
                pid,
                uid,
                cgroup,
                error,
            },
        );
    }

    /// A pin removed or a link detached behind the agent's back, and what it did about it.
    pub fn tamper(&mut self, what: &str, object: &str, error: Option<&str>) {
        self.append(
            Stamp::now(),
            None,
            &Body::Tamper {
                what,
                object,
                repaired: error.is_none(),
                error,
            },
        );
    }

    /// The periodic duty: durability and time-based checkpoints.
    pub fn tick(&mut self) {
        if let Some(w) = self.lineage.as_mut() {
            let r = w.tick();
            self.note(r);
        }
        self.count_writes();
    }

    /// The agent's stop record and a final checkpoint.
    pub fn close(&mut self, reason: &str) {
        self.save_drops();
        if let Some(w) = self.lineage.as_mut() {
            let r = w.close(reason);
            if let Err(e) = &r {
                error!(error = %format!("{e:#}"), "the lineage could not be closed cleanly");
            } else {
                info!(
                    records = w.len(),
                    head = w.head(),
                    "lineage closed with a checkpoint"
                );
            }
        }
    }
}
