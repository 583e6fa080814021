//! Requests for `explain`: one line each (`exec PATH`, `open PATH read,write`, ...), with
//! paths resolved on this host as the kernel resolves them.

use std::path::Path;

use anyhow::{bail, Context, Result};
use rampart_common::access;

use super::{
    compile::CompiledPolicy,
    explain::{parse_endpoint, Request},
    host::resolve_request,
};

/// Parses an access list such as `read,write`.
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

/// Parses one request line: `exec PATH`, `open PATH ACCESS`, `map-exec PATH`,
/// `connect ADDR:PORT/PROTO` or `send ADDR:PORT/PROTO`. Paths are resolved on this host.
pub fn parse_request(line: &str) -> Result<Request> {
    let words: Vec<&str> = line.split_whitespace().collect();
    Ok(match words.as_slice() {
        ["exec", path] => {
            let (path, identity) = resolve_request(Path::new(path))?;
            Request::Exec { path, identity }
        }
        ["open", path, acc] => Request::Open {
            path: resolve_request(Path::new(path))?.0,
            access: parse_access(acc)?,
        },
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
        _ => bail!(
            "`{line}`: expected `exec PATH`, `open PATH read,write`, `map-exec PATH`, \
             `connect ADDR:PORT/tcp` or `send ADDR:PORT/udp`"
        ),
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
