//! The enforcer: loads Rampart's kernel programs and fills their maps from compiled
//! policies.
//!
//! Order matters for fail-closed behaviour: a policy's rules are written before its slot is
//! marked loaded, and cgroups are marked governed last, so a governed task never meets a
//! half-filled policy.

use anyhow::{anyhow, Context, Result};
use std::{os::unix::fs::MetadataExt, path::Path};

use aya::{
    maps::{
        lpm_trie::{Key, LpmTrie},
        Array, HashMap, MapData, PerCpuArray, RingBuf,
    },
    programs::{links::FdLink, BtfTracePoint, CgroupSockAddr, Lsm},
    Btf, Ebpf, EbpfLoader,
};
use ipnet::IpNet;
use rampart_common::{
    access, maps, net_key_policy, programs, CgroupPathKey, CgroupPattern, FileId, KernelLayout,
    MapExecKey, Net4Key, Net6Key, NetRule, PathKey, PathRule, PolicyInfo, PortRange, Reason,
    KERNEL_LAYOUT_SYMBOL, LISTEN_RULES, MAX_POLICIES, PATH_KEY_BYTES, PINNED_MAPS,
    PORT_RANGES_PER_NET_RULE, QUIET_DENIALS,
};

use super::{
    cgroup::{By, Cgroup},
    cgroup_pattern::Pattern,
    integrity::{self, Tamper},
    pins::Pins,
    sys,
};
use crate::policy::compile::{CompiledPolicy, Identity, NetEntry};

/// The eBPF object compiled into this binary by `cargo xtask build-ebpf`.
#[cfg(rampart_ebpf_embedded)]
fn embedded_object() -> Result<&'static [u8]> {
    Ok(aya::include_bytes_aligned!(concat!(
        env!("OUT_DIR"),
        "/rampart.bpf.o"
    )))
}

#[cfg(not(rampart_ebpf_embedded))]
fn embedded_object() -> Result<&'static [u8]> {
    Err(anyhow!(
        "this rampart binary was built without its kernel programs: run \
         `cargo xtask build-ebpf` and rebuild the agent"
    ))
}

/// Whether this binary carries its kernel programs.
pub const fn has_embedded_object() -> bool {
    cfg!(rampart_ebpf_embedded)
}

/// The LPM key of a path entry in policy slot `slot`.
pub fn path_key(slot: u16, key_bytes: &[u8]) -> Key<PathKey> {
    let mut path = [0u8; PATH_KEY_BYTES];
    let n = key_bytes.len().min(PATH_KEY_BYTES);
    path[..n].copy_from_slice(&key_bytes[..n]);
    Key::new(
        16 + 8 * n as u32,
        PathKey {
            policy: slot.to_be_bytes(),
            path,
        },
    )
}

fn missing(name: &str) -> anyhow::Error {
    anyhow!("map {name} missing from the eBPF object")
}

/// Keys written by [`Enforcer::insert_net`] and whether all were.
struct Inserted<K> {
    keys: Vec<Key<K>>,
    result: Result<()>,
}

/// Every key of an LPM trie.
fn trie_keys<K: aya::Pod, V: aya::Pod>(map: &mut aya::maps::Map) -> Result<Vec<Key<K>>> {
    let trie: LpmTrie<_, K, V> = LpmTrie::try_from(map)?;
    Ok(trie.keys().collect::<Result<_, _>>()?)
}

/// Removes `keys` from an LPM trie; keys already gone are fine.
fn remove_all<K: aya::Pod, V: aya::Pod>(
    map: &mut aya::maps::Map,
    keys: impl IntoIterator<Item = Key<K>>,
) -> Result<()> {
    let mut trie: LpmTrie<_, K, V> = LpmTrie::try_from(map)?;
    for key in keys {
        match trie.remove(&key) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
            Err(e) => return Err(e).context("removing a rule of a retired policy"),
        }
    }
    Ok(())
}

/// The kernel value of a network entry.
pub fn net_rule(entry: &NetEntry) -> Result<NetRule> {
    anyhow::ensure!(
        entry.ports.len() <= PORT_RANGES_PER_NET_RULE,
        "{}: too many port ranges",
        entry.cidr
    );
    let mut ranges = [PortRange::default(); PORT_RANGES_PER_NET_RULE];
    for (slot, p) in ranges.iter_mut().zip(&entry.ports) {
        *slot = PortRange {
            rule_id: p.rule_id,
            first: p.first,
            last: p.last,
            protocol: p.protocol_number(),
        };
    }
    Ok(NetRule {
        count: entry.ports.len() as u32,
        rule_id: entry.rule_id,
        ranges,
    })
}

/// The loaded and attached kernel programs, and handles on their maps. Dropping it detaches
/// everything that is not pinned ([`Enforcer::load_pinned`] pins it all).
pub struct Enforcer {
    ebpf: Ebpf,
    /// The rule keys written into each slot in use, so a retired slot is emptied exactly.
    installed: std::collections::HashMap<u32, SlotKeys>,
    /// Cgroups the network programs are attached to (one at a time, in host tests).
    attached: std::collections::BTreeSet<u64>,
    /// The cgroup v2 root the network programs are attached at, when they are: they then
    /// judge every cgroup, including ones made after the policy loaded
    /// ([`Enforcer::attach_network`] is a no-op).
    network_root: Option<std::path::PathBuf>,
    /// Where maps and links are pinned, if they are.
    pins: Option<Pins>,
}

/// What [`Enforcer::adopt`] found in pinned maps.
pub struct Adopted {
    /// (slot, info) of the loaded slots.
    pub slots: Vec<(u32, PolicyInfo)>,
    /// (cgroup id, slot) pairs of `GOVERNED`.
    pub ids: Vec<(u64, u32)>,
    /// (cgroup name, slot) pairs of `GOVERNED_PATHS`.
    pub names: Vec<(String, u32)>,
    /// (pattern, slot) pairs of `GOVERNED_PATTERNS`.
    pub patterns: Vec<(Pattern, u32)>,
}

/// Keys written into the rule maps for one slot.
#[derive(Default)]
struct SlotKeys {
    /// The path of each path entry (the key is [`path_key`] of the slot and this): kept
    /// compact, as a full key is 260 bytes and a policy may have 100 000 entries.
    paths: Vec<Box<[u8]>>,
    net4: Vec<Key<Net4Key>>,
    net6: Vec<Key<Net6Key>>,
}

/// What a slot's [`PolicyInfo`] says besides the compiled policy's own flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlotInfo {
    /// The bundle version (0 for unsigned local policy files).
    pub version: u64,
    /// CLOCK_BOOTTIME nanoseconds at which the bundle expires (0: never).
    pub expires_boot_ns: u64,
    /// Extra [`rampart_common::policy_flags`] (e.g. `EXPIRED_AUDIT`).
    pub extra_flags: u32,
}

/// Waits until every eBPF program run that started before the call has finished.
///
/// Programs run inside an RCU read-side critical section, and `membarrier(GLOBAL)` waits
/// for an RCU grace period (`synchronize_rcu`). After it, no decision can still be using
/// a slot that was unreachable from `GOVERNED` before the call.
pub fn synchronize() -> Result<()> {
    if let Err(e) = sys::membarrier_global() {
        // nohz_full kernels refuse GLOBAL; a grace period is far shorter than this.
        tracing::warn!(error = %e,
            "membarrier(GLOBAL) unavailable; waiting 100 ms for in-flight decisions instead");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Ok(())
}

impl Enforcer {
    /// Loads the programs with the kernel struct layout written into their read-only data,
    /// attaches the LSM programs and the cgroup tracepoints, and the network programs at the
    /// cgroup v2 root `hierarchy` (they let ungoverned tasks through). Nothing is governed
    /// until [`Enforcer::govern`]. `hooks`: the LSM hooks this kernel has
    /// ([`super::layout::lsm_hooks`]).
    pub fn load(layout: &KernelLayout, hooks: &[&'static str], hierarchy: &Path) -> Result<Self> {
        Self::load_with(layout, hooks, Some(hierarchy), None)
    }

    /// Loads and attaches as [`Enforcer::load`], with maps and links pinned under `dir`:
    /// enforcement then outlives this process. Maps already pinned there (by an earlier
    /// agent with the same map ABI) are reused, so the policy in force, the counters and the
    /// undelivered events carry over. The earlier agent's links stay attached until
    /// [`Enforcer::retire_previous_links`].
    pub fn load_pinned(
        layout: &KernelLayout,
        hooks: &[&'static str],
        hierarchy: &Path,
        dir: &Path,
    ) -> Result<Self> {
        Self::load_with(layout, hooks, Some(hierarchy), Some(dir))
    }

    /// Loads the programs but attaches no LSM program and no tracepoint: only the cgroup
    /// network programs will judge anything, once attached to a cgroup with
    /// [`Enforcer::attach_network`] and governed. For kernels without BPF-LSM in host-native
    /// tests of the network path; never what `rampart run` does.
    pub fn load_network_only(layout: &KernelLayout) -> Result<Self> {
        Self::load_with(layout, &[], None, None)
    }

    /// `hierarchy`: the full enforcer (the LSM programs of `hooks`, tracepoints, network
    /// programs at that cgroup v2 root); `None`: network programs only, attached per cgroup.
    fn load_with(
        layout: &KernelLayout,
        hooks: &[&'static str],
        hierarchy: Option<&Path>,
        pin: Option<&Path>,
    ) -> Result<Self> {
        let full = hierarchy.is_some();
        let object = embedded_object()?;
        let mut loader = EbpfLoader::new();
        loader.override_global(KERNEL_LAYOUT_SYMBOL, layout, true);
        let mut pins = match pin {
            Some(dir) => Some(Pins::prepare(dir)?),
            None => None,
        };
        if let Some(p) = &pins {
            for name in PINNED_MAPS {
                loader.map_pin_path(name, p.maps.join(name));
            }
        }
        let mut ebpf = loader
            .load(object)
            .context("loading the eBPF object into the kernel (maps and programs)")?;
        let btf = Btf::from_sys_fs().context("reading kernel BTF for the LSM attach points")?;
        for &hook in hooks.iter().filter(|_| full) {
            let prog: &mut Lsm = ebpf
                .program_mut(hook)
                .ok_or_else(|| anyhow!("program {hook} missing from the object"))?
                .try_into()
                .with_context(|| format!("{hook} is not an LSM program"))?;
            prog.load(programs::lsm_hook_of(hook), &btf)
                .with_context(|| {
                    format!(
                        "the kernel refused the {hook} program (BPF-LSM needs CONFIG_BPF_LSM=y \
                     and `bpf` in the lsm= boot parameter)"
                    )
                })?;
            let link = prog
                .attach()
                .with_context(|| format!("attaching the LSM program to {hook}"))?;
            if let Some(p) = &mut pins {
                let link: FdLink = prog.take_link(link)?.into();
                p.pin_link(link, hook)?;
            }
        }
        for name in programs::SOCK_ADDR {
            let prog: &mut CgroupSockAddr = ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("program {name} missing from the object"))?
                .try_into()
                .with_context(|| format!("{name} is not a cgroup sock_addr program"))?;
            prog.load()
                .with_context(|| format!("the kernel refused the {name} program"))?;
        }
        for name in programs::TRACEPOINTS.iter().filter(|_| full) {
            let prog: &mut BtfTracePoint = ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("program {name} missing from the object"))?
                .try_into()
                .with_context(|| format!("{name} is not a BTF tracepoint program"))?;
            prog.load(name, &btf)
                .with_context(|| format!("the kernel refused the {name} tracepoint program"))?;
            let link = prog
                .attach()
                .with_context(|| format!("attaching to the {name} tracepoint"))?;
            if let Some(p) = &mut pins {
                let link: FdLink = prog.take_link(link)?.into();
                p.pin_link(link, name)?;
            }
        }
        let mut enforcer = Self {
            ebpf,
            installed: Default::default(),
            attached: Default::default(),
            network_root: None,
            pins,
        };
        if let Some(root) = hierarchy {
            // A cgroup link is always attached with multi-program semantics (the kernel
            // refuses link flags): other programs on the root, and below it, still run.
            enforcer.attach_network_at(root, "root")?;
            enforcer.network_root = Some(root.to_path_buf());
        }
        Ok(enforcer)
    }

    /// Whether maps and links are pinned (enforcement outlives this process).
    pub fn pinned(&self) -> bool {
        self.pins.is_some()
    }

    /// Detaches the links an earlier agent pinned, once this agent's own are attached and
    /// its policy is in force (until then both judge, with the same maps).
    pub fn retire_previous_links(&mut self) -> Result<usize> {
        match &self.pins {
            Some(p) => p.retire_older_links(),
            None => Ok(0),
        }
    }

    /// Takes over the slots an earlier agent left in the pinned maps: every loaded slot is
    /// marked in use with the rule keys found in the tries (so it can be retired exactly).
    /// Returns them with the governed cgroup ids and names.
    pub fn adopt(&mut self) -> Result<Adopted> {
        let policies: Array<_, PolicyInfo> = Array::try_from(self.map_mut(maps::POLICIES)?)?;
        let mut slots = Vec::new();
        for slot in 0..MAX_POLICIES {
            let info = policies.get(&slot, 0)?;
            if info.loaded != 0 {
                slots.push((slot, info));
            }
        }
        for (slot, _) in &slots {
            self.installed.insert(*slot, SlotKeys::default());
        }
        // Network keys of `spec.listen` carry LISTEN_RULES beside the slot.
        let slot_of = |policy: [u8; 2]| u32::from(u16::from_be_bytes(policy) & !LISTEN_RULES);
        for k in trie_keys::<PathKey, PathRule>(self.map_mut(maps::PATH_RULES)?)? {
            if let Some(s) = self.installed.get_mut(&slot_of(k.data().policy)) {
                let n = (k.prefix_len().saturating_sub(16) / 8) as usize;
                s.paths.push(k.data().path[..n.min(PATH_KEY_BYTES)].into());
            }
        }
        for k in trie_keys::<Net4Key, NetRule>(self.map_mut(maps::NET4_RULES)?)? {
            if let Some(s) = self.installed.get_mut(&slot_of(k.data().policy)) {
                s.net4.push(k);
            }
        }
        for k in trie_keys::<Net6Key, NetRule>(self.map_mut(maps::NET6_RULES)?)? {
            if let Some(s) = self.installed.get_mut(&slot_of(k.data().policy)) {
                s.net6.push(k);
            }
        }
        let governed: HashMap<_, u64, u32> = HashMap::try_from(self.map_mut(maps::GOVERNED)?)?;
        let ids = governed.iter().collect::<Result<Vec<_>, _>>()?;
        let paths: HashMap<_, CgroupPathKey, u32> =
            HashMap::try_from(self.map_mut(maps::GOVERNED_PATHS)?)?;
        let names = paths
            .iter()
            .map(|kv| {
                kv.map(|(key, slot)| {
                    let len = key
                        .path
                        .iter()
                        .position(|b| *b == 0)
                        .unwrap_or(key.path.len());
                    (String::from_utf8_lossy(&key.path[..len]).into_owned(), slot)
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let entries: HashMap<_, CgroupPathKey, CgroupPattern> =
            HashMap::try_from(self.map_mut(maps::GOVERNED_PATTERNS)?)?;
        let mut patterns = Vec::new();
        for kv in entries.iter() {
            let (key, value) = kv?;
            match Pattern::from_kernel(&key, &value) {
                Some(p) => patterns.push((p, value.slot)),
                None => tracing::warn!(
                    "a pinned governed-pattern entry does not parse; it is left as is"
                ),
            }
        }
        Ok(Adopted {
            slots,
            ids,
            names,
            patterns,
        })
    }

    fn map_mut(&mut self, name: &str) -> Result<&mut aya::maps::Map> {
        self.ebpf.map_mut(name).ok_or_else(|| missing(name))
    }

    /// Slots holding a policy (installed and not retired).
    pub fn slots_in_use(&self) -> impl Iterator<Item = u32> + '_ {
        self.installed.keys().copied()
    }

    /// Entries the installed slots hold in the path trie and in the IPv4 and IPv6 tries.
    pub fn entries_in_use(&self) -> (usize, usize, usize) {
        self.installed.values().fold((0, 0, 0), |(p, n4, n6), k| {
            (p + k.paths.len(), n4 + k.net4.len(), n6 + k.net6.len())
        })
    }

    /// Writes `policy` into the unused slot `slot`, then marks the slot loaded. A slot in
    /// use is never written: a new policy goes into a fresh slot and cgroups are switched
    /// to it ([`Enforcer::govern`]), so no decision sees a mix of two policies. On error,
    /// [`Enforcer::retire`] the slot.
    pub fn install(&mut self, slot: u32, info: SlotInfo, policy: &CompiledPolicy) -> Result<()> {
        anyhow::ensure!(slot < MAX_POLICIES, "policy slot {slot} out of range");
        anyhow::ensure!(
            !self.installed.contains_key(&slot),
            "policy slot {slot} is in use"
        );
        self.installed.insert(slot, SlotKeys::default());
        // An earlier policy in this slot may have left executable-mapping allowances or
        // pinned identities (an agent that crashed mid-retire, or pins from an older agent):
        // they must not count for this policy.
        self.forget_slot_files(slot)?;
        let slot16 = slot as u16;
        {
            let mut trie: LpmTrie<_, PathKey, PathRule> = LpmTrie::try_from(
                self.ebpf
                    .map_mut(maps::PATH_RULES)
                    .ok_or_else(|| missing(maps::PATH_RULES))?,
            )?;
            let keys = &mut self.installed.entry(slot).or_default().paths;
            for e in &policy.paths {
                let file = e
                    .identity
                    .map_or(FileId::default(), |Identity { dev, ino }| FileId {
                        dev,
                        ino,
                    });
                let value = PathRule {
                    rule_id: e.rule_id,
                    access: e.access,
                    flags: e.flags,
                    _pad: 0,
                    file,
                };
                let bytes = e.key_bytes();
                trie.insert(&path_key(slot16, &bytes), value, 0)
                    .with_context(|| format!("adding path rule {} to the kernel", e.path))?;
                keys.push(bytes.into_boxed_slice());
            }
        }
        {
            // The identities exec rules pin: no new name, write or truncation for them.
            let mut pinned: HashMap<_, MapExecKey, u32> =
                HashMap::try_from(self.map_mut(maps::EXEC_PINNED)?)?;
            for e in policy.paths.iter().filter(|e| e.access & access::RUN != 0) {
                if let Some(Identity { dev, ino }) = e.identity {
                    let key = MapExecKey {
                        policy: slot,
                        _pad: 0,
                        file: FileId { dev, ino },
                    };
                    pinned.insert(key, e.rule_id, 0).with_context(|| {
                        format!("pinning the identity of {} in the kernel", e.path)
                    })?;
                }
            }
        }
        // Destinations (`spec.network`), then local addresses (`spec.listen`): one trie per
        // family, told apart by LISTEN_RULES in the key's policy field.
        for (listen, v4_entries, v6_entries) in [
            (false, &policy.net4, &policy.net6),
            (true, &policy.listen4, &policy.listen6),
        ] {
            let policy_key = net_key_policy(slot16, listen);
            let net4 = self.insert_net(maps::NET4_RULES, v4_entries, |net| match net {
                IpNet::V4(v4) => Some(Net4Key {
                    policy: policy_key,
                    addr: v4.addr().octets(),
                    _pad: [0; 2],
                }),
                IpNet::V6(_) => None,
            });
            self.installed
                .entry(slot)
                .or_default()
                .net4
                .extend(net4.keys);
            net4.result?;
            let net6 = self.insert_net(maps::NET6_RULES, v6_entries, |net| match net {
                IpNet::V6(v6) => Some(Net6Key {
                    policy: policy_key,
                    addr: v6.addr().octets(),
                    _pad: [0; 2],
                }),
                IpNet::V4(_) => None,
            });
            self.installed
                .entry(slot)
                .or_default()
                .net6
                .extend(net6.keys);
            net6.result?;
        }
        let mut policies: Array<_, PolicyInfo> = Array::try_from(self.map_mut(maps::POLICIES)?)?;
        policies
            .set(
                slot,
                PolicyInfo {
                    version: info.version,
                    expires_boot_ns: info.expires_boot_ns,
                    flags: policy.flags | info.extra_flags,
                    loaded: 1,
                    permits: policy.permits,
                    netlink_protocols: policy.sockets.netlink_protocols,
                    socket_families: policy.sockets.families,
                    inet_sockets: policy.sockets.inet,
                    _pad: 0,
                    capabilities: policy.capabilities,
                },
                0,
            )
            .context("marking the policy loaded")
    }

    /// Empties a slot: first marks it unloaded, then removes every rule written into it.
    /// Call it only for a slot no cgroup points at any more, after [`synchronize`].
    pub fn retire(&mut self, slot: u32) -> Result<()> {
        let Some(keys) = self.installed.remove(&slot) else {
            return Ok(());
        };
        let mut policies: Array<_, PolicyInfo> = Array::try_from(self.map_mut(maps::POLICIES)?)?;
        policies
            .set(slot, PolicyInfo::default(), 0)
            .context("marking the policy slot unloaded")?;
        let slot16 = slot as u16;
        remove_all::<PathKey, PathRule>(
            self.map_mut(maps::PATH_RULES)?,
            keys.paths.iter().map(|p| path_key(slot16, p)),
        )?;
        remove_all::<Net4Key, NetRule>(self.map_mut(maps::NET4_RULES)?, keys.net4)?;
        remove_all::<Net6Key, NetRule>(self.map_mut(maps::NET6_RULES)?, keys.net6)?;
        self.forget_slot_files(slot)
    }

    /// Removes the per-slot file identities of `slot`: the executable-mapping allowances
    /// (`mmap_file` fills `MAP_EXEC_ALLOWED` for `file_mprotect`) and the pinned identities
    /// (`EXEC_PINNED`). Slots are reused, and neither may ever count for another policy.
    /// Call it only for a slot no cgroup points at (no program can add to it meanwhile).
    fn forget_slot_files(&mut self, slot: u32) -> Result<()> {
        self.forget_identities(maps::MAP_EXEC_ALLOWED, slot)?;
        self.forget_identities(maps::EXEC_PINNED, slot)?;
        Ok(())
    }

    /// Removes every entry of `slot` from a map keyed by [`MapExecKey`]; returns how many.
    fn forget_identities(&mut self, map: &str, slot: u32) -> Result<usize> {
        let mut allowed: HashMap<_, MapExecKey, u32> = HashMap::try_from(self.map_mut(map)?)?;
        let keys = allowed
            .keys()
            .collect::<Result<Vec<MapExecKey>, _>>()
            .with_context(|| format!("listing the file identities in {map}"))?;
        let stale: Vec<MapExecKey> = keys.into_iter().filter(|k| k.policy == slot).collect();
        for key in &stale {
            match allowed.remove(key) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("removing a file identity of a slot from {map}"))
                }
            }
        }
        Ok(stale.len())
    }

    /// Writes network entries into the trie `map`; `key` builds the key data of a prefix of
    /// that trie's family (the slot's 16 bits lead every prefix). Returns the keys written
    /// even when a later one fails, so they can be removed.
    fn insert_net<K: aya::Pod>(
        &mut self,
        map: &str,
        entries: &[NetEntry],
        key: impl Fn(&IpNet) -> Option<K>,
    ) -> Inserted<K> {
        let mut keys = Vec::new();
        let mut insert = || -> Result<()> {
            let mut trie: LpmTrie<_, K, NetRule> = LpmTrie::try_from(self.map_mut(map)?)?;
            for e in entries {
                let data = key(&e.cidr).ok_or_else(|| {
                    anyhow!("{} is in the wrong address family for {map}", e.cidr)
                })?;
                let key = Key::new(16 + u32::from(e.cidr.prefix_len()), data);
                trie.insert(&key, net_rule(e)?, 0)
                    .with_context(|| format!("adding network rule {} to the kernel", e.cidr))?;
                keys.push(key);
            }
            Ok(())
        };
        let result = insert();
        Inserted { keys, result }
    }

    /// Attaches the network programs to `cgroup` (they apply to its descendants too), once;
    /// nothing to do when they are attached at the cgroup v2 root. A cgroup that does not
    /// exist (yet) is refused: per-cgroup attachment is for host tests.
    pub fn attach_network(&mut self, cgroup: &Cgroup) -> Result<()> {
        if self.network_root.is_some() {
            return Ok(());
        }
        // A pattern's programs go on its parent, whose descendants include every match.
        let parent_id = match cgroup.by {
            By::Pattern(_) => std::fs::metadata(&cgroup.path).ok().map(|m| m.ino()),
            By::Name | By::Id => None,
        };
        let id = cgroup.id.or(parent_id).ok_or_else(|| {
            anyhow!(
                "cgroup {} does not exist; cannot attach to it",
                cgroup.label()
            )
        })?;
        if self.attached.contains(&id) {
            return Ok(());
        }
        self.attach_network_at(&cgroup.path, &format!("cg{id}"))?;
        self.attached.insert(id);
        Ok(())
    }

    /// Attaches every network program to the cgroup directory `dir`, pinning each link as
    /// `NAME-TAG` when pinned.
    fn attach_network_at(&mut self, dir: &Path, tag: &str) -> Result<()> {
        let file =
            std::fs::File::open(dir).with_context(|| format!("opening {}", dir.display()))?;
        for name in programs::SOCK_ADDR {
            integrity::attach_one(&mut self.ebpf, self.pins.as_mut(), &file, dir, name, tag)?;
        }
        Ok(())
    }

    /// Checks this agent's pins and root attachments, putting back what is gone
    /// ([`integrity::check`]).
    pub fn check_integrity(&mut self) -> Vec<Tamper> {
        integrity::check(
            &mut self.ebpf,
            self.pins.as_mut(),
            self.network_root.as_deref(),
        )
    }

    /// Puts `cgroup` and all of its descendants under the policy in `slot`: its name first
    /// (from then on a cgroup made at that path is governed by the kernel as it is made),
    /// then the cgroup there now, if any.
    pub fn govern(&mut self, cgroup: &Cgroup, slot: u32) -> Result<()> {
        if let By::Pattern(p) = &cgroup.by {
            let (key, value) = p
                .key()
                .zip(p.value(slot))
                .ok_or_else(|| anyhow!("governed cgroup pattern {} is too long", cgroup.label()))?;
            let mut patterns: HashMap<_, CgroupPathKey, CgroupPattern> =
                HashMap::try_from(self.map_mut(maps::GOVERNED_PATTERNS)?)?;
            patterns
                .insert(key, value, 0)
                .with_context(|| format!("governing the cgroup pattern {}", cgroup.label()))?;
        }
        if let Some(key) = cgroup.path_key() {
            let mut paths: HashMap<_, CgroupPathKey, u32> =
                HashMap::try_from(self.map_mut(maps::GOVERNED_PATHS)?)?;
            paths
                .insert(key, slot, 0)
                .with_context(|| format!("governing the cgroup path {}", cgroup.label()))?;
        }
        if let Some(id) = cgroup.id {
            let mut governed: HashMap<_, u64, u32> =
                HashMap::try_from(self.map_mut(maps::GOVERNED)?)?;
            governed
                .insert(id, slot, 0)
                .with_context(|| format!("governing cgroup {}", cgroup.label()))?;
        }
        Ok(())
    }

    /// Ends governance of `cgroup` (its descendants fall back to a governed ancestor, if
    /// any): its name first (no cgroup made there is governed any more), then its id.
    pub fn ungovern(&mut self, cgroup: &Cgroup) -> Result<()> {
        if let Some(key) = match &cgroup.by {
            By::Pattern(p) => p.key(),
            By::Name | By::Id => None,
        } {
            let mut patterns: HashMap<_, CgroupPathKey, CgroupPattern> =
                HashMap::try_from(self.map_mut(maps::GOVERNED_PATTERNS)?)?;
            match patterns.remove(&key) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("ungoverning the cgroup pattern {}", cgroup.label())
                    })
                }
            }
        }
        if let Some(key) = cgroup.path_key() {
            let mut paths: HashMap<_, CgroupPathKey, u32> =
                HashMap::try_from(self.map_mut(maps::GOVERNED_PATHS)?)?;
            match paths.remove(&key) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("ungoverning the cgroup path {}", cgroup.label()))
                }
            }
        }
        if let Some(id) = cgroup.id {
            let mut governed: HashMap<_, u64, u32> =
                HashMap::try_from(self.map_mut(maps::GOVERNED)?)?;
            match governed.remove(&id) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("ungoverning cgroup {}", cgroup.label()))
                }
            }
        }
        Ok(())
    }

    /// Mirrors the anti-rollback mark into `ROLLBACK_MARK` (pinned with the other maps).
    pub fn record_mark(&mut self, mark: &crate::bundle::state::Mark) -> Result<()> {
        let value = super::pinned_state::mark_to_kernel(mark)?;
        self.set_first(maps::ROLLBACK_MARK, value)
    }

    /// Mirrors the lineage anchor into `LINEAGE_ANCHOR` (pinned with the other maps).
    pub fn record_anchor(&mut self, anchor: &crate::lineage::anchor::Anchor) -> Result<()> {
        let value = super::pinned_state::anchor_to_kernel(anchor)?;
        self.set_first(maps::LINEAGE_ANCHOR, value)
    }

    /// Writes entry 0 of the one-entry array `name`.
    fn set_first<T: aya::Pod>(&mut self, name: &str, value: T) -> Result<()> {
        let mut array: Array<_, T> = Array::try_from(self.map_mut(name)?)?;
        array
            .set(0, value, 0)
            .with_context(|| format!("writing the pinned map {name}"))
    }

    /// Takes the event ring buffer out of the object, for the event reader to own.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>> {
        let map = self
            .ebpf
            .take_map(maps::EVENTS)
            .ok_or_else(|| anyhow!("map {} missing from the eBPF object", maps::EVENTS))?;
        RingBuf::try_from(map).context("EVENTS is not a ring buffer")
    }

    /// A per-CPU `u64` counter array, summed over CPUs for each index in `indices`.
    fn per_cpu_sums(&self, name: &str, indices: impl Iterator<Item = u32>) -> Result<Vec<u64>> {
        let map = self
            .ebpf
            .map(name)
            .ok_or_else(|| anyhow!("map {name} missing from the eBPF object"))?;
        let counters: PerCpuArray<_, u64> = PerCpuArray::try_from(map)?;
        indices
            .map(|i| Ok(counters.get(&i, 0)?.iter().sum()))
            .collect()
    }

    /// Decisions taken so far, summed over CPUs, in [`Reason::ALL`] order.
    pub fn decisions(&self) -> Result<Vec<(Reason, u64)>> {
        let sums = self.per_cpu_sums(maps::DECISIONS, Reason::ALL.iter().map(|r| *r as u32))?;
        Ok(Reason::ALL.into_iter().zip(sums).collect())
    }

    /// Denials (and audit records) the kernel took quietly, without an event: the
    /// `CAP_OPT_NOAUDIT` and `PTRACE_MODE_NOAUDIT` probes.
    pub fn quiet_denials(&self) -> Result<u64> {
        Ok(self
            .per_cpu_sums(maps::DECISIONS, std::iter::once(QUIET_DENIALS))?
            .iter()
            .sum())
    }

    /// Events the kernel could not write because the ring buffer was full.
    pub fn event_drops(&self) -> Result<u64> {
        Ok(self
            .per_cpu_sums(maps::EVENT_DROPS, std::iter::once(0))?
            .iter()
            .sum())
    }
}
