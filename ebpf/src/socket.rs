//! Which sockets a governed task may create: unix sockets, and TCP and UDP over IPv4 and
//! IPv6, by default; raw and ping sockets, other IPv4/IPv6 protocols, netlink (by
//! protocol), packet and every other family only where `spec.sockets` lists them. A raw or
//! packet socket would send past the cgroup connect and sendmsg programs; netlink reaches
//! the kernel's configuration interfaces.

use aya_ebpf::{macros::lsm, programs::LsmContext};
use rampart_common::{sockets, Action, Reason, NO_RULE};

use crate::{
    decision::{conclude, governed, lsm_verdict, Request},
    governance::policy,
};

/// Whether the slot's policy lists this socket.
#[inline(always)]
fn listed(policy_id: u32, family: u32, kind: u32, protocol: u32) -> bool {
    let Some(p) = policy(policy_id) else {
        return false;
    };
    let family_listed = family < 64 && p.socket_families & (1u64 << family) != 0;
    match family {
        sockets::AF_INET | sockets::AF_INET6 => {
            p.inet_sockets & sockets::inet_class(family, kind, protocol) != 0
        }
        sockets::AF_NETLINK => {
            family_listed
                || (protocol < sockets::NETLINK_PROTOCOLS
                    && p.netlink_protocols & (1u32 << protocol) != 0)
        }
        _ => family_listed,
    }
}

/// `socket_create(family, type, protocol, kern)`: sockets the kernel makes for itself
/// (`kern`) are not judged.
#[lsm(hook = "socket_create")]
pub fn socket_create(ctx: LsmContext) -> i32 {
    let previous: i32 = ctx.arg(4);
    if previous != 0 {
        return previous;
    }
    let kern: i32 = ctx.arg(3);
    if kern != 0 {
        return 0;
    }
    let family: i32 = ctx.arg(0);
    let kind: i32 = ctx.arg(1);
    let protocol: i32 = ctx.arg(2);
    let (family, kind, protocol) = (family as u32, kind as u32, protocol as u32);
    let policy_id = match governed(Action::Socket, kind) {
        Ok((policy_id, _)) => policy_id,
        Err(verdict) => return lsm_verdict(verdict),
    };
    let mut request = Request::new(Action::Socket, kind);
    request.family = family;
    request.protocol = protocol;
    let reason = if sockets::default_allowed(family, kind, protocol)
        || listed(policy_id, family, kind, protocol)
    {
        Reason::Allowed
    } else {
        Reason::NoRule
    };
    lsm_verdict(conclude(policy_id, &request, reason, NO_RULE))
}
