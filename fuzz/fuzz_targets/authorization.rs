//! The `Authorization` header as the pipeline reads it: any bytes, one or two headers. A
//! credential it returns is non-empty and trimmed; the secret check never panics on it.
#![no_main]

use http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (first, second) = match data.iter().position(|&b| b == 0xff) {
        Some(at) => (&data[..at], Some(&data[at + 1..])),
        None => (data, None),
    };
    let mut headers = HeaderMap::new();
    for value in [Some(first), second].into_iter().flatten() {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(header::AUTHORIZATION, value);
        }
    }
    if let Ok(credential) = keygate::pipeline::bearer_credential(&headers) {
        assert!(!credential.is_empty());
        assert_eq!(credential, credential.trim());
        let _ = keygate::secret::is_well_formed("kg", credential);
    }
});
