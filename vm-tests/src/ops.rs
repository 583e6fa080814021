//! Single actions a scenario runs inside a governed cgroup (`cg-exec CGROUP PROBE op ...`).
//! Each prints `rampart-op: ok` or `rampart-op: errno=N`; only EPERM means "denied".

use std::{
    ffi::CString,
    io::Write,
    net::{SocketAddr, TcpStream, UdpSocket},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    process::{Command, ExitCode},
    time::{Duration, Instant},
};

pub use crate::sys::OP;
use crate::sys::{check, cstr, report};

fn open(path: &str, flags: i32) -> std::io::Result<OwnedFd> {
    let p = cstr(path)?;
    // SAFETY: a valid C string; the returned descriptor is owned below.
    let fd = check(unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC) } as i64)?;
    // SAFETY: open returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn open_flags(access: &str) -> Option<i32> {
    Some(match access {
        "read" => libc::O_RDONLY,
        "write" => libc::O_WRONLY | libc::O_APPEND,
        "read,write" => libc::O_RDWR,
        _ => return None,
    })
}

fn exec_fd_path(path: &str) -> std::io::Result<()> {
    let p = cstr(path)?;
    let arg = cstr("probe")?;
    let argv = [p.as_ptr(), arg.as_ptr(), std::ptr::null()];
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    // SAFETY: NULL-terminated argv/envp of valid C strings; execve only returns on failure.
    unsafe { libc::execve(p.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    Err(std::io::Error::last_os_error())
}

fn exec_via_proc_fd(path: &str) -> std::io::Result<()> {
    let fd = open(path, libc::O_RDONLY)?;
    // Keep the descriptor across exec: /proc/self/fd/N must still name it.
    // SAFETY: clears FD_CLOEXEC on a descriptor we own.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, 0) };
    exec_fd_path(&format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn memfd_exec(src: &str) -> std::io::Result<()> {
    let bytes = std::fs::read(src)?;
    let name = cstr("rampart-memfd")?;
    // SAFETY: a valid C string; the descriptor is owned below.
    let fd = check(unsafe { libc::memfd_create(name.as_ptr(), 0) } as i64)?;
    // SAFETY: memfd_create returned a fresh descriptor.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd as i32) });
    file.write_all(&bytes)?;
    let empty = cstr("")?;
    let arg0 = cstr("memfd")?;
    let arg1 = cstr("probe")?;
    let argv = [arg0.as_ptr(), arg1.as_ptr(), std::ptr::null()];
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    // SAFETY: execveat(2) on our memfd with AT_EMPTY_PATH; only returns on failure.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            file.as_raw_fd(),
            empty.as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    Err(std::io::Error::last_os_error())
}

/// Maps the first page of `path` privately with `prot`; returns the address.
fn map_page(fd: &OwnedFd, prot: i32) -> std::io::Result<*mut libc::c_void> {
    // SAFETY: a fresh private mapping of our own descriptor; the caller unmaps it.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            PAGE,
            prot,
            libc::MAP_PRIVATE,
            fd.as_raw_fd(),
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    Ok(addr)
}

const PAGE: usize = 4096;

fn map_exec(path: &str) -> std::io::Result<()> {
    let fd = open(path, libc::O_RDONLY)?;
    let addr = map_page(&fd, libc::PROT_READ | libc::PROT_EXEC)?;
    // SAFETY: unmaps exactly the mapping created above.
    unsafe { libc::munmap(addr, PAGE) };
    Ok(())
}

/// Opens `a` then `b` for reading, over and over, until the file `stop` exists; prints
/// how each open ended. The policy-swap scenario runs it while policies are replaced.
fn swap_loop(a: &str, b: &str, stop: &str) -> std::io::Result<()> {
    let mut counts = [[0u64; 3]; 2]; // [file][ok, eperm, other]
    let mut iterations = 0u64;
    while !std::path::Path::new(stop).exists() {
        for (i, path) in [a, b].iter().enumerate() {
            let k = match open(path, libc::O_RDONLY) {
                Ok(_) => 0,
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => 1,
                Err(_) => 2,
            };
            counts[i][k] += 1;
        }
        iterations += 1;
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    println!(
        "swap-loop: iterations={iterations} a_ok={} a_denied={} a_other={} b_ok={} b_denied={} \
         b_other={}",
        counts[0][0], counts[0][1], counts[0][2], counts[1][0], counts[1][1], counts[1][2]
    );
    Ok(())
}

/// Opens `path` for reading `n` times as fast as it can; prints how the opens ended.
fn open_loop(path: &str, n: u64) -> std::io::Result<()> {
    let (mut ok, mut denied, mut other) = (0u64, 0u64, 0u64);
    for _ in 0..n {
        match open(path, libc::O_RDONLY) {
            Ok(_) => ok += 1,
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => denied += 1,
            Err(_) => other += 1,
        }
    }
    println!("open-loop: ok={ok} denied={denied} other={other}");
    Ok(())
}

/// Maps `path` readable (not judged), then asks for PROT_EXEC with mprotect.
fn mprotect_exec(path: &str) -> std::io::Result<()> {
    let fd = open(path, libc::O_RDONLY)?;
    let addr = map_page(&fd, libc::PROT_READ)?;
    // SAFETY: changes the protection of exactly the mapping created above.
    let rc = unsafe { libc::mprotect(addr, PAGE, libc::PROT_READ | libc::PROT_EXEC) };
    let result = if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    };
    // SAFETY: unmaps exactly the mapping created above.
    unsafe { libc::munmap(addr, PAGE) };
    result
}

fn uring_open(path: &str) -> std::io::Result<()> {
    use io_uring::{opcode, types, IoUring};
    let p = cstr(path)?;
    let mut ring = IoUring::new(2)?;
    let entry = opcode::OpenAt::new(types::Fd(libc::AT_FDCWD), p.as_ptr())
        .flags(libc::O_RDONLY | libc::O_CLOEXEC)
        .build()
        .user_data(1);
    // SAFETY: the path buffer outlives the submission (complete_one waits for it).
    let res = unsafe { complete_one(&mut ring, &entry) }?;
    // SAFETY: a successful openat returned a descriptor we now own and close.
    drop(unsafe { OwnedFd::from_raw_fd(res) });
    Ok(())
}

/// An io_uring no-op under credentials registered as a personality: the kernel asks the
/// LSM (`uring_override_creds`) before the request runs; a refusal is the request's result.
fn uring_personality() -> std::io::Result<()> {
    use io_uring::{opcode, IoUring};
    let mut ring = IoUring::new(2)?;
    let personality = ring.submitter().register_personality()?;
    let entry = opcode::Nop::new()
        .build()
        .personality(personality)
        .user_data(1);
    // SAFETY: a no-op names no buffer.
    unsafe { complete_one(&mut ring, &entry) }.map(drop)
}

/// Submits one entry, waits for its completion and returns its result (a negative result
/// as the errno it is).
///
/// # Safety
/// Every buffer the entry names must stay valid until this returns.
unsafe fn complete_one(
    ring: &mut io_uring::IoUring,
    entry: &io_uring::squeue::Entry,
) -> std::io::Result<i32> {
    // SAFETY: the caller keeps the entry's buffers alive; we wait for completion below.
    unsafe { ring.submission().push(entry) }
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EBUSY))?;
    ring.submit_and_wait(1)?;
    let cqe = ring
        .completion()
        .next()
        .ok_or_else(|| std::io::Error::from_raw_os_error(libc::EIO))?;
    match cqe.result() {
        res if res < 0 => Err(std::io::Error::from_raw_os_error(-res)),
        res => Ok(res),
    }
}

fn deep_open(base: &str, depth: usize) -> std::io::Result<()> {
    std::env::set_current_dir(base)?;
    for _ in 0..depth {
        std::env::set_current_dir(DEEP_DIR_NAME)?;
    }
    open("f", libc::O_RDONLY).map(drop)
}

/// Name of each level of the deep directory chain (200 bytes).
pub const DEEP_DIR_NAME: &str = "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd";

fn endpoint(s: &str) -> std::io::Result<(SocketAddr, bool)> {
    let bad = || std::io::Error::from_raw_os_error(libc::EINVAL);
    let (addr, proto) = s.rsplit_once('/').ok_or_else(bad)?;
    Ok((addr.parse().map_err(|_| bad())?, proto == "tcp"))
}

fn connect(ep: &str) -> std::io::Result<()> {
    let (addr, tcp) = endpoint(ep)?;
    if tcp {
        TcpStream::connect(addr).map(drop)
    } else {
        let local: SocketAddr = if addr.is_ipv4() {
            "0.0.0.0:0".parse().expect("literal")
        } else {
            "[::]:0".parse().expect("literal")
        };
        UdpSocket::bind(local)?.connect(addr)
    }
}

fn send(ep: &str) -> std::io::Result<()> {
    let (addr, _) = endpoint(ep)?;
    let local: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    UdpSocket::bind(local)?.send_to(b"rampart", addr).map(drop)
}

/// Runs one op; `None` for an unknown op or bad arguments.
/// Iterations of one measurement, per operation (exec is far slower under TCG).
pub fn iterations(op: &str) -> usize {
    match op {
        "exec" => 60,
        _ => 2_000,
    }
}

/// `utimensat(path, {1 s, 1 s})`: a timestamp change by path, no open.
fn utimes_path(target: &str) -> std::io::Result<()> {
    let path = CString::new(target).map_err(std::io::Error::other)?;
    let t = libc::timespec {
        tv_sec: 1,
        tv_nsec: 0,
    };
    // SAFETY: `path` is a NUL-terminated string and `times` two valid timespecs, both alive
    // for the call.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, path.as_ptr(), [t, t].as_ptr(), 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// `socket(AF_INET, SOCK_DGRAM, 0)` and its close: `socket_create`, nothing bound or sent.
fn udp_socket() -> std::io::Result<()> {
    // SAFETY: socket(2) with integer arguments; the descriptor is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: closes the descriptor just made, used nowhere else.
    unsafe { libc::close(fd) };
    Ok(())
}

/// `ioprio_set` of the real-time class for this process: the kernel checks
/// `capable(CAP_SYS_ADMIN)` first (then `CAP_SYS_NICE`), once per call.
fn ioprio_realtime() -> std::io::Result<()> {
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    const IOPRIO_CLASS_RT: libc::c_long = 1;
    let prio = (IOPRIO_CLASS_RT << 13) | 4;
    // SAFETY: ioprio_set(2) with integer arguments only, on this process.
    let rc = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, prio) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The workload side: runs `op` `n` times and prints the sorted latencies' median and p99.
fn measure(op: &str, n: usize, target: &str) -> std::io::Result<()> {
    let mut samples = Vec::with_capacity(n);
    // Warm-up, not recorded: the first calls after an attach pay for QEMU translating the
    // new code (and for cold caches), which is not the hook's steady cost.
    for i in 0..n + n / 10 {
        let record = i >= n / 10;
        let t = Instant::now();
        match op {
            "open" => drop(std::fs::File::open(target)?),
            "connect" => drop(std::net::TcpStream::connect(target)?),
            // File actions (issue 16): a create and its unlink, a rename and back, a chmod.
            "create-unlink" => {
                drop(std::fs::File::create(target)?);
                std::fs::remove_file(target)?;
            }
            "rename" => {
                let other = format!("{target}.2");
                std::fs::rename(target, &other)?;
                std::fs::rename(&other, target)?;
            }
            "chmod" => {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(target, std::fs::Permissions::from_mode(0o644))?;
            }
            // `inode_setattr`: the mount search and one walk per mount of the file.
            "utimes" => utimes_path(target)?,
            // `socket_create` (and the release), with nothing sent.
            "socket" => udp_socket()?,
            "capable" => ioprio_realtime()?,
            "exec" => {
                let out = Command::new(target).arg("probe").output()?;
                if !out.status.success() {
                    return Err(std::io::Error::other("the exec'd program failed"));
                }
            }
            _ => return Err(std::io::Error::other("unknown op")),
        }
        if record {
            samples.push(t.elapsed().as_nanos() as u64);
        }
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    println!("bench-result median_ns={} p99_ns={}", at(0.5), at(0.99));
    Ok(())
}

/// Sends one control request (`{"op": OP}`) to the daemon's socket: ok when it was
/// served, EPERM when the daemon refused the caller, EIO for any other answer.
fn control(socket: &str, op: &str) -> std::io::Result<()> {
    use std::io::{BufRead, BufReader};
    let mut stream = std::os::unix::net::UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    writeln!(stream, "{{\"op\":\"{op}\"}}")?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer)?;
    eprintln!("control answer: {}", answer.trim_end());
    if answer.contains("\"result\":\"error\"") {
        if answer.contains("refused from governed cgroups") {
            return Err(std::io::Error::from_raw_os_error(libc::EPERM));
        }
        return Err(std::io::Error::from_raw_os_error(libc::EIO));
    }
    Ok(())
}

/// The workload side of the event-path test: opens `target` at `rate` per second for `secs`
/// seconds (paced in batches of 1 ms), printing how many it made.
fn rate_open(target: &str, rate: u64, secs: u64) -> std::io::Result<()> {
    let start = Instant::now();
    let mut done = 0u64;
    while start.elapsed() < Duration::from_secs(secs) {
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        while done < due {
            drop(std::fs::File::open(target)?);
            done += 1;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    println!("bench-result opens={done}");
    Ok(())
}

/// One file-tree or attribute call on C strings; the result as an I/O result.
fn path_call(rc: i32) -> std::io::Result<()> {
    check(rc as i64).map(drop)
}

/// The extended attribute the xattr ops set and remove (tmpfs has `trusted.*` on every
/// supported kernel, `user.*` only from 6.6).
const XATTR_NAME: &std::ffi::CStr = c"trusted.rampart";
/// The access ACL's attribute name.
const ACL_NAME: &std::ffi::CStr = c"system.posix_acl_access";
/// An access ACL with a named user (so that it is stored, not folded into the mode): the
/// kernel's `posix_acl_xattr` form, version 2, then (tag, perm, id) entries in tag order:
/// owner rw, user 1000 r, group r, mask r, other r.
const ACL_VALUE: [u8; 44] = {
    let entries: [(u16, u16, u32); 5] = [
        (0x01, 6, u32::MAX),
        (0x02, 4, 1000),
        (0x04, 4, u32::MAX),
        (0x10, 4, u32::MAX),
        (0x20, 4, u32::MAX),
    ];
    let mut out = [0u8; 44];
    let version = 2u32.to_le_bytes();
    let mut i = 0;
    while i < 4 {
        out[i] = version[i];
        i += 1;
    }
    let mut e = 0;
    while e < entries.len() {
        let (tag, perm, id) = entries[e];
        let at = 4 + e * 8;
        let (tag, perm, id) = (tag.to_le_bytes(), perm.to_le_bytes(), id.to_le_bytes());
        out[at] = tag[0];
        out[at + 1] = tag[1];
        out[at + 2] = perm[0];
        out[at + 3] = perm[1];
        let mut k = 0;
        while k < 4 {
            out[at + 4 + k] = id[k];
            k += 1;
        }
        e += 1;
    }
    out
};

/// The file actions of issue 16: each is one system call on the given paths.
fn file_action(op: &str, a: &str, b: Option<&str>) -> Option<std::io::Result<()>> {
    let pa = match cstr(a) {
        Ok(p) => p,
        Err(e) => return Some(Err(e)),
    };
    let pb = match b.map(cstr).transpose() {
        Ok(p) => p,
        Err(e) => return Some(Err(e)),
    };
    let pb_ptr = pb.as_ref().map_or(std::ptr::null(), |p| p.as_ptr());
    // SAFETY: every pointer is a valid NUL-terminated C string alive for the call (or null
    // where the call takes none); the calls only read them.
    let rc = unsafe {
        match (op, b) {
            ("create", None) => {
                let fd = libc::open(
                    pa.as_ptr(),
                    // Read-only: the open itself needs only `read`, so this judges creating.
                    libc::O_CREAT | libc::O_EXCL | libc::O_RDONLY | libc::O_CLOEXEC,
                    0o644,
                );
                if fd >= 0 {
                    libc::close(fd);
                }
                fd.min(0)
            }
            ("mkdir", None) => libc::mkdir(pa.as_ptr(), 0o755),
            ("mkfifo", None) => libc::mkfifo(pa.as_ptr(), 0o644),
            // /dev/null's numbers, and the first SCSI disk's.
            ("mknod-char", None) => {
                libc::mknod(pa.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(1, 3))
            }
            ("mknod-block", None) => {
                libc::mknod(pa.as_ptr(), libc::S_IFBLK | 0o600, libc::makedev(8, 0))
            }
            ("symlink", Some(_)) => libc::symlink(pa.as_ptr(), pb_ptr),
            ("unlink", None) => libc::unlink(pa.as_ptr()),
            ("rmdir", None) => libc::rmdir(pa.as_ptr()),
            ("link", Some(_)) => libc::link(pa.as_ptr(), pb_ptr),
            ("rename", Some(_)) => libc::rename(pa.as_ptr(), pb_ptr),
            ("exchange", Some(_)) => libc::syscall(
                libc::SYS_renameat2,
                libc::AT_FDCWD,
                pa.as_ptr(),
                libc::AT_FDCWD,
                pb_ptr,
                libc::RENAME_EXCHANGE,
            ) as i32,
            ("truncate", None) => libc::truncate(pa.as_ptr(), 1),
            ("ftruncate", None) => {
                let fd = libc::open(pa.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    fd
                } else {
                    let rc = libc::ftruncate(fd, 1);
                    libc::close(fd);
                    rc
                }
            }
            ("open-trunc", None) => {
                let fd = libc::open(
                    pa.as_ptr(),
                    libc::O_WRONLY | libc::O_TRUNC | libc::O_CLOEXEC,
                );
                if fd >= 0 {
                    libc::close(fd);
                }
                fd.min(0)
            }
            ("chmod", None) => libc::chmod(pa.as_ptr(), 0o600),
            ("chown", None) => libc::chown(pa.as_ptr(), 0, 0),
            ("utimes", None) => {
                let t = libc::timespec {
                    tv_sec: 1,
                    tv_nsec: 0,
                };
                libc::utimensat(libc::AT_FDCWD, pa.as_ptr(), [t, t].as_ptr(), 0)
            }
            // Both times "now": the kernel's ATTR_TOUCH form.
            ("utimes-now", None) => {
                libc::utimensat(libc::AT_FDCWD, pa.as_ptr(), std::ptr::null(), 0)
            }
            ("setxattr", None) => {
                libc::setxattr(pa.as_ptr(), XATTR_NAME.as_ptr(), b"1".as_ptr().cast(), 1, 0)
            }
            ("removexattr", None) => libc::removexattr(pa.as_ptr(), XATTR_NAME.as_ptr()),
            ("setacl", None) => libc::setxattr(
                pa.as_ptr(),
                ACL_NAME.as_ptr(),
                ACL_VALUE.as_ptr().cast(),
                ACL_VALUE.len(),
                0,
            ),
            ("removeacl", None) => libc::removexattr(pa.as_ptr(), ACL_NAME.as_ptr()),
            _ => return None,
        }
    };
    Some(path_call(rc))
}

pub fn run(args: &[String]) -> Option<ExitCode> {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    if let [op, x] = a.as_slice() {
        if let Some(result) = file_action(op, x, None) {
            return Some(report(result));
        }
    }
    if let [op, x, y] = a.as_slice() {
        if let Some(result) = file_action(op, x, Some(y)) {
            return Some(report(result));
        }
    }
    Some(report(match a.as_slice() {
        ["open", path, access] => open(path, open_flags(access)?).map(drop),
        ["uring-open", path] => uring_open(path),
        ["uring-personality"] => uring_personality(),
        ["exec-fd", path] => exec_via_proc_fd(path),
        ["exec", path] => exec_fd_path(path),
        ["memfd-exec", src] => memfd_exec(src),
        ["map-exec", path] => map_exec(path),
        ["mprotect-exec", path] => mprotect_exec(path),
        ["deep-open", base, depth] => deep_open(base, depth.parse().ok()?),
        ["connect", ep] => connect(ep),
        ["control", socket, op] => control(socket, op),
        ["send", ep] => send(ep),
        ["swap-loop", a, b, stop] => swap_loop(a, b, stop),
        ["open-loop", path, n] => open_loop(path, n.parse().ok()?),
        ["bench", op, n, target] => measure(op, n.parse().ok()?, target),
        ["rate-open", target, rate, secs] => {
            rate_open(target, rate.parse().ok()?, secs.parse().ok()?)
        }
        _ => return None,
    }))
}
