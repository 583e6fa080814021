//! What the console serves from, shared by every handler.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::watch;

use super::{
    live::{Live, PolicyView},
    metrics::Metrics,
};
use crate::{bundle::keys::PublicKey, lineage::verify::Report};

/// How long a lineage verification is reused before the next request verifies again.
const VERIFY_EVERY: Duration = Duration::from_secs(10);

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
        }
    }

    /// The daemon's latest snapshot (offline: none).
    pub fn snapshot(&self) -> Option<Live> {
        self.live.as_ref().map(|rx| rx.borrow().clone())
    }

    /// The lineage verified under the host key (reused for [`VERIFY_EVERY`]); None without
    /// a lineage or key.
    pub async fn verified(self: &Arc<Self>) -> Option<Result<Arc<Report>, String>> {
        let (dir, key) = (self.lineage.clone()?, self.key.clone()?);
        if let Ok(cache) = self.verification.lock() {
            if let Some((at, report)) = cache.as_ref() {
                if at.elapsed() < VERIFY_EVERY {
                    return Some(Ok(report.clone()));
                }
            }
        }
        let result =
            tokio::task::spawn_blocking(move || crate::lineage::verify::verify(&dir, &key, None))
                .await;
        match result {
            Ok(Ok(report)) => {
                let report = Arc::new(report);
                if let Ok(mut cache) = self.verification.lock() {
                    *cache = Some((Instant::now(), report.clone()));
                }
                Some(Ok(report))
            }
            Ok(Err(e)) => Some(Err(format!("{e:#}"))),
            Err(e) => Some(Err(format!("verification did not finish: {e}"))),
        }
    }
}
