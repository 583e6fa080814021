//! The record of one kernel decision: what the agent emits as a JSON line and the lineage
//! records (decoded from the kernel's event by `kernel::events`).

use serde::Serialize;

/// A decision, in the form the agent emits (and the lineage will record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecisionRecord {
    pub ktime_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub uid: u32,
    pub comm: String,
    pub cgroup_id: u64,
    pub action: &'static str,
    pub decision: &'static str,
    pub reason: &'static str,
    /// `None` for a default deny.
    pub rule_id: Option<u32>,
    /// The policy slot that decided, and its version.
    pub policy_id: u32,
    pub policy_version: u64,
    /// Set by the agent from its loaded policies: the policy name and the rule's field.
    pub policy: Option<String>,
    pub rule: Option<String>,
    /// The digest of the bundle the deciding policy came from (none: local files or an
    /// adopted generation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bundle: Option<String>,
    /// The requested access of a file action (`read,write`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<String>,
    /// The path the kernel resolved (file actions), cut to the event's buffer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Whether `path` holds only the first bytes of a longer path.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub path_truncated: bool,
    /// Kernel-encoded device and inode of the target file (file actions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_dev: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_ino: Option<u64>,
    /// `ADDR:PORT/PROTO` (network actions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The other process of a signal or ptrace decision (its pid).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_pid: Option<u32>,
}
