//! `cargo xtask demo`, the guest side: a short story told on the console. A security team
//! makes keys, a trust root and a signed bundle from policies/demo-app.yaml; the host runs
//! the daemon from its configuration; a workload in /demo.slice does allowed and forbidden
//! things and every decision is printed as it happens; a new policy version is pushed live;
//! a tampered bundle is rejected; the lineage is verified, then shipped to the host.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command},
    time::Duration,
};

use anyhow::{bail, Context, Result};

use serde_json::Value;

use rampart_vm_tests::protocol::Line;

use crate::harness::agent::spawn_agent;
use crate::harness::env::{AGENT, CGROUP_ROOT, FIXTURES};
use crate::harness::ship;

const BASE: &str = "/run/demo";

const POLICY: &str = "/usr/share/rampart/policies/demo-app.yaml";

const APP: &str = "/usr/lib/rampart-demo/app";

fn say(text: &str) {
    for line in text.lines() {
        println!("{}", Line::DemoSay(line.to_owned()));
    }
}

fn rampart(args: &[&str]) -> Result<String> {
    let out = Command::new(AGENT).args(args).output()?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("rampart {} failed: {text}", args.join(" "));
    }
    Ok(text)
}

/// Shows a command and its output.
fn run_shown(args: &[&str]) -> Result<String> {
    say(&format!("$ rampart {}", args.join(" ")));
    let out = rampart(args)?;
    for line in out.lines().filter(|l| !l.starts_with('{')) {
        say(&format!("  {line}"));
    }
    Ok(out)
}

/// Prints the decisions the agent recorded since the last call.
struct Decisions {
    file: PathBuf,
    seen: usize,
}

impl Decisions {
    /// Prints new decisions; the same decision repeated (an exec is judged at open, at
    /// execve and at mmap) is shown once, and with `quiet_app` the app's own allowed start
    /// is left out.
    fn show(&mut self, quiet_app: bool) {
        std::thread::sleep(Duration::from_millis(400));
        let text = std::fs::read_to_string(&self.file).unwrap_or_default();
        let mut shown = std::collections::BTreeSet::new();
        for line in text.lines().skip(self.seen) {
            self.seen += 1;
            let Ok(e) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let s = |k: &str| e[k].as_str().unwrap_or("-").to_owned();
            let target = e["path"].as_str().or(e["endpoint"].as_str()).unwrap_or("-");
            if quiet_app && target == APP && e["decision"] == "allow" {
                continue;
            }
            if !shown.insert((s("decision"), target.to_owned())) {
                continue;
            }
            say(&format!(
                "  kernel: {:<5} {:<8} {:<34} reason {:<18} policy {} v{} {}",
                s("decision").to_uppercase(),
                s("action"),
                target,
                s("reason"),
                s("policy"),
                e["policy_version"],
                e["rule"]
                    .as_str()
                    .map(|r| format!("({r})"))
                    .unwrap_or_default()
            ));
        }
    }
}

/// Runs `argv` inside /demo.slice and says how it went.
fn workload(what: &str, argv: &[&str]) -> Result<()> {
    let runner = std::fs::read_link("/proc/self/exe")?;
    let out = Command::new(runner)
        .arg("cg-exec")
        .arg(Path::new(CGROUP_ROOT).join("demo.slice"))
        .args(argv)
        .output()?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let errno = text
        .lines()
        .find_map(|l| l.split("errno=").nth(1))
        .map(|e| e.trim().to_owned());
    let outcome = match errno.as_deref() {
        Some("1") => "EPERM (denied)".to_owned(),
        Some("111") => "connection refused (allowed; nothing listens)".to_owned(),
        Some(e) => format!("errno {e}"),
        None if text.contains("rampart-probe-ok") || text.contains("rampart-op: ok") => {
            "ok".to_owned()
        }
        None => format!("exit {}", out.status),
    };
    say(&format!("workload: {what} -> {outcome}"));
    Ok(())
}

fn step(n: u32, title: &str) {
    say("");
    say(&format!("== {n}. {title}"));
}

fn story(agent: &mut Option<Child>) -> Result<()> {
    let base = Path::new(BASE);
    std::fs::create_dir_all(base.join("team"))?;
    std::fs::create_dir_all(base.join("bundles"))?;
    std::fs::create_dir_all("/srv/demo/public")?;
    std::fs::create_dir_all("/srv/demo/reports")?;
    std::fs::write("/srv/demo/public/index.html", "hello\n")?;
    std::fs::write("/srv/demo/reports/q3.txt", "revenue\n")?;
    std::fs::create_dir_all("/usr/lib/rampart-demo")?;
    std::fs::copy(format!("{FIXTURES}/allowed-probe"), APP)?;
    std::fs::create_dir_all(Path::new(CGROUP_ROOT).join("demo.slice"))?;
    let t = |n: &str| base.join("team").join(n).to_string_lossy().into_owned();

    step(
        1,
        "The security team makes two signing keys and a 2-of-2 trust root",
    );
    run_shown(&["keygen", "--out", &t("alice")])?;
    run_shown(&["keygen", "--out", &t("bob")])?;
    run_shown(&[
        "trust",
        "init",
        "--key",
        &t("alice.pub"),
        "--key",
        &t("bob.pub"),
        "--threshold",
        "2",
        "--scope",
        "demo-fleet",
        "-o",
        &t("trust.json"),
    ])?;

    step(
        2,
        "It signs policies/demo-app.yaml as version 1: Alice signs, Bob cosigns",
    );
    say(&std::fs::read_to_string(POLICY)?
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n"));
    run_shown(&[
        "policy",
        "sign",
        "--key",
        &t("alice.key"),
        "--version",
        "1",
        "--expires",
        "30d",
        "--scope",
        "demo-fleet",
        POLICY,
        "-o",
        &t("v1.rpb"),
    ])?;
    run_shown(&["policy", "cosign", "--key", &t("bob.key"), &t("v1.rpb")])?;

    step(
        3,
        "The host: a host key for the lineage, the trust root, a config, the daemon",
    );
    std::fs::create_dir_all("/etc/rampart")?;
    run_shown(&["keygen", "--out", "/etc/rampart/host"])?;
    std::fs::copy(t("trust.json"), "/etc/rampart/trust.json")?;
    std::fs::copy(t("v1.rpb"), base.join("bundles/v1.rpb"))?;
    run_shown(&["state", "init", "--state", &format!("{BASE}/state")])?;
    let config = format!(
        "[policy]\nbundle_dir = \"{BASE}/bundles\"\ntrust = \"/etc/rampart/trust.json\"\n\
         state_dir = \"{BASE}/state\"\ngoverns = [\"/demo.slice\"]\n\n[lineage]\n\
         dir = \"{BASE}/lineage\"\nhost_key = \"/etc/rampart/host.key\"\n\n[daemon]\n\
         control_socket = \"{BASE}/control.sock\"\n"
    );
    std::fs::write("/etc/rampart/rampart.toml", &config)?;
    say(&config
        .lines()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n"));
    say("$ rampart run --config /etc/rampart/rampart.toml   (in the background)");
    let events = base.join("events.jsonl");
    *agent = Some(spawn_agent(
        &["run", "--config", "/etc/rampart/rampart.toml"],
        &events,
        &base.join("agent.log"),
    )?);
    let socket = format!("{BASE}/control.sock");
    run_shown(&["status", "--socket", &socket])?;
    let mut decisions = Decisions {
        file: events,
        seen: 0,
    };

    step(
        4,
        "A workload in /demo.slice: what the policy allows runs, the rest is denied",
    );
    workload("run the app", &[APP, "probe"])?;
    decisions.show(false);
    say("  (from here on, the app's own allowed start is not repeated)");
    workload(
        "run another program",
        &[&format!("{FIXTURES}/denied-probe"), "probe"],
    )?;
    decisions.show(true);
    workload(
        "read /srv/demo/public/index.html",
        &[APP, "op", "open", "/srv/demo/public/index.html", "read"],
    )?;
    decisions.show(true);
    workload(
        "read /srv/secret.txt",
        &[APP, "op", "open", "/srv/secret.txt", "read"],
    )?;
    decisions.show(true);
    workload(
        "connect to 127.0.0.1:8080",
        &[APP, "op", "connect", "127.0.0.1:8080/tcp"],
    )?;
    decisions.show(true);
    workload(
        "connect to 127.0.0.1:22",
        &[APP, "op", "connect", "127.0.0.1:22/tcp"],
    )?;
    decisions.show(true);
    workload(
        "read /srv/demo/reports/q3.txt",
        &[APP, "op", "open", "/srv/demo/reports/q3.txt", "read"],
    )?;
    decisions.show(true);

    step(
        5,
        "A live update: version 2 also allows the reports; pushed to the running daemon",
    );
    let v2 = std::fs::read_to_string(POLICY)?.replace(
        "    - path: /srv/demo/public/\n      access: [read]\n",
        "    - path: /srv/demo/public/\n      access: [read]\n    - path: /srv/demo/reports/\n      access: [read]\n",
    );
    std::fs::write(t("demo-app.yaml"), v2)?;
    run_shown(&[
        "policy",
        "sign",
        "--key",
        &t("alice.key"),
        "--key",
        &t("bob.key"),
        "--version",
        "2",
        "--expires",
        "30d",
        "--scope",
        "demo-fleet",
        &t("demo-app.yaml"),
        "-o",
        &t("v2.rpb"),
    ])?;
    run_shown(&["policy", "push", "--socket", &socket, &t("v2.rpb")])?;
    workload(
        "read /srv/demo/reports/q3.txt",
        &[APP, "op", "open", "/srv/demo/reports/q3.txt", "read"],
    )?;
    decisions.show(true);

    step(
        6,
        "An attacker alters a signed bundle (version 3): it is rejected, v2 stays",
    );
    let mut env: Value = serde_json::from_slice(&std::fs::read(t("v2.rpb"))?)?;
    let payload = env["payload"].as_str().context("payload")?.to_owned();
    let mut chars: Vec<char> = payload.chars().collect();
    chars[60] = if chars[60] == 'A' { 'B' } else { 'A' };
    env["payload"] = chars.into_iter().collect::<String>().into();
    std::fs::write(t("tampered.rpb"), env.to_string())?;
    say(&format!(
        "$ rampart policy push --socket {socket} {}",
        t("tampered.rpb")
    ));
    match rampart(&["policy", "push", "--socket", &socket, &t("tampered.rpb")]) {
        Ok(out) => bail!("the tampered bundle was accepted: {out}"),
        Err(e) => say(&format!(
            "  {}",
            format!("{e:#}").lines().last().unwrap_or_default()
        )),
    }
    workload(
        "read /srv/secret.txt",
        &[APP, "op", "open", "/srv/secret.txt", "read"],
    )?;
    decisions.show(true);

    step(
        7,
        "Break-glass: the team signs a one-time token, the operator releases enforcement with \
         it; the daemon records it and stops",
    );
    run_shown(&[
        "break-glass",
        "--key",
        &t("alice.key"),
        "--key",
        &t("bob.key"),
        "--scope",
        "demo-fleet",
        "--expires",
        "15m",
        "--reason",
        "demo: end of the walkthrough",
        "-o",
        &t("release-token.json"),
    ])?;
    run_shown(&[
        "release",
        "--yes",
        "--socket",
        &socket,
        "--token",
        &t("release-token.json"),
    ])?;
    if let Some(mut child) = agent.take() {
        let status = child.wait()?;
        say(&format!("  (the daemon exited: {status})"));
    }
    workload(
        "run another program (nothing is enforced now)",
        &[&format!("{FIXTURES}/denied-probe"), "probe"],
    )?;
    step(8, "The lineage is verified");
    let verify = Command::new(AGENT)
        .args([
            "lineage",
            "verify",
            &format!("{BASE}/lineage"),
            "--pub",
            "/etc/rampart/host.pub",
        ])
        .output()?;
    say(&format!(
        "$ rampart lineage verify {BASE}/lineage --pub /etc/rampart/host.pub"
    ));
    for line in String::from_utf8_lossy(&verify.stdout).lines() {
        say(&format!("  {line}"));
    }
    say(&format!("  (exit {})", verify.status.code().unwrap_or(-1)));
    if verify.status.code() != Some(0) {
        bail!("the lineage did not verify as intact");
    }
    run_shown(&[
        "lineage",
        "show",
        &format!("{BASE}/lineage"),
        "--kind",
        "policy-change",
    ])?;
    run_shown(&[
        "lineage",
        "show",
        &format!("{BASE}/lineage"),
        "--kind",
        "release",
    ])?;
    step(
        9,
        "Replay: every decision recomputed from the archived bundles; a proof for a denial",
    );
    let lineage = format!("{BASE}/lineage");
    let bundles = format!("{BASE}/state/bundles");
    run_shown(&[
        "lineage",
        "replay",
        &lineage,
        "--pub",
        "/etc/rampart/host.pub",
        "--trust",
        "/etc/rampart/trust.json",
        "--bundles",
        &bundles,
    ])?;
    let denial = last_denial(&lineage)?;
    let proof = format!("{BASE}/denial-proof.json");
    run_shown(&[
        "lineage",
        "prove",
        &lineage,
        "--seq",
        &denial.to_string(),
        "-o",
        &proof,
    ])?;
    let files = ship::dir("lineage/", &base.join("lineage"))?;
    let bundle_files = ship::dir("bundles/", &base.join("state/bundles"))?;
    ship::file("trust.json", Path::new("/etc/rampart/trust.json"))?;
    ship::file("denial-proof.json", Path::new(&proof))?;
    ship::file("host.pub", Path::new("/etc/rampart/host.pub"))?;
    say(&format!(
        "shipping the lineage ({files} files), {bundle_files} archived bundles, the trust \
         root, the proof and host.pub to the host"
    ));
    Ok(())
}

/// The seq of the last denied decision in the lineage at `dir`.
fn last_denial(dir: &str) -> Result<u64> {
    let out = rampart(&["lineage", "show", dir, "--decision", "deny", "--json"])?;
    out.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["seq"].as_u64())
        .next_back()
        .context("the lineage records no denial")
}

/// Runs the demo; the last line says whether it worked.
/// `rampart.mode=demo`: the guest set-up, then the story; its last line says how it ended.
pub fn main() -> std::process::ExitCode {
    if let Err(e) = crate::harness::env::set_up() {
        println!("{}", Line::DemoEnd(Err(format!("guest set-up: {e:#}"))));
        return std::process::ExitCode::FAILURE;
    }
    let mut agent = None;
    let result = story(&mut agent);
    if let Some(mut c) = agent {
        let _ = c.kill();
    }
    match result {
        Ok(()) => {
            println!("{}", Line::DemoEnd(Ok(())));
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            println!("{}", Line::DemoEnd(Err(format!("{e:#}"))));
            std::process::ExitCode::FAILURE
        }
    }
}
