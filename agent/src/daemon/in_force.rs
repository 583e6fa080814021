//! The policy in force, and loading a new one over it: the swap, the anti-rollback state,
//! the lineage record and the logs, in that order.

use anyhow::Result;
use tracing::{error, info, warn};

use super::{
    intake::{Incoming, Refusal},
    recorder::Recorder,
    swap::{self, Generation, PolicyMaps},
};
use crate::{
    kernel::cgroup::Cgroup,
    policy::compile::CompiledPolicy,
    support::time::{rfc3339, unix_now},
};

/// The policy in force and the one before it (events already in the ring may come from it).
pub struct InForce {
    /// What the kernel enforces.
    pub current: Generation,
    /// The generation before it, kept to annotate events still in the ring.
    pub previous: Option<Generation>,
    /// The bundle digest (none: local files or adopted pins).
    pub digest: Option<String>,
    /// Unix seconds; cleared once the expiry has been reported.
    pub expires_at: Option<u64>,
    /// The bundle's scope.
    pub scope: Option<String>,
    /// The key ids that signed the bundle.
    pub signers: Vec<String>,
}

impl InForce {
    /// A generation an earlier agent left pinned (what it was signed by is not known).
    pub fn adopted(current: Generation) -> Self {
        Self {
            current,
            previous: None,
            digest: None,
            expires_at: None,
            scope: None,
            signers: Vec::new(),
        }
    }
}

/// The generations events may come from, newest first (for annotating them).
pub fn generations(in_force: Option<&InForce>) -> Vec<&Generation> {
    in_force.map_or_else(Vec::new, |f| {
        std::iter::once(&f.current)
            .chain(f.previous.as_ref())
            .collect()
    })
}

/// A duration in milliseconds, to 0.1 ms, for logs.
fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

/// Warns about exec rules that name nothing on this host.
fn warn_missing_programs(policies: &[CompiledPolicy]) {
    for p in policies {
        for e in p
            .paths
            .iter()
            .filter(|e| e.access & rampart_common::access::RUN != 0 && e.identity.is_none())
        {
            warn!(policy = %p.name, path = %e.path,
                "exec rule names a file that does not exist on this host; nothing runs from it");
        }
    }
}

/// Loads `incoming` over `in_force`; on success records the bundle in the anti-rollback
/// state and logs the change. Returns what is in force afterwards (`in_force` unchanged on
/// error).
pub fn apply(
    maps: &mut impl PolicyMaps,
    recorder: &mut Recorder,
    resolve: &dyn Fn(&str) -> Result<Cgroup>,
    in_force: Option<InForce>,
    mut incoming: Incoming,
) -> (Option<InForce>, Result<(), Refusal>) {
    warn_missing_programs(&incoming.policies);
    let current = in_force.as_ref().map(|f| &f.current);
    let generation = match swap::switch(
        maps,
        resolve,
        current,
        incoming.policies,
        incoming.info,
        &mut incoming.times,
    ) {
        Ok(g) => g,
        Err(e) => return (in_force, Err(Refusal::new("load", e))),
    };
    for (_, cg) in generation.governed.iter().filter(|(_, c)| c.id.is_none()) {
        warn!(cgroup = %cg.label(),
            "governed cgroup does not exist yet; it is governed from the moment it is made");
    }
    let t = incoming.times;
    let (digest, expires_at) = match &incoming.bundle {
        Some((verified, state)) => {
            if let Err(e) = state.advance(verified, unix_now()) {
                // The kernel enforces the verified bundle; only its record failed.
                error!(error = %e, "bundle loaded, but the anti-rollback state was not advanced");
            }
            info!(
                version = verified.payload.version,
                digest = %verified.digest,
                scope = %verified.payload.scope,
                expires = %rfc3339(verified.payload.expires_at),
                signers = %verified.signers.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
                verify_ms = ms(t.verify), compile_ms = ms(t.compile), install_ms = ms(t.install),
                switch_ms = ms(t.switch), retire_ms = ms(t.retire),
                in_force_ms = ms(t.to_in_force()),
                "policy in force"
            );
            (
                Some(verified.digest.clone()),
                Some(verified.payload.expires_at),
            )
        }
        None => {
            info!(
                version = 0,
                compile_ms = ms(t.compile),
                install_ms = ms(t.install),
                switch_ms = ms(t.switch),
                retire_ms = ms(t.retire),
                in_force_ms = ms(t.to_in_force()),
                "policy in force (unsigned local files)"
            );
            (None, None)
        }
    };
    let names: Vec<String> = generation
        .policies
        .iter()
        .map(|(_, p)| p.name.clone())
        .collect();
    let signers: Vec<String> = incoming
        .bundle
        .as_ref()
        .map(|(v, _)| v.signers.iter().map(ToString::to_string).collect())
        .unwrap_or_default();
    recorder.policy_change(
        in_force
            .as_ref()
            .map(|f| (f.current.info.version, f.digest.as_deref())),
        (generation.info.version, digest.as_deref()),
        &signers,
        &names,
    );
    for (slot, p) in &generation.policies {
        info!(
            policy = %p.name, slot, mode = ?p.mode, rules = p.rules.len(),
            path_entries = p.paths.len(), net_entries = p.net4.len() + p.net6.len(),
            governs = %p.governs.join(","), "policy loaded"
        );
    }
    let forced = InForce {
        previous: in_force.map(|f| f.current),
        current: generation,
        digest,
        expires_at,
        scope: incoming
            .bundle
            .as_ref()
            .map(|(v, _)| v.payload.scope.clone()),
        signers,
    };
    (Some(forced), Ok(()))
}
