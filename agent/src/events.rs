//! Kernel decision events: parsed from ring-buffer bytes (outside input: length-checked, no
//! trust in enum values) into records that serialise as one JSON line each.

use rampart_common::{Action, Event, Reason, NO_RULE};
use serde::Serialize;
use thiserror::Error;

/// Why ring-buffer bytes were not an event.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum EventError {
    #[error("event record is {0} bytes, expected {expected}", expected = std::mem::size_of::<Event>())]
    BadSize(usize),
}

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
    /// Kernel-encoded device and inode of the target file.
    pub target_dev: u64,
    pub target_ino: u64,
}

fn action_name(raw: u32) -> &'static str {
    match raw {
        x if x == Action::Exec as u32 => "exec",
        _ => "unknown",
    }
}

/// Decodes one ring-buffer record. Unknown action or reason numbers are kept visible as
/// "unknown" rather than rejected: a decision happened and must not vanish.
pub fn parse(bytes: &[u8]) -> Result<DecisionRecord, EventError> {
    if bytes.len() != std::mem::size_of::<Event>() {
        return Err(EventError::BadSize(bytes.len()));
    }
    // SAFETY: the length equals size_of::<Event>(), Event is plain integers (every bit
    // pattern valid), and read_unaligned has no alignment requirement.
    let e: Event = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<Event>()) };
    let Event {
        ktime_ns,
        cgroup_id,
        target,
        pid,
        tid,
        uid,
        action,
        reason,
        rule_id,
        comm,
    } = e;
    let reason = Reason::ALL.iter().find(|r| **r as u32 == reason).copied();
    let comm_len = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    Ok(DecisionRecord {
        ktime_ns,
        pid,
        tid,
        uid,
        comm: String::from_utf8_lossy(&comm[..comm_len]).into_owned(),
        cgroup_id,
        action: action_name(action),
        decision: match reason {
            Some(r) if !r.denies() => "allow",
            _ => "deny",
        },
        reason: reason.map_or("unknown", Reason::name),
        rule_id: (rule_id != NO_RULE).then_some(rule_id),
        target_dev: target.dev,
        target_ino: target.ino,
    })
}

#[cfg(test)]
mod tests {
    use rampart_common::FileId;

    use super::*;

    fn bytes_of(e: &Event) -> Vec<u8> {
        // SAFETY: Event is repr(C) plain data without padding; viewing it as bytes is sound.
        unsafe { std::slice::from_raw_parts((e as *const Event).cast::<u8>(), 72) }.to_vec()
    }

    fn sample() -> Event {
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"curl");
        Event {
            ktime_ns: 42,
            cgroup_id: 7,
            target: FileId {
                dev: 1 << 20,
                ino: 99,
            },
            pid: 100,
            tid: 101,
            uid: 1000,
            action: Action::Exec as u32,
            reason: Reason::ExecNotAllowed as u32,
            rule_id: NO_RULE,
            comm,
        }
    }

    #[test]
    fn parses_a_denial() {
        let r = parse(&bytes_of(&sample())).unwrap();
        assert_eq!(r.comm, "curl");
        assert_eq!(
            (r.action, r.decision, r.reason),
            ("exec", "deny", "exec-not-allowed")
        );
        assert_eq!((r.pid, r.tid, r.uid, r.cgroup_id), (100, 101, 1000, 7));
        assert_eq!((r.target_dev, r.target_ino, r.rule_id), (1 << 20, 99, None));
    }

    #[test]
    fn unknown_reason_is_a_visible_deny() {
        let mut e = sample();
        e.reason = 9999;
        let r = parse(&bytes_of(&e)).unwrap();
        assert_eq!((r.decision, r.reason), ("deny", "unknown"));
    }

    #[test]
    fn wrong_sizes_are_rejected() {
        let raw = bytes_of(&sample());
        assert_eq!(parse(&raw[..71]), Err(EventError::BadSize(71)));
        assert_eq!(parse(&[]), Err(EventError::BadSize(0)));
        let mut long = raw.clone();
        long.push(0);
        assert_eq!(parse(&long), Err(EventError::BadSize(73)));
    }

    #[test]
    fn serialises_as_one_json_line() {
        let line = serde_json::to_string(&parse(&bytes_of(&sample())).unwrap()).unwrap();
        assert!(!line.contains('\n'));
        assert!(line.contains(r#""reason":"exec-not-allowed""#), "{line}");
        assert!(line.contains(r#""rule_id":null"#), "{line}");
    }
}
