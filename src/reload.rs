//! Reloading the configuration without a restart (`kill -HUP`, SPEC §8). What a reload
//! changes: the routes and their upstreams, the `[proxy]` settings, `server.public_host`, the
//! default rate limit, the admin tokens (SPEC §17: a leaked token is rotated without a
//! restart) and the decision token. They are swapped in at once: every serving thread (of the
//! public listener and of the decision listener) gets a new router, the default
//! rate changes in one atomic step, the old admin token stops working, and every open WebSocket
//! is judged against the new routes. A request already running
//! finishes on the router it started with; a kept-alive connection takes the new one at its
//! next request. Every other setting (listeners, store, limiter backend, sessions, key prefix)
//! keeps its running value, and a changed one is named in a warning: it needs a restart.
//!
//! A configuration that does not load is refused before any of this, by [`crate::config`],
//! with the message naming the setting; the running one stays.

use std::sync::{Arc, Mutex};

use crate::admin::tokens::AdminTokens;
use crate::config::Config;
use crate::edge::listener::RouterSet;
use crate::gateway::stack::PublicParts;
use crate::model::RateLimit;

/// Swaps a reloaded configuration into a running keygate.
pub struct Reloader {
    parts: PublicParts,
    routers: Arc<RouterSet>,
    /// The decision listener's routers, when it runs.
    decisions: Option<Arc<RouterSet>>,
    admin_tokens: AdminTokens,
    running: Mutex<Config>,
}

impl Reloader {
    pub(crate) fn new(
        parts: PublicParts,
        routers: Arc<RouterSet>,
        decisions: Option<Arc<RouterSet>>,
        admin_tokens: AdminTokens,
        running: Config,
    ) -> Self {
        Self { parts, routers, decisions, admin_tokens, running: Mutex::new(running) }
    }

    /// Applies what `new` changes of the reloadable settings. Returns the settings it changes
    /// that need a restart, which keep their running value.
    pub fn reload(&self, new: &Config) -> Result<Vec<String>, String> {
        let mut running = self.running.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut effective = running.clone();
        effective.routes = new.routes.clone();
        effective.proxy = new.proxy.clone();
        // The client address is decided once for all that uses it (the failed-authentication
        // limit, the request log, the proxy): its trusted proxies change only with a restart.
        effective.proxy.trusted_proxies = running.proxy.trusted_proxies.clone();
        // The WebSocket caps size what is held for open connections: a restart changes them.
        effective.proxy.max_websockets = running.proxy.max_websockets;
        effective.proxy.max_websockets_per_key = running.proxy.max_websockets_per_key;
        effective.server.public_host = new.server.public_host.clone();
        // With an admin listener running, a new token applies at once (none: no token works);
        // without one, starting it needs a restart.
        if running.has_admin_tokens() {
            effective.server.admin_token = new.server.admin_token.clone();
            effective.admin.tokens = new.admin.tokens.clone();
        }
        // Like the admin tokens: a leaked decision token is rotated without a restart.
        if running.server.decision_listen.is_some() && new.server.decision_listen.is_some() {
            effective.server.decision_token = new.server.decision_token.clone();
        }
        effective.rate_limit.limit = new.rate_limit.limit;
        effective.rate_limit.window_seconds = new.rate_limit.window_seconds;
        let make = self.parts.maker(&effective)?;
        self.routers.replace(make);
        if let Some(decisions) = &self.decisions {
            decisions.replace(|| self.parts.decision_router(&effective));
        }
        self.parts.pipeline.set_default_rate(RateLimit {
            limit: effective.rate_limit.limit,
            window_seconds: effective.rate_limit.window_seconds,
        });
        if running.has_admin_tokens() {
            self.admin_tokens.replace_with(&effective);
            if !effective.has_admin_tokens() {
                tracing::warn!("every admin token removed: the admin listener now refuses every request");
            }
        }
        let needing_restart = differences(&effective, new);
        *running = effective;
        Ok(needing_restart)
    }
}

/// The settings (`section.key`) whose values differ between `a` and `b`.
fn differences(a: &Config, b: &Config) -> Vec<String> {
    let (Ok(toml::Value::Table(a)), Ok(toml::Value::Table(b))) = (toml::Value::try_from(a), toml::Value::try_from(b))
    else {
        return Vec::new();
    };
    let mut changed = Vec::new();
    for (section, a_value) in &a {
        let b_value = b.get(section);
        match (a_value, b_value) {
            (toml::Value::Table(a_table), Some(toml::Value::Table(b_table))) => {
                let keys = a_table.keys().chain(b_table.keys().filter(|key| !a_table.contains_key(*key)));
                for key in keys {
                    if a_table.get(key) != b_table.get(key) {
                        changed.push(format!("{section}.{key}"));
                    }
                }
            }
            (a_value, b_value) if Some(a_value) != b_value => changed.push(section.clone()),
            _ => {}
        }
    }
    changed.sort();
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_each_changed_setting() {
        let a = Config::default();
        let mut b = a.clone();
        assert!(differences(&a, &b).is_empty());
        b.server.max_connections = 5;
        b.store.url = "sqlite://other.db".parse().unwrap();
        b.server.admin_token = Some("a-token-of-16-characters".to_owned());
        assert_eq!(differences(&a, &b), ["server.admin_token", "server.max_connections", "store.url"]);
    }
}
