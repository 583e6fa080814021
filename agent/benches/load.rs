//! A whole policy load on this host's kernel, natively: verify a signed bundle, parse and
//! compile it (resolving paths on this host, as the daemon does), write its rules into the
//! kernel maps and switch a governed cgroup to it: the time until the new policy is in
//! force, for 1 000, 10 000 and 100 000 rules. Each iteration replaces the previous one's
//! policy, as a reload does (emptying the old slots afterwards is not counted: the new
//! policy is already in force; it is reported separately as `retire`).
//!
//! Needs root, cgroup v2 and the agent built with its eBPF object (`cargo xtask
//! build-ebpf`). The LSM programs are not attached (this host's kernel may lack BPF-LSM and
//! the loading cost does not depend on them); the governed cgroup is an empty one made for
//! the bench. Without root it prints why and measures nothing.
//! Run: `sudo -E cargo bench -p rampart --bench load`.

mod common;

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rampart::{
    bundle::verify,
    daemon::swap::{self, Generation, LoadTimes},
    kernel::{
        btf::Btf,
        cgroup,
        enforcer::{Enforcer, SlotInfo},
        layout, preflight,
    },
    policy::{host, PolicySource},
};

/// Removes the bench's cgroup when done (the enforcer, dropped first, detaches from it).
struct BenchCgroup(PathBuf);

impl Drop for BenchCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn benches(c: &mut Criterion) {
    if let Some(why) = preflight::native_unavailable() {
        eprintln!("load bench SKIPPED: {why}");
        // For `cargo xtask bench`'s report.
        println!("load-skipped {why}");
        return;
    }
    let raw = Btf::from_sys_fs().expect("reading /sys/kernel/btf/vmlinux");
    let layout = layout::resolve(&Btf::parse(&raw).expect("parsing BTF")).expect("kernel layout");
    let hierarchy = cgroup::hierarchy_root().expect("cgroup v2");
    let name = format!("rampart-bench-load-{}", std::process::id());
    let cg = BenchCgroup(hierarchy.join(&name));
    std::fs::create_dir_all(&cg.0).expect("creating the bench cgroup");
    let mut enforcer = Enforcer::load_network_only(&layout).expect("loading the eBPF object");
    let signers = common::Signers::new();
    let ctx = signers.context();
    let mut current: Option<Generation> = None;
    let mut phases: Vec<(usize, LoadTimes)> = Vec::new();

    let mut g = c.benchmark_group("load");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    for rules in [1_000usize, 10_000, 100_000] {
        let bytes = signers.bundle(&common::policy(rules, &format!("/{name}")), 1);
        g.throughput(Throughput::Elements(rules as u64));
        g.bench_function(BenchmarkId::new("verify_compile_load", rules), |b| {
            b.iter_custom(|iters| {
                let mut in_force = Duration::ZERO;
                for _ in 0..iters {
                    let started = Instant::now();
                    let verified = verify(&bytes, &ctx).expect("verify");
                    let verified_at = Instant::now();
                    let sources: Vec<PolicySource> = verified
                        .payload
                        .policies
                        .iter()
                        .map(|f| PolicySource::parse(&f.name, &f.source).expect("parse"))
                        .collect();
                    let policies = host::compile_sources(&sources, &host::Host).expect("compile");
                    let mut times = LoadTimes {
                        verify: verified_at - started,
                        compile: verified_at.elapsed(),
                        ..LoadTimes::default()
                    };
                    let info = SlotInfo {
                        version: 1,
                        expires_boot_ns: 0,
                        extra_flags: 0,
                    };
                    let next = swap::switch(
                        &mut enforcer,
                        &|name: &str| cgroup::open_in_hierarchy(&hierarchy, name),
                        current.as_ref(),
                        policies,
                        info,
                        &mut times,
                    )
                    .expect("switch");
                    current = Some(next);
                    in_force += times.to_in_force();
                    phases.push((rules, times));
                }
                in_force
            })
        });
    }
    g.finish();
    // The median of each step, one JSON line per rule count for `cargo xtask bench`
    // (criterion measures their sum).
    for rules in [1_000usize, 10_000, 100_000] {
        let of = |step: fn(&LoadTimes) -> Duration| {
            let mut v: Vec<Duration> = phases
                .iter()
                .filter(|(n, _)| *n == rules)
                .map(|(_, t)| step(t))
                .collect();
            v.sort_unstable();
            v.get(v.len() / 2).map_or(0.0, |d| d.as_secs_f64() * 1e3)
        };
        println!(
            "load-steps {}",
            serde_json::json!({
                "rules": rules,
                "verify_ms": of(|t| t.verify),
                "compile_ms": of(|t| t.compile),
                "install_ms": of(|t| t.install),
                "switch_ms": of(|t| t.switch),
                "retire_ms": of(|t| t.retire),
            })
        );
    }
    drop(current);
    drop(enforcer);
    drop(cg);
}

criterion_group!(load_benches, benches);
criterion_main!(load_benches);
