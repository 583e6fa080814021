//! System actions: what changes the task's view of the system or reaches into the kernel
//! rather than acting on one file or address. Mounts of every kind, `chroot`, new user
//! namespaces, loading into the kernel and `perf_event_open` are denied in governed
//! cgroups unless the policy's `spec.permits` lists them; `clone3(CLONE_INTO_CGROUP)` is
//! denied always (the child's cgroup is not visible at the hook, and could lie outside
//! the governed subtree).

use aya_ebpf::{
    cty::c_void, helpers::generated::bpf_probe_read_kernel_str, macros::lsm, programs::LsmContext,
};
use rampart_common::{system, Action, Reason, EVENT_PATH_BYTES, NO_RULE};

use crate::{
    decision::{conclude, governed, lsm_verdict, Request},
    governance::policy,
    path::{area, scratch},
};

/// `CLONE_INTO_CGROUP` (a `clone3` flag).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Judges a system action: allowed only if the governing policy permits `permit` (0: no
/// policy may). `path_len`: a name already in the path scratch for the event, or 0.
#[inline(always)]
fn judge_system(action: Action, permit: u32, access: u32, path_len: u32) -> bool {
    let policy_id = match governed(action, access) {
        Ok((policy_id, _)) => policy_id,
        Err(verdict) => return verdict,
    };
    let mut request = Request::new(action, access);
    request.path_len = path_len;
    let permitted = permit != 0 && policy(policy_id).is_some_and(|p| p.permits & permit != 0);
    let reason = if permitted {
        Reason::Allowed
    } else {
        Reason::NotPermitted
    };
    conclude(policy_id, &request, reason, NO_RULE)
}

/// The hook's verdict, or the earlier LSM's denial (`previous`) unchanged.
#[inline(always)]
fn verdict(previous: i32, action: Action, permit: u32, access: u32) -> i32 {
    if previous != 0 {
        return previous;
    }
    lsm_verdict(judge_system(action, permit, access, 0))
}

/// `sb_mount(dev_name, path, type, flags, data)`: `mount(2)` in every form.
#[lsm(hook = "sb_mount")]
pub fn sb_mount(ctx: LsmContext) -> i32 {
    verdict(
        ctx.arg(5),
        Action::Mount,
        system::MOUNT,
        system::MOUNT_MOUNT,
    )
}

/// `move_mount(from, to)`.
#[lsm(hook = "move_mount")]
pub fn move_mount(ctx: LsmContext) -> i32 {
    verdict(ctx.arg(2), Action::Mount, system::MOUNT, system::MOUNT_MOVE)
}

/// `sb_umount(mnt, flags)`.
#[lsm(hook = "sb_umount")]
pub fn sb_umount(ctx: LsmContext) -> i32 {
    verdict(
        ctx.arg(2),
        Action::Mount,
        system::MOUNT,
        system::MOUNT_UMOUNT,
    )
}

/// `sb_pivotroot(old, new)`.
#[lsm(hook = "sb_pivotroot")]
pub fn sb_pivotroot(ctx: LsmContext) -> i32 {
    verdict(
        ctx.arg(2),
        Action::Mount,
        system::MOUNT,
        system::MOUNT_PIVOT_ROOT,
    )
}

/// `path_chroot(path)`.
#[lsm(hook = "path_chroot")]
pub fn path_chroot(ctx: LsmContext) -> i32 {
    verdict(ctx.arg(1), Action::Chroot, system::CHROOT, 0)
}

/// `locked_down(what)`: the kernel asks before what lockdown guards (`enum
/// lockdown_reason`: `/dev/mem`, `ioperm`, `iopl`, MSRs, `/proc/kcore`, debugfs, ...),
/// whether or not lockdown is on; the reason goes in the event.
#[lsm(hook = "locked_down")]
pub fn locked_down(ctx: LsmContext) -> i32 {
    let what: i32 = ctx.arg(0);
    verdict(
        ctx.arg(1),
        Action::Lockdown,
        system::KERNEL_ACCESS,
        what as u32,
    )
}

/// `userns_create(cred)`: `unshare(CLONE_NEWUSER)`, `clone(CLONE_NEWUSER)`.
#[lsm(hook = "userns_create")]
pub fn userns_create(ctx: LsmContext) -> i32 {
    verdict(
        ctx.arg(1),
        Action::UserNamespace,
        system::USER_NAMESPACES,
        0,
    )
}

/// `kernel_module_request(kmod_name)`: a module the kernel would load on the task's
/// behalf (a socket family, a device, a crypto algorithm); its name goes in the event.
#[lsm(hook = "kernel_module_request")]
pub fn kernel_module_request(ctx: LsmContext) -> i32 {
    let previous: i32 = ctx.arg(1);
    if previous != 0 {
        return previous;
    }
    let name: *const c_void = ctx.arg(0);
    let mut len = 0;
    if let Ok(s) = scratch() {
        // SAFETY: a bounded string copy from a kernel pointer into this CPU's scratch,
        // whose path area is longer than EVENT_PATH_BYTES.
        let copied = unsafe {
            bpf_probe_read_kernel_str(area(s) as *mut c_void, EVENT_PATH_BYTES as u32, name)
        };
        if copied > 0 {
            len = copied as u32;
        }
    }
    lsm_verdict(judge_system(
        Action::KernelLoad,
        system::KERNEL_LOAD,
        system::LOAD_MODULE_REQUEST,
        len,
    ))
}

/// `kernel_read_file(file, id, contents)`: `finit_module`, firmware, `kexec_file_load`.
#[lsm(hook = "kernel_read_file")]
pub fn kernel_read_file(ctx: LsmContext) -> i32 {
    let id: u32 = ctx.arg(1);
    verdict(
        ctx.arg(3),
        Action::KernelLoad,
        system::KERNEL_LOAD,
        system::LOAD_READ_FILE | (id & 0xff),
    )
}

/// `kernel_load_data(id, contents)`: `init_module`, `kexec_load`.
#[lsm(hook = "kernel_load_data")]
pub fn kernel_load_data(ctx: LsmContext) -> i32 {
    let id: u32 = ctx.arg(0);
    verdict(
        ctx.arg(2),
        Action::KernelLoad,
        system::KERNEL_LOAD,
        system::LOAD_DATA | (id & 0xff),
    )
}

/// `perf_event_open(attr, type)` (to 6.16).
#[lsm(hook = "perf_event_open")]
pub fn perf_event_open(ctx: LsmContext) -> i32 {
    verdict(ctx.arg(2), Action::PerfEvent, system::PERF_EVENTS, 0)
}

/// `perf_event_open(type)` (the newest kernels).
#[lsm(hook = "perf_event_open")]
pub fn perf_event_open_type(ctx: LsmContext) -> i32 {
    verdict(ctx.arg(1), Action::PerfEvent, system::PERF_EVENTS, 0)
}

/// `task_alloc(task, clone_flags)`: every new task; only `CLONE_INTO_CGROUP` is judged.
#[lsm(hook = "task_alloc")]
pub fn task_alloc(ctx: LsmContext) -> i32 {
    let previous: i32 = ctx.arg(2);
    if previous != 0 {
        return previous;
    }
    let flags: u64 = ctx.arg(1);
    if flags & CLONE_INTO_CGROUP == 0 {
        return 0;
    }
    lsm_verdict(judge_system(Action::CloneIntoCgroup, 0, 0, 0))
}
