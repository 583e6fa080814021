//! Intake on the host: which bundle of a directory is chosen, and why the others are not.

use std::path::PathBuf;

use super::{prepare, BundleLocation, BundleSource, PolicyOrigin, Refusal};
use crate::{
    bundle::{
        envelope::Envelope,
        keys::SecretKey,
        payload::{source_digest, Payload, PolicyFile, BUNDLE_FORMAT, BUNDLE_TYPE},
        state::StateDir,
        trust::TrustRoot,
    },
    support::time::unix_now,
};

const SCOPE: &str = "intake-test";

struct Site {
    dir: PathBuf,
    key: SecretKey,
    stranger: SecretKey,
}

impl Site {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("rampart-intake-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bundles")).expect("bundle dir");
        StateDir::new(&dir.join("state"))
            .init(unix_now())
            .expect("state initialised");
        let key = SecretKey::generate().expect("key");
        let trust = TrustRoot::new(vec![key.public()], 1, SCOPE, 1, unix_now()).expect("root");
        std::fs::write(dir.join("trust.json"), trust.envelope.to_bytes()).expect("trust");
        Self {
            dir,
            key,
            stranger: SecretKey::generate().expect("key"),
        }
    }

    fn source(&self, allowed: Option<&[&str]>) -> PolicyOrigin {
        PolicyOrigin::Bundle(BundleSource {
            location: BundleLocation::Dir(self.dir.join("bundles")),
            trust: self.dir.join("trust.json"),
            state: self.dir.join("state"),
            scope: None,
            clock_skew: 300,
            allowed: allowed.map(|a| a.iter().map(|s| (*s).to_owned()).collect()),
            pin_dir: None,
        })
    }

    /// Writes bundle `file` with `version`, for `scope`, governing `cgroup`, signed by `key`.
    fn bundle(&self, file: &str, version: u64, scope: &str, cgroup: &str, key: &SecretKey) {
        let text = format!(
            "apiVersion: rampart.dev/v1alpha1\nkind: Policy\nmetadata:\n  name: v{version}\n\
             spec:\n  governs: [{cgroup}]\n  files:\n    - {{path: /srv/v{version}/, access: [read]}}\n"
        );
        let now = unix_now();
        let payload = Payload {
            format: BUNDLE_FORMAT,
            version,
            issued_at: now - 60,
            expires_at: now + 86_400,
            scope: scope.into(),
            min_agent_version: "0.1.0".into(),
            policies: vec![PolicyFile {
                name: "p.yaml".into(),
                digest: source_digest(&text),
                source: text,
            }],
        };
        let mut envelope = Envelope::new(BUNDLE_TYPE, payload.to_bytes());
        envelope.sign(key).expect("sign");
        std::fs::write(self.dir.join("bundles").join(file), envelope.to_bytes()).expect("write");
    }
}

fn codes(skipped: &[(PathBuf, Refusal)]) -> Vec<(String, &'static str)> {
    let mut v: Vec<_> = skipped
        .iter()
        .map(|(p, r)| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            (name.unwrap_or_default(), r.code)
        })
        .collect();
    v.sort();
    v
}

fn choose(origin: &PolicyOrigin) -> (Result<u64, &'static str>, Vec<(String, &'static str)>) {
    let mut skipped = Vec::new();
    let chosen = prepare(origin, 0, &mut skipped)
        .map(|incoming| incoming.info.version)
        .map_err(|r| r.code);
    (chosen, codes(&skipped))
}

#[test]
fn the_newest_valid_bundle_is_chosen_and_each_other_refused_with_its_code() {
    let site = Site::new("newest");
    site.bundle("a.rpb", 1, SCOPE, "/demo", &site.key);
    site.bundle("b.rpb", 3, SCOPE, "/demo", &site.key);
    site.bundle("c.rpb", 2, SCOPE, "/demo", &site.key);
    site.bundle("d.rpb", 5, SCOPE, "/demo", &site.stranger);
    site.bundle("e.rpb", 4, "elsewhere", "/demo", &site.key);
    std::fs::write(site.dir.join("bundles/notes.txt"), "not a bundle").expect("write");
    let (chosen, skipped) = choose(&site.source(None));
    assert_eq!(chosen, Ok(3));
    assert_eq!(
        skipped,
        vec![
            ("d.rpb".to_owned(), "below-threshold"),
            ("e.rpb".to_owned(), "wrong-scope")
        ]
    );
}

#[test]
fn an_empty_directory_has_no_valid_bundle() {
    let site = Site::new("empty");
    assert_eq!(choose(&site.source(None)), (Err("no-valid-bundle"), vec![]));
}

#[test]
fn bundles_older_than_the_accepted_version_are_rollbacks() {
    let site = Site::new("rollback");
    site.bundle("v3.rpb", 3, SCOPE, "/demo", &site.key);
    let mut skipped = Vec::new();
    let incoming = prepare(&site.source(None), 0, &mut skipped).expect("v3 accepted");
    let (verified, state) = incoming.bundle.as_ref().expect("a bundle");
    state.advance(verified, unix_now()).expect("state advances");
    std::fs::remove_file(site.dir.join("bundles/v3.rpb")).expect("remove");
    site.bundle("v1.rpb", 1, SCOPE, "/demo", &site.key);
    site.bundle("v2.rpb", 2, SCOPE, "/demo", &site.key);
    assert_eq!(
        choose(&site.source(None)),
        (
            Err("no-valid-bundle"),
            vec![
                ("v1.rpb".to_owned(), "rollback"),
                ("v2.rpb".to_owned(), "rollback")
            ]
        )
    );
}

#[test]
fn a_bundle_governing_outside_the_allowed_cgroups_is_refused() {
    let site = Site::new("allowed");
    site.bundle("v1.rpb", 1, SCOPE, "/batch.slice/job", &site.key);
    assert_eq!(choose(&site.source(Some(&["/batch.slice"]))).0, Ok(1));
    // A sibling whose name starts the same is not below it.
    site.bundle("v2.rpb", 2, SCOPE, "/batch.slice-other", &site.key);
    assert_eq!(
        choose(&site.source(Some(&["/batch.slice"]))).0,
        Err("cgroup-not-allowed")
    );
}

#[test]
fn one_bundle_file_is_refused_with_its_reason() {
    let site = Site::new("file");
    site.bundle("v1.rpb", 1, SCOPE, "/demo", &site.stranger);
    let origin = PolicyOrigin::Bundle(BundleSource {
        location: BundleLocation::File(site.dir.join("bundles/v1.rpb")),
        trust: site.dir.join("trust.json"),
        state: site.dir.join("state"),
        scope: None,
        clock_skew: 300,
        allowed: None,
        pin_dir: None,
    });
    assert_eq!(choose(&origin).0, Err("below-threshold"));
}

#[test]
fn a_host_whose_state_was_never_initialised_accepts_nothing() {
    let site = Site::new("uninitialised");
    std::fs::remove_file(
        site.dir
            .join("state")
            .join(crate::bundle::state::STATE_FILE),
    )
    .expect("remove the state");
    let origin = PolicyOrigin::Bundle(BundleSource {
        location: BundleLocation::File(site.dir.join("bundles/v1.rpb")),
        ..match site.source(None) {
            PolicyOrigin::Bundle(b) => b,
            PolicyOrigin::Files(_) => unreachable!("a bundle source"),
        }
    });
    site.bundle("v1.rpb", 1, SCOPE, "/demo", &site.key);
    assert_eq!(choose(&origin).0, Err("state-missing"));
}
