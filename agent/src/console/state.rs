//! What the console serves from, shared by every handler.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use tokio::sync::watch;

use super::{
    live::{Live, PolicyView},
    metrics::Metrics,
    records::{Summary, Tally},
};
use crate::{bundle::keys::PublicKey, lineage::verify::Report};

/// How old the last verification may be before a request starts the next one.
const VERIFY_EVERY: Duration = Duration::from_secs(60);

/// What the console serves from.
pub struct Console {
    /// The lineage directory (none: the daemon records no lineage).
    pub lineage: Option<PathBuf>,
    /// The host key its checkpoints are signed with.
    pub key: Option<PublicKey>,
    /// The running daemon's snapshots (none: offline).
    pub live: Option<watch::Receiver<Live>>,
    /// The running daemon's metrics (none: offline).
    pub metrics: Option<Arc<Metrics>>,
    /// Offline: the last bundle the lineage put in force, verified and compiled from its
    /// archive (for the policy page and the explain form), or why there is none.
    pub offline_policy: Result<PolicyView, String>,
    verification: Mutex<Option<(Instant, Arc<Report>)>>,
    /// The lineage's counts, kept up to date by reading only what was appended.
    tally: Arc<Mutex<Tally>>,
    /// Whether a background verification is running.
    refreshing: AtomicBool,
}

/// The console's state as handlers share it.
pub type Shared = Arc<Console>;

impl Console {
    /// A console over `lineage`, checked with `key`.
    pub fn new(lineage: Option<PathBuf>, key: Option<PublicKey>) -> Self {
        Self {
            lineage,
            key,
            live: None,
            metrics: None,
            offline_policy: Err("no bundle archive was given (--trust and --bundles)".into()),
            verification: Mutex::new(None),
            tally: Arc::new(Mutex::new(Tally::default())),
            refreshing: AtomicBool::new(false),
        }
    }

    /// The daemon's latest snapshot (offline: none).
    pub fn snapshot(&self) -> Option<Live> {
        self.live.as_ref().map(|rx| rx.borrow().clone())
    }

    /// The lineage's counts now (a blocking read of what was appended since the last call).
    pub async fn summary(&self) -> anyhow::Result<Summary> {
        let dir = self
            .lineage
            .clone()
            .ok_or_else(|| anyhow::anyhow!("this daemon records no lineage"))?;
        let tally = self.tally.clone();
        tokio::task::spawn_blocking(move || {
            let mut t = tally
                .lock()
                .map_err(|_| anyhow::anyhow!("the lineage tally was poisoned"))?;
            t.advance(&dir)
        })
        .await?
    }

    /// The lineage verified under the host key; None without a lineage or key. The first
    /// call verifies; later ones answer from the last verification at once and, when it is
    /// older than [`VERIFY_EVERY`], start one new verification in the background (never two
    /// at a time: verifying a large lineage costs about a second per million records).
    pub async fn verified(self: &Arc<Self>) -> Option<Result<Arc<Report>, String>> {
        self.lineage.as_ref()?;
        self.key.as_ref()?;
        let cached = self.verification.lock().ok().and_then(|c| c.clone());
        match cached {
            Some((at, report)) => {
                if at.elapsed() >= VERIFY_EVERY && !self.refreshing.swap(true, Ordering::SeqCst) {
                    let me = self.clone();
                    tokio::spawn(async move {
                        let _ = me.verify_now().await;
                        me.refreshing.store(false, Ordering::SeqCst);
                    });
                }
                Some(Ok(report))
            }
            None => Some(self.verify_now().await),
        }
    }

    async fn verify_now(&self) -> Result<Arc<Report>, String> {
        let (Some(dir), Some(key)) = (self.lineage.clone(), self.key.clone()) else {
            return Err("no lineage or host key".into());
        };
        let result =
            tokio::task::spawn_blocking(move || crate::lineage::verify::verify(&dir, &key, None))
                .await;
        match result {
            Ok(Ok(report)) => {
                let report = Arc::new(report);
                if let Ok(mut cache) = self.verification.lock() {
                    *cache = Some((Instant::now(), report.clone()));
                }
                Ok(report)
            }
            Ok(Err(e)) => Err(format!("{e:#}")),
            Err(e) => Err(format!("verification did not finish: {e}")),
        }
    }
}
