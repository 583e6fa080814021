//! Replay tests: a lineage written as the daemon writes it (policy changes naming archived,
//! signed bundles, decisions as the kernel made them) replays with no divergence; a verdict
//! changed and re-signed with the host key diverges at that record; the same signed with
//! another key fails verification; a lineage naming a bundle never signed by the trust root,
//! or not archived, is caught.

use std::path::{Path, PathBuf};

use super::{replay, Inputs};
use crate::{
    bundle::{
        envelope::Envelope,
        keys::{PublicKey, SecretKey},
        payload::{source_digest, Payload, PolicyFile, BUNDLE_FORMAT, BUNDLE_TYPE},
        state::StateDir,
        trust::TrustRoot,
        verify::{verify, Context, VerifiedBundle, AGENT_VERSION},
    },
    lineage::{
        decision::DecisionRecord,
        record::Body,
        writer::{Config, Stamp, Writer},
    },
    policy::{
        compile::{CompiledPolicy, Literal},
        explain::{explain, Request},
        host::compile_sources,
        resolutions::{Recording, Resolutions},
        source::{PolicySource, Protocol},
    },
};

const NOW: u64 = 1_800_000_000;
const SCOPE: &str = "replay-test";

fn policy(version: u64) -> String {
    // Each version grants one more directory, so decisions differ between versions.
    format!(
        "apiVersion: rampart.dev/v1alpha1
kind: Policy
metadata:
  name: app
spec:
  governs: [/app.slice]
  events: all
  files:
    - path: /srv/v1/
      access: [read]
    - path: /srv/w{version}/
      access: [read, write]
  network:
    - cidr: 10.0.0.0/8
      ports: [443]
      protocol: tcp
"
    )
}

struct Fleet {
    base: PathBuf,
    signer: SecretKey,
    trust: TrustRoot,
}

impl Fleet {
    fn new(name: &str) -> Self {
        let base =
            std::env::temp_dir().join(format!("rampart-replay-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let signer = SecretKey::generate().unwrap();
        let trust = TrustRoot::new(vec![signer.public()], 1, SCOPE, 1, NOW - 3600).unwrap();
        Self {
            base,
            signer,
            trust,
        }
    }

    fn bundle(&self, version: u64, key: &SecretKey) -> Vec<u8> {
        let source = policy(version);
        let payload = Payload {
            format: BUNDLE_FORMAT,
            version,
            issued_at: NOW - 60,
            expires_at: NOW + 86_400,
            scope: SCOPE.into(),
            min_agent_version: "0.1.0".into(),
            policies: vec![PolicyFile {
                name: "app.yaml".into(),
                digest: source_digest(&source),
                source,
            }],
        };
        let mut e = Envelope::new(BUNDLE_TYPE, payload.to_bytes());
        e.sign(key).unwrap();
        e.to_bytes()
    }

    fn verified(&self, bytes: &[u8], trust: &TrustRoot) -> VerifiedBundle {
        verify(
            bytes,
            &Context {
                trust,
                scope: SCOPE,
                now: NOW,
                clock_skew: 300,
                agent_version: AGENT_VERSION,
            },
        )
        .unwrap()
    }

    fn state(&self) -> PathBuf {
        self.base.join("state")
    }

    fn lineage(&self, name: &str) -> PathBuf {
        self.base.join(name)
    }
}

fn compiled(v: &VerifiedBundle) -> (Vec<CompiledPolicy>, Resolutions) {
    let sources: Vec<PolicySource> = v
        .payload
        .policies
        .iter()
        .map(|f| PolicySource::parse(&f.name, &f.source).unwrap())
        .collect();
    let rec = Recording::new(&Literal);
    let policies = compile_sources(&sources, &rec).unwrap();
    (policies, rec.into_resolutions())
}

fn requests(version: u64) -> Vec<Request> {
    let open = |p: &str, access| Request::Open {
        path: p.into(),
        access,
        identity: None,
        cgroup: None,
    };
    use rampart_common::access::{READ, WRITE};
    vec![
        open("/srv/v1/a.txt", READ),
        open("/srv/v1/a.txt", WRITE),
        open(&format!("/srv/w{version}/b.txt"), READ | WRITE),
        // Allowed only from the next version on: replay must judge by the version in force.
        open(&format!("/srv/w{}/c.txt", version + 1), READ),
        open("/etc/shadow", READ),
        Request::Connect {
            addr: "10.1.2.3:443".parse().unwrap(),
            protocol: Protocol::Tcp,
        },
        Request::Connect {
            addr: "192.168.0.1:443".parse().unwrap(),
            protocol: Protocol::Tcp,
        },
        Request::Remove {
            path: "/srv/v1/a.txt".into(),
            dir: false,
        },
    ]
}

/// The decision record the kernel would emit for `request` under `policy`, annotated as
/// the daemon annotates it.
fn record(
    policy: &CompiledPolicy,
    version: u64,
    digest: &str,
    request: &Request,
) -> DecisionRecord {
    let e = explain(policy, request);
    let endpoint = match request {
        Request::Connect { addr, .. } => Some(format!("{addr}/tcp")),
        _ => None,
    };
    let access = match request {
        Request::Open { access, .. } => Some(crate::policy::compile::access_names(*access)),
        Request::Remove { .. } => Some("remove".into()),
        _ => None,
    };
    DecisionRecord {
        ktime_ns: 1,
        pid: 7,
        tid: 7,
        uid: 0,
        comm: "app".into(),
        cgroup_id: 99,
        action: e.action,
        decision: e.decision,
        reason: e.reason,
        rule_id: e.rule_id,
        policy_id: 0,
        policy_version: version,
        policy: Some(policy.name.clone()),
        rule: e.rule,
        bundle: Some(digest.into()),
        access,
        path: e.path,
        path_truncated: false,
        file_dev: None,
        file_ino: None,
        endpoint,
        peer_pid: None,
    }
}

/// A lineage of versions 1..=3 put in force, each judged on its requests; `falsify`:
/// the seq-th decision's verdict flipped as written (a lying or broken recorder).
fn write(f: &Fleet, dir: &Path, host: SecretKey, falsify: Option<usize>) -> u64 {
    let (mut w, _) = Writer::open(Config::new(dir), host, 0, None).unwrap();
    let stamp = Stamp {
        mono_ns: 1,
        time_ns: NOW * 1_000_000_000,
    };
    let mut n = 0;
    let mut previous: Option<(CompiledPolicy, String)> = None;
    for version in 1..=3 {
        let bytes = f.bundle(version, &f.signer);
        let v = f.verified(&bytes, &f.trust);
        StateDir::new(&f.state()).archive(&v).unwrap();
        let (policies, resolved) = compiled(&v);
        w.append(
            stamp,
            Some(version),
            &Body::PolicyChange {
                old_version: version - 1,
                new_version: version,
                old_digest: None,
                new_digest: Some(&v.digest),
                signers: &[],
                policies: &["app".into()],
                resolved: Some(&resolved),
            },
        )
        .unwrap();
        // An event of the previous version still in the ring after the swap.
        let late = previous.take().map(|(p, digest)| {
            let request = requests(version - 1).swap_remove(3);
            (record(&p, version - 1, &digest, &request), request)
        });
        let mut todo: Vec<(DecisionRecord, Request)> = late.into_iter().collect();
        todo.extend(
            requests(version)
                .into_iter()
                .map(|q| (record(&policies[0], version, &v.digest, &q), q)),
        );
        previous = Some((policies[0].clone(), v.digest.clone()));
        for (mut d, _) in todo {
            if falsify == Some(n) {
                d.decision = if d.decision == "allow" {
                    "deny"
                } else {
                    "allow"
                };
            }
            w.append(stamp, Some(version), &Body::Decision(&d)).unwrap();
            n += 1;
        }
    }
    w.close("test").unwrap();
    n as u64
}

fn inputs<'a>(f: &'a Fleet, dir: &'a Path, key: &'a PublicKey, bundles: &'a Path) -> Inputs<'a> {
    Inputs {
        dir,
        key,
        trust: &f.trust,
        bundles,
    }
}

#[test]
fn every_decision_replays_to_the_same_verdict() {
    let f = Fleet::new("agree");
    let host = SecretKey::generate().unwrap();
    let public = host.public();
    let dir = f.lineage("lineage");
    let n = write(&f, &dir, host, None);
    let bundles = super::default_bundles(&f.state());
    let r = replay(&inputs(&f, &dir, &public, &bundles)).unwrap();
    assert_eq!(r.exit_code(), 0, "{r:#?}");
    assert_eq!(
        (r.decisions, r.replayed, r.agreed, r.divergences),
        (n, n, n, 0)
    );
    assert_eq!((r.policy_changes, r.policy_changes_verified), (3, 3));
    std::fs::remove_dir_all(&f.base).unwrap();
}

#[test]
fn a_verdict_changed_and_signed_by_the_host_diverges_and_by_another_key_fails() {
    let f = Fleet::new("diverge");
    let host = SecretKey::generate().unwrap();
    let public = host.public();
    let dir = f.lineage("lineage");
    write(&f, &dir, host, Some(9));
    let bundles = super::default_bundles(&f.state());
    let r = replay(&inputs(&f, &dir, &public, &bundles)).unwrap();
    assert_eq!(r.exit_code(), 2, "{r:#?}");
    assert_eq!(r.divergences, 1);
    let d = r.first_divergence.unwrap();
    // agent-start, policy-change v1, 8 decisions, policy-change v2, then decision 9.
    assert_eq!(d.seq, 1 + 1 + 8 + 1 + 1);
    assert_ne!(d.recorded.decision, d.replayed.decision);
    // The same lie with checkpoints signed by a key that is not the host's.
    let forged = f.lineage("forged");
    write(&f, &forged, SecretKey::generate().unwrap(), Some(9));
    let r = replay(&inputs(&f, &forged, &public, &bundles)).unwrap();
    assert_eq!(r.exit_code(), 1, "{r:#?}");
    assert!(r.lineage.tampered.is_some());
    assert_eq!(r.replayed, 0);
    std::fs::remove_dir_all(&f.base).unwrap();
}

#[test]
fn a_lineage_naming_a_bundle_never_signed_or_not_archived_is_caught() {
    let f = Fleet::new("unsigned");
    let host = SecretKey::generate().unwrap();
    let public = host.public();
    let dir = f.lineage("lineage");
    let n = write(&f, &dir, host, None);
    let bundles = super::default_bundles(&f.state());
    // Version 2's bundle replaced in the archive by one with the same policies signed by a
    // key the trust root does not hold, under its own digest, and the record pointed at it:
    // simulated by a trust root without the signer.
    let stranger = SecretKey::generate().unwrap();
    let other_trust = TrustRoot::new(vec![stranger.public()], 1, SCOPE, 1, NOW - 3600).unwrap();
    let r = replay(&Inputs {
        trust: &other_trust,
        ..inputs(&f, &dir, &public, &bundles)
    })
    .unwrap();
    assert_eq!(r.exit_code(), 3, "{r:#?}");
    assert_eq!(r.unverified.len(), 3);
    assert!(r.unverified[0].reason.contains("does not verify"), "{r:#?}");
    assert_eq!((r.replayed, r.not_recomputable), (0, n));
    // Archive gone: each change names a bundle no archive holds.
    std::fs::remove_dir_all(&bundles).unwrap();
    let r = replay(&inputs(&f, &dir, &public, &bundles)).unwrap();
    assert_eq!(r.exit_code(), 3);
    assert!(
        r.unverified[0].reason.contains("no archive holds"),
        "{r:#?}"
    );
    std::fs::remove_dir_all(&f.base).unwrap();
}
