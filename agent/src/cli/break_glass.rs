//! `rampart break-glass`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use rampart::{
    bundle::{
        break_glass::{TokenPayload, BREAK_GLASS_FORMAT, BREAK_GLASS_TYPE, MAX_TOKEN_LIFETIME},
        keys::hex,
        Envelope,
    },
    support::time::{rfc3339, unix_now},
};

use super::keys::{read_secret_keys, write_new_file};

/// Sign a break-glass token: it lets `rampart release --token FILE` end enforcement once,
/// on hosts of one scope, from a client without a terminal (e.g. automation).
///
/// Sign with as many trust-root keys as the root's threshold (repeat --key). The token
/// carries a random nonce (a host accepts it once), a validity of at most 24 h and the
/// reason, which the host records in its lineage with the signers.
#[derive(Debug, Args)]
pub struct BreakGlassArgs {
    /// A trust-root secret key (NAME.key); repeatable, up to the threshold.
    #[arg(long = "key", value_name = "FILE", required = true)]
    keys: Vec<PathBuf>,
    /// The scope of the hosts it releases (the trust root's scope).
    #[arg(long)]
    scope: String,
    /// How long it is valid from now (at most 24h).
    #[arg(long, default_value = "1h")]
    expires: humantime::Duration,
    /// Why (recorded in the host's lineage).
    #[arg(long)]
    reason: String,
    /// Where to write the token (never overwritten).
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    out: PathBuf,
}

impl BreakGlassArgs {
    pub fn run(self) -> Result<()> {
        let keys = read_secret_keys(&self.keys)?;
        let lifetime = std::time::Duration::from(self.expires).as_secs();
        anyhow::ensure!(
            (1..=MAX_TOKEN_LIFETIME).contains(&lifetime),
            "--expires must be between 1 s and 24 h"
        );
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(|e| anyhow::anyhow!("getrandom: {e}"))?;
        let now = unix_now();
        let payload = TokenPayload {
            format: BREAK_GLASS_FORMAT,
            scope: self.scope,
            nonce: hex(&nonce),
            issued_at: now,
            expires_at: now + lifetime,
            reason: self.reason,
        };
        // The same checks a host makes, before anything is written.
        let bytes = payload.to_bytes();
        TokenPayload::parse(&bytes).context("the token would be refused")?;
        let mut envelope = Envelope::new(BREAK_GLASS_TYPE, bytes);
        for key in &keys {
            envelope.sign(key)?;
        }
        write_new_file(&self.out, &envelope.to_bytes(), "break-glass token")?;
        println!(
            "break-glass token {} for scope {}: nonce {}, valid until {}, signed by {} key(s)",
            self.out.display(),
            payload.scope,
            payload.nonce,
            rfc3339(payload.expires_at),
            keys.len()
        );
        Ok(())
    }
}
