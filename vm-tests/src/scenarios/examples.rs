//! The example policies users start from (policies/*.yaml) load into the real kernel and
//! govern their cgroups: in each, the test probe (which no example allows) is denied in
//! enforce mode and runs, recorded, in audit mode.

use std::{path::Path, process::Command};

use anyhow::{bail, Context, Result};

use serde_json::Value;

use crate::harness::agent::{spawn_agent, terminate_agent};
use crate::harness::env::{Env, AGENT, CGROUP_ROOT};
use crate::harness::observe::{exec_target, Outcome};

pub const EXAMPLES: &str = "/usr/share/rampart/policies";

pub fn examples_load(env: &mut Env) -> Result<String> {
    let mut files: Vec<_> = std::fs::read_dir(EXAMPLES)
        .with_context(|| format!("reading {EXAMPLES}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    if files.len() < 3 {
        bail!(
            "expected the three example policies in {EXAMPLES}, found {}",
            files.len()
        );
    }
    let mut done = Vec::new();
    for file in &files {
        let f = file.to_string_lossy().into_owned();
        let compiled = Path::new("/tmp/example-compiled.json");
        let out = Command::new(AGENT)
            .args(["policy", "compile", "--host", &f, "-o"])
            .arg(compiled)
            .output()?;
        if !out.status.success() {
            bail!(
                "{f} does not compile: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let policies: Vec<Value> = serde_json::from_slice(&std::fs::read(compiled)?)?;
        let mut cgroups = Vec::new();
        for p in &policies {
            for g in p["governs"].as_array().context("no governs")? {
                let dir =
                    Path::new(CGROUP_ROOT).join(g.as_str().unwrap_or("").trim_start_matches('/'));
                std::fs::create_dir_all(&dir)?;
                cgroups.push((dir, p["mode"].as_str().unwrap_or("").to_owned()));
            }
        }
        let log = Path::new("/tmp/example-agent.log");
        let child = spawn_agent(
            &["run", "--no-pin", "--policy", &f],
            Path::new("/tmp/example-events.jsonl"),
            log,
        )?;
        let mut outcomes = Vec::new();
        for (dir, mode) in &cgroups {
            let got = exec_target(env, dir, &env.allowed)?;
            let want_ok = mode == "audit";
            if want_ok != (got == Outcome::Ran) || (!want_ok && !got.denied()) {
                let _ = terminate_agent(child, log);
                bail!(
                    "{f}: in {} ({mode}) the unlisted probe gave {got:?}",
                    dir.display()
                );
            }
            outcomes.push(format!("{} {mode}", dir.display()));
        }
        terminate_agent(child, log)?;
        let text = std::fs::read_to_string(log)?;
        for p in &policies {
            let name = p["name"].as_str().unwrap_or("");
            if !text.contains(&format!("\"policy\":\"{name}\"")) {
                bail!("{f}: the agent did not log policy {name} as loaded");
            }
        }
        done.push(format!(
            "{} ({})",
            file.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            outcomes.join(", ")
        ));
    }
    Ok(format!("loaded and governing: {}", done.join("; ")))
}
