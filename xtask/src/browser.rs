//! The console in a real browser: Debian's headless Chromium (installed here when missing)
//! loads each page of `rampart console` served over the fixture lineage, the rendered DOM is
//! checked (denials listed, a proof verified, the policy version, a hostile path shown as
//! text, the page's own script run), and a screenshot of each page is kept in
//! target/console/.

use std::{
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::{prereq, run::run_cmd, workspace::workspace_root};

/// The fixture's denied path, as the serialized DOM shows its text.
const HOSTILE_AS_TEXT: &str =
    "/tmp/&lt;script&gt;alert('x')&lt;/script&gt;\"onmouseover=\"alert(1)";

/// (page, file name, what its rendered DOM must hold).
const PAGES: &[(&str, &str, &[&str])] = &[
    (
        "/",
        "overview",
        &[
            "Latest denials",
            "8 denied",
            "covered by signed checkpoints",
        ],
    ),
    (
        "/policy",
        "policy",
        &["<th scope=\"row\">Version</th><td>7</td>", "security-team"],
    ),
    (
        "/lineage?decision=deny",
        "lineage",
        &[HOSTILE_AS_TEXT, "/etc/shadow-1", "live tail: "],
    ),
    (
        "/lineage/5",
        "record",
        &["Record hash (BLAKE3)", HOSTILE_AS_TEXT],
    ),
    (
        "/proofs?seq=5",
        "proofs",
        &["VERIFIED: record 5 is leaf 5", "Roots equal</th><td>yes"],
    ),
    (
        "/health",
        "health",
        &["3 events lost", "Decisions over time"],
    ),
];

struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromium() -> Result<PathBuf> {
    if let Some(p) = prereq::find_on_path("chromium") {
        return Ok(p);
    }
    prereq::apt_install(&["chromium"], "the console's browser test")?;
    prereq::find_on_path("chromium").context("chromium is not on PATH after installing it")
}

/// Flags for a root, offline, headless Chromium with a fresh profile.
fn browser(chromium: &Path, profile: &Path) -> Command {
    let mut c = Command::new(chromium);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--window-size=1280,900",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .stdin(Stdio::null());
    c
}

/// Runs a browser command for at most 60 s (killed then), returning its stdout.
fn bounded(cmd: &mut Command, url: &str) -> Result<Vec<u8>> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("running chromium on {url}"))?;
    let mut stdout = child.stdout.take().context("chromium's stdout")?;
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut out);
        out
    });
    let started = Instant::now();
    while child.try_wait()?.is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            bail!("chromium did not finish {url} within 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    reader
        .join()
        .map_err(|_| anyhow::anyhow!("reading chromium's output"))
}

/// The demo's console, started for a moment on a free loopback port over what the demo
/// shipped, its pages fetched and checked: the command to run it, and what each page showed.
pub struct DemoConsole {
    pub command: String,
    pub checked: Vec<(&'static str, String)>,
}

/// Starts `rampart console` over the demo's lineage, bundles and trust root, checks the
/// overview, the policy page's explain form and a proof, and stops it.
pub fn offline_console(agent: &Path, demo: &Path) -> Result<DemoConsole> {
    let args = |listen: &str| -> Vec<String> {
        [
            "console",
            "--lineage",
            &demo.join("lineage").display().to_string(),
            "--pub",
            &demo.join("host.pub").display().to_string(),
            "--trust",
            &demo.join("trust.json").display().to_string(),
            "--bundles",
            &demo.join("bundles").display().to_string(),
            "--listen",
            listen,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let command = format!("{} {}", agent.display(), args("127.0.0.1:9464").join(" "));
    let listen = format!("127.0.0.1:{}", free_port()?);
    let _served = Served(
        Command::new(agent)
            .args(args(&listen))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting rampart console")?,
    );
    wait_listening(&listen)?;
    let mut checked = Vec::new();
    for (page, want) in [
        ("/", "Latest denials"),
        (
            "/policy",
            "<form method=\"get\" action=\"/policy\" class=\"explain\">",
        ),
        ("/health", "Decisions over time"),
    ] {
        let (status, body) = rampart_vm_tests::http::get(&listen, page)?;
        if status != 200 || !body.contains(want) {
            bail!("the demo's console answered {page} with {status}, without `{want}`");
        }
        // With the archive, the policy page shows the bundle's own expiry and scope.
        if body.contains("not recorded in the lineage") {
            bail!("the demo's console did not find the archived bundle in force ({page})");
        }
        checked.push((page, format!("{status}, {} bytes", body.len())));
    }
    Ok(DemoConsole { command, checked })
}

fn wait_listening(listen: &str) -> Result<()> {
    let started = Instant::now();
    while TcpStream::connect(listen).is_err() {
        if started.elapsed() > Duration::from_secs(20) {
            bail!("rampart console did not listen on {listen} within 20 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Runs the browser test: the pages, then the live tail as a browser sees it.
pub fn test() -> Result<()> {
    let root = workspace_root();
    let chromium = chromium()?;
    eprintln!("==> console browser test (headless {})", chromium.display());
    run_cmd(Command::new("cargo").current_dir(&root).args([
        "build",
        "-q",
        "-p",
        "rampart",
        "--bin",
        "rampart",
        "--example",
        "console_fixture",
    ]))?;
    let out = root.join("target/console");
    let fixture = out.join("fixture");
    std::fs::create_dir_all(&out)?;
    run_cmd(Command::new(root.join("target/debug/examples/console_fixture")).arg(&fixture))?;
    let port = free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let _served = Served(
        Command::new(root.join("target/debug/rampart"))
            .arg("console")
            .arg("--lineage")
            .arg(fixture.join("lineage"))
            .arg("--pub")
            .arg(fixture.join("host.pub"))
            .args(["--listen", &listen])
            .stdin(Stdio::null())
            .spawn()
            .context("starting rampart console")?,
    );
    wait_listening(&listen)?;
    let profile = out.join("profile");
    let mut failures = Vec::new();
    for (path, name, wants) in PAGES {
        let _ = std::fs::remove_dir_all(&profile);
        let url = format!("http://{listen}{path}");
        // --timeout: the DOM is dumped 4 s after navigation began, so the page's script has
        // run (the live tail has connected; its stream never ends, so no load-based wait).
        let dom = bounded(
            browser(&chromium, &profile).args(["--timeout=4000", "--dump-dom", &url]),
            &url,
        )?;
        let dom = String::from_utf8_lossy(&dom);
        let mut missing: Vec<&str> = wants.iter().copied().filter(|w| !dom.contains(w)).collect();
        // The console's script ran (it replaces the no-script text of the live tail).
        if dom.contains("needs JavaScript") {
            missing.push("the console's script to have run");
        }
        // The only script element is the console's own: a hostile field made none.
        if dom.matches("<script").count() != 1 {
            missing.push("exactly one <script> element");
        }
        let shot = out.join(format!("{name}.png"));
        let _ = std::fs::remove_dir_all(&profile);
        let _ = std::fs::remove_file(&shot);
        bounded(
            browser(&chromium, &profile)
                .arg("--timeout=4000")
                .arg(format!("--screenshot={}", shot.display()))
                .arg(&url),
            &url,
        )?;
        if !shot.exists() {
            missing.push("a screenshot");
        }
        if missing.is_empty() {
            eprintln!(
                "  PASS {path} ({} bytes of DOM; {})",
                dom.len(),
                shot.display()
            );
        } else {
            eprintln!("  FAIL {path}: missing {missing:?}");
            std::fs::write(out.join(format!("{name}.dom.html")), dom.as_bytes())?;
            failures.push(*path);
        }
    }
    let _ = std::fs::remove_dir_all(&profile);
    if !failures.is_empty() {
        bail!(
            "the console's browser test failed on {failures:?} (DOMs kept in {})",
            out.display()
        );
    }
    eprintln!("==> console browser test: {} pages passed", PAGES.len());
    Ok(())
}
