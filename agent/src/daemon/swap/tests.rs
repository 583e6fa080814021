//! Swap on an in-memory stand-in for the maps: rollback at every step, capacity refusal.
//! The kernel side of the same invariant is proven in the VM
//! (`bundle-swap-100-times-atomic-bad-bundles-change-nothing`).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Result};
use rampart_common::MAX_PATH_RULES;

use super::{switch, Generation, LoadTimes, PolicyMaps};
use crate::{
    kernel::{cgroup::Cgroup, enforcer::SlotInfo},
    policy::{
        compile::{CompiledPolicy, Literal},
        host::compile_sources,
        source::PolicySource,
    },
};

/// The maps as a swap sees them, with a failure injected at the n-th call of one step.
#[derive(Default)]
struct FakeMaps {
    /// slot -> (version, path entries)
    slots: BTreeMap<u32, (u64, usize)>,
    governed: BTreeMap<u64, u32>,
    names: BTreeMap<String, u32>,
    attached: BTreeSet<u64>,
    fail_install_at: Option<usize>,
    fail_govern_at: Option<usize>,
    installs: usize,
    governs: usize,
    synchronized: usize,
}

impl PolicyMaps for FakeMaps {
    fn slots_in_use(&self) -> Vec<u32> {
        self.slots.keys().copied().collect()
    }
    fn entries_in_use(&self) -> (usize, usize, usize) {
        (self.slots.values().map(|(_, n)| n).sum(), 0, 0)
    }
    fn install(&mut self, slot: u32, info: SlotInfo, policy: &CompiledPolicy) -> Result<()> {
        self.installs += 1;
        if self.slots.contains_key(&slot) {
            bail!("slot {slot} is in use");
        }
        // Like the enforcer: the slot counts as in use from the first write.
        self.slots.insert(slot, (info.version, policy.paths.len()));
        if self.fail_install_at == Some(self.installs) {
            bail!("injected install failure");
        }
        Ok(())
    }
    fn attach_network(&mut self, cgroup: &Cgroup) -> Result<()> {
        self.attached.extend(cgroup.id);
        Ok(())
    }
    fn govern(&mut self, cgroup: &Cgroup, slot: u32) -> Result<()> {
        self.governs += 1;
        if self.fail_govern_at == Some(self.governs) {
            bail!("injected govern failure");
        }
        if !cgroup.name.is_empty() {
            self.names.insert(cgroup.name.clone(), slot);
        }
        if let Some(id) = cgroup.id {
            self.governed.insert(id, slot);
        }
        Ok(())
    }
    fn ungovern(&mut self, cgroup: &Cgroup) -> Result<()> {
        self.names.remove(&cgroup.name);
        if let Some(id) = cgroup.id {
            self.governed.remove(&id);
        }
        Ok(())
    }
    fn retire(&mut self, slot: u32) -> Result<()> {
        self.slots.remove(&slot);
        Ok(())
    }
    fn synchronize(&mut self) -> Result<()> {
        self.synchronized += 1;
        Ok(())
    }
    fn record_mark(&mut self, _mark: &crate::bundle::state::Mark) -> Result<()> {
        Ok(())
    }
}

impl FakeMaps {
    /// The version each governed cgroup is judged by.
    fn versions(&self) -> BTreeMap<u64, u64> {
        self.governed
            .iter()
            .map(|(cg, slot)| (*cg, self.slots[slot].0))
            .collect()
    }
}

/// Cgroup ids are the number in the name: `/cg3` is 3.
fn resolve(name: &str) -> Result<Cgroup> {
    let id = name.trim_start_matches("/cg").parse()?;
    Ok(Cgroup {
        name: name.into(),
        path: name.into(),
        id: Some(id),
    })
}

fn policy(name: &str, governs: &[&str], files: usize) -> CompiledPolicy {
    let files: String = (0..files)
        .map(|i| format!("\n    - {{path: /data/{name}/{i}, access: [read]}}"))
        .collect();
    let text = format!(
        "apiVersion: rampart.dev/v1alpha1\nkind: Policy\nmetadata:\n  name: {name}\nspec:\n  \
         governs: [{}]\n  files:{files}\n",
        governs.join(", ")
    );
    let source = PolicySource::parse(&format!("{name}.yaml"), &text).expect("test policy parses");
    let mut compiled = compile_sources(&[source], &Literal).expect("test policy compiles");
    compiled.pop().expect("one policy")
}

fn info(version: u64) -> SlotInfo {
    SlotInfo {
        version,
        ..SlotInfo::default()
    }
}

fn load(
    maps: &mut FakeMaps,
    current: Option<&Generation>,
    version: u64,
    policies: Vec<CompiledPolicy>,
) -> Result<Generation> {
    switch(
        maps,
        &resolve,
        current,
        policies,
        info(version),
        &mut LoadTimes::default(),
    )
}

fn three_cgroups(version: u64) -> Vec<CompiledPolicy> {
    vec![
        policy(&format!("a{version}"), &["/cg1", "/cg2"], 2),
        policy(&format!("b{version}"), &["/cg3"], 2),
    ]
}

#[test]
fn a_swap_moves_every_cgroup_and_retires_the_old_slots_after_a_grace_period() {
    let mut maps = FakeMaps::default();
    let v1 = load(&mut maps, None, 1, three_cgroups(1)).expect("v1 loads");
    let v2 = load(&mut maps, Some(&v1), 2, three_cgroups(2)).expect("v2 loads");
    assert_eq!(maps.versions(), BTreeMap::from([(1, 2), (2, 2), (3, 2)]));
    assert_eq!(maps.slots_in_use(), v2.slots, "v1's slots are emptied");
    assert!(
        v1.slots.iter().all(|s| !v2.slots.contains(s)),
        "new slots only"
    );
    assert_eq!(maps.synchronized, 1, "one grace period before retiring v1");
}

#[test]
fn a_failure_at_the_kth_cgroup_leaves_the_previous_policy_in_force() {
    for k in 1..=3 {
        let mut maps = FakeMaps::default();
        let v1 = load(&mut maps, None, 1, three_cgroups(1)).expect("v1 loads");
        let before = maps.slots_in_use();
        maps.fail_govern_at = Some(maps.governs + k);
        let err = load(&mut maps, Some(&v1), 2, three_cgroups(2)).expect_err("injected");
        assert!(format!("{err:#}").contains("injected govern failure"));
        assert_eq!(
            maps.versions(),
            BTreeMap::from([(1, 1), (2, 1), (3, 1)]),
            "failure at cgroup {k}: every cgroup is back on version 1"
        );
        assert_eq!(
            maps.slots_in_use(),
            before,
            "failure at cgroup {k}: v2's slots emptied"
        );
    }
}

#[test]
fn a_failure_at_the_first_load_governs_nothing() {
    let mut maps = FakeMaps {
        fail_govern_at: Some(2),
        ..FakeMaps::default()
    };
    load(&mut maps, None, 1, three_cgroups(1)).expect_err("injected");
    assert!(maps.governed.is_empty(), "{:?}", maps.governed);
    assert!(maps.slots_in_use().is_empty());
}

#[test]
fn a_failed_install_empties_the_new_slots_and_switches_nothing() {
    let mut maps = FakeMaps::default();
    let v1 = load(&mut maps, None, 1, three_cgroups(1)).expect("v1 loads");
    let before = maps.slots_in_use();
    maps.fail_install_at = Some(maps.installs + 2);
    load(&mut maps, Some(&v1), 2, three_cgroups(2)).expect_err("injected");
    assert_eq!(maps.versions(), BTreeMap::from([(1, 1), (2, 1), (3, 1)]));
    assert_eq!(maps.slots_in_use(), before);
}

#[test]
fn a_cgroup_the_new_policy_drops_is_ungoverned() {
    let mut maps = FakeMaps::default();
    let v1 = load(&mut maps, None, 1, three_cgroups(1)).expect("v1 loads");
    load(&mut maps, Some(&v1), 2, vec![policy("only", &["/cg2"], 1)]).expect("v2 loads");
    assert_eq!(maps.versions(), BTreeMap::from([(2, 2)]));
}

#[test]
fn a_policy_that_does_not_fit_beside_the_one_in_force_is_refused_before_any_write() {
    let mut maps = FakeMaps::default();
    let v1 = load(&mut maps, None, 1, three_cgroups(1)).expect("v1 loads");
    // Pretend the policy in force fills the path trie but for one entry.
    let slot = v1.slots[0];
    maps.slots.insert(slot, (1, MAX_PATH_RULES as usize - 1));
    let installs = maps.installs;
    let err =
        load(&mut maps, Some(&v1), 2, vec![policy("big", &["/cg1"], 2)]).expect_err("does not fit");
    let msg = format!("{err:#}");
    assert!(msg.contains("path rule entries"), "{msg}");
    assert_eq!(maps.installs, installs, "nothing was written");
    assert_eq!(maps.versions()[&1], 1);
}

#[test]
fn cgroups_that_cannot_be_resolved_change_nothing() {
    let mut maps = FakeMaps::default();
    let v1 = load(&mut maps, None, 1, three_cgroups(1)).expect("v1 loads");
    let installs = maps.installs;
    load(&mut maps, Some(&v1), 2, vec![policy("bad", &["/nope"], 1)]).expect_err("unresolvable");
    assert_eq!(maps.installs, installs);
    assert_eq!(maps.versions(), BTreeMap::from([(1, 1), (2, 1), (3, 1)]));
}

#[test]
fn a_cgroup_made_again_during_the_swap_is_governed_under_its_new_id() {
    // Each resolution of `/cgN` finds a newer cgroup: N*10 + how often it was resolved.
    let calls = std::cell::RefCell::new(BTreeMap::<String, u64>::new());
    let remade = |name: &str| -> Result<Cgroup> {
        let base: u64 = name.trim_start_matches("/cg").parse()?;
        let mut calls = calls.borrow_mut();
        let n = calls.entry(name.to_string()).or_default();
        *n += 1;
        Ok(Cgroup {
            name: name.into(),
            path: name.into(),
            id: Some(base * 10 + *n),
        })
    };
    let mut maps = FakeMaps::default();
    let v1 = switch(
        &mut maps,
        &remade,
        None,
        three_cgroups(1),
        info(1),
        &mut LoadTimes::default(),
    )
    .expect("v1 loads");
    // The cgroups there after the names were written are governed, and recorded.
    for id in [12, 22, 32] {
        assert_eq!(
            maps.versions().get(&id),
            Some(&1),
            "cgroup {id}: {:?}",
            maps.governed
        );
    }
    let recorded: Vec<Option<u64>> = v1.governed.iter().map(|(_, c)| c.id).collect();
    assert_eq!(recorded, [Some(12), Some(22), Some(32)]);
    assert_eq!(
        maps.names.len(),
        3,
        "every name is governed: {:?}",
        maps.names
    );

    // The kernel's part, as the tracepoints do it: /cg3 is removed (ids 31 and 32 leave
    // GOVERNED) and made again as 33, governed by its name's slot as it is made.
    let slot3 = maps.names["/cg3"];
    maps.governed.retain(|id, _| *id / 10 != 3);
    maps.governed.insert(33, slot3);
    // A policy that drops /cg3 ungoverns the cgroup there now, not only the recorded one.
    let v2 = switch(
        &mut maps,
        &remade,
        Some(&v1),
        vec![policy("a2", &["/cg1", "/cg2"], 2)],
        info(2),
        &mut LoadTimes::default(),
    )
    .expect("v2 loads");
    assert!(!maps.names.contains_key("/cg3"), "{:?}", maps.names);
    let left: Vec<u64> = maps
        .governed
        .keys()
        .filter(|id| **id / 10 == 3)
        .copied()
        .collect();
    assert!(left.is_empty(), "cgroups at /cg3 still governed: {left:?}");
    assert!(v2.governed.iter().all(|(_, c)| c.name != "/cg3"));
}
