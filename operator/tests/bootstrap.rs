//! Zero-touch enrollment end to end in one process: the operator's `Distribution` server with
//! local-mode tokens, and the router's enrollment client (`signpost_cnf::control::bootstrap`)
//! over real TCP on 127.0.0.1 and real TLS — server-authenticated while enrolling, mutual with
//! the certificate it got. Refusals are checked on both sides.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::{DEADLINE, Operator, Pki, Router, retail};
use signpost_cnf::control::Backoff;
use signpost_cnf::control::bootstrap::{self, BootstrapError, BootstrapSettings};
use signpost_operator::bootstrap::{Enrollment, LocalTokens, Token};
use signpost_operator::distribution::Distribution;
use signpost_operator::identity::{self, CertificateAuthority, Validity};

/// An operator serving the retail example with bootstrap on; tokens under the CA directory.
async fn operator(pki: &Pki) -> (Operator, LocalTokens) {
    let dist = Distribution::new();
    dist.publish(retail());
    let ca_dir = pki.dir.path().join("ca");
    let ca = CertificateAuthority::load(&ca_dir).expect("CA");
    dist.enable_bootstrap(Enrollment::new(
        std::sync::Arc::new(ca),
        std::sync::Arc::new(LocalTokens::new(&ca_dir)),
    ));
    let op = Operator::start(&dist, &pki.operator()).await;
    (op, LocalTokens::new(&ca_dir))
}

/// What a store box is shipped with: the operator's CA and a token file.
fn shipped(pki: &Pki, name: &str, token: &Token) -> PathBuf {
    let dir = pki.dir.path().join(format!("box-{name}"));
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("ca.pem"), pki.ca.cert_pem()).expect("ca.pem");
    std::fs::write(dir.join("token"), format!("{token}\n")).expect("token");
    dir
}

fn settings(op: &Operator, router: &str, shipped: &Path, identity: &Path) -> BootstrapSettings {
    BootstrapSettings {
        router: router.to_string(),
        operator: format!("https://{}", op.addr),
        server_name: "localhost".into(),
        ca_file: shipped.join("ca.pem"),
        token_file: shipped.join("token"),
        identity_dir: identity.to_path_buf(),
        backoff: Backoff {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(100),
        },
    }
}

async fn refused(s: &BootstrapSettings) -> String {
    match tokio::time::timeout(DEADLINE, bootstrap::enroll(s)).await {
        Ok(Err(BootstrapError::Refused(e))) => e,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn operator_refusal(op: &Operator, needle: &str) -> String {
    let refusals: Vec<String> = op.dist.refusals().into_iter().map(|r| r.reason).collect();
    refusals
        .iter()
        .find(|r| r.contains(needle))
        .cloned()
        .unwrap_or_else(|| panic!("the operator recorded no refusal with `{needle}`: {refusals:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_enrolls_with_a_token_then_streams_over_mutual_tls_and_the_token_is_spent() {
    let pki = Pki::new();
    let (op, tokens) = operator(&pki).await;
    let token = tokens
        .mint("store-0142", Duration::from_secs(3600), SystemTime::now())
        .expect("mint");
    let shipped = shipped(&pki, "store-0142", &token);
    let identity_dir = pki.dir.path().join("identity-store-0142");
    let s = settings(&op, "store-0142", &shipped, &identity_dir);

    let enrolled = tokio::time::timeout(
        DEADLINE,
        bootstrap::ensure_identity(&s, std::future::pending()),
    )
    .await
    .expect("in time");
    assert_eq!(enrolled, Ok(true));
    let cert = std::fs::read_to_string(identity_dir.join("tls.crt")).expect("tls.crt");
    let der =
        <rustls_pki_types::CertificateDer as rustls_pki_types::pem::PemObject>::from_pem_slice(
            cert.as_bytes(),
        )
        .expect("PEM");
    let id = identity::router_identity(&der).expect("a router certificate");
    assert_eq!(id.name, "store-0142");
    assert!(
        std::fs::read_to_string(identity_dir.join("tls.key"))
            .is_ok_and(|k| k.contains("PRIVATE KEY")),
        "the key was made by the router and kept by it"
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(identity_dir.join("tls.key")).map(|m| m.permissions().mode());
        assert_eq!(mode.map(|m| m & 0o777).ok(), Some(0o600));
    }

    // The new identity is a working mTLS identity: the router gets and acks its config.
    let mut router = Router::start(
        "store-0142",
        op.addr,
        &identity_dir,
        &pki.state("store-0142"),
    );
    router
        .until("the enrolled router applied its config", |s| {
            s.applied_version.is_some()
        })
        .await;
    router.stop().await;

    // Enrolled once: a second start does not enroll again (the token is spent, it would fail).
    assert_eq!(
        bootstrap::ensure_identity(&s, std::future::pending()).await,
        Ok(true)
    );
    // The same token again, from another box: refused on both sides, without retrying.
    let again = settings(
        &op,
        "store-0142",
        &shipped,
        &pki.dir.path().join("identity-copy"),
    );
    let started = std::time::Instant::now();
    let err = tokio::time::timeout(
        DEADLINE,
        bootstrap::ensure_identity(&again, std::future::pending()),
    )
    .await
    .expect("a refusal is final, not retried forever");
    let err = err.err().unwrap_or_default();
    assert!(
        err.contains("the operator refused the bootstrap token")
            && err.contains(&format!(
                "bootstrap token `{}.…` was already used at",
                token.id()
            )),
        "{err}"
    );
    assert!(started.elapsed() < DEADLINE);
    assert!(!bootstrap::has_identity(
        &pki.dir.path().join("identity-copy")
    ));
    let logged = operator_refusal(&op, "already used");
    assert!(logged.starts_with("bootstrap refused: "), "{logged}");
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_unknown_and_other_router_tokens_are_refused_with_the_reason() {
    let pki = Pki::new();
    let (op, tokens) = operator(&pki).await;
    let dir = pki.dir.path();

    let old = tokens
        .mint(
            "store-0142",
            Duration::from_secs(60),
            SystemTime::now() - Duration::from_secs(3600),
        )
        .expect("mint");
    let shipped_old = shipped(&pki, "old", &old);
    let err = refused(&settings(&op, "store-0142", &shipped_old, &dir.join("i1"))).await;
    assert!(err.contains("expired at"), "{err}");
    operator_refusal(&op, "expired at");

    let unknown = Token::generate().expect("token");
    let shipped_unknown = shipped(&pki, "unknown", &unknown);
    let err = refused(&settings(
        &op,
        "store-0142",
        &shipped_unknown,
        &dir.join("i2"),
    ))
    .await;
    assert!(err.contains("is unknown to this operator"), "{err}");
    operator_refusal(&op, "is unknown to this operator");

    let for_store = tokens
        .mint("store-0142", Duration::from_secs(3600), SystemTime::now())
        .expect("mint");
    let shipped_store = shipped(&pki, "store", &for_store);
    let err = refused(&settings(&op, "hub-aws", &shipped_store, &dir.join("i3"))).await;
    assert!(
        err.contains("was minted for router `store-0142`, not `hub-aws`"),
        "{err}"
    );
    // A refused attempt does not spend the token: its own router still enrolls with it.
    let ok = bootstrap::enroll(&settings(
        &op,
        "store-0142",
        &shipped_store,
        &dir.join("i4"),
    ))
    .await;
    assert_eq!(ok, Ok(()));

    std::fs::write(shipped_unknown.join("token"), "not-a-token\n").expect("write");
    let err = refused(&settings(
        &op,
        "store-0142",
        &shipped_unknown,
        &dir.join("i5"),
    ))
    .await;
    assert!(err.contains("malformed bootstrap token"), "{err}");
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_is_refused_as_off_without_a_ca_key_and_subscribe_wants_a_certificate() {
    let pki = Pki::new();
    let dist = Distribution::new();
    dist.publish(retail());
    let op = Operator::start(&dist, &pki.operator()).await;
    let token = Token::generate().expect("token");
    let shipped = shipped(&pki, "off", &token);
    let err = refused(&settings(
        &op,
        "store-0142",
        &shipped,
        &pki.dir.path().join("i"),
    ))
    .await;
    assert!(err.contains("bootstrap is off on this operator"), "{err}");

    // A router dialing Subscribe with no certificate at all gets through TLS (Bootstrap needs
    // that) and is refused by Subscribe, saying what to present.
    let no_identity = pki.dir.path().join("no-identity");
    std::fs::create_dir_all(&no_identity).expect("mkdir");
    std::fs::write(no_identity.join("ca.pem"), pki.ca.cert_pem()).expect("ca.pem");
    let channel = tonic::transport::Endpoint::from_shared(format!("https://{}", op.addr))
        .expect("endpoint")
        .tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(pki.ca.cert_pem()))
                .domain_name("localhost"),
        )
        .expect("tls")
        .connect()
        .await
        .expect("the handshake succeeds without a client certificate");
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let _ = tx
        .send(signpost_proto::v1::RouterMessage {
            kind: Some(signpost_proto::v1::router_message::Kind::Hello(
                signpost_proto::v1::Hello {
                    router: "store-0142".into(),
                    ..Default::default()
                },
            )),
        })
        .await;
    let status = signpost_proto::v1::distribution_client::DistributionClient::new(channel)
        .subscribe(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert!(
        status
            .message()
            .contains("the connection has no client certificate"),
        "{}",
        status.message()
    );
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_bound_to_a_deleted_router_is_refused_and_unbound_ones_are_not() {
    let pki = Pki::new();
    let dist = Distribution::new();
    dist.publish(retail());
    dist.bind_identities([("store-0142".to_string(), "uid-new".to_string())].into());
    let op = Operator::start(&dist, &pki.operator()).await;

    let old = pki.dir.path().join("old-identity");
    pki.ca
        .issue_router_bound("store-0142", Some("uid-old"), Validity::days_from_now(1))
        .expect("issue")
        .write(&old)
        .expect("write");
    let mut router = Router::start("store-0142", op.addr, &old, &pki.state("old"));
    let status = router
        .until("the stale identity is refused", |s| s.last_error.is_some())
        .await;
    let err = status.last_error.unwrap_or_default();
    assert!(
        err.contains("issued for an earlier Router `store-0142` (uid uid-old)"),
        "{err}"
    );
    router.stop().await;

    let current = pki.dir.path().join("current-identity");
    pki.ca
        .issue_router_bound("store-0142", Some("uid-new"), Validity::days_from_now(1))
        .expect("issue")
        .write(&current)
        .expect("write");
    let mut router = Router::start("store-0142", op.addr, &current, &pki.state("current"));
    router
        .until("the current identity is served", |s| {
            s.applied_version.is_some()
        })
        .await;
    router.stop().await;

    let unbound = pki.router("store-0142");
    let mut router = Router::start("store-0142", op.addr, &unbound, &pki.state("unbound"));
    router
        .until("an unbound identity is served", |s| {
            s.applied_version.is_some()
        })
        .await;
    router.stop().await;
    op.stop().await;
}
