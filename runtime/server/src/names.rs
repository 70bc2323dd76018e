//! Names and ids taken from a request's path or query, checked before any store sees them.
//! A value no object could have (a name breaking the naming rule, an id that is not an
//! execution id, a NUL character anywhere) names nothing: 404 in a path, 400 in a filter,
//! so every store answers alike and none is asked about a key it cannot hold.

use super::error::{ApiError, ApiResult};
use orca_core::definition::{NAME_RULE, check_name, is_valid_name};

/// A definition's (or tenant's) name in a path: 404 unless it follows the naming rule.
pub(super) fn in_path<'a>(what: &str, name: &'a str) -> ApiResult<&'a str> {
    if is_valid_name(name) {
        Ok(name)
    } else {
        Err(ApiError::NotFound(format!(
            "no {what} `{}`",
            name.escape_debug()
        )))
    }
}

/// A name in a request's body or query: 400 with what is wrong with it.
pub(super) fn in_request<'a>(field: &str, name: &'a str) -> ApiResult<&'a str> {
    check_name(name)
        .map(|()| name)
        .map_err(|why| ApiError::BadRequest(format!("{field}: {why} ({NAME_RULE})")))
}

/// Whether `id` can be an execution's id: the hyphenated UUID every execution is given.
pub(super) fn is_execution_id(id: &str) -> bool {
    id.len() == 36 && uuid::Uuid::try_parse(id).is_ok()
}

/// An execution id in a path: 404 unless it is one.
pub(super) fn execution_in_path(id: &str) -> ApiResult<&str> {
    if is_execution_id(id) {
        Ok(id)
    } else {
        Err(ApiError::NotFound(format!(
            "no execution with id `{}`",
            id.escape_debug()
        )))
    }
}

/// A component digest in a path: `sha256:` and 64 lowercase hex digits, else 404.
pub(super) fn digest_in_path(digest: &str) -> ApiResult<&str> {
    let hex = digest.strip_prefix("sha256:").unwrap_or_default();
    if hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(digest)
    } else {
        Err(ApiError::NotFound(format!(
            "no component `{}`",
            digest.escape_debug()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_digests_are_recognised_exactly() {
        assert!(is_execution_id("0190a5a8-7b1c-7cc3-9b6e-0123456789ab"));
        for id in ["x", "x\u{0}", "0190a5a87b1c7cc39b6e0123456789ab", ""] {
            assert!(!is_execution_id(id), "{id:?}");
        }
        let digest = format!("sha256:{}", "a".repeat(64));
        assert!(digest_in_path(&digest).is_ok());
        assert!(digest_in_path(&format!("sha256:{}", "A".repeat(64))).is_err());
        assert!(digest_in_path("sha256:ab\u{0}").is_err());
        assert!(in_path("definition", "w\u{0}").is_err());
        assert!(in_request("workflow", "w\u{0}").is_err());
    }
}
