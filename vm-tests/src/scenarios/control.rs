//! The control socket cannot be used by the workload, nor held by any client: a root
//! process inside a governed cgroup is refused (and the refusal is recorded), and a client
//! that connects and sends nothing delays neither event delivery nor other clients.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Child,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};

use crate::harness::{
    agent::{spawn_agent, terminate_agent},
    cli::{keys_and_trust, rampart, s, sign, swap_policy, SCOPE},
    env::{Env, CGROUP_ROOT},
    observe::{exec_target, op_in, records},
};

/// A daemon on a configuration file with a control socket, enforcing a signed v1 that lets
/// the probe run in its cgroup.
struct ControlledDaemon {
    base: PathBuf,
    cg: PathBuf,
    socket: String,
    pin_dir: String,
    log: PathBuf,
    events: PathBuf,
    agent: Option<Child>,
}

impl ControlledDaemon {
    fn start(name: &str) -> Result<Self> {
        let base = PathBuf::from(format!("/run/rampart-{name}"));
        keys_and_trust(&base)?;
        let bundles = base.join("bundles");
        std::fs::create_dir_all(&bundles)?;
        let cg = Path::new(CGROUP_ROOT).join(format!("rampart-{name}"));
        std::fs::create_dir_all(&cg)?;
        let policy = base.join("p.yaml");
        let cgroup = format!("/rampart-{name}");
        std::fs::write(&policy, swap_policy(name, &cgroup, "readable.txt"))?;
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

[lineage]
dir = "{base}/lineage"
host_key = "{base}/signer.key"

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
        let agent = spawn_agent(&["run", "--config", &s(&config)], &events, &log)?;
        let socket = base.join("control.sock");
        if !socket.exists() {
            // The daemon binds its socket before it reports ready.
            bail!("the daemon reported ready before its control socket existed");
        }
        Ok(Self {
            socket: s(&socket),
            base,
            cg,
            pin_dir,
            log,
            events,
            agent: Some(agent),
        })
    }

    /// Releases through the socket from the host (the daemon then exits), or, if that
    /// fails, stops it and releases its pins directly.
    fn stop(&mut self) -> Result<()> {
        let Some(mut agent) = self.agent.take() else {
            return Ok(());
        };
        if let Err(e) = rampart(&["release", "--socket", &self.socket, "--yes"]) {
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
    fn deny_event_seen(&self, path: &Path, within: Duration) -> Option<Duration> {
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

pub fn governed_root_peer_refused(env: &mut Env) -> Result<String> {
    let mut daemon = ControlledDaemon::start("ctl")?;
    // From the host: answered.
    let status = rampart(&["status", "--socket", &daemon.socket, "--json"])?;
    if !status.contains("\"version\":1") {
        bail!("status from the host does not show version 1: {status}");
    }
    // From root inside the governed cgroup: refused, both a status and a release.
    for op in ["status", "release"] {
        let got = op_in(env, &daemon.cg, &["control", &daemon.socket, op])?;
        if !got.denied() {
            bail!(
                "a root process inside the governed cgroup asked `{op}` on the control socket \
                 and got {got:?}, expected a refusal"
            );
        }
    }
    // The refused release changed nothing: the denied probe is still denied.
    let got = exec_target(env, &daemon.cg, &env.denied)?;
    if !got.denied() || !Path::new(&daemon.pin_dir).join("links").exists() {
        bail!(
            "after the refused release: denied probe got {got:?}, pins present {}",
            Path::new(&daemon.pin_dir).join("links").exists()
        );
    }
    daemon.stop()?;
    let refused: Vec<_> = records(&daemon.base.join("lineage"))?
        .into_iter()
        .filter(|r| r["kind"] == "control-refused" && r["cgroup"] == "/rampart-ctl")
        .collect();
    if refused.len() < 2 {
        bail!(
            "expected 2 control-refused records for /rampart-ctl in the lineage, found {}",
            refused.len()
        );
    }
    Ok(format!(
        "status from the host answered; status and release from root inside /rampart-ctl \
         refused, enforcement unchanged; {} control-refused records in the lineage",
        refused.len()
    ))
}

pub fn silent_client_does_not_delay_events(env: &mut Env) -> Result<String> {
    let mut daemon = ControlledDaemon::start("silent")?;
    let result = (|| -> Result<String> {
        // A host client connects and sends nothing (the daemon waits 10 s for its line).
        let mut silent = std::os::unix::net::UnixStream::connect(&daemon.socket)?;
        std::thread::sleep(Duration::from_millis(300));
        let got = exec_target(env, &daemon.cg, &env.denied)?;
        if !got.denied() {
            bail!("the denied probe got {got:?}, expected EPERM");
        }
        let Some(took) = daemon.deny_event_seen(&env.denied, Duration::from_secs(3)) else {
            bail!(
                "the deny event did not reach the daemon's output within 3 s while a silent \
                 client held the control socket"
            );
        };
        let asked = Instant::now();
        let status = rampart(&["status", "--socket", &daemon.socket, "--json"])?;
        let answered = asked.elapsed();
        if !status.contains("\"version\":1") || answered > Duration::from_secs(3) {
            bail!("a second client's status took {answered:?} while the silent one was connected: {status}");
        }
        // The silent client is still connected (its 10 s are not up).
        silent.write_all(b"")?;
        Ok(format!(
            "with a silent client connected, the deny event was delivered after {took:?} and \
             another client's status answered in {answered:?}"
        ))
    })();
    let stopped = daemon.stop();
    let detail = result?;
    stopped?;
    Ok(detail)
}
