//! The daemon's configuration file (TOML, default `/etc/rampart/rampart.toml`), parsed
//! strictly: unknown keys, wrong types and impossible combinations are errors that name the
//! key. Every key is documented in docs/configuration.md.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use super::defaults;

/// Configuration files are small.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// What to do when no valid policy is in force (at start) or the one in force expires.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Fallback {
    /// Deny everything in the governed cgroups (the safe default).
    #[default]
    Deny,
    /// Allow and record (only as a deliberate choice for a first rollout).
    Audit,
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[policy]`: where bundles come from and what they may govern.
    pub policy: PolicyConfig,
    /// `[lineage]`: where the record goes (none: decisions on stdout only).
    #[serde(default)]
    pub lineage: Option<LineageConfig>,
    /// `[daemon]`: pins and the control socket.
    #[serde(default)]
    pub daemon: DaemonConfig,
    /// `[console]`: metrics, health endpoints and the web console (on by default, on a
    /// unix socket and 127.0.0.1:9464).
    #[serde(default)]
    pub console: crate::console::serve::Settings,
}

/// `[policy]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Directory of signed bundles (`*.rpb`); the newest valid one is loaded, and the
    /// directory is watched.
    pub bundle_dir: PathBuf,
    /// The trust root.
    pub trust: PathBuf,
    /// Anti-rollback state directory.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// This host's scope (default: the trust root's).
    #[serde(default)]
    pub scope: Option<String>,
    /// Tolerance for a signer's clock ahead of this host's, e.g. "5m".
    #[serde(default = "default_skew", with = "humantime_serde_compat")]
    pub clock_skew: Duration,
    /// The cgroups this host lets bundles govern (relative to the cgroup v2 root). A bundle
    /// policy governing a cgroup outside these (and their descendants) is refused; with no
    /// valid policy these cgroups fall back to `on_no_policy`.
    pub governs: Vec<String>,
    /// With no valid policy at start: deny everything governed (default) or audit.
    #[serde(default)]
    pub on_no_policy: Fallback,
    /// When the bundle in force expires: deny everything governed (default) or audit.
    #[serde(default)]
    pub on_expiry: Fallback,
    /// A remote source polled for new bundles: `oci://HOST[:PORT]/REPO:TAG` or an
    /// `https://` URL. What it serves is verified like a file of `bundle_dir`, and kept
    /// there once in force; while it cannot be reached, the policy in force stays.
    #[serde(default)]
    pub source: Option<String>,
    /// Between polls of `source` (also polled at start and on SIGHUP).
    #[serde(default = "default_poll_interval", with = "humantime_serde_compat")]
    pub poll_interval: Duration,
    /// Credentials for `source` (TOML: `username` and `password`, or `token`).
    #[serde(default)]
    pub credentials: Option<PathBuf>,
    /// Extra CA certificates (PEM) for an HTTPS `source`.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Plain HTTP to a `source` host that is not loopback (loopback always may).
    #[serde(default)]
    pub allow_plain_http: bool,
}

/// `[lineage]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineageConfig {
    /// The lineage directory.
    pub dir: PathBuf,
    /// The host's secret key (`rampart keygen`), which signs checkpoints.
    pub host_key: PathBuf,
    /// A checkpoint after this many records...
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// ...or this long after the last one.
    #[serde(
        default = "default_checkpoint_interval",
        with = "humantime_serde_compat"
    )]
    pub checkpoint_interval: Duration,
    /// A new segment past this many bytes.
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: u64,
}

/// `[daemon]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// Where programs, links and maps are pinned.
    #[serde(default = "default_pin_dir")]
    pub pin_dir: PathBuf,
    /// The control socket (`rampart policy push`, `rampart status`); root only, mode 0600.
    #[serde(default = "default_socket")]
    pub control_socket: PathBuf,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            pin_dir: default_pin_dir(),
            control_socket: default_socket(),
        }
    }
}

fn default_state_dir() -> PathBuf {
    defaults::STATE_DIR.into()
}
fn default_poll_interval() -> Duration {
    defaults::POLL_INTERVAL
}
fn default_skew() -> Duration {
    defaults::CLOCK_SKEW
}
fn default_checkpoint_every() -> u64 {
    defaults::CHECKPOINT_EVERY
}
fn default_checkpoint_interval() -> Duration {
    defaults::CHECKPOINT_INTERVAL
}
fn default_segment_bytes() -> u64 {
    defaults::SEGMENT_BYTES
}
fn default_pin_dir() -> PathBuf {
    defaults::PIN_DIR.into()
}
fn default_socket() -> PathBuf {
    defaults::CONTROL_SOCKET.into()
}

/// Durations as humantime strings ("5m", "10s").
mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!("`{s}` is not a duration such as 30s or 5m: {e}"))
        })
    }
}

impl Config {
    /// Parses and checks a configuration file's text; errors name the file and key.
    pub fn parse(file: &str, text: &str) -> Result<Self> {
        let config: Config = toml::from_str(text)
            .map_err(|e| anyhow::anyhow!("{file}: {}", e.to_string().trim_end()))?;
        config
            .check()
            .with_context(|| format!("{file}: invalid configuration"))?;
        Ok(config)
    }

    /// Reads (size-capped) and parses the file at `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = crate::support::files::read_capped(path, MAX_CONFIG_BYTES).map_err(|e| {
            anyhow::anyhow!("{e}; create it (see docs/configuration.md) or pass --config")
        })?;
        let text = String::from_utf8(bytes)
            .map_err(|_| anyhow::anyhow!("{}: not UTF-8", path.display()))?;
        Self::parse(&path.display().to_string(), &text)
    }

    fn check(&self) -> Result<()> {
        let p = &self.policy;
        if p.governs.is_empty() {
            bail!("policy.governs: list at least one cgroup this host lets bundles govern");
        }
        for g in &p.governs {
            if !g.starts_with('/') || g == "/" || g.split('/').any(|c| c == "..") {
                bail!("policy.governs: `{g}` must be an absolute cgroup path below the root, without ..");
            }
            crate::kernel::cgroup::normalize(g).context("policy.governs")?;
        }
        if let Some(source) = &p.source {
            let locator =
                crate::remote::locator::Locator::parse(source).context("policy.source")?;
            locator
                .plain_http(p.allow_plain_http)
                .context("policy.source")?;
            if p.poll_interval < crate::remote::poll::MIN_INTERVAL {
                bail!("policy.poll_interval: at least 1s");
            }
        } else if p.credentials.is_some() || p.ca_file.is_some() || p.allow_plain_http {
            bail!("policy.credentials, ca_file and allow_plain_http apply to policy.source, which is not set");
        }
        if let Some(scope) = &p.scope {
            crate::bundle::scope::valid_scope(scope).context("policy.scope")?;
        }
        self.console.check()?;
        if let Some(l) = &self.lineage {
            if l.checkpoint_every == 0 {
                bail!("lineage.checkpoint_every: must be at least 1");
            }
            if l.segment_bytes < 4096 {
                bail!("lineage.segment_bytes: must be at least 4096");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[policy]
bundle_dir = "/etc/rampart/bundles"
trust = "/etc/rampart/trust.json"
governs = ["/batch.slice"]

[lineage]
dir = "/var/lib/rampart/lineage"
host_key = "/etc/rampart/host.key"
checkpoint_interval = "30s"
"#;

    #[test]
    fn defaults_fill_what_is_not_said() {
        let c = Config::parse("r.toml", GOOD).unwrap();
        assert_eq!(c.policy.state_dir, PathBuf::from("/var/lib/rampart"));
        assert_eq!(c.policy.clock_skew, Duration::from_secs(300));
        assert_eq!(c.policy.on_no_policy, Fallback::Deny);
        assert_eq!(c.policy.on_expiry, Fallback::Deny);
        let l = c.lineage.unwrap();
        assert_eq!(
            (l.checkpoint_every, l.checkpoint_interval),
            (10_000, Duration::from_secs(30))
        );
        assert_eq!(c.daemon.pin_dir, PathBuf::from("/sys/fs/bpf/rampart"));
        assert_eq!(
            c.daemon.control_socket,
            PathBuf::from("/run/rampart/control.sock")
        );
    }

    #[test]
    fn the_packaged_configuration_parses() {
        let c =
            Config::parse("rampart.toml", include_str!("../../packaging/rampart.toml")).unwrap();
        assert_eq!(c.policy.governs, vec!["/rampart.slice".to_owned()]);
        assert!(c.lineage.is_some());
    }

    /// The configuration the Helm chart renders (deploy/kubernetes/rampart.yaml is the
    /// chart's rendering, checked by `cargo xtask k8s-check`) is one this parser accepts.
    #[test]
    fn the_kubernetes_configuration_parses() {
        use serde::Deserialize;
        let manifests = include_str!("../../../deploy/kubernetes/rampart.yaml");
        let toml = serde_norway::Deserializer::from_str(manifests)
            .map(|d| serde_norway::Value::deserialize(d).unwrap())
            .find(|v| v["kind"] == "ConfigMap")
            .and_then(|v| v["data"]["rampart.toml"].as_str().map(str::to_owned))
            .expect("a ConfigMap with rampart.toml");
        let c = Config::parse("rampart.toml (ConfigMap)", &toml).unwrap();
        assert_eq!(
            c.policy.source.as_deref(),
            Some("oci://registry.example.com/security/rampart-policy:prod")
        );
        assert!(c.lineage.is_some());
        assert_ne!(
            c.policy.bundle_dir,
            c.policy.state_dir.join("bundles"),
            "the bundle directory must not be the state's bundle archive"
        );
    }

    fn err(text: &str) -> String {
        format!("{:#}", Config::parse("r.toml", text).unwrap_err())
    }

    #[test]
    fn bad_configurations_name_the_key() {
        let e = err(&GOOD.replace("governs =", "govern ="));
        assert!(e.contains("unknown field `govern`"), "{e}");
        let e = err(&GOOD.replace("\"30s\"", "\"soon\""));
        assert!(e.contains("`soon` is not a duration"), "{e}");
        let e = err(&GOOD.replace("[\"/batch.slice\"]", "[]"));
        assert!(
            e.contains("policy.governs: list at least one cgroup"),
            "{e}"
        );
        let e = err(&GOOD.replace("/batch.slice", "batch.slice"));
        assert!(e.contains("must be an absolute cgroup path"), "{e}");
        let e = err(&format!("{GOOD}\n[daemon]\npin_dir = 3\n"));
        assert!(e.contains("r.toml") && e.contains("pin_dir"), "{e}");
        let e = err("[policy]\ntrust = \"/t\"\n");
        assert!(e.contains("missing field"), "{e}");
        let e = err(&GOOD.replace("governs =", "on_no_policy = \"allow\"\ngoverns ="));
        assert!(e.contains("unknown variant `allow`"), "{e}");
    }

    #[test]
    fn the_console_is_on_loopback_by_default_and_off_host_only_with_tls_and_a_token() {
        let c = Config::parse("r.toml", GOOD).unwrap();
        assert_eq!(c.console, crate::console::serve::Settings::default());
        assert_eq!(c.console.listen, vec!["127.0.0.1:9464".parse().unwrap()]);
        let open = format!("{GOOD}\n[console]\nlisten = [\"0.0.0.0:9464\"]\n");
        let e = err(&open);
        assert!(e.contains("needs tls_cert, tls_key and token_file"), "{e}");
        let e = err(&format!(
            "{open}tls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\n"
        ));
        assert!(e.contains("token_file"), "{e}");
        let ok =
            format!("{open}tls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\ntoken_file = \"/t\"\n");
        assert!(Config::parse("r.toml", &ok).is_ok());
        let e = err(&format!("{GOOD}\n[console]\ntls_cert = \"/c.pem\"\n"));
        assert!(e.contains("tls_cert and tls_key go together"), "{e}");
        let e = err(&format!("{GOOD}\n[console]\nlisten = [\"localhost\"]\n"));
        assert!(e.contains("listen"), "{e}");
    }

    #[test]
    fn a_remote_source_is_checked_when_the_file_is_read() {
        let with = |extra: &str| GOOD.replace("governs =", &format!("{extra}\ngoverns ="));
        let c = Config::parse(
            "r.toml",
            &with("source = \"oci://127.0.0.1:5000/rampart/prod:stable\""),
        )
        .unwrap();
        assert_eq!(c.policy.poll_interval, Duration::from_secs(300));
        assert_eq!(
            c.policy.source.as_deref(),
            Some("oci://127.0.0.1:5000/rampart/prod:stable")
        );
        let c = Config::parse(
            "r.toml",
            &with("source = \"oci://registry.example.com/p:v1\"\npoll_interval = \"30s\"\ncredentials = \"/etc/rampart/registry.toml\""),
        )
        .unwrap();
        assert_eq!(c.policy.poll_interval, Duration::from_secs(30));
        let e = err(&with("source = \"registry.example.com/p:v1\""));
        assert!(
            e.contains("policy.source") && e.contains("oci://HOST"),
            "{e}"
        );
        let e = err(&with("source = \"http://10.1.2.3/b.rpb\""));
        assert!(e.contains("allow_plain_http"), "{e}");
        assert!(Config::parse(
            "r.toml",
            &with("source = \"http://10.1.2.3/b.rpb\"\nallow_plain_http = true")
        )
        .is_ok());
        let e = err(&with(
            "source = \"oci://h/p:v1\"\npoll_interval = \"100ms\"",
        ));
        assert!(e.contains("policy.poll_interval"), "{e}");
        let e = err(&with("credentials = \"/c.toml\""));
        assert!(e.contains("policy.source, which is not set"), "{e}");
    }
}
