//! The certificate authorities a remote source's TLS certificate may chain to: the
//! system's (`/etc/ssl/certs` and the like), or, on a host that has none (a minimal
//! container image, the VM guest), Mozilla's as packaged by `webpki-root-certs`; plus the
//! operator's `ca_file`.
//!
//! Invariant: the set is always given to the HTTP client explicitly, so building a client
//! never depends on (or panics for) what the host happens to have installed.

use std::path::Path;

use anyhow::{bail, Context, Result};
use rustls::pki_types::{pem::PemObject, CertificateDer};

/// Where the roots came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The host's certificate store.
    System,
    /// Mozilla's roots compiled in (the host has none).
    Builtin,
}

/// The roots (DER), with `ca_file`'s added, and where the others came from.
pub fn load(ca_file: Option<&Path>) -> Result<(Vec<Vec<u8>>, Origin)> {
    let native = rustls_native_certs::load_native_certs();
    let (mut roots, origin): (Vec<Vec<u8>>, Origin) = if native.certs.is_empty() {
        (
            webpki_root_certs::TLS_SERVER_ROOT_CERTS
                .iter()
                .map(|c| c.as_ref().to_vec())
                .collect(),
            Origin::Builtin,
        )
    } else {
        (
            native.certs.iter().map(|c| c.as_ref().to_vec()).collect(),
            Origin::System,
        )
    };
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .with_context(|| format!("reading the CA file {}", path.display()))?;
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert =
                cert.map_err(|e| anyhow::anyhow!("{}: not PEM certificates: {e}", path.display()))?;
            roots.push(cert.as_ref().to_vec());
            added += 1;
        }
        if added == 0 {
            bail!("{}: no PEM certificate in it", path.display());
        }
    }
    Ok((roots, origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn there_are_always_roots_and_a_bad_ca_file_is_an_error() {
        let (roots, _) = load(None).unwrap();
        assert!(!roots.is_empty());
        let dir = std::env::temp_dir().join(format!("rampart-roots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, b"no certificate here\n").unwrap();
        let e = format!("{:#}", load(Some(&empty)).unwrap_err());
        assert!(e.contains("no PEM certificate"), "{e}");
        let e = format!("{:#}", load(Some(&dir.join("absent.pem"))).unwrap_err());
        assert!(e.contains("reading the CA file"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
