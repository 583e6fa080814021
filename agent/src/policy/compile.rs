//! Compiling policy documents to the contents of the kernel's rule maps.
//!
//! Compilation is deterministic: the same sources (and the same host files, when paths are
//! resolved on a host) give byte-identical output. The kernel's tries return only the
//! longest matching prefix, so every entry already carries the access and ports granted by
//! the enclosing directory or network rules: the longest match decides alone, and the
//! decision equals "allowed if any rule allows".

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use rampart_common::{
    access, path_flags, policy_flags, FileId, IPPROTO_TCP, IPPROTO_UDP, MAX_RULE_PATH_BYTES,
    PORT_RANGES_PER_NET_RULE,
};
use serde::Serialize;
use thiserror::Error;

use super::source::{
    Access, EventsSetting, Mode, NetRuleSource, PolicyDocument, Protocol, RulePath, SocketGrant,
};

/// A policy that cannot be compiled.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CompileError {
    #[error(
        "{field}: {cidr} would need {count} port ranges (its own and those of enclosing \
         prefixes); the kernel holds at most {max} per prefix: merge ports into ranges"
    )]
    TooManyPortRanges {
        field: String,
        cidr: String,
        count: usize,
        max: usize,
    },
    #[error(
        "{field}: `{path}` may be both written and run (or mapped executable): a governed \
         workload could replace its own programs; drop write access or the exec rule"
    )]
    WritableExecutable { field: String, path: String },
    #[error(
        "{field}: `{path}` may be run (or mapped executable) and a governed workload may {how} \
         there: it could put its own code in place of a program or library; drop `{how}` \
         there or the exec rule"
    )]
    PlaceableExecutable {
        field: String,
        path: String,
        how: String,
    },
    #[error("{field}: `{path}` resolves on this host to `{canonical}`, longer than {max} bytes")]
    ResolvedPathTooLong {
        field: String,
        path: String,
        canonical: String,
        max: usize,
    },
}

/// How rule paths map to the paths the kernel reports.
pub trait Resolver {
    /// The canonical path the kernel will report for `path` (a directory keeps its trailing
    /// `/`), or `None` to keep the path as written (it does not exist here).
    fn canonical(&self, path: &str) -> Option<String>;
    /// The identity of the file at a canonical path, if it is a regular file.
    fn identity(&self, canonical: &str) -> Option<FileId>;
}

/// Offline compilation: paths as written, no identities (`rampart policy compile`).
pub struct Literal;

impl Resolver for Literal {
    fn canonical(&self, _path: &str) -> Option<String> {
        None
    }
    fn identity(&self, _canonical: &str) -> Option<FileId> {
        None
    }
}

/// One source rule, for explanations and events (`rule_id` indexes this list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rule {
    pub id: u32,
    /// Where it is in the document, e.g. `spec.files[2]`.
    pub field: String,
    /// The rule as written.
    pub text: String,
}

/// The identity pinned for an exec rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Identity {
    pub dev: u64,
    pub ino: u64,
}

/// One entry of the path trie.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathEntry {
    /// The path; a directory entry ends with `/` and matches everything below it.
    pub path: String,
    /// An exact-file entry (its key includes the terminating NUL).
    pub exact: bool,
    /// [`access`] bits, inherited ones included.
    pub access: u32,
    /// [`rampart_common::path_flags`] bits.
    pub flags: u32,
    /// The lowest-numbered rule naming exactly this path.
    pub rule_id: u32,
    /// For entries that allow running: the file's identity at compile time (`None` when
    /// compiled offline, or the file is missing: then nothing can run from this path).
    pub identity: Option<Identity>,
}

impl PathEntry {
    /// The key bytes the kernel trie holds for this entry (without the policy id).
    pub fn key_bytes(&self) -> Vec<u8> {
        let mut k = self.path.as_bytes().to_vec();
        if self.exact {
            k.push(0);
        }
        k
    }
}

/// One allowed port range of a network entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct CompiledPorts {
    pub rule_id: u32,
    pub first: u16,
    pub last: u16,
    pub protocol: Protocol,
}

impl CompiledPorts {
    /// The kernel's protocol number.
    pub fn protocol_number(&self) -> u32 {
        match self.protocol {
            Protocol::Tcp => IPPROTO_TCP,
            Protocol::Udp => IPPROTO_UDP,
        }
    }
}

/// One entry of a network trie.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetEntry {
    pub cidr: IpNet,
    pub rule_id: u32,
    pub ports: Vec<CompiledPorts>,
}

/// A policy in the form the kernel maps hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompiledPolicy {
    pub name: String,
    pub file: String,
    pub governs: Vec<String>,
    pub mode: Mode,
    pub events: EventsSetting,
    pub strict: bool,
    /// [`policy_flags`] bits.
    pub flags: u32,
    pub rules: Vec<Rule>,
    /// Sorted by key bytes.
    pub paths: Vec<PathEntry>,
    /// Sorted by prefix.
    pub net4: Vec<NetEntry>,
    pub net6: Vec<NetEntry>,
    /// `spec.listen`: local addresses to bind and listen on, sorted by prefix.
    pub listen4: Vec<NetEntry>,
    pub listen6: Vec<NetEntry>,
    /// [`rampart_common::system`] permit bits (`spec.permits`).
    pub permits: u32,
    /// The sockets `spec.sockets` allows, as the kernel holds them.
    pub sockets: SocketBits,
    /// Bit N: capability N (`spec.capabilities`).
    pub capabilities: u64,
}

/// `spec.sockets` in the form of the policy slot's fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SocketBits {
    /// Bit N: every socket of family N.
    pub families: u64,
    /// Bit N: netlink protocol N.
    pub netlink_protocols: u32,
    /// [`rampart_common::sockets`] `INET_*` bits.
    pub inet: u32,
}

impl SocketBits {
    fn from_grants(grants: &[SocketGrant]) -> Self {
        let mut bits = Self::default();
        for g in grants {
            match *g {
                SocketGrant::Family(f) if f < 64 => bits.families |= 1 << f,
                SocketGrant::Family(_) => {}
                SocketGrant::Netlink(p) => bits.netlink_protocols |= 1 << (p & 31),
                SocketGrant::Inet(bit) => bits.inet |= bit,
            }
        }
        bits
    }
}

impl CompiledPolicy {
    /// The rule with this id.
    pub fn rule(&self, id: u32) -> Option<&Rule> {
        self.rules.get(id as usize)
    }
}

fn access_bits(list: &[Access]) -> u32 {
    list.iter().fold(0, |acc, a| acc | a.bit())
}

/// Access names for display, e.g. `read,exec`.
pub fn access_names(bits: u32) -> String {
    let names: Vec<&str> = access::NAMES
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, n)| *n)
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(",")
    }
}

struct Grant {
    key: (String, bool),
    access: u32,
    rule_id: u32,
    identity: Option<Identity>,
}

/// Compiles one document. `file` names the source in the output.
pub fn compile(
    doc: &PolicyDocument,
    file: &str,
    resolver: &dyn Resolver,
) -> Result<CompiledPolicy, CompileError> {
    let spec = &doc.spec;
    let mut rules = Vec::new();
    let mut grants = Vec::new();
    let mut add_rule = |field: String, text: String| {
        let id = rules.len() as u32;
        rules.push(Rule { id, field, text });
        id
    };
    let resolve = |field: &str, path: &RulePath| -> Result<(String, bool), CompileError> {
        let dir = path.is_dir();
        let canonical = resolver
            .canonical(&path.0)
            .unwrap_or_else(|| path.0.clone());
        if canonical.len() > MAX_RULE_PATH_BYTES {
            return Err(CompileError::ResolvedPathTooLong {
                field: field.to_owned(),
                path: path.0.clone(),
                canonical,
                max: MAX_RULE_PATH_BYTES,
            });
        }
        Ok((canonical, !dir))
    };

    for (i, p) in spec.exec.allow.0.iter().enumerate() {
        let field = format!("spec.exec.allow[{i}]");
        let key = resolve(&field, &p.0)?;
        let identity = resolver
            .identity(&key.0)
            .map(|FileId { dev, ino }| Identity { dev, ino });
        let rule_id = add_rule(field, p.to_string());
        grants.push(Grant {
            key,
            access: access::READ | access::EXEC | access::RUN,
            rule_id,
            identity,
        });
    }
    for (i, p) in spec.exec.libraries.0.iter().enumerate() {
        let field = format!("spec.exec.libraries[{i}]");
        let key = resolve(&field, p)?;
        let rule_id = add_rule(field, p.to_string());
        grants.push(Grant {
            key,
            access: access::READ | access::EXEC,
            rule_id,
            identity: None,
        });
    }
    for (i, r) in spec.files.0.iter().enumerate() {
        let field = format!("spec.files[{i}]");
        let key = resolve(&field, &r.path)?;
        let names: Vec<&str> = r.access.0.iter().map(|a| a.name()).collect();
        let rule_id = add_rule(field, format!("{} {}", r.path, names.join(",")));
        grants.push(Grant {
            key,
            access: access_bits(&r.access.0),
            rule_id,
            identity: None,
        });
    }
    let mut net_rules = Vec::new();
    for (i, r) in spec.network.0.iter().enumerate() {
        let field = format!("spec.network[{i}]");
        let rule_id = add_rule(field.clone(), r.to_string());
        net_rules.push((field, rule_id, r));
    }
    let mut listen_rules = Vec::new();
    for (i, r) in spec.listen.0.iter().enumerate() {
        let field = format!("spec.listen[{i}]");
        let rule_id = add_rule(field.clone(), r.to_string());
        listen_rules.push((field, rule_id, r));
    }

    let paths = compile_paths(grants);
    refuse_replaceable_code(&paths, &rules)?;
    let (net4, net6) = compile_net(&net_rules)?;
    let (listen4, listen6) = compile_net(&listen_rules)?;
    let mut flags = 0;
    if spec.mode == Mode::Audit {
        flags |= policy_flags::AUDIT;
    }
    if spec.events == EventsSetting::All {
        flags |= policy_flags::EVENTS_ALL;
    }
    if spec.strict {
        flags |= policy_flags::STRICT;
    }
    Ok(CompiledPolicy {
        name: doc.metadata.name.0.clone(),
        file: file.to_owned(),
        governs: spec.governs.0.iter().map(|c| c.0.clone()).collect(),
        mode: spec.mode,
        events: spec.events,
        strict: spec.strict,
        flags,
        rules,
        paths,
        net4,
        net6,
        listen4,
        listen6,
        permits: spec.permits.0.iter().fold(0, |bits, p| bits | p.bit()),
        sockets: SocketBits::from_grants(&spec.sockets.0),
        capabilities: spec
            .capabilities
            .0
            .iter()
            .fold(0, |bits, c| bits | 1 << (c.0 & 63)),
    })
}

/// A workload that may write a file it may also run or map executable can replace its own
/// code (even in place, keeping the pinned identity); one that may create, link or rename
/// there can put new code in place of it: refuse such a policy.
fn refuse_replaceable_code(paths: &[PathEntry], rules: &[Rule]) -> Result<(), CompileError> {
    let field = |e: &PathEntry| {
        rules
            .iter()
            .find(|r| r.id == e.rule_id)
            .map_or_else(String::new, |r| r.field.clone())
    };
    for e in paths
        .iter()
        .filter(|e| e.access & (access::EXEC | access::RUN) != 0)
    {
        if e.access & access::WRITE != 0 {
            return Err(CompileError::WritableExecutable {
                field: field(e),
                path: e.path.clone(),
            });
        }
        let placing = access::CREATE | access::REFER | access::MAKE_CHAR | access::MAKE_BLOCK;
        if e.access & placing != 0 {
            return Err(CompileError::PlaceableExecutable {
                field: field(e),
                path: e.path.clone(),
                how: access_names(e.access & placing),
            });
        }
    }
    Ok(())
}

fn compile_paths(grants: Vec<Grant>) -> Vec<PathEntry> {
    // Merge grants on the same key; a directory rule also covers opening the directory.
    let mut merged: BTreeMap<(String, bool), PathEntry> = BTreeMap::new();
    let mut put = |key: (String, bool), access: u32, rule_id: u32, identity: Option<Identity>| {
        let e = merged.entry(key.clone()).or_insert(PathEntry {
            path: key.0,
            exact: key.1,
            access: 0,
            flags: 0,
            rule_id,
            identity: None,
        });
        e.access |= access;
        e.rule_id = e.rule_id.min(rule_id);
        if e.identity.is_none() {
            e.identity = identity;
        }
    };
    for g in grants {
        let Grant {
            key,
            access,
            rule_id,
            identity,
        } = g;
        if !key.1 && key.0.len() > 1 {
            // The directory itself is an entry of its parent: the rule's tree rights
            // (create, remove, refer, ...) are for what is below it, not for it.
            let itself = key.0.trim_end_matches('/').to_owned();
            put((itself, true), access & !access::TREE, rule_id, None);
        }
        put(key, access, rule_id, identity);
    }
    // Inherit from enclosing directory entries: every prefix ending in `/`.
    let dirs: BTreeMap<String, u32> = merged
        .values()
        .filter(|e| !e.exact)
        .map(|e| (e.path.clone(), e.access))
        .collect();
    let mut entries: Vec<PathEntry> = merged
        .into_values()
        .map(|mut e| {
            for (i, _) in e.path.match_indices('/') {
                let prefix = &e.path[..=i];
                if prefix.len() < e.path.len() || e.exact {
                    if let Some(a) = dirs.get(prefix) {
                        e.access |= a & !access::RUN;
                    }
                }
            }
            e
        })
        .collect();
    entries.sort_by_key(PathEntry::key_bytes);
    mark_deeper(&mut entries);
    entries
}

/// Sets [`path_flags::HAS_DEEPER`] on every entry with another entry strictly below it
/// (`entries` sorted by key bytes, so those below a prefix follow it contiguously).
fn mark_deeper(entries: &mut [PathEntry]) {
    let keys: Vec<Vec<u8>> = entries.iter().map(PathEntry::key_bytes).collect();
    for (i, e) in entries.iter_mut().enumerate() {
        let mut below = e.path.as_bytes().to_vec();
        if e.exact {
            below.push(b'/');
        }
        let start = keys.partition_point(|k| k.as_slice() < below.as_slice());
        let deeper = keys[start..]
            .iter()
            .enumerate()
            .take_while(|(_, k)| k.starts_with(&below))
            .any(|(j, _)| start + j != i);
        if deeper {
            e.flags |= path_flags::HAS_DEEPER;
        }
    }
}

type NetRules<'a> = [(String, u32, &'a NetRuleSource)];

fn compile_net(rules: &NetRules<'_>) -> Result<(Vec<NetEntry>, Vec<NetEntry>), CompileError> {
    let mut nets: BTreeMap<IpNet, (u32, String)> = BTreeMap::new();
    for (field, id, r) in rules {
        let e = nets.entry(r.cidr.0).or_insert((*id, field.clone()));
        e.0 = e.0.min(*id);
    }
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for (net, (rule_id, field)) in nets {
        let mut ports = BTreeSet::new();
        for (_, id, r) in rules {
            if r.cidr.0.contains(&net) {
                let specs = r.ports.clone().unwrap_or_default();
                let all = [super::source::PortSpec {
                    first: 0,
                    last: u16::MAX,
                }];
                let specs = if specs.is_empty() {
                    &all[..]
                } else {
                    &specs[..]
                };
                for p in specs {
                    ports.insert(CompiledPorts {
                        rule_id: *id,
                        first: p.first,
                        last: p.last,
                        protocol: r.protocol,
                    });
                }
            }
        }
        if ports.len() > PORT_RANGES_PER_NET_RULE {
            return Err(CompileError::TooManyPortRanges {
                field,
                cidr: net.to_string(),
                count: ports.len(),
                max: PORT_RANGES_PER_NET_RULE,
            });
        }
        let entry = NetEntry {
            cidr: net,
            rule_id,
            ports: ports.into_iter().collect(),
        };
        match net {
            IpNet::V4(_) => v4.push(entry),
            IpNet::V6(_) => v6.push(entry),
        }
    }
    Ok((v4, v6))
}
