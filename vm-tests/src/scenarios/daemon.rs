//! The daemon as installed: a configuration file, a bundle directory that starts empty
//! (the configured cgroups fall back to deny-all, reason no-policy), a bundle dropped in
//! and enforced within a second, and bad bundles dropped in refused while the policy in
//! force stays.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use serde_json::Value;

use crate::harness::agent::{log_records, spawn_agent, terminate_agent};
use crate::harness::cli::{keys_and_trust, rampart, s, sign, swap_policy, SCOPE};
use crate::harness::env::{Env, CGROUP_ROOT, FIXTURES};
use crate::harness::observe::{op_in, Outcome};

/// Waits until the agent logs a record after the first `seen` that `done` accepts.
pub fn wait_log(
    log: &Path,
    seen: usize,
    done: impl Fn(&Value) -> bool,
) -> Result<(Value, Duration)> {
    let started = Instant::now();
    loop {
        if let Some(r) = log_records(log).into_iter().skip(seen).find(&done) {
            return Ok((r, started.elapsed()));
        }
        if started.elapsed() > Duration::from_secs(30) {
            let tail: Vec<String> = log_records(log)
                .iter()
                .skip(seen)
                .map(ToString::to_string)
                .collect();
            bail!(
                "the agent logged nothing expected within 30 s; it logged:\n{}",
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Drops `bundle` into `dir` atomically (rename), as a delivery tool would.
pub fn drop_in(bundle: &Path, dir: &Path) -> Result<()> {
    let name = bundle.file_name().context("bundle name")?;
    let tmp = dir.join(format!(".{}.part", name.to_string_lossy()));
    std::fs::copy(bundle, &tmp)?;
    std::fs::rename(&tmp, dir.join(name))?;
    Ok(())
}

pub fn refusal(log: &Path, seen: usize) -> Result<String> {
    let (r, _) = wait_log(log, seen, |r| {
        r["message"].as_str().is_some_and(|m| {
            m.starts_with("bundle refused")
                || m.starts_with("policy refused")
                || m == "policy in force"
        })
    })?;
    if r["message"] == "policy in force" {
        bail!("a bad bundle was loaded: {r}");
    }
    Ok(r["code"].as_str().unwrap_or_default().to_owned())
}

pub fn config_and_bundle_dir(env: &mut Env) -> Result<String> {
    let base = Path::new("/run/rampart-cfg");
    keys_and_trust(base)?;
    let bundles = base.join("bundles");
    let staging = base.join("staging");
    std::fs::create_dir_all(&bundles)?;
    std::fs::create_dir_all(&staging)?;
    let cg = Path::new(CGROUP_ROOT).join("rampart-cfg");
    std::fs::create_dir_all(&cg)?;
    let target = format!("{FIXTURES}/data/readable.txt");
    let policy = base.join("p.yaml");
    std::fs::write(&policy, swap_policy("cfg", "/rampart-cfg", "readable.txt"))?;
    let outside = base.join("outside.yaml");
    std::fs::write(
        &outside,
        swap_policy("elsewhere", "/rampart-elsewhere", "readable.txt"),
    )?;
    std::fs::create_dir_all(Path::new(CGROUP_ROOT).join("rampart-elsewhere"))?;
    let config = base.join("rampart.toml");
    std::fs::write(
        &config,
        format!(
            r#"[policy]
bundle_dir = "{bundles}"
trust = "{trust}"
state_dir = "{state}"
governs = ["/rampart-cfg"]

[lineage]
dir = "{base}/lineage"
host_key = "{base}/signer.key"

[daemon]
pin_dir = "/sys/fs/bpf/rampart-cfg"
control_socket = "{base}/control.sock"
"#,
            bundles = s(&bundles),
            trust = s(&base.join("trust.json")),
            state = s(&base.join("state")),
            base = s(base),
        ),
    )?;
    let log = base.join("agent.log");
    let events = base.join("events.jsonl");
    let agent = spawn_agent(&["run", "--config", &s(&config)], &events, &log)?;
    let pid = agent.id() as i32;
    let result = (|| -> Result<String> {
        // 1. No bundle yet: the configured cgroup denies everything (no-policy).
        let got = op_in(env, &cg, &["open", &target, "read"])?;
        if !got.denied() {
            bail!("with no valid bundle the governed cgroup must deny, got {got:?}");
        }
        std::thread::sleep(Duration::from_millis(300));
        let no_policy_events = std::fs::read_to_string(&events)?
            .lines()
            .filter(|l| l.contains("\"reason\":\"no-policy\""))
            .count();
        if no_policy_events == 0 {
            bail!("no deny event with reason no-policy");
        }
        // 2. A valid bundle dropped in is enforced within a second.
        let v1 = staging.join("v1.rpb");
        sign(base, &policy, 1, "1h", SCOPE, &v1)?;
        let seen = log_records(&log).len();
        drop_in(&v1, &bundles)?;
        let (_, took) = wait_log(&log, seen, |r| {
            r["message"] == "policy in force" && r["version"] == 1
        })?;
        if took > Duration::from_secs(1) {
            bail!("the dropped-in bundle took {took:?} to be in force (more than a second)");
        }
        let got = op_in(env, &cg, &["open", &target, "read"])?;
        if got != Outcome::Ok {
            bail!("version 1 allows the read, got {got:?}");
        }
        // 3. A tampered newer bundle: refused, version 1 stays.
        let v2 = staging.join("v2.rpb");
        sign(base, &policy, 2, "1h", SCOPE, &v2)?;
        let mut env2: Value = serde_json::from_slice(&std::fs::read(&v2)?)?;
        let sig = env2["signatures"][0]["sig"]
            .as_str()
            .context("sig")?
            .to_owned();
        // Change one character inside the signature: it no longer verifies.
        let mut chars: Vec<char> = sig.chars().collect();
        chars[10] = if chars[10] == 'A' { 'B' } else { 'A' };
        let flipped: String = chars.into_iter().collect();
        env2["signatures"][0]["sig"] = flipped.into();
        std::fs::write(&v2, env2.to_string())?;
        let seen = log_records(&log).len();
        drop_in(&v2, &bundles)?;
        let code = refusal(&log, seen)?;
        if code != "bad-signature" {
            bail!("the tampered bundle was refused with {code:?}, expected bad-signature");
        }
        // 4. A bundle governing a cgroup this host does not allow: refused.
        let v3 = staging.join("v3.rpb");
        sign(base, &outside, 3, "1h", SCOPE, &v3)?;
        let seen = log_records(&log).len();
        drop_in(&v3, &bundles)?;
        let code = refusal(&log, seen)?;
        if code != "cgroup-not-allowed" {
            bail!("the out-of-scope bundle was refused with {code:?}, expected cgroup-not-allowed");
        }
        let got = op_in(env, &cg, &["open", &target, "read"])?;
        if got != Outcome::Ok {
            bail!("after the refusals version 1 must still allow the read, got {got:?}");
        }
        // 5. Push over the control socket: loaded; again: rejected; tampered: rejected.
        let socket = s(&base.join("control.sock"));
        let v4 = staging.join("v4.rpb");
        sign(base, &policy, 4, "1h", SCOPE, &v4)?;
        let out = rampart(&["policy", "push", "--socket", &socket, &s(&v4)])?;
        if !out.contains("loaded, version 4 in force") {
            bail!("push of v4: {out}");
        }
        for (bundle, code) in [(&v4, "already-in-force"), (&v2, "bad-signature")] {
            let out = std::process::Command::new(crate::harness::env::AGENT)
                .args(["policy", "push", "--socket", &socket, &s(bundle)])
                .output()?;
            let err = String::from_utf8_lossy(&out.stderr);
            if out.status.success() || !err.contains(&format!("rejected ({code})")) {
                bail!(
                    "push of {} should be rejected ({code}): {err}",
                    bundle.display()
                );
            }
        }
        if !bundles.join("pushed-v4.rpb").exists() {
            bail!("the pushed bundle was not kept in the bundle directory");
        }
        let status: Value =
            serde_json::from_str(&rampart(&["status", "--socket", &socket, "--json"])?)?;
        if status["version"] != 4
            || status["pinned"] != true
            || !status["governed"].to_string().contains("rampart-cfg")
            || status["lineage"]["records"].as_u64().unwrap_or(0) == 0
        {
            bail!("status does not show version 4, pinned, the governed cgroup and the lineage: {status}");
        }
        // 6. SIGHUP with a broken configuration: refused, the previous one and v4 stay.
        let good = std::fs::read_to_string(&config)?;
        std::fs::write(&config, good.replace("governs =", "govern ="))?;
        let seen = log_records(&log).len();
        // SAFETY: kill(2) on the agent spawned above.
        unsafe { libc::kill(pid, libc::SIGHUP) };
        wait_log(&log, seen, |r| {
            r["message"] == "configuration not reloaded; the previous one stays"
        })?;
        std::fs::write(&config, good)?;
        let got = op_in(env, &cg, &["open", &target, "read"])?;
        if got != Outcome::Ok {
            bail!("after a refused configuration v4 must still allow the read, got {got:?}");
        }
        Ok(format!(
            "broken configuration on SIGHUP refused with the previous kept; empty bundle dir: deny-all (no-policy events); dropped-in v1 in force after {took:?}; tampered v2 refused (bad-signature) and out-of-scope v3 refused (cgroup-not-allowed) with v1 still enforcing; v4 pushed over the control socket and loaded, re-push and tampered push rejected with their codes; status shows version 4"
        ))
    })();
    // Break-glass through the daemon: it records the release in its lineage and exits.
    let socket = s(&base.join("control.sock"));
    let released = crate::harness::cli::break_glass_token(base).and_then(|token| {
        rampart(&[
            "release",
            "--socket",
            &socket,
            "--yes",
            "--token",
            &s(&token),
        ])
    });
    let mut agent = agent;
    if released.is_err() {
        let _ = terminate_agent(agent, &log);
        let _ = rampart(&["release", "--pin-dir", "/sys/fs/bpf/rampart-cfg", "--yes"]);
        return result.and(released.map(drop)).map(|_| String::new());
    }
    let status = agent.wait()?;
    let detail = result?;
    let recorded = crate::harness::observe::records(&base.join("lineage"))?
        .iter()
        .any(|r| r["kind"] == "release");
    if !status.success() || !recorded || Path::new("/sys/fs/bpf/rampart-cfg/links").exists() {
        bail!("release through the daemon: exit {status}, recorded {recorded}");
    }
    Ok(format!("{detail}; release through the control socket recorded in the lineage, links gone, daemon exited 0"))
}
