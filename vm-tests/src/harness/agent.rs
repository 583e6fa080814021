//! Starting and stopping agents (`rampart run` and friends) and reading their logs.

use std::{
    io::Read,
    os::unix::net::UnixDatagram,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::harness::env::{Env, AGENT, HOST_KEY_SECRET, LINEAGE_DIR, POLICY_FILE};

pub const NOTIFY_SOCKET: &str = "/run/rampart-notify.sock";

pub const AGENT_LOG: &str = "/tmp/rampart-agent.log";

/// The agent's stdout: one JSON decision event per line.
pub const AGENT_EVENTS: &str = "/tmp/rampart-events.jsonl";

/// Under TCG the agent's BTF parse and program load take seconds; leave ample room.
pub const AGENT_READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The JSON records of an agent's log file (other lines skipped).
pub fn log_records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Starts `rampart run` governing the test cgroup, and waits for its sd_notify READY=1.
pub fn start_agent(env: &mut Env) -> Result<()> {
    let child = spawn_agent(
        &main_agent_args(),
        Path::new(AGENT_EVENTS),
        Path::new(AGENT_LOG),
    )?;
    env.agent = Some(child);
    Ok(())
}

/// The main agent's command line: the test policy, its lineage, pinned at the default
/// pin directory.
pub fn main_agent_args() -> Vec<&'static str> {
    vec![
        "run",
        "--policy",
        POLICY_FILE,
        "--lineage",
        LINEAGE_DIR,
        "--host-key",
        HOST_KEY_SECRET,
    ]
}

/// Starts `rampart ARGS` with stdout to `events` and stderr to `log`, and waits for its
/// sd_notify READY=1.
pub fn spawn_agent(args: &[&str], events: &Path, log: &Path) -> Result<Child> {
    let _ = std::fs::remove_file(NOTIFY_SOCKET);
    let sock = UnixDatagram::bind(NOTIFY_SOCKET).context("binding the notify socket")?;
    sock.set_read_timeout(Some(Duration::from_secs(1)))?;
    let mut child = Command::new(AGENT)
        .args(args)
        .env("NOTIFY_SOCKET", NOTIFY_SOCKET)
        .env("RAMPART_LOG", "info")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(events)?)
        .stderr(std::fs::File::create(log)?)
        .spawn()
        .context("spawning the agent")?;
    let read_log = || std::fs::read_to_string(log).unwrap_or_default();
    let started = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "agent exited before it was ready ({status}); log:\n{}",
                read_log()
            );
        }
        if started.elapsed() > AGENT_READY_TIMEOUT {
            let _ = child.kill();
            bail!(
                "agent not ready after {AGENT_READY_TIMEOUT:?}; log:\n{}",
                read_log()
            );
        }
        if let Ok(n) = sock.recv(&mut buf) {
            if String::from_utf8_lossy(&buf[..n])
                .lines()
                .any(|l| l == "READY=1")
            {
                return Ok(child);
            }
        }
    }
}

/// Stops the agent with SIGTERM and keeps the decision counters it logs on the way out.
pub fn stop_agent(env: &mut Env) -> Result<()> {
    let Some(child) = env.agent.take() else {
        bail!("the agent is not running");
    };
    if let Some(v) = terminate_agent(child, Path::new(AGENT_LOG))? {
        env.agent_decisions = v["decisions"].as_str().map(str::to_owned);
        env.agent_event_drops = v["event_drops"].as_u64();
        env.agent_quiet_denials = v["quiet_denials"].as_u64();
    }
    Ok(())
}

/// Stops an agent with SIGTERM; returns its closing summary log record (decision counters
/// and event drops), if it wrote one.
pub fn terminate_agent(mut child: Child, log: &Path) -> Result<Option<serde_json::Value>> {
    // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait()?;
    let text = std::fs::read_to_string(log).unwrap_or_default();
    if !status.success() {
        bail!("agent exited with {status} on SIGTERM; log:\n{text}");
    }
    Ok(text.lines().find_map(|line| {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        v.get("decisions").is_some().then_some(v)
    }))
}

/// Sends SIGHUP to the agent `pid` and waits (60 s at most) until its log `log` says a
/// policy is in force once more than before.
pub fn reload(pid: u32, log: &Path) -> Result<()> {
    let loaded = || {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .matches("\"policy in force")
            .count()
    };
    let before = loaded();
    // SAFETY: kill(2) on an agent this harness spawned and has not reaped.
    unsafe { libc::kill(pid as i32, libc::SIGHUP) };
    let started = Instant::now();
    while loaded() == before {
        if started.elapsed() > Duration::from_secs(60) {
            bail!(
                "the agent did not reload within 60 s after SIGHUP; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The agent's log so far (for failure details).
pub fn agent_log() -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(AGENT_LOG) {
        let _ = f.read_to_string(&mut s);
    }
    s
}
