//! `rampart policy ...`: compile and explain here; sign, cosign, verify, show and push in
//! [`super::bundle`].

use std::{
    io::Write,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use rampart::{
    bundle::{payload::BUNDLE_TYPE, verify::AGENT_VERSION},
    daemon::defaults,
    policy::{
        compile::{Literal, Resolver},
        explain::{explain, Explanation},
        host::{compile_files, Host},
        request,
    },
};
use rampart_common::access;

use super::bundle::{self, SignOptions, VerifyOptions};

/// Check, compile, explain, sign and verify policies.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Check policy files and compile them to the kernel's map contents.
    ///
    /// Prints a summary per policy; errors name the file, line and field. The compiled
    /// maps (JSON) are byte-identical for identical inputs.
    Compile {
        /// Policy files (YAML).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Write the compiled maps (JSON) to this file.
        #[arg(short = 'o', long = "out", value_name = "FILE")]
        out: Option<PathBuf>,
        /// Resolve paths (symlinks) and pin exec identities against this host's files,
        /// exactly as `rampart run` does when it loads the policy.
        #[arg(long)]
        host: bool,
    },
    /// Compute the decision the kernel will make for a request, and why.
    ///
    /// The policy is compiled and resolved against this host as `rampart run` loads it,
    /// and the request path is resolved as the kernel resolves it (symlinks followed).
    /// An exec is judged when the program is opened (read,exec) and when it runs.
    Explain(ExplainArgs),
    /// Sign policy files into a bundle (checks that they compile first).
    ///
    /// The bundle carries the sources, their digests, the version, issue and expiry times,
    /// the scope and the minimum agent version, signed (DSSE-style) by each --key.
    Sign {
        /// A secret key file; repeatable (one signature each).
        #[arg(long = "key", value_name = "FILE", required = true)]
        keys: Vec<PathBuf>,
        /// The policy version: hosts accept only increasing versions.
        #[arg(long)]
        version: u64,
        /// How long the bundle stays valid, e.g. 30d, 12h; past it, enforcement fails closed.
        #[arg(long, value_name = "DURATION")]
        expires: humantime::Duration,
        /// The fleet or host group (must equal the hosts' trust root scope).
        #[arg(long)]
        scope: String,
        /// The oldest agent version that may load it.
        #[arg(long, value_name = "X.Y.Z", default_value = AGENT_VERSION)]
        min_agent_version: String,
        /// Policy files (YAML).
        #[arg(required = true, value_name = "POLICY")]
        files: Vec<PathBuf>,
        /// Where to write the bundle (never overwritten).
        #[arg(short = 'o', long = "out", value_name = "FILE")]
        out: PathBuf,
    },
    /// Add one signature to an existing bundle (threshold signing by separate people).
    Cosign {
        /// The secret key to sign with.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The bundle (updated in place, atomically; its digest does not change).
        bundle: PathBuf,
    },
    /// Verify a bundle as a host would: exit 0 and a summary, or non-zero and the reason.
    ///
    /// Checks, in order: size, envelope, signatures and threshold, payload, scope, time,
    /// agent version, and that the policies compile. With --state, also the anti-rollback
    /// rule (older version, or same version with other content, is refused) and, when it
    /// passes, advances the state exactly as the daemon does when it loads the bundle.
    Verify {
        /// The trust root.
        #[arg(long, value_name = "FILE")]
        trust: PathBuf,
        /// This host's scope (default: the trust root's).
        #[arg(long)]
        scope: Option<String>,
        /// Anti-rollback state directory (e.g. /var/lib/rampart).
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
        /// How far in the future the bundle's issue time may be.
        #[arg(long, value_name = "DURATION", default_value_t = defaults::CLOCK_SKEW.into())]
        clock_skew: humantime::Duration,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
        bundle: PathBuf,
    },
    /// Hand a bundle to the running daemon, or publish it to an OCI registry.
    ///
    /// Without TARGET: over the control socket (root); the daemon verifies it exactly like
    /// one in the bundle directory, loads it if valid and newer, and keeps it there. The
    /// answer says loaded or rejected and why; the exit status follows it.
    ///
    /// With TARGET `oci://HOST[:PORT]/REPO:TAG`: pushed as an OCI artifact
    /// (`application/vnd.rampart.policy-bundle.v1`, one layer holding the file byte for
    /// byte, annotations for version, scope, expiry and digest). Hosts whose
    /// `policy.source` names the tag pick it up at their next poll.
    Push {
        /// The daemon's control socket.
        #[arg(long, value_name = "PATH", default_value = defaults::CONTROL_SOCKET)]
        socket: PathBuf,
        bundle: PathBuf,
        /// `oci://HOST[:PORT]/REPO:TAG` to publish to (none: the local daemon).
        #[arg(value_name = "TARGET")]
        target: Option<String>,
        #[command(flatten)]
        registry: super::remote::RegistryOptions,
    },
    /// Fetch a bundle from an OCI registry (byte for byte as pushed) or an HTTPS URL, as a
    /// daemon with that `policy.source` would.
    ///
    /// Prints what the registry's annotations claim; nothing is verified here (the source
    /// is untrusted): check the file with `rampart policy verify`, as every host does.
    Pull {
        /// `oci://HOST[:PORT]/REPO:TAG`, `...@sha256:HEX`, or an `https://` URL.
        #[arg(value_name = "SOURCE")]
        source: String,
        /// Where to write the bundle.
        #[arg(short = 'o', long = "out", value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        registry: super::remote::RegistryOptions,
    },
    /// Print a bundle's contents and claimed signers, whether or not it verifies.
    Show {
        /// Print the summary as JSON (without the sources).
        #[arg(long)]
        json: bool,
        bundle: PathBuf,
    },
}

/// The requests of `policy explain`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("requested").required(true).multiple(true)))]
pub struct ExplainArgs {
    /// Policy files (YAML).
    #[arg(long = "policy", value_name = "FILE", required = true)]
    policies: Vec<PathBuf>,
    /// The policy to use when the files hold several.
    #[arg(long)]
    name: Option<String>,
    /// Judge execve of this program (repeatable, as are the other requests).
    #[arg(long, value_name = "PATH", group = "requested")]
    exec: Vec<String>,
    /// Judge opening this file (with --access).
    #[arg(long, value_name = "PATH", group = "requested", requires = "access")]
    open: Vec<String>,
    /// Access for --open: read, write, exec, comma-separated (applies to every --open).
    #[arg(long, value_name = "LIST")]
    access: Option<String>,
    /// Judge mapping this file executable (mmap/mprotect with PROT_EXEC).
    #[arg(long = "map-exec", value_name = "PATH", group = "requested")]
    map_exec: Vec<String>,
    /// Judge connect() to ADDR:PORT/PROTO, e.g. 10.0.0.1:443/tcp or [::1]:53/udp.
    #[arg(long, value_name = "ENDPOINT", group = "requested")]
    connect: Vec<String>,
    /// Judge sendto() without connect to ADDR:PORT/PROTO.
    #[arg(long, value_name = "ENDPOINT", group = "requested")]
    send: Vec<String>,
    /// Judge one request line, of any kind (see --requests), e.g. `create /srv/x file`,
    /// `rename /data/a/f /data/b/f`, `truncate /var/log/app.log`.
    #[arg(long, value_name = "LINE", group = "requested")]
    request: Vec<String>,
    /// Judge every request in FILE, one per line (# comments): `exec PATH`,
    /// `open PATH read,write`, `map-exec PATH`,
    /// `create PATH file|dir|symlink|fifo|socket|char|block`, `remove PATH`,
    /// `link FROM TO`, `rename FROM TO`, `exchange FROM TO`, `truncate PATH`,
    /// `chmod PATH`, `chown PATH`, `utimes PATH`, `xattr PATH`, `connect ADDR:PORT/tcp`,
    /// `send ADDR:PORT/udp`, `socket FAMILY TYPE [PROTOCOL]` (e.g. `socket inet raw 1`),
    /// `capability NAME` (e.g. `capability net_bind_service`), `unix-connect PATH|@NAME`,
    /// `unix-send PATH|@NAME` (a unix socket outside the policy's cgroups),
    /// `bind ADDR:PORT/tcp|udp`, `listen ADDR:PORT/tcp`, `receive PATH read,write` (a
    /// descriptor opened elsewhere), `bpf COMMAND [PROG-TYPE]` (e.g. `bpf obj-get`,
    /// `bpf prog-load 2`), or a system
    /// action alone:
    /// `mount`, `move-mount`, `umount`, `pivot-root`, `chroot`, `user-namespace`,
    /// `module-request`, `init-module`, `finit-module`, `perf-event-open`,
    /// `clone-into-cgroup`. A create, remove, link or rename acts on the entry itself (a
    /// final symlink is not followed); paths are resolved on this host.
    #[arg(long, value_name = "FILE", group = "requested")]
    requests: Option<PathBuf>,
    /// One JSON object per request instead of text.
    #[arg(long)]
    json: bool,
}

impl ExplainArgs {
    /// The request lines this invocation asks about, in the order given.
    fn request_lines(&self) -> Result<Vec<String>> {
        let mut lines = Vec::new();
        lines.extend(self.exec.iter().map(|p| format!("exec {p}")));
        let access = self.access.clone().unwrap_or_default();
        lines.extend(self.open.iter().map(|p| format!("open {p} {access}")));
        lines.extend(self.map_exec.iter().map(|p| format!("map-exec {p}")));
        lines.extend(self.connect.iter().map(|e| format!("connect {e}")));
        lines.extend(self.send.iter().map(|e| format!("send {e}")));
        lines.extend(self.request.iter().cloned());
        if let Some(file) = &self.requests {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            lines.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_owned),
            );
        }
        Ok(lines)
    }

    fn run(self) -> Result<()> {
        let lines = self.request_lines()?;
        explain_command(&self.policies, self.name.as_deref(), &lines, self.json)
    }
}

impl PolicyCommand {
    pub fn run(self) -> Result<()> {
        match self {
            Self::Compile { files, out, host } => compile_command(&files, out.as_deref(), host),
            Self::Explain(args) => args.run(),
            Self::Sign {
                keys,
                version,
                expires,
                scope,
                min_agent_version,
                files,
                out,
            } => bundle::sign(
                &keys,
                &files,
                &SignOptions {
                    version,
                    expires_in: Duration::from(expires),
                    scope,
                    min_agent_version,
                },
                &out,
            ),
            Self::Cosign { key, bundle } => bundle::cosign(&key, &bundle, BUNDLE_TYPE),
            Self::Verify {
                trust,
                scope,
                state,
                clock_skew,
                json,
                bundle,
            } => bundle::verify_command(
                &bundle,
                &VerifyOptions {
                    trust,
                    scope,
                    state,
                    clock_skew: Duration::from(clock_skew).as_secs(),
                    json,
                },
            ),
            Self::Push {
                target: Some(target),
                bundle,
                registry,
                ..
            } => super::remote::push(&bundle, &target, &registry),
            Self::Push {
                socket,
                bundle,
                target: None,
                registry,
            } => {
                if registry.credentials.is_some()
                    || registry.ca_file.is_some()
                    || registry.allow_plain_http
                {
                    anyhow::bail!("--credentials, --ca-file and --allow-plain-http apply to a push to oci://...; give the TARGET");
                }
                bundle::push_command(&socket, &bundle)
            }
            Self::Pull {
                source,
                out,
                registry,
            } => super::remote::pull(&source, &out, &registry),
            Self::Show { json, bundle } => bundle::show_command(&bundle, json),
        }
    }
}

/// Compiles policy files and prints a summary; writes the compiled maps as JSON to `out`
/// (byte-identical for identical inputs). With `host`, paths are resolved and exec rules
/// pinned against this host's files, exactly as `rampart run` loads them.
fn compile_command(files: &[PathBuf], out: Option<&Path>, host: bool) -> Result<()> {
    let resolver: &dyn Resolver = if host { &Host } else { &Literal };
    let compiled = compile_files(files, resolver)?;
    let mut json = serde_json::to_string_pretty(&compiled).context("serialising policies")?;
    json.push('\n');
    for p in &compiled {
        let exec = p
            .paths
            .iter()
            .filter(|e| e.access & access::RUN != 0)
            .count();
        println!(
            "{}: policy `{}` ({}), governs {}; {} rules -> {} path entries ({} runnable), \
             {} IPv4 and {} IPv6 network entries, {} listen entries",
            p.file,
            p.name,
            format!("{:?}", p.mode).to_lowercase(),
            p.governs.join(", "),
            p.rules.len(),
            p.paths.len(),
            exec,
            p.net4.len(),
            p.net6.len(),
            p.listen4.len() + p.listen6.len()
        );
    }
    if let Some(out) = out {
        let tmp = out.with_extension("tmp");
        std::fs::write(&tmp, &json).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, out).with_context(|| format!("writing {}", out.display()))?;
        println!("compiled maps written to {}", out.display());
    }
    Ok(())
}

fn print(e: &Explanation, json: bool, out: &mut impl Write) -> Result<()> {
    if json {
        writeln!(out, "{}", serde_json::to_string(e)?)?;
    } else {
        writeln!(
            out,
            "{:<5} {} {}: {} (rule {}, {}, policy {})",
            e.decision,
            e.action,
            e.target,
            e.reason,
            e.rule.as_deref().unwrap_or("none"),
            e.hook,
            e.policy
        )?;
    }
    Ok(())
}

/// Explains each request under the chosen policy, resolved on this host as `rampart run`
/// would load it.
fn explain_command(
    files: &[PathBuf],
    name: Option<&str>,
    requests: &[String],
    json: bool,
) -> Result<()> {
    let compiled = compile_files(files, &Host)?;
    let policy = request::select(&compiled, name)?;
    if requests.is_empty() {
        bail!(
            "nothing to explain: give --exec, --open, --map-exec, --connect, --send, --request \
             or --requests"
        );
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for (i, line) in requests.iter().enumerate() {
        let request = request::parse_request(line).with_context(|| format!("request {}", i + 1))?;
        print(&explain(policy, &request), json, &mut out)?;
    }
    Ok(())
}
