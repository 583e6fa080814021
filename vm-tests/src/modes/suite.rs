//! The scenario suite: runs every scenario (or those named by `rampart.only=a,b` on the
//! kernel command line) in its agent phase, and reports each on the console.

use std::process::ExitCode;

use rampart_vm_tests::protocol::{Line, Outcome, ScenarioResult};

use crate::{
    harness::agent::{agent_log, start_agent, stop_agent},
    harness::env::set_up,
    scenarios::{self, AgentPhase, Requires},
};

fn report(result: ScenarioResult) {
    println!("{}", Line::Result(result));
}

fn only_from_cmdline() -> Option<Vec<String>> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").ok()?;
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("rampart.only="))
        .map(|list| list.split(',').map(str::to_owned).collect())
}

/// Runs the suite; the exit status says whether every scenario passed.
pub fn run() -> ExitCode {
    let only = only_from_cmdline();
    let selected: Vec<&scenarios::Scenario> = scenarios::ALL
        .iter()
        .filter(|s| only.as_ref().is_none_or(|o| o.iter().any(|n| n == s.name)))
        .collect();
    let unknown: Vec<&String> = only
        .iter()
        .flatten()
        .filter(|n| !scenarios::ALL.iter().any(|s| s.name == n.as_str()))
        .collect();
    let mut names: Vec<&str> = selected.iter().map(|s| s.name).collect();
    names.extend(unknown.iter().map(|n| n.as_str()));
    println!(
        "{}",
        Line::Plan(names.iter().map(|n| (*n).to_owned()).collect())
    );
    for name in &unknown {
        report(ScenarioResult {
            scenario: (*name).clone(),
            outcome: Outcome::Fail,
            detail: "no such scenario (see the names in a full run's table)".into(),
        });
    }
    println!(
        "{}",
        Line::Plan(names.iter().map(|n| (*n).to_owned()).collect())
    );

    let mut env = match set_up() {
        Ok(env) => env,
        Err(e) => {
            for s in &selected {
                report(ScenarioResult {
                    scenario: s.name.into(),
                    outcome: Outcome::Fail,
                    detail: format!("guest set-up failed: {e:#}"),
                });
            }
            println!("{}", Line::End);
            return ExitCode::FAILURE;
        }
    };

    let mut failed = !unknown.is_empty();
    let mut agent_error: Option<String> = None;
    for phase in [
        AgentPhase::NotStarted,
        AgentPhase::Running,
        AgentPhase::Stopped,
    ] {
        let in_phase: Vec<_> = selected.iter().filter(|s| s.phase == phase).collect();
        if in_phase.is_empty() {
            continue;
        }
        if phase == AgentPhase::Running && env.bpf_lsm.is_ok() {
            if let Err(e) = start_agent(&mut env) {
                agent_error = Some(format!("{e:#}"));
            }
        }
        if phase == AgentPhase::Stopped && env.agent.is_some() {
            if let Err(e) = stop_agent(&mut env) {
                agent_error = Some(format!("{e:#}"));
            }
        }
        for s in in_phase {
            let (outcome, detail) = match (s.requires, &env.bpf_lsm, &agent_error) {
                (Requires::BpfLsm, Err(why), _) => (Outcome::Skip, why.clone()),
                (Requires::NoBpfLsm, Ok(()), _) => (
                    Outcome::Skip,
                    "needs a kernel booted without BPF-LSM (the 6.12-no-bpf-lsm matrix entry)"
                        .into(),
                ),
                (Requires::BpfLsm, Ok(()), Some(e)) if phase != AgentPhase::NotStarted => {
                    (Outcome::Fail, format!("agent: {e}"))
                }
                _ => match (s.run)(&mut env) {
                    Ok(detail) => (Outcome::Pass, detail),
                    Err(e) => (Outcome::Fail, format!("{e:#}")),
                },
            };
            failed |= outcome == Outcome::Fail;
            report(ScenarioResult {
                scenario: s.name.into(),
                outcome,
                detail,
            });
        }
    }
    if let Some(mut child) = env.agent.take() {
        let _ = child.kill();
    }
    if failed {
        println!("--- agent log ---\n{}--- end agent log ---", agent_log());
    }
    println!("{}", Line::End);
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
