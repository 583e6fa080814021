//! The `rampart` CLI as the security team uses it: keys, a trust root, signed bundles.

use std::{path::Path, process::Command};

use anyhow::{bail, Context, Result};

use crate::harness::env::{AGENT, FIXTURES};

pub const SCOPE: &str = "vm-fleet";

/// A policy for the swap cgroup: the probe may run; of the two data files, only `readable`.
pub fn swap_policy(name: &str, cgroup: &str, readable: &str) -> String {
    format!(
        "apiVersion: rampart.dev/v1alpha1
kind: Policy
metadata:
  name: {name}
spec:
  governs: [{cgroup}]
  events: all
  exec:
    allow: [{FIXTURES}/allowed-probe]
  files:
    - path: {FIXTURES}/data/{readable}
      access: [read]
"
    )
}

/// Runs the `rampart` CLI; fails with its stderr unless it exits 0.
pub fn rampart(args: &[&str]) -> Result<String> {
    let out = Command::new(AGENT)
        .args(args)
        .output()
        .with_context(|| format!("running rampart {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "rampart {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A fresh directory with a signing key, a 1-of-1 trust root and an initialised
/// anti-rollback state in `state/`.
pub fn keys_and_trust(dir: &Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let key = dir.join("signer");
    rampart(&["keygen", "--out", &s(&key)])?;
    rampart(&[
        "trust",
        "init",
        "--key",
        &s(&dir.join("signer.pub")),
        "--threshold",
        "1",
        "--scope",
        SCOPE,
        "-o",
        &s(&dir.join("trust.json")),
    ])?;
    rampart(&["state", "init", "--state", &s(&dir.join("state"))])?;
    Ok(())
}

/// A fresh break-glass token signed with the directory's signer key for [`SCOPE`].
pub fn break_glass_token(dir: &Path) -> Result<std::path::PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let token = dir.join(format!("release-token-{nanos}.json"));
    rampart(&[
        "break-glass",
        "--key",
        &s(&dir.join("signer.key")),
        "--scope",
        SCOPE,
        "--expires",
        "10m",
        "--reason",
        "vm test teardown",
        "-o",
        &s(&token),
    ])?;
    Ok(token)
}

pub fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Signs `policy` as version `version` into `out`.
pub fn sign(
    dir: &Path,
    policy: &Path,
    version: u64,
    expires: &str,
    scope: &str,
    out: &Path,
) -> Result<()> {
    rampart(&[
        "policy",
        "sign",
        "--key",
        &s(&dir.join("signer.key")),
        "--version",
        &version.to_string(),
        "--expires",
        expires,
        "--scope",
        scope,
        &s(policy),
        "-o",
        &s(out),
    ])
    .map(drop)
}
