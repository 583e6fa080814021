//! Anti-rollback state that the host's files alone cannot reset: with the state file
//! deleted an older bundle is refused (no state: nothing is accepted), and with the file
//! initialised again the pinned copy of the mark still refuses it.

use anyhow::{bail, Result};

use crate::harness::{
    agent::log_records,
    cli::{rampart, s},
    daemon::ControlledDaemon,
    env::Env,
};

/// The codes the daemon refused bundles of its directory with, and whether version 1 was
/// put in force, since it last started.
fn refusals(daemon: &ControlledDaemon) -> (Vec<String>, bool) {
    let records = log_records(&daemon.log);
    let codes = records
        .iter()
        .filter(|r| r["message"] == "bundle refused; not loaded")
        .filter_map(|r| r["code"].as_str().map(str::to_owned))
        .collect();
    let v1 = records
        .iter()
        .any(|r| r["message"] == "policy in force" && r["version"] == 1);
    (codes, v1)
}

pub fn deleted_state_older_bundle_refused(_env: &mut Env) -> Result<String> {
    let mut daemon = ControlledDaemon::start("state")?;
    let result = (|| -> Result<String> {
        // Version 2 over the control socket: the state and its pinned copy say 2.
        let v2 = daemon.base.join("v2.rpb");
        daemon.sign(2, &v2)?;
        let out = rampart(&["policy", "push", "--socket", &daemon.socket, &s(&v2)])?;
        if !out.contains("version 2 in force") {
            bail!("push of v2: {out}");
        }
        daemon.terminate()?;
        // Back to version 1 with the state file deleted.
        std::fs::remove_file(daemon.base.join("bundles/pushed-v2.rpb"))?;
        let state = daemon.base.join("state");
        std::fs::remove_file(state.join("bundle-state.json"))?;
        daemon.spawn()?;
        let (codes, v1) = refusals(&daemon);
        if v1 || !codes.iter().any(|c| c == "state-missing") {
            bail!(
                "with the state file deleted, version 1 was {} (refusals {codes:?}), expected \
                 a state-missing refusal",
                if v1 { "loaded" } else { "not loaded" }
            );
        }
        // The state initialised again, as a host would after losing it: the pinned mark
        // still says 2.
        daemon.terminate()?;
        rampart(&["state", "init", "--state", &s(&state)])?;
        daemon.spawn()?;
        let (codes, v1) = refusals(&daemon);
        if v1 || !codes.iter().any(|c| c == "rollback") {
            bail!(
                "with the state file initialised again, version 1 was {} (refusals \
                 {codes:?}), expected a rollback refusal from the pinned mark",
                if v1 { "loaded" } else { "not loaded" }
            );
        }
        let shown = rampart(&[
            "state",
            "show",
            "--state",
            &s(&state),
            "--pin-dir",
            &daemon.pin_dir,
        ])?;
        if !shown.contains("version 2") {
            bail!("`rampart state show` does not show the pinned version 2: {shown}");
        }
        Ok(
            "v2 in force, then with the state file deleted v1 was refused (state-missing); with \
             the file initialised again v1 was refused (rollback: the pinned mark holds \
             version 2)"
                .into(),
        )
    })();
    let stopped = daemon.stop();
    let detail = result?;
    stopped?;
    Ok(detail)
}
