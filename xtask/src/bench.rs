//! `cargo xtask bench`: one guest boot per kernel measures hook overhead, policy reload cost,
//! map memory and agent RSS (vm-tests/src/bench.rs); this side collects the results, computes
//! ratios to "no Rampart" from the same boot, and writes target/bench/report.{json,md}.

use std::{collections::BTreeMap, fmt::Write as _};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::{vm, workspace_root};

/// The median of values.
fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// Per (config, op): the median over rounds of the per-round medians and p99s.
fn summarise(results: &[Value]) -> BTreeMap<(String, String), (u64, u64)> {
    let mut by: BTreeMap<(String, String), (Vec<u64>, Vec<u64>)> = BTreeMap::new();
    for r in results {
        let key = (
            r["config"].as_str().unwrap_or("?").to_owned(),
            r["op"].as_str().unwrap_or("?").to_owned(),
        );
        let e = by.entry(key).or_default();
        e.0.push(r["median_ns"].as_u64().unwrap_or(0));
        e.1.push(r["p99_ns"].as_u64().unwrap_or(0));
    }
    by.into_iter()
        .map(|(k, (m, p))| (k, (median(m), median(p))))
        .collect()
}

fn report_md(kernels: &[Value]) -> String {
    let mut md = String::from(
        "# Rampart benchmark report\n\nProduced by `cargo xtask bench`: QEMU TCG guests (software \
         emulation, so absolute times are slow; compare ratios). Each row: median over rounds of \
         per-round medians / p99s; ratio = median / median of (a) in the same boot.\n",
    );
    for k in kernels {
        let _ = writeln!(
            md,
            "\n## Kernel {} ({} vCPUs)\n\n| configuration | op | median ns | p99 ns | ratio to (a) |\n| --- | --- | ---: | ---: | ---: |",
            k["kernel"].as_str().unwrap_or("?"),
            k["cpus"]
        );
        let summary = summarise(k["results"].as_array().map_or(&[][..], |v| v));
        for ((config, op), (m, p)) in &summary {
            let base = summary
                .get(&("a: no rampart".to_owned(), op.clone()))
                .map_or(0, |b| b.0);
            let ratio = if base > 0 {
                *m as f64 / base as f64
            } else {
                0.0
            };
            let _ = writeln!(md, "| {config} | {op} | {m} | {p} | {ratio:.3} |");
        }
        let _ = writeln!(
            md,
            "\n| rules | reload (SIGHUP to in force) ms | kernel map memlock bytes | agent RSS KiB |\n| ---: | ---: | ---: | ---: |"
        );
        for l in k["loads"].as_array().map_or(&[][..], |v| v) {
            let _ = writeln!(
                md,
                "| {} | {:.1} | {} | {} |",
                l["rules"],
                l["reload_ms"].as_f64().unwrap_or(0.0),
                l["map_memlock_bytes"],
                l["agent_rss_kib"]
            );
        }
        let _ = writeln!(
            md,
            "\nAgent RSS: idle {} KiB, after the largest policy {} KiB.",
            k["agent_rss_kib"]["idle"], k["agent_rss_kib"]["after_50k_rules"]
        );
        let ep = &k["event_path"];
        let _ = writeln!(
            md,
            "\nEvent path (every decision an event, agent writing a lineage, 10 s per rate): \
             highest rate with zero drops {} decisions/s; lineage verify exit {} (3 = the gaps \
             recorded at the overload rate).\n\n| offered rate /s | achieved /s | events lost |\n| ---: | ---: | ---: |",
            ep["highest_zero_drop_rate"], ep["lineage_verify_exit"]
        );
        for r in ep["runs"].as_array().map_or(&[][..], |v| v) {
            let _ = writeln!(
                md,
                "| {} | {} | {} |",
                r["rate"], r["achieved_per_s"], r["lost"]
            );
        }
    }
    md
}

pub fn bench() -> Result<()> {
    let boots = vm::bench_boots()?;
    if boots.is_empty() {
        bail!("no kernel produced benchmark results");
    }
    let out = workspace_root().join("target").join("bench");
    std::fs::create_dir_all(&out)?;
    let json = json!({ "kernels": boots });
    std::fs::write(out.join("report.json"), serde_json::to_vec_pretty(&json)?)
        .context("writing report.json")?;
    let md = report_md(&boots);
    std::fs::write(out.join("report.md"), &md).context("writing report.md")?;
    println!("{md}");
    println!(
        "written: {} and {}",
        out.join("report.md").display(),
        out.join("report.json").display()
    );
    Ok(())
}
