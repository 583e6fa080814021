//! `rampart policy explain` computes exactly the decision the kernel makes.

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::harness::env::{Env, ENFORCE_POLICY, POLICY_FILE};
use crate::harness::observe::{p, run_in};

/// One row of the explain table: a request line for `rampart policy explain --requests`
/// and the argv that performs it inside the governed cgroup.
pub fn explain_table(env: &Env) -> Vec<(String, Vec<String>)> {
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
    // File actions on the tree of `scenarios::tree` (made afresh before the table runs):
    // each row acts on entries no other row touches.
    let r = |rel: &str| format!("{}/{rel}", super::tree::RIGHTS);
    let pinned = crate::harness::env::PINNED_PROGRAM.to_owned();
    let actions: [(String, Vec<String>); 26] = [
        (
            format!("create {} file", r("ro/x1")),
            vec!["create".into(), r("ro/x1")],
        ),
        (
            format!("create {} file", r("create/x1")),
            vec!["create".into(), r("create/x1")],
        ),
        (
            format!("create {} dir", r("ro/d1")),
            vec!["mkdir".into(), r("ro/d1")],
        ),
        (
            format!("create {} dir", r("create/d1")),
            vec!["mkdir".into(), r("create/d1")],
        ),
        (
            format!("create {} char", r("dev/n1")),
            vec!["mknod-char".into(), r("dev/n1")],
        ),
        (
            format!("create {} block", r("dev/b1")),
            vec!["mknod-block".into(), r("dev/b1")],
        ),
        (
            format!("create {} fifo", r("a/q1")),
            vec!["mkfifo".into(), r("a/q1")],
        ),
        (
            format!("remove {}", r("ro/f")),
            vec!["unlink".into(), r("ro/f")],
        ),
        (
            format!("remove {}", r("remove/f")),
            vec!["unlink".into(), r("remove/f")],
        ),
        (
            format!("remove {}", r("ro/d")),
            vec!["rmdir".into(), r("ro/d")],
        ),
        (
            format!("rename {} {}", r("a/x"), r("b/x")),
            vec!["rename".into(), r("a/x"), r("b/x")],
        ),
        (
            format!("rename {} {}", r("a/y"), r("c/y")),
            vec!["rename".into(), r("a/y"), r("c/y")],
        ),
        (
            format!("rename {} {}", r("hidden/s"), r("noref/s")),
            vec!["rename".into(), r("hidden/s"), r("noref/s")],
        ),
        (
            format!("link {} {}", r("a/z"), r("b/z")),
            vec!["link".into(), r("a/z"), r("b/z")],
        ),
        (
            format!("link {pinned} {}", r("a/p")),
            vec!["link".into(), pinned.clone(), r("a/p")],
        ),
        (
            format!("exchange {} {}", r("a/e1"), r("b/e2")),
            vec!["exchange".into(), r("a/e1"), r("b/e2")],
        ),
        (
            format!("exchange {} {}", r("c/e3"), r("a/e4")),
            vec!["exchange".into(), r("c/e3"), r("a/e4")],
        ),
        (
            format!("truncate {}", r("create/w")),
            vec!["truncate".into(), r("create/w")],
        ),
        (
            format!("truncate {}", r("trunc/t")),
            vec!["truncate".into(), r("trunc/t")],
        ),
        (
            format!("chmod {}", r("ro/f")),
            vec!["chmod".into(), r("ro/f")],
        ),
        (
            format!("chmod {}", r("meta/f")),
            vec!["chmod".into(), r("meta/f")],
        ),
        (
            format!("chown {}", r("ro/f")),
            vec!["chown".into(), r("ro/f")],
        ),
        (
            format!("utimes {}", r("ro/f")),
            vec!["utimes".into(), r("ro/f")],
        ),
        (
            format!("utimes {}", r("stamp/f")),
            vec!["utimes".into(), r("stamp/f")],
        ),
        (
            format!("xattr {}", r("ro/f")),
            vec!["setxattr".into(), r("ro/f")],
        ),
        (
            format!("xattr {}", r("stamp/f")),
            vec!["setxattr".into(), r("stamp/f")],
        ),
    ];
    for (request, op) in actions {
        let mut argv = vec![fx("allowed-probe"), "op".into()];
        argv.extend(op);
        rows.push((request, argv));
    }
    // System actions (scenarios/system.rs): the test policy permits none. (A module
    // request fails with EPROTONOSUPPORT whatever was decided, so its row is not here.)
    let readable = fx("data/readable.txt");
    let writable = fx("data/writable.txt");
    let system: [(&str, Vec<&str>); 14] = [
        ("mount", vec!["bind-mount", &readable, &writable]),
        ("umount", vec!["umount", "/proc"]),
        ("pivot-root", vec!["pivot-root", "/tmp"]),
        ("chroot", vec!["chroot", "/"]),
        ("user-namespace", vec!["unshare-user"]),
        ("init-module", vec!["init-module"]),
        ("finit-module", vec!["finit-module", &readable]),
        ("perf-event-open", vec!["perf-open"]),
        ("kernel-access", vec!["ioperm"]),
        ("bpf map-create", vec!["bpf-map-create"]),
        ("bpf prog-get-next-id", vec!["bpf-next-id"]),
        (
            "clone-into-cgroup",
            vec!["clone-into-cgroup", "/sys/fs/cgroup"],
        ),
        // Capabilities: test-enforce lists sys_admin, not sys_resource.
        ("capability sys_admin", vec!["unshare", "uts"]),
        ("capability sys_resource", vec!["raise-nofile"]),
    ];
    for (request, f, t, pr) in [
        ("socket inet raw 1", "2", "3", "1"),
        ("socket packet raw 768", "17", "3", "768"),
        ("socket netlink raw 0", "16", "3", "0"),
        ("socket inet stream 0", "2", "1", "0"),
        ("socket unix dgram 0", "1", "2", "0"),
    ] {
        let argv = [fx("allowed-probe"), "op".into(), "socket".into()]
            .into_iter()
            .chain([f, t, pr].map(String::from))
            .collect();
        rows.push((request.to_owned(), argv));
    }
    for (request, op) in system {
        let mut argv = vec![fx("allowed-probe"), "op".into()];
        argv.extend(op.into_iter().map(String::from));
        rows.push((request.to_owned(), argv));
    }
    for (op, peer) in [
        ("unix-connect", crate::harness::unix::STREAM_OK),
        ("unix-connect", crate::harness::unix::STREAM_NO),
        ("unix-connect", crate::harness::unix::STREAM_ABSTRACT),
        ("unix-send", crate::harness::unix::DGRAM_NO),
        ("unix-send", crate::harness::unix::DGRAM_ABSTRACT),
    ] {
        rows.push((
            format!("{op} {peer}"),
            vec![fx("allowed-probe"), "op".into(), op.into(), peer.into()],
        ));
    }
    // Received descriptors: the descriptor server opens the file as ungoverned root.
    for (path, access, mode) in [
        (fx("data/readable.txt"), "read", "file-ro"),
        (fx("data/readable.txt"), "read,write", "file-rw"),
        (fx("data/writable.txt"), "read,write", "file-rw"),
        ("/srv/secret.txt".to_owned(), "read", "file-ro"),
    ] {
        rows.push((
            format!("receive {path} {access}"),
            vec![
                fx("allowed-probe"),
                "op".into(),
                "recv-fd".into(),
                format!("{mode}:{path}"),
            ],
        ));
    }
    // Serving: a listen request's op binds first (allowed where the listen is judged).
    for (request, op, arg) in [
        ("bind 127.0.0.1:7000/tcp", "bind", "127.0.0.1:7000/tcp"),
        ("bind 127.0.0.1:7002/tcp", "bind", "127.0.0.1:7002/tcp"),
        ("bind [::]:7000/tcp", "bind", "[::]:7000/tcp"),
        ("bind 0.0.0.0:0/udp", "bind", "0.0.0.0:0/udp"),
        (
            "listen 127.0.0.1:7000/tcp",
            "bind-listen",
            "127.0.0.1:7000/tcp",
        ),
        ("listen 0.0.0.0:0/tcp", "listen-unbound", "inet"),
    ] {
        rows.push((
            request.to_owned(),
            vec![fx("allowed-probe"), "op".into(), op.into(), arg.into()],
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
pub fn event_target(request: &str) -> String {
    let mut words = request.split_whitespace();
    let kind = words.next().unwrap_or_default();
    let arg = words.next().unwrap_or_default();
    if kind == "socket" || kind == "capability" || kind == "bpf" {
        // A socket, capability or bpf event names it in `access`, with no path or endpoint.
        return String::new();
    }
    if matches!(kind, "connect" | "send" | "bind" | "listen") {
        if let Some(rest) = arg.strip_prefix("[::ffff:") {
            return rest.replacen("]", "", 1);
        }
        return arg.to_owned();
    }
    std::fs::canonicalize(arg)
        .map(|c| p(&c))
        .unwrap_or_else(|_| arg.to_owned())
}

/// `rampart policy explain --json` of the test policy `name` for each request line, one
/// answer per request.
pub fn explain_json(name: &str, requests: &[&str]) -> Result<Vec<serde_json::Value>> {
    let file = "/tmp/explain-requests.txt";
    std::fs::write(
        file,
        requests
            .iter()
            .map(|r| format!("{r}\n"))
            .collect::<String>(),
    )?;
    let out = Command::new(crate::harness::env::AGENT)
        .args([
            "policy",
            "explain",
            "--policy",
            POLICY_FILE,
            "--name",
            name,
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
    if lines.len() != requests.len() {
        bail!(
            "explain gave {} answers for {} requests",
            lines.len(),
            requests.len()
        );
    }
    Ok(lines)
}

pub fn explain_agrees(env: &mut Env) -> Result<String> {
    super::tree::prepare()?;
    let rows = explain_table(env);
    let requests: Vec<&str> = rows.iter().map(|(r, _)| r.as_str()).collect();
    let lines = explain_json(ENFORCE_POLICY, &requests)?;
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
            let target = e["path"]
                .as_str()
                .map_or_else(|| event_target(request), str::to_owned);
            env.expect_event(&action, &target, "deny", &reason);
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
