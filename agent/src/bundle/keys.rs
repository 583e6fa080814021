//! Ed25519 keys as files: generation, key ids, and strict parsing that rejects weak keys.
//!
//! Invariant: a [`PublicKey`] value is never a small-order (weak) point, and its key id is
//! always the one derived from its bytes.

use std::{
    fmt,
    fs::OpenOptions,
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use base64::{engine::general_purpose::STANDARD as B64, Engine};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::error::BundleError;
use crate::support::files::read_capped;

/// `type` of a public key file.
pub const PUBLIC_KEY_TYPE: &str = "rampart-ed25519-public-key-v1";
/// `type` of a secret key file.
pub const SECRET_KEY_TYPE: &str = "rampart-ed25519-secret-key-v1";
/// BLAKE3 `derive_key` context for key ids.
pub const KEY_ID_CONTEXT: &str = "rampart.dev 2026 key-id v1";
/// Key files are tiny; anything bigger is not a key.
const MAX_KEY_FILE_BYTES: u64 = 4096;

/// A key id: the first 16 bytes of BLAKE3-derive-key([`KEY_ID_CONTEXT`], public key), as 32
/// lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId([u8; 16]);

impl KeyId {
    pub fn of(public: &[u8; 32]) -> Self {
        let mut h = blake3::Hasher::new_derive_key(KEY_ID_CONTEXT);
        h.update(public);
        let mut id = [0u8; 16];
        id.copy_from_slice(&h.finalize().as_bytes()[..16]);
        Self(id)
    }

    /// Parses 32 lowercase hex digits.
    pub fn parse(s: &str) -> Option<Self> {
        let bytes = decode_hex(s)?;
        Some(Self(bytes.try_into().ok()?))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// Lowercase hex to bytes; `None` for odd length, upper case or other characters.
pub fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// A trusted-to-be-sound public key (never weak) with its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub id: KeyId,
    pub key: VerifyingKey,
}

impl PublicKey {
    /// Accepts 32 bytes only if they are a valid, non-small-order Edwards point.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, BundleError> {
        let id = KeyId::of(bytes);
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| BundleError::BadKey {
            keyid: id.to_string(),
            reason: "not a valid Ed25519 point".into(),
        })?;
        if key.is_weak() {
            return Err(BundleError::BadKey {
                keyid: id.to_string(),
                reason: "a weak (small-order) key, which could validate forged signatures".into(),
            });
        }
        Ok(Self { id, key })
    }

    /// Parses the base64 form used in key files and trust roots, checking `keyid` when given.
    pub fn from_text(public: &str, keyid: Option<&str>) -> Result<Self, BundleError> {
        let bytes = B64
            .decode(public)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| BundleError::BadKey {
                keyid: keyid.unwrap_or("?").into(),
                reason: "public key is not 32 bytes of base64".into(),
            })?;
        let key = Self::from_bytes(&bytes)?;
        if let Some(claimed) = keyid {
            if claimed != key.id.to_string() {
                return Err(BundleError::BadKey {
                    keyid: claimed.into(),
                    reason: format!("keyid does not match the key (its id is {})", key.id),
                });
            }
        }
        Ok(key)
    }

    pub fn to_file(&self) -> PublicKeyFile {
        PublicKeyFile {
            kind: PUBLIC_KEY_TYPE.into(),
            keyid: self.id.to_string(),
            public: B64.encode(self.key.as_bytes()),
        }
    }

    /// Reads a `.pub` file.
    pub fn read(path: &Path) -> Result<Self, BundleError> {
        let bytes = read_capped(path, MAX_KEY_FILE_BYTES)?;
        let file: PublicKeyFile =
            serde_json::from_slice(&bytes).map_err(|e| BundleError::KeyFile {
                file: path.display().to_string(),
                reason: format!("not a public key file: {e}"),
            })?;
        if file.kind != PUBLIC_KEY_TYPE {
            return Err(BundleError::KeyFile {
                file: path.display().to_string(),
                reason: format!("type is `{}`, expected `{PUBLIC_KEY_TYPE}`", file.kind),
            });
        }
        Self::from_text(&file.public, Some(&file.keyid))
    }
}

/// The JSON of a `.pub` file (also a trust root's key entry).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PublicKeyFile {
    #[serde(rename = "type")]
    pub kind: String,
    pub keyid: String,
    pub public: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretKeyFile {
    #[serde(rename = "type")]
    kind: String,
    keyid: String,
    /// The 32-byte Ed25519 seed, base64.
    secret: String,
}

/// A signing key with its public half's id.
pub struct SecretKey {
    pub id: KeyId,
    key: SigningKey,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        write!(f, "SecretKey({})", self.id)
    }
}

impl SecretKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<Self, BundleError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| BundleError::Io {
            file: "getrandom".into(),
            reason: e.to_string(),
        })?;
        let key = SigningKey::from_bytes(&seed);
        seed.fill(0);
        Ok(Self {
            id: KeyId::of(key.verifying_key().as_bytes()),
            key,
        })
    }

    pub fn public(&self) -> PublicKey {
        let key = self.key.verifying_key();
        PublicKey { id: self.id, key }
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }

    /// Reads a `.key` file; refuses one that others can read.
    pub fn read(path: &Path) -> Result<Self, BundleError> {
        use std::os::unix::fs::PermissionsExt;
        let file_err = |reason: String| BundleError::KeyFile {
            file: path.display().to_string(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| file_err(e.to_string()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(file_err(format!(
                "mode {:o} lets others read the secret key; run `chmod 600 {}`",
                meta.permissions().mode() & 0o777,
                path.display()
            )));
        }
        let bytes = read_capped(path, MAX_KEY_FILE_BYTES)?;
        let file: SecretKeyFile = serde_json::from_slice(&bytes)
            .map_err(|e| file_err(format!("not a secret key file: {e}")))?;
        if file.kind != SECRET_KEY_TYPE {
            return Err(file_err(format!(
                "type is `{}`, expected `{SECRET_KEY_TYPE}`",
                file.kind
            )));
        }
        let seed = B64
            .decode(&file.secret)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| file_err("secret is not 32 bytes of base64".into()))?;
        let key = SigningKey::from_bytes(&seed);
        let id = KeyId::of(key.verifying_key().as_bytes());
        if file.keyid != id.to_string() {
            return Err(file_err(format!(
                "keyid {} does not match the key (its id is {id})",
                file.keyid
            )));
        }
        Ok(Self { id, key })
    }

    /// Writes `NAME.key` (mode 0600, never over an existing file) and `NAME.pub`.
    pub fn write_pair(&self, base: &Path) -> Result<(PathBuf, PathBuf), BundleError> {
        let secret_path = with_suffix(base, "key");
        let public_path = with_suffix(base, "pub");
        for p in [&secret_path, &public_path] {
            if p.exists() {
                return Err(BundleError::Io {
                    file: p.display().to_string(),
                    reason: "already exists; keys are never overwritten (choose another name)"
                        .into(),
                });
            }
        }
        let secret = SecretKeyFile {
            kind: SECRET_KEY_TYPE.into(),
            keyid: self.id.to_string(),
            secret: B64.encode(self.key.to_bytes()),
        };
        write_new(&secret_path, 0o600, &to_json_line(&secret))?;
        write_new(&public_path, 0o644, &to_json_line(&self.public().to_file()))?;
        Ok((secret_path, public_path))
    }
}

fn with_suffix(base: &Path, ext: &str) -> PathBuf {
    let mut s = base.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// Pretty JSON with a final newline.
pub fn to_json_line<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising these plain structs cannot fail.
    let mut v = serde_json::to_vec_pretty(value).unwrap_or_default();
    v.push(b'\n');
    v
}

/// Creates a file that must not exist yet, with `mode`, and syncs it.
fn write_new(path: &Path, mode: u32, bytes: &[u8]) -> Result<(), BundleError> {
    let io = |e: std::io::Error| BundleError::Io {
        file: path.display().to_string(),
        reason: e.to_string(),
    };
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}
