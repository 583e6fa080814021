//! What a host's file system answered while a policy compiled (canonical paths, pinned
//! identities), recorded so the exact compiled policy can be rebuilt elsewhere and later:
//! the daemon writes them into the lineage's `policy-change` record, and replay compiles
//! the archived bundle with them instead of the replaying host's files.
//!
//! Invariant: compiling with [`Resolutions`] gives the same policy as compiling with the
//! resolver that was recorded, because compilation asks the same questions in the same order
//! and every answer given is replayed as given (a question never asked gets "not there").

use std::{cell::RefCell, collections::BTreeMap};

use rampart_common::FileId;
use serde::{Deserialize, Serialize};

use super::compile::Resolver;

/// Every answer a resolver gave during one compilation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resolutions {
    /// Rule path -> canonical path (`None`: kept as written).
    pub canonical: BTreeMap<String, Option<String>>,
    /// Canonical path -> `[dev, ino]` of the regular file there (`None`: none).
    pub identity: BTreeMap<String, Option<[u64; 2]>>,
}

impl Resolver for Resolutions {
    fn canonical(&self, path: &str) -> Option<String> {
        self.canonical.get(path).cloned().flatten()
    }

    fn identity(&self, canonical: &str) -> Option<FileId> {
        self.identity
            .get(canonical)
            .copied()
            .flatten()
            .map(|[dev, ino]| FileId { dev, ino })
    }
}

/// A resolver that records what `inner` answers.
pub struct Recording<'a> {
    inner: &'a dyn Resolver,
    log: RefCell<Resolutions>,
}

impl<'a> Recording<'a> {
    pub fn new(inner: &'a dyn Resolver) -> Self {
        Self {
            inner,
            log: RefCell::default(),
        }
    }

    /// The answers given so far.
    pub fn into_resolutions(self) -> Resolutions {
        self.log.into_inner()
    }
}

impl Resolver for Recording<'_> {
    fn canonical(&self, path: &str) -> Option<String> {
        let answer = self.inner.canonical(path);
        self.log
            .borrow_mut()
            .canonical
            .insert(path.to_owned(), answer.clone());
        answer
    }

    fn identity(&self, canonical: &str) -> Option<FileId> {
        let answer = self.inner.identity(canonical);
        self.log
            .borrow_mut()
            .identity
            .insert(canonical.to_owned(), answer.map(|f| [f.dev, f.ino]));
        answer
    }
}
