//! The path rules: any path is refused or given a normal form, which is a fixed point, has no
//! dot or empty segment, no `;` and no backslash.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else { return };
    let Ok(normal) = keygate::paths::normalize(path) else { return };
    assert!(keygate::paths::is_normal(&normal), "{normal} is not a fixed point");
    assert!(!normal.contains(';') && !normal.contains('\\'));
    let body = normal.strip_suffix('/').unwrap_or(&normal);
    assert!(body.split('/').skip(1).all(|s| !s.is_empty() && s != "." && s != ".."), "{normal}");
});
