//! Lineage speed: append (in memory and to disk with the 100 ms flush policy), verify, and
//! the cost of a checkpoint. Throughput is reported in records/s (criterion "elements").
//! Run: `cargo bench -p rampart --bench lineage`.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rampart::{
    bundle::SecretKey,
    lineage::{
        decision::DecisionRecord,
        record::{encode, record_hash, Body, Header, GENESIS},
        verify::verify,
        writer::{Config, Stamp, Writer},
    },
};

/// A realistic decision: about 300 bytes as a lineage line.
fn decision(i: u64) -> DecisionRecord {
    DecisionRecord {
        ktime_ns: 1_000_000 + i,
        pid: 31337,
        tid: 31337,
        uid: 33,
        comm: "nginx".into(),
        cgroup_id: 4711,
        action: "open",
        decision: "allow",
        reason: "allowed",
        rule_id: Some(3),
        policy_id: 1,
        policy_version: 42,
        policy: Some("web-server".into()),
        rule: Some("spec.files[3]".into()),
        bundle: None,
        access: Some("read".into()),
        path: Some("/srv/www/static/css/site.css".into()),
        path_truncated: false,
        file_dev: Some(2049),
        file_ino: Some(1_234_567),
        endpoint: None,
        peer_pid: None,
    }
}

fn scratch(name: &str, base: &str) -> PathBuf {
    let dir = PathBuf::from(base).join(format!("rampart-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn writer(dir: &std::path::Path) -> Writer {
    let mut cfg = Config::new(dir);
    cfg.checkpoint_every = u64::MAX;
    cfg.checkpoint_interval = Duration::from_secs(3600);
    cfg.max_buffer_bytes = usize::MAX;
    Writer::open(cfg, SecretKey::generate().unwrap(), 42, None)
        .unwrap()
        .0
}

const BATCH: u64 = 100_000;

fn benches(c: &mut Criterion) {
    let d = decision(7);
    let line = encode(
        &Header {
            seq: 123_456,
            prev: GENESIS,
            segment: 3,
            boot: "6f1c2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f",
            mono_ns: 1_000_007,
            time_ns: 1_795_320_595_000_000_000,
            policy_version: 42,
        },
        &Body::Decision(&d),
    );
    eprintln!("decision record line: {} bytes", line.len());

    let mut g = c.benchmark_group("lineage");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements(BATCH));

    // In memory: encode, hash, tree, buffer; the buffer handed every 4096 records to a
    // segment on tmpfs (/dev/shm), so it stays the size a daemon's does (it writes every
    // 100 ms) instead of growing to the whole batch.
    g.bench_function("append_in_memory", |b| {
        let dir = scratch("mem", "/dev/shm");
        let mut w = writer(&dir);
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                for i in 0..BATCH {
                    w.append(
                        Stamp {
                            mono_ns: 1,
                            time_ns: 2,
                        },
                        Some(42),
                        &Body::Decision(&d),
                    )
                    .unwrap();
                    if i % 4096 == 4095 {
                        w.flush().unwrap();
                    }
                }
                w.flush().unwrap();
            }
            start.elapsed()
        });
        drop(w);
        let _ = std::fs::remove_dir_all(&dir);
    });

    // To disk: write + fdatasync at least every 100 ms, as the daemon does.
    g.bench_function("append_to_disk_flush_100ms", |b| {
        let dir = scratch("disk", env!("CARGO_TARGET_TMPDIR"));
        let mut w = writer(&dir);
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let mut last = Instant::now();
                for _ in 0..BATCH {
                    w.append(
                        Stamp {
                            mono_ns: 1,
                            time_ns: 2,
                        },
                        Some(42),
                        &Body::Decision(&d),
                    )
                    .unwrap();
                    if last.elapsed() >= Duration::from_millis(100) {
                        w.flush().unwrap();
                        last = Instant::now();
                    }
                }
                w.flush().unwrap();
            }
            start.elapsed()
        });
        let _ = std::fs::remove_dir_all(&dir);
    });

    // Verify: a lineage of BATCH decisions.
    let dir = scratch("verify", env!("CARGO_TARGET_TMPDIR"));
    let key = SecretKey::generate().unwrap();
    let public = key.public();
    let mut cfg = Config::new(&dir);
    cfg.checkpoint_every = 10_000;
    let (mut w, _) = Writer::open(cfg, key, 42, None).unwrap();
    for _ in 0..BATCH {
        w.append(Stamp::now(), Some(42), &Body::Decision(&d))
            .unwrap();
    }
    w.close("bench").unwrap();
    g.bench_function("verify", |b| {
        b.iter(|| {
            let r = verify(&dir, &public, None).unwrap();
            assert_eq!(r.exit_code(), 0);
        })
    });
    let _ = std::fs::remove_dir_all(&dir);

    // Checking a line is one JSON object (what verify does besides hashing), for scale.
    g.bench_function("json_check_only", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                let at = rampart::lineage::record::fixed_header(&line).map_or(0, |(_, at)| at);
                let mut body = vec![b'{'];
                body.extend_from_slice(&line[at..]);
                std::hint::black_box(
                    serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok(),
                );
            }
        })
    });

    // Appending a leaf to the Merkle tree alone, for scale.
    g.bench_function("tree_append_only", |b| {
        let leaf = rampart::lineage::tree::leaf_hash(&record_hash(&line));
        b.iter(|| {
            let mut f = rampart::lineage::tree::Frontier::default();
            let mut stored = Vec::with_capacity(64 * 33);
            for _ in 0..BATCH {
                f.push(leaf, &mut stored);
                stored.clear();
            }
            std::hint::black_box(f.size())
        })
    });

    // The hash alone, for scale.
    g.bench_function("hash_only", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                std::hint::black_box(record_hash(&line));
            }
        })
    });
    g.finish();

    // One checkpoint: sign, record, write + fsync the segment, append to the checkpoint file.
    let mut g = c.benchmark_group("lineage_checkpoint");
    g.sample_size(20);
    let dir = scratch("cp", env!("CARGO_TARGET_TMPDIR"));
    let mut w = writer(&dir);
    g.bench_function("checkpoint", |b| {
        b.iter(|| {
            w.append(Stamp::now(), Some(42), &Body::Decision(&d))
                .unwrap();
            w.checkpoint().unwrap();
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(lineage, benches);
criterion_main!(lineage);
