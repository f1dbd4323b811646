//! TLS for the node's HTTP sides, with rustls on the ring provider only (no aws-lc).
//!
//! [`TlsFiles`] reads the `[tls]` PEM files once, naming the field that is wrong; from them come
//! the peer protocol's mutual TLS (handed to the engine), the API servers' rustls config and
//! clients' configs (system roots plus an extra CA, with an optional client certificate).

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use super::config::TlsConfig;
use super::error::NodeError;

/// The crypto provider every TLS config of the node uses.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process-wide rustls provider, for libraries that ask rustls for the default
/// (tonic's server side does). Harmless when a provider is already installed.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The `[tls]` files, read and parsed.
#[derive(Clone)]
pub(crate) struct TlsFiles {
    pub(crate) cert_pem: Vec<u8>,
    pub(crate) key_pem: Vec<u8>,
    pub(crate) ca_pem: Option<Vec<u8>>,
    certs: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
    ca: Vec<CertificateDer<'static>>,
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFiles").field("certs", &self.certs.len()).finish_non_exhaustive()
    }
}

impl TlsFiles {
    /// Reads and parses the files of `[tls]`; errors name the field.
    pub(crate) fn load(config: &TlsConfig) -> Result<Self, NodeError> {
        let cert_pem = read("tls.cert", &config.cert)?;
        let certs = certificates("tls.cert", &config.cert, &cert_pem)?;
        let key_pem = read("tls.key", &config.key)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|err| {
            NodeError::config(
                "tls.key",
                format!("no PEM private key in {}: {err}", config.key.display()),
            )
        })?;
        let (ca_pem, ca) = match &config.ca {
            Some(path) => {
                let pem = read("tls.ca", path)?;
                let ca = certificates("tls.ca", path, &pem)?;
                (Some(pem), ca)
            }
            None => (None, Vec::new()),
        };
        let files = TlsFiles { cert_pem, key_pem, ca_pem, certs, key: Arc::new(key), ca };
        // Fails here, naming the field, if the key does not match the certificate.
        files.server_config(false).map_err(|err| NodeError::config("tls.key", err))?;
        Ok(files)
    }

    /// A fingerprint of the CA certificates (their DER, in sorted order), `None` without a CA.
    pub(crate) fn ca_fingerprint(&self) -> Option<u64> {
        let mut ders: Vec<&[u8]> = self.ca.iter().map(|c| c.as_ref()).collect();
        ders.sort_unstable();
        (!ders.is_empty()).then(|| xxhash_rust::xxh3::xxh3_64(&ders.concat()))
    }

    /// A server config with this node's certificate; with `require_client_cert`, clients
    /// must present a certificate the CA signed.
    pub(crate) fn server_config(
        &self,
        require_client_cert: bool,
    ) -> Result<Arc<ServerConfig>, String> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = if require_client_cert {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(&self.ca)?), provider())
                    .build()
                    .map_err(|e| format!("client certificate verifier: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder
            .with_single_cert(self.certs.clone(), self.key.clone_key())
            .map_err(|e| format!("the key does not fit the certificate: {e}"))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// A client config trusting the system's roots and `extra_ca_pem`, presenting `identity`
/// (certificate chain and key, PEM) when given.
pub(crate) fn client_config(
    extra_ca_pem: Option<&[u8]>,
    identity: Option<(&[u8], &[u8])>,
) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(pem) = extra_ca_pem {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("CA certificate: {e}"))?;
        if certs.is_empty() {
            return Err("no PEM certificate in the CA file".to_owned());
        }
        for cert in certs {
            roots.add(cert).map_err(|e| format!("CA certificate: {e}"))?;
        }
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some((cert_pem, key_pem)) => {
            let certs = CertificateDer::pem_slice_iter(cert_pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("client certificate: {e}"))?;
            let key =
                PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("client key: {e}"))?;
            builder.with_client_auth_cert(certs, key).map_err(|e| format!("client identity: {e}"))
        }
    }
}

fn roots(ca: &[CertificateDer<'static>]) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in ca {
        roots.add(cert.clone()).map_err(|e| format!("CA certificate: {e}"))?;
    }
    Ok(roots)
}

fn read(field: &str, path: &Path) -> Result<Vec<u8>, NodeError> {
    std::fs::read(path)
        .map_err(|err| NodeError::config(field, format!("cannot read {}: {err}", path.display())))
}

fn certificates(
    field: &str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, NodeError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| NodeError::config(field, format!("bad PEM in {}: {err}", path.display())))?;
    if certs.is_empty() {
        return Err(NodeError::config(field, format!("no PEM certificate in {}", path.display())));
    }
    Ok(certs)
}
