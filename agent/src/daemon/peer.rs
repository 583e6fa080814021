//! Who is on the other end of the control socket, and whether the daemon may obey it.
//!
//! Invariant: a request is served only for a peer whose uid is 0 and whose cgroup is neither
//! governed nor below a governed one. Root inside a governed cgroup is the workload Rampart
//! contains: it must not push a bundle, read the status or release enforcement. The peer's
//! cgroup is read from `/proc/PID/cgroup` and counts only if the process the kernel tied to
//! the connection (a pidfd: `SO_PEERPIDFD` from 6.5, else `pidfd_open` of the connecting
//! pid) is still alive after the read, so the pid cannot have been reused by another
//! process meanwhile. Anything that cannot be established refuses.

use std::os::fd::AsFd;

use anyhow::{bail, Context, Result};
use tokio::net::UnixStream;

use crate::kernel::{cgroup::within, sys};

/// A connected client, as the kernel knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Its pid (in the daemon's pid namespace).
    pub pid: i32,
    /// Its uid.
    pub uid: u32,
    /// Its cgroup v2 path (`/a/b`, as in `/proc/PID/cgroup`).
    pub cgroup: String,
    /// Whether it has a controlling terminal (a person at the host, for `release`).
    pub tty: bool,
}

/// Whether the text of `/proc/PID/stat` names a controlling terminal (field 7, `tty_nr`,
/// counted after the command name, which may itself hold spaces and parentheses).
pub fn has_tty(stat: &str) -> bool {
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(4))
        .and_then(|t| t.parse::<i64>().ok())
        .is_some_and(|t| t != 0)
}

/// The cgroup v2 path in the text of `/proc/PID/cgroup` (its `0::` line).
pub fn cgroup_v2_line(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim_end().to_owned())
        .filter(|p| p.starts_with('/'))
}

/// Identifies the peer of `stream` (see the module invariant for the pid-reuse guard).
pub fn identify(stream: &UnixStream) -> Result<Peer> {
    let cred = stream
        .peer_cred()
        .context("reading the peer's credentials")?;
    let pid = cred
        .pid()
        .filter(|p| *p > 0)
        .context("the kernel gave no pid for the peer (a peer in another pid namespace?)")?;
    let pidfd = match sys::peer_pidfd(stream.as_fd()) {
        Ok(fd) => fd,
        // Before 6.5: the pid as of connect, pinned now. A peer that exited and whose pid
        // was reused before this line is the residual race (documented).
        Err(_) => sys::pidfd_open(pid).context("the peer is gone (pidfd_open)")?,
    };
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .with_context(|| format!("reading /proc/{pid}/cgroup of the peer"))?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat of the peer"))?;
    if !sys::pidfd_alive(pidfd.as_fd()).context("checking the peer is still alive")? {
        bail!("the peer exited while it was identified");
    }
    let cgroup = cgroup_v2_line(&text)
        .with_context(|| format!("the peer (pid {pid}) has no cgroup v2 membership"))?;
    Ok(Peer {
        pid,
        uid: cred.uid(),
        cgroup,
        tty: has_tty(&stat),
    })
}

/// Refuses a peer that is not root, or that is inside (or below) any of `guarded`.
pub fn admit(peer: &Peer, guarded: &[String]) -> Result<()> {
    if peer.uid != 0 {
        bail!("control requests are for root only (peer uid {})", peer.uid);
    }
    if within(&peer.cgroup, guarded) {
        bail!(
            "control requests are refused from governed cgroups (peer pid {} is in {}); run \
             the command from the host, outside every governed cgroup",
            peer.pid,
            peer.cgroup
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, cgroup: &str) -> Peer {
        Peer {
            pid: 42,
            uid,
            cgroup: cgroup.into(),
            tty: false,
        }
    }

    #[test]
    fn the_controlling_terminal_is_read_after_the_command_name() {
        let with = "1234 (sh) S 1 1234 1234 34816 1234 4194304 0";
        let without = "1234 (odd ) name) S 1 1234 1234 0 -1 4194304 0";
        assert!(has_tty(with));
        assert!(!has_tty(without));
        assert!(!has_tty("garbage"));
    }

    #[test]
    fn the_v2_line_is_found_on_unified_and_hybrid_hosts() {
        assert_eq!(cgroup_v2_line("0::/a/b\n").as_deref(), Some("/a/b"));
        let hybrid = "12:cpu,cpuacct:/x\n1:name=systemd:/x\n0::/system.slice/ssh.service\n";
        assert_eq!(
            cgroup_v2_line(hybrid).as_deref(),
            Some("/system.slice/ssh.service")
        );
        assert_eq!(cgroup_v2_line("3:memory:/x\n"), None);
        assert_eq!(cgroup_v2_line(""), None);
    }

    #[test]
    fn root_outside_governed_cgroups_is_admitted() {
        let guarded = ["/rampart-governed".to_string(), "/batch.slice".into()];
        assert!(admit(&peer(0, "/user.slice/session-1.scope"), &guarded).is_ok());
        assert!(admit(&peer(0, "/"), &guarded).is_ok());
        // A sibling whose name merely starts the same is not below it.
        assert!(admit(&peer(0, "/rampart-governed2"), &guarded).is_ok());
    }

    #[test]
    fn root_inside_or_below_a_governed_cgroup_is_refused() {
        let guarded = ["/rampart-governed".to_string()];
        for cg in ["/rampart-governed", "/rampart-governed/job/step"] {
            let e = admit(&peer(0, cg), &guarded).unwrap_err().to_string();
            assert!(e.contains("refused from governed cgroups"), "{cg}: {e}");
        }
    }

    #[test]
    fn a_peer_that_is_not_root_is_refused() {
        let e = admit(&peer(1000, "/user.slice"), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("root only"), "{e}");
    }
}
