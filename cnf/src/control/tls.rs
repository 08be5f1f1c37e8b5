//! The router's TLS identity, read from a directory laid out like a cert-manager Secret:
//! `ca.pem` (the CA the operator's certificate must chain to), `tls.crt` and `tls.key` (this
//! router's certificate, naming it, and its key). Read anew on every connection attempt, so a
//! renewed certificate is used without a restart.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

pub const CA_CERT_FILE: &str = "ca.pem";
pub const CERT_FILE: &str = "tls.crt";
pub const KEY_FILE: &str = "tls.key";

/// The three files, checked to hold what they should.
#[derive(Clone)]
pub struct TlsFiles {
    ca_pem: Vec<u8>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFiles").finish_non_exhaustive()
    }
}

impl TlsFiles {
    pub fn read(dir: &Path) -> Result<Self, String> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path)
                .map(|b| (path.display().to_string(), b))
                .map_err(|e| format!("{}: {e}", path.display()))
        };
        let (ca_path, ca_pem) = read(CA_CERT_FILE)?;
        let (cert_path, cert_pem) = read(CERT_FILE)?;
        let (key_path, key_pem) = read(KEY_FILE)?;
        let certs = |path: &str, pem: &[u8]| -> Result<(), String> {
            let n = CertificateDer::pem_slice_iter(pem)
                .try_fold(0usize, |n, c| c.map(|_| n + 1))
                .map_err(|e| format!("{path}: not a PEM certificate: {e}"))?;
            if n == 0 {
                return Err(format!("{path}: holds no certificate"));
            }
            Ok(())
        };
        certs(&ca_path, &ca_pem)?;
        certs(&cert_path, &cert_pem)?;
        PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| format!("{key_path}: holds no PEM private key: {e}"))?;
        Ok(Self {
            ca_pem,
            cert_pem,
            key_pem,
        })
    }

    /// Checks this router's own certificate as the operator will: it must chain to `ca.pem`
    /// (the operator's CA), be valid now and be meant for client authentication. With TLS 1.3
    /// an operator refusing the certificate often shows up here only as a connection closed
    /// at its start; this says why.
    pub fn verify_own(&self) -> Result<(), String> {
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&self.ca_pem).flatten() {
            roots
                .add(c)
                .map_err(|e| format!("{CA_CERT_FILE} is not a usable CA certificate: {e}"))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| format!("{CA_CERT_FILE} cannot verify certificates: {e}"))?;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&self.cert_pem)
            .flatten()
            .collect();
        let Some((own, intermediates)) = chain.split_first() else {
            return Err(format!("{CERT_FILE} holds no certificate"));
        };
        verifier
            .verify_client_cert(own, intermediates, UnixTime::now())
            .map(|_| ())
            .map_err(|e| {
                format!(
                    "this router's certificate ({CERT_FILE}) would be refused by an operator \
                     whose CA is {CA_CERT_FILE}: {e}"
                )
            })
    }

    /// Client TLS for tonic: trust only `ca.pem`, present `tls.crt`, expect the operator's
    /// certificate to be valid for `server_name`.
    pub fn client_config(&self, server_name: &str) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .domain_name(server_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_wrong_files_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = TlsFiles::read(dir.path()).err().unwrap_or_default();
        assert!(err.contains("ca.pem"), "{err}");
        std::fs::write(dir.path().join(CA_CERT_FILE), "hello\n").expect("write");
        std::fs::write(dir.path().join(CERT_FILE), "").expect("write");
        std::fs::write(dir.path().join(KEY_FILE), "").expect("write");
        let err = TlsFiles::read(dir.path()).err().unwrap_or_default();
        assert!(err.contains("ca.pem: holds no certificate"), "{err}");
    }
}
