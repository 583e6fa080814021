//! Rampart's kernel programs.
//!
//! Every program is a thin entry that calls a `try_*` function; the decision logic reads as
//! ordinary Rust. Inside a governed cgroup (or any descendant) the default is deny: only a
//! positive match in a policy map allows. Anything the program cannot establish (an unset
//! struct layout, an unreadable identity) denies with its own reason code.
#![no_std]
#![no_main]

use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_uid_gid, bpf_ktime_get_ns, bpf_probe_read_kernel,
        generated::bpf_get_current_ancestor_cgroup_id,
    },
    macros::{lsm, map},
    maps::{HashMap, PerCpuArray, RingBuf},
    programs::LsmContext,
};
use rampart_common::{
    Action, Event, FileId, KernelLayout, Reason, EVENT_RING_BYTES, MAX_CGROUP_LEVELS,
    MAX_EXEC_RULES, MAX_GOVERNED_CGROUPS, NO_RULE, REASON_COUNT,
};

/// `-EPERM`: what a denied exec returns to the caller.
const DENY: i32 = -1;
const ALLOW: i32 = 0;

#[map(name = "GOVERNED")]
static GOVERNED: HashMap<u64, u32> = HashMap::with_max_entries(MAX_GOVERNED_CGROUPS, 0);

#[map(name = "EXEC_ALLOW")]
static EXEC_ALLOW: HashMap<FileId, u32> = HashMap::with_max_entries(MAX_EXEC_RULES, 0);

#[map(name = "DECISIONS")]
static DECISIONS: PerCpuArray<u64> = PerCpuArray::with_max_entries(REASON_COUNT, 0);

#[map(name = "EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(EVENT_RING_BYTES, 0);

#[map(name = "EVENT_DROPS")]
static EVENT_DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Filled in by the agent from the running kernel's BTF before load (read-only data).
#[no_mangle]
static KERNEL_LAYOUT: KernelLayout = KernelLayout::UNSET;

#[lsm(hook = "bprm_check_security")]
pub fn bprm_check_security(ctx: LsmContext) -> i32 {
    // The last argument of an LSM program is the verdict of the programs before it on this
    // hook: never turn an earlier denial into an allow.
    let previous: i32 = ctx.arg(1);
    if previous != 0 {
        return previous;
    }
    if !current_task_governed() {
        return ALLOW;
    }
    let (reason, target) = judge_exec(&ctx);
    count(reason);
    if reason.denies() {
        emit(Action::Exec, reason, target);
        DENY
    } else {
        ALLOW
    }
}

/// The decision for the exec in `ctx`, and the binary's identity (zero if unreadable).
fn judge_exec(ctx: &LsmContext) -> (Reason, FileId) {
    const UNKNOWN: FileId = FileId { dev: 0, ino: 0 };
    // SAFETY: KERNEL_LAYOUT is a plain-data static; the volatile read stops the compiler from
    // folding in the compile-time placeholder, since the agent rewrites it before load.
    let layout = unsafe { core::ptr::read_volatile(&KERNEL_LAYOUT) };
    if layout.valid == 0 {
        return (Reason::LayoutUnset, UNKNOWN);
    }
    let bprm: *const u8 = ctx.arg(0);
    let Some(id) = binary_identity(bprm, &layout) else {
        return (Reason::IdentityUnreadable, UNKNOWN);
    };
    // SAFETY: the value is only tested for presence, never held across a map update.
    if unsafe { EXEC_ALLOW.get(id) }.is_some() {
        (Reason::ExecAllowed, id)
    } else {
        (Reason::ExecNotAllowed, id)
    }
}

/// Writes a decision event; a full ring buffer is counted, never silent.
fn emit(action: Action, reason: Reason, target: FileId) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let event = Event {
        // SAFETY: helper calls without pointer arguments.
        ktime_ns: unsafe { bpf_ktime_get_ns() },
        // SAFETY: as above.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        target,
        pid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        uid: bpf_get_current_uid_gid() as u32,
        action: action as u32,
        reason: reason as u32,
        rule_id: NO_RULE,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    };
    if EVENTS.output::<Event>(&event, 0).is_err() {
        increment(&EVENT_DROPS, 0);
    }
}

/// `(s_dev, i_ino)` of `bprm->file->f_inode`, read with offsets from the running kernel's BTF.
fn binary_identity(bprm: *const u8, layout: &KernelLayout) -> Option<FileId> {
    let file: *const u8 = read_at(bprm, layout.binprm_file)?;
    let inode: *const u8 = read_at(file, layout.file_inode)?;
    let ino: u64 = read_at(inode, layout.inode_ino)?;
    let sb: *const u8 = read_at(inode, layout.inode_sb)?;
    let dev: u32 = read_at(sb, layout.sb_dev)?;
    Some(FileId {
        dev: dev as u64,
        ino,
    })
}

/// Reads a `T` at `base + offset` in kernel memory; `None` for a null base or a failed read.
fn read_at<T>(base: *const u8, offset: u32) -> Option<T> {
    if base.is_null() {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel copies through the kernel's fault-handling path and
    // returns an error instead of faulting on a bad address.
    unsafe { bpf_probe_read_kernel(base.wrapping_add(offset as usize) as *const T) }.ok()
}

/// Whether the current task's cgroup, or one of its ancestors, is governed.
fn current_task_governed() -> bool {
    let mut level = 0;
    while level < MAX_CGROUP_LEVELS {
        // SAFETY: a helper call with a scalar argument; it returns 0 past the task's depth.
        let id = unsafe { bpf_get_current_ancestor_cgroup_id(level as i32) };
        if id == 0 {
            return false;
        }
        // SAFETY: the value is only tested for presence.
        if unsafe { GOVERNED.get(id) }.is_some() {
            return true;
        }
        level += 1;
    }
    false
}

fn count(reason: Reason) {
    increment(&DECISIONS, reason as u32);
}

/// Adds one to this CPU's slot `index` of a per-CPU counter array.
fn increment(counters: &PerCpuArray<u64>, index: u32) {
    if let Some(slot) = counters.get_ptr_mut(index) {
        // SAFETY: a per-CPU slot of this map, touched only by this CPU while we run.
        unsafe { *slot += 1 };
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
