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
    /// This agent's links with their pins, held open while it runs: removing a pin then
    /// detaches nothing, and [`Pins::repin_missing_links`] can pin the link again.
    held: Vec<(PathBuf, Option<PinnedLink>)>,
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
            held: Vec::new(),
        })
    }

    /// Pins `link` as `links/NAME@GEN`, and holds it.
    pub fn pin_link(&mut self, link: FdLink, name: &str) -> Result<()> {
        let path = self.link_path(name);
        let pinned = link
            .pin(&path)
            .with_context(|| format!("pinning link {}", path.display()))?;
        self.held.push((path, Some(pinned)));
        Ok(())
    }

    /// Where this agent pins the link `name`.
    pub fn link_path(&self, name: &str) -> PathBuf {
        self.links.join(format!("{name}@{}", self.generation))
    }

    /// Lets go of the held link `name` (it is detached, or about to be replaced): removes
    /// its pin if still there and closes it.
    pub fn drop_link(&mut self, name: &str) {
        let path = self.link_path(name);
        if let Some(i) = self.held.iter().position(|(p, _)| *p == path) {
            let (path, link) = self.held.remove(i);
            if let Some(link) = link {
                if let Err(e) = link.unpin() {
                    tracing::warn!(error = %e, pin = %path.display(), "could not remove the pin of a detached link");
                }
            }
        }
    }

    /// Whether a newer agent has pinned links here (its start retires this one's: their
    /// pins going is an upgrade, not tampering).
    fn superseded(&self) -> bool {
        std::fs::read_dir(&self.links).is_ok_and(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| link_generation(&e.file_name().to_string_lossy()))
                .any(|g| g > self.generation)
        })
    }

    /// Pins again, from the descriptors this agent holds, every link of its whose pin is
    /// gone. Returns each pin found missing with the error of putting it back, if any (a
    /// link whose re-pin fails is closed, and detached unless pinned elsewhere).
    pub fn repin_missing_links(&mut self) -> Vec<(PathBuf, Option<String>)> {
        let mut found = Vec::new();
        if self.superseded() {
            return found;
        }
        for (path, held) in &mut self.held {
            if path.symlink_metadata().is_ok() {
                continue;
            }
            let error = match held.take() {
                None => Some("the link was lost at an earlier failed re-pin".to_owned()),
                Some(link) => {
                    let link = FdLink::from(link);
                    let pinned = std::fs::create_dir_all(&self.links)
                        .map_err(anyhow::Error::from)
                        .and_then(|()| link.pin(&*path).map_err(anyhow::Error::from));
                    match pinned {
                        Ok(p) => {
                            *held = Some(p);
                            None
                        }
                        Err(e) => Some(format!("{e:#}")),
                    }
                }
            };
            found.push((path.clone(), error));
        }
        found
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
