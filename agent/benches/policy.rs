//! Policy cost on the host CPU (no emulation): verifying a signed bundle and compiling its
//! policy, for 1 000, 10 000 and 100 000 rules. The kernel side of a load is in the `load`
//! bench (host kernel, root) and in the VM (`cargo xtask bench`).
//! Run: `cargo bench -p rampart --bench policy`.

mod common;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rampart::{
    bundle::verify,
    policy::{compile, Literal, PolicySource},
};

fn benches(c: &mut Criterion) {
    let signers = common::Signers::new();
    let ctx = signers.context();
    let mut g = c.benchmark_group("policy");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    for rules in [1_000usize, 10_000, 100_000] {
        let text = common::policy(rules, "/bench.slice");
        let bytes = signers.bundle(&text, 1);
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
