//! The path rules of SPEC §7, below every module that routes: one normal form of a request
//! path, so that the pipeline, the route and the forwarded request all see the same path, and
//! no upstream can read it as another route's path.
//!
//! - Percent-encoded unreserved characters (`%41`–`%5A`, `%61`–`%7A`, `%30`–`%39`, `-._~`)
//!   are decoded: `/orders/%69nternal` *is* `/orders/internal`, as RFC 3986 §6.2.2.2 says and
//!   as every WSGI, Rack or Express upstream reads it.
//! - Refused: dot segments (plain or encoded), empty segments (`//`), a backslash, an encoded
//!   `/` or `\`, a `;` (plain or encoded: Tomcat and Spring strip `;` parameters, so
//!   `/internal;x` would be `/internal` to them), an encoded `%` (a second decoding would
//!   turn `%2569` into `i`), a `%` that is not an escape (decoding what follows could make
//!   one: `%%369` → `%69`), and an encoded NUL. Found by the `path` fuzz target.
//!
//! A single trailing `/` is an ordinary path. The fast path — a path with no `%`, `;` or `\`,
//! as nearly every real path is — allocates nothing.

use std::borrow::Cow;

/// keygate's own session endpoint; it always wins over routes.
pub const SESSIONS_PATH: &str = "/api/v1/sessions";

/// Returns the normal form of `path`, or why it is refused.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, &'static str> {
    if !path.starts_with('/') {
        return Err("must start with /");
    }
    let mut normal = Cow::Borrowed(path);
    if path.bytes().any(|b| matches!(b, b'%' | b';' | b'\\')) {
        let decoded = decode_unreserved(path)?;
        if decoded != path {
            normal = Cow::Owned(decoded);
        }
    }
    check_segments(&normal)?;
    Ok(normal)
}

/// True when `path` is already in normal form: what a layer behind the router can still check.
pub fn is_normal(path: &str) -> bool {
    matches!(normalize(path), Ok(Cow::Borrowed(_)))
}

/// Decodes the unreserved characters and refuses the separators and escapes listed above.
fn decode_unreserved(path: &str) -> Result<String, &'static str> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => return Err("must not contain a backslash"),
            b';' => return Err("must not contain ;"),
            b'%' => {
                // A `%` that is not an escape is refused: kept as it is, it could make one with
                // what follows once that is decoded (`%%369` would become `%69`), and the normal
                // form would not be a fixed point (found by the `path` fuzz target).
                let Some(decoded) = bytes.get(i + 1..i + 3).and_then(hex_pair) else {
                    return Err("must not contain a % that is not followed by two hex digits");
                };
                match decoded {
                    b'/' | b'\\' => return Err("must not contain an encoded / or \\"),
                    b';' => return Err("must not contain ;"),
                    b'%' => return Err("must not contain an encoded %"),
                    0 => return Err("must not contain an encoded NUL"),
                    c if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') => out.push(c as char),
                    _ => out.push_str(&path[i..i + 3]),
                }
                i += 3;
            }
            _ => {
                // Copy the run up to the next byte of interest in one go (keeps UTF-8 whole).
                let run =
                    bytes[i..].iter().position(|b| matches!(b, b'%' | b';' | b'\\')).map_or(bytes.len(), |n| i + n);
                out.push_str(&path[i..run]);
                i = run;
            }
        }
    }
    Ok(out)
}

fn hex_pair(pair: &[u8]) -> Option<u8> {
    let digit = |b: u8| (b as char).to_digit(16);
    Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8)
}

/// No empty segments and no `.` or `..` segments (escapes are decoded by now).
fn check_segments(path: &str) -> Result<(), &'static str> {
    let body = path.strip_suffix('/').unwrap_or(path);
    for segment in body.split('/').skip(1) {
        if segment.is_empty() {
            return Err("must not contain empty segments (//)");
        }
        if segment == "." || segment == ".." {
            return Err("must not contain . or .. segments");
        }
    }
    Ok(())
}

/// True when `path` is `prefix` or lies under it, on a segment boundary.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
    path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// How a path that does not match a prefix would still match it, read by a looser router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LooseMatch {
    /// With ASCII letter case ignored (Express, IIS).
    Case,
    /// With a segment's trailing `.suffix`, trailing dots or trailing whitespace dropped (and
    /// case ignored): Rails' `(.:format)`, older Spring suffix matching, IIS and Windows file
    /// names (SPEC §17).
    Suffix,
}

/// Whether `path` lies under `prefix` as a looser upstream router would read it, and how;
/// `None` when it does not even so. Meant for paths [`prefix_matches`] refused.
pub fn prefix_matches_loosely(prefix: &str, path: &str) -> Option<LooseMatch> {
    let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
    let mut path_segments = path.split('/').skip(1);
    let mut how = LooseMatch::Case;
    for wanted in prefix.split('/').skip(1) {
        let segment = path_segments.next()?;
        if segment.eq_ignore_ascii_case(wanted) {
            continue;
        }
        if !loose_forms(segment).any(|form| form.eq_ignore_ascii_case(wanted)) {
            return None;
        }
        how = LooseMatch::Suffix;
    }
    Some(how)
}

/// The shorter forms a looser router may read `segment` as: trailing whitespace (plain or
/// percent-encoded) and dots dropped, then each `.suffix` in turn. Never the empty segment.
fn loose_forms(segment: &str) -> impl Iterator<Item = &str> {
    let mut current = Some(segment);
    std::iter::from_fn(move || {
        let form = current?;
        let trimmed = trim_trailing_spaces_and_dots(form);
        let next = if trimmed != form { Some(trimmed) } else { form.rfind('.').map(|dot| &form[..dot]) };
        current = next.filter(|next| !next.is_empty());
        current
    })
}

fn trim_trailing_spaces_and_dots(mut segment: &str) -> &str {
    const ENCODED: [&str; 6] = ["%20", "%09", "%0a", "%0b", "%0c", "%0d"];
    loop {
        let before = segment.len();
        segment = segment.trim_end_matches([' ', '\t', '.']);
        if let Some(head) = segment.len().checked_sub(3).and_then(|at| segment.get(at..).map(|tail| (at, tail)))
            && ENCODED.iter().any(|encoded| head.1.eq_ignore_ascii_case(encoded))
        {
            segment = &segment[..head.0];
        }
        if segment.len() == before {
            return segment;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_paths_are_borrowed_as_they_are() {
        for ok in [
            "/",
            "/api/v1/orders",
            "/api/v1/orders/",
            "/api/v1/a.b/c..d",
            "/api/v1/...",
            "/api/v1/.x",
            "/é",
            "/api/v1/a%20b%C3%A9",
        ] {
            assert!(matches!(normalize(ok), Ok(Cow::Borrowed(p)) if p == ok), "{ok}");
            assert!(is_normal(ok), "{ok}");
        }
    }

    #[test]
    fn unreserved_escapes_are_decoded_and_others_kept() {
        for (raw, normal) in [
            ("/api/v1/orders/%69nternal", "/api/v1/orders/internal"),
            ("/api/v1/orders/%49%4E%54ernal", "/api/v1/orders/INTernal"),
            ("/api/v1/%41%5a%61%7a%30%39%2D%2e%5F%7E", "/api/v1/AZaz09-._~"),
            ("/api/v1/%2e%2e%2e", "/api/v1/..."),
            ("/api/v1/%2ex", "/api/v1/.x"),
            ("/api/v1/a%20b", "/api/v1/a%20b"),
            ("/api/v1/%c3%a9", "/api/v1/%c3%a9"),
            ("/é/%41", "/é/A"),
        ] {
            assert_eq!(normalize(raw).as_deref(), Ok(normal), "{raw}");
            assert!(!is_normal(raw) || raw == normal, "{raw}");
        }
    }

    #[test]
    fn separators_dots_and_parameters_are_refused() {
        for bad in [
            "/api/v1/../admin",
            "/api/v1/./orders",
            "/api/v1/orders/..",
            "/api/v1/%2e%2e/admin",
            "/api/v1/%2E%2E/admin",
            // A `%` that is no escape, which decoding what follows could turn into one.
            "/api/v1/100%",
            "/api/v1/%2",
            "/api/v1/%zz",
            "/api/v1/%%369nternal",
            "/p%4ep%4e%4%41",
            "/api/v1/.%2e/admin",
            "/api/v1/%2e./admin",
            "/api/v1/%2e/orders",
            "/api/v1/%2e",
            "/api/v1/%2E",
            "/api/v1//orders",
            "//api/v1/orders",
            "/api/v1/orders//",
            "/api/v1/orders%2f7",
            "/api/v1/orders%2F..%2Fadmin",
            "/api/v1/orders%5c7",
            "/api/v1/orders%5C7",
            "/api/v1\\orders",
            "/api/v1/orders/internal;x/report",
            "/api/v1/orders/internal;/report",
            "/api/v1/orders;",
            "/api/v1/orders/internal%3bx",
            "/api/v1/orders/%2569nternal",
            "/api/v1/orders/a%00b",
            "api/v1/orders",
            "",
        ] {
            assert!(normalize(bad).is_err(), "{bad}");
            assert!(!is_normal(bad), "{bad}");
        }
    }

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(prefix_matches("/api/v1/orders", "/api/v1/orders"));
        assert!(prefix_matches("/api/v1/orders", "/api/v1/orders/"));
        assert!(prefix_matches("/api/v1/orders", "/api/v1/orders/7"));
        assert!(prefix_matches("/api/v1/orders/", "/api/v1/orders/7"));
        assert!(!prefix_matches("/api/v1/orders", "/api/v1/ordersx"));
        assert!(!prefix_matches("/api/v1/orders", "/api/v1/order"));
        assert!(!prefix_matches("/api/v1/orders", "/api/v1/Orders"));
        let case = Some(LooseMatch::Case);
        assert_eq!(prefix_matches_loosely("/api/v1/orders", "/API/V1/Orders/7"), case);
        assert_eq!(prefix_matches_loosely("/api/v1/orders/", "/api/v1/ORDERS"), case);
        assert_eq!(prefix_matches_loosely("/api/v1/orders", "/api/v1/ORDERSX"), None);
        assert_eq!(prefix_matches_loosely("/api/v1/é", "/api/v1/\u{c9}"), None);
        assert_eq!(prefix_matches_loosely("/api/v1/orders", "/api/v1/ord"), None);
    }

    #[test]
    fn looser_routers_read_suffixes_dots_and_spaces_away() {
        let internal = "/api/v1/orders/internal";
        for (path, how) in [
            ("/api/v1/orders/INTERNAL", Some(LooseMatch::Case)),
            ("/api/v1/orders/internal.json", Some(LooseMatch::Suffix)),
            ("/api/v1/orders/internal.json/7", Some(LooseMatch::Suffix)),
            ("/api/v1/orders/Internal.tar.gz", Some(LooseMatch::Suffix)),
            ("/api/v1/orders/internal.", Some(LooseMatch::Suffix)),
            ("/api/v1/orders/internal...", Some(LooseMatch::Suffix)),
            ("/api/v1/orders/internal%20", Some(LooseMatch::Suffix)),
            ("/api/v1/orders/internal%20.%09", Some(LooseMatch::Suffix)),
            ("/api/v1/orders/internal.json%20", Some(LooseMatch::Suffix)),
            ("/api/v1/orders.json/internal", Some(LooseMatch::Suffix)),
            ("/api/v1/orders/internals", None),
            ("/api/v1/orders/internal-report.json", None),
            ("/api/v1/orders/intern.al", None),
            ("/api/v1/orders", None),
        ] {
            assert_eq!(prefix_matches_loosely(internal, path), how, "{path}");
        }
        assert_eq!(prefix_matches_loosely("/v1.0/things", "/v1.0/things.json"), Some(LooseMatch::Suffix));
        assert_eq!(prefix_matches_loosely("/", "/anything.json"), Some(LooseMatch::Case), "nothing to loosen");
        assert_eq!(prefix_matches_loosely("/.well-known", "/.well-known"), Some(LooseMatch::Case));
    }
}
