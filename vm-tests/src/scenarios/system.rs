//! System actions (issue 17): mounts, `pivot_root`, `chroot`, user namespaces, kernel
//! loading and `perf_event_open` are denied to a governed root workload unless its policy
//! permits them, and `clone3(CLONE_INTO_CGROUP)` out of the governed subtree is denied
//! always. Root in a user namespace it was allowed to create still cannot mount, chroot
//! or leave its cgroup. Sockets past unix, TCP and UDP need a `spec.sockets` entry.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::harness::env::{Env, CGROUP_ROOT, NOCAPS_CGROUP, PERMITS_CGROUP, USERNS_CGROUP};
use crate::harness::observe::{op_in, p, want, want_denied, Failures, Outcome};

/// The module name a netlink socket of the unregistered protocol 31 asks for.
const NETLINK_31_MODULE: &str = "net-pf-16-proto-31";

fn cgroup(name: &str) -> PathBuf {
    Path::new(CGROUP_ROOT).join(name.trim_start_matches('/'))
}

/// Fails unless `got` is an errno other than EPERM: the call got past Rampart's hook and
/// the kernel refused it for its own reason (e.g. bytes that are no module).
fn past_the_hook(what: &str, got: Outcome) -> Result<()> {
    match got {
        Outcome::Errno(e) if e != libc::EPERM => Ok(()),
        other => bail!("{what}: got {other:?}, expected the kernel's own error (not EPERM)"),
    }
}

pub fn denied_unless_permitted(env: &mut Env) -> Result<String> {
    let g = env.governed.clone();
    let readable = p(&env.fixture("data/readable.txt"));
    let writable = p(&env.fixture("data/writable.txt"));
    let root = CGROUP_ROOT;
    let mut failures = Failures::default();
    let mut note = |r: Result<()>| failures.note(r);
    // The test policy permits nothing: each must fail with EPERM and be recorded.
    let denials: [(&str, Vec<&str>, &str); 9] = [
        (
            "bind mount of one file over another in a private mount namespace",
            vec!["bind-mount", &readable, &writable],
            "mount",
        ),
        (
            "umount /proc in a new mount namespace",
            vec!["umount", "/proc"],
            "mount",
        ),
        (
            "pivot_root in a private mount namespace",
            vec!["pivot-root", "/tmp"],
            "mount",
        ),
        ("chroot /", vec!["chroot", "/"], "chroot"),
        (
            "unshare(CLONE_NEWUSER)",
            vec!["unshare-user"],
            "user-namespace",
        ),
        ("init_module", vec!["init-module"], "kernel-load"),
        (
            "finit_module of a readable file",
            vec!["finit-module", &readable],
            "kernel-load",
        ),
        (
            "perf_event_open of a software clock",
            vec!["perf-open"],
            "perf-event",
        ),
        (
            "clone3(CLONE_INTO_CGROUP) into the root cgroup",
            vec!["clone-into-cgroup", root],
            "clone-into-cgroup",
        ),
    ];
    for (what, op, action) in &denials {
        let got = op_in(env, &g, op)?;
        note(want_denied(env, what, got, (action, "", "not-permitted")));
    }
    // A module request fails whatever is decided; the denial shows in its event only.
    note(want(
        "a netlink socket of an unregistered protocol",
        op_in(env, &g, &["module-request"])?,
        Outcome::Errno(libc::EPROTONOSUPPORT),
    ));
    env.expect_event("kernel-load", NETLINK_31_MODULE, "deny", "not-permitted");

    // Root in a user namespace it may create: still no mount, chroot or escape.
    let userns = cgroup(USERNS_CGROUP);
    note(want(
        "unshare(CLONE_NEWUSER) where user-namespaces is permitted",
        op_in(env, &userns, &["unshare-user"])?,
        Outcome::Ok,
    ));
    for (what, op, action) in [
        (
            "mount as root of a new user namespace",
            vec!["userns", "mount"],
            "mount",
        ),
        (
            "chroot as root of a new user namespace",
            vec!["userns", "chroot"],
            "chroot",
        ),
        (
            "CLONE_INTO_CGROUP as root of a new user namespace",
            vec!["userns", "clone-into-cgroup", root],
            "clone-into-cgroup",
        ),
        (
            "perf_event_open, not permitted there",
            vec!["perf-open"],
            "perf-event",
        ),
    ] {
        let got = op_in(env, &userns, &op)?;
        note(want_denied(env, what, got, (action, "", "not-permitted")));
    }

    // Where the policy permits them, they reach the kernel.
    let permits = cgroup(PERMITS_CGROUP);
    for (what, op) in [
        ("bind mount", vec!["bind-mount", &readable, &writable]),
        ("umount /proc", vec!["umount-private", "/proc"]),
        ("chroot /", vec!["chroot", "/"]),
        ("unshare(CLONE_NEWUSER)", vec!["unshare-user"]),
        ("perf_event_open", vec!["perf-open"]),
    ] {
        note(want(
            &format!("{what} where permitted"),
            op_in(env, &permits, &op)?,
            Outcome::Ok,
        ));
    }
    note(want(
        "pivot_root where permitted (the initramfs root has no parent mount)",
        op_in(env, &permits, &["pivot-root", "/tmp"])?,
        Outcome::Errno(libc::EINVAL),
    ));
    note(past_the_hook(
        "init_module where permitted",
        op_in(env, &permits, &["init-module"])?,
    ));
    note(past_the_hook(
        "finit_module where permitted",
        op_in(env, &permits, &["finit-module", &readable])?,
    ));
    // No permit exists for CLONE_INTO_CGROUP.
    note(want_denied(
        env,
        "CLONE_INTO_CGROUP with every permit",
        op_in(env, &permits, &["clone-into-cgroup", root])?,
        ("clone-into-cgroup", "", "not-permitted"),
    ));
    // Outside governance the same clone3 works: the op is a real escape when not denied.
    let free = env.ungoverned.clone();
    note(want(
        "CLONE_INTO_CGROUP from an ungoverned cgroup",
        op_in(env, &free, &["clone-into-cgroup", root])?,
        Outcome::Ok,
    ));
    failures.check()?;
    Ok(format!(
        "{} system actions denied and recorded (mount, umount, pivot_root, chroot, user namespace, init_module, finit_module, perf_event_open, CLONE_INTO_CGROUP, module request); root of a permitted user namespace still cannot mount, chroot or clone into another cgroup; with permits each reaches the kernel; CLONE_INTO_CGROUP works ungoverned, denied governed even with every permit",
        denials.len() + 1
    ))
}

/// Sockets: (what, family, type, protocol). Protocol 768 is `htons(ETH_P_ALL)`.
const PAST_THE_DEFAULTS: [(&str, &str, &str, &str); 8] = [
    ("a raw IPv4 socket (ICMP)", "2", "3", "1"),
    ("a raw IPv6 socket (ICMPv6)", "10", "3", "58"),
    ("an IPv4 ping socket", "2", "2", "1"),
    ("an SCTP socket", "2", "1", "132"),
    ("a packet socket", "17", "3", "768"),
    ("a netlink route socket", "16", "3", "0"),
    ("a netlink generic socket", "16", "3", "16"),
    ("a vsock socket", "40", "1", "0"),
];

/// The target a socket event carries: none (its `access` names the socket).
fn socket_event() -> (&'static str, &'static str, &'static str) {
    ("socket", "", "no-rule")
}

pub fn sockets_past_the_defaults(env: &mut Env) -> Result<String> {
    let g = env.governed.clone();
    let mut failures = Failures::default();
    let mut note = |r: Result<()>| failures.note(r);
    for (what, f, t, pr) in PAST_THE_DEFAULTS {
        let got = op_in(env, &g, &["socket", f, t, pr])?;
        note(want_denied(env, what, got, socket_event()));
    }
    // The defaults: unix sockets, TCP and UDP over IPv4 and IPv6.
    for (what, f, t, pr) in [
        ("a unix stream socket", "1", "1", "0"),
        ("a unix datagram socket", "1", "2", "0"),
        ("a TCP socket", "2", "1", "6"),
        ("a UDP socket", "2", "2", "0"),
        ("a TCP/IPv6 socket", "10", "1", "0"),
        ("a UDP/IPv6 socket", "10", "2", "17"),
    ] {
        note(want(
            what,
            op_in(env, &g, &["socket", f, t, pr])?,
            Outcome::Ok,
        ));
    }
    // Listed in test-permits: inet-raw, inet-ping, packet, netlink-route.
    let permits = cgroup(PERMITS_CGROUP);
    for (what, f, t, pr) in [
        ("a raw IPv4 socket", "2", "3", "1"),
        ("a raw IPv6 socket", "10", "3", "58"),
        ("a packet socket", "17", "3", "768"),
        ("a netlink route socket", "16", "3", "0"),
    ] {
        note(want(
            &format!("{what} where listed"),
            op_in(env, &permits, &["socket", f, t, pr])?,
            Outcome::Ok,
        ));
    }
    // Ping sockets pass the hook; the kernel's ping_group_range may still refuse them.
    let ping = op_in(env, &permits, &["socket", "2", "2", "1"])?;
    if ping.denied() {
        note(Err(anyhow::anyhow!(
            "an IPv4 ping socket where listed: got {ping:?}, expected it past the hook"
        )));
    }
    for (what, f, t, pr) in [
        (
            "a netlink generic socket where only route is listed",
            "16",
            "3",
            "16",
        ),
        (
            "an SCTP socket where only raw and ping are listed",
            "2",
            "1",
            "132",
        ),
    ] {
        let got = op_in(env, &permits, &["socket", f, t, pr])?;
        note(want_denied(env, what, got, socket_event()));
    }
    failures.check()?;
    Ok(format!(
        "{} sockets past the defaults denied and recorded (raw, ping, SCTP, packet, netlink route and generic, vsock); unix, TCP and UDP allowed; raw, packet and netlink route allowed where listed, other netlink protocols and SCTP still denied",
        PAST_THE_DEFAULTS.len()
    ))
}

/// What the kernel checks a capability for before these calls, with the capability's name.
const CAPABILITY_CASES: [(&str, &[&str]); 7] = [
    ("unshare(CLONE_NEWNS) (sys_admin)", &["unshare", "mnt"]),
    ("unshare(CLONE_NEWNET) (sys_admin)", &["unshare", "net"]),
    ("unshare(CLONE_NEWUTS) (sys_admin)", &["unshare", "uts"]),
    ("chroot / (sys_chroot)", &["chroot", "/"]),
    ("init_module (sys_module)", &["init-module"]),
    ("a raw IPv4 socket (net_raw)", &["socket", "2", "3", "1"]),
    (
        "a mount namespace as root of a new user namespace (sys_admin there)",
        &["userns", "mount"],
    ),
];

pub fn capabilities_denied_unless_listed(env: &mut Env) -> Result<String> {
    let mut failures = Failures::default();
    // test-nocaps permits every system action and lists the raw socket, but no
    // capability: root's capabilities are refused, in its own user namespace and in one
    // it creates.
    let nocaps = cgroup(NOCAPS_CGROUP);
    for (what, op) in CAPABILITY_CASES {
        let got = op_in(env, &nocaps, op)?;
        failures.note(want_denied(
            env,
            what,
            got,
            ("capability", "", "not-permitted"),
        ));
    }
    // test-permits lists sys_admin, sys_chroot, sys_module and net_raw: the same calls
    // get past the capability check (init_module then fails on bytes that are no module).
    let permits = cgroup(PERMITS_CGROUP);
    for (what, op) in CAPABILITY_CASES {
        let got = op_in(env, &permits, op)?;
        let what = format!("{what} where listed");
        failures.note(if op == ["init-module"] {
            past_the_hook(&what, got)
        } else {
            want(&what, got, Outcome::Ok)
        });
    }
    // A task outside governance keeps root's capabilities: the cases are real.
    let free = env.ungoverned.clone();
    failures.note(want(
        "unshare(CLONE_NEWNS) ungoverned",
        op_in(env, &free, &["unshare", "mnt"])?,
        Outcome::Ok,
    ));
    failures.check()?;
    Ok(format!(
        "{} capability checks (sys_admin for mount, network and UTS namespaces, also as root of a new user namespace; sys_chroot; sys_module; net_raw) denied and recorded where no capability is listed, passed where listed",
        CAPABILITY_CASES.len()
    ))
}

pub fn cgroup_files_written_only_in_governed_cgroups(env: &mut Env) -> Result<String> {
    let mut failures = Failures::default();
    // test-permits may read and write everything under /sys/fs/cgroup by its path rule.
    let permits = cgroup(PERMITS_CGROUP);
    let child = permits.join("child");
    std::fs::create_dir_all(&child)?;
    let free = p(&env.ungoverned);
    let f = |dir: &str, name: &str| format!("{dir}/{name}");
    let cases: [(&str, String, &str, bool); 5] = [
        (
            "moving itself into an ungoverned cgroup (cgroup.procs)",
            f(&free, "cgroup.procs"),
            "0",
            false,
        ),
        (
            "moving itself into the root cgroup",
            f(CGROUP_ROOT, "cgroup.procs"),
            "0",
            false,
        ),
        (
            "a thread into an ungoverned cgroup (cgroup.threads)",
            f(&free, "cgroup.threads"),
            "0",
            false,
        ),
        (
            "a limit of an ungoverned cgroup (cgroup.max.depth)",
            f(&free, "cgroup.max.depth"),
            "max",
            false,
        ),
        (
            "moving itself into a child of its own cgroup",
            f(&p(&child), "cgroup.procs"),
            "0",
            true,
        ),
    ];
    let requests: Vec<String> = cases
        .iter()
        .map(|(_, file, _, _)| format!("open {file} write"))
        .collect();
    let requests: Vec<&str> = requests.iter().map(String::as_str).collect();
    let answers = super::explain::explain_json("test-permits", &requests)?;
    for ((what, file, value, allowed), answer) in cases.iter().zip(&answers) {
        let got = op_in(env, &permits, &["cgroup-write", file, value])?;
        let explained = (
            answer["decision"].as_str().unwrap_or_default(),
            answer["reason"].as_str().unwrap_or_default(),
        );
        if *allowed {
            failures.note(want(what, got, Outcome::Ok));
            if explained.0 != "allow" {
                failures.note(Err(anyhow::anyhow!("{what}: explain says {explained:?}")));
            }
        } else {
            failures.note(want_denied(
                env,
                what,
                got,
                ("open", file, "cgroup-not-governed"),
            ));
            if explained != ("deny", "cgroup-not-governed") {
                failures.note(Err(anyhow::anyhow!("{what}: explain says {explained:?}")));
            }
        }
    }
    // Reading is for the path rules alone.
    failures.note(want(
        "reading an ungoverned cgroup's cgroup.procs",
        op_in(env, &permits, &["open", &f(&free, "cgroup.procs"), "read"])?,
        Outcome::Ok,
    ));
    failures.check()?;
    Ok(format!(
        "{} cgroupfs writes outside the policy's cgroups (cgroup.procs of an ungoverned and of the root cgroup, cgroup.threads, a limit) denied and recorded though a path rule grants write; moving into a child of its own cgroup allowed; explain agrees on each; reads unaffected",
        cases.len() - 1
    ))
}

/// What kernel lockdown guards, reached with `CAP_SYS_RAWIO` (which both policies list).
const KERNEL_ACCESS_CASES: [(&str, &str); 2] = [
    ("ioperm of port 0x80 (lockdown ioport)", "ioperm"),
    ("iopl(3) (lockdown ioport)", "iopl"),
];

pub fn kernel_access_denied_unless_permitted(env: &mut Env) -> Result<String> {
    let g = env.governed.clone();
    let permits = cgroup(PERMITS_CGROUP);
    let mut failures = Failures::default();
    for (what, op) in KERNEL_ACCESS_CASES {
        let got = op_in(env, &g, &[op])?;
        failures.note(want_denied(
            env,
            what,
            got,
            ("lockdown", "", "not-permitted"),
        ));
        failures.note(want(
            &format!("{what} where kernel-access is permitted"),
            op_in(env, &permits, &[op])?,
            Outcome::Ok,
        ));
    }
    failures.check()?;
    Ok(format!(
        "{n} uses of I/O ports denied at the lockdown hook with sys_rawio listed and recorded; the same {n} allowed where kernel-access is permitted",
        n = KERNEL_ACCESS_CASES.len()
    ))
}
