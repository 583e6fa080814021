//! Path rules: the target's path as the kernel resolves it, looked up in the policy's
//! longest-prefix trie. Files being opened, run or mapped are resolved with `bpf_d_path`;
//! the hooks that may not call it (every `path_*` hook on 6.1) use the dentry walk in
//! `walk`. Unresolvable or over-long paths deny with their own reasons, never truncated
//! into an allow.

use aya_ebpf::{
    bindings::path as KernelPath,
    helpers::{bpf_d_path, generated::bpf_probe_read_kernel as probe_read_raw},
    maps::lpm_trie::Key,
};
use rampart_common::{
    access, KernelLayout, PathKey, PathRule, Reason, NO_RULE, PATH_BUF_BYTES, PATH_KEY_BYTES,
};

use crate::{
    decision::Request,
    maps::{PathScratch, EXEC_PINNED, PATH_RULES, PATH_SCRATCH},
    object::read_at,
};

const ENAMETOOLONG: i64 = 36;
/// Longest name of a directory entry (`NAME_MAX`).
pub const NAME_MAX: u32 = 255;
/// Offsets into the scratch path are masked with this (the area is longer than
/// `PATH_BUF_BYTES + NAME_MAX + 2`, so a masked offset plus a name always fits).
pub const OFFSET_MASK: u32 = PATH_BUF_BYTES as u32 - 1;

/// This CPU's path scratch.
pub fn scratch() -> Result<*mut PathScratch, Reason> {
    PATH_SCRATCH.get_ptr_mut(0).ok_or(Reason::PathUnresolvable)
}

/// The first byte of the scratch's path area.
pub fn area(scratch: *mut PathScratch) -> *mut u8 {
    // SAFETY: only the address of a field of this CPU's scratch value is taken.
    unsafe { core::ptr::addr_of_mut!((*scratch).key.path) as *mut u8 }
}

/// Resolves a BTF-typed `struct path *` with `bpf_d_path` into the scratch; returns the
/// length with the NUL.
pub fn d_path(path: *const u8) -> Result<u32, Reason> {
    let scratch = scratch()?;
    if path.is_null() {
        return Err(Reason::PathUnresolvable);
    }
    // SAFETY: `path` is a BTF-typed `struct path *` (a hook argument, or `&file->f_path`;
    // the verifier checks the type), and the buffer is this CPU's scratch, at least
    // PATH_BUF_BYTES long from the area's start.
    let len = unsafe {
        bpf_d_path(
            path as *mut KernelPath,
            area(scratch) as *mut i8,
            PATH_BUF_BYTES as u32,
        )
    };
    if len == -ENAMETOOLONG {
        return Err(Reason::PathTooLong);
    }
    if len <= 0 || len as usize > PATH_BUF_BYTES {
        return Err(Reason::PathUnresolvable);
    }
    Ok(len as u32)
}

/// The name of a dentry: its pointer and length (at most [`NAME_MAX`]).
pub fn dentry_name(dentry: *const u8, layout: &KernelLayout) -> Result<(*const u8, u32), Reason> {
    let qstr = layout.dentry_name;
    let name: *const u8 =
        read_at(dentry, qstr + layout.qstr_name).ok_or(Reason::PathUnresolvable)?;
    let len: u32 = read_at(dentry, qstr + layout.qstr_len).ok_or(Reason::PathUnresolvable)?;
    if name.is_null() || len == 0 || len > NAME_MAX {
        return Err(Reason::PathUnresolvable);
    }
    Ok((name, len))
}

/// Writes one byte at `pos` (masked into the area) of the scratch path.
pub fn put_byte(base: *mut u8, pos: u32, byte: u8) {
    // SAFETY: the offset is masked below PATH_BUF_BYTES, inside this CPU's scratch area.
    unsafe { *base.add((pos & OFFSET_MASK) as usize) = byte };
}

/// Copies a name of `len` bytes (at most NAME_MAX) from kernel memory to `pos` (masked) of
/// the scratch path.
pub fn copy_name(base: *mut u8, pos: u32, name: *const u8, len: u32) -> Result<(), Reason> {
    let off = (pos & OFFSET_MASK) as usize;
    let len = len & NAME_MAX;
    // SAFETY: off < PATH_BUF_BYTES and len <= NAME_MAX, and the area is longer than both
    // together; the read goes through the kernel's fault-handling probe-read path.
    let rc = unsafe { probe_read_raw(base.add(off) as *mut _, len, name as *const _) };
    if rc != 0 {
        return Err(Reason::PathUnresolvable);
    }
    Ok(())
}

/// Looks up the scratch path of `len` bytes (NUL included) in the policy's trie.
pub fn lookup(policy_id: u32, len: u32) -> Result<Option<PathRule>, Reason> {
    let scratch = scratch()?;
    // Past PATH_KEY_BYTES only the leading bytes take part in the lookup: an exact-file rule
    // (which includes its NUL) cannot match them, a directory rule is a true prefix.
    let key_bytes = if (len as usize) < PATH_KEY_BYTES {
        len
    } else {
        PATH_KEY_BYTES as u32
    };
    // SAFETY: this CPU's scratch, written only by this program invocation.
    let key = unsafe {
        (*scratch).prefix_len = 16 + key_bytes * 8;
        (*scratch).key.policy = (policy_id as u16).to_be_bytes();
        &*(scratch as *const Key<PathKey>)
    };
    Ok(PATH_RULES.get(key).copied())
}

/// The access and identity checks of a path rule for a request.
pub fn check(rule: Option<PathRule>, request: &Request) -> (Reason, u32) {
    let (reason, rule_id) = grants(rule, request.access);
    match rule {
        Some(rule) if !reason.denies() && request.access & access::RUN != 0 => {
            if rule.file != request.file {
                return (Reason::IdentityMismatch, rule_id);
            }
            (reason, rule_id)
        }
        _ => (reason, rule_id),
    }
}

/// Whether a path rule grants every right in `need` (identity aside).
pub fn grants(rule: Option<PathRule>, need: u32) -> (Reason, u32) {
    let Some(rule) = rule else {
        return (Reason::NoRule, NO_RULE);
    };
    if rule.access & need != need {
        return (Reason::AccessNotGranted, rule.rule_id);
    }
    (Reason::Allowed, rule.rule_id)
}

/// Resolves the file's path with `bpf_d_path` and looks it up in the policy's path rules.
pub fn judge_path(
    file: *const u8,
    policy_id: u32,
    layout: &KernelLayout,
    request: &mut Request,
) -> (Reason, u32) {
    if file.is_null() {
        return (Reason::PathUnresolvable, NO_RULE);
    }
    judge_struct_path(
        file.wrapping_add(layout.file_path as usize),
        policy_id,
        request,
    )
}

/// Resolves a BTF-typed `struct path *` and judges the request against its rule.
pub fn judge_struct_path(path: *const u8, policy_id: u32, request: &mut Request) -> (Reason, u32) {
    judge_resolved(d_path(path), policy_id, request)
}

/// Judges the request against the rule of a path resolved into the scratch (its length,
/// or why it could not be resolved).
pub fn judge_resolved(
    resolved: Result<u32, Reason>,
    policy_id: u32,
    request: &mut Request,
) -> (Reason, u32) {
    let len = match resolved {
        Ok(len) => len,
        Err(reason) => return (reason, NO_RULE),
    };
    request.path_len = len;
    match lookup(policy_id, len) {
        Ok(rule) => check(rule, request),
        Err(reason) => (reason, NO_RULE),
    }
}

/// Whether an exec rule of the policy pins this identity (its rule id if so).
pub fn exec_pinned(policy_id: u32, file: rampart_common::FileId) -> Option<u32> {
    let key = rampart_common::MapExecKey {
        policy: policy_id,
        _pad: 0,
        file,
    };
    // SAFETY: the value is copied out at once.
    unsafe { EXEC_PINNED.get(key) }.copied()
}
