//! AF_UNIX peers outside every governed cgroup, as host daemons are: stream listeners
//! that accept and drop, datagram sockets that drain what arrives (a datagram queue holds
//! ten before senders block). They live as long as the runner, in threads of its own.

use std::{
    os::{
        linux::net::SocketAddrExt,
        unix::net::{SocketAddr, UnixDatagram, UnixListener},
    },
    path::Path,
};

use anyhow::{Context, Result};

/// The directory of the named peers; the test policy grants `read, write` on it and
/// `connect` only on [`STREAM_OK`] and [`DGRAM_OK`].
pub const UNIX_DIR: &str = "/tmp/rampart-unix";
pub const STREAM_OK: &str = "/tmp/rampart-unix/ok.sock";
pub const STREAM_NO: &str = "/tmp/rampart-unix/no.sock";
pub const DGRAM_OK: &str = "/tmp/rampart-unix/dgram-ok.sock";
pub const DGRAM_NO: &str = "/tmp/rampart-unix/dgram-no.sock";
/// Abstract peers, written as events and `explain` write them.
pub const STREAM_ABSTRACT: &str = "@rampart-host-stream";
pub const DGRAM_ABSTRACT: &str = "@rampart-host-dgram";

/// The address of a peer written as a path or `@NAME`.
pub fn address(peer: &str) -> std::io::Result<SocketAddr> {
    match peer.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(peer),
    }
}

/// The address of a peer to bind: a socket file left by an earlier run is removed.
fn fresh_address(peer: &str) -> Result<SocketAddr> {
    if !peer.starts_with('@') && Path::new(peer).exists() {
        std::fs::remove_file(peer)?;
    }
    Ok(address(peer)?)
}

/// Binds every peer and serves it from a thread of its own.
pub fn serve() -> Result<()> {
    std::fs::create_dir_all(UNIX_DIR)?;
    for peer in [STREAM_OK, STREAM_NO, STREAM_ABSTRACT] {
        let listener = UnixListener::bind_addr(&fresh_address(peer)?)
            .with_context(|| format!("binding the unix peer {peer}"))?;
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                drop(conn);
            }
        });
    }
    for peer in [DGRAM_OK, DGRAM_NO, DGRAM_ABSTRACT] {
        let socket = UnixDatagram::bind_addr(&fresh_address(peer)?)
            .with_context(|| format!("binding the unix peer {peer}"))?;
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            while socket.recv(&mut buf).is_ok() {}
        });
    }
    Ok(())
}
