//! The end-to-end scenarios. Each one makes real execs, opens and connects in real cgroups
//! with the real programs loaded, and fails unless the kernel did exactly what the scenario
//! expects. Every denial a scenario causes is also expected as an event with its reason.

use std::{
    os::unix::fs::symlink,
    path::Path,
    process::{Command, Output},
};

use anyhow::{bail, Context, Result};

use crate::{
    guest::{Env, ENFORCE_POLICY, POLICY_FILE},
    ops::OP,
};

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
        name: "bundle-swap-100-times-atomic-bad-bundles-change-nothing",
        phase: AgentPhase::NotStarted,
        requires: Requires::BpfLsm,
        run: crate::bundles::atomic_swap,
    },
    Scenario {
        name: "bundle-expiry-fails-closed",
        phase: AgentPhase::NotStarted,
        requires: Requires::BpfLsm,
        run: crate::bundles::expiry_fails_closed,
    },
    Scenario {
        name: "lineage-ring-overflow-gaps-equal-drops-strict-denies",
        phase: AgentPhase::NotStarted,
        requires: Requires::BpfLsm,
        run: crate::lineage::ring_overflow_gaps,
    },
    Scenario {
        name: "example-policies-load-and-govern",
        phase: AgentPhase::NotStarted,
        requires: Requires::BpfLsm,
        run: crate::examples::examples_load,
    },
    Scenario {
        name: "daemon-config-bundle-dir-push-and-status",
        phase: AgentPhase::NotStarted,
        requires: Requires::BpfLsm,
        run: crate::daemon::config_and_bundle_dir,
    },
    Scenario {
        name: "explain-agrees-with-kernel",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: explain_agrees,
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
        name: "exec-via-proc-self-fd-and-proc-self-root-denied",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: proc_self_paths_denied,
    },
    Scenario {
        name: "exec-memfd-execveat-denied",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: memfd_denied,
    },
    Scenario {
        name: "exec-dynamic-program-runs-with-library-rules",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: dynamic_program_runs,
    },
    Scenario {
        name: "exec-through-dynamic-loader-denied",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: loader_side_door_denied,
    },
    Scenario {
        name: "map-exec-and-mprotect-exec-of-disallowed-file-denied",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: map_exec_denied,
    },
    Scenario {
        name: "exec-shebang-script-and-interpreter-both-judged",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: shebang_judged,
    },
    Scenario {
        name: "exec-rename-onto-or-away-from-allowed-path-denied",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: rename_denied,
    },
    Scenario {
        name: "open-by-path-and-access",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: open_by_rule,
    },
    Scenario {
        name: "open-via-io-uring-judged",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: io_uring_judged,
    },
    Scenario {
        name: "open-path-longer-than-kernel-buffer-denied",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: long_path_denied,
    },
    Scenario {
        name: "connect-ipv4-ipv6-and-mapped-by-cidr-port-protocol",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: connect_judged,
    },
    Scenario {
        name: "send-udp-without-connect-judged",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: send_judged,
    },
    Scenario {
        name: "audit-mode-allows-and-records",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: audit_mode,
    },
    Scenario {
        name: "exec-upgraded-program-denied-until-reload-re-pins-it",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: upgraded_program_re_pinned,
    },
    Scenario {
        name: "deny-events-match-every-denial",
        phase: AgentPhase::Stopped,
        requires: Requires::BpfLsm,
        run: deny_events_match,
    },
    Scenario {
        name: "lineage-verifies-and-holds-every-denial",
        phase: AgentPhase::Stopped,
        requires: Requires::BpfLsm,
        run: crate::lineage::main_lineage_verifies,
    },
    Scenario {
        name: "enforcement-outlives-agent-sigterm",
        phase: AgentPhase::Stopped,
        requires: Requires::BpfLsm,
        run: enforcement_outlives_agent,
    },
    Scenario {
        name: "restart-adopts-pins-kill9-keeps-enforcing-release-removes",
        phase: AgentPhase::Stopped,
        requires: Requires::BpfLsm,
        run: crate::pinning::restart_kill_release,
    },
];

/// What happened to one action run inside a cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
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

fn classify(out: &Output) -> Outcome {
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
fn run_in(env: &Env, cgroup: &Path, argv: &[&str]) -> Result<Outcome> {
    let out = Command::new(&env.runner)
        .arg("cg-exec")
        .arg(cgroup)
        .args(argv)
        .output()
        .context("spawning cg-exec")?;
    Ok(classify(&out))
}

/// Runs an op through the allowed probe inside `cgroup`.
pub(crate) fn op_in(env: &Env, cgroup: &Path, op: &[&str]) -> Result<Outcome> {
    let probe = env.allowed.to_string_lossy().into_owned();
    let mut argv = vec![probe.as_str(), "op"];
    argv.extend_from_slice(op);
    run_in(env, cgroup, &argv)
}

fn p(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Fails unless `got` is a denial (EPERM); records the event the denial must produce.
fn want_denied(env: &mut Env, what: &str, got: Outcome, event: (&str, &str, &str)) -> Result<()> {
    if !got.denied() {
        bail!("{what}: got {got:?}, expected EPERM");
    }
    let (action, target, reason) = event;
    env.expect_event(action, target, "deny", reason);
    Ok(())
}

/// Fails unless `got` is `want`.
fn want(what: &str, got: Outcome, want: Outcome) -> Result<()> {
    if got != want {
        bail!("{what}: got {got:?}, expected {want:?}");
    }
    Ok(())
}

pub(crate) fn exec_target(env: &Env, cgroup: &Path, path: &Path) -> Result<Outcome> {
    run_in(env, cgroup, &[&p(path), "probe"])
}

fn control_before_enforcement(env: &mut Env) -> Result<String> {
    want(
        "disallowed probe before the agent",
        exec_target(env, &env.governed, &env.denied)?,
        Outcome::Ran,
    )?;
    Ok("the disallowed probe runs in the test cgroup while no agent is loaded".into())
}

fn allowed_runs_inside(env: &mut Env) -> Result<String> {
    want(
        "allowed probe",
        exec_target(env, &env.governed, &env.allowed)?,
        Outcome::Ran,
    )?;
    Ok("allowed probe ran in the governed cgroup".into())
}

fn disallowed_denied_inside(env: &mut Env) -> Result<String> {
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

fn disallowed_runs_outside(env: &mut Env) -> Result<String> {
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

fn late_child_cgroup_governed(env: &mut Env) -> Result<String> {
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

fn other_names_for_disallowed_denied(env: &mut Env) -> Result<String> {
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

fn copy_of_allowed_denied(env: &mut Env) -> Result<String> {
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

fn proc_self_paths_denied(env: &mut Env) -> Result<String> {
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

fn memfd_denied(env: &mut Env) -> Result<String> {
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

fn dynamic_program_runs(env: &mut Env) -> Result<String> {
    want(
        "dynamically linked allowed program",
        run_in(env, &env.governed, &[&p(&env.fixture("dyn-true"))])?,
        Outcome::Exit(0),
    )?;
    Ok("dyn-true ran: its loader and libc are allowed by exec.allow and exec.libraries".into())
}

fn loader_side_door_denied(env: &mut Env) -> Result<String> {
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

fn map_exec_denied(env: &mut Env) -> Result<String> {
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

fn shebang_judged(env: &mut Env) -> Result<String> {
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

fn rename_denied(env: &mut Env) -> Result<String> {
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

fn open_by_rule(env: &mut Env) -> Result<String> {
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

fn io_uring_judged(env: &mut Env) -> Result<String> {
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

fn long_path_denied(env: &mut Env) -> Result<String> {
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

fn connect_judged(env: &mut Env) -> Result<String> {
    let g = env.governed.clone();
    let refused = Outcome::Errno(libc::ECONNREFUSED);
    want(
        "tcp 127.0.0.1:8080 (allowed)",
        op_in(env, &g, &["connect", "127.0.0.1:8080/tcp"])?,
        refused,
    )?;
    let got = op_in(env, &g, &["connect", "127.0.0.1:22/tcp"])?;
    want_denied(
        env,
        "tcp 127.0.0.1:22",
        got,
        ("connect", "127.0.0.1:22/tcp", "access-not-granted"),
    )?;
    let got = op_in(env, &g, &["connect", "127.0.0.2:8080/tcp"])?;
    want_denied(
        env,
        "tcp 127.0.0.2:8080",
        got,
        ("connect", "127.0.0.2:8080/tcp", "no-rule"),
    )?;
    let ipv6 = op_in(env, &g, &["connect", "[::1]:9000/tcp"])?;
    if ipv6.denied() {
        bail!("tcp [::1]:9000 (allowed) got EPERM");
    }
    let got = op_in(env, &g, &["connect", "[::1]:9001/tcp"])?;
    want_denied(
        env,
        "tcp [::1]:9001",
        got,
        ("connect", "[::1]:9001/tcp", "access-not-granted"),
    )?;
    want(
        "tcp [::ffff:127.0.0.1]:8080 (mapped, allowed as IPv4)",
        op_in(env, &g, &["connect", "[::ffff:127.0.0.1]:8080/tcp"])?,
        refused,
    )?;
    let got = op_in(env, &g, &["connect", "[::ffff:127.0.0.2]:8080/tcp"])?;
    want_denied(
        env,
        "tcp [::ffff:127.0.0.2]:8080 (mapped)",
        got,
        ("connect", "127.0.0.2:8080/tcp", "no-rule"),
    )?;
    want(
        "udp connect 127.0.0.1:5353",
        op_in(env, &g, &["connect", "127.0.0.1:5353/udp"])?,
        Outcome::Ok,
    )?;
    let got = op_in(env, &g, &["connect", "127.0.0.1:8080/udp"])?;
    want_denied(
        env,
        "udp connect 127.0.0.1:8080 (tcp-only port)",
        got,
        ("connect", "127.0.0.1:8080/udp", "access-not-granted"),
    )?;
    want(
        "tcp 127.0.0.1:22 outside governance",
        op_in(
            env,
            &env.ungoverned.clone(),
            &["connect", "127.0.0.1:22/tcp"],
        )?,
        refused,
    )?;
    Ok(format!(
        "IPv4/IPv6/mapped connects judged by CIDR, port and protocol; [::1]:9000 gave {ipv6:?}"
    ))
}

fn send_judged(env: &mut Env) -> Result<String> {
    let g = env.governed.clone();
    want(
        "udp sendto 127.0.0.1:5353",
        op_in(env, &g, &["send", "127.0.0.1:5353/udp"])?,
        Outcome::Ok,
    )?;
    let got = op_in(env, &g, &["send", "127.0.0.1:53/udp"])?;
    want_denied(
        env,
        "udp sendto 127.0.0.1:53",
        got,
        ("send", "127.0.0.1:53/udp", "access-not-granted"),
    )?;
    let got = op_in(env, &g, &["send", "[::1]:5353/udp"])?;
    want_denied(
        env,
        "udp sendto [::1]:5353",
        got,
        ("send", "[::1]:5353/udp", "access-not-granted"),
    )?;
    want(
        "udp sendto [::ffff:127.0.0.1]:5353 (mapped)",
        op_in(env, &g, &["send", "[::ffff:127.0.0.1]:5353/udp"])?,
        Outcome::Ok,
    )?;
    Ok(
        "unconnected UDP sendto is judged like connect (sendmsg4/6), mapped addresses as IPv4"
            .into(),
    )
}

fn audit_mode(env: &mut Env) -> Result<String> {
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

/// One row of the explain table: a request line for `rampart policy explain --requests`
/// and the argv that performs it inside the governed cgroup.
fn explain_table(env: &Env) -> Vec<(String, Vec<String>)> {
    let fx = |n: &str| p(&env.fixture(n));
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    for path in [
        fx("allowed-probe"),
        fx("denied-probe"),
        fx("dyn-true"),
        fx("script-ok.sh"),
        "/lib/x86_64-linux-gnu/libc.so.6".into(),
    ] {
        rows.push((format!("exec {path}"), vec![path.clone(), "probe".into()]));
    }
    let opens = [
        (fx("data/readable.txt"), "read"),
        (fx("data/readable.txt"), "write"),
        (fx("data/readable.txt"), "read,write"),
        (fx("data/writable.txt"), "read"),
        (fx("data/writable.txt"), "write"),
        (fx("data/writable.txt"), "read,write"),
        ("/srv/secret.txt".into(), "read"),
        ("/srv/secret.txt".into(), "write"),
        ("/dev/null".into(), "read,write"),
        ("/dev/null".into(), "write"),
        (POLICY_FILE.into(), "read"),
        (fx("allowed-probe"), "read"),
        (fx("denied-probe"), "write"),
        (fx("denied-probe"), "read"),
        (fx(""), "read"),
        (fx("data"), "read"),
        ("/srv".into(), "read"),
        ("/lib/x86_64-linux-gnu/libc.so.6".into(), "read"),
        ("/lib/x86_64-linux-gnu/libc.so.6".into(), "write"),
        ("/lib64/ld-linux-x86-64.so.2".into(), "read"),
        ("/tmp/deep/f".into(), "read"),
        ("/tmp/deep/f".into(), "write"),
        ("/tmp/deep".into(), "read"),
        ("/usr/lib/rampart-test/dyn-true".into(), "read"),
        ("/bin/busybox".into(), "read"),
        ("/etc".into(), "read"),
        ("/sys/kernel/security/lsm".into(), "read"),
        (fx("script-ok.sh"), "read"),
    ];
    for (path, acc) in opens {
        let path = path.trim_end_matches('/').to_owned();
        rows.push((
            format!("open {path} {acc}"),
            vec![
                fx("allowed-probe"),
                "op".into(),
                "open".into(),
                path,
                acc.into(),
            ],
        ));
    }
    for path in [
        "/lib/x86_64-linux-gnu/libc.so.6".into(),
        fx("denied-probe"),
        fx("dyn-true"),
        fx("data/readable.txt"),
    ] {
        rows.push((
            format!("map-exec {path}"),
            vec![fx("allowed-probe"), "op".into(), "map-exec".into(), path],
        ));
    }
    for ep in [
        "127.0.0.1:8000/tcp",
        "127.0.0.1:8100/tcp",
        "127.0.0.1:8101/tcp",
        "127.0.0.1:7999/tcp",
        "127.0.0.2:8080/tcp",
        "127.0.0.1:5353/udp",
        "127.0.0.1:5354/udp",
        "[::1]:9000/tcp",
        "[::1]:9001/tcp",
        "[::1]:5353/udp",
        "[::2]:9000/tcp",
        "[::ffff:127.0.0.1]:8050/tcp",
        "[::ffff:127.0.0.1]:9000/tcp",
        "[::ffff:127.0.0.3]:8080/tcp",
        "10.0.0.1:443/tcp",
    ] {
        rows.push((
            format!("connect {ep}"),
            vec![
                fx("allowed-probe"),
                "op".into(),
                "connect".into(),
                ep.into(),
            ],
        ));
    }
    for ep in [
        "127.0.0.1:5353/udp",
        "127.0.0.1:53/udp",
        "127.0.0.2:5353/udp",
        "[::1]:5353/udp",
        "[::ffff:127.0.0.1]:5353/udp",
    ] {
        rows.push((
            format!("send {ep}"),
            vec![fx("allowed-probe"), "op".into(), "send".into(), ep.into()],
        ));
    }
    rows
}

/// The target an event carries for a request line: the canonical path, or the endpoint
/// with IPv4-mapped addresses written as IPv4.
fn event_target(request: &str) -> String {
    let mut words = request.split_whitespace();
    let kind = words.next().unwrap_or_default();
    let arg = words.next().unwrap_or_default();
    if kind == "connect" || kind == "send" {
        if let Some(rest) = arg.strip_prefix("[::ffff:") {
            return rest.replacen("]", "", 1);
        }
        return arg.to_owned();
    }
    std::fs::canonicalize(arg)
        .map(|c| p(&c))
        .unwrap_or_else(|_| arg.to_owned())
}

fn explain_agrees(env: &mut Env) -> Result<String> {
    let rows = explain_table(env);
    let requests: String = rows.iter().map(|(r, _)| format!("{r}\n")).collect();
    let file = "/tmp/explain-requests.txt";
    std::fs::write(file, requests)?;
    let out = Command::new(crate::guest::AGENT)
        .args([
            "policy",
            "explain",
            "--policy",
            POLICY_FILE,
            "--name",
            ENFORCE_POLICY,
            "--requests",
            file,
            "--json",
        ])
        .output()
        .context("running rampart policy explain")?;
    if !out.status.success() {
        bail!("explain failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("explain output is not JSON lines")?;
    if lines.len() != rows.len() {
        bail!(
            "explain gave {} answers for {} requests",
            lines.len(),
            rows.len()
        );
    }
    let (mut allows, mut denies) = (0, 0);
    let mut disagreements = Vec::new();
    for ((request, argv), e) in rows.iter().zip(&lines) {
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let got = run_in(env, &env.governed, &argv)?;
        let explained_deny = e["decision"] == "deny";
        if got.denied() != explained_deny {
            disagreements.push(format!(
                "{request}: explain {} ({}), kernel {got:?}",
                e["decision"], e["reason"]
            ));
            continue;
        }
        if explained_deny {
            denies += 1;
            let action = e["action"].as_str().unwrap_or_default().to_owned();
            let reason = e["reason"].as_str().unwrap_or_default().to_owned();
            env.expect_event(&action, &event_target(request), "deny", &reason);
        } else {
            allows += 1;
        }
    }
    if !disagreements.is_empty() {
        bail!(
            "{} of {} disagree:\n{}",
            disagreements.len(),
            rows.len(),
            disagreements.join("\n")
        );
    }
    Ok(format!("{} requests: explain and kernel agree on all ({allows} allowed, {denies} denied; deny reasons checked against events at stop)", rows.len()))
}

fn enforcement_outlives_agent(env: &mut Env) -> Result<String> {
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

fn refuses_without_bpf_lsm(env: &mut Env) -> Result<String> {
    let out = Command::new(crate::guest::AGENT)
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
fn counter_sum(decisions: &str, pick: impl Fn(&str) -> bool) -> Result<u64> {
    decisions
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| pick(k))
        .map(|(_, v)| v.parse::<u64>().context("counter is not a number"))
        .sum()
}

fn deny_events_match(env: &mut Env) -> Result<String> {
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
    let text = std::fs::read_to_string(crate::guest::AGENT_EVENTS).context("reading events")?;
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("event is not JSON: {l}")))
        .collect::<Result<_>>()?;
    // With `events: denials`, every denying decision (and audit record) is one event.
    let denying = counter_sum(&decisions, |k| k != "allowed" && k != "event-unrecorded")?;
    if denying != events.len() as u64 {
        bail!("the kernel counted {denying} denying decisions ({decisions}) but the agent wrote {} events", events.len());
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
        "{} events = {denying} denying decisions counted by the kernel; all {} expected denials found with action, target and reason; 0 drops",
        events.len(),
        env.expected_events.len()
    ))
}

/// A program in exec.allow replaced on disk (a new file renamed over it, as package managers
/// do) is denied until the policy is reloaded; SIGHUP re-pins it.
fn upgraded_program_re_pinned(env: &mut Env) -> Result<String> {
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
    let loaded = || {
        crate::guest::agent_log()
            .matches("\"policy in force")
            .count()
    };
    let before = loaded();
    // SAFETY: kill(2) on the agent this harness spawned and has not reaped.
    unsafe { libc::kill(pid as i32, libc::SIGHUP) };
    let started = std::time::Instant::now();
    while loaded() == before {
        if started.elapsed() > std::time::Duration::from_secs(60) {
            bail!("the agent did not reload within 60 s after SIGHUP");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
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
