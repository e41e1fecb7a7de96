//! A listener's certificate, re-read when its files change, and the acceptor that answers with
//! it (HTTP/2 and HTTP/1.1 by ALPN).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::tls::certified_key;

/// A listener's certificate (`server.tls_cert_file` and `server.tls_key_file`, or the admin
/// listener's `server.admin_tls_…`), read again when either file changes ([`ReloadingCertificate::reload_if_changed`], called every
/// second while keygate serves): certificates are renewed without a restart.
#[derive(Debug)]
pub struct ReloadingCertificate {
    /// The settings' common start (`server.tls`, `server.admin_tls`), for messages.
    setting: &'static str,
    cert_file: PathBuf,
    key_file: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' modification times when last read.
    read_at: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

impl ReloadingCertificate {
    /// `setting`: the settings' common start, `server.tls` or `server.admin_tls`.
    pub fn load(setting: &'static str, cert_file: &Path, key_file: &Path) -> Result<Self, String> {
        let read_at = (modified(cert_file), modified(key_file));
        let certified = certified_key(setting, cert_file, key_file)?;
        Ok(Self {
            setting,
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            current: RwLock::new(Arc::new(certified)),
            read_at: Mutex::new(read_at),
        })
    }

    /// Reads the files again if either changed. A pair that does not load (a renewal half
    /// written, a key that does not match) is logged and the current certificate stays.
    pub fn reload_if_changed(&self) {
        let now = (modified(&self.cert_file), modified(&self.key_file));
        let mut read_at = self.read_at.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if *read_at == now {
            return;
        }
        match certified_key(self.setting, &self.cert_file, &self.key_file) {
            Ok(certified) => {
                *self.current.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(certified);
                *read_at = now;
                tracing::info!(cert_file = %self.cert_file.display(), "TLS certificate reloaded");
            }
            Err(error) => tracing::warn!(%error, "TLS certificate not reloaded: the current one stays"),
        }
    }

    /// A TLS acceptor that answers with the current certificate, offering HTTP/2 and
    /// HTTP/1.1 by ALPN.
    pub fn acceptor(self: &Arc<Self>) -> Result<tokio_rustls::TlsAcceptor, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| format!("TLS: {error}"))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }

    /// Checks the files every second until `stopped` turns true.
    pub fn spawn_watcher(self: &Arc<Self>, mut stopped: tokio::sync::watch::Receiver<bool>) {
        let certificate = Arc::clone(self);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = every.tick() => certificate.reload_if_changed(),
                    _ = stopped.wait_for(|stop| *stop) => return,
                }
            }
        });
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner())))
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
