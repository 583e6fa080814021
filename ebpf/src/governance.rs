//! Which policy governs the current task: the slot of its deepest governed cgroup (the
//! cgroup itself or any ancestor), and whether that slot is loaded.

use aya_ebpf::helpers::generated::bpf_get_current_ancestor_cgroup_id;
use rampart_common::{PolicyInfo, MAX_CGROUP_LEVELS};

use crate::maps::{GOVERNED, POLICIES};

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

/// The slot's policy, if it is fully loaded.
pub fn policy(id: u32) -> Option<PolicyInfo> {
    match POLICIES.get(id) {
        Some(info) if info.loaded != 0 => Some(*info),
        _ => None,
    }
}
