//! `rampart policy push BUNDLE oci://...` and `rampart policy pull oci://...`: a signed
//! bundle to and from an OCI registry, as an artifact of its own type.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use rampart::{
    bundle::verify::MAX_BUNDLE_BYTES,
    remote::{
        artifact,
        fetch::{Found, Remote, RemoteSettings},
        locator::Locator,
    },
    support::files::read_capped,
};

/// How to reach a registry.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryOptions {
    /// Credentials file (TOML: `username` and `password`, or `token`); anonymous without.
    #[arg(long, value_name = "FILE")]
    pub credentials: Option<PathBuf>,
    /// Extra CA certificates (PEM) that may sign the registry's TLS certificate.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Plain HTTP to a registry that is not on loopback (loopback always uses it).
    #[arg(long)]
    pub allow_plain_http: bool,
}

impl RegistryOptions {
    /// The source `target` with these options, as a daemon's `policy.source` would be.
    fn settings(&self, target: &str) -> Result<RemoteSettings> {
        Ok(RemoteSettings {
            locator: Locator::parse(target)?,
            credentials: self.credentials.clone(),
            ca_file: self.ca_file.clone(),
            allow_plain_http: self.allow_plain_http,
            interval: std::time::Duration::from_secs(1),
        })
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Pushes `bundle` to `target` (a tag) and prints the manifest digest.
pub fn push(bundle: &Path, target: &str, opts: &RegistryOptions) -> Result<()> {
    let bytes = read_capped(bundle, MAX_BUNDLE_BYTES)?;
    let name = bundle.file_name().map(|n| n.to_string_lossy().into_owned());
    let described = artifact::describe(&bytes, name.as_deref().unwrap_or_default())
        .with_context(|| format!("{}", bundle.display()))?;
    let version = described.manifest.get(artifact::VERSION).cloned();
    let remote = Remote::new(&opts.settings(target)?)?;
    let Some((at, registry)) = remote.registry() else {
        bail!("`{target}` is not an oci:// reference");
    };
    let digest = runtime()?.block_on(registry.push(at, bytes, described))?;
    println!(
        "{}: pushed to {at} (version {}, manifest {digest})",
        bundle.display(),
        version.unwrap_or_default()
    );
    Ok(())
}

/// Pulls the bundle at `source` into `out` (byte for byte as pushed), printing what the
/// registry claims of it; it is verified when a host loads it (or by `policy verify`).
pub fn pull(source: &str, out: &Path, opts: &RegistryOptions) -> Result<()> {
    let remote = Remote::new(&opts.settings(source)?)?;
    let Some((at, registry)) = remote.registry() else {
        return pull_url(source, &remote, out);
    };
    let pulled = runtime()?.block_on(registry.pull(at, None))?;
    rampart::support::files::write_atomic(out, &pulled.bytes, 0o644)
        .with_context(|| format!("writing {}", out.display()))?;
    let claim = |k: &str| pulled.annotations.get(k).map_or("?", String::as_str);
    println!(
        "{at}: {} bytes to {} (manifest {}; the registry claims version {}, scope {}, \
         expires {}; unverified until `rampart policy verify` or a host checks it)",
        pulled.bytes.len(),
        out.display(),
        pulled.digest,
        claim(artifact::VERSION),
        claim(artifact::SCOPE),
        claim(artifact::EXPIRES),
    );
    Ok(())
}

/// `policy pull https://...`: the bundle file a daemon with that `policy.source` would fetch.
fn pull_url(source: &str, remote: &Remote, out: &Path) -> Result<()> {
    let Found::New { id, bytes } = runtime()?.block_on(remote.poll(None))? else {
        bail!("{source}: nothing to pull");
    };
    rampart::support::files::write_atomic(out, &bytes, 0o644)
        .with_context(|| format!("writing {}", out.display()))?;
    println!(
        "{source}: {} bytes to {} ({id}; unverified until `rampart policy verify` or a host checks it)",
        bytes.len(),
        out.display()
    );
    Ok(())
}
