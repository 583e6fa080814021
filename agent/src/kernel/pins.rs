//! Pinned enforcement: maps and links under a bpffs directory outlive the agent, and
//! `rampart release` (break-glass) removes them.
//!
//! Layout: `maps-abiN/NAME` for maps (versioned by [`MAP_ABI_VERSION`], so an incompatible
//! upgrade gets fresh maps while the old programs keep enforcing), `links/NAME@GEN` for
//! links, where GEN numbers the agents that attached them (higher is newer).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use aya::programs::links::{FdLink, PinnedLink};
use rampart_common::MAP_ABI_VERSION;

/// The pin directory: `maps-abiN/NAME` for maps, `links/NAME@GEN` for links, where GEN
/// numbers the agents that attached them (higher is newer).
pub struct Pins {
    /// `maps-abiN/`, where the maps of this map ABI are pinned.
    pub maps: PathBuf,
    links: PathBuf,
    generation: u64,
}

/// The generation of a pinned link's file name (`NAME@GEN`).
fn link_generation(name: &str) -> Option<u64> {
    name.rsplit_once('@')?.1.parse().ok()
}

/// `maps-abiN/` under the pin directory `dir`: where this map ABI's maps are pinned.
pub fn maps_dir(dir: &Path) -> PathBuf {
    dir.join(format!("maps-abi{MAP_ABI_VERSION}"))
}

impl Pins {
    /// Creates the directories and numbers this agent's links after the newest pinned.
    pub fn prepare(dir: &Path) -> Result<Self> {
        let maps = maps_dir(dir);
        let links = dir.join("links");
        for d in [&maps, &links] {
            std::fs::create_dir_all(d).with_context(|| {
                format!(
                    "creating {} (is bpffs mounted at /sys/fs/bpf? mount -t bpf bpf /sys/fs/bpf)",
                    d.display()
                )
            })?;
        }
        let newest = std::fs::read_dir(&links)?
            .filter_map(|e| e.ok())
            .filter_map(|e| link_generation(&e.file_name().to_string_lossy()))
            .max()
            .unwrap_or(0);
        Ok(Self {
            maps,
            links,
            generation: newest + 1,
        })
    }

    /// Pins `link` as `links/NAME@GEN`.
    pub fn pin_link(&self, link: FdLink, name: &str) -> Result<()> {
        let path = self.links.join(format!("{name}@{}", self.generation));
        link.pin(&path)
            .with_context(|| format!("pinning link {}", path.display()))?;
        Ok(())
    }

    /// Unpins (and so detaches) every link of an older generation.
    pub fn retire_older_links(&self) -> Result<usize> {
        let mut n = 0;
        for entry in std::fs::read_dir(&self.links)? {
            let path = entry?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            if name
                .as_deref()
                .and_then(link_generation)
                .is_some_and(|g| g < self.generation)
            {
                unpin_link(&path)?;
                n += 1;
            }
        }
        Ok(n)
    }
}

/// Unpins a link; the link is detached when its last reference (this one) goes.
fn unpin_link(path: &Path) -> Result<()> {
    let link = PinnedLink::from_pin(path)
        .with_context(|| format!("opening pinned link {}", path.display()))?;
    drop(
        link.unpin()
            .with_context(|| format!("unpinning {}", path.display()))?,
    );
    Ok(())
}

/// `rampart release`: detaches every pinned link and removes every pinned map under `dir`.
/// Best effort: an entry that cannot be removed does not stop the others; the error then
/// names every one left behind. Returns (links, maps) removed.
pub fn release(dir: &Path) -> Result<(usize, usize)> {
    let (mut links, mut maps) = (0, 0);
    let mut left = Vec::new();
    let links_dir = dir.join("links");
    if links_dir.is_dir() {
        for entry in std::fs::read_dir(&links_dir)? {
            let path = entry?.path();
            match unpin_link(&path) {
                Ok(()) => links += 1,
                Err(e) => left.push(format!("{}: {e:#}", path.display())),
            }
        }
        let _ = std::fs::remove_dir(&links_dir);
    }
    if dir.is_dir() {
        for entry in std::fs::read_dir(dir)? {
            let sub = entry?.path();
            let is_maps = sub
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("maps-abi"));
            if !sub.is_dir() || !is_maps {
                continue;
            }
            for m in std::fs::read_dir(&sub)? {
                let path = m?.path();
                match std::fs::remove_file(&path) {
                    Ok(()) => maps += 1,
                    Err(e) => left.push(format!("{}: {e}", path.display())),
                }
            }
            let _ = std::fs::remove_dir(&sub);
        }
        if let Err(e) = std::fs::remove_dir(dir) {
            left.push(format!("{}: {e}", dir.display()));
        }
    }
    if !left.is_empty() {
        anyhow::bail!(
            "released {links} links and {maps} maps, but could not remove: {}",
            left.join("; ")
        );
    }
    Ok((links, maps))
}
