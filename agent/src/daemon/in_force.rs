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
    kernel::{
        cgroup::{By, Cgroup},
        cgroup_pattern::covers,
        enforcer::SlotInfo,
    },
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

/// A bundle's deadline is never extended: loading the version in force again (a reload, or
/// the first load after a restart that adopted its pinned slots) keeps the earlier of the
/// two boot-time deadlines. The new one is computed from the wall clock, so without this a
/// clock set back (within the issue-time skew) would revive an expired bundle.
pub fn keep_deadline(current: Option<&Generation>, info: &mut SlotInfo) {
    let Some(current) = current else {
        return;
    };
    let held = current.info.expires_boot_ns;
    if current.info.version == info.version && info.version != 0 && held != 0 {
        info.expires_boot_ns = info.expires_boot_ns.min(held);
    }
}

/// Loads `incoming` over `in_force`; on success records the bundle in the anti-rollback
/// state and logs the change. Returns what is in force afterwards (`in_force` unchanged on
/// error).
pub fn apply(
    maps: &mut impl PolicyMaps,
    recorder: &mut Recorder,
    resolve: &dyn Fn(&str) -> Result<Vec<Cgroup>>,
    in_force: Option<InForce>,
    mut incoming: Incoming,
) -> (Option<InForce>, Result<(), Refusal>) {
    warn_missing_programs(&incoming.policies);
    let current = in_force.as_ref().map(|f| &f.current);
    keep_deadline(current, &mut incoming.info);
    let mut generation = match swap::switch(
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
    for (_, cg) in &generation.governed {
        match cg.by {
            By::Pattern(_) => {
                let matches = generation
                    .governed
                    .iter()
                    .filter(|(_, c)| c.by == By::Id && covers(&cg.name, &c.name))
                    .count();
                info!(pattern = %cg.label(), matches,
                    "governed cgroup pattern: the cgroups matching it now are governed, and \
                     each one made later from the moment it is made");
            }
            By::Name if cg.id.is_none() => warn!(cgroup = %cg.label(),
                "governed cgroup does not exist yet; it is governed from the moment it is made"),
            By::Name | By::Id => {}
        }
    }
    let t = incoming.times;
    let (digest, expires_at) = match &incoming.bundle {
        Some((verified, state)) => {
            // For replay: the bundle as it was loaded, by digest, beside the state.
            if let Err(e) = state.archive(verified) {
                warn!(error = %format!("{e:#}"), digest = %verified.digest,
                    "bundle loaded, but not archived: lineage replay will not find it");
            }
            match state.advance(verified, unix_now()) {
                Ok((_, mark)) => {
                    if let Err(e) = maps.record_mark(&mark) {
                        error!(error = %format!("{e:#}"),
                            "bundle loaded, but the pinned anti-rollback mark was not advanced");
                    }
                }
                // The kernel enforces the verified bundle; only its record failed.
                Err(e) => error!(error = %e,
                    "bundle loaded, but the anti-rollback state was not advanced"),
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
    generation.bundle = digest.clone();
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
        &incoming.resolutions,
    );
    for (slot, p) in &generation.policies {
        info!(
            policy = %p.name, slot, mode = ?p.mode, rules = p.rules.len(),
            path_entries = p.paths.len(), net_entries = p.net4.len() + p.net6.len(),
            listen_entries = p.listen4.len() + p.listen6.len(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn generation(version: u64, expires_boot_ns: u64) -> Generation {
        Generation {
            info: SlotInfo {
                version,
                expires_boot_ns,
                extra_flags: 0,
            },
            slots: vec![0],
            policies: Vec::new(),
            governed: Vec::new(),
            bundle: None,
        }
    }

    fn info(version: u64, expires_boot_ns: u64) -> SlotInfo {
        SlotInfo {
            version,
            expires_boot_ns,
            extra_flags: 0,
        }
    }

    #[test]
    fn the_same_version_never_gets_a_later_deadline() {
        let held = generation(3, 1_000);
        let mut later = info(3, 5_000);
        keep_deadline(Some(&held), &mut later);
        assert_eq!(
            later.expires_boot_ns, 1_000,
            "a clock set back must not extend it"
        );
        let mut earlier = info(3, 800);
        keep_deadline(Some(&held), &mut earlier);
        assert_eq!(earlier.expires_boot_ns, 800);
    }

    #[test]
    fn a_newer_version_or_nothing_in_force_sets_its_own_deadline() {
        let mut newer = info(4, 5_000);
        keep_deadline(Some(&generation(3, 1_000)), &mut newer);
        assert_eq!(newer.expires_boot_ns, 5_000);
        let mut first = info(1, 5_000);
        keep_deadline(None, &mut first);
        assert_eq!(first.expires_boot_ns, 5_000);
        // Local files (version 0) and slots without a deadline are left alone.
        let mut files = info(0, 0);
        keep_deadline(Some(&generation(0, 0)), &mut files);
        assert_eq!(files.expires_boot_ns, 0);
    }
}
