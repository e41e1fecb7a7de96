//! The environment overlay: `KEYGATE_<SECTION>_<KEY>` variables laid over the file's table
//! before it is read, so a variable and a file entry are checked alike.

use super::ConfigError;

#[derive(Clone, Copy)]
pub(super) enum Kind {
    Text,
    Integer,
    Boolean,
}

/// The scalars that `KEYGATE_<SECTION>_<KEY>` may override.
pub(super) const ENV_KEYS: &[(&str, &str, Kind)] = &[
    ("server", "listen", Kind::Text),
    ("server", "admin_listen", Kind::Text),
    ("server", "admin_token", Kind::Text),
    ("server", "decision_listen", Kind::Text),
    ("server", "decision_token", Kind::Text),
    ("server", "header_read_timeout_ms", Kind::Integer),
    ("server", "max_connections", Kind::Integer),
    ("server", "shutdown_delay_ms", Kind::Integer),
    ("server", "shutdown_grace_ms", Kind::Integer),
    ("server", "max_header_bytes", Kind::Integer),
    ("server", "public_host", Kind::Text),
    ("server", "threads", Kind::Integer),
    ("server", "tls_cert_file", Kind::Text),
    ("server", "tls_key_file", Kind::Text),
    ("server", "admin_tls_cert_file", Kind::Text),
    ("server", "admin_tls_key_file", Kind::Text),
    ("store", "url", Kind::Text),
    ("rate_limit", "url", Kind::Text),
    ("rate_limit", "limit", Kind::Integer),
    ("rate_limit", "window_seconds", Kind::Integer),
    ("rate_limit", "on_backend_error", Kind::Text),
    ("rate_limit", "timeout_ms", Kind::Integer),
    ("rate_limit", "failed_auth_limit", Kind::Integer),
    ("rate_limit", "failed_auth_window_seconds", Kind::Integer),
    ("rate_limit", "ietf_headers", Kind::Boolean),
    ("rate_limit", "ca_file", Kind::Text),
    ("sessions", "algorithm", Kind::Text),
    ("sessions", "ttl_seconds", Kind::Integer),
    ("sessions", "issuer", Kind::Text),
    ("keys", "prefix", Kind::Text),
    ("admin", "audit_retention_days", Kind::Integer),
    ("usage", "flush_seconds", Kind::Integer),
    ("usage", "retention_days", Kind::Integer),
    ("proxy", "connect_timeout_ms", Kind::Integer),
    ("proxy", "response_timeout_ms", Kind::Integer),
    ("proxy", "max_body_bytes", Kind::Integer),
    ("proxy", "ca_file", Kind::Text),
    ("proxy", "websocket_idle_timeout_ms", Kind::Integer),
    ("proxy", "websocket_max_lifetime_ms", Kind::Integer),
    ("proxy", "max_websockets", Kind::Integer),
    ("proxy", "max_websockets_per_key", Kind::Integer),
];

/// `KEYGATE_` variables that are not settings: read by the CLI itself.
pub const ENV_NON_SETTINGS: &[&str] = &["KEYGATE_CONFIG", "KEYGATE_LOG", "KEYGATE_ADMIN_URL", "KEYGATE_ADMIN_CA_FILE"];

/// The variable that sets `section.key`.
pub fn env_name(section: &str, key: &str) -> String {
    format!("KEYGATE_{}_{}", section.to_ascii_uppercase(), key.to_ascii_uppercase())
}

/// Lays the `KEYGATE_*` settings of `env` over `table`; an unknown one is an error.
pub(super) fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (name, value) in env {
        if !name.starts_with("KEYGATE_") || ENV_NON_SETTINGS.contains(&name.as_str()) {
            continue;
        }
        let Some(&(section, key, kind)) = ENV_KEYS.iter().find(|(s, k, _)| env_name(s, k) == name) else {
            return Err(ConfigError(format!("{name}: unknown setting")));
        };
        let value = match kind {
            Kind::Text => toml::Value::String(value),
            Kind::Integer => toml::Value::Integer(
                value.trim().parse().map_err(|_| ConfigError(format!("{name}: expected a whole number")))?,
            ),
            Kind::Boolean => toml::Value::Boolean(match value.trim() {
                "true" => true,
                "false" => false,
                _ => return Err(ConfigError(format!("{name}: expected true or false"))),
            }),
        };
        let section_table = table
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| ConfigError(format!("{section}: expected a table")))?;
        section_table.insert(key.to_owned(), value);
    }
    Ok(())
}
