//! Reading an admin JSON body field by field, so that every bad field gets its own `details`
//! entry (`allowedOrigins[2]`, `rateLimit.limit`) and unknown fields are refused by name.

use serde_json::{Map, Value};

use crate::error::{ApiError, Detail};
use crate::model::{Period, QuotaPlan, RateLimit};

pub struct Fields {
    fields: Map<String, Value>,
    details: Vec<Detail>,
}

/// A field's parser: the value, its path for messages, and where to note problems.
pub type Parser<'a, T> = &'a dyn Fn(&Value, &str, &mut Vec<Detail>) -> Option<T>;

impl Fields {
    /// Parses `bytes` as a JSON object; fields not in `allowed` are each a detail.
    pub fn parse(bytes: &[u8], allowed: &[&str]) -> Result<Self, ApiError> {
        // No body at all is `{}`; white space alone is not JSON (schemathesis sent a lone tab,
        // which was taken as `{}` and changed nothing, though the document calls it invalid).
        let value: Value = if bytes.is_empty() {
            Value::Object(Map::new())
        } else {
            serde_json::from_slice(bytes)
                .map_err(|e| ApiError::validation(vec![Detail::new("", format!("the body is not valid JSON: {e}"))]))?
        };
        let Value::Object(fields) = value else {
            return Err(ApiError::validation(vec![Detail::new("", "the body must be a JSON object")]));
        };
        let details = fields
            .keys()
            .filter(|name| !allowed.contains(&name.as_str()))
            .map(|name| Detail::new(name.clone(), "unknown field"))
            .collect();
        Ok(Self { fields, details })
    }

    /// The field if present and valid; `None` if absent or invalid (then a detail is noted).
    pub fn optional<T>(&mut self, name: &str, parse: Parser<'_, T>) -> Option<T> {
        let value = self.fields.remove(name)?;
        parse(&value, name, &mut self.details)
    }

    /// Like [`Fields::optional`], noting a detail when the field is absent.
    pub fn required<T>(&mut self, name: &str, parse: Parser<'_, T>) -> Option<T> {
        if !self.fields.contains_key(name) {
            self.details.push(Detail::new(name, "is required"));
            return None;
        }
        self.optional(name, parse)
    }

    /// Whether the body carries field `name` (still unread).
    pub fn has(&self, name: &str) -> bool {
        self.fields.contains_key(name)
    }

    /// Notes a problem that no one field's parser sees (two fields that go together).
    pub fn problem(&mut self, path: &str, message: &str) {
        self.details.push(Detail::new(path, message));
    }

    /// Ends reading: every noted problem, or `Ok`.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.details.is_empty() { Ok(()) } else { Err(ApiError::validation(self.details)) }
    }
}

/// Accepts `null` as "clear" around another parser: `Some(None)` for null.
pub fn nullable<T>(parse: Parser<'_, T>) -> impl Fn(&Value, &str, &mut Vec<Detail>) -> Option<Option<T>> + '_ {
    move |value, path, details| match value {
        Value::Null => Some(None),
        other => parse(other, path, details).map(Some),
    }
}

/// A string of 1 to `max` characters, not only white space.
pub fn text(max: usize) -> impl Fn(&Value, &str, &mut Vec<Detail>) -> Option<String> {
    move |value, path, details| match value.as_str() {
        Some(s) if !s.trim().is_empty() && s.chars().count() <= max && !s.chars().any(char::is_control) => {
            Some(s.to_owned())
        }
        _ => {
            details.push(Detail::new(path, format!("must be a string of 1 to {max} characters")));
            None
        }
    }
}

/// A string accepted by `parse`, whose error becomes the detail's message.
pub fn parsed<T, E: std::fmt::Display>(
    parse: impl Fn(&str) -> Result<T, E>,
) -> impl Fn(&Value, &str, &mut Vec<Detail>) -> Option<T> {
    move |value, path, details| {
        let Some(s) = value.as_str() else {
            details.push(Detail::new(path, "must be a string"));
            return None;
        };
        parse(s).map_err(|e| details.push(Detail::new(path, e.to_string()))).ok()
    }
}

/// An array of at most `max` items, each read by `item` at path `name[i]`; duplicates
/// (after normalisation) are dropped, order kept.
pub fn list<T: PartialEq>(
    max: usize,
    item: Parser<'_, T>,
) -> impl Fn(&Value, &str, &mut Vec<Detail>) -> Option<Vec<T>> + '_ {
    move |value, path, details| {
        let Some(values) = value.as_array().filter(|a| a.len() <= max) else {
            details.push(Detail::new(path, format!("must be an array of at most {max} items")));
            return None;
        };
        let before = details.len();
        let mut items = Vec::with_capacity(values.len());
        for (i, value) in values.iter().enumerate() {
            if let Some(parsed) = item(value, &format!("{path}[{i}]"), details)
                && !items.contains(&parsed)
            {
                items.push(parsed);
            }
        }
        (details.len() == before).then_some(items)
    }
}

/// A whole number from `min` to `max`.
pub fn whole(min: u64, max: u64) -> impl Fn(&Value, &str, &mut Vec<Detail>) -> Option<u64> {
    move |value, path, details| match whole_number(value) {
        Some(n) if (min..=max).contains(&n) => Some(n),
        _ => {
            details.push(Detail::new(path, format!("must be a whole number from {min} to {max}")));
            None
        }
    }
}

/// A whole number, also when written with a zero fraction (`356.0`): JSON Schema's `integer`.
fn whole_number(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        let float = value.as_f64()?;
        (float.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(&float)).then_some(float as u64)
    })
}

/// `value` as an object `shape` names, of the fields `known`; any other field is noted, with
/// what `other` says of its name.
fn object_of<'v>(
    value: &'v Value,
    path: &str,
    shape: &str,
    known: &[&str],
    other: impl Fn(&str) -> &'static str,
    details: &mut Vec<Detail>,
) -> Option<&'v serde_json::Map<String, Value>> {
    let Some(object) = value.as_object() else {
        details.push(Detail::new(path, format!("must be an object {shape}")));
        return None;
    };
    for name in object.keys().filter(|k| !known.contains(&k.as_str())) {
        details.push(Detail::new(format!("{path}.{name}"), other(name)));
    }
    Some(object)
}

/// Field `name` of `object`, at `path.name`, read by `parse`; a missing one is refused as
/// `parse` refuses `null`.
fn member<T>(
    object: &serde_json::Map<String, Value>,
    path: &str,
    name: &str,
    parse: impl Fn(&Value, &str, &mut Vec<Detail>) -> Option<T>,
    details: &mut Vec<Detail>,
) -> Option<T> {
    parse(object.get(name).unwrap_or(&Value::Null), &format!("{path}.{name}"), details)
}

/// `{"limit": 1..=1e9, "windowSeconds": 1..=86400}`.
pub fn rate_limit(value: &Value, path: &str, details: &mut Vec<Detail>) -> Option<RateLimit> {
    let before = details.len();
    let shape = "{\"limit\", \"windowSeconds\"}";
    let object = object_of(value, path, shape, &["limit", "windowSeconds"], |_| "unknown field", details)?;
    let limit = member(object, path, "limit", whole(1, 1_000_000_000), details);
    let window_seconds = member(object, path, "windowSeconds", whole(1, 86_400), details);
    match (limit, window_seconds) {
        (Some(limit), Some(window_seconds)) if details.len() == before => Some(RateLimit { limit, window_seconds }),
        _ => None,
    }
}

/// The largest quota: far above any plan, well inside the store's BIGINT.
pub const MAX_QUOTA: u64 = 1_000_000_000_000;

/// `{"limit": 1..=10^12, "period": "day" | "month"}` (SPEC §13); `used` and `resetsAt` are
/// what the admin API shows, never written.
pub fn quota(value: &Value, path: &str, details: &mut Vec<Detail>) -> Option<QuotaPlan> {
    let before = details.len();
    let shape = "{\"limit\", \"period\"}, or null to remove the quota";
    let other = |name: &str| match name {
        "used" | "resetsAt" => "is read-only: keygate counts it",
        _ => "unknown field",
    };
    let object = object_of(value, path, shape, &["limit", "period"], other, details)?;
    let limit = member(object, path, "limit", whole(1, MAX_QUOTA), details);
    let period = member(object, path, "period", period, details);
    match (limit, period) {
        (Some(limit), Some(period)) if details.len() == before => Some(QuotaPlan::new(limit, period)),
        _ => None,
    }
}

/// `"day"` or `"month"`.
fn period(value: &Value, path: &str, details: &mut Vec<Detail>) -> Option<Period> {
    let period = value.as_str().and_then(Period::parse);
    if period.is_none() {
        details.push(Detail::new(path, "must be day or month (UTC calendar periods)"));
    }
    period
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_field_gets_its_own_detail() {
        let mut body =
            Fields::parse(br#"{"name": "", "tags": [], "rateLimit": {"limit": 0}}"#, &["name", "rateLimit"]).unwrap();
        body.required("name", &text(10));
        body.optional("rateLimit", &rate_limit);
        body.required("scopes", &text(10));
        let error = body.finish().unwrap_err();
        let paths: Vec<_> = error.details.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["tags", "name", "rateLimit.limit", "rateLimit.windowSeconds", "scopes"]);
    }

    #[test]
    fn list_items_are_named_by_index() {
        let mut body = Fields::parse(br#"{"xs": ["a", 1, "b", 2]}"#, &["xs"]).unwrap();
        let item = text(5);
        assert!(body.required("xs", &list(10, &item)).is_none());
        let error = body.finish().unwrap_err();
        let paths: Vec<_> = error.details.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["xs[1]", "xs[3]"]);
    }

    #[test]
    fn non_objects_are_refused() {
        assert!(Fields::parse(b"[1]", &[]).is_err());
        assert!(Fields::parse(b"{", &[]).is_err());
        assert!(Fields::parse(b"", &[]).is_ok());
        assert!(Fields::parse(b"\t", &[]).is_err(), "white space alone is not JSON");
    }
}
