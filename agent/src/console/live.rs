//! What a running daemon shows its console: a snapshot it publishes after each change and
//! tick (the console never touches the daemon's state), and whether it is ready.

use std::sync::Arc;

use serde::Serialize;

use crate::policy::compile::CompiledPolicy;

/// The policy in force, as the console shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PolicyView {
    pub version: u64,
    pub digest: Option<String>,
    pub scope: Option<String>,
    pub signers: Vec<String>,
    /// Unix seconds (none: does not expire).
    pub expires_at: Option<u64>,
    /// Policy names, and the cgroups governed (as named in the policies).
    pub policies: Vec<String>,
    pub governed: Vec<String>,
    /// Compiled policies, for the explain form (empty for an adopted generation).
    #[serde(skip)]
    pub compiled: Arc<Vec<CompiledPolicy>>,
    /// Offline without the bundle archive: only what the lineage's policy-change record
    /// says (no scope, expiry or governed cgroups).
    pub lineage_only: bool,
}

/// The daemon's state as last published.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Live {
    /// False until the daemon has started enforcing.
    pub started: bool,
    pub policy: Option<PolicyView>,
    /// Whether the bundle in force has expired (governed cgroups fail closed).
    pub expired: bool,
    /// (hook, attached and in place).
    pub hooks: Vec<(String, bool)>,
    /// None: no lineage configured.
    pub lineage_writable: Option<bool>,
    pub lineage_records: Option<u64>,
    pub pinned: bool,
    pub event_drops: u64,
    pub tamper_found: u64,
    pub tamper_repaired: u64,
    /// The last policy load's steps and their seconds (prepare, swap).
    pub load_seconds: Vec<(String, f64)>,
}

/// Why a daemon is not ready (each a sentence), as `/readyz` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub reasons: Vec<String>,
}

impl Live {
    /// Ready: a policy in force and not expired, every hook attached, and the lineage (if
    /// configured) writable.
    pub fn readiness(&self) -> Readiness {
        let mut reasons = Vec::new();
        if !self.started {
            reasons.push("the daemon has not started enforcing yet".to_owned());
        }
        match &self.policy {
            None if self.started => reasons.push("no policy is in force".to_owned()),
            None => {}
            Some(_) if self.expired => reasons.push(
                "the bundle in force has expired: governed cgroups fail closed until a newer \
                 one is loaded"
                    .to_owned(),
            ),
            Some(_) => {}
        }
        for (hook, attached) in &self.hooks {
            if !attached {
                reasons.push(format!("hook {hook} is detached and could not be put back"));
            }
        }
        if self.lineage_writable == Some(false) {
            reasons.push(
                "the lineage cannot be written (records are buffered, then counted as a gap)"
                    .to_owned(),
            );
        }
        Readiness {
            ready: reasons.is_empty(),
            reasons,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready_daemon() -> Live {
        Live {
            started: true,
            policy: Some(PolicyView {
                version: 3,
                ..PolicyView::default()
            }),
            hooks: vec![
                ("file_open".into(), true),
                ("bprm_check_security".into(), true),
            ],
            lineage_writable: Some(true),
            ..Live::default()
        }
    }

    #[test]
    fn ready_only_when_every_condition_holds() {
        assert_eq!(
            ready_daemon().readiness(),
            Readiness {
                ready: true,
                reasons: vec![]
            }
        );
        type Change = fn(&mut Live);
        let cases: [(Change, &str); 5] = [
            (|l| l.started = false, "not started"),
            (|l| l.policy = None, "no policy is in force"),
            (|l| l.expired = true, "has expired"),
            (
                |l| l.hooks[1].1 = false,
                "hook bprm_check_security is detached",
            ),
            (
                |l| l.lineage_writable = Some(false),
                "lineage cannot be written",
            ),
        ];
        for (change, why) in cases {
            let mut live = ready_daemon();
            change(&mut live);
            let r = live.readiness();
            assert!(!r.ready, "{why}");
            assert!(
                r.reasons
                    .iter()
                    .any(|s| s.contains(why.trim_start_matches("not "))),
                "{why}: {:?}",
                r.reasons
            );
        }
        // No lineage configured is not a reason.
        let mut live = ready_daemon();
        live.lineage_writable = None;
        assert!(live.readiness().ready);
    }
}
