//! Each tenant, key and signing-key command as the admin API request it stands for (SPEC §8).
//! Whether the request then goes over HTTP or into the admin router in process (`--store`),
//! the answer is the admin API's own.

use http::Method;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value, json};

use super::args::{
    AuditArgs, BudgetArgs, BudgetChange, KeyCommand, KeyFields, PageArgs, SigningKeyCommand, TenantCommand,
    TenantFields, UsageCommand,
};

/// One admin API request: `path` carries the query string, its parts percent-encoded.
pub(crate) struct AdminRequest {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) body: Option<Value>,
}

impl AdminRequest {
    fn get(path: String) -> Self {
        Self { method: Method::GET, path, body: None }
    }

    fn post(path: String, body: Option<Map<String, Value>>) -> Self {
        Self { method: Method::POST, path, body: body.map(Value::Object) }
    }

    /// `POST /admin/v1/tenants/{tenant}/keys` with `body`.
    pub(crate) fn create_key(tenant: &str, body: Map<String, Value>) -> Self {
        Self::post(format!("/admin/v1/tenants/{}/keys", segment(tenant)), Some(body))
    }

    fn delete(path: String) -> Self {
        Self { method: Method::DELETE, path, body: None }
    }

    fn patch(path: String, body: Map<String, Value>) -> Self {
        Self { method: Method::PATCH, path, body: Some(Value::Object(body)) }
    }
}

/// A path segment made from what the user typed: `/` or `?` in an id stays part of the id.
fn segment(text: &str) -> String {
    utf8_percent_encode(text, NON_ALPHANUMERIC).to_string()
}

impl TenantCommand {
    pub(crate) fn request(self) -> AdminRequest {
        match self {
            TenantCommand::Create { id, name, fields, rate } => {
                let mut body = Map::new();
                put(&mut body, "id", id);
                put(&mut body, "name", Some(name));
                fields.put(&mut body, false);
                rate.put(&mut body);
                AdminRequest::post("/admin/v1/tenants".into(), Some(body))
            }
            TenantCommand::Get { id } => AdminRequest::get(format!("/admin/v1/tenants/{}", segment(&id))),
            TenantCommand::List(page) => AdminRequest::get(format!("/admin/v1/tenants{}", page.query())),
            TenantCommand::Update { id, name, fields, no_modules, rate } => {
                let mut body = Map::new();
                put(&mut body, "name", name);
                fields.put(&mut body, no_modules);
                rate.put(&mut body);
                AdminRequest::patch(format!("/admin/v1/tenants/{}", segment(&id)), body)
            }
            TenantCommand::Delete { id } => AdminRequest::delete(format!("/admin/v1/tenants/{}", segment(&id))),
        }
    }
}

impl KeyCommand {
    pub(crate) fn request(self) -> AdminRequest {
        match self {
            KeyCommand::Create { tenant_id, name, fields, rate } => {
                let mut body = Map::new();
                put(&mut body, "name", Some(name));
                // Required by the API; none granted unless --scope says so.
                body.insert("scopes".into(), json!([]));
                fields.put(&mut body, false);
                rate.put(&mut body);
                AdminRequest::create_key(&tenant_id, body)
            }
            KeyCommand::Get { id } => AdminRequest::get(format!("/admin/v1/keys/{}", segment(&id))),
            KeyCommand::List { tenant_id, state, page } => AdminRequest::get(format!(
                "/admin/v1/tenants/{}/keys{}",
                segment(&tenant_id),
                page.query_with(&[("state", &state)])
            )),
            KeyCommand::Find { prefix, page } => {
                AdminRequest::get(format!("/admin/v1/keys{}", page.query_with(&[("prefix", &Some(prefix))])))
            }
            KeyCommand::Update { id, name, fields, no_origins, no_expiry, rate } => {
                let mut body = Map::new();
                put(&mut body, "name", name);
                fields.put(&mut body, no_origins);
                if no_expiry {
                    body.insert("expiresAt".into(), Value::Null);
                }
                rate.put(&mut body);
                AdminRequest::patch(format!("/admin/v1/keys/{}", segment(&id)), body)
            }
            KeyCommand::Revoke { id } => AdminRequest::post(format!("/admin/v1/keys/{}/revoke", segment(&id)), None),
            KeyCommand::Delete { id } => AdminRequest::delete(format!("/admin/v1/keys/{}", segment(&id))),
            KeyCommand::Import { .. } => unreachable!("key import sends a request a line (cli/import.rs)"),
            KeyCommand::Roll { id, overlap_seconds } => {
                let mut body = Map::new();
                body.insert("overlapSeconds".into(), json!(overlap_seconds));
                AdminRequest::post(format!("/admin/v1/keys/{}/roll", segment(&id)), Some(body))
            }
        }
    }
}

impl SigningKeyCommand {
    pub(crate) fn request(self) -> AdminRequest {
        match self {
            SigningKeyCommand::List => AdminRequest::get("/admin/v1/signing-keys".into()),
            SigningKeyCommand::Rotate => AdminRequest::post("/admin/v1/signing-keys".into(), None),
            SigningKeyCommand::Retire { kid } => {
                AdminRequest::post(format!("/admin/v1/signing-keys/{}/retire", segment(&kid)), None)
            }
        }
    }
}

impl AuditArgs {
    pub(crate) fn request(self) -> AdminRequest {
        let filters = [
            ("tenantId", &self.tenant),
            ("targetId", &self.target),
            ("action", &self.action),
            ("since", &self.since),
            ("until", &self.until),
        ];
        AdminRequest::get(format!("/admin/v1/audit{}", self.page.query_with(&filters)))
    }
}

impl UsageCommand {
    pub(crate) fn request(self) -> AdminRequest {
        let (path, range, group_by) = match self {
            UsageCommand::Key { id, range } => (format!("/admin/v1/keys/{}/usage", segment(&id)), range, None),
            UsageCommand::Tenant { id, range, group_by } => {
                (format!("/admin/v1/tenants/{}/usage", segment(&id)), range, group_by)
            }
        };
        let (from, to) = (Some(range.from), Some(range.to));
        let pairs = [("from", &from), ("to", &to), ("granularity", &range.granularity), ("groupBy", &group_by)];
        AdminRequest::get(format!("{path}{}", query_string(pairs)))
    }
}

impl PageArgs {
    /// `?limit=…&cursor=…`, or nothing.
    fn query(&self) -> String {
        self.query_with(&[])
    }

    /// The query string of the page and of a list's own filters (`None`: not given).
    fn query_with(&self, filters: &[(&str, &Option<String>)]) -> String {
        query_string(filters.iter().copied().chain([("limit", &self.limit), ("cursor", &self.cursor)]))
    }
}

/// `?name=value&…` of the pairs given (`None`: left out), values percent-encoded; or nothing.
fn query_string<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a Option<String>)>) -> String {
    let parts: Vec<String> =
        pairs.into_iter().filter_map(|(name, value)| Some(format!("{name}={}", segment(value.as_ref()?)))).collect();
    if parts.is_empty() { String::new() } else { format!("?{}", parts.join("&")) }
}

impl BudgetArgs {
    fn put(&self, body: &mut Map<String, Value>) {
        if let (Some(limit), Some(window)) = (self.rate_limit, self.window_seconds) {
            body.insert("rateLimit".into(), json!({ "limit": limit, "windowSeconds": window }));
        }
        if let (Some(limit), Some(period)) = (self.quota, &self.quota_period) {
            body.insert("quota".into(), json!({ "limit": limit, "period": period }));
        }
    }
}

impl BudgetChange {
    fn put(&self, body: &mut Map<String, Value>) {
        self.set.put(body);
        if self.clear_rate_limit {
            body.insert("rateLimit".into(), Value::Null);
        }
        if self.clear_quota {
            body.insert("quota".into(), Value::Null);
        }
    }
}

impl TenantFields {
    fn put(self, body: &mut Map<String, Value>, no_modules: bool) {
        put(body, "status", self.status);
        put(body, "subscription", self.subscription);
        if !self.modules.is_empty() || no_modules {
            body.insert("modules".into(), json!(self.modules));
        }
        put_json(body, "meta", self.meta);
    }
}

impl KeyFields {
    fn put(self, body: &mut Map<String, Value>, no_origins: bool) {
        if !self.scopes.is_empty() {
            body.insert("scopes".into(), json!(self.scopes));
        }
        if !self.origins.is_empty() || no_origins {
            body.insert("allowedOrigins".into(), json!(self.origins));
        }
        put(body, "expiresAt", self.expires_at);
        put_json(body, "meta", self.meta);
    }
}

/// A flag whose value is JSON; text that is not JSON goes as a string, for the API to refuse
/// naming the field.
fn put_json(body: &mut Map<String, Value>, name: &str, value: Option<String>) {
    if let Some(raw) = value {
        body.insert(name.into(), serde_json::from_str(&raw).unwrap_or(Value::String(raw)));
    }
}

fn put(body: &mut Map<String, Value>, name: &str, value: Option<String>) {
    if let Some(value) = value {
        body.insert(name.into(), Value::String(value));
    }
}

/// Adds to each of an error's `details` the flag its `path` came from: the CLI's user typed
/// `--origin`, not `allowedOrigins[0]`.
pub(crate) fn name_flags(envelope: &mut Value) {
    let Some(details) = envelope.pointer_mut("/error/details").and_then(Value::as_array_mut) else { return };
    for detail in details {
        let path = detail["path"].as_str().unwrap_or_default();
        let field = path.split(['[', '.']).next().unwrap_or_default();
        let flag = match (field, path.ends_with("windowSeconds")) {
            ("rateLimit", true) => "--window-seconds",
            ("rateLimit", false) => "--rate-limit",
            ("quota", _) if path.ends_with("period") => "--quota-period",
            ("quota", _) => "--quota",
            ("allowedOrigins", _) => "--origin",
            ("scopes", _) => "--scope",
            ("modules", _) => "--module",
            ("expiresAt", _) => "--expires-at",
            ("name", _) => "--name",
            ("id", _) => "--id",
            ("status", _) => "--status",
            ("subscription", _) => "--subscription",
            ("limit", _) => "--limit",
            ("cursor", _) => "--cursor",
            ("meta", _) => "--meta",
            ("from", _) => "--from",
            ("to", _) => "--to",
            ("granularity", _) => "--granularity",
            ("groupBy", _) => "--group-by",
            _ => continue,
        };
        detail["flag"] = Value::String(flag.to_owned());
    }
}
