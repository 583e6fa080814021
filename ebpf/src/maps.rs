//! Every map the programs share with the agent (names in `rampart_common::maps`), the
//! per-CPU path scratch buffer, and the struct layout the agent writes before load.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use rampart_common::{
    CgroupPathKey, CgroupPattern, KernelLayout, LineageAnchor, MapExecKey, Net4Key, Net6Key,
    NetRule, PathKey, PathRule, PolicyInfo, RollbackMark, DECISION_COUNTERS, EVENT_RING_BYTES,
    MAP_EXEC_CACHE_ENTRIES, MAX_EXEC_PINNED, MAX_GOVERNED_CGROUPS, MAX_GOVERNED_PATTERNS,
    MAX_NET_RULES, MAX_PATH_RULES, MAX_POLICIES, PATH_BUF_BYTES, PATH_KEY_BYTES,
};

#[map(name = "GOVERNED")]
pub static GOVERNED: HashMap<u64, u32> = HashMap::with_max_entries(MAX_GOVERNED_CGROUPS, 0);

#[map(name = "GOVERNED_PATHS")]
pub static GOVERNED_PATHS: HashMap<CgroupPathKey, u32> =
    HashMap::with_max_entries(MAX_GOVERNED_CGROUPS, 0);

#[map(name = "GOVERNED_PATTERNS")]
pub static GOVERNED_PATTERNS: HashMap<CgroupPathKey, CgroupPattern> =
    HashMap::with_max_entries(MAX_GOVERNED_PATTERNS, 0);

/// Per-CPU scratch for the path of a cgroup being made (entry 0), its parent's (entry 1)
/// and its name (entry 2): too big for the stack.
#[map(name = "CGROUP_PATH_SCRATCH")]
pub static CGROUP_PATH_SCRATCH: PerCpuArray<CgroupPathKey> = PerCpuArray::with_max_entries(3, 0);

/// Pinned anti-rollback state; no program reads it.
#[map(name = "ROLLBACK_MARK")]
pub static ROLLBACK_MARK: Array<RollbackMark> = Array::with_max_entries(1, 0);

/// Pinned lineage anchor; no program reads it.
#[map(name = "LINEAGE_ANCHOR")]
pub static LINEAGE_ANCHOR: Array<LineageAnchor> = Array::with_max_entries(1, 0);

#[map(name = "MAP_EXEC_ALLOWED")]
pub static MAP_EXEC_ALLOWED: LruHashMap<MapExecKey, u32> =
    LruHashMap::with_max_entries(MAP_EXEC_CACHE_ENTRIES, 0);

#[map(name = "EXEC_PINNED")]
pub static EXEC_PINNED: HashMap<MapExecKey, u32> = HashMap::with_max_entries(MAX_EXEC_PINNED, 0);

#[map(name = "POLICIES")]
pub static POLICIES: Array<PolicyInfo> = Array::with_max_entries(MAX_POLICIES, 0);

#[map(name = "PATH_RULES")]
pub static PATH_RULES: LpmTrie<PathKey, PathRule> = LpmTrie::with_max_entries(MAX_PATH_RULES, 0);

#[map(name = "NET4_RULES")]
pub static NET4_RULES: LpmTrie<Net4Key, NetRule> = LpmTrie::with_max_entries(MAX_NET_RULES, 0);

#[map(name = "NET6_RULES")]
pub static NET6_RULES: LpmTrie<Net6Key, NetRule> = LpmTrie::with_max_entries(MAX_NET_RULES, 0);

#[map(name = "DECISIONS")]
pub static DECISIONS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DECISION_COUNTERS, 0);

#[map(name = "EVENTS")]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(EVENT_RING_BYTES, 0);

#[map(name = "EVENT_DROPS")]
pub static EVENT_DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU scratch: `bpf_d_path` writes the path right after the key header, so the first
/// bytes are a ready-made `Key<PathKey>` for the trie lookup. The path area is longer than
/// PATH_BUF_BYTES by more than one name, so that a masked offset plus a name always fits.
#[repr(C)]
pub struct PathScratch {
    pub prefix_len: u32,
    pub key: PathKey,
    tail: [u8; PATH_BUF_BYTES + 512 - PATH_KEY_BYTES],
}

#[map(name = "PATH_SCRATCH")]
pub static PATH_SCRATCH: PerCpuArray<PathScratch> = PerCpuArray::with_max_entries(1, 0);

/// Filled in by the agent from the running kernel's BTF before load (read-only data).
#[no_mangle]
pub static KERNEL_LAYOUT: KernelLayout = KernelLayout::UNSET;

/// The struct offsets the agent wrote (or the unset placeholder), read in place: the
/// pointer is laundered through a volatile load so that the compiler cannot fold in the
/// compile-time placeholder (the agent rewrites the data before load), and no copy of the
/// whole layout lands on the small BPF stack. To the verifier these are reads of the frozen
/// read-only data: known constants.
pub fn layout() -> &'static KernelLayout {
    let at: *const KernelLayout = &KERNEL_LAYOUT;
    // SAFETY: a volatile read of a local holding the static's address; the result is that
    // same valid, 'static address.
    unsafe { &*core::ptr::read_volatile(&at) }
}
