//! AF_UNIX peers: a governed task connects (`unix_stream_connect`, stream and seqpacket)
//! or sends datagrams (`unix_may_send`, at `connect` and at every send) only to sockets
//! made in cgroups its own policy slot governs, and to other sockets only where they are
//! bound at a path that grants `connect`. Abstract and unnamed sockets have no path a rule
//! could name: towards a peer outside the policy they are denied. Without this, a
//! workload reaches whatever a host daemon does for its clients: the container runtime's
//! socket starts ungoverned containers, D-Bus and systemd start ungoverned services.
//!
//! The peer is judged by the cgroup its socket was made in (`sk->sk_cgrp_data`), which
//! the kernel sets when the socket is made and never changes.

use aya_ebpf::{macros::lsm, programs::LsmContext};
use rampart_common::{access, sockets, Action, KernelLayout, Reason, NO_RULE};

use crate::{
    decision::{conclude, governed, lsm_verdict, Request},
    governance::socket_governor,
    object::{dentry_identity, read_at},
    path::{area, copy_name, judge_resolved, put_byte, scratch},
    walk::walk_path,
};

/// `offsetof(struct sockaddr_un, sun_path)`.
const SUN_PATH: u32 = 2;
/// Bytes of `sun_path`.
const SUN_PATH_BYTES: u32 = 108;

/// Writes `@NAME` for an abstract peer (its name after the leading NUL) into the path
/// scratch; its length with the NUL, or 0 for a peer that was never bound.
fn abstract_name(peer: *const u8, layout: &KernelLayout) -> u32 {
    let Some(addr) = read_at::<*const u8>(peer, layout.unix_addr) else {
        return 0;
    };
    let Some(len) = read_at::<i32>(addr, layout.unix_address_len) else {
        return 0;
    };
    // `len` counts sun_family and the leading NUL of an abstract name.
    let name_len = len as u32;
    if name_len <= SUN_PATH + 1 || name_len > SUN_PATH + SUN_PATH_BYTES {
        return 0;
    }
    let name_len = name_len - SUN_PATH - 1;
    let Ok(scratch) = scratch() else {
        return 0;
    };
    let base = area(scratch);
    put_byte(base, 0, b'@');
    let name = addr.wrapping_add((layout.unix_address_name + SUN_PATH + 1) as usize);
    if copy_name(base, 1, name, name_len).is_err() {
        return 0;
    }
    put_byte(base, name_len + 1, 0);
    name_len + 2
}

/// Judges the current task's `action` towards an AF_UNIX peer: `peer` is its
/// `struct sock *`, or with `through_socket` its `struct socket *` (both probe-read); true
/// to allow.
#[inline(always)]
fn judge_peer_socket(peer: *const u8, through_socket: bool, action: Action) -> bool {
    let (policy_id, layout) = match governed(action, access::CONNECT) {
        Ok(found) => found,
        Err(verdict) => return verdict,
    };
    let peer = if through_socket {
        read_at::<*const u8>(peer, layout.socket_sk).unwrap_or(core::ptr::null())
    } else {
        peer
    };
    let mut request = Request::new(action, access::CONNECT);
    request.family = sockets::AF_UNIX;
    // Slots are small numbers; NOBODY and UNKNOWN never equal one. Through `conclude`:
    // an expired or missing policy denies its own peers too.
    if socket_governor(peer, layout) == policy_id {
        return conclude(policy_id, &request, Reason::Allowed, NO_RULE);
    }
    let bound_at = peer.wrapping_add(layout.unix_path as usize);
    let dentry = read_at::<*const u8>(bound_at, layout.path_dentry).unwrap_or(core::ptr::null());
    if dentry.is_null() {
        request.path_len = abstract_name(peer, layout);
        return conclude(policy_id, &request, Reason::NoRule, NO_RULE);
    }
    if let Some(id) = dentry_identity(dentry, layout) {
        request.file = id;
    }
    let (reason, rule) = judge_resolved(walk_path(bound_at, layout), policy_id, &mut request);
    conclude(policy_id, &request, reason, rule)
}

/// `unix_stream_connect(sock, other, newsk)`: `other` is the listening socket.
#[lsm(hook = "unix_stream_connect")]
pub fn unix_stream_connect(ctx: LsmContext) -> i32 {
    let previous: i32 = ctx.arg(3);
    if previous != 0 {
        return previous;
    }
    lsm_verdict(judge_peer_socket(ctx.arg(1), false, Action::UnixConnect))
}

/// `unix_may_send(sock, other)`: both `struct socket *`; the peer's `struct sock` is
/// `other->sk`.
#[lsm(hook = "unix_may_send")]
pub fn unix_may_send(ctx: LsmContext) -> i32 {
    let previous: i32 = ctx.arg(2);
    if previous != 0 {
        return previous;
    }
    lsm_verdict(judge_peer_socket(ctx.arg(1), true, Action::UnixSend))
}
