//! `Origin` parsing and allowlist matching: any string; what parses is in normal form (parsing
//! its own text again gives itself), and an exact entry matches the origin it was made from.
#![no_main]

use keygate::origin::{Origin, OriginPattern};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (entry, origin) = text.split_once('\n').unwrap_or((text, text));
    if let Ok(parsed) = Origin::parse(origin) {
        let again = Origin::parse(parsed.as_str()).expect("the normal form parses");
        assert_eq!(again, parsed);
        let exact = OriginPattern::parse(parsed.as_str()).expect("an origin is an allowlist entry");
        assert!(exact.matches(&parsed));
    }
    if let Ok(pattern) = OriginPattern::parse(entry) {
        let again = OriginPattern::parse(&pattern.to_string()).expect("the normal form parses");
        assert_eq!(again, pattern);
        if let Ok(origin) = Origin::parse(origin) {
            let _ = pattern.matches(&origin);
        }
    }
});
