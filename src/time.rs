//! Wall-clock helpers. Times are kept as Unix milliseconds and shown as RFC 3339 UTC (`Z`).

use chrono::{DateTime, SecondsFormat, Utc};

/// Unix milliseconds.
pub type Millis = i64;

pub fn now_millis() -> Millis {
    Utc::now().timestamp_millis()
}

/// RFC 3339 in UTC with a `Z`; fractions of a second only when there are any.
pub fn format_rfc3339(ms: Millis) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default().to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Parses an RFC 3339 timestamp with any offset; anything finer than a millisecond is dropped.
pub fn parse_rfc3339(raw: &str) -> Option<Millis> {
    DateTime::parse_from_rfc3339(raw).ok().map(|t| t.timestamp_millis())
}

/// Serde adapters so model structs carry `Millis` and the wire carries RFC 3339.
pub mod rfc3339 {
    use serde::Serializer;

    pub fn serialize<S: Serializer>(ms: &super::Millis, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_rfc3339(*ms))
    }

    pub mod option {
        use serde::Serializer;

        pub fn serialize<S: Serializer>(ms: &Option<super::super::Millis>, s: S) -> Result<S::Ok, S::Error> {
            match ms {
                Some(ms) => s.serialize_str(&super::super::format_rfc3339(*ms)),
                None => s.serialize_none(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_prints_utc_with_z() {
        let ms = parse_rfc3339("2026-04-15T14:00:00+02:00").unwrap();
        assert_eq!(format_rfc3339(ms), "2026-04-15T12:00:00Z");
        let ms = parse_rfc3339("2026-04-15T12:00:00.250Z").unwrap();
        assert_eq!(format_rfc3339(ms), "2026-04-15T12:00:00.250Z");
        assert!(parse_rfc3339("2026-04-15 12:00").is_none());
        assert!(parse_rfc3339("yesterday").is_none());
    }
}
