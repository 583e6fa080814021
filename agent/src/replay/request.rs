//! A recorded decision as the request `explain` judges: the action, access, path or endpoint
//! and file identity the kernel's event carried.
//!
//! Invariant: a record is turned into a request only when the record carries everything the
//! kernel's judgement read; anything else is "not recomputable" with the reason, never a
//! guess (a guess that agreed would count as agreement).

use std::borrow::Cow;

use rampart_common::{access, sockets, system, FileId};
use serde::Deserialize;

use crate::policy::{
    explain::{action_name, parse_endpoint, Request, SYSTEM_REQUESTS},
    source::capability_number,
};

/// The fields of a decision record replay reads (the body: after the header).
#[derive(Debug, Deserialize)]
pub struct Recorded<'a> {
    #[serde(borrow)]
    pub action: Cow<'a, str>,
    #[serde(borrow)]
    pub decision: Cow<'a, str>,
    #[serde(borrow)]
    pub reason: Cow<'a, str>,
    pub rule_id: Option<u32>,
    pub policy_version: u64,
    #[serde(default, borrow)]
    pub policy: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub bundle: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub access: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub path: Option<Cow<'a, str>>,
    #[serde(default)]
    pub path_truncated: bool,
    #[serde(default)]
    pub file_dev: Option<u64>,
    #[serde(default)]
    pub file_ino: Option<u64>,
    #[serde(default, borrow)]
    pub endpoint: Option<Cow<'a, str>>,
}

/// Reasons that come from the state of the host or the kernel at that moment, not from the
/// policy: `explain` cannot recompute them.
const STATE_REASONS: [&str; 8] = [
    "path-unresolvable",
    "layout-unset",
    "identity-unreadable",
    "policy-missing",
    "event-unrecorded",
    "policy-expired",
    "map-exec-unverified",
    "unknown",
];

/// Bit names of a file access list (`read,write`, `create`, ...).
fn access_bits(list: &str) -> Option<u32> {
    let mut bits = 0;
    for name in list.split(',') {
        bits |= access::NAMES.iter().find(|(_, n)| *n == name)?.0;
    }
    Some(bits)
}

/// The request the kernel judged for this record, or why it cannot be recomputed.
pub fn request_of(r: &Recorded<'_>) -> Result<Request, String> {
    if let Some(reason) = STATE_REASONS.iter().find(|s| **s == r.reason) {
        return Err(format!("reason {reason} (host or kernel state)"));
    }
    if r.path_truncated {
        return Err("path cut to the event buffer".into());
    }
    let action = r.action.as_ref();
    let path = || {
        r.path
            .as_deref()
            .map(str::to_owned)
            .ok_or_else(|| format!("{action} without a path"))
    };
    let identity = match (r.file_dev, r.file_ino) {
        (Some(dev), Some(ino)) if dev != 0 || ino != 0 => Some(FileId { dev, ino }),
        _ => None,
    };
    let bits = || {
        r.access
            .as_deref()
            .and_then(access_bits)
            .ok_or_else(|| format!("{action} without a file access list"))
    };
    // Allowed where no rule names it: one of the kernel's exemptions outside the policy
    // (a peer or socket of the same policy, pidfs, kernel-internal files, ...).
    if r.decision == "allow" && r.rule_id.is_none() && is_file_action(action) {
        return Err(format!(
            "{action} allowed by a kernel exemption, not a rule"
        ));
    }
    let endpoint = || {
        let e = r
            .endpoint
            .as_deref()
            .ok_or_else(|| format!("{action} without an endpoint"))?;
        parse_endpoint(e).map_err(|e| format!("{action}: {e}"))
    };
    Ok(match action {
        "exec" => {
            let need = bits()?;
            if need & access::RUN != 0 {
                Request::Exec {
                    path: path()?,
                    identity,
                }
            } else {
                Request::Open {
                    path: path()?,
                    access: need,
                    identity,
                    cgroup: None,
                }
            }
        }
        "open" | "receive" => {
            let p = path()?;
            if action == "receive" && !p.starts_with('/') {
                return Err(format!("received {p}: not a file with a path"));
            }
            let need = bits()?;
            if p.starts_with("/sys/fs/cgroup/") && need & access::WRITE != 0 {
                return Err("write to a cgroup file (its cgroup is not recorded)".into());
            }
            if action == "open" {
                Request::Open {
                    path: p,
                    access: need,
                    identity,
                    cgroup: None,
                }
            } else {
                Request::Receive {
                    path: p,
                    access: need,
                    identity,
                    cgroup: None,
                }
            }
        }
        "map-exec" => Request::MapExec { path: path()? },
        "create" => Request::Create {
            path: path()?,
            need: bits()?,
            hook: "path_mknod",
        },
        "remove" => Request::Remove {
            path: path()?,
            dir: false,
        },
        "truncate" => Request::Truncate {
            path: path()?,
            identity,
        },
        "chmod" => Request::Chmod {
            path: path()?,
            identity,
        },
        "chown" => Request::Chown {
            path: path()?,
            identity,
        },
        "utimes" => Request::Utimes { path: path()? },
        "xattr" => Request::Xattr {
            path: path()?,
            identity,
        },
        "unix-connect" | "unix-send" => Request::Unix {
            path: path()?,
            send: action == "unix-send",
        },
        "connect" | "send" => {
            let (addr, protocol) = endpoint()?;
            if action == "connect" {
                Request::Connect { addr, protocol }
            } else {
                Request::Send { addr, protocol }
            }
        }
        "bind" | "listen" => {
            let (addr, protocol) = endpoint()?;
            Request::Serve {
                addr,
                protocol,
                listen: action == "listen",
            }
        }
        "capability" => {
            let name = r.access.as_deref().unwrap_or_default();
            let cap = capability_number(name)
                .ok_or_else(|| format!("capability {name}: not a capability name"))?;
            Request::Capability { cap }
        }
        "bpf" => {
            let name = r.access.as_deref().unwrap_or_default();
            let cmd = system::BPF_COMMAND_NAMES
                .iter()
                .position(|n| *n == name)
                .ok_or_else(|| format!("bpf {name}: not a command name"))?
                as u32;
            if cmd == system::BPF_PROG_LOAD {
                return Err("bpf prog-load (the program type is not recorded)".into());
            }
            Request::Bpf { cmd, prog_type: 0 }
        }
        "socket" => socket(r.access.as_deref().unwrap_or_default())?,
        _ => system(action, r.access.as_deref())?,
    })
}

/// A socket record's `FAMILY/TYPE/PROTOCOL` (as `explain::socket_name` writes it) back to
/// numbers.
fn socket(triple: &str) -> Result<Request, String> {
    let bad = || format!("socket {triple}: not FAMILY/TYPE/PROTOCOL");
    let number = |table: &[(u32, &str)], name: &str, what: &str| {
        table
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(v, _)| *v)
            .or_else(|| name.strip_prefix(what)?.strip_prefix('-')?.parse().ok())
    };
    let mut parts = triple.split('/');
    let (Some(f), Some(t), Some(p), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    Ok(Request::Socket {
        family: number(&sockets::FAMILIES, f, "family").ok_or_else(bad)?,
        kind: number(&sockets::TYPES, t, "type").ok_or_else(bad)?,
        protocol: p.parse().map_err(|_| bad())?,
    })
}

/// The system request of a mount, chroot, user-namespace, kernel-load, perf-event or
/// clone-into-cgroup record: the one `explain` names with the record's access word, else
/// the only one of its action (what decides is the action's permit).
fn system(action: &str, word: Option<&str>) -> Result<Request, String> {
    let mut of_action = SYSTEM_REQUESTS
        .iter()
        .filter(|r| action_name(r.action) == action);
    let by_word = word.and_then(|w| SYSTEM_REQUESTS.iter().find(|r| r.word == w));
    let found = match by_word.filter(|r| action_name(r.action) == action) {
        Some(r) => Some(r),
        None => {
            let first = of_action.next();
            first.filter(|f| of_action.all(|r| r.permit == f.permit))
        }
    };
    found
        .map(Request::System)
        .ok_or_else(|| format!("{action}: not recomputable from the record (peer or state)"))
}

fn is_file_action(action: &str) -> bool {
    matches!(
        action,
        "exec"
            | "open"
            | "receive"
            | "map-exec"
            | "create"
            | "remove"
            | "truncate"
            | "chmod"
            | "chown"
            | "utimes"
            | "xattr"
            | "unix-connect"
            | "unix-send"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::explain::socket_name;

    #[test]
    fn socket_names_read_back_as_the_numbers_they_name() {
        for (f, t, p) in [(2, 3, 1), (1, 1, 0), (16, 3, 9), (99, 9, 0), (10, 2, 17)] {
            let name = socket_name(f, t, p);
            assert_eq!(
                socket(&name),
                Ok(Request::Socket {
                    family: f,
                    kind: t,
                    protocol: p
                }),
                "{name}"
            );
        }
        assert!(socket("inet/raw").is_err());
        assert!(socket("inet/raw/x").is_err());
    }
}
