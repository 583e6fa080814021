//! Evidence speed: proving a record and a consistency in a tree of 10 million records (from
//! its stored-hash file, as `lineage prove` does), and replaying decisions (`lineage
//! replay`: verify, put bundles in force, recompute each decision with explain).
//! Run: `cargo bench -p rampart --bench evidence`.

use std::{io::Write, path::PathBuf, time::Duration};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rampart::{
    bundle::{
        payload::{source_digest, PolicyFile, BUNDLE_FORMAT, BUNDLE_TYPE},
        state::StateDir,
        verify::AGENT_VERSION,
        Context, Envelope, Payload, SecretKey, TrustRoot,
    },
    lineage::{
        decision::DecisionRecord,
        record::Body,
        tree::{leaf_hash, Frontier, TreeFile, TREE_FILE},
        writer::{Config, Stamp, Writer},
    },
    policy::{
        compile::Literal,
        explain::{explain, Request},
        host::compile_sources,
        resolutions::Recording,
        source::PolicySource,
    },
    replay::{replay, Inputs},
};

/// Records in the tree proofs are made from.
const TREE_RECORDS: u64 = 10_000_000;
/// Decisions replayed per iteration.
const DECISIONS: u64 = 100_000;

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("rampart-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A tree file of `n` synthetic leaves, as the writer leaves it.
fn tree_of(n: u64) -> PathBuf {
    let dir = scratch("tree");
    let mut out = std::io::BufWriter::new(std::fs::File::create(dir.join(TREE_FILE)).unwrap());
    let mut f = Frontier::default();
    let mut raw = Vec::new();
    for i in 0..n {
        raw.clear();
        f.push(
            leaf_hash(blake3::hash(&i.to_le_bytes()).as_bytes()),
            &mut raw,
        );
        out.write_all(&raw).unwrap();
    }
    out.flush().unwrap();
    dir
}

const NOW: u64 = 1_800_000_000;
const POLICY: &str = "apiVersion: rampart.dev/v1alpha1
kind: Policy
metadata:
  name: app
spec:
  governs: [/app.slice]
  events: all
  files:
    - path: /srv/app/
      access: [read]
    - path: /var/log/app/
      access: [read, write]
  network:
    - cidr: 10.0.0.0/8
      ports: [443]
      protocol: tcp
";

/// A lineage of one signed policy put in force and `DECISIONS` decisions made under it;
/// returns (lineage dir, archive dir, host key, trust root).
fn replay_fixture() -> (PathBuf, PathBuf, rampart::bundle::PublicKey, TrustRoot) {
    let base = scratch("replay");
    let signer = SecretKey::generate().unwrap();
    let trust = TrustRoot::new(vec![signer.public()], 1, "bench", 1, NOW - 3600).unwrap();
    let payload = Payload {
        format: BUNDLE_FORMAT,
        version: 1,
        issued_at: NOW - 60,
        expires_at: NOW + 86_400,
        scope: "bench".into(),
        min_agent_version: "0.1.0".into(),
        policies: vec![PolicyFile {
            name: "app.yaml".into(),
            digest: source_digest(POLICY),
            source: POLICY.into(),
        }],
    };
    let mut e = Envelope::new(BUNDLE_TYPE, payload.to_bytes());
    e.sign(&signer).unwrap();
    let v = rampart::bundle::verify(
        &e.to_bytes(),
        &Context {
            trust: &trust,
            scope: "bench",
            now: NOW,
            clock_skew: 300,
            agent_version: AGENT_VERSION,
        },
    )
    .unwrap();
    let state = base.join("state");
    StateDir::new(&state).archive(&v).unwrap();
    let source = PolicySource::parse("app.yaml", POLICY).unwrap();
    let rec = Recording::new(&Literal);
    let policy = compile_sources(&[source], &rec).unwrap().remove(0);
    let resolved = rec.into_resolutions();
    let host = SecretKey::generate().unwrap();
    let public = host.public();
    let lineage = base.join("lineage");
    let (mut w, _) = Writer::open(Config::new(&lineage), host, 1, None).unwrap();
    let stamp = Stamp {
        mono_ns: 1,
        time_ns: NOW * 1_000_000_000,
    };
    w.append(
        stamp,
        Some(1),
        &Body::PolicyChange {
            old_version: 0,
            new_version: 1,
            old_digest: None,
            new_digest: Some(&v.digest),
            signers: &[],
            policies: &["app".into()],
            resolved: Some(&resolved),
        },
    )
    .unwrap();
    let paths = [
        "/srv/app/static/site.css",
        "/var/log/app/access.log",
        "/etc/shadow",
    ];
    for i in 0..DECISIONS {
        let path = paths[(i % 3) as usize];
        let request = Request::Open {
            path: path.into(),
            access: rampart_common::access::READ,
            identity: None,
            cgroup: None,
        };
        let x = explain(&policy, &request);
        let d = DecisionRecord {
            ktime_ns: i,
            pid: 31337,
            tid: 31337,
            uid: 33,
            comm: "app".into(),
            cgroup_id: 4711,
            action: x.action,
            decision: x.decision,
            reason: x.reason,
            rule_id: x.rule_id,
            policy_id: 0,
            policy_version: 1,
            policy: Some("app".into()),
            rule: x.rule,
            bundle: Some(v.digest.clone()),
            access: Some("read".into()),
            path: Some(path.into()),
            path_truncated: false,
            file_dev: Some(2049),
            file_ino: Some(1_234_567),
            endpoint: None,
            peer_pid: None,
        };
        w.append(stamp, Some(1), &Body::Decision(&d)).unwrap();
    }
    w.close("bench").unwrap();
    (lineage, state.join("bundles"), public, trust)
}

fn benches(c: &mut Criterion) {
    let dir = tree_of(TREE_RECORDS);
    let tree = TreeFile::open(&dir).unwrap();
    let mut g = c.benchmark_group("proof_10m_records");
    g.sample_size(50);
    g.measurement_time(Duration::from_secs(5));
    let mut n = 0u64;
    g.bench_function("inclusion", |b| {
        b.iter(|| {
            n = (n + 7_919_993) % TREE_RECORDS;
            tlog_tiles::prove_record(TREE_RECORDS, n, &tree).unwrap()
        })
    });
    g.bench_function("consistency", |b| {
        b.iter(|| {
            n = (n + 7_919_993) % TREE_RECORDS;
            tlog_tiles::prove_tree(TREE_RECORDS, n.max(1), &tree).unwrap()
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);

    let (lineage, bundles, public, trust) = replay_fixture();
    let mut g = c.benchmark_group("replay");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements(DECISIONS));
    g.bench_function("decisions", |b| {
        b.iter(|| {
            let r = replay(&Inputs {
                dir: &lineage,
                key: &public,
                trust: &trust,
                bundles: &bundles,
            })
            .unwrap();
            assert_eq!((r.replayed, r.divergences), (DECISIONS, 0));
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(lineage.parent().unwrap());
}

criterion_group!(evidence, benches);
criterion_main!(evidence);
