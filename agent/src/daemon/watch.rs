//! The bundle directory watch (inotify through `notify`).

use std::path::Path;

use anyhow::Result;

/// Watches a bundle directory (inotify): reports when a file in it is created, written,
/// renamed or removed.
pub struct DirWatch {
    _watcher: Option<notify::RecommendedWatcher>,
    rx: tokio::sync::mpsc::UnboundedReceiver<()>,
}

impl DirWatch {
    /// Watches `dir` (`None`: a watch that never fires).
    pub fn new(dir: Option<&Path>) -> Result<Self> {
        use notify::{EventKind, RecursiveMode, Watcher};
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let Some(dir) = dir else {
            return Ok(Self { _watcher: None, rx });
        };
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if let Ok(e) = event {
                    if !matches!(e.kind, EventKind::Access(_)) {
                        let _ = tx.send(());
                    }
                }
            })
            .map_err(|e| anyhow::anyhow!("starting inotify: {e}"))?;
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|e| anyhow::anyhow!("watching {}: {e}", dir.display()))?;
        Ok(Self {
            _watcher: Some(watcher),
            rx,
        })
    }

    /// The next change (cancel-safe: a change is never lost when the wait is dropped).
    pub async fn changed(&mut self) {
        if self.rx.recv().await.is_none() {
            std::future::pending::<()>().await;
        }
    }
}
