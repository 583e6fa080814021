//! `cargo xtask bench`: the host's criterion benches (native CPU and kernel: bundle verify,
//! policy compile, a whole policy load into this host's kernel maps, lineage append and
//! verify), then one guest boot per kernel measuring hook overhead, policy reload steps,
//! map memory, agent RSS and the event path (vm-tests/src/bench.rs). This side collects
//! both, computes the ratios to "no Rampart" round by round, and writes
//! target/bench/report.{json,md}.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    time::SystemTime,
};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::{ebpf, vm, workspace::workspace_root};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Only the host's criterion benches (no VM boot).
    #[arg(long, conflicts_with = "vm_only")]
    host_only: bool,
    /// Only the VM measurements (skip the host's criterion benches).
    #[arg(long)]
    vm_only: bool,
}

/// The criterion benches `cargo xtask bench` runs on the host.
const HOST_BENCHES: [&str; 5] = ["policy", "load", "lineage", "evidence", "event_path"];

/// The median of values (0 for none).
fn median_f(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Runs the host benches; returns criterion's estimates written by this run, the load
/// bench's per-step medians, and why the load bench skipped (if it did).
fn host_benches() -> Result<Value> {
    ebpf::build()?;
    let started = SystemTime::now();
    eprintln!(
        "==> criterion benches on the host ({}); a few minutes",
        HOST_BENCHES.join(", ")
    );
    let mut cmd = Command::new("cargo");
    cmd.current_dir(workspace_root())
        .args(["bench", "-p", "rampart"]);
    for b in HOST_BENCHES {
        cmd.args(["--bench", b]);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .context("running cargo bench")?;
    let mut steps = Vec::new();
    let mut skipped = None;
    let mut event_path = Value::Null;
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let line = line?;
            eprintln!("{line}");
            if let Some(j) = line.strip_prefix("load-steps ") {
                steps.push(serde_json::from_str::<Value>(j).context("a load-steps line")?);
            } else if let Some(why) = line.strip_prefix("load-skipped ") {
                skipped = Some(why.to_owned());
            } else if let Some(j) = line.strip_prefix("event-path ") {
                event_path = serde_json::from_str(j).context("the event-path line")?;
            } else if let Some(why) = line.strip_prefix("event-path-skipped ") {
                event_path = json!({ "skipped": why });
            }
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("cargo bench failed ({status})");
    }
    let estimates =
        criterion_estimates(&workspace_root().join("target").join("criterion"), started)?;
    Ok(json!({
        "criterion": estimates,
        "load_steps": steps,
        "load_skipped": skipped,
        "event_path": event_path,
    }))
}

/// Every criterion result under `dir` written since `since`: id, median ns, elements per
/// iteration (if the bench declared a throughput).
fn criterion_estimates(dir: &Path, since: SystemTime) -> Result<Vec<Value>> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.filter_map(|e| e.ok()) {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.file_name().is_none_or(|n| n != "benchmark.json")
                || p.parent()
                    .and_then(Path::file_name)
                    .is_none_or(|n| n != "new")
            {
                continue;
            }
            let fresh = e
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= since);
            if !fresh {
                continue;
            }
            let read = |name: &str| -> Result<Value> {
                let f = p.with_file_name(name);
                serde_json::from_slice(&std::fs::read(&f)?)
                    .with_context(|| format!("parsing {}", f.display()))
            };
            let bench = read("benchmark.json")?;
            let est = read("estimates.json")?;
            found.push(json!({
                "id": bench["full_id"],
                "median_ns": est["median"]["point_estimate"],
                "elements": bench["throughput"]["Elements"],
            }));
        }
    }
    found.sort_by_key(|v| v["id"].as_str().unwrap_or("").to_owned());
    Ok(found)
}

/// A duration in ns, in the unit that reads best.
fn human_ns(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn host_md(md: &mut String, host: &Value) {
    let _ = writeln!(
        md,
        "\n## Host (native, criterion)\n\nThis machine's CPU and kernel, no emulation. Median \
         of criterion's samples.\n\n| benchmark | median | per second |\n| --- | ---: | ---: |"
    );
    for e in host["criterion"].as_array().map_or(&[][..], |v| v) {
        let ns = e["median_ns"].as_f64().unwrap_or(0.0);
        let rate = match e["elements"].as_f64() {
            Some(n) if ns > 0.0 => format!("{:.0}", n / (ns / 1e9)),
            _ => "".into(),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {rate} |",
            e["id"].as_str().unwrap_or("?"),
            human_ns(ns)
        );
    }
    if let Some(why) = host["load_skipped"].as_str() {
        let _ = writeln!(md, "\nThe kernel load bench was SKIPPED: {why}.");
    }
    let ep = &host["event_path"];
    if let Some(why) = ep["skipped"].as_str() {
        let _ = writeln!(md, "\nThe native event path bench was SKIPPED: {why}.");
    } else if !ep.is_null() {
        let _ = writeln!(
            md,
            "\nEvent path on this host's kernel (`event_path` bench: UDP `sendmsg4` decisions \
             with `events: all` into the ring, drained by the agent's pipeline on one thread into \
             an event file and a lineage; {} s per rate): highest rate with zero drops {} \
             events/s; the lineage's {} records then verified at {} records/s (exit {}: 3 = \
             the gaps recorded at the overload rates).\n\n| offered rate /s | recorded /s | \
             events lost |\n| ---: | ---: | ---: |",
            ep["seconds_per_rate"],
            ep["highest_zero_drop_rate"],
            ep["lineage_records"],
            ep["lineage_verify_per_s"],
            ep["lineage_verify_exit"]
        );
        for r in ep["runs"].as_array().map_or(&[][..], |v| v) {
            let _ = writeln!(
                md,
                "| {} | {} | {} |",
                r["rate"], r["recorded_per_s"], r["lost"]
            );
        }
    }
    let steps = host["load_steps"].as_array().map_or(&[][..], |v| v);
    if !steps.is_empty() {
        let _ = writeln!(
            md,
            "\nA whole load into this host's kernel (`load` bench), step by step (medians; the \
             policy is in force after `switch`; `retire` runs after it):\n\n| rules | verify ms | \
             compile ms | install ms | switch ms | in force ms | retire ms |\n| ---: | ---: | ---: \
             | ---: | ---: | ---: | ---: |"
        );
        for s in steps {
            let f = |k: &str| s[k].as_f64().unwrap_or(f64::NAN);
            let _ = writeln!(
                md,
                "| {} | {:.1} | {:.1} | {:.1} | {:.2} | {:.1} | {:.1} |",
                s["rules"],
                f("verify_ms"),
                f("compile_ms"),
                f("install_ms"),
                f("switch_ms"),
                f("verify_ms") + f("compile_ms") + f("install_ms") + f("switch_ms"),
                f("retire_ms")
            );
        }
    }
}

/// Per configuration and op, in order of first appearance: the median over rounds of the
/// per-round medians and p99s, and the per-round ratios to (a) of the same round.
struct Row {
    config: String,
    op: String,
    medians: Vec<f64>,
    p99s: Vec<f64>,
    ratios: Vec<f64>,
}

fn overhead_rows(results: &[Value]) -> Vec<Row> {
    // The (a) median of each (round, op): every round starts with (a).
    let mut round = 0usize;
    let mut seen_b = false;
    let mut base: BTreeMap<(usize, String), f64> = BTreeMap::new();
    let mut rows: Vec<Row> = Vec::new();
    for r in results {
        let config = r["config"].as_str().unwrap_or("?").to_owned();
        let op = r["op"].as_str().unwrap_or("?").to_owned();
        let m = r["median_ns"].as_f64().unwrap_or(0.0);
        if config.starts_with("a:") {
            if seen_b {
                round += 1;
                seen_b = false;
            }
            base.insert((round, op.clone()), m);
        } else {
            seen_b = true;
        }
        let idx = match rows.iter().position(|x| x.config == config && x.op == op) {
            Some(i) => i,
            None => {
                rows.push(Row {
                    config,
                    op: op.clone(),
                    medians: Vec::new(),
                    p99s: Vec::new(),
                    ratios: Vec::new(),
                });
                rows.len() - 1
            }
        };
        let row = &mut rows[idx];
        row.medians.push(m);
        row.p99s.push(r["p99_ns"].as_f64().unwrap_or(0.0));
        if let Some(b) = base.get(&(round, op)).filter(|b| **b > 0.0) {
            row.ratios.push(m / b);
        }
    }
    rows.sort_by_key(|r| r.op.clone());
    rows
}

fn kernel_md(md: &mut String, k: &Value) {
    let _ = writeln!(
        md,
        "\n## Kernel {} ({} vCPUs, QEMU TCG, {} interleaved rounds)\n\n| configuration | op | \
         median ns | p99 ns | ratio to (a) | ratio range over rounds |\n| --- | --- | ---: | ---: \
         | ---: | ---: |",
        k["kernel"].as_str().unwrap_or("?"),
        k["cpus"],
        k["rounds"]
    );
    for row in overhead_rows(k["results"].as_array().map_or(&[][..], |v| v)) {
        let (lo, hi) = row
            .ratios
            .iter()
            .fold((f64::MAX, f64::MIN), |(l, h), r| (l.min(*r), h.max(*r)));
        let range = if row.ratios.is_empty() {
            String::new()
        } else {
            format!("{lo:.3} to {hi:.3}")
        };
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} | {:.0} | {:.3} | {range} |",
            row.config,
            row.op,
            median_f(row.medians.clone()),
            median_f(row.p99s.clone()),
            median_f(row.ratios.clone()),
        );
    }
    let _ = writeln!(
        md,
        "\nPolicy reloads (SIGHUP with local policy files, so no bundle verify; medians over \
         rounds; the policy is in force after `switch`):\n\n| rules | SIGHUP to in force ms | \
         compile ms | install ms | switch ms | retire ms | kernel map memlock bytes | agent RSS \
         KiB |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    let loads = k["loads"].as_array().map_or(&[][..], |v| v);
    let footprint = k["footprint"].as_array().map_or(&[][..], |v| v);
    let mut counts: Vec<u64> = loads.iter().filter_map(|l| l["rules"].as_u64()).collect();
    counts.sort_unstable();
    counts.dedup();
    for n in counts {
        let of = |key: &str| {
            median_f(
                loads
                    .iter()
                    .filter(|l| l["rules"].as_u64() == Some(n))
                    .filter_map(|l| l[key].as_f64())
                    .collect(),
            )
        };
        let fp = footprint.iter().find(|f| f["rules"].as_u64() == Some(n));
        let _ = writeln!(
            md,
            "| {n} | {:.1} | {:.1} | {:.1} | {:.2} | {:.1} | {} | {} |",
            of("sighup_to_in_force_ms"),
            of("compile_ms"),
            of("install_ms"),
            of("switch_ms"),
            of("retire_ms"),
            fp.map_or(Value::Null, |f| f["map_memlock_bytes"].clone()),
            fp.map_or(Value::Null, |f| f["agent_rss_kib"].clone()),
        );
    }
    let _ = writeln!(
        md,
        "\nAgent RSS right after start (10 rules): {} KiB.",
        k["agent_rss_kib_start"]
    );
    let ep = &k["event_path"];
    let _ = writeln!(
        md,
        "\nEvent path (every decision an event, agent writing a lineage, 10 s per rate): \
         highest rate with zero drops {} decisions/s; lineage verify exit {} (3 = the gaps \
         recorded at the overload rate).\n\n| offered rate /s | achieved /s | events lost | agent \
         RSS max KiB |\n| ---: | ---: | ---: | ---: |",
        ep["highest_zero_drop_rate"], ep["lineage_verify_exit"]
    );
    for r in ep["runs"].as_array().map_or(&[][..], |v| v) {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            r["rate"], r["achieved_per_s"], r["lost"], r["agent_rss_kib_max"]
        );
    }
}

fn report_md(host: Option<&Value>, kernels: &[Value]) -> String {
    let mut md = String::from(
        "# Rampart benchmark report\n\nProduced by `cargo xtask bench`. Host rows are native; \
         kernel rows come from QEMU TCG guests (software emulation, so absolute times are slow; \
         compare ratios). Kernel rows: median over rounds of per-round medians / p99s; each \
         round measures (a) first, so every ratio divides by the (a) of its own round.\n",
    );
    if let Some(h) = host {
        host_md(&mut md, h);
    }
    for k in kernels {
        kernel_md(&mut md, k);
    }
    md
}

pub fn bench(args: &BenchArgs) -> Result<()> {
    let host = if args.vm_only {
        None
    } else {
        Some(host_benches()?)
    };
    let boots = if args.host_only {
        Vec::new()
    } else {
        let b = vm::bench_boots()?;
        if b.is_empty() {
            bail!("no kernel produced benchmark results");
        }
        b
    };
    let out = workspace_root().join("target").join("bench");
    std::fs::create_dir_all(&out)?;
    let json = json!({ "host": host, "kernels": boots });
    std::fs::write(out.join("report.json"), serde_json::to_vec_pretty(&json)?)
        .context("writing report.json")?;
    let md = report_md(host.as_ref(), &boots);
    std::fs::write(out.join("report.md"), &md).context("writing report.md")?;
    println!("{md}");
    println!(
        "written: {} and {}",
        out.join("report.md").display(),
        out.join("report.json").display()
    );
    Ok(())
}
