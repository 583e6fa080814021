//! Turning a judgement into a decision: the policy's mode (enforce, audit), expiry and the
//! no-policy fallback, the per-reason counters, and the event (strict mode denies what
//! could not be recorded).

use aya_ebpf::{
    cty::c_void,
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_uid_gid, bpf_ktime_get_ns,
        generated::{bpf_ktime_get_boot_ns, bpf_probe_read_kernel as probe_read_raw},
    },
    maps::PerCpuArray,
};
use rampart_common::{
    policy_flags, Action, Decision, Event, FileId, KernelLayout, Reason, EVENT_PATH_BYTES, NO_RULE,
    QUIET_DENIALS,
};

use crate::{
    governance::{governing_policy, policy},
    maps::{layout, DECISIONS, EVENTS, EVENT_DROPS, PATH_SCRATCH},
};

/// `-EPERM` for LSM hooks.
const LSM_DENY: i32 = -1;
/// An LSM hook's allow.
pub const LSM_ALLOW: i32 = 0;
/// cgroup sock_addr programs: 1 lets the call proceed, 0 fails it with EPERM.
const SOCK_ALLOW: i32 = 1;
const SOCK_DENY: i32 = 0;

/// What a decision was about, for its event.
pub struct Request {
    pub action: Action,
    pub access: u32,
    pub file: FileId,
    /// Length of the resolved path in the scratch buffer, 0 if none.
    pub path_len: u32,
    pub family: u32,
    pub port: u32,
    pub protocol: u32,
    pub addr: [u8; 16],
    /// The other task of a signal or ptrace decision (its thread group id).
    pub peer_pid: u32,
    /// A probe the kernel makes without auditing (`PTRACE_MODE_NOAUDIT`): decided and
    /// counted, but no event is written (they come in floods, e.g. from `ps`).
    pub quiet: bool,
}

impl Request {
    /// A request with nothing resolved yet: the judge fills in the target.
    pub const fn new(action: Action, access: u32) -> Self {
        Self {
            action,
            access,
            file: FileId { dev: 0, ino: 0 },
            path_len: 0,
            family: 0,
            port: 0,
            protocol: 0,
            addr: [0; 16],
            peer_pid: 0,
            quiet: false,
        }
    }
}

/// The start every file judgement shares: which policy governs the task, and the layout.
/// `Err` carries the verdict already reached: allow for an ungoverned task, the (recorded)
/// `layout-unset` denial of `action` when the agent never wrote the struct layout.
pub fn governed(action: Action, access: u32) -> Result<(u32, &'static KernelLayout), bool> {
    let Some(policy_id) = governing_policy() else {
        return Err(true);
    };
    let layout = layout();
    if layout.valid == 0 {
        let request = Request::new(action, access);
        return Err(conclude(policy_id, &request, Reason::LayoutUnset, NO_RULE));
    }
    Ok((policy_id, layout))
}

/// An LSM hook's return value for a decision.
pub fn lsm_verdict(allow: bool) -> i32 {
    if allow {
        LSM_ALLOW
    } else {
        LSM_DENY
    }
}

/// A sock_addr program's return value for a decision.
pub fn sock_verdict(allow: bool) -> i32 {
    if allow {
        SOCK_ALLOW
    } else {
        SOCK_DENY
    }
}

/// CLOCK_BOOTTIME now, the clock policy expiry is set on.
fn boot_ns() -> u64 {
    // SAFETY: a helper call without arguments.
    unsafe { bpf_ktime_get_boot_ns() }
}

/// Applies the policy's mode to a judgement, counts it, records it; true to allow.
pub fn conclude(policy_id: u32, request: &Request, reason: Reason, rule_id: u32) -> bool {
    let info = policy(policy_id);
    let (reason, rule_id, flags, version) = match info {
        Some(p) if p.expires_boot_ns != 0 && boot_ns() >= p.expires_boot_ns => {
            // Fail closed, whatever the rules say and whatever the policy's mode, unless
            // the host chose audit for expired policies.
            let flags = if p.flags & policy_flags::EXPIRED_AUDIT != 0 {
                p.flags | policy_flags::AUDIT
            } else {
                p.flags & !policy_flags::AUDIT
            };
            (Reason::PolicyExpired, NO_RULE, flags, p.version)
        }
        Some(p) if p.flags & policy_flags::NO_POLICY != 0 => {
            (Reason::PolicyMissing, NO_RULE, p.flags, p.version)
        }
        Some(p) => (reason, rule_id, p.flags, p.version),
        None => (Reason::PolicyMissing, NO_RULE, 0, 0),
    };
    count(reason);
    let decision = if !reason.denies() {
        Decision::Allow
    } else if flags & policy_flags::AUDIT != 0 {
        Decision::Audit
    } else {
        Decision::Deny
    };
    if request.quiet && decision != Decision::Allow {
        increment(&DECISIONS, QUIET_DENIALS);
    }
    if !request.quiet && (decision != Decision::Allow || flags & policy_flags::EVENTS_ALL != 0) {
        let recorded = emit(policy_id, version, request, reason, decision, rule_id);
        if !recorded && flags & policy_flags::STRICT != 0 {
            count(Reason::EventUnrecorded);
            return false;
        }
    }
    decision != Decision::Deny
}

/// Writes a decision event; a full ring buffer is counted, never silent. True if written.
fn emit(
    policy_id: u32,
    version: u64,
    request: &Request,
    reason: Reason,
    decision: Decision,
    rule_id: u32,
) -> bool {
    let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
        increment(&EVENT_DROPS, 0);
        return false;
    };
    let e = entry.as_mut_ptr();
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: `e` points at a reserved, exclusively owned ring-buffer record of Event size;
    // every field is written before submit.
    unsafe {
        (*e).ktime_ns = bpf_ktime_get_ns();
        (*e).cgroup_id = bpf_get_current_cgroup_id();
        (*e).policy_version = version;
        (*e).file = request.file;
        (*e).pid = (pid_tgid >> 32) as u32;
        (*e).tid = pid_tgid as u32;
        (*e).uid = bpf_get_current_uid_gid() as u32;
        (*e).action = request.action as u32;
        (*e).reason = reason as u32;
        (*e).decision = decision as u32;
        (*e).rule_id = rule_id;
        (*e).access = request.access;
        (*e).policy_id = policy_id;
        (*e).path_len = request.path_len;
        (*e).family = request.family;
        (*e).port = request.port;
        (*e).protocol = request.protocol;
        (*e).peer_pid = request.peer_pid;
        (*e).addr = request.addr;
        (*e).comm = bpf_get_current_comm().unwrap_or([0; 16]);
        let dst = core::ptr::addr_of_mut!((*e).path) as *mut c_void;
        let copied = match PATH_SCRATCH.get_ptr(0) {
            Some(scratch) if request.path_len > 0 => {
                let src = core::ptr::addr_of!((*scratch).key.path) as *const c_void;
                probe_read_raw(dst, EVENT_PATH_BYTES as u32, src) == 0
            }
            _ => false,
        };
        if !copied {
            (*e).path_len = 0;
            let words = dst as *mut u64;
            let mut i = 0;
            while i < EVENT_PATH_BYTES / 8 {
                core::ptr::write_volatile(words.add(i), 0);
                i += 1;
            }
        }
    }
    entry.submit(0);
    true
}

fn count(reason: Reason) {
    increment(&DECISIONS, reason as u32);
}

/// Adds one to this CPU's slot `index` of a per-CPU counter array.
fn increment(counters: &PerCpuArray<u64>, index: u32) {
    if let Some(slot) = counters.get_ptr_mut(index) {
        // SAFETY: a per-CPU slot of this map, touched only by this CPU while we run.
        unsafe { *slot += 1 };
    }
}
