//! Fuzzes every parser that sees bundle, trust-root or break-glass token bytes from
//! outside: the envelope (every payload type), the bundle and token payloads, the trust
//! root, and the whole verification of a bundle and of a token (size cap, envelope,
//! signatures) against a fixed trust root. None may panic; each must
//! return a value or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart::bundle::{
    break_glass::{self, TokenPayload, BREAK_GLASS_TYPE},
    envelope::Envelope,
    payload::{Payload, BUNDLE_TYPE},
    trust::{TrustRoot, TRUST_ROOT_TYPE},
    verify, Context, PublicKey,
};

/// A fixed, valid key (the Ed25519 base point) so verification runs its signature path.
const BASE_POINT: [u8; 32] = [
    0x58, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66,
    0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66,
    0x66, 0x66,
];

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = Envelope::parse(data, BUNDLE_TYPE) {
        let _ = Payload::parse(&e.payload);
    }
    let _ = Envelope::parse(data, TRUST_ROOT_TYPE);
    if let Ok(e) = Envelope::parse(data, BREAK_GLASS_TYPE) {
        let _ = TokenPayload::parse(&e.payload);
    }
    let _ = TokenPayload::parse(data);
    let _ = Payload::parse(data);
    let _ = TrustRoot::parse(data);
    if let Ok(key) = PublicKey::from_bytes(&BASE_POINT) {
        if let Ok(trust) = TrustRoot::new(vec![key], 1, "fuzz", 1, 0) {
            let _ = verify(
                data,
                &Context {
                    trust: &trust,
                    scope: "fuzz",
                    now: 1_800_000_000,
                    clock_skew: 300,
                    agent_version: "0.1.0",
                },
            );
            let _ = break_glass::verify(data, &trust, "fuzz", 1_800_000_000, 300, &[]);
        }
    }
});
