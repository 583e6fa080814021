//! cgroupfs writes: a governed task writes only to the cgroup files of cgroups its own
//! policy governs. Writing a pid to another cgroup's `cgroup.procs` or `cgroup.threads`
//! would move the task (or another) out of governance, and `memory.max`, `cgroup.kill`,
//! `cgroup.freeze` and the rest reach past the sandbox; a path rule that grants `write`
//! under the cgroup2 mount does not change that. The cgroup is found from the file itself
//! (its kernfs node's parent is its cgroup's directory, whose node id is the cgroup id), so
//! another mount of cgroup2, a bind mount or a renamed directory name the same cgroup.

use rampart_common::{KernelLayout, MAX_CGROUP_LEVELS};

use crate::{
    governance::{NOBODY, UNKNOWN},
    maps::GOVERNED,
    object::read_at,
};

/// `CGROUP2_SUPER_MAGIC`.
const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;

/// [`cgroup_file_governor`]: the file is not on a cgroup2 file system.
pub const NOT_CGROUPFS: u32 = u32::MAX - 2;

/// Who governs the cgroup a file of cgroupfs belongs to: the slot of the deepest governed
/// cgroup among it and its ancestors, [`NOBODY`], [`UNKNOWN`] (unreadable, or deeper than
/// the programs look), or [`NOT_CGROUPFS`]. A plain integer, as [`task_governor`] returns.
///
/// [`task_governor`]: crate::governance::task_governor
#[inline(always)]
pub fn cgroup_file_governor(file: *const u8, layout: &KernelLayout) -> u32 {
    let Some(inode) = read_at::<*const u8>(file, layout.file_inode) else {
        return UNKNOWN;
    };
    let Some(magic) = read_at::<*const u8>(inode, layout.inode_sb)
        .and_then(|sb| read_at::<u64>(sb, layout.sb_magic))
    else {
        return UNKNOWN;
    };
    if magic != CGROUP2_SUPER_MAGIC {
        return NOT_CGROUPFS;
    }
    // A kernfs inode's i_private is its node; a cgroup file's parent node is the cgroup's
    // directory.
    let Some(mut node) = read_at::<*const u8>(inode, layout.inode_private)
        .and_then(|kn| read_at::<*const u8>(kn, layout.kn_parent))
    else {
        return UNKNOWN;
    };
    let mut level = 0u32;
    // The deepest governed cgroup decides: the first one found walking up.
    while level <= MAX_CGROUP_LEVELS {
        if node.is_null() {
            return NOBODY;
        }
        let Some(id) = read_at::<u64>(node, layout.kn_id) else {
            return UNKNOWN;
        };
        // SAFETY: the value is copied out at once.
        if let Some(slot) = unsafe { GOVERNED.get(id) } {
            return *slot;
        }
        let Some(parent) = read_at::<*const u8>(node, layout.kn_parent) else {
            return UNKNOWN;
        };
        node = parent;
        level += 1;
    }
    UNKNOWN
}
