//! System actions a contained workload tries (issue 17): mounts in a private mount
//! namespace, `pivot_root`, `chroot`, user namespaces (and what root in one may then try),
//! loading kernel modules, a module request, `perf_event_open`, and
//! `clone3(CLONE_INTO_CGROUP)` out of its cgroup, sockets of every family, and AF_UNIX
//! peers. Each reports the errno of the step that
//! failed, or ok. Nothing here outlives the op's process: every mount change happens in a
//! mount namespace of its own.

use std::{
    ffi::CString,
    io::{Error, Result},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use crate::sys::{check, cstr};

fn unshare(flags: libc::c_int) -> Result<()> {
    // SAFETY: unshare(2) with flags only.
    check(unsafe { libc::unshare(flags) } as i64).map(drop)
}

fn mount(src: Option<&CString>, dst: &CString, flags: libc::c_ulong) -> Result<()> {
    let src = src.map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: mount(2) with C strings that live across the call (or null), no data.
    check(
        unsafe { libc::mount(src, dst.as_ptr(), std::ptr::null(), flags, std::ptr::null()) } as i64,
    )
    .map(drop)
}

/// A mount namespace of this process's own whose mounts no longer propagate anywhere.
fn private_mount_ns() -> Result<()> {
    unshare(libc::CLONE_NEWNS)?;
    mount(None, &cstr("/")?, libc::MS_REC | libc::MS_PRIVATE)
}

/// Bind-mounts `src` over `dst` in a private mount namespace.
fn bind_mount(src: &str, dst: &str) -> Result<()> {
    private_mount_ns()?;
    mount(Some(&cstr(src)?), &cstr(dst)?, libc::MS_BIND)
}

/// Detaches the mount at `path` in a new mount namespace (made private first with
/// `private`, which itself needs the mount permit).
fn umount(path: &str, private: bool) -> Result<()> {
    if private {
        private_mount_ns()?;
    } else {
        unshare(libc::CLONE_NEWNS)?;
    }
    let p = cstr(path)?;
    // SAFETY: umount2(2) with a live C string.
    check(unsafe { libc::umount2(p.as_ptr(), libc::MNT_DETACH) } as i64).map(drop)
}

/// `pivot_root(dir, dir)` in a private mount namespace: past the hook, the initramfs root
/// (which has no parent mount) makes the kernel refuse it with EINVAL.
fn pivot_root(dir: &str) -> Result<()> {
    private_mount_ns()?;
    let d = cstr(dir)?;
    // SAFETY: pivot_root(2) with live C strings.
    check(unsafe { libc::syscall(libc::SYS_pivot_root, d.as_ptr(), d.as_ptr()) }).map(drop)
}

fn chroot(dir: &str) -> Result<()> {
    let d = cstr(dir)?;
    // SAFETY: chroot(2) with a live C string.
    check(unsafe { libc::chroot(d.as_ptr()) } as i64).map(drop)
}

/// `init_module` of bytes that are no module: past the hook, the ELF check refuses them.
fn init_module() -> Result<()> {
    let image = [0u8; 64];
    let params = cstr("")?;
    // SAFETY: init_module(2) reads `image.len()` bytes of a live buffer and a C string.
    check(unsafe {
        libc::syscall(
            libc::SYS_init_module,
            image.as_ptr(),
            image.len(),
            params.as_ptr(),
        )
    })
    .map(drop)
}

/// `finit_module` of a file that is no module.
fn finit_module(path: &str) -> Result<()> {
    let file = std::fs::File::open(path)?;
    let params = cstr("")?;
    // SAFETY: finit_module(2) with an open descriptor and a C string.
    check(unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), params.as_ptr(), 0) })
        .map(drop)
}

/// A netlink socket of a protocol nobody registered: the kernel asks for the module
/// `net-pf-16-proto-31` on the task's behalf, then fails with EPROTONOSUPPORT.
fn module_request() -> Result<()> {
    // SAFETY: socket(2) with integer arguments.
    let fd = check(unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW, 31) } as i64)?;
    // SAFETY: the descriptor was just returned to us and is owned by nobody else.
    drop(unsafe { OwnedFd::from_raw_fd(fd as i32) });
    Ok(())
}

/// `socket(family, type, protocol)`, numbers as given (the protocol in host order).
fn socket(family: &str, kind: &str, protocol: &str) -> Result<()> {
    let num = |s: &str| {
        s.parse::<i32>()
            .map_err(|_| Error::from_raw_os_error(libc::EINVAL))
    };
    // SAFETY: socket(2) with integer arguments.
    let fd = check(unsafe { libc::socket(num(family)?, num(kind)?, num(protocol)?) } as i64)?;
    // SAFETY: the descriptor was just returned to us and is owned by nobody else.
    drop(unsafe { OwnedFd::from_raw_fd(fd as i32) });
    Ok(())
}

/// `ioperm` of port 0x80 (CAP_SYS_RAWIO, then the kernel's lockdown point `ioport`).
fn ioperm() -> Result<()> {
    // SAFETY: ioperm(2) with integer arguments; the op's process exits right after.
    check(unsafe { libc::syscall(libc::SYS_ioperm, 0x80u64, 1u64, 1u64) })?;
    Ok(())
}

/// `iopl(3)` (the same checks as `ioperm`).
fn iopl() -> Result<()> {
    // SAFETY: iopl(2) with an integer argument; the op's process exits right after.
    check(unsafe { libc::syscall(libc::SYS_iopl, 3u64) })?;
    Ok(())
}

/// `connect` of a unix stream socket to a peer written as a path or `@NAME`.
fn unix_connect(peer: &str) -> Result<()> {
    std::os::unix::net::UnixStream::connect_addr(&crate::harness::unix::address(peer)?)?;
    Ok(())
}

/// One datagram to a peer, from an unbound socket (`sendto` without `connect`).
fn unix_send(peer: &str) -> Result<()> {
    let socket = std::os::unix::net::UnixDatagram::unbound()?;
    socket.send_to_addr(b"rampart", &crate::harness::unix::address(peer)?)?;
    Ok(())
}

/// Listens on a unix stream socket for `secs` seconds, accepting and dropping.
fn unix_listen(peer: &str, secs: &str) -> Result<()> {
    let secs: u64 = secs
        .parse()
        .map_err(|_| Error::from_raw_os_error(libc::EINVAL))?;
    let listener =
        std::os::unix::net::UnixListener::bind_addr(&crate::harness::unix::address(peer)?)?;
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            drop(conn);
        }
    });
    std::thread::sleep(std::time::Duration::from_secs(secs));
    Ok(())
}

/// `perf_event_open` of a software clock counting this process.
fn perf_open() -> Result<()> {
    const PERF_TYPE_SOFTWARE: u32 = 1;
    const PERF_COUNT_SW_CPU_CLOCK: u64 = 0;
    // struct perf_event_attr (PERF_ATTR_SIZE_VER0 is 64 bytes): type, size, config, ...
    let mut attr = [0u64; 16];
    attr[0] = PERF_TYPE_SOFTWARE as u64 | (std::mem::size_of_val(&attr) as u64) << 32;
    attr[1] = PERF_COUNT_SW_CPU_CLOCK;
    // CPU 0 for every task (pid -1), not this task (pid 0, cpu -1): a task-bound event
    // turns on the scheduler's perf static key, and that live patching of the kernel's
    // text crashed a 6.12 guest under QEMU TCG (an int3 in __schedule).
    // SAFETY: a zeroed perf_event_attr-sized buffer; pid -1, cpu 0, no group.
    let fd =
        check(unsafe { libc::syscall(libc::SYS_perf_event_open, attr.as_ptr(), -1, 0, -1, 0) })?;
    // SAFETY: the descriptor was just returned to us and is owned by nobody else.
    drop(unsafe { OwnedFd::from_raw_fd(fd as i32) });
    Ok(())
}

/// `clone3(CLONE_INTO_CGROUP)` into the cgroup directory `cgroup`, through an `O_PATH`
/// descriptor; the child exits at once. Ok means it was created there.
fn clone_into_cgroup(cgroup: &str) -> Result<()> {
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    let dir = cstr(cgroup)?;
    // SAFETY: open(2) with a live C string.
    let fd = check(unsafe {
        libc::open(
            dir.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    } as i64)?;
    // SAFETY: the descriptor was just returned to us and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // struct clone_args (CLONE_ARGS_SIZE_VER2, 88 bytes): flags, pidfd, child_tid,
    // parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup.
    let mut args = [0u64; 11];
    args[0] = CLONE_INTO_CGROUP;
    args[4] = libc::SIGCHLD as u64;
    args[10] = fd.as_raw_fd() as u64;
    // SAFETY: clone3 with a fully initialised clone_args; the child only calls _exit.
    let pid = check(unsafe {
        libc::syscall(
            libc::SYS_clone3,
            args.as_mut_ptr(),
            std::mem::size_of_val(&args),
        )
    })?;
    if pid == 0 {
        // SAFETY: _exit in the child: no destructors, no shared state touched.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waitpid on our own child.
    check(unsafe { libc::waitpid(pid as i32, &mut status, 0) } as i64)?;
    Ok(())
}

/// Root in a user namespace of its own, then `then` (`mount`, `chroot` or
/// `clone-into-cgroup PATH`).
fn in_user_ns(then: &[&str]) -> Result<()> {
    unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS)?;
    match then {
        ["mount"] => mount(None, &cstr("/")?, libc::MS_REC | libc::MS_PRIVATE),
        ["chroot"] => chroot("/"),
        ["clone-into-cgroup", cg] => clone_into_cgroup(cg),
        _ => Err(Error::from_raw_os_error(libc::EINVAL)),
    }
}

/// Raises the hard limit on open files by one: needs CAP_SYS_RESOURCE (EPERM without).
fn raise_nofile() -> Result<()> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) into a local struct.
    check(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } as i64)?;
    lim.rlim_max += 1;
    // SAFETY: setrlimit(2) from a local struct, in this short-lived op process.
    check(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } as i64).map(drop)
}

/// Writes `value` to a cgroupfs file as `write(2)` on an `O_WRONLY` open, without
/// `O_TRUNC` (which a shell's `>` adds, and which needs the `truncate` right).
fn cgroup_write(file: &str, value: &str) -> Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .write(true)
        .open(file)?
        .write_all(value.as_bytes())
}

/// The op named by `args`, if it is one of these.
pub fn run(args: &[&str]) -> Option<Result<()>> {
    Some(match args {
        ["bind-mount", src, dst] => bind_mount(src, dst),
        ["umount", path] => umount(path, false),
        ["umount-private", path] => umount(path, true),
        ["pivot-root", dir] => pivot_root(dir),
        ["chroot", dir] => chroot(dir),
        ["unshare-user"] => unshare(libc::CLONE_NEWUSER),
        ["unshare", "mnt"] => unshare(libc::CLONE_NEWNS),
        ["unshare", "net"] => unshare(libc::CLONE_NEWNET),
        ["unshare", "uts"] => unshare(libc::CLONE_NEWUTS),
        ["raise-nofile"] => raise_nofile(),
        ["cgroup-write", file, value] => cgroup_write(file, value),
        ["userns", then @ ..] => in_user_ns(then),
        ["init-module"] => init_module(),
        ["finit-module", path] => finit_module(path),
        ["module-request"] => module_request(),
        ["socket", family, kind, protocol] => socket(family, kind, protocol),
        ["perf-open"] => perf_open(),
        ["ioperm"] => ioperm(),
        ["iopl"] => iopl(),
        ["unix-connect", peer] => unix_connect(peer),
        ["unix-send", peer] => unix_send(peer),
        ["unix-listen", peer, secs] => unix_listen(peer, secs),
        ["clone-into-cgroup", cgroup] => clone_into_cgroup(cgroup),
        _ => return None,
    })
}
