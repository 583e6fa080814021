//! `rampart keygen`.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use rampart::bundle::keys::SecretKey;

/// Generate an Ed25519 key pair for signing bundles, trust roots or lineage checkpoints.
///
/// Writes NAME.key (the secret seed, mode 0600; never overwrites a file) and NAME.pub,
/// and prints the key id (BLAKE3-derived from the public key).
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// DIR/NAME of the pair; the directory must exist.
    #[arg(long, value_name = "DIR/NAME")]
    out: PathBuf,
}

impl KeygenArgs {
    pub fn run(self) -> Result<()> {
        let Self { out } = self;
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                bail!("{} is not a directory; create it first", dir.display());
            }
        }
        let key = SecretKey::generate()?;
        let (secret, public) = key.write_pair(&out)?;
        println!("key id {}", key.id);
        println!(
            "secret key {} (mode 0600: keep it offline; it signs policy)",
            secret.display()
        );
        println!(
            "public key {} (give it to `rampart trust init --key`)",
            public.display()
        );
        Ok(())
    }
}
