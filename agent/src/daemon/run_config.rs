//! What `rampart run` enforces: built once, from the configuration file or from the flags,
//! and re-read from the file on SIGHUP.

use std::path::PathBuf;

use anyhow::Result;
use tracing::warn;

use crate::lineage::anchor::ANCHOR_FILE;

use super::{
    config::{Config, Fallback},
    intake::{BundleLocation, BundleSource, PolicyOrigin},
    recorder::LineageSettings,
};

/// What `rampart run` enforces.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Where the policy comes from.
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
    /// Where the console listens (None: no console).
    pub console: Option<crate::console::serve::Settings>,
    /// A remote source polled for bundles, kept in the bundle directory once in force.
    pub remote: Option<crate::remote::fetch::RemoteSettings>,
}

impl RunConfig {
    /// The configuration file at `path`, as the daemon enforces it.
    pub fn from_file(path: PathBuf) -> Result<Self> {
        let config = Config::read(&path)?;
        Ok(Self {
            config_file: Some(path),
            ..Self::from(config)
        })
    }

    /// Policy flags the host configuration adds to every slot it loads.
    pub fn extra_flags(&self) -> u32 {
        if self.audit_when_expired {
            rampart_common::policy_flags::EXPIRED_AUDIT
        } else {
            0
        }
    }

    /// The cgroups the host configuration lets bundles govern (empty without one).
    pub fn host_governs(&self) -> &[String] {
        match &self.origin {
            PolicyOrigin::Bundle(BundleSource {
                allowed: Some(allowed),
                ..
            }) => allowed,
            _ => &[],
        }
    }

    /// The bundle directory to watch, if the policy comes from one.
    pub fn bundle_dir(&self) -> Option<&std::path::Path> {
        match &self.origin {
            PolicyOrigin::Bundle(BundleSource {
                location: BundleLocation::Dir(dir),
                ..
            }) => Some(dir.as_path()),
            _ => None,
        }
    }

    /// Re-reads the configuration file: the policy settings take effect now; the lineage,
    /// pin directory and control socket are fixed for the process (a change is logged).
    pub fn reread(&mut self) -> Result<()> {
        let Some(path) = self.config_file.clone() else {
            return Ok(());
        };
        let next = Self::from_file(path)?;
        if next.lineage != self.lineage
            || next.pin_dir != self.pin_dir
            || next.control_socket != self.control_socket
            || next.console != self.console
            || next.remote != self.remote
        {
            warn!("[lineage], [daemon], [console] and policy.source changes take effect at the next restart");
        }
        self.origin = next.origin;
        self.no_policy = next.no_policy;
        self.audit_when_expired = next.audit_when_expired;
        Ok(())
    }
}

impl From<Config> for RunConfig {
    fn from(c: Config) -> Self {
        let Config {
            policy: p,
            lineage,
            daemon,
            console,
        } = c;
        let anchor_file = p.state_dir.join(ANCHOR_FILE);
        // Checked when the file was parsed; a source that does not parse is none.
        let remote = p
            .source
            .as_deref()
            .and_then(|s| crate::remote::locator::Locator::parse(s).ok())
            .map(|locator| crate::remote::fetch::RemoteSettings {
                locator,
                credentials: p.credentials.clone(),
                ca_file: p.ca_file.clone(),
                allow_plain_http: p.allow_plain_http,
                interval: p.poll_interval,
            });
        Self {
            origin: PolicyOrigin::Bundle(BundleSource {
                location: BundleLocation::Dir(p.bundle_dir),
                trust: p.trust,
                state: p.state_dir,
                scope: p.scope,
                clock_skew: p.clock_skew.as_secs(),
                allowed: Some(p.governs.clone()),
                pin_dir: Some(daemon.pin_dir.clone()),
            }),
            lineage: lineage.map(|l| LineageSettings {
                dir: l.dir,
                host_key: l.host_key,
                checkpoint_every: l.checkpoint_every,
                checkpoint_interval: l.checkpoint_interval,
                segment_bytes: l.segment_bytes,
                anchor_file: Some(anchor_file.clone()),
            }),
            audit_when_expired: p.on_expiry == Fallback::Audit,
            pin_dir: Some(daemon.pin_dir),
            no_policy: Some((p.governs, p.on_no_policy)),
            control_socket: Some(daemon.control_socket),
            config_file: None,
            console: console.enabled.then_some(console),
            remote,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[policy]
bundle_dir = "/var/lib/rampart/policy"
trust = "/etc/rampart/trust.json"
governs = ["/batch.slice"]
"#;

    #[test]
    fn a_remote_source_reaches_the_run_configuration() {
        let with = FILE.replace(
            "governs =",
            "source = \"oci://127.0.0.1:5000/rampart/prod:stable\"\npoll_interval = \"2s\"\ngoverns =",
        );
        let run = RunConfig::from(Config::parse("r.toml", &with).unwrap());
        let remote = run.remote.clone().expect("a remote source");
        assert_eq!(
            remote.locator.to_string(),
            "oci://127.0.0.1:5000/rampart/prod:stable"
        );
        assert_eq!(remote.interval, std::time::Duration::from_secs(2));
        assert_eq!(
            run.bundle_dir(),
            Some(std::path::Path::new("/var/lib/rampart/policy"))
        );
        assert!(RunConfig::from(Config::parse("r.toml", FILE).unwrap())
            .remote
            .is_none());
    }
}
