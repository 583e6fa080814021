//! `rampart run`: the flags, turned into one [`RunConfig`] in one place.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, Result};
use clap::Args;
use rampart::daemon::{
    self, defaults,
    intake::{BundleLocation, BundleSource, PolicyOrigin},
    recorder::LineageSettings,
    run_config::RunConfig,
};

/// Load the kernel programs and enforce policy until SIGINT/SIGTERM (as root).
///
/// The policy is a signed bundle (--bundle, verified against --trust, with anti-rollback
/// state in --state), the configuration file (--config, the default when neither --policy
/// nor --bundle is given: a watched bundle directory and a control socket), or, for
/// development, unsigned policy files (--policy, version 0). Each policy governs the
/// cgroups in its spec.governs (relative to the cgroup v2 root) and all of their
/// descendants: there, every exec, open, executable mapping, connect and addressed send is
/// denied with EPERM unless a rule allows it (or recorded and allowed, in audit mode).
/// Processes outside governed cgroups are never affected. Exec rules are pinned to the
/// identity (device, inode) of the file when loaded.
///
/// SIGHUP re-reads the configuration and the bundle (or files): a valid, newer bundle
/// replaces the policy in force atomically; one that fails any check changes nothing and is
/// logged and recorded with its reason. When the bundle in force expires, governed cgroups
/// fail closed (reason policy-expired) unless --audit-when-expired.
///
/// Decisions are written to stdout as JSON lines (denials; all decisions with
/// `events: all`); logs go to stderr (JSON when not a terminal, level from RAMPART_LOG).
/// Readiness is signalled with sd_notify READY=1. Programs, links and maps are pinned
/// (--pin-dir), so enforcement stays in force when this process exits, crashes or is
/// upgraded; `rampart release` is the break-glass. --no-pin ends enforcement with the
/// process.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("origin").args(["policies", "bundle", "config"])))]
pub struct RunArgs {
    /// The configuration file (TOML; see docs/configuration.md). Used when neither
    /// --policy nor --bundle is given (default /etc/rampart/rampart.toml); its [policy],
    /// [lineage] and [daemon] sections replace the flags below.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["policies", "bundle", "trust", "lineage"])]
    config: Option<PathBuf>,
    /// An unsigned policy file (YAML); repeatable. For development and trials.
    #[arg(long = "policy", value_name = "FILE", conflicts_with_all = ["bundle", "trust", "state"])]
    policies: Vec<PathBuf>,
    /// A signed policy bundle (from `rampart policy sign`).
    #[arg(long, value_name = "FILE", requires = "trust")]
    bundle: Option<PathBuf>,
    /// The trust root bundles are verified against.
    #[arg(long, value_name = "FILE")]
    trust: Option<PathBuf>,
    /// Anti-rollback state directory.
    #[arg(long, value_name = "DIR", default_value = defaults::STATE_DIR)]
    state: PathBuf,
    /// This host's scope (default: the trust root's).
    #[arg(long)]
    scope: Option<String>,
    /// How far in the future a bundle's issue time may be.
    #[arg(long, value_name = "DURATION", default_value_t = defaults::CLOCK_SKEW.into())]
    clock_skew: humantime::Duration,
    /// When the bundle in force expires, audit (allow and record) instead of denying
    /// everything governed. Only for a deliberate rollout choice.
    #[arg(long)]
    audit_when_expired: bool,
    /// Write the lineage (hash-chained, checkpointed record of every decision, policy
    /// change, gap, start and stop) into this directory. Needs --host-key.
    #[arg(long, value_name = "DIR", requires = "host_key")]
    lineage: Option<PathBuf>,
    /// The host's secret key (from `rampart keygen`) that signs lineage checkpoints.
    #[arg(long, value_name = "FILE")]
    host_key: Option<PathBuf>,
    /// A lineage checkpoint after this many records...
    #[arg(long, value_name = "N", default_value_t = defaults::CHECKPOINT_EVERY)]
    checkpoint_every: u64,
    /// ...or this long after the last one.
    #[arg(long, value_name = "DURATION", default_value_t = defaults::CHECKPOINT_INTERVAL.into())]
    checkpoint_interval: humantime::Duration,
    /// Start a new lineage segment past this many bytes.
    #[arg(long, value_name = "BYTES", default_value_t = defaults::SEGMENT_BYTES)]
    segment_bytes: u64,
    /// Pin programs, links and maps here (bpffs): enforcement then outlives the agent
    /// (crash, SIGTERM, upgrade), and the next agent adopts the pinned state without a
    /// window. `rampart release` removes it.
    #[arg(long, value_name = "DIR", default_value = defaults::PIN_DIR)]
    pin_dir: PathBuf,
    /// Do not pin: enforcement ends when this process exits (for trials and tests).
    #[arg(long)]
    no_pin: bool,
    /// Serve the console (/metrics, /healthz, /readyz and the web pages) on this loopback
    /// address, e.g. 127.0.0.1:9464. With --config, [console] decides instead (on by
    /// default); without either, there is no console.
    #[arg(long, value_name = "ADDR")]
    console_listen: Option<std::net::SocketAddr>,
}

impl RunArgs {
    /// The one conversion from flags to what the daemon enforces.
    fn into_config(self) -> Result<RunConfig> {
        let Self {
            config,
            policies,
            bundle,
            trust,
            state,
            scope,
            clock_skew,
            audit_when_expired,
            lineage,
            host_key,
            checkpoint_every,
            checkpoint_interval,
            segment_bytes,
            pin_dir,
            no_pin,
            console_listen,
        } = self;
        if policies.is_empty() && bundle.is_none() {
            let path = config.unwrap_or_else(|| PathBuf::from(defaults::CONFIG_FILE));
            return RunConfig::from_file(path);
        }
        let pin_dir = (!no_pin).then_some(pin_dir);
        let console = console_listen.map(rampart::console::serve::Settings::loopback);
        if let Some(c) = &console {
            c.check().context("--console-listen")?;
        }
        // With a bundle the state directory is in use: the lineage anchor is kept there too.
        let anchor_file = bundle
            .is_some()
            .then(|| state.join(rampart::lineage::anchor::ANCHOR_FILE));
        let origin = match (bundle, trust) {
            (Some(bundle), Some(trust)) => PolicyOrigin::Bundle(BundleSource {
                location: BundleLocation::File(bundle),
                trust,
                state,
                scope,
                clock_skew: Duration::from(clock_skew).as_secs(),
                allowed: None,
                pin_dir: pin_dir.clone(),
            }),
            _ => PolicyOrigin::Files(policies),
        };
        Ok(RunConfig {
            origin,
            lineage: lineage
                .zip(host_key)
                .map(|(dir, host_key)| LineageSettings {
                    dir,
                    host_key,
                    checkpoint_every,
                    checkpoint_interval: checkpoint_interval.into(),
                    segment_bytes,
                    anchor_file,
                }),
            pin_dir,
            audit_when_expired,
            no_policy: None,
            control_socket: None,
            config_file: None,
            console,
            // A remote source needs a bundle directory to keep what it loads: --config.
            remote: None,
        })
    }

    pub fn run(self) -> Result<()> {
        let config = self.into_config()?;
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(daemon::run(config))
    }
}
