//! The usage queries (SPEC §13): `?from=&to=&granularity=hour|day` (and `groupBy=key` for a
//! tenant), validated whole before the store is read; answered as `{"data": [buckets]}` or as
//! CSV.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::{ApiError, Detail};
use crate::store::{UsageOf, UsageRow, UsageSelect};
use crate::time::{Millis, format_rfc3339, parse_rfc3339};

pub const CSV_TYPE: &str = "text/csv; charset=utf-8";

const HOUR: Millis = 3_600_000;
const DAY: Millis = 24 * HOUR;
/// The most buckets one query may span: a 31-day month of hours, or 400 days.
const MAX_HOURS: Millis = 744;
const MAX_DAYS: Millis = 400;
/// Always CSV columns, in this order, so a month's export has the same leading columns as
/// the next; other outcomes follow, by name, when the answer holds any.
const LEADING_OUTCOMES: [&str; 3] = ["OK", "UPSTREAM_4XX", "UPSTREAM_5XX"];

/// A usage query's parameters, as given.
#[derive(Debug, Default, Clone)]
pub struct UsageQuery {
    pub from: Option<String>,
    pub to: Option<String>,
    pub granularity: Option<String>,
    pub group_by: Option<String>,
}

impl UsageQuery {
    /// What to read of `of`, or 400 with a detail per bad parameter.
    pub fn select(&self, of: UsageOf) -> Result<UsageSelect, ApiError> {
        let mut details = Vec::new();
        let bucket = match self.granularity.as_deref() {
            None | Some("hour") => Some(HOUR),
            Some("day") => Some(DAY),
            Some(_) => {
                details.push(Detail::new("granularity", "must be hour or day"));
                None
            }
        };
        let unit = if bucket == Some(DAY) { "a UTC day (00:00:00Z)" } else { "a whole hour" };
        let mut time = |name: &str, raw: Option<&str>| {
            let Some(raw) = raw else {
                details.push(Detail::new(name, "is required: an RFC 3339 timestamp such as 2026-12-01T00:00:00Z"));
                return None;
            };
            let Some(at) = parse_rfc3339(raw) else {
                details.push(Detail::new(name, "must be an RFC 3339 timestamp such as 2026-12-01T00:00:00Z"));
                return None;
            };
            if bucket.is_some_and(|bucket| at.rem_euclid(bucket) != 0) {
                details.push(Detail::new(name, format!("must be aligned to the granularity: {unit}")));
                return None;
            }
            Some(at)
        };
        let from = time("from", self.from.as_deref());
        let to = time("to", self.to.as_deref());
        let by_key = match (self.group_by.as_deref(), &of) {
            (None, _) => false,
            (Some("key"), UsageOf::Tenant(_)) => true,
            (Some("key"), UsageOf::Key(_)) => {
                details.push(Detail::new("groupBy", "applies to a tenant's usage only"));
                false
            }
            (Some(_), _) => {
                details.push(Detail::new("groupBy", "must be key"));
                false
            }
        };
        if let (Some(from), Some(to), Some(bucket)) = (from, to, bucket) {
            let most = if bucket == DAY { MAX_DAYS } else { MAX_HOURS };
            if to <= from {
                details.push(Detail::new("to", "must be after from"));
            } else if (to - from) / bucket > most {
                let unit = if bucket == DAY { "days" } else { "hours" };
                details.push(Detail::new("to", format!("at most {most} {unit} after from in one query")));
            }
        }
        match (from, to, bucket) {
            (Some(from), Some(to), Some(bucket)) if details.is_empty() => {
                Ok(UsageSelect { of, from, to, bucket, by_key })
            }
            _ => Err(ApiError::validation(details)),
        }
    }
}

/// The buckets of an answer, oldest first (then by key), empty ones left out.
#[derive(Debug, Serialize)]
pub struct UsageAnswer {
    pub data: Vec<Bucket>,
    /// Whether the buckets are split by key (`groupBy=key`): CSV then has a `keyId` column.
    #[serde(skip)]
    pub by_key: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bucket {
    #[serde(with = "crate::time::rfc3339")]
    pub start: Millis,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    pub requests: u64,
    pub outcomes: BTreeMap<String, u64>,
}

impl UsageAnswer {
    /// Rows as the store returns them (ordered by bucket, key, outcome) made into buckets. The
    /// store keeps no row of zero requests, so no bucket is empty.
    pub fn of(rows: Vec<UsageRow>, by_key: bool) -> Self {
        let mut data: Vec<Bucket> = Vec::new();
        for row in rows {
            let same = data.last().is_some_and(|last| last.start == row.start && last.key_id == row.key_id);
            if !same {
                data.push(Bucket { start: row.start, key_id: row.key_id, requests: 0, outcomes: BTreeMap::new() });
            }
            if let Some(bucket) = data.last_mut() {
                bucket.requests += row.requests;
                *bucket.outcomes.entry(row.outcome).or_default() += row.requests;
            }
        }
        Self { data, by_key }
    }

    /// The same rows as CSV: `start`, `keyId` when split by key, `requests`, then a column per
    /// outcome — `OK`, `UPSTREAM_4XX`, `UPSTREAM_5XX` always, any other that occurs after them.
    pub fn csv(&self) -> String {
        let mut outcomes: Vec<&str> = LEADING_OUTCOMES.to_vec();
        let others: std::collections::BTreeSet<&str> = self
            .data
            .iter()
            .flat_map(|bucket| bucket.outcomes.keys().map(String::as_str))
            .filter(|outcome| !LEADING_OUTCOMES.contains(outcome))
            .collect();
        outcomes.extend(others);
        let mut header = vec!["start"];
        if self.by_key {
            header.push("keyId");
        }
        header.push("requests");
        header.extend(&outcomes);
        let mut text = header.join(",");
        text.push_str("\r\n");
        for bucket in &self.data {
            let mut fields = vec![format_rfc3339(bucket.start)];
            if self.by_key {
                // Key ids are `key_` and base62 (or an imported key's id, of the same shape):
                // nothing in them needs quoting.
                fields.push(bucket.key_id.clone().unwrap_or_default());
            }
            fields.push(bucket.requests.to_string());
            fields
                .extend(outcomes.iter().map(|outcome| bucket.outcomes.get(*outcome).copied().unwrap_or(0).to_string()));
            text.push_str(&fields.join(","));
            text.push_str("\r\n");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(from: &str, to: &str, granularity: Option<&str>) -> UsageQuery {
        UsageQuery {
            from: Some(from.into()),
            to: Some(to.into()),
            granularity: granularity.map(Into::into),
            group_by: None,
        }
    }

    fn refused(query: &UsageQuery, of: UsageOf) -> Vec<String> {
        let error = query.select(of).expect_err("refused");
        error.details.iter().map(|d| format!("{}: {}", d.path, d.message)).collect()
    }

    #[test]
    fn a_range_must_be_aligned_ordered_and_bounded() {
        let key = || UsageOf::Key("key_x".into());
        let month = query("2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z", None);
        let select = month.select(key()).expect("744 hours");
        assert_eq!((select.to - select.from) / HOUR, 744);
        assert!(refused(&query("2026-12-01T00:00:00Z", "2027-01-01T01:00:00Z", None), key())[0].contains("744"));
        assert!(refused(&query("2026-12-01T00:30:00Z", "2026-12-02T00:00:00Z", None), key())[0].contains("aligned"));
        // Whole hours of another offset are hours, not UTC days.
        assert!(query("2026-12-01T00:00:00+01:00", "2026-12-02T00:00:00+01:00", None).select(key()).is_ok());
        let offset_days = query("2026-12-01T00:00:00+01:00", "2026-12-02T00:00:00+01:00", Some("day"));
        assert_eq!(refused(&offset_days, key()).len(), 2);
        assert_eq!(refused(&query("2026-12-02T00:00:00Z", "2026-12-01T00:00:00Z", Some("day")), key()).len(), 1);
        assert!(query("2026-01-01T00:00:00Z", "2027-02-05T00:00:00Z", Some("day")).select(key()).is_ok());
        assert!(refused(&query("2026-01-01T00:00:00Z", "2027-02-06T00:00:00Z", Some("day")), key())[0].contains("400"));
        assert!(refused(&query("2026-12-01T00:00:00Z", "soon", Some("week")), key()).len() == 2);
        let missing = UsageQuery::default();
        assert_eq!(
            refused(&missing, key()),
            [
                "from: is required: an RFC 3339 timestamp such as 2026-12-01T00:00:00Z",
                "to: is required: an RFC 3339 timestamp such as 2026-12-01T00:00:00Z"
            ]
        );
        let grouped = UsageQuery { group_by: Some("key".into()), ..month.clone() };
        assert!(refused(&grouped, key())[0].starts_with("groupBy"));
        assert!(grouped.select(UsageOf::Tenant("t".into())).expect("a tenant's, by key").by_key);
    }

    #[test]
    fn rows_become_buckets_and_csv_keeps_its_leading_columns() {
        let row = |start, key: Option<&str>, outcome: &str, requests| UsageRow {
            start,
            key_id: key.map(Into::into),
            outcome: outcome.into(),
            requests,
        };
        let answer = UsageAnswer::of(
            vec![
                row(0, Some("key_a"), "OK", 3),
                row(0, Some("key_a"), "RATE_LIMITED", 2),
                row(0, Some("key_b"), "OK", 1),
                row(HOUR, Some("key_a"), "UPSTREAM_5XX", 4),
            ],
            true,
        );
        assert_eq!(answer.data.len(), 3);
        assert_eq!((answer.data[0].requests, answer.data[0].outcomes["RATE_LIMITED"]), (5, 2));
        assert_eq!(
            answer.csv(),
            "start,keyId,requests,OK,UPSTREAM_4XX,UPSTREAM_5XX,RATE_LIMITED\r\n\
             1970-01-01T00:00:00Z,key_a,5,3,0,0,2\r\n\
             1970-01-01T00:00:00Z,key_b,1,1,0,0,0\r\n\
             1970-01-01T01:00:00Z,key_a,4,0,0,4,0\r\n"
        );
        assert_eq!(UsageAnswer::of(Vec::new(), false).csv(), "start,requests,OK,UPSTREAM_4XX,UPSTREAM_5XX\r\n");
    }
}
