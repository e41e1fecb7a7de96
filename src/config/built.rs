//! What this build of keygate can do (its Cargo features): a setting that asks for a part left
//! out is refused at load, naming the setting and the feature, rather than ignored.

use super::{Config, ConfigError, LimiterUrl, StoreUrl};

impl Config {
    /// Each setting that needs a feature this build lacks fails, the first one found.
    pub(super) fn check_built(&self) -> Result<(), ConfigError> {
        let server = &self.server;
        let needs = [
            ("store.url", "postgres", matches!(self.store.url, StoreUrl::Postgres(_))),
            ("rate_limit.url", "redis", matches!(self.rate_limit.url, LimiterUrl::Redis(_))),
            ("rate_limit.url", "tls", self.rate_limit.url.is_tls()),
            ("rate_limit.ca_file", "tls", self.rate_limit.ca_file.is_some()),
            ("routes", "gateway", !self.routes.is_empty()),
            ("server.decision_listen", "gateway", server.decision_listen.is_some()),
            ("server.tls_cert_file", "gateway", server.tls_cert_file.is_some() || server.tls_key_file.is_some()),
            (
                "server.admin_tls_cert_file",
                "gateway",
                server.admin_tls_cert_file.is_some() || server.admin_tls_key_file.is_some(),
            ),
            ("proxy.ca_file", "gateway", self.proxy.ca_file.is_some()),
        ];
        for (setting, feature, asked) in needs {
            if asked && !built_with(feature) {
                return Err(ConfigError(format!(
                    "{setting}: needs keygate built with its `{feature}` feature (this build has: {})",
                    built_features()
                )));
            }
        }
        Ok(())
    }
}

/// The features a setting can need, and whether this build has each.
const FEATURES: [(&str, bool); 4] = [
    ("postgres", cfg!(feature = "postgres")),
    ("redis", cfg!(feature = "redis")),
    ("tls", cfg!(feature = "tls")),
    ("gateway", cfg!(feature = "gateway")),
];

/// Whether this build has `feature`.
fn built_with(feature: &str) -> bool {
    FEATURES.iter().any(|&(name, built)| name == feature && built)
}

/// This build's features, for messages: "none" for the layer alone.
fn built_features() -> String {
    let built: Vec<&str> = FEATURES.iter().filter(|(_, built)| *built).map(|(name, _)| *name).collect();
    if built.is_empty() { "none".to_owned() } else { built.join(", ") }
}
