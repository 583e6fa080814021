//! Verifying and compiling a policy off the run loop: a reload (SIGHUP, a bundle directory
//! change) or a pushed bundle is prepared on a blocking thread while the loop keeps
//! draining kernel events and answering clients; the loop then loads the result.
//!
//! Invariant: nothing here touches the kernel or the policy in force. Preparations may
//! finish in any order, so the loop checks the anti-rollback state again when it loads
//! one ([`Daemon::load`](super::Daemon)).

use std::path::PathBuf;

use tokio::sync::{mpsc, oneshot};

use super::{
    control::Response,
    intake::{prepare, Incoming, PolicyOrigin, Refusal},
};

/// What a preparation is for.
#[derive(Debug)]
pub enum Purpose {
    /// A reload.
    Reload {
        /// Load even the bundle already in force (SIGHUP re-pins programs).
        force: bool,
    },
    /// A pushed bundle, written to `tmp`, to be kept in `dir` once in force.
    Push {
        /// Where the client's answer goes.
        answer: oneshot::Sender<Response>,
        /// The pushed bytes.
        tmp: PathBuf,
        /// The bundle directory.
        dir: PathBuf,
    },
    /// A bundle fetched from the remote source, written to `tmp`, to be kept in `dir` once
    /// in force.
    Pull {
        /// The fetched bytes.
        tmp: PathBuf,
        /// The bundle directory.
        dir: PathBuf,
        /// The source and what it served (manifest digest or ETag).
        source: String,
        /// See `source`.
        id: String,
    },
}

/// A preparation to run.
#[derive(Debug)]
pub struct Job {
    /// Where the policy comes from (a snapshot of the configuration).
    pub origin: PolicyOrigin,
    /// Host flags for the slots.
    pub extra_flags: u32,
    /// What it is for.
    pub purpose: Purpose,
}

/// A finished preparation.
pub struct Prepared {
    /// The policy set ready to load, or why not.
    pub result: Result<Incoming, Refusal>,
    /// Bundles of a directory that were refused.
    pub skipped: Vec<(PathBuf, Refusal)>,
    /// What it was for.
    pub purpose: Purpose,
    /// How long verifying and compiling took.
    pub seconds: f64,
}

impl Job {
    /// Verifies and compiles (blocking).
    pub fn run(self) -> Prepared {
        let started = std::time::Instant::now();
        let mut skipped = Vec::new();
        let result = prepare(&self.origin, self.extra_flags, &mut skipped);
        Prepared {
            result,
            skipped,
            purpose: self.purpose,
            seconds: started.elapsed().as_secs_f64(),
        }
    }
}

/// Runs `job` on a blocking thread and hands the result to the loop on `done`.
pub fn spawn(job: Job, done: mpsc::Sender<Prepared>) {
    tokio::task::spawn_blocking(move || {
        let prepared = job.run();
        // The loop has stopped if this fails: the preparation is simply dropped.
        let _ = done.blocking_send(prepared);
    });
}
