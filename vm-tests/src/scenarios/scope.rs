//! Containment, self-protection and process scope (issue 17): a governed root workload runs
//! the whole tamper chain against Rampart (its pinned maps and links through `bpf()`, the
//! kernel's program list, unlinking and renaming the pins, signals, ptrace, memory and
//! descriptors of the agent) and against an ungoverned process; every step is denied and
//! recorded, and exec, file and network enforcement still hold afterwards. Towards a task
//! governed by the same policy, signals and ptrace stay allowed. What root outside
//! governance removes or detaches while the agent runs, the agent puts back and records.

use std::{
    os::fd::AsFd,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::harness::env::{Env, CGROUP_ROOT, LINEAGE_DIR, PERMITS_CGROUP, PIN_DIR};
use crate::harness::observe::{exec_target, op_in, p, want, want_denied, Failures, Outcome};

/// What a tamper attempt is, its op, and the event its denial must give (action, target,
/// reason).
type Attempt<'a> = (&'a str, Vec<&'a str>, (&'a str, &'a str, &'a str));

/// A process that sleeps, killed when dropped.
struct Sleeper(Child);

impl Sleeper {
    fn pid(&self) -> String {
        self.0.id().to_string()
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the runner's `sleep` op, inside `cgroup` (through cg-exec and the allowed probe)
/// or, without one, in the harness's own (ungoverned) cgroup.
fn sleeper(env: &Env, cgroup: Option<&Path>) -> Result<Sleeper> {
    let mut cmd = Command::new(&env.runner);
    match cgroup {
        Some(cg) => cmd
            .arg("cg-exec")
            .arg(cg)
            .arg(&env.allowed)
            .args(["op", "sleep", "120"]),
        None => cmd.args(["op", "sleep", "120"]),
    };
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting a sleeper")?;
    // Let it reach its sleep (joined its cgroup, exec'd).
    std::thread::sleep(std::time::Duration::from_millis(300));
    Ok(Sleeper(child))
}

/// The first file under `dir` (recursively) whose path contains `part`.
fn find_pin(dir: &Path, part: &str) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find_pin(&path, part) {
                return Some(found);
            }
        } else if p(&path).contains(part) {
            return Some(path);
        }
    }
    None
}

pub fn tamper_chain_and_process_scope(env: &mut Env) -> Result<String> {
    let agent = env
        .agent_pid()
        .context("the agent is not running")?
        .to_string();
    let map_pin = find_pin(Path::new(PIN_DIR), "GOVERNED")
        .with_context(|| format!("no GOVERNED map pinned under {PIN_DIR}"))?;
    let link_pin = find_pin(&Path::new(PIN_DIR).join("links"), "")
        .with_context(|| format!("no link pinned under {PIN_DIR}/links"))?;
    let (map_pin, link_pin) = (p(&map_pin), p(&link_pin));
    let moved = format!("{link_pin}.moved");
    let outsider = sleeper(env, None)?;
    let sibling = sleeper(env, Some(&env.governed.clone()))?;
    let (out, sib) = (outsider.pid(), sibling.pid());
    let g = env.governed.clone();
    // (what, op, (action, target, reason)): each must fail with EPERM and be recorded.
    let denials: Vec<Attempt> = vec![
        (
            "bpf(BPF_OBJ_GET) of the pinned GOVERNED map",
            vec!["bpf-obj-get", &map_pin],
            ("bpf", "", "not-permitted"),
        ),
        (
            "bpf(BPF_OBJ_GET) of a pinned link (to detach it)",
            vec!["bpf-obj-get", &link_pin],
            ("bpf", "", "not-permitted"),
        ),
        (
            "bpf(BPF_PROG_GET_NEXT_ID): the way to every program without pins",
            vec!["bpf-next-id"],
            ("bpf", "", "not-permitted"),
        ),
        (
            "unlink a pinned link",
            vec!["unlink", &link_pin],
            ("remove", &link_pin, "no-rule"),
        ),
        (
            "SIGKILL to the agent",
            vec!["kill", &agent, "9"],
            ("signal", &agent, "no-rule"),
        ),
        (
            "SIGHUP to the agent",
            vec!["kill", &agent, "1"],
            ("signal", &agent, "no-rule"),
        ),
        (
            "SIGSTOP to the agent through a pidfd",
            vec!["pidfd-signal", &agent, "19"],
            ("signal", &agent, "no-rule"),
        ),
        (
            "kill(pid, 0) probe of an ungoverned process",
            vec!["kill", &out, "0"],
            ("signal", &out, "no-rule"),
        ),
        (
            "PTRACE_ATTACH to the agent",
            vec!["ptrace-attach", &agent],
            ("ptrace", &agent, "no-rule"),
        ),
        (
            "process_vm_readv of the agent",
            vec!["vm-read", &agent],
            ("ptrace", &agent, "no-rule"),
        ),
        (
            "pidfd_getfd of the agent's descriptor",
            vec!["pidfd-getfd", &agent],
            ("ptrace", &agent, "no-rule"),
        ),
        (
            "PTRACE_ATTACH to an ungoverned process",
            vec!["ptrace-attach", &out],
            ("ptrace", &out, "no-rule"),
        ),
    ];
    for (what, op, event) in &denials {
        let got = op_in(env, &g, op)?;
        want_denied(env, what, got, *event)?;
    }
    // A rename of a pin: denied (its event's path and reason differ between 6.1 and 6.12
    // and are not checked here yet).
    let renamed = op_in(env, &g, &["rename", &link_pin, &moved])?;
    if !renamed.denied() {
        bail!("rename a pinned link away: got {renamed:?}, expected EPERM");
    }
    // /proc/PID/mem and environ (the policy may read /proc): the refusal comes back
    // through mm_access, as EPERM or EACCES depending on the kernel.
    for (what, op) in [
        ("open /proc/AGENT/mem", "open-mem"),
        ("open /proc/AGENT/environ", "open-environ"),
    ] {
        let got = op_in(env, &g, &[op, &agent])?;
        if got != Outcome::Errno(libc::EPERM) && got != Outcome::Errno(libc::EACCES) {
            bail!("{what}: got {got:?}, expected EPERM or EACCES");
        }
    }
    env.expect_event("ptrace", &agent, "deny", "no-rule");
    // The same policy's tasks: allowed.
    for (what, op) in [
        (
            "signal 0 to a task of the same policy",
            vec!["kill", &sib, "0"],
        ),
        (
            "SIGCONT to a task of the same policy",
            vec!["kill", &sib, "18"],
        ),
        (
            "PTRACE_ATTACH to a task of the same policy",
            vec!["ptrace-attach", &sib],
        ),
        (
            "/proc/PID/mem of a task of the same policy",
            vec!["open-mem", &sib],
        ),
        (
            "/proc/PID/environ of a task of the same policy",
            vec!["open-environ", &sib],
        ),
    ] {
        want(what, op_in(env, &g, &op)?, Outcome::Ok)?;
    }
    // Past the access check, the never-mapped address is what fails.
    want(
        "process_vm_readv of a task of the same policy",
        op_in(env, &g, &["vm-read", &sib])?,
        Outcome::Errno(libc::EFAULT),
    )?;
    // Rampart is whole: the agent runs, its pins are there, and it still enforces.
    if !Path::new(&link_pin).exists() || Path::new(&moved).exists() {
        bail!("{link_pin} was moved or removed");
    }
    let denied_probe = exec_target(env, &g, &env.denied.clone())?;
    want_denied(
        env,
        "the disallowed probe after the tamper chain",
        denied_probe,
        ("exec", &p(&env.denied), "access-not-granted"),
    )?;
    want_denied(
        env,
        "a forbidden connect after the tamper chain",
        op_in(env, &g, &["connect", "127.0.0.1:22/tcp"])?,
        ("connect", "127.0.0.1:22/tcp", "access-not-granted"),
    )?;
    if let Some(agent) = env.agent.as_mut() {
        if let Ok(Some(status)) = agent.try_wait() {
            bail!("the agent exited during the tamper chain: {status}");
        }
    }
    // Outside governance nothing of this is judged.
    let free = env.ungoverned.clone();
    want(
        "kill(pid, 0) of the agent from outside governance",
        op_in(env, &free, &["kill", &agent, "0"])?,
        Outcome::Ok,
    )?;
    want(
        "bpf(BPF_PROG_GET_NEXT_ID) from outside governance",
        op_in(env, &free, &["bpf-next-id"])?,
        Outcome::Ok,
    )?;
    drop(sibling);
    drop(outsider);
    Ok(format!(
        "{} tamper and scope attempts denied and recorded (bpf on pins and program ids, pin unlink and rename, SIGKILL/SIGHUP/SIGSTOP, ptrace, process_vm_readv, pidfd_getfd, /proc/PID/mem of the agent; signal and ptrace of an ungoverned process); signal and ptrace within the policy allowed; exec and connect still denied afterwards",
        denials.len() + 3
    ))
}

/// `bpf()` with the `bpf` permit: the workload's own maps and network programs, never a
/// way to objects it did not make (Rampart's pinned maps, ids) nor a tracing program.
pub fn bpf_only_with_the_permit_and_never_on_rampart_objects(env: &mut Env) -> Result<String> {
    let map_pin = find_pin(Path::new(PIN_DIR), "GOVERNED")
        .with_context(|| format!("no GOVERNED map pinned under {PIN_DIR}"))?;
    let map_pin = p(&map_pin);
    // Its id, read from outside governance: the way to it without the pin.
    let map = crate::sys::bpf_obj_get(&map_pin).context("BPF_OBJ_GET of the GOVERNED map")?;
    let map_id = crate::sys::bpf_map_id(map.as_fd())
        .context("the GOVERNED map's id")?
        .to_string();
    drop(map);
    let permits = Path::new(CGROUP_ROOT).join(PERMITS_CGROUP.trim_start_matches('/'));
    let mut failures = Failures::default();
    let g = env.governed.clone();
    failures.note(want_denied(
        env,
        "BPF_MAP_CREATE without the permit",
        op_in(env, &g, &["bpf-map-create"])?,
        ("bpf", "", "not-permitted"),
    ));
    for (what, op) in [
        ("BPF_MAP_CREATE with the permit", vec!["bpf-map-create"]),
        (
            "BPF_PROG_LOAD of a socket filter",
            vec!["bpf-prog-load", "1"],
        ),
    ] {
        failures.note(want(what, op_in(env, &permits, &op)?, Outcome::Ok));
    }
    let denied: [(&str, Vec<&str>); 4] = [
        (
            "BPF_OBJ_GET of Rampart's GOVERNED map",
            vec!["bpf-obj-get", &map_pin],
        ),
        ("BPF_PROG_GET_NEXT_ID", vec!["bpf-next-id"]),
        (
            "BPF_MAP_GET_FD_BY_ID of Rampart's GOVERNED map",
            vec!["bpf-map-by-id", &map_id],
        ),
        (
            "BPF_PROG_LOAD of a kprobe program",
            vec!["bpf-prog-load", "2"],
        ),
    ];
    for (what, op) in &denied {
        let got = op_in(env, &permits, op)?;
        failures.note(want_denied(env, what, got, ("bpf", "", "not-permitted")));
    }
    failures.check()?;
    Ok(format!(
        "without the permit bpf() denied; with it a map and a socket filter made, {} ways to other objects or to tracing denied and recorded (BPF_OBJ_GET of Rampart's map, GET_NEXT_ID, MAP_GET_FD_BY_ID of that map, a kprobe load)",
        denied.len()
    ))
}

/// Joining another process's namespaces (`setns`) is scoped like ptrace: the kernel asks
/// for ptrace access to the process first (`/proc/PID/ns/*`, and a pidfd's target), so a
/// governed root with `sys_admin` and `sys_chroot` still cannot enter the host's mount
/// namespace; its own policy's processes' namespaces it may join.
pub fn setns_outside_the_policy_denied(env: &mut Env) -> Result<String> {
    let g = env.governed.clone();
    let sibling = sleeper(env, Some(&g))?;
    let sib = sibling.pid();
    let mut failures = Failures::default();
    // PID 1: the guest's init, outside every governed cgroup.
    let got = op_in(env, &g, &["setns-pid", "1", "mnt"])?;
    failures.note(want_denied(
        env,
        "setns into init's mount namespace through a pidfd",
        got,
        ("ptrace", "1", "no-rule"),
    ));
    // The magic link's open asks for ptrace access: EACCES from proc, not EPERM.
    let got = op_in(env, &g, &["setns-path", "1", "mnt"])?;
    if got == Outcome::Errno(libc::EACCES) {
        env.expect_event("ptrace", "1", "deny", "no-rule");
    } else {
        failures.push(format!(
            "setns into init's mount namespace through /proc/1/ns/mnt: got {got:?}, expected EACCES"
        ));
    }
    let got = op_in(env, &g, &["setns-pid", &sib, "uts"])?;
    if got != Outcome::Ok {
        // Say what the kernel recorded, if it did.
        let events =
            std::fs::read_to_string(crate::harness::agent::AGENT_EVENTS).unwrap_or_default();
        let last: Vec<&str> = events.lines().rev().take(2).collect();
        failures.push(format!(
            "setns into the UTS namespace of a task of the same policy: got {got:?}, expected Ok (last events: {last:?})"
        ));
    }
    failures.note(want(
        "setns into init's mount namespace from outside governance",
        op_in(env, &env.ungoverned.clone(), &["setns-pid", "1", "mnt"])?,
        Outcome::Ok,
    ));
    drop(sibling);
    failures.check()?;
    Ok("setns into init's mount namespace denied through a pidfd and through /proc/1/ns/mnt (ptrace scope, recorded) with sys_admin and sys_chroot listed; into a same-policy task's namespace allowed; ungoverned unchanged".to_owned())
}

/// The `tamper` records of the main agent's lineage so far, as `(found, repaired)` (read
/// as text: the agent is writing the last segment).
fn tamper_records() -> Result<Vec<(String, bool)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(LINEAGE_DIR)?.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        for line in text.lines().filter(|l| l.contains("\"kind\":\"tamper\"")) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                found.push((
                    v["what"].as_str().unwrap_or_default().to_owned(),
                    v["repaired"] == true,
                ));
            }
        }
    }
    Ok(found)
}

pub fn tampered_pins_and_links_put_back(env: &mut Env) -> Result<String> {
    let g = env.governed.clone();
    let before = tamper_records()?.len();
    // As root outside every governed cgroup: remove an LSM link's pin and a map's pin,
    // and detach the connect4 program from the cgroup v2 root.
    let links = Path::new(PIN_DIR).join("links");
    let lsm_pin = find_pin(&links, "bprm_check_security@")
        .with_context(|| format!("no bprm_check_security link pinned under {}", p(&links)))?;
    let map_pin = find_pin(Path::new(PIN_DIR), "/POLICIES")
        .with_context(|| format!("no POLICIES map pinned under {PIN_DIR}"))?;
    let connect_pin = find_pin(&links, "connect4-root@")
        .with_context(|| format!("no connect4 root link pinned under {}", p(&links)))?;
    std::fs::remove_file(&lsm_pin)?;
    std::fs::remove_file(&map_pin)?;
    let link = crate::sys::bpf_obj_get(&p(&connect_pin)).context("BPF_OBJ_GET of the link")?;
    crate::sys::bpf_link_detach(link.as_fd()).context("BPF_LINK_DETACH")?;
    drop(link);
    // The agent checks every second; give it a few.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut records = tamper_records()?;
    while records.len() < before + 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        records = tamper_records()?;
    }
    let new = &records[before.min(records.len())..];
    let count = |what: &str| new.iter().filter(|(f, ok)| f == what && *ok).count();
    let mut failures = Failures::default();
    if count("pin-removed") < 2 || count("link-detached") < 1 {
        failures.push(format!(
            "expected 2 pin-removed and 1 link-detached tamper records, repaired, within 10 s; found {new:?}"
        ));
    }
    for pin in [&lsm_pin, &map_pin] {
        if pin.symlink_metadata().is_err() {
            failures.push(format!("{} was not pinned again", p(pin)));
        }
    }
    if find_pin(&links, "connect4-root@").is_none() {
        failures.push("no connect4 root link pinned after the re-attach".to_owned());
    }
    // Enforcement is whole: the forbidden exec and connect are still denied.
    let got = exec_target(env, &g, &env.denied.clone())?;
    failures.note(want_denied(
        env,
        "the disallowed probe after the tampering",
        got,
        ("exec", &p(&env.denied), "access-not-granted"),
    ));
    let got = op_in(env, &g, &["connect", "127.0.0.1:22/tcp"])?;
    failures.note(want_denied(
        env,
        "a forbidden connect after the detach",
        got,
        ("connect", "127.0.0.1:22/tcp", "access-not-granted"),
    ));
    failures.check()?;
    Ok(format!(
        "an LSM link's pin and the POLICIES map's pin removed and connect4 detached from the cgroup root by ungoverned root: {} tamper records, each repaired (re-pinned, re-attached); exec and connect still denied",
        new.len()
    ))
}
