//! The end-to-end scenarios. Each one makes real execs in real cgroups with the real
//! programs loaded, and fails unless the kernel did exactly what the scenario expects.

use std::{
    os::unix::fs::{symlink, MetadataExt},
    path::Path,
    process::{Command, Output},
};

use anyhow::{bail, Context, Result};

use crate::guest::Env;

/// What a probe prints when it ran.
pub const PROBE_OK: &str = "rampart-probe-ok";

/// When a scenario runs relative to the agent's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentPhase {
    /// Before the agent starts: controls showing the set-up itself does not deny.
    NotStarted,
    /// With `rampart run` enforcing.
    Running,
    /// After the agent stopped.
    Stopped,
}

/// What the guest kernel must offer for a scenario to run; otherwise it is skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requires {
    /// BPF-LSM active (`bpf` in /sys/kernel/security/lsm).
    BpfLsm,
    /// BPF-LSM *not* active: scenarios about refusing such a kernel.
    NoBpfLsm,
}

pub struct Scenario {
    pub name: &'static str,
    pub phase: AgentPhase,
    pub requires: Requires,
    pub run: fn(&mut Env) -> Result<String>,
}

/// Every scenario, in the order they run.
pub const ALL: &[Scenario] = &[
    Scenario {
        name: "agent-refuses-kernel-without-bpf-lsm",
        phase: AgentPhase::NotStarted,
        requires: Requires::NoBpfLsm,
        run: refuses_without_bpf_lsm,
    },
    Scenario {
        name: "control-denied-binary-runs-before-enforcement",
        phase: AgentPhase::NotStarted,
        requires: Requires::BpfLsm,
        run: control_before_enforcement,
    },
    Scenario {
        name: "exec-allowed-binary-runs-inside",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: allowed_runs_inside,
    },
    Scenario {
        name: "exec-disallowed-binary-denied-inside",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: disallowed_denied_inside,
    },
    Scenario {
        name: "exec-disallowed-binary-runs-outside",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: disallowed_runs_outside,
    },
    Scenario {
        name: "exec-child-cgroup-created-later-is-governed",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: late_child_cgroup_governed,
    },
    Scenario {
        name: "exec-hardlink-and-symlink-to-disallowed-denied",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: other_names_for_disallowed_denied,
    },
    Scenario {
        name: "exec-copy-of-allowed-binary-denied",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: copy_of_allowed_denied,
    },
    Scenario {
        name: "agent-decision-counters-match-observed",
        phase: AgentPhase::Stopped,
        requires: Requires::BpfLsm,
        run: counters_match,
    },
    Scenario {
        name: "deny-events-match-observed-denials",
        phase: AgentPhase::Stopped,
        requires: Requires::BpfLsm,
        run: deny_events_match,
    },
    Scenario {
        name: "enforcement-ends-with-agent",
        phase: AgentPhase::Stopped,
        requires: Requires::BpfLsm,
        run: enforcement_ends_with_agent,
    },
];

/// What happened to one exec attempt.
#[derive(Debug, PartialEq, Eq)]
enum ExecResult {
    /// The probe ran and printed its marker.
    Ran,
    /// execve failed with this errno.
    Failed(i32),
}

fn classify(out: &Output) -> Result<ExecResult> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() && stdout.contains(PROBE_OK) {
        return Ok(ExecResult::Ran);
    }
    if let Some(errno) = stderr
        .lines()
        .find_map(|l| l.strip_prefix("cg-exec: errno="))
        .and_then(|n| n.trim().parse().ok())
    {
        return Ok(ExecResult::Failed(errno));
    }
    bail!(
        "unexpected result ({}): stdout={stdout:?} stderr={stderr:?}",
        out.status
    )
}

/// Execs `path` (with argument `probe`) from inside `cgroup`.
fn exec_in(env: &Env, cgroup: &Path, path: &Path) -> Result<ExecResult> {
    let out = Command::new(&env.runner)
        .arg("cg-exec")
        .arg(cgroup)
        .arg(path)
        .arg("probe")
        .output()
        .context("spawning cg-exec")?;
    classify(&out)
}

/// Expects the exec to run; counts it when it happened under governance.
fn expect_runs(env: &mut Env, cgroup: &Path, path: &Path, governed: bool) -> Result<()> {
    match exec_in(env, cgroup, path)? {
        ExecResult::Ran => {
            if governed {
                env.observed_allowed += 1;
            }
            Ok(())
        }
        ExecResult::Failed(errno) => bail!(
            "exec of {} in {} failed with errno {errno}; expected it to run",
            path.display(),
            cgroup.display()
        ),
    }
}

/// Expects the exec to fail with EPERM; counts the denial.
fn expect_eperm(env: &mut Env, cgroup: &Path, path: &Path) -> Result<()> {
    match exec_in(env, cgroup, path)? {
        ExecResult::Failed(libc::EPERM) => {
            env.observed_denied += 1;
            Ok(())
        }
        ExecResult::Failed(errno) => bail!(
            "exec of {} in {} failed with errno {errno}; expected EPERM",
            path.display(),
            cgroup.display()
        ),
        ExecResult::Ran => bail!(
            "exec of {} in {} RAN; expected EPERM",
            path.display(),
            cgroup.display()
        ),
    }
}

fn control_before_enforcement(env: &mut Env) -> Result<String> {
    let governed = env.governed.clone();
    let denied = env.denied.clone();
    expect_runs(env, &governed, &denied, false)?;
    Ok("the disallowed probe runs in the test cgroup while no agent is loaded".into())
}

fn allowed_runs_inside(env: &mut Env) -> Result<String> {
    let (governed, allowed) = (env.governed.clone(), env.allowed.clone());
    expect_runs(env, &governed, &allowed, true)?;
    Ok("allowed probe ran in the governed cgroup".into())
}

fn disallowed_denied_inside(env: &mut Env) -> Result<String> {
    let (governed, denied) = (env.governed.clone(), env.denied.clone());
    expect_eperm(env, &governed, &denied)?;
    Ok("disallowed probe got EPERM in the governed cgroup".into())
}

fn disallowed_runs_outside(env: &mut Env) -> Result<String> {
    let (ungoverned, denied) = (env.ungoverned.clone(), env.denied.clone());
    expect_runs(env, &ungoverned, &denied, false)?;
    let out = Command::new(&env.denied).arg("probe").output()?;
    if !String::from_utf8_lossy(&out.stdout).contains(PROBE_OK) {
        bail!("disallowed probe did not run in the root cgroup: {out:?}");
    }
    Ok("disallowed probe ran in an ungoverned sibling cgroup and in the root cgroup".into())
}

fn late_child_cgroup_governed(env: &mut Env) -> Result<String> {
    let child = env.governed.join("created-later");
    let grandchild = child.join("deeper");
    std::fs::create_dir_all(&grandchild).context("creating descendant cgroups")?;
    let (allowed, denied) = (env.allowed.clone(), env.denied.clone());
    for cg in [&child, &grandchild] {
        expect_runs(env, cg, &allowed, true)?;
        expect_eperm(env, cg, &denied)?;
    }
    Ok(
        "cgroups created after start (two levels down) allow the allowed probe and deny the other"
            .into(),
    )
}

fn other_names_for_disallowed_denied(env: &mut Env) -> Result<String> {
    let hard = env.fixture("innocent-hardlink");
    let soft = env.fixture("innocent-symlink");
    let _ = std::fs::remove_file(&hard);
    let _ = std::fs::remove_file(&soft);
    std::fs::hard_link(&env.denied, &hard).context("creating hardlink")?;
    symlink(&env.denied, &soft).context("creating symlink")?;
    let governed = env.governed.clone();
    expect_eperm(env, &governed, &hard)?;
    expect_eperm(env, &governed, &soft)?;
    Ok("a hardlink and a symlink to the disallowed probe both got EPERM".into())
}

fn copy_of_allowed_denied(env: &mut Env) -> Result<String> {
    let copy = env.fixture("copy-of-allowed");
    std::fs::copy(&env.allowed, &copy).context("copying the allowed probe")?;
    let governed = env.governed.clone();
    expect_eperm(env, &governed, &copy)?;
    Ok("a byte-identical copy of the allowed probe (another inode) got EPERM".into())
}

fn counters_match(env: &mut Env) -> Result<String> {
    let Some(decisions) = env.agent_decisions.clone() else {
        bail!("the agent logged no decision counters on SIGTERM");
    };
    let count = |name: &str| -> Result<u64> {
        decisions
            .split(',')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .context(format!("counter {name} missing from {decisions:?}"))?
            .parse()
            .context("counter is not a number")
    };
    let (allowed, denied) = (count("exec-allowed")?, count("exec-not-allowed")?);
    let other: u64 = ["layout-unset", "identity-unreadable"]
        .iter()
        .map(|n| count(n))
        .sum::<Result<u64>>()?;
    if (allowed, denied, other) != (env.observed_allowed, env.observed_denied, 0) {
        bail!(
            "kernel counted allowed={allowed} not-allowed={denied} other={other}; scenarios \
             observed allowed={} denied={}",
            env.observed_allowed,
            env.observed_denied
        );
    }
    Ok(format!(
        "kernel counters equal observed execs: {allowed} allowed, {denied} denied, 0 other"
    ))
}

fn enforcement_ends_with_agent(env: &mut Env) -> Result<String> {
    let (governed, denied) = (env.governed.clone(), env.denied.clone());
    expect_runs(env, &governed, &denied, false)?;
    Ok("after SIGTERM the disallowed probe runs again (pinning is not implemented yet)".into())
}

fn refuses_without_bpf_lsm(env: &mut Env) -> Result<String> {
    let out = Command::new(crate::guest::AGENT)
        .arg("run")
        .arg("--govern")
        .arg(&env.governed)
        .arg("--allow-exec")
        .arg(&env.allowed)
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
    let (governed, denied) = (env.governed.clone(), env.denied.clone());
    expect_runs(env, &governed, &denied, false)?;
    let first = stderr.lines().last().unwrap_or_default();
    Ok(format!("agent exited {} with: {first}", out.status))
}

fn deny_events_match(env: &mut Env) -> Result<String> {
    let drops = env
        .agent_event_drops
        .context("the agent did not report event_drops when it stopped")?;
    if drops != 0 {
        bail!("the kernel dropped {drops} events with a nearly idle ring buffer");
    }
    let text = std::fs::read_to_string(crate::guest::AGENT_EVENTS).context("reading events")?;
    let ino = |p: &Path| std::fs::metadata(p).map(|m| m.ino());
    let denied_inodes = [ino(&env.denied)?, ino(&env.fixture("copy-of-allowed"))?];
    let governed = env.governed.join("created-later");
    let cgroups = [
        ino(&env.governed)?,
        ino(&governed)?,
        ino(&governed.join("deeper"))?,
    ];
    let mut count = 0;
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("event is not JSON: {line}"))?;
        let field = |k: &str| v.get(k).cloned().unwrap_or_default();
        let expect = [
            ("action", "exec"),
            ("decision", "deny"),
            ("reason", "exec-not-allowed"),
        ];
        for (k, want) in expect {
            if field(k) != want {
                bail!("event {k} is {}, expected {want}: {line}", field(k));
            }
        }
        let comm = field("comm").as_str().unwrap_or_default().to_owned();
        if comm.len() < 8 || !"rampart-vm-tests".starts_with(&comm) {
            bail!("event comm {comm:?} is not the exec'ing runner: {line}");
        }
        if field("pid").as_u64().unwrap_or(0) == 0 || field("uid") != 0 {
            bail!("event pid/uid wrong: {line}");
        }
        if !denied_inodes.contains(&field("target_ino").as_u64().unwrap_or(0)) {
            bail!("event target inode is not a disallowed fixture {denied_inodes:?}: {line}");
        }
        if field("target_dev").as_u64().unwrap_or(0) == 0 {
            bail!("event target device is zero: {line}");
        }
        if !cgroups.contains(&field("cgroup_id").as_u64().unwrap_or(0)) {
            bail!("event cgroup is not in the governed subtree {cgroups:?}: {line}");
        }
        count += 1;
    }
    if count != env.observed_denied {
        bail!(
            "{count} deny events for {} observed denials",
            env.observed_denied
        );
    }
    Ok(format!(
        "{count} deny events, one per observed denial, with pid, uid, comm, cgroup, target and reason; 0 drops"
    ))
}
