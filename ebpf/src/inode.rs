//! Changes to a file the kernel hands over as a dentry alone: timestamps (`inode_setattr`
//! for `utimensat` and `utimes`; its other changes have their own `path_*` hooks) and
//! extended attributes (`inode_setxattr`, `inode_removexattr`; POSIX ACLs, which before 6.2
//! are extended attributes and from 6.2 have `inode_set_acl` and `inode_remove_acl`). With
//! no mount to say which path was used, every path of the file in the task's mount
//! namespace must allow the change (`mounts`). Also here: io_uring's registered
//! credentials, refused in governed cgroups, since overridden credentials are how these
//! hooks recognise the kernel's own changes on a workload's behalf.

use aya_ebpf::{macros::lsm, programs::LsmContext};
use rampart_common::{access, Action, Reason, NO_RULE};

use crate::{
    attr::PINNED_FIXES,
    decision::{conclude, governed, lsm_verdict, Request},
    mounts::judge_every_path,
    object::{creds_overridden, dentry_identity, read_at},
    path::exec_pinned,
};

/// `ia_valid` bits only `utimensat`/`utimes` set: explicit times (`ATTR_ATIME_SET`,
/// `ATTR_MTIME_SET`, `ATTR_TIMES_SET`) or "now" (`ATTR_TOUCH`). Truncation, mode and owner
/// changes also pass through `inode_setattr`, without these, and are judged elsewhere.
const ATTR_TIMES: u32 = (1 << 7) | (1 << 8) | (1 << 16) | (1 << 17);

/// Judges `need` on the file of a BTF-typed `struct dentry *`; true to allow.
fn judge_dentry(dentry: *const u8, action: Action, need: u32) -> bool {
    let (policy_id, layout) = match governed(action, need) {
        Ok(start) => start,
        Err(verdict) => return verdict,
    };
    // Overlayfs setting times and attributes on its upper layer (during a copy-up, or
    // behind a change the workload made at the overlay path, judged there first).
    if creds_overridden(layout) {
        return true;
    }
    let mut request = Request::new(action, need);
    if dentry.is_null() {
        return conclude(policy_id, &request, Reason::PathUnresolvable, NO_RULE);
    }
    if let Some(id) = dentry_identity(dentry, layout) {
        request.file = id;
    }
    let (mut reason, mut rule) = judge_every_path(dentry, policy_id, &mut request, layout);
    // File capabilities (`security.capability`) would change what a pinned program may
    // do when run.
    if need & PINNED_FIXES != 0 && !reason.denies() {
        if let Some(pinned) = exec_pinned(policy_id, request.file) {
            (reason, rule) = (Reason::ExecPinned, pinned);
        }
    }
    conclude(policy_id, &request, reason, rule)
}

/// A hook on a dentry (argument `at`) with `args` arguments before the verdict of the
/// programs before this one, which is never turned into an allow. Always inlined: each hook
/// reads its context at fixed offsets.
#[inline(always)]
fn dentry_hook(ctx: &LsmContext, at: usize, args: usize, action: Action, need: u32) -> i32 {
    let previous: i32 = ctx.arg(args);
    if previous != 0 {
        return previous;
    }
    lsm_verdict(judge_dentry(ctx.arg(at), action, need))
}

/// `inode_setattr(dentry, attr)` from `at` (0 before 6.8; 1 from 6.8, after the idmap).
#[inline(always)]
fn setattr_hook(ctx: &LsmContext, at: usize) -> i32 {
    let previous: i32 = ctx.arg(at + 2);
    if previous != 0 {
        return previous;
    }
    let attr: *const u8 = ctx.arg(at + 1);
    let layout = crate::maps::layout();
    // An unreadable `iattr` is judged as a change of times (fail closed).
    let valid = read_at::<u32>(attr, layout.iattr_valid).unwrap_or(ATTR_TIMES);
    if valid & ATTR_TIMES == 0 {
        return 0;
    }
    lsm_verdict(judge_dentry(ctx.arg(at), Action::Utimes, access::UTIMES))
}

#[lsm(hook = "inode_setattr")]
pub fn inode_setattr(ctx: LsmContext) -> i32 {
    setattr_hook(&ctx, 0)
}

#[lsm(hook = "inode_setattr")]
pub fn inode_setattr_idmap(ctx: LsmContext) -> i32 {
    setattr_hook(&ctx, 1)
}

#[lsm(hook = "inode_setxattr")]
pub fn inode_setxattr(ctx: LsmContext) -> i32 {
    dentry_hook(&ctx, 1, 6, Action::Xattr, access::XATTR)
}

#[lsm(hook = "inode_removexattr")]
pub fn inode_removexattr(ctx: LsmContext) -> i32 {
    dentry_hook(&ctx, 1, 3, Action::Xattr, access::XATTR)
}

#[lsm(hook = "inode_set_acl")]
pub fn inode_set_acl(ctx: LsmContext) -> i32 {
    dentry_hook(&ctx, 1, 4, Action::Xattr, access::XATTR)
}

#[lsm(hook = "inode_remove_acl")]
pub fn inode_remove_acl(ctx: LsmContext) -> i32 {
    dentry_hook(&ctx, 1, 3, Action::Xattr, access::XATTR)
}

/// An io_uring request that names a personality (credentials registered earlier) would
/// run under overridden credentials; no rule allows it in a governed cgroup.
#[lsm(hook = "uring_override_creds")]
pub fn uring_override_creds(ctx: LsmContext) -> i32 {
    let previous: i32 = ctx.arg(1);
    if previous != 0 {
        return previous;
    }
    let policy_id = match governed(Action::UringCreds, 0) {
        Ok((policy_id, _)) => policy_id,
        Err(verdict) => return lsm_verdict(verdict),
    };
    let request = Request::new(Action::UringCreds, 0);
    lsm_verdict(conclude(policy_id, &request, Reason::NoRule, NO_RULE))
}
