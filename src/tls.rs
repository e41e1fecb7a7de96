//! TLS, with rustls on aws-lc-rs (the crypto backend jsonwebtoken already uses: one in the
//! tree): the client side, for `https://` upstreams (the system's roots plus `proxy.ca_file`,
//! certificates always verified, SNI the upstream's host) and the CLI. A listener's certificate
//! is the edge's: [`crate::edge::tls`].

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore};

/// The PEM certificates in `path`; at least one.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("{} is not PEM: {error}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certificates)
}

/// The client side of TLS to upstreams. Made once per configuration, shared by every serving
/// thread's connection pool.
pub fn upstream_client_config(ca_file: Option<&str>) -> Result<Arc<ClientConfig>, String> {
    client_config(ca_file, "proxy.ca_file")
}

/// The client side of TLS: the system's roots, plus the PEM certificates of `ca_file` (named
/// `setting` in messages: `proxy.ca_file`, `--admin-ca-file`); certificates always verified.
pub fn client_config(ca_file: Option<&str>, setting: &str) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    let system = rustls_native_certs::load_native_certs();
    let (added, _unparsable) = roots.add_parsable_certificates(system.certs);
    if let Some(file) = ca_file {
        for certificate in read_certificates(Path::new(file)).map_err(|e| format!("{setting}: {e}"))? {
            roots.add(certificate).map_err(|error| format!("{setting}: {file}: {error}"))?;
        }
    } else if added == 0 {
        tracing::warn!("no system root certificates found: https needs {setting}");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS: {error}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The certificate chain in `cert_file` with the private key in `key_file`, which must match.
pub fn certified_key(setting: &str, cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, String> {
    let chain = read_certificates(cert_file).map_err(|e| format!("{setting}_cert_file: {e}"))?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|error| format!("{setting}_key_file: no PEM private key in {}: {error}", key_file.display()))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    CertifiedKey::from_der(chain, key, &provider)
        .map_err(|error| format!("{setting}_key_file: {} does not fit the certificate: {error}", key_file.display()))
}
