//! The decision the kernel will make, computed in userspace from the same compiled maps.
//!
//! Each function mirrors one kernel program step for step: the trie lookups are longest
//! prefix matches over the same key bytes, and the checks come in the same order, so the
//! reason and rule id agree with the kernel's event for the same request.

use std::net::{IpAddr, SocketAddr};

use rampart_common::{
    access, sockets, system, Action, Decision, FileId, Reason, PATH_BUF_BYTES, PATH_KEY_BYTES,
    WALK_MAX_COMPONENTS,
};
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
    /// Open of a canonical path with [`access`] bits (the identity of the file there, for
    /// writes: a file an exec rule pins is never written; the cgroup of a cgroupfs file,
    /// named as in `spec.governs`: its cgroup files are written only where the policy
    /// governs).
    Open {
        path: String,
        access: u32,
        identity: Option<FileId>,
        cgroup: Option<String>,
    },
    /// Receiving a descriptor of the file at a canonical path, opened elsewhere with
    /// [`access`] bits `access` (`SCM_RIGHTS`, `pidfd_getfd`): judged as an open, the path
    /// found by a dentry walk. (Sockets, bpf objects and anonymous files have no path;
    /// `explain` does not judge them.)
    Receive {
        path: String,
        access: u32,
        identity: Option<FileId>,
        cgroup: Option<String>,
    },
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
    /// Making an entry: `need` is [`access::CREATE`], [`access::MAKE_CHAR`] or
    /// [`access::MAKE_BLOCK`]; `hook` the kernel hook that judges it.
    Create {
        path: String,
        need: u32,
        hook: &'static str,
    },
    /// Removing an entry (`dir`: with rmdir).
    Remove { path: String, dir: bool },
    /// A new name `to` for the file at `from`.
    Link {
        from: String,
        to: String,
        identity: Option<FileId>,
        dir: bool,
    },
    /// Renaming `from` to `to` (`exchange`: swapping them).
    Rename {
        from: String,
        to: String,
        exchange: bool,
        moved: EntryKind,
        target: EntryKind,
    },
    /// Truncating the file at a path.
    Truncate {
        path: String,
        identity: Option<FileId>,
    },
    /// Changing a file's mode.
    Chmod {
        path: String,
        identity: Option<FileId>,
    },
    /// Changing a file's owner.
    Chown {
        path: String,
        identity: Option<FileId>,
    },
    /// Setting a file's timestamps.
    Utimes { path: String },
    /// Setting or removing an extended attribute (or a POSIX ACL) of a file.
    Xattr {
        path: String,
        identity: Option<FileId>,
    },
    /// A system action (a mount, `chroot`, a user namespace, a kernel load, a perf event,
    /// `CLONE_INTO_CGROUP`): one of [`SYSTEM_REQUESTS`].
    System(&'static SystemRequest),
    /// Using capability number `cap` ([`rampart_common::CAPABILITIES`]).
    Capability { cap: u32 },
    /// Connecting (`send`: sending a datagram) to an AF_UNIX socket made outside the
    /// policy's cgroups (a peer inside them is always allowed), bound at a canonical
    /// `path`, or abstract where `path` is `@NAME`.
    Unix { path: String, send: bool },
    /// `socket(family, type, protocol)`.
    Socket {
        family: u32,
        kind: u32,
        protocol: u32,
    },
    /// A `bpf()` command (`prog_type`: the `enum bpf_prog_type` a `BPF_PROG_LOAD` loads).
    Bpf { cmd: u32, prog_type: u32 },
    /// `bind` of a TCP or UDP socket to a local address and port (`listen`: `listen` on a
    /// TCP socket bound there; port 0 for one not bound).
    Serve {
        addr: SocketAddr,
        protocol: Protocol,
        listen: bool,
    },
}

/// A system action as `explain` names it, with what judges it.
#[derive(Debug, PartialEq, Eq)]
pub struct SystemRequest {
    /// The request's word in `explain` input, e.g. `pivot-root`.
    pub word: &'static str,
    pub action: Action,
    /// The [`system`] permit that allows it (0: none can).
    pub permit: u32,
    /// The kernel hook that decides.
    pub hook: &'static str,
}

const fn sys(word: &'static str, action: Action, permit: u32, hook: &'static str) -> SystemRequest {
    SystemRequest {
        word,
        action,
        permit,
        hook,
    }
}

/// Every system request `explain` knows.
pub const SYSTEM_REQUESTS: [SystemRequest; 12] = [
    sys("mount", Action::Mount, system::MOUNT, "sb_mount"),
    sys("move-mount", Action::Mount, system::MOUNT, "move_mount"),
    sys("umount", Action::Mount, system::MOUNT, "sb_umount"),
    sys("pivot-root", Action::Mount, system::MOUNT, "sb_pivotroot"),
    sys("chroot", Action::Chroot, system::CHROOT, "path_chroot"),
    sys(
        "user-namespace",
        Action::UserNamespace,
        system::USER_NAMESPACES,
        "userns_create",
    ),
    sys(
        "module-request",
        Action::KernelLoad,
        system::KERNEL_LOAD,
        "kernel_module_request",
    ),
    sys(
        "init-module",
        Action::KernelLoad,
        system::KERNEL_LOAD,
        "kernel_load_data",
    ),
    sys(
        "finit-module",
        Action::KernelLoad,
        system::KERNEL_LOAD,
        "kernel_read_file",
    ),
    sys(
        "perf-event-open",
        Action::PerfEvent,
        system::PERF_EVENTS,
        "perf_event_open",
    ),
    sys(
        "kernel-access",
        Action::Lockdown,
        system::KERNEL_ACCESS,
        "locked_down",
    ),
    sys(
        "clone-into-cgroup",
        Action::CloneIntoCgroup,
        0,
        "task_alloc",
    ),
];

/// The system request named `word`.
pub fn system_request(word: &str) -> Option<&'static SystemRequest> {
    SYSTEM_REQUESTS.iter().find(|r| r.word == word)
}

/// What is at one end of a rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// Nothing.
    Absent,
    /// A directory.
    Dir,
    /// Anything else.
    File,
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
    /// The path the kernel's event for this decision carries (for a link or rename, the
    /// side that decided); none for network requests.
    pub path: Option<String>,
}

/// The name of an [`Action`] in output.
pub fn action_name(action: Action) -> &'static str {
    match action {
        Action::Exec => "exec",
        Action::Open => "open",
        Action::MapExec => "map-exec",
        Action::Connect => "connect",
        Action::Send => "send",
        Action::Create => "create",
        Action::Remove => "remove",
        Action::Link => "link",
        Action::Rename => "rename",
        Action::Truncate => "truncate",
        Action::Chmod => "chmod",
        Action::Chown => "chown",
        Action::Utimes => "utimes",
        Action::Xattr => "xattr",
        Action::UringCreds => "uring-creds",
        Action::Signal => "signal",
        Action::Ptrace => "ptrace",
        Action::Bpf => "bpf",
        Action::Mount => "mount",
        Action::Chroot => "chroot",
        Action::UserNamespace => "user-namespace",
        Action::KernelLoad => "kernel-load",
        Action::PerfEvent => "perf-event",
        Action::CloneIntoCgroup => "clone-into-cgroup",
        Action::Socket => "socket",
        Action::Capability => "capability",
        Action::UnixConnect => "unix-connect",
        Action::UnixSend => "unix-send",
        Action::Lockdown => "lockdown",
        Action::Bind => "bind",
        Action::Listen => "listen",
        Action::Receive => "receive",
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
    /// The path the kernel's event carries (one side of a link or rename).
    path: Option<String>,
}

/// Which side of a link or rename decided.
#[derive(Clone, Copy, PartialEq, Eq)]
enum At {
    Source,
    Target,
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

/// The path step of the hooks that resolve paths by walking dentries (`path_*`): a path of
/// more than [`WALK_MAX_COMPONENTS`] components is denied before any lookup. (The walk's
/// step limit also counts mount crossings, which a host path cannot show.)
fn judge_walked(policy: &CompiledPolicy, path: &str, need: u32) -> (Reason, Option<u32>) {
    let components = path.split('/').filter(|c| !c.is_empty()).count();
    if components > WALK_MAX_COMPONENTS as usize {
        return (Reason::PathTooLong, None);
    }
    judge_path(policy, path, need, None)
}

/// The rule id of the exec rule pinning `identity`, if any.
fn pinned(policy: &CompiledPolicy, identity: Option<FileId>) -> Option<u32> {
    let identity = identity?;
    policy
        .paths
        .iter()
        .filter(|e| e.access & access::RUN != 0)
        .find(|e| e.identity.map(|Identity { dev, ino }| FileId { dev, ino }) == Some(identity))
        .map(|e| e.rule_id)
}

/// The parent directory of a canonical path.
fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// `refer` when a link or rename crosses directories (within one, it is not needed).
fn refer_needed(from: &str, to: &str) -> u32 {
    if parent(from) == parent(to) {
        0
    } else {
        access::REFER
    }
}

/// One side of a link or rename, as the kernel judges it: the entry found and the verdict
/// for `need` (a side that needs nothing is allowed where no rule names it).
fn side<'a>(
    policy: &'a CompiledPolicy,
    path: &str,
    need: u32,
) -> (Option<&'a PathEntry>, (Reason, Option<u32>)) {
    let entry = lookup_path(policy, path);
    let verdict = judge_walked(policy, path, need);
    if need == 0 && entry.is_none() && verdict.0 != Reason::PathTooLong {
        return (None, (Reason::Allowed, None));
    }
    (entry, verdict)
}

/// Refer semantics: would an object of `kind` moving from `from` to `to` gain rights?
fn gains(kind: EntryKind, from: Option<&PathEntry>, to: Option<&PathEntry>) -> bool {
    let Some(to) = to else {
        return false;
    };
    let have = from.map_or(0, |e| e.access);
    let carried = match kind {
        EntryKind::Dir => {
            if to.flags & rampart_common::path_flags::HAS_DEEPER != 0 {
                return true;
            }
            !access::RUN
        }
        EntryKind::File | EntryKind::Absent => access::FILE,
    };
    to.access & carried & !have != 0
}

fn judge_link(
    policy: &CompiledPolicy,
    from: &str,
    to: &str,
    identity: Option<FileId>,
    dir: bool,
) -> ((Reason, Option<u32>), At) {
    if let Some(rule) = pinned(policy, identity) {
        return ((Reason::ExecPinned, Some(rule)), At::Target);
    }
    let refer = refer_needed(from, to);
    let (source, verdict) = side(policy, from, refer);
    if verdict.0.denies() {
        return (verdict, At::Source);
    }
    let (target, verdict) = side(policy, to, access::CREATE | refer);
    if verdict.0.denies() {
        return (verdict, At::Target);
    }
    let kind = if dir { EntryKind::Dir } else { EntryKind::File };
    if gains(kind, source, target) {
        return ((Reason::ReferGainsAccess, verdict.1), At::Target);
    }
    (verdict, At::Target)
}

fn judge_rename(
    policy: &CompiledPolicy,
    from: &str,
    to: &str,
    exchange: bool,
    moved: EntryKind,
    target_kind: EntryKind,
) -> ((Reason, Option<u32>), At) {
    let refer = refer_needed(from, to);
    let mut source_need = access::REMOVE | refer;
    if exchange {
        source_need |= access::CREATE;
    }
    let mut target_need = access::CREATE | refer;
    if target_kind != EntryKind::Absent {
        target_need |= access::REMOVE;
    }
    let (source, verdict) = side(policy, from, source_need);
    if verdict.0.denies() {
        return (verdict, At::Source);
    }
    let (target, verdict) = side(policy, to, target_need);
    if verdict.0.denies() {
        return (verdict, At::Target);
    }
    if gains(moved, source, target) || (exchange && gains(target_kind, target, source)) {
        return ((Reason::ReferGainsAccess, verdict.1), At::Target);
    }
    (verdict, At::Target)
}

/// What a write to an open file needs besides its path rule (as the kernel's
/// `judge_write`): no exec rule pins the file, and a cgroupfs file is in a cgroup the
/// policy governs.
fn judge_write(
    policy: &CompiledPolicy,
    verdict: (Reason, Option<u32>),
    need: u32,
    identity: Option<FileId>,
    cgroup: Option<&str>,
) -> (Reason, Option<u32>) {
    if need & access::WRITE == 0 {
        return verdict;
    }
    unless_outside_governance(policy, unless_pinned(policy, verdict, identity), cgroup)
}

/// Truncation and writes: a file an exec rule pins is refused after the path allows.
fn unless_pinned(
    policy: &CompiledPolicy,
    verdict: (Reason, Option<u32>),
    identity: Option<FileId>,
) -> (Reason, Option<u32>) {
    match pinned(policy, identity) {
        Some(rule) if !verdict.0.denies() => (Reason::ExecPinned, Some(rule)),
        _ => verdict,
    }
}

/// A write the path rules allow to a file of cgroup `cgroup` (cgroupfs) is denied unless
/// this policy governs that cgroup (it, or an ancestor, is in `spec.governs`). The kernel
/// asks which slot governs the cgroup, so a cgroup nested below this policy's but governed
/// by another policy is denied there and allowed here: explain sees one policy.
fn unless_outside_governance(
    policy: &CompiledPolicy,
    verdict: (Reason, Option<u32>),
    cgroup: Option<&str>,
) -> (Reason, Option<u32>) {
    match cgroup {
        Some(cg) if !verdict.0.denies() && !governs(policy, cg) => {
            (Reason::CgroupNotGoverned, None)
        }
        _ => verdict,
    }
}

/// Whether `cgroup` (`/a/b`) is one of the policy's governed cgroups, a match of one of its
/// patterns, or below one.
fn governs(policy: &CompiledPolicy, cgroup: &str) -> bool {
    policy
        .governs
        .iter()
        .any(|g| crate::kernel::cgroup_pattern::covers(g, cgroup))
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
    judge_endpoint(&policy.net4, &policy.net6, addr, protocol)
}

/// `socket_bind`'s and `socket_listen`'s judgement over `spec.listen`: a bind to port 0
/// (an ephemeral port) is allowed without a rule; a listen there needs one.
fn judge_serve(
    policy: &CompiledPolicy,
    addr: &SocketAddr,
    protocol: Protocol,
    listen: bool,
) -> (Reason, Option<u32>) {
    if !listen && addr.port() == 0 {
        return (Reason::Allowed, None);
    }
    judge_endpoint(&policy.listen4, &policy.listen6, addr, protocol)
}

/// Longest-prefix match of `addr` (an IPv4-mapped IPv6 address as IPv4) over one family's
/// entries, then its port and protocol.
fn judge_endpoint(
    net4: &[NetEntry],
    net6: &[NetEntry],
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
        IpAddr::V4(_) => net4,
        IpAddr::V6(_) => net6,
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

/// `socket_create`'s judgement: the defaults, then the policy's socket bits.
fn judge_socket(policy: &CompiledPolicy, family: u32, kind: u32, protocol: u32) -> Reason {
    let bits = &policy.sockets;
    let family_listed = family < 64 && bits.families & (1 << family) != 0;
    let listed = match family {
        sockets::AF_INET | sockets::AF_INET6 => {
            bits.inet & sockets::inet_class(family, kind, protocol) != 0
        }
        sockets::AF_NETLINK => {
            family_listed
                || (protocol < sockets::NETLINK_PROTOCOLS
                    && bits.netlink_protocols & (1 << protocol) != 0)
        }
        _ => family_listed,
    };
    if sockets::default_allowed(family, kind, protocol) || listed {
        Reason::Allowed
    } else {
        Reason::NoRule
    }
}

/// A capability's name (`cap-N` for a number past the known ones).
pub fn capability_name(cap: u32) -> String {
    rampart_common::CAPABILITIES
        .get(cap as usize)
        .map_or_else(|| format!("cap-{cap}"), |n| (*n).to_owned())
}

/// A socket as events and `explain` name it: `family/type/protocol`, e.g. `inet/raw/1`.
pub fn socket_name(family: u32, kind: u32, protocol: u32) -> String {
    let named = |table: &[(u32, &str)], v: u32, what: &str| {
        table
            .iter()
            .find(|(k, _)| *k == v)
            .map_or_else(|| format!("{what}-{v}"), |(_, n)| (*n).to_owned())
    };
    format!(
        "{}/{}/{protocol}",
        named(&sockets::FAMILIES, family, "family"),
        named(&sockets::TYPES, kind, "type")
    )
}

fn judge(policy: &CompiledPolicy, request: &Request) -> Judgement {
    let path = request_path(request);
    let file = |action, hook, (reason, rule_id)| Judgement {
        action,
        hook,
        reason,
        rule_id,
        path: path.clone(),
    };
    let two_sided = |action, hook, ((reason, rule_id), at), from: &str, to: &str| Judgement {
        action,
        hook,
        reason,
        rule_id,
        path: Some(if at == At::Source { from } else { to }.to_owned()),
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
        Request::Open {
            path,
            access,
            identity,
            cgroup,
        } => {
            let action = if access & rampart_common::access::EXEC != 0 {
                Action::Exec
            } else {
                Action::Open
            };
            let verdict = judge_path(policy, path, *access, None);
            let verdict = judge_write(policy, verdict, *access, *identity, cgroup.as_deref());
            file(action, "file_open", verdict)
        }
        Request::Receive {
            path,
            access,
            identity,
            cgroup,
        } => {
            let verdict = judge_walked(policy, path, *access);
            let verdict = judge_write(policy, verdict, *access, *identity, cgroup.as_deref());
            file(Action::Receive, "file_receive", verdict)
        }
        Request::Create { path, need, hook } => {
            file(Action::Create, hook, judge_walked(policy, path, *need))
        }
        Request::Remove { path, dir } => file(
            Action::Remove,
            if *dir { "path_rmdir" } else { "path_unlink" },
            judge_walked(policy, path, access::REMOVE),
        ),
        Request::Link {
            from,
            to,
            identity,
            dir,
        } => two_sided(
            Action::Link,
            "path_link",
            judge_link(policy, from, to, *identity, *dir),
            from,
            to,
        ),
        Request::Rename {
            from,
            to,
            exchange,
            moved,
            target,
        } => two_sided(
            Action::Rename,
            "path_rename",
            judge_rename(policy, from, to, *exchange, *moved, *target),
            from,
            to,
        ),
        Request::Truncate { path, identity } => file(
            Action::Truncate,
            "path_truncate",
            unless_pinned(
                policy,
                judge_walked(policy, path, access::TRUNCATE),
                *identity,
            ),
        ),
        Request::Chmod { path, identity } => file(
            Action::Chmod,
            "path_chmod",
            unless_pinned(policy, judge_walked(policy, path, access::CHMOD), *identity),
        ),
        Request::Chown { path, identity } => file(
            Action::Chown,
            "path_chown",
            unless_pinned(policy, judge_walked(policy, path, access::CHOWN), *identity),
        ),
        Request::Utimes { path } => file(
            Action::Utimes,
            "inode_setattr",
            judge_walked(policy, path, access::UTIMES),
        ),
        Request::Xattr { path, identity } => file(
            Action::Xattr,
            "inode_setxattr",
            unless_pinned(policy, judge_walked(policy, path, access::XATTR), *identity),
        ),
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
        Request::System(r) => Judgement {
            action: r.action,
            hook: r.hook,
            reason: if r.permit != 0 && policy.permits & r.permit != 0 {
                Reason::Allowed
            } else {
                Reason::NotPermitted
            },
            rule_id: None,
            path: None,
        },
        Request::Socket {
            family,
            kind,
            protocol,
        } => Judgement {
            action: Action::Socket,
            hook: "socket_create",
            reason: judge_socket(policy, *family, *kind, *protocol),
            rule_id: None,
            path: None,
        },
        Request::Capability { cap } => Judgement {
            action: Action::Capability,
            hook: "capable",
            reason: if *cap < 64 && policy.capabilities & (1 << cap) != 0 {
                Reason::Allowed
            } else {
                Reason::NotPermitted
            },
            rule_id: None,
            path: None,
        },
        Request::Unix { path, send } => {
            let (action, hook) = if *send {
                (Action::UnixSend, "unix_may_send")
            } else {
                (Action::UnixConnect, "unix_stream_connect")
            };
            // An abstract name is no path a rule could name.
            let verdict = if path.starts_with('@') {
                (Reason::NoRule, None)
            } else {
                judge_walked(policy, path, access::CONNECT)
            };
            file(action, hook, verdict)
        }
        Request::Bpf { cmd, prog_type } => Judgement {
            action: Action::Bpf,
            hook: "bpf",
            reason: if policy.permits & system::BPF != 0 && system::bpf_permitted(*cmd, *prog_type)
            {
                Reason::Allowed
            } else {
                Reason::NotPermitted
            },
            rule_id: None,
            path: None,
        },
        Request::Serve {
            addr,
            protocol,
            listen,
        } => file(
            if *listen {
                Action::Listen
            } else {
                Action::Bind
            },
            if *listen {
                "socket_listen"
            } else {
                "socket_bind"
            },
            judge_serve(policy, addr, *protocol, *listen),
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

/// The one path a request acts on (none for network requests and the two-sided ones).
fn request_path(request: &Request) -> Option<String> {
    match request {
        Request::Exec { path, .. }
        | Request::MapExec { path }
        | Request::Remove { path, .. }
        | Request::Truncate { path, .. }
        | Request::Chmod { path, .. }
        | Request::Chown { path, .. }
        | Request::Utimes { path }
        | Request::Xattr { path, .. }
        | Request::Open { path, .. }
        | Request::Receive { path, .. }
        | Request::Unix { path, .. }
        | Request::Create { path, .. } => Some(path.clone()),
        Request::Link { .. }
        | Request::Rename { .. }
        | Request::Connect { .. }
        | Request::Send { .. }
        | Request::Serve { .. }
        | Request::Bpf { .. }
        | Request::System(_)
        | Request::Socket { .. }
        | Request::Capability { .. } => None,
    }
}

fn target(request: &Request) -> String {
    match request {
        Request::Open { path, access, .. } | Request::Receive { path, access, .. } => {
            format!("{path} ({})", super::compile::access_names(*access))
        }
        Request::Create { path, need, .. } => {
            format!("{path} ({})", super::compile::access_names(*need))
        }
        Request::Link { from, to, .. } => format!("{from} -> {to}"),
        Request::Rename {
            from, to, exchange, ..
        } => {
            let arrow = if *exchange { "<->" } else { "->" };
            format!("{from} {arrow} {to}")
        }
        Request::Connect { addr, protocol }
        | Request::Send { addr, protocol }
        | Request::Serve { addr, protocol, .. } => {
            format!("{addr}/{}", format!("{protocol:?}").to_lowercase())
        }
        Request::System(r) => r.word.to_owned(),
        Request::Bpf { cmd, prog_type } => {
            let name = system::BPF_COMMAND_NAMES
                .get(*cmd as usize)
                .map_or_else(|| format!("cmd-{cmd}"), |n| (*n).to_owned());
            if *cmd == system::BPF_PROG_LOAD {
                format!("{name} type {prog_type}")
            } else {
                name
            }
        }
        Request::Capability { cap } => capability_name(*cap),
        Request::Socket {
            family,
            kind,
            protocol,
        } => socket_name(*family, *kind, *protocol),
        // Exec, map-exec, remove, truncate, chmod, chown, utimes, xattr: the path alone.
        _ => request_path(request).unwrap_or_default(),
    }
}

/// Explains the kernel's decision on `request` under `policy`.
pub fn explain(policy: &CompiledPolicy, request: &Request) -> Explanation {
    let Judgement {
        action,
        hook,
        reason,
        rule_id,
        path,
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
        rule: match request {
            // What allows a system action is the permit, not a numbered rule.
            Request::System(r) if !reason.denies() => system::PERMITS
                .iter()
                .find(|(bit, _)| *bit == r.permit)
                .map(|(_, name)| format!("spec.permits: {name}")),
            Request::Capability { cap } if !reason.denies() => {
                Some(format!("spec.capabilities: {}", capability_name(*cap)))
            }
            _ => rule_id
                .and_then(|id| policy.rule(id))
                .map(|r| r.field.clone()),
        },
        hook,
        path,
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
