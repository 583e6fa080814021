//! Changes to a file that keep its name: truncation (`path_truncate`; `file_truncate` on
//! 6.2 and later, where `ftruncate` and `open(O_TRUNC)` go; before 6.2 they reach
//! `path_truncate`), mode (`path_chmod`) and owner (`path_chown`), each judged at the
//! file's path (from the dentry walk: these hooks may not call `bpf_d_path` on every
//! supported kernel). A file an exec rule pins is never truncated.

use aya_ebpf::{macros::lsm, programs::LsmContext};
use rampart_common::{access, Action, Reason, NO_RULE};

use crate::{
    decision::{conclude, lsm_verdict, Request},
    governance::governing_policy,
    maps::layout,
    object::{btf_ptr, dentry_identity},
    path::{check, exec_pinned, lookup},
    walk::walk_path,
};

/// Judges `need` on the file at a BTF-typed `struct path *`; true to allow.
fn judge_at(path: *const u8, action: Action, need: u32) -> bool {
    let Some(policy_id) = governing_policy() else {
        return true;
    };
    let layout = layout();
    let mut request = Request::new(action, need);
    if layout.valid == 0 {
        return conclude(policy_id, &request, Reason::LayoutUnset, NO_RULE);
    }
    let dentry = btf_ptr(path, layout.path_dentry);
    if let Some(id) = dentry_identity(dentry, layout) {
        request.file = id;
    }
    let (mut reason, mut rule) = match walk_path(path, layout) {
        Ok(len) => {
            request.path_len = len;
            match lookup(policy_id, len) {
                Ok(found) => check(found, &request),
                Err(reason) => (reason, NO_RULE),
            }
        }
        Err(reason) => (reason, NO_RULE),
    };
    if need & access::TRUNCATE != 0 && !reason.denies() {
        if let Some(pinned) = exec_pinned(policy_id, request.file) {
            (reason, rule) = (Reason::ExecPinned, pinned);
        }
    }
    conclude(policy_id, &request, reason, rule)
}

#[lsm(hook = "path_truncate")]
pub fn path_truncate(ctx: LsmContext) -> i32 {
    let previous: i32 = ctx.arg(1);
    if previous != 0 {
        return previous;
    }
    lsm_verdict(judge_at(ctx.arg(0), Action::Truncate, access::TRUNCATE))
}

#[lsm(hook = "file_truncate")]
pub fn file_truncate(ctx: LsmContext) -> i32 {
    let previous: i32 = ctx.arg(1);
    if previous != 0 {
        return previous;
    }
    let file: *const u8 = ctx.arg(0);
    if file.is_null() {
        return lsm_verdict(false);
    }
    let layout = layout();
    lsm_verdict(judge_at(
        file.wrapping_add(layout.file_path as usize),
        Action::Truncate,
        access::TRUNCATE,
    ))
}

#[lsm(hook = "path_chmod")]
pub fn path_chmod(ctx: LsmContext) -> i32 {
    let previous: i32 = ctx.arg(2);
    if previous != 0 {
        return previous;
    }
    lsm_verdict(judge_at(ctx.arg(0), Action::Chmod, access::CHMOD))
}

#[lsm(hook = "path_chown")]
pub fn path_chown(ctx: LsmContext) -> i32 {
    let previous: i32 = ctx.arg(3);
    if previous != 0 {
        return previous;
    }
    lsm_verdict(judge_at(ctx.arg(0), Action::Chown, access::CHOWN))
}
