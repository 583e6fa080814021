//! Signed-bundle scenarios: each starts its own agent on a signed bundle, in its own
//! cgroup, with keys, trust root and bundles made in the guest by the real CLI.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::harness::agent::{spawn_agent, terminate_agent};
use crate::harness::cli::{keys_and_trust, rampart, s, sign, swap_policy, SCOPE};
use crate::harness::env::{Env, CGROUP_ROOT, FIXTURES};
use crate::harness::observe::{op_in, Outcome};

pub const DIR: &str = "/run/rampart-bundles";

/// Policy swaps the atomic-swap scenario makes (the atomicity claim is made over at least 100).
pub const SWAPS: u64 = 100;

/// An agent on a bundle, with its log and event files.
pub struct BundleAgent {
    child: Option<Child>,
    log: PathBuf,
    events: PathBuf,
    current: PathBuf,
}

impl BundleAgent {
    pub fn start(dir: &Path, first: &Path, extra: &[&str]) -> Result<Self> {
        let current = dir.join("current.rpb");
        std::fs::copy(first, &current)?;
        let log = dir.join("agent.log");
        let events = dir.join("events.jsonl");
        let state = s(&dir.join("state"));
        let trust = s(&dir.join("trust.json"));
        let cur = s(&current);
        let mut args = vec![
            "run", "--no-pin", "--bundle", &cur, "--trust", &trust, "--state", &state,
        ];
        args.extend_from_slice(extra);
        let child = spawn_agent(&args, &events, &log)?;
        Ok(Self {
            child: Some(child),
            log,
            events,
            current,
        })
    }

    fn log_records(&self) -> Vec<serde_json::Value> {
        crate::harness::agent::log_records(&self.log)
    }

    /// Puts `bundle` in place, sends SIGHUP, and waits for the agent to log the record
    /// that `done` recognises (searching only records logged after the signal).
    fn reload(
        &self,
        bundle: &Path,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value> {
        let seen = self.log_records().len();
        let tmp = self.current.with_extension("tmp");
        std::fs::copy(bundle, &tmp)?;
        std::fs::rename(&tmp, &self.current)?;
        let pid = self.child.as_ref().context("agent not running")?.id();
        // SAFETY: kill(2) on the agent we spawned and have not reaped.
        unsafe { libc::kill(pid as i32, libc::SIGHUP) };
        let started = Instant::now();
        loop {
            if let Some(r) = self.log_records().into_iter().skip(seen).find(&done) {
                return Ok(r);
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!(
                    "the agent did not finish reloading {} within 60 s; log tail:\n{}",
                    bundle.display(),
                    self.log_records()
                        .iter()
                        .rev()
                        .take(5)
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Loads `bundle` and waits until the agent says version `version` is in force.
    pub fn load(&self, bundle: &Path, version: u64) -> Result<()> {
        let r = self.reload(bundle, |r| {
            r["message"] == "policy in force"
                || r["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("policy refused"))
        })?;
        if r["message"] != "policy in force" || r["version"] != version {
            bail!("loading version {version}: the agent logged {r}");
        }
        Ok(())
    }

    /// Offers `bundle` and expects it refused with `code`, the policy in force unchanged.
    pub fn refused(&self, bundle: &Path, code: &str, keeping: u64) -> Result<()> {
        let r = self.reload(bundle, |r| {
            r["message"] == "policy in force"
                || r["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("policy refused"))
        })?;
        if r["code"] != code || r["keeping_version"] != keeping {
            bail!("expected a refusal with code {code} keeping version {keeping}; the agent logged {r}");
        }
        Ok(())
    }

    fn events(&self) -> Result<Vec<serde_json::Value>> {
        std::fs::read_to_string(&self.events)?
            .lines()
            .map(|l| serde_json::from_str(l).with_context(|| format!("event is not JSON: {l}")))
            .collect()
    }

    /// Stops the agent; returns the kernel's event drop count.
    pub fn stop(&mut self) -> Result<u64> {
        let child = self.child.take().context("agent not running")?;
        let summary =
            terminate_agent(child, &self.log)?.context("the agent logged no closing summary")?;
        summary["event_drops"]
            .as_u64()
            .context("no event_drops in the agent's summary")
    }
}

impl Drop for BundleAgent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn make_cgroup(name: &str) -> Result<PathBuf> {
    let cg = Path::new(CGROUP_ROOT).join(name);
    std::fs::create_dir_all(&cg).with_context(|| format!("creating cgroup {}", cg.display()))?;
    Ok(cg)
}

/// Swaps between two policies 100 times while a workload in the governed cgroup opens the
/// file each allows; every decision must match the policy of the version it is tagged with.
/// Then bad bundles (tampered, rollback, wrong scope, expired) are refused and change
/// nothing.
pub fn atomic_swap(env: &mut Env) -> Result<String> {
    let dir = Path::new(DIR).join("swap");
    keys_and_trust(&dir)?;
    let cg = make_cgroup("rampart-swap")?;
    let data = Path::new(FIXTURES).join("data");
    std::fs::write(data.join("swap-a.txt"), "a\n")?;
    std::fs::write(data.join("swap-b.txt"), "b\n")?;
    let (pa, pb) = (dir.join("a.yaml"), dir.join("b.yaml"));
    std::fs::write(&pa, swap_policy("swap-a", "/rampart-swap", "swap-a.txt"))?;
    std::fs::write(&pb, swap_policy("swap-b", "/rampart-swap", "swap-b.txt"))?;
    // Odd versions allow only swap-a.txt, even versions only swap-b.txt.
    let bundle = |v: u64| dir.join(format!("v{v}.rpb"));
    for v in 1..=SWAPS + 1 {
        sign(
            &dir,
            if v % 2 == 1 { &pa } else { &pb },
            v,
            "1h",
            SCOPE,
            &bundle(v),
        )?;
    }
    let mut agent = BundleAgent::start(&dir, &bundle(1), &[])?;

    let stop = dir.join("stop");
    let (fa, fb) = (s(&data.join("swap-a.txt")), s(&data.join("swap-b.txt")));
    let workload = Command::new(&env.runner)
        .arg("cg-exec")
        .arg(&cg)
        .arg(&env.allowed)
        .args(["op", "swap-loop", &fa, &fb, &s(&stop)])
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the workload")?;
    let started = Instant::now();
    for v in 2..=SWAPS + 1 {
        agent.load(&bundle(v), v)?;
        std::thread::sleep(Duration::from_millis(20));
    }
    let swap_time = started.elapsed();
    std::fs::write(&stop, "")?;
    let out = workload.wait_with_output()?;
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let counts = parse_counts(&report)?;

    // Bad bundles: each refused with its reason; version SWAPS + 1 stays in force.
    let last = SWAPS + 1;
    let tampered = dir.join("tampered.rpb");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(bundle(last))?)?;
    let payload = v["payload"].as_str().context("no payload")?.to_owned();
    // Changing one base64 character changes payload bytes, not the envelope's shape.
    let flipped: String = payload
        .char_indices()
        .map(|(i, c)| {
            if i == 40 {
                if c == 'A' {
                    'B'
                } else {
                    'A'
                }
            } else {
                c
            }
        })
        .collect();
    v["payload"] = flipped.into();
    std::fs::write(&tampered, v.to_string())?;
    agent.refused(&tampered, "bad-signature", last)?;
    agent.refused(&bundle(last - 1), "rollback", last)?;
    let other_scope = dir.join("other-scope.rpb");
    sign(&dir, &pb, last + 1, "1h", "another-fleet", &other_scope)?;
    agent.refused(&other_scope, "wrong-scope", last)?;
    let expired = dir.join("expired.rpb");
    sign(&dir, &pb, last + 1, "1s", SCOPE, &expired)?;
    std::thread::sleep(Duration::from_millis(2100));
    agent.refused(&expired, "expired", last)?;
    // Same version, other content.
    let equivocal = dir.join("equivocal.rpb");
    sign(&dir, &pb, last, "2h", SCOPE, &equivocal)?;
    agent.refused(&equivocal, "equivocation", last)?;
    // A key the trust root does not list.
    let stranger = dir.join("stranger");
    rampart(&["keygen", "--out", &s(&stranger)])?;
    let unknown = dir.join("unknown-key.rpb");
    rampart(&[
        "policy",
        "sign",
        "--key",
        &s(&dir.join("stranger.key")),
        "--version",
        &(last + 1).to_string(),
        "--expires",
        "1h",
        "--scope",
        SCOPE,
        &s(&pb),
        "-o",
        &s(&unknown),
    ])?;
    agent.refused(&unknown, "below-threshold", last)?;
    // Malformed files: cut in half, empty, an unknown field, the trust root instead of a
    // bundle, and one byte over the size cap.
    let good = std::fs::read(bundle(last))?;
    let cases: [(&str, Vec<u8>, &str); 4] = [
        (
            "truncated",
            good[..good.len() / 2].to_vec(),
            "malformed-envelope",
        ),
        ("empty", Vec::new(), "empty"),
        (
            "unknown-field",
            {
                let mut v: serde_json::Value = serde_json::from_slice(&good)?;
                v["note"] = "extra".into();
                v.to_string().into_bytes()
            },
            "malformed-envelope",
        ),
        (
            "wrong-type",
            std::fs::read(dir.join("trust.json"))?,
            "wrong-payload-type",
        ),
    ];
    for (name, bytes, code) in cases {
        let path = dir.join(format!("{name}.rpb"));
        std::fs::write(&path, bytes)?;
        agent
            .refused(&path, code, last)
            .with_context(|| format!("the {name} bundle"))?;
    }
    let oversized = dir.join("oversized.rpb");
    std::fs::write(&oversized, vec![b' '; 16 * 1024 * 1024 + 1])?;
    agent.refused(&oversized, "too-large", last)?;
    std::fs::remove_file(&oversized)?;
    // Enforcement unchanged: version `last` (odd) allows a, denies b.
    let a = op_in(env, &cg, &["open", &fa, "read"])?;
    let b = op_in(env, &cg, &["open", &fb, "read"])?;
    if a != Outcome::Ok || !b.denied() {
        bail!(
            "after the refused bundles, version {last} should allow a and deny b: a {a:?}, b {b:?}"
        );
    }
    let drops = agent.stop()?;

    // Every decision on the two files matches the policy of the version it carries.
    let events = agent.events()?;
    let mut seen = [[0u64; 2]; 2]; // [file][allow, deny]
    let mut versions = std::collections::BTreeSet::new();
    for e in &events {
        let path = e["path"].as_str().unwrap_or_default();
        let file = if path == fa {
            0
        } else if path == fb {
            1
        } else {
            continue;
        };
        let version = e["policy_version"]
            .as_u64()
            .context("event without a version")?;
        let allowed_file = if version % 2 == 1 { 0 } else { 1 };
        let want = if file == allowed_file {
            "allow"
        } else {
            "deny"
        };
        if e["decision"] != want {
            bail!("version {version} should {want} {path}, but the kernel recorded {e}");
        }
        let want_policy = if version % 2 == 1 { "swap-a" } else { "swap-b" };
        if e["policy"] != want_policy {
            bail!(
                "an event of version {version} is attributed to {}: {e}",
                e["policy"]
            );
        }
        versions.insert(version);
        seen[file][usize::from(want == "deny")] += 1;
    }
    // What the workload saw equals what the kernel recorded; the +1s are the read of a
    // (allowed) and of b (denied) made after the refused bundles.
    let recorded = [seen[0][0], seen[0][1], seen[1][0], seen[1][1]];
    let observed = [
        counts.a_ok + 1,
        counts.a_denied,
        counts.b_ok,
        counts.b_denied + 1,
    ];
    if drops == 0 && recorded != observed {
        bail!("the workload saw (a ok, a denied, b ok, b denied) = {observed:?} but the kernel recorded {recorded:?}");
    }
    if counts.other != 0 {
        bail!(
            "the workload had {} opens fail with an errno other than EPERM",
            counts.other
        );
    }
    if versions.len() < 20 {
        bail!("decisions were recorded under only {} versions; the workload did not overlap the swaps", versions.len());
    }
    Ok(format!(
        "{SWAPS} swaps in {swap_time:.1?}; {} decisions on the two files under {} versions, each matching its version's policy; workload = kernel record; {drops} drops; 11 bad bundles (tampered, rollback, wrong scope, expired, equivocation, unknown key, truncated, empty, unknown field, wrong type, oversized) refused with their codes and version {last} still enforcing",
        recorded.iter().sum::<u64>(),
        versions.len()
    ))
}

#[derive(Debug, Default)]
pub struct Counts {
    a_ok: u64,
    a_denied: u64,
    b_ok: u64,
    b_denied: u64,
    other: u64,
}

pub fn parse_counts(report: &str) -> Result<Counts> {
    let line = report
        .lines()
        .find_map(|l| l.strip_prefix("swap-loop: "))
        .with_context(|| format!("the workload printed no counts: {report}"))?;
    let mut c = Counts::default();
    for kv in line.split_whitespace() {
        let (k, v) = kv.split_once('=').context("malformed count")?;
        let v: u64 = v.parse()?;
        match k {
            "a_ok" => c.a_ok = v,
            "a_denied" => c.a_denied = v,
            "b_ok" => c.b_ok = v,
            "b_denied" => c.b_denied = v,
            "a_other" | "b_other" => c.other += v,
            _ => {}
        }
    }
    Ok(c)
}

/// An agent on a bundle that lets cgroup `rampart-NAME` read `swap-a.txt`, run until the
/// bundle has expired.
struct Expired {
    agent: BundleAgent,
    cg: PathBuf,
    /// The file the policy let the cgroup read.
    fa: String,
    bundle: PathBuf,
    /// Seconds from signing to expiry.
    lifetime: u64,
}

/// Signs a bundle that expires `lifetime` seconds after signing, starts an agent on it,
/// checks that the read is allowed, and waits until the bundle has expired. Starting the
/// agent attaches every program afresh, which under TCG can take about as long as the
/// lifetime (7.4 s and 14.9 s were seen, while the previous scenario's programs were still
/// being freed): then the check says nothing, and it is made once more with three times
/// the lifetime.
fn run_until_expired(env: &Env, name: &str, lifetime: u64) -> Result<Expired> {
    let dir = Path::new(DIR).join(name);
    let cgroup = format!("rampart-{name}");
    let cg = make_cgroup(&cgroup)?;
    let data = Path::new(FIXTURES).join("data");
    std::fs::write(data.join("swap-a.txt"), "a\n")?;
    let fa = s(&data.join("swap-a.txt"));
    for lifetime in [lifetime, 3 * lifetime] {
        // Fresh keys, trust and anti-rollback state each time: the second bundle is
        // version 1 again, with another expiry.
        keys_and_trust(&dir)?;
        let policy = dir.join("p.yaml");
        std::fs::write(
            &policy,
            swap_policy(name, &format!("/{cgroup}"), "swap-a.txt"),
        )?;
        let bundle = dir.join("v1.rpb");
        sign(&dir, &policy, 1, &format!("{lifetime}s"), SCOPE, &bundle)?;
        let signed = Instant::now();
        let mut agent = BundleAgent::start(&dir, &bundle, &[])?;
        let ready = signed.elapsed();
        let before = op_in(env, &cg, &["open", &fa, "read"])?;
        let done = signed.elapsed();
        if before != Outcome::Ok {
            // The expiry is written in whole seconds: it may come up to a second early.
            if done + Duration::from_secs(1) >= Duration::from_secs(lifetime) {
                agent.stop()?;
                continue;
            }
            bail!(
                "before expiry the policy allows the read, got {before:?} (agent ready \
                 {ready:?} and the read done {done:?} after signing, lifetime {lifetime} s)"
            );
        }
        std::thread::sleep(Duration::from_secs(lifetime + 2).saturating_sub(signed.elapsed()));
        return Ok(Expired {
            agent,
            cg,
            fa,
            bundle,
            lifetime,
        });
    }
    bail!("the agent took longer than the bundle's lifetime to start, twice")
}

/// A bundle that expires while in force: governed actions it allowed are then denied with
/// reason policy-expired, and the agent logs the expiry. What a policy allows between its
/// own tasks (signals) fails closed too: a task started before the expiry signals another
/// of the same cgroup every second until the kernel refuses.
pub fn expiry_fails_closed(env: &mut Env) -> Result<String> {
    let cg = make_cgroup("rampart-expiry")?;
    let mut sibling = Command::new(&env.runner)
        .arg("cg-exec")
        .arg(&cg)
        .arg(&env.allowed)
        .args(["op", "sleep", "240"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the sibling")?;
    let sib = sibling.id().to_string();
    let shared: &Env = env;
    let (expired, signals) = std::thread::scope(|scope| {
        let signaller = scope.spawn(|| op_in(shared, &cg, &["repeat-kill", &sib, "0", "200"]));
        let expired = run_until_expired(shared, "expiry", 20);
        (expired, signaller.join())
    });
    let _ = sibling.kill();
    let _ = sibling.wait();
    let Expired {
        mut agent,
        cg,
        fa,
        lifetime,
        ..
    } = expired?;
    let after = op_in(env, &cg, &["open", &fa, "read"])?;
    let drops = agent.stop()?;
    if !after.denied() {
        bail!("after expiry the read must be denied, got {after:?}");
    }
    let signals = signals.map_err(|_| anyhow::anyhow!("the signalling thread panicked"))??;
    if !signals.denied() {
        bail!("after expiry a signal to a task of the same policy must be denied, got {signals:?}");
    }
    let events = agent.events()?;
    let expired = events
        .iter()
        .filter(|e| e["reason"] == "policy-expired" && e["decision"] == "deny")
        .count();
    if !events.iter().any(|e| {
        e["reason"] == "policy-expired"
            && e["action"] == "signal"
            && e["peer_pid"] == sib.parse::<u64>().unwrap_or(0)
    }) {
        bail!("no policy-expired denial of the signal to the sibling ({sib}) was recorded");
    }
    // Once expired every governed action fails closed: already the probe's exec.
    if expired == 0 {
        bail!(
            "no deny event with reason policy-expired ({} events, {drops} drops)",
            events.len()
        );
    }
    let logged = agent.log_records().iter().any(|r| {
        r["message"]
            .as_str()
            .is_some_and(|m| m.contains("has expired"))
    });
    if !logged {
        bail!("the agent did not log the expiry");
    }
    Ok(format!(
        "read allowed before expiry, denied {lifetime} s later; a signal between the policy's own tasks denied once expired; {expired} policy-expired denials recorded; expiry logged"
    ))
}

/// Moves the wall clock by `secs` (negative: back).
fn shift_clock(secs: i64) -> Result<()> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the owned `ts`.
    if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) } != 0 {
        bail!("clock_gettime: {}", std::io::Error::last_os_error());
    }
    ts.tv_sec = ts
        .tv_sec
        .checked_add(secs)
        .context("the clock would overflow")?;
    // SAFETY: clock_settime reads the valid `ts`; the guest is ours to set.
    if unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) } != 0 {
        bail!("clock_settime: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// An expired bundle stays expired when the wall clock is set back and the same bundle is
/// loaded again (SIGHUP): its deadline is never extended.
pub fn clock_back_keeps_expired_bundle_expired(env: &mut Env) -> Result<String> {
    let Expired {
        mut agent,
        cg,
        fa,
        bundle,
        lifetime,
    } = run_until_expired(env, "clock-back", 12)?;
    let expired = op_in(env, &cg, &["open", &fa, "read"])?;
    if !expired.denied() {
        bail!("after expiry the read must be denied, got {expired:?}");
    }
    // Back a minute (within the 300 s issue-time skew, so the bundle verifies again): by
    // the wall clock it is valid again; reload it.
    shift_clock(-60)?;
    let result = (|| -> Result<Outcome> {
        agent.load(&bundle, 1)?;
        op_in(env, &cg, &["open", &fa, "read"])
    })();
    shift_clock(60)?;
    let _ = agent.stop();
    let after = result?;
    if !after.denied() {
        bail!(
            "with the clock set back a minute and the expired bundle loaded again, the read got \
             {after:?}: the expired bundle was revived"
        );
    }
    Ok(format!(
        "read allowed before expiry ({lifetime} s after signing), denied after it; with the \
         clock set back a minute the same bundle verified and was loaded again, and the read \
         stayed denied ({after:?})"
    ))
}
