//! A real OCI registry on loopback: Debian's `docker-registry` (the CNCF distribution
//! registry), on a storage directory of its own, stopped and started again at will (the
//! storage survives, as a registry's does across an outage).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

/// A running (or stopped) registry.
pub struct Registry {
    binary: PathBuf,
    config: PathBuf,
    log: PathBuf,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    child: Option<Child>,
}

impl Registry {
    /// Writes a configuration under `dir` (storage in `dir/storage`, listening on `addr`)
    /// and starts `binary` on it; returns once `/v2/` answers.
    pub fn start(binary: &Path, dir: &Path, addr: &str) -> Result<Self> {
        std::fs::create_dir_all(dir.join("storage"))?;
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
                dir.join("storage").display()
            ),
        )?;
        let mut r = Self {
            binary: binary.to_path_buf(),
            config,
            log: dir.join("registry.log"),
            addr: addr.to_owned(),
            child: None,
        };
        r.resume()?;
        Ok(r)
    }

    /// Starts it again on the same storage; returns once `/v2/` answers.
    pub fn resume(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.binary)
            .arg("serve")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if let Ok((200, _)) = crate::http::get(&self.addr, "/v2/") {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "the registry exited ({status}): {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!(
                    "the registry did not answer on {} within 30 s: {}",
                    self.addr,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops it (SIGKILL: an outage, not a shutdown).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}
