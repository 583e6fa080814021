//! Swap on an in-memory stand-in for the maps: rollback at every step, capacity refusal.
//! The kernel side of the same invariant is proven in the VM
//! (`bundle-swap-100-times-atomic-bad-bundles-change-nothing`).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Result};
use rampart_common::MAX_PATH_RULES;

use super::{switch, Generation, LoadTimes, PolicyMaps};
use crate::{
    kernel::{
        cgroup::{By, Cgroup},
        enforcer::SlotInfo,
    },
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
    /// parent -> (pattern, slot)
    patterns: BTreeMap<String, (String, u32)>,
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
        match &cgroup.by {
            By::Name => {
                self.names.insert(cgroup.name.clone(), slot);
            }
            By::Pattern(p) => {
                self.patterns
                    .insert(p.parent.clone(), (cgroup.name.clone(), slot));
            }
            By::Id => {}
        }
        if let Some(id) = cgroup.id {
            self.governed.insert(id, slot);
        }
        Ok(())
    }
    fn ungovern(&mut self, cgroup: &Cgroup) -> Result<()> {
        match &cgroup.by {
            By::Name => {
                self.names.remove(&cgroup.name);
            }
            By::Pattern(p) => {
                self.patterns.remove(&p.parent);
            }
            By::Id => {}
        }
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
fn resolve(name: &str) -> Result<Vec<Cgroup>> {
    let id = name.trim_start_matches("/cg").parse()?;
    Ok(vec![named(name, Some(id))])
}

fn named(name: &str, id: Option<u64>) -> Cgroup {
    Cgroup {
        name: name.into(),
        path: name.into(),
        id,
        by: By::Name,
    }
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
    let remade = |name: &str| -> Result<Vec<Cgroup>> {
        let base: u64 = name.trim_start_matches("/cg").parse()?;
        let mut calls = calls.borrow_mut();
        let n = calls.entry(name.to_string()).or_default();
        *n += 1;
        Ok(vec![named(name, Some(base * 10 + *n))])
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

/// Cgroups of a host (path -> id) as the fake kernel and the agent's resolver see them.
#[derive(Default)]
struct Host {
    cgroups: std::cell::RefCell<BTreeMap<String, u64>>,
    /// Made when the pattern is resolved the n-th time (a cgroup appearing mid-swap).
    made_at_resolve: std::cell::RefCell<Option<(usize, String, u64)>>,
    resolves: std::cell::Cell<usize>,
}

impl Host {
    fn with(cgroups: &[(&str, u64)]) -> Self {
        let host = Self::default();
        for (path, id) in cgroups {
            host.cgroups.borrow_mut().insert((*path).into(), *id);
        }
        host
    }

    /// What `cgroup::open_in_hierarchy` does, over this host.
    fn resolve(&self, name: &str) -> Result<Vec<Cgroup>> {
        let cgroups = self.cgroups.borrow();
        let Some(p) = crate::kernel::cgroup_pattern::Pattern::parse(name)? else {
            return Ok(vec![named(name, cgroups.get(name).copied())]);
        };
        drop(cgroups);
        self.resolves.set(self.resolves.get() + 1);
        if let Some((n, path, id)) = self.made_at_resolve.borrow().clone() {
            if n == self.resolves.get() {
                self.cgroups.borrow_mut().insert(path, id);
            }
        }
        let matches = self
            .cgroups
            .borrow()
            .iter()
            .filter(|(path, _)| {
                path.rsplit_once('/')
                    .is_some_and(|(parent, child)| parent == p.parent && p.matches_name(child))
            })
            .map(|(path, id)| Cgroup {
                by: By::Id,
                ..named(path, Some(*id))
            })
            .collect::<Vec<_>>();
        let entry = Cgroup {
            name: name.into(),
            path: p.parent.clone().into(),
            id: None,
            by: By::Pattern(p),
        };
        Ok(std::iter::once(entry).chain(matches).collect())
    }

    /// The kernel's `cgroup_mkdir`: a new cgroup is governed by its path, else by its
    /// parent's pattern.
    fn mkdir(&self, maps: &mut FakeMaps, path: &str, id: u64) {
        self.cgroups.borrow_mut().insert(path.into(), id);
        let (parent, child) = path.rsplit_once('/').expect("a path below the root");
        let by_pattern = maps.patterns.get(parent).and_then(|(text, slot)| {
            let p = crate::kernel::cgroup_pattern::Pattern::parse(text).ok()??;
            p.matches_name(child).then_some(*slot)
        });
        if let Some(slot) = maps.names.get(path).copied().or(by_pattern) {
            maps.governed.insert(id, slot);
        }
    }
}

fn load_on(
    host: &Host,
    maps: &mut FakeMaps,
    current: Option<&Generation>,
    version: u64,
    policies: Vec<CompiledPolicy>,
) -> Result<Generation> {
    let resolve = |name: &str| host.resolve(name);
    switch(
        maps,
        &resolve,
        current,
        policies,
        info(version),
        &mut LoadTimes::default(),
    )
}

/// The first load: one policy governing `/pods/pod-*`.
fn load_pods(host: &Host, maps: &mut FakeMaps) -> Generation {
    load_on(host, maps, None, 1, vec![policy("p", &["/pods/pod-*"], 1)]).expect("v1 loads")
}

const PODS: &[(&str, u64)] = &[
    ("/pods/pod-1", 101),
    ("/pods/pod-2", 102),
    ("/pods/other", 103),
    ("/cg9", 9),
];

#[test]
fn a_pattern_governs_its_matches_now_and_later_and_a_swap_moves_all_of_them() {
    let host = Host::with(PODS);
    let mut maps = FakeMaps::default();
    let v1 = load_pods(&host, &mut maps);
    assert_eq!(maps.versions(), BTreeMap::from([(101, 1), (102, 1)]));
    assert_eq!(maps.patterns["/pods"].0, "/pods/pod-*");
    assert!(
        maps.names.is_empty(),
        "matches are governed by id: {:?}",
        maps.names
    );
    // The kernel governs a match made after the load, and not a sibling that does not match.
    host.mkdir(&mut maps, "/pods/pod-3", 104);
    host.mkdir(&mut maps, "/pods/sidecar", 105);
    assert_eq!(maps.versions().get(&104), Some(&1));
    assert_eq!(maps.versions().get(&105), None);
    // The next swap finds 104 (not recorded in v1) and moves it too: no cgroup is left on
    // a retired slot (`versions` would panic on one).
    let v2 = load_on(
        &host,
        &mut maps,
        Some(&v1),
        2,
        vec![policy("p", &["/pods/pod-*"], 1)],
    )
    .expect("v2 loads");
    assert_eq!(
        maps.versions(),
        BTreeMap::from([(101, 2), (102, 2), (104, 2)])
    );
    // A policy without the pattern ungoverns it and every match, recorded or not.
    host.mkdir(&mut maps, "/pods/pod-4", 106);
    load_on(
        &host,
        &mut maps,
        Some(&v2),
        3,
        vec![policy("q", &["/cg9"], 1)],
    )
    .expect("v3 loads");
    assert!(maps.patterns.is_empty(), "{:?}", maps.patterns);
    assert_eq!(maps.versions(), BTreeMap::from([(9, 3)]));
}

#[test]
fn moving_a_cgroup_from_its_name_to_a_pattern_keeps_it_governed() {
    let host = Host::with(PODS);
    let mut maps = FakeMaps::default();
    let v1 = load_on(
        &host,
        &mut maps,
        None,
        1,
        vec![policy("p", &["/pods/pod-1"], 1)],
    )
    .expect("v1 loads");
    load_on(
        &host,
        &mut maps,
        Some(&v1),
        2,
        vec![policy("p", &["/pods/pod-*"], 1)],
    )
    .expect("v2 loads");
    assert_eq!(maps.versions(), BTreeMap::from([(101, 2), (102, 2)]));
    assert!(
        maps.names.is_empty(),
        "the name entry is gone: {:?}",
        maps.names
    );
}

#[test]
fn a_match_made_while_the_pattern_is_being_switched_is_governed() {
    let host = Host::with(PODS);
    // Made after the first resolution, before the pattern entry is written: the kernel
    // does not govern it, the swap must.
    *host.made_at_resolve.borrow_mut() = Some((2, "/pods/pod-7".into(), 107));
    let mut maps = FakeMaps::default();
    let v1 = load_pods(&host, &mut maps);
    assert_eq!(maps.versions().get(&107), Some(&1), "{:?}", maps.governed);
    assert!(v1.governed.iter().any(|(_, c)| c.id == Some(107)));
}

#[test]
fn a_failed_switch_puts_the_previous_pattern_back() {
    let host = Host::with(PODS);
    let mut maps = FakeMaps::default();
    let v1 = load_pods(&host, &mut maps);
    let before = maps.patterns.clone();
    // The pattern entry is written, then governing pod-1 fails.
    maps.fail_govern_at = Some(maps.governs + 2);
    load_on(
        &host,
        &mut maps,
        Some(&v1),
        2,
        vec![policy("p", &["/pods/pod-1*"], 1)],
    )
    .expect_err("injected");
    assert_eq!(maps.patterns, before);
    assert_eq!(maps.versions(), BTreeMap::from([(101, 1), (102, 1)]));
}
