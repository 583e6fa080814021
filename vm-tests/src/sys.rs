//! What every op shares: the one-line result it prints and the checks around a raw
//! system call. A leaf module: `ops` and `scope_ops` both build on it.

use std::{
    ffi::CString,
    os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
    process::ExitCode,
};

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
pub fn bpf_obj_get(path: &str) -> std::io::Result<OwnedFd> {
    const BPF_OBJ_GET: libc::c_long = 7;
    let p = cstr(path)?;
    // union bpf_attr for BPF_OBJ_GET: u64 pathname, u32 bpf_fd, u32 file_flags, ...
    bpf_fd(BPF_OBJ_GET, &[p.as_ptr() as u64])
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

/// A message of one byte (`iov`) with room for one descriptor in `control` (one
/// cmsghdr and 4 data bytes: CMSG_SPACE(4) is 24 on 64-bit Linux). The message points
/// into both; they must outlive its use.
fn one_byte_message(iov: &mut libc::iovec, control: &mut [u64; 4]) -> libc::msghdr {
    // SAFETY: msghdr is plain data; zero is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(control) as _;
    msg
}

/// Sends one byte with `fd` attached (`SCM_RIGHTS`) over the unix socket `sock`.
pub fn send_fd(sock: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> std::io::Result<()> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut control = [0u64; 4];
    let mut msg = one_byte_message(&mut iov, &mut control);
    // SAFETY: CMSG_SPACE only computes a size.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(4) } as _;
    // SAFETY: the control buffer is msg_controllen bytes long and 8-byte aligned, so the
    // first header and its 4 data bytes fit; the pointers stay inside it.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(4) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>(), fd.as_raw_fd());
    }
    // SAFETY: sendmsg(2) on a descriptor we borrow, with the message built above.
    check(unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, 0) } as i64).map(drop)
}

/// Receives one byte and the descriptor sent with it. `Ok(None)`: the byte came without
/// one, or the kernel dropped it (`MSG_CTRUNC`: what a denied `file_receive` does); an
/// error if nothing came at all (the sender failed), so that is never taken for a denial.
pub fn recv_fd(sock: BorrowedFd<'_>) -> std::io::Result<Option<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut control = [0u64; 4];
    let mut msg = one_byte_message(&mut iov, &mut control);
    // SAFETY: recvmsg(2) into the buffers above, which outlive the call.
    let got =
        check(unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) } as i64)?;
    if got == 0 {
        return Err(std::io::Error::from_raw_os_error(libc::ECONNRESET));
    }
    // SAFETY: the kernel filled msg_control up to msg_controllen; CMSG_FIRSTHDR checks
    // that a header fits before returning it.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null()
            || (*cmsg).cmsg_level != libc::SOL_SOCKET
            || (*cmsg).cmsg_type != libc::SCM_RIGHTS
        {
            return Ok(None);
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>());
        Ok(Some(OwnedFd::from_raw_fd(fd)))
    }
}

/// `bpf()` with a zeroed `union bpf_attr` whose first words are `fields`: the new
/// descriptor the command returns.
fn bpf_fd(cmd: libc::c_long, fields: &[u64]) -> std::io::Result<OwnedFd> {
    let mut attr = [0u64; 16];
    attr[..fields.len()].copy_from_slice(fields);
    // SAFETY: a bpf_attr-sized buffer; any pointer in `fields` is the caller's, live
    // across the call.
    let fd = check(unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            std::mem::size_of_val(&attr),
        )
    })?;
    // SAFETY: a descriptor the kernel just returned, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `BPF_MAP_CREATE` of an array map of one 8-byte entry.
pub fn bpf_map_create() -> std::io::Result<OwnedFd> {
    const BPF_MAP_CREATE: libc::c_long = 0;
    const BPF_MAP_TYPE_ARRAY: u64 = 2;
    // map_type, key_size (u32 pairs packed little-endian), value_size, max_entries.
    bpf_fd(BPF_MAP_CREATE, &[BPF_MAP_TYPE_ARRAY | 4 << 32, 8 | 1 << 32])
}

/// `BPF_PROG_LOAD` of `r0 = 0; exit` as a program of type `prog_type`.
pub fn bpf_prog_load(prog_type: u32) -> std::io::Result<OwnedFd> {
    const BPF_PROG_LOAD: libc::c_long = 5;
    // mov64 r0, 0; exit
    let insns: [u64; 2] = [0xb7, 0x95];
    let license = c"GPL";
    // prog_type, insn_cnt | insns | license
    bpf_fd(
        BPF_PROG_LOAD,
        &[
            u64::from(prog_type) | 2 << 32,
            insns.as_ptr() as u64,
            license.as_ptr() as u64,
        ],
    )
}

/// `BPF_MAP_GET_FD_BY_ID` of the map with id `id`.
pub fn bpf_map_by_id(id: u32) -> std::io::Result<OwnedFd> {
    const BPF_MAP_GET_FD_BY_ID: libc::c_long = 14;
    bpf_fd(BPF_MAP_GET_FD_BY_ID, &[u64::from(id)])
}

/// The id of the map open as `map` (`BPF_OBJ_GET_INFO_BY_FD`: `struct bpf_map_info`
/// starts with its type, then its id).
pub fn bpf_map_id(map: BorrowedFd<'_>) -> std::io::Result<u32> {
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    let mut info = [0u32; 32];
    let mut attr = [0u64; 16];
    // bpf_fd, info_len | info
    attr[0] = map.as_raw_fd() as u64 | (std::mem::size_of_val(&info) as u64) << 32;
    attr[1] = info.as_mut_ptr() as u64;
    // SAFETY: a bpf_attr-sized buffer pointing at `info`, which outlives the call.
    check(unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            attr.as_mut_ptr(),
            std::mem::size_of_val(&attr),
        )
    })?;
    Ok(info[1])
}
