//! The decision the kernel will make, computed in userspace from the same compiled maps.
//!
//! Each function mirrors one kernel program step for step: the trie lookups are longest
//! prefix matches over the same key bytes, and the checks come in the same order, so the
//! reason and rule id agree with the kernel's event for the same request.

use std::net::{IpAddr, SocketAddr};

use rampart_common::{access, Action, Decision, FileId, Reason, PATH_BUF_BYTES, PATH_KEY_BYTES};
use serde::Serialize;

use super::{
    compile::{CompiledPolicy, Identity, NetEntry, PathEntry},
    source::{Mode, Protocol},
};

/// A request to judge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `execve` of the file at a canonical path, with its identity (None: unreadable).
    Exec {
        path: String,
        identity: Option<FileId>,
    },
    /// Open of a canonical path with [`access`] bits.
    Open { path: String, access: u32 },
    /// Mapping the file at a canonical path executable.
    MapExec { path: String },
    /// `connect` to an address.
    Connect {
        addr: SocketAddr,
        protocol: Protocol,
    },
    /// `sendto`/`sendmsg` with an address.
    Send {
        addr: SocketAddr,
        protocol: Protocol,
    },
}

/// The kernel's judgement of a request under a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub policy: String,
    pub action: &'static str,
    pub target: String,
    pub decision: &'static str,
    pub reason: &'static str,
    pub rule_id: Option<u32>,
    /// The rule's place in the source, e.g. `spec.files[2]`.
    pub rule: Option<String>,
    /// Which hook decided (an exec is judged when the file is opened, then when it runs).
    pub hook: &'static str,
}

/// The name of an [`Action`] in output.
pub fn action_name(action: Action) -> &'static str {
    match action {
        Action::Exec => "exec",
        Action::Open => "open",
        Action::MapExec => "map-exec",
        Action::Connect => "connect",
        Action::Send => "send",
    }
}

/// The name of a [`Decision`] in output.
pub fn decision_name(decision: Decision) -> &'static str {
    match decision {
        Decision::Allow => "allow",
        Decision::Deny => "deny",
        Decision::Audit => "audit",
    }
}

struct Judgement {
    action: Action,
    hook: &'static str,
    reason: Reason,
    rule_id: Option<u32>,
}

/// Longest-prefix match over the path trie, on the key bytes the kernel builds: the path
/// with its NUL, cut at [`PATH_KEY_BYTES`].
fn lookup_path<'a>(policy: &'a CompiledPolicy, path: &str) -> Option<&'a PathEntry> {
    let mut key = path.as_bytes().to_vec();
    key.push(0);
    key.truncate(PATH_KEY_BYTES);
    policy
        .paths
        .iter()
        .filter(|e| key.starts_with(&e.key_bytes()))
        .max_by_key(|e| e.key_bytes().len())
}

/// The path step shared by every file hook.
fn judge_path(
    policy: &CompiledPolicy,
    path: &str,
    need: u32,
    identity: Option<FileId>,
) -> (Reason, Option<u32>) {
    // bpf_d_path fails with ENAMETOOLONG when the path and its NUL exceed the buffer.
    if path.len() + 1 > PATH_BUF_BYTES {
        return (Reason::PathTooLong, None);
    }
    let Some(entry) = lookup_path(policy, path) else {
        return (Reason::NoRule, None);
    };
    if entry.access & need != need {
        return (Reason::AccessNotGranted, Some(entry.rule_id));
    }
    if need & access::RUN != 0 {
        let pinned = entry
            .identity
            .map(|Identity { dev, ino }| FileId { dev, ino });
        if pinned.is_none() || pinned != identity {
            return (Reason::IdentityMismatch, Some(entry.rule_id));
        }
    }
    (Reason::Allowed, Some(entry.rule_id))
}

fn lookup_net(entries: &[NetEntry], addr: IpAddr) -> Option<&NetEntry> {
    entries
        .iter()
        .filter(|e| e.cidr.contains(&addr))
        .max_by_key(|e| e.cidr.prefix_len())
}

fn judge_net(
    policy: &CompiledPolicy,
    addr: &SocketAddr,
    protocol: Protocol,
) -> (Reason, Option<u32>) {
    let ip = match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    };
    let entries = match ip {
        IpAddr::V4(_) => &policy.net4,
        IpAddr::V6(_) => &policy.net6,
    };
    let Some(entry) = lookup_net(entries, ip) else {
        return (Reason::NoRule, None);
    };
    let port = addr.port();
    match entry
        .ports
        .iter()
        .find(|p| p.protocol == protocol && p.first <= port && port <= p.last)
    {
        Some(p) => (Reason::Allowed, Some(p.rule_id)),
        None => (Reason::AccessNotGranted, Some(entry.rule_id)),
    }
}

fn judge(policy: &CompiledPolicy, request: &Request) -> Judgement {
    let file = |action, hook, (reason, rule_id)| Judgement {
        action,
        hook,
        reason,
        rule_id,
    };
    match request {
        Request::Exec { path, identity } => {
            // The kernel opens the program for execution first, then checks it runs.
            let opened = judge_path(policy, path, access::READ | access::EXEC, *identity);
            if opened.0.denies() {
                return file(Action::Exec, "file_open", opened);
            }
            file(
                Action::Exec,
                "bprm_check_security",
                judge_path(policy, path, access::RUN, *identity),
            )
        }
        Request::Open { path, access } => {
            let action = if access & rampart_common::access::EXEC != 0 {
                Action::Exec
            } else {
                Action::Open
            };
            file(action, "file_open", judge_path(policy, path, *access, None))
        }
        Request::MapExec { path } => file(
            Action::MapExec,
            "mmap_file",
            judge_path(policy, path, access::EXEC, None),
        ),
        Request::Connect { addr, protocol } => file(
            Action::Connect,
            if addr.is_ipv4() {
                "connect4"
            } else {
                "connect6"
            },
            judge_net(policy, addr, *protocol),
        ),
        Request::Send { addr, protocol } => file(
            Action::Send,
            if addr.is_ipv4() {
                "sendmsg4"
            } else {
                "sendmsg6"
            },
            judge_net(policy, addr, *protocol),
        ),
    }
}

fn target(request: &Request) -> String {
    match request {
        Request::Exec { path, .. } | Request::MapExec { path } => path.clone(),
        Request::Open { path, access } => {
            format!("{path} ({})", super::compile::access_names(*access))
        }
        Request::Connect { addr, protocol } | Request::Send { addr, protocol } => {
            format!("{addr}/{}", format!("{protocol:?}").to_lowercase())
        }
    }
}

/// Explains the kernel's decision on `request` under `policy`.
pub fn explain(policy: &CompiledPolicy, request: &Request) -> Explanation {
    let Judgement {
        action,
        hook,
        reason,
        rule_id,
    } = judge(policy, request);
    let decision = if !reason.denies() {
        Decision::Allow
    } else if policy.mode == Mode::Audit {
        Decision::Audit
    } else {
        Decision::Deny
    };
    Explanation {
        policy: policy.name.clone(),
        action: action_name(action),
        target: target(request),
        decision: decision_name(decision),
        reason: reason.name(),
        rule_id,
        rule: rule_id
            .and_then(|id| policy.rule(id))
            .map(|r| r.field.clone()),
        hook,
    }
}

/// Parses `ADDR:PORT/PROTO`, e.g. `10.0.0.1:443/tcp` or `[::1]:53/udp`.
pub fn parse_endpoint(s: &str) -> Result<(SocketAddr, Protocol), String> {
    let (addr, proto) = s
        .rsplit_once('/')
        .ok_or_else(|| format!("`{s}`: expected ADDR:PORT/tcp or ADDR:PORT/udp"))?;
    let protocol = match proto {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        other => return Err(format!("`{s}`: unknown protocol `{other}` (tcp or udp)")),
    };
    let addr: SocketAddr = addr
        .parse()
        .map_err(|_| format!("`{s}`: `{addr}` is not ADDR:PORT (IPv6 as [ADDR]:PORT)"))?;
    Ok((addr, protocol))
}
