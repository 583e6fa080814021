//! Every path of a dentry. The hooks that get a dentry and no mount (`inode_setattr`, the
//! extended attribute and ACL hooks) cannot tell which path the workload used, and a file
//! may be seen through several mounts (bind mounts). The search follows the superblock's
//! list of mounts (`s_mounts`: a list head to 6.16, a chain from 6.17), keeps those in the task's mount namespace whose tree holds
//! the dentry, and judges the path through each: the action is allowed only if every such
//! path allows it. No path in the task's namespace, or more mounts than the search follows,
//! denies with `path-unresolvable`.

use aya_ebpf::{
    cty::c_void,
    helpers::{bpf_get_current_task, generated::bpf_loop},
    macros::map,
    maps::PerCpuArray,
};
use rampart_common::{KernelLayout, Reason, NO_RULE};

use crate::{
    decision::Request,
    maps::layout,
    object::read_at,
    path::{grants, lookup},
    walk::walk_on_mount,
};

/// List nodes the search follows (mounts of the superblock in every namespace).
const MAX_NODES: u32 = 1024;
/// Mounts of the task's namespace it walks.
const MAX_WALKS: u32 = 32;

const RUNNING: u32 = u32::MAX;
const DONE: u32 = u32::MAX - 1;
const GO_ON: i64 = 0;
const STOP: i64 = 1;

/// What the search is about (on the caller's stack: `bpf_loop` hands it to each step).
/// Only the node changes here, to a number read from the kernel; the counts live in
/// [`Tally`], so that the verifier does not see a new state at every step.
#[repr(C)]
struct Search {
    /// The list node to visit next, and the list's head (in the superblock).
    node: u64,
    head: u64,
    dentry: u64,
    /// The task's mount namespace.
    ns: u64,
    policy_id: u32,
    need: u32,
}

/// The search's counts and outcome.
#[repr(C)]
pub struct Tally {
    walks: u32,
    /// Paths that allowed; the last one's length and rule.
    allowed: u32,
    path_len: u32,
    rule: u32,
    /// [`RUNNING`], [`DONE`], or the [`Reason`] of the path that denied.
    outcome: u32,
    _pad: u32,
}

#[map(name = "MOUNT_SEARCH")]
static MOUNT_SEARCH: PerCpuArray<Tally> = PerCpuArray::with_max_entries(1, 0);

/// This CPU's tally.
fn tally() -> Option<&'static mut Tally> {
    // SAFETY: this CPU's slot, used by one program invocation at a time.
    MOUNT_SEARCH.get_ptr_mut(0).map(|t| unsafe { &mut *t })
}

/// Judges `request`'s access (never `run`: no identity is compared) on every path of `dentry`
/// in the task's mount namespace. Returns the judgement and its rule; the request's path is
/// the one that denied, or the last one that allowed.
pub fn judge_every_path(
    dentry: *const u8,
    policy_id: u32,
    request: &mut Request,
    layout: &KernelLayout,
) -> (Reason, u32) {
    let unresolvable = (Reason::PathUnresolvable, NO_RULE);
    // SAFETY: a helper call without arguments; the task pointer is only probe-read.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let Some(nsproxy) = read_at::<*const u8>(task, layout.task_nsproxy) else {
        return unresolvable;
    };
    let Some(ns) = read_at::<u64>(nsproxy, layout.nsproxy_mnt_ns) else {
        return unresolvable;
    };
    let Some(sb) = read_at::<*const u8>(dentry, layout.dentry_sb) else {
        return unresolvable;
    };
    let head = sb.wrapping_add(layout.sb_mounts as usize);
    // The list head's `next` (its first member), or the chain's first mount.
    let Some(first) = read_at::<u64>(head, 0) else {
        return unresolvable;
    };
    let first = next_node(first, head as u64, layout);
    let Some(t) = tally() else {
        return unresolvable;
    };
    *t = Tally {
        walks: 0,
        allowed: 0,
        path_len: 0,
        rule: NO_RULE,
        outcome: RUNNING,
        _pad: 0,
    };
    let mut search = Search {
        node: first,
        head: head as u64,
        dentry: dentry as u64,
        ns,
        policy_id,
        need: request.access,
    };
    let ctx = &mut search as *mut Search as *mut c_void;
    // SAFETY: `ctx` points at `search` on this stack frame, alive for the whole call; the
    // callback only reads and writes it through that pointer.
    unsafe { bpf_loop(MAX_NODES, visit as *mut c_void, ctx, 0) };
    let Some(t) = tally() else {
        return unresolvable;
    };
    request.path_len = t.path_len;
    match t.outcome {
        DONE if t.allowed > 0 => (Reason::Allowed, t.rule),
        // No path in the namespace, or the list (or the walks) ran out.
        DONE | RUNNING => unresolvable,
        reason => (
            Reason::from_raw(reason).unwrap_or(Reason::PathUnresolvable),
            t.rule,
        ),
    }
}

/// The list node after one whose link reads `next`: in a list head, the link is the next
/// node itself; in a chain (6.17 and later), the next mount, whose node is its link member
/// (and the end, a null mount, becomes the head, as in a list).
fn next_node(next: u64, head: u64, layout: &KernelLayout) -> u64 {
    if layout.mounts_chained == 0 {
        next
    } else if next == 0 {
        head
    } else {
        next.wrapping_add(layout.mount_instance as u64)
    }
}

/// One node of the superblock's mount list.
extern "C" fn visit(_index: u64, ctx: *mut c_void) -> i64 {
    let search = ctx as *mut Search;
    // SAFETY: `ctx` is the `Search` that `judge_every_path` passed to bpf_loop.
    let search = unsafe { &mut *search };
    let Some(t) = tally() else {
        return STOP;
    };
    match visit_one(search, t, layout()) {
        Ok(true) => GO_ON,
        Ok(false) => {
            t.outcome = DONE;
            STOP
        }
        Err((reason, rule)) => {
            t.outcome = reason as u32;
            t.rule = rule;
            STOP
        }
    }
}

/// Judges the path through one mount if it is the task's; false at the list's end.
fn visit_one(
    search: &mut Search,
    t: &mut Tally,
    layout: &KernelLayout,
) -> Result<bool, (Reason, u32)> {
    let unresolvable = (Reason::PathUnresolvable, NO_RULE);
    if search.node == search.head {
        return Ok(false);
    }
    let node = search.node as *const u8;
    let next: u64 = read_at(node, 0).ok_or(unresolvable)?;
    search.node = next_node(next, search.head, layout);
    let mount = node.wrapping_sub(layout.mount_instance as usize);
    let ns: u64 = read_at(mount, layout.mount_ns).ok_or(unresolvable)?;
    if ns != search.ns {
        return Ok(true);
    }
    if t.walks >= MAX_WALKS {
        return Err(unresolvable);
    }
    t.walks += 1;
    let vfsmnt = mount.wrapping_add(layout.mount_mnt as usize);
    let Some(len) =
        walk_on_mount(search.dentry as *const u8, vfsmnt, layout).map_err(|r| (r, NO_RULE))?
    else {
        return Ok(true);
    };
    t.path_len = len;
    let rule = lookup(search.policy_id, len).map_err(|r| (r, NO_RULE))?;
    let (reason, rule_id) = grants(rule, search.need);
    if reason.denies() {
        return Err((reason, rule_id));
    }
    t.allowed += 1;
    t.rule = rule_id;
    Ok(true)
}
