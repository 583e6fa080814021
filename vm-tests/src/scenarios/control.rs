//! The control socket cannot be used by the workload, nor held by any client: a root
//! process inside a governed cgroup is refused (and the refusal is recorded), and a client
//! that connects and sends nothing delays neither event delivery nor other clients.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};

use crate::harness::{
    cli::rampart,
    daemon::ControlledDaemon,
    env::Env,
    observe::{exec_target, op_in, records},
};

pub fn governed_root_peer_refused(env: &mut Env) -> Result<String> {
    let mut daemon = ControlledDaemon::start("ctl")?;
    // From the host: answered.
    let status = rampart(&["status", "--socket", &daemon.socket, "--json"])?;
    if !status.contains("\"version\":1") {
        bail!("status from the host does not show version 1: {status}");
    }
    // From root inside the governed cgroup: refused, both a status and a release.
    for op in ["status", "release"] {
        let got = op_in(env, &daemon.cg, &["control", &daemon.socket, op])?;
        if !got.denied() {
            bail!(
                "a root process inside the governed cgroup asked `{op}` on the control socket \
                 and got {got:?}, expected a refusal"
            );
        }
    }
    // The refused release changed nothing: the denied probe is still denied.
    let got = exec_target(env, &daemon.cg, &env.denied)?;
    if !got.denied() || !Path::new(&daemon.pin_dir).join("links").exists() {
        bail!(
            "after the refused release: denied probe got {got:?}, pins present {}",
            Path::new(&daemon.pin_dir).join("links").exists()
        );
    }
    daemon.stop()?;
    let refused: Vec<_> = records(&daemon.base.join("lineage"))?
        .into_iter()
        .filter(|r| r["kind"] == "control-refused" && r["cgroup"] == "/rampart-ctl")
        .collect();
    if refused.len() < 2 {
        bail!(
            "expected 2 control-refused records for /rampart-ctl in the lineage, found {}",
            refused.len()
        );
    }
    Ok(format!(
        "status from the host answered; status and release from root inside /rampart-ctl \
         refused, enforcement unchanged; {} control-refused records in the lineage",
        refused.len()
    ))
}

pub fn silent_client_does_not_delay_events(env: &mut Env) -> Result<String> {
    let mut daemon = ControlledDaemon::start("silent")?;
    let result = (|| -> Result<String> {
        // A host client connects and sends nothing (the daemon waits 10 s for its line).
        let silent = std::os::unix::net::UnixStream::connect(&daemon.socket)?;
        std::thread::sleep(Duration::from_millis(300));
        let got = exec_target(env, &daemon.cg, &env.denied)?;
        if !got.denied() {
            bail!("the denied probe got {got:?}, expected EPERM");
        }
        let Some(took) = daemon.deny_event_seen(&env.denied, Duration::from_secs(3)) else {
            bail!(
                "the deny event did not reach the daemon's output within 3 s while a silent \
                 client held the control socket"
            );
        };
        let asked = Instant::now();
        let status = rampart(&["status", "--socket", &daemon.socket, "--json"])?;
        let answered = asked.elapsed();
        if !status.contains("\"version\":1") || answered > Duration::from_secs(3) {
            bail!("a second client's status took {answered:?} while the silent one was connected: {status}");
        }
        // The silent client was connected throughout (its 10 s are not up yet).
        drop(silent);
        Ok(format!(
            "with a silent client connected, the deny event was delivered after {took:?} and \
             another client's status answered in {answered:?}"
        ))
    })();
    let stopped = daemon.stop();
    let detail = result?;
    stopped?;
    Ok(detail)
}

/// Runs `rampart ARGS` without a controlling terminal (in a new session), as automation
/// would; returns (success, stderr).
fn rampart_without_tty(args: &[&str]) -> Result<(bool, String)> {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(crate::harness::env::AGENT);
    cmd.args(args);
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// `rampart release --token TOKEN` through `socket`, without a terminal.
fn release_with_token(socket: &str, token: &Path) -> Result<(bool, String)> {
    rampart_without_tty(&[
        "release",
        "--socket",
        socket,
        "--yes",
        "--token",
        &crate::harness::cli::s(token),
    ])
}

pub fn release_needs_a_token_and_is_recorded(env: &mut Env) -> Result<String> {
    let mut daemon = ControlledDaemon::start("glass")?;
    let socket = daemon.socket.clone();
    // 1. No terminal, no token: refused, enforcement unchanged.
    let (ok, err) = rampart_without_tty(&["release", "--socket", &socket, "--yes"])?;
    if ok || !err.contains("needs a break-glass token") {
        bail!("a release without a terminal or token was not refused: ok {ok}, {err}");
    }
    let got = exec_target(env, &daemon.cg, &env.denied)?;
    if !got.denied() {
        bail!("after the refused release the denied probe got {got:?}");
    }
    // 2. A token signed by a key the trust root does not hold: refused.
    let stranger = daemon.base.join("stranger");
    rampart(&["keygen", "--out", &crate::harness::cli::s(&stranger)])?;
    let forged = daemon.base.join("forged-token.json");
    rampart(&[
        "break-glass",
        "--key",
        &format!("{}.key", stranger.display()),
        "--scope",
        crate::harness::cli::SCOPE,
        "--reason",
        "forged",
        "-o",
        &crate::harness::cli::s(&forged),
    ])?;
    let (ok, err) = release_with_token(&socket, &forged)?;
    if ok || !err.contains("below-threshold") {
        bail!("a token signed by an unknown key was not refused: ok {ok}, {err}");
    }
    // 3. A token of the trust root: released, recorded with its nonce.
    let token = crate::harness::cli::break_glass_token(&daemon.base)?;
    let (ok, err) = release_with_token(&socket, &token)?;
    if !ok {
        bail!("the release with a valid token failed: {err}");
    }
    daemon.forget();
    let nonce = serde_json::from_slice::<serde_json::Value>(&std::fs::read(&token)?)
        .ok()
        .and_then(|e| e["payload"].as_str().map(str::to_owned))
        .and_then(|p| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(p).ok()
        })
        .and_then(|p| serde_json::from_slice::<serde_json::Value>(&p).ok())
        .and_then(|p| p["nonce"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let lineage = records(&daemon.base.join("lineage"))?;
    let release = lineage.iter().find(|r| r["kind"] == "release");
    let refused = lineage
        .iter()
        .filter(|r| r["kind"] == "control-refused")
        .count();
    match release {
        Some(r) if r["authorised_by"] == "break-glass-token" && r["nonce"] == nonce.as_str() => {}
        other => bail!("the release record does not name the token {nonce}: {other:?}"),
    }
    if refused < 2 {
        bail!("expected the two refused releases in the lineage, found {refused}");
    }
    // 4. The same token again, on a new daemon: refused (a token works once).
    daemon.spawn()?;
    let (ok, err) = release_with_token(&socket, &token)?;
    daemon.stop()?;
    if ok || !err.contains("already used") {
        bail!("the token was accepted a second time: ok {ok}, {err}");
    }
    Ok(format!(
        "release without terminal or token refused, forged token refused (below-threshold), \
         both recorded; the trust root's token released and was recorded with nonce {nonce}; \
         the same token refused on the next daemon"
    ))
}
