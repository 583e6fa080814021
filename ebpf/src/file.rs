//! File opens (`lsm/file_open`), and the file judgement shared with exec and executable
//! mappings: governance, the access asked for, identity, path rule, decision.

use aya_ebpf::{macros::lsm, programs::LsmContext};
use rampart_common::{access, Action, KernelLayout, MapExecKey, Reason, NO_RULE};

use crate::{
    cgroupfs::{cgroup_file_governor, NOT_CGROUPFS},
    decision::{conclude, governed, lsm_verdict, Request},
    governance::UNKNOWN,
    maps::MAP_EXEC_ALLOWED,
    object::{btf_ptr, btf_u32, creds_overridden, file_fs_magic, file_identity, on_internal_mount},
    path::{exec_pinned, judge_path},
};

const FMODE_READ: u32 = 0x1;
const FMODE_WRITE: u32 = 0x2;
const FMODE_EXEC: u32 = 0x20;
/// `PID_FS_MAGIC`: pidfs (6.9 and later), where `pidfd_open` and `clone(CLONE_PIDFD)`
/// open their descriptors through `file_open`.
const PID_FS_MAGIC: u64 = 0x5049_4446;

#[lsm(hook = "file_open")]
pub fn file_open(ctx: LsmContext) -> i32 {
    let previous: i32 = ctx.arg(1);
    if previous != 0 {
        return previous;
    }
    let file: *const u8 = ctx.arg(0);
    lsm_verdict(judge_file(file, FileFrom::Open, Action::Open, 0))
}

/// Where the `struct file` of a hook comes from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum FileFrom {
    /// `struct linux_binprm *`: its `file`.
    Binprm,
    /// `struct file *` being opened: the access comes from its `f_mode`.
    Open,
    /// `struct file *`.
    File,
}

/// Whether this open is the kernel's own, on the workload's behalf: overlayfs opening a
/// layer's file behind an overlay file, or copying a lower file up into a temporary file of
/// its work directory. Such opens run with the mounter's credentials (`override_creds`:
/// `cred` differs from `real_cred`) on a layer's private mount, which
/// no path of the workload reaches. The workload's own open of the overlay file was judged
/// at the overlay path first; the layer's path would name no rule and deny every write
/// that needs a copy-up.
fn kernel_opens_for_overlay(file: *const u8, layout: &KernelLayout) -> bool {
    creds_overridden(layout) && on_internal_mount(file, layout)
}

/// The rights an open file was opened with: `read`, `write` from its `f_mode`.
pub fn mode_access(mode: u32) -> u32 {
    let mut need = 0;
    if mode & FMODE_READ != 0 {
        need |= access::READ;
    }
    if mode & FMODE_WRITE != 0 {
        need |= access::WRITE;
    }
    need
}

/// Judges an action on a file for the current task; true to allow.
pub fn judge_file(object: *const u8, from: FileFrom, action: Action, need: u32) -> bool {
    let (policy_id, layout) = match governed(action, need) {
        Ok(start) => start,
        Err(verdict) => return verdict,
    };
    let mut request = Request::new(action, need);
    let file = match from {
        FileFrom::Binprm => btf_ptr(object, layout.binprm_file),
        FileFrom::Open | FileFrom::File => object,
    };
    if from == FileFrom::Open && kernel_opens_for_overlay(file, layout) {
        return true;
    }
    // A pidfd names a process, not a file: no rule could name its path
    // (`anon_inode:[pidfd]`), and what it is used for (signals, setns, pidfd_getfd) is
    // judged where it is used.
    if from == FileFrom::Open && file_fs_magic(file, layout) == Some(PID_FS_MAGIC) {
        return conclude(policy_id, &request, Reason::Allowed, NO_RULE);
    }
    if from == FileFrom::Open {
        let mode = btf_u32(file, layout.file_mode);
        let mut need = mode_access(mode);
        // The kernel opening a program or its ELF interpreter for execve: `open_exec` passes
        // __FMODE_EXEC in the open flags; f_mode only gains FMODE_EXEC on some kernels.
        let flags = btf_u32(file, layout.file_flags);
        if mode & FMODE_EXEC != 0 || flags & FMODE_EXEC != 0 {
            need |= access::EXEC;
            request.action = Action::Exec;
        }
        request.access = need;
    }
    let verdict = match file_identity(file, layout) {
        Some(id) => {
            request.file = id;
            judge_path(file, policy_id, layout, &mut request)
        }
        None => (Reason::IdentityUnreadable, NO_RULE),
    };
    let (reason, rule) = judge_write(file, policy_id, layout, &request, verdict);
    if action == Action::MapExec && reason == Reason::Allowed {
        // Remember the file for a later mprotect(PROT_EXEC), which cannot resolve paths.
        let key = MapExecKey {
            policy: policy_id,
            _pad: 0,
            file: request.file,
        };
        let _ = MAP_EXEC_ALLOWED.insert(key, rule, 0);
    }
    conclude(policy_id, &request, reason, rule)
}

/// What a write to an open file needs besides its path rule, applied to the path's
/// `verdict`: a program an exec rule pins is not written through any of its names, and
/// cgroupfs files are written only in cgroups of the task's own policy.
#[inline(always)]
pub fn judge_write(
    file: *const u8,
    policy_id: u32,
    layout: &KernelLayout,
    request: &Request,
    verdict: (Reason, u32),
) -> (Reason, u32) {
    if request.access & access::WRITE == 0 || verdict.0.denies() {
        return verdict;
    }
    if let Some(pinned) = exec_pinned(policy_id, request.file) {
        return (Reason::ExecPinned, pinned);
    }
    let owner = cgroup_file_governor(file, layout);
    if owner == UNKNOWN {
        (Reason::IdentityUnreadable, NO_RULE)
    } else if owner != NOT_CGROUPFS && owner != policy_id {
        (Reason::CgroupNotGoverned, NO_RULE)
    } else {
        verdict
    }
}
