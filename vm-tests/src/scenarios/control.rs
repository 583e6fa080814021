//! The control socket cannot be used by the workload, nor held by any client: a root
//! process inside a governed cgroup is refused (and the refusal is recorded), and a client
//! that connects and sends nothing delays neither event delivery nor other clients.

use std::{
    io::Write,
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
        let mut silent = std::os::unix::net::UnixStream::connect(&daemon.socket)?;
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
        // The silent client is still connected (its 10 s are not up).
        silent.write_all(b"")?;
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
