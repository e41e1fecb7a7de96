//! Administration (SPEC §8): the operations on tenants and keys, shared by the admin HTTP API
//! and the CLI so both validate and answer alike. Bodies arrive as JSON bytes.

#[cfg(feature = "gateway")]
pub mod api;
#[cfg(feature = "gateway")]
mod console;
pub mod fields;
#[cfg(feature = "gateway")]
pub mod tokens;
mod usage;

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::Serialize;

use crate::audit::{Audit, AuditAction, AuditEntry, AuditFilter, entry_seq};
use crate::config::SessionAlgorithm;
use crate::error::{ApiError, Detail, ErrorCode};
use crate::feed::StoreWatch;
use crate::model::{
    ApiKey, CreatedKey, KeyState, KeyView, Meta, QuotaPlan, RateLimit, RolledSecret, SigningKeyView, Subscription,
    Tenant, TenantStatus,
};
use crate::origin::OriginPattern;
use crate::ratelimit::{MemoryLimiter, QuotaOf, QuotaSeeds, RateLimiter};
use crate::scope::Scope;
use crate::secret::{SecretHash, generate_secret, random_base62};
use crate::session::generate_key;
use crate::store::{Roll, Rolled, Store, StoreError};
use crate::time::{Millis, now_millis, parse_rfc3339};
use fields::{Fields, list, nullable, parsed, quota, rate_limit, text, whole};

const MAX_NAME: usize = 200;
const MAX_LIST: usize = 100;
/// A roll's longest overlap: 30 days.
const MAX_OVERLAP_SECONDS: u64 = 2_592_000;

/// One page of a list: `{"data": […], "nextCursor": "…" | null}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

/// `?limit=&cursor=` of a list request, and the filters some lists take, unparsed.
#[derive(Debug, Default, Clone)]
pub struct PageQuery {
    pub limit: Option<String>,
    pub cursor: Option<String>,
    /// A tenant's keys: `usable`, `revoked` or `expired`.
    pub state: Option<String>,
    /// Keys across tenants: the start of a display prefix.
    pub prefix: Option<String>,
    /// The audit log's filters.
    pub tenant_id: Option<String>,
    pub target_id: Option<String>,
    pub action: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
}

pub struct Admin {
    store: Arc<dyn Store>,
    key_prefix: String,
    /// Refreshes this instance's caches after a write (absent in the CLI).
    watch: Option<Arc<StoreWatch>>,
    /// What the quotas shown have used: the serving limiter's counts, or (in the CLI) the
    /// store's usage counts.
    quotas: Arc<dyn RateLimiter>,
}

/// A store failure as the admin API answers it.
pub fn store_error(error: StoreError) -> ApiError {
    match error {
        StoreError::Conflict => ApiError::new(ErrorCode::Conflict, "a resource with this id already exists"),
        StoreError::Unavailable(_) => {
            tracing::error!(%error, "admin store operation failed");
            ApiError::unavailable("the store is unavailable; retry shortly")
        }
        // Retrying cannot help with a row that no longer parses.
        StoreError::Corrupt(_) => {
            tracing::error!(%error, "corrupt data in the store");
            ApiError::internal()
        }
    }
}

fn tenant_id(raw: &str) -> Result<String, &'static str> {
    let ok = (1..=64).contains(&raw.len())
        && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && raw.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(raw.to_owned())
    } else {
        Err("must be 1 to 64 characters of A-Z a-z 0-9 _ -, starting with a letter or digit")
    }
}

fn module_name(raw: &str) -> Result<String, &'static str> {
    let ok = (1..=64).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok { Ok(raw.to_owned()) } else { Err("must be 1 to 64 characters of A-Z a-z 0-9 _ . -") }
}

fn timestamp(raw: &str) -> Result<Millis, &'static str> {
    parse_rfc3339(raw).ok_or("must be an RFC 3339 timestamp such as 2026-04-15T12:00:00Z")
}

fn status(raw: &str) -> Result<TenantStatus, &'static str> {
    TenantStatus::parse(raw).ok_or("must be active or suspended")
}

fn subscription(raw: &str) -> Result<Subscription, &'static str> {
    Subscription::parse(raw).ok_or("must be active, trialing, past_due or cancelled")
}

/// The fields a tenant body may carry besides `id`.
struct TenantFields {
    name: Option<String>,
    status: Option<TenantStatus>,
    subscription: Option<Subscription>,
    modules: Option<BTreeSet<String>>,
    rate_limit: Option<Option<RateLimit>>,
    quota: Option<Option<QuotaPlan>>,
    meta: Option<Option<Meta>>,
}

fn read_tenant_fields(body: &mut Fields, name_required: bool) -> TenantFields {
    let name =
        if name_required { body.required("name", &text(MAX_NAME)) } else { body.optional("name", &text(MAX_NAME)) };
    let module = parsed(module_name);
    TenantFields {
        name,
        status: body.optional("status", &parsed(status)),
        subscription: body.optional("subscription", &parsed(subscription)),
        modules: body.optional("modules", &list(MAX_LIST, &module)).map(|m| m.into_iter().collect()),
        rate_limit: body.optional("rateLimit", &nullable(&rate_limit)),
        quota: body.optional("quota", &nullable(&quota)),
        meta: body.optional("meta", &nullable(&meta)),
    }
}

/// `meta`: a JSON object of at most [`Meta::MAX_BYTES`] as compact JSON.
fn meta(value: &serde_json::Value, path: &str, details: &mut Vec<Detail>) -> Option<Meta> {
    let meta = Meta::of(value);
    if meta.is_none() {
        details.push(Detail::new(path, format!("must be a JSON object of at most {} bytes", Meta::MAX_BYTES)));
    }
    meta
}

/// The fields a key body may carry.
struct KeyFields {
    name: Option<String>,
    scopes: Option<Vec<Scope>>,
    allowed_origins: Option<Vec<OriginPattern>>,
    expires_at: Option<Option<Millis>>,
    rate_limit: Option<Option<RateLimit>>,
    quota: Option<Option<QuotaPlan>>,
    meta: Option<Option<Meta>>,
}

fn read_key_fields(body: &mut Fields, creating: bool) -> KeyFields {
    let scope = parsed(Scope::parse);
    let origin = parsed(OriginPattern::parse);
    let time = parsed(timestamp);
    let (name, scopes) = if creating {
        (body.required("name", &text(MAX_NAME)), body.required("scopes", &list(MAX_LIST, &scope)))
    } else {
        (body.optional("name", &text(MAX_NAME)), body.optional("scopes", &list(MAX_LIST, &scope)))
    };
    KeyFields {
        name,
        scopes,
        allowed_origins: body.optional("allowedOrigins", &list(MAX_LIST, &origin)),
        expires_at: body.optional("expiresAt", &nullable(&time)),
        rate_limit: body.optional("rateLimit", &nullable(&rate_limit)),
        quota: body.optional("quota", &nullable(&quota)),
        meta: body.optional("meta", &nullable(&meta)),
    }
}

/// `importHash` and `prefix`, which go together: the SHA-256 of an existing secret, in 64
/// lower-case hex digits, and 1–16 visible ASCII characters to show for it.
fn read_import(body: &mut Fields) -> Option<(SecretHash, String)> {
    let (has_hash, has_prefix) = (body.has("importHash"), body.has("prefix"));
    let hash = body.optional("importHash", &parsed(import_hash));
    let prefix = body.optional("prefix", &parsed(display_prefix));
    match (has_hash, has_prefix) {
        (true, false) => body.problem("prefix", "is required with importHash"),
        (false, true) => {
            body.problem("prefix", "is only taken with importHash: keygate makes the prefix of a secret it makes")
        }
        _ => {}
    }
    Some((hash?, prefix?))
}

fn import_hash(raw: &str) -> Result<SecretHash, &'static str> {
    let bytes = raw.as_bytes();
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    };
    let mut hash = [0u8; 32];
    let ok = bytes.len() == 64
        && hash.iter_mut().enumerate().all(|(i, byte)| match (digit(bytes[2 * i]), digit(bytes[2 * i + 1])) {
            (Some(high), Some(low)) => {
                *byte = high * 16 + low;
                true
            }
            _ => false,
        });
    if ok { Ok(hash) } else { Err("must be the SHA-256 of the secret: 64 lower-case hex digits") }
}

fn display_prefix(raw: &str) -> Result<String, &'static str> {
    let ok = (1..=16).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_graphic());
    if ok { Ok(raw.to_owned()) } else { Err("must be 1 to 16 visible ASCII characters") }
}

impl KeyFields {
    fn apply(&self, key: &mut ApiKey) {
        if let Some(name) = &self.name {
            key.name.clone_from(name);
        }
        if let Some(scopes) = &self.scopes {
            key.scopes.clone_from(scopes);
        }
        if let Some(origins) = &self.allowed_origins {
            key.allowed_origins.clone_from(origins);
        }
        if let Some(expires_at) = self.expires_at {
            key.expires_at = expires_at;
        }
        if let Some(rate_limit) = self.rate_limit {
            key.rate_limit = rate_limit;
        }
        if let Some(quota) = self.quota {
            key.quota = quota;
        }
        if let Some(meta) = &self.meta {
            key.meta.clone_from(meta);
        }
    }
}

impl TenantFields {
    fn apply(&self, tenant: &mut Tenant) {
        if let Some(name) = &self.name {
            tenant.name.clone_from(name);
        }
        if let Some(status) = self.status {
            tenant.status = status;
        }
        if let Some(subscription) = self.subscription {
            tenant.subscription = subscription;
        }
        if let Some(modules) = &self.modules {
            tenant.modules.clone_from(modules);
        }
        if let Some(rate_limit) = self.rate_limit {
            tenant.rate_limit = rate_limit;
        }
        if let Some(quota) = self.quota {
            tenant.quota = quota;
        }
        if let Some(meta) = &self.meta {
            tenant.meta.clone_from(meta);
        }
    }
}

/// Parsed `?limit=&cursor=`: (page size, id to continue after).
fn page_bounds(query: &PageQuery) -> Result<(u32, Option<String>), ApiError> {
    page_bounds_and(query, Vec::new())
}

/// [`page_bounds`], with a list's own problems with its filters noted beside them.
fn page_bounds_and(query: &PageQuery, problems: Vec<Detail>) -> Result<(u32, Option<String>), ApiError> {
    let mut details = problems;
    let limit = page_limit(query, &mut details);
    let after = match query.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(raw) => match cursor_position(raw) {
            Some(after) => Some(after),
            None => {
                details.push(Detail::new("cursor", "is not a nextCursor this API gave"));
                None
            }
        },
    };
    if details.is_empty() { Ok((limit, after)) } else { Err(ApiError::validation(details)) }
}

/// `?limit=`: 100 when absent; a bad one is noted in `details`.
fn page_limit(query: &PageQuery, details: &mut Vec<Detail>) -> u32 {
    let limit = query.limit.as_deref().map_or(Some(100), |raw| raw.parse::<u32>().ok());
    match limit {
        Some(n) if (1..=1000).contains(&n) => n,
        _ => {
            details.push(Detail::new("limit", "must be a whole number from 1 to 1000"));
            0
        }
    }
}

/// Query parameter `name`, read by `parse` if given; a value it refuses is noted in `details`.
fn query_param<T, E: Into<String>>(
    raw: Option<&str>,
    name: &str,
    parse: impl Fn(&str) -> Result<T, E>,
    details: &mut Vec<Detail>,
) -> Option<T> {
    parse(raw?).map_err(|why| details.push(Detail::new(name, why))).ok()
}

/// An id an audit filter names: any visible ASCII, as ids of every kind are.
fn filter_id(raw: &str) -> Result<String, &'static str> {
    let ok = (1..=128).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_graphic());
    if ok { Ok(raw.to_owned()) } else { Err("must be 1 to 128 visible ASCII characters") }
}

fn audit_action(raw: &str) -> Result<AuditAction, String> {
    AuditAction::parse(raw).ok_or_else(|| {
        let actions: Vec<&str> = AuditAction::ALL.iter().map(|action| action.as_str()).collect();
        format!("must be one of {}", actions.join(", "))
    })
}

/// A tenant or key list's cursor: the id the previous page ended at, kept opaque (`c1_` and
/// the id's bytes in hex), so that a string keygate never gave (`zzz`) is refused rather than
/// read as a place in the order. Every string of the documented form decodes to a place.
const CURSOR_PREFIX: &str = "c1_";

fn cursor_after(id: &str) -> String {
    use std::fmt::Write;
    id.bytes().fold(String::from(CURSOR_PREFIX), |mut cursor, byte| {
        let _ = write!(cursor, "{byte:02x}");
        cursor
    })
}

/// Where a cursor of [`cursor_after`] continues after; `None` if `raw` is not of its form.
fn cursor_position(raw: &str) -> Option<String> {
    let hex = raw.strip_prefix(CURSOR_PREFIX)?.as_bytes();
    let digits = hex.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
    if hex.is_empty() || hex.len() % 2 != 0 || hex.len() > 256 || !digits {
        return None;
    }
    let value = |b: u8| if b.is_ascii_digit() { b - b'0' } else { b - b'a' + 10 };
    let bytes: Vec<u8> = hex.chunks(2).map(|pair| value(pair[0]) << 4 | value(pair[1])).collect();
    // Not an id's bytes if not UTF-8, or with a NUL (which no id has, and PostgreSQL's text
    // cannot hold): still a place in the order.
    Some(String::from_utf8_lossy(&bytes).replace('\0', "\u{fffd}"))
}

/// Cuts a fetch of `limit + 1` rows into a page whose cursor is `cursor(last row)`.
fn into_page<T>(mut rows: Vec<T>, limit: u32, cursor: impl Fn(&T) -> String) -> Page<T> {
    let next_cursor = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(cursor)
    } else {
        None
    };
    Page { data: rows, next_cursor }
}

impl Admin {
    pub fn new(store: Arc<dyn Store>, key_prefix: String, watch: Option<Arc<StoreWatch>>) -> Self {
        let quotas = Arc::new(MemoryLimiter::new(QuotaSeeds::new(Arc::clone(&store))));
        Self { store, key_prefix, watch, quotas }
    }

    /// Shows quotas as `limiter` counts them: the one that serves requests.
    pub fn with_quotas(self, limiter: Arc<dyn RateLimiter>) -> Self {
        Self { quotas: limiter, ..self }
    }

    async fn changed(&self) {
        if let Some(watch) = &self.watch {
            watch.catch_up().await;
        }
    }

    pub async fn create_tenant(&self, actor: &str, bytes: &[u8]) -> Result<Tenant, ApiError> {
        let mut body =
            Fields::parse(bytes, &["id", "name", "status", "subscription", "modules", "rateLimit", "quota", "meta"])?;
        let id = body.optional("id", &parsed(tenant_id));
        let fields = read_tenant_fields(&mut body, true);
        body.finish()?;
        let mut tenant = Tenant {
            id: id.unwrap_or_else(|| format!("ten_{}", random_base62(16))),
            name: String::new(),
            status: TenantStatus::Active,
            subscription: Subscription::Active,
            modules: BTreeSet::new(),
            rate_limit: None,
            quota: None,
            created_at: now_millis(),
            meta: None,
        };
        fields.apply(&mut tenant);
        self.store
            .insert_tenant(&tenant, Audit { actor, action: AuditAction::TenantCreate })
            .await
            .map_err(store_error)?;
        self.changed().await;
        Ok(self.shown(tenant).await)
    }

    pub async fn tenant(&self, id: &str) -> Result<Tenant, ApiError> {
        Ok(self.shown(self.stored_tenant(id).await?).await)
    }

    async fn stored_tenant(&self, id: &str) -> Result<Tenant, ApiError> {
        self.store.tenant(id).await.map_err(store_error)?.ok_or_else(|| ApiError::not_found("tenant"))
    }

    pub async fn tenants(&self, query: &PageQuery) -> Result<Page<Tenant>, ApiError> {
        let (limit, after) = page_bounds(query)?;
        let rows = self.store.tenants(after.as_deref(), limit + 1).await.map_err(store_error)?;
        let page = into_page(rows, limit, |t| cursor_after(&t.id));
        let mut data = Vec::with_capacity(page.data.len());
        for tenant in page.data {
            data.push(self.shown(tenant).await);
        }
        Ok(Page { data, next_cursor: page.next_cursor })
    }

    /// A tenant as shown: its quota with what the period has used.
    async fn shown(&self, mut tenant: Tenant) -> Tenant {
        tenant.quota = self.standing(QuotaOf::Tenant(&tenant.id), tenant.quota).await;
        tenant
    }

    /// `quota` with `used` and `resetsAt` filled in; left without them, and logged, when the
    /// limiter cannot say (a Redis outage must not take the admin API's reads with it).
    async fn standing(&self, of: QuotaOf<'_>, quota: Option<QuotaPlan>) -> Option<QuotaPlan> {
        let mut quota = quota?;
        match self.quotas.used(of, quota.period).await {
            Ok(used) => quota.standing = Some(used),
            Err(error) => tracing::warn!(%error, "a quota's use could not be read"),
        }
        Some(quota)
    }

    pub async fn update_tenant(&self, actor: &str, id: &str, bytes: &[u8]) -> Result<Tenant, ApiError> {
        let mut body =
            Fields::parse(bytes, &["name", "status", "subscription", "modules", "rateLimit", "quota", "meta"])?;
        let fields = read_tenant_fields(&mut body, false);
        body.finish()?;
        let audit = Audit { actor, action: AuditAction::TenantUpdate };
        let updated = self.store.update_tenant(id, &|tenant| fields.apply(tenant), audit).await.map_err(store_error)?;
        let tenant = updated.ok_or_else(|| ApiError::not_found("tenant"))?;
        self.changed().await;
        Ok(self.shown(tenant).await)
    }

    /// Creates a key: with a secret keygate makes (shown this once), or, given `importHash`
    /// and `prefix`, with an existing secret's hash (SPEC §11: keys migrated in).
    pub async fn create_key(&self, actor: &str, tenant_id: &str, bytes: &[u8]) -> Result<CreatedKey, ApiError> {
        let mut body = Fields::parse(
            bytes,
            &["name", "scopes", "allowedOrigins", "expiresAt", "rateLimit", "quota", "meta", "importHash", "prefix"],
        )?;
        let fields = read_key_fields(&mut body, true);
        let imported = read_import(&mut body);
        body.finish()?;
        self.stored_tenant(tenant_id).await?;
        let (secret, hash, prefix, action) = match imported {
            Some((hash, prefix)) => (None, hash, prefix, AuditAction::KeyImport),
            None => {
                let made = generate_secret(&self.key_prefix);
                (Some(made.secret), made.hash, made.prefix, AuditAction::KeyCreate)
            }
        };
        let mut key = ApiKey {
            id: format!("key_{}", random_base62(20)),
            tenant_id: tenant_id.to_owned(),
            name: String::new(),
            prefix,
            scopes: Vec::new(),
            allowed_origins: Vec::new(),
            expires_at: None,
            revoked_at: None,
            rate_limit: None,
            quota: None,
            created_at: now_millis(),
            last_used_at: None,
            meta: None,
        };
        fields.apply(&mut key);
        self.store.insert_key(&key, &hash, Audit { actor, action }).await.map_err(|error| match error {
            // The id is new and random: what can clash is the hash.
            StoreError::Conflict => ApiError::new(ErrorCode::Conflict, "a key with this secret already exists"),
            error => store_error(error),
        })?;
        self.changed().await;
        Ok(CreatedKey { key: KeyView { key, rolled_secrets: Vec::new() }, secret })
    }

    pub async fn key(&self, id: &str) -> Result<KeyView, ApiError> {
        let key = self.store.key(id).await.map_err(store_error)?.ok_or_else(|| ApiError::not_found("API key"))?;
        self.view(key).await
    }

    pub async fn keys(&self, tenant_id: &str, query: &PageQuery) -> Result<Page<KeyView>, ApiError> {
        let state = match query.state.as_deref() {
            None => Ok(None),
            Some("usable") => Ok(Some(KeyState::Usable)),
            Some("revoked") => Ok(Some(KeyState::Revoked)),
            Some("expired") => Ok(Some(KeyState::Expired)),
            Some(_) => Err(Detail::new("state", "must be usable, revoked or expired")),
        };
        let (limit, after) = page_bounds_and(query, state.as_ref().err().cloned().into_iter().collect())?;
        let state = state.ok().flatten().map(|state| (state, now_millis()));
        self.stored_tenant(tenant_id).await?;
        let rows = self.store.keys(tenant_id, state, after.as_deref(), limit + 1).await.map_err(store_error)?;
        let page = into_page(rows, limit, |k| cursor_after(&k.id));
        Ok(Page { data: self.views(page.data).await?, next_cursor: page.next_cursor })
    }

    /// Keys of every tenant found by the start of a display prefix, current or earlier (at
    /// least 6 characters: a prefix pasted into a support ticket).
    pub async fn find_keys(&self, query: &PageQuery) -> Result<Page<KeyView>, ApiError> {
        let prefix = query.prefix.as_deref().unwrap_or_default();
        let ok = (6..=16).contains(&prefix.len()) && prefix.bytes().all(|b| b.is_ascii_graphic());
        let problem = (!ok).then(|| Detail::new("prefix", "is required: 6 to 16 visible ASCII characters"));
        let (limit, after) = page_bounds_and(query, problem.into_iter().collect())?;
        let rows = self.store.keys_by_prefix(prefix, after.as_deref(), limit + 1).await.map_err(store_error)?;
        let page = into_page(rows, limit, |k| cursor_after(&k.id));
        Ok(Page { data: self.views(page.data).await?, next_cursor: page.next_cursor })
    }

    pub async fn update_key(&self, actor: &str, id: &str, bytes: &[u8]) -> Result<KeyView, ApiError> {
        let mut body =
            Fields::parse(bytes, &["name", "scopes", "allowedOrigins", "expiresAt", "rateLimit", "quota", "meta"])?;
        let fields = read_key_fields(&mut body, false);
        body.finish()?;
        let audit = Audit { actor, action: AuditAction::KeyUpdate };
        let updated = self.store.update_key(id, &|key| fields.apply(key), audit).await.map_err(store_error)?;
        let key = updated.ok_or_else(|| ApiError::not_found("API key"))?;
        self.changed().await;
        self.view(key).await
    }

    /// Deletes a key (SPEC §11): gone from every get and list; each of its secrets answers
    /// `API_KEY_INVALID` from the next request here, within a second elsewhere.
    pub async fn delete_key(&self, actor: &str, id: &str) -> Result<(), ApiError> {
        if !self.store.delete_key(id, Audit { actor, action: AuditAction::KeyDelete }).await.map_err(store_error)? {
            return Err(ApiError::not_found("API key"));
        }
        self.changed().await;
        Ok(())
    }

    /// Deletes a tenant that has no keys left (delete them first).
    pub async fn delete_tenant(&self, actor: &str, id: &str) -> Result<(), ApiError> {
        match self
            .store
            .delete_tenant(id, Audit { actor, action: AuditAction::TenantDelete })
            .await
            .map_err(store_error)?
        {
            None => Err(ApiError::not_found("tenant")),
            Some(false) => Err(ApiError::new(ErrorCode::Conflict, "the tenant still has keys: delete them first")),
            Some(true) => {
                self.changed().await;
                Ok(())
            }
        }
    }

    /// Rolls a key (SPEC §11): a new secret for the same key, everything else kept; each
    /// earlier secret still live ends within `overlapSeconds`.
    pub async fn roll_key(&self, actor: &str, id: &str, bytes: &[u8]) -> Result<CreatedKey, ApiError> {
        let mut body = Fields::parse(bytes, &["overlapSeconds"])?;
        let overlap = body.required("overlapSeconds", &whole(0, MAX_OVERLAP_SECONDS));
        body.finish()?;
        let overlap = overlap.ok_or_else(ApiError::internal)?;
        let secret = generate_secret(&self.key_prefix);
        let roll =
            Roll { hash: secret.hash, prefix: secret.prefix.clone(), ends_at: now_millis() + overlap as i64 * 1000 };
        match self
            .store
            .roll_key(id, &roll, Audit { actor, action: AuditAction::KeyRoll })
            .await
            .map_err(store_error)?
        {
            Rolled::Done(key) => {
                self.changed().await;
                Ok(CreatedKey { key: self.view(*key).await?, secret: Some(secret.secret) })
            }
            Rolled::Revoked => Err(ApiError::new(ErrorCode::Conflict, "the API key is revoked: it cannot be rolled")),
            Rolled::Missing => Err(ApiError::not_found("API key")),
        }
    }

    async fn view(&self, key: ApiKey) -> Result<KeyView, ApiError> {
        let mut views = self.views(vec![key]).await?;
        views.pop().ok_or_else(ApiError::internal)
    }

    /// Keys as shown: each with its live earlier secrets, read in one query for them all.
    async fn views(&self, keys: Vec<ApiKey>) -> Result<Vec<KeyView>, ApiError> {
        let ids: Vec<String> = keys.iter().map(|key| key.id.clone()).collect();
        let rolled = self.store.rolled_secrets(&ids, now_millis()).await.map_err(store_error)?;
        let mut by_key: std::collections::HashMap<String, Vec<RolledSecret>> = std::collections::HashMap::new();
        for (key_id, secret) in rolled {
            by_key.entry(key_id).or_default().push(secret);
        }
        let mut views = Vec::with_capacity(keys.len());
        for mut key in keys {
            let of = QuotaOf::Key { tenant_id: &key.tenant_id, key_id: &key.id };
            key.quota = self.standing(of, key.quota).await;
            let rolled_secrets = by_key.remove(&key.id).unwrap_or_default();
            // A use by any secret is the key's use. The key was read before its earlier secrets,
            // by another query: a usage flush that committed in between shows here too.
            key.last_used_at = key.last_used_at.max(rolled_secrets.iter().filter_map(|s| s.last_used_at).max());
            views.push(KeyView { key, rolled_secrets });
        }
        Ok(views)
    }

    /// The audit log, newest first, filtered (SPEC §12). The cursor is the last entry's id.
    pub async fn audit(&self, query: &PageQuery) -> Result<Page<AuditEntry>, ApiError> {
        let mut details = Vec::new();
        let filter = AuditFilter {
            tenant_id: query_param(query.tenant_id.as_deref(), "tenantId", filter_id, &mut details),
            target_id: query_param(query.target_id.as_deref(), "targetId", filter_id, &mut details),
            action: query_param(query.action.as_deref(), "action", audit_action, &mut details),
            since: query_param(query.since.as_deref(), "since", timestamp, &mut details),
            until: query_param(query.until.as_deref(), "until", timestamp, &mut details),
        };
        // The cursor is an entry's id: `aud_` and its number.
        let cursor = query.cursor.as_deref().filter(|raw| !raw.is_empty());
        let seq = |raw: &str| entry_seq(raw).ok_or("must be a nextCursor: aud_ and a number");
        let before = query_param(cursor, "cursor", seq, &mut details);
        let limit = page_limit(query, &mut details);
        if !details.is_empty() {
            return Err(ApiError::validation(details));
        }
        let rows = self.store.audit_entries(&filter, before, limit + 1).await.map_err(store_error)?;
        // The audit log's cursor is an entry's id as it is: `aud_` and its number.
        Ok(into_page(rows, limit, |entry| entry.id.clone()))
    }

    /// The session signing keys: which one signs, which still verify, which are retired.
    pub async fn signing_keys(&self) -> Result<Vec<SigningKeyView>, ApiError> {
        let records = self.store.signing_keys().await.map_err(store_error)?;
        // Per algorithm, the newest unretired key signs (see `session::KeyRing`).
        let signer = |algorithm: &str| {
            records.iter().rfind(|r| r.algorithm == algorithm && r.retired_at.is_none()).map(|r| r.kid.clone())
        };
        Ok(records
            .iter()
            .map(|r| SigningKeyView {
                kid: r.kid.clone(),
                algorithm: r.algorithm.clone(),
                created_at: r.created_at,
                retired_at: r.retired_at,
                signing: signer(&r.algorithm).as_deref() == Some(r.kid.as_str()),
            })
            .collect())
    }

    /// Generates a key of `algorithm` that signs from now on; older keys keep verifying.
    pub async fn rotate_signing_key(
        &self,
        actor: &str,
        algorithm: SessionAlgorithm,
    ) -> Result<SigningKeyView, ApiError> {
        let record = generate_key(algorithm, now_millis()).map_err(store_error)?;
        self.store
            .insert_signing_key(&record, Audit { actor, action: AuditAction::SigningKeyRotate })
            .await
            .map_err(store_error)?;
        self.changed().await;
        let keys = self.signing_keys().await?;
        keys.into_iter().find(|k| k.kid == record.kid).ok_or_else(ApiError::internal)
    }

    /// Retires a key: tokens it signed stop verifying. The key that signs for `algorithm` (the
    /// configured one) cannot be retired (rotate first), so minting never stops; the last key
    /// of another algorithm can, once a fleet has moved off it.
    pub async fn retire_signing_key(
        &self,
        actor: &str,
        kid: &str,
        algorithm: SessionAlgorithm,
    ) -> Result<SigningKeyView, ApiError> {
        let key = self.signing_keys().await?.into_iter().find(|k| k.kid == kid);
        let key = key.ok_or_else(|| ApiError::not_found("signing key"))?;
        if key.signing && key.algorithm == algorithm.as_str() {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "this key signs new sessions: rotate first, then retire it",
            ));
        }
        if key.retired_at.is_none() {
            let audit = Audit { actor, action: AuditAction::SigningKeyRetire };
            self.store.retire_signing_key(kid, now_millis(), audit).await.map_err(store_error)?;
            self.changed().await;
        }
        let keys = self.signing_keys().await?;
        keys.into_iter().find(|k| k.kid == kid).ok_or_else(ApiError::internal)
    }

    /// Idempotent: a revoked key keeps its first `revokedAt`.
    pub async fn revoke_key(&self, actor: &str, id: &str) -> Result<KeyView, ApiError> {
        let now = now_millis();
        let updated = self
            .store
            .update_key(
                id,
                &|key| {
                    key.revoked_at.get_or_insert(now);
                },
                Audit { actor, action: AuditAction::KeyRevoke },
            )
            .await
            .map_err(store_error)?;
        let key = updated.ok_or_else(|| ApiError::not_found("API key"))?;
        self.changed().await;
        self.view(key).await
    }
}
