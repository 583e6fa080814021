//! Files: opens by path and access (also through io_uring), over-long paths, and
//! executable mappings.

use anyhow::{bail, Result};

use crate::harness::env::Env;
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
