//! Network (`cgroup/connect4|6`, `cgroup/sendmsg4|6`): the destination by CIDR, port and
//! protocol; an IPv4-mapped IPv6 address is judged as IPv4. The same judgement over the
//! local-address rules serves `bind` and `listen` (`listen`).

use aya_ebpf::{macros::cgroup_sock_addr, maps::lpm_trie::Key, programs::SockAddrContext};
use rampart_common::{
    net_key_policy, Action, Net4Key, Net6Key, NetRule, Reason, NO_RULE, PORT_RANGES_PER_NET_RULE,
};

use crate::{
    decision::{conclude, sock_verdict, Request},
    governance::governing_policy,
    maps::{NET4_RULES, NET6_RULES},
};

pub const AF_INET: u32 = 2;
pub const AF_INET6: u32 = 10;

#[cgroup_sock_addr(connect4)]
pub fn connect4(ctx: SockAddrContext) -> i32 {
    sock_verdict(judge_inet(&ctx, Action::Connect, false))
}

#[cgroup_sock_addr(sendmsg4)]
pub fn sendmsg4(ctx: SockAddrContext) -> i32 {
    sock_verdict(judge_inet(&ctx, Action::Send, false))
}

#[cgroup_sock_addr(connect6)]
pub fn connect6(ctx: SockAddrContext) -> i32 {
    sock_verdict(judge_inet(&ctx, Action::Connect, true))
}

#[cgroup_sock_addr(sendmsg6)]
pub fn sendmsg6(ctx: SockAddrContext) -> i32 {
    sock_verdict(judge_inet(&ctx, Action::Send, true))
}

/// Judges a connect or addressed send; an IPv4-mapped IPv6 address is judged as IPv4.
/// Inlined so that each program gets its own copy with `v6` fixed.
#[inline(always)]
fn judge_inet(ctx: &SockAddrContext, action: Action, v6: bool) -> bool {
    let Some(policy_id) = governing_policy() else {
        return true;
    };
    let sa = ctx.sock_addr;
    // Each context field is read with its own fixed-offset load: the verifier refuses
    // loads through a context pointer that was moved.
    // SAFETY: `sa` is the program's context; the verifier checks each field access.
    let (port, protocol, words) = unsafe {
        use core::ptr::{addr_of, read_volatile};
        let words = if v6 {
            [
                read_volatile(addr_of!((*sa).user_ip6[0])),
                read_volatile(addr_of!((*sa).user_ip6[1])),
                read_volatile(addr_of!((*sa).user_ip6[2])),
                read_volatile(addr_of!((*sa).user_ip6[3])),
            ]
        } else {
            [0, 0, 0, read_volatile(addr_of!((*sa).user_ip4))]
        };
        (
            u16::from_be(read_volatile(addr_of!((*sa).user_port)) as u16),
            read_volatile(addr_of!((*sa).protocol)),
            words,
        )
    };
    let address = Address {
        v6,
        words,
        port,
        protocol,
    };
    judge_address(policy_id, action, false, &address)
}

/// An IPv4 or IPv6 endpoint: four network-order words (IPv4 in the last), the port in
/// host order and the IP protocol.
#[derive(Clone, Copy)]
pub struct Address {
    pub v6: bool,
    pub words: [u32; 4],
    pub port: u16,
    pub protocol: u32,
}

/// Judges `address` against the slot's destination rules (`spec.network`) or, with
/// `listen`, its local-address rules (`spec.listen`); an IPv4-mapped IPv6 address is
/// judged as IPv4.
#[inline(always)]
pub fn judge_address(policy_id: u32, action: Action, listen: bool, address: &Address) -> bool {
    let Address {
        v6,
        words,
        port,
        protocol,
    } = *address;
    let mapped_v4 = v6 && words[0] == 0 && words[1] == 0 && words[2] == 0xffffu32.to_be();
    let mut request = Request::new(action, 0);
    request.port = port as u32;
    request.protocol = protocol;
    let policy = net_key_policy(policy_id as u16, listen);
    let rule = if !v6 || mapped_v4 {
        request.family = AF_INET;
        let addr = words[3].to_ne_bytes();
        request.addr[..4].copy_from_slice(&addr);
        let key = Key::new(
            48,
            Net4Key {
                policy,
                addr,
                _pad: [0; 2],
            },
        );
        NET4_RULES.get(&key)
    } else {
        request.family = AF_INET6;
        let mut addr = [0u8; 16];
        let mut i = 0;
        while i < 4 {
            addr[i * 4..i * 4 + 4].copy_from_slice(&words[i].to_ne_bytes());
            i += 1;
        }
        request.addr = addr;
        let key = Key::new(
            144,
            Net6Key {
                policy,
                addr,
                _pad: [0; 2],
            },
        );
        NET6_RULES.get(&key)
    };
    let (reason, rule_id) = match rule {
        None => (Reason::NoRule, NO_RULE),
        Some(rule) => match port_rule(rule, port, protocol) {
            Some(id) => (Reason::Allowed, id),
            None => (Reason::AccessNotGranted, rule.rule_id),
        },
    };
    conclude(policy_id, &request, reason, rule_id)
}

/// The rule among `rule`'s port ranges that allows `port` over `protocol`.
fn port_rule(rule: &NetRule, port: u16, protocol: u32) -> Option<u32> {
    let mut i = 0;
    while i < PORT_RANGES_PER_NET_RULE {
        if i as u32 >= rule.count {
            break;
        }
        let r = &rule.ranges[i];
        if r.protocol == protocol && r.first <= port && port <= r.last {
            return Some(r.rule_id);
        }
        i += 1;
    }
    None
}
