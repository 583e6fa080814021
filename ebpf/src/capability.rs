//! Capabilities: a governed task may use only the capabilities its policy's
//! `spec.capabilities` lists, in its own user namespace and in any it creates. The kernel's
//! quiet probes (`CAP_OPT_NOAUDIT`, e.g. whether `ps` may show a field) are denied without
//! an event. Only checks of the task's own credentials are judged: a check of another
//! task's or an opener's credentials (`has_capability`, `file_ns_capable`) is about that
//! subject, and a check under overridden credentials is the kernel acting on its own
//! behalf (overlayfs with the mounter's, as the file hooks also exempt).

use aya_ebpf::{helpers::bpf_get_current_task, macros::lsm, programs::LsmContext};
use rampart_common::{Action, Reason, NO_RULE};

use crate::{
    decision::{conclude, governed, lsm_verdict, Request},
    governance::policy,
    object::{creds_overridden, read_at},
};

/// `CAP_OPT_NOAUDIT`: a probe, not an attempt.
const CAP_OPT_NOAUDIT: u32 = 2;

#[inline(always)]
fn judge_capability(cred: u64, cap: u32, opts: u32) -> bool {
    let (policy_id, layout) = match governed(Action::Capability, cap) {
        Ok(found) => found,
        Err(verdict) => return verdict,
    };
    // SAFETY: a helper call without arguments; the task pointer is only probe-read.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let mut request = Request::new(Action::Capability, cap);
    request.quiet = opts & CAP_OPT_NOAUDIT != 0;
    let Some(own) = read_at::<u64>(task, layout.task_cred) else {
        // Whose credentials these are cannot be told: fail closed.
        return conclude(policy_id, &request, Reason::IdentityUnreadable, NO_RULE);
    };
    if own != cred || creds_overridden(layout) {
        return true;
    }
    let allowed =
        cap < 64 && policy(policy_id).is_some_and(|p| p.capabilities & (1u64 << cap) != 0);
    let reason = if allowed {
        Reason::Allowed
    } else {
        Reason::NotPermitted
    };
    conclude(policy_id, &request, reason, NO_RULE)
}

/// `capable(cred, ns, cap, opts)`.
#[lsm(hook = "capable")]
pub fn capable(ctx: LsmContext) -> i32 {
    let previous: i32 = ctx.arg(4);
    if previous != 0 {
        return previous;
    }
    let cred: u64 = ctx.arg(0);
    let cap: i32 = ctx.arg(2);
    let opts: u32 = ctx.arg(3);
    lsm_verdict(judge_capability(cred, cap as u32, opts))
}
