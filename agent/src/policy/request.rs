//! Requests for `explain`: one line each (`exec PATH`, `open PATH read,write`, ...), with
//! paths resolved on this host as the kernel resolves them.

use std::path::Path;

use anyhow::{bail, Context, Result};
use rampart_common::access;

use super::{
    compile::CompiledPolicy,
    explain::{parse_endpoint, system_request, EntryKind, Request, SYSTEM_REQUESTS},
    host::{cgroup_of, resolve_entry, resolve_request, EntryState},
    source::capability_number,
};

/// Parses an open's access list such as `read,write`.
pub fn parse_access(s: &str) -> Result<u32> {
    let mut bits = 0;
    for part in s.split(',') {
        bits |= match part.trim() {
            "read" => access::READ,
            "write" => access::WRITE,
            "exec" => access::EXEC,
            other => bail!("unknown access `{other}`: use read, write, exec (comma-separated)"),
        };
    }
    Ok(bits)
}

/// The right and hook of `create PATH KIND`.
fn create_kind(kind: &str) -> Result<(u32, &'static str)> {
    Ok(match kind {
        "file" | "fifo" | "socket" => (access::CREATE, "path_mknod"),
        "dir" => (access::CREATE, "path_mkdir"),
        "symlink" => (access::CREATE, "path_symlink"),
        "char" => (access::MAKE_CHAR, "path_mknod"),
        "block" => (access::MAKE_BLOCK, "path_mknod"),
        other => {
            bail!("unknown kind `{other}`: use file, dir, symlink, fifo, socket, char or block")
        }
    })
}

fn entry_kind(state: EntryState) -> EntryKind {
    match (state.exists, state.dir) {
        (false, _) => EntryKind::Absent,
        (true, true) => EntryKind::Dir,
        (true, false) => EntryKind::File,
    }
}

fn rename(from: &str, to: &str, exchange: bool) -> Result<Request> {
    let (from, moved) = resolve_entry(Path::new(from))?;
    let (to, target) = resolve_entry(Path::new(to))?;
    if !moved.exists {
        bail!("{from} does not exist on this host");
    }
    Ok(Request::Rename {
        from,
        to,
        exchange,
        moved: entry_kind(moved),
        target: entry_kind(target),
    })
}

/// `bpf COMMAND [PROG-TYPE]`: a command by its event name (`map-create`, `obj-get`, ...)
/// or number; a `prog-load` with the `enum bpf_prog_type` number it loads.
fn parse_bpf(command: &str, rest: &[&str]) -> Result<Request> {
    use rampart_common::system;
    let cmd = system::BPF_COMMAND_NAMES
        .iter()
        .position(|n| *n == command)
        .map(|i| i as u32)
        .or_else(|| command.parse().ok())
        .with_context(|| {
            format!(
                "unknown bpf command `{command}`: use one of {} or a number",
                system::BPF_COMMAND_NAMES.join(", ")
            )
        })?;
    let prog_type = match (cmd == system::BPF_PROG_LOAD, rest) {
        (true, [t]) => t.parse().with_context(|| {
            format!("`{t}`: the program type is a number (1: socket filter, 2: kprobe, ...)")
        })?,
        (true, _) => bail!(
            "`bpf prog-load` needs the program type's number (1: socket filter, 2: kprobe, ...)"
        ),
        (false, []) => 0,
        (false, _) => bail!("only `bpf prog-load` takes a program type"),
    };
    Ok(Request::Bpf { cmd, prog_type })
}

/// Parses one request line: `exec PATH`, `open PATH ACCESS`, `map-exec PATH`,
/// `create PATH KIND`, `remove PATH`, `link FROM TO`, `rename FROM TO`, `exchange FROM TO`,
/// `truncate PATH`, `chmod PATH`, `chown PATH`, `utimes PATH`, `xattr PATH`,
/// `connect ADDR:PORT/PROTO`, `send ADDR:PORT/PROTO`, `bind ADDR:PORT/PROTO`,
/// `listen ADDR:PORT/tcp`, `receive PATH ACCESS`, `bpf COMMAND [PROG-TYPE]`,
/// `socket FAMILY TYPE [PROTOCOL]`,
/// `capability NAME`, or a
/// system action alone (`mount`,
/// `chroot`, ...: [`SYSTEM_REQUESTS`]). Paths are resolved on this host; the entry a create, remove,
/// link or rename acts on is not followed if it is a symlink.
pub fn parse_request(line: &str) -> Result<Request> {
    let words: Vec<&str> = line.split_whitespace().collect();
    Ok(match words.as_slice() {
        ["exec", path] => {
            let (path, identity) = resolve_request(Path::new(path))?;
            Request::Exec { path, identity }
        }
        ["open", path, acc] => {
            let (path, identity) = resolve_request(Path::new(path))?;
            Request::Open {
                cgroup: cgroup_of(&path),
                path,
                access: parse_access(acc)?,
                identity,
            }
        }
        ["receive", path, acc] => {
            let (path, identity) = resolve_request(Path::new(path))?;
            Request::Receive {
                cgroup: cgroup_of(&path),
                path,
                access: parse_access(acc)?,
                identity,
            }
        }
        ["create", path, kind] => {
            let (need, hook) = create_kind(kind)?;
            Request::Create {
                path: resolve_entry(Path::new(path))?.0,
                need,
                hook,
            }
        }
        ["remove", path] => {
            let (path, state) = resolve_entry(Path::new(path))?;
            Request::Remove {
                path,
                dir: state.dir,
            }
        }
        ["link", from, to] => {
            let (from, state) = resolve_entry(Path::new(from))?;
            Request::Link {
                from,
                to: resolve_entry(Path::new(to))?.0,
                identity: state.identity,
                dir: state.dir,
            }
        }
        ["rename", from, to] => rename(from, to, false)?,
        ["exchange", from, to] => rename(from, to, true)?,
        ["truncate", path] => {
            let (path, identity) = resolve_request(Path::new(path))?;
            Request::Truncate { path, identity }
        }
        ["chmod", path] => {
            let (path, identity) = resolve_request(Path::new(path))?;
            Request::Chmod { path, identity }
        }
        ["chown", path] => {
            let (path, identity) = resolve_request(Path::new(path))?;
            Request::Chown { path, identity }
        }
        ["utimes", path] => Request::Utimes {
            path: resolve_request(Path::new(path))?.0,
        },
        ["xattr", path] => {
            let (path, identity) = resolve_request(Path::new(path))?;
            Request::Xattr { path, identity }
        }
        ["map-exec", path] => Request::MapExec {
            path: resolve_request(Path::new(path))?.0,
        },
        ["connect", ep] => {
            let (addr, protocol) = parse_endpoint(ep).map_err(anyhow::Error::msg)?;
            Request::Connect { addr, protocol }
        }
        ["send", ep] => {
            let (addr, protocol) = parse_endpoint(ep).map_err(anyhow::Error::msg)?;
            Request::Send { addr, protocol }
        }
        [verb @ ("bind" | "listen"), ep] => {
            let (addr, protocol) = parse_endpoint(ep).map_err(anyhow::Error::msg)?;
            Request::Serve {
                addr,
                protocol,
                listen: *verb == "listen",
            }
        }
        ["bpf", command, rest @ ..] => parse_bpf(command, rest)?,
        ["unix-connect", peer] => unix(peer, false)?,
        ["unix-send", peer] => unix(peer, true)?,
        ["socket", family, kind, protocol @ ..] => parse_socket(family, kind, protocol)?,
        ["capability", name] => Request::Capability {
            cap: capability_number(name).with_context(|| {
                format!(
                    "unknown capability `{name}`: use one of {}",
                    rampart_common::CAPABILITIES.join(", ")
                )
            })?,
        },
        [word] if system_request(word).is_some() => {
            Request::System(system_request(word).context("a system request")?)
        }
        _ => bail!(
            "`{line}`: expected `exec PATH`, `open PATH read,write`, `map-exec PATH`, \
             `create PATH file|dir|symlink|fifo|socket|char|block`, `remove PATH`, \
             `link FROM TO`, `rename FROM TO`, `exchange FROM TO`, `truncate PATH`, \
             `chmod PATH`, `chown PATH`, `utimes PATH`, `xattr PATH`, \
             `connect ADDR:PORT/tcp`, `send ADDR:PORT/udp`, `bind ADDR:PORT/tcp|udp`, \
             `listen ADDR:PORT/tcp`, `receive PATH read,write`, `bpf COMMAND [PROG-TYPE]`, \
             `socket FAMILY TYPE [PROTOCOL]`, \
             `unix-connect PATH|@NAME`, `unix-send PATH|@NAME`, \
             `capability NAME` or a \
             system action: {}",
            SYSTEM_REQUESTS.map(|r| r.word).join(", ")
        ),
    })
}

/// `unix-connect PEER` / `unix-send PEER`: a socket path (resolved on this host, as the
/// kernel walks the bound socket's path) or an abstract `@NAME`.
fn unix(peer: &str, send: bool) -> Result<Request> {
    let path = if peer.starts_with('@') {
        peer.to_owned()
    } else {
        resolve_request(Path::new(peer))?.0
    };
    Ok(Request::Unix { path, send })
}

/// `socket FAMILY TYPE [PROTOCOL]`: names from the socket tables or numbers.
fn parse_socket(family: &str, kind: &str, protocol: &[&str]) -> Result<Request> {
    use rampart_common::sockets::{FAMILIES, TYPES};
    let number = |table: &[(u32, &str)], word: &str, what: &str| -> Result<u32> {
        table
            .iter()
            .find(|(_, n)| *n == word)
            .map(|(v, _)| *v)
            .or_else(|| word.parse().ok())
            .with_context(|| format!("unknown socket {what} `{word}`"))
    };
    let protocol = match protocol {
        [] => 0,
        [p] => p
            .parse()
            .with_context(|| format!("socket protocol `{p}` is not a number"))?,
        _ => bail!("`socket FAMILY TYPE [PROTOCOL]` takes at most one protocol"),
    };
    Ok(Request::Socket {
        family: number(&FAMILIES, family, "family")?,
        kind: number(&TYPES, kind, "type")?,
        protocol,
    })
}

/// Chooses the policy to explain with: the one named, or the only one.
pub fn select<'a>(
    policies: &'a [CompiledPolicy],
    name: Option<&str>,
) -> Result<&'a CompiledPolicy> {
    match (name, policies) {
        (Some(n), _) => policies
            .iter()
            .find(|p| p.name == n)
            .with_context(|| format!("no policy named `{n}` in the given files")),
        (None, [one]) => Ok(one),
        (None, _) => {
            let names: Vec<&str> = policies.iter().map(|p| p.name.as_str()).collect();
            bail!(
                "the files hold {} policies ({}); choose one with --name",
                policies.len(),
                names.join(", ")
            )
        }
    }
}
