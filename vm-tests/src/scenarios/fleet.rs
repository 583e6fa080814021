//! Bundles through a real OCI registry (Debian's `docker-registry`, in the guest on
//! loopback): a daemon whose `policy.source` names a tag picks up each new digest the tag
//! moves to; an older bundle re-tagged under it is refused (rollback) and recorded, and
//! the newer one stays; while the registry is down the policy in force stays and enforces,
//! and the outage is recorded once (not per poll), then its end with its length.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};
use serde_json::Value;

use rampart_vm_tests::registry::Registry;

use crate::harness::{
    cli::{rampart, s},
    daemon::ControlledDaemon,
    env::{Env, FIXTURES},
    observe::{op_in, records, Outcome},
};

pub const SCENARIO: &str = "oci-source-new-digest-loaded-older-refused-outage-recorded-once";
/// Where the initramfs carries the registry (from Debian's package).
const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
const ADDR: &str = "127.0.0.1:5000";
const TAG: &str = "oci://127.0.0.1:5000/rampart/fleet:stable";

/// Waits up to 20 s for `check` to hold.
fn until(what: &str, check: impl Fn() -> Result<bool>) -> Result<()> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        if check()? {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("{what} (waited 20 s)")
}

/// The daemon's lineage records of `kind`.
fn of_kind(daemon: &ControlledDaemon, kind: &str) -> Result<Vec<Value>> {
    Ok(records(&daemon.base.join("lineage"))?
        .into_iter()
        .filter(|r| r["kind"] == kind)
        .collect())
}

fn push(bundle: &Path) -> Result<String> {
    rampart(&["policy", "push", &s(bundle), TAG])
}

pub fn oci_source(env: &mut Env) -> Result<String> {
    if !Path::new(REGISTRY_BIN).exists() {
        bail!(
            "{REGISTRY_BIN} is not in the initramfs (xtask adds it from Debian's docker-registry)"
        );
    }
    let mut registry = Registry::start(
        Path::new(REGISTRY_BIN),
        Path::new("/run/rampart-registry"),
        ADDR,
    )?;
    let mut daemon = ControlledDaemon::configure(
        "oci",
        &format!("source = \"{TAG}\"\npoll_interval = \"1s\"\n"),
    )?;
    // The tag starts on version 1, the bundle the daemon's directory also holds.
    push(&daemon.base.join("bundles/v1.rpb"))?;
    daemon.spawn()?;
    // The policy in force enforces: of the two data files, it allows reading only one.
    let readable = format!("{FIXTURES}/data/readable.txt");
    let denied = format!("{FIXTURES}/data/writable.txt");
    let enforcing = |when: &str| -> Result<()> {
        let a = op_in(env, &daemon.cg, &["open", &readable, "read"])?;
        let b = op_in(env, &daemon.cg, &["open", &denied, "read"])?;
        if a != Outcome::Ok || !b.denied() {
            bail!("{when}: reading {readable} gave {a:?} (want Ok), {denied} gave {b:?} (want a denial)");
        }
        Ok(())
    };
    let v = daemon.version()?;
    if v != 1 {
        bail!("at start version {v} is in force, expected 1");
    }

    // A new digest under the tag: version 2 loaded and kept.
    let v2 = daemon.base.join("v2.rpb");
    daemon.sign(2, &v2)?;
    push(&v2)?;
    until("version 2 pushed to the tag was not put in force", || {
        Ok(daemon.version()? == 2)
    })?;
    if !daemon.base.join("bundles/pulled-v2.rpb").exists() {
        bail!("version 2 is in force but not kept as bundles/pulled-v2.rpb");
    }

    // Version 1 re-tagged as the newest: refused as a rollback, recorded; 2 stays.
    push(&daemon.base.join("bundles/v1.rpb"))?;
    until(
        "the re-tagged version 1 was not refused as a rollback",
        || {
            Ok(of_kind(&daemon, "policy-refused")?.iter().any(|r| {
                r["code"] == "rollback" && r["error"].as_str().is_some_and(|e| e.contains(TAG))
            }))
        },
    )?;
    if daemon.version()? != 2 {
        bail!(
            "after the re-tagged version 1, version {} is in force",
            daemon.version()?
        );
    }

    // The registry goes down: polls fail for several seconds; one record, 2 enforces.
    registry.stop();
    until("the outage was not recorded", || {
        Ok(!of_kind(&daemon, "policy-source")?.is_empty())
    })?;
    std::thread::sleep(Duration::from_secs(5));
    let during = of_kind(&daemon, "policy-source")?;
    if during.len() != 1 || during[0]["state"] != "unreachable" {
        bail!("an outage of 5+ polls should be one `unreachable` record, found {during:?}");
    }
    if daemon.version()? != 2 {
        bail!(
            "during the outage version {} is in force, expected 2",
            daemon.version()?
        );
    }
    enforcing("during the outage")?;

    // Back: the end of the outage is recorded, and a new version is picked up again.
    registry.resume()?;
    until("the end of the outage was not recorded", || {
        Ok(of_kind(&daemon, "policy-source")?.len() == 2)
    })?;
    let back = &of_kind(&daemon, "policy-source")?[1];
    let failed = back["failed_polls"].as_u64().unwrap_or(0);
    if back["state"] != "reachable" || failed < 4 {
        bail!("after the outage: {back}, expected `reachable` after at least 4 failed polls");
    }
    let v3 = daemon.base.join("v3.rpb");
    daemon.sign(3, &v3)?;
    push(&v3)?;
    until(
        "version 3 pushed after the outage was not put in force",
        || Ok(daemon.version()? == 3),
    )?;
    if daemon.base.join("bundles/pulled-v2.rpb").exists() {
        bail!("bundles/pulled-v2.rpb was kept after version 3 superseded it");
    }
    enforcing("with version 3")?;
    daemon.stop()?;
    Ok(format!(
        "tag moved to v2: loaded and kept; v1 re-tagged: refused (rollback), v2 stayed; registry \
         down: one unreachable record over {failed} failed polls, v2 enforced; back: reachable \
         recorded ({}s down), v3 loaded",
        back["down_seconds"]
    ))
}
