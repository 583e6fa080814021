//! Ops a contained workload tries against other processes and Rampart itself (issue 17):
//! signals, ptrace, another process's memory and descriptors, and `bpf()` on Rampart's
//! pinned objects. Each is one system call (or a short sequence) whose errno is reported.

use std::io::{Error, Result};
use std::os::fd::{FromRawFd, OwnedFd};

use crate::sys::check as rc;

fn pid_of(s: &str) -> Result<libc::pid_t> {
    s.parse()
        .map_err(|_| Error::from_raw_os_error(libc::EINVAL))
}

/// `bpf(BPF_OBJ_GET, {pathname})`: a descriptor of a pinned map, program or link.
fn bpf_obj_get(path: &str) -> Result<()> {
    crate::sys::bpf_obj_get(path).map(drop)
}

/// `bpf(BPF_PROG_GET_NEXT_ID, {start_id: 0})`: the first loaded program's id (the way to
/// every program, Rampart's included, without its pins).
fn bpf_next_id() -> Result<()> {
    const BPF_PROG_GET_NEXT_ID: libc::c_long = 11;
    let mut attr = [0u64; 16];
    // SAFETY: a zeroed bpf_attr-sized buffer; the kernel writes next_id into it.
    rc(unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_GET_NEXT_ID,
            attr.as_mut_ptr(),
            std::mem::size_of_val(&attr),
        )
    })
    .map(drop)
}

fn kill(pid: &str, sig: &str) -> Result<()> {
    let sig: i32 = sig
        .parse()
        .map_err(|_| Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: a plain system call with scalar arguments.
    rc(unsafe { libc::kill(pid_of(pid)?, sig) } as i64).map(drop)
}

/// `pidfd_open` then `pidfd_send_signal`.
fn pidfd_signal(pid: &str, sig: &str) -> Result<()> {
    let sig: i32 = sig
        .parse()
        .map_err(|_| Error::from_raw_os_error(libc::EINVAL))?;
    let pidfd = pidfd_open(pid)?;
    use std::os::fd::AsRawFd;
    // SAFETY: a system call on our own pidfd, no siginfo.
    rc(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })
    .map(drop)
}

fn pidfd_open(pid: &str) -> Result<OwnedFd> {
    // SAFETY: a system call with scalar arguments.
    let fd = rc(unsafe { libc::syscall(libc::SYS_pidfd_open, pid_of(pid)?, 0) })?;
    // SAFETY: a fresh descriptor the kernel returned.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `pidfd_getfd(pidfd, 0)`: a copy of the process's descriptor 0.
fn pidfd_getfd(pid: &str) -> Result<()> {
    use std::os::fd::AsRawFd;
    let pidfd = pidfd_open(pid)?;
    // SAFETY: a system call on our own pidfd.
    let fd = rc(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), 0, 0) })?;
    // SAFETY: a fresh descriptor the kernel returned.
    drop(unsafe { OwnedFd::from_raw_fd(fd as i32) });
    Ok(())
}

/// `PTRACE_ATTACH`, wait for the stop, `PTRACE_DETACH`.
fn ptrace_attach(pid: &str) -> Result<()> {
    let pid = pid_of(pid)?;
    let null = std::ptr::null_mut::<libc::c_void>();
    // SAFETY: ptrace with scalar arguments and null pointers, as PTRACE_ATTACH takes.
    rc(unsafe { libc::ptrace(libc::PTRACE_ATTACH, pid, null, null) })?;
    let mut status = 0;
    // SAFETY: waits for the tracee we just attached; `status` is a valid out pointer.
    unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
    // SAFETY: as above, detaching the stopped tracee.
    rc(unsafe { libc::ptrace(libc::PTRACE_DETACH, pid, null, null) }).map(drop)
}

/// Opens `/proc/PID/FILE` for reading (`mem`, `environ`: `mm_access` at open).
fn open_proc(pid: &str, file: &str) -> Result<()> {
    std::fs::File::open(format!("/proc/{}/{file}", pid_of(pid)?)).map(drop)
}

/// `process_vm_readv` of one byte at `0x1000` (never mapped): the kernel checks access to
/// the process first (EPERM), then the address (EFAULT). Nothing else is touched, so the
/// EPERM can only come from that check.
fn vm_read(pid: &str) -> Result<()> {
    let pid = pid_of(pid)?;
    let start = 0x1000u64;
    let mut byte = 0u8;
    let local = libc::iovec {
        iov_base: (&mut byte as *mut u8).cast(),
        iov_len: 1,
    };
    let remote = libc::iovec {
        iov_base: start as *mut libc::c_void,
        iov_len: 1,
    };
    // SAFETY: one local iovec over a live byte and one remote iovec the kernel checks.
    rc(unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) } as i64).map(drop)
}

/// Sends `sig` to `pid` once a second for `secs` seconds: ok if every one was delivered,
/// else the errno of the first that was not (a policy that expires meanwhile).
fn repeat_kill(pid: &str, sig: &str, secs: &str) -> Result<()> {
    let secs: u64 = secs
        .parse()
        .map_err(|_| Error::from_raw_os_error(libc::EINVAL))?;
    for _ in 0..secs {
        kill(pid, sig)?;
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    Ok(())
}

/// The `CLONE_NEW*` flag of a namespace kind.
fn ns_flag(kind: &str) -> Result<libc::c_int> {
    Ok(match kind {
        "mnt" => libc::CLONE_NEWNS,
        "uts" => libc::CLONE_NEWUTS,
        "net" => libc::CLONE_NEWNET,
        _ => return Err(Error::from_raw_os_error(libc::EINVAL)),
    })
}

/// `setns(pidfd_open(PID), CLONE_NEW<KIND>)`: joins a namespace of another process.
fn setns_pid(pid: &str, kind: &str) -> Result<()> {
    use std::os::fd::AsRawFd;
    let pidfd = pidfd_open(pid)?;
    // SAFETY: setns(2) on our own pidfd with a flag constant.
    rc(unsafe { libc::setns(pidfd.as_raw_fd(), ns_flag(kind)?) } as i64).map(drop)
}

/// `setns(open(/proc/PID/ns/KIND), 0)`.
fn setns_path(pid: &str, kind: &str) -> Result<()> {
    use std::os::fd::AsRawFd;
    ns_flag(kind)?;
    let file = std::fs::File::open(format!("/proc/{}/ns/{kind}", pid_of(pid)?))?;
    // SAFETY: setns(2) on a descriptor we own.
    rc(unsafe { libc::setns(file.as_raw_fd(), 0) } as i64).map(drop)
}

/// Runs one scope op; `None` if `args` is not one.
pub fn run(args: &[&str]) -> Option<Result<()>> {
    Some(match args {
        ["bpf-obj-get", path] => bpf_obj_get(path),
        ["bpf-next-id"] => bpf_next_id(),
        ["kill", pid, sig] => kill(pid, sig),
        ["repeat-kill", pid, sig, secs] => repeat_kill(pid, sig, secs),
        ["pidfd-signal", pid, sig] => pidfd_signal(pid, sig),
        ["pidfd-getfd", pid] => pidfd_getfd(pid),
        ["ptrace-attach", pid] => ptrace_attach(pid),
        ["open-mem", pid] => open_proc(pid, "mem"),
        ["open-environ", pid] => open_proc(pid, "environ"),
        ["vm-read", pid] => vm_read(pid),
        ["setns-pid", pid, kind] => setns_pid(pid, kind),
        ["bpf-map-create"] => crate::sys::bpf_map_create().map(drop),
        ["bpf-prog-load", kind] => kind
            .parse()
            .map_err(|_| Error::from_raw_os_error(libc::EINVAL))
            .and_then(crate::sys::bpf_prog_load)
            .map(drop),
        ["bpf-map-by-id", id] => id
            .parse()
            .map_err(|_| Error::from_raw_os_error(libc::EINVAL))
            .and_then(crate::sys::bpf_map_by_id)
            .map(drop),
        ["setns-path", pid, kind] => setns_path(pid, kind),
        ["sleep", secs] => {
            let secs: u64 = secs
                .parse()
                .map_err(|_| Error::from_raw_os_error(libc::EINVAL))
                .ok()?;
            std::thread::sleep(std::time::Duration::from_secs(secs));
            Ok(())
        }
        _ => return None,
    })
}
