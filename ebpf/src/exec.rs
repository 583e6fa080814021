//! Exec (`lsm/bprm_check_security`): the program by path and by the identity its rule
//! pinned. The loader, shebang interpreters and memfds reach this hook or `file_open` too.

use aya_ebpf::{macros::lsm, programs::LsmContext};
use rampart_common::{access, Action};

use crate::{
    decision::lsm_verdict,
    file::{judge_file, FileFrom},
};

#[lsm(hook = "bprm_check_security")]
pub fn bprm_check_security(ctx: LsmContext) -> i32 {
    // The last argument of an LSM program is the verdict of the programs before it on this
    // hook: never turn an earlier denial into an allow.
    let previous: i32 = ctx.arg(1);
    if previous != 0 {
        return previous;
    }
    let bprm: *const u8 = ctx.arg(0);
    lsm_verdict(judge_file(
        bprm,
        FileFrom::Binprm,
        Action::Exec,
        access::RUN,
    ))
}
