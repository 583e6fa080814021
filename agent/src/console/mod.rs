//! The governance console: Prometheus metrics, health endpoints and read-only web pages
//! over the lineage (policy, Lineage Explorer with a live tail, Proof Viewer, health),
//! served by the daemon (`[console]`) or offline over a copied lineage (`rampart console`).
//!
//! Invariants:
//! - Read-only: no handler changes the daemon, the lineage or any file; no secret (keys,
//!   tokens) is ever part of a response.
//! - Every record field is attacker-written: it reaches a page only through
//!   [`html::escape`], and the live tail's script inserts it as text.
//! - The console cannot stop enforcement: the daemon publishes snapshots into it and never
//!   waits on it; a console that cannot bind is logged and retried, and enforcement goes on.

#![forbid(unsafe_code)]

#[doc(hidden)]
pub mod fixture;
pub mod guard;
pub mod html;
pub mod live;
pub mod metrics;
mod pages;
pub mod probe;
pub mod proofs;
pub mod records;
pub mod serve;
mod state;
mod stream;

#[cfg(test)]
mod tests;

use axum::{
    extract::DefaultBodyLimit,
    http::{header, StatusCode},
    middleware,
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};

pub use self::state::{Console, Shared};

/// Every route of the console (no listener-specific layers: see [`serve`]).
pub fn router(console: Shared) -> Router {
    Router::new()
        .route("/", get(pages::overview))
        .route("/policy", get(pages::policy))
        .route("/lineage", get(pages::lineage))
        .route("/lineage/stream", get(stream::tail))
        .route("/lineage/{seq}", get(pages::record))
        .route("/proofs", get(pages::proofs))
        .route("/proofs/{file}", get(pages::proof_file))
        .route("/health", get(pages::health))
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/assets/console.css", get(css))
        .route("/assets/console.js", get(js))
        .fallback(pages::not_found)
        .layer(DefaultBodyLimit::max(guard::MAX_REQUEST_BYTES))
        .layer(middleware::from_fn(guard::headers))
        .with_state(console)
}

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response()
}

async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        JS,
    )
        .into_response()
}

/// `/metrics`: the daemon's registry, as OpenMetrics to a scraper that asks for it (as
/// Prometheus does) and in the Prometheus text format otherwise (offline: 404, there is no
/// daemon to measure).
async fn metrics_text(
    axum::extract::State(c): axum::extract::State<Shared>,
    headers: axum::http::HeaderMap,
) -> Response {
    match &c.metrics {
        Some(m) => {
            m.sample_resident();
            let openmetrics = headers
                .get(header::ACCEPT)
                .and_then(|a| a.to_str().ok())
                .is_some_and(|a| a.contains("application/openmetrics-text"));
            if openmetrics {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    m.encode(),
                )
                    .into_response()
            } else {
                (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    m.encode_text(),
                )
                    .into_response()
            }
        }
        None => (
            StatusCode::NOT_FOUND,
            "this is an offline console over a copied lineage: metrics come from a running \
             daemon (rampart run with [console])\n",
        )
            .into_response(),
    }
}

/// `/healthz`: the process answers.
async fn healthz() -> Response {
    Json(serde_json::json!({"live": true})).into_response()
}

/// `/readyz`: 200 when ready, 503 with the reasons otherwise.
async fn readyz(axum::extract::State(c): axum::extract::State<Shared>) -> Response {
    match c.snapshot() {
        Some(live) => {
            let r = live.readiness();
            let status = if r.ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (status, Json(r)).into_response()
        }
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(live::Readiness {
                ready: false,
                reasons: vec!["offline console: no daemon enforces here".into()],
            }),
        )
            .into_response(),
    }
}
