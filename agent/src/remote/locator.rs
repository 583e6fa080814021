//! Where a remote bundle is: `oci://HOST[:PORT]/REPO[:TAG|@sha256:HEX]` or an
//! `https://` URL, parsed strictly, with the rule for plain HTTP.
//!
//! Invariant: a [`Locator`] is only ever built by [`Locator::parse`], and plain HTTP is
//! chosen only by [`Locator::plain_http`]: for a loopback host, or when the operator set
//! `allow_plain_http`. The transport is untrusted either way (the bundle's signatures
//! decide); the rule keeps credentials and the outage record honest.

use std::{fmt, net::IpAddr};

use anyhow::{bail, Context, Result};

/// A remote bundle's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locator {
    /// An OCI artifact in a registry.
    Oci(OciRef),
    /// A bundle file served over HTTP(S), fetched with `If-None-Match`.
    Url {
        /// The whole URL as given.
        url: String,
        /// Its host (for the loopback rule).
        host: String,
        /// Whether the URL itself says `http://`.
        http: bool,
    },
}

/// An OCI reference: registry host (with port), repository, and a tag or digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciRef {
    /// `HOST` or `HOST:PORT`.
    pub registry: String,
    /// `path/of/repo` (lower case, as the distribution spec requires).
    pub repository: String,
    /// The tag (default `latest`) or, with `@`, the digest.
    pub target: Target,
}

/// What an OCI reference points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A tag, resolved to a digest at each poll.
    Tag(String),
    /// A fixed manifest digest, `sha256:HEX`.
    Digest(String),
}

impl Locator {
    /// Parses `oci://...` or `http(s)://...`; the error says what form is expected.
    pub fn parse(text: &str) -> Result<Self> {
        if let Some(rest) = text.strip_prefix("oci://") {
            return OciRef::parse(rest)
                .map(Self::Oci)
                .with_context(|| format!("`{text}` is not oci://HOST[:PORT]/REPO[:TAG]"));
        }
        let (http, rest) = match (text.strip_prefix("https://"), text.strip_prefix("http://")) {
            (Some(r), _) => (false, r),
            (None, Some(r)) => (true, r),
            _ => bail!(
                "`{text}`: a policy source is oci://HOST[:PORT]/REPO[:TAG] or an https:// URL"
            ),
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if authority.is_empty() || authority.contains('@') {
            bail!("`{text}`: the URL needs a host (and no user:password@; use a credentials file)");
        }
        if !rest.contains('/') {
            bail!("`{text}`: the URL names no file");
        }
        Ok(Self::Url {
            url: text.to_owned(),
            host: host_of(authority).to_owned(),
            http,
        })
    }

    /// The host part, without the port.
    pub fn host(&self) -> &str {
        match self {
            Self::Oci(r) => host_of(&r.registry),
            Self::Url { host, .. } => host,
        }
    }

    /// Whether the transport is plain HTTP. An `oci://` reference uses HTTPS unless its host
    /// is loopback or plain HTTP is explicitly allowed; an `http://` URL is refused unless
    /// one of those holds.
    pub fn plain_http(&self, allow_plain_http: bool) -> Result<bool> {
        let loopback = is_loopback(self.host());
        match self {
            Self::Oci(_) => Ok(loopback || allow_plain_http),
            Self::Url { http: false, .. } => Ok(false),
            Self::Url {
                http: true, url, ..
            } => {
                if loopback || allow_plain_http {
                    Ok(true)
                } else {
                    bail!(
                        "`{url}` is plain HTTP to a host that is not loopback: use https://, or \
                         set policy.allow_plain_http = true if the network is trusted"
                    )
                }
            }
        }
    }
}

impl OciRef {
    fn parse(rest: &str) -> Result<Self> {
        let (registry, path) = rest
            .split_once('/')
            .context("no repository after the registry host")?;
        if registry.is_empty() || registry.contains('@') {
            bail!("no registry host");
        }
        let (repository, target) = match path.split_once('@') {
            Some((repo, digest)) => {
                let hex = digest
                    .strip_prefix("sha256:")
                    .context("a digest reference is @sha256:HEX")?;
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    bail!("`{digest}` is not sha256: and 64 hex digits");
                }
                (repo, Target::Digest(digest.to_ascii_lowercase()))
            }
            None => match path.rsplit_once(':') {
                Some((repo, tag)) => {
                    valid_tag(tag)?;
                    (repo, Target::Tag(tag.to_owned()))
                }
                None => (path, Target::Tag("latest".into())),
            },
        };
        valid_repository(repository)?;
        Ok(Self {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            target,
        })
    }
}

impl fmt::Display for OciRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            Target::Tag(t) => write!(f, "oci://{}/{}:{t}", self.registry, self.repository),
            Target::Digest(d) => write!(f, "oci://{}/{}@{d}", self.registry, self.repository),
        }
    }
}

impl fmt::Display for Locator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Oci(r) => r.fmt(f),
            Self::Url { url, .. } => f.write_str(url),
        }
    }
}

/// The distribution spec's repository name: lower-case components of `[a-z0-9]` joined by
/// `.`, `_`, `__` or `-`, separated by `/`.
fn valid_repository(repo: &str) -> Result<()> {
    if repo.is_empty() || repo.len() > 255 {
        bail!("the repository name is empty or longer than 255 characters");
    }
    for part in repo.split('/') {
        let ok = !part.is_empty()
            && part.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            })
            && part
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric())
            && part
                .bytes()
                .last()
                .is_some_and(|b| b.is_ascii_alphanumeric());
        if !ok {
            bail!("`{repo}`: repository components are lower-case letters, digits and . _ - (not at either end)");
        }
    }
    Ok(())
}

/// The distribution spec's tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
fn valid_tag(tag: &str) -> Result<()> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !tag.starts_with(['.', '-']);
    if !ok {
        bail!(
            "`{tag}` is not a tag (letters, digits, . _ -, at most 128, not starting with . or -)"
        );
    }
    Ok(())
}

/// `host`, `host:port`, `[v6]:port` -> the host.
fn host_of(authority: &str) -> &str {
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or_default();
    }
    authority.split(':').next().unwrap_or_default()
}

/// `localhost` and loopback addresses.
pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_references_parse_with_tag_default_and_digest() {
        let r = Locator::parse("oci://127.0.0.1:5000/rampart/prod:v7").unwrap();
        assert_eq!(
            r,
            Locator::Oci(OciRef {
                registry: "127.0.0.1:5000".into(),
                repository: "rampart/prod".into(),
                target: Target::Tag("v7".into()),
            })
        );
        assert_eq!(r.host(), "127.0.0.1");
        assert_eq!(r.to_string(), "oci://127.0.0.1:5000/rampart/prod:v7");
        let latest = Locator::parse("oci://registry.example.com/policies").unwrap();
        assert_eq!(
            latest.to_string(),
            "oci://registry.example.com/policies:latest"
        );
        let d = format!("oci://r.example/p@sha256:{}", "Ab".repeat(32));
        let Locator::Oci(r) = Locator::parse(&d).unwrap() else {
            panic!("not oci")
        };
        assert_eq!(
            r.target,
            Target::Digest(format!("sha256:{}", "ab".repeat(32)))
        );
    }

    #[test]
    fn malformed_references_are_refused_with_the_expected_form() {
        for bad in [
            "oci://",
            "oci://host",
            "oci://host/",
            "oci://host/Upper:v1",
            "oci://host/repo:",
            "oci://host/repo:-x",
            "oci://host/repo@sha256:abc",
            "oci://host/repo@md5:00",
            "oci://user@host/repo",
            "oci://host//repo",
            "ftp://host/x",
            "https://",
            "https://host",
            "https://user:pw@host/b.rpb",
            "/var/lib/x.rpb",
        ] {
            let e = Locator::parse(bad).expect_err(bad);
            let text = format!("{e:#}");
            assert!(
                text.contains(bad) || text.contains("oci://HOST"),
                "{bad}: {text}"
            );
        }
    }

    #[test]
    fn plain_http_only_for_loopback_or_when_allowed() {
        let local = Locator::parse("oci://localhost:5000/p:v1").unwrap();
        assert!(local.plain_http(false).unwrap());
        let v6 = Locator::parse("http://[::1]:8080/b.rpb").unwrap();
        assert!(v6.plain_http(false).unwrap());
        let remote = Locator::parse("oci://registry.example.com/p:v1").unwrap();
        assert!(!remote.plain_http(false).unwrap());
        assert!(remote.plain_http(true).unwrap());
        let http = Locator::parse("http://10.0.0.5/b.rpb").unwrap();
        let e = http.plain_http(false).unwrap_err();
        assert!(format!("{e}").contains("allow_plain_http"), "{e}");
        assert!(http.plain_http(true).unwrap());
        let https = Locator::parse("https://10.0.0.5/b.rpb").unwrap();
        assert!(!https.plain_http(true).unwrap());
    }
}
