//! Governance follows the cgroup path, not the cgroup: a governed cgroup removed and made
//! again at the same path (what systemd does on every service restart) is governed before
//! anything runs in it, and a governed path that does not exist when the policy loads is
//! governed as soon as it is made; a governed pattern governs its matches, those made
//! later included, and not their siblings.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::harness::agent::{spawn_agent, terminate_agent};
use crate::harness::env::{Env, CGROUP_ROOT, FIXTURES};
use crate::harness::observe::{exec_target, op_in, p, want, Outcome};

/// A policy governing `cgroups`: the allowed probe runs, TCP to 127.0.0.1:8080 is allowed.
fn policy(cgroups: &[&str]) -> String {
    format!(
        "apiVersion: rampart.dev/v1alpha1\nkind: Policy\nmetadata:\n  name: follow-path\n\
         spec:\n  governs: [{}]\n  exec:\n    allow: [{FIXTURES}/allowed-probe]\n  network:\n    \
         - cidr: 127.0.0.1/32\n      ports: [8080]\n      protocol: tcp\n",
        cgroups.join(", ")
    )
}

/// In `cg`: the allowed probe runs, the denied one and a connect to another port are
/// denied, the allowed connect goes through (refused: nothing listens). `when` names the
/// moment for the failure message.
fn enforced(env: &Env, cg: &Path, when: &str) -> Result<()> {
    want(
        &format!("{when}: the allowed probe"),
        exec_target(env, cg, &env.allowed)?,
        Outcome::Ran,
    )?;
    let got = exec_target(env, cg, &env.denied)?;
    if !got.denied() {
        bail!(
            "{when}: the denied probe got {got:?}, expected EPERM: the cgroup at {} is not \
             governed",
            p(cg)
        );
    }
    let got = op_in(env, cg, &["connect", "127.0.0.1:22/tcp"])?;
    if !got.denied() {
        bail!("{when}: tcp 127.0.0.1:22 got {got:?}, expected EPERM (network not judged)");
    }
    want(
        &format!("{when}: tcp 127.0.0.1:8080 (allowed)"),
        op_in(env, cg, &["connect", "127.0.0.1:8080/tcp"])?,
        Outcome::Errno(libc::ECONNREFUSED),
    )?;
    Ok(())
}

/// Runs `body` with an agent (no pins) on `policy`, then stops it.
fn with_agent(name: &str, text: &str, body: impl FnOnce() -> Result<String>) -> Result<String> {
    let base = PathBuf::from(format!("/run/rampart-{name}"));
    std::fs::create_dir_all(&base)?;
    let file = base.join("policy.yaml");
    std::fs::write(&file, text)?;
    let log = base.join("agent.log");
    let agent = spawn_agent(
        &["run", "--no-pin", "--policy", &p(&file)],
        &base.join("events.jsonl"),
        &log,
    )?;
    let result = body();
    let stopped = terminate_agent(agent, &log);
    let detail = result?;
    stopped?;
    Ok(detail)
}

pub fn recreated_cgroup_governed_at_once(env: &mut Env) -> Result<String> {
    let cg = Path::new(CGROUP_ROOT).join("rampart-recreated");
    std::fs::create_dir_all(&cg)?;
    with_agent(
        "recreated",
        &policy(&["/rampart-recreated"]),
        || -> Result<String> {
            enforced(env, &cg, "before the cgroup is re-created")?;
            let mut times = 0;
            for round in 1..=3 {
                std::fs::remove_dir(&cg)?;
                std::fs::create_dir(&cg)?;
                enforced(env, &cg, &format!("after re-creation {round}"))?;
                times = round;
            }
            Ok(format!(
                "the governed cgroup was removed and made again {times} times (a new cgroup \
                 id each time); each time the denied probe and an unlisted connect got EPERM \
                 and the allowed ones worked, with no reload"
            ))
        },
    )
}

pub fn governed_path_created_after_load_governed(env: &mut Env) -> Result<String> {
    let cg = Path::new(CGROUP_ROOT).join("rampart-later");
    let child = cg.join("job");
    let _ = std::fs::remove_dir(&child);
    let _ = std::fs::remove_dir(&cg);
    with_agent(
        "later",
        &policy(&["/rampart-later"]),
        || -> Result<String> {
            std::fs::create_dir(&cg)?;
            enforced(env, &cg, "the governed path made after the policy loaded")?;
            std::fs::create_dir(&child)?;
            enforced(env, &child, "a cgroup below it")?;
            Ok(
                "the agent started with the governed path absent (no exit); once made, the cgroup \
             and a cgroup below it were governed: denied probe and unlisted connect EPERM, the \
             allowed ones worked"
                    .into(),
            )
        },
    )
}

/// Whether a task in `cg` runs the denied probe (the cgroup is not governed).
fn ungoverned(env: &Env, cg: &Path, what: &str) -> Result<()> {
    want(
        &format!("{what}: the denied probe (not governed)"),
        exec_target(env, cg, &env.denied)?,
        Outcome::Ran,
    )
}

pub fn governed_pattern_matches_made_later_governed(env: &mut Env) -> Result<String> {
    let parent = Path::new(CGROUP_ROOT).join("rampart-pods");
    let (before, other) = (parent.join("pod-a"), parent.join("other"));
    let (later, sidecar) = (parent.join("pod-b"), parent.join("sidecar"));
    let container = later.join("ctr");
    for dir in [&container, &before, &other, &later, &sidecar, &parent] {
        let _ = std::fs::remove_dir(dir);
    }
    for dir in [&parent, &before, &other] {
        std::fs::create_dir(dir)?;
    }
    with_agent(
        "pattern",
        &policy(&["/rampart-pods/pod-*"]),
        || -> Result<String> {
            enforced(env, &before, "pod-a, a match when the policy loaded")?;
            ungoverned(env, &other, "`other`, present at load, does not match")?;
            std::fs::create_dir(&later)?;
            enforced(env, &later, "pod-b, a match made after the policy loaded")?;
            std::fs::create_dir(&container)?;
            enforced(env, &container, "a cgroup below pod-b")?;
            std::fs::create_dir(&sidecar)?;
            ungoverned(env, &sidecar, "`sidecar`, made after load, does not match")?;
            ungoverned(env, &parent, "the parent of the pattern")?;
            std::fs::remove_dir(&before)?;
            std::fs::create_dir(&before)?;
            enforced(env, &before, "pod-a removed and made again")?;
            Ok(
                "governs /rampart-pods/pod-*: pod-a (there at load), pod-b (made after), a \
                 cgroup below pod-b and pod-a made again were governed at once (denied probe \
                 and unlisted connect EPERM, allowed ones worked); `other`, `sidecar` (made \
                 after) and the parent ran the denied probe"
                    .into(),
            )
        },
    )
}
