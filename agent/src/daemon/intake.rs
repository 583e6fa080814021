//! Policy intake: from local files, a signed bundle, or a directory of signed bundles to a
//! compiled policy set ready to load, or a refusal with a stable code. Nothing here touches
//! the kernel; a refusal changes nothing.

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use rampart_common::policy_flags;

use super::{config::Fallback, swap::LoadTimes};
use crate::{
    bundle::{
        error::BundleError,
        state::{self, StateDir},
        trust::TrustRoot,
        verify::{verify_file, VerifiedBundle},
    },
    kernel::{cgroup::within, enforcer::SlotInfo},
    policy::{
        self,
        compile::CompiledPolicy,
        resolutions::{Recording, Resolutions},
        source::{EventsSetting, Mode, PolicySource},
    },
    support::time::{boot_ns, unix_now},
};

/// Where the policy comes from.
#[derive(Debug, Clone)]
pub enum PolicyOrigin {
    /// Unsigned local policy files (version 0): for development and first trials.
    Files(Vec<PathBuf>),
    /// Signed bundles, verified against a trust root, with anti-rollback state.
    Bundle(BundleSource),
}

/// Where signed bundles are.
#[derive(Debug, Clone)]
pub enum BundleLocation {
    /// One bundle file.
    File(PathBuf),
    /// A directory: the valid `*.rpb` with the highest version is the one.
    Dir(PathBuf),
}

/// Signed bundles and what they are checked against.
#[derive(Debug, Clone)]
pub struct BundleSource {
    /// One file or a directory.
    pub location: BundleLocation,
    /// The trust root file.
    pub trust: PathBuf,
    /// The anti-rollback state directory.
    pub state: PathBuf,
    /// This host's scope (default: the trust root's).
    pub scope: Option<String>,
    /// Seconds a bundle's issue time may be ahead of this host's clock.
    pub clock_skew: u64,
    /// The cgroups bundles may govern (and their descendants); `None`: any.
    pub allowed: Option<Vec<String>>,
    /// The pin directory whose copy of the anti-rollback mark counts too, if pinned.
    pub pin_dir: Option<PathBuf>,
}

/// A policy set ready to load, and what to record once it is.
pub struct Incoming {
    /// The compiled policies, resolved on this host.
    pub policies: Vec<CompiledPolicy>,
    /// Version, expiry and host flags for their slots.
    pub info: SlotInfo,
    /// The verified bundle and the state to advance once it is in force (none: local files).
    pub bundle: Option<(VerifiedBundle, StateDir)>,
    /// How long verifying and compiling took (the kernel steps are added by the switch).
    pub times: LoadTimes,
    /// What this host's files answered while compiling (recorded for replay).
    pub resolutions: Resolutions,
}

/// Why a policy was not loaded: a stable code and the full reason.
#[derive(Debug)]
pub struct Refusal {
    /// The stable code (`bad-signature`, `rollback`, `compile`, ...).
    pub code: &'static str,
    /// The full reason.
    pub error: anyhow::Error,
}

impl Refusal {
    /// A refusal with `code`.
    pub fn new(code: &'static str, error: anyhow::Error) -> Self {
        Self { code, error }
    }

    fn bundle(e: BundleError) -> Self {
        Self::new(e.code(), anyhow::anyhow!(e))
    }
}

/// Most bundle files a directory scan verifies.
const MAX_DIR_BUNDLES: usize = 256;

/// Reads, verifies and compiles the policy (pinning exec identities anew), changing
/// nothing. Bundles of a directory that were refused are pushed to `skipped`.
pub fn prepare(
    origin: &PolicyOrigin,
    extra_flags: u32,
    skipped: &mut Vec<(PathBuf, Refusal)>,
) -> Result<Incoming, Refusal> {
    let started = Instant::now();
    match origin {
        PolicyOrigin::Files(files) => {
            let recording = Recording::new(&policy::host::Host);
            let policies = policy::host::compile_files(files, &recording)
                .map_err(|e| Refusal::new("compile", e))?;
            Ok(Incoming {
                policies,
                resolutions: recording.into_resolutions(),
                info: SlotInfo {
                    version: 0,
                    expires_boot_ns: 0,
                    extra_flags,
                },
                bundle: None,
                times: LoadTimes {
                    compile: started.elapsed(),
                    ..LoadTimes::default()
                },
            })
        }
        PolicyOrigin::Bundle(src) => {
            let trust = TrustRoot::read(&src.trust).map_err(Refusal::bundle)?;
            let scope = src.scope.clone().unwrap_or_else(|| trust.scope.clone());
            let pinned = match &src.pin_dir {
                Some(dir) => crate::kernel::pinned_state::read_mark(dir)
                    .map_err(|e| Refusal::new("state-unreadable", e))?,
                None => None,
            };
            let state = StateDir::new(&src.state).with_pinned(pinned);
            let now = unix_now();
            // One bundle: all checks, including anti-rollback (the same bundle again, as
            // on a reload that re-pins identities, passes).
            let check = |path: &Path| -> Result<VerifiedBundle, Refusal> {
                let v = verify_file(path, &trust, &scope, src.clock_skew, now)
                    .map_err(Refusal::bundle)?;
                state::check(state.floor().map_err(Refusal::bundle)?.as_ref(), &v)
                    .map_err(Refusal::bundle)?;
                Ok(v)
            };
            let verified = match &src.location {
                BundleLocation::File(path) => check(path)?,
                BundleLocation::Dir(dir) => newest_valid(dir, &check, skipped)?,
            };
            let verified_at = Instant::now();
            let sources = verified
                .payload
                .policies
                .iter()
                .map(|f| PolicySource::parse(&f.name, &f.source))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Refusal::new("compile", e.into()))?;
            let recording = Recording::new(&policy::host::Host);
            let policies = policy::host::compile_sources(&sources, &recording)
                .map_err(|e| Refusal::new("compile", e))?;
            let resolutions = recording.into_resolutions();
            if let Some(allowed) = &src.allowed {
                for p in &policies {
                    if let Some(g) = p.governs.iter().find(|g| !within(g, allowed)) {
                        return Err(Refusal::new(
                            "cgroup-not-allowed",
                            anyhow::anyhow!(
                                "policy `{}` governs {g}, outside the cgroups this host lets \
                                 bundles govern ({})",
                                p.name,
                                allowed.join(", ")
                            ),
                        ));
                    }
                }
            }
            let left = verified.payload.expires_at.saturating_sub(now);
            let expires_boot_ns = boot_ns()
                .map_err(|e| {
                    Refusal::new(
                        "clock",
                        anyhow::anyhow!("clock_gettime(CLOCK_BOOTTIME) failed: {e}"),
                    )
                })?
                .saturating_add(left.saturating_mul(1_000_000_000));
            Ok(Incoming {
                policies,
                resolutions,
                info: SlotInfo {
                    version: verified.payload.version,
                    expires_boot_ns,
                    extra_flags,
                },
                bundle: Some((verified, state)),
                times: LoadTimes {
                    verify: verified_at - started,
                    compile: verified_at.elapsed(),
                    ..LoadTimes::default()
                },
            })
        }
    }
}

/// The valid bundle with the highest version among `dir/*.rpb`.
fn newest_valid(
    dir: &Path,
    check: &dyn Fn(&Path) -> Result<VerifiedBundle, Refusal>,
    skipped: &mut Vec<(PathBuf, Refusal)>,
) -> Result<VerifiedBundle, Refusal> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| {
            Refusal::new(
                "io",
                anyhow::anyhow!("reading the bundle directory {}: {e}", dir.display()),
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "rpb") && p.is_file())
        .collect();
    files.sort();
    files.truncate(MAX_DIR_BUNDLES);
    let mut best: Option<VerifiedBundle> = None;
    for f in files {
        match check(&f) {
            Ok(v) => {
                if best
                    .as_ref()
                    .is_none_or(|b| v.payload.version > b.payload.version)
                {
                    best = Some(v);
                }
            }
            Err(r) => skipped.push((f, r)),
        }
    }
    best.ok_or_else(|| {
        Refusal::new(
            "no-valid-bundle",
            anyhow::anyhow!(
                "no valid bundle in {} ({} refused)",
                dir.display(),
                skipped.len()
            ),
        )
    })
}

/// The host's fallback when no valid policy can be loaded: the configured cgroups are
/// governed by an empty policy whose every decision is `no-policy`, denied (or audited).
pub fn no_policy(cgroups: &[String], fallback: Fallback) -> Incoming {
    let audit = fallback == Fallback::Audit;
    Incoming {
        resolutions: Resolutions::default(),
        policies: vec![CompiledPolicy {
            name: "no-policy".into(),
            file: "(host configuration: policy.on_no_policy)".into(),
            governs: cgroups.to_vec(),
            mode: if audit { Mode::Audit } else { Mode::Enforce },
            events: EventsSetting::Denials,
            strict: false,
            flags: policy_flags::NO_POLICY | if audit { policy_flags::AUDIT } else { 0 },
            rules: Vec::new(),
            paths: Vec::new(),
            net4: Vec::new(),
            net6: Vec::new(),
            listen4: Vec::new(),
            listen6: Vec::new(),
            permits: 0,
            sockets: Default::default(),
            capabilities: 0,
        }],
        info: SlotInfo::default(),
        bundle: None,
        times: LoadTimes::default(),
    }
}

#[cfg(test)]
mod tests;
