//! Serving ops a contained workload tries (issue 17): `bind` of TCP and UDP sockets and
//! `listen` on TCP ones, over IPv4 and IPv6, made with the raw calls so that each step is
//! its own system call (std's `TcpListener::bind` does both). Each reports the errno of
//! the step that failed, or ok.

use std::{
    io::{Error, Result},
    net::SocketAddr,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use crate::sys::check;

fn einval() -> Error {
    Error::from_raw_os_error(libc::EINVAL)
}

/// `ADDR:PORT/tcp|udp`.
fn endpoint(s: &str) -> Result<(SocketAddr, bool)> {
    let (addr, proto) = s.rsplit_once('/').ok_or_else(einval)?;
    let tcp = match proto {
        "tcp" => true,
        "udp" => false,
        _ => return Err(einval()),
    };
    Ok((addr.parse().map_err(|_| einval())?, tcp))
}

fn socket(v6: bool, tcp: bool) -> Result<OwnedFd> {
    let family = if v6 { libc::AF_INET6 } else { libc::AF_INET };
    let kind = if tcp {
        libc::SOCK_STREAM
    } else {
        libc::SOCK_DGRAM
    };
    // SAFETY: socket(2) with constants only.
    let fd = check(unsafe { libc::socket(family, kind | libc::SOCK_CLOEXEC, 0) } as i64)?;
    // SAFETY: a descriptor socket(2) just returned, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn bind(fd: &OwnedFd, addr: &SocketAddr) -> Result<()> {
    // SAFETY: sockaddr_storage is plain data; zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in and suitably aligned.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in6 and suitably aligned.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    // SAFETY: bind(2) on an owned socket with an address of `len` bytes in `storage`.
    check(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&storage as *const libc::sockaddr_storage).cast(),
            len as libc::socklen_t,
        )
    } as i64)
    .map(drop)
}

fn listen(fd: &OwnedFd) -> Result<()> {
    // SAFETY: listen(2) on an owned socket.
    check(unsafe { libc::listen(fd.as_raw_fd(), 8) } as i64).map(drop)
}

/// `bind` alone.
fn bind_only(ep: &str) -> Result<()> {
    let (addr, tcp) = endpoint(ep)?;
    bind(&socket(addr.is_ipv6(), tcp)?, &addr)
}

/// `bind` then `listen`.
fn bind_listen(ep: &str) -> Result<()> {
    let (addr, tcp) = endpoint(ep)?;
    let fd = socket(addr.is_ipv6(), tcp)?;
    bind(&fd, &addr)?;
    listen(&fd)
}

/// `listen` on a TCP socket never bound: the kernel binds it to an ephemeral port.
fn listen_unbound(family: &str) -> Result<()> {
    let v6 = match family {
        "inet" => false,
        "inet6" => true,
        _ => return Err(einval()),
    };
    listen(&socket(v6, true)?)
}

/// The op named by `args`, if it is one of these.
pub fn run(args: &[&str]) -> Option<Result<()>> {
    Some(match args {
        ["bind", ep] => bind_only(ep),
        ["bind-listen", ep] => bind_listen(ep),
        ["listen-unbound", family] => listen_unbound(family),
        _ => return None,
    })
}
