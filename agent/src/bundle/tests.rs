//! Bundle tests: the round trip, and every bad input refused with its exact reason.

use base64::{engine::general_purpose::STANDARD as B64, Engine};

use super::{
    envelope::{pae, Envelope},
    error::BundleError,
    keys::{KeyId, PublicKey, SecretKey},
    payload::{bundle_digest, source_digest, Payload, PolicyFile, BUNDLE_FORMAT, BUNDLE_TYPE},
    state::{check, higher, Mark, Standing, StateDir},
    trust::{TrustRoot, TRUST_ROOT_TYPE},
    verify::{verify, Context, VerifiedBundle, MAX_BUNDLE_BYTES},
};

const NOW: u64 = 1_800_000_000;
const SCOPE: &str = "prod-eu";
const POLICY: &str = "apiVersion: rampart.dev/v1alpha1
kind: Policy
metadata:
  name: demo
spec:
  governs: [/demo]
  exec: [/usr/bin/true]
";

struct Fixture {
    keys: Vec<SecretKey>,
    trust: TrustRoot,
}

fn fixture(n: usize, threshold: usize) -> Fixture {
    let keys: Vec<SecretKey> = (0..n).map(|_| SecretKey::generate().unwrap()).collect();
    let trust = TrustRoot::new(
        keys.iter().map(SecretKey::public).collect(),
        threshold,
        SCOPE,
        1,
        NOW,
    )
    .unwrap();
    Fixture { keys, trust }
}

fn payload(version: u64) -> Payload {
    Payload {
        format: BUNDLE_FORMAT,
        version,
        issued_at: NOW - 60,
        expires_at: NOW + 86_400,
        scope: SCOPE.into(),
        min_agent_version: "0.1.0".into(),
        policies: vec![PolicyFile {
            name: "demo.yaml".into(),
            digest: source_digest(POLICY),
            source: POLICY.into(),
        }],
    }
}

fn signed_bytes(payload_bytes: Vec<u8>, keys: &[&SecretKey]) -> Vec<u8> {
    let mut e = Envelope::new(BUNDLE_TYPE, payload_bytes);
    for k in keys {
        e.sign(k).unwrap();
    }
    e.to_bytes()
}

fn signed(p: &Payload, keys: &[&SecretKey]) -> Vec<u8> {
    signed_bytes(p.to_bytes(), keys)
}

fn ctx(trust: &TrustRoot) -> Context<'_> {
    Context {
        trust,
        scope: SCOPE,
        now: NOW,
        clock_skew: 300,
        agent_version: "0.1.0",
    }
}

fn refused(bytes: &[u8], trust: &TrustRoot) -> String {
    match verify(bytes, &ctx(trust)) {
        Ok(_) => panic!("verified, but should have been refused"),
        Err(e) => e.to_string(),
    }
}

fn good(f: &Fixture, version: u64) -> VerifiedBundle {
    verify(
        &signed(&payload(version), &[&f.keys[0], &f.keys[1]]),
        &ctx(&f.trust),
    )
    .unwrap()
}

#[test]
fn pae_matches_the_dsse_specification() {
    assert_eq!(
        pae("http://example.com/HelloWorld", b"hello world"),
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    );
}

#[test]
fn round_trip_with_threshold_and_cosign() {
    let f = fixture(3, 2);
    let bytes = signed(&payload(7), &[&f.keys[0]]);
    // One signature of two: refused; a second person cosigns: accepted.
    assert_eq!(
        refused(&bytes, &f.trust),
        "1 valid signature(s) from distinct trusted keys, 2 required"
    );
    let mut e = Envelope::parse(&bytes, BUNDLE_TYPE).unwrap();
    let digest_before = bundle_digest(&e.payload);
    e.sign(&f.keys[2]).unwrap();
    let v = verify(&e.to_bytes(), &ctx(&f.trust)).unwrap();
    assert_eq!(v.payload.version, 7);
    assert_eq!(
        v.digest, digest_before,
        "cosigning does not change the digest"
    );
    let mut expect = vec![f.keys[0].id, f.keys[2].id];
    expect.sort();
    assert_eq!(v.signers, expect);
    assert_eq!(
        e.sign(&f.keys[2]).unwrap_err().to_string(),
        format!("key {} has already signed this envelope", f.keys[2].id)
    );
}

#[test]
fn tampered_payload_byte() {
    let f = fixture(2, 1);
    let mut e = Envelope::parse(&signed(&payload(1), &[&f.keys[0]]), BUNDLE_TYPE).unwrap();
    let i = e.payload.len() / 2;
    e.payload[i] ^= 0x01;
    assert_eq!(
        refused(&e.to_bytes(), &f.trust),
        format!(
            "signature 0 by key {} does not verify: the payload or signature was altered",
            f.keys[0].id
        )
    );
}

#[test]
fn tampered_signature() {
    let f = fixture(2, 1);
    let mut e = Envelope::parse(&signed(&payload(1), &[&f.keys[0]]), BUNDLE_TYPE).unwrap();
    e.signatures[0].sig[5] ^= 0x80;
    let err = verify(&e.to_bytes(), &ctx(&f.trust)).unwrap_err();
    assert_eq!(err.code(), "bad-signature");
    assert_eq!(
        err,
        BundleError::BadSignature {
            index: 0,
            keyid: f.keys[0].id.to_string()
        }
    );
}

#[test]
fn unknown_key() {
    let f = fixture(2, 1);
    let stranger = SecretKey::generate().unwrap();
    assert_eq!(
        refused(&signed(&payload(1), &[&stranger]), &f.trust),
        format!(
            "0 valid signature(s) from distinct trusted keys, 1 required (key {} is not \
             among them)",
            stranger.id
        )
    );
}

/// The identity point (y = 1): small order, so it "verifies" some forged signatures
/// under non-strict verification.
const WEAK_KEY: [u8; 32] = {
    let mut k = [0u8; 32];
    k[0] = 1;
    k
};

#[test]
fn weak_small_order_key() {
    let err = PublicKey::from_bytes(&WEAK_KEY).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "key {}: a weak (small-order) key, which could validate forged signatures",
            KeyId::of(&WEAK_KEY)
        )
    );
    // A trust root file that lists one is refused as a whole.
    let good = SecretKey::generate().unwrap().public();
    let root = serde_json::json!({
        "format": 1, "version": 1, "scope": SCOPE, "threshold": 1, "created_at": NOW,
        "keys": [
            {"keyid": good.id.to_string(), "public": B64.encode(good.key.as_bytes())},
            {"keyid": KeyId::of(&WEAK_KEY).to_string(), "public": B64.encode(WEAK_KEY)},
        ]
    });
    let bytes = Envelope::new(TRUST_ROOT_TYPE, root.to_string().into_bytes()).to_bytes();
    assert_eq!(TrustRoot::parse(&bytes).unwrap_err().code(), "bad-key");
}

#[test]
fn same_key_twice_does_not_reach_the_threshold() {
    let f = fixture(3, 2);
    let mut e = Envelope::parse(&signed(&payload(1), &[&f.keys[0]]), BUNDLE_TYPE).unwrap();
    let again = e.signatures[0].clone();
    e.signatures.push(again);
    assert_eq!(
        refused(&e.to_bytes(), &f.trust),
        format!(
            "1 valid signature(s) from distinct trusted keys, 2 required (key {} signed more \
             than once and counts once)",
            f.keys[0].id
        )
    );
}

#[test]
fn below_threshold_and_unsigned() {
    let f = fixture(3, 3);
    assert_eq!(
        refused(&signed(&payload(1), &[&f.keys[0], &f.keys[1]]), &f.trust),
        "2 valid signature(s) from distinct trusted keys, 3 required"
    );
    assert_eq!(
        refused(&signed(&payload(1), &[]), &f.trust),
        "the bundle carries no signature"
    );
}

#[test]
fn rollback_and_equivocation() {
    let f = fixture(2, 2);
    let v5 = good(&f, 5);
    let dir = std::env::temp_dir().join(format!("rampart-state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let state = StateDir::new(&dir);
    // A host that never initialised its state accepts nothing.
    assert_eq!(state.advance(&v5, NOW).unwrap_err().code(), "state-missing");
    let made = state.init(NOW).unwrap();
    assert_eq!((made.version, made.initialised_at), (0, Some(NOW)));
    assert_eq!(state.init(NOW).unwrap_err().code(), "state-unreadable");
    assert_eq!(
        state.advance(&v5, NOW).unwrap().0,
        Standing::Newer { previous: None }
    );
    assert_eq!(state.advance(&v5, NOW).unwrap().0, Standing::Current);
    // Older version: refused, state unchanged.
    let v4 = good(&f, 4);
    assert_eq!(
        state.advance(&v4, NOW).unwrap_err().to_string(),
        "version 4 is older than version 5 already accepted: rollback refused"
    );
    // Same version, other content.
    let mut other = payload(5);
    other.expires_at += 1;
    let v5b = verify(&signed(&other, &[&f.keys[0], &f.keys[1]]), &ctx(&f.trust)).unwrap();
    assert_eq!(
        state.advance(&v5b, NOW).unwrap_err().to_string(),
        format!(
            "version 5 was already accepted with digest {}, this bundle's is {}: \
             equivocation refused",
            v5.digest, v5b.digest
        )
    );
    let kept = state.load().unwrap();
    assert_eq!(
        (kept.version, kept.digest.as_str()),
        (5, v5.digest.as_str())
    );
    // Newer: advances; never lowered afterwards.
    let v9 = good(&f, 9);
    assert_eq!(
        state.advance(&v9, NOW).unwrap().0,
        Standing::Newer { previous: Some(5) }
    );
    assert_eq!(state.load().unwrap().version, 9);
    assert_eq!(state.load().unwrap().initialised_at, Some(NOW));
    assert_eq!(state.advance(&v5, NOW).unwrap_err().code(), "rollback");
    // A corrupt state refuses everything (fail closed) until repaired.
    std::fs::write(state.file(), b"{\"format\": 1, \"vers").unwrap();
    let err = state.advance(&v9, NOW).unwrap_err();
    assert_eq!(err.code(), "state-unreadable");
    assert!(
        err.to_string().contains("no bundle is accepted until"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn check_is_pure() {
    let f = fixture(2, 2);
    assert_eq!(
        check(None, &good(&f, 1)).unwrap(),
        Standing::Newer { previous: None }
    );
}

#[test]
fn expired() {
    let f = fixture(1, 1);
    let mut p = payload(1);
    p.issued_at = NOW - 100;
    p.expires_at = NOW;
    assert_eq!(
        refused(&signed(&p, &[&f.keys[0]]), &f.trust),
        format!("expired at {NOW} (now {NOW})")
    );
}

#[test]
fn issued_in_the_future_beyond_the_skew() {
    let f = fixture(1, 1);
    let mut p = payload(1);
    p.issued_at = NOW + 300; // at the edge of the skew: accepted
    verify(&signed(&p, &[&f.keys[0]]), &ctx(&f.trust)).unwrap();
    p.issued_at = NOW + 301;
    assert_eq!(
        refused(&signed(&p, &[&f.keys[0]]), &f.trust),
        format!(
            "issued at {}, more than 300 s after now ({NOW}): not valid yet",
            NOW + 301
        )
    );
}

#[test]
fn wrong_scope() {
    let f = fixture(1, 1);
    let mut p = payload(1);
    p.scope = "staging".into();
    assert_eq!(
        refused(&signed(&p, &[&f.keys[0]]), &f.trust),
        "scope `staging` of the bundle is not this host's scope `prod-eu`"
    );
}

#[test]
fn wrong_payload_type() {
    let f = fixture(1, 1);
    // A validly signed trust root is not a bundle, whatever its signatures.
    let mut root = f.trust.envelope.clone();
    root.sign(&f.keys[0]).unwrap();
    assert_eq!(
        refused(&root.to_bytes(), &f.trust),
        format!("payload type is `{TRUST_ROOT_TYPE}`, expected `{BUNDLE_TYPE}`")
    );
    // Relabelling a bundle breaks its signature: the type is inside what is signed.
    let mut e = Envelope::parse(&signed(&payload(1), &[&f.keys[0]]), BUNDLE_TYPE).unwrap();
    e.payload_type = TRUST_ROOT_TYPE.into();
    let relabelled = Envelope::parse(&e.to_bytes(), TRUST_ROOT_TYPE).unwrap();
    assert_eq!(
        relabelled.signers(&f.trust.keys).unwrap_err().code(),
        "bad-signature"
    );
}

#[test]
fn truncated_file() {
    let f = fixture(1, 1);
    let bytes = signed(&payload(1), &[&f.keys[0]]);
    let err = verify(&bytes[..bytes.len() / 2], &ctx(&f.trust)).unwrap_err();
    assert_eq!(err.code(), "malformed-envelope");
    assert!(
        err.to_string()
            .starts_with("not a valid envelope: EOF while parsing"),
        "{err}"
    );
}

#[test]
fn oversized_file() {
    let f = fixture(1, 1);
    let big = vec![b' '; MAX_BUNDLE_BYTES as usize + 1];
    assert_eq!(
        refused(&big, &f.trust),
        format!(
            "{} bytes is over the {MAX_BUNDLE_BYTES}-byte limit; refused before parsing",
            MAX_BUNDLE_BYTES + 1
        )
    );
}

#[test]
fn unknown_fields() {
    let f = fixture(1, 1);
    // In the envelope.
    let mut v: serde_json::Value =
        serde_json::from_slice(&signed(&payload(1), &[&f.keys[0]])).unwrap();
    v["comment"] = "hi".into();
    let err = refused(v.to_string().as_bytes(), &f.trust);
    assert!(
        err.starts_with("not a valid envelope: unknown field `comment`"),
        "{err}"
    );
    // In the (signed) payload: the signature is good, the parse is strict.
    let mut p: serde_json::Value = serde_json::to_value(payload(1)).unwrap();
    p["allow_all"] = true.into();
    let err = refused(
        &signed_bytes(p.to_string().into_bytes(), &[&f.keys[0]]),
        &f.trust,
    );
    assert!(
        err.starts_with("payload: unknown field `allow_all`"),
        "{err}"
    );
}

#[test]
fn empty_file() {
    let f = fixture(1, 1);
    assert_eq!(refused(b"", &f.trust), "the file is empty");
    assert_eq!(refused(b" \n", &f.trust), "the file is empty");
}

#[test]
fn source_digest_mismatch_and_agent_version() {
    let f = fixture(1, 1);
    let mut p = payload(1);
    p.policies[0].source.push_str("# edited\n");
    assert_eq!(
        refused(&signed(&p, &[&f.keys[0]]), &f.trust),
        "payload: policies[0] (demo.yaml): the digest does not match the source"
    );
    let mut p = payload(1);
    p.min_agent_version = "0.2.0".into();
    assert_eq!(
        refused(&signed(&p, &[&f.keys[0]]), &f.trust),
        "needs agent version 0.2.0 or later; this agent is 0.1.0"
    );
}

#[test]
fn trust_rotation_needs_old_and_new_thresholds() {
    let old = fixture(3, 2);
    let new_keys: Vec<SecretKey> = (0..2).map(|_| SecretKey::generate().unwrap()).collect();
    let next = || {
        TrustRoot::new(
            new_keys.iter().map(SecretKey::public).collect(),
            2,
            SCOPE,
            2,
            NOW,
        )
        .unwrap()
    };
    // Only the new keys: the old root did not consent.
    let mut r = next();
    r.envelope.sign(&new_keys[0]).unwrap();
    r.envelope.sign(&new_keys[1]).unwrap();
    let mut ids = [new_keys[0].id, new_keys[1].id];
    ids.sort();
    assert_eq!(
        old.trust.verify_successor(&r).unwrap_err().to_string(),
        format!(
            "0 valid signature(s) from distinct keys of the current trust root, 2 required \
             (keys {}, {} are not among them)",
            ids[0], ids[1]
        )
    );
    // Old threshold met, new threshold not.
    r.envelope.signatures.pop();
    r.envelope.sign(&old.keys[0]).unwrap();
    r.envelope.sign(&old.keys[1]).unwrap();
    assert_eq!(
        old.trust
            .verify_successor(&r)
            .unwrap_err()
            .to_string()
            .split(" (")
            .next(),
        Some("1 valid signature(s) from distinct keys of the new trust root, 2 required")
    );
    r.envelope.sign(&new_keys[1]).unwrap();
    // Survives a write and read as a file.
    let reread = TrustRoot::parse(&r.envelope.to_bytes()).unwrap();
    old.trust.verify_successor(&reread).unwrap();
    // Skipping a version is refused.
    let mut skip = TrustRoot::new(
        new_keys.iter().map(SecretKey::public).collect(),
        1,
        SCOPE,
        3,
        NOW,
    )
    .unwrap();
    skip.envelope.sign(&old.keys[0]).unwrap();
    assert_eq!(
        old.trust.verify_successor(&skip).unwrap_err().to_string(),
        "trust root: the new root has version 3; the successor of version 1 must be version 2"
    );
    // A bundle signed by the old keys only does not verify under the new root.
    let bundle = signed(&payload(1), &[&old.keys[0], &old.keys[1]]);
    assert_eq!(
        refused(&bundle, &reread).split(" (").next().unwrap(),
        "0 valid signature(s) from distinct trusted keys, 2 required"
    );
}

#[test]
fn trust_root_invariants() {
    let k = SecretKey::generate().unwrap().public();
    assert_eq!(
        TrustRoot::new(vec![k.clone()], 2, SCOPE, 1, NOW)
            .unwrap_err()
            .to_string(),
        "trust root: threshold 2 must be between 1 and the number of keys (1)"
    );
    assert_eq!(
        TrustRoot::new(vec![k.clone(), k.clone()], 1, SCOPE, 1, NOW)
            .unwrap_err()
            .to_string(),
        format!("trust root: key {} is listed twice", k.id)
    );
    assert_eq!(
        TrustRoot::new(vec![k], 1, "prod eu", 1, NOW)
            .unwrap_err()
            .code(),
        "malformed-payload"
    );
}

#[test]
fn key_files_round_trip_and_refuse_loose_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("rampart-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let key = SecretKey::generate().unwrap();
    let (secret, public) = key.write_pair(&dir.join("alice")).unwrap();
    assert_eq!(
        std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(SecretKey::read(&secret).unwrap().id, key.id);
    assert_eq!(PublicKey::read(&public).unwrap().id, key.id);
    assert_eq!(
        key.write_pair(&dir.join("alice")).unwrap_err().code(),
        "io",
        "never overwrites"
    );
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = SecretKey::read(&secret).unwrap_err().to_string();
    assert!(
        err.contains("mode 644 lets others read the secret key"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_pinned_mark_holds_when_the_state_file_is_reset() {
    let f = fixture(2, 2);
    let dir = std::env::temp_dir().join(format!("rampart-pinned-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let v7 = good(&f, 7);
    let pinned = Mark {
        version: 7,
        digest: v7.digest.clone(),
        trust_version: 1,
    };
    // The file was deleted and initialised again; the pinned copy still says 7.
    let state = StateDir::new(&dir).with_pinned(Some(pinned.clone()));
    state.init(NOW).unwrap();
    assert_eq!(
        state.advance(&good(&f, 3), NOW).unwrap_err().code(),
        "rollback"
    );
    // The same bundle is current, and the file catches up with the pinned mark.
    assert_eq!(state.advance(&v7, NOW).unwrap().0, Standing::Current);
    assert_eq!(state.load().unwrap().mark(), pinned);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_older_trust_root_is_refused() {
    let f = fixture(2, 2);
    let mark = Mark {
        version: 1,
        digest: String::new(),
        trust_version: 2,
    };
    // The fixture's root is version 1; version 2 was used before.
    let err = check(Some(&mark), &good(&f, 5)).unwrap_err();
    assert_eq!(err.code(), "trust-rollback", "{err}");
}

#[test]
fn the_higher_mark_wins_field_by_field() {
    let m = |version, digest: &str, trust_version| Mark {
        version,
        digest: digest.into(),
        trust_version,
    };
    assert_eq!(
        higher(Some(m(3, "a", 2)), Some(m(5, "b", 1))),
        Some(m(5, "b", 2))
    );
    assert_eq!(
        higher(Some(m(5, "a", 1)), Some(m(5, "b", 1))),
        Some(m(5, "b", 1))
    );
    assert_eq!(higher(None, Some(m(1, "b", 1))), Some(m(1, "b", 1)));
    assert_eq!(higher(Some(m(1, "a", 1)), None), Some(m(1, "a", 1)));
}
