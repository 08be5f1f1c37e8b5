//! Zero-touch enrollment: one-time bootstrap tokens, and the certificate a router gets for one.
//!
//! A store box is shipped (or a store's k3s node is provisioned) with only the operator's CA
//! certificate and a token from `signpostctl bootstrap create --router NAME`. The router dials
//! the config stream with server-authenticated TLS (it pins `ca.pem`, it has no certificate
//! yet), calls `Distribution/Bootstrap` with its name, the token and a certificate signing
//! request for a key it generated itself, and gets a certificate naming it. From then on it
//! speaks mutual TLS like any router. The private key never leaves the router.
//!
//! # Tokens
//!
//! A token is `<id>.<secret>`: six characters naming the token, a dot, 32 characters of secret
//! (`[a-z0-9]`, about 165 bits). The operator keeps only the secret's SHA-256 (the secret is
//! random, so a fast hash is enough), with the router it was minted for and its expiry. It is
//! good for one successful Bootstrap: redeeming marks it used, atomically, before the
//! certificate is issued — of two routers presenting the same token at once, one wins and the
//! other is told the token was used. A token that is unknown, was used, has expired or was
//! minted for another router is refused with `PERMISSION_DENIED` and a sentence saying which;
//! the router prints it and does not retry (a token does not get better by waiting). An
//! unknown id and a wrong secret get the same answer, so that a guess learns nothing.
//!
//! `Bootstrap` is the one call a client without a certificate may make, and the distribution
//! port faces the stores' internet. Guessing is hopeless (165 bits), but each well-formed
//! attempt costs a token lookup — an API server read in cluster mode — so lookups are limited
//! to [`CHECKS_PER_SECOND`] (burst [`CHECK_BURST`]) per operator replica; past that an attempt
//! is told `UNAVAILABLE` and the router retries after its backoff.
//!
//! Where tokens live is a [`TokenStore`]: files in the operator's TLS directory in local mode
//! ([`LocalTokens`]), Secrets next to the Router in cluster mode
//! (`crate::controller::tokens`).
//!
//! # Certificates
//!
//! The certificate says what [`CertificateAuthority::issue_router_for_request`] says for any
//! router (URI SAN `spiffe://signpost/router/<name>`, client auth only), bound to the Router's
//! uid in cluster mode, valid for [`BOOTSTRAP_CERT_DAYS`]. The request's own names and usages
//! are ignored; its signature must verify (proof that the caller holds the key).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use signpost_proto::v1::{BootstrapRequest, BootstrapResponse};

use crate::identity::{CertificateAuthority, CertificateRequest, Validity, write_atomic};

/// How long a certificate obtained with a bootstrap token is valid. There is no renewal over
/// the stream yet: a router is bootstrapped again (a new token) within this time.
pub const BOOTSTRAP_CERT_DAYS: u32 = 365;
/// The default lifetime of a token.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
/// Token lookups per second one replica makes for `Bootstrap` calls, and the burst above it.
/// Enrollments are rare (a store is installed); a flood of guesses must not become a flood of
/// API server reads.
pub const CHECKS_PER_SECOND: u64 = 10;
pub const CHECK_BURST: u64 = 50;
/// The longest a token may live: long enough for a box to be shipped and installed.
pub const MAX_TTL: Duration = Duration::from_secs(365 * 86_400);

const ID_LEN: usize = 6;
const SECRET_LEN: usize = 32;
const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A bootstrap token, `<id>.<secret>`. Its `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    id: String,
    secret: String,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({}.…)", self.id)
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.id, self.secret)
    }
}

impl Token {
    /// A new random token.
    pub fn generate() -> Result<Self, String> {
        Ok(Self {
            id: random_text(ID_LEN)?,
            secret: random_text(SECRET_LEN)?,
        })
    }

    /// Reads `<id>.<secret>` (surrounding whitespace ignored, so a file with a newline works).
    pub fn parse(text: &str) -> Result<Self, Refusal> {
        let text = text.trim();
        let malformed = || {
            Refusal::Malformed(format!(
                "a bootstrap token is {ID_LEN} characters, a dot and {SECRET_LEN} characters \
                 (a-z, 0-9), as `signpostctl bootstrap create` prints it; this one has {} \
                 characters",
                text.chars().count()
            ))
        };
        let (id, secret) = text.split_once('.').ok_or_else(malformed)?;
        let ok = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| ALPHABET.contains(&b));
        if !ok(id, ID_LEN) || !ok(secret, SECRET_LEN) {
            return Err(malformed());
        }
        Ok(Self {
            id: id.to_string(),
            secret: secret.to_string(),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn secret_sha256(&self) -> [u8; 32] {
        Sha256::digest(self.secret.as_bytes()).into()
    }
}

fn random_text(len: usize) -> Result<String, String> {
    let rng = ring::rand::SystemRandom::new();
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        ring::rand::SecureRandom::fill(&rng, &mut buf)
            .map_err(|_| "the system random generator failed".to_string())?;
        // 252 = 7 * 36: bytes above it are dropped so that every character is equally likely.
        for &b in buf.iter().filter(|&&b| b < 252) {
            if out.len() == len {
                break;
            }
            out.push(char::from(ALPHABET[usize::from(b % 36)]));
        }
    }
    Ok(out)
}

/// What the operator keeps about a token: never the secret, only its hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    /// The router the token was minted for.
    pub router: String,
    pub secret_sha256: [u8; 32],
    pub expires: SystemTime,
    pub used: Option<TokenUse>,
}

/// When and by whom a token was redeemed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenUse {
    pub at: SystemTime,
    /// The peer address it came from.
    pub by: String,
}

impl TokenRecord {
    /// A new token for `router`, valid for `ttl` from `now`.
    pub fn mint(router: &str, ttl: Duration, now: SystemTime) -> Result<(Token, Self), String> {
        crate::identity::check_router_name(router).map_err(|e| e.to_string())?;
        if ttl > MAX_TTL {
            return Err(format!(
                "a bootstrap token lives at most {} days; mint one closer to the install",
                MAX_TTL.as_secs() / 86_400
            ));
        }
        let expires = now
            .checked_add(ttl)
            .ok_or_else(|| "the token's expiry is past the end of time".to_string())?;
        let token = Token::generate()?;
        let record = Self {
            id: token.id.clone(),
            router: router.to_string(),
            secret_sha256: token.secret_sha256(),
            expires,
            used: None,
        };
        Ok((token, record))
    }
}

/// Why a Bootstrap was refused. The text is what both sides print.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    Malformed(String),
    /// No token of that id, or a wrong secret: the same answer for both.
    Unknown {
        id: String,
    },
    OtherRouter {
        id: String,
        minted_for: String,
        asked: String,
    },
    Used {
        id: String,
        at: SystemTime,
        by: String,
    },
    Expired {
        id: String,
        at: SystemTime,
    },
    /// Cluster mode: no Router object of that name in the watched namespaces.
    NoSuchRouter {
        router: String,
    },
    /// The certificate signing request is unusable.
    BadRequest(String),
    /// The operator could not look the token up or record its use (the API server is down);
    /// the router retries.
    Unavailable(String),
}

/// RFC 3339, for messages and records.
pub fn rfc3339(t: SystemTime) -> String {
    Timestamp::try_from(t).map_or_else(|_| format!("{t:?}"), |t| t.to_string())
}

/// Reads RFC 3339.
pub fn parse_rfc3339(text: &str) -> Result<SystemTime, String> {
    text.trim()
        .parse::<Timestamp>()
        .map(SystemTime::from)
        .map_err(|e| format!("`{text}` is not an RFC 3339 time: {e}"))
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mint = "mint a new one with `signpostctl bootstrap create --router NAME`";
        match self {
            Self::Malformed(why) => write!(f, "malformed bootstrap token: {why}"),
            Self::Unknown { id } => write!(
                f,
                "bootstrap token `{id}.…` is unknown to this operator (or its secret is wrong): \
                 {mint}"
            ),
            Self::OtherRouter {
                id,
                minted_for,
                asked,
            } => write!(
                f,
                "bootstrap token `{id}.…` was minted for router `{minted_for}`, not `{asked}`: \
                 start the router with --router {minted_for}, or {mint}"
            ),
            Self::Used { id, at, by } => write!(
                f,
                "bootstrap token `{id}.…` was already used at {} by {by}: a token enrolls one \
                 router once; {mint}",
                rfc3339(*at)
            ),
            Self::Expired { id, at } => write!(
                f,
                "bootstrap token `{id}.…` expired at {}: {mint}",
                rfc3339(*at)
            ),
            Self::NoSuchRouter { router } => write!(
                f,
                "there is no Router `{router}` in the namespaces this operator watches: create \
                 the Router object first"
            ),
            Self::BadRequest(why) => write!(f, "{why}"),
            Self::Unavailable(why) => write!(f, "the operator cannot check tokens now: {why}"),
        }
    }
}

impl std::error::Error for Refusal {}

impl Refusal {
    /// The gRPC status the router receives.
    pub fn status(&self) -> tonic::Status {
        let text = self.to_string();
        match self {
            Self::Malformed(_) | Self::BadRequest(_) => tonic::Status::invalid_argument(text),
            Self::Unknown { .. }
            | Self::OtherRouter { .. }
            | Self::Used { .. }
            | Self::Expired { .. } => tonic::Status::permission_denied(text),
            Self::NoSuchRouter { .. } => tonic::Status::failed_precondition(text),
            Self::Unavailable(_) => tonic::Status::unavailable(text),
        }
    }
}

/// Whether `token` may enroll `router` now. Pure: stores look the record up, call this, and
/// record the use when it says yes.
pub fn check(
    record: Option<&TokenRecord>,
    token: &Token,
    router: &str,
    now: SystemTime,
) -> Result<(), Refusal> {
    let unknown = || Refusal::Unknown {
        id: token.id.clone(),
    };
    let record = record.ok_or_else(unknown)?;
    if record.id != token.id || !constant_time_eq(&record.secret_sha256, &token.secret_sha256()) {
        return Err(unknown());
    }
    // Only the holder of the secret gets past this point: the rest may say more.
    if record.router != router {
        return Err(Refusal::OtherRouter {
            id: token.id.clone(),
            minted_for: record.router.clone(),
            asked: router.to_string(),
        });
    }
    if let Some(used) = &record.used {
        return Err(Refusal::Used {
            id: token.id.clone(),
            at: used.at,
            by: used.by.clone(),
        });
    }
    if now >= record.expires {
        return Err(Refusal::Expired {
            id: token.id.clone(),
            at: record.expires,
        });
    }
    Ok(())
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What a successful redemption tells the issuer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Redeemed {
    /// The Router object's uid, to bind the certificate to (cluster mode).
    pub uid: Option<String>,
}

/// Where tokens are kept.
#[tonic::async_trait]
pub trait TokenStore: Send + Sync + 'static {
    /// Checks `token` for `router` ([`check`]) and, when it passes, records its use by `by` —
    /// atomically: of two concurrent redemptions of one token, exactly one succeeds.
    async fn redeem(
        &self,
        router: &str,
        token: &Token,
        by: &str,
        now: SystemTime,
    ) -> Result<Redeemed, Refusal>;
}

/// Local mode's tokens: one JSON file per token in `TLS_DIR/bootstrap/<id>.json` (0600).
pub struct LocalTokens {
    dir: PathBuf,
    /// Redemptions one at a time: check-then-write must not interleave.
    lock: tokio::sync::Mutex<()>,
}

/// The file format of [`LocalTokens`].
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenFile {
    router: String,
    secret_sha256: String,
    expires: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    used_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    used_by: Option<String>,
}

impl LocalTokens {
    /// Tokens under `tls_dir/bootstrap/`.
    pub fn new(tls_dir: &Path) -> Self {
        Self {
            dir: tls_dir.join("bootstrap"),
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Mints a token for `router` and writes its record; returns the token (shown once).
    pub fn mint(&self, router: &str, ttl: Duration, now: SystemTime) -> Result<Token, String> {
        let (token, record) = TokenRecord::mint(router, ttl, now)?;
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        self.write(&record)?;
        Ok(token)
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    fn read(&self, id: &str) -> Result<Option<TokenRecord>, String> {
        let path = self.path(id);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let bad = |e: String| format!("{}: not a bootstrap token record: {e}", path.display());
        let file: TokenFile = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let mut secret_sha256 = [0u8; 32];
        hex::decode_to_slice(&file.secret_sha256, &mut secret_sha256)
            .map_err(|e| bad(format!("secretSha256: {e}")))?;
        let used = match file.used_at {
            Some(at) => Some(TokenUse {
                at: parse_rfc3339(&at).map_err(bad)?,
                by: file.used_by.unwrap_or_default(),
            }),
            None => None,
        };
        Ok(Some(TokenRecord {
            id: id.to_string(),
            router: file.router,
            secret_sha256,
            expires: parse_rfc3339(&file.expires).map_err(bad)?,
            used,
        }))
    }

    fn write(&self, record: &TokenRecord) -> Result<(), String> {
        let file = TokenFile {
            router: record.router.clone(),
            secret_sha256: hex::encode(record.secret_sha256),
            expires: rfc3339(record.expires),
            used_at: record.used.as_ref().map(|u| rfc3339(u.at)),
            used_by: record.used.as_ref().map(|u| u.by.clone()),
        };
        let text = serde_json::to_string_pretty(&file).map_err(|e| e.to_string())?;
        write_atomic(&self.path(&record.id), text.as_bytes(), 0o600).map_err(|e| e.to_string())
    }
}

#[tonic::async_trait]
impl TokenStore for LocalTokens {
    async fn redeem(
        &self,
        router: &str,
        token: &Token,
        by: &str,
        now: SystemTime,
    ) -> Result<Redeemed, Refusal> {
        let _one_at_a_time = self.lock.lock().await;
        let record = self.read(token.id()).map_err(Refusal::Unavailable)?;
        check(record.as_ref(), token, router, now)?;
        let Some(mut record) = record else {
            return Err(Refusal::Unknown {
                id: token.id.clone(),
            });
        };
        record.used = Some(TokenUse {
            at: now,
            by: by.to_string(),
        });
        self.write(&record).map_err(Refusal::Unavailable)?;
        Ok(Redeemed::default())
    }
}

/// The operator's side of `Distribution/Bootstrap`: a CA to issue with and the tokens.
pub struct Enrollment {
    ca: Arc<CertificateAuthority>,
    tokens: Arc<dyn TokenStore>,
    /// Token lookups: a bucket of [`CHECK_BURST`] refilled at [`CHECKS_PER_SECOND`], on a
    /// clock that starts at `new`.
    checks: Mutex<(Instant, signpost_cnf::qos::TokenBucket)>,
}

impl fmt::Debug for Enrollment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Enrollment").finish_non_exhaustive()
    }
}

impl Enrollment {
    pub fn new(ca: Arc<CertificateAuthority>, tokens: Arc<dyn TokenStore>) -> Self {
        let bucket = signpost_cnf::qos::TokenBucket::new(CHECKS_PER_SECOND, CHECK_BURST);
        Self {
            ca,
            tokens,
            checks: Mutex::new((Instant::now(), bucket)),
        }
    }

    /// Whether a token may be looked up at `at` ([`CHECKS_PER_SECOND`]).
    fn admit(&self, at: Instant) -> Result<(), Refusal> {
        let Ok(mut checks) = self.checks.lock() else {
            return Ok(());
        };
        let (base, bucket) = &mut *checks;
        if bucket.try_take(signpost_cnf::qos::nanos_since(*base, at), 1) {
            return Ok(());
        }
        Err(Refusal::Unavailable(format!(
            "more than {CHECKS_PER_SECOND} bootstrap attempts per second reach this operator; \
             retry in a moment"
        )))
    }

    /// Checks the request, redeems its token and issues the router's certificate. The CSR is
    /// checked before the token is spent, so a broken request does not burn a token. `now`
    /// is the wall clock (token expiry), `at` the monotonic one (the lookup limit).
    pub async fn enroll(
        &self,
        request: &BootstrapRequest,
        peer: &str,
        now: SystemTime,
        at: Instant,
    ) -> Result<BootstrapResponse, Refusal> {
        crate::identity::check_router_name(&request.router)
            .map_err(|e| Refusal::BadRequest(e.to_string()))?;
        let token = Token::parse(&request.token)?;
        let csr = CertificateRequest::from_pem(&request.csr_pem)
            .map_err(|e| Refusal::BadRequest(e.to_string()))?;
        self.admit(at)?;
        let redeemed = self
            .tokens
            .redeem(&request.router, &token, peer, now)
            .await?;
        let certificate_pem = self
            .ca
            .issue_router_for_request(
                &request.router,
                redeemed.uid.as_deref(),
                &csr,
                Validity::days_from_now(BOOTSTRAP_CERT_DAYS),
            )
            .map_err(|e| Refusal::BadRequest(e.to_string()))?;
        tracing::info!(
            router = request.router.as_str(),
            token = token.id(),
            peer,
            "router enrolled with a bootstrap token"
        );
        Ok(BootstrapResponse {
            certificate_pem,
            ca_pem: self.ca.cert_pem().to_string(),
        })
    }
}

/// `24h`, `30m`, `7d`, `90s`: a token's time to live.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bad = || format!("`{text}` is not a duration: use a number and s, m, h or d, as in 24h");
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60).ok_or_else(bad)?,
        "h" => n.checked_mul(3600).ok_or_else(bad)?,
        "d" => n.checked_mul(86_400).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    if secs == 0 {
        return Err(format!("`{text}`: a token must live longer than 0 seconds"));
    }
    if secs > MAX_TTL.as_secs() {
        return Err(format!(
            "`{text}`: a bootstrap token lives at most {}d (a token is for one install, soon)",
            MAX_TTL.as_secs() / 86_400
        ));
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    #[test]
    fn tokens_are_random_parse_back_and_hide_their_secret() {
        let a = Token::generate().expect("token");
        let b = Token::generate().expect("token");
        assert_ne!(a, b);
        let text = a.to_string();
        assert_eq!(text.len(), ID_LEN + 1 + SECRET_LEN);
        assert_eq!(Token::parse(&format!("{text}\n")).ok(), Some(a.clone()));
        assert!(!format!("{a:?}").contains(&a.secret));
        for bad in [
            "",
            "abc",
            "abcdef.short",
            "ABCDEF.0123456789abcdef0123456789abcdef",
        ] {
            let err = Token::parse(bad)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.starts_with("malformed bootstrap token"), "{bad}: {err}");
        }
    }

    #[test]
    fn check_refuses_unknown_wrong_secret_other_router_used_and_expired_tokens() {
        let (token, record) =
            TokenRecord::mint("store-1", Duration::from_secs(60), at(0)).expect("mint");
        assert_eq!(check(Some(&record), &token, "store-1", at(59)), Ok(()));

        let unknown = check(None, &token, "store-1", at(1)).err();
        assert!(matches!(unknown, Some(Refusal::Unknown { .. })));
        let other = Token::generate().expect("token");
        let guessed = Token {
            id: token.id.clone(),
            secret: other.secret,
        };
        assert_eq!(
            check(Some(&record), &guessed, "store-1", at(1)).err(),
            unknown,
            "a wrong secret looks like an unknown token"
        );
        let err = check(Some(&record), &token, "store-2", at(1)).err();
        assert!(
            err.as_ref().is_some_and(|e| e
                .to_string()
                .contains("minted for router `store-1`, not `store-2`")),
            "{err:?}"
        );
        let expired = check(Some(&record), &token, "store-1", at(60)).err();
        assert!(
            matches!(expired, Some(Refusal::Expired { .. })),
            "{expired:?}"
        );
        let used = TokenRecord {
            used: Some(TokenUse {
                at: at(5),
                by: "192.0.2.7:4000".into(),
            }),
            ..record
        };
        let err = check(Some(&used), &token, "store-1", at(6))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("already used at 2027-01-15T08:00:05Z by 192.0.2.7:4000"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_local_token_is_redeemed_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalTokens::new(dir.path());
        let token = store
            .mint("store-1", Duration::from_secs(3600), SystemTime::now())
            .expect("mint");
        let file =
            std::fs::read_to_string(dir.path().join(format!("bootstrap/{}.json", token.id())))
                .expect("record");
        assert!(!file.contains(&token.secret), "the secret is never stored");
        let now = SystemTime::now();
        assert_eq!(
            store.redeem("store-1", &token, "peer-a", now).await,
            Ok(Redeemed::default())
        );
        let again = store.redeem("store-1", &token, "peer-b", now).await.err();
        assert!(
            matches!(&again, Some(Refusal::Used { by, .. }) if by == "peer-a"),
            "{again:?}"
        );
    }

    #[tokio::test]
    async fn token_lookups_are_limited_so_that_guesses_cannot_flood_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ca, _) = CertificateAuthority::generate().expect("CA");
        let enrollment = Enrollment::new(Arc::new(ca), Arc::new(LocalTokens::new(dir.path())));
        let key = rcgen::KeyPair::generate().expect("key");
        let csr = rcgen::CertificateParams::new(vec!["store-1".to_string()])
            .and_then(|p| p.serialize_request(&key))
            .and_then(|r| r.pem())
            .expect("a CSR");
        let guess = |n: usize| BootstrapRequest {
            router: "store-1".into(),
            token: format!("{:06}.{}", n % 1_000_000, "a".repeat(SECRET_LEN)),
            csr_pem: csr.clone(),
            software_version: String::new(),
        };
        let t0 = Instant::now();
        let now = SystemTime::now();
        for n in 0..CHECK_BURST as usize {
            let r = enrollment.enroll(&guess(n), "peer", now, t0).await;
            assert!(matches!(r, Err(Refusal::Unknown { .. })), "{n}: {r:?}");
        }
        let r = enrollment.enroll(&guess(99), "peer", now, t0).await;
        assert!(
            matches!(&r, Err(Refusal::Unavailable(why)) if why.contains("per second")),
            "past the burst: {r:?}"
        );
        assert_eq!(
            r.err().map(|e| e.status().code()),
            Some(tonic::Code::Unavailable),
            "the router retries after its backoff"
        );
        // A second later, CHECKS_PER_SECOND more are looked up.
        let t1 = t0 + Duration::from_secs(1);
        for n in 0..CHECKS_PER_SECOND as usize {
            let r = enrollment.enroll(&guess(n), "peer", now, t1).await;
            assert!(matches!(r, Err(Refusal::Unknown { .. })), "{n}: {r:?}");
        }
        let r = enrollment.enroll(&guess(0), "peer", now, t1).await;
        assert!(matches!(r, Err(Refusal::Unavailable(_))), "{r:?}");
    }

    #[test]
    fn ttls_read_like_people_write_them() {
        assert_eq!(parse_ttl("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(604_800)));
        assert!(parse_ttl("24").is_err());
        assert!(parse_ttl("h").is_err());
        assert!(parse_ttl("0m").is_err());
        assert!(parse_ttl("1w").is_err());
        assert_eq!(parse_ttl("365d"), Ok(MAX_TTL));
        // Past the cap (or past what a time can hold) is refused, not a record no one can read.
        for long in ["366d", "99999999999999d", "18446744073709551615s"] {
            let err = parse_ttl(long).err().unwrap_or_default();
            assert!(err.contains("at most 365d"), "{long}: {err}");
        }
        let err = TokenRecord::mint("store-1", Duration::from_secs(u64::MAX), at(0))
            .err()
            .unwrap_or_default();
        assert!(err.contains("at most 365 days"), "{err}");
    }
}
