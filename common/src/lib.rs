//! The kernel/user ABI of Rampart: every type that crosses between the eBPF programs and
//! the agent, and nothing else. All types are `#[repr(C)]` plain data; the `user` feature
//! implements `aya::Pod` for them.
#![no_std]
#![warn(missing_docs)]

/// Deepest cgroup v2 level at which a governed cgroup may sit (the root cgroup is level 0).
/// The kernel checks ancestors at levels `0..MAX_CGROUP_LEVELS` of the current task's
/// cgroup, so a governed cgroup at a shallower level governs descendants at any depth.
pub const MAX_CGROUP_LEVELS: u32 = 16;

/// Capacity of the governed-cgroup map.
pub const MAX_GOVERNED_CGROUPS: u32 = 1024;

/// Number of policy slots. A slot number is the policy id written into every rule key, so
/// a decision only ever reads the rules of the one slot its cgroup points at.
pub const MAX_POLICIES: u32 = 256;

/// Capacity of the path rule trie (all policies together). An atomic swap needs room for
/// the policy in force and the new one at once, so one policy can use about half of it
/// (100 000 file rules fit). The trie allocates its nodes as they are used: capacity costs
/// no kernel memory until rules fill it.
pub const MAX_PATH_RULES: u32 = 262_144;

/// Capacity of each network rule trie (IPv4 and IPv6, all policies together).
pub const MAX_NET_RULES: u32 = 16384;

/// Size of the buffer `bpf_d_path` writes into: `PATH_MAX`. A longer path fails to
/// resolve and is denied with [`Reason::PathTooLong`].
pub const PATH_BUF_BYTES: usize = 4096;

/// Path bytes in a path rule key. The kernel's LPM trie takes at most 256 data bytes, two
/// of which hold the policy id.
pub const PATH_KEY_BYTES: usize = 254;

/// Longest path a rule may name: one byte of the key is kept for the terminating NUL that
/// makes an exact-file rule exact.
pub const MAX_RULE_PATH_BYTES: usize = PATH_KEY_BYTES - 1;

/// Port ranges one network rule entry can carry.
pub const PORT_RANGES_PER_NET_RULE: usize = 8;

/// Components a path may have where the kernel resolves it by walking dentries (the
/// `path_*` hooks): a deeper path is denied with [`Reason::PathTooLong`]. A power of two.
pub const WALK_MAX_COMPONENTS: u32 = 64;

/// Path bytes copied into an event (the decision itself used the whole path).
pub const EVENT_PATH_BYTES: usize = 256;

/// Identity of a file as the kernel sees it: the super block's device number in the
/// kernel's internal encoding (`MAJOR << 20 | MINOR`, see `include/linux/kdev_t.h`) and the
/// inode number. Userspace converts `stat(2)`'s `st_dev` to this encoding.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FileId {
    /// The superblock's `s_dev` in the kernel's internal encoding (`MAJOR << 20 | MINOR`).
    pub dev: u64,
    /// The inode number.
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
    /// `struct file::f_path`
    pub file_path: u32,
    /// `struct file::f_mode`
    pub file_mode: u32,
    /// `struct file::f_flags`
    pub file_flags: u32,
    /// `struct inode::i_ino`
    pub inode_ino: u32,
    /// `struct inode::i_sb`
    pub inode_sb: u32,
    /// `struct super_block::s_dev`
    pub sb_dev: u32,
    /// `struct vm_area_struct::vm_file`
    pub vma_file: u32,
    /// `struct cgroup::kn`
    pub cgroup_kn: u32,
    /// `struct cgroup::root`
    pub cgroup_root: u32,
    /// `struct kernfs_node::id` (what `bpf_get_current_cgroup_id` returns for a cgroup)
    pub kn_id: u32,
    /// `struct cgroup_root::hierarchy_id` (0 is the cgroup v2 hierarchy)
    pub root_hierarchy_id: u32,
    /// `struct dentry::d_parent`
    pub dentry_parent: u32,
    /// `struct dentry::d_name` (a `struct qstr`)
    pub dentry_name: u32,
    /// `struct dentry::d_inode`
    pub dentry_inode: u32,
    /// `struct qstr::name`
    pub qstr_name: u32,
    /// `struct qstr::len`
    pub qstr_len: u32,
    /// `struct inode::i_mode`
    pub inode_mode: u32,
    /// `struct path::mnt`
    pub path_mnt: u32,
    /// `struct path::dentry`
    pub path_dentry: u32,
    /// `struct vfsmount::mnt_root`
    pub vfsmount_root: u32,
    /// `struct mount::mnt` (the `struct vfsmount` embedded in a `struct mount`)
    pub mount_mnt: u32,
    /// `struct mount::mnt_parent`
    pub mount_parent: u32,
    /// `struct mount::mnt_mountpoint`
    pub mount_mountpoint: u32,
    /// `struct task_struct::fs`
    pub task_fs: u32,
    /// `struct fs_struct::root`
    pub fs_root: u32,
    /// `struct task_struct::cred` (the subjective credentials)
    pub task_cred: u32,
    /// `struct task_struct::real_cred` (the objective credentials)
    pub task_real_cred: u32,
    /// `struct mount::mnt_ns`
    pub mount_ns: u32,
    /// `struct dentry::d_sb`
    pub dentry_sb: u32,
    /// `struct super_block::s_mounts`: the superblock's mounts, a `struct list_head`
    /// through `struct mount::mnt_instance` (to 6.16), or the first `struct mount *` of a
    /// chain through `struct mount::mnt_next_for_sb` (from 6.17)
    pub sb_mounts: u32,
    /// `struct mount::mnt_instance`, or `mnt_next_for_sb` where [`Self::mounts_chained`]
    pub mount_instance: u32,
    /// Non-zero: `s_mounts` is a pointer chain (6.17 and later), not a list head.
    pub mounts_chained: u32,
    /// `struct task_struct::nsproxy`
    pub task_nsproxy: u32,
    /// `struct nsproxy::mnt_ns`
    pub nsproxy_mnt_ns: u32,
    /// `struct iattr::ia_valid`
    pub iattr_valid: u32,
    /// `struct task_struct::cgroups` (a `struct css_set *`)
    pub task_cgroups: u32,
    /// `struct css_set::dfl_cgrp`: the task's cgroup v2
    pub css_set_dfl_cgrp: u32,
    /// `struct cgroup::level` (0 for the root)
    pub cgroup_level: u32,
    /// `struct cgroup::ancestors`: `ancestors[i]` is the ancestor at level `i`, itself at
    /// `level`
    pub cgroup_ancestors: u32,
    /// `struct task_struct::tgid`
    pub task_tgid: u32,
    /// `struct inode::i_private` (a kernfs inode's `struct kernfs_node`)
    pub inode_private: u32,
    /// `struct super_block::s_magic`
    pub sb_magic: u32,
    /// `struct kernfs_node::parent` (`__parent` from 6.15)
    pub kn_parent: u32,
    /// `struct sock::sk_cgrp_data`
    pub sock_cgrp_data: u32,
    /// `struct sock_cgroup_data::cgroup`: the cgroup v2 the socket was made in
    pub sock_cgroup: u32,
    /// `struct socket::sk`
    pub socket_sk: u32,
    /// `struct unix_sock::addr` (a `struct unix_address *`, null if never bound)
    pub unix_addr: u32,
    /// `struct unix_sock::path`: where a named socket is bound (a null dentry otherwise)
    pub unix_path: u32,
    /// `struct unix_address::len`
    pub unix_address_len: u32,
    /// `struct unix_address::name`
    pub unix_address_name: u32,
    /// `struct sock` to `__sk_common.skc_family` (`u16`)
    pub sk_family: u32,
    /// `struct sock` to `__sk_common.skc_rcv_saddr`: the bound IPv4 address
    pub sk_rcv_saddr: u32,
    /// `struct sock` to `__sk_common.skc_num`: the bound local port, host order (`u16`)
    pub sk_num: u32,
    /// `struct sock` to `__sk_common.skc_v6_rcv_saddr`: the bound IPv6 address
    pub sk_v6_rcv_saddr: u32,
    /// `struct sock::sk_protocol` (`u16`)
    pub sk_protocol: u32,
    /// `struct file::private_data` (a socket file's `struct socket *`)
    pub file_private_data: u32,
    /// Non-zero once the agent has filled in the offsets above.
    pub valid: u32,
}

impl KernelLayout {
    /// The unset layout compiled into the programs.
    pub const UNSET: Self = Self {
        binprm_file: 0,
        file_inode: 0,
        file_path: 0,
        file_mode: 0,
        file_flags: 0,
        inode_ino: 0,
        inode_sb: 0,
        sb_dev: 0,
        vma_file: 0,
        cgroup_kn: 0,
        cgroup_root: 0,
        kn_id: 0,
        root_hierarchy_id: 0,
        dentry_parent: 0,
        dentry_name: 0,
        dentry_inode: 0,
        qstr_name: 0,
        qstr_len: 0,
        inode_mode: 0,
        path_mnt: 0,
        path_dentry: 0,
        vfsmount_root: 0,
        mount_mnt: 0,
        mount_parent: 0,
        mount_mountpoint: 0,
        task_fs: 0,
        fs_root: 0,
        task_cred: 0,
        task_real_cred: 0,
        mount_ns: 0,
        dentry_sb: 0,
        sb_mounts: 0,
        mount_instance: 0,
        mounts_chained: 0,
        task_nsproxy: 0,
        nsproxy_mnt_ns: 0,
        iattr_valid: 0,
        task_cgroups: 0,
        css_set_dfl_cgrp: 0,
        cgroup_level: 0,
        cgroup_ancestors: 0,
        task_tgid: 0,
        inode_private: 0,
        sb_magic: 0,
        kn_parent: 0,
        sock_cgrp_data: 0,
        sock_cgroup: 0,
        socket_sk: 0,
        unix_addr: 0,
        unix_path: 0,
        unix_address_len: 0,
        unix_address_name: 0,
        sk_family: 0,
        sk_rcv_saddr: 0,
        sk_num: 0,
        sk_v6_rcv_saddr: 0,
        sk_protocol: 0,
        file_private_data: 0,
        valid: 0,
    };
}

/// Bytes of a governed cgroup path key: the path relative to the cgroup v2 root (as the
/// kernel's `cgroup_mkdir` tracepoint gives it, with its leading `/`), zero-padded. A
/// governed path must be at most `CGROUP_PATH_BYTES - 2` bytes long, so that a longer one
/// read by the kernel can never match.
pub const CGROUP_PATH_BYTES: usize = 256;

/// Key of `GOVERNED_PATHS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CgroupPathKey {
    /// The path, NUL-terminated and zero-padded.
    pub path: [u8; CGROUP_PATH_BYTES],
}

impl CgroupPathKey {
    /// The key of a governed cgroup name (`/a/b`); `None` when it is too long to govern.
    pub fn new(name: &str) -> Option<Self> {
        let bytes = name.as_bytes();
        if bytes.len() > CGROUP_PATH_BYTES - 2 {
            return None;
        }
        let mut path = [0u8; CGROUP_PATH_BYTES];
        path[..bytes.len()].copy_from_slice(bytes);
        Some(Self { path })
    }
}

/// Bytes of the literal text on each side of the `*` of a governed cgroup pattern.
pub const CGROUP_PATTERN_BYTES: usize = 64;

/// Capacity of the governed-pattern map (one pattern per parent cgroup).
pub const MAX_GOVERNED_PATTERNS: u32 = 64;

/// Value of `GOVERNED_PATTERNS`, keyed by the [`CgroupPathKey`] of the parent cgroup: a
/// child made there whose name is `prefix`, anything, then `suffix` is governed with `slot`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CgroupPattern {
    /// The literal text before the `*`, zero-padded.
    pub prefix: [u8; CGROUP_PATTERN_BYTES],
    /// The literal text after the `*`, zero-padded.
    pub suffix: [u8; CGROUP_PATTERN_BYTES],
    /// Bytes of `prefix` in use.
    pub prefix_len: u32,
    /// Bytes of `suffix` in use.
    pub suffix_len: u32,
    /// The policy slot of matching children.
    pub slot: u32,
    /// Zero.
    pub _pad: u32,
}

impl CgroupPattern {
    /// The value for `prefix*suffix` governed with `slot`; `None` when a side is too long.
    pub fn new(prefix: &str, suffix: &str, slot: u32) -> Option<Self> {
        let (p, s) = (prefix.as_bytes(), suffix.as_bytes());
        if p.len() > CGROUP_PATTERN_BYTES || s.len() > CGROUP_PATTERN_BYTES {
            return None;
        }
        let mut value = Self {
            prefix: [0; CGROUP_PATTERN_BYTES],
            suffix: [0; CGROUP_PATTERN_BYTES],
            prefix_len: p.len() as u32,
            suffix_len: s.len() as u32,
            slot,
            _pad: 0,
        };
        value.prefix[..p.len()].copy_from_slice(p);
        value.suffix[..s.len()].copy_from_slice(s);
        Some(value)
    }
}

/// Bytes of a bundle digest in [`RollbackMark`] (blake3, hex).
pub const DIGEST_HEX_BYTES: usize = 64;

/// The anti-rollback high-water mark, mirrored in the pinned `ROLLBACK_MARK` map so that
/// deleting or rewriting the state file does not reset it while the pins live. No program
/// reads it; it is pinned state.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RollbackMark {
    /// The highest bundle version accepted (0: none).
    pub version: u64,
    /// The highest trust root version used.
    pub trust_version: u64,
    /// The digest of that bundle, hex.
    pub digest: [u8; DIGEST_HEX_BYTES],
}

/// Bytes of a lineage id in [`LineageAnchor`] (16 random bytes, hex).
pub const LINEAGE_ID_HEX_BYTES: usize = 32;

/// The last checkpoint of the lineage (its size and head), mirrored in the pinned
/// `LINEAGE_ANCHOR` map so that cutting the lineage back is found at the next start. No
/// program reads it; it is pinned state.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineageAnchor {
    /// Records covered by the last checkpoint (0: none).
    pub size: u64,
    /// The head hash at that checkpoint, hex.
    pub head: [u8; DIGEST_HEX_BYTES],
    /// The lineage's id, hex.
    pub lineage: [u8; LINEAGE_ID_HEX_BYTES],
}

/// Name of the read-only global holding the [`KernelLayout`] in the eBPF object.
pub const KERNEL_LAYOUT_SYMBOL: &str = "KERNEL_LAYOUT";

/// Why the kernel decided what it decided. Stable numbers: they appear in events, counters
/// and the lineage. Only [`Reason::Allowed`] allows.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// A rule of the policy in force grants the action.
    Allowed = 0,
    /// No rule names the path or address.
    NoRule = 1,
    /// A rule names the path or address, but not this access, port or protocol.
    AccessNotGranted = 2,
    /// The exec rule names this path, but the file there is not the one pinned when the
    /// policy was loaded (replaced, or a different file under that name).
    IdentityMismatch = 3,
    /// The kernel could not produce a path for the file (`bpf_d_path` failed).
    PathUnresolvable = 4,
    /// The path is longer than the kernel buffer ([`PATH_BUF_BYTES`]).
    PathTooLong = 5,
    /// The agent never supplied the kernel struct layout: deny everything governed.
    LayoutUnset = 6,
    /// Reading the file's identity from kernel memory failed.
    IdentityUnreadable = 7,
    /// No valid policy: the cgroup's slot holds none, or the host fell back to its
    /// no-policy setting because no valid bundle could be loaded.
    PolicyMissing = 8,
    /// Strict mode: the event for this decision could not be recorded.
    EventUnrecorded = 9,
    /// The signed bundle in force has expired: everything governed fails closed.
    PolicyExpired = 10,
    /// `mprotect(PROT_EXEC)` of a file that was not allowed to be mapped executable under
    /// this policy (judged by identity: the hook cannot resolve paths).
    MapExecUnverified = 11,
    /// A link or rename would give the file (or directory) rights at its new place that its
    /// old place does not grant, or would move a directory into a tree with more specific
    /// rules beneath (refer semantics).
    ReferGainsAccess = 12,
    /// A new name for, a write to or a truncation of a file an exec rule pins: the pinned
    /// identity's content and names are fixed while the policy is in force.
    ExecPinned = 13,
    /// A system action (mount, chroot, a user namespace, kernel loading, perf events) the
    /// policy's `spec.permits` does not list, or one no policy may permit
    /// (`CLONE_INTO_CGROUP`).
    NotPermitted = 14,
    /// A write to a cgroupfs file (`cgroup.procs`, `cgroup.threads`, `memory.max`, ...) of
    /// a cgroup the task's own policy does not govern, whatever the path rules grant.
    CgroupNotGoverned = 15,
}

/// Number of [`Reason`] values.
pub const REASON_COUNT: u32 = 16;

/// Index, in the per-CPU decision counters after one per [`Reason`], of the denials taken
/// without an event because the kernel asked quietly (`CAP_OPT_NOAUDIT`,
/// `PTRACE_MODE_NOAUDIT`): they are counted under their reason too.
pub const QUIET_DENIALS: u32 = REASON_COUNT;

/// The size of the per-CPU decision counter array.
pub const DECISION_COUNTERS: u32 = REASON_COUNT + 1;

impl Reason {
    /// All reasons, in counter-index order.
    pub const ALL: [Reason; REASON_COUNT as usize] = [
        Reason::Allowed,
        Reason::NoRule,
        Reason::AccessNotGranted,
        Reason::IdentityMismatch,
        Reason::PathUnresolvable,
        Reason::PathTooLong,
        Reason::LayoutUnset,
        Reason::IdentityUnreadable,
        Reason::PolicyMissing,
        Reason::EventUnrecorded,
        Reason::PolicyExpired,
        Reason::MapExecUnverified,
        Reason::ReferGainsAccess,
        Reason::ExecPinned,
        Reason::NotPermitted,
        Reason::CgroupNotGoverned,
    ];

    /// Stable kebab-case name used in output and docs.
    pub const fn name(self) -> &'static str {
        match self {
            Reason::Allowed => "allowed",
            Reason::NoRule => "no-rule",
            Reason::AccessNotGranted => "access-not-granted",
            Reason::IdentityMismatch => "identity-mismatch",
            Reason::PathUnresolvable => "path-unresolvable",
            Reason::PathTooLong => "path-too-long",
            Reason::LayoutUnset => "layout-unset",
            Reason::IdentityUnreadable => "identity-unreadable",
            Reason::PolicyMissing => "no-policy",
            Reason::EventUnrecorded => "event-unrecorded",
            Reason::PolicyExpired => "policy-expired",
            Reason::MapExecUnverified => "map-exec-unverified",
            Reason::ReferGainsAccess => "refer-gains-access",
            Reason::ExecPinned => "exec-pinned",
            Reason::NotPermitted => "not-permitted",
            Reason::CgroupNotGoverned => "cgroup-not-governed",
        }
    }

    /// The reason with this number, if any.
    pub fn from_raw(raw: u32) -> Option<Self> {
        Self::ALL.iter().copied().find(|r| *r as u32 == raw)
    }

    /// Whether this reason denies the action (in enforce mode).
    pub const fn denies(self) -> bool {
        !matches!(self, Reason::Allowed)
    }
}

/// What the kernel did.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The action proceeds.
    Allow = 0,
    /// The action fails with EPERM.
    Deny = 1,
    /// The policy is in audit mode: the action would have been denied and was allowed.
    Audit = 2,
}

/// Size of the event ring buffer in bytes (a power of two, a multiple of the page size).
pub const EVENT_RING_BYTES: u32 = 1024 * 1024;

/// `rule_id` of a decision that matched no rule (every default-deny).
pub const NO_RULE: u32 = u32::MAX;

/// What a task tried to do.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `execve` of a program (`bprm_check_security`, once per interpreter level).
    Exec = 1,
    /// Opening a file (`file_open`).
    Open = 2,
    /// Mapping a file executable (`mmap_file` with `PROT_EXEC`).
    MapExec = 3,
    /// `connect` (`cgroup/connect4`, `connect6`).
    Connect = 4,
    /// `sendto`/`sendmsg` with an address (`cgroup/sendmsg4`, `sendmsg6`).
    Send = 5,
    /// Making a file, directory, symlink, FIFO, socket or device node (`path_mknod`, which
    /// `open(O_CREAT)` also calls, `path_mkdir`, `path_symlink`).
    Create = 6,
    /// Removing a file or directory (`path_unlink`, `path_rmdir`).
    Remove = 7,
    /// A new hard link (`path_link`).
    Link = 8,
    /// A rename, exchange included (`path_rename`).
    Rename = 9,
    /// Truncating a file (`path_truncate`, `file_truncate`).
    Truncate = 10,
    /// Changing a file's mode (`path_chmod`).
    Chmod = 11,
    /// Changing a file's owner or group (`path_chown`).
    Chown = 12,
    /// Setting a file's timestamps (`utimensat`, `utimes`: `inode_setattr`).
    Utimes = 13,
    /// Setting or removing an extended attribute, POSIX ACLs included
    /// (`inode_setxattr`, `inode_removexattr`; `inode_set_acl`, `inode_remove_acl` on 6.2
    /// and later).
    Xattr = 14,
    /// An io_uring request running under credentials registered earlier
    /// (`uring_override_creds`): always denied in governed cgroups.
    UringCreds = 15,
    /// A signal to another process (`kill`, `tgkill`, `pidfd_send_signal`: `task_kill`):
    /// allowed only to tasks governed by the same policy slot.
    Signal = 16,
    /// Tracing or reading another process (`ptrace`, `/proc/PID/mem`, `process_vm_*`,
    /// `pidfd_getfd`: `ptrace_access_check`, `ptrace_traceme`): as for signals.
    Ptrace = 17,
    /// The `bpf()` system call (`bpf`): denied in governed cgroups unless `spec.permits`
    /// lists `bpf`, and then only for objects the workload makes itself
    /// ([`system::bpf_permitted`]), so a workload can neither get, detach nor change
    /// Rampart's programs, links and maps, nor load a tracing program.
    Bpf = 18,
    /// Mounting, remounting, bind or move mounts, propagation changes (`sb_mount`),
    /// `move_mount`, unmounting (`sb_umount`) and `pivot_root` (`sb_pivotroot`): permit
    /// `mount`. The event's `access` says which ([`system::MOUNT_KINDS`]).
    Mount = 19,
    /// `chroot` (`path_chroot`): permit `chroot`.
    Chroot = 20,
    /// Creating a user namespace (`unshare`, `clone` with `CLONE_NEWUSER`:
    /// `userns_create`): permit `user-namespaces`.
    UserNamespace = 21,
    /// Loading into the kernel: modules (`init_module`, `finit_module`), module requests
    /// the task triggers, firmware, kexec images, IMA policies (`kernel_module_request`,
    /// `kernel_read_file`, `kernel_load_data`): permit `kernel-load`. The event's `access`
    /// is the kernel's read or load id; a module request's path is the module name.
    KernelLoad = 22,
    /// `perf_event_open` (`perf_event_open`): permit `perf-events`.
    PerfEvent = 23,
    /// `clone3(CLONE_INTO_CGROUP)` (`task_alloc`): the child would start in a cgroup the
    /// hook cannot see, possibly outside the governed subtree; never permitted.
    CloneIntoCgroup = 24,
    /// Creating a socket (`socket`, `socketpair`: `socket_create`) of a family, type and
    /// protocol outside the defaults (unix; TCP and UDP over IPv4 and IPv6) and the
    /// policy's `spec.sockets`. The event carries the family, the type (`access`) and the
    /// protocol.
    Socket = 25,
    /// Using a capability (`capable`, in the task's own or any child user namespace) the
    /// policy's `spec.capabilities` does not list. The event's `access` is the capability
    /// number; the kernel's quiet probes (`CAP_OPT_NOAUDIT`) are denied without an event.
    Capability = 26,
    /// Connecting an AF_UNIX stream or seqpacket socket (`unix_stream_connect`): allowed
    /// to a listener made in a cgroup governed by the same policy slot, otherwise only to
    /// a named socket whose path grants `connect`. An abstract or unnamed peer's event
    /// path is its name with a leading `@`.
    UnixConnect = 27,
    /// Connecting or sending an AF_UNIX datagram (`unix_may_send`): as for
    /// [`Action::UnixConnect`].
    UnixSend = 28,
    /// A use of what kernel lockdown guards (`locked_down`): raw memory and I/O ports
    /// (`/dev/mem`, `/dev/port`, `ioperm`, `iopl`), MSRs, `/proc/kcore`, debugfs, tracefs,
    /// kprobes, hibernation, ACPI tables, PCI config space, ...: permit `kernel-access`.
    /// The event's `access` is the kernel's lockdown reason.
    Lockdown = 29,
    /// Binding a TCP or UDP socket over IPv4 or IPv6 to a local address and port
    /// (`bind`: `socket_bind`): only where `spec.listen` names the address and port; port 0
    /// (the kernel picks an ephemeral port, as clients do) is always allowed.
    Bind = 30,
    /// Listening on a TCP socket (`listen`: `socket_listen`), judged at the local address
    /// and port it is bound to (port 0 if unbound: the kernel would pick one), as for
    /// [`Action::Bind`].
    Listen = 31,
    /// Receiving a descriptor from another process (`SCM_RIGHTS`, `pidfd_getfd`:
    /// `file_receive`): a file with a path is judged as an open of it with the access it
    /// was opened for; a socket only if it was made in a cgroup of the same policy slot;
    /// namespace files and anonymous files other than eventfd, epoll, timerfd, signalfd
    /// and pidfd (bpf objects, io_uring, perf events, inotify, ...) never; pipes and files
    /// on kernel-internal mounts (memfd, ...) are allowed. The event's path is the file's,
    /// or `socket:PROTO`, `anon_inode:NAME`, `nsfs` for those without one.
    Receive = 32,
}

impl Action {
    /// Every action, in number order.
    pub const ALL: [Action; 32] = [
        Action::Exec,
        Action::Open,
        Action::MapExec,
        Action::Connect,
        Action::Send,
        Action::Create,
        Action::Remove,
        Action::Link,
        Action::Rename,
        Action::Truncate,
        Action::Chmod,
        Action::Chown,
        Action::Utimes,
        Action::Xattr,
        Action::UringCreds,
        Action::Signal,
        Action::Ptrace,
        Action::Bpf,
        Action::Mount,
        Action::Chroot,
        Action::UserNamespace,
        Action::KernelLoad,
        Action::PerfEvent,
        Action::CloneIntoCgroup,
        Action::Socket,
        Action::Capability,
        Action::UnixConnect,
        Action::UnixSend,
        Action::Lockdown,
        Action::Bind,
        Action::Listen,
        Action::Receive,
    ];

    /// The action with this number, if any.
    pub fn from_raw(raw: u32) -> Option<Self> {
        Self::ALL.iter().copied().find(|a| *a as u32 == raw)
    }

    /// Whether the action is about a file (its event has a path and access bits).
    pub const fn is_file(self) -> bool {
        !matches!(
            self,
            Action::Connect
                | Action::Send
                | Action::UringCreds
                | Action::Signal
                | Action::Ptrace
                | Action::Bpf
                | Action::Mount
                | Action::Chroot
                | Action::UserNamespace
                | Action::KernelLoad
                | Action::PerfEvent
                | Action::CloneIntoCgroup
                | Action::Socket
                | Action::Capability
                | Action::Lockdown
                | Action::Bind
                | Action::Listen
        )
    }
}

/// Access bits of a path rule and of a file request.
pub mod access {
    /// Open for reading.
    pub const READ: u32 = 1;
    /// Open for writing or appending.
    pub const WRITE: u32 = 2;
    /// Open for execution (`FMODE_EXEC`) or map executable.
    pub const EXEC: u32 = 4;
    /// Run as a program (`execve`); only exec rules grant it, bound to a file identity.
    pub const RUN: u32 = 8;
    /// Make a regular file, directory, symlink, FIFO or socket at the path.
    pub const CREATE: u32 = 0x10;
    /// Make a character device node at the path (never implied by [`CREATE`]).
    pub const MAKE_CHAR: u32 = 0x20;
    /// Make a block device node at the path (never implied by [`CREATE`]).
    pub const MAKE_BLOCK: u32 = 0x40;
    /// Remove the file or directory at the path.
    pub const REMOVE: u32 = 0x80;
    /// Link or rename into, or out of, the path across directories.
    pub const REFER: u32 = 0x100;
    /// Truncate the file at the path.
    pub const TRUNCATE: u32 = 0x200;
    /// Change the mode of the file at the path.
    pub const CHMOD: u32 = 0x400;
    /// Change the owner or group of the file at the path.
    pub const CHOWN: u32 = 0x800;
    /// Set the timestamps of the file at the path.
    pub const UTIMES: u32 = 0x1000;
    /// Set or remove extended attributes (POSIX ACLs included) of the file at the path.
    pub const XATTR: u32 = 0x2000;
    /// Connect or send to the AF_UNIX socket bound at the path, where its owner is not
    /// governed by the same policy.
    pub const CONNECT: u32 = 0x4000;
    /// Rights that act on the tree below a directory rule, not on the directory itself:
    /// a directory rule's own entry does not get them.
    pub const TREE: u32 = CREATE | MAKE_CHAR | MAKE_BLOCK | REMOVE | REFER;
    /// Rights a file carries with it: a link or rename of a file must not gain any of them.
    pub const FILE: u32 = READ | WRITE | EXEC | TRUNCATE | CHMOD | CHOWN | UTIMES | XATTR | CONNECT;
    /// Every bit with its name in policies, events and explanations (`run` is not written
    /// in policies: exec rules grant it).
    pub const NAMES: [(u32, &str); 15] = [
        (READ, "read"),
        (WRITE, "write"),
        (EXEC, "exec"),
        (RUN, "run"),
        (CREATE, "create"),
        (MAKE_CHAR, "make-char"),
        (MAKE_BLOCK, "make-block"),
        (REMOVE, "remove"),
        (REFER, "refer"),
        (TRUNCATE, "truncate"),
        (CHMOD, "chmod"),
        (CHOWN, "chown"),
        (UTIMES, "utimes"),
        (XATTR, "xattr"),
        (CONNECT, "connect"),
    ];
}

/// Flags of a path rule ([`PathRule::flags`]).
pub mod path_flags {
    /// Another entry of the same policy lies strictly below this one: a directory moved
    /// here across directories could gain that entry's rights.
    pub const HAS_DEEPER: u32 = 1;
}

/// Policy flags in [`PolicyInfo::flags`].
pub mod policy_flags {
    /// Audit mode: denials are recorded and allowed.
    pub const AUDIT: u32 = 1;
    /// Every decision is an event, not just denials.
    pub const EVENTS_ALL: u32 = 2;
    /// An action whose event cannot be recorded is denied.
    pub const STRICT: u32 = 4;
    /// Once expired, decisions are audited (allowed and recorded) instead of denied: only
    /// when the host configuration explicitly chooses it.
    pub const EXPIRED_AUDIT: u32 = 8;
    /// The slot is the host's no-policy fallback: every decision is `no-policy` (denied, or
    /// audited with [`AUDIT`]).
    pub const NO_POLICY: u32 = 16;
}

/// One policy slot: what the rules keyed by this slot's id are, and how to apply them.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PolicyInfo {
    /// The policy version (from the signed bundle; 0 for an unsigned local policy).
    pub version: u64,
    /// `bpf_ktime_get_boot_ns()` at which the bundle expires (0: never). Boot time, so
    /// setting the wall clock back cannot extend a policy, and it holds with no agent.
    pub expires_boot_ns: u64,
    /// [`policy_flags`] bits.
    pub flags: u32,
    /// Non-zero once the slot's rules are all in place.
    pub loaded: u32,
    /// [`system`] permit bits: the system actions `spec.permits` lists.
    pub permits: u32,
    /// Netlink protocols (bit N: protocol N) `spec.sockets` allows.
    pub netlink_protocols: u32,
    /// Address families (bit N: family N) `spec.sockets` allows with any type and protocol.
    pub socket_families: u64,
    /// [`sockets`] `INET_*` bits: the IPv4/IPv6 sockets past TCP and UDP that
    /// `spec.sockets` allows.
    pub inet_sockets: u32,
    /// Zero: keeps the struct free of implicit padding.
    pub _pad: u32,
    /// Bit N: capability N ([`CAPABILITIES`]) is allowed (`spec.capabilities`).
    pub capabilities: u64,
}

/// The capabilities by number (`CAP_CHOWN` is 0), as `spec.capabilities` and events name
/// them.
pub const CAPABILITIES: [&str; 41] = [
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

/// Socket families, types and protocols: what `socket_create` allows by default, and the
/// names `spec.sockets` and events use.
pub mod sockets {
    /// `AF_UNIX`.
    pub const AF_UNIX: u32 = 1;
    /// `AF_INET`.
    pub const AF_INET: u32 = 2;
    /// `AF_INET6`.
    pub const AF_INET6: u32 = 10;
    /// `AF_NETLINK`.
    pub const AF_NETLINK: u32 = 16;
    /// `SOCK_STREAM`.
    pub const SOCK_STREAM: u32 = 1;
    /// `SOCK_DGRAM`.
    pub const SOCK_DGRAM: u32 = 2;
    /// `SOCK_RAW`.
    pub const SOCK_RAW: u32 = 3;
    /// `IPPROTO_ICMP`.
    pub const IPPROTO_ICMP: u32 = 1;
    /// `IPPROTO_TCP`.
    pub const IPPROTO_TCP: u32 = 6;
    /// `IPPROTO_UDP`.
    pub const IPPROTO_UDP: u32 = 17;
    /// `IPPROTO_ICMPV6`.
    pub const IPPROTO_ICMPV6: u32 = 58;
    /// `IPPROTO_MPTCP`.
    pub const IPPROTO_MPTCP: u32 = 262;
    /// Netlink protocols are below this (`MAX_LINKS`).
    pub const NETLINK_PROTOCOLS: u32 = 32;

    /// `inet-raw`: `SOCK_RAW` over IPv4 or IPv6, any protocol.
    pub const INET_RAW: u32 = 1;
    /// `inet-ping`: ICMP (ICMPv6) datagram sockets, which no cgroup send hook sees.
    pub const INET_PING: u32 = 2;
    /// `inet-other`: every other IPv4/IPv6 socket (SCTP, UDP-Lite, ...).
    pub const INET_OTHER: u32 = 4;

    /// Address families by name (for `spec.sockets` and events).
    pub const FAMILIES: [(u32, &str); 18] = [
        (AF_UNIX, "unix"),
        (AF_INET, "inet"),
        (AF_INET6, "inet6"),
        (15, "key"),
        (AF_NETLINK, "netlink"),
        (17, "packet"),
        (21, "rds"),
        (26, "llc"),
        (29, "can"),
        (30, "tipc"),
        (31, "bluetooth"),
        (38, "alg"),
        (40, "vsock"),
        (41, "kcm"),
        (42, "qipcrtr"),
        (43, "smc"),
        (44, "xdp"),
        (45, "mctp"),
    ];
    /// Socket types by name.
    pub const TYPES: [(u32, &str); 7] = [
        (SOCK_STREAM, "stream"),
        (SOCK_DGRAM, "dgram"),
        (SOCK_RAW, "raw"),
        (4, "rdm"),
        (5, "seqpacket"),
        (6, "dccp"),
        (10, "packet"),
    ];
    /// Netlink protocols by name (`netlink-route`, ...; `netlink-N` for the others).
    pub const NETLINK: [(u32, &str); 10] = [
        (0, "route"),
        (4, "sock-diag"),
        (6, "xfrm"),
        (9, "audit"),
        (11, "connector"),
        (12, "netfilter"),
        (15, "kobject-uevent"),
        (16, "generic"),
        (21, "crypto"),
        (7, "selinux"),
    ];

    /// Whether a socket is allowed without any `spec.sockets` entry: unix sockets, and
    /// TCP (MPTCP) streams and UDP datagrams over IPv4 and IPv6.
    pub const fn default_allowed(family: u32, kind: u32, protocol: u32) -> bool {
        match family {
            AF_UNIX => true,
            AF_INET | AF_INET6 => matches!(
                (kind, protocol),
                (SOCK_STREAM, 0 | IPPROTO_TCP | IPPROTO_MPTCP) | (SOCK_DGRAM, 0 | IPPROTO_UDP)
            ),
            _ => false,
        }
    }

    /// Which `INET_*` bit an IPv4/IPv6 socket outside the defaults needs.
    pub const fn inet_class(family: u32, kind: u32, protocol: u32) -> u32 {
        let icmp = if family == AF_INET6 {
            IPPROTO_ICMPV6
        } else {
            IPPROTO_ICMP
        };
        if kind == SOCK_RAW {
            INET_RAW
        } else if kind == SOCK_DGRAM && protocol == icmp {
            INET_PING
        } else {
            INET_OTHER
        }
    }
}

/// System actions a policy may permit (`spec.permits`), and what the events of the others
/// carry.
pub mod system {
    /// `mount`: every [`super::Action::Mount`] kind.
    pub const MOUNT: u32 = 1;
    /// `chroot`.
    pub const CHROOT: u32 = 2;
    /// `user-namespaces`: creating user namespaces.
    pub const USER_NAMESPACES: u32 = 4;
    /// `kernel-load`: modules, firmware, kexec images, policies.
    pub const KERNEL_LOAD: u32 = 8;
    /// `perf-events`: `perf_event_open`.
    pub const PERF_EVENTS: u32 = 16;
    /// `kernel-access`: what kernel lockdown guards (`/dev/mem`, `/dev/port`,
    /// `ioperm`/`iopl`, MSRs, `/proc/kcore`, debugfs, tracefs, kprobes, hibernation, ...).
    pub const KERNEL_ACCESS: u32 = 32;
    /// `bpf`: the `bpf()` system call for the workload's own maps and network programs
    /// ([`bpf_permitted`]); never to reach objects it did not make, never tracing.
    pub const BPF: u32 = 64;
    /// Every permit with its name in `spec.permits`.
    pub const PERMITS: [(u32, &str); 7] = [
        (MOUNT, "mount"),
        (CHROOT, "chroot"),
        (USER_NAMESPACES, "user-namespaces"),
        (KERNEL_LOAD, "kernel-load"),
        (PERF_EVENTS, "perf-events"),
        (KERNEL_ACCESS, "kernel-access"),
        (BPF, "bpf"),
    ];

    /// `BPF_PROG_LOAD`.
    pub const BPF_PROG_LOAD: u32 = 5;

    /// `enum bpf_cmd` in order, as events and `explain` name the commands.
    pub const BPF_COMMAND_NAMES: [&str; 36] = [
        "map-create",
        "map-lookup-elem",
        "map-update-elem",
        "map-delete-elem",
        "map-get-next-key",
        "prog-load",
        "obj-pin",
        "obj-get",
        "prog-attach",
        "prog-detach",
        "prog-test-run",
        "prog-get-next-id",
        "map-get-next-id",
        "prog-get-fd-by-id",
        "map-get-fd-by-id",
        "obj-get-info-by-fd",
        "prog-query",
        "raw-tracepoint-open",
        "btf-load",
        "btf-get-fd-by-id",
        "task-fd-query",
        "map-lookup-and-delete-elem",
        "map-freeze",
        "btf-get-next-id",
        "map-lookup-batch",
        "map-lookup-and-delete-batch",
        "map-update-batch",
        "map-delete-batch",
        "link-create",
        "link-update",
        "link-get-fd-by-id",
        "link-get-next-id",
        "enable-stats",
        "iter-create",
        "link-detach",
        "prog-bind-map",
    ];

    /// `bpf()` commands the `bpf` permit allows, bit N for command N: maps and their
    /// elements, loading (of [`BPF_PROG_TYPES_PERMITTED`]), pinning, attaching, links,
    /// test runs, BTF, queries and information on descriptors the task holds. Never the
    /// commands that reach objects by id or path (`*_GET_NEXT_ID`, `*_GET_FD_BY_ID`,
    /// `BPF_OBJ_GET`: the way to Rampart's), `RAW_TRACEPOINT_OPEN`, `TASK_FD_QUERY`,
    /// `ENABLE_STATS`, `ITER_CREATE` (kernel-wide reading) or tokens.
    pub const BPF_COMMANDS_PERMITTED: u64 = (1 << 0)
        | (1 << 1)
        | (1 << 2)
        | (1 << 3)
        | (1 << 4)
        | (1 << BPF_PROG_LOAD)
        | (1 << 6)
        | (1 << 8)
        | (1 << 9)
        | (1 << 10)
        | (1 << 15)
        | (1 << 16)
        | (1 << 18)
        | (1 << 21)
        | (1 << 22)
        | (1 << 24)
        | (1 << 25)
        | (1 << 26)
        | (1 << 27)
        | (1 << 28)
        | (1 << 29)
        | (1 << 34)
        | (1 << 35);

    /// Program types the `bpf` permit may load, bit N for `enum bpf_prog_type` N: socket,
    /// traffic-control, XDP, cgroup, sockmap, lightweight-tunnel, flow-dissector, sk_lookup
    /// and netfilter programs. Never kprobe, tracepoint, perf-event, raw tracepoint,
    /// tracing, `struct_ops`, extension, LSM or syscall programs: they watch or change the
    /// kernel for every task (an `fmod_ret` program could undo Rampart's denials).
    pub const BPF_PROG_TYPES_PERMITTED: u64 = (1 << 1)
        | (1 << 3)
        | (1 << 4)
        | (1 << 6)
        | (1 << 8)
        | (1 << 9)
        | (1 << 10)
        | (1 << 11)
        | (1 << 12)
        | (1 << 13)
        | (1 << 14)
        | (1 << 15)
        | (1 << 16)
        | (1 << 18)
        | (1 << 19)
        | (1 << 20)
        | (1 << 21)
        | (1 << 22)
        | (1 << 23)
        | (1 << 25)
        | (1 << 30)
        | (1 << 32);

    /// Whether the `bpf` permit allows command `cmd` (`prog_type`: the type a
    /// `BPF_PROG_LOAD` loads; ignored otherwise).
    pub const fn bpf_permitted(cmd: u32, prog_type: u32) -> bool {
        if cmd >= 64 || BPF_COMMANDS_PERMITTED & (1 << cmd) == 0 {
            return false;
        }
        cmd != BPF_PROG_LOAD || (prog_type < 64 && BPF_PROG_TYPES_PERMITTED & (1 << prog_type) != 0)
    }

    /// Names of the kernel's `enum lockdown_reason` values in a lockdown event's
    /// `access`, for the values every supported kernel numbers alike (later ones moved
    /// between 6.1 and 6.12 and are shown as numbers).
    pub const LOCKDOWN_REASONS: [(u32, &str); 9] = [
        (1, "module-signature"),
        (2, "dev-mem"),
        (3, "efi-test"),
        (4, "kexec"),
        (5, "hibernation"),
        (6, "pci-access"),
        (7, "ioport"),
        (8, "msr"),
        (9, "acpi-tables"),
    ];

    /// `access` of a mount event: `mount(2)` (new, bind, remount, move, propagation).
    pub const MOUNT_MOUNT: u32 = 1;
    /// `access` of a mount event: `move_mount(2)`.
    pub const MOUNT_MOVE: u32 = 2;
    /// `access` of a mount event: `umount2(2)`.
    pub const MOUNT_UMOUNT: u32 = 3;
    /// `access` of a mount event: `pivot_root(2)`.
    pub const MOUNT_PIVOT_ROOT: u32 = 4;
    /// The mount kinds by `access` value, with their names in events.
    pub const MOUNT_KINDS: [(u32, &str); 4] = [
        (MOUNT_MOUNT, "mount"),
        (MOUNT_MOVE, "move-mount"),
        (MOUNT_UMOUNT, "umount"),
        (MOUNT_PIVOT_ROOT, "pivot-root"),
    ];

    /// `access` of a kernel-load event for a module request (`request_module`).
    pub const LOAD_MODULE_REQUEST: u32 = 0x100;
    /// `access` of a kernel-load event from `kernel_read_file`: this plus the kernel's
    /// `enum kernel_read_file_id` (1 firmware, 2 module, 3 kexec image, 4 kexec initramfs,
    /// 5 IMA policy, 6 X.509 certificate).
    pub const LOAD_READ_FILE: u32 = 0x200;
    /// `access` of a kernel-load event from `kernel_load_data`: this plus the kernel's
    /// `enum kernel_load_data_id` (same numbering, data passed from userspace).
    pub const LOAD_DATA: u32 = 0x300;
}

/// Key of [`maps::MAP_EXEC_ALLOWED`]: a policy slot and a file identity.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MapExecKey {
    /// The policy slot the mapping was allowed under.
    pub policy: u32,
    /// Zero: keeps `file` 8-byte aligned with no implicit padding.
    pub _pad: u32,
    /// The file that was mapped executable.
    pub file: FileId,
}

/// Capacity of [`maps::MAP_EXEC_ALLOWED`]; least recently used entries are evicted (an
/// evicted file's later `mprotect(PROT_EXEC)` is then denied: fail closed).
pub const MAP_EXEC_CACHE_ENTRIES: u32 = 16384;

/// Data of a path rule key in the LPM trie: the policy id (big-endian, so it is the
/// leading 16 bits of every prefix) then the path. An exact-file rule includes the
/// terminating NUL in its prefix; a directory rule ends with `/` and no NUL.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathKey {
    /// The policy slot, big-endian (the first 16 bits of every prefix).
    pub policy: [u8; 2],
    /// The path bytes (an exact-file key includes its NUL).
    pub path: [u8; PATH_KEY_BYTES],
}

/// Value of a path rule.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathRule {
    /// The rule that names this exact path or directory.
    pub rule_id: u32,
    /// [`access`] bits granted at this path (already including those of enclosing
    /// directory rules: the longest match decides alone).
    pub access: u32,
    /// [`path_flags`] bits.
    pub flags: u32,
    /// Zero: keeps `file` 8-byte aligned with no implicit padding.
    pub _pad: u32,
    /// With [`access::RUN`]: the identity the file had when the policy was loaded.
    pub file: FileId,
}

/// Set in a network rule key's policy field for the rules of `spec.listen` (local
/// addresses a task may bind and listen on); clear for `spec.network` (destinations).
/// Policy slots stay below it ([`MAX_POLICIES`]).
pub const LISTEN_RULES: u16 = 0x8000;
const _: () = assert!(MAX_POLICIES <= LISTEN_RULES as u32);

/// The policy field of a network rule key: the slot, big-endian, with [`LISTEN_RULES`]
/// for local-address rules.
pub const fn net_key_policy(slot: u16, listen: bool) -> [u8; 2] {
    let scope = if listen { LISTEN_RULES } else { 0 };
    (slot | scope).to_be_bytes()
}

/// Data of an IPv4 rule key: policy id (big-endian) then the address, network order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net4Key {
    /// The policy slot, big-endian.
    pub policy: [u8; 2],
    /// The IPv4 address, network order.
    pub addr: [u8; 4],
    /// Zero.
    pub _pad: [u8; 2],
}

/// Data of an IPv6 rule key: policy id (big-endian) then the address, network order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net6Key {
    /// The policy slot, big-endian.
    pub policy: [u8; 2],
    /// The IPv6 address, network order.
    pub addr: [u8; 16],
    /// Zero.
    pub _pad: [u8; 2],
}

/// Protocol number of TCP in [`PortRange::protocol`].
pub const IPPROTO_TCP: u32 = 6;
/// Protocol number of UDP in [`PortRange::protocol`].
pub const IPPROTO_UDP: u32 = 17;

/// Ports a network rule allows, for one protocol.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PortRange {
    /// The rule this range comes from.
    pub rule_id: u32,
    /// First and last allowed port, inclusive, host order.
    pub first: u16,
    /// See `first`.
    pub last: u16,
    /// [`IPPROTO_TCP`] or [`IPPROTO_UDP`].
    pub protocol: u32,
}

/// Value of a network rule: the port ranges allowed to addresses in this prefix (already
/// including those of enclosing prefixes: the longest match decides alone).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetRule {
    /// Used entries of `ranges`.
    pub count: u32,
    /// The rule that names this exact prefix.
    pub rule_id: u32,
    /// The first `count` are in use.
    pub ranges: [PortRange; PORT_RANGES_PER_NET_RULE],
}

/// One kernel decision, as written to the event ring buffer. Plain data, no padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// `bpf_ktime_get_ns()`: monotonic nanoseconds since boot.
    pub ktime_ns: u64,
    /// The cgroup v2 id of the acting task.
    pub cgroup_id: u64,
    /// Version of the policy that decided.
    pub policy_version: u64,
    /// Identity of the target file (zero when not a file or unreadable).
    pub file: FileId,
    /// Thread group id (the userspace "pid").
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Real uid of the task.
    pub uid: u32,
    /// An [`Action`] value.
    pub action: u32,
    /// A [`Reason`] value.
    pub reason: u32,
    /// A [`Decision`] value.
    pub decision: u32,
    /// The matching rule, or [`NO_RULE`].
    pub rule_id: u32,
    /// Requested [`access`] bits (file actions).
    pub access: u32,
    /// The policy slot that decided.
    pub policy_id: u32,
    /// Length of the path including its NUL, as the kernel resolved it (0: no path). May
    /// exceed [`EVENT_PATH_BYTES`]; `path` then holds the first bytes.
    pub path_len: u32,
    /// `AF_INET` (2) or `AF_INET6` (10) for network actions, else 0.
    pub family: u32,
    /// Destination port, host order.
    pub port: u32,
    /// `IPPROTO_TCP` or `IPPROTO_UDP` for network actions.
    pub protocol: u32,
    /// The other task of a signal or ptrace decision (its thread group id); else 0.
    pub peer_pid: u32,
    /// Destination address, network order (IPv4 in the first four bytes).
    pub addr: [u8; 16],
    /// The task's `comm`, NUL-padded.
    pub comm: [u8; 16],
    /// The target path (see `path_len`).
    pub path: [u8; EVENT_PATH_BYTES],
}

/// Names of the maps in the eBPF object, shared so the two sides cannot drift apart.
pub mod maps {
    /// `HashMap<u64 cgroup id, u32 policy id>`: the governed cgroups.
    pub const GOVERNED: &str = "GOVERNED";
    /// `HashMap<CgroupPathKey, u32 policy id>`: the governed cgroup paths. A cgroup made
    /// at one of them (again, or for the first time) is put into `GOVERNED` by the
    /// `cgroup_mkdir` program before anything can run in it.
    pub const GOVERNED_PATHS: &str = "GOVERNED_PATHS";
    /// `HashMap<CgroupPathKey parent, CgroupPattern>`: governed cgroup patterns. A child
    /// made below the parent whose name matches is put into `GOVERNED` by `cgroup_mkdir`
    /// (when its own path is not in `GOVERNED_PATHS`).
    pub const GOVERNED_PATTERNS: &str = "GOVERNED_PATTERNS";
    /// `Array<RollbackMark>` of one entry: the anti-rollback mark (pinned state only).
    pub const ROLLBACK_MARK: &str = "ROLLBACK_MARK";
    /// `Array<LineageAnchor>` of one entry: the lineage's last checkpoint (pinned state only).
    pub const LINEAGE_ANCHOR: &str = "LINEAGE_ANCHOR";
    /// `Array<PolicyInfo>` indexed by policy id.
    pub const POLICIES: &str = "POLICIES";
    /// `LpmTrie<PathKey, PathRule>`.
    pub const PATH_RULES: &str = "PATH_RULES";
    /// `LpmTrie<Net4Key, NetRule>`.
    pub const NET4_RULES: &str = "NET4_RULES";
    /// `LpmTrie<Net6Key, NetRule>`.
    pub const NET6_RULES: &str = "NET6_RULES";
    /// `PerCpuArray<u64>` indexed by [`super::Reason`]: decisions taken.
    pub const DECISIONS: &str = "DECISIONS";
    /// `LruHashMap<MapExecKey, u32 rule id>`: files an executable mapping was allowed for,
    /// per policy slot, so `file_mprotect` can judge by identity.
    pub const MAP_EXEC_ALLOWED: &str = "MAP_EXEC_ALLOWED";
    /// `HashMap<MapExecKey, u32 rule id>`: the identities exec rules pin, per policy slot
    /// (written with the slot's rules): no new name, write or truncation for them.
    pub const EXEC_PINNED: &str = "EXEC_PINNED";
    /// `RingBuf` of [`super::Event`]s.
    pub const EVENTS: &str = "EVENTS";
    /// `PerCpuArray<u64>` with one slot: events lost because the ring buffer was full.
    pub const EVENT_DROPS: &str = "EVENT_DROPS";
}

/// Version of the map layout (keys, values, names). Pinned maps live in a directory named
/// after it, so an agent with a different layout never reuses incompatible maps.
/// 2: the path trie holds 262 144 entries (was 65 536).
/// 3: path rules carry flags, 14 decision counters, the `EXEC_PINNED` map.
/// 4: policy slots carry permit, socket and capability bits, 15 decision counters.
/// 5: network rule keys with [`LISTEN_RULES`] in their policy field hold `spec.listen`.
/// 6: the `GOVERNED_PATTERNS` map.
pub const MAP_ABI_VERSION: u32 = 6;

/// Capacity of [`maps::EXEC_PINNED`] (all policy slots together).
pub const MAX_EXEC_PINNED: u32 = 16384;

/// The maps pinned under the pin directory (state that must outlive the agent).
pub const PINNED_MAPS: [&str; 14] = [
    maps::GOVERNED,
    maps::GOVERNED_PATHS,
    maps::GOVERNED_PATTERNS,
    maps::ROLLBACK_MARK,
    maps::LINEAGE_ANCHOR,
    maps::POLICIES,
    maps::PATH_RULES,
    maps::NET4_RULES,
    maps::NET6_RULES,
    maps::DECISIONS,
    maps::EVENTS,
    maps::EVENT_DROPS,
    maps::MAP_EXEC_ALLOWED,
    maps::EXEC_PINNED,
];

/// Names of the programs in the eBPF object (each is also its hook or attach type).
pub mod programs {
    /// Exec.
    pub const BPRM_CHECK: &str = "bprm_check_security";
    /// File opens.
    pub const FILE_OPEN: &str = "file_open";
    /// Executable file mappings.
    pub const MMAP_FILE: &str = "mmap_file";
    /// `mprotect` adding `PROT_EXEC`.
    pub const FILE_MPROTECT: &str = "file_mprotect";
    /// Creating a file, FIFO, socket or device node (also `open(O_CREAT)`).
    pub const PATH_MKNOD: &str = "path_mknod";
    /// Creating a directory.
    pub const PATH_MKDIR: &str = "path_mkdir";
    /// Creating a symlink.
    pub const PATH_SYMLINK: &str = "path_symlink";
    /// Removing a file.
    pub const PATH_UNLINK: &str = "path_unlink";
    /// Removing a directory.
    pub const PATH_RMDIR: &str = "path_rmdir";
    /// A new hard link.
    pub const PATH_LINK: &str = "path_link";
    /// A rename or exchange.
    pub const PATH_RENAME: &str = "path_rename";
    /// Truncation by path (and, before 6.2, `ftruncate` and `open(O_TRUNC)`).
    pub const PATH_TRUNCATE: &str = "path_truncate";
    /// A mode change.
    pub const PATH_CHMOD: &str = "path_chmod";
    /// An owner change.
    pub const PATH_CHOWN: &str = "path_chown";
    /// Setting or removing an extended attribute (POSIX ACLs too, before 6.2).
    pub const INODE_SETXATTR: &str = "inode_setxattr";
    /// Removing an extended attribute.
    pub const INODE_REMOVEXATTR: &str = "inode_removexattr";
    /// io_uring requests under registered credentials.
    pub const URING_OVERRIDE_CREDS: &str = "uring_override_creds";
    /// Signals to another process.
    pub const TASK_KILL: &str = "task_kill";
    /// Tracing or reading another process's memory.
    pub const PTRACE_ACCESS_CHECK: &str = "ptrace_access_check";
    /// `PTRACE_TRACEME`: handing oneself to the parent as tracer.
    pub const PTRACE_TRACEME: &str = "ptrace_traceme";
    /// `mount(2)`: new mounts, bind, remount, move, propagation changes.
    pub const SB_MOUNT: &str = "sb_mount";
    /// `move_mount(2)`.
    pub const MOVE_MOUNT: &str = "move_mount";
    /// `umount2(2)`.
    pub const SB_UMOUNT: &str = "sb_umount";
    /// `pivot_root(2)`.
    pub const SB_PIVOTROOT: &str = "sb_pivotroot";
    /// `chroot(2)`.
    pub const PATH_CHROOT: &str = "path_chroot";
    /// Creating a user namespace.
    pub const USERNS_CREATE: &str = "userns_create";
    /// `request_module` on the task's behalf.
    pub const KERNEL_MODULE_REQUEST: &str = "kernel_module_request";
    /// The kernel reading a file to load it (`finit_module`, firmware, `kexec_file_load`).
    pub const KERNEL_READ_FILE: &str = "kernel_read_file";
    /// The kernel loading data passed from userspace (`init_module`, `kexec_load`).
    pub const KERNEL_LOAD_DATA: &str = "kernel_load_data";
    /// A new task (`fork`, `clone`, `clone3`): `CLONE_INTO_CGROUP` is refused.
    pub const TASK_ALLOC: &str = "task_alloc";
    /// A new socket (`socket`, `socketpair`).
    pub const SOCKET_CREATE: &str = "socket_create";
    /// A capability check.
    pub const CAPABLE: &str = "capable";
    /// Connecting an AF_UNIX stream or seqpacket socket.
    pub const UNIX_STREAM_CONNECT: &str = "unix_stream_connect";
    /// Connecting or sending an AF_UNIX datagram.
    pub const UNIX_MAY_SEND: &str = "unix_may_send";
    /// What kernel lockdown guards.
    pub const LOCKED_DOWN: &str = "locked_down";
    /// Binding a socket to a local address.
    pub const SOCKET_BIND: &str = "socket_bind";
    /// Listening on a socket.
    pub const SOCKET_LISTEN: &str = "socket_listen";
    /// Receiving a descriptor (`SCM_RIGHTS`, `pidfd_getfd`).
    pub const FILE_RECEIVE: &str = "file_receive";
    /// The LSM programs every supported kernel has, each named after its hook.
    pub const LSM: [&str; 38] = [
        BPRM_CHECK,
        FILE_OPEN,
        MMAP_FILE,
        FILE_MPROTECT,
        PATH_MKNOD,
        PATH_MKDIR,
        PATH_SYMLINK,
        PATH_UNLINK,
        PATH_RMDIR,
        PATH_LINK,
        PATH_RENAME,
        PATH_TRUNCATE,
        PATH_CHMOD,
        PATH_CHOWN,
        INODE_SETXATTR,
        INODE_REMOVEXATTR,
        URING_OVERRIDE_CREDS,
        TASK_KILL,
        PTRACE_ACCESS_CHECK,
        PTRACE_TRACEME,
        SB_MOUNT,
        MOVE_MOUNT,
        SB_UMOUNT,
        SB_PIVOTROOT,
        PATH_CHROOT,
        USERNS_CREATE,
        KERNEL_MODULE_REQUEST,
        KERNEL_READ_FILE,
        KERNEL_LOAD_DATA,
        TASK_ALLOC,
        SOCKET_CREATE,
        CAPABLE,
        UNIX_STREAM_CONNECT,
        UNIX_MAY_SEND,
        LOCKED_DOWN,
        SOCKET_BIND,
        SOCKET_LISTEN,
        FILE_RECEIVE,
    ];
    /// Truncation of an open file (`ftruncate`, `open(O_TRUNC)`): a hook of 6.2 and later,
    /// attached where the kernel has it (before 6.2 those calls reach `path_truncate`).
    pub const FILE_TRUNCATE: &str = "file_truncate";
    /// Setting a POSIX ACL (6.2 and later; before, ACLs are extended attributes).
    pub const INODE_SET_ACL: &str = "inode_set_acl";
    /// Removing a POSIX ACL (6.2 and later).
    pub const INODE_REMOVE_ACL: &str = "inode_remove_acl";
    /// LSM programs attached only where the kernel has their hook.
    pub const LSM_OPTIONAL: [&str; 3] = [FILE_TRUNCATE, INODE_SET_ACL, INODE_REMOVE_ACL];
    /// The hook whose arguments differ between kernels: `inode_setattr` (timestamps) takes
    /// `(dentry, attr)` before 6.8 and `(idmap, dentry, attr)` from 6.8.
    pub const INODE_SETATTR: &str = "inode_setattr";
    /// The forms of [`INODE_SETATTR`], as `(arguments, program)`: the agent attaches the
    /// program whose argument count the kernel's BTF shows.
    pub const INODE_SETATTR_FORMS: [(usize, &str); 2] =
        [(2, "inode_setattr"), (3, "inode_setattr_idmap")];
    /// The `bpf()` system call: `(cmd, attr, size)`, from 6.15 with a `kernel` flag after.
    pub const BPF: &str = "bpf";
    /// The forms of [`BPF`].
    pub const BPF_FORMS: [(usize, &str); 2] = [(3, "bpf"), (4, "bpf_kernel")];
    /// `perf_event_open(2)`: `(attr, type)`, `(type)` on the newest kernels.
    pub const PERF_EVENT_OPEN: &str = "perf_event_open";
    /// The forms of [`PERF_EVENT_OPEN`].
    pub const PERF_EVENT_OPEN_FORMS: [(usize, &str); 2] =
        [(2, "perf_event_open"), (1, "perf_event_open_type")];
    /// Every hook whose arguments differ between kernels, with its forms: exactly one form
    /// of each is attached.
    pub const HOOK_FORMS: [(&str, &[(usize, &str)]); 3] = [
        (INODE_SETATTR, &INODE_SETATTR_FORMS),
        (BPF, &BPF_FORMS),
        (PERF_EVENT_OPEN, &PERF_EVENT_OPEN_FORMS),
    ];

    /// The hook an LSM program attaches to: its own name, except for the forms of a hook
    /// whose arguments differ between kernels.
    pub fn lsm_hook_of(program: &str) -> &str {
        HOOK_FORMS
            .iter()
            .find(|(_, forms)| forms.iter().any(|(_, p)| *p == program))
            .map_or(program, |(hook, _)| hook)
    }
    /// IPv4 `connect`.
    pub const CONNECT4: &str = "connect4";
    /// IPv6 `connect`.
    pub const CONNECT6: &str = "connect6";
    /// IPv4 sends with an address (`sendto`, `sendmsg`).
    pub const SENDMSG4: &str = "sendmsg4";
    /// IPv6 sends with an address.
    pub const SENDMSG6: &str = "sendmsg6";
    /// The cgroup sock_addr programs, each named after its attach type.
    pub const SOCK_ADDR: [&str; 4] = [CONNECT4, CONNECT6, SENDMSG4, SENDMSG6];
    /// A cgroup was made: governs it if its path is governed.
    pub const CGROUP_MKDIR: &str = "cgroup_mkdir";
    /// A cgroup was removed: forgets its id.
    pub const CGROUP_RMDIR: &str = "cgroup_rmdir";
    /// The BTF tracepoint programs, each named after its tracepoint.
    pub const TRACEPOINTS: [&str; 2] = [CGROUP_MKDIR, CGROUP_RMDIR];
}

// The ABI must not change size silently: the agent parses events by this size, and the
// LPM trie keys must stay within the kernel's 256 data bytes.
const _: () = assert!(core::mem::size_of::<Event>() == 384);
const _: () = assert!(core::mem::size_of::<PathKey>() == 256);
const _: () = assert!(core::mem::size_of::<PathRule>() == 32);
const _: () = assert!(core::mem::size_of::<MapExecKey>() == 24);
const _: () = assert!(core::mem::size_of::<CgroupPathKey>() == CGROUP_PATH_BYTES);
const _: () = assert!(core::mem::size_of::<CgroupPattern>() == 2 * CGROUP_PATTERN_BYTES + 16);
const _: () = assert!(core::mem::size_of::<RollbackMark>() == 16 + DIGEST_HEX_BYTES);
const _: () =
    assert!(core::mem::size_of::<LineageAnchor>() == 8 + DIGEST_HEX_BYTES + LINEAGE_ID_HEX_BYTES);
const _: () = assert!(core::mem::size_of::<NetRule>() == 8 + 12 * PORT_RANGES_PER_NET_RULE);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: this and each type below is repr(C), Copy, made only of integers and
    // integer arrays laid out without padding (sizes asserted above); any bits are valid.
    unsafe impl aya::Pod for super::FileId {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::KernelLayout {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::Event {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::PolicyInfo {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::PathKey {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::PathRule {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::Net4Key {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::Net6Key {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::NetRule {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::MapExecKey {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::CgroupPathKey {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::CgroupPattern {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::RollbackMark {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::LineageAnchor {}
}
