//! Changes to the file tree: creating (`path_mknod`, which `open(O_CREAT)` also reaches,
//! `path_mkdir`, `path_symlink`), removing (`path_unlink`, `path_rmdir`), linking
//! (`path_link`) and renaming (`path_rename`, exchanges and whiteouts included). Each entry
//! is judged at its own path (the directory's path and the entry's name). Links and renames
//! follow refer semantics: across directories both places need `refer`, and the moved
//! object must not gain rights at its new place; a file an exec rule pins gets no new name.

use aya_ebpf::{macros::lsm, programs::LsmContext};
use rampart_common::{access, path_flags, Action, KernelLayout, PathRule, Reason, NO_RULE};

use crate::{
    decision::{conclude, governed, lsm_verdict, Request},
    object::{btf_ptr, dentry_identity, dentry_mode},
    path::{check, exec_pinned, judge_resolved, lookup},
    walk::walk_entry,
};

const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;
const RENAME_EXCHANGE: u32 = 2;
const RENAME_WHITEOUT: u32 = 4;

/// The path of `dentry` in the directory `dir` (a `struct path *`), in the scratch.
fn entry_path(dir: *const u8, dentry: *const u8, layout: &KernelLayout) -> Result<u32, Reason> {
    walk_entry(dentry, dir, layout)
}

/// Judges one entry of a directory for `need`; true to allow.
fn judge_entry(dir: *const u8, dentry: *const u8, action: Action, need: u32) -> bool {
    let (policy_id, layout) = match governed(action, need) {
        Ok(start) => start,
        Err(verdict) => return verdict,
    };
    let mut request = Request::new(action, need);
    if let Some(id) = dentry_identity(dentry, layout) {
        request.file = id;
    }
    let (reason, rule) = judge_resolved(entry_path(dir, dentry, layout), policy_id, &mut request);
    conclude(policy_id, &request, reason, rule)
}

/// An entry hook `(dir, dentry, ...)`: `args` arguments come before the verdict of the
/// programs before this one, which is never turned into an allow. Always inlined, so that
/// each hook reads its context at fixed offsets (the verifier refuses a load through a
/// moved context pointer).
#[inline(always)]
fn entry_hook(ctx: &LsmContext, args: usize, action: Action, need: u32) -> i32 {
    let previous: i32 = ctx.arg(args);
    if previous != 0 {
        return previous;
    }
    lsm_verdict(judge_entry(ctx.arg(0), ctx.arg(1), action, need))
}

#[lsm(hook = "path_mknod")]
pub fn path_mknod(ctx: LsmContext) -> i32 {
    let mode: u32 = ctx.arg::<u64>(2) as u32 & 0xffff;
    let need = match mode & S_IFMT {
        S_IFCHR => access::MAKE_CHAR,
        S_IFBLK => access::MAKE_BLOCK,
        _ => access::CREATE,
    };
    entry_hook(&ctx, 4, Action::Create, need)
}

#[lsm(hook = "path_mkdir")]
pub fn path_mkdir(ctx: LsmContext) -> i32 {
    entry_hook(&ctx, 3, Action::Create, access::CREATE)
}

#[lsm(hook = "path_symlink")]
pub fn path_symlink(ctx: LsmContext) -> i32 {
    entry_hook(&ctx, 3, Action::Create, access::CREATE)
}

#[lsm(hook = "path_unlink")]
pub fn path_unlink(ctx: LsmContext) -> i32 {
    entry_hook(&ctx, 2, Action::Remove, access::REMOVE)
}

#[lsm(hook = "path_rmdir")]
pub fn path_rmdir(ctx: LsmContext) -> i32 {
    entry_hook(&ctx, 2, Action::Remove, access::REMOVE)
}

/// The rights a moved object must not gain: a file's own rights, or for a directory all
/// rights (its whole tree moves).
fn carried(mode: u32) -> u32 {
    if mode & S_IFMT == S_IFDIR {
        !access::RUN
    } else {
        access::FILE
    }
}

/// Refer rule for an object of `mode` moving from a place with `from` to one with `to`.
fn gains(mode: u32, from: &Option<PathRule>, to: &Option<PathRule>) -> bool {
    let have = from.map_or(0, |r| r.access);
    let Some(to) = to else {
        return false;
    };
    if mode & S_IFMT == S_IFDIR && to.flags & path_flags::HAS_DEEPER != 0 {
        return true;
    }
    to.access & carried(mode) & !have != 0
}

/// One side of a link or rename: the path resolved into the scratch and looked up, the
/// rule found and the judgement for `need`.
struct Side {
    rule: Option<PathRule>,
    reason: Reason,
    rule_id: u32,
    path_len: u32,
}

fn side(policy_id: u32, path: Result<u32, Reason>, request: &Request) -> Side {
    let judged = path.and_then(|len| lookup(policy_id, len).map(|rule| (len, rule)));
    match judged {
        // A side that needs nothing (the source of a link within one directory) is allowed
        // even where no rule names it; its rights still bound what the new name may have.
        Ok((len, None)) if request.access == 0 => Side {
            rule: None,
            reason: Reason::Allowed,
            rule_id: NO_RULE,
            path_len: len,
        },
        Ok((len, rule)) => {
            let (reason, rule_id) = check(rule, request);
            Side {
                rule,
                reason,
                rule_id,
                path_len: len,
            }
        }
        Err(reason) => Side {
            rule: None,
            reason,
            rule_id: NO_RULE,
            path_len: 0,
        },
    }
}

#[lsm(hook = "path_link")]
pub fn path_link(ctx: LsmContext) -> i32 {
    let previous: i32 = ctx.arg(3);
    if previous != 0 {
        return previous;
    }
    lsm_verdict(judge_link(ctx.arg(0), ctx.arg(1), ctx.arg(2)))
}

/// A new name `new_dentry` in `new_dir` for the file of `old_dentry` (on the same mount).
fn judge_link(old_dentry: *const u8, new_dir: *const u8, new_dentry: *const u8) -> bool {
    let (policy_id, layout) = match governed(Action::Link, access::CREATE) {
        Ok(start) => start,
        Err(verdict) => return verdict,
    };
    let mut request = Request::new(Action::Link, access::CREATE);
    let Some(file) = dentry_identity(old_dentry, layout) else {
        return conclude(policy_id, &request, Reason::IdentityUnreadable, NO_RULE);
    };
    request.file = file;
    if let Some(pinned) = exec_pinned(policy_id, file) {
        request.path_len = entry_path(new_dir, new_dentry, layout).unwrap_or(0);
        return conclude(policy_id, &request, Reason::ExecPinned, pinned);
    }
    let same_dir =
        btf_ptr(old_dentry, layout.dentry_parent) == btf_ptr(new_dir, layout.path_dentry);
    let refer = if same_dir { 0 } else { access::REFER };
    request.access = refer;
    let source_path = walk_entry(old_dentry, new_dir, layout);
    let source = side(policy_id, source_path, &request);
    if source.reason.denies() {
        request.path_len = source.path_len;
        return conclude(policy_id, &request, source.reason, source.rule_id);
    }
    request.access = access::CREATE | refer;
    let target = side(policy_id, entry_path(new_dir, new_dentry, layout), &request);
    request.path_len = target.path_len;
    let mode = dentry_mode(old_dentry, layout) as u32;
    let (reason, rule) = if target.reason.denies() {
        (target.reason, target.rule_id)
    } else if gains(mode, &source.rule, &target.rule) {
        (Reason::ReferGainsAccess, target.rule_id)
    } else {
        (Reason::Allowed, target.rule_id)
    };
    conclude(policy_id, &request, reason, rule)
}

#[lsm(hook = "path_rename")]
pub fn path_rename(ctx: LsmContext) -> i32 {
    let previous: i32 = ctx.arg(5);
    if previous != 0 {
        return previous;
    }
    let flags: u32 = ctx.arg::<u64>(4) as u32;
    lsm_verdict(judge_rename(
        ctx.arg(0),
        ctx.arg(1),
        ctx.arg(2),
        ctx.arg(3),
        flags,
    ))
}

/// `old_dentry` in `old_dir` renamed to `new_dentry` in `new_dir` (or exchanged with it).
fn judge_rename(
    old_dir: *const u8,
    old_dentry: *const u8,
    new_dir: *const u8,
    new_dentry: *const u8,
    flags: u32,
) -> bool {
    let (policy_id, layout) = match governed(Action::Rename, 0) {
        Ok(start) => start,
        Err(verdict) => return verdict,
    };
    let mut request = Request::new(Action::Rename, 0);
    let exchange = flags & RENAME_EXCHANGE != 0;
    let same_dir = btf_ptr(old_dir, layout.path_dentry) == btf_ptr(new_dir, layout.path_dentry);
    let refer = if same_dir { 0 } else { access::REFER };
    let moved_mode = dentry_mode(old_dentry, layout) as u32;
    // What sits at the target (0: nothing; it is replaced, or moves back in an exchange).
    let target_mode = dentry_mode(new_dentry, layout) as u32;
    // The source loses its entry; it gains one in an exchange, a whiteout with
    // RENAME_WHITEOUT (a character device node).
    let mut source_need = access::REMOVE | refer;
    if exchange {
        source_need |= access::CREATE;
    }
    if flags & RENAME_WHITEOUT != 0 {
        source_need |= access::MAKE_CHAR;
    }
    let mut target_need = access::CREATE | refer;
    if target_mode != 0 {
        target_need |= access::REMOVE;
    }
    if let Some(id) = dentry_identity(old_dentry, layout) {
        request.file = id;
    }
    request.access = source_need;
    let source = side(policy_id, entry_path(old_dir, old_dentry, layout), &request);
    if source.reason.denies() {
        request.path_len = source.path_len;
        return conclude(policy_id, &request, source.reason, source.rule_id);
    }
    request.access = target_need;
    let target = side(policy_id, entry_path(new_dir, new_dentry, layout), &request);
    request.path_len = target.path_len;
    let (reason, rule) = if target.reason.denies() {
        (target.reason, target.rule_id)
    } else if gains(moved_mode, &source.rule, &target.rule)
        || (exchange && gains(target_mode, &target.rule, &source.rule))
    {
        (Reason::ReferGainsAccess, target.rule_id)
    } else {
        (Reason::Allowed, target.rule_id)
    };
    conclude(policy_id, &request, reason, rule)
}
