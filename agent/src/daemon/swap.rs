//! Policy generations: a new set of policies replaces the one in force atomically.
//!
//! Invariant: every kernel decision is judged by exactly one complete policy. A slot in use
//! is never written. The new policies go into free slots (rules first, `loaded` last); then
//! each governed cgroup is switched: its name (`GOVERNED_PATHS[name] = new slot`, which the
//! kernel applies to cgroups made there later), then the cgroup there now
//! (`GOVERNED[cgroup] = new slot`, one map update that every later decision sees);
//! a pattern is switched like a name (`GOVERNED_PATTERNS[parent] = pattern, new slot`),
//! then each cgroup matching it now by id;
//! then, after an RCU grace period ([`PolicyMaps::synchronize`]) guarantees that no decision that read
//! the old slot is still running, the old slots are emptied. A failure before the switch
//! changes nothing; a failure during it puts the switched cgroups back.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rampart_common::{MAX_NET_RULES, MAX_PATH_RULES, MAX_POLICIES};
use tracing::{error, warn};

use crate::{
    bundle::state::Mark,
    kernel::{
        cgroup::{By, Cgroup},
        enforcer::{self, Enforcer, SlotInfo},
    },
    policy::compile::CompiledPolicy,
};

/// What a policy swap needs of the kernel's maps. [`Enforcer`] is the real one; the unit
/// tests use an in-memory fake that can be told to fail at any step.
pub trait PolicyMaps {
    /// Slots holding a policy (installed and not retired).
    fn slots_in_use(&self) -> Vec<u32>;
    /// Entries the installed slots hold in the path, IPv4 and IPv6 tries.
    fn entries_in_use(&self) -> (usize, usize, usize);
    /// Writes a policy into an unused slot and marks the slot loaded.
    fn install(&mut self, slot: u32, info: SlotInfo, policy: &CompiledPolicy) -> Result<()>;
    /// Attaches the network programs to a cgroup (once).
    fn attach_network(&mut self, cgroup: &Cgroup) -> Result<()>;
    /// Points a cgroup name, and the cgroup there now (and their descendants), at a slot
    /// (a pattern: its entry; a cgroup governed by id: its id).
    fn govern(&mut self, cgroup: &Cgroup, slot: u32) -> Result<()>;
    /// Ends governance of a cgroup.
    fn ungovern(&mut self, cgroup: &Cgroup) -> Result<()>;
    /// Empties a slot no cgroup points at any more.
    fn retire(&mut self, slot: u32) -> Result<()>;
    /// Waits until no decision that started before the call is still running.
    fn synchronize(&mut self) -> Result<()>;
    /// Mirrors the anti-rollback mark into the kernel's pinned copy.
    fn record_mark(&mut self, mark: &Mark) -> Result<()>;
}

impl PolicyMaps for Enforcer {
    fn slots_in_use(&self) -> Vec<u32> {
        Enforcer::slots_in_use(self).collect()
    }
    fn entries_in_use(&self) -> (usize, usize, usize) {
        Enforcer::entries_in_use(self)
    }
    fn install(&mut self, slot: u32, info: SlotInfo, policy: &CompiledPolicy) -> Result<()> {
        Enforcer::install(self, slot, info, policy)
    }
    fn attach_network(&mut self, cgroup: &Cgroup) -> Result<()> {
        Enforcer::attach_network(self, cgroup)
    }
    fn govern(&mut self, cgroup: &Cgroup, slot: u32) -> Result<()> {
        Enforcer::govern(self, cgroup, slot)
    }
    fn ungovern(&mut self, cgroup: &Cgroup) -> Result<()> {
        Enforcer::ungovern(self, cgroup)
    }
    fn retire(&mut self, slot: u32) -> Result<()> {
        Enforcer::retire(self, slot)
    }
    fn synchronize(&mut self) -> Result<()> {
        enforcer::synchronize()
    }
    fn record_mark(&mut self, mark: &Mark) -> Result<()> {
        Enforcer::record_mark(self, mark)
    }
}

/// How long each step of a policy load took: logged with "policy in force" (and read from
/// there by `cargo xtask bench`).
#[derive(Debug, Default, Clone, Copy)]
pub struct LoadTimes {
    /// Reading the bundle and checking its signatures, scope, time and anti-rollback state.
    pub verify: Duration,
    /// Parsing and compiling the policies, resolving exec identities on this host.
    pub compile: Duration,
    /// Writing the rules into free kernel slots.
    pub install: Duration,
    /// Pointing every governed cgroup at its new slot: from its end, every decision that
    /// starts reads the new policy.
    pub switch: Duration,
    /// After the new policy is in force: the RCU grace period (decisions that started
    /// under the old slots finish) and emptying the old slots.
    pub retire: Duration,
}

impl LoadTimes {
    /// Verify, compile, install and switch: the time until the new policy is in force.
    pub fn to_in_force(&self) -> Duration {
        self.verify + self.compile + self.install + self.switch
    }
}

/// The policies in force: which slot holds each, and which cgroups point at it.
#[derive(Debug)]
pub struct Generation {
    /// Version, expiry and host flags of its slots.
    pub info: SlotInfo,
    /// Every slot this generation holds.
    pub slots: Vec<u32>,
    /// (slot, policy); empty for a generation adopted from pinned maps.
    pub policies: Vec<(u32, CompiledPolicy)>,
    /// (slot, cgroup) for every governed cgroup.
    pub governed: Vec<(u32, Cgroup)>,
    /// The digest of the bundle its policies came from (none: local files, or adopted).
    pub bundle: Option<String>,
}

impl Generation {
    /// The generation an earlier agent left in the pinned maps, if any.
    pub fn adopt(enforcer: &mut Enforcer) -> Result<Option<Self>> {
        let adopted = enforcer.adopt()?;
        let Some((_, first)) = adopted.slots.first() else {
            return Ok(None);
        };
        Ok(Some(Self {
            info: SlotInfo {
                version: first.version,
                expires_boot_ns: first.expires_boot_ns,
                extra_flags: 0,
            },
            slots: adopted.slots.iter().map(|(s, _)| *s).collect(),
            policies: Vec::new(),
            bundle: None,
            // Names, patterns and ids are adopted apart (which id was made at which name is
            // not recorded): the next swap ungoverns each that it does not govern again.
            governed: adopted
                .names
                .into_iter()
                .map(|(name, slot)| {
                    let path = format!("(adopted cgroup {name})");
                    (slot, adopted_record(name, path, None, By::Name))
                })
                .chain(adopted.patterns.into_iter().map(|(pattern, slot)| {
                    let name = pattern.text();
                    let path = format!("(adopted cgroup pattern {name})");
                    (slot, adopted_record(name, path, None, By::Pattern(pattern)))
                }))
                .chain(adopted.ids.into_iter().map(|(id, slot)| {
                    let path = format!("(adopted cgroup id {id})");
                    (slot, adopted_record(String::new(), path, Some(id), By::Id))
                }))
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

    /// The slot this generation governs `cgroup` with: by name, by pattern, or by id for
    /// one governed by id alone.
    fn slot_of(&self, cgroup: &Cgroup) -> Option<u32> {
        self.governed
            .iter()
            .find_map(|(s, c)| same(c, cgroup).then_some(*s))
    }

    /// The slot `cgroup` had in this generation, with this generation's record when it
    /// differs in what the kernel holds (another pattern at the same parent).
    fn previous_of(&self, cgroup: &Cgroup) -> Option<(u32, Option<&Cgroup>)> {
        if let Some(slot) = self.slot_of(cgroup) {
            return Some((slot, None));
        }
        let By::Pattern(p) = &cgroup.by else {
            return None;
        };
        self.governed.iter().find_map(|(s, c)| match &c.by {
            By::Pattern(q) if q.parent == p.parent => Some((*s, Some(c))),
            _ => None,
        })
    }

    /// Whether this generation writes the `GOVERNED_PATHS` or `GOVERNED_PATTERNS` entry
    /// that `cgroup` is governed by.
    fn keeps_entry(&self, cgroup: &Cgroup) -> bool {
        self.governed
            .iter()
            .any(|(_, c)| match (&c.by, &cgroup.by) {
                (By::Name, By::Name) => c.name == cgroup.name,
                (By::Pattern(a), By::Pattern(b)) => a.parent == b.parent,
                _ => false,
            })
    }

    /// Whether this generation governs the cgroup with id `id`.
    fn keeps_id(&self, id: u64) -> bool {
        self.governed.iter().any(|(_, c)| c.id == Some(id))
    }

    /// What of `cgroup`'s kernel entries this generation does not write again: its name
    /// or pattern entry, its id; `None` when nothing is left.
    fn leftover(&self, cgroup: &Cgroup) -> Option<Cgroup> {
        let mut rest = cgroup.clone();
        if self.keeps_entry(cgroup) {
            rest.by = By::Id;
        }
        if rest.id.is_some_and(|id| self.keeps_id(id)) {
            rest.id = None;
        }
        (rest.id.is_some() || rest.by != By::Id).then_some(rest)
    }
}

/// A record adopted from pinned maps: `path` says where it came from (there is no
/// directory to point at).
fn adopted_record(name: String, path: String, id: Option<u64>, by: By) -> Cgroup {
    Cgroup {
        name,
        path: path.into(),
        id,
        by,
    }
}

/// Whether two records are the same governed cgroup: the same name, the same pattern, or
/// (for one governed by id) the same id.
fn same(a: &Cgroup, b: &Cgroup) -> bool {
    match (&a.by, &b.by) {
        (By::Name, By::Name) => a.name == b.name,
        (By::Pattern(x), By::Pattern(y)) => x == y,
        (By::Pattern(_), _) | (_, By::Pattern(_)) => false,
        _ => a.id.is_some() && a.id == b.id,
    }
}

/// Switches the kernel from `current` to `policies` (see the module invariant). Each
/// governed cgroup name is resolved with `resolve` (a pattern: to itself and the cgroups
/// matching it) before anything is written. Returns the
/// new generation, and adds the kernel steps' durations to `times`; on error the kernel
/// still enforces `current`.
pub fn switch(
    enforcer: &mut impl PolicyMaps,
    resolve: &dyn Fn(&str) -> Result<Vec<Cgroup>>,
    current: Option<&Generation>,
    policies: Vec<CompiledPolicy>,
    info: SlotInfo,
    times: &mut LoadTimes,
) -> Result<Generation> {
    let started = Instant::now();
    // Resolve every cgroup before touching the kernel.
    let mut cgroups: Vec<(usize, Cgroup)> = Vec::new();
    for (i, p) in policies.iter().enumerate() {
        for name in &p.governs {
            cgroups.extend(resolve(name)?.into_iter().map(|c| (i, c)));
        }
    }
    let in_use = enforcer.slots_in_use();
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
    check_capacity(enforcer, &policies)?;
    let mut new = Generation {
        info,
        slots: free.clone(),
        governed: cgroups.into_iter().map(|(i, c)| (free[i], c)).collect(),
        policies: free.iter().copied().zip(policies).collect(),
        bundle: None,
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
    let installed = Instant::now();
    times.install = installed - started;

    // The switch: per cgroup, its name, then its id.
    for (done, (slot, cg)) in new.governed.iter().enumerate() {
        if let Err(e) = enforcer.govern(cg, *slot) {
            for (_, back) in &new.governed[..done] {
                let restored = match current.and_then(|g| g.previous_of(back)) {
                    Some((old, before)) => enforcer.govern(before.unwrap_or(back), old),
                    None => enforcer.ungovern(back),
                };
                if let Err(e) = restored {
                    warn!(cgroup = %back.label(), error = %format!("{e:#}"),
                        "could not restore the previous policy of a cgroup");
                }
            }
            enforcer.synchronize()?;
            retire(enforcer, new.policies.iter().map(|(s, _)| *s));
            return Err(e);
        }
    }
    follow_recreated(enforcer, resolve, &mut new.governed);
    if let Some(old) = current {
        for (_, cg) in &old.governed {
            if let Some(rest) = new.leftover(cg) {
                enforcer.ungovern(&rest)?;
            }
            if new.keeps_entry(cg) || cg.by == By::Id {
                continue;
            }
            // A cgroup made at the name or matching the pattern since it was resolved was
            // governed by the kernel, under an id not recorded.
            for now in resolve(&cg.name).unwrap_or_default() {
                if let Some(id) = now.id.filter(|id| Some(*id) != cg.id && !new.keeps_id(*id)) {
                    enforcer.ungovern(&by_id(&now, id))?;
                }
            }
        }
        // In force from here: every decision that starts now reads the new slots.
        let switched = Instant::now();
        times.switch = switched - installed;
        enforcer.synchronize()?;
        retire(enforcer, old.slots.iter().copied());
        times.retire = switched.elapsed();
    } else {
        times.switch = installed.elapsed();
    }
    Ok(new)
}

/// Governs the cgroups made at a governed name, or matching a governed pattern, after it
/// was resolved and before its entry was written (later ones the kernel governs as it makes
/// them), and records every current id. A name that cannot be resolved again keeps its
/// record: the kernel governs it by name.
fn follow_recreated(
    enforcer: &mut impl PolicyMaps,
    resolve: &dyn Fn(&str) -> Result<Vec<Cgroup>>,
    governed: &mut Vec<(u32, Cgroup)>,
) {
    let mut found = Vec::new();
    for (i, (slot, cg)) in governed.iter().enumerate() {
        if cg.by == By::Id {
            continue;
        }
        for now in resolve(&cg.name).unwrap_or_default() {
            let Some(id) = now.id else { continue };
            let known = match now.by {
                By::Name => cg.id == Some(id),
                By::Id => governed.iter().any(|(_, c)| c.id == Some(id)),
                By::Pattern(_) => true,
            };
            if !known {
                found.push((i, *slot, now));
            }
        }
    }
    for (i, slot, now) in found {
        match enforcer.govern(&now, slot) {
            Ok(()) if now.by == By::Name => governed[i].1 = now,
            Ok(()) => governed.push((slot, now)),
            Err(e) => error!(cgroup = %now.label(), error = %format!("{e:#}"),
                "a cgroup made at a governed path during the swap could not be governed; \
                 reload the policy (cgroups made there from now on are governed)"),
        }
    }
}

/// The record governing only the id `id` of `cgroup`.
fn by_id(cgroup: &Cgroup, id: u64) -> Cgroup {
    Cgroup {
        id: Some(id),
        by: By::Id,
        ..cgroup.clone()
    }
}

/// Refuses, before any kernel write, policies whose entries do not fit the rule tries next
/// to the policy in force (a swap holds both until the switch is done).
fn check_capacity(enforcer: &impl PolicyMaps, policies: &[CompiledPolicy]) -> Result<()> {
    let (paths, net4, net6) = enforcer.entries_in_use();
    let need = policies.iter().fold((0, 0, 0), |(p, n4, n6), c| {
        // Local-address rules (`spec.listen`) share the tries with the destinations.
        (
            p + c.paths.len(),
            n4 + c.net4.len() + c.listen4.len(),
            n6 + c.net6.len() + c.listen6.len(),
        )
    });
    for (what, used, need, cap) in [
        ("path", paths, need.0, MAX_PATH_RULES),
        ("IPv4", net4, need.1, MAX_NET_RULES),
        ("IPv6", net6, need.2, MAX_NET_RULES),
    ] {
        if used + need > cap as usize {
            bail!(
                "the new policies need {need} {what} rule entries; the kernel map holds {cap} \
                 and the policy in force uses {used} (a swap keeps both until the switch): \
                 split the policy or reduce its rules"
            );
        }
    }
    Ok(())
}

/// Empties slots no cgroup points at; failures leave unreachable entries behind, which is
/// logged (they cost map space, not correctness).
fn retire(enforcer: &mut impl PolicyMaps, slots: impl Iterator<Item = u32>) {
    for slot in slots {
        if let Err(e) = enforcer.retire(slot) {
            warn!(slot, error = %format!("{e:#}"), "could not empty a retired policy slot");
        }
    }
}

#[cfg(test)]
mod tests;
