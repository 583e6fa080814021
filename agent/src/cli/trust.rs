//! `rampart trust init|rotate|cosign|update|show`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::Subcommand;
use rampart::{
    bundle::{
        scope::valid_scope,
        trust::{TrustRoot, TRUST_ROOT_TYPE},
    },
    support::{
        files::write_atomic,
        time::{rfc3339, unix_now},
    },
};

use super::{
    bundle::cosign,
    keys::{read_public_keys, read_secret_keys, write_new_file},
};

/// Create, rotate, sign and install trust roots (which keys may sign bundles).
#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// Create a version-1 trust root: the keys, how many must sign, and the scope.
    ///
    /// Install the file on hosts out of band (it is the anchor; it is not signed). Later
    /// roots replace it only through `trust rotate` + `trust update`.
    Init {
        /// A public key file (NAME.pub); repeatable.
        #[arg(long = "key", value_name = "FILE", required = true)]
        keys: Vec<PathBuf>,
        /// How many distinct keys must sign a bundle.
        #[arg(long)]
        threshold: usize,
        /// The fleet or host group bundles must name (A-Z a-z 0-9 . _ -).
        #[arg(long)]
        scope: String,
        /// Where to write the root (never overwritten).
        #[arg(short = 'o', long = "out", value_name = "FILE")]
        out: PathBuf,
    },
    /// Create the successor of a trust root (next version), signed by a threshold of the
    /// current keys and a threshold of the new keys.
    ///
    /// Signatures can be given here (--sign) or added later, one person at a time, with
    /// `trust cosign`. Prints whether the new root is already fully signed.
    Rotate {
        /// The trust root in force.
        #[arg(long, value_name = "FILE")]
        trust: PathBuf,
        /// A public key file of the new root; repeatable.
        #[arg(long = "key", value_name = "FILE", required = true)]
        keys: Vec<PathBuf>,
        /// The new root's threshold.
        #[arg(long)]
        threshold: usize,
        /// The new root's scope (default: unchanged).
        #[arg(long)]
        scope: Option<String>,
        /// A secret key (old or new) to sign the new root with; repeatable.
        #[arg(long = "sign", value_name = "FILE")]
        sign: Vec<PathBuf>,
        /// Where to write the new root (never overwritten).
        #[arg(short = 'o', long = "out", value_name = "FILE")]
        out: PathBuf,
    },
    /// Add one signature to a trust root made by `trust rotate`.
    Cosign {
        /// The secret key to sign with.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The trust root file (updated in place, atomically).
        file: PathBuf,
    },
    /// Replace the installed trust root by its successor(s), each verified against the one
    /// before; nothing changes unless all verify.
    Update {
        /// The installed trust root (e.g. /etc/rampart/trust.json).
        #[arg(long, value_name = "FILE")]
        trust: PathBuf,
        /// Successor roots, oldest first.
        #[arg(required = true, value_name = "FILE")]
        successors: Vec<PathBuf>,
    },
    /// Print a trust root.
    Show { file: PathBuf },
}

impl TrustCommand {
    pub fn run(self) -> Result<()> {
        match self {
            Self::Init {
                keys,
                threshold,
                scope,
                out,
            } => init(&keys, threshold, &scope, &out),
            Self::Rotate {
                trust,
                keys,
                threshold,
                scope,
                sign,
                out,
            } => rotate(&trust, &keys, threshold, scope.as_deref(), &sign, &out),
            Self::Cosign { key, file } => cosign(&key, &file, TRUST_ROOT_TYPE),
            Self::Update { trust, successors } => update(&trust, &successors),
            Self::Show { file } => show(&file),
        }
    }
}

fn print_root(root: &TrustRoot) {
    println!(
        "trust root version {}, scope {}, threshold {} of {} key(s):",
        root.version,
        root.scope,
        root.threshold,
        root.keys.len()
    );
    for k in &root.keys {
        println!("  {}", k.id);
    }
}

fn init(keys: &[PathBuf], threshold: usize, scope: &str, out: &Path) -> Result<()> {
    valid_scope(scope)?;
    let root = TrustRoot::new(read_public_keys(keys)?, threshold, scope, 1, unix_now())?;
    write_new_file(out, &root.envelope.to_bytes(), "trust root")?;
    print_root(&root);
    println!(
        "written to {}; install it on hosts as the trust anchor (e.g. /etc/rampart/trust.json)",
        out.display()
    );
    Ok(())
}

/// The successor of `current`, signed by the given secret keys.
fn rotate(
    current: &Path,
    keys: &[PathBuf],
    threshold: usize,
    scope: Option<&str>,
    sign: &[PathBuf],
    out: &Path,
) -> Result<()> {
    let old = TrustRoot::read(current)?;
    let scope = scope.unwrap_or(&old.scope);
    valid_scope(scope)?;
    let mut next = TrustRoot::new(
        read_public_keys(keys)?,
        threshold,
        scope,
        old.version + 1,
        unix_now(),
    )?;
    for key in read_secret_keys(sign)? {
        next.envelope.sign(&key)?;
    }
    write_new_file(out, &next.envelope.to_bytes(), "trust root")?;
    print_root(&next);
    match old.verify_successor(&next) {
        Ok(()) => println!(
            "{}: fully signed; install with `rampart trust update --trust {} {}`",
            out.display(),
            current.display(),
            out.display()
        ),
        Err(e) => println!(
            "{}: not yet valid as a successor ({e}); add signatures with `rampart trust cosign \
             --key KEY.key {}`",
            out.display(),
            out.display()
        ),
    }
    Ok(())
}

/// Replaces the installed root with each successor in turn, each verified against the one
/// before; the file changes only if all of them verify.
fn update(trust: &Path, successors: &[PathBuf]) -> Result<()> {
    let mut root = TrustRoot::read(trust)?;
    for next in successors {
        let candidate = TrustRoot::read(next)?;
        root.verify_successor(&candidate)
            .map_err(|e| e.in_file(next))
            .context("trust root not updated")?;
        root = candidate;
    }
    write_atomic(trust, &root.envelope.to_bytes(), 0o644)?;
    print_root(&root);
    println!("{} updated", trust.display());
    Ok(())
}

fn show(trust: &Path) -> Result<()> {
    let root = TrustRoot::read(trust)?;
    print_root(&root);
    println!("created {}", rfc3339(root.created_at));
    println!(
        "{} signature(s) on this root",
        root.envelope.signatures.len()
    );
    Ok(())
}
