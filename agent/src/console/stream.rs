//! The Lineage Explorer's live tail: new records as Server-Sent Events, polled from the
//! lineage files (the console never waits on the daemon). At most [`MAX_STREAMS`] tails at
//! once.

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::{
        sse::{Event, KeepAlive, Sse},
        IntoResponse, Response,
    },
};
use tokio_stream::wrappers::ReceiverStream;

use super::{pages::filter_of, records, state::Shared};
use crate::support::time::rfc3339_ns;

/// Concurrent live tails.
const MAX_STREAMS: usize = 16;
const POLL: Duration = Duration::from_millis(500);

static STREAMS: AtomicUsize = AtomicUsize::new(0);

/// Releases a stream's place when its task ends.
struct Place;

impl Drop for Place {
    fn drop(&mut self) {
        STREAMS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The fields a tail row shows (the page inserts each as text).
fn row(e: &records::Entry) -> serde_json::Value {
    let t = |k: &str| e.text(k).unwrap_or_default();
    serde_json::json!({
        "seq": e.seq,
        "time": rfc3339_ns(e.time_ns),
        "kind": e.kind,
        "decision": t("decision"),
        "action": t("action"),
        "comm": t("comm"),
        "pid": t("pid"),
        "target": e.text("path").or_else(|| e.text("endpoint")).unwrap_or_default(),
        "reason": t("reason"),
    })
}

/// `/lineage/stream?after=SEQ&...`: records after SEQ passing the filter, then each new
/// one as it is written.
pub async fn tail(State(c): State<Shared>, Query(p): Query<HashMap<String, String>>) -> Response {
    let filter = match filter_of(&p) {
        Ok(f) => f,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    let Some(dir) = c.lineage.clone() else {
        return (StatusCode::NOT_FOUND, "no lineage").into_response();
    };
    if STREAMS.fetch_add(1, Ordering::SeqCst) >= MAX_STREAMS {
        STREAMS.fetch_sub(1, Ordering::SeqCst);
        return (StatusCode::SERVICE_UNAVAILABLE, "too many live tails open").into_response();
    }
    let place = Place;
    let mut last: Option<u64> = p.get("after").and_then(|a| a.parse().ok());
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event, Infallible>>(64);
    tokio::spawn(async move {
        let _place = place;
        loop {
            let (d, f) = (dir.clone(), filter.clone());
            let found =
                tokio::task::spawn_blocking(move || records::after(&d, last, &f, 200)).await;
            if let Ok(Ok(entries)) = found {
                for e in entries {
                    last = Some(e.seq);
                    let event = Event::default()
                        .event("record")
                        .id(e.seq.to_string())
                        .data(row(&e).to_string());
                    if tx.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(POLL).await;
        }
    });
    Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::default())
        .into_response()
}
