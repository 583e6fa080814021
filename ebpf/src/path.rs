//! Path rules: the file's path as the kernel resolves it (`bpf_d_path`), looked up in the
//! policy's longest-prefix trie. Unresolvable or over-long paths deny with their own
//! reasons, never truncated into an allow.

use aya_ebpf::{bindings::path as KernelPath, helpers::bpf_d_path, maps::lpm_trie::Key};
use rampart_common::{
    access, KernelLayout, PathKey, Reason, NO_RULE, PATH_BUF_BYTES, PATH_KEY_BYTES,
};

use crate::{
    decision::Request,
    maps::{PATH_RULES, PATH_SCRATCH},
};

const ENAMETOOLONG: i64 = 36;

/// Resolves the file's path with `bpf_d_path` and looks it up in the policy's path rules.
pub fn judge_path(
    file: *const u8,
    policy_id: u32,
    layout: &KernelLayout,
    request: &mut Request,
) -> (Reason, u32) {
    let Some(scratch) = PATH_SCRATCH.get_ptr_mut(0) else {
        return (Reason::PathUnresolvable, NO_RULE);
    };
    if file.is_null() {
        return (Reason::PathUnresolvable, NO_RULE);
    }
    let path = file.wrapping_add(layout.file_path as usize) as *mut KernelPath;
    // SAFETY: `path` is `&file->f_path` of a BTF-typed `struct file *` (the verifier checks
    // the type), and the buffer is this CPU's scratch, PATH_BUF_BYTES long from `key.path`.
    let len = unsafe {
        let buf = core::ptr::addr_of_mut!((*scratch).key.path) as *mut i8;
        bpf_d_path(path, buf, PATH_BUF_BYTES as u32)
    };
    if len == -ENAMETOOLONG {
        return (Reason::PathTooLong, NO_RULE);
    }
    if len <= 0 || len as usize > PATH_BUF_BYTES {
        return (Reason::PathUnresolvable, NO_RULE);
    }
    request.path_len = len as u32;
    // Past PATH_KEY_BYTES only the leading bytes take part in the lookup: an exact-file rule
    // (which includes its NUL) cannot match them, a directory rule is a true prefix.
    let key_bytes = if (len as usize) < PATH_KEY_BYTES {
        len as u32
    } else {
        PATH_KEY_BYTES as u32
    };
    // SAFETY: this CPU's scratch, written only by this program invocation.
    let key = unsafe {
        (*scratch).prefix_len = 16 + key_bytes * 8;
        (*scratch).key.policy = (policy_id as u16).to_be_bytes();
        &*(scratch as *const Key<PathKey>)
    };
    let Some(rule) = PATH_RULES.get(key) else {
        return (Reason::NoRule, NO_RULE);
    };
    if rule.access & request.access != request.access {
        return (Reason::AccessNotGranted, rule.rule_id);
    }
    if request.access & access::RUN != 0 && rule.file != request.file {
        return (Reason::IdentityMismatch, rule.rule_id);
    }
    (Reason::Allowed, rule.rule_id)
}
