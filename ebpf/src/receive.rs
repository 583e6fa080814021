//! Received descriptors (`file_receive`: `SCM_RIGHTS`, `pidfd_getfd`, binder, seccomp's
//! added descriptors). A descriptor carries the authority of whoever opened or made it, so
//! a governed task receives only what it could have got itself: a file with a path is
//! judged as an open of that path with the access it was opened for (also a cgroupfs file
//! opened for writing elsewhere, or a pinned program opened for writing); a socket only if
//! it was made in a cgroup of the task's own policy slot (a raw, packet or TCP socket made
//! outside would send past every rule); namespace files (`setns`) never, nor anonymous
//! files other than eventfd, epoll, timerfd, signalfd and pidfd (bpf objects, io_uring,
//! perf events, fanotify, ... act with their maker's authority). Pipes and files on
//! kernel-internal mounts (memfd, dma-buf, ...) carry data only and are allowed: running
//! or mapping a memfd executable is judged at `exec` and `mmap`.

use aya_ebpf::{macros::lsm, programs::LsmContext};
use rampart_common::{access, Action, KernelLayout, Reason, NO_RULE};

use crate::{
    decision::{conclude, governed, lsm_verdict, Request},
    file::{judge_write, mode_access},
    governance::socket_governor,
    object::{file_fs_magic, file_identity, on_internal_mount, read_at},
    path::{area, copy_name, dentry_name, judge_resolved, put_byte, scratch},
    walk::walk_path,
};

const SOCKFS_MAGIC: u64 = 0x534f_434b;
const PIPEFS_MAGIC: u64 = 0x5049_5045;
const ANON_INODE_FS_MAGIC: u64 = 0x0904_1934;
const NSFS_MAGIC: u64 = 0x6e73_6673;

/// Longest dentry name copied into a label.
const LABEL_NAME_MAX: u32 = 64;

/// Writes `prefix` into the path scratch, then with `named` the file's dentry name
/// (`socket:TCP`, `anon_inode:bpf-map`; a namespace file's dentry has no name of its own,
/// its label is `nsfs`); its length with the NUL, 0 if it could not be written.
fn label(file: *const u8, prefix: &[u8], named: bool, layout: &KernelLayout) -> u32 {
    let Ok(scratch) = scratch() else {
        return 0;
    };
    let base = area(scratch);
    let mut i = 0;
    while i < prefix.len() {
        put_byte(base, i as u32, prefix[i]);
        i += 1;
    }
    let at = prefix.len() as u32;
    if !named {
        put_byte(base, at, 0);
        return at + 1;
    }
    let Some(dentry) = read_at::<*const u8>(file, layout.file_path + layout.path_dentry) else {
        return 0;
    };
    let Ok((name, len)) = dentry_name(dentry, layout) else {
        return 0;
    };
    let len = if len > LABEL_NAME_MAX {
        LABEL_NAME_MAX
    } else {
        len
    };
    if copy_name(base, at, name, len).is_err() {
        return 0;
    }
    put_byte(base, at + len, 0);
    at + len + 1
}

/// The anonymous files a governed task may receive, by the first bytes of their names:
/// `[eventfd]`, `[eventpoll]`, `[timerfd]`, `[signalfd]`, `[pidfd]` (before 6.9; pidfs
/// after). They carry data or name a process whose use is judged where it is used.
const DATA_ONLY_ANON: [[u8; 6]; 4] = [*b"[event", *b"[timer", *b"[signa", *b"[pidfd"];

/// Whether an anonymous file carries only data. Every other one may act with its maker's
/// authority and is refused: bpf objects (`bpf-map`, `bpf-prog`, `bpf_link`, ...),
/// io_uring instances (their kernel thread acts for their maker; `SCM_RIGHTS` refuses
/// them itself, a seccomp supervisor's `SECCOMP_IOCTL_NOTIF_ADDFD` and binder do not),
/// perf events (the `perf-events` permit), fanotify and inotify groups (events about, and
/// with fanotify decisions on, files the policy does not name), userfaultfd, KVM, ...
fn data_only(file: *const u8, layout: &KernelLayout) -> bool {
    let Some(dentry) = read_at::<*const u8>(file, layout.file_path + layout.path_dentry) else {
        return false;
    };
    let Ok((name, len)) = dentry_name(dentry, layout) else {
        return false;
    };
    if len < 6 {
        return false;
    }
    let Some(head) = read_at::<[u8; 6]>(name, 0) else {
        return false;
    };
    let mut i = 0;
    while i < DATA_ONLY_ANON.len() {
        if head == DATA_ONLY_ANON[i] {
            return true;
        }
        i += 1;
    }
    false
}

/// Judges a received descriptor for the current task; true to allow.
#[inline(always)]
fn judge_received(file: *const u8) -> bool {
    let (policy_id, layout) = match governed(Action::Receive, 0) {
        Ok(found) => found,
        Err(verdict) => return verdict,
    };
    let mut request = Request::new(Action::Receive, 0);
    let Some(magic) = file_fs_magic(file, layout) else {
        return conclude(policy_id, &request, Reason::IdentityUnreadable, NO_RULE);
    };
    match magic {
        PIPEFS_MAGIC => return conclude(policy_id, &request, Reason::Allowed, NO_RULE),
        SOCKFS_MAGIC => {
            let sk = read_at::<*const u8>(file, layout.file_private_data)
                .and_then(|sock| read_at::<*const u8>(sock, layout.socket_sk))
                .unwrap_or(core::ptr::null());
            // Slots are small numbers; NOBODY and UNKNOWN never equal one.
            let reason = if socket_governor(sk, layout) == policy_id {
                Reason::Allowed
            } else {
                Reason::NoRule
            };
            request.path_len = label(file, b"socket:", true, layout);
            return conclude(policy_id, &request, reason, NO_RULE);
        }
        ANON_INODE_FS_MAGIC => {
            if data_only(file, layout) {
                return conclude(policy_id, &request, Reason::Allowed, NO_RULE);
            }
            request.path_len = label(file, b"anon_inode:", true, layout);
            return conclude(policy_id, &request, Reason::NoRule, NO_RULE);
        }
        NSFS_MAGIC => {
            request.path_len = label(file, b"nsfs", false, layout);
            return conclude(policy_id, &request, Reason::NoRule, NO_RULE);
        }
        _ => {}
    }
    if on_internal_mount(file, layout) {
        // memfd, secretmem, dma-buf, ...: no path a rule could name, data only.
        return conclude(policy_id, &request, Reason::Allowed, NO_RULE);
    }
    // Unreadable: judged as if opened for both.
    request.access =
        read_at::<u32>(file, layout.file_mode).map_or(access::READ | access::WRITE, mode_access);
    let path = file.wrapping_add(layout.file_path as usize);
    let verdict = match file_identity(file, layout) {
        Some(id) => {
            request.file = id;
            judge_resolved(walk_path(path, layout), policy_id, &mut request)
        }
        None => (Reason::IdentityUnreadable, NO_RULE),
    };
    let (reason, rule) = judge_write(file, policy_id, layout, &request, verdict);
    conclude(policy_id, &request, reason, rule)
}

/// `file_receive(file)`.
#[lsm(hook = "file_receive")]
pub fn file_receive(ctx: LsmContext) -> i32 {
    let previous: i32 = ctx.arg(1);
    if previous != 0 {
        return previous;
    }
    lsm_verdict(judge_received(ctx.arg(0)))
}
