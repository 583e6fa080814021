//! Where the workspace is.

use std::path::{Path, PathBuf};

/// The workspace root (the parent of xtask/).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Where downloaded Debian packages are unpacked (guest kernels, busybox, promtool).
pub fn cache_dir() -> PathBuf {
    workspace_root().join("target").join("vm-cache")
}
