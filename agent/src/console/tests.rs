//! The console's handlers over a lineage written by the real writer ([`super::fixture`]):
//! every page renders what the lineage holds, hostile record fields arrive as text, the
//! security headers are on every response, proofs verify only with the host's key, and
//! `/metrics` and `/readyz` say what the daemon's state says.

use std::{path::PathBuf, sync::Arc};

use axum::{
    body::Body,
    http::{header, Request, StatusCode},
    middleware, Router,
};
use tower::ServiceExt;

use super::{
    fixture,
    guard::{self, RateLimit, Token},
    live::{Live, PolicyView},
    metrics::Metrics,
    router, Console,
};
use crate::{
    bundle::keys::{PublicKey, SecretKey},
    lineage::proof,
    policy::{host::compile_sources, resolutions::Resolutions, source::PolicySource},
};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rampart-console-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn offline(name: &str) -> (PathBuf, PublicKey, Router) {
    let dir = scratch(name).join("lineage");
    let key = fixture::write(&dir).unwrap();
    let console = Console::new(Some(dir.clone()), Some(key.clone()));
    (dir, key, router(Arc::new(console)))
}

async fn get(app: &Router, uri: &str) -> (StatusCode, axum::http::HeaderMap, String) {
    let response = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
        .await
        .unwrap();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

#[tokio::test]
async fn every_page_renders_the_lineage_with_the_security_headers() {
    let (_, _, app) = offline("pages");
    for (uri, want) in [
        ("/", "Latest denials"),
        ("/", "8 denied"),
        ("/policy", "<th scope=\"row\">Version</th><td>7</td>"),
        ("/lineage", "/srv/www/index-0.html"),
        ("/lineage/2", "Record hash (BLAKE3)"),
        ("/proofs", "inclusion proof"),
        ("/proofs?seq=2", "VERIFIED: record 2 is leaf 2"),
        ("/health", "3 events lost"),
        ("/assets/console.js", "textContent"),
        ("/nowhere", "No such page"),
    ] {
        let (status, headers, body) = get(&app, uri).await;
        assert!(
            body.contains(want),
            "{uri}: `{want}` missing ({status})\n{body}"
        );
        let expected = if uri == "/nowhere" {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::OK
        };
        assert_eq!(status, expected, "{uri}");
        assert_eq!(
            headers[header::CONTENT_SECURITY_POLICY],
            guard::CSP,
            "{uri}"
        );
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{uri}");
        assert!(
            !headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN),
            "{uri}"
        );
        if uri != "/assets/console.js" {
            assert!(!body.contains("<script>alert"), "{uri}: unescaped markup");
        }
    }
}

#[tokio::test]
async fn a_hostile_path_is_shown_as_text_everywhere() {
    let (_, _, app) = offline("xss");
    let escaped =
        "/tmp/&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;onmouseover=&quot;alert(1)";
    for uri in ["/", "/lineage", "/lineage?decision=deny", "/lineage/5"] {
        let (_, _, body) = get(&app, uri).await;
        assert!(body.contains(escaped), "{uri}\n{body}");
        assert!(!body.contains(fixture::HOSTILE_PATH), "{uri}");
        assert_eq!(
            body.matches("<script").count(),
            1,
            "{uri}: only the console's own script"
        );
    }
}

#[tokio::test]
async fn the_explorer_filters_and_names_what_a_bad_filter_may_be() {
    let (_, _, app) = offline("filter");
    let (_, _, body) = get(&app, "/lineage?decision=deny&action=open").await;
    assert_eq!(body.matches("<tr class=\"deny\">").count(), 8, "{body}");
    assert!(!body.contains("index-0.html"));
    let (_, _, body) = get(&app, "/lineage?pid=4201").await;
    assert!(
        body.contains("/etc/shadow-1") && !body.contains("shadow-6"),
        "{body}"
    );
    let (status, _, body) = get(&app, "/lineage?decision=maybe").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body.contains("decision=maybe: not one of allow, deny, audit"),
        "{body}"
    );
    let (status, _, _) = get(&app, "/lineage?since=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = get(&app, "/lineage/999").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = get(&app, "/lineage/x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn proofs_verify_with_the_host_key_only() {
    let (dir, key, app) = offline("proofs");
    let (_, _, json) = get(&app, "/proofs/4.json").await;
    let p = proof::parse(json.as_bytes()).unwrap();
    assert_eq!(proof::check(&p, &key).unwrap().seq, Some(4));
    let (_, _, body) = get(&app, "/proofs?seq=4").await;
    assert!(body.contains("Roots equal</th><td>yes"), "{body}");
    // The same lineage judged with another key: the page says it does not verify.
    let other = SecretKey::generate().unwrap().public();
    let app = router(Arc::new(Console::new(Some(dir), Some(other))));
    let (_, _, body) = get(&app, "/proofs?seq=4").await;
    assert!(body.contains("NOT VERIFIED"), "{body}");
    let (_, _, body) = get(&app, "/").await;
    assert!(body.contains("does NOT verify"), "{body}");
}

#[tokio::test]
async fn an_altered_record_raises_the_banner() {
    let (dir, key, _) = offline("tamper");
    let seg = dir.join("segment-00000000.jsonl");
    let text = std::fs::read_to_string(&seg).unwrap();
    std::fs::write(&seg, text.replacen("/etc/shadow-1", "/etc/shadow-X", 1)).unwrap();
    let app = router(Arc::new(Console::new(Some(dir), Some(key))));
    let (_, _, body) = get(&app, "/lineage").await;
    assert!(
        body.contains("The lineage does NOT verify: record 3 onward"),
        "{body}"
    );
}

fn live_console(
    name: &str,
    live: Live,
) -> (tokio::sync::watch::Sender<Live>, Arc<Metrics>, Router) {
    let dir = scratch(name).join("lineage");
    let key = fixture::write(&dir).unwrap();
    let mut console = Console::new(Some(dir), Some(key));
    let (tx, rx) = tokio::sync::watch::channel(live);
    let metrics = Arc::new(Metrics::new());
    console.live = Some(rx);
    console.metrics = Some(metrics.clone());
    (tx, metrics, router(Arc::new(console)))
}

fn ready() -> Live {
    let source = PolicySource::parse(
        "web.yaml",
        "apiVersion: rampart.dev/v1alpha1\nkind: Policy\nmetadata:\n  name: web\nspec:\n  governs: [/web.slice]\n  files:\n    - path: /srv/www/\n      access: [read]\n",
    )
    .unwrap();
    let compiled = compile_sources(&[source], &Resolutions::default()).unwrap();
    Live {
        started: true,
        policy: Some(PolicyView {
            version: 7,
            policies: vec!["web".into()],
            expires_at: Some(crate::support::time::unix_now() + 3600),
            compiled: Arc::new(compiled),
            ..PolicyView::default()
        }),
        hooks: vec![("file_open".into(), true)],
        lineage_writable: Some(true),
        ..Live::default()
    }
}

#[tokio::test]
async fn readyz_and_metrics_follow_the_daemon() {
    let (tx, metrics, app) = live_console("live", ready());
    let (status, _, body) = get(&app, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, r#"{"ready":true,"reasons":[]}"#);
    let mut detached = ready();
    detached.hooks[0].1 = false;
    tx.send_replace(detached);
    let (status, _, body) = get(&app, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("hook file_open is detached"), "{body}");
    let (status, _, _) = get(&app, "/healthz").await;
    assert_eq!(status, StatusCode::OK);

    metrics.decision("deny", "open", "no-rule", Some("web"));
    let (status, headers, body) = get(&app, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers[header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(
        body.contains("# TYPE rampart_decisions_total counter"),
        "{body}"
    );
    let response = app
        .clone()
        .oneshot(
            Request::get("/metrics")
                .header(
                    header::ACCEPT,
                    "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
                )
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let body = String::from_utf8_lossy(&body);
    assert!(headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    assert!(body.contains(
        "rampart_decisions_total{decision=\"deny\",action=\"open\",reason=\"no-rule\",policy=\"web\"} 1"
    ), "{body}");
    assert!(body.ends_with("# EOF\n"));
    let (_, _, body) = get(&app, "/health").await;
    assert!(
        body.contains("hook file_open") || body.contains("DETACHED"),
        "{body}"
    );
}

#[tokio::test]
async fn offline_there_is_no_daemon_to_measure_or_be_ready() {
    let (_, _, app) = offline("offline-metrics");
    let (status, _, body) = get(&app, "/metrics").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("offline console"));
    let (status, _, body) = get(&app, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("offline console"), "{body}");
}

#[tokio::test]
async fn the_explain_form_judges_with_the_policy_in_force() {
    let (_, _, app) = live_console("explain", ready());
    let (_, _, body) = get(
        &app,
        "/policy?policy=web&kind=open-read&target=/srv/www/a.html",
    )
    .await;
    assert!(
        body.contains("<div class=\"verdict allow\" id=\"explained\">"),
        "{body}"
    );
    let (_, _, body) = get(
        &app,
        "/policy?policy=web&kind=open-write&target=/srv/www/a.html",
    )
    .await;
    assert!(
        body.contains("<div class=\"verdict deny\" id=\"explained\">"),
        "{body}"
    );
    let (_, _, body) = get(&app, "/policy?kind=exec&target=%3Cscript%3E").await;
    assert!(
        body.contains("&lt;script&gt;") && !body.contains("<script>"),
        "{body}"
    );
    let (status, _, body) = get(&app, "/policy?kind=connect&target=nowhere").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("expected ADDR:PORT/tcp"), "{body}");
    // Offline without the bundle archive, the form says why it is not there.
    let (_, _, app) = offline("explain-offline");
    let (_, _, body) = get(&app, "/policy").await;
    assert!(
        body.contains("Explain is not available: no bundle archive"),
        "{body}"
    );
}

#[tokio::test]
async fn the_live_tail_streams_records_after_the_given_seq() {
    use tokio_stream::StreamExt;
    let (_, _, app) = offline("tail");
    let response = app
        .oneshot(
            Request::get("/lineage/stream?after=19&decision=deny")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    let mut stream = response.into_body().into_data_stream();
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next())
            .await
            .expect("an event within 5 s")
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    // The first event is the first denial after seq 19.
    assert!(text.contains("event: record"), "{text}");
    let seq: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(seq > 19, "{text}");
    assert!(text.contains("\"decision\":\"deny\""), "{text}");
}

#[tokio::test]
async fn off_host_listeners_want_the_token_and_every_listener_a_rate() {
    let (_, _, app) = offline("guard");
    let token = Token(Arc::new(b"0123456789abcdef0123".to_vec()));
    let guarded = app
        .clone()
        .layer(middleware::from_fn_with_state(token, guard::bearer));
    let (status, headers, _) = get(&guarded, "/healthz").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        headers[header::WWW_AUTHENTICATE],
        "Bearer realm=\"rampart\""
    );
    let response = guarded
        .clone()
        .oneshot(
            Request::get("/healthz")
                .header(header::AUTHORIZATION, "Bearer 0123456789abcdef0123")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let limited = app.layer(middleware::from_fn_with_state(
        RateLimit::new(0.001, 2.0),
        guard::rate,
    ));
    assert_eq!(get(&limited, "/healthz").await.0, StatusCode::OK);
    assert_eq!(get(&limited, "/healthz").await.0, StatusCode::OK);
    assert_eq!(
        get(&limited, "/healthz").await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// Reads what the server sends until it closes (a TLS peer may close without close_notify).
async fn read_all(mut stream: impl tokio::io::AsyncRead + Unpin) -> String {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(Ok(n)) =
        tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf)).await
    {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn the_tls_listener_serves_only_requests_with_the_token() {
    use tokio::io::AsyncWriteExt;
    let dir = scratch("tls");
    std::fs::create_dir_all(&dir).unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key, token) = (dir.join("cert.pem"), dir.join("key.pem"), dir.join("token"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    std::fs::write(&token, "0123456789abcdef0123\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (_, _, app) = offline("tls-lineage");
    super::serve::Settings {
        listen: vec![addr],
        socket: PathBuf::new(),
        tls_cert: Some(cert),
        tls_key: Some(key),
        token_file: Some(token),
        ..super::serve::Settings::default()
    }
    .spawn(app)
    .unwrap();
    let connect = || async {
        for _ in 0..100 {
            if let Ok(s) = tokio::net::TcpStream::connect(addr).await {
                return s;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("the TLS listener never listened");
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let fetch = |auth: &'static str| {
        let connector = connector.clone();
        async move {
            let tcp = connect().await;
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let mut tls = connector.connect(name, tcp).await.unwrap();
            tls.write_all(
                format!(
                    "GET /healthz HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
            read_all(tls).await
        }
    };
    let answer = fetch("Authorization: Bearer 0123456789abcdef0123\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("{\"live\":true}"), "{answer}");
    let answer = fetch("").await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    let answer = fetch("Authorization: Bearer wrong-token-wrong-token\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    // Plain HTTP to the TLS port gets no HTTP answer at all.
    let mut plain = connect().await;
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let answer = read_all(plain).await;
    assert!(!answer.contains("HTTP/1.1 200"), "{answer}");
}

/// `rampart probe`'s question, over a real unix socket served by the console's router: 200
/// while the daemon is ready, 503 with the reason once its bundle expired.
#[tokio::test]
async fn the_probe_asks_over_the_unix_socket() {
    let (tx, _, app) = live_console("probe", ready());
    let socket = scratch("probe-sock").join("console.sock");
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let limit = std::time::Duration::from_secs(5);
    let (status, body) = super::probe::ask(&socket, "/readyz", limit).await.unwrap();
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"ready":true,"reasons":[]}"#)
    );
    let (status, _) = super::probe::ask(&socket, "/healthz", limit).await.unwrap();
    assert_eq!(status, 200);
    tx.send_modify(|l| l.expired = true);
    let (status, body) = super::probe::ask(&socket, "/readyz", limit).await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("expired"), "{body}");
    let e = super::probe::ask(&socket.with_file_name("absent.sock"), "/readyz", limit)
        .await
        .unwrap_err();
    assert!(
        format!("{e:#}").contains("connecting to the console"),
        "{e:#}"
    );
}
