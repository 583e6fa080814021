//! Executable mappings: `lsm/mmap_file` with `PROT_EXEC` (by path, like an open), and
//! `lsm/file_mprotect` adding `PROT_EXEC` (by identity: only files whose executable mapping
//! was allowed under the same policy slot).

use aya_ebpf::{macros::lsm, programs::LsmContext};
use rampart_common::{access, Action, MapExecKey, Reason, NO_RULE};

use crate::{
    decision::{conclude, lsm_verdict, Request, LSM_ALLOW},
    file::{judge_file, FileFrom},
    governance::governing_policy,
    maps::{layout, MAP_EXEC_ALLOWED},
    object::{btf_ptr, file_identity},
};

const PROT_EXEC: u64 = 4;

#[lsm(hook = "mmap_file")]
pub fn mmap_file(ctx: LsmContext) -> i32 {
    let previous: i32 = ctx.arg(4);
    if previous != 0 {
        return previous;
    }
    let file: *const u8 = ctx.arg(0);
    let prot: u64 = ctx.arg(2);
    // Anonymous memory is not a file to judge; only executable file mappings are.
    if file.is_null() || prot & PROT_EXEC == 0 {
        return LSM_ALLOW;
    }
    lsm_verdict(judge_file(
        file,
        FileFrom::File,
        Action::MapExec,
        access::EXEC,
    ))
}

/// `mprotect(PROT_EXEC)` on a file mapping: `bpf_d_path` is not allowed at this hook, so
/// the file is judged by identity: allowed only if an executable mapping of this very file
/// was allowed under the same policy slot (`mmap_file` records those). Anonymous memory is
/// not a file and is not judged.
#[lsm(hook = "file_mprotect")]
pub fn file_mprotect(ctx: LsmContext) -> i32 {
    let previous: i32 = ctx.arg(3);
    if previous != 0 {
        return previous;
    }
    let vma: *const u8 = ctx.arg(0);
    let prot: u64 = ctx.arg(2);
    if vma.is_null() || prot & PROT_EXEC == 0 {
        return LSM_ALLOW;
    }
    let Some(policy_id) = governing_policy() else {
        return LSM_ALLOW;
    };
    let layout = layout();
    let mut request = Request::new(Action::MapExec, access::EXEC);
    if layout.valid == 0 {
        return lsm_verdict(conclude(policy_id, &request, Reason::LayoutUnset, NO_RULE));
    }
    let file = btf_ptr(vma, layout.vma_file);
    if file.is_null() {
        return LSM_ALLOW;
    }
    let (reason, rule) = match file_identity(file, layout) {
        Some(id) => {
            request.file = id;
            let key = MapExecKey {
                policy: policy_id,
                _pad: 0,
                file: id,
            };
            // SAFETY: the value is copied out at once.
            match unsafe { MAP_EXEC_ALLOWED.get(key) } {
                Some(rule) => (Reason::Allowed, *rule),
                None => (Reason::MapExecUnverified, NO_RULE),
            }
        }
        None => (Reason::IdentityUnreadable, NO_RULE),
    };
    lsm_verdict(conclude(policy_id, &request, reason, rule))
}
