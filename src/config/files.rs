//! The files a configuration names, read once at load so that a bad one stops start-up (and
//! `keygate config check`) naming its setting: listener certificates with their keys, and the
//! authorities trusted for upstreams and Redis. The edge reads the listeners' again when they
//! change.

use std::path::Path;

use super::{Config, ConfigError};

impl Config {
    /// Each named file reads, and each listener's key fits its certificate.
    pub(super) fn check_files(&self) -> Result<(), ConfigError> {
        for (setting, cert, key) in self.server.listener_certificates() {
            if let (Some(cert), Some(key)) = (cert, key) {
                crate::tls::certified_key(setting, Path::new(cert), Path::new(key)).map_err(ConfigError)?;
            }
        }
        let authorities = [("rate_limit.ca_file", &self.rate_limit.ca_file), ("proxy.ca_file", &self.proxy.ca_file)];
        for (setting, file) in authorities {
            if let Some(file) = file {
                crate::tls::read_certificates(Path::new(file)).map_err(|e| ConfigError(format!("{setting}: {e}")))?;
            }
        }
        Ok(())
    }
}
