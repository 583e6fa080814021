//! Which records `rampart lineage show` and `tail` print: every given field must match.
//! The closed sets (kind, decision, action) are enums, so a misspelt value is an error that
//! lists the valid ones instead of a filter that silently matches nothing.

use serde_json::Value;

/// A record's `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    AgentStart,
    AgentStop,
    Decision,
    PolicyChange,
    PolicyRefused,
    PolicySource,
    Gap,
    Release,
    ControlRefused,
    Tamper,
    Truncated,
    Checkpoint,
}

impl Kind {
    /// The `kind` field's value.
    pub fn name(self) -> &'static str {
        match self {
            Self::AgentStart => "agent-start",
            Self::AgentStop => "agent-stop",
            Self::Decision => "decision",
            Self::PolicyChange => "policy-change",
            Self::PolicyRefused => "policy-refused",
            Self::PolicySource => "policy-source",
            Self::Gap => "gap",
            Self::Release => "release",
            Self::ControlRefused => "control-refused",
            Self::Tamper => "tamper",
            Self::Truncated => "truncated",
            Self::Checkpoint => "checkpoint",
        }
    }
}

/// A decision record's `decision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Verdict {
    Allow,
    Deny,
    Audit,
}

impl Verdict {
    /// The `decision` field's value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Audit => "audit",
        }
    }
}

/// A decision record's `action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ActionKind {
    Exec,
    Open,
    MapExec,
    Connect,
    Send,
    Create,
    Remove,
    Link,
    Rename,
    Truncate,
    Chmod,
    Chown,
    Utimes,
    Xattr,
    UringCreds,
    Signal,
    Ptrace,
    Bpf,
    Mount,
    Chroot,
    UserNamespace,
    KernelLoad,
    PerfEvent,
    CloneIntoCgroup,
    Socket,
    Capability,
    UnixConnect,
    UnixSend,
    Lockdown,
    Bind,
    Listen,
    Receive,
}

impl ActionKind {
    /// The `action` field's value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Exec => "exec",
            Self::Open => "open",
            Self::MapExec => "map-exec",
            Self::Connect => "connect",
            Self::Send => "send",
            Self::Create => "create",
            Self::Remove => "remove",
            Self::Link => "link",
            Self::Rename => "rename",
            Self::Truncate => "truncate",
            Self::Chmod => "chmod",
            Self::Chown => "chown",
            Self::Utimes => "utimes",
            Self::Xattr => "xattr",
            Self::UringCreds => "uring-creds",
            Self::Signal => "signal",
            Self::Ptrace => "ptrace",
            Self::Bpf => "bpf",
            Self::Mount => "mount",
            Self::Chroot => "chroot",
            Self::UserNamespace => "user-namespace",
            Self::KernelLoad => "kernel-load",
            Self::PerfEvent => "perf-event",
            Self::CloneIntoCgroup => "clone-into-cgroup",
            Self::Socket => "socket",
            Self::Capability => "capability",
            Self::UnixConnect => "unix-connect",
            Self::UnixSend => "unix-send",
            Self::Lockdown => "lockdown",
            Self::Bind => "bind",
            Self::Listen => "listen",
            Self::Receive => "receive",
        }
    }
}

/// Which records `show` and `tail` print.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub kind: Option<Kind>,
    pub decision: Option<Verdict>,
    pub action: Option<ActionKind>,
    pub pid: Option<u64>,
    pub cgroup: Option<u64>,
    /// Wall clock bounds, Unix ns.
    pub since_ns: Option<u64>,
    pub until_ns: Option<u64>,
}

impl Filter {
    /// Whether the record `v` (one parsed line) passes every given bound.
    pub fn matches(&self, v: &Value) -> bool {
        let s = |k: &str, want: Option<&'static str>| want.is_none_or(|w| v[k] == w);
        let n = |k: &str, want: Option<u64>| want.is_none_or(|w| v[k].as_u64() == Some(w));
        let t = v["time_ns"].as_u64().unwrap_or(0);
        s("kind", self.kind.map(Kind::name))
            && s("decision", self.decision.map(Verdict::name))
            && s("action", self.action.map(ActionKind::name))
            && n("pid", self.pid)
            && n("cgroup_id", self.cgroup)
            && self.since_ns.is_none_or(|b| t >= b)
            && self.until_ns.is_none_or(|b| t <= b)
    }
}

#[cfg(test)]
mod tests {
    use clap::ValueEnum;
    use rampart_common::{Action, Decision};

    use super::*;
    use crate::{
        lineage::record::{Body, GapReason},
        policy::explain::{action_name, decision_name},
    };

    /// The names the filter compares are the names the records carry.
    #[test]
    fn filter_names_are_the_names_records_carry() {
        for k in Kind::value_variants() {
            let shown = k.to_possible_value().map(|v| v.get_name().to_owned());
            assert_eq!(shown.as_deref(), Some(k.name()), "{k:?}");
        }
        let bodies = [
            (Kind::AgentStop, Body::AgentStop { reason: "x" }),
            (
                Kind::PolicyRefused,
                Body::PolicyRefused {
                    code: "c",
                    error: "e",
                },
            ),
            (
                Kind::Gap,
                Body::Gap {
                    source: "s",
                    reason: GapReason::AgentDown,
                    lost: 0,
                    from_ns: 0,
                    to_ns: 0,
                    detail: None,
                },
            ),
            (
                Kind::Release,
                Body::Release {
                    pin_dir: "/p",
                    links: 0,
                    maps: 0,
                    authorised_by: "terminal",
                    nonce: None,
                    reason: None,
                    signers: &[],
                },
            ),
            (
                Kind::Truncated,
                Body::Truncated {
                    anchored_lineage: "l",
                    anchored_size: 2,
                    anchored_head: "h",
                    found: 1,
                },
            ),
            (
                Kind::Tamper,
                Body::Tamper {
                    what: "pin-removed",
                    object: "/p/links/x@1",
                    repaired: true,
                    error: None,
                },
            ),
            (
                Kind::PolicySource,
                Body::PolicySource {
                    source: "oci://127.0.0.1:5000/p:v1",
                    state: "reachable",
                    error: None,
                    down_seconds: Some(30),
                    failed_polls: Some(3),
                },
            ),
            (
                Kind::ControlRefused,
                Body::ControlRefused {
                    pid: 1,
                    uid: 0,
                    cgroup: "/g",
                    error: "e",
                },
            ),
        ];
        for (kind, body) in bodies {
            let v = serde_json::to_value(&body).expect("serialises");
            assert_eq!(v["kind"], kind.name());
            // Verification reads every kind (a field name another kind uses with another
            // type would make it a tampered record).
            let header = crate::lineage::record::Header {
                seq: 0,
                prev: "",
                segment: 0,
                boot: "b",
                mono_ns: 0,
                time_ns: 0,
                policy_version: 0,
            };
            let line = crate::lineage::record::encode(&header, &body);
            let parsed: Result<crate::lineage::record::Parsed, _> = serde_json::from_slice(&line);
            assert!(parsed.is_ok(), "{}: {parsed:?}", kind.name());
        }
        let actions = [
            (ActionKind::Exec, Action::Exec),
            (ActionKind::Open, Action::Open),
            (ActionKind::MapExec, Action::MapExec),
            (ActionKind::Connect, Action::Connect),
            (ActionKind::Send, Action::Send),
            (ActionKind::Create, Action::Create),
            (ActionKind::Remove, Action::Remove),
            (ActionKind::Link, Action::Link),
            (ActionKind::Rename, Action::Rename),
            (ActionKind::Truncate, Action::Truncate),
            (ActionKind::Chmod, Action::Chmod),
            (ActionKind::Chown, Action::Chown),
            (ActionKind::Utimes, Action::Utimes),
            (ActionKind::Xattr, Action::Xattr),
            (ActionKind::UringCreds, Action::UringCreds),
            (ActionKind::Signal, Action::Signal),
            (ActionKind::Ptrace, Action::Ptrace),
            (ActionKind::Bpf, Action::Bpf),
            (ActionKind::Mount, Action::Mount),
            (ActionKind::Chroot, Action::Chroot),
            (ActionKind::UserNamespace, Action::UserNamespace),
            (ActionKind::KernelLoad, Action::KernelLoad),
            (ActionKind::PerfEvent, Action::PerfEvent),
            (ActionKind::CloneIntoCgroup, Action::CloneIntoCgroup),
            (ActionKind::Socket, Action::Socket),
            (ActionKind::Capability, Action::Capability),
            (ActionKind::UnixConnect, Action::UnixConnect),
            (ActionKind::UnixSend, Action::UnixSend),
            (ActionKind::Lockdown, Action::Lockdown),
            (ActionKind::Bind, Action::Bind),
            (ActionKind::Listen, Action::Listen),
            (ActionKind::Receive, Action::Receive),
        ];
        assert_eq!(actions.len(), Action::ALL.len());
        for (kind, action) in actions {
            assert_eq!(kind.name(), action_name(action));
        }
        let verdicts = [
            (Verdict::Allow, Decision::Allow),
            (Verdict::Deny, Decision::Deny),
            (Verdict::Audit, Decision::Audit),
        ];
        for (verdict, decision) in verdicts {
            assert_eq!(verdict.name(), decision_name(decision));
        }
    }

    #[test]
    fn every_given_field_must_match() {
        let v: Value = serde_json::json!({"kind": "decision", "decision": "deny",
            "action": "exec", "pid": 7, "cgroup_id": 9, "time_ns": 100});
        let f = |f: Filter| f.matches(&v);
        assert!(f(Filter::default()));
        assert!(f(Filter {
            kind: Some(Kind::Decision),
            decision: Some(Verdict::Deny),
            action: Some(ActionKind::Exec),
            pid: Some(7),
            cgroup: Some(9),
            since_ns: Some(100),
            until_ns: Some(100),
        }));
        assert!(!f(Filter {
            action: Some(ActionKind::Open),
            ..Filter::default()
        }));
        assert!(!f(Filter {
            since_ns: Some(101),
            ..Filter::default()
        }));
    }
}
