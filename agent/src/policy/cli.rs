//! `rampart policy compile` and `rampart policy explain`: the command-line faces of the
//! policy library (they print; the daemon never calls them).

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};
use rampart_common::access;

use super::{
    compile::CompiledPolicy,
    explain::{explain, parse_endpoint, Explanation, Request},
    host::{compile_files, resolve_request, Host},
    Literal, Resolver,
};

/// Compiles policy files and prints a summary; writes the compiled maps as JSON to `out`
/// (byte-identical for identical inputs). With `host`, paths are resolved and exec rules
/// pinned against this host's files, exactly as `rampart run` loads them.
pub fn compile_command(files: &[PathBuf], out: Option<&Path>, host: bool) -> Result<()> {
    let resolver: &dyn Resolver = if host { &Host } else { &Literal };
    let compiled = compile_files(files, resolver)?;
    let mut json = serde_json::to_string_pretty(&compiled).context("serialising policies")?;
    json.push('\n');
    for p in &compiled {
        let exec = p
            .paths
            .iter()
            .filter(|e| e.access & access::RUN != 0)
            .count();
        println!(
            "{}: policy `{}` ({}), governs {}; {} rules -> {} path entries ({} runnable), \
             {} IPv4 and {} IPv6 network entries",
            p.file,
            p.name,
            format!("{:?}", p.mode).to_lowercase(),
            p.governs.join(", "),
            p.rules.len(),
            p.paths.len(),
            exec,
            p.net4.len(),
            p.net6.len()
        );
    }
    if let Some(out) = out {
        let tmp = out.with_extension("tmp");
        std::fs::write(&tmp, &json).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, out).with_context(|| format!("writing {}", out.display()))?;
        println!("compiled maps written to {}", out.display());
    }
    Ok(())
}

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

fn print(e: &Explanation, json: bool, out: &mut impl Write) -> Result<()> {
    if json {
        writeln!(out, "{}", serde_json::to_string(e)?)?;
    } else {
        writeln!(
            out,
            "{:<5} {} {}: {} (rule {}, {}, policy {})",
            e.decision,
            e.action,
            e.target,
            e.reason,
            e.rule.as_deref().unwrap_or("none"),
            e.hook,
            e.policy
        )?;
    }
    Ok(())
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

/// Explains each request under the chosen policy, resolved on this host as `rampart run`
/// would load it.
pub fn explain_command(
    files: &[PathBuf],
    name: Option<&str>,
    requests: &[String],
    json: bool,
) -> Result<()> {
    let compiled = compile_files(files, &Host)?;
    let policy = select(&compiled, name)?;
    if requests.is_empty() {
        bail!(
            "nothing to explain: give --exec, --open, --map-exec, --connect, --send or --requests"
        );
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for (i, line) in requests.iter().enumerate() {
        let request = parse_request(line).with_context(|| format!("request {}", i + 1))?;
        print(&explain(policy, &request), json, &mut out)?;
    }
    Ok(())
}
