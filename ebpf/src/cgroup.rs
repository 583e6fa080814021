//! Governance that follows the cgroup path (`tp_btf/cgroup_mkdir`, `tp_btf/cgroup_rmdir`):
//! a cgroup made at a governed path is put into `GOVERNED` with that path's policy slot
//! while the kernel is still making it, before its directory is visible, so nothing can run
//! in it ungoverned; a removed cgroup's id leaves `GOVERNED` (ids are never reused, so this
//! only keeps the map from filling up with the dead). A cgroup whose own path is not
//! governed is governed when its parent has a pattern in `GOVERNED_PATTERNS` that its name
//! matches (`prefix*suffix`).

use aya_ebpf::{
    helpers::generated::bpf_probe_read_kernel_str, macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use rampart_common::{
    CgroupPathKey, CgroupPattern, KernelLayout, CGROUP_PATH_BYTES, CGROUP_PATTERN_BYTES,
};

use crate::{
    maps::{layout, CGROUP_PATH_SCRATCH, GOVERNED, GOVERNED_PATHS, GOVERNED_PATTERNS},
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
        return;
    }
    if let Some(slot) = pattern_slot(key, len as usize - 1) {
        let _ = GOVERNED.insert(id, slot, 0);
    }
}

/// Index mask of a cgroup path byte (`CGROUP_PATH_BYTES` is a power of two), so that every
/// index the verifier sees is in bounds.
const PATH_MASK: usize = CGROUP_PATH_BYTES - 1;

/// The slot of the pattern of `path`'s parent that its last component matches, if any.
/// `n` is the path's length without the NUL (less than `CGROUP_PATH_BYTES`).
fn pattern_slot(path: &CgroupPathKey, n: usize) -> Option<u32> {
    // The last `/`; the kernel's paths start with one, and patterns are never of the root.
    let mut last = 0usize;
    let mut i = 0usize;
    while i < CGROUP_PATH_BYTES {
        if i >= n {
            break;
        }
        if path.path[i & PATH_MASK] == b'/' {
            last = i;
        }
        i += 1;
    }
    if last == 0 {
        return None;
    }
    let parent = CGROUP_PATH_SCRATCH.get_ptr_mut(1)?;
    // SAFETY: this CPU's second scratch entry, used only by this program invocation;
    // written whole (the parent's bytes, then zeros) before it is read as a key.
    let parent = unsafe {
        let bytes = core::ptr::addr_of_mut!((*parent).path) as *mut u8;
        let mut i = 0usize;
        while i < CGROUP_PATH_BYTES {
            let b = if i < last {
                path.path[i & PATH_MASK]
            } else {
                0
            };
            core::ptr::write_volatile(bytes.add(i & PATH_MASK), b);
            i += 1;
        }
        &*parent
    };
    // SAFETY: the value is only read here, within this program run.
    let rule: &CgroupPattern = unsafe { GOVERNED_PATTERNS.get(parent) }?;
    let start = last + 1;
    let (plen, slen) = (rule.prefix_len as usize, rule.suffix_len as usize);
    if plen > CGROUP_PATTERN_BYTES || slen > CGROUP_PATTERN_BYTES || n < start + plen + slen {
        return None;
    }
    let mut j = 0usize;
    while j < CGROUP_PATTERN_BYTES {
        if j >= plen {
            break;
        }
        if path.path[(start + j) & PATH_MASK] != rule.prefix[j] {
            return None;
        }
        j += 1;
    }
    let tail = n - slen;
    let mut j = 0usize;
    while j < CGROUP_PATTERN_BYTES {
        if j >= slen {
            break;
        }
        if path.path[(tail + j) & PATH_MASK] != rule.suffix[j] {
            return None;
        }
        j += 1;
    }
    Some(rule.slot)
}
