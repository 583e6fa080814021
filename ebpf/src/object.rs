//! Reading kernel objects: BTF-typed member loads (kept BTF-typed for the verifier) and
//! probe reads, and a file's identity (device, inode).

use aya_ebpf::helpers::{bpf_get_current_task, bpf_probe_read_kernel};
use rampart_common::{FileId, KernelLayout};

/// Loads the pointer member at `offset` of a BTF-typed kernel object with a plain load,
/// so that the verifier keeps the result BTF-typed (which `bpf_d_path` requires).
pub fn btf_ptr(base: *const u8, offset: u32) -> *const u8 {
    if base.is_null() {
        return core::ptr::null();
    }
    // SAFETY: `base` is a BTF-typed pointer from the hook's arguments and `offset` a member
    // offset from the kernel's own BTF; the verifier turns this load into a fault-safe one.
    unsafe { *(base.wrapping_add(offset as usize) as *const *const u8) }
}

/// Loads the `u32` member at `offset` of a BTF-typed kernel object.
pub fn btf_u32(base: *const u8, offset: u32) -> u32 {
    // SAFETY: as in `btf_ptr`.
    unsafe { *(base.wrapping_add(offset as usize) as *const u32) }
}

/// Loads the `u64` member at `offset` of a BTF-typed kernel object.
pub fn btf_u64(base: *const u8, offset: u32) -> u64 {
    // SAFETY: as in `btf_ptr`.
    unsafe { *(base.wrapping_add(offset as usize) as *const u64) }
}

/// `(s_dev, i_ino)` of `file->f_inode`.
pub fn file_identity(file: *const u8, layout: &KernelLayout) -> Option<FileId> {
    let inode: *const u8 = read_at(file, layout.file_inode)?;
    inode_identity(inode, layout)
}

/// `(s_dev, i_ino)` of a dentry's inode; `None` for a negative dentry (nothing there yet)
/// or a failed read.
pub fn dentry_identity(dentry: *const u8, layout: &KernelLayout) -> Option<FileId> {
    let inode: *const u8 = read_at(dentry, layout.dentry_inode)?;
    inode_identity(inode, layout)
}

/// `i_mode` of a dentry's inode (0 for a negative dentry or a failed read).
pub fn dentry_mode(dentry: *const u8, layout: &KernelLayout) -> u16 {
    read_at::<*const u8>(dentry, layout.dentry_inode)
        .and_then(|inode| read_at::<u16>(inode, layout.inode_mode))
        .unwrap_or(0)
}

/// `(s_dev, i_ino)` of an inode.
fn inode_identity(inode: *const u8, layout: &KernelLayout) -> Option<FileId> {
    let ino: u64 = read_at(inode, layout.inode_ino)?;
    let sb: *const u8 = read_at(inode, layout.inode_sb)?;
    let dev: u32 = read_at(sb, layout.sb_dev)?;
    Some(FileId {
        dev: dev as u64,
        ino,
    })
}

/// Reads a `T` at `base + offset` in kernel memory; `None` for a null base or a failed read.
pub fn read_at<T>(base: *const u8, offset: u32) -> Option<T> {
    if base.is_null() {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel copies through the kernel's fault-handling path and
    // returns an error instead of faulting on a bad address.
    unsafe { bpf_probe_read_kernel(base.wrapping_add(offset as usize) as *const T) }.ok()
}

/// Whether the task runs under overridden credentials (`override_creds`: its subjective
/// `cred` is not its objective `real_cred`): the kernel acting on the workload's behalf,
/// as overlayfs does on its layers with the mounter's credentials. In governed cgroups
/// io_uring's registered credentials (the one way a workload could set this up itself) are
/// refused (`uring_override_creds`). An unreadable task counts as not overridden.
pub fn creds_overridden(layout: &KernelLayout) -> bool {
    // SAFETY: a helper call without arguments; the task pointer is only probe-read.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    match (
        read_at::<u64>(task, layout.task_cred),
        read_at::<u64>(task, layout.task_real_cred),
    ) {
        (Some(cred), Some(real)) => cred != real,
        _ => false,
    }
}

/// The magic number of the file system a `struct file` (probe-read) is on.
pub fn file_fs_magic(file: *const u8, layout: &KernelLayout) -> Option<u64> {
    read_at::<*const u8>(file, layout.file_inode)
        .and_then(|inode| read_at::<*const u8>(inode, layout.inode_sb))
        .and_then(|sb| read_at::<u64>(sb, layout.sb_magic))
}

/// `ERR_PTR(-EINVAL)`: the `mnt_ns` of the kernel's private and internal mounts
/// (`clone_private_mount`, `kern_mount`: overlay layers, memfds, pipes, sockets).
const MNT_NS_INTERNAL: u64 = -22i64 as u64;

/// Whether a `struct file` (probe-read) is on a mount no mount namespace holds: the
/// kernel's internal and private mounts, which no path of the workload reaches.
pub fn on_internal_mount(file: *const u8, layout: &KernelLayout) -> bool {
    read_at::<*const u8>(file, layout.file_path + layout.path_mnt)
        .map(|vfsmnt| vfsmnt.wrapping_sub(layout.mount_mnt as usize))
        .and_then(|mount| read_at::<u64>(mount, layout.mount_ns))
        == Some(MNT_NS_INTERNAL)
}
