//! Enforcement outlives the agent: a restarted agent adopts what is pinned (no window),
//! `kill -9` leaves the policy enforcing, decisions made while no agent runs reach the
//! lineage through the pinned ring buffer, and `rampart release` removes everything.

use std::{path::Path, process::Command};

use anyhow::{bail, Context, Result};

use serde_json::Value;

use crate::harness::agent::{log_records, main_agent_args, spawn_agent, terminate_agent};
use crate::harness::env::{Env, AGENT, HOST_KEY, LINEAGE_DIR, PIN_DIR};
use crate::harness::observe::{exec_target, Outcome};

pub fn denied_probe_runs(env: &Env) -> Result<Outcome> {
    exec_target(env, &env.governed, &env.denied)
}

pub fn restart_kill_release(env: &mut Env) -> Result<String> {
    let denied_path = env.denied.to_string_lossy().into_owned();
    // 0. No agent runs (phase Stopped): this denial waits in the pinned ring. Made here,
    // not left to the SIGTERM scenario, so this one also runs when picked alone.
    if !denied_probe_runs(env)?.denied() {
        bail!("with no agent running the disallowed probe was not denied");
    }
    // 1. A new agent adopts the pinned state and detaches the old links.
    let log_b = Path::new("/tmp/rampart-agent-b.log");
    let events_b = Path::new("/tmp/rampart-events-b.jsonl");
    let b = spawn_agent(&main_agent_args(), events_b, log_b)?;
    let records = log_records(log_b);
    if !records
        .iter()
        .any(|r| r["message"] == "adopting the policy an earlier agent left pinned")
    {
        let _ = terminate_agent(b, log_b);
        bail!("the restarted agent did not adopt the pinned policy");
    }
    let detached = records
        .iter()
        .find_map(|r| r["earlier_links_detached"].as_u64())
        .unwrap_or(0);
    if detached == 0 {
        let _ = terminate_agent(b, log_b);
        bail!("the restarted agent detached no earlier link");
    }
    // Give the agent time to drain what waited in the pinned ring.
    std::thread::sleep(std::time::Duration::from_millis(500));
    // 2. kill -9: enforcement stays.
    let pid = b.id() as i32;
    // SAFETY: kill(2) on the agent spawned above.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let mut b = b;
    let _ = b.wait();
    // The denial made while no agent ran (step 0) waited in the pinned ring and was
    // delivered to this agent.
    let carried = std::fs::read_to_string(events_b)?
        .lines()
        .any(|l| l.contains(&format!("\"path\":\"{denied_path}\"")));
    if !carried {
        bail!("the denial made while no agent ran did not reach the restarted agent");
    }
    if !denied_probe_runs(env)?.denied() {
        bail!("after kill -9 of the agent the disallowed probe was not denied");
    }
    if exec_target(env, &env.governed, &env.allowed)? != Outcome::Ran {
        bail!("after kill -9 the allowed probe did not run");
    }
    // 3. A third agent adopts again; the denial made while the agent was dead reaches it.
    let log_c = Path::new("/tmp/rampart-agent-c.log");
    let events_c = Path::new("/tmp/rampart-events-c.jsonl");
    let c = spawn_agent(&main_agent_args(), events_c, log_c)?;
    std::thread::sleep(std::time::Duration::from_millis(500));
    terminate_agent(c, log_c)?;
    let after_kill = std::fs::read_to_string(events_c)?.lines().any(|l| {
        l.contains(&format!("\"path\":\"{denied_path}\"")) && l.contains("\"decision\":\"deny\"")
    });
    if !after_kill {
        bail!("the denial made while the agent was dead did not reach the next agent");
    }
    // 4. The lineage links the three segments; the kill -9 restart is a gap.
    let out = Command::new(AGENT)
        .args([
            "lineage",
            "verify",
            LINEAGE_DIR,
            "--pub",
            &format!("{HOST_KEY}.pub"),
            "--json",
        ])
        .output()?;
    let report: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("lineage verify: {}", String::from_utf8_lossy(&out.stderr)))?;
    if out.status.code() != Some(3) || report["restarts"] != 2 || report["tampered"] != Value::Null
    {
        bail!("lineage after two restarts should verify with gaps (exit 3, 2 restarts): exit {:?}, {report}", out.status.code());
    }
    // 5. Break-glass.
    let out = Command::new(AGENT).args(["release", "--yes"]).output()?;
    if !out.status.success() {
        bail!(
            "rampart release failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if Path::new(PIN_DIR).exists() {
        bail!("{PIN_DIR} still exists after release");
    }
    if denied_probe_runs(env)? != Outcome::Ran {
        bail!("after release the disallowed probe is still denied");
    }
    Ok(format!(
        "restart adopted the pins ({detached} earlier links detached); denials made while no agent ran (after SIGTERM, after kill -9) reached the next agent through the pinned ring; kill -9 kept enforcing; lineage links 3 segments (exit 3: the restarts are gaps); release removed everything"
    ))
}
