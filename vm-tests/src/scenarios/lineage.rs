//! Lineage scenarios: the main agent's lineage verifies and holds every denial the
//! enforcement scenarios caused; a forced ring-buffer overflow becomes gap records whose
//! counts equal the kernel's drop counter, and `strict` denies what it could not record.

use std::{
    path::Path,
    process::{Command, Output},
    time::Duration,
};

use anyhow::{bail, Context, Result};

use serde_json::Value;

use crate::harness::agent::{log_records, spawn_agent, terminate_agent, AGENT_EVENTS};
use crate::harness::env::{Env, AGENT, CGROUP_ROOT, FIXTURES, HOST_KEY, LINEAGE_DIR};
use crate::harness::observe::records;

pub fn lineage_verify(dir: &Path) -> Result<(i32, Value)> {
    let out: Output = Command::new(AGENT)
        .args(["lineage", "verify"])
        .arg(dir)
        .arg("--pub")
        .arg(format!("{HOST_KEY}.pub"))
        .arg("--checkpoints")
        .arg(dir.join("checkpoints"))
        .arg("--json")
        .output()
        .context("running rampart lineage verify")?;
    let report: Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "lineage verify printed no JSON report: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok((out.status.code().unwrap_or(-1), report))
}

/// After the main agent stopped: its lineage verifies (exit 0, everything anchored), holds
/// one decision record per event the agent printed, and every denial the enforcement
/// scenarios expected, with its reason and the policy version.
pub fn main_lineage_verifies(env: &mut Env) -> Result<String> {
    let dir = Path::new(LINEAGE_DIR);
    let (code, report) = lineage_verify(dir)?;
    if code != 0 {
        bail!("lineage verify exited {code}: {report}");
    }
    let all = records(dir)?;
    let decisions: Vec<&Value> = all.iter().filter(|r| r["kind"] == "decision").collect();
    let printed = std::fs::read_to_string(AGENT_EVENTS)?.lines().count();
    if decisions.len() != printed {
        bail!(
            "the lineage holds {} decisions, the agent printed {printed} events",
            decisions.len()
        );
    }
    let mut missing = Vec::new();
    for want in &env.expected_events {
        let found = decisions
            .iter()
            .any(|e| want.matches(e) && e["policy_version"] == 0);
        if !found {
            missing.push(format!("{} {} {}", want.action, want.target, want.reason));
        }
    }
    if !missing.is_empty() {
        bail!(
            "{} expected denials not in the lineage: {}",
            missing.len(),
            missing.join("; ")
        );
    }
    let kinds = |k: &str| all.iter().filter(|r| r["kind"] == k).count();
    // One policy change at start, one per reload (the re-pin scenario reloads once).
    if kinds("agent-start") != 1 || kinds("agent-stop") != 1 || kinds("policy-change") < 1 {
        bail!("expected one agent-start and agent-stop, and policy-change records");
    }
    Ok(format!(
        "lineage verify exit 0: {} records, {} anchored by {} checkpoints (+{} off-host); {} decisions = events printed; all {} expected denials present with reason and version",
        report["records"], report["anchored"], report["checkpoints"], report["external_checkpoints"],
        decisions.len(), env.expected_events.len()
    ))
}

pub const FLOOD_OPENS: u64 = 8000;

/// Stops the agent (SIGSTOP) while a workload makes far more decisions than the ring
/// buffer holds, then lets it go on: the lineage's gap records add up to the kernel's drop
/// counter, and with `strict` every decision that could not be recorded was denied.
pub fn ring_overflow_gaps(env: &mut Env) -> Result<String> {
    let base = Path::new("/run/rampart-flood");
    let _ = std::fs::remove_dir_all(base);
    std::fs::create_dir_all(base)?;
    let cg = Path::new(CGROUP_ROOT).join("rampart-flood");
    std::fs::create_dir_all(&cg)?;
    let target = format!("{FIXTURES}/data/readable.txt");
    let policy = base.join("flood.yaml");
    std::fs::write(
        &policy,
        format!(
            "apiVersion: rampart.dev/v1alpha1
kind: Policy
metadata:
  name: flood
spec:
  governs: [/rampart-flood]
  events: all
  strict: true
  exec:
    allow: [{FIXTURES}/allowed-probe]
  files:
    - path: {target}
      access: [read]
"
        ),
    )?;
    let lineage = base.join("lineage");
    let key = format!("{HOST_KEY}.key");
    let child = spawn_agent(
        &[
            "run",
            "--no-pin",
            "--policy",
            &policy.to_string_lossy(),
            "--lineage",
            &lineage.to_string_lossy(),
            "--host-key",
            &key,
        ],
        &base.join("events.jsonl"),
        &base.join("agent.log"),
    )?;
    let pid = child.id() as i32;
    // SAFETY: signals to the agent we spawned and have not reaped.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let out = Command::new(&env.runner)
        .arg("cg-exec")
        .arg(&cg)
        .arg(&env.allowed)
        .args(["op", "open-loop", &target, &FLOOD_OPENS.to_string()])
        .output();
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let out = out.context("running the workload")?;
    std::thread::sleep(Duration::from_secs(1));
    let summary = terminate_agent(child, &base.join("agent.log"))?
        .context("the agent logged no closing summary")?;
    let drops = summary["event_drops"].as_u64().context("no event_drops")?;
    let report = String::from_utf8_lossy(&out.stdout);
    let counts = report
        .lines()
        .find_map(|l| l.strip_prefix("open-loop: "))
        .with_context(|| format!("the workload printed no counts: {report}"))?;
    let count = |k: &str| -> Result<u64> {
        counts
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no {k} in {counts}"))
    };
    let (ok, denied, other) = (count("ok")?, count("denied")?, count("other")?);

    let all = records(&lineage)?;
    let gap_lost: u64 = all
        .iter()
        .filter(|r| r["kind"] == "gap" && r["source"] == "kernel-ring")
        .map(|r| r["lost"].as_u64().unwrap_or(0))
        .sum();
    let recorded = all
        .iter()
        .filter(|r| r["kind"] == "decision" && r["path"] == target.as_str())
        .count() as u64;
    if drops == 0 {
        bail!("no event was dropped: the flood did not overflow the ring ({counts})");
    }
    if gap_lost != drops {
        bail!("gap records account for {gap_lost} lost events, the kernel counted {drops}");
    }
    if denied == 0 || other != 0 {
        bail!("strict should deny the unrecorded opens (and only with EPERM): {counts}");
    }
    if recorded + denied != FLOOD_OPENS || recorded != ok {
        bail!(
            "every open must be recorded or denied: {recorded} recorded + {denied} denied != {FLOOD_OPENS} ({counts})"
        );
    }
    let (code, verify) = lineage_verify(&lineage)?;
    if code != 3 || verify["lost"].as_u64() != Some(drops) {
        bail!("lineage verify should exit 3 (gaps) with {drops} lost: exit {code}, {verify}");
    }
    Ok(format!(
        "{FLOOD_OPENS} opens with the agent stopped: {recorded} recorded, {denied} denied by strict (event-unrecorded); kernel drops {drops} = gap records' lost {gap_lost}; lineage verify exit 3 (gaps)"
    ))
}

/// Cut back: kill -9 the daemon, truncate its segment to an earlier checkpoint (and the
/// checkpoint file with it), restart. The restarted daemon finds the lineage shorter than
/// its anchor (kept in the state directory and a pinned map), records `truncated`, and
/// `lineage verify` fails without the off-host checkpoint file.
pub fn cut_tail_caught_after_restart(env: &mut Env) -> Result<String> {
    let mut daemon = crate::harness::daemon::ControlledDaemon::start("cut")?;
    let result = (|| -> Result<String> {
        // Denials to record: several checkpoints (one every 4 records).
        for _ in 0..6 {
            let got = crate::harness::observe::exec_target(env, &daemon.cg, &env.denied)?;
            if !got.denied() {
                bail!("the denied probe got {got:?}");
            }
        }
        // Let the tick keep the anchor, then die without a word.
        std::thread::sleep(Duration::from_millis(500));
        daemon.kill()?;
        let lineage = daemon.base.join("lineage");
        let seg = lineage.join("segment-00000000.jsonl");
        let text =
            std::fs::read_to_string(&seg).with_context(|| format!("reading {}", seg.display()))?;
        let lines: Vec<&str> = text.lines().collect();
        let first_cp = lines
            .iter()
            .position(|l| l.contains("\"kind\":\"checkpoint\""))
            .context("no checkpoint in the first segment")?;
        if first_cp + 1 >= lines.len() {
            bail!("nothing after the first checkpoint to cut");
        }
        let kept: String = lines[..=first_cp]
            .iter()
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&seg, kept)?;
        // The checkpoint file as it was then: the first checkpoint's note.
        let record: Value = serde_json::from_str(lines[first_cp])?;
        let first_note = record["note"]
            .as_str()
            .context("the checkpoint record has no note")?;
        std::fs::write(lineage.join("checkpoints"), format!("{first_note}\n"))?;
        let cut = lines.len() - first_cp - 1;
        daemon.spawn()?;
        let logged = log_records(&daemon.log)
            .iter()
            .any(|r| r["message"] == "the lineage was cut back or replaced while no agent ran; recorded as truncated");
        daemon.stop()?;
        let out = Command::new(AGENT)
            .args(["lineage", "verify"])
            .arg(&lineage)
            .arg("--pub")
            .arg(daemon.base.join("signer.pub"))
            .output()?;
        let report = String::from_utf8_lossy(&out.stdout);
        let code = out.status.code().unwrap_or(-1);
        if code != 1 || !report.contains("cut back or replaced") || !logged {
            bail!(
                "after cutting {cut} records: lineage verify exit {code} (expected 1, \
                 tampered), logged truncation {logged}; report:\n{report}"
            );
        }
        Ok(format!(
            "{cut} records cut after kill -9 (segment and checkpoint file); the restarted daemon \
             recorded `truncated`, and lineage verify without the off-host file exits 1"
        ))
    })();
    let _ = daemon.stop();
    result
}
