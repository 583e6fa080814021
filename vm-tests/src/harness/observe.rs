//! Doing something inside a cgroup and telling what the kernel did: ran, succeeded,
//! failed with an errno; and the checks scenarios make of it.

use std::{
    path::Path,
    process::{Command, Output},
};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::harness::env::Env;
use crate::ops::OP;

/// What a probe prints when it ran.
pub const PROBE_OK: &str = "rampart-probe-ok";

/// What happened to one action run inside a cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A probe ran and printed its marker.
    Ran,
    /// An op succeeded.
    Ok,
    /// An exec or op failed with this errno.
    Errno(i32),
    /// The program exited with this code without a marker (e.g. a dynamic program).
    Exit(i32),
}

impl Outcome {
    pub(crate) fn denied(self) -> bool {
        self == Outcome::Errno(libc::EPERM)
    }
}

pub fn classify(out: &Output) -> Outcome {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stdout.contains(PROBE_OK) {
        return Outcome::Ran;
    }
    let errno = |text: &str, prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix)?.strip_prefix("errno="))
            .and_then(|n| n.trim().parse().ok())
    };
    if stdout.lines().any(|l| l == format!("{OP}ok")) {
        return Outcome::Ok;
    }
    if let Some(n) = errno(&stdout, OP).or_else(|| errno(&stderr, "cg-exec: ")) {
        return Outcome::Errno(n);
    }
    Outcome::Exit(out.status.code().unwrap_or(-1))
}

/// Runs `argv` (program and arguments) from inside `cgroup`.
pub fn run_in(env: &Env, cgroup: &Path, argv: &[&str]) -> Result<Outcome> {
    let out = Command::new(&env.runner)
        .arg("cg-exec")
        .arg(cgroup)
        .args(argv)
        .output()
        .context("spawning cg-exec")?;
    Ok(classify(&out))
}

/// Runs an op through the allowed probe inside `cgroup`.
pub fn op_in(env: &Env, cgroup: &Path, op: &[&str]) -> Result<Outcome> {
    let probe = env.allowed.to_string_lossy().into_owned();
    let mut argv = vec![probe.as_str(), "op"];
    argv.extend_from_slice(op);
    run_in(env, cgroup, &argv)
}

pub fn p(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Fails unless `got` is a denial (EPERM); records the event the denial must produce.
pub fn want_denied(
    env: &mut Env,
    what: &str,
    got: Outcome,
    event: (&str, &str, &str),
) -> Result<()> {
    if !got.denied() {
        bail!("{what}: got {got:?}, expected EPERM");
    }
    let (action, target, reason) = event;
    env.expect_event(action, target, "deny", reason);
    Ok(())
}

/// Fails unless `got` is `want`.
pub fn want(what: &str, got: Outcome, want: Outcome) -> Result<()> {
    if got != want {
        bail!("{what}: got {got:?}, expected {want:?}");
    }
    Ok(())
}

pub fn exec_target(env: &Env, cgroup: &Path, path: &Path) -> Result<Outcome> {
    run_in(env, cgroup, &[&p(path), "probe"])
}

/// Every record of the lineage in `dir`, in order.
pub fn records(dir: &Path) -> Result<Vec<Value>> {
    let mut names: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    names.sort();
    let mut out = Vec::new();
    for p in names {
        for line in std::fs::read_to_string(&p)?.lines() {
            out.push(serde_json::from_str(line).with_context(|| format!("not JSON: {line}"))?);
        }
    }
    Ok(out)
}

/// Every case of a scenario runs and every mismatch is reported, so that a run without a
/// defence shows each case it leaves open.
#[derive(Default)]
pub struct Failures(Vec<String>);

impl Failures {
    /// Keeps the error of a failed case.
    pub fn note(&mut self, r: Result<()>) {
        if let Err(e) = r {
            self.0.push(e.to_string());
        }
    }

    /// Keeps a failed case described in words.
    pub fn push(&mut self, what: String) {
        self.0.push(what);
    }

    /// Fails with every case kept, if any.
    pub fn check(self) -> Result<()> {
        if !self.0.is_empty() {
            bail!("{} cases failed:\n{}", self.0.len(), self.0.join("\n"));
        }
        Ok(())
    }
}
