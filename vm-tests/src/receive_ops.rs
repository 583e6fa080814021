//! Receiving descriptors, as a contained workload would (issue 17): from the ungoverned
//! descriptor server (`harness::fds`) and from itself. A descriptor the kernel refuses to
//! hand over (`file_receive` denied) is dropped from the message (`MSG_CTRUNC`), and
//! `recvmsg` still succeeds: the op reports that as `EPERM`.

use std::{
    io::{Error, Result, Write},
    os::{
        fd::{AsFd, FromRawFd, OwnedFd},
        unix::net::UnixStream,
    },
};

use crate::{
    harness::fds::FDS_SOCK,
    sys::{check, recv_fd, send_fd},
};

fn dropped() -> Error {
    Error::from_raw_os_error(libc::EPERM)
}

/// Asks the descriptor server for `want` and receives it.
fn recv_from_server(want: &str) -> Result<()> {
    let mut conn = UnixStream::connect(FDS_SOCK)?;
    conn.write_all(want.as_bytes())?;
    recv_fd(conn.as_fd())?.map(drop).ok_or_else(dropped)
}

/// Passes a TCP socket made here to itself over a socket pair.
fn recv_own_socket() -> Result<()> {
    let (a, b) = UnixStream::pair()?;
    // SAFETY: socket(2) with constants only.
    let fd = check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) } as i64)?;
    // SAFETY: the descriptor was just made and is owned by nobody else.
    let tcp = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    send_fd(a.as_fd(), tcp.as_fd())?;
    recv_fd(b.as_fd())?.map(drop).ok_or_else(dropped)
}

/// The op named by `args`, if it is one of these.
pub fn run(args: &[&str]) -> Option<Result<()>> {
    Some(match args {
        ["recv-fd", want] => recv_from_server(want),
        ["recv-own-socket"] => recv_own_socket(),
        _ => return None,
    })
}
