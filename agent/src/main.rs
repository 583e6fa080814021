//! `rampart`: the agent's command line.

use std::{io::IsTerminal, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use rampart::{
    bundle::{cli as bundle_cli, payload::BUNDLE_TYPE, trust::TRUST_ROOT_TYPE},
    daemon::{self, BundleLocation, BundleSource, PolicyOrigin, RunConfig},
    lineage::cli as lineage_cli,
    policy::cli,
    recorder::LineageSettings,
};
use tracing_subscriber::EnvFilter;

/// Rampart: a kernel-level runtime enforcer. Inside governed cgroups, every exec, file
/// open and outbound connection that policy does not allow is denied by BPF-LSM and cgroup
/// programs.
#[derive(Debug, Parser)]
#[command(name = "rampart", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load the kernel programs and enforce policy until SIGINT/SIGTERM (as root).
    ///
    /// The policy is a signed bundle (--bundle, verified against --trust, with anti-rollback
    /// state in --state) or, for development, unsigned policy files (--policy, version 0).
    /// Each policy governs the cgroups in its spec.governs (relative to the cgroup v2 root)
    /// and all of their descendants: there, every exec, open, executable mapping, connect
    /// and addressed send is denied with EPERM unless a rule allows it (or recorded and
    /// allowed, in audit mode). Processes outside governed cgroups are never affected.
    /// Exec rules are pinned to the identity (device, inode) of the file when loaded.
    ///
    /// SIGHUP re-reads the bundle (or files): a valid, newer bundle replaces the policy in
    /// force atomically; one that fails any check changes nothing and is logged with its
    /// reason. When the bundle in force expires, governed cgroups fail closed (reason
    /// policy-expired) unless --audit-when-expired.
    ///
    /// Decisions are written to stdout as JSON lines (denials; all decisions with
    /// `events: all`); logs go to stderr (JSON when not a terminal, level from RAMPART_LOG).
    /// Readiness is signalled with sd_notify READY=1. Enforcement stops when this process
    /// exits (pinning arrives with the daemon work).
    #[command(group(clap::ArgGroup::new("origin").args(["policies", "bundle", "config"])))]
    Run {
        /// The configuration file (TOML; see docs/configuration.md). Used when neither
        /// --policy nor --bundle is given; its [policy], [lineage] and [daemon] sections
        /// replace the flags below.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["policies", "bundle", "trust", "lineage"])]
        config: Option<PathBuf>,
        /// An unsigned policy file (YAML); repeatable. For development and trials.
        #[arg(long = "policy", value_name = "FILE", conflicts_with_all = ["bundle", "trust", "state"])]
        policies: Vec<PathBuf>,
        /// A signed policy bundle (from `rampart policy sign`).
        #[arg(long, value_name = "FILE", requires = "trust")]
        bundle: Option<PathBuf>,
        /// The trust root bundles are verified against.
        #[arg(long, value_name = "FILE")]
        trust: Option<PathBuf>,
        /// Anti-rollback state directory.
        #[arg(long, value_name = "DIR", default_value = "/var/lib/rampart")]
        state: PathBuf,
        /// This host's scope (default: the trust root's).
        #[arg(long)]
        scope: Option<String>,
        /// How far in the future a bundle's issue time may be.
        #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = humantime::parse_duration)]
        clock_skew: std::time::Duration,
        /// When the bundle in force expires, audit (allow and record) instead of denying
        /// everything governed. Only for a deliberate rollout choice.
        #[arg(long)]
        audit_when_expired: bool,
        /// Write the lineage (hash-chained, checkpointed record of every decision, policy
        /// change, gap, start and stop) into this directory. Needs --host-key.
        #[arg(long, value_name = "DIR", requires = "host_key")]
        lineage: Option<PathBuf>,
        /// The host's secret key (from `rampart keygen`) that signs lineage checkpoints.
        #[arg(long, value_name = "FILE")]
        host_key: Option<PathBuf>,
        /// A lineage checkpoint after this many records...
        #[arg(long, value_name = "N", default_value_t = 10_000)]
        checkpoint_every: u64,
        /// ...or this long after the last one.
        #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
        checkpoint_interval: std::time::Duration,
        /// Start a new lineage segment past this many bytes.
        #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024 * 1024)]
        segment_bytes: u64,
        /// Pin programs, links and maps here (bpffs): enforcement then outlives the agent
        /// (crash, SIGTERM, upgrade), and the next agent adopts the pinned state without a
        /// window. `rampart release` removes it.
        #[arg(long, value_name = "DIR", default_value = "/sys/fs/bpf/rampart")]
        pin_dir: PathBuf,
        /// Do not pin: enforcement ends when this process exits (for trials and tests).
        #[arg(long)]
        no_pin: bool,
    },
    /// Break-glass: detach every pinned Rampart program and remove its maps (as root).
    ///
    /// Governed cgroups are no longer enforced afterwards. Asks for confirmation on a
    /// terminal unless --yes; refuses without a terminal unless --yes.
    Release {
        /// The pin directory of the agent to release (when no daemon answers on --socket).
        #[arg(long, value_name = "DIR", default_value = "/sys/fs/bpf/rampart")]
        pin_dir: PathBuf,
        /// A running daemon's control socket: the daemon records the release in its lineage,
        /// detaches everything and exits.
        #[arg(long, value_name = "PATH", default_value = "/run/rampart/control.sock")]
        socket: PathBuf,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
    },
    /// Check, compile, explain, sign and verify policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Generate an Ed25519 key pair for signing bundles or trust roots.
    ///
    /// Writes NAME.key (the secret seed, mode 0600; never overwrites a file) and NAME.pub,
    /// and prints the key id (BLAKE3-derived from the public key).
    Keygen {
        /// DIR/NAME of the pair; the directory must exist.
        #[arg(long, value_name = "DIR/NAME")]
        out: PathBuf,
    },
    /// Create, rotate, sign and install trust roots (which keys may sign bundles).
    #[command(subcommand)]
    Trust(TrustCommand),
    /// What the running daemon enforces: policy, governed cgroups, programs, counters,
    /// lineage (over the control socket; root).
    Status {
        /// The daemon's control socket.
        #[arg(long, value_name = "PATH", default_value = "/run/rampart/control.sock")]
        socket: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Verify and read a lineage (the hash-chained record `rampart run --lineage` writes).
    #[command(subcommand)]
    Lineage(LineageCommand),
}

/// Which records `lineage show` and `lineage tail` print (all filters must match).
#[derive(Debug, clap::Args)]
struct LineageFilter {
    /// Record kind: decision, policy-change, policy-refused, gap, checkpoint, agent-start,
    /// agent-stop.
    #[arg(long)]
    kind: Option<String>,
    /// Decision: allow, deny, audit.
    #[arg(long)]
    decision: Option<String>,
    /// Action: exec, open, map-exec, connect, send.
    #[arg(long)]
    action: Option<String>,
    #[arg(long)]
    pid: Option<u64>,
    /// Cgroup id.
    #[arg(long)]
    cgroup: Option<u64>,
    /// From this time: RFC 3339 (2026-11-22T10:00:00Z) or a duration ago (15m).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Up to this time (same forms).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// The records' JSON lines as written.
    #[arg(long)]
    json: bool,
}

impl LineageFilter {
    fn build(&self) -> anyhow::Result<rampart::lineage::cli::Filter> {
        use rampart::lineage::cli::parse_time;
        Ok(rampart::lineage::cli::Filter {
            kind: self.kind.clone(),
            decision: self.decision.clone(),
            action: self.action.clone(),
            pid: self.pid,
            cgroup: self.cgroup,
            since_ns: self.since.as_deref().map(parse_time).transpose()?,
            until_ns: self.until.as_deref().map(parse_time).transpose()?,
        })
    }
}

#[derive(Debug, Subcommand)]
enum LineageCommand {
    /// Check every hash, link, seq, segment link and checkpoint signature.
    ///
    /// Prints the verified range, the anchored size, the unanchored tail, gaps (count and
    /// events lost) and restarts. Exit 0 intact, 1 tampered (naming the first bad record;
    /// also when the lineage cannot be read), 2 unanchored tail, 3 gaps present.
    Verify {
        /// The lineage directory.
        dir: PathBuf,
        /// The host's public key (NAME.pub of the key given to `run --host-key`).
        #[arg(long = "pub", value_name = "FILE")]
        public: PathBuf,
        /// Checkpoints kept off-host (a copy of DIR/checkpoints): each must match.
        #[arg(long, value_name = "FILE")]
        checkpoints: Option<PathBuf>,
        /// The report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print records (not verified: use `lineage verify`).
    Show {
        dir: PathBuf,
        #[command(flatten)]
        filter: LineageFilter,
    },
    /// Print the last records, and with -f new ones as they are written.
    Tail {
        dir: PathBuf,
        /// How many records to print first.
        #[arg(short = 'n', long, default_value_t = 10)]
        lines: usize,
        /// Keep printing new records until interrupted.
        #[arg(short = 'f', long)]
        follow: bool,
        #[command(flatten)]
        filter: LineageFilter,
    },
}

#[derive(Debug, Subcommand)]
enum TrustCommand {
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

#[derive(Debug, Subcommand)]
enum PolicyCommand {
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
    #[command(group(clap::ArgGroup::new("request").required(true).multiple(true)))]
    Explain {
        /// Policy files (YAML).
        #[arg(long = "policy", value_name = "FILE", required = true)]
        policies: Vec<PathBuf>,
        /// The policy to use when the files hold several.
        #[arg(long)]
        name: Option<String>,
        /// Judge execve of this program (repeatable, as are the other requests).
        #[arg(long, value_name = "PATH", group = "request")]
        exec: Vec<String>,
        /// Judge opening this file (with --access).
        #[arg(long, value_name = "PATH", group = "request", requires = "access")]
        open: Vec<String>,
        /// Access for --open: read, write, exec, comma-separated (applies to every --open).
        #[arg(long, value_name = "LIST")]
        access: Option<String>,
        /// Judge mapping this file executable (mmap/mprotect with PROT_EXEC).
        #[arg(long = "map-exec", value_name = "PATH", group = "request")]
        map_exec: Vec<String>,
        /// Judge connect() to ADDR:PORT/PROTO, e.g. 10.0.0.1:443/tcp or [::1]:53/udp.
        #[arg(long, value_name = "ENDPOINT", group = "request")]
        connect: Vec<String>,
        /// Judge sendto() without connect to ADDR:PORT/PROTO.
        #[arg(long, value_name = "ENDPOINT", group = "request")]
        send: Vec<String>,
        /// Judge every request in FILE, one per line: `exec PATH`, `open PATH read,write`,
        /// `map-exec PATH`, `connect ADDR:PORT/tcp`, `send ADDR:PORT/udp` (# comments).
        #[arg(long, value_name = "FILE", group = "request")]
        requests: Option<PathBuf>,
        /// One JSON object per request instead of text.
        #[arg(long)]
        json: bool,
    },
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
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        expires: std::time::Duration,
        /// The fleet or host group (must equal the hosts' trust root scope).
        #[arg(long)]
        scope: String,
        /// The oldest agent version that may load it.
        #[arg(long, value_name = "X.Y.Z", default_value = rampart::bundle::cli::AGENT_VERSION)]
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
        #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = humantime::parse_duration)]
        clock_skew: std::time::Duration,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
        bundle: PathBuf,
    },
    /// Hand a bundle to the running daemon (control socket, root): it is verified exactly
    /// like one in the bundle directory, loaded if valid and newer, and kept there. The
    /// answer says loaded or rejected and why; the exit status follows it.
    Push {
        /// The daemon's control socket.
        #[arg(long, value_name = "PATH", default_value = "/run/rampart/control.sock")]
        socket: PathBuf,
        bundle: PathBuf,
    },
    /// Print a bundle's contents and claimed signers, whether or not it verifies.
    Show {
        /// Print the summary as JSON (without the sources).
        #[arg(long)]
        json: bool,
        bundle: PathBuf,
    },
}

/// The request lines an `explain` invocation asks about.
fn explain_requests(
    exec: Vec<String>,
    open: Vec<String>,
    access: Option<String>,
    map_exec: Vec<String>,
    connect: Vec<String>,
    send: Vec<String>,
    requests: Option<PathBuf>,
) -> anyhow::Result<Vec<String>> {
    let mut lines = Vec::new();
    lines.extend(exec.iter().map(|p| format!("exec {p}")));
    let access = access.unwrap_or_default();
    lines.extend(open.iter().map(|p| format!("open {p} {access}")));
    lines.extend(map_exec.iter().map(|p| format!("map-exec {p}")));
    lines.extend(connect.iter().map(|e| format!("connect {e}")));
    lines.extend(send.iter().map(|e| format!("send {e}")));
    if let Some(file) = requests {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
        lines.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned),
        );
    }
    Ok(lines)
}

/// `rampart release`.
fn release(dir: &std::path::Path, socket: &std::path::Path, yes: bool) -> anyhow::Result<()> {
    use std::io::{BufRead, Write};
    let daemon = socket.exists();
    if !daemon && !dir.exists() {
        anyhow::bail!(
            "nothing is pinned at {} and no daemon answers on {}",
            dir.display(),
            socket.display()
        );
    }
    if !yes {
        if !std::io::stdin().is_terminal() {
            anyhow::bail!("refusing to release without a terminal to confirm; pass --yes");
        }
        eprint!(
            "Detach every Rampart program pinned under {} and stop enforcement? [y/N] ",
            dir.display()
        );
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            anyhow::bail!("not released");
        }
    }
    if let Some((links, maps)) = rampart::control::release_via_daemon(socket)? {
        println!(
            "released by the daemon on {}: {links} links detached, {maps} maps removed, recorded \
             in its lineage; it has stopped; nothing is enforced",
            socket.display()
        );
        return Ok(());
    }
    let (links, maps) = rampart::loader::release(dir)?;
    tracing::warn!(pin_dir = %dir.display(), links, maps, "released: enforcement removed (break-glass)");
    println!(
        "released {}: {links} links detached, {maps} maps removed; nothing is enforced (no \
         daemon was running, so this is logged, not recorded in a lineage)",
        dir.display()
    );
    Ok(())
}

fn init_logging() {
    let filter = EnvFilter::try_from_env("RAMPART_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::io::stderr().is_terminal() {
        builder.init();
    } else {
        builder.json().flatten_event(true).init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let daemon = matches!(cli.command, Command::Run { .. } | Command::Release { .. });
    let result = match cli.command {
        Command::Run {
            policies,
            bundle,
            trust,
            state,
            scope,
            clock_skew,
            audit_when_expired,
            lineage,
            host_key,
            checkpoint_every,
            checkpoint_interval,
            segment_bytes,
            pin_dir,
            no_pin,
            config,
        } => {
            let lineage = lineage
                .zip(host_key)
                .map(|(dir, host_key)| LineageSettings {
                    dir,
                    host_key,
                    checkpoint_every,
                    checkpoint_interval,
                    segment_bytes,
                });
            let run_config = if policies.is_empty() && bundle.is_none() {
                let path = config.unwrap_or_else(|| PathBuf::from(rampart::config::DEFAULT_PATH));
                rampart::config::Config::read(&path).map(|c| RunConfig {
                    config_file: Some(path.clone()),
                    ..RunConfig::from(c)
                })
            } else {
                let origin = match (bundle, trust) {
                    (Some(bundle), Some(trust)) => PolicyOrigin::Bundle(BundleSource {
                        location: BundleLocation::File(bundle),
                        trust,
                        state,
                        scope,
                        clock_skew: clock_skew.as_secs(),
                        allowed: None,
                    }),
                    _ => PolicyOrigin::Files(policies),
                };
                Ok(RunConfig {
                    origin,
                    lineage,
                    pin_dir: (!no_pin).then_some(pin_dir),
                    audit_when_expired,
                    no_policy: None,
                    control_socket: None,
                    config_file: None,
                })
            };
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| run_config.and_then(|c| rt.block_on(daemon::run(c))))
        }
        Command::Policy(PolicyCommand::Compile { files, out, host }) => {
            cli::compile_command(&files, out.as_deref(), host)
        }
        Command::Policy(PolicyCommand::Explain {
            policies,
            name,
            exec,
            open,
            access,
            map_exec,
            connect,
            send,
            requests,
            json,
        }) => explain_requests(exec, open, access, map_exec, connect, send, requests)
            .and_then(|lines| cli::explain_command(&policies, name.as_deref(), &lines, json)),
        Command::Policy(PolicyCommand::Sign {
            keys,
            version,
            expires,
            scope,
            min_agent_version,
            files,
            out,
        }) => bundle_cli::sign(
            &keys,
            &files,
            &bundle_cli::SignOptions {
                version,
                expires_in: expires,
                scope,
                min_agent_version,
            },
            &out,
        ),
        Command::Policy(PolicyCommand::Cosign { key, bundle }) => {
            bundle_cli::cosign(&key, &bundle, BUNDLE_TYPE)
        }
        Command::Policy(PolicyCommand::Verify {
            trust,
            scope,
            state,
            clock_skew,
            json,
            bundle,
        }) => bundle_cli::verify_command(
            &bundle,
            &bundle_cli::VerifyOptions {
                trust,
                scope,
                state,
                clock_skew: clock_skew.as_secs(),
                json,
            },
        ),
        Command::Policy(PolicyCommand::Show { json, bundle }) => {
            bundle_cli::show_command(&bundle, json)
        }
        Command::Keygen { out } => bundle_cli::keygen(&out),
        Command::Status { socket, json } => rampart::control::status_command(&socket, json),
        Command::Policy(PolicyCommand::Push { socket, bundle }) => {
            rampart::control::push_command(&socket, &bundle)
        }
        Command::Release {
            pin_dir,
            socket,
            yes,
        } => release(&pin_dir, &socket, yes),
        Command::Trust(TrustCommand::Init {
            keys,
            threshold,
            scope,
            out,
        }) => bundle_cli::trust_init(&keys, threshold, &scope, &out),
        Command::Trust(TrustCommand::Rotate {
            trust,
            keys,
            threshold,
            scope,
            sign,
            out,
        }) => bundle_cli::trust_rotate(&trust, &keys, threshold, scope.as_deref(), &sign, &out),
        Command::Trust(TrustCommand::Cosign { key, file }) => {
            bundle_cli::cosign(&key, &file, TRUST_ROOT_TYPE)
        }
        Command::Trust(TrustCommand::Update { trust, successors }) => {
            bundle_cli::trust_update(&trust, &successors)
        }
        Command::Trust(TrustCommand::Show { file }) => bundle_cli::trust_show(&file),
        Command::Lineage(LineageCommand::Verify {
            dir,
            public,
            checkpoints,
            json,
        }) => {
            return match lineage_cli::verify_command(&dir, &public, checkpoints.as_deref(), json) {
                Ok(code) => ExitCode::from(code),
                Err(e) => {
                    eprintln!("rampart: error: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Lineage(LineageCommand::Show { dir, filter }) => filter
            .build()
            .and_then(|f| lineage_cli::show_command(&dir, &f, filter.json)),
        Command::Lineage(LineageCommand::Tail {
            dir,
            lines,
            follow,
            filter,
        }) => filter
            .build()
            .and_then(|f| lineage_cli::tail_command(&dir, &f, filter.json, lines, follow)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // On a terminal the plain line is the message; for the daemon under a log
            // collector, the structured record too.
            if daemon && !std::io::stderr().is_terminal() {
                tracing::error!(error = %format!("{e:#}"), "rampart failed");
            }
            eprintln!("rampart: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
