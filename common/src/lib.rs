//! The kernel/user ABI of Rampart: every type that crosses between the eBPF programs and
//! the agent, and nothing else. All types are `#[repr(C)]` plain data; the `user` feature
//! implements `aya::Pod` for them.
#![no_std]

/// Deepest cgroup v2 level at which a governed cgroup may sit (the root cgroup is level 0).
/// The kernel checks ancestors at levels `0..MAX_CGROUP_LEVELS` of the current task's
/// cgroup, so a governed cgroup at a shallower level governs descendants at any depth.
pub const MAX_CGROUP_LEVELS: u32 = 16;

/// Capacity of the governed-cgroup map.
pub const MAX_GOVERNED_CGROUPS: u32 = 1024;

/// Capacity of the exec allow map.
pub const MAX_EXEC_RULES: u32 = 65536;

/// Identity of a file as the kernel sees it: the super block's device number in the
/// kernel's internal encoding (`MAJOR << 20 | MINOR`, see `include/linux/kdev_t.h`) and the
/// inode number. Userspace converts `stat(2)`'s `st_dev` to this encoding.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

/// Byte offsets of the kernel struct members the programs read. Rust eBPF has no CO-RE, and
/// these layouts differ between kernel releases, so the agent resolves them from the running
/// kernel's BTF and writes them into the programs' read-only data before loading.
/// `valid == 0` means the agent did not set them: the programs then deny (fail closed).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelLayout {
    /// `struct linux_binprm::file`
    pub binprm_file: u32,
    /// `struct file::f_inode`
    pub file_inode: u32,
    /// `struct inode::i_ino`
    pub inode_ino: u32,
    /// `struct inode::i_sb`
    pub inode_sb: u32,
    /// `struct super_block::s_dev`
    pub sb_dev: u32,
    /// Non-zero once the agent has filled in the offsets above.
    pub valid: u32,
}

impl KernelLayout {
    /// The unset layout compiled into the programs.
    pub const UNSET: Self = Self {
        binprm_file: 0,
        file_inode: 0,
        inode_ino: 0,
        inode_sb: 0,
        sb_dev: 0,
        valid: 0,
    };
}

/// Name of the read-only global holding the [`KernelLayout`] in the eBPF object.
pub const KERNEL_LAYOUT_SYMBOL: &str = "KERNEL_LAYOUT";

/// Why the kernel decided what it decided. Stable numbers: they appear in events, counters
/// and the lineage.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The binary's identity is in the exec allow map.
    ExecAllowed = 0,
    /// The binary's identity is not in the exec allow map.
    ExecNotAllowed = 1,
    /// The agent never supplied the kernel struct layout: deny everything governed.
    LayoutUnset = 2,
    /// Reading the binary's identity from kernel memory failed.
    IdentityUnreadable = 3,
}

/// Number of [`Reason`] values; the size of the per-CPU decision counter array.
pub const REASON_COUNT: u32 = 4;

impl Reason {
    /// All reasons, in counter-index order.
    pub const ALL: [Reason; REASON_COUNT as usize] = [
        Reason::ExecAllowed,
        Reason::ExecNotAllowed,
        Reason::LayoutUnset,
        Reason::IdentityUnreadable,
    ];

    /// Stable kebab-case name used in output and docs.
    pub const fn name(self) -> &'static str {
        match self {
            Reason::ExecAllowed => "exec-allowed",
            Reason::ExecNotAllowed => "exec-not-allowed",
            Reason::LayoutUnset => "layout-unset",
            Reason::IdentityUnreadable => "identity-unreadable",
        }
    }

    /// Whether this reason denies the action.
    pub const fn denies(self) -> bool {
        !matches!(self, Reason::ExecAllowed)
    }
}

/// Size of the event ring buffer in bytes (a power of two, a multiple of the page size).
pub const EVENT_RING_BYTES: u32 = 256 * 1024;

/// `rule_id` of an event that matched no rule (every default-deny).
pub const NO_RULE: u32 = u32::MAX;

/// What a task tried to do.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Exec = 1,
}

/// One kernel decision, as written to the event ring buffer. Plain data, no padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// `bpf_ktime_get_ns()`: monotonic nanoseconds since boot.
    pub ktime_ns: u64,
    /// The cgroup v2 id of the acting task.
    pub cgroup_id: u64,
    /// Identity of the target file (zero when it could not be read).
    pub target: FileId,
    /// Thread group id (the userspace "pid").
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    pub uid: u32,
    /// An [`Action`] value.
    pub action: u32,
    /// A [`Reason`] value.
    pub reason: u32,
    /// The matching rule, or [`NO_RULE`].
    pub rule_id: u32,
    /// The task's `comm`, NUL-padded.
    pub comm: [u8; 16],
}

/// Names of the maps in the eBPF object, shared so the two sides cannot drift apart.
pub mod maps {
    /// `HashMap<u64 cgroup id, u32 flags>`: the governed cgroups.
    pub const GOVERNED: &str = "GOVERNED";
    /// `HashMap<FileId, u32 rule id>`: binaries that may be executed.
    pub const EXEC_ALLOW: &str = "EXEC_ALLOW";
    /// `PerCpuArray<u64>` indexed by [`super::Reason`]: decisions taken.
    pub const DECISIONS: &str = "DECISIONS";
    /// `RingBuf` of [`super::Event`]s.
    pub const EVENTS: &str = "EVENTS";
    /// `PerCpuArray<u64>` with one slot: events lost because the ring buffer was full.
    pub const EVENT_DROPS: &str = "EVENT_DROPS";
}

/// Names of the programs in the eBPF object.
pub mod programs {
    /// LSM program on `bprm_check_security`.
    pub const BPRM_CHECK: &str = "bprm_check_security";
}

// The ABI must not change size silently: the agent parses events by this size.
const _: () = assert!(core::mem::size_of::<Event>() == 72);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: FileId is repr(C), Copy, made of two u64 with no padding; every bit pattern is valid.
    unsafe impl aya::Pod for super::FileId {}
    // SAFETY: KernelLayout is repr(C), Copy, made of u32 fields with no padding; any bits are valid.
    unsafe impl aya::Pod for super::KernelLayout {}
    // SAFETY: Event is repr(C), Copy, 72 bytes of integers with no padding; any bits are valid.
    unsafe impl aya::Pod for super::Event {}
}
