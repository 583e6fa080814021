//! The bundle commands: `policy sign|cosign|verify|show|push` (and the signature step of
//! `trust cosign`). They print; the daemon calls the library directly.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context as _, Result};
use rampart::{
    bundle::{
        envelope::Envelope,
        error::BundleError,
        keys::SecretKey,
        payload::{bundle_digest, source_digest, Payload, PolicyFile, BUNDLE_FORMAT, BUNDLE_TYPE},
        state::{Standing, StateDir},
        trust::TrustRoot,
        verify::{verify_file, MAX_BUNDLE_BYTES},
    },
    daemon::control::{self, Request, Response},
    policy::{
        compile::{CompiledPolicy, Literal},
        host::compile_sources,
        source::PolicySource,
    },
    support::{
        files::{read_capped, write_atomic},
        time::{rfc3339, unix_now},
    },
};
use serde::Serialize;

use super::keys::{read_secret_keys, write_new_file};

/// `rampart policy cosign` / `rampart trust cosign`: adds one signature to an envelope.
pub fn cosign(key: &Path, file: &Path, payload_type: &str) -> Result<()> {
    let key = SecretKey::read(key)?;
    let bytes = read_capped(file, MAX_BUNDLE_BYTES)?;
    let mut envelope = Envelope::parse(&bytes, payload_type).map_err(|e| e.in_file(file))?;
    envelope.sign(&key)?;
    write_atomic(file, &envelope.to_bytes(), 0o644)?;
    println!(
        "{}: signed by {} ({} signature(s) now)",
        file.display(),
        key.id,
        envelope.signatures.len()
    );
    Ok(())
}

/// What `policy sign` needs besides keys and files.
#[derive(Debug, Clone)]
pub struct SignOptions {
    pub version: u64,
    pub expires_in: Duration,
    pub scope: String,
    pub min_agent_version: String,
}

/// Reads, checks (they must compile) and packages policy files into a payload.
pub fn build_payload(files: &[PathBuf], opts: &SignOptions, now: u64) -> Result<Payload> {
    let sources = files
        .iter()
        .map(|f| PolicySource::read(f))
        .collect::<Result<Vec<_>, _>>()?;
    compile_sources(&sources, &Literal).context("refusing to sign policies that do not compile")?;
    let payload = Payload {
        format: BUNDLE_FORMAT,
        version: opts.version,
        issued_at: now,
        expires_at: now.saturating_add(opts.expires_in.as_secs()),
        scope: opts.scope.clone(),
        min_agent_version: opts.min_agent_version.clone(),
        policies: sources
            .iter()
            .map(|s| PolicyFile {
                name: Path::new(&s.file)
                    .file_name()
                    .map_or_else(|| s.file.clone(), |n| n.to_string_lossy().into_owned()),
                digest: source_digest(&s.text),
                source: s.text.clone(),
            })
            .collect(),
    };
    // The same checks a verifier makes, so a signer cannot produce what hosts refuse.
    Payload::parse(&payload.to_bytes())?;
    Ok(payload)
}

/// `rampart policy sign`.
pub fn sign(keys: &[PathBuf], files: &[PathBuf], opts: &SignOptions, out: &Path) -> Result<()> {
    let keys = read_secret_keys(keys)?;
    let payload = build_payload(files, opts, unix_now())?;
    let mut envelope = Envelope::new(BUNDLE_TYPE, payload.to_bytes());
    for key in &keys {
        envelope.sign(key)?;
    }
    write_new_file(out, &envelope.to_bytes(), "bundle")?;
    println!(
        "{}: version {}, scope {}, expires {}, {} policy file(s), digest {}, signed by {}",
        out.display(),
        payload.version,
        payload.scope,
        rfc3339(payload.expires_at),
        payload.policies.len(),
        bundle_digest(&envelope.payload),
        keys.iter()
            .map(|k| k.id.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// Compiles a bundle's policies offline (paths as written), for counts and checks.
pub fn compile_payload(payload: &Payload) -> Result<Vec<CompiledPolicy>> {
    let sources = payload
        .policies
        .iter()
        .map(|f| PolicySource::parse(&f.name, &f.source))
        .collect::<Result<Vec<_>, _>>()?;
    compile_sources(&sources, &Literal)
}

#[derive(Serialize)]
struct PolicySummary {
    file: String,
    name: String,
    governs: Vec<String>,
    mode: String,
    rules: usize,
    path_entries: usize,
    net4_entries: usize,
    net6_entries: usize,
}

#[derive(Serialize)]
struct Summary {
    verified: bool,
    version: u64,
    scope: String,
    issued_at: String,
    expires_at: String,
    min_agent_version: String,
    digest: String,
    signers: Vec<String>,
    policies: Vec<PolicySummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<String>,
}

fn summarise(payload: &Payload, digest: String, signers: Vec<String>) -> Result<Summary> {
    let compiled = compile_payload(payload)?;
    Ok(Summary {
        verified: false,
        version: payload.version,
        scope: payload.scope.clone(),
        issued_at: rfc3339(payload.issued_at),
        expires_at: rfc3339(payload.expires_at),
        min_agent_version: payload.min_agent_version.clone(),
        digest,
        signers,
        policies: compiled
            .iter()
            .map(|p| PolicySummary {
                file: p.file.clone(),
                name: p.name.clone(),
                governs: p.governs.clone(),
                mode: format!("{:?}", p.mode).to_lowercase(),
                rules: p.rules.len(),
                path_entries: p.paths.len(),
                net4_entries: p.net4.len(),
                net6_entries: p.net6.len(),
            })
            .collect(),
        state: None,
    })
}

fn print_summary(s: &Summary, json: bool) {
    if json {
        println!("{}", serde_json::to_string(s).unwrap_or_default());
        return;
    }
    println!("version    {}", s.version);
    println!("scope      {}", s.scope);
    println!("issued     {}", s.issued_at);
    println!("expires    {}", s.expires_at);
    println!("min agent  {}", s.min_agent_version);
    println!("digest     {}", s.digest);
    println!("signers    {}", s.signers.join(", "));
    for p in &s.policies {
        println!(
            "policy     {} ({}, {}): governs {}; {} rules -> {} path, {} IPv4, {} IPv6 entries",
            p.name,
            p.file,
            p.mode,
            p.governs.join(", "),
            p.rules,
            p.path_entries,
            p.net4_entries,
            p.net6_entries
        );
    }
    if let Some(state) = &s.state {
        println!("state      {state}");
    }
}

/// Options of `policy verify`.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    pub trust: PathBuf,
    pub scope: Option<String>,
    pub state: Option<PathBuf>,
    pub clock_skew: u64,
    pub json: bool,
}

/// `rampart policy verify`: Ok when valid (and, with a state directory, not a rollback;
/// the state then advances); the error carries the exact reason.
pub fn verify_command(bundle: &Path, opts: &VerifyOptions) -> Result<()> {
    let trust = TrustRoot::read(&opts.trust)?;
    let scope = opts.scope.as_deref().unwrap_or(&trust.scope).to_owned();
    let now = unix_now();
    let rejected =
        |e: BundleError| anyhow::anyhow!("{} rejected ({}): {e}", bundle.display(), e.code());
    let verified = verify_file(bundle, &trust, &scope, opts.clock_skew, now).map_err(rejected)?;
    // Policies that do not compile are refused before the state advances.
    let mut summary = summarise(
        &verified.payload,
        verified.digest.clone(),
        verified.signers.iter().map(ToString::to_string).collect(),
    )
    .map_err(|e| anyhow::anyhow!("{} rejected (compile): {e:#}", bundle.display()))?;
    if let Some(dir) = &opts.state {
        let (standing, _) = StateDir::new(dir)
            .advance(&verified, now)
            .map_err(rejected)?;
        summary.state = Some(match standing {
            Standing::Newer { previous: None } => format!(
                "advanced to version {} (first accepted bundle) in {}",
                verified.payload.version,
                dir.display()
            ),
            Standing::Newer {
                previous: Some(prev),
            } => format!(
                "advanced from version {prev} to {} in {}",
                verified.payload.version,
                dir.display()
            ),
            Standing::Current => "already the accepted bundle (state unchanged)".into(),
        });
    }
    summary.verified = true;
    if !opts.json {
        println!("{}: verified", bundle.display());
    }
    print_summary(&summary, opts.json);
    Ok(())
}

/// `rampart policy show`: the contents, verified or not.
pub fn show_command(bundle: &Path, json: bool) -> Result<()> {
    let bytes = read_capped(bundle, MAX_BUNDLE_BYTES)?;
    let envelope = Envelope::parse(&bytes, BUNDLE_TYPE).map_err(|e| e.in_file(bundle))?;
    let digest = bundle_digest(&envelope.payload);
    let signers = envelope
        .signatures
        .iter()
        .map(|s| s.keyid.to_string())
        .collect();
    let payload = Payload::parse(&envelope.payload).map_err(|e| e.in_file(bundle))?;
    let summary = summarise(&payload, digest, signers)?;
    if !json {
        println!(
            "{}: NOT VERIFIED (signatures listed as claimed; check with `rampart policy verify`)",
            bundle.display()
        );
    }
    print_summary(&summary, json);
    if !json {
        for f in &payload.policies {
            println!("--- {} (digest {})", f.name, f.digest);
            print!("{}", f.source);
            if !f.source.ends_with('\n') {
                println!();
            }
        }
    }
    Ok(())
}

/// `rampart policy push`: exit status says whether the daemon loaded the bundle.
pub fn push_command(socket: &Path, bundle: &Path) -> Result<()> {
    let bytes = read_capped(bundle, MAX_BUNDLE_BYTES)?;
    let request = Request::Push {
        bundle: control::encode_bundle(&bytes),
    };
    match control::call_blocking(socket, &request)? {
        Response::Loaded { version, digest } => {
            println!(
                "{}: loaded, version {version} in force (digest {digest})",
                bundle.display()
            );
            Ok(())
        }
        Response::Rejected { code, error } => {
            bail!(
                "{}: rejected ({code}): {error}; the policy in force is unchanged",
                bundle.display()
            )
        }
        other => bail!("unexpected answer: {other:?}"),
    }
}
