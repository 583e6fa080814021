//! Files read from outside are size-capped before they are parsed; files the agent writes
//! (state, keys, bundles, trust roots) are replaced atomically.

#![forbid(unsafe_code)]

use std::{
    io::{Read, Write},
    os::unix::fs::OpenOptionsExt,
    path::Path,
};

use thiserror::Error;

/// Why a file was not read or written.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FileError {
    /// The file could not be opened, read or written.
    #[error("{file}: {reason}")]
    Io {
        /// The file.
        file: String,
        /// The system's error.
        reason: String,
    },
    /// The file is bigger than its cap; nothing of it was parsed.
    #[error("{file}: {len} bytes is over the {cap}-byte limit; refused before parsing")]
    TooLarge {
        /// The file.
        file: String,
        /// Its size.
        len: u64,
        /// The cap.
        cap: u64,
    },
}

fn io_error(path: &Path, e: &std::io::Error) -> FileError {
    FileError::Io {
        file: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Reads a file of at most `cap` bytes; a bigger one is refused without reading it all.
pub fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, FileError> {
    let file = std::fs::File::open(path).map_err(|e| io_error(path, &e))?;
    let mut bytes = Vec::new();
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error(path, &e))?;
    if bytes.len() as u64 > cap {
        let len = std::fs::metadata(path).map_or(cap + 1, |m| m.len());
        return Err(FileError::TooLarge {
            file: path.display().to_string(),
            len,
            cap,
        });
    }
    Ok(bytes)
}

/// Replaces `path` atomically: a temp file beside it (mode `mode`), fsync, rename, fsync of
/// the directory. A crash leaves the old or the new content, never a torn file.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FileError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map_or_else(Default::default, |n| n.to_string_lossy());
    let tmp = dir.join(format!(".{name}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_error(path, &e)
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("rampart-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn read_capped_refuses_one_byte_over_the_cap() {
        let dir = temp_dir("cap");
        let f = dir.join("f");
        std::fs::write(&f, [b'x'; 11]).expect("write");
        assert_eq!(read_capped(&f, 11).expect("at the cap").len(), 11);
        assert!(matches!(
            read_capped(&f, 10),
            Err(FileError::TooLarge {
                len: 11,
                cap: 10,
                ..
            })
        ));
        assert!(matches!(
            read_capped(&dir.join("missing"), 10),
            Err(FileError::Io { .. })
        ));
    }

    #[test]
    fn write_atomic_replaces_with_mode_and_leaves_no_temp_file() {
        let dir = temp_dir("atomic");
        let f = dir.join("state.json");
        write_atomic(&f, b"one", 0o600).expect("first");
        write_atomic(&f, b"two", 0o600).expect("second");
        assert_eq!(std::fs::read(&f).expect("read"), b"two");
        let mode = std::fs::metadata(&f).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<_> = std::fs::read_dir(&dir)
            .expect("list")
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
    }
}
