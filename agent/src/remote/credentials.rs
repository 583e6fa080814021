//! Registry credentials from a file (TOML): `username` and `password` for basic
//! authentication, or `token` for a bearer token; nothing else.
//!
//! Invariant: a secret is never printed: [`Credentials`]'s `Debug` shows only its kind.

use std::{fmt, os::unix::fs::PermissionsExt, path::Path};

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use tracing::warn;

/// Credential files are tiny.
const MAX_BYTES: u64 = 64 * 1024;

/// How to authenticate to a registry or URL.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Credentials {
    /// None given.
    #[default]
    Anonymous,
    /// HTTP basic (registries exchange it for a token when they use token auth).
    Basic {
        /// The user.
        username: String,
        /// The password.
        password: String,
    },
    /// A bearer token.
    Bearer(String),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Anonymous => "Anonymous",
            Self::Basic { .. } => "Basic(..)",
            Self::Bearer(_) => "Bearer(..)",
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    username: Option<String>,
    password: Option<String>,
    token: Option<String>,
}

impl Credentials {
    /// Parses the file's text; errors name the file but never echo a value.
    pub fn parse(file: &str, text: &str) -> Result<Self> {
        let f: File = toml::from_str(text).map_err(|e| {
            // toml's message quotes the offending line, which may hold the secret.
            anyhow::anyhow!(
                "{file}: not a credentials file (keys: username and password, or token){}",
                e.span()
                    .map_or(String::new(), |s| format!(" near byte {}", s.start))
            )
        })?;
        match (f.username, f.password, f.token) {
            (None, None, Some(t)) if !t.trim().is_empty() => Ok(Self::Bearer(t.trim().to_owned())),
            (Some(u), Some(p), None) if !u.is_empty() => Ok(Self::Basic {
                username: u,
                password: p,
            }),
            (None, None, None) => bail!("{file}: empty; give username and password, or token"),
            _ => bail!(
                "{file}: give either username and password, or token (not both, not one of a pair)"
            ),
        }
    }

    /// Reads the file at `path`; a file others may read is used but warned about.
    pub fn read(path: &Path) -> Result<Self> {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("reading the credentials file {}", path.display()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            warn!(file = %path.display(), mode = format!("{:o}", meta.permissions().mode() & 0o777),
                "the registry credentials file is readable by others than its owner; chmod 0600 it");
        }
        let bytes = crate::support::files::read_capped(path, MAX_BYTES)?;
        let text = String::from_utf8(bytes)
            .map_err(|_| anyhow::anyhow!("{}: not UTF-8", path.display()))?;
        Self::parse(&path.display().to_string(), &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_and_bearer_parse_and_never_print_the_secret() {
        let b = Credentials::parse("c", "username = \"ci\"\npassword = \"s3cret\"\n").unwrap();
        assert_eq!(
            b,
            Credentials::Basic {
                username: "ci".into(),
                password: "s3cret".into()
            }
        );
        assert!(!format!("{b:?}").contains("s3cret"));
        let t = Credentials::parse("c", "token = \"tok-123\"\n").unwrap();
        assert_eq!(t, Credentials::Bearer("tok-123".into()));
        assert!(!format!("{t:?}").contains("tok-123"));
    }

    #[test]
    fn incomplete_mixed_or_unknown_keys_are_errors_without_the_secret() {
        for bad in [
            "",
            "username = \"a\"\n",
            "password = \"hunter2\"\n",
            "username = \"a\"\npassword = \"b\"\ntoken = \"hunter2\"\n",
            "token = \"  \"\n",
            "pasword = \"hunter2\"\n",
            "token = hunter2\n",
        ] {
            let e = format!(
                "{:#}",
                Credentials::parse("creds.toml", bad).expect_err(bad)
            );
            assert!(e.starts_with("creds.toml"), "{bad}: {e}");
            assert!(!e.contains("hunter2"), "{bad}: the secret leaked: {e}");
        }
    }
}
