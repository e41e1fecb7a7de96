//! Scopes such as `orders:write`. A key grants a scope by listing it exactly, by listing
//! `orders:*` (everything under `orders:`), or by listing `*`.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Scope(String);

impl TryFrom<String> for Scope {
    type Error = &'static str;

    fn try_from(raw: String) -> Result<Self, &'static str> {
        Self::parse(&raw)
    }
}

impl From<Scope> for String {
    fn from(scope: Scope) -> String {
        scope.0
    }
}

impl Scope {
    /// Scopes are 1–128 characters of `[A-Za-z0-9_.:-]`; `*` may stand alone or as the whole
    /// last `:`-segment.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        if raw.is_empty() || raw.len() > 128 {
            return Err("a scope has 1 to 128 characters");
        }
        let body = raw.strip_suffix(":*").unwrap_or(raw);
        let body_ok = raw == "*"
            || (!body.is_empty()
                && body.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
                && !body.starts_with(':')
                && !body.ends_with(':')
                && !body.contains("::"));
        if body_ok { Ok(Self(raw.to_owned())) } else { Err("a scope looks like orders:write, orders:* or *") }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when this scope, held by a key, grants `required`.
    pub fn grants(&self, required: &Scope) -> bool {
        let held = self.0.as_str();
        held == "*"
            || held == required.0
            || held.strip_suffix('*').is_some_and(|stem| stem.ends_with(':') && required.0.starts_with(stem))
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(held: &str, required: &str) -> bool {
        Scope::parse(held).unwrap().grants(&Scope::parse(required).unwrap())
    }

    #[test]
    fn grant_table() {
        assert!(grants("orders:write", "orders:write"));
        assert!(grants("orders:*", "orders:write"));
        assert!(grants("orders:*", "orders:items:write"));
        assert!(grants("*", "sessions:create"));
        assert!(!grants("orders:read", "orders:write"));
        assert!(!grants("orders:*", "ordersx:write"));
        assert!(!grants("orders:*", "orders"));
        assert!(!grants("orders:write", "orders:*"));
        assert!(!grants("sessions:create", "sessions:created"));
    }

    #[test]
    fn parse_table() {
        for ok in ["orders:write", "orders:*", "*", "sessions:create", "a.b-c_d:e"] {
            assert!(Scope::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", ":", "orders:", ":write", "orders::write", "orders:w*", "or ders", "*:*", "ü", &"a".repeat(129)]
        {
            assert!(Scope::parse(bad).is_err(), "{bad:?}");
        }
    }
}
