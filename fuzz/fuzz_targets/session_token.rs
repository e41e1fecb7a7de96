//! The session-token check: any string presented as `X-Session-Token` to a key and origin is
//! refused or accepted without panicking, and only a token minted for them is accepted.
#![no_main]

use std::sync::OnceLock;

use keygate::config::{SessionAlgorithm, SessionsConfig};
use keygate::model::ApiKey;
use keygate::origin::{Origin, OriginPattern};
use keygate::session::{Sessions, generate_key};
use libfuzzer_sys::fuzz_target;

const NOW: i64 = 1_800_000_000_000;

struct Fixture {
    sessions: Sessions,
    key: ApiKey,
    origin: Origin,
    minted: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let config = SessionsConfig { algorithm: SessionAlgorithm::HS256, ..SessionsConfig::default() };
        let record = generate_key(config.algorithm, NOW).expect("a signing key");
        let sessions = Sessions::from_records(&config, &[record]);
        let key = ApiKey {
            id: "key_fuzz".to_owned(),
            tenant_id: "fuzz".to_owned(),
            name: "fuzz".to_owned(),
            prefix: "kg_fuzz".to_owned(),
            scopes: Vec::new(),
            allowed_origins: vec![OriginPattern::parse("https://app.example.com").unwrap()],
            expires_at: None,
            revoked_at: None,
            rate_limit: None,
            quota: None,
            created_at: NOW - 1000,
            last_used_at: None,
            meta: None,
        };
        let origin = Origin::parse("https://app.example.com").unwrap();
        let minted = sessions.mint(&key, &origin, NOW).expect("a session").token;
        Fixture { sessions, key, origin, minted }
    })
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    let Ok(text) = std::str::from_utf8(data) else { return };
    // The input as a token, and the minted token with the input spliced into it.
    let at = text.len() % fixture.minted.len();
    let spliced = format!("{}{text}{}", &fixture.minted[..at], &fixture.minted[at..]);
    for token in [text, spliced.as_str()] {
        let verdict = fixture.sessions.verify(token, &fixture.key, &fixture.origin, NOW + 1000);
        if verdict.is_ok() {
            assert_eq!(token, fixture.minted, "only the minted token is accepted");
        }
    }
});
