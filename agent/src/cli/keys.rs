//! Key and file helpers shared by the signing commands.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use rampart::{
    bundle::keys::{PublicKey, SecretKey},
    support::files::write_atomic,
};

/// Reads public key files, each error naming its file.
pub fn read_public_keys(files: &[PathBuf]) -> Result<Vec<PublicKey>> {
    files
        .iter()
        .map(|f| PublicKey::read(f).map_err(|e| anyhow::anyhow!(e.in_file(f))))
        .collect()
}

/// Reads secret key files.
pub fn read_secret_keys(files: &[PathBuf]) -> Result<Vec<SecretKey>> {
    files
        .iter()
        .map(|f| SecretKey::read(f).map_err(|e| anyhow::anyhow!(e)))
        .collect()
}

/// Writes a new file, refusing to replace an existing one.
pub fn write_new_file(path: &Path, bytes: &[u8], what: &str) -> Result<()> {
    if path.exists() {
        bail!(
            "{} already exists; refusing to overwrite a {what}",
            path.display()
        );
    }
    write_atomic(path, bytes, 0o644)?;
    Ok(())
}
