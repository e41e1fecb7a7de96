//! The stored things — tenants and API keys — as the rest of keygate sees them, with their
//! wire form (camelCase, RFC 3339 times). Never holds a secret or its hash in a wire form.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::origin::OriginPattern;
use crate::scope::Scope;
use crate::secret::SecretHash;
use crate::time::{Millis, rfc3339};

// What the gateway forwards of a key (proxy and decisions).
#[cfg(feature = "gateway")]
mod identity;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    Active,
    Suspended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subscription {
    Active,
    Trialing,
    PastDue,
    Cancelled,
}

impl TenantStatus {
    pub fn parse(raw: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::from(raw)).ok()
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
        }
    }
}

impl Subscription {
    pub fn parse(raw: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::from(raw)).ok()
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Trialing => "trialing",
            Self::PastDue => "past_due",
            Self::Cancelled => "cancelled",
        }
    }
}

/// A request budget: at most `limit` requests per fixed window of `window_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    pub limit: u64,
    pub window_seconds: u64,
}

/// A quota's period (SPEC §13): a UTC calendar day or month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Day,
    Month,
}

impl Period {
    pub const ALL: [Period; 2] = [Period::Day, Period::Month];

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "day" => Some(Self::Day),
            "month" => Some(Self::Month),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Month => "month",
        }
    }

    /// Unix seconds at which the period holding `now` starts and ends (exclusive).
    pub fn bounds(self, now: Millis) -> (i64, i64) {
        let today = DateTime::<Utc>::from_timestamp_millis(now).unwrap_or_default().date_naive();
        let (start, end) = match self {
            Self::Day => (today, today.succ_opt().unwrap_or(NaiveDate::MAX)),
            Self::Month => {
                let first = today.with_day(1).unwrap_or(today);
                let next = if first.month() == 12 {
                    NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
                } else {
                    NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
                };
                (first, next.unwrap_or(NaiveDate::MAX))
            }
        };
        let seconds = |date: NaiveDate| date.and_hms_opt(0, 0, 0).map_or(i64::MAX, |t| t.and_utc().timestamp());
        (seconds(start), seconds(end))
    }
}

/// A quota of a tenant or key (SPEC §13): at most `limit` requests a `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuotaPlan {
    pub limit: u64,
    pub period: Period,
    /// How much of the current period is used: filled in by the admin API when it shows the
    /// object, never stored.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub standing: Option<QuotaUsed>,
}

/// The read-only part of a shown quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuotaUsed {
    pub used: u64,
    #[serde(with = "rfc3339")]
    pub resets_at: Millis,
}

impl QuotaPlan {
    pub fn new(limit: u64, period: Period) -> Self {
        Self { limit, period, standing: None }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub status: TenantStatus,
    pub subscription: Subscription,
    pub modules: BTreeSet<String>,
    pub rate_limit: Option<RateLimit>,
    pub quota: Option<QuotaPlan>,
    #[serde(with = "rfc3339")]
    pub created_at: Millis,
    pub meta: Option<Meta>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub prefix: String,
    #[serde(serialize_with = "display_seq")]
    pub scopes: Vec<Scope>,
    #[serde(serialize_with = "display_seq")]
    pub allowed_origins: Vec<OriginPattern>,
    #[serde(with = "rfc3339::option")]
    pub expires_at: Option<Millis>,
    #[serde(with = "rfc3339::option")]
    pub revoked_at: Option<Millis>,
    pub rate_limit: Option<RateLimit>,
    pub quota: Option<QuotaPlan>,
    #[serde(with = "rfc3339")]
    pub created_at: Millis,
    #[serde(with = "rfc3339::option")]
    pub last_used_at: Option<Millis>,
    pub meta: Option<Meta>,
}

/// `meta` of a tenant or key (SPEC §11): a JSON object, kept as its compact text and written
/// out as that JSON again — never parsed on the request path, shared by every copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta(std::sync::Arc<str>);

impl Meta {
    /// At most this many bytes, as compact JSON.
    pub const MAX_BYTES: usize = 4096;

    /// `value` if it is an object of at most [`Meta::MAX_BYTES`] as compact JSON.
    pub fn of(value: &serde_json::Value) -> Option<Self> {
        let text = value.is_object().then(|| value.to_string())?;
        (text.len() <= Self::MAX_BYTES).then(|| Self(text.into()))
    }

    /// Text read back from the store.
    pub fn from_stored(text: &str) -> Option<Self> {
        serde_json::from_str::<serde_json::Value>(text).ok().and_then(|value| Self::of(&value))
    }

    /// The compact JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Serialize for Meta {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Written out as the text it is, borrowed: no copy, no tree.
        let raw: &serde_json::value::RawValue = serde_json::from_str(&self.0).map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

fn display_seq<T: std::fmt::Display, S: serde::Serializer>(items: &[T], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(items.iter().map(|item| item.to_string()))
}

/// The state of a key at a moment: what step 3 of the pipeline decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    Usable,
    Revoked,
    Expired,
}

impl ApiKey {
    /// Revocation wins over expiry: it is the deliberate act. `now >= expiresAt` is expired.
    pub fn state_at(&self, now: Millis) -> KeyState {
        if self.revoked_at.is_some() {
            KeyState::Revoked
        } else if self.expires_at.is_some_and(|at| now >= at) {
            KeyState::Expired
        } else {
            KeyState::Usable
        }
    }
}

/// A key together with its tenant: what one cache entry holds and the pipeline works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyWithTenant {
    pub key: ApiKey,
    pub tenant: Tenant,
    /// The earlier secret of a rolled key that found it; `None` for the current secret, which
    /// ends with the key.
    pub earlier: Option<EarlierSecret>,
    /// What keygate vouches for of this key, as header values: made at the first request that
    /// forwards them, then shared by every request of the key while its record is cached.
    #[cfg(feature = "gateway")]
    identity: identity::Memo<identity::IdentityHeaders>,
}

/// An earlier secret of a rolled key, as the lookup by hash found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EarlierSecret {
    pub hash: SecretHash,
    pub ends: Millis,
}

impl KeyWithTenant {
    pub fn new(key: ApiKey, tenant: Tenant, earlier: Option<EarlierSecret>) -> Self {
        Self {
            key,
            tenant,
            earlier,
            #[cfg(feature = "gateway")]
            identity: identity::Memo::default(),
        }
    }

    /// The key's state, as presented with this secret: an ended earlier secret is expired.
    pub fn state_at(&self, now: Millis) -> KeyState {
        match self.key.state_at(now) {
            KeyState::Usable if self.earlier.is_some_and(|earlier| now >= earlier.ends) => KeyState::Expired,
            state => state,
        }
    }

    /// The next instant at which this secret stops working by the clock alone.
    pub fn ends(&self) -> Option<Millis> {
        self.key.expires_at.into_iter().chain(self.earlier.map(|earlier| earlier.ends)).min()
    }
}

/// An earlier secret of a rolled key (SPEC §11), live until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RolledSecret {
    pub prefix: String,
    #[serde(with = "rfc3339")]
    pub expires_at: Millis,
    #[serde(with = "rfc3339::option")]
    pub last_used_at: Option<Millis>,
}

/// A key as the admin API shows it: the record and its live earlier secrets, oldest end first.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyView {
    #[serde(flatten)]
    pub key: ApiKey,
    pub rolled_secrets: Vec<RolledSecret>,
}

/// A key as created: the record plus the secret, shown this once.
#[derive(Serialize)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub key: KeyView,
    /// `None` for an imported key: keygate never had its secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl std::fmt::Debug for CreatedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedKey").field("key", &self.key).finish_non_exhaustive()
    }
}

/// A session signing key as shown to operators (never its key material).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SigningKeyView {
    pub kid: String,
    pub algorithm: String,
    #[serde(with = "rfc3339")]
    pub created_at: Millis,
    #[serde(with = "rfc3339::option")]
    pub retired_at: Option<Millis>,
    /// The key that signs new sessions of its algorithm.
    pub signing: bool,
}
