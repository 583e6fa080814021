//! Changes to a file that keep its name: truncation (`path_truncate`; `file_truncate` on
//! 6.2 and later, where `ftruncate` and `open(O_TRUNC)` go; before 6.2 they reach
//! `path_truncate`), mode (`path_chmod`) and owner (`path_chown`), each judged at the
//! file's path (from the dentry walk: these hooks may not call `bpf_d_path` on every
//! supported kernel). A file an exec rule pins is never truncated, nor its mode or owner
//! changed.

use aya_ebpf::{macros::lsm, programs::LsmContext};
use rampart_common::{access, Action, Reason};

use crate::{
    decision::{conclude, governed, lsm_verdict, Request},
    maps::layout,
    object::{btf_ptr, dentry_identity},
    path::{exec_pinned, judge_resolved},
    walk::walk_path,
};

/// Rights that change what an exec-pinned program is or may do when run: its content
/// (truncation), its mode (set-user-ID bits) and owner. Never granted on a pinned identity.
pub const PINNED_FIXES: u32 = access::TRUNCATE | access::CHMOD | access::CHOWN | access::XATTR;

/// Judges `need` on the file at a BTF-typed `struct path *`; true to allow.
fn judge_at(path: *const u8, action: Action, need: u32) -> bool {
    let (policy_id, layout) = match governed(action, need) {
        Ok(start) => start,
        Err(verdict) => return verdict,
    };
    let mut request = Request::new(action, need);
    let dentry = btf_ptr(path, layout.path_dentry);
    if let Some(id) = dentry_identity(dentry, layout) {
        request.file = id;
    }
    let (mut reason, mut rule) = judge_resolved(walk_path(path, layout), policy_id, &mut request);
    if need & PINNED_FIXES != 0 && !reason.denies() {
        if let Some(pinned) = exec_pinned(policy_id, request.file) {
            (reason, rule) = (Reason::ExecPinned, pinned);
        }
    }
    conclude(policy_id, &request, reason, rule)
}

/// A hook on a `struct path *` (its first argument): `args` arguments come before the
/// verdict of the programs before this one, which is never turned into an allow. Always
/// inlined, so that each hook reads its context at fixed offsets (the verifier refuses a
/// load through a moved context pointer).
#[inline(always)]
fn path_hook(ctx: &LsmContext, args: usize, action: Action, need: u32) -> i32 {
    let previous: i32 = ctx.arg(args);
    if previous != 0 {
        return previous;
    }
    lsm_verdict(judge_at(ctx.arg(0), action, need))
}

#[lsm(hook = "path_truncate")]
pub fn path_truncate(ctx: LsmContext) -> i32 {
    path_hook(&ctx, 1, Action::Truncate, access::TRUNCATE)
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
    path_hook(&ctx, 2, Action::Chmod, access::CHMOD)
}

#[lsm(hook = "path_chown")]
pub fn path_chown(ctx: LsmContext) -> i32 {
    path_hook(&ctx, 3, Action::Chown, access::CHOWN)
}
