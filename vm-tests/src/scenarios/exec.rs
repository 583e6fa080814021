//! Exec: programs allowed and denied by path and pinned identity, and the side doors (other
//! names, /proc/self paths, memfd, the dynamic loader, shebangs, renames, upgrades).

use std::{os::unix::fs::symlink, path::Path, process::Command};

use anyhow::{bail, Context, Result};

use crate::harness::agent::{reload, AGENT_LOG};
use crate::harness::env::Env;
use crate::harness::observe::{
    exec_target, op_in, p, run_in, want, want_denied, Outcome, PROBE_OK,
};

pub fn control_before_enforcement(env: &mut Env) -> Result<String> {
    want(
        "disallowed probe before the agent",
        exec_target(env, &env.governed, &env.denied)?,
        Outcome::Ran,
    )?;
    Ok("the disallowed probe runs in the test cgroup while no agent is loaded".into())
}

pub fn allowed_runs_inside(env: &mut Env) -> Result<String> {
    want(
        "allowed probe",
        exec_target(env, &env.governed, &env.allowed)?,
        Outcome::Ran,
    )?;
    Ok("allowed probe ran in the governed cgroup".into())
}

pub fn disallowed_denied_inside(env: &mut Env) -> Result<String> {
    let got = exec_target(env, &env.governed, &env.denied)?;
    let target = p(&env.denied);
    want_denied(
        env,
        "disallowed probe",
        got,
        ("exec", &target, "access-not-granted"),
    )?;
    Ok("disallowed probe got EPERM (readable by a file rule, never runnable)".into())
}

pub fn disallowed_runs_outside(env: &mut Env) -> Result<String> {
    want(
        "disallowed probe in a sibling cgroup",
        exec_target(env, &env.ungoverned, &env.denied)?,
        Outcome::Ran,
    )?;
    let out = Command::new(&env.denied).arg("probe").output()?;
    if !String::from_utf8_lossy(&out.stdout).contains(PROBE_OK) {
        bail!("disallowed probe did not run in the root cgroup: {out:?}");
    }
    Ok("disallowed probe ran in an ungoverned sibling cgroup and in the root cgroup".into())
}

pub fn late_child_cgroup_governed(env: &mut Env) -> Result<String> {
    let child = env.governed.join("created-later");
    let grandchild = child.join("deeper");
    std::fs::create_dir_all(&grandchild).context("creating descendant cgroups")?;
    let target = p(&env.denied);
    for cg in [&child, &grandchild] {
        want(
            "allowed probe in a new child cgroup",
            exec_target(env, cg, &env.allowed)?,
            Outcome::Ran,
        )?;
        let got = exec_target(env, cg, &env.denied)?;
        want_denied(
            env,
            "disallowed probe in a new child cgroup",
            got,
            ("exec", &target, "access-not-granted"),
        )?;
    }
    Ok(
        "cgroups created after start (two levels down) allow the allowed probe and deny the other"
            .into(),
    )
}

pub fn other_names_for_disallowed_denied(env: &mut Env) -> Result<String> {
    let hard = env.fixture("innocent-hardlink");
    let soft = env.fixture("innocent-symlink");
    let _ = std::fs::remove_file(&hard);
    let _ = std::fs::remove_file(&soft);
    std::fs::hard_link(&env.denied, &hard).context("creating hardlink")?;
    symlink(&env.denied, &soft).context("creating symlink")?;
    let got = exec_target(env, &env.governed, &hard)?;
    want_denied(
        env,
        "hardlink to the disallowed probe",
        got,
        ("exec", &p(&hard), "access-not-granted"),
    )?;
    let got = exec_target(env, &env.governed, &soft)?;
    let real = p(&env.denied);
    want_denied(
        env,
        "symlink to the disallowed probe",
        got,
        ("exec", &real, "access-not-granted"),
    )?;
    // A symlink *to the allowed program* is that program: it runs.
    let to_allowed = env.fixture("link-to-allowed");
    let _ = std::fs::remove_file(&to_allowed);
    symlink(&env.allowed, &to_allowed)?;
    want(
        "symlink to the allowed probe",
        exec_target(env, &env.governed, &to_allowed)?,
        Outcome::Ran,
    )?;
    Ok("a hardlink and a symlink to the disallowed probe got EPERM; a symlink to the allowed one runs".into())
}

pub fn copy_of_allowed_denied(env: &mut Env) -> Result<String> {
    let copy = env.fixture("copy-of-allowed");
    std::fs::copy(&env.allowed, &copy).context("copying the allowed probe")?;
    let got = exec_target(env, &env.governed, &copy)?;
    want_denied(
        env,
        "copy of the allowed probe",
        got,
        ("exec", &p(&copy), "access-not-granted"),
    )?;
    Ok("a byte-identical copy of the allowed probe under another name got EPERM".into())
}

pub fn proc_self_paths_denied(env: &mut Env) -> Result<String> {
    let target = p(&env.denied);
    let got = op_in(env, &env.governed, &["exec-fd", &target])?;
    want_denied(
        env,
        "exec of /proc/self/fd/N of the disallowed probe",
        got,
        ("exec", &target, "access-not-granted"),
    )?;
    let via_root = format!("/proc/self/root{target}");
    let got = run_in(env, &env.governed, &[&via_root, "probe"])?;
    want_denied(
        env,
        "exec via /proc/self/root",
        got,
        ("exec", &target, "access-not-granted"),
    )?;
    let allowed = p(&env.allowed);
    want(
        "exec of /proc/self/fd/N of the allowed probe",
        op_in(env, &env.governed, &["exec-fd", &allowed])?,
        Outcome::Ran,
    )?;
    Ok("/proc/self/fd/N and /proc/self/root/... resolve to the real file: denied, and the allowed probe still runs that way".into())
}

pub fn memfd_denied(env: &mut Env) -> Result<String> {
    let allowed = p(&env.allowed);
    let got = op_in(env, &env.governed, &["memfd-exec", &allowed])?;
    want_denied(
        env,
        "execveat of a memfd holding the allowed probe's bytes",
        got,
        ("exec", "/memfd:rampart-memfd*", "no-rule"),
    )?;
    Ok(
        "memfd_create + execveat(AT_EMPTY_PATH) got EPERM even with the allowed program's bytes"
            .into(),
    )
}

pub fn dynamic_program_runs(env: &mut Env) -> Result<String> {
    want(
        "dynamically linked allowed program",
        run_in(env, &env.governed, &[&p(&env.fixture("dyn-true"))])?,
        Outcome::Exit(0),
    )?;
    Ok("dyn-true ran: its loader and libc are allowed by exec.allow and exec.libraries".into())
}

pub fn loader_side_door_denied(env: &mut Env) -> Result<String> {
    let denied = p(&env.fixture("denied-dyn"));
    let got = run_in(
        env,
        &env.governed,
        &["/lib64/ld-linux-x86-64.so.2", &denied],
    )?;
    if got == Outcome::Exit(0) || got == Outcome::Ran {
        bail!("ld.so ran the disallowed program: {got:?}");
    }
    env.expect_event("map-exec", &denied, "deny", "access-not-granted");
    let direct = run_in(env, &env.governed, &[&denied])?;
    want_denied(
        env,
        "the disallowed dynamic program itself",
        direct,
        ("exec", &denied, "access-not-granted"),
    )?;
    Ok(format!(
        "ld.so (allowed to run) could not map the disallowed program executable: {got:?}"
    ))
}

pub fn shebang_judged(env: &mut Env) -> Result<String> {
    want(
        "allowed script, allowed interpreter",
        exec_target(env, &env.governed, &env.fixture("script-ok.sh"))?,
        Outcome::Ran,
    )?;
    let got = exec_target(env, &env.governed, &env.fixture("script-bad-interp.sh"))?;
    let interp = p(&env.denied);
    want_denied(
        env,
        "allowed script, disallowed interpreter",
        got,
        ("exec", &interp, "access-not-granted"),
    )?;
    let script = p(&env.fixture("script-not-allowed.sh"));
    let got = run_in(env, &env.governed, &[&script, "probe"])?;
    want_denied(
        env,
        "disallowed script, allowed interpreter",
        got,
        ("exec", &script, "access-not-granted"),
    )?;
    Ok("a script runs only when both it and its interpreter are allowed".into())
}

pub fn rename_denied(env: &mut Env) -> Result<String> {
    // A disallowed file renamed onto an allowed path: the path matches, the identity not.
    let target = env.fixture("renamed-allowed");
    std::fs::rename(env.fixture("swap-in"), &target).context("renaming onto the allowed path")?;
    let got = exec_target(env, &env.governed, &target)?;
    want_denied(
        env,
        "disallowed file renamed onto an allowed path",
        got,
        ("exec", &p(&target), "identity-mismatch"),
    )?;
    // An allowed file renamed to a path no rule allows to run.
    let moved = env.fixture("moved-away");
    std::fs::rename(env.fixture("movable"), &moved).context("renaming the allowed file away")?;
    let got = exec_target(env, &env.governed, &moved)?;
    want_denied(
        env,
        "allowed file renamed to another path",
        got,
        ("exec", &p(&moved), "access-not-granted"),
    )?;
    Ok("rename onto an allowed path (identity-mismatch) and away from it (no exec rule) both got EPERM".into())
}

/// A program in exec.allow replaced on disk (a new file renamed over it, as package managers
/// do) is denied until the policy is reloaded; SIGHUP re-pins it.
pub fn upgraded_program_re_pinned(env: &mut Env) -> Result<String> {
    let path = env.fixture("upgradable");
    want(
        "the allowed program before the upgrade",
        exec_target(env, &env.governed, &path)?,
        Outcome::Ran,
    )?;
    let staged = env.fixture("upgradable.new");
    std::fs::copy(&env.allowed, &staged)?;
    std::fs::rename(&staged, &path)?;
    let got = exec_target(env, &env.governed, &path)?;
    want_denied(
        env,
        "the upgraded program before a reload",
        got,
        ("exec", &p(&path), "identity-mismatch"),
    )?;
    let pid = env.agent_pid().context("the agent is not running")?;
    reload(pid, Path::new(AGENT_LOG))?;
    want(
        "the upgraded program after the reload",
        exec_target(env, &env.governed, &path)?,
        Outcome::Ran,
    )?;
    Ok(
        "replaced program denied (identity-mismatch) until SIGHUP re-pinned it; then it runs"
            .into(),
    )
}
