//! AF_UNIX peers (issue 17): a governed workload reaches sockets made outside its policy
//! only where they are bound at a path that grants `connect` (stream connect and datagram
//! send alike), never abstract ones; peers made in cgroups of its own policy are always
//! reachable, those of another policy are not. `write` on a socket's path is not
//! `connect`.

use std::{
    path::Path,
    process::{Child, Command},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::harness::{
    env::{Env, CGROUP_ROOT, NOCAPS_CGROUP},
    observe::{op_in, p, want, want_denied, Failures, Outcome},
    unix::{DGRAM_ABSTRACT, DGRAM_NO, DGRAM_OK, STREAM_ABSTRACT, STREAM_NO, STREAM_OK},
};

/// An abstract listener inside the governed cgroup, made by the workload itself.
const SAME_POLICY_PEER: &str = "@rampart-same-policy";

/// Starts the workload's own listener and waits until the kernel lists it.
fn governed_listener(env: &Env) -> Result<Child> {
    let child = Command::new(&env.runner)
        .arg("cg-exec")
        .arg(&env.governed)
        .args([
            &p(&env.allowed),
            "op",
            "unix-listen",
            SAME_POLICY_PEER,
            "60",
        ])
        .spawn()
        .context("starting the governed listener")?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let table = std::fs::read_to_string("/proc/net/unix")?;
        if table.lines().any(|l| l.ends_with(SAME_POLICY_PEER)) {
            return Ok(child);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("the governed listener {SAME_POLICY_PEER} never appeared in /proc/net/unix")
}

pub fn peers_outside_the_policy_denied_unless_connect(env: &mut Env) -> Result<String> {
    let g = env.governed.clone();
    let mut failures = Failures::default();
    let mut note = |r: Result<()>| failures.note(r);
    // Reachable: the sockets whose path grants connect.
    for (what, op, peer) in [
        (
            "stream connect to a socket granted connect",
            "unix-connect",
            STREAM_OK,
        ),
        (
            "datagram to a socket granted connect",
            "unix-send",
            DGRAM_OK,
        ),
    ] {
        note(want(what, op_in(env, &g, &[op, peer])?, Outcome::Ok));
    }
    // Denied: write is granted on the directory, connect is not; abstract names match
    // no rule.
    let denials = [
        (
            "stream connect to a socket granted only read, write",
            "unix-connect",
            STREAM_NO,
            "access-not-granted",
        ),
        (
            "datagram to a socket granted only read, write",
            "unix-send",
            DGRAM_NO,
            "access-not-granted",
        ),
        (
            "stream connect to an abstract socket of the host",
            "unix-connect",
            STREAM_ABSTRACT,
            "no-rule",
        ),
        (
            "datagram to an abstract socket of the host",
            "unix-send",
            DGRAM_ABSTRACT,
            "no-rule",
        ),
    ];
    for (what, op, peer, reason) in denials {
        let got = op_in(env, &g, &[op, peer])?;
        note(want_denied(env, what, got, (op, peer, reason)));
    }
    // Outside governance nothing changes.
    let free = env.ungoverned.clone();
    note(want(
        "an ungoverned stream connect to a socket no rule grants",
        op_in(env, &free, &["unix-connect", STREAM_NO])?,
        Outcome::Ok,
    ));
    // The workload's own peer: reachable from its policy, not from another.
    let mut listener = governed_listener(env)?;
    note(want(
        "stream connect to an abstract listener of the same policy",
        op_in(env, &g, &["unix-connect", SAME_POLICY_PEER])?,
        Outcome::Ok,
    ));
    let other = Path::new(CGROUP_ROOT).join(NOCAPS_CGROUP.trim_start_matches('/'));
    let got = op_in(env, &other, &["unix-connect", SAME_POLICY_PEER])?;
    note(want_denied(
        env,
        "stream connect from another policy to the workload's abstract listener",
        got,
        ("unix-connect", SAME_POLICY_PEER, "no-rule"),
    ));
    let _ = listener.kill();
    let _ = listener.wait();
    failures.check()?;
    Ok(format!(
        "2 peers granted connect reached (stream, datagram); {} connects and sends denied and recorded (write without connect, abstract stream and datagram, another policy's listener); the workload's own abstract listener reached from its policy; ungoverned connects unchanged",
        denials.len() + 1
    ))
}
