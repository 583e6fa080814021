//! The identity of a file as the kernel programs see it.

use std::{os::unix::fs::MetadataExt, path::Path};

use anyhow::{Context, Result};
use rampart_common::FileId;

/// Converts a userspace `st_dev` (glibc/musl encoding) to the kernel's internal `dev_t`
/// (`MAJOR << 20 | MINOR`), which is what `super_block::s_dev` holds.
pub fn kernel_dev(st_dev: u64) -> u64 {
    let major = ((st_dev >> 8) & 0xfff) | ((st_dev >> 32) & !0xfff);
    let minor = (st_dev & 0xff) | ((st_dev >> 12) & !0xff);
    (major << 20) | (minor & 0xf_ffff)
}

/// The identity of the file `path` names, following symlinks (a rule that names a symlink
/// allows the file it points to, and only that file).
pub fn of_path(path: &Path) -> Result<FileId> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot stat {}", path.display()))?;
    anyhow::ensure!(meta.is_file(), "{} is not a regular file", path.display());
    Ok(FileId {
        dev: kernel_dev(meta.dev()),
        ino: meta.ino(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_device_numbers_convert() {
        // 8:1 (sda1) is 0x801 to userspace and 8 << 20 | 1 in the kernel.
        assert_eq!(kernel_dev(0x801), (8 << 20) | 1);
    }

    #[test]
    fn large_minor_numbers_convert() {
        // major 0, minor 300 (an anonymous device such as an overlayfs mount):
        // userspace encodes the minor's high bits above bit 20.
        let st_dev = (300 & 0xff) | ((300 & !0xff) << 12);
        assert_eq!(kernel_dev(st_dev), 300);
    }

    #[test]
    fn large_major_numbers_convert() {
        let (major, minor) = (259u64, 7u64);
        let st_dev = ((major & 0xfff) << 8) | (minor & 0xff);
        assert_eq!(kernel_dev(st_dev), (major << 20) | minor);
    }

    #[test]
    fn directory_is_not_an_executable_identity() {
        let err = of_path(Path::new("/")).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn hardlinks_share_an_identity_and_copies_do_not() {
        let dir = std::env::temp_dir().join(format!("rampart-fileid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = dir.join("a");
        std::fs::write(&a, b"x").unwrap();
        let link = dir.join("link");
        let copy = dir.join("copy");
        let _ = std::fs::remove_file(&link);
        std::fs::hard_link(&a, &link).unwrap();
        std::fs::copy(&a, &copy).unwrap();
        assert_eq!(of_path(&a).unwrap(), of_path(&link).unwrap());
        assert_ne!(of_path(&a).unwrap(), of_path(&copy).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
