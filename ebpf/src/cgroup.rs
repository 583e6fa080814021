//! Governance that follows the cgroup path (`tp_btf/cgroup_mkdir`, `tp_btf/cgroup_rmdir`):
//! a cgroup made at a governed path is put into `GOVERNED` with that path's policy slot
//! while the kernel is still making it, before its directory is visible, so nothing can run
//! in it ungoverned; a removed cgroup's id leaves `GOVERNED` (ids are never reused, so this
//! only keeps the map from filling up with the dead).

use aya_ebpf::{
    helpers::generated::bpf_probe_read_kernel_str, macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use rampart_common::{KernelLayout, CGROUP_PATH_BYTES};

use crate::{
    maps::{layout, CGROUP_PATH_SCRATCH, GOVERNED, GOVERNED_PATHS},
    object::{btf_ptr, btf_u32, btf_u64},
};

#[btf_tracepoint(function = "cgroup_mkdir")]
pub fn cgroup_mkdir(ctx: BtfTracePointContext) -> i32 {
    let cgrp: *const u8 = ctx.arg(0);
    let path: *const u8 = ctx.arg(1);
    govern_new(cgrp, path);
    0
}

#[btf_tracepoint(function = "cgroup_rmdir")]
pub fn cgroup_rmdir(ctx: BtfTracePointContext) -> i32 {
    let cgrp: *const u8 = ctx.arg(0);
    let layout = layout();
    if let Some(id) = v2_cgroup_id(cgrp, layout) {
        let _ = GOVERNED.remove(id);
    }
    0
}

/// The id of `cgrp` if it belongs to the cgroup v2 hierarchy (v1 hierarchies of a hybrid
/// host have ids of their own, which must never enter `GOVERNED`).
fn v2_cgroup_id(cgrp: *const u8, layout: &KernelLayout) -> Option<u64> {
    if layout.valid == 0 || cgrp.is_null() {
        return None;
    }
    let root = btf_ptr(cgrp, layout.cgroup_root);
    if root.is_null() || btf_u32(root, layout.root_hierarchy_id) != 0 {
        return None;
    }
    let kn = btf_ptr(cgrp, layout.cgroup_kn);
    if kn.is_null() {
        return None;
    }
    Some(btf_u64(kn, layout.kn_id))
}

/// Governs `cgrp` with the slot of its path, if the path is governed.
fn govern_new(cgrp: *const u8, path: *const u8) {
    let layout = layout();
    let Some(id) = v2_cgroup_id(cgrp, layout) else {
        return;
    };
    let Some(key) = CGROUP_PATH_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's scratch, used only by this program invocation; zeroed word by
    // word (the key compares all of its bytes), then filled by the helper, which writes at
    // most CGROUP_PATH_BYTES bytes including the NUL.
    let len = unsafe {
        let words = core::ptr::addr_of_mut!((*key).path) as *mut u64;
        let mut i = 0;
        while i < CGROUP_PATH_BYTES / 8 {
            core::ptr::write_volatile(words.add(i), 0);
            i += 1;
        }
        bpf_probe_read_kernel_str(
            core::ptr::addr_of_mut!((*key).path) as *mut _,
            CGROUP_PATH_BYTES as u32,
            path as *const _,
        )
    };
    // A path that filled the buffer may have been cut: governed paths are shorter.
    if len <= 0 || len as usize >= CGROUP_PATH_BYTES {
        return;
    }
    // SAFETY: the scratch is initialised above and read only here.
    let key = unsafe { &*key };
    // SAFETY: the value is copied out at once.
    if let Some(slot) = unsafe { GOVERNED_PATHS.get(key) } {
        let slot = *slot;
        let _ = GOVERNED.insert(id, slot, 0);
    }
}
