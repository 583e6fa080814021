//! What stands between the network and the console's handlers: security headers on every
//! response, a bearer token on off-host listeners, and a request rate limit.
//!
//! Invariants: no response leaves without the CSP and `nosniff` headers; a request to a
//! listener that requires the token is answered 401 before any handler runs unless it
//! carries exactly that token (compared in constant time); no CORS header is ever sent.

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use axum::{
    extract::{Request, State},
    http::{header, HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};

/// Scripts and styles only from the console itself; nothing may frame it, post elsewhere
/// or load from another origin.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                       connect-src 'self'; form-action 'self'; base-uri 'none'; \
                       frame-ancestors 'none'";

/// The largest request the console reads (it only serves GET).
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;

/// Adds the security headers to every response.
pub async fn headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The bearer token an off-host listener requires.
#[derive(Clone)]
pub struct Token(pub Arc<Vec<u8>>);

impl Token {
    /// The token in `path` (one line; surrounding whitespace ignored). An empty or short
    /// token is refused: it would be guessable.
    pub fn read(path: &std::path::Path) -> anyhow::Result<Self> {
        let bytes = crate::support::files::read_capped(path, 4096)
            .map_err(|e| anyhow::anyhow!("console token: {e}"))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| anyhow::anyhow!("console token {}: not UTF-8", path.display()))?;
        let token = text.trim();
        if token.len() < 16 {
            anyhow::bail!(
                "console token {}: {} characters; use at least 16 random ones (e.g. `openssl \
                 rand -hex 32`)",
                path.display(),
                token.len()
            );
        }
        Ok(Self(Arc::new(token.as_bytes().to_vec())))
    }

    /// Whether `header` is `Bearer TOKEN` with exactly this token.
    pub fn admits(&self, header: Option<&HeaderValue>) -> bool {
        let Some(given) = header
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
        else {
            return false;
        };
        constant_time_eq(given.as_bytes(), &self.0)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Refuses requests without the token (401, with a `WWW-Authenticate` challenge).
pub async fn bearer(State(token): State<Token>, request: Request, next: Next) -> Response {
    if token.admits(request.headers().get(header::AUTHORIZATION)) {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer realm=\"rampart\"")],
            "a bearer token is required (Authorization: Bearer TOKEN)\n",
        )
            .into_response()
    }
}

/// A token bucket over all requests of one listener: `burst` at once, `per_second` after.
#[derive(Clone)]
pub struct RateLimit {
    bucket: Arc<Mutex<(Instant, f64)>>,
    per_second: f64,
    burst: f64,
}

impl RateLimit {
    /// A bucket that starts full.
    pub fn new(per_second: f64, burst: f64) -> Self {
        Self {
            bucket: Arc::new(Mutex::new((Instant::now(), burst))),
            per_second,
            burst,
        }
    }

    /// Takes one token, if there is one.
    pub fn take(&self, now: Instant) -> bool {
        let Ok(mut b) = self.bucket.lock() else {
            return false;
        };
        let elapsed = now.saturating_duration_since(b.0).as_secs_f64();
        b.1 = (b.1 + elapsed * self.per_second).min(self.burst);
        b.0 = now;
        if b.1 >= 1.0 {
            b.1 -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Answers 429 once the listener's rate is spent.
pub async fn rate(State(limit): State<RateLimit>, request: Request, next: Next) -> Response {
    if limit.take(Instant::now()) {
        next.run(request).await
    } else {
        (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "1")],
            "too many requests\n",
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn only_the_exact_token_is_admitted() {
        let token = Token(Arc::new(b"0123456789abcdef".to_vec()));
        let h = |s: &str| HeaderValue::from_str(s).ok();
        assert!(token.admits(h("Bearer 0123456789abcdef").as_ref()));
        assert!(!token.admits(h("Bearer 0123456789abcdeF").as_ref()));
        assert!(!token.admits(h("Bearer 0123456789abcde").as_ref()));
        assert!(!token.admits(h("bearer 0123456789abcdef").as_ref()));
        assert!(!token.admits(h("0123456789abcdef").as_ref()));
        assert!(!token.admits(None));
    }

    #[test]
    fn a_short_token_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("rampart-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "short\n").unwrap();
        let e = Token::read(&path).err().unwrap().to_string();
        assert!(e.contains("at least 16"), "{e}");
        std::fs::write(&path, "  0123456789abcdef0123\n").unwrap();
        assert_eq!(
            Token::read(&path).unwrap().0.as_slice(),
            b"0123456789abcdef0123"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_bucket_refuses_past_its_burst_and_refills() {
        let limit = RateLimit::new(10.0, 3.0);
        let t = Instant::now();
        assert!(limit.take(t) && limit.take(t) && limit.take(t));
        assert!(!limit.take(t));
        assert!(limit.take(t + Duration::from_millis(150)));
        assert!(!limit.take(t + Duration::from_millis(150)));
    }
}
