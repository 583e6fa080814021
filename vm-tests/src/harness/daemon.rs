//! A daemon as a host runs it: on a configuration file, with a bundle directory, pins, a
//! lineage and a control socket.

use std::{
    path::{Path, PathBuf},
    process::Child,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};

use crate::harness::{
    agent::{spawn_agent, terminate_agent},
    cli::{break_glass_token, keys_and_trust, rampart, s, sign, swap_policy, SCOPE},
    env::CGROUP_ROOT,
};

/// A daemon on a configuration file with a control socket, enforcing a signed v1 that lets
/// the probe run in its cgroup.
pub struct ControlledDaemon {
    /// Its directory: keys, trust root, bundles, state, lineage, log.
    pub base: PathBuf,
    /// The cgroup it governs.
    pub cg: PathBuf,
    /// Its control socket.
    pub socket: String,
    /// Its pin directory.
    pub pin_dir: String,
    /// Its log (stderr).
    pub log: PathBuf,
    /// Its decisions (stdout).
    pub events: PathBuf,
    config: PathBuf,
    agent: Option<Child>,
}

impl ControlledDaemon {
    /// Keys, a trust root, an initialised state, `bundles/v1.rpb`, the configuration, and
    /// the daemon started on it.
    pub fn start(name: &str) -> Result<Self> {
        let mut daemon = Self::configure(name, "")?;
        daemon.spawn()?;
        Ok(daemon)
    }

    /// [`ControlledDaemon::start`] without starting it, with `policy_extra` (TOML lines)
    /// added to `[policy]`.
    pub fn configure(name: &str, policy_extra: &str) -> Result<Self> {
        let base = PathBuf::from(format!("/run/rampart-{name}"));
        keys_and_trust(&base)?;
        let bundles = base.join("bundles");
        std::fs::create_dir_all(&bundles)?;
        let cg = Path::new(CGROUP_ROOT).join(format!("rampart-{name}"));
        std::fs::create_dir_all(&cg)?;
        let policy = base.join("p.yaml");
        let cgroup = format!("/rampart-{name}");
        // The kernel lets the workload reach the control socket (`connect`), so that what
        // refuses it there is the daemon's own peer check (scenarios/control.rs).
        let text = format!(
            "{}    - path: {}\n      access: [connect]\n",
            swap_policy(name, &cgroup, "readable.txt"),
            s(&base.join("control.sock"))
        );
        std::fs::write(&policy, text)?;
        sign(&base, &policy, 1, "1h", SCOPE, &bundles.join("v1.rpb"))?;
        let pin_dir = format!("/sys/fs/bpf/rampart-{name}");
        let config = base.join("rampart.toml");
        std::fs::write(
            &config,
            format!(
                r#"[policy]
bundle_dir = "{bundles}"
trust = "{base}/trust.json"
state_dir = "{base}/state"
governs = ["{cgroup}"]
{policy_extra}
[lineage]
dir = "{base}/lineage"
host_key = "{base}/signer.key"
checkpoint_every = 4

[daemon]
pin_dir = "{pin_dir}"
control_socket = "{base}/control.sock"
"#,
                bundles = s(&bundles),
                base = s(&base),
            ),
        )?;
        let log = base.join("agent.log");
        let events = base.join("events.jsonl");
        Ok(Self {
            socket: s(&base.join("control.sock")),
            base,
            cg,
            pin_dir,
            log,
            events,
            config,
            agent: None,
        })
    }

    /// Starts the daemon on its configuration (again, after [`ControlledDaemon::terminate`]).
    pub fn spawn(&mut self) -> Result<()> {
        let agent = spawn_agent(
            &["run", "--config", &s(&self.config)],
            &self.events,
            &self.log,
        )?;
        if !Path::new(&self.socket).exists() {
            // The daemon binds its socket before it reports ready.
            bail!("the daemon reported ready before its control socket existed");
        }
        self.agent = Some(agent);
        Ok(())
    }

    /// The daemon exited on its own (after a release): waits for it.
    pub fn forget(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            let _ = agent.wait();
        }
    }

    /// SIGTERM: the daemon stops, its pinned enforcement stays.
    pub fn terminate(&mut self) -> Result<()> {
        if let Some(agent) = self.agent.take() {
            terminate_agent(agent, &self.log)?;
        }
        Ok(())
    }

    /// SIGKILL: the daemon dies without a word; its pinned enforcement stays.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut agent) = self.agent.take() {
            agent.kill()?;
            agent.wait()?;
        }
        Ok(())
    }

    /// Signs `policy.yaml` of its directory as `version` into `out`.
    pub fn sign(&self, version: u64, out: &Path) -> Result<()> {
        sign(
            &self.base,
            &self.base.join("p.yaml"),
            version,
            "1h",
            SCOPE,
            out,
        )
    }

    /// The version `rampart status` says is in force.
    pub fn version(&self) -> Result<u64> {
        let out = rampart(&["status", "--socket", &self.socket, "--json"])?;
        let v: serde_json::Value = serde_json::from_str(&out)?;
        v["version"]
            .as_u64()
            .ok_or_else(|| anyhow::anyhow!("no version in the status: {out}"))
    }

    /// Releases through the socket from the host (the daemon then exits), or, if that
    /// fails, stops it and releases its pins directly.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut agent) = self.agent.take() else {
            return Ok(());
        };
        let released = break_glass_token(&self.base).and_then(|token| {
            rampart(&[
                "release",
                "--socket",
                &self.socket,
                "--yes",
                "--token",
                &s(&token),
            ])
        });
        if let Err(e) = released {
            let _ = terminate_agent(agent, &self.log);
            let _ = rampart(&["release", "--pin-dir", &self.pin_dir, "--yes"]);
            return Err(e);
        }
        let status = agent.wait()?;
        if !status.success() {
            bail!("the daemon exited with {status} after the release");
        }
        Ok(())
    }

    /// Waits up to `within` for a deny event naming `path` on the daemon's stdout.
    pub fn deny_event_seen(&self, path: &Path, within: Duration) -> Option<Duration> {
        let started = Instant::now();
        let needle = format!("\"path\":\"{}\"", path.display());
        while started.elapsed() < within {
            let text = std::fs::read_to_string(&self.events).unwrap_or_default();
            if text
                .lines()
                .any(|l| l.contains(&needle) && l.contains("\"decision\":\"deny\""))
            {
                return Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for ControlledDaemon {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
