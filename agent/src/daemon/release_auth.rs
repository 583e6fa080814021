//! Who may release enforcement through the daemon.
//!
//! Invariant: `release` is obeyed only from an admitted peer (root, outside every governed
//! cgroup: [`peer`](super::peer)) that either has a controlling terminal (a person at the
//! host) or presents a break-glass token that a threshold of the trust root's keys signed
//! for this host's scope, valid now, whose nonce was never used (it is recorded as used
//! before the release is carried out).

use anyhow::{bail, Context, Result};

use super::{
    control,
    intake::{BundleSource, PolicyOrigin},
    peer::Peer,
};
use crate::bundle::{
    break_glass::{self, Authorised},
    trust::TrustRoot,
};

/// On whose authority a release is carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authority {
    /// A client with a controlling terminal on the host.
    Terminal,
    /// A break-glass token.
    Token(Authorised),
}

impl Authority {
    /// How the lineage names it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Terminal => "terminal",
            Self::Token(_) => "break-glass-token",
        }
    }
}

/// Decides whether `peer` may release, with the base64 `token` it sent, if any.
pub fn authorise(
    origin: &PolicyOrigin,
    token: Option<&str>,
    peer: &Peer,
    now: u64,
) -> Result<Authority> {
    let Some(b64) = token else {
        if peer.tty {
            return Ok(Authority::Terminal);
        }
        bail!(
            "release without a terminal needs a break-glass token signed by the trust root: \
             `rampart break-glass --key K.key --scope S --reason R -o token.json`, then \
             `rampart release --token token.json`"
        );
    };
    let PolicyOrigin::Bundle(src) = origin else {
        bail!(
            "this daemon has no trust root (it runs local policy files): tokens cannot be checked"
        );
    };
    let bytes = control::decode_bundle(b64).context("the break-glass token is not base64")?;
    token_authority(src, &bytes, now)
}

fn token_authority(src: &BundleSource, bytes: &[u8], now: u64) -> Result<Authority> {
    let trust = TrustRoot::read(&src.trust)?;
    let scope = src.scope.clone().unwrap_or_else(|| trust.scope.clone());
    let used: Vec<String> = break_glass::read_used(&src.state)?
        .into_iter()
        .map(|u| u.nonce)
        .collect();
    let authorised = break_glass::verify(bytes, &trust, &scope, now, src.clock_skew, &used)
        .map_err(|e| anyhow::anyhow!("break-glass token refused ({}): {e}", e.code()))?;
    // Spent before anything is released: a token works once even if the release fails.
    break_glass::record_used(&src.state, &authorised.payload, now)?;
    Ok(Authority::Token(authorised))
}
