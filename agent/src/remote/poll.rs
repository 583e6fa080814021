//! The daemon's poller: polls its remote source at an interval (and when woken, on SIGHUP),
//! hands what is new to the run loop, and reports an outage once when it starts and once
//! when it ends, never per failed poll.
//!
//! Invariant: nothing here loads, verifies or refuses a bundle; it only moves bytes to the
//! run loop, which treats them exactly like a bundle pushed over the control socket. While
//! the source cannot be reached nothing is handed over, so the policy in force stays.

use std::{sync::Arc, time::Duration};

use tokio::sync::{mpsc, Notify};
use tracing::{info, warn};

use super::fetch::{Found, Remote, RemoteSettings};

/// What the poller tells the run loop.
#[derive(Debug, PartialEq, Eq)]
pub enum Report {
    /// The source could not be polled (the first failure of an outage).
    Unreachable {
        /// The source.
        source: String,
        /// Why.
        error: String,
    },
    /// The source answered again after an outage.
    Restored {
        /// The source.
        source: String,
        /// Seconds since the outage began.
        down_seconds: u64,
        /// Polls that failed in it.
        failed_polls: u64,
    },
    /// Something new at the source: to verify and, if it passes, load.
    Fetched {
        /// The source.
        source: String,
        /// Its identity (manifest digest, or ETag).
        id: String,
        /// The bundle file's bytes.
        bytes: Vec<u8>,
    },
}

/// Whether the source is in an outage: turns every poll's result into at most one report.
#[derive(Debug, Default)]
pub struct Outage {
    /// When it began (Unix seconds) and how many polls have failed since.
    down: Option<(u64, u64)>,
}

impl Outage {
    /// A poll failed at `now`: reported only if it begins an outage.
    pub fn failed(&mut self, source: &str, error: &str, now: u64) -> Option<Report> {
        match &mut self.down {
            Some((_, polls)) => {
                *polls += 1;
                None
            }
            None => {
                self.down = Some((now, 1));
                Some(Report::Unreachable {
                    source: source.into(),
                    error: error.into(),
                })
            }
        }
    }

    /// A poll succeeded at `now`: reported only if it ends an outage.
    pub fn answered(&mut self, source: &str, now: u64) -> Option<Report> {
        self.down.take().map(|(since, polls)| Report::Restored {
            source: source.into(),
            down_seconds: now.saturating_sub(since),
            failed_polls: polls,
        })
    }
}

/// Polls until the run loop goes away. `wake` polls at once (SIGHUP), fetching what the
/// source names even if it did not change.
pub async fn run(settings: RemoteSettings, wake: Arc<Notify>, to_loop: mpsc::Sender<Report>) {
    let source = settings.locator.to_string();
    let mut outage = Outage::default();
    let mut last: Option<String> = None;
    let mut remote: Option<Remote> = None;
    loop {
        let now = crate::support::time::unix_now();
        // The client is built (credentials read) until it can be: a secret mounted late is
        // picked up at the next poll.
        let result = match &remote {
            Some(r) => r.poll(last.as_deref()).await,
            None => match Remote::new(&settings) {
                Ok(r) => {
                    let found = r.poll(last.as_deref()).await;
                    remote = Some(r);
                    found
                }
                Err(e) => Err(e),
            },
        };
        let report = match result {
            Ok(found) => {
                let restored = outage.answered(&source, now);
                if let Some(r) = restored {
                    info!(source = %source, "the policy source answers again");
                    if to_loop.send(r).await.is_err() {
                        return;
                    }
                }
                match found {
                    Found::Unchanged => None,
                    Found::New { id, bytes } => {
                        info!(source = %source, id = %id, bytes = bytes.len(), "new bundle at the policy source");
                        last = Some(id.clone());
                        Some(Report::Fetched {
                            source: source.clone(),
                            id,
                            bytes,
                        })
                    }
                }
            }
            Err(e) => {
                let error = format!("{e:#}");
                let report = outage.failed(&source, &error, now);
                if report.is_some() {
                    warn!(source = %source, error = %error,
                        "the policy source cannot be reached; the policy in force stays");
                }
                report
            }
        };
        if let Some(r) = report {
            if to_loop.send(r).await.is_err() {
                return;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(settings.interval) => {}
            // SIGHUP: fetch again even if unchanged (a bundle that could not be staged, or
            // was refused, is offered again once).
            () = wake.notified() => last = None,
        }
    }
}

/// Runs [`run`] and, should it panic (a bug here or in the HTTP stack), logs that and
/// starts it again after an interval: the source keeps being polled, and the policy in
/// force is never touched by the failure.
pub async fn supervise(settings: RemoteSettings, wake: Arc<Notify>, to_loop: mpsc::Sender<Report>) {
    loop {
        let task = tokio::spawn(run(settings.clone(), wake.clone(), to_loop.clone()));
        match task.await {
            Err(e) if e.is_panic() => {
                tracing::error!(source = %settings.locator,
                    "the policy source poller failed (a bug; please report it); polling again \
                     after an interval");
                tokio::time::sleep(settings.interval).await;
            }
            // The run loop went away (or the task was cancelled): nothing to poll for.
            _ => return,
        }
    }
}

/// The shortest interval between polls.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_reported_once_when_it_begins_and_once_when_it_ends() {
        let mut o = Outage::default();
        assert_eq!(o.answered("s", 5), None, "no outage, nothing to restore");
        assert_eq!(
            o.failed("s", "connection refused", 10),
            Some(Report::Unreachable {
                source: "s".into(),
                error: "connection refused".into()
            })
        );
        for t in 11..20 {
            assert_eq!(o.failed("s", "connection refused", t), None, "poll at {t}");
        }
        assert_eq!(
            o.answered("s", 25),
            Some(Report::Restored {
                source: "s".into(),
                down_seconds: 15,
                failed_polls: 10
            })
        );
        assert_eq!(o.answered("s", 26), None);
        assert!(
            o.failed("s", "timeout", 30).is_some(),
            "a new outage is reported"
        );
    }
}
