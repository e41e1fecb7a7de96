//! The path rules of SPEC §7: the path that is matched is exactly the path that is forwarded,
//! so anything an upstream might normalise differently is refused up front.

use crate::error::{ApiError, Detail};

/// Refuses dot segments (plain or percent-encoded), empty segments, encoded `/` or `\`, and
/// backslashes. A single trailing `/` is an ordinary path.
pub fn check_path(path: &str) -> Result<(), ApiError> {
    let refuse = |why: &str| Err(ApiError::validation(vec![Detail::new("path", why)]));
    if !path.starts_with('/') {
        return refuse("must start with /");
    }
    if path.contains('\\') {
        return refuse("must not contain a backslash");
    }
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") {
        return refuse("must not contain an encoded / or \\");
    }
    let body = path.strip_suffix('/').unwrap_or(path);
    for segment in body.split('/').skip(1) {
        if segment.is_empty() {
            return refuse("must not contain empty segments (//)");
        }
        let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
        if decoded == "." || decoded == ".." {
            return refuse("must not contain . or .. segments");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_table() {
        for ok in ["/", "/api/v1/orders", "/api/v1/orders/", "/api/v1/orders/7", "/api/v1/a.b/c..d", "/api/v1/%41"] {
            assert!(check_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "/api/v1/../admin",
            "/api/v1/./orders",
            "/api/v1/orders/..",
            "/api/v1/%2e%2e/admin",
            "/api/v1/%2E%2E/admin",
            "/api/v1/.%2e/admin",
            "/api/v1/%2e./admin",
            "/api/v1/%2e/orders",
            "/api/v1//orders",
            "//api/v1/orders",
            "/api/v1/orders//",
            "/api/v1/orders%2f7",
            "/api/v1/orders%2F..%2Fadmin",
            "/api/v1/orders%5c7",
            "/api/v1\\orders",
            "api/v1/orders",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }
}
