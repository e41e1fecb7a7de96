//! The check pipeline of SPEC §2 — the one place where a request is judged, shared by every
//! entry point: the sessions endpoint, the gateway, the tower layer, and the re-judging of open
//! WebSockets ([`Pipeline::recheck`]).
//!
//! `Pipeline::run` reads as the contract's table: authenticate (1–3), limit (4), standing
//! (5), origin (6), session (7), module (8), scope (9). The first failure answers. Besides the
//! verdict it returns what the response must carry whatever the verdict: the rate-limit quota
//! (once steps 1–3 passed) and the CORS origin (once the key is known and allows it).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::{HeaderMap, HeaderName, HeaderValue, Method, header};

use crate::cache::Lookup;
use crate::config::{Config, KeyHeader, OnBackendError};
use crate::error::{ApiError, ErrorCode, Repeating, number_value, repeating_number_value};
use crate::feed::StoreWatch;
use crate::model::{KeyState, KeyWithTenant, RateLimit, Subscription, TenantStatus};
use crate::origin::Origin;
use crate::ratelimit::{BudgetName, Budgets, FailedAuthentications, MemoryLimiter, Quota, RateLimiter, ietf_headers};
use crate::scope::Scope;
use crate::secret::{hash_secret, is_well_formed};
use crate::session::{SessionError, Sessions};
use crate::store::{Store, StoreError};
use crate::time::{Millis, now_millis};
use crate::trusted::TrustedProxies;
use crate::usage::{Tally, UsageRecorder};

pub const SESSION_TOKEN_HEADER: &str = "x-session-token";

/// What a route demands of a request: a scope, a module the tenant must have, and whether it
/// writes (a browser write needs a session). Built from [`Policy::scope`]:
///
/// ```
/// use keygate::Policy;
///
/// // Needs `orders:read`, and the tenant's `orders` module.
/// let read = Policy::scope("orders:read")?.with_module("orders");
/// assert_eq!(read.module.as_deref(), Some("orders"));
/// // A POST that only reads (a search, say): no session needed from a browser.
/// let search = Policy::scope("orders:read")?.with_write(false);
/// assert_eq!(search.write, Some(false));
/// // A scope is checked when the policy is made.
/// assert!(Policy::scope("orders write").is_err());
/// # Ok::<(), &'static str>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Names the route in metrics (its prefix, or `sessions`).
    pub label: String,
    pub scope: Option<Scope>,
    pub module: Option<String>,
    /// A write route needs a session on the browser channel (step 7). `None`: decided by the
    /// method, see [`is_read`].
    pub write: Option<bool>,
    /// `POST /api/v1/sessions`: needs a browser origin, and skips steps 7 and 8.
    #[doc(hidden)]
    pub mints_session: bool,
}

impl Policy {
    /// `POST /api/v1/sessions`'s own (keygate's route, not an application's).
    #[doc(hidden)]
    pub fn create_session() -> Self {
        Self {
            label: "sessions".to_owned(),
            scope: Scope::parse("sessions:create").ok(),
            module: None,
            // Step 7 is skipped for this endpoint, so read/write does not matter.
            write: None,
            mints_session: true,
        }
    }

    /// `POST /v1/verify` without a path (SPEC §14): no route's demands, steps 1–7 and 9.
    #[doc(hidden)]
    pub fn verify() -> Self {
        Self { label: "verify".to_owned(), ..Self::default() }
    }

    /// A route that needs `scope`; the starting point for a tower-layer route.
    pub fn scope(scope: &str) -> Result<Self, &'static str> {
        Ok(Self { label: scope.to_owned(), scope: Some(Scope::parse(scope)?), ..Self::default() })
    }

    /// Requires `module` to be enabled for the tenant (step 8).
    pub fn with_module(mut self, module: &str) -> Self {
        self.module = Some(module.to_owned());
        self
    }

    /// Overrides the method-based read/write decision.
    pub fn with_write(mut self, write: bool) -> Self {
        self.write = Some(write);
        self
    }

    fn is_write(&self, method: &Method) -> bool {
        self.write.unwrap_or(!is_read(method))
    }
}

/// Only `GET`, `HEAD` and `OPTIONS`, exactly so spelled, are reads; any other method is a write.
pub fn is_read(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// The request carries an `Origin` header.
    Browser,
    /// Server-to-server: no `Origin`.
    Server,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Browser => "browser",
            Self::Server => "server",
        }
    }
}

/// The authenticated caller of an allowed request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub record: Arc<KeyWithTenant>,
    pub channel: Channel,
    /// The normalised `Origin` on the browser channel.
    pub origin: Option<Origin>,
}

/// The verdict, and what the response carries whatever the verdict.
#[derive(Debug)]
pub struct Decision {
    pub outcome: Result<Principal, ApiError>,
    pub quota: Option<Quota>,
    /// `RateLimit-Policy` and `RateLimit`, when `rate_limit.ietf_headers` is on.
    pub ietf: Option<(String, String)>,
    /// Set exactly when the origin is on the identified key's allowlist.
    pub cors_origin: Option<Origin>,
    /// The identified key and its tenant, for the request log (also when refused later).
    pub identity: Option<Arc<KeyWithTenant>>,
    /// When the request was judged, if it counts in usage (it passed steps 1–3).
    pub counted_at: Option<Millis>,
}

pub struct Pipeline {
    store: Arc<dyn Store>,
    /// The key cache, and the change feed that keeps it current.
    watch: Arc<StoreWatch>,
    limiter: Arc<dyn RateLimiter>,
    /// Used instead of a failing shared limiter when `on_backend_error = "local"`.
    local_limiter: MemoryLimiter,
    on_backend_error: OnBackendError,
    sessions: Arc<Sessions>,
    usage: UsageRecorder,
    key_prefix: String,
    /// `keys.headers`: where a key may come from, and what a request without one is told.
    key_headers: KeyHeaders,
    default_rate: DefaultRate,
    ietf_headers: bool,
    failed_auth: FailedAuthentications,
    trusted: TrustedProxies,
}

/// `rate_limit.limit` and `window_seconds`, replaced together on reload: one atomic word
/// (a limit of at most 10^9 fits in 32 bits, a window of at most a day in the other 32), so a
/// request never sees one setting's new value beside the other's old one.
struct DefaultRate(AtomicU64);

impl DefaultRate {
    fn new(rate: RateLimit) -> Self {
        let this = Self(AtomicU64::new(0));
        this.set(rate);
        this
    }

    fn set(&self, rate: RateLimit) {
        self.0.store(rate.limit << 32 | rate.window_seconds, Ordering::Relaxed);
    }

    fn get(&self) -> RateLimit {
        let word = self.0.load(Ordering::Relaxed);
        RateLimit { limit: word >> 32, window_seconds: word & u64::from(u32::MAX) }
    }
}

/// Facts gathered so far, for the parts of the answer that do not depend on the verdict.
#[derive(Default)]
struct Trail {
    quota: Option<Quota>,
    /// `RateLimit-Policy` and `RateLimit`, when `rate_limit.ietf_headers` is on.
    ietf: Option<(String, String)>,
    cors_origin: Option<Origin>,
    identity: Option<Arc<KeyWithTenant>>,
    /// When the session token checked at step 7 expires.
    session_ends: Option<Millis>,
    counted_at: Option<Millis>,
}

/// Whether a judgement counts: a request does (step 4 and usage); judging an open WebSocket
/// again does not, since its handshake counted once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counting {
    Count,
    Recheck,
}

impl Pipeline {
    pub fn new(
        config: &Config,
        store: Arc<dyn Store>,
        watch: Arc<StoreWatch>,
        limiter: Arc<dyn RateLimiter>,
        local_limiter: MemoryLimiter,
        sessions: Arc<Sessions>,
        usage: UsageRecorder,
    ) -> Self {
        Self {
            store,
            watch,
            limiter,
            local_limiter,
            on_backend_error: config.rate_limit.on_backend_error,
            sessions,
            usage,
            key_prefix: config.keys.prefix.clone(),
            key_headers: KeyHeaders::new(&config.keys.headers),
            default_rate: DefaultRate::new(RateLimit {
                limit: config.rate_limit.limit,
                window_seconds: config.rate_limit.window_seconds,
            }),
            ietf_headers: config.rate_limit.ietf_headers,
            failed_auth: FailedAuthentications::new(config.failed_auth_rate(), config.trusted_proxies()),
            trusted: config.trusted_proxies(),
        }
    }

    /// Takes a reloaded `rate_limit.limit` and `window_seconds` (validated by the config).
    pub fn set_default_rate(&self, rate: RateLimit) {
        self.default_rate.set(rate);
    }

    /// Whose `X-Forwarded-For` names the client (`proxy.trusted_proxies`).
    pub fn trusted_proxies(&self) -> &TrustedProxies {
        &self.trusted
    }

    pub fn sessions(&self) -> &Arc<Sessions> {
        &self.sessions
    }

    /// How a request carries `key` in the first of `keys.headers`: its name and value.
    pub fn credential_header(&self, key: &str) -> (HeaderName, String) {
        match self.key_headers.names.first() {
            Some(first) if !first.is_authorization() => (first.name().clone(), key.to_owned()),
            _ => (header::AUTHORIZATION, format!("Bearer {key}")),
        }
    }

    /// Whether the rate-limit backend answers (for `/readyz`).
    pub async fn limiter_reachable(&self) -> bool {
        self.limiter.ping().await.is_ok()
    }

    /// Whether requests are refused while the rate-limit backend is down
    /// (`on_backend_error = "deny"`): only then is it a dependency of readiness.
    pub fn refuses_without_limiter(&self) -> bool {
        self.on_backend_error == OnBackendError::Deny
    }

    /// Judges a request under `policy`; `peer` is the socket peer, when known.
    pub async fn check(
        &self,
        method: &Method,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
        policy: &Policy,
    ) -> Decision {
        let mut trail = Trail::default();
        let now = now_millis();
        // Before the key is looked at: a client that used up its failed authentications costs
        // nothing more (`ratelimit::FailedAuthentications`; off unless configured).
        let client = self.failed_auth.client(peer, headers);
        let outcome = match client.and_then(|client| self.failed_auth.refused(client, now)) {
            Some(retry_after) => {
                Err(ApiError::new(ErrorCode::RateLimited, "too many failed authentications from this address")
                    .with_retry_after(retry_after))
            }
            None => self.run(headers, policy.is_write(method), policy, now, &mut trail, Counting::Count).await,
        };
        if let (Some(client), Err(error)) = (client, &outcome)
            && matches!(error.code, ErrorCode::ApiKeyInvalid | ErrorCode::ApiKeyRevoked | ErrorCode::ApiKeyExpired)
        {
            self.failed_auth.record(client, now);
        }
        Decision {
            outcome,
            quota: trail.quota,
            ietf: trail.ietf,
            cors_origin: trail.cors_origin,
            identity: trail.identity,
            counted_at: trail.counted_at,
        }
    }

    /// What counts `decision`'s request in usage once dropped, if it counts; it is told the
    /// response's outcome ([`Tally::answered`]).
    pub fn tally<'a>(&'a self, decision: &'a Decision) -> Option<Tally<'a>> {
        let (record, at) = (decision.identity.as_deref()?, decision.counted_at?);
        Some(self.usage.tally(record, at))
    }

    /// Judges again a request that was allowed — an open WebSocket, after a change it depends
    /// on (SPEC §17) — by the same steps, counting nothing. `Ok` carries the next instant at
    /// which the verdict may change by the clock alone: the key's expiry, the end of the rolled
    /// secret it was opened with, or the session token's.
    pub async fn recheck(
        &self,
        method: &Method,
        headers: &HeaderMap,
        policy: &Policy,
    ) -> Result<Option<Millis>, ApiError> {
        let mut trail = Trail::default();
        let now = now_millis();
        let principal = self.run(headers, policy.is_write(method), policy, now, &mut trail, Counting::Recheck).await?;
        Ok(principal.record.ends().into_iter().chain(trail.session_ends).min())
    }

    async fn run(
        &self,
        headers: &HeaderMap,
        write: bool,
        policy: &Policy,
        now: Millis,
        trail: &mut Trail,
        counting: Counting,
    ) -> Result<Principal, ApiError> {
        let record = self.authenticate(headers).await?; // steps 1 and 2
        trail.identity = Some(Arc::clone(&record));
        let origin = request_origin(headers);
        trail.cors_origin = allowed_origin(&origin, &record);
        check_key_state(&record, now)?; // step 3
        if counting == Counting::Count {
            trail.counted_at = Some(now);
            self.count_request(&record, trail).await?; // step 4
        }
        check_standing(&record)?; // step 5
        let allowed = trail.cors_origin.is_some();
        let (channel, origin) = check_origin(origin, allowed, policy)?; // step 6
        if !policy.mints_session {
            trail.session_ends = self.check_session(headers, &record, origin.as_ref(), write, now)?; // step 7
            check_module(&record, policy)?; // step 8
        }
        check_scope(&record, policy)?; // step 9
        Ok(Principal { record, channel, origin })
    }

    /// Steps 1 and 2: a single `Authorization: Bearer` credential, well formed, known.
    async fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<KeyWithTenant>, ApiError> {
        let secret = self.key_headers.credential(headers)?;
        if !may_be_a_key(&self.key_prefix, secret) {
            return Err(ApiError::new(ErrorCode::ApiKeyInvalid, "the API key is not valid"));
        }
        let hash = hash_secret(secret);
        let mut found = self.watch.cache.find(self.store.as_ref(), &hash).await;
        // Ruled out by the filter, but the key may have been created a moment ago elsewhere (by
        // the CLI, say): catch up with the feed (at most every few ms across all requests), and
        // look once more if it brought anything.
        if matches!(found, Ok(Lookup::RuledOut)) && self.watch.refresh_for_unknown_key().await {
            found = self.watch.cache.find(self.store.as_ref(), &hash).await;
        }
        match found {
            Ok(Lookup::Known(record)) => Ok(record),
            Ok(Lookup::Unknown | Lookup::RuledOut) => {
                Err(ApiError::new(ErrorCode::ApiKeyInvalid, "the API key is not valid"))
            }
            Err(error @ StoreError::Corrupt(_)) => {
                tracing::error!(%error, "corrupt key in the store");
                Err(ApiError::internal())
            }
            Err(error) => {
                tracing::error!(%error, "key lookup failed");
                Err(ApiError::unavailable("the key store is unavailable; retry shortly"))
            }
        }
    }

    /// Step 4. Every request that passed steps 1–3 counts, against every budget of the key
    /// (SPEC §13), on the limiter, or as `rate_limit.on_backend_error` says when it fails: with
    /// `allow` the request is let through uncounted, and `trail.quota` stays `None`.
    async fn count_request(&self, record: &KeyWithTenant, trail: &mut Trail) -> Result<(), ApiError> {
        let budgets = Budgets {
            key_id: &record.key.id,
            tenant_id: &record.tenant.id,
            window: record.key.rate_limit.or(record.tenant.rate_limit).unwrap_or_else(|| self.default_rate.get()),
            key_quota: record.key.quota,
            tenant_quota: record.tenant.quota,
        };
        let verdict = match self.limiter.hit(&budgets).await {
            Ok(verdict) => verdict,
            Err(error) => match crate::metrics::limiter_failed(self.on_backend_error) {
                OnBackendError::Allow => {
                    tracing::warn!(%error, "rate limiter failed; request let through");
                    return Ok(());
                }
                OnBackendError::Local => match self.local_limiter.hit(&budgets).await {
                    Ok(verdict) => verdict,
                    Err(local) => {
                        tracing::warn!(%error, %local, "rate limiter and its local fallback failed; request denied");
                        return Err(ApiError::unavailable("rate limiting is unavailable; retry shortly"));
                    }
                },
                OnBackendError::Deny => {
                    tracing::warn!(%error, "rate limiter failed; request denied");
                    return Err(ApiError::unavailable("rate limiting is unavailable; retry shortly"));
                }
            },
        };
        trail.quota = Some(verdict.quota);
        if self.ietf_headers {
            trail.ietf = Some(ietf_headers(&verdict.budgets, now_millis()));
        }
        match verdict.refused_by {
            None => Ok(()),
            Some(budget) => {
                let message = match budget {
                    BudgetName::Window => "rate limit exceeded; retry after the window resets",
                    BudgetName::KeyQuota => "the key's quota is used up; retry after it resets",
                    BudgetName::TenantQuota => "the tenant's quota is used up; retry after it resets",
                };
                Err(ApiError::new(ErrorCode::RateLimited, message).with_retry_after(verdict.quota.retry_after))
            }
        }
    }

    /// Step 7: on the browser channel a write needs a session, and a presented token is
    /// always checked. `Some`: when the token checked expires.
    fn check_session(
        &self,
        headers: &HeaderMap,
        record: &KeyWithTenant,
        origin: Option<&Origin>,
        write: bool,
        now: Millis,
    ) -> Result<Option<Millis>, ApiError> {
        let Some(origin) = origin else { return Ok(None) };
        let invalid = || ApiError::new(ErrorCode::SessionInvalid, "the session token is not valid");
        let mut tokens = headers.get_all(SESSION_TOKEN_HEADER).iter();
        let token = match (tokens.next(), tokens.next()) {
            (None, _) if write => {
                return Err(ApiError::new(
                    ErrorCode::SessionRequired,
                    "a session token (X-Session-Token) is required for writes from a browser",
                ));
            }
            (None, _) => return Ok(None),
            (Some(_), Some(_)) => return Err(invalid()),
            (Some(value), None) => value.to_str().map_err(|_| invalid())?,
        };
        match self.sessions.verify_until(token, &record.key, origin, now) {
            Ok(expires) => Ok(Some(expires * 1000)),
            Err(SessionError::Expired) => {
                Err(ApiError::new(ErrorCode::SessionExpired, "the session token has expired"))
            }
            Err(SessionError::Invalid) => Err(invalid()),
        }
    }
}

/// `keys.headers` (SPEC §11): the request headers a key may come in, in order.
struct KeyHeaders {
    names: Vec<KeyHeader>,
    /// What a request without a key is told: every way to send one.
    required: String,
}

impl KeyHeaders {
    fn new(names: &[KeyHeader]) -> Self {
        let ways: Vec<String> = names
            .iter()
            .map(
                |h| if h.is_authorization() { "Authorization: Bearer <key>".to_owned() } else { format!("{h}: <key>") },
            )
            .collect();
        Self { names: names.to_vec(), required: format!("an API key is required: send {}", ways.join(" or ")) }
    }

    /// The request's one credential: none in any listed header is `API_KEY_REQUIRED`; a
    /// listed header twice, or two different credentials, `API_KEY_INVALID`.
    fn credential<'h>(&self, headers: &'h HeaderMap) -> Result<&'h str, ApiError> {
        let mut found: Option<&str> = None;
        for header in &self.names {
            let Some(credential) = credential_in(headers, header)? else { continue };
            match found {
                Some(earlier) if earlier != credential => {
                    return Err(ApiError::new(ErrorCode::ApiKeyInvalid, "two different API keys in one request"));
                }
                _ => found = Some(credential),
            }
        }
        found.ok_or_else(|| ApiError::new(ErrorCode::ApiKeyRequired, self.required.clone()))
    }
}

/// The credential one listed header carries, if it carries one: `Authorization` with the
/// `Bearer` scheme (case-insensitive), any other the bare key.
fn credential_in<'h>(headers: &'h HeaderMap, header: &KeyHeader) -> Result<Option<&'h str>, ApiError> {
    let invalid = |why: &'static str| ApiError::new(ErrorCode::ApiKeyInvalid, why);
    let mut values = headers.get_all(header.name()).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(invalid(if header.is_authorization() {
            "send exactly one Authorization header"
        } else {
            "send the API key's header once"
        }));
    }
    let value = value.to_str().map_err(|_| invalid("the API key is not valid"))?.trim();
    if header.is_authorization() {
        let (scheme, credential) = value.split_once(' ').unwrap_or((value, ""));
        let credential = credential.trim();
        return Ok((scheme.eq_ignore_ascii_case("bearer") && !credential.is_empty()).then_some(credential));
    }
    Ok((!value.is_empty()).then_some(value))
}

/// The credential of `Authorization: Bearer <key>`, as the default `keys.headers` reads it.
/// Public for the fuzz target (`fuzz/`).
pub fn bearer_credential(headers: &HeaderMap) -> Result<&str, ApiError> {
    KeyHeaders::new(&crate::config::KeysConfig::default().headers).credential(headers)
}

/// Step 2's check before any lookup (SPEC §11): a credential in keygate's own format
/// (`<prefix>_…`) must be well formed, checksum included; any other — an imported secret, in
/// whatever format it was issued — must be 1 to 512 visible ASCII characters. Either way an
/// unknown one then costs no store read (the filter of known keys rules it out).
fn may_be_a_key(prefix: &str, credential: &str) -> bool {
    let ours = credential.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('_'));
    if ours {
        is_well_formed(prefix, credential)
    } else {
        (1..=512).contains(&credential.len()) && credential.bytes().all(|b| b.is_ascii_graphic())
    }
}

/// The request's `Origin`: `None` on the server channel; `Some(Err)` when it is not exactly one
/// serialised origin (two headers, `null`, a path, bad bytes).
fn request_origin(headers: &HeaderMap) -> Option<Result<Origin, ()>> {
    let mut values = headers.get_all(header::ORIGIN).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return Some(Err(()));
    }
    Some(first.to_str().map_err(|_| ()).and_then(|raw| Origin::parse(raw).map_err(|_| ())))
}

fn allowed_origin(origin: &Option<Result<Origin, ()>>, record: &KeyWithTenant) -> Option<Origin> {
    match origin {
        Some(Ok(origin)) if record.key.allowed_origins.iter().any(|p| p.matches(origin)) => Some(origin.clone()),
        _ => None,
    }
}

/// Step 3. Only a caller holding the full secret gets here, so telling it the key's state
/// discloses nothing.
fn check_key_state(record: &KeyWithTenant, now: Millis) -> Result<(), ApiError> {
    match record.state_at(now) {
        KeyState::Usable => Ok(()),
        KeyState::Revoked => Err(ApiError::new(ErrorCode::ApiKeyRevoked, "the API key has been revoked")),
        KeyState::Expired => Err(ApiError::new(ErrorCode::ApiKeyExpired, "the API key has expired")),
    }
}

/// Step 5. `trialing` is in good standing.
fn check_standing(record: &KeyWithTenant) -> Result<(), ApiError> {
    let tenant = &record.tenant;
    if tenant.status == TenantStatus::Suspended {
        return Err(ApiError::new(ErrorCode::TenantSuspended, "the account is suspended"));
    }
    match tenant.subscription {
        Subscription::Cancelled => {
            Err(ApiError::new(ErrorCode::SubscriptionCancelled, "the subscription has been cancelled"))
        }
        Subscription::PastDue => Err(ApiError::new(ErrorCode::SubscriptionPastDue, "the subscription is past due")),
        Subscription::Active | Subscription::Trialing => Ok(()),
    }
}

/// Step 6: a browser-channel request's origin must be on the key's allowlist. `allowed` is the
/// match already made for the CORS decision, not made twice.
fn check_origin(
    origin: Option<Result<Origin, ()>>,
    allowed: bool,
    policy: &Policy,
) -> Result<(Channel, Option<Origin>), ApiError> {
    let refuse = |message: &'static str| Err(ApiError::new(ErrorCode::OriginNotAllowed, message));
    match origin {
        None if policy.mints_session => {
            refuse("a browser origin is required: sessions are created from a web page (send an Origin header)")
        }
        None => Ok((Channel::Server, None)),
        Some(Err(())) => refuse("the Origin header is not a single valid origin"),
        Some(Ok(origin)) if allowed => Ok((Channel::Browser, Some(origin))),
        Some(Ok(_)) => refuse("this origin is not allowed for the API key"),
    }
}

/// Step 8.
fn check_module(record: &KeyWithTenant, policy: &Policy) -> Result<(), ApiError> {
    match &policy.module {
        Some(module) if !record.tenant.modules.contains(module) => Err(ApiError::new(
            ErrorCode::ModuleNotEnabled,
            format!("the module {module:?} is not enabled for this account"),
        )),
        _ => Ok(()),
    }
}

/// Step 9.
fn check_scope(record: &KeyWithTenant, policy: &Policy) -> Result<(), ApiError> {
    match &policy.scope {
        Some(scope) if !record.key.scopes.iter().any(|held| held.grants(scope)) => {
            Err(ApiError::new(ErrorCode::ScopeNotGranted, format!("the API key lacks the scope {scope}")))
        }
        _ => Ok(()),
    }
}

pub(crate) const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
pub(crate) const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
pub(crate) const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

impl Decision {
    /// Adds the headers every answer to this request carries: `X-RateLimit-*` once steps 1–3
    /// passed, CORS when the origin is on the key's allowlist.
    pub fn decorate(&self, headers: &mut HeaderMap) {
        if let Some(quota) = &self.quota {
            headers.insert(X_RATELIMIT_LIMIT, repeating_number_value(Repeating::Limit, quota.limit));
            headers.insert(X_RATELIMIT_REMAINING, number_value(quota.remaining));
            headers.insert(X_RATELIMIT_RESET, repeating_number_value(Repeating::Reset, quota.reset));
        }
        if let Some((policy, left)) = &self.ietf {
            const POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
            const LEFT: HeaderName = HeaderName::from_static("ratelimit");
            // Names and whole numbers only: always a valid header value.
            if let (Ok(policy), Ok(left)) = (HeaderValue::from_str(policy), HeaderValue::from_str(left)) {
                headers.insert(POLICY, policy);
                headers.insert(LEFT, left);
            }
        }
        if let Some(origin) = &self.cors_origin {
            crate::cors::add_response_headers(headers, origin);
        }
    }
}

#[cfg(test)]
mod tests;
