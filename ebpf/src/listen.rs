//! Serving: a governed task binds TCP and UDP sockets over IPv4 and IPv6 (`socket_bind`)
//! and listens on TCP sockets (`socket_listen`) only at the local addresses and ports
//! `spec.listen` names. Without this a workload serves whatever it likes: a shell on a
//! port, a relay for other hosts. A bind to port 0 (the kernel picks an ephemeral port, as
//! a client does before it connects) is allowed; a listen is judged at the address and
//! port the socket is bound to, so a socket bound to port 0, or not bound at all (the
//! kernel binds it as it listens), listens only where a rule covers every port. Other
//! families and protocols are judged when they are made (`socket_create`); a unix socket's
//! path by `create`.

use aya_ebpf::{macros::lsm, programs::LsmContext};
use rampart_common::{Action, KernelLayout, Reason, IPPROTO_TCP, IPPROTO_UDP, NO_RULE};

use crate::{
    decision::{conclude, governed, lsm_verdict, Request},
    network::{judge_address, Address, AF_INET, AF_INET6},
    object::read_at,
};

/// `sizeof(struct sockaddr_in)`: the kernel refuses a shorter IPv4 address.
const SOCKADDR_IN_BYTES: i32 = 16;
/// `SIN6_LEN_RFC2133`: the kernel refuses a shorter IPv6 address.
const SOCKADDR_IN6_BYTES: i32 = 24;

/// An inet TCP or UDP socket's `struct sock *`, whether it is IPv6, and its protocol.
enum Judged {
    /// Not TCP or UDP over IPv4 or IPv6: judged when it was made.
    Other,
    /// The socket could not be read: deny.
    Unreadable,
    Inet(*const u8, bool, u32),
}

fn inet_socket(sock: *const u8, layout: &KernelLayout) -> Judged {
    let Some(sk) = read_at::<*const u8>(sock, layout.socket_sk) else {
        return Judged::Unreadable;
    };
    let (Some(family), Some(protocol)) = (
        read_at::<u16>(sk, layout.sk_family),
        read_at::<u16>(sk, layout.sk_protocol),
    ) else {
        return Judged::Unreadable;
    };
    let (family, protocol) = (family as u32, protocol as u32);
    if (family != AF_INET && family != AF_INET6)
        || (protocol != IPPROTO_TCP && protocol != IPPROTO_UDP)
    {
        return Judged::Other;
    }
    Judged::Inet(sk, family == AF_INET6, protocol)
}

/// An address as four network-order words (IPv4 in the last), probe-read from `base`:
/// the IPv4 address at `v4_at`, or the IPv6 one at `v6_at`.
fn address_words(base: *const u8, v4_at: u32, v6_at: u32, v6: bool) -> Option<[u32; 4]> {
    if !v6 {
        return read_at::<u32>(base, v4_at).map(|a| [0, 0, 0, a]);
    }
    Some([
        read_at::<u32>(base, v6_at)?,
        read_at::<u32>(base, v6_at + 4)?,
        read_at::<u32>(base, v6_at + 8)?,
        read_at::<u32>(base, v6_at + 12)?,
    ])
}

/// Denies `action` because the socket could not be read.
fn unreadable(policy_id: u32, action: Action) -> bool {
    let request = Request::new(action, 0);
    conclude(policy_id, &request, Reason::IdentityUnreadable, NO_RULE)
}

/// Judges `action` at a local endpoint read from kernel memory (`None`: unreadable).
#[inline(always)]
fn judge_local(
    policy_id: u32,
    action: Action,
    (v6, protocol): (bool, u32),
    port: Option<u16>,
    words: Option<[u32; 4]>,
) -> bool {
    let (Some(port), Some(words)) = (port, words) else {
        return unreadable(policy_id, action);
    };
    let address = Address {
        v6,
        words,
        port,
        protocol,
    };
    judge_address(policy_id, action, true, &address)
}

/// `bind(fd, addr, len)`: `address` is the kernel's copy of the caller's address.
#[inline(always)]
fn judge_bind(sock: *const u8, address: *const u8, len: i32) -> bool {
    let (policy_id, layout) = match governed(Action::Bind, 0) {
        Ok(found) => found,
        Err(verdict) => return verdict,
    };
    let (v6, protocol) = match inet_socket(sock, layout) {
        Judged::Other => return true,
        Judged::Unreadable => return unreadable(policy_id, Action::Bind),
        Judged::Inet(_, v6, protocol) => (v6, protocol),
    };
    // The kernel refuses a short address itself; nothing is bound.
    let shortest = if v6 {
        SOCKADDR_IN6_BYTES
    } else {
        SOCKADDR_IN_BYTES
    };
    if len < shortest {
        return true;
    }
    // The address is read as the socket's family: an IPv4 socket also takes AF_UNSPEC.
    // sockaddr_in: port at 2, address at 4; sockaddr_in6: port at 2, address at 8.
    let port = read_at::<u16>(address, 2).map(u16::from_be);
    let words = address_words(address, 4, 8, v6);
    if port == Some(0) && words.is_some() {
        // An ephemeral port: what a client binds; judged again if it listens.
        let mut request = Request::new(Action::Bind, 0);
        request.family = if v6 { AF_INET6 } else { AF_INET };
        request.protocol = protocol;
        return conclude(policy_id, &request, Reason::Allowed, NO_RULE);
    }
    judge_local(policy_id, Action::Bind, (v6, protocol), port, words)
}

/// `listen(fd, backlog)`: judged at the address and port the socket is bound to.
#[inline(always)]
fn judge_listen(sock: *const u8) -> bool {
    let (policy_id, layout) = match governed(Action::Listen, 0) {
        Ok(found) => found,
        Err(verdict) => return verdict,
    };
    let (sk, v6, protocol) = match inet_socket(sock, layout) {
        Judged::Other => return true,
        Judged::Unreadable => return unreadable(policy_id, Action::Listen),
        Judged::Inet(sk, v6, protocol) => (sk, v6, protocol),
    };
    let port = read_at::<u16>(sk, layout.sk_num);
    let words = address_words(sk, layout.sk_rcv_saddr, layout.sk_v6_rcv_saddr, v6);
    judge_local(policy_id, Action::Listen, (v6, protocol), port, words)
}

/// `socket_bind(sock, address, addrlen)`.
#[lsm(hook = "socket_bind")]
pub fn socket_bind(ctx: LsmContext) -> i32 {
    let previous: i32 = ctx.arg(3);
    if previous != 0 {
        return previous;
    }
    lsm_verdict(judge_bind(ctx.arg(0), ctx.arg(1), ctx.arg(2)))
}

/// `socket_listen(sock, backlog)`.
#[lsm(hook = "socket_listen")]
pub fn socket_listen(ctx: LsmContext) -> i32 {
    let previous: i32 = ctx.arg(2);
    if previous != 0 {
        return previous;
    }
    lsm_verdict(judge_listen(ctx.arg(0)))
}
