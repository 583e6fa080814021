//! The console of a running daemon: while a workload is allowed and denied, `/readyz` says
//! ready, `/metrics` counts exactly the decisions the lineage records (by decision), the
//! policy version, every hook attached and the lineage's records; once the bundle expires
//! `/readyz` says not ready and why; the Lineage Explorer lists the denials. The scraped
//! metrics are shipped to the host, where `cargo xtask vm-test` checks them with promtool.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};

use rampart_vm_tests::protocol::{CONSOLE_PREFIX, CONSOLE_SCENARIO};

use super::bundles::{make_cgroup, BundleAgent};
use crate::harness::cli::{keys_and_trust, rampart, s, sign, swap_policy, SCOPE};
use crate::harness::env::{Env, FIXTURES};
use crate::harness::observe::{op_in, records, Outcome};
use crate::harness::ship;
use rampart_vm_tests::http::get;

pub const SCENARIO: &str = CONSOLE_SCENARIO;
const ADDR: &str = "127.0.0.1:9464";

/// The sum of a family's samples whose labels include every `(label, value)` of `with`.
fn sum(metrics: &str, family: &str, with: &[(&str, &str)]) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(name, _)| {
            (name.starts_with(&format!("{family}{{")) || *name == family)
                && with
                    .iter()
                    .all(|(k, v)| name.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum()
}

/// Polls until `check` passes on a fresh scrape (or 10 s pass); returns that scrape.
fn scrape_until(what: &str, check: impl Fn(&str) -> Result<()>) -> Result<String> {
    let started = Instant::now();
    loop {
        let (status, body) = get(ADDR, "/metrics")?;
        let verdict = if status == 200 {
            check(&body)
        } else {
            Err(anyhow::anyhow!("/metrics answered {status}"))
        };
        match verdict {
            Ok(()) => return Ok(body),
            Err(e) if started.elapsed() > Duration::from_secs(10) => {
                bail!("{what}: {e:#}\n{body}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

fn lineage_decisions(dir: &Path, decision: &str) -> Result<u64> {
    Ok(records(dir)?
        .iter()
        .filter(|r| r["kind"] == "decision" && r["decision"] == decision)
        .count() as u64)
}

pub fn metrics_and_readiness(env: &mut Env) -> Result<String> {
    let dir = Path::new("/run/rampart-console");
    keys_and_trust(dir)?;
    rampart(&["keygen", "--out", &s(&dir.join("host"))])?;
    let cg = make_cgroup("rampart-console")?;
    let data = Path::new(FIXTURES).join("data");
    let (allowed, denied) = (data.join("console-a.txt"), data.join("console-b.txt"));
    std::fs::write(&allowed, "a\n")?;
    std::fs::write(&denied, "b\n")?;
    let policy = dir.join("p.yaml");
    std::fs::write(
        &policy,
        swap_policy("console", "/rampart-console", "console-a.txt"),
    )?;
    let (v1, v2) = (dir.join("v1.rpb"), dir.join("v2.rpb"));
    sign(dir, &policy, 1, "1h", SCOPE, &v1)?;
    let lineage = dir.join("lineage");
    let mut daemon = BundleAgent::start(
        dir,
        &v1,
        &[
            "--lineage",
            &s(&lineage),
            "--host-key",
            &s(&dir.join("host.key")),
            "--console-listen",
            ADDR,
        ],
    )?;
    let started = Instant::now();
    let ready = loop {
        match get(ADDR, "/readyz") {
            Ok((200, body)) => break body,
            Ok(_) | Err(_) if started.elapsed() < Duration::from_secs(20) => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Ok((status, body)) => bail!("/readyz answered {status}: {body}"),
            Err(e) => return Err(e.context("the console never answered /readyz")),
        }
    };
    if !ready.contains("\"ready\":true") {
        bail!("/readyz: {ready}");
    }
    let (mut allows, mut denials) = (0u64, 0u64);
    for i in 0..12 {
        let (file, want_ok) = if i % 3 == 0 {
            (&allowed, true)
        } else {
            (&denied, false)
        };
        let got = op_in(env, &cg, &["open", &s(file), "read"])?;
        if (got == Outcome::Ok) != want_ok {
            bail!("open {}: {got:?}", file.display());
        }
        if want_ok {
            allows += 1;
        } else {
            denials += 1;
        }
    }
    // The counters and the lineage agree once both have caught up with the workload.
    let metrics = scrape_until("the metrics never matched the lineage", |m| {
        let (deny, allow) = (
            lineage_decisions(&lineage, "deny")?,
            lineage_decisions(&lineage, "allow")?,
        );
        let (md, ma) = (
            sum(
                m,
                "rampart_decisions_total",
                &[("decision", "deny"), ("action", "open")],
            ),
            sum(m, "rampart_decisions_total", &[("decision", "allow")]),
        );
        if deny < denials || md != deny as f64 || ma != allow as f64 {
            bail!("lineage: {deny} denied, {allow} allowed; metrics: {md} denied, {ma} allowed; workload: {denials} denied");
        }
        Ok(())
    })?;
    let version = sum(&metrics, "rampart_policy_version", &[]);
    let hooks_down = metrics
        .lines()
        .filter(|l| l.starts_with("rampart_hook_attached{") && l.ends_with(" 0"))
        .count();
    let hooks = metrics
        .lines()
        .filter(|l| l.starts_with("rampart_hook_attached{"))
        .count();
    let expiry = sum(&metrics, "rampart_policy_expiry_seconds", &[]);
    let records_total = sum(&metrics, "rampart_lineage_records_total", &[]);
    if version != 1.0
        || hooks == 0
        || hooks_down != 0
        || !(0.0..=3600.0).contains(&expiry)
        || records_total < (allows + denials) as f64
    {
        bail!("unexpected gauges: version {version}, {hooks} hooks ({hooks_down} down), expiry {expiry} s, {records_total} lineage records\n{metrics}");
    }
    let path = dir.join("metrics.txt");
    std::fs::write(&path, &metrics)?;
    ship::file(&format!("{CONSOLE_PREFIX}metrics.txt"), &path)?;

    let (status, page) = get(ADDR, "/lineage?decision=deny")?;
    let listed = page.matches("<tr class=\"deny\">").count() as u64;
    if status != 200 || listed < denials || !page.contains("console-b.txt") {
        bail!("the Lineage Explorer answered {status} listing {listed} denials");
    }

    // A bundle that expires soon (signed just before it is loaded: this guest is emulated):
    // once it has expired, the daemon is not ready, and says why.
    sign(dir, &policy, 2, "15s", SCOPE, &v2)?;
    daemon.load(&v2, 2)?;
    let started = Instant::now();
    let not_ready = loop {
        let (status, body) = get(ADDR, "/readyz")?;
        if status == 503 {
            break body;
        }
        if started.elapsed() > Duration::from_secs(45) {
            bail!(
                "/readyz still {status} 45 s after loading a bundle that expires in 15 s: {body}"
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    if !not_ready.contains("has expired") {
        bail!("/readyz after expiry: {not_ready}");
    }
    daemon.stop()?;
    Ok(format!(
        "/readyz ready; /metrics matches the lineage ({denials} denied, {allows} allowed opens), \
         version 1, {hooks} hooks attached, {records_total} lineage records; the explorer \
         listed {listed} denials; after expiry /readyz 503 ({})",
        not_ready.trim()
    ))
}
