//! Policy parsing, compilation and explanation, on the host (no kernel).

use std::net::SocketAddr;

use rampart_common::{access, FileId, Reason, MAX_RULE_PATH_BYTES, PATH_BUF_BYTES};

use super::{
    compile::{compile, CompileError, Literal, Resolver},
    explain::{explain, parse_endpoint, Request},
    source::{PolicySource, Protocol, SourceError},
};

const BASE: &str = r#"apiVersion: rampart.dev/v1alpha1
kind: Policy
metadata:
  name: web
spec:
  governs: [/web.slice]
  exec:
    allow:
      - /usr/sbin/nginx
    libraries:
      - /usr/lib/x86_64-linux-gnu/
  files:
    - path: /etc/nginx/
      access: [read]
    - path: /var/log/nginx/
      access: [read, write]
    - path: /etc/nginx/secret.key
      access: [write]
  network:
    - cidr: 10.0.0.0/8
      ports: [443, "8000-8080"]
      protocol: tcp
    - cidr: 10.1.0.0/16
      protocol: udp
    - cidr: fd00::/8
      ports: [53]
      protocol: udp
"#;

/// Pins every file to a fixed identity, as the host would.
struct Pinned;
impl Resolver for Pinned {
    fn canonical(&self, _path: &str) -> Option<String> {
        None
    }
    fn identity(&self, _canonical: &str) -> Option<FileId> {
        Some(FileId {
            dev: 8 << 20,
            ino: 42,
        })
    }
}

fn parse_err(text: &str) -> String {
    match PolicySource::parse("p.yaml", text) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("expected an error for:\n{text}"),
    }
}

fn policy(text: &str) -> super::CompiledPolicy {
    let src = PolicySource::parse("p.yaml", text).unwrap();
    compile(&src.documents[0], "p.yaml", &Pinned).unwrap()
}

fn exec(path: &str, ino: u64) -> Request {
    Request::Exec {
        path: path.into(),
        identity: Some(FileId { dev: 8 << 20, ino }),
    }
}

fn open(path: &str, acc: u32) -> Request {
    Request::Open {
        path: path.into(),
        access: acc,
        identity: None,
    }
}

fn net(ep: &str) -> (SocketAddr, Protocol) {
    parse_endpoint(ep).unwrap()
}

#[test]
fn compiles_deterministically() {
    let a = serde_json::to_string(&policy(BASE)).unwrap();
    let b = serde_json::to_string(&policy(BASE)).unwrap();
    assert_eq!(a, b);
}

#[test]
fn directory_rules_are_inherited_by_more_specific_entries() {
    let p = policy(BASE);
    let key = p
        .paths
        .iter()
        .find(|e| e.path == "/etc/nginx/secret.key")
        .unwrap();
    assert_eq!(
        key.access,
        access::READ | access::WRITE,
        "read comes from /etc/nginx/"
    );
    // The directory rule also covers opening the directory itself.
    assert!(p.paths.iter().any(|e| e.path == "/etc/nginx" && e.exact));
}

#[test]
fn exec_needs_the_pinned_identity() {
    let p = policy(BASE);
    let e = explain(&p, &exec("/usr/sbin/nginx", 42));
    assert_eq!((e.decision, e.reason), ("allow", "allowed"));
    let e = explain(&p, &exec("/usr/sbin/nginx", 43));
    assert_eq!(
        (e.decision, e.reason, e.hook),
        ("deny", "identity-mismatch", "bprm_check_security")
    );
    let e = explain(&p, &exec("/usr/bin/curl", 42));
    assert_eq!(
        (e.decision, e.reason, e.hook),
        ("deny", "no-rule", "file_open")
    );
}

#[test]
fn libraries_map_but_never_run() {
    let p = policy(BASE);
    let lib = "/usr/lib/x86_64-linux-gnu/libc.so.6";
    let e = explain(&p, &Request::MapExec { path: lib.into() });
    assert_eq!(e.reason, "allowed");
    let e = explain(&p, &exec(lib, 42));
    assert_eq!(
        (e.reason, e.rule.as_deref()),
        ("access-not-granted", Some("spec.exec.libraries[0]"))
    );
}

#[test]
fn file_access_is_judged_by_the_longest_match() {
    let p = policy(BASE);
    assert_eq!(
        explain(&p, &open("/etc/nginx/nginx.conf", access::READ)).reason,
        "allowed"
    );
    assert_eq!(
        explain(&p, &open("/etc/nginx/nginx.conf", access::WRITE)).reason,
        "access-not-granted"
    );
    assert_eq!(
        explain(&p, &open("/etc/nginxx", access::READ)).reason,
        "no-rule"
    );
    assert_eq!(
        explain(
            &p,
            &open("/var/log/nginx/a.log", access::READ | access::WRITE)
        )
        .reason,
        "allowed"
    );
    assert_eq!(
        explain(&p, &open("/etc/passwd", access::READ)).reason,
        "no-rule"
    );
}

#[test]
fn paths_past_the_kernel_buffer_are_denied_not_truncated() {
    let p = policy(BASE);
    let long = format!("/var/log/nginx/{}", "a".repeat(PATH_BUF_BYTES));
    assert_eq!(
        explain(&p, &open(&long, access::READ)).reason,
        Reason::PathTooLong.name()
    );
    // Longer than the trie key but within the buffer: the directory rule is a true prefix.
    let mid = format!("/var/log/nginx/{}", "a".repeat(600));
    assert_eq!(explain(&p, &open(&mid, access::READ)).reason, "allowed");
}

#[test]
fn network_rules_match_cidr_port_and_protocol() {
    let p = policy(BASE);
    let judge = |ep: &str, send: bool| {
        let (addr, protocol) = net(ep);
        let r = if send {
            Request::Send { addr, protocol }
        } else {
            Request::Connect { addr, protocol }
        };
        explain(&p, &r).reason
    };
    assert_eq!(judge("10.2.3.4:443/tcp", false), "allowed");
    assert_eq!(judge("10.2.3.4:8080/tcp", false), "allowed");
    assert_eq!(judge("10.2.3.4:8081/tcp", false), "access-not-granted");
    // 10.1/16 inherits 10/8's tcp ports and adds udp on every port.
    assert_eq!(judge("10.1.2.3:443/tcp", false), "allowed");
    assert_eq!(judge("10.1.2.3:9999/udp", true), "allowed");
    assert_eq!(judge("11.0.0.1:443/tcp", false), "no-rule");
    assert_eq!(judge("[::ffff:10.0.0.1]:443/tcp", false), "allowed");
    assert_eq!(judge("[fd00::1]:53/udp", true), "allowed");
    assert_eq!(judge("[fd00::1]:53/tcp", false), "access-not-granted");
    assert_eq!(judge("[::1]:53/udp", true), "no-rule");
}

#[test]
fn audit_mode_reports_audit_decisions() {
    let p = policy(&BASE.replace(
        "governs: [/web.slice]",
        "governs: [/web.slice]\n  mode: audit",
    ));
    let e = explain(&p, &exec("/usr/bin/curl", 1));
    assert_eq!((e.decision, e.reason), ("audit", "no-rule"));
}

#[test]
fn too_many_port_ranges_for_one_prefix_is_an_error() {
    let ports: Vec<String> = (1..=9).map(|p| p.to_string()).collect();
    let text = BASE.replace("[443, \"8000-8080\"]", &format!("[{}]", ports.join(", ")));
    let src = PolicySource::parse("p.yaml", &text).unwrap();
    let err = compile(&src.documents[0], "p.yaml", &Literal).unwrap_err();
    assert!(
        matches!(err, CompileError::TooManyPortRanges { count: 9, .. }),
        "{err}"
    );
}

#[test]
fn a_program_the_workload_may_write_is_refused() {
    // Write access to the directory holding an allowed program.
    let text = BASE.replace("- path: /etc/nginx/\n", "- path: /usr/sbin/\n");
    assert!(text.contains("/usr/sbin/\n"), "fixture changed: {text}");
    let text = text.replacen("access: [read]", "access: [read, write]", 1);
    let src = PolicySource::parse("p.yaml", &text).unwrap();
    let err = compile(&src.documents[0], "p.yaml", &Literal).unwrap_err();
    assert_eq!(
        err.to_string(),
        "spec.exec.allow[0]: `/usr/sbin/nginx` may be both written and run (or mapped \
         executable): a governed workload could replace its own programs; drop write access \
         or the exec rule"
    );
}

#[test]
fn bad_input_errors_name_file_line_and_field() {
    let cases = [
        (
            "- /usr/sbin/nginx",
            "- usr/sbin/nginx",
            "p.yaml:9:",
            "relative",
        ),
        (
            "10.0.0.0/8",
            "10.0.0.1/8",
            "spec.network[0]",
            "host bits set",
        ),
        (
            "10.0.0.0/8",
            "10.0.0.0/33",
            "spec.network[0]",
            "invalid CIDR",
        ),
        (
            "protocol: udp\n    - cidr: fd00",
            "protocol: sctp\n    - cidr: fd00",
            "spec.network[1].protocol",
            "sctp",
        ),
        (
            "access: [write]",
            "access: [write]\n      mode: x",
            "spec.files[2]",
            "unknown field `mode`",
        ),
        (
            "- /usr/sbin/nginx",
            "- /usr/sbin/nginx\n      - /usr/sbin/nginx",
            "spec.exec.allow",
            "repeats rule",
        ),
        (
            "\"8000-8080\"",
            "\"9000-8080\"",
            "spec.network[0].ports",
            "above the last",
        ),
        ("[/web.slice]", "[/]", "spec.governs", "cgroup root"),
        ("/etc/nginx/\n", "/etc/../nginx/\n", "spec.files[0]", "`..`"),
        ("kind: Policy", "kind: Pod", "kind", "unsupported kind"),
        ("name: web", "name: Web_Server", "metadata", "invalid name"),
        (
            "access: [read]",
            "access: []",
            "spec.files[0]",
            "at least one",
        ),
        (
            "- /usr/sbin/nginx",
            "- /usr/lib/",
            "spec.exec.allow",
            "directory",
        ),
        (
            "10.1.0.0/16",
            "::ffff:10.0.0.0/104",
            "spec.network[1]",
            "IPv4-mapped",
        ),
    ];
    for (from, to, place, what) in cases {
        assert!(BASE.contains(from), "{from}");
        let err = parse_err(&BASE.replacen(from, to, 1));
        assert!(err.starts_with("p.yaml:"), "{err}");
        assert!(err.contains(place), "{from} -> {to}: {err} lacks {place}");
        assert!(err.contains(what), "{from} -> {to}: {err} lacks {what}");
    }
}

#[test]
fn too_long_rule_paths_are_rejected() {
    let long = format!("/{}", "a".repeat(MAX_RULE_PATH_BYTES));
    let err = parse_err(&BASE.replace("/etc/nginx/secret.key", &long));
    assert!(err.contains("limited to"), "{err}");
}

#[test]
fn empty_and_garbage_files_are_errors() {
    assert!(matches!(
        PolicySource::parse("p.yaml", ""),
        Err(SourceError::Invalid { .. })
    ));
    assert!(parse_err("{{{").starts_with("p.yaml:"));
}

#[test]
fn several_documents_in_one_file() {
    let two = format!("{BASE}---\n{}", BASE.replace("name: web", "name: batch"));
    let src = PolicySource::parse("p.yaml", &two).unwrap();
    assert_eq!(src.documents.len(), 2);
}

#[test]
fn examples_compile() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    let compiled = super::host::compile_files(&files, &Literal).unwrap();
    assert_eq!(compiled.len(), files.len());
    assert!(compiled.iter().all(|p| !p.paths.is_empty()));
}
