//! Received descriptors (issue 17): a governed workload that reaches a host process which
//! hands out descriptors gets only what it could have opened or made itself: files by
//! their path and the access they were opened with, sockets only its own policy made, no
//! bpf object, inotify group or namespace file; pipes and anonymous data files pass. (io_uring
//! descriptors, also refused, cannot be sent over `SCM_RIGHTS` at all: the kernel says
//! `EINVAL` to the sender.)
//! Ungoverned receivers are not affected.

use anyhow::Result;

use crate::harness::{
    env::{Env, FIXTURES},
    observe::{op_in, want, want_denied, Failures, Outcome},
};

pub fn received_descriptors_judged_as_their_origin(env: &mut Env) -> Result<String> {
    let g = env.governed.clone();
    let writable = format!("{FIXTURES}/data/writable.txt");
    let readable = format!("{FIXTURES}/data/readable.txt");
    let mut failures = Failures::default();
    let allowed = [
        (
            "a file opened read-write where the policy grants both",
            format!("file-rw:{writable}"),
        ),
        (
            "a file opened read-only where the policy grants read",
            format!("file-ro:{readable}"),
        ),
        ("a pipe", "pipe".to_owned()),
        ("a memfd", "memfd".to_owned()),
        ("an eventfd", "eventfd".to_owned()),
    ];
    for (what, kind) in &allowed {
        failures.note(want(what, op_in(env, &g, &["recv-fd", kind])?, Outcome::Ok));
    }
    failures.note(want(
        "a TCP socket made by the workload itself, passed to itself",
        op_in(env, &g, &["recv-own-socket"])?,
        Outcome::Ok,
    ));
    // (what, kind asked for, event target, reason)
    let denied = [
        (
            "a file no rule names (/srv/secret.txt)",
            "file-ro:/srv/secret.txt".to_owned(),
            "/srv/secret.txt".to_owned(),
            "no-rule",
        ),
        (
            "a file opened read-write where only read is granted",
            format!("file-rw:{readable}"),
            readable.clone(),
            "access-not-granted",
        ),
        (
            "a raw socket made outside",
            "raw".to_owned(),
            "socket:RAW".to_owned(),
            "no-rule",
        ),
        (
            "a TCP socket made outside",
            "tcp".to_owned(),
            "socket:TCP".to_owned(),
            "no-rule",
        ),
        (
            "a bpf map",
            "bpf-map".to_owned(),
            "anon_inode:bpf-map".to_owned(),
            "no-rule",
        ),
        (
            "an inotify group (events about files no rule names)",
            "inotify".to_owned(),
            "anon_inode:inotify".to_owned(),
            "no-rule",
        ),
        (
            "the host's mount namespace",
            "nsfs".to_owned(),
            "nsfs".to_owned(),
            "no-rule",
        ),
    ];
    for (what, kind, target, reason) in &denied {
        let got = op_in(env, &g, &["recv-fd", kind])?;
        failures.note(want_denied(env, what, got, ("receive", target, reason)));
    }
    let free = env.ungoverned.clone();
    for kind in ["raw", "bpf-map", "nsfs"] {
        failures.note(want(
            &format!("an ungoverned receiver of {kind}"),
            op_in(env, &free, &["recv-fd", kind])?,
            Outcome::Ok,
        ));
    }
    failures.check()?;
    Ok(format!(
        "{} descriptors from a host process received where they carry nothing the policy withholds (files by path and access, pipe, memfd, eventfd; its own socket); {} denied and recorded (unnamed file, write past read, raw and TCP sockets made outside, bpf map, inotify group, mount namespace); ungoverned receivers unchanged",
        allowed.len() + 1,
        denied.len()
    ))
}
