//! Loads Rampart's kernel programs and fills their maps from compiled policies.
//!
//! Order matters for fail-closed behaviour: a policy's rules are written before its slot is
//! marked loaded, and cgroups are marked governed last, so a governed task never meets a
//! half-filled policy.

use anyhow::{anyhow, Context, Result};
use aya::{
    maps::{
        lpm_trie::{Key, LpmTrie},
        Array, HashMap, MapData, PerCpuArray, RingBuf,
    },
    programs::{links::CgroupAttachMode, CgroupSockAddr, Lsm},
    Btf, Ebpf, EbpfLoader,
};
use ipnet::IpNet;
use rampart_common::{
    maps, programs, FileId, KernelLayout, Net4Key, Net6Key, NetRule, PathKey, PathRule, PolicyInfo,
    PortRange, Reason, KERNEL_LAYOUT_SYMBOL, MAX_POLICIES, PATH_KEY_BYTES,
    PORT_RANGES_PER_NET_RULE,
};

use crate::{
    cgroup::Cgroup,
    policy::compile::{CompiledPolicy, Identity, NetEntry},
};

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
/// everything (pinning comes with the daemon's restart story).
pub struct Enforcer {
    ebpf: Ebpf,
}

impl Enforcer {
    /// Loads the programs with the kernel struct layout written into their read-only data,
    /// and attaches the LSM programs. Nothing is governed until [`Enforcer::govern`].
    pub fn load(layout: &KernelLayout) -> Result<Self> {
        let object = embedded_object()?;
        let mut ebpf = EbpfLoader::new()
            .override_global(KERNEL_LAYOUT_SYMBOL, layout, true)
            .load(object)
            .context("loading the eBPF object into the kernel (maps and programs)")?;
        let btf = Btf::from_sys_fs().context("reading kernel BTF for the LSM attach points")?;
        for hook in programs::LSM {
            let prog: &mut Lsm = ebpf
                .program_mut(hook)
                .ok_or_else(|| anyhow!("program {hook} missing from the object"))?
                .try_into()
                .with_context(|| format!("{hook} is not an LSM program"))?;
            prog.load(hook, &btf).with_context(|| {
                format!(
                    "the kernel refused the {hook} program (BPF-LSM needs CONFIG_BPF_LSM=y \
                     and `bpf` in the lsm= boot parameter)"
                )
            })?;
            prog.attach()
                .with_context(|| format!("attaching the LSM program to {hook}"))?;
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
        Ok(Self { ebpf })
    }

    fn map_mut(&mut self, name: &str) -> Result<&mut aya::maps::Map> {
        self.ebpf
            .map_mut(name)
            .ok_or_else(|| anyhow!("map {name} missing from the eBPF object"))
    }

    /// Writes `policy` into slot `slot` with `version`, then marks the slot loaded.
    pub fn install(&mut self, slot: u32, version: u64, policy: &CompiledPolicy) -> Result<()> {
        anyhow::ensure!(slot < MAX_POLICIES, "policy slot {slot} out of range");
        let slot16 = slot as u16;
        {
            let mut trie: LpmTrie<_, PathKey, PathRule> =
                LpmTrie::try_from(self.map_mut(maps::PATH_RULES)?)?;
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
                    file,
                };
                trie.insert(&path_key(slot16, &e.key_bytes()), value, 0)
                    .with_context(|| format!("adding path rule {} to the kernel", e.path))?;
            }
        }
        let slot_bytes = slot16.to_be_bytes();
        self.insert_net(maps::NET4_RULES, &policy.net4, |net| match net {
            IpNet::V4(v4) => Some(Net4Key {
                policy: slot_bytes,
                addr: v4.addr().octets(),
                _pad: [0; 2],
            }),
            IpNet::V6(_) => None,
        })?;
        self.insert_net(maps::NET6_RULES, &policy.net6, |net| match net {
            IpNet::V6(v6) => Some(Net6Key {
                policy: slot_bytes,
                addr: v6.addr().octets(),
                _pad: [0; 2],
            }),
            IpNet::V4(_) => None,
        })?;
        let mut policies: Array<_, PolicyInfo> = Array::try_from(self.map_mut(maps::POLICIES)?)?;
        policies
            .set(
                slot,
                PolicyInfo {
                    version,
                    flags: policy.flags,
                    loaded: 1,
                },
                0,
            )
            .context("marking the policy loaded")
    }

    /// Writes network entries into the trie `map`; `key` builds the key data of a prefix of
    /// that trie's family (the slot's 16 bits lead every prefix).
    fn insert_net<K: aya::Pod>(
        &mut self,
        map: &str,
        entries: &[NetEntry],
        key: impl Fn(&IpNet) -> Option<K>,
    ) -> Result<()> {
        let mut trie: LpmTrie<_, K, NetRule> = LpmTrie::try_from(self.map_mut(map)?)?;
        for e in entries {
            let data = key(&e.cidr)
                .ok_or_else(|| anyhow!("{} is in the wrong address family for {map}", e.cidr))?;
            let key = Key::new(16 + u32::from(e.cidr.prefix_len()), data);
            trie.insert(&key, net_rule(e)?, 0)
                .with_context(|| format!("adding network rule {} to the kernel", e.cidr))?;
        }
        Ok(())
    }

    /// Attaches the network programs to `cgroup` (they apply to its descendants too).
    pub fn attach_network(&mut self, cgroup: &Cgroup) -> Result<()> {
        let dir = std::fs::File::open(&cgroup.path)
            .with_context(|| format!("opening {}", cgroup.path.display()))?;
        for name in programs::SOCK_ADDR {
            let prog: &mut CgroupSockAddr = self
                .ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("program {name} missing from the object"))?
                .try_into()?;
            prog.attach(&dir, CgroupAttachMode::Single)
                .with_context(|| format!("attaching {name} to cgroup {}", cgroup.path.display()))?;
        }
        Ok(())
    }

    /// Puts `cgroup` and all of its descendants under the policy in `slot`.
    pub fn govern(&mut self, cgroup: &Cgroup, slot: u32) -> Result<()> {
        let mut governed: HashMap<_, u64, u32> = HashMap::try_from(self.map_mut(maps::GOVERNED)?)?;
        governed
            .insert(cgroup.id, slot, 0)
            .with_context(|| format!("governing cgroup {}", cgroup.path.display()))
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

    /// Events the kernel could not write because the ring buffer was full.
    pub fn event_drops(&self) -> Result<u64> {
        Ok(self
            .per_cpu_sums(maps::EVENT_DROPS, std::iter::once(0))?
            .iter()
            .sum())
    }
}
