//! The agent's watch over its own enforcement while it runs: a pin removed (a link's or a
//! map's) is pinned again from the descriptors the agent holds, and a network program
//! detached from the cgroup v2 root (`BPF_LINK_DETACH` works on cgroup links; LSM and
//! tracepoint links cannot be detached, only closed) is attached again. Governed tasks
//! can do neither (`bpf()` and the pin directory are denied to them); this catches root
//! outside every governed cgroup, or a bug, and says so.

use std::{os::fd::AsFd, path::Path};

use anyhow::{anyhow, Context, Result};
use aya::{
    programs::{
        links::{CgroupAttachMode, FdLink},
        CgroupSockAddr,
    },
    Ebpf,
};
use rampart_common::{programs, PINNED_MAPS};

use super::{pins::Pins, sys};

/// What the watch found, and whether it put it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tamper {
    /// `pin-removed` or `link-detached` (the lineage record's `what`).
    pub what: &'static str,
    /// The pin's path, or `PROGRAM on CGROUP`.
    pub object: String,
    /// Why it could not be put back (`None`: repaired).
    pub error: Option<String>,
}

/// The `bpf_attach_type` of each cgroup sock_addr program.
fn attach_type(program: &str) -> Option<u32> {
    match program {
        programs::CONNECT4 => Some(10),
        programs::CONNECT6 => Some(11),
        programs::SENDMSG4 => Some(14),
        programs::SENDMSG6 => Some(15),
        _ => None,
    }
}

/// Checks every pin and root attachment of the programs in `ebpf`, repairing what it can;
/// returns what it found (empty when all is in place). `network_root`: the cgroup v2 root
/// the network programs are attached at, if they are.
pub fn check(
    ebpf: &mut Ebpf,
    mut pins: Option<&mut Pins>,
    network_root: Option<&Path>,
) -> Vec<Tamper> {
    let mut found = match network_root {
        Some(root) => reattach_detached(ebpf, pins.as_deref_mut(), root),
        None => Vec::new(),
    };
    let Some(pins) = pins else {
        return found;
    };
    for (path, error) in pins.repin_missing_links() {
        found.push(Tamper {
            what: "pin-removed",
            object: path.display().to_string(),
            error,
        });
    }
    for name in PINNED_MAPS {
        let path = pins.maps.join(name);
        if path.symlink_metadata().is_ok() {
            continue;
        }
        // The event ring is held by the daemon, not the object: its pin is not kept.
        let Some(map) = ebpf.map(name) else {
            continue;
        };
        let error = std::fs::create_dir_all(&pins.maps)
            .map_err(anyhow::Error::from)
            .and_then(|()| map.pin(&path).map_err(anyhow::Error::from))
            .err()
            .map(|e| format!("{e:#}"));
        found.push(Tamper {
            what: "pin-removed",
            object: path.display().to_string(),
            error,
        });
    }
    found
}

/// The network programs attached at the cgroup v2 root `root` that are no longer there,
/// each attached (and pinned) again.
fn reattach_detached(ebpf: &mut Ebpf, mut pins: Option<&mut Pins>, root: &Path) -> Vec<Tamper> {
    let mut found = Vec::new();
    let dir = match std::fs::File::open(root) {
        Ok(dir) => dir,
        Err(e) => {
            tracing::warn!(error = %e, cgroup = %root.display(), "cannot check the network programs' attachment");
            return found;
        }
    };
    for name in programs::SOCK_ADDR {
        let Some(kind) = attach_type(name) else {
            continue;
        };
        let id = match ebpf.program(name).map(|p| p.info()) {
            Some(Ok(info)) => info.id(),
            _ => continue,
        };
        match sys::cgroup_prog_ids(dir.as_fd(), kind) {
            Ok(ids) if ids.contains(&id) => continue,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, program = name, "BPF_PROG_QUERY failed");
                continue;
            }
        }
        let tag = "root";
        if let Some(p) = pins.as_deref_mut() {
            p.drop_link(&format!("{name}-{tag}"));
        }
        let error = attach_one(ebpf, pins.as_deref_mut(), &dir, root, name, tag)
            .err()
            .map(|e| format!("{e:#}"));
        found.push(Tamper {
            what: "link-detached",
            object: format!("{name} on {}", root.display()),
            error,
        });
    }
    found
}

/// Attaches the sock_addr program `name` of `ebpf` to the cgroup open as `dir` (at `path`),
/// pinning its link as `NAME-TAG` when pinned.
pub fn attach_one(
    ebpf: &mut Ebpf,
    pins: Option<&mut Pins>,
    dir: &std::fs::File,
    path: &Path,
    name: &str,
    tag: &str,
) -> Result<()> {
    let prog: &mut CgroupSockAddr = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("program {name} missing from the object"))?
        .try_into()?;
    let link = prog
        .attach(dir, CgroupAttachMode::Single)
        .with_context(|| format!("attaching {name} to cgroup {}", path.display()))?;
    if let Some(p) = pins {
        let link = FdLink::try_from(prog.take_link(link)?).with_context(|| {
            format!("{name} on cgroup {} is not a pinnable link", path.display())
        })?;
        p.pin_link(link, &format!("{name}-{tag}"))?;
    }
    Ok(())
}
