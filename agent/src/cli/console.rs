//! `rampart console`: the governance console offline, over a copied lineage.

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use anyhow::{Context, Result};
use clap::Args;
use rampart::{
    bundle::{keys::PublicKey, trust::TrustRoot},
    console::{live::PolicyView, records, serve::Settings, Console},
    policy::resolutions::Resolutions,
    replay::compile_archived,
};

/// Serve the governance console over a lineage directory (e.g. one copied off a host, or
/// the demo's target/demo/lineage), read-only, until Ctrl-C.
///
/// Pages: / (overview), /policy (the policy in force, its rules and an explain form),
/// /lineage (the Lineage Explorer: filters and a live tail), /lineage/SEQ (a record, its hash
/// and checkpoint), /proofs?seq=N (the record's inclusion proof, verified with --pub and shown
/// step by step), /health (gaps, refusals, decisions over time). The lineage is verified with
/// --pub; a banner says where it stops verifying. With --trust and --bundles, the explain form
/// judges requests under the last bundle the lineage put in force.
///
/// Listens on loopback only unless --tls-cert, --tls-key and --token-file are all given.
#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// The lineage directory.
    #[arg(long, value_name = "DIR")]
    lineage: PathBuf,
    /// The host's public key (host.pub) its checkpoints are signed with.
    #[arg(long = "pub", value_name = "FILE")]
    public: PathBuf,
    /// Where to listen.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464")]
    listen: SocketAddr,
    /// The trust root the lineage's bundles were signed under (for the explain form).
    #[arg(long, value_name = "FILE", requires = "bundles")]
    trust: Option<PathBuf>,
    /// The archived bundles (STATE_DIR/bundles, DIGEST.rpb) (for the explain form).
    #[arg(long, value_name = "DIR", requires = "trust")]
    bundles: Option<PathBuf>,
    /// PEM certificate chain: serve TLS (with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// A file holding the bearer token every request must carry.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

impl ConsoleArgs {
    pub fn run(self) -> Result<()> {
        let Self {
            lineage,
            public,
            listen,
            trust,
            bundles,
            tls_cert,
            tls_key,
            token_file,
        } = self;
        rampart::lineage::segment::segments(&lineage)?;
        let key = PublicKey::read(&public).map_err(|e| anyhow::anyhow!(e.in_file(&public)))?;
        let mut console = Console::new(Some(lineage.clone()), Some(key));
        if let (Some(trust), Some(bundles)) = (trust, bundles) {
            let root = TrustRoot::read(&trust).map_err(|e| anyhow::anyhow!(e.in_file(&trust)))?;
            console.offline_policy = last_policy(&lineage, &root, &bundles);
            if let Err(why) = &console.offline_policy {
                eprintln!("rampart console: explain is off: {why}");
            }
        }
        let settings = Settings {
            tls_cert,
            tls_key,
            token_file,
            ..Settings::loopback(listen)
        };
        settings.check()?;
        let scheme = if settings.tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(async move {
                settings.spawn(rampart::console::router(Arc::new(console)))?;
                eprintln!(
                    "rampart console: serving {} on {scheme}://{listen}/ (Ctrl-C stops)",
                    lineage.display()
                );
                tokio::signal::ctrl_c()
                    .await
                    .context("waiting for Ctrl-C")?;
                Ok(())
            })
    }
}

/// The last bundle the lineage put in force, verified and compiled from the archive.
fn last_policy(
    dir: &std::path::Path,
    trust: &TrustRoot,
    bundles: &std::path::Path,
) -> Result<PolicyView, String> {
    let last = records::recent(
        dir,
        &rampart::lineage::filter::Filter {
            kind: Some(rampart::lineage::filter::Kind::PolicyChange),
            ..Default::default()
        },
        1,
    )
    .map_err(|e| format!("{e:#}"))?;
    let change = last.first().ok_or("the lineage records no policy change")?;
    let digest = change.value["new_digest"]
        .as_str()
        .ok_or("the last policy in force came from local files, not a signed bundle")?;
    let resolved: Resolutions =
        serde_json::from_value(change.value["resolved"].clone()).unwrap_or_default();
    let (bundle, compiled) = compile_archived(trust, bundles, digest, &resolved, change.time_ns)?;
    let p = &bundle.payload;
    Ok(PolicyView {
        version: p.version,
        digest: Some(bundle.digest.clone()),
        scope: Some(p.scope.clone()),
        signers: bundle.signers.iter().map(ToString::to_string).collect(),
        expires_at: Some(p.expires_at),
        policies: compiled.iter().map(|c| c.name.clone()).collect(),
        governed: compiled.iter().flat_map(|c| c.governs.clone()).collect(),
        compiled: Arc::new(compiled),
        lineage_only: false,
    })
}
