//! Enrollment with a one-time bootstrap token: how a router that has only the operator's CA
//! certificate and a token gets its own certificate (`signpost-router --bootstrap-token-file`).
//!
//! The router generates a key (ECDSA P-256) that never leaves it, dials the operator with
//! server-authenticated TLS — trusting only the pinned `ca.pem`, presenting no certificate —
//! and calls `Distribution/Bootstrap` with its name, the token and a certificate signing
//! request. The operator answers with the router's certificate, and this module writes
//! `tls.key` (0600), `tls.crt` and `ca.pem` into the identity directory, key first, each file
//! replaced atomically. From then on the config stream uses that directory as its TLS
//! directory; a router that has a usable identity there does not enroll again. An identity whose
//! certificate has expired (or cannot be read) is replaced by enrolling with the token given:
//! certificates bought with a token are not renewed over the stream, so a store router that
//! outlived its certificate comes back with a new token and a restart.
//!
//! An operator that says no — a used, expired, unknown token, a token for another router,
//! bootstrap switched off — is not asked again: [`ensure_identity`] returns its words as an
//! error and the router exits, since a token does not get better by waiting. Anything else (the
//! operator unreachable, no Router object yet) is retried with [`Backoff`].

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

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

/// Whether the identity in `dir` can still be used at `now`: a key and a certificate that has
/// not expired. `Err` says why not.
pub fn usable_identity(dir: &Path, now: SystemTime) -> Result<(), String> {
    if !has_identity(dir) {
        return Err(format!("{} holds no identity yet", dir.display()));
    }
    let path = dir.join(CERT_FILE);
    let pem = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let unreadable = |e: String| format!("{} is not a certificate: {e}", path.display());
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).map_err(|e| unreadable(e.to_string()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&pem.contents)
        .map_err(|e| unreadable(e.to_string()))?;
    let not_after = cert.validity().not_after;
    let unix = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    };
    if not_after.timestamp() <= unix(now) {
        return Err(format!(
            "its certificate {} expired at {not_after}",
            path.display()
        ));
    }
    Ok(())
}

/// Enrolls unless the identity directory already has a usable identity, retrying what is worth
/// retrying, until `shutdown` (then `Ok(false)`). `Ok(true)`: the identity is there.
pub async fn ensure_identity(
    settings: &BootstrapSettings,
    shutdown: impl Future<Output = ()>,
) -> Result<bool, String> {
    match usable_identity(&settings.identity_dir, SystemTime::now()) {
        Ok(()) => return Ok(true),
        Err(why) if has_identity(&settings.identity_dir) => tracing::warn!(
            router = settings.router.as_str(),
            "the identity kept in {} cannot be used ({why}): enrolling again with the bootstrap \
             token",
            settings.identity_dir.display()
        ),
        Err(_) => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a key and a certificate valid from the start of year `from` to that of `until`.
    fn identity(dir: &Path, from: i32, until: i32) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(vec!["store-1".to_string()]).expect("params");
        params.not_before = rcgen::date_time_ymd(from, 1, 1);
        params.not_after = rcgen::date_time_ymd(until, 1, 1);
        let cert = params.self_signed(&key).expect("certificate");
        std::fs::write(dir.join(CERT_FILE), cert.pem()).expect("write");
        std::fs::write(dir.join(KEY_FILE), key.serialize_pem()).expect("write");
    }

    #[test]
    fn an_expired_or_unreadable_identity_is_not_usable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let now = SystemTime::now();
        let err = usable_identity(dir.path(), now).err().unwrap_or_default();
        assert!(err.contains("holds no identity yet"), "{err}");

        identity(dir.path(), 2020, 2999);
        assert_eq!(usable_identity(dir.path(), now), Ok(()));

        identity(dir.path(), 2000, 2001);
        let err = usable_identity(dir.path(), now).err().unwrap_or_default();
        assert!(err.contains("expired at"), "{err}");
        assert!(has_identity(dir.path()), "expired, but there: enroll again");

        std::fs::write(dir.path().join(CERT_FILE), "not a certificate").expect("write");
        let err = usable_identity(dir.path(), now).err().unwrap_or_default();
        assert!(err.contains("is not a certificate"), "{err}");
    }
}
