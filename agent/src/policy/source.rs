//! Policy sources: YAML documents shaped like Kubernetes resources, parsed strictly.
//!
//! Every value is checked while it is read, so a bad value is reported with the file, the
//! line and the field (`spec.files[2].path`): unknown fields, relative or non-canonical
//! paths, bad CIDRs and port ranges, and a rule listed twice in the same list.

use std::{collections::HashSet, fmt, hash::Hash, marker::PhantomData, path::Path};

use ipnet::IpNet;
use serde::{
    de::{self, SeqAccess, Visitor},
    Deserialize, Deserializer, Serialize,
};
use thiserror::Error;

use rampart_common::MAX_RULE_PATH_BYTES;

/// The only `apiVersion` this agent reads.
pub const API_VERSION: &str = "rampart.dev/v1alpha1";
/// The only `kind` this agent reads.
pub const KIND: &str = "Policy";

/// A policy file that could not be read or parsed.
#[derive(Debug, Error)]
pub enum SourceError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}:{line}:{column}: {message}")]
    Parse {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
}

/// One policy document.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicyDocument {
    pub api_version: ApiVersion,
    pub kind: Kind,
    pub metadata: Metadata,
    pub spec: Spec,
}

/// `apiVersion`, which must be [`API_VERSION`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiVersion;

impl<'de> Deserialize<'de> for ApiVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == API_VERSION {
            Ok(ApiVersion)
        } else {
            Err(de::Error::custom(format!(
                "unsupported apiVersion `{s}`; this agent reads `{API_VERSION}`"
            )))
        }
    }
}

/// `kind`, which must be [`KIND`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kind;

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == KIND {
            Ok(Kind)
        } else {
            Err(de::Error::custom(format!(
                "unsupported kind `{s}`; expected `{KIND}`"
            )))
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// A DNS-label-like name: lowercase letters, digits and `-`, at most 63 characters.
    pub name: PolicyName,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct PolicyName(pub String);

impl<'de> Deserialize<'de> for PolicyName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let ok = !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-');
        if ok {
            Ok(PolicyName(s))
        } else {
            Err(de::Error::custom(format!(
                "invalid name `{s}`: use 1-63 lowercase letters, digits and `-`"
            )))
        }
    }
}

/// What the policy governs and allows.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Cgroup v2 paths relative to the cgroup2 root, written with a leading `/`
    /// (as in `/proc/PID/cgroup`). Each is governed with all of its descendants.
    pub governs: UniqueList<CgroupPath>,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub events: EventsSetting,
    /// Deny any action whose event could not be recorded.
    #[serde(default)]
    pub strict: bool,
    #[serde(default)]
    pub exec: ExecSpec,
    #[serde(default)]
    pub files: UniqueList<FileRuleSource>,
    #[serde(default)]
    pub network: UniqueList<NetRuleSource>,
    /// Local addresses and ports the workload may bind (TCP, UDP) and listen on (TCP);
    /// binding port 0 (an ephemeral port) is always allowed.
    #[serde(default)]
    pub listen: UniqueList<NetRuleSource>,
    /// System actions the workload may take (mounts, chroot, user namespaces, kernel
    /// loading, perf events); every other one is denied.
    #[serde(default)]
    pub permits: UniqueList<Permit>,
    /// Sockets past the defaults (unix; TCP and UDP over IPv4 and IPv6) the workload may
    /// create.
    #[serde(default)]
    pub sockets: UniqueList<SocketGrant>,
    /// Capabilities the workload may use (`net_bind_service`, `setuid`, ...); every other
    /// one is denied, in child user namespaces too.
    #[serde(default)]
    pub capabilities: UniqueList<Capability>,
}

/// A capability by its name without `CAP_`, in lowercase (`net_bind_service`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Capability(pub u32);

impl<'de> Deserialize<'de> for Capability {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        capability_number(&s).map(Capability).ok_or_else(|| {
            de::Error::custom(format!(
                "unknown capability `{s}`: use the name without CAP_, in lowercase: {}",
                rampart_common::CAPABILITIES.join(", ")
            ))
        })
    }
}

/// The number of a capability named as in `spec.capabilities`.
pub fn capability_number(name: &str) -> Option<u32> {
    rampart_common::CAPABILITIES
        .iter()
        .position(|n| *n == name)
        .map(|i| i as u32)
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match rampart_common::CAPABILITIES.get(self.0 as usize) {
            Some(name) => f.write_str(name),
            None => write!(f, "cap-{}", self.0),
        }
    }
}

impl UniqueKey for Capability {
    type Key = Capability;
    fn unique_key(&self) -> Capability {
        *self
    }
}

/// A kind of socket a policy allows (docs/policy-reference.md, "Sockets"): a family by
/// name (`packet`, `netlink`, `vsock`, ...), one netlink protocol (`netlink-route`,
/// `netlink-N`), or an IPv4/IPv6 class (`inet-raw`, `inet-ping`, `inet-other`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SocketGrant {
    /// Every socket of this address family.
    Family(u32),
    /// Netlink sockets of this protocol.
    Netlink(u32),
    /// IPv4 and IPv6 sockets of a [`rampart_common::sockets`] `INET_*` class.
    Inet(u32),
}

const INET_CLASSES: [(u32, &str); 3] = [
    (rampart_common::sockets::INET_RAW, "inet-raw"),
    (rampart_common::sockets::INET_PING, "inet-ping"),
    (rampart_common::sockets::INET_OTHER, "inet-other"),
];

impl SocketGrant {
    /// Parses a name; the error says what is accepted.
    pub fn parse(name: &str) -> Result<Self, String> {
        use rampart_common::sockets::{FAMILIES, NETLINK, NETLINK_PROTOCOLS};
        if let Some((bit, _)) = INET_CLASSES.iter().find(|(_, n)| *n == name) {
            return Ok(SocketGrant::Inet(*bit));
        }
        if let Some(proto) = name.strip_prefix("netlink-") {
            let number = NETLINK
                .iter()
                .find(|(_, n)| *n == proto)
                .map(|(p, _)| *p)
                .or_else(|| proto.parse().ok().filter(|p| *p < NETLINK_PROTOCOLS));
            return number.map(SocketGrant::Netlink).ok_or_else(|| {
                format!(
                    "unknown netlink protocol `{proto}`: use one of {} or a number below {NETLINK_PROTOCOLS}",
                    NETLINK.map(|(_, n)| n).join(", ")
                )
            });
        }
        match name {
            "unix" | "inet" | "inet6" => Err(format!(
                "`{name}` sockets are allowed by default (unix; TCP and UDP over IPv4 and IPv6); \
                 for more IPv4/IPv6 sockets list inet-raw, inet-ping or inet-other"
            )),
            _ => FAMILIES
                .iter()
                .find(|(_, n)| *n == name)
                .map(|(f, _)| SocketGrant::Family(*f))
                .ok_or_else(|| {
                    format!(
                        "unknown socket `{name}`: use a family ({}), netlink-PROTOCOL, inet-raw, inet-ping or inet-other",
                        FAMILIES[3..].iter().map(|(_, n)| *n).collect::<Vec<_>>().join(", ")
                    )
                }),
        }
    }
}

impl<'de> Deserialize<'de> for SocketGrant {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SocketGrant::parse(&s).map_err(de::Error::custom)
    }
}

impl fmt::Display for SocketGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use rampart_common::sockets::{FAMILIES, NETLINK};
        let named = |table: &[(u32, &'static str)], v: u32| {
            table.iter().find(|(k, _)| *k == v).map(|(_, n)| *n)
        };
        match *self {
            SocketGrant::Family(family) => match named(&FAMILIES, family) {
                Some(n) => f.write_str(n),
                None => write!(f, "family-{family}"),
            },
            SocketGrant::Netlink(p) => match named(&NETLINK, p) {
                Some(n) => write!(f, "netlink-{n}"),
                None => write!(f, "netlink-{p}"),
            },
            SocketGrant::Inet(bit) => f.write_str(named(&INET_CLASSES, bit).unwrap_or("inet-?")),
        }
    }
}

impl UniqueKey for SocketGrant {
    type Key = SocketGrant;
    fn unique_key(&self) -> SocketGrant {
        *self
    }
}

/// A system action a policy may permit (docs/policy-reference.md, "System actions").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Permit {
    /// `mount`, bind and move mounts, remounts, propagation changes, `move_mount`,
    /// `umount2`, `pivot_root`.
    Mount,
    /// `chroot`.
    Chroot,
    /// Creating user namespaces.
    UserNamespaces,
    /// Loading modules (and the module requests a task triggers), firmware, kexec images,
    /// IMA policies.
    KernelLoad,
    /// `perf_event_open`.
    PerfEvents,
    /// What kernel lockdown guards: raw memory and I/O ports, MSRs, `/proc/kcore`,
    /// debugfs, tracefs, kprobes, ...
    KernelAccess,
    /// `bpf()` for the workload's own maps and network programs.
    Bpf,
}

impl Permit {
    /// The kernel's bit for this permit.
    pub fn bit(self) -> u32 {
        use rampart_common::system;
        match self {
            Permit::Mount => system::MOUNT,
            Permit::Chroot => system::CHROOT,
            Permit::UserNamespaces => system::USER_NAMESPACES,
            Permit::KernelLoad => system::KERNEL_LOAD,
            Permit::PerfEvents => system::PERF_EVENTS,
            Permit::KernelAccess => system::KERNEL_ACCESS,
            Permit::Bpf => system::BPF,
        }
    }
}

impl fmt::Display for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = rampart_common::system::PERMITS
            .iter()
            .find(|(bit, _)| *bit == self.bit())
            .map_or("?", |(_, name)| name);
        f.write_str(name)
    }
}

impl UniqueKey for Permit {
    type Key = Permit;
    fn unique_key(&self) -> Permit {
        *self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Deny what the policy does not allow.
    #[default]
    Enforce,
    /// Allow, and record what would have been denied.
    Audit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventsSetting {
    /// An event for every denial (and every audit-mode would-be denial).
    #[default]
    Denials,
    /// An event for every decision, allows included.
    All,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecSpec {
    /// Programs that may be executed: exact files, pinned to their identity at load.
    #[serde(default)]
    pub allow: UniqueList<ExecPath>,
    /// Shared libraries and loaders that may be mapped executable (files, or directories
    /// ending in `/`). They cannot be run as programs.
    #[serde(default)]
    pub libraries: UniqueList<RulePath>,
}

/// A file access rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRuleSource {
    pub path: RulePath,
    pub access: AccessList,
}

impl fmt::Display for FileRuleSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path)
    }
}

/// Duplicate detection for file rules is by path: one path, one rule.
impl UniqueKey for FileRuleSource {
    type Key = RulePath;
    fn unique_key(&self) -> RulePath {
        self.path.clone()
    }
}

/// A right of a file rule (docs/policy-reference.md has the table: right, calls, hooks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    Read,
    Write,
    Exec,
    Create,
    MakeChar,
    MakeBlock,
    Remove,
    Refer,
    Truncate,
    Chmod,
    Chown,
    Utimes,
    Xattr,
    Connect,
}

impl Access {
    /// The kernel's bit for this right.
    pub fn bit(self) -> u32 {
        use rampart_common::access;
        match self {
            Access::Read => access::READ,
            Access::Write => access::WRITE,
            Access::Exec => access::EXEC,
            Access::Create => access::CREATE,
            Access::MakeChar => access::MAKE_CHAR,
            Access::MakeBlock => access::MAKE_BLOCK,
            Access::Remove => access::REMOVE,
            Access::Refer => access::REFER,
            Access::Truncate => access::TRUNCATE,
            Access::Chmod => access::CHMOD,
            Access::Chown => access::CHOWN,
            Access::Utimes => access::UTIMES,
            Access::Xattr => access::XATTR,
            Access::Connect => access::CONNECT,
        }
    }

    /// The right's name as written in a policy.
    pub fn name(self) -> &'static str {
        rampart_common::access::NAMES
            .iter()
            .find(|(bit, _)| *bit == self.bit())
            .map_or("unknown", |(_, name)| name)
    }
}

/// A non-empty list of distinct accesses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AccessList(pub Vec<Access>);

impl<'de> Deserialize<'de> for AccessList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let list = Vec::<Access>::deserialize(d)?;
        if list.is_empty() {
            return Err(de::Error::custom(
                "access must list at least one right (read, write, exec, create, make-char, \
                 make-block, remove, refer, truncate, chmod, chown, utimes, xattr)",
            ));
        }
        let mut seen = HashSet::new();
        for a in &list {
            if !seen.insert(*a) {
                return Err(de::Error::custom(format!(
                    "access {} listed twice",
                    a.name()
                )));
            }
        }
        Ok(AccessList(list))
    }
}

/// A network allow rule: destination prefix, ports and protocol.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetRuleSource {
    pub cidr: Cidr,
    /// Ports or `first-last` ranges; absent means every port.
    #[serde(default)]
    pub ports: Option<Vec<PortSpec>>,
    pub protocol: Protocol,
}

impl fmt::Display for NetRuleSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}", self.cidr.0, self.protocol)?;
        if let Some(ports) = &self.ports {
            let p: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
            write!(f, " ports {}", p.join(","))?;
        }
        Ok(())
    }
}

impl UniqueKey for NetRuleSource {
    type Key = Self;
    fn unique_key(&self) -> Self {
        self.clone()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

/// A CIDR prefix without host bits; IPv4-mapped IPv6 prefixes must be written as IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr(pub IpNet);

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let net: IpNet = s.parse().map_err(|_| {
            de::Error::custom(format!(
                "invalid CIDR `{s}`: write an address and prefix length, e.g. 10.0.0.0/8 or fd00::/8"
            ))
        })?;
        if net.trunc() != net {
            return Err(de::Error::custom(format!(
                "CIDR `{s}` has host bits set; did you mean {}?",
                net.trunc()
            )));
        }
        if let IpNet::V6(v6) = net {
            if v6.addr().to_ipv4_mapped().is_some() && v6.prefix_len() >= 96 {
                return Err(de::Error::custom(format!(
                    "CIDR `{s}` is IPv4-mapped; write it as IPv4 (mapped addresses are judged as IPv4)"
                )));
            }
        }
        Ok(Cidr(net))
    }
}

/// A port or an inclusive port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortSpec {
    pub first: u16,
    pub last: u16,
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl<'de> Deserialize<'de> for PortSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(u64),
            Text(String),
        }
        let parse_port = |s: &str| -> Result<u16, D::Error> {
            s.trim()
                .parse::<u16>()
                .map_err(|_| de::Error::custom(format!("invalid port `{s}`: use 0-65535")))
        };
        match Raw::deserialize(d)? {
            Raw::Num(n) => {
                let p = u16::try_from(n)
                    .map_err(|_| de::Error::custom(format!("invalid port {n}: use 0-65535")))?;
                Ok(PortSpec { first: p, last: p })
            }
            Raw::Text(s) => {
                let (a, b) = match s.split_once('-') {
                    Some((a, b)) => (parse_port(a)?, parse_port(b)?),
                    None => {
                        let p = parse_port(&s)?;
                        (p, p)
                    }
                };
                if a > b {
                    return Err(de::Error::custom(format!(
                        "invalid port range `{s}`: the first port is above the last"
                    )));
                }
                Ok(PortSpec { first: a, last: b })
            }
        }
    }
}

/// Checks a canonical absolute path as the kernel reports it (no `.`/`..`, no `//`).
fn check_path(s: &str) -> Result<(), String> {
    if !s.starts_with('/') {
        return Err(format!("`{s}` is relative; rule paths must be absolute"));
    }
    if s.len() > MAX_RULE_PATH_BYTES {
        return Err(format!(
            "`{s}` is {} bytes; rule paths are limited to {MAX_RULE_PATH_BYTES}",
            s.len()
        ));
    }
    if s.contains('\0') {
        return Err("paths cannot contain NUL".into());
    }
    let inner = s.trim_start_matches('/').trim_end_matches('/');
    if s.len() > 1 && s.contains("//") {
        return Err(format!("`{s}` contains `//`; write the canonical path"));
    }
    if !inner.is_empty() && inner.split('/').any(|c| c == "." || c == "..") {
        return Err(format!(
            "`{s}` contains `.` or `..`; the kernel judges canonical paths, write one"
        ));
    }
    Ok(())
}

/// An absolute, canonical rule path: a file, or a directory when it ends with `/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct RulePath(pub String);

impl RulePath {
    /// Whether this is a directory rule (a prefix of everything below it).
    pub fn is_dir(&self) -> bool {
        self.0.ends_with('/')
    }
}

impl fmt::Display for RulePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RulePath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        check_path(&s).map_err(de::Error::custom)?;
        Ok(RulePath(s))
    }
}

impl UniqueKey for RulePath {
    type Key = Self;
    fn unique_key(&self) -> Self {
        self.clone()
    }
}

/// A program path: like [`RulePath`] but a file, never a directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ExecPath(pub RulePath);

impl fmt::Display for ExecPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for ExecPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let p = RulePath::deserialize(d)?;
        if p.is_dir() {
            return Err(de::Error::custom(format!(
                "`{p}` is a directory; exec.allow names programs one by one"
            )));
        }
        Ok(ExecPath(p))
    }
}

impl UniqueKey for ExecPath {
    type Key = Self;
    fn unique_key(&self) -> Self {
        self.clone()
    }
}

/// A cgroup v2 path relative to the cgroup2 root, with a leading `/`; never the root.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct CgroupPath(pub String);

impl fmt::Display for CgroupPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for CgroupPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        check_path(&s).map_err(de::Error::custom)?;
        let trimmed = s.trim_end_matches('/');
        if trimmed.is_empty() {
            return Err(de::Error::custom(
                "the cgroup root cannot be governed (it would govern the whole host); name a child cgroup",
            ));
        }
        crate::kernel::cgroup_pattern::Pattern::parse(trimmed)
            .map_err(|e| de::Error::custom(format!("{e:#}")))?;
        Ok(CgroupPath(trimmed.to_owned()))
    }
}

impl UniqueKey for CgroupPath {
    type Key = Self;
    fn unique_key(&self) -> Self {
        self.clone()
    }
}

/// What makes two list entries the same rule.
pub trait UniqueKey {
    type Key: Eq + Hash;
    fn unique_key(&self) -> Self::Key;
}

/// A list whose entries must be distinct rules; a repeated one is an error at its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueList<T>(pub Vec<T>);

impl<T> Default for UniqueList<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, T> Deserialize<'de> for UniqueList<T>
where
    T: Deserialize<'de> + UniqueKey + fmt::Display,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T> Visitor<'de> for V<T>
        where
            T: Deserialize<'de> + UniqueKey + fmt::Display,
        {
            type Value = UniqueList<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of rules")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                let mut seen = HashSet::new();
                while let Some(item) = seq.next_element::<T>()? {
                    if !seen.insert(item.unique_key()) {
                        return Err(de::Error::custom(format!(
                            "entry [{}] repeats rule `{item}`; each rule appears once",
                            items.len()
                        )));
                    }
                    items.push(item);
                }
                Ok(UniqueList(items))
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}

/// The documents of one policy file, each with its index in the file.
#[derive(Debug, Clone)]
pub struct PolicySource {
    /// The file name as given.
    pub file: String,
    /// The file's bytes, for digests.
    pub text: String,
    pub documents: Vec<PolicyDocument>,
}

/// Size cap on a policy file: policies are small; anything bigger is a mistake or an attack.
pub const MAX_POLICY_FILE_BYTES: u64 = 4 * 1024 * 1024;

impl PolicySource {
    /// Reads and parses a policy file.
    pub fn read(path: &Path) -> Result<Self, SourceError> {
        let file = path.display().to_string();
        let read_err = |source| SourceError::Read {
            file: file.clone(),
            source,
        };
        let len = std::fs::metadata(path).map_err(read_err)?.len();
        if len > MAX_POLICY_FILE_BYTES {
            return Err(SourceError::Invalid {
                file,
                message: format!("{len} bytes is over the {MAX_POLICY_FILE_BYTES}-byte limit"),
            });
        }
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        Self::parse(&file, &text)
    }

    /// Parses policy documents (one or more, separated by `---`).
    pub fn parse(file: &str, text: &str) -> Result<Self, SourceError> {
        if text.trim().is_empty() {
            return Err(SourceError::Invalid {
                file: file.to_owned(),
                message: "the file is empty; a policy file holds at least one document".into(),
            });
        }
        let mut documents = Vec::new();
        for doc in serde_norway::Deserializer::from_str(text) {
            let parsed = PolicyDocument::deserialize(doc).map_err(|e| {
                let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
                // The location leads the message already; drop the copy at its end.
                let message = e.to_string();
                let message = match message.rsplit_once(" at line ") {
                    Some((m, _)) => m.to_owned(),
                    None => message,
                };
                SourceError::Parse {
                    file: file.to_owned(),
                    line,
                    column,
                    message,
                }
            })?;
            documents.push(parsed);
        }
        if documents.is_empty() {
            return Err(SourceError::Invalid {
                file: file.to_owned(),
                message: "no policy document in the file".into(),
            });
        }
        Ok(Self {
            file: file.to_owned(),
            text: text.to_owned(),
            documents,
        })
    }
}
