//! What keygate vouches for of a key, as the `X-Keygate-*` header values the gateway forwards
//! to an upstream or returns in a decision (SPEC §7, §14): made once per cached record.

use std::sync::OnceLock;

use super::KeyWithTenant;

/// The `X-Keygate-*` values of a key (SPEC §7): `None` for one that is not a header value.
#[derive(Debug)]
pub(crate) struct IdentityHeaders {
    pub tenant: Option<http::HeaderValue>,
    pub key: Option<http::HeaderValue>,
    pub scopes: Option<http::HeaderValue>,
    /// The key's `meta` as compact ASCII JSON, when it has one.
    pub meta: Option<http::HeaderValue>,
}

/// A value made once from the record that holds it. It is no part of the record's data: it
/// compares equal, prints as nothing, and a clone starts empty (a clone may be changed before
/// it is shared, and must not carry a value made from what it was).
pub(crate) struct Memo<T>(OnceLock<T>);

impl<T> Memo<T> {
    fn get_or_init(&self, make: impl FnOnce() -> T) -> &T {
        self.0.get_or_init(make)
    }
}

impl<T> Default for Memo<T> {
    fn default() -> Self {
        Self(OnceLock::new())
    }
}

impl<T> Clone for Memo<T> {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl<T> PartialEq for Memo<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<T> Eq for Memo<T> {}

impl<T> std::fmt::Debug for Memo<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Memo")
    }
}

impl KeyWithTenant {
    /// The key's `X-Keygate-*` header values, made once.
    pub(crate) fn identity_headers(&self) -> &IdentityHeaders {
        self.identity.get_or_init(|| {
            let value = |text: &str| http::HeaderValue::from_str(text).ok();
            let scopes = self.key.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ");
            IdentityHeaders {
                tenant: value(&self.tenant.id),
                key: value(&self.key.id),
                scopes: value(&scopes),
                meta: self.key.meta.as_ref().and_then(|meta| value(&ascii_json(meta.as_str()))),
            }
        })
    }
}

/// Compact JSON with every character outside visible ASCII written as a `\uXXXX` escape, so
/// that it is a header value (JSON already escapes control characters).
fn ascii_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}
