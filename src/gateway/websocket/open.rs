//! The open WebSockets of an instance (SPEC §17): their caps, and what each depends on, so that
//! a change closes exactly the connections it concerns.
//!
//! An upgraded connection leaves `server.max_connections` and takes a place here instead:
//! at most `proxy.max_websockets` per instance and `proxy.max_websockets_per_key` per key, so
//! that idle WebSockets can never hold the connections plain requests need.
//!
//! Each relay registers its key and tenant. The change feed ([`crate::feed`]) reports every
//! key and tenant change, and a reload every route change; the relays concerned are woken and
//! judge their handshake again by the one pipeline ([`Pipeline::recheck`]), counting nothing.
//! Nothing is polled and no frame is looked at for it: a relay wakes only when something it
//! depends on changed, or when the clock ends its key or session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use http::{HeaderMap, Method};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::config::Config;
use crate::edge::limits::AlsoDrain;
use crate::error::{ApiError, ErrorCode};
use crate::feed::FeedListener;
use crate::gateway::routes::{Resolution, Route, resolve};
use crate::model::KeyWithTenant;
use crate::pipeline::{Pipeline, SESSION_TOKEN_HEADER};
use crate::time::Millis;

/// The headers a judgement reads besides `keys.headers`: the session token and the origin.
const JUDGED_HEADERS: [&str; 2] = [SESSION_TOKEN_HEADER, "origin"];

pub(crate) struct OpenSockets {
    slots: Arc<Semaphore>,
    max: u32,
    max_per_key: usize,
    pipeline: Arc<Pipeline>,
    /// What a judgement reads of a handshake: `keys.headers` and [`JUDGED_HEADERS`].
    judged: Vec<http::HeaderName>,
    /// The routes in force (replaced by a reload).
    routes: RwLock<Arc<[Route]>>,
    registry: Mutex<Registry>,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    open: HashMap<u64, Arc<Notify>>,
    by_key: HashMap<String, Vec<u64>>,
    by_tenant: HashMap<String, Vec<u64>>,
}

impl Registry {
    fn wake(&self, ids: Option<&Vec<u64>>) {
        for id in ids.into_iter().flatten() {
            if let Some(recheck) = self.open.get(id) {
                recheck.notify_one();
            }
        }
    }
}

/// A WebSocket's place: held from before its handshake reaches the upstream until the relay
/// ends.
pub(super) struct Slot {
    sockets: Arc<OpenSockets>,
    id: u64,
    key: String,
    tenant: String,
    /// Woken when something the connection depends on changed.
    pub(super) recheck: Arc<Notify>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut guard = self.sockets.registry();
        let registry = &mut *guard;
        registry.open.remove(&self.id);
        for (index, name) in [(&mut registry.by_key, &self.key), (&mut registry.by_tenant, &self.tenant)] {
            if let Some(ids) = index.get_mut(name) {
                ids.retain(|id| *id != self.id);
                if ids.is_empty() {
                    index.remove(name);
                }
            }
        }
    }
}

/// What a WebSocket's handshake asked, kept to judge it again: its path and the headers the
/// pipeline reads. It holds a credential, so it is never printed.
pub(super) struct Handshaken {
    path: String,
    headers: HeaderMap,
}

impl Handshaken {
    pub(super) fn of(path: &str, headers: &HeaderMap, sockets: &OpenSockets) -> Self {
        let mut kept = HeaderMap::new();
        for name in &sockets.judged {
            for value in headers.get_all(name) {
                kept.append(name.clone(), value.clone());
            }
        }
        Self { path: path.to_owned(), headers: kept }
    }
}

/// A judgement of an open WebSocket.
pub(super) enum Verdict {
    /// Still allowed; the clock may end it at this instant (a key's or a session's expiry).
    Allowed(Option<Millis>),
    /// The handshake would be refused now, with this code.
    Refused(ErrorCode),
    /// The store could not be asked: judge again shortly, keep the connection meanwhile.
    Undecided,
}

impl OpenSockets {
    pub(crate) fn new(config: &Config, pipeline: Arc<Pipeline>) -> Arc<Self> {
        let max = config.proxy.max_websockets;
        Arc::new(Self {
            slots: Arc::new(Semaphore::new(max as usize)),
            max,
            max_per_key: config.proxy.max_websockets_per_key as usize,
            pipeline,
            judged: config
                .keys
                .headers
                .iter()
                .map(|h| h.name().clone())
                .chain(JUDGED_HEADERS.map(http::HeaderName::from_static))
                .collect(),
            routes: RwLock::new(Arc::from(Vec::new())),
            registry: Mutex::default(),
        })
    }

    /// Puts `routes` in force, and has every open WebSocket judged against them.
    pub(crate) fn set_routes(&self, routes: Vec<Route>) {
        *self.routes.write().unwrap_or_else(|p| p.into_inner()) = routes.into();
        self.everything_changed();
    }

    /// The places of upgraded connections, for shutdown's drain to wait for.
    pub(crate) fn drain_handle(&self) -> AlsoDrain {
        AlsoDrain { permits: Arc::clone(&self.slots), count: self.max }
    }

    /// A place for a WebSocket of `record`'s key, or 429 when the instance or the key has
    /// none left.
    pub(super) fn reserve(self: &Arc<Self>, record: &KeyWithTenant) -> Result<Slot, ApiError> {
        let full = |cap: &'static str, what: &str| {
            crate::metrics::websocket_refused(cap);
            ApiError::new(ErrorCode::RateLimited, format!("too many open WebSockets {what}; retry shortly"))
                .with_retry_after(1)
        };
        let mut registry = self.registry();
        if registry.by_key.get(&record.key.id).map_or(0, Vec::len) >= self.max_per_key {
            return Err(full("key", "for this API key"));
        }
        let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() else {
            return Err(full("instance", "on this instance"));
        };
        let id = registry.next_id;
        registry.next_id += 1;
        let recheck = Arc::new(Notify::new());
        registry.open.insert(id, Arc::clone(&recheck));
        registry.by_key.entry(record.key.id.clone()).or_default().push(id);
        registry.by_tenant.entry(record.tenant.id.clone()).or_default().push(id);
        Ok(Slot {
            sockets: Arc::clone(self),
            id,
            key: record.key.id.clone(),
            tenant: record.tenant.id.clone(),
            recheck,
            _permit: permit,
        })
    }

    /// Judges `handshake` again, as a read of its path under the routes in force.
    pub(super) async fn judge(&self, handshake: &Handshaken) -> Verdict {
        let routes = Arc::clone(&self.routes.read().unwrap_or_else(|p| p.into_inner()));
        let policy = match resolve(&routes, &handshake.path, &Method::GET) {
            Resolution::Found(index) => &routes[index].policy,
            Resolution::NotFound => return Verdict::Refused(ErrorCode::NotFound),
            Resolution::MethodNotAllowed => return Verdict::Refused(ErrorCode::MethodNotAllowed),
            Resolution::CaseMismatch | Resolution::SuffixMismatch => {
                return Verdict::Refused(ErrorCode::ValidationError);
            }
        };
        match self.pipeline.recheck(&Method::GET, &handshake.headers, policy).await {
            Ok(ends) => Verdict::Allowed(ends),
            Err(error) if matches!(error.code, ErrorCode::ServiceUnavailable | ErrorCode::InternalError) => {
                Verdict::Undecided
            }
            Err(error) => Verdict::Refused(error.code),
        }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl FeedListener for OpenSockets {
    fn key_changed(&self, key_id: &str) {
        let registry = self.registry();
        registry.wake(registry.by_key.get(key_id));
    }

    fn tenant_changed(&self, tenant_id: &str) {
        let registry = self.registry();
        registry.wake(registry.by_tenant.get(tenant_id));
    }

    fn everything_changed(&self) {
        for recheck in self.registry().open.values() {
            recheck.notify_one();
        }
    }
}
