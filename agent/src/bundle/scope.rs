//! Scopes: which fleet or host group a bundle or trust root is for.

use super::error::BundleError;

/// A scope names a fleet or host group: 1 to 128 of `A-Z a-z 0-9 . _ -`.
pub fn valid_scope(scope: &str) -> Result<(), BundleError> {
    let ok = !scope.is_empty()
        && scope.len() <= 128
        && scope
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(BundleError::Payload(format!(
            "scope `{scope}` must be 1 to 128 characters of A-Z a-z 0-9 . _ -"
        )))
    }
}
