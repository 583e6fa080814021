//! A host process that hands out descriptors (issue 17): a unix stream listener outside
//! every governed cgroup, as a daemon that passes descriptors to its clients is. A client
//! writes what it wants (`file-ro:PATH`, `file-rw:PATH`, `raw`, `tcp`, `pipe`, `memfd`,
//! `eventfd`, `bpf-map`, `inotify`, `nsfs`); the server makes or opens it as ungoverned
//! root and sends it with `SCM_RIGHTS`. It lives as long as the runner, in a thread.

use std::{
    io::Read,
    os::{
        fd::{AsFd, FromRawFd, OwnedFd},
        unix::net::{UnixListener, UnixStream},
    },
    path::Path,
};

use anyhow::{Context, Result};

use crate::sys::{check, send_fd};

/// Where the server listens; the test policy grants `connect` on it.
pub const FDS_SOCK: &str = "/tmp/rampart-unix/fds.sock";

fn owned(rc: i64) -> std::io::Result<OwnedFd> {
    let fd = check(rc)?;
    // SAFETY: a descriptor the kernel just returned, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Makes or opens what `want` names.
fn make(want: &str) -> std::io::Result<OwnedFd> {
    if let Some(path) = want.strip_prefix("file-ro:") {
        return Ok(std::fs::File::open(path)?.into());
    }
    if let Some(path) = want.strip_prefix("file-rw:") {
        return Ok(std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?
            .into());
    }
    match want {
        "raw" => {
            // SAFETY: socket(2) with constants only.
            owned(unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) } as i64)
        }
        // SAFETY: socket(2) with constants only.
        "tcp" => owned(unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) } as i64),
        "pipe" => {
            let mut fds = [0i32; 2];
            // SAFETY: pipe(2) into a local array of two.
            check(unsafe { libc::pipe(fds.as_mut_ptr()) } as i64)?;
            // SAFETY: both ends were just made; the write end is closed here.
            unsafe { libc::close(fds[1]) };
            owned(fds[0] as i64)
        }
        // SAFETY: memfd_create(2) with a static C string.
        "memfd" => owned(unsafe { libc::memfd_create(c"rampart-fd".as_ptr(), 0) } as i64),
        // SAFETY: eventfd(2) with constants only.
        "eventfd" => owned(unsafe { libc::eventfd(0, 0) } as i64),
        "bpf-map" => crate::sys::bpf_map_create(),
        // SAFETY: inotify_init1(2) with constants only.
        "inotify" => owned(unsafe { libc::inotify_init1(0) } as i64),
        "nsfs" => Ok(std::fs::File::open("/proc/self/ns/mnt")?.into()),
        _ => Err(std::io::Error::from_raw_os_error(libc::EINVAL)),
    }
}

fn answer(mut conn: UnixStream) {
    let mut buf = [0u8; 256];
    let Ok(n) = conn.read(&mut buf) else {
        return;
    };
    let want = String::from_utf8_lossy(&buf[..n]).trim().to_owned();
    match make(&want) {
        Ok(fd) => {
            if let Err(e) = send_fd(conn.as_fd(), fd.as_fd()) {
                eprintln!("fd server: sending {want}: {e}");
            }
        }
        Err(e) => eprintln!("fd server: making {want}: {e}"),
    }
}

/// Binds [`FDS_SOCK`] and answers each client from a thread of its own.
pub fn serve() -> Result<()> {
    if Path::new(FDS_SOCK).exists() {
        std::fs::remove_file(FDS_SOCK)?;
    }
    let listener = UnixListener::bind(FDS_SOCK).context("binding the descriptor server")?;
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            answer(conn);
        }
    });
    Ok(())
}
