//! Files: opens by path and access (also through io_uring), over-long paths, and
//! executable mappings.

use std::path::Path;

use anyhow::{bail, Result};

use crate::harness::agent::{log_records, reload, spawn_agent, terminate_agent};
use crate::harness::env::{Env, CGROUP_ROOT, FIXTURES};
use crate::harness::observe::{op_in, p, want, want_denied, Outcome};

pub fn open_by_rule(env: &mut Env) -> Result<String> {
    let readable = p(&env.fixture("data/readable.txt"));
    let writable = p(&env.fixture("data/writable.txt"));
    let g = env.governed.clone();
    want(
        "read a readable file",
        op_in(env, &g, &["open", &readable, "read"])?,
        Outcome::Ok,
    )?;
    let got = op_in(env, &g, &["open", &readable, "write"])?;
    want_denied(
        env,
        "write a read-only file",
        got,
        ("open", &readable, "access-not-granted"),
    )?;
    want(
        "read-write a writable file",
        op_in(env, &g, &["open", &writable, "read,write"])?,
        Outcome::Ok,
    )?;
    let got = op_in(env, &g, &["open", "/srv/secret.txt", "read"])?;
    want_denied(
        env,
        "read a file no rule names",
        got,
        ("open", "/srv/secret.txt", "no-rule"),
    )?;
    let dotdot = format!("{}/data/../../../srv/secret.txt", env.fixture("").display());
    let got = op_in(env, &g, &["open", &dotdot, "read"])?;
    want_denied(
        env,
        "read through `..` from an allowed directory",
        got,
        ("open", "/srv/secret.txt", "no-rule"),
    )?;
    want(
        "read outside governance",
        op_in(
            env,
            &env.ungoverned.clone(),
            &["open", "/srv/secret.txt", "read"],
        )?,
        Outcome::Ok,
    )?;
    Ok("read/write by rule allowed, write to read-only and unlisted files (also via ..) denied, outside untouched".into())
}

pub fn io_uring_judged(env: &mut Env) -> Result<String> {
    let g = env.governed.clone();
    let got = op_in(env, &g, &["uring-open", "/srv/secret.txt"])?;
    want_denied(
        env,
        "io_uring openat of an unlisted file",
        got,
        ("open", "/srv/secret.txt", "no-rule"),
    )?;
    want(
        "io_uring openat of a readable file",
        op_in(
            env,
            &g,
            &["uring-open", &p(&env.fixture("data/readable.txt"))],
        )?,
        Outcome::Ok,
    )?;
    Ok("io_uring IORING_OP_OPENAT goes through file_open: unlisted denied, listed allowed".into())
}

pub fn long_path_denied(env: &mut Env) -> Result<String> {
    let g = env.governed.clone();
    want(
        "open at 2 levels (~400 bytes, past the trie key)",
        op_in(env, &g, &["deep-open", "/tmp/deep", "2"])?,
        Outcome::Ok,
    )?;
    let got = op_in(env, &g, &["deep-open", "/tmp/deep", "24"])?;
    if !got.denied() {
        bail!("open of a path longer than PATH_MAX: got {got:?}, expected EPERM");
    }
    // The kernel could not produce the path, so the event carries none.
    env.expect_event("open", "", "deny", "path-too-long");
    Ok("a 400-byte path under an allowed directory opens; a 4.8 KB one is denied (path-too-long), never truncated".into())
}

pub fn map_exec_denied(env: &mut Env) -> Result<String> {
    let denied = p(&env.denied);
    let got = op_in(env, &env.governed, &["map-exec", &denied])?;
    want_denied(
        env,
        "mmap PROT_EXEC of the disallowed probe",
        got,
        ("map-exec", &denied, "access-not-granted"),
    )?;
    want(
        "mmap PROT_EXEC of libc",
        op_in(
            env,
            &env.governed,
            &["map-exec", "/lib/x86_64-linux-gnu/libc.so.6"],
        )?,
        Outcome::Ok,
    )?;
    // mprotect(PROT_EXEC) of a readable mapping: judged by identity (no path at that hook).
    let got = op_in(env, &env.governed, &["mprotect-exec", &denied])?;
    want_denied(
        env,
        "mprotect PROT_EXEC of a readable mapping of the disallowed probe",
        got,
        ("map-exec", "", "map-exec-unverified"),
    )?;
    want(
        "mprotect PROT_EXEC of libc (mapped executable before under this policy)",
        op_in(
            env,
            &env.governed,
            &["mprotect-exec", "/lib/x86_64-linux-gnu/libc.so.6"],
        )?,
        Outcome::Ok,
    )?;
    Ok(
        "mmap with PROT_EXEC of a disallowed file got EPERM; a library maps; mprotect(PROT_EXEC) \
         of the disallowed file's readable mapping got EPERM (map-exec-unverified), of libc's \
         was allowed"
            .into(),
    )
}

/// The slot-reuse policies: `libraries` lets the workload map `lib` executable; without it,
/// `lib` may only be read.
fn slot_policy(name: &str, lib: &str, mappable: bool) -> String {
    let grant = if mappable {
        format!("  exec:\n    allow: [{FIXTURES}/allowed-probe]\n    libraries: [{lib}]\n")
    } else {
        format!(
            "  exec:\n    allow: [{FIXTURES}/allowed-probe]\n  files:\n    - path: {lib}\n      \
             access: [read]\n"
        )
    };
    format!(
        "apiVersion: rampart.dev/v1alpha1\nkind: Policy\nmetadata:\n  name: {name}\nspec:\n  \
         governs: [/rampart-slot]\n{grant}"
    )
}

/// An executable mapping allowed under one policy must not make `mprotect(PROT_EXEC)` pass
/// under a later policy that reuses its kernel slot and forbids the file: v1 (slot 0) maps
/// the file executable, v2 moves to slot 1 and empties slot 0, v3 (no library rule) lands
/// in slot 0 again.
pub fn map_exec_allowance_does_not_survive_slot_reuse(env: &mut Env) -> Result<String> {
    let base = Path::new("/run/rampart-slot");
    std::fs::create_dir_all(base)?;
    let cg = Path::new(CGROUP_ROOT).join("rampart-slot");
    std::fs::create_dir_all(&cg)?;
    let lib = env.fixture("slot-lib");
    std::fs::copy(&env.allowed, &lib)?;
    let lib = p(&lib);
    let policy = base.join("policy.yaml");
    std::fs::write(&policy, slot_policy("slot-v1", &lib, true))?;
    let (events, log) = (base.join("events.jsonl"), base.join("agent.log"));
    let args = ["run", "--no-pin", "--policy", &p(&policy)];
    let agent = spawn_agent(&args, &events, &log)?;
    let result = (|| -> Result<()> {
        want(
            "v1: mmap PROT_EXEC of the library",
            op_in(env, &cg, &["map-exec", &lib])?,
            Outcome::Ok,
        )?;
        want(
            "v1: mprotect PROT_EXEC of the library",
            op_in(env, &cg, &["mprotect-exec", &lib])?,
            Outcome::Ok,
        )?;
        std::fs::write(&policy, slot_policy("slot-v2", &lib, true))?;
        reload(agent.id(), &log)?;
        std::fs::write(&policy, slot_policy("slot-v3", &lib, false))?;
        reload(agent.id(), &log)?;
        let slots: Vec<u64> = log_records(&log)
            .iter()
            .filter(|r| r["message"] == "policy loaded")
            .filter_map(|r| r["slot"].as_u64())
            .collect();
        if slots != [0, 1, 0] {
            bail!("expected v1, v2, v3 in slots 0, 1, 0 (the reuse under test); got {slots:?}");
        }
        let got = op_in(env, &cg, &["map-exec", &lib])?;
        if !got.denied() {
            bail!("v3: mmap PROT_EXEC of the library: got {got:?}, expected EPERM");
        }
        let got = op_in(env, &cg, &["mprotect-exec", &lib])?;
        if !got.denied() {
            bail!(
                "v3: mprotect PROT_EXEC of the library: got {got:?}, expected EPERM \
                 (map-exec-unverified): v1's allowance in the reused slot was still honoured"
            );
        }
        Ok(())
    })();
    let summary = terminate_agent(agent, &log);
    result?;
    summary?;
    let recorded = std::fs::read_to_string(&events)?
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["reason"] == "map-exec-unverified" && e["policy"] == "slot-v3")
        .count();
    if recorded == 0 {
        bail!("no map-exec-unverified denial of slot-v3 among the agent's events");
    }
    Ok(format!(
        "v1 (slot 0) mapped and mprotected the library executable; v3 reused slot 0 without \
         the library rule: mmap and mprotect PROT_EXEC both EPERM, {recorded} \
         map-exec-unverified event(s)"
    ))
}
