//! Where an admin request goes: over HTTP to a running keygate's admin API (the default, like
//! decK or kubectl: operators need the admin token, never database credentials), or, with
//! `--store`, into the same admin router in this process, on the configured store.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use http::{StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use keygate::admin::Admin;
use keygate::app::StartError;
use keygate::config::{AdminRole, Config};
use keygate::error::causes;
use serde_json::Value;
use tower::ServiceExt;

use super::request::AdminRequest;

/// A call to the admin API that has not answered in this time is given up.
const TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) enum Target {
    Api {
        base: String,
        token: String,
        // Boxed: the client is large, and the enum is made once per run.
        client: Box<Client<HttpsConnector<HttpConnector>, Full<Bytes>>>,
    },
    /// The admin router over the store, called in process; `token` is made up for the call.
    Store { router: axum::Router, token: String },
}

/// What the admin API answered.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
}

impl Target {
    /// The admin API at `admin_url`, or at the configured admin listener, with the configured
    /// admin token. The token goes over `https://` (verified: the system's roots and
    /// `ca_file`), or over plain `http://` to a loopback address only (SPEC §17).
    pub(crate) fn api(admin_url: Option<String>, ca_file: Option<&Path>, config: &Config) -> Result<Self, StartError> {
        let scheme = if config.server.admin_tls_cert_file.is_some() { "https" } else { "http" };
        let base = admin_url.unwrap_or_else(|| format!("{scheme}://{}", reachable(config.server.admin_listen)));
        let base = base.trim_end_matches('/').to_owned();
        let uri: Uri = base.parse().map_err(|_| format!("--admin-url {base:?} is not a URL"))?;
        match (uri.scheme_str(), uri.host()) {
            (Some("https"), Some(_)) => {}
            (Some("http"), Some(host)) if is_loopback(host) => {}
            (Some("http"), Some(_)) => {
                return Err(format!(
                    "--admin-url {base}: the admin token is sent over plain http only to a loopback \
                     address; use https:// (the admin listener speaks TLS with \
                     server.admin_tls_cert_file and server.admin_tls_key_file)"
                )
                .into());
            }
            _ => return Err(format!("--admin-url {base:?} must start with https:// or http://").into()),
        }
        let Some(token) = config.server.admin_token.clone() else {
            return Err("no admin token: the CLI works through the admin API, which needs \
                        server.admin_token (or KEYGATE_SERVER_ADMIN_TOKEN); or add --store to work on \
                        the store directly"
                .into());
        };
        let ca_file = ca_file.map(|file| file.to_string_lossy().into_owned());
        let tls = keygate::tls::client_config(ca_file.as_deref(), "--admin-ca-file")?;
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(Arc::unwrap_or_clone(tls))
            .https_or_http()
            .enable_http1()
            .build();
        let client = Box::new(Client::builder(TokioExecutor::new()).build(connector));
        Ok(Self::Api { base, token, client })
    }

    /// The store (`--store`) or a running keygate's admin API.
    pub(crate) async fn chosen(
        store: bool,
        admin_url: Option<String>,
        ca_file: Option<&Path>,
        config: &Config,
    ) -> Result<Self, StartError> {
        match store {
            true => Self::store(config).await,
            false => Self::api(admin_url, ca_file, config),
        }
    }

    /// The admin router on the configured store, which must exist: nothing is created.
    pub(crate) async fn store(config: &Config) -> Result<Self, StartError> {
        let url = config.store.url.redacted();
        let store = keygate::store::open_existing(config).await.map_err(|error| format!("store.url {url}: {error}"))?;
        let admin = Arc::new(Admin::new(store, config.keys.prefix.clone(), None));
        let token = keygate::secret::random_base62(32);
        // Its writes are recorded as `cli:<OS user>` (SPEC §12).
        let user = whoami::username().unwrap_or_else(|_| "unknown".to_owned());
        let actor = format!("cli:{user}");
        let tokens = keygate::admin::tokens::AdminTokens::new([(token.as_str(), actor.as_str(), AdminRole::Admin)]);
        let router = keygate::admin::api::router(admin, tokens, config.sessions.algorithm, Default::default());
        Ok(Self::Store { router, token })
    }

    pub(crate) async fn send(&self, request: AdminRequest) -> Result<Answer, StartError> {
        match self {
            Target::Api { base, token, client } => {
                let url = format!("{base}{}", request.path);
                let sent = tokio::time::timeout(TIMEOUT, client.request(http_request(&url, token, request)?));
                let unreachable = |reason: String| {
                    format!(
                        "cannot reach the admin API at {base}: {reason}. Is keygate serving there? Set \
                         --admin-url (KEYGATE_ADMIN_URL), or work on the store with --store"
                    )
                };
                let response = sent
                    .await
                    .map_err(|_| unreachable(format!("no answer within {} s", TIMEOUT.as_secs())))?
                    .map_err(|error| unreachable(causes(&error)))?;
                let (parts, body) = response.into_parts();
                let bytes = body.collect().await.map_err(|error| unreachable(causes(&error)))?.to_bytes();
                answer(parts.status, &bytes, base)
            }
            Target::Store { router, token } => {
                let path = request.path.clone();
                let request: http::Request<axum::body::Body> = http_request(&path, token, request)?;
                let response = router.clone().oneshot(request).await;
                let Ok(response) = response;
                let (parts, body) = response.into_parts();
                let bytes = body.collect().await.map_err(|error| error.to_string())?.to_bytes();
                answer(parts.status, &bytes, "the store")
            }
        }
    }
}

fn http_request<B: From<String>>(
    url: &str,
    token: &str,
    request: AdminRequest,
) -> Result<http::Request<B>, StartError> {
    let mut builder = http::Request::builder()
        .method(request.method)
        .uri(url)
        .header(header::AUTHORIZATION, format!("Bearer {token}"));
    if request.body.is_some() {
        builder = builder.header(header::CONTENT_TYPE, "application/json");
    }
    let body = request.body.map(|body| body.to_string()).unwrap_or_default();
    builder.body(B::from(body)).map_err(|error| format!("cannot make the request for {url}: {error}").into())
}

/// Every answer of the admin API is JSON; anything else came from something in between.
fn answer(status: StatusCode, bytes: &[u8], from: &str) -> Result<Answer, StartError> {
    // A delete's 204 has no body.
    if status == StatusCode::NO_CONTENT && bytes.is_empty() {
        return Ok(Answer { status, body: Value::Null });
    }
    match serde_json::from_slice(bytes) {
        Ok(body) => Ok(Answer { status, body }),
        Err(_) => {
            Err(format!("{from} answered {status} with a body that is not JSON: is it keygate's admin API?").into())
        }
    }
}

/// `localhost`, or an address of 127.0.0.0/8 or `::1`.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The address to call a listener on: one bound to every interface is reached on loopback.
fn reachable(listen: std::net::SocketAddr) -> std::net::SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    std::net::SocketAddr::new(ip, listen.port())
}
