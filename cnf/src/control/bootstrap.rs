//! Enrollment with a one-time bootstrap token: how a router that has only the operator's CA
//! certificate and a token gets its own certificate (`signpost-router --bootstrap-token-file`).
//!
//! The router generates a key (ECDSA P-256) that never leaves it, dials the operator with
//! server-authenticated TLS — trusting only the pinned `ca.pem`, presenting no certificate —
//! and calls `Distribution/Bootstrap` with its name, the token and a certificate signing
//! request. The operator answers with the router's certificate, and this module writes
//! `tls.key` (0600), `tls.crt` and `ca.pem` into the identity directory, key first, each file
//! replaced atomically. From then on the config stream uses that directory as its TLS
//! directory; a router that has an identity there does not enroll again.
//!
//! An operator that says no — a used, expired, unknown token, a token for another router,
//! bootstrap switched off — is not asked again: [`ensure_identity`] returns its words as an
//! error and the router exits, since a token does not get better by waiting. Anything else (the
//! operator unreachable, no Router object yet) is retried with [`Backoff`].

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use signpost_proto::v1::BootstrapRequest;
use signpost_proto::v1::distribution_client::DistributionClient;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

use super::client::{Backoff, chain, explain_connect, random_unit};
use super::lkg::write_atomic;
use super::tls::{CA_CERT_FILE, CERT_FILE, KEY_FILE};

/// What enrollment needs.
#[derive(Clone, Debug)]
pub struct BootstrapSettings {
    pub router: String,
    /// `https://HOST:PORT`.
    pub operator: String,
    /// The name the operator's certificate must be valid for.
    pub server_name: String,
    /// The operator's CA certificate: the only root trusted while enrolling.
    pub ca_file: PathBuf,
    /// Holds the token, `<id>.<secret>`.
    pub token_file: PathBuf,
    /// Where the identity is written (and looked for).
    pub identity_dir: PathBuf,
    pub backoff: Backoff,
}

/// Why an attempt failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BootstrapError {
    /// The operator refused; asking again will not help.
    Refused(String),
    /// It did not get that far (network, no Router yet, files); worth another try.
    Failed(String),
}

impl std::fmt::Display for BootstrapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(e) | Self::Failed(e) => f.write_str(e),
        }
    }
}

/// Whether `dir` already holds an identity (a key and a certificate).
pub fn has_identity(dir: &Path) -> bool {
    dir.join(CERT_FILE).is_file() && dir.join(KEY_FILE).is_file()
}

/// Enrolls unless the identity directory already has an identity, retrying what is worth
/// retrying, until `shutdown` (then `Ok(false)`). `Ok(true)`: the identity is there.
pub async fn ensure_identity(
    settings: &BootstrapSettings,
    shutdown: impl Future<Output = ()>,
) -> Result<bool, String> {
    if has_identity(&settings.identity_dir) {
        return Ok(true);
    }
    tokio::pin!(shutdown);
    let mut attempt = 0u32;
    loop {
        let result = tokio::select! {
            () = &mut shutdown => return Ok(false),
            r = enroll(settings) => r,
        };
        match result {
            Ok(()) => {
                tracing::info!(
                    router = settings.router.as_str(),
                    dir = %settings.identity_dir.display(),
                    "enrolled with the bootstrap token; the identity is kept in this directory"
                );
                return Ok(true);
            }
            Err(BootstrapError::Refused(e)) => return Err(e),
            Err(BootstrapError::Failed(e)) => {
                let delay = settings.backoff.delay(attempt, random_unit());
                attempt = attempt.saturating_add(1);
                tracing::warn!(
                    router = settings.router.as_str(),
                    "bootstrap: {e}; retrying in {delay:?}"
                );
                tokio::select! {
                    () = &mut shutdown => return Ok(false),
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// One enrollment attempt.
pub async fn enroll(settings: &BootstrapSettings) -> Result<(), BootstrapError> {
    let failed = BootstrapError::Failed;
    let read =
        |path: &Path| std::fs::read(path).map_err(|e| failed(format!("{}: {e}", path.display())));
    let ca_pem = read(&settings.ca_file)?;
    let token = String::from_utf8_lossy(&read(&settings.token_file)?)
        .trim()
        .to_string();
    if token.is_empty() {
        return Err(BootstrapError::Refused(format!(
            "{} is empty: it must hold the token `signpostctl bootstrap create` printed",
            settings.token_file.display()
        )));
    }
    let key = rcgen::KeyPair::generate()
        .map_err(|e| failed(format!("generating this router's key: {e}")))?;
    let csr = rcgen::CertificateParams::new(vec![settings.router.clone()])
        .and_then(|p| p.serialize_request(&key))
        .and_then(|r| r.pem())
        .map_err(|e| {
            BootstrapError::Refused(format!(
                "router name `{}` cannot go into a certificate request: {e}",
                settings.router
            ))
        })?;

    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca_pem))
        .domain_name(&settings.server_name);
    let endpoint = Endpoint::from_shared(settings.operator.clone())
        .map_err(|e| {
            BootstrapError::Refused(format!(
                "operator address `{}`: {}",
                settings.operator,
                chain(&e)
            ))
        })?
        .tls_config(tls)
        .map_err(|e| failed(format!("TLS configuration: {}", chain(&e))))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30));
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| failed(explain_connect(&settings.operator, &e)))?;
    let response = DistributionClient::new(channel)
        .bootstrap(BootstrapRequest {
            router: settings.router.clone(),
            token,
            csr_pem: csr,
            software_version: env!("CARGO_PKG_VERSION").to_string(),
        })
        .await
        .map_err(|status| {
            let text = format!(
                "the operator refused the bootstrap token: {}",
                status.message()
            );
            match status.code() {
                tonic::Code::PermissionDenied
                | tonic::Code::InvalidArgument
                | tonic::Code::Unimplemented => BootstrapError::Refused(text),
                _ => failed(format!(
                    "bootstrap at {}: {:?}: {}",
                    settings.operator,
                    status.code(),
                    status.message()
                )),
            }
        })?
        .into_inner();

    let dir = &settings.identity_dir;
    let write = |name: &str, bytes: &[u8], mode: u32| {
        write_atomic(&dir.join(name), bytes, mode).map_err(failed)
    };
    std::fs::create_dir_all(dir).map_err(|e| failed(format!("{}: {e}", dir.display())))?;
    // The key first: `has_identity` wants both, so a crash in between enrolls again.
    write(KEY_FILE, key.serialize_pem().as_bytes(), 0o600)?;
    write(CA_CERT_FILE, response.ca_pem.as_bytes(), 0o644)?;
    write(CERT_FILE, response.certificate_pem.as_bytes(), 0o644)?;
    Ok(())
}
