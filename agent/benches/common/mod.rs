//! What the policy and load benches share: a generated policy of N rules and its signed
//! bundle, verified against a 2-of-2 trust root.

use rampart::bundle::{
    envelope::Envelope,
    payload::{source_digest, Payload, PolicyFile, BUNDLE_FORMAT, BUNDLE_TYPE},
    Context, SecretKey, TrustRoot,
};

/// The bundle clock's "now" (seconds since the epoch).
pub const NOW: u64 = 1_800_000_000;

/// A policy governing `cgroup` with `rules` rules: `rules - 2` file rules, one exec and one
/// network rule. Short paths: 100 000 rules must fit the 4 MiB policy file limit.
pub fn policy(rules: usize, cgroup: &str) -> String {
    let mut s = format!(
        "apiVersion: rampart.dev/v1alpha1\nkind: Policy\nmetadata:\n  name: bench\nspec:\n  \
         governs: [{cgroup}]\n  exec:\n    allow: [/usr/bin/app]\n  files:\n"
    );
    for i in 0..rules.saturating_sub(2) {
        s.push_str(&format!("    - {{path: /s/{i}, access: [read]}}\n"));
    }
    s.push_str("  network:\n    - cidr: 10.0.0.0/8\n      ports: [443]\n      protocol: tcp\n");
    s
}

/// Two signing keys and the trust root that needs both.
pub struct Signers {
    pub keys: Vec<SecretKey>,
    pub trust: TrustRoot,
}

impl Signers {
    pub fn new() -> Self {
        let keys: Vec<SecretKey> = (0..2)
            .map(|_| SecretKey::generate().expect("generating a key"))
            .collect();
        let trust = TrustRoot::new(
            keys.iter().map(SecretKey::public).collect(),
            2,
            "bench",
            1,
            NOW,
        )
        .expect("a trust root");
        Self { keys, trust }
    }

    /// What `verify` checks bundles against.
    pub fn context(&self) -> Context<'_> {
        Context {
            trust: &self.trust,
            scope: "bench",
            now: NOW,
            clock_skew: 300,
            agent_version: env!("CARGO_PKG_VERSION"),
        }
    }

    /// A bundle of `version` holding `text`, signed by both keys.
    pub fn bundle(&self, text: &str, version: u64) -> Vec<u8> {
        let payload = Payload {
            format: BUNDLE_FORMAT,
            version,
            issued_at: NOW - 10,
            expires_at: NOW + 3600,
            scope: "bench".into(),
            min_agent_version: "0.1.0".into(),
            policies: vec![PolicyFile {
                name: "bench.yaml".into(),
                digest: source_digest(text),
                source: text.to_owned(),
            }],
        };
        let mut env = Envelope::new(BUNDLE_TYPE, payload.to_bytes());
        for k in &self.keys {
            env.sign(k).expect("signing");
        }
        env.to_bytes()
    }
}
