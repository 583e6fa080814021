//! Loads Rampart's kernel programs and drives their maps.
//!
//! Order matters for fail-closed behaviour: the allow maps are filled and the programs
//! attached *before* any cgroup is marked governed, so a governed task never meets a
//! half-filled policy.

use anyhow::{anyhow, Context, Result};
use aya::{
    maps::{HashMap, MapData, PerCpuArray, RingBuf},
    programs::Lsm,
    Btf, Ebpf, EbpfLoader,
};
use rampart_common::{maps, programs, FileId, KernelLayout, Reason, KERNEL_LAYOUT_SYMBOL};

use crate::cgroup::Cgroup;

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

/// The loaded and attached kernel programs, and handles on their maps. Dropping it detaches
/// everything (pinning comes with the daemon's restart story).
pub struct Enforcer {
    ebpf: Ebpf,
}

impl Enforcer {
    /// Loads the programs with the kernel struct layout written into their read-only data,
    /// and attaches them. Nothing is governed until [`Enforcer::govern`] is called.
    pub fn load(layout: &KernelLayout) -> Result<Self> {
        let object = embedded_object()?;
        let mut ebpf = EbpfLoader::new()
            .override_global(KERNEL_LAYOUT_SYMBOL, layout, true)
            .load(object)
            .context("loading the eBPF object into the kernel (maps and programs)")?;
        let btf = Btf::from_sys_fs().context("reading kernel BTF for the LSM attach points")?;
        let prog: &mut Lsm = ebpf
            .program_mut(programs::BPRM_CHECK)
            .ok_or_else(|| anyhow!("program {} missing from the object", programs::BPRM_CHECK))?
            .try_into()
            .context("bprm_check_security is not an LSM program")?;
        prog.load("bprm_check_security", &btf).context(
            "the kernel refused the exec program (BPF-LSM needs CONFIG_BPF_LSM=y and `bpf` in \
             the lsm= boot parameter)",
        )?;
        prog.attach()
            .context("attaching the exec program to bprm_check_security")?;
        Ok(Self { ebpf })
    }

    fn map_mut(&mut self, name: &str) -> Result<&mut aya::maps::Map> {
        self.ebpf
            .map_mut(name)
            .ok_or_else(|| anyhow!("map {name} missing from the eBPF object"))
    }

    /// Allows executing the file with identity `id`, recording `rule` as the matching rule.
    pub fn allow_exec(&mut self, id: FileId, rule: u32) -> Result<()> {
        let mut allow: HashMap<_, FileId, u32> =
            HashMap::try_from(self.map_mut(maps::EXEC_ALLOW)?)?;
        allow
            .insert(id, rule, 0)
            .with_context(|| format!("adding exec rule {rule} to the kernel map"))
    }

    /// Puts `cgroup` and all of its descendants under default-deny governance.
    pub fn govern(&mut self, cgroup: &Cgroup) -> Result<()> {
        let mut governed: HashMap<_, u64, u32> = HashMap::try_from(self.map_mut(maps::GOVERNED)?)?;
        governed
            .insert(cgroup.id, 0, 0)
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
