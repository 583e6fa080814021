//! Process scope and self-protection: a governed task may signal, trace or read the memory
//! of tasks governed by the same policy slot only (like Landlock's signal scope, plus
//! ptrace), and may use `bpf()` only where `spec.permits` lists `bpf`, and then only for
//! objects it makes itself. Rampart's agent runs outside every governed
//! cgroup, so no governed task can kill, stop, trace or read it, nor get, detach or change
//! its programs, links and maps.

use aya_ebpf::{macros::lsm, programs::LsmContext};
use rampart_common::{system, Action, Reason, NO_RULE};

use crate::{
    decision::{conclude, governed, lsm_verdict, Request},
    governance::{policy, task_governor},
    object::read_at,
};

/// `PTRACE_MODE_NOAUDIT`: the kernel only probes (e.g. which `/proc/PID` fields to show).
const PTRACE_MODE_NOAUDIT: u32 = 0x04;

/// Judges an action of the current task on `peer`: allowed only if both are governed by
/// the same slot. `quiet` decides without an event.
#[inline(always)]
fn judge_peer(peer: *const u8, action: Action, quiet: bool) -> bool {
    let (policy_id, layout) = match governed(action, 0) {
        Ok(found) => found,
        Err(verdict) => return verdict,
    };
    let mut request = Request::new(action, 0);
    request.peer_pid = read_at::<i32>(peer, layout.task_tgid).unwrap_or(0) as u32;
    request.quiet = quiet;
    // Slots are small numbers; NOBODY and UNKNOWN never equal one. Through `conclude`
    // either way: an expired or missing policy denies its own tasks' signals too.
    let reason = if task_governor(peer, layout) == policy_id {
        Reason::Allowed
    } else {
        Reason::NoRule
    };
    conclude(policy_id, &request, reason, NO_RULE)
}

/// `task_kill(p, info, sig, cred)`: `kill`, `tgkill`, `pidfd_send_signal`, ... from
/// userspace (the kernel's own signals, such as `SIGCHLD` to a parent, do not come here).
#[lsm(hook = "task_kill")]
pub fn task_kill(ctx: LsmContext) -> i32 {
    let previous: i32 = ctx.arg(4);
    if previous != 0 {
        return previous;
    }
    lsm_verdict(judge_peer(ctx.arg(0), Action::Signal, false))
}

/// `ptrace_access_check(child, mode)`: `PTRACE_ATTACH`/`SEIZE`, `/proc/PID/mem`,
/// `process_vm_readv`/`writev`, `pidfd_getfd`, and the `/proc/PID` reads that need it.
#[lsm(hook = "ptrace_access_check")]
pub fn ptrace_access_check(ctx: LsmContext) -> i32 {
    let previous: i32 = ctx.arg(2);
    if previous != 0 {
        return previous;
    }
    let mode: u32 = ctx.arg(1);
    lsm_verdict(judge_peer(
        ctx.arg(0),
        Action::Ptrace,
        mode & PTRACE_MODE_NOAUDIT != 0,
    ))
}

/// `ptrace_traceme(parent)`: `PTRACE_TRACEME` makes the parent the tracer.
#[lsm(hook = "ptrace_traceme")]
pub fn ptrace_traceme(ctx: LsmContext) -> i32 {
    let previous: i32 = ctx.arg(1);
    if previous != 0 {
        return previous;
    }
    lsm_verdict(judge_peer(ctx.arg(0), Action::Ptrace, false))
}

/// A `bpf()` command from a governed task: denied unless `spec.permits` lists `bpf`, and
/// then only the commands and program types of [`system::bpf_permitted`], none of which
/// reaches an object the task did not make (so never Rampart's).
#[inline(always)]
fn judge_bpf(cmd: i32, attr: *const u8) -> bool {
    let policy_id = match governed(Action::Bpf, 0) {
        Ok((policy_id, _)) => policy_id,
        Err(verdict) => return verdict,
    };
    let cmd = cmd as u32;
    // The command (BPF_OBJ_GET, BPF_LINK_DETACH, ...) travels in the access field.
    let request = Request::new(Action::Bpf, cmd);
    let listed = policy(policy_id).is_some_and(|p| p.permits & system::BPF != 0);
    // `attr` is the kernel's copy; a load's program type is its first field.
    let prog_type = if cmd == system::BPF_PROG_LOAD {
        read_at::<u32>(attr, 0).unwrap_or(u32::MAX)
    } else {
        0
    };
    let reason = if listed && system::bpf_permitted(cmd, prog_type) {
        Reason::Allowed
    } else {
        Reason::NotPermitted
    };
    conclude(policy_id, &request, reason, NO_RULE)
}

/// `bpf(cmd, attr, size)` (to 6.14).
#[lsm(hook = "bpf")]
pub fn bpf(ctx: LsmContext) -> i32 {
    let previous: i32 = ctx.arg(3);
    if previous != 0 {
        return previous;
    }
    lsm_verdict(judge_bpf(ctx.arg(0), ctx.arg(1)))
}

/// `bpf(cmd, attr, size, kernel)` (6.15 and later).
#[lsm(hook = "bpf")]
pub fn bpf_kernel(ctx: LsmContext) -> i32 {
    let previous: i32 = ctx.arg(4);
    if previous != 0 {
        return previous;
    }
    lsm_verdict(judge_bpf(ctx.arg(0), ctx.arg(1)))
}
