//! The path rules of SPEC §7: the path that is matched is exactly the path that is forwarded,
//! so anything an upstream might normalise differently is refused up front.

use crate::error::{ApiError, Detail};

/// Refuses dot segments (plain or percent-encoded), empty segments, encoded `/` or `\`, and
/// backslashes. A single trailing `/` is an ordinary path. Runs on every request: no
/// allocation.
pub fn check_path(path: &str) -> Result<(), ApiError> {
    let refuse = |why: &str| Err(ApiError::validation(vec![Detail::new("path", why)]));
    if !path.starts_with('/') {
        return refuse("must start with /");
    }
    if path.contains('\\') {
        return refuse("must not contain a backslash");
    }
    if has_encoded_separator(path.as_bytes()) {
        return refuse("must not contain an encoded / or \\");
    }
    let body = path.strip_suffix('/').unwrap_or(path);
    for segment in body.split('/').skip(1) {
        if segment.is_empty() {
            return refuse("must not contain empty segments (//)");
        }
        if is_dot_segment(segment) {
            return refuse("must not contain . or .. segments");
        }
    }
    Ok(())
}

/// `%2f` or `%5c`, in any case.
fn has_encoded_separator(bytes: &[u8]) -> bool {
    bytes.windows(3).any(|w| w[0] == b'%' && matches!((w[1], w[2].to_ascii_lowercase()), (b'2', b'f') | (b'5', b'c')))
}

/// `.` or `..`, each dot written plainly or as `%2e` in any case.
fn is_dot_segment(segment: &str) -> bool {
    let mut rest = segment.as_bytes();
    let mut dots = 0;
    while !rest.is_empty() {
        if rest[0] == b'.' {
            rest = &rest[1..];
        } else if rest.len() >= 3 && rest[0] == b'%' && rest[1] == b'2' && rest[2].eq_ignore_ascii_case(&b'e') {
            rest = &rest[3..];
        } else {
            return false;
        }
        dots += 1;
    }
    dots == 1 || dots == 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_table() {
        for ok in [
            "/",
            "/api/v1/orders",
            "/api/v1/orders/",
            "/api/v1/orders/7",
            "/api/v1/a.b/c..d",
            "/api/v1/%41",
            "/api/v1/...",
            "/api/v1/.x",
            "/api/v1/%2e%2e%2e",
            "/api/v1/%2ex",
            "/api/v1/100%",
            "/api/v1/%2",
        ] {
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
            "/api/v1/orders%5C7",
            "/api/v1/%2e",
            "/api/v1/%2E",
            "/api/v1\\orders",
            "api/v1/orders",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }
}
