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

/// Governs `cgrp` with the slot of its path, if the path is governed, else with the slot
/// of its parent's pattern, if its name matches.
fn govern_new(cgrp: *const u8, path: *const u8) {
    let layout = layout();
    let Some(id) = v2_cgroup_id(cgrp, layout) else {
        return;
    };
    let Some(key) = CGROUP_PATH_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's scratch, used only by this program invocation; zeroed (the key
    // compares all of its bytes), then filled by the helper, which writes at most
    // CGROUP_PATH_BYTES bytes including the NUL.
    let len = unsafe { read_key(key, path, CGROUP_PATH_BYTES as u32) };
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
    if let Some(slot) = pattern_slot(key, len as usize - 1, path) {
        let _ = GOVERNED.insert(id, slot, 0);
    }
}

/// Zeroes the key at `key`, then reads the kernel string at `src` into it (at most `size`
/// bytes with the NUL); returns the helper's result (bytes written with the NUL, or an
/// error).
///
/// # Safety
/// `key` must be this CPU's scratch entry, used by nothing else during the call.
unsafe fn read_key(key: *mut CgroupPathKey, src: *const u8, size: u32) -> i64 {
    // SAFETY: the caller's: `key` is this CPU's scratch entry, written only here; the
    // helper writes at most `size` (at most CGROUP_PATH_BYTES) bytes into it.
    unsafe {
        let words = core::ptr::addr_of_mut!((*key).path) as *mut u64;
        let mut i = 0;
        while i < CGROUP_PATH_BYTES / 8 {
            core::ptr::write_volatile(words.add(i), 0);
            i += 1;
        }
        bpf_probe_read_kernel_str(
            core::ptr::addr_of_mut!((*key).path) as *mut _,
            size,
            src as *const _,
        )
    }
}

/// Index mask of a cgroup path byte (`CGROUP_PATH_BYTES` is a power of two), so that every
/// index the verifier sees is in bounds.
const PATH_MASK: usize = CGROUP_PATH_BYTES - 1;

/// The slot of the pattern of the parent of `path` (read from the kernel's `src`, `n`
/// bytes without the NUL) that its last component matches, if any.
///
/// Shaped for the verifier: the scan for the last `/` exits at one of up to 256 places, so
/// what follows it uses the position only as helper arguments (the parent and the name are
/// read again from `src`), after which it is dead and the verifier's states merge.
fn pattern_slot(path: &CgroupPathKey, n: usize, src: *const u8) -> Option<u32> {
    // The last `/`, scanning back; the kernel's paths start with one, and patterns are
    // never of the root, so a `/` at 0 is no match.
    let mut last = 0usize;
    let mut j = 0usize;
    while j < CGROUP_PATH_BYTES {
        if j >= n {
            break;
        }
        let i = n - 1 - j;
        if path.path[i & PATH_MASK] == b'/' {
            last = i;
            break;
        }
        j += 1;
    }
    if last == 0 || last >= CGROUP_PATH_BYTES - 2 {
        return None;
    }
    let parent = CGROUP_PATH_SCRATCH.get_ptr_mut(1)?;
    let name = CGROUP_PATH_SCRATCH.get_ptr_mut(2)?;
    // SAFETY: this CPU's second and third scratch entries, used only by this program run.
    // The parent: the path's first `last` bytes and a NUL, zero-padded. The name: what
    // follows that `/`, with its NUL. `src + last + 1` stays within the kernel's string.
    let name_len = unsafe {
        read_key(parent, src, (last + 1) as u32);
        read_key(name, src.wrapping_add(last + 1), CGROUP_PATH_BYTES as u32)
    };
    if name_len <= 0 || name_len as usize > CGROUP_PATH_BYTES {
        return None;
    }
    let len = name_len as usize - 1;
    // SAFETY: both entries are initialised above and only read from here.
    let (parent, name) = unsafe { (&*parent, &*name) };
    // SAFETY: the value is only read here, within this program run.
    let rule: &CgroupPattern = unsafe { GOVERNED_PATTERNS.get(parent) }?;
    let (plen, slen) = (rule.prefix_len as usize, rule.suffix_len as usize);
    if plen > CGROUP_PATTERN_BYTES || slen > CGROUP_PATTERN_BYTES || len < plen + slen {
        return None;
    }
    let mut j = 0usize;
    while j < CGROUP_PATTERN_BYTES {
        if j >= plen {
            break;
        }
        if name.path[j & PATH_MASK] != rule.prefix[j] {
            return None;
        }
        j += 1;
    }
    let tail = len - slen;
    let mut j = 0usize;
    while j < CGROUP_PATTERN_BYTES {
        if j >= slen {
            break;
        }
        if name.path[(tail + j) & PATH_MASK] != rule.suffix[j] {
            return None;
        }
        j += 1;
    }
    Some(rule.slot)
}
