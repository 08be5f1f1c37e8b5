//! Who is who on the config stream: the operator's own certificate authority, the certificates
//! it issues to routers and to itself, and reading a router's name back out of a certificate.
//!
//! # Trust model
//!
//! One CA per operator installation. Its certificate (`ca.pem`) is the only root either side
//! trusts; its key (`ca.key`) never leaves the operator's directory. A router's certificate names
//! the router twice in its subject alternative names — URI `spiffe://signpost/router/<name>`
//! (authoritative) and DNS `<name>` — and carries the `clientAuth` extended key usage, so it
//! cannot pose as the operator. The operator's certificate carries `serverAuth`, the DNS names
//! and addresses routers dial, and URI `spiffe://signpost/operator`. In cluster mode the
//! operator also binds the certificates it issues to the Router object's uid (subject
//! `OU=router-uid=<uid>`, see [`RouterIdentity`]), so that deleting a Router revokes them.
//! Routers that enroll with a bootstrap token send a certificate request for a key of their own
//! ([`CertificateRequest`], [`crate::bootstrap`]); only its public key is used.
//!
//! Certificates from cert-manager work the same way: a `Certificate` with
//! `uris: [spiffe://signpost/router/<name>]`, `dnsNames: [<name>]`, `usages: [client auth]`,
//! issued by a CA `Issuer` whose `ca.crt` is the `ca.pem` the operator trusts. The router reads
//! the Secret's files; it does not care who wrote them.
//!
//! # Files
//!
//! | directory | files | written by |
//! |---|---|---|
//! | CA (`signpostctl certs init --dir`, the operator's `--tls-dir`) | `ca.pem`, `ca.key` (0600) | [`CertificateAuthority::load_or_create`] |
//! | an identity (a router's, the operator's) | `ca.pem`, `tls.crt`, `tls.key` (0600) | [`Issued::write`] — the layout of a cert-manager Secret |

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;
use x509_parser::extensions::GeneralName;

/// The URI SAN prefix that names a router: `spiffe://signpost/router/<name>`.
pub const ROUTER_URI_PREFIX: &str = "spiffe://signpost/router/";
/// In a bound router certificate's subject, `OU=router-uid=<uid>` (see [`RouterIdentity`]).
pub const ROUTER_UID_PREFIX: &str = "router-uid=";
/// The URI SAN of the operator's server certificate.
pub const OPERATOR_URI: &str = "spiffe://signpost/operator";

/// File names, shared with the router (which reads `ca.pem`, `tls.crt`, `tls.key`).
pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca.key";
pub const CERT_FILE: &str = "tls.crt";
pub const KEY_FILE: &str = "tls.key";

/// How long the CA is valid when created.
const CA_DAYS: u64 = 3650;
/// Certificates are valid from a little before they are issued, so that a router whose clock
/// is slightly behind the operator's accepts a fresh one.
const BACKDATE: Duration = Duration::from_secs(300);

/// What went wrong with certificates or their files. The text says what to fix.
#[derive(Debug)]
pub enum IdentityError {
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A CA directory with one of `ca.pem`/`ca.key` but not the other.
    HalfCa {
        dir: PathBuf,
        present: &'static str,
        missing: &'static str,
    },
    Pem {
        path: PathBuf,
        error: String,
    },
    Certificate(String),
    /// A router name that cannot be a certificate's DNS name.
    BadName {
        name: String,
        why: &'static str,
    },
    /// A certificate that names no router, or several.
    NoRouterIdentity(String),
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, error } => write!(f, "{}: {error}", path.display()),
            Self::HalfCa {
                dir,
                present,
                missing,
            } => write!(
                f,
                "{} has {present} but no {missing}: restore {missing}, or remove {present} to \
                 create a new CA (every router certificate must then be issued again)",
                dir.display()
            ),
            Self::Pem { path, error } => write!(f, "{}: {error}", path.display()),
            Self::Certificate(e) => write!(f, "certificate: {e}"),
            Self::BadName { name, why } => write!(
                f,
                "router name `{name}` cannot name a certificate: {why} (use the Router object's \
                 metadata.name: lowercase letters, digits, '-' and '.')"
            ),
            Self::NoRouterIdentity(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for IdentityError {}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |error| IdentityError::Io {
        path: path.to_path_buf(),
        error,
    }
}

fn rc(e: rcgen::Error) -> IdentityError {
    IdentityError::Certificate(e.to_string())
}

/// When a certificate is valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Validity {
    /// From a few minutes ago (clock skew) to `days` from now.
    pub fn days_from_now(days: u32) -> Self {
        let now = SystemTime::now();
        Self {
            not_before: now.checked_sub(BACKDATE).unwrap_or(now),
            not_after: now + Duration::from_secs(u64::from(days) * 86_400),
        }
    }
}

/// A certificate, its private key and the CA certificate that verifies it: what a router or the
/// operator needs to speak mutual TLS.
#[derive(Clone)]
pub struct Issued {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key stays out of logs.
        f.debug_struct("Issued")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

impl Issued {
    /// Writes `ca.pem`, `tls.crt` and `tls.key` (0600) into `dir`, creating it. Each file is
    /// replaced atomically, so a reader never sees half a key.
    pub fn write(&self, dir: &Path) -> Result<(), IdentityError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        write_atomic(&dir.join(CA_CERT_FILE), self.ca_pem.as_bytes(), 0o644)?;
        write_atomic(&dir.join(CERT_FILE), self.cert_pem.as_bytes(), 0o644)?;
        write_atomic(&dir.join(KEY_FILE), self.key_pem.as_bytes(), 0o600)?;
        Ok(())
    }
}

/// The operator's certificate authority.
pub struct CertificateAuthority {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Loads the CA from `dir/ca.pem` and `dir/ca.key`, or creates a new self-signed one there
    /// when neither exists. Returns whether it was created.
    pub fn load_or_create(dir: &Path) -> Result<(Self, bool), IdentityError> {
        let cert = dir.join(CA_CERT_FILE);
        let key = dir.join(CA_KEY_FILE);
        match (cert.exists(), key.exists()) {
            (true, true) => Ok((Self::load(dir)?, false)),
            (false, false) => Ok((Self::create(dir)?, true)),
            (true, false) => Err(IdentityError::HalfCa {
                dir: dir.to_path_buf(),
                present: CA_CERT_FILE,
                missing: CA_KEY_FILE,
            }),
            (false, true) => Err(IdentityError::HalfCa {
                dir: dir.to_path_buf(),
                present: CA_KEY_FILE,
                missing: CA_CERT_FILE,
            }),
        }
    }

    /// Loads an existing CA.
    pub fn load(dir: &Path) -> Result<Self, IdentityError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let cert_pem = fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
        let key_pem = fs::read_to_string(&key_path).map_err(io(&key_path))?;
        Self::from_pem(&cert_pem, &key_pem, &cert_path, &key_path)
    }

    /// A CA from its certificate and key in PEM; `cert_origin` and `key_origin` name where they
    /// came from in errors (a file, or a Secret's key).
    pub fn from_pem(
        cert_pem: &str,
        key_pem: &str,
        cert_origin: &Path,
        key_origin: &Path,
    ) -> Result<Self, IdentityError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| IdentityError::Pem {
            path: key_origin.to_path_buf(),
            error: format!("not a private key in PEM: {e}"),
        })?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(|e| IdentityError::Pem {
            path: cert_origin.to_path_buf(),
            error: format!("not a CA certificate in PEM: {e}"),
        })?;
        Ok(Self {
            cert_pem: cert_pem.to_string(),
            issuer,
        })
    }

    /// Creates a new CA in `dir` (created 0700 if absent) and writes `ca.pem` and `ca.key`.
    pub fn create(dir: &Path) -> Result<Self, IdentityError> {
        create_private_dir(dir)?;
        let (ca, key_pem) = Self::generate()?;
        // The key first: a crash between the two leaves a key without a certificate, which
        // `load_or_create` reports instead of silently making a second CA.
        write_atomic(&dir.join(CA_KEY_FILE), key_pem.as_bytes(), 0o600)?;
        write_atomic(&dir.join(CA_CERT_FILE), ca.cert_pem.as_bytes(), 0o644)?;
        Ok(ca)
    }

    /// A new self-signed CA, in memory; returns it with its key in PEM (for the caller to keep:
    /// a directory, or the operator's CA Secret in cluster mode).
    pub fn generate() -> Result<(Self, String), IdentityError> {
        let key = KeyPair::generate().map_err(rc)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Signpost");
        // A random suffix makes each installation's CA name its own: a certificate from
        // another installation then fails as "unknown issuer", not as a bad signature, and
        // people can tell CAs apart.
        let mut id = [0u8; 4];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id)
            .map_err(|_| IdentityError::Certificate("the system random generator failed".into()))?;
        params.distinguished_name.push(
            DnType::CommonName,
            format!("Signpost operator CA {}", hex::encode(id)),
        );
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let validity = Validity::days_from_now(CA_DAYS as u32);
        params.not_before = OffsetDateTime::from(validity.not_before);
        params.not_after = OffsetDateTime::from(validity.not_after);
        let cert = params.self_signed(&key).map_err(rc)?;
        let key_pem = key.serialize_pem();
        let ca = Self {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        };
        Ok((ca, key_pem))
    }

    /// The CA certificate in PEM: what routers and the operator trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A client certificate naming router `name`.
    pub fn issue_router(&self, name: &str, validity: Validity) -> Result<Issued, IdentityError> {
        self.issue_router_bound(name, None, validity)
    }

    /// A client certificate naming router `name`, bound to the Router object with `uid` when
    /// given (see [`RouterIdentity::uid`]); with a new key.
    pub fn issue_router_bound(
        &self,
        name: &str,
        uid: Option<&str>,
        validity: Validity,
    ) -> Result<Issued, IdentityError> {
        self.sign(router_params(name, uid, validity)?)
    }

    /// A client certificate naming router `name` for the key of a checked certificate request.
    /// Only the request's public key is used: what the certificate says is the operator's to
    /// decide. Returns the certificate in PEM.
    pub fn issue_router_for_request(
        &self,
        name: &str,
        uid: Option<&str>,
        request: &CertificateRequest,
        validity: Validity,
    ) -> Result<String, IdentityError> {
        let mut csr = request.0.clone();
        csr.params = router_params(name, uid, validity)?;
        Ok(csr.signed_by(&self.issuer).map_err(rc)?.pem())
    }

    /// The operator's server certificate, valid for the DNS names and addresses routers dial.
    pub fn issue_operator(
        &self,
        names: &[String],
        validity: Validity,
    ) -> Result<Issued, IdentityError> {
        let mut params = leaf("signpost-operator", validity);
        params.subject_alt_names = vec![SanType::URI(OPERATOR_URI.try_into().map_err(rc)?)];
        for n in names {
            params.subject_alt_names.push(match n.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => {
                    SanType::DnsName(n.as_str().try_into().map_err(|e| {
                        IdentityError::Certificate(format!("server name `{n}`: {e}"))
                    })?)
                }
            });
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> Result<Issued, IdentityError> {
        let key = KeyPair::generate().map_err(rc)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(rc)?;
        Ok(Issued {
            ca_pem: self.cert_pem.clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// A PKCS#10 certificate signing request whose signature verified: its sender holds the key.
#[derive(Clone, Debug)]
pub struct CertificateRequest(rcgen::CertificateSigningRequestParams);

impl CertificateRequest {
    pub fn from_pem(pem: &str) -> Result<Self, IdentityError> {
        rcgen::CertificateSigningRequestParams::from_pem(pem)
            .map(Self)
            .map_err(|e| {
                IdentityError::Certificate(format!(
                    "the certificate signing request is not a valid PKCS#10 request in PEM, \
                     signed by its key: {e}"
                ))
            })
    }
}

/// What a router certificate says: its name twice (URI and DNS SAN), client auth only, and the
/// Router object's uid in the subject when bound.
fn router_params(
    name: &str,
    uid: Option<&str>,
    validity: Validity,
) -> Result<CertificateParams, IdentityError> {
    check_router_name(name)?;
    let mut params = leaf(name, validity);
    if let Some(uid) = uid {
        params.distinguished_name.push(
            DnType::OrganizationalUnitName,
            format!("{ROUTER_UID_PREFIX}{uid}"),
        );
    }
    params.subject_alt_names = vec![
        SanType::URI(router_uri(name).try_into().map_err(rc)?),
        SanType::DnsName(name.try_into().map_err(rc)?),
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    Ok(params)
}

fn leaf(common_name: &str, validity: Validity) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Signpost");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params.not_before = OffsetDateTime::from(validity.not_before);
    params.not_after = OffsetDateTime::from(validity.not_after);
    params
}

/// Makes sure `dir` holds what the operator's server needs (`ca.pem`, `tls.crt`, `tls.key`).
/// When `tls.crt` or `tls.key` is missing, loads (or creates) the CA in `dir` and issues the
/// operator's certificate for `names`; existing files — yours, or cert-manager's — are left
/// alone. Returns a sentence on what was created, if anything.
pub fn ensure_operator_identity(
    dir: &Path,
    names: &[String],
) -> Result<Option<String>, IdentityError> {
    if dir.join(CERT_FILE).exists() && dir.join(KEY_FILE).exists() {
        if !dir.join(CA_CERT_FILE).exists() {
            let path = dir.join(CA_CERT_FILE);
            return Err(IdentityError::Io {
                path,
                error: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "missing: the CA that router certificates chain to is needed to verify them",
                ),
            });
        }
        return Ok(None);
    }
    let (ca, created) = CertificateAuthority::load_or_create(dir)?;
    ca.issue_operator(names, Validity::days_from_now(365))?
        .write(dir)?;
    Ok(Some(format!(
        "{}the operator's certificate for {} in {}",
        if created {
            "created a new CA and "
        } else {
            "issued "
        },
        names.join(", "),
        dir.display()
    )))
}

/// `spiffe://signpost/router/<name>`.
pub fn router_uri(name: &str) -> String {
    format!("{ROUTER_URI_PREFIX}{name}")
}

/// A router name must be usable as a DNS name and a URI path segment: a Kubernetes object
/// name (RFC 1123 subdomain) is.
pub fn check_router_name(name: &str) -> Result<(), IdentityError> {
    let bad = |why| {
        Err(IdentityError::BadName {
            name: name.to_string(),
            why,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > 253 {
        return bad("it is longer than 253 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return bad("it has a character other than a-z, 0-9, '-' and '.'");
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return bad("each dot-separated part must have 1 to 63 characters");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("a dot-separated part starts or ends with '-'");
        }
    }
    Ok(())
}

/// The router a certificate (DER) names, from its `spiffe://signpost/router/<name>` URI SAN.
/// Exactly one such URI is required; the DNS SAN is not used, since the operator's own
/// certificate has DNS names too.
pub fn router_name(cert_der: &[u8]) -> Result<String, IdentityError> {
    router_identity(cert_der).map(|id| id.name)
}

/// Who a router certificate names, and which Router object it was issued for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouterIdentity {
    pub name: String,
    /// The `metadata.uid` of the Router object the certificate was issued for, from the
    /// subject's `OU=router-uid=<uid>`. The operator issues bound certificates in cluster mode
    /// and refuses one whose Router was deleted (a Router created again under the same name has
    /// a new uid): deleting a Router revokes the identities issued for it. Certificates issued
    /// elsewhere (`signpostctl certs issue`, cert-manager) are unbound; their CA revokes them.
    pub uid: Option<String>,
    pub not_after: SystemTime,
}

/// [`router_name`], plus the binding and expiry.
pub fn router_identity(cert_der: &[u8]) -> Result<RouterIdentity, IdentityError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).map_err(|e| {
        IdentityError::NoRouterIdentity(format!("the client certificate cannot be parsed: {e}"))
    })?;
    let san = cert.subject_alternative_name().map_err(|e| {
        IdentityError::NoRouterIdentity(format!(
            "the client certificate's subject alternative names cannot be read: {e}"
        ))
    })?;
    let mut names = san
        .iter()
        .flat_map(|ext| ext.value.general_names.iter())
        .filter_map(|g| match g {
            GeneralName::URI(uri) => uri.strip_prefix(ROUTER_URI_PREFIX),
            _ => None,
        });
    let subject = cert.subject().to_string();
    match (names.next(), names.next()) {
        (Some(name), None) => {
            check_router_name(name)?;
            let uid = cert
                .subject()
                .iter_organizational_unit()
                .filter_map(|ou| ou.as_str().ok())
                .find_map(|ou| ou.strip_prefix(ROUTER_UID_PREFIX))
                .map(str::to_string);
            let not_after = cert.validity().not_after.timestamp();
            let not_after =
                SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(not_after).unwrap_or(0));
            Ok(RouterIdentity {
                name: name.to_string(),
                uid,
                not_after,
            })
        }
        (None, _) => Err(IdentityError::NoRouterIdentity(format!(
            "the client certificate ({subject}) has no URI SAN {ROUTER_URI_PREFIX}<router>: \
             issue it with `signpostctl certs issue`, or add that URI to the cert-manager \
             Certificate's `uris`"
        ))),
        (Some(a), Some(b)) => Err(IdentityError::NoRouterIdentity(format!(
            "the client certificate ({subject}) names several routers (`{a}`, `{b}`, ...): a \
             certificate must name exactly one"
        ))),
    }
}

/// Creates `dir` (and parents) with mode 0700 when it does not exist.
fn create_private_dir(dir: &Path) -> Result<(), IdentityError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir))
}

/// Writes `bytes` to `path` through a temporary file in the same directory (created with
/// `mode`), fsync, rename: readers see the old file or the new one, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), IdentityError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp"));
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io(path))?;
    if let Ok(d) = fs::File::open(dir) {
        // Makes the rename itself durable; not every filesystem supports it, and the data is
        // already safe, so a failure here is not an error.
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    use super::*;

    fn der(pem: &str) -> Vec<u8> {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .map(|c| c.to_vec())
            .unwrap_or_default()
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0)
    }

    #[test]
    fn a_ca_is_created_once_then_loaded_and_its_key_is_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_dir = dir.path().join("ca");
        let (first, created) = CertificateAuthority::load_or_create(&ca_dir).expect("create");
        assert!(created);
        assert_eq!(mode(&ca_dir.join(CA_KEY_FILE)), 0o600);
        assert_eq!(mode(&ca_dir), 0o700);
        let (second, created) = CertificateAuthority::load_or_create(&ca_dir).expect("load");
        assert!(!created);
        assert_eq!(first.cert_pem(), second.cert_pem());
        // A certificate issued by the loaded CA names the same issuer as the original.
        let a = first
            .issue_router("store-1", Validity::days_from_now(1))
            .expect("issue");
        let b = second
            .issue_router("store-1", Validity::days_from_now(1))
            .expect("issue");
        let issuer = |pem: &str| {
            let d = der(pem);
            x509_parser::parse_x509_certificate(&d)
                .map(|(_, c)| c.issuer().to_string())
                .unwrap_or_default()
        };
        assert_eq!(issuer(&a.cert_pem), issuer(&b.cert_pem));
        assert!(issuer(&a.cert_pem).contains("Signpost operator CA"));
    }

    #[test]
    fn half_a_ca_is_an_error_not_a_new_ca() {
        let dir = tempfile::tempdir().expect("tempdir");
        CertificateAuthority::create(dir.path()).expect("create");
        fs::remove_file(dir.path().join(CA_KEY_FILE)).expect("rm");
        let err = CertificateAuthority::load_or_create(dir.path())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("has ca.pem but no ca.key"), "{err}");
    }

    #[test]
    fn a_router_certificate_names_its_router_and_is_written_like_a_secret() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = CertificateAuthority::create(&dir.path().join("ca")).expect("ca");
        let issued = ca
            .issue_router("store-0142", Validity::days_from_now(30))
            .expect("issue");
        assert_eq!(
            router_name(&der(&issued.cert_pem)).ok().as_deref(),
            Some("store-0142")
        );
        let out = dir.path().join("out");
        issued.write(&out).expect("write");
        assert_eq!(mode(&out.join(KEY_FILE)), 0o600);
        assert_eq!(
            fs::read_to_string(out.join(CA_CERT_FILE)).ok().as_deref(),
            Some(ca.cert_pem())
        );
        let d = der(&issued.cert_pem);
        let (_, cert) = x509_parser::parse_x509_certificate(&d).expect("parse");
        let sans: Vec<String> = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|e| {
                e.value
                    .general_names
                    .iter()
                    .map(|g| g.to_string())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(
            sans,
            [
                "URI(spiffe://signpost/router/store-0142)",
                "DNSName(store-0142)"
            ]
        );
        let eku = cert.extended_key_usage().ok().flatten().map(|e| e.value);
        assert!(eku.is_some_and(|e| e.client_auth && !e.server_auth));
    }

    #[test]
    fn the_operator_certificate_names_no_router() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = CertificateAuthority::create(dir.path()).expect("ca");
        let issued = ca
            .issue_operator(
                &["localhost".into(), "127.0.0.1".into()],
                Validity::days_from_now(1),
            )
            .expect("issue");
        let err = router_name(&der(&issued.cert_pem))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("has no URI SAN spiffe://signpost/router/"),
            "{err}"
        );
    }

    #[test]
    fn router_names_that_cannot_be_dns_names_are_refused() {
        for (name, why) in [
            ("", "empty"),
            ("Store-1", "character"),
            ("store_1", "character"),
            ("-store", "starts or ends"),
            ("a..b", "1 to 63"),
        ] {
            let err = check_router_name(name)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(why), "{name}: {err}");
        }
        assert!(check_router_name("store-0142.eu").is_ok());
    }

    #[test]
    fn a_csr_gets_a_certificate_for_its_key_saying_what_the_operator_decides() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = CertificateAuthority::create(dir.path()).expect("ca");
        let key = KeyPair::generate().expect("key");
        // The request asks for more than it may have: another name and server auth.
        let mut asked = CertificateParams::new(vec!["hub-1".to_string()]).expect("params");
        asked.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let csr = asked
            .serialize_request(&key)
            .expect("csr")
            .pem()
            .expect("pem");
        let request = CertificateRequest::from_pem(&csr).expect("a valid request");
        let cert = ca
            .issue_router_for_request(
                "store-7",
                Some("uid-1"),
                &request,
                Validity::days_from_now(2),
            )
            .expect("issue");
        let id = router_identity(&der(&cert)).expect("identity");
        assert_eq!(id.name, "store-7");
        assert_eq!(id.uid.as_deref(), Some("uid-1"));
        let d = der(&cert);
        let (_, parsed) = x509_parser::parse_x509_certificate(&d).expect("parse");
        assert_eq!(
            &*parsed.public_key().subject_public_key.data,
            key.public_key_raw(),
            "the certificate is for the request's key"
        );
        let eku = parsed.extended_key_usage().ok().flatten().map(|e| e.value);
        assert!(eku.is_some_and(|e| e.client_auth && !e.server_auth));

        let err = CertificateRequest::from_pem(
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("not a valid PKCS#10 request"), "{err}");
        // Unbound certificates have no uid.
        let plain = ca
            .issue_router("store-7", Validity::days_from_now(1))
            .expect("issue");
        assert_eq!(
            router_identity(&der(&plain.cert_pem))
                .ok()
                .and_then(|i| i.uid),
            None
        );
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        let err = router_name(b"\x30\x03\x02\x01")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("cannot be parsed"), "{err}");
    }
}
