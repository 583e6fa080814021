//! Policy cost on the host CPU (no emulation): verifying a signed bundle and compiling its
//! policy, for 1 000, 10 000 and 100 000 rules. The kernel side of a load (map updates and
//! the swap) is measured in the VM by `cargo xtask bench`.
//! Run: `cargo bench -p rampart --bench policy`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rampart::{
    bundle::{
        envelope::Envelope,
        payload::{source_digest, Payload, PolicyFile, BUNDLE_FORMAT, BUNDLE_TYPE},
        verify, Context, SecretKey, TrustRoot,
    },
    policy::{compile, Literal, PolicySource},
};

const NOW: u64 = 1_800_000_000;

/// A policy with `rules` file rules (plus an exec and a network rule).
fn policy(rules: usize) -> String {
    let mut s = String::from(
        "apiVersion: rampart.dev/v1alpha1\nkind: Policy\nmetadata:\n  name: bench\nspec:\n  \
         governs: [/bench.slice]\n  exec:\n    allow: [/usr/bin/app]\n  files:\n",
    );
    // Short paths: 100 000 rules must fit the 4 MiB policy file limit.
    for i in 0..rules.saturating_sub(2) {
        s.push_str(&format!("    - {{path: /s/{i}, access: [read]}}\n"));
    }
    s.push_str("  network:\n    - cidr: 10.0.0.0/8\n      ports: [443]\n      protocol: tcp\n");
    s
}

fn benches(c: &mut Criterion) {
    let keys: Vec<SecretKey> = (0..2).map(|_| SecretKey::generate().unwrap()).collect();
    let trust = TrustRoot::new(
        keys.iter().map(SecretKey::public).collect(),
        2,
        "bench",
        1,
        NOW,
    )
    .unwrap();
    let ctx = Context {
        trust: &trust,
        scope: "bench",
        now: NOW,
        clock_skew: 300,
        agent_version: "0.1.0",
    };
    let mut g = c.benchmark_group("policy");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    for rules in [1_000usize, 10_000, 100_000] {
        let text = policy(rules);
        let payload = Payload {
            format: BUNDLE_FORMAT,
            version: 1,
            issued_at: NOW - 10,
            expires_at: NOW + 3600,
            scope: "bench".into(),
            min_agent_version: "0.1.0".into(),
            policies: vec![PolicyFile {
                name: "bench.yaml".into(),
                digest: source_digest(&text),
                source: text.clone(),
            }],
        };
        let mut env = Envelope::new(BUNDLE_TYPE, payload.to_bytes());
        for k in &keys {
            env.sign(k).unwrap();
        }
        let bytes = env.to_bytes();
        g.throughput(Throughput::Elements(rules as u64));
        g.bench_with_input(
            BenchmarkId::new("bundle_verify", rules),
            &bytes,
            |b, bytes| b.iter(|| verify(bytes, &ctx).unwrap()),
        );
        g.bench_with_input(
            BenchmarkId::new("parse_and_compile", rules),
            &text,
            |b, text| {
                b.iter(|| {
                    let src = PolicySource::parse("bench.yaml", text).unwrap();
                    compile(&src.documents[0], "bench.yaml", &Literal).unwrap()
                })
            },
        );
    }
    g.finish();
}

criterion_group!(policy_benches, benches);
criterion_main!(policy_benches);
