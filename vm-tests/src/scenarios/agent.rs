//! The agent itself: it refuses a kernel without BPF-LSM, audit mode, enforcement after it
//! stops, and every denial present as an event with its reason.

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::harness::env::{Env, POLICY_FILE};
use crate::harness::observe::{exec_target, op_in, p, want, want_denied, Outcome};

pub fn audit_mode(env: &mut Env) -> Result<String> {
    let a = env.audited.clone();
    want(
        "disallowed probe under an audit policy",
        exec_target(env, &a, &env.denied)?,
        Outcome::Ran,
    )?;
    env.expect_event("exec", &p(&env.denied), "audit", "no-rule");
    want(
        "unlisted file under an audit policy",
        op_in(env, &a, &["open", "/srv/secret.txt", "read"])?,
        Outcome::Ok,
    )?;
    env.expect_event("open", "/srv/secret.txt", "audit", "no-rule");
    Ok(
        "audit mode ran the disallowed probe and opened an unlisted file, recording both as audit"
            .into(),
    )
}

pub fn enforcement_outlives_agent(env: &mut Env) -> Result<String> {
    want_denied(
        env,
        "disallowed probe after the agent stopped (SIGTERM)",
        exec_target(env, &env.governed, &env.denied)?,
        ("exec", &p(&env.denied), "access-not-granted"),
    )?;
    // This denial's event waits in the pinned ring for the next agent; it is not expected
    // in the stopped agent's output.
    env.expected_events.pop();
    want(
        "allowed probe after the agent stopped",
        exec_target(env, &env.governed, &env.allowed)?,
        Outcome::Ran,
    )?;
    Ok(
        "after SIGTERM the pinned programs still deny the disallowed probe and run the allowed one"
            .into(),
    )
}

pub fn refuses_without_bpf_lsm(env: &mut Env) -> Result<String> {
    let out = Command::new(crate::harness::env::AGENT)
        .args(["run", "--policy", POLICY_FILE])
        .output()
        .context("spawning the agent")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        bail!("the agent exited 0 on a kernel without BPF-LSM: {stderr}");
    }
    for needle in ["BPF-LSM is not active", "lsm=", "bpf"] {
        if !stderr.contains(needle) {
            bail!("the agent's error does not say {needle:?}: {stderr}");
        }
    }
    // Nothing was left half-loaded: the disallowed probe still runs in the cgroup.
    want(
        "disallowed probe after the refusal",
        exec_target(env, &env.governed, &env.denied)?,
        Outcome::Ran,
    )?;
    let first = stderr.lines().last().unwrap_or_default();
    Ok(format!("agent exited {} with: {first}", out.status))
}

/// Sum of the counters in the agent's `decisions` summary whose names pass `pick`.
pub fn counter_sum(decisions: &str, pick: impl Fn(&str) -> bool) -> Result<u64> {
    decisions
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| pick(k))
        .map(|(_, v)| v.parse::<u64>().context("counter is not a number"))
        .sum()
}

pub fn deny_events_match(env: &mut Env) -> Result<String> {
    let drops = env
        .agent_event_drops
        .context("the agent did not report event_drops when it stopped")?;
    if drops != 0 {
        bail!("the kernel dropped {drops} events with a nearly idle ring buffer");
    }
    let decisions = env
        .agent_decisions
        .clone()
        .context("the agent logged no decision counters")?;
    let text =
        std::fs::read_to_string(crate::harness::agent::AGENT_EVENTS).context("reading events")?;
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("event is not JSON: {l}")))
        .collect::<Result<_>>()?;
    let quiet = env
        .agent_quiet_denials
        .context("the agent did not report quiet_denials when it stopped")?;
    // With `events: denials`, every denying decision (and audit record) is one event, but
    // for the kernel's quiet probes (denied and counted, no event due).
    let denying = counter_sum(&decisions, |k| k != "allowed" && k != "event-unrecorded")?;
    if denying.checked_sub(quiet) != Some(events.len() as u64) {
        bail!("the kernel counted {denying} denying decisions ({decisions}), {quiet} of them quiet, but the agent wrote {} events", events.len());
    }
    let mut missing = Vec::new();
    for want in &env.expected_events {
        let found = events.iter().any(|e| want.matches(e));
        if !found {
            missing.push(format!(
                "{} {} {} {}",
                want.action, want.target, want.decision, want.reason
            ));
        }
    }
    if !missing.is_empty() {
        let sample: Vec<&str> = text
            .lines()
            .filter(|l| {
                !env.expected_events
                    .iter()
                    .any(|w| l.contains(&format!("\"path\":\"{}\"", w.target)))
            })
            .take(8)
            .collect();
        bail!(
            "{} expected events missing:\n{}\nevents matching no expectation's path:\n{}",
            missing.len(),
            missing.join("\n"),
            sample.join("\n")
        );
    }
    for e in &events {
        if e["policy"].is_null()
            || e["pid"].as_u64().unwrap_or(0) == 0
            || e["comm"].as_str().unwrap_or_default().is_empty()
        {
            bail!("event lacks policy, pid or comm: {e}");
        }
    }
    Ok(format!(
        "{} events = {denying} denying decisions counted by the kernel less {quiet} quiet ones; all {} expected denials found with action, target and reason; 0 drops",
        events.len(),
        env.expected_events.len()
    ))
}
