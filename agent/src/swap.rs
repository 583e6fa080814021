//! Policy generations: a new set of policies replaces the one in force atomically.
//!
//! Invariant: every kernel decision is judged by exactly one complete policy. A slot in use
//! is never written. The new policies go into free slots (rules first, `loaded` last); then
//! each governed cgroup is switched with one map update (`GOVERNED[cgroup] = new slot`);
//! then, after an RCU grace period ([`synchronize`]) guarantees that no decision that read
//! the old slot is still running, the old slots are emptied. A failure before the switch
//! changes nothing; a failure during it puts the switched cgroups back.

use std::path::Path;

use anyhow::{bail, Context, Result};
use rampart_common::MAX_POLICIES;
use tracing::warn;

use crate::{
    cgroup::{self, Cgroup},
    loader::{synchronize, Enforcer, SlotInfo},
    policy::CompiledPolicy,
};

/// The policies in force: which slot holds each, and which cgroups point at it.
pub struct Generation {
    pub info: SlotInfo,
    /// Every slot this generation holds.
    pub slots: Vec<u32>,
    /// (slot, policy); empty for a generation adopted from pinned maps.
    pub policies: Vec<(u32, CompiledPolicy)>,
    /// (slot, cgroup) for every governed cgroup.
    pub governed: Vec<(u32, Cgroup)>,
}

impl Generation {
    /// The generation an earlier agent left in the pinned maps, if any.
    pub fn adopt(enforcer: &mut Enforcer) -> Result<Option<Self>> {
        let (slots, governed) = enforcer.adopt()?;
        let Some((_, first)) = slots.first() else {
            return Ok(None);
        };
        Ok(Some(Self {
            info: SlotInfo {
                version: first.version,
                expires_boot_ns: first.expires_boot_ns,
                extra_flags: 0,
            },
            slots: slots.iter().map(|(s, _)| *s).collect(),
            policies: Vec::new(),
            governed: governed
                .into_iter()
                .map(|(id, slot)| {
                    (
                        slot,
                        Cgroup {
                            path: format!("(adopted cgroup id {id})").into(),
                            id,
                            level: 0,
                        },
                    )
                })
                .collect(),
        }))
    }

    /// The policy in `slot`, if this generation holds it with `version`.
    pub fn policy(&self, slot: u32, version: u64) -> Option<&CompiledPolicy> {
        if version != self.info.version {
            return None;
        }
        self.policies
            .iter()
            .find_map(|(s, p)| (*s == slot).then_some(p))
    }

    fn slot_of(&self, cgroup: u64) -> Option<u32> {
        self.governed
            .iter()
            .find_map(|(s, c)| (c.id == cgroup).then_some(*s))
    }
}

/// Switches the kernel from `current` to `policies` (see the module invariant). Returns the
/// new generation; on error the kernel still enforces `current`.
pub fn switch(
    enforcer: &mut Enforcer,
    hierarchy: &Path,
    current: Option<&Generation>,
    policies: Vec<CompiledPolicy>,
    info: SlotInfo,
) -> Result<Generation> {
    // Resolve every cgroup before touching the kernel.
    let mut cgroups: Vec<(usize, Cgroup)> = Vec::new();
    for (i, p) in policies.iter().enumerate() {
        for name in &p.governs {
            cgroups.push((i, cgroup::open_in_hierarchy(hierarchy, name)?));
        }
    }
    let in_use: Vec<u32> = enforcer.slots_in_use().collect();
    let free: Vec<u32> = (0..MAX_POLICIES)
        .filter(|s| !in_use.contains(s))
        .take(policies.len())
        .collect();
    if free.len() < policies.len() {
        bail!(
            "{} policies need free kernel slots and only {} of {MAX_POLICIES} are free",
            policies.len(),
            free.len()
        );
    }
    let new = Generation {
        info,
        slots: free.clone(),
        governed: cgroups.into_iter().map(|(i, c)| (free[i], c)).collect(),
        policies: free.iter().copied().zip(policies).collect(),
    };

    let prepared = (|| -> Result<()> {
        for (slot, p) in &new.policies {
            enforcer
                .install(*slot, info, p)
                .with_context(|| format!("loading policy `{}`", p.name))?;
        }
        for (_, cg) in &new.governed {
            enforcer.attach_network(cg)?;
        }
        Ok(())
    })();
    if let Err(e) = prepared {
        retire(enforcer, new.policies.iter().map(|(s, _)| *s));
        return Err(e);
    }

    // The switch: one map update per cgroup.
    for (done, (slot, cg)) in new.governed.iter().enumerate() {
        if let Err(e) = enforcer.govern(cg, *slot) {
            for (_, back) in &new.governed[..done] {
                let restored = match current.and_then(|g| g.slot_of(back.id)) {
                    Some(old) => enforcer.govern(back, old),
                    None => enforcer.ungovern(back),
                };
                if let Err(e) = restored {
                    warn!(cgroup = %back.path.display(), error = %format!("{e:#}"),
                        "could not restore the previous policy of a cgroup");
                }
            }
            synchronize()?;
            retire(enforcer, new.policies.iter().map(|(s, _)| *s));
            return Err(e);
        }
    }
    if let Some(old) = current {
        for (_, cg) in &old.governed {
            if new.slot_of(cg.id).is_none() {
                enforcer.ungovern(cg)?;
            }
        }
        synchronize()?;
        retire(enforcer, old.slots.iter().copied());
    }
    Ok(new)
}

/// Empties slots no cgroup points at; failures leave unreachable entries behind, which is
/// logged (they cost map space, not correctness).
fn retire(enforcer: &mut Enforcer, slots: impl Iterator<Item = u32>) {
    for slot in slots {
        if let Err(e) = enforcer.retire(slot) {
            warn!(slot, error = %format!("{e:#}"), "could not empty a retired policy slot");
        }
    }
}
