//! The secret format and its checksum: any string is judged without panicking, and one that
//! passes has the shape of a minted key; a minted key with one character changed fails.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(candidate) = std::str::from_utf8(data) else { return };
    if keygate::secret::is_well_formed("kg", candidate) {
        assert!(candidate.starts_with("kg_"));
        assert!(candidate[3..].bytes().all(|b| b.is_ascii_alphanumeric()));
    }
    let _ = keygate::secret::hash_secret(candidate);
    // A real key, one character replaced by the input's first byte.
    if let Some(&byte) = data.first() {
        let key = keygate::secret::generate_secret("kg").secret;
        let at = 3 + usize::from(data.get(1).copied().unwrap_or(0)) % (key.len() - 3);
        let replacement = char::from(byte);
        if replacement.is_ascii_alphanumeric() && key.as_bytes()[at] != byte {
            let mut changed = key.clone();
            changed.replace_range(at..at + 1, &replacement.to_string());
            assert!(!keygate::secret::is_well_formed("kg", &changed), "{changed} passed the checksum");
        }
    }
});
