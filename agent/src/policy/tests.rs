//! Policy parsing, compilation and explanation, on the host (no kernel).

use std::net::SocketAddr;

use rampart_common::{access, FileId, Reason, MAX_RULE_PATH_BYTES, PATH_BUF_BYTES};

use super::{
    compile::{compile, CompileError, Literal, Resolver},
    explain::{explain, parse_endpoint, EntryKind, Request},
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
        cgroup: None,
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
fn bind_and_listen_only_where_spec_listen_says() {
    let listen = "  listen:\n    - cidr: 127.0.0.0/8\n      ports: [8080]\n      protocol: tcp\n    - cidr: 0.0.0.0/0\n      ports: [5353]\n      protocol: udp\n    - cidr: ::1/128\n      protocol: tcp\n";
    let p = policy(&format!("{BASE}{listen}"));
    let serve = |p: &super::CompiledPolicy, ep: &str, listen: bool| {
        let (addr, protocol) = net(ep);
        let request = Request::Serve {
            addr,
            protocol,
            listen,
        };
        explain(p, &request)
    };
    let judge = |ep: &str, listen: bool| {
        let e = serve(&p, ep, listen);
        (e.action, e.reason, e.hook)
    };
    assert_eq!(
        judge("127.0.0.1:8080/tcp", false),
        ("bind", "allowed", "socket_bind")
    );
    assert_eq!(
        judge("127.0.0.1:8080/tcp", true),
        ("listen", "allowed", "socket_listen")
    );
    assert_eq!(judge("127.0.0.1:8081/tcp", false).1, "access-not-granted");
    // 0.0.0.0/0 names every local IPv4 address, but for UDP 5353 only.
    assert_eq!(judge("0.0.0.0:8080/tcp", true).1, "access-not-granted");
    assert_eq!(judge("0.0.0.0:5353/udp", false).1, "allowed");
    assert_eq!(judge("0.0.0.0:5353/tcp", false).1, "access-not-granted");
    // Port 0: a client's ephemeral bind is allowed; listening there needs a rule that
    // covers every port.
    assert_eq!(judge("10.9.9.9:0/tcp", false).1, "allowed");
    assert_eq!(judge("0.0.0.0:0/tcp", true).1, "access-not-granted");
    assert_eq!(judge("[::1]:0/tcp", true).1, "allowed");
    assert_eq!(judge("[::ffff:127.0.0.1]:8080/tcp", true).1, "allowed");
    assert_eq!(judge("[::]:8080/tcp", true).1, "no-rule");
    // Destinations never grant a bind: 10.0.0.0/8 port 443 is a connect rule; only the
    // UDP rule over every local address names 10.0.0.1.
    let e = serve(&p, "10.0.0.1:443/tcp", false);
    assert_eq!(
        (e.reason, e.rule.as_deref()),
        ("access-not-granted", Some("spec.listen[1]"))
    );
    // No spec.listen: only ephemeral binds.
    let plain = policy(BASE);
    assert_eq!(serve(&plain, "127.0.0.1:8080/tcp", false).reason, "no-rule");
}

#[test]
fn a_received_file_is_judged_as_an_open_at_its_path() {
    let p = policy(BASE);
    let receive = |path: &str, access: u32| {
        let e = explain(
            &p,
            &Request::Receive {
                path: path.into(),
                access,
                identity: None,
                cgroup: None,
            },
        );
        (e.action, e.reason, e.hook, e.path)
    };
    assert_eq!(
        receive("/etc/nginx/nginx.conf", access::READ),
        (
            "receive",
            "allowed",
            "file_receive",
            Some("/etc/nginx/nginx.conf".into())
        )
    );
    assert_eq!(
        receive("/etc/nginx/nginx.conf", access::READ | access::WRITE).1,
        "access-not-granted"
    );
    assert_eq!(receive("/etc/shadow", access::READ).1, "no-rule");
    // Opened for writing elsewhere: a pinned program is still not written.
    let e = explain(
        &p,
        &Request::Receive {
            path: "/var/log/nginx/nginx".into(),
            access: access::WRITE,
            identity: Some(FileId {
                dev: 8 << 20,
                ino: 42,
            }),
            cgroup: None,
        },
    );
    assert_eq!(e.reason, "exec-pinned");
}

#[test]
fn bpf_needs_the_permit_and_never_reaches_objects_it_did_not_make() {
    use rampart_common::system;
    let judge = |p: &super::CompiledPolicy, cmd: u32, prog_type: u32| {
        explain(p, &Request::Bpf { cmd, prog_type }).reason
    };
    let plain = policy(BASE);
    assert_eq!(judge(&plain, 0, 0), "not-permitted");
    let p = policy(&format!("{BASE}  permits: [bpf]\n"));
    let number = |name: &str| {
        system::BPF_COMMAND_NAMES
            .iter()
            .position(|n| *n == name)
            .unwrap() as u32
    };
    for allowed in [
        "map-create",
        "map-update-elem",
        "obj-pin",
        "link-create",
        "link-detach",
    ] {
        assert_eq!(judge(&p, number(allowed), 0), "allowed", "{allowed}");
    }
    for denied in [
        "obj-get",
        "prog-get-next-id",
        "map-get-fd-by-id",
        "link-get-fd-by-id",
        "raw-tracepoint-open",
        "iter-create",
    ] {
        assert_eq!(judge(&p, number(denied), 0), "not-permitted", "{denied}");
    }
    let load = number("prog-load");
    assert_eq!(judge(&p, load, 1), "allowed"); // socket filter
    assert_eq!(judge(&p, load, 6), "allowed"); // XDP
    for tracing in [2, 5, 7, 17, 26, 27, 28, 29, 31, 99] {
        assert_eq!(judge(&p, load, tracing), "not-permitted", "type {tracing}");
    }
    assert_eq!(judge(&p, 36, 0), "not-permitted"); // BPF_TOKEN_CREATE
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

const TREE: &str = r#"apiVersion: rampart.dev/v1alpha1
kind: Policy
metadata:
  name: tree
spec:
  governs: [/t.slice]
  exec:
    allow: [/opt/app/bin/tool]
  files:
    - path: /data/a/
      access: [read, create, remove, refer]
    - path: /data/b/
      access: [read, write, create, remove, refer]
    - path: /data/c/
      access: [read, create, remove, refer]
    - path: /data/hidden/
      access: [create, remove, refer]
    - path: /data/noref/
      access: [read, create, remove]
    - path: /data/deep/
      access: [read, create, remove, refer]
    - path: /data/deep/inner/extra
      access: [write]
    - path: /data/dev/
      access: [create, make-char, truncate, chmod, chown]
"#;

fn request_entry(kind: &str, path: &str) -> Request {
    let (need, hook) = match kind {
        "char" => (access::MAKE_CHAR, "path_mknod"),
        "block" => (access::MAKE_BLOCK, "path_mknod"),
        _ => (access::CREATE, "path_mknod"),
    };
    Request::Create {
        path: path.into(),
        need,
        hook,
    }
}

fn rename(from: &str, to: &str, exchange: bool, moved: EntryKind, target: EntryKind) -> Request {
    Request::Rename {
        from: from.into(),
        to: to.into(),
        exchange,
        moved,
        target,
    }
}

fn link(from: &str, to: &str, ino: Option<u64>) -> Request {
    Request::Link {
        from: from.into(),
        to: to.into(),
        identity: ino.map(|ino| FileId { dev: 8 << 20, ino }),
        dir: false,
    }
}

#[test]
fn every_right_parses_and_an_unknown_one_is_an_error() {
    let p = policy(TREE);
    let dev = p.paths.iter().find(|e| e.path == "/data/dev/").unwrap();
    assert_eq!(
        dev.access,
        access::CREATE | access::MAKE_CHAR | access::TRUNCATE | access::CHMOD | access::CHOWN
    );
    assert_eq!(
        p.rules[8].text,
        "/data/dev/ create,make-char,truncate,chmod,chown"
    );
    let e = parse_err(&TREE.replace("make-char", "make-chr"));
    assert!(e.contains("make-chr"), "{e}");
    let e = parse_err(&TREE.replace("[create, make-char,", "[create, create,"));
    assert!(e.contains("access create listed twice"), "{e}");
}

#[test]
fn a_directory_rule_grants_tree_rights_below_it_not_on_itself() {
    let p = policy(TREE);
    let itself = p
        .paths
        .iter()
        .find(|e| e.path == "/data/a" && e.exact)
        .unwrap();
    assert_eq!(
        itself.access,
        access::READ,
        "tree rights stripped from the directory itself"
    );
    let remove_a = explain(
        &p,
        &Request::Remove {
            path: "/data/a".into(),
            dir: true,
        },
    );
    assert_eq!(
        (remove_a.decision, remove_a.reason),
        ("deny", "access-not-granted")
    );
    let remove_in_a = explain(
        &p,
        &Request::Remove {
            path: "/data/a/sub".into(),
            dir: true,
        },
    );
    assert_eq!(remove_in_a.decision, "allow");
    assert_eq!(remove_in_a.hook, "path_rmdir");
    // Entries of a directory inherit the tree rights of the directory rule above them.
    let inner = p
        .paths
        .iter()
        .find(|e| e.path == "/data/deep/inner/extra")
        .unwrap();
    assert_eq!(inner.access & access::CREATE, access::CREATE);
}

#[test]
fn devices_need_their_own_right() {
    let p = policy(TREE);
    let file = explain(&p, &request_entry("file", "/data/dev/f"));
    let chr = explain(&p, &request_entry("char", "/data/dev/null"));
    let blk = explain(&p, &request_entry("block", "/data/dev/sda"));
    let chr_elsewhere = explain(&p, &request_entry("char", "/data/a/null"));
    assert_eq!(file.decision, "allow");
    assert_eq!(chr.decision, "allow");
    assert_eq!((blk.decision, blk.reason), ("deny", "access-not-granted"));
    assert_eq!(
        (chr_elsewhere.decision, chr_elsewhere.reason),
        ("deny", "access-not-granted")
    );
    assert_eq!(chr.action, "create");
}

#[test]
fn deeper_rules_are_flagged_on_the_entries_above_them() {
    use rampart_common::path_flags::HAS_DEEPER;
    let p = policy(TREE);
    let flagged = |path: &str, exact: bool| {
        p.paths
            .iter()
            .find(|e| e.path == path && e.exact == exact)
            .unwrap_or_else(|| panic!("no entry {path}"))
            .flags
            & HAS_DEEPER
            != 0
    };
    assert!(flagged("/data/deep/", false));
    assert!(
        flagged("/data/deep", true),
        "its own directory rule lies below it"
    );
    assert!(!flagged("/data/a/", false));
    assert!(!flagged("/data/deep/inner/extra", true));
}

#[test]
fn links_and_renames_never_gain_rights() {
    let p = policy(TREE);
    let f = EntryKind::File;
    let none = EntryKind::Absent;
    let case = |r: Request| {
        let e = explain(&p, &r);
        (e.decision, e.reason)
    };
    assert_eq!(
        case(rename("/data/a/x", "/data/noref/x", false, f, none)),
        ("deny", "access-not-granted")
    );
    assert_eq!(
        case(rename("/data/a/x", "/data/b/x", false, f, none)),
        ("deny", "refer-gains-access")
    );
    assert_eq!(
        case(rename("/data/a/x", "/data/c/x", false, f, none)),
        ("allow", "allowed")
    );
    assert_eq!(
        case(rename("/data/noref/x", "/data/noref/y", false, f, none)),
        ("allow", "allowed"),
        "within one directory refer is not needed"
    );
    assert_eq!(
        case(link("/data/hidden/s", "/data/a/s", Some(7))),
        ("deny", "refer-gains-access")
    );
    assert_eq!(
        case(link("/data/a/s", "/data/c/s", Some(7))),
        ("allow", "allowed")
    );
    // An exchange moves both ways: the file from b would lose write, the one from a gain it.
    assert_eq!(
        case(rename("/data/b/e", "/data/a/e", true, f, f)),
        ("deny", "refer-gains-access")
    );
    assert_eq!(
        case(rename("/data/c/e", "/data/a/e", true, f, f)),
        ("allow", "allowed")
    );
    // Replacing an existing entry removes it: remove is needed at the target too.
    assert_eq!(
        case(rename("/data/a/x", "/data/c/y", false, f, f)),
        ("allow", "allowed")
    );
    // A directory moved into a tree with more specific rules below could gain them.
    assert_eq!(
        case(rename(
            "/data/a/d",
            "/data/deep/d",
            false,
            EntryKind::Dir,
            none
        )),
        ("deny", "refer-gains-access")
    );
    assert_eq!(
        case(rename(
            "/data/a/d",
            "/data/c/d",
            false,
            EntryKind::Dir,
            none
        )),
        ("allow", "allowed")
    );
    let files_only = explain(&p, &rename("/data/a/f", "/data/deep/f", false, f, none));
    assert_eq!(
        files_only.decision, "allow",
        "a file carries only its own rights"
    );
}

#[test]
fn an_exec_pinned_file_gets_no_new_name_write_or_truncation() {
    let p = policy(TREE);
    // The Pinned resolver gives every file inode 42: the tool's pinned identity.
    let pinned_link = explain(&p, &link("/opt/app/bin/tool", "/data/a/tool", Some(42)));
    assert_eq!(
        (pinned_link.decision, pinned_link.reason),
        ("deny", "exec-pinned")
    );
    let write = explain(
        &p,
        &Request::Open {
            path: "/data/b/tool".into(),
            access: access::WRITE,
            identity: Some(FileId {
                dev: 8 << 20,
                ino: 42,
            }),
            cgroup: None,
        },
    );
    assert_eq!((write.decision, write.reason), ("deny", "exec-pinned"));
    let other = explain(
        &p,
        &Request::Open {
            path: "/data/b/other".into(),
            access: access::WRITE,
            identity: Some(FileId {
                dev: 8 << 20,
                ino: 43,
            }),
            cgroup: None,
        },
    );
    assert_eq!(other.decision, "allow");
    let truncate = explain(
        &p,
        &Request::Truncate {
            path: "/data/dev/tool".into(),
            identity: Some(FileId {
                dev: 8 << 20,
                ino: 42,
            }),
        },
    );
    assert_eq!(
        (truncate.decision, truncate.reason),
        ("deny", "exec-pinned")
    );
}

#[test]
fn code_the_workload_could_place_is_refused() {
    let src = |extra: &str| format!("{TREE}    - path: {extra}\n");
    let compile_err = |text: &str| {
        let s = PolicySource::parse("p.yaml", text).unwrap();
        compile(&s.documents[0], "p.yaml", &Pinned).unwrap_err()
    };
    let e = compile_err(&src("/opt/app/bin/\n      access: [read, create]"));
    assert!(
        matches!(&e, CompileError::PlaceableExecutable { path, how, .. }
            if path == "/opt/app/bin/tool" && how == "create"),
        "{e}"
    );
    assert!(e.to_string().contains("drop `create`"), "{e}");
    let lib = TREE.replace(
        "allow: [/opt/app/bin/tool]",
        "allow: [/opt/app/bin/tool]\n    libraries: [/data/c/]",
    );
    let e = compile_err(&lib);
    assert!(
        matches!(&e, CompileError::PlaceableExecutable { path, .. } if path == "/data/c/"),
        "{e}"
    );
    // Removing alone cannot place code: allowed.
    let s = PolicySource::parse(
        "p.yaml",
        &src("/opt/app/bin/\n      access: [read, remove]"),
    )
    .unwrap();
    assert!(compile(&s.documents[0], "p.yaml", &Pinned).is_ok());
}

#[test]
fn walked_paths_deeper_than_the_walk_are_denied() {
    let p = policy(TREE);
    let deep = format!("/data/a/{}x", "d/".repeat(63));
    let shallow = format!("/data/a/{}x", "d/".repeat(10));
    let e = explain(&p, &request_entry("file", &deep));
    assert_eq!((e.decision, e.reason), ("deny", "path-too-long"));
    assert_eq!(
        explain(&p, &request_entry("file", &shallow)).decision,
        "allow"
    );
    // Opens resolve with bpf_d_path: depth alone does not deny them.
    let opened = explain(&p, &open(&deep, access::READ));
    assert_eq!(opened.decision, "allow");
}

#[test]
fn system_actions_are_denied_unless_permitted() {
    use super::explain::system_request;
    use rampart_common::system;
    let sys = |word: &str| Request::System(system_request(word).unwrap());
    let none = policy(BASE);
    assert_eq!(none.permits, 0);
    for word in [
        "mount",
        "pivot-root",
        "chroot",
        "user-namespace",
        "init-module",
    ] {
        let e = explain(&none, &sys(word));
        assert_eq!(
            (e.decision, e.reason, e.rule),
            ("deny", "not-permitted", None)
        );
    }
    let text = format!("{BASE}  permits: [mount, user-namespaces]\n");
    let some = policy(&text);
    assert_eq!(some.permits, system::MOUNT | system::USER_NAMESPACES);
    let e = explain(&some, &sys("umount"));
    assert_eq!(
        (e.action, e.decision, e.hook, e.target.as_str()),
        ("mount", "allow", "sb_umount", "umount")
    );
    assert_eq!(e.rule.as_deref(), Some("spec.permits: mount"));
    let e = explain(&some, &sys("user-namespace"));
    assert_eq!((e.action, e.decision), ("user-namespace", "allow"));
    let e = explain(&some, &sys("perf-event-open"));
    assert_eq!((e.decision, e.reason), ("deny", "not-permitted"));
    let e = explain(&some, &sys("kernel-access"));
    assert_eq!(
        (e.action, e.decision, e.reason, e.hook),
        ("lockdown", "deny", "not-permitted", "locked_down")
    );
    // CLONE_INTO_CGROUP: no permit exists, so not even every permit allows it.
    let all =
        format!("{BASE}  permits: [mount, chroot, user-namespaces, kernel-load, perf-events, kernel-access]\n");
    let e = explain(&policy(&all), &sys("clone-into-cgroup"));
    assert_eq!(
        (e.action, e.decision, e.hook),
        ("clone-into-cgroup", "deny", "task_alloc")
    );
    assert!(parse_err(&format!("{BASE}  permits: [mount, mount]\n")).contains("mount"));
    let unknown = parse_err(&format!("{BASE}  permits: [kexec]\n"));
    assert!(unknown.contains("kexec"), "{unknown}");
}

#[test]
fn sockets_past_the_defaults_need_an_entry() {
    let sock = |family, kind, protocol| Request::Socket {
        family,
        kind,
        protocol,
    };
    let p = policy(BASE);
    // Defaults: unix, TCP and UDP over IPv4 and IPv6.
    for (f, t, pr) in [
        (1, 1, 0),
        (1, 2, 0),
        (2, 1, 0),
        (2, 1, 6),
        (10, 2, 17),
        (10, 1, 262),
    ] {
        let e = explain(&p, &sock(f, t, pr));
        assert_eq!(
            (e.decision, e.hook),
            ("allow", "socket_create"),
            "{f}/{t}/{pr}"
        );
    }
    // Raw, ping, SCTP, packet, netlink: denied without an entry.
    for (f, t, pr) in [
        (2, 3, 1),
        (10, 3, 58),
        (2, 2, 1),
        (10, 2, 58),
        (2, 1, 132),
        (17, 3, 768),
        (16, 3, 0),
    ] {
        let e = explain(&p, &sock(f, t, pr));
        assert_eq!(
            (e.action, e.decision, e.reason),
            ("socket", "deny", "no-rule"),
            "{f}/{t}/{pr}"
        );
    }
    assert_eq!(explain(&p, &sock(2, 3, 1)).target, "inet/raw/1");
    let granted = policy(&format!(
        "{BASE}  sockets: [inet-raw, netlink-route, netlink-31, packet]\n"
    ));
    assert_eq!(granted.sockets.inet, rampart_common::sockets::INET_RAW);
    assert_eq!(granted.sockets.netlink_protocols, 1 | 1 << 31);
    let decide = |f, t, pr| explain(&granted, &sock(f, t, pr)).decision;
    assert_eq!(decide(2, 3, 1), "allow");
    assert_eq!(decide(10, 3, 58), "allow");
    assert_eq!(decide(2, 2, 1), "deny", "ping is its own class");
    assert_eq!(decide(16, 3, 0), "allow");
    assert_eq!(decide(16, 3, 31), "allow");
    assert_eq!(
        decide(16, 3, 16),
        "deny",
        "only the listed netlink protocols"
    );
    assert_eq!(decide(17, 3, 768), "allow");
    assert_eq!(decide(40, 1, 0), "deny");
    for (bad, says) in [
        ("inet", "allowed by default"),
        ("netlink-nope", "unknown netlink protocol"),
        ("netlink-32", "unknown netlink protocol"),
        ("carrier-pigeon", "unknown socket"),
    ] {
        let err = parse_err(&format!("{BASE}  sockets: [{bad}]\n"));
        assert!(err.contains(says), "{bad}: {err}");
    }
}

#[test]
fn capabilities_are_denied_unless_listed() {
    let cap = |cap| Request::Capability { cap };
    let p = policy(BASE);
    assert_eq!(p.capabilities, 0);
    let e = explain(&p, &cap(21));
    assert_eq!(
        (e.action, e.target.as_str(), e.decision, e.reason, e.hook),
        (
            "capability",
            "sys_admin",
            "deny",
            "not-permitted",
            "capable"
        )
    );
    let p = policy(&format!(
        "{BASE}  capabilities: [net_bind_service, setuid]\n"
    ));
    assert_eq!(p.capabilities, 1 << 10 | 1 << 7);
    let e = explain(&p, &cap(10));
    assert_eq!(
        (e.decision, e.rule.as_deref()),
        ("allow", Some("spec.capabilities: net_bind_service"))
    );
    assert_eq!(explain(&p, &cap(6)).decision, "deny");
    let err = parse_err(&format!("{BASE}  capabilities: [CAP_SYS_ADMIN]\n"));
    assert!(err.contains("unknown capability `CAP_SYS_ADMIN`"), "{err}");
    assert!(parse_err(&format!("{BASE}  capabilities: [chown, chown]\n")).contains("chown"));
}

#[test]
fn cgroup_files_are_written_only_where_the_policy_governs() {
    let p = policy(&BASE.replace(
        "  files:\n",
        "  files:\n    - path: /sys/fs/cgroup/\n      access: [read, write]\n",
    ));
    let write = |cgroup: &str| {
        explain(
            &p,
            &Request::Open {
                path: format!("/sys/fs/cgroup{cgroup}/cgroup.procs").replace("//", "/"),
                access: access::WRITE,
                identity: None,
                cgroup: Some(cgroup.into()),
            },
        )
    };
    for governed in ["/web.slice", "/web.slice/worker"] {
        assert_eq!(write(governed).decision, "allow", "{governed}");
    }
    for outside in ["/", "/web.slice2", "/system.slice/agent.service"] {
        let e = write(outside);
        assert_eq!(
            (e.decision, e.reason, e.rule),
            ("deny", "cgroup-not-governed", None),
            "{outside}"
        );
    }
    // Reading is judged by the path rules alone; files elsewhere are not cgroup files.
    let read = explain(
        &p,
        &Request::Open {
            path: "/sys/fs/cgroup/cgroup.procs".into(),
            access: access::READ,
            identity: None,
            cgroup: Some("/".into()),
        },
    );
    assert_eq!(read.decision, "allow");
    assert_eq!(
        explain(&p, &open("/var/log/nginx/a", access::WRITE)).decision,
        "allow"
    );
}

#[test]
fn unix_peers_outside_the_policy_need_connect_at_their_path() {
    let text = BASE.replace(
        "    - path: /etc/nginx/secret.key\n      access: [write]\n",
        "    - path: /etc/nginx/secret.key\n      access: [write]\n    - path: /run/app/\n      \
         access: [read, write]\n    - path: /run/app/api.sock\n      access: [connect]\n    \
         - path: /run/peers/\n      access: [connect]\n",
    );
    let p = policy(&text);
    let unix = |path: &str, send| Request::Unix {
        path: path.into(),
        send,
    };
    let e = explain(&p, &unix("/run/app/api.sock", false));
    assert_eq!(
        (e.action, e.decision, e.hook),
        ("unix-connect", "allow", "unix_stream_connect")
    );
    assert_eq!(e.path.as_deref(), Some("/run/app/api.sock"));
    // Write on the directory is not connect.
    let e = explain(&p, &unix("/run/app/other.sock", true));
    assert_eq!(
        (e.action, e.decision, e.reason, e.hook),
        ("unix-send", "deny", "access-not-granted", "unix_may_send")
    );
    // A directory rule's connect reaches every socket below it.
    assert_eq!(
        explain(&p, &unix("/run/peers/a/b.sock", false)).decision,
        "allow"
    );
    // Abstract names match no rule, even one that would cover `/`.
    let e = explain(&p, &unix("@/run/peers/a", false));
    assert_eq!((e.decision, e.reason), ("deny", "no-rule"));
    assert_eq!(e.path.as_deref(), Some("@/run/peers/a"));
    assert!(parse_err(&text.replace("[connect]", "[conect]")).contains("conect"));
}

/// Two policies, `a` governing `a_governs` and `b` governing `b_governs`, put together as
/// the host does.
fn two_policies(a_governs: &str, b_governs: &str) -> anyhow::Result<Vec<super::CompiledPolicy>> {
    let doc = |name: &str, governs: &str| {
        format!(
            "apiVersion: rampart.dev/v1alpha1\nkind: Policy\nmetadata:\n  name: {name}\n\
             spec:\n  governs: [{governs}]\n"
        )
    };
    let text = format!("{}---\n{}", doc("a", a_governs), doc("b", b_governs));
    let src = PolicySource::parse("p.yaml", &text)?;
    super::host::compile_sources(&[src], &Pinned)
}

#[test]
fn governed_patterns_are_checked_where_policies_are_put_together() {
    let ok = two_policies(
        "/system.slice/docker-*.scope",
        "/system.slice/docker-a.scope/sub",
    )
    .expect("a cgroup below a match may have a policy of its own");
    assert_eq!(ok[0].governs, ["/system.slice/docker-*.scope"]);
    let e = format!(
        "{:#}",
        two_policies(
            "/system.slice/docker-*.scope",
            "/system.slice/docker-a.scope"
        )
        .unwrap_err()
    );
    assert!(
        e.contains("matches the pattern /system.slice/docker-*.scope of policy `a`"),
        "{e}"
    );
    let e = format!(
        "{:#}",
        two_policies("/system.slice/docker-*.scope", "/system.slice/crio-*.scope").unwrap_err()
    );
    assert!(e.contains("one pattern per parent cgroup"), "{e}");
    for (bad, why) in [
        ("/system.slice/*/x", "last component"),
        ("/docker-*.scope", "cgroup v2 root"),
        ("/a/b**", "2 `*`"),
    ] {
        let e = parse_err(&BASE.replace("governs: [", &format!("governs: [{bad}, ")));
        assert!(e.contains(why), "{bad}: {e}");
    }
}
