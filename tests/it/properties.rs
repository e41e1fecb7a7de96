//! Property tests (proptest) of the rules everything else rests on, each against a simple
//! reference model written here: origin normalisation and allowlist matching, the fixed-window
//! arithmetic, and the path rules.

use keygate::model::RateLimit;
use keygate::origin::{Origin, OriginPattern};
use keygate::paths::{normalize, prefix_matches};
use keygate::ratelimit::{Budget, BudgetName, decide, window_end};
use proptest::prelude::*;

// ---- Origins ----

/// A DNS label: what a host name is made of.
fn label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?"
}

/// A host name whose last label has a letter (never all digits).
fn host() -> impl Strategy<Value = Vec<String>> {
    (prop::collection::vec(label(), 0..3), "[a-z][a-z0-9]{1,5}").prop_map(|(mut labels, top)| {
        labels.push(top);
        labels
    })
}

/// Upper-cases the letters where `mask` says so: the same origin, spelled otherwise.
fn respell(text: &str, mask: &[bool]) -> String {
    text.chars().zip(mask.iter().cycle()).map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c }).collect()
}

/// The reference model of a normalised origin: lower case, the default port dropped.
fn model_origin(scheme: &str, host: &str, port: Option<u16>) -> String {
    let default = if scheme == "https" { 443 } else { 80 };
    match port.filter(|p| *p != default) {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn an_origin_parses_to_its_normal_form_however_spelled(
        https in any::<bool>(),
        labels in host(),
        port in prop::option::of(1u16..),
        mask in prop::collection::vec(any::<bool>(), 1..8),
    ) {
        let scheme = if https { "https" } else { "http" };
        let host = labels.join(".");
        let written = match port {
            Some(port) => format!("{scheme}://{host}:{port}"),
            None => format!("{scheme}://{host}"),
        };
        let parsed = Origin::parse(&respell(&written, &mask)).expect("a well-formed origin parses");
        prop_assert_eq!(parsed.as_str(), model_origin(scheme, &host, port));
    }

    #[test]
    fn a_wildcard_matches_exactly_the_origins_one_or_more_labels_under_its_domain(
        https in any::<bool>(),
        base in host().prop_filter("a registrable domain", |labels| labels.len() >= 2),
        under in prop::collection::vec(label(), 0..3),
        other_scheme in any::<bool>(),
        pattern_port in prop::option::of(1u16..),
        origin_port in prop::option::of(1u16..),
        elsewhere in any::<bool>(),
    ) {
        let scheme = if https { "https" } else { "http" };
        let origin_scheme = if other_scheme { if https { "http" } else { "https" } } else { scheme };
        let base_name = format!("{}.example", base.join("."));
        let pattern_text = model_origin(scheme, &format!("*.{base_name}"), pattern_port);
        let pattern = OriginPattern::parse(&pattern_text).expect("a wildcard under a registrable domain");
        let mut labels = under.clone();
        let host = if elsewhere {
            labels.push("elsewhere-example".to_owned());
            labels.join(".")
        } else {
            labels.push(base_name.clone());
            labels.join(".")
        };
        let origin = Origin::parse(&model_origin(origin_scheme, &host, origin_port)).unwrap();
        // The model: same scheme, same effective port, and at least one label before `.base`.
        let port_of = |s: &str, p: Option<u16>| p.unwrap_or(if s == "https" { 443 } else { 80 });
        let expected = origin_scheme == scheme
            && port_of(origin_scheme, origin_port) == port_of(scheme, pattern_port)
            && !elsewhere
            && !under.is_empty();
        prop_assert_eq!(pattern.matches(&origin), expected, "{} against {}", pattern_text, origin.as_str());
    }

    #[test]
    fn an_exact_entry_matches_only_its_own_origin(
        a in (any::<bool>(), host(), prop::option::of(1u16..)),
        b in (any::<bool>(), host(), prop::option::of(1u16..)),
    ) {
        let text = |(https, labels, port): &(bool, Vec<String>, Option<u16>)| {
            model_origin(if *https { "https" } else { "http" }, &labels.join("."), *port)
        };
        let entry = OriginPattern::parse(&text(&a)).unwrap();
        let origin = Origin::parse(&text(&b)).unwrap();
        prop_assert_eq!(entry.matches(&origin), text(&a) == text(&b));
    }
}

// ---- Fixed windows ----

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn a_window_is_aligned_to_its_length_and_holds_now(
        window in 1u64..=86_400,
        now in -10_000_000_000_000i64..10_000_000_000_000,
    ) {
        let rate = RateLimit { limit: 10, window_seconds: window };
        let end = window_end(rate, now);
        let now_seconds = now.div_euclid(1000);
        prop_assert_eq!(end.rem_euclid(window as i64), 0, "aligned to the epoch");
        prop_assert!(end - window as i64 <= now_seconds && now_seconds < end, "now lies in [end - window, end)");
        // Every instant of the same window has the same end.
        let start_ms = (end - window as i64) * 1000;
        prop_assert_eq!(window_end(rate, start_ms), end);
        prop_assert_eq!(window_end(rate, end * 1000 - 1), end);
        prop_assert_eq!(window_end(rate, end * 1000), end + window as i64);
    }

    #[test]
    fn exactly_the_limit_is_allowed_and_the_headers_agree(
        limit in 1u64..50,
        window in 1u64..=3600,
        now in 0i64..4_000_000_000_000,
        requests in 1usize..120,
    ) {
        let rate = RateLimit { limit, window_seconds: window };
        let mut count = 0;
        let mut allowed = 0;
        for _ in 0..requests {
            // The window alone, as step 4 decides a key without quotas.
            let end = window_end(rate, now);
            let budget = Budget { name: BudgetName::Window, limit, start: end - window as i64, end, count_before: count };
            let quota = decide(&[budget], now).quota;
            let after = if quota.allowed { count + 1 } else { count };
            prop_assert_eq!(quota.limit, limit);
            prop_assert_eq!(quota.remaining, limit.saturating_sub(after));
            prop_assert!(quota.retry_after >= 1 && quota.retry_after <= window);
            prop_assert_eq!(quota.reset, window_end(rate, now));
            // A refusal counts in no budget: the limiters' own tests (src/ratelimit/memory/tests.rs,
            // tests/it/quotas.rs) show it; here `after` follows the verdict.
            if quota.allowed {
                allowed += 1
            }
            count = after;
        }
        prop_assert_eq!(allowed, (requests as u64).min(limit));
    }
}

// ---- Paths ----

/// A path segment as a client may write it, with escapes and separators mixed in.
fn segment() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            6 => "[a-zA-Z0-9_~-]{1,4}",
            1 => Just(".".to_owned()),
            1 => Just("..".to_owned()),
            1 => Just("%2e".to_owned()),
            1 => Just("%2F".to_owned()),
            1 => Just("%5c".to_owned()),
            1 => Just(";".to_owned()),
            1 => Just("%3B".to_owned()),
            1 => Just("%25".to_owned()),
            1 => Just("%00".to_owned()),
            2 => "%[46][1-9A-Fa-f]",
            1 => Just("%20".to_owned()),
            1 => Just("%".to_owned()),
            1 => Just("%4".to_owned()),
            1 => Just("\\".to_owned()),
            1 => Just(String::new()),
        ],
        1..4,
    )
    .prop_map(|parts| parts.concat())
}

/// The reference model of the path rules: decode what is unreserved, then refuse what SPEC §7
/// refuses.
fn model_normalize(path: &str) -> Option<String> {
    let mut out = String::new();
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\\' || b == b';' {
            return None;
        }
        let escaped = path.get(i + 1..i + 3).filter(|hex| hex.bytes().all(|h| h.is_ascii_hexdigit()));
        let escaped = escaped.and_then(|hex| u8::from_str_radix(hex, 16).ok());
        if b == b'%' && escaped.is_none() {
            return None;
        }
        if let (b'%', Some(value)) = (b, escaped) {
            match value {
                b'/' | b'\\' | b';' | b'%' | 0 => return None,
                c if c.is_ascii_alphanumeric() || b"-._~".contains(&c) => out.push(c as char),
                _ => out.push_str(&path[i..i + 3]),
            }
            i += 3;
            continue;
        }
        out.push(b as char);
        i += 1;
    }
    let body = out.strip_suffix('/').unwrap_or(&out);
    let bad = body.split('/').skip(1).any(|s| s.is_empty() || s == "." || s == "..");
    (!bad).then_some(out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn a_path_is_refused_or_normalised_as_the_model_says(
        segments in prop::collection::vec(segment(), 1..5),
        trailing in any::<bool>(),
    ) {
        let path = format!("/{}{}", segments.join("/"), if trailing { "/" } else { "" });
        let normal = normalize(&path).ok().map(|p| p.into_owned());
        prop_assert_eq!(&normal, &model_normalize(&path), "{}", path);
        // The normal form is a fixed point: normalising it again changes nothing.
        if let Some(normal) = normal {
            let again = normalize(&normal).map(|p| p.into_owned());
            prop_assert_eq!(again, Ok(normal));
        }
    }

    #[test]
    fn a_prefix_matches_whole_segments_only(
        prefix in prop::collection::vec("[a-z]{1,3}", 1..3),
        rest in prop::collection::vec("[a-z]{1,3}", 0..3),
        glued in "[a-z]{0,2}",
    ) {
        let prefix = format!("/{}", prefix.join("/"));
        let under = format!("{prefix}{glued}{}", rest.iter().map(|s| format!("/{s}")).collect::<String>());
        prop_assert_eq!(prefix_matches(&prefix, &under), glued.is_empty(), "{} under {}", under, prefix);
    }
}
