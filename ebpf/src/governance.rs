//! Which policy governs the current task: the slot of its deepest governed cgroup (the
//! cgroup itself or any ancestor), and whether that slot is loaded.

use aya_ebpf::helpers::generated::bpf_get_current_ancestor_cgroup_id;
use rampart_common::{KernelLayout, PolicyInfo, MAX_CGROUP_LEVELS};

use crate::{
    maps::{GOVERNED, POLICIES},
    object::read_at,
};

/// The policy slot governing the current task: that of its deepest governed cgroup.
pub fn governing_policy() -> Option<u32> {
    let mut found = None;
    let mut level = 0;
    while level < MAX_CGROUP_LEVELS {
        // SAFETY: a helper call with a scalar argument; it returns 0 past the task's depth.
        let id = unsafe { bpf_get_current_ancestor_cgroup_id(level as i32) };
        if id == 0 {
            break;
        }
        // SAFETY: the value is copied out at once.
        if let Some(policy) = unsafe { GOVERNED.get(id) } {
            found = Some(*policy);
        }
        level += 1;
    }
    found
}

/// [`task_governor`]: no governed cgroup contains the task.
pub const NOBODY: u32 = u32::MAX;
/// [`task_governor`]: the task's cgroup could not be read (or is deeper than the programs
/// look); never "the same policy" as any slot.
pub const UNKNOWN: u32 = u32::MAX - 1;

/// Who governs another task, seen from its cgroup v2 (`task->cgroups->dfl_cgrp`) and that
/// cgroup's ancestors, as [`governing_policy`] sees the current task's: the slot of its
/// deepest governed cgroup, [`NOBODY`] or [`UNKNOWN`]. A plain integer, not an enum: the
/// 6.1 verifier refuses to read half of a spilled register, which an enum's return became.
pub fn task_governor(task: *const u8, layout: &KernelLayout) -> u32 {
    let Some(css_set) = read_at::<*const u8>(task, layout.task_cgroups) else {
        return UNKNOWN;
    };
    let Some(cgrp) = read_at::<*const u8>(css_set, layout.css_set_dfl_cgrp) else {
        return UNKNOWN;
    };
    cgroup_governor(cgrp, layout)
}

/// Who governs a cgroup v2 (`struct cgroup *`, probe-read): the slot of the deepest
/// governed cgroup among it and its ancestors, [`NOBODY`] or [`UNKNOWN`].
#[inline(always)]
pub fn cgroup_governor(cgrp: *const u8, layout: &KernelLayout) -> u32 {
    if cgrp.is_null() {
        return UNKNOWN;
    }
    let Some(depth) = read_at::<i32>(cgrp, layout.cgroup_level) else {
        return UNKNOWN;
    };
    if depth < 0 || depth as u32 >= MAX_CGROUP_LEVELS {
        return UNKNOWN;
    }
    let mut found = NOBODY;
    let mut level = 0u32;
    while level < MAX_CGROUP_LEVELS {
        if level > depth as u32 {
            break;
        }
        let slot = layout.cgroup_ancestors as usize + level as usize * 8;
        let Some(id) = read_at::<*const u8>(cgrp, slot as u32)
            .and_then(|ancestor| read_at::<*const u8>(ancestor, layout.cgroup_kn))
            .and_then(|kn| read_at::<u64>(kn, layout.kn_id))
        else {
            return UNKNOWN;
        };
        // SAFETY: the value is copied out at once.
        if let Some(policy) = unsafe { GOVERNED.get(id) } {
            found = *policy;
        }
        level += 1;
    }
    found
}

/// Who governs the cgroup a socket (`struct sock *`, probe-read) was made in
/// (`sk->sk_cgrp_data`, set when it is made and never changed), as [`cgroup_governor`].
#[inline(always)]
pub fn socket_governor(sk: *const u8, layout: &KernelLayout) -> u32 {
    let cgroup = read_at::<*const u8>(sk, layout.sock_cgrp_data + layout.sock_cgroup)
        .unwrap_or(core::ptr::null());
    cgroup_governor(cgroup, layout)
}

/// The slot's policy, if it is fully loaded.
pub fn policy(id: u32) -> Option<PolicyInfo> {
    match POLICIES.get(id) {
        Some(info) if info.loaded != 0 => Some(*info),
        _ => None,
    }
}
