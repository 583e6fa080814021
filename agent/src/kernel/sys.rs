//! Every libc call the agent makes, each behind a safe function. As in aya's `sys` module,
//! nothing outside this file calls into libc, so the unsafe surface is one page to audit.

use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd},
    path::Path,
};

/// The clocks the agent reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// Wall clock (can jump).
    Realtime,
    /// Monotonic, stops during suspend: the clock of `bpf_ktime_get_ns` in kernel events.
    Monotonic,
    /// Monotonic including suspend: the clock of `bpf_ktime_get_boot_ns` (policy expiry).
    Boottime,
}

/// `clock_gettime(clock)` in nanoseconds.
pub fn clock_ns(clock: Clock) -> io::Result<u64> {
    let id = match clock {
        Clock::Realtime => libc::CLOCK_REALTIME,
        Clock::Monotonic => libc::CLOCK_MONOTONIC,
        Clock::Boottime => libc::CLOCK_BOOTTIME,
    };
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid, owned `ts`.
    if unsafe { libc::clock_gettime(id, &mut ts) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// The filesystem type (`statfs.f_type`) of the filesystem holding `path`.
pub fn fs_type(path: &Path) -> io::Result<i64> {
    let c_path = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    let mut buf = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: c_path is a valid NUL-terminated string and buf is a properly sized out-pointer.
    let rc = unsafe { libc::statfs(c_path.as_ptr(), buf.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statfs returned 0, so it filled buf.
    let st = unsafe { buf.assume_init() };
    // f_type is i64 on glibc and u64 on musl (the guest build): compare as i64 on both.
    #[allow(clippy::unnecessary_cast)]
    Ok(st.f_type as i64)
}

/// Whether this process runs with effective uid 0.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `membarrier(MEMBARRIER_CMD_GLOBAL)`: returns once every CPU has passed through a
/// quiescent state, which includes an RCU grace period (`synchronize_rcu`).
pub fn membarrier_global() -> io::Result<()> {
    const MEMBARRIER_CMD_GLOBAL: libc::c_long = 1;
    // SAFETY: membarrier takes two integer arguments and touches no memory of ours.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_membarrier,
            MEMBARRIER_CMD_GLOBAL,
            0 as libc::c_long,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `getsockopt(SO_PEERPIDFD)` (Linux 6.5+): a pidfd for the process that connected the
/// Unix socket `sock`, taken by the kernel at connect time (so it cannot name a process
/// that reused the pid later). `ENOPROTOOPT` on older kernels.
pub fn peer_pidfd(sock: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    const SO_PEERPIDFD: libc::c_int = 77;
    let mut fd: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into the owned `fd` and updates `len`.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_PEERPIDFD,
            std::ptr::addr_of_mut!(fd).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if fd < 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "the peer has no pidfd",
        ));
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `pidfd_open(pid)`: a descriptor that keeps naming this process even after its pid is
/// reused.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes two integers and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0 as libc::c_uint) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Whether the process of `pidfd` is still alive (`pidfd_send_signal(pidfd, 0)`).
pub fn pidfd_alive(pidfd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: signal 0 sends nothing; a null info pointer is allowed; no memory is touched.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            0 as libc::c_int,
            std::ptr::null::<libc::siginfo_t>(),
            0 as libc::c_uint,
        )
    };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ESRCH) => Ok(false),
        _ => Err(e),
    }
}

/// `bpf(BPF_PROG_QUERY)`: the ids of the programs attached directly to the cgroup open as
/// `cgroup` for `attach_type` (a `bpf_attach_type`, e.g. 10 for `BPF_CGROUP_INET4_CONNECT`),
/// link-attached ones included. At most 64 are reported.
pub fn cgroup_prog_ids(cgroup: BorrowedFd<'_>, attach_type: u32) -> io::Result<Vec<u32>> {
    const BPF_PROG_QUERY: libc::c_long = 16;
    /// `union bpf_attr`'s `query` member up to `prog_cnt`, padded.
    #[repr(C, align(8))]
    struct Query {
        target_fd: u32,
        attach_type: u32,
        query_flags: u32,
        attach_flags: u32,
        prog_ids: u64,
        prog_cnt: u32,
        _pad: u32,
    }
    let mut ids = [0u32; 64];
    let mut attr = Query {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_type,
        query_flags: 0,
        attach_flags: 0,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        _pad: 0,
    };
    // SAFETY: `attr` is a valid, zero-padded bpf_attr prefix of the size passed; the kernel
    // writes at most `prog_cnt` ids into `ids`, which outlives the call, and the count
    // back into `attr`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_QUERY,
            &mut attr as *mut Query,
            std::mem::size_of::<Query>() as libc::c_uint,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let n = (attr.prog_cnt as usize).min(ids.len());
    Ok(ids[..n].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn clocks_read_and_boottime_is_not_behind_monotonic() {
        let mono = clock_ns(Clock::Monotonic).expect("CLOCK_MONOTONIC");
        let boot = clock_ns(Clock::Boottime).expect("CLOCK_BOOTTIME");
        assert!(boot >= mono, "boottime {boot} < monotonic {mono}");
        assert!(clock_ns(Clock::Realtime).expect("CLOCK_REALTIME") > 1_600_000_000_000_000_000);
    }

    #[test]
    fn a_pidfd_of_this_process_is_alive() {
        let fd = pidfd_open(std::process::id() as i32).expect("pidfd_open");
        assert!(pidfd_alive(fd.as_fd()).expect("pidfd_send_signal"));
    }

    #[test]
    fn fs_type_refuses_a_nul_and_reads_root() {
        assert_eq!(
            fs_type(Path::new("a\0b")).map_err(|e| e.kind()),
            Err(io::ErrorKind::InvalidInput)
        );
        assert!(fs_type(Path::new("/")).is_ok());
    }
}
