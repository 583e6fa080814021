//! What every op shares: the one-line result it prints and the checks around a raw
//! system call. A leaf module: `ops` and `scope_ops` both build on it.

use std::{ffi::CString, process::ExitCode};

/// Prefix of an op's one-line result.
pub const OP: &str = "rampart-op: ";

/// Prints an op's result: `rampart-op: ok` or `rampart-op: errno=N`.
pub fn report(result: std::io::Result<()>) -> ExitCode {
    match result {
        Ok(()) => println!("{OP}ok"),
        Err(e) => println!("{OP}errno={}", e.raw_os_error().unwrap_or(-1)),
    }
    ExitCode::SUCCESS
}

/// A C string of an argument; an interior NUL is EINVAL, as the kernel would say.
pub fn cstr(s: &str) -> std::io::Result<CString> {
    CString::new(s).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
}

/// A raw system call's return value: negative means the errno in `errno`.
pub fn check(rc: i64) -> std::io::Result<i64> {
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// `bpf(BPF_OBJ_GET)` of a pinned object: a descriptor of it.
pub fn bpf_obj_get(path: &str) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    const BPF_OBJ_GET: libc::c_long = 7;
    let p = cstr(path)?;
    // union bpf_attr for BPF_OBJ_GET: u64 pathname, u32 bpf_fd, u32 file_flags, ...
    let mut attr = [0u64; 16];
    attr[0] = p.as_ptr() as u64;
    // SAFETY: `attr` is a zeroed bpf_attr-sized buffer holding a pointer to a live C string.
    let fd = check(unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET,
            attr.as_mut_ptr(),
            std::mem::size_of_val(&attr),
        )
    })?;
    // SAFETY: the kernel returned a fresh descriptor; owning it closes it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// `bpf(BPF_LINK_DETACH)`: detaches the link open as `link` from its target (cgroup links
/// can be; the link object lives on, attached to nothing).
pub fn bpf_link_detach(link: std::os::fd::BorrowedFd<'_>) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    const BPF_LINK_DETACH: libc::c_long = 34;
    let mut attr = [0u64; 16];
    attr[0] = link.as_raw_fd() as u64;
    // SAFETY: a zeroed bpf_attr-sized buffer holding the link's descriptor number.
    check(unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_DETACH,
            attr.as_mut_ptr(),
            std::mem::size_of_val(&attr),
        )
    })?;
    Ok(())
}
