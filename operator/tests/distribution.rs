//! The config stream end to end in one process: the operator's `Distribution` server and the
//! router's `ControlClient` over real TCP on 127.0.0.1, real mutual TLS with certificates from
//! a real CA, real tonic — and the router's real data-plane sink (`PipelineTables`).

mod common;

use std::sync::Arc;

use common::{DEADLINE, Operator, Pki, Router, expired, retail, until};
use prost::Message;
use sha2::{Digest, Sha256};
use signpost_operator::compiler::RouterOutput;
use signpost_operator::distribution::{Configs, Distribution, Outcome};
use signpost_proto::v1::{RouterConfig, WanInterface};

fn output(config: &RouterConfig) -> Arc<RouterOutput> {
    let encoded = config.encode_to_vec();
    let version = hex::encode(Sha256::digest(&encoded));
    Arc::new(RouterOutput { encoded, version })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_gets_its_config_acks_it_and_the_operator_records_the_ack() {
    let pki = Pki::new();
    let dist = Distribution::new();
    let configs = retail();
    let expected = configs["store-0142"].version.clone();
    dist.publish(configs);
    let op = Operator::start(&dist, &pki.operator()).await;
    let mut router = Router::start(
        "store-0142",
        op.addr,
        &pki.router("store-0142"),
        &pki.state("store-0142"),
    );

    let status = router
        .until("the config applied", |s| {
            s.applied_version.as_ref() == Some(&expected)
        })
        .await;
    assert!(status.connected && !status.from_last_known_good);
    assert_eq!(router.sink.version().as_ref(), Some(&expected));
    let tables = router.sink.tables.current().expect("tables in force");
    assert_eq!(tables.router, "store-0142");

    let mut board = op.dist.watch_routers();
    let state = until(&mut board, "the Ack recorded", |m| {
        m.get("store-0142").is_some_and(|s| {
            s.connected
                && s.outcome
                    == Some(Outcome::Acked {
                        version: expected.clone(),
                    })
        })
    })
    .await;
    let state = &state["store-0142"];
    assert_eq!(state.sent_version.as_ref(), Some(&expected));
    assert_eq!(state.software_version, env!("CARGO_PKG_VERSION"));
    until(&mut board, "a health report", |m| {
        m.get("store-0142")
            .and_then(|s| s.health.as_ref())
            .is_some_and(|h| h.applied_version == expected && h.unix_time_ms > 0)
    })
    .await;

    // The same router reconnecting with the current version is not sent it again.
    router.stop().await;
    until(&mut board, "the disconnect recorded", |m| {
        m.get("store-0142").is_some_and(|s| !s.connected)
    })
    .await;
    let mut again = Router::start(
        "store-0142",
        op.addr,
        &pki.router("store-0142"),
        &pki.state("store-0142"),
    );
    again.until("connected again", |s| s.connected).await;
    until(&mut board, "the reconnect recorded", |m| {
        m.get("store-0142")
            .is_some_and(|s| s.connected && s.applied_version.as_ref() == Some(&expected))
    })
    .await;
    assert_eq!(
        again.sink.applied(),
        std::slice::from_ref(&expected),
        "only the last-known-good load"
    );
    assert!(
        again.status.borrow().from_last_known_good,
        "no snapshot was needed"
    );

    // Removing the router from the configs ends its stream with the reason.
    dist.publish(Configs::new());
    let status = again
        .until("the stream ended", |s| {
            s.last_error
                .as_deref()
                .is_some_and(|e| e.contains("no longer has a config"))
        })
        .await;
    assert!(!status.connected);
    assert_eq!(
        again.sink.version(),
        Some(expected),
        "the router keeps its config"
    );
    again.stop().await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_the_router_rejects_is_nacked_and_its_text_reaches_the_operator() {
    let pki = Pki::new();
    let dist = Distribution::new();
    let good = RouterConfig {
        router: "store-9".into(),
        wan_interfaces: vec![WanInterface {
            name: "broadband".into(),
            addresses: vec!["192.0.2.9/24".into()],
            ..Default::default()
        }],
        ..Default::default()
    };
    let v1 = output(&good);
    dist.publish(Configs::from([("store-9".to_string(), v1.clone())]));
    let op = Operator::start(&dist, &pki.operator()).await;
    let mut router = Router::start(
        "store-9",
        op.addr,
        &pki.router("store-9"),
        &pki.state("store-9"),
    );
    router
        .until("v1 applied", |s| {
            s.applied_version.as_ref() == Some(&v1.version)
        })
        .await;

    let mut bad = good.clone();
    bad.wan_interfaces[0].addresses = vec!["192.0.2.300/24".into()];
    let v2 = output(&bad);
    dist.publish(Configs::from([("store-9".to_string(), v2.clone())]));
    let mut board = op.dist.watch_routers();
    let state = until(&mut board, "the Nack recorded", |m| {
        m.get("store-9")
            .is_some_and(|s| matches!(&s.outcome, Some(Outcome::Nacked { .. })))
    })
    .await;
    let state = &state["store-9"];
    match &state.outcome {
        Some(Outcome::Nacked { version, error }) => {
            assert_eq!(version, &v2.version);
            assert_eq!(
                error,
                "WAN interface `broadband`: `192.0.2.300/24` is not an IP address"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        state.applied_version.as_ref(),
        Some(&v1.version),
        "the operator knows the router still runs v1"
    );
    assert_eq!(router.sink.version().as_ref(), Some(&v1.version));
    let status = router.status.borrow().clone();
    assert_eq!(status.applied_version.as_ref(), Some(&v1.version));
    assert_eq!(
        status.last_refused.as_ref().map(|(v, _)| v),
        Some(&v2.version)
    );

    // Fixed: the next version is applied.
    let mut fixed = good;
    fixed.wan_interfaces[0].addresses = vec!["192.0.2.10/24".into()];
    let v3 = output(&fixed);
    dist.publish(Configs::from([("store-9".to_string(), v3.clone())]));
    router
        .until("v3 applied", |s| {
            s.applied_version.as_ref() == Some(&v3.version)
        })
        .await;
    until(&mut board, "the Ack of v3", |m| {
        m.get("store-9").is_some_and(|s| {
            s.outcome
                == Some(Outcome::Acked {
                    version: v3.version.clone(),
                })
        })
    })
    .await;
    router.stop().await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_of_another_ca_are_refused_on_both_sides_with_the_reason() {
    let pki = Pki::new();
    let other = Pki::new();
    let dist = Distribution::new();
    dist.publish(retail());
    let op = Operator::start(&dist, &pki.operator()).await;

    // A router certificate from another CA, presented to our operator.
    let foreign = pki.dir.path().join("foreign-client");
    let mut issued = other
        .ca
        .issue_router("store-0142", common::valid())
        .expect("issue");
    issued.ca_pem = pki.ca.cert_pem().to_string();
    issued.write(&foreign).expect("write");
    let mut router = Router::start("store-0142", op.addr, &foreign, &pki.state("a"));
    let status = router.until("a refusal", |s| s.last_error.is_some()).await;
    let error = status.last_error.unwrap_or_default();
    assert!(
        error.contains("this router's certificate (tls.crt) would be refused")
            && error.contains("UnknownIssuer"),
        "router side: {error}"
    );
    let refusal = wait_refusal(&op.dist, "UnknownIssuer").await;
    assert!(
        refusal.contains("TLS handshake failed")
            && refusal.contains("the router's certificate is refused"),
        "operator side: {refusal}"
    );
    eprintln!("router: {error}\noperator: {refusal}");
    router.stop().await;

    // A router that trusts another CA refuses our operator.
    let mut router = Router::start(
        "store-0142",
        op.addr,
        &other.router("store-0142"),
        &pki.state("b"),
    );
    let status = router.until("a refusal", |s| s.last_error.is_some()).await;
    let error = status.last_error.unwrap_or_default();
    assert!(
        error.contains("UnknownIssuer")
            && error.contains("not from the CA in this router's ca.pem"),
        "router side: {error}"
    );
    let refusal = wait_refusal(&op.dist, "the router refused this operator's certificate").await;
    eprintln!("router: {error}\noperator: {refusal}");
    assert!(
        router.sink.version().is_none() && !op.dist.routers().contains_key("store-0142"),
        "nothing was served"
    );
    router.stop().await;
    op.stop().await;
}

/// Waits until the operator has recorded a refusal containing `needle`; returns its text.
async fn wait_refusal(dist: &Distribution, needle: &str) -> String {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(r) = dist
            .refusals()
            .into_iter()
            .find(|r| r.reason.contains(needle))
        {
            return r.reason;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no refusal containing `{needle}`: {:?}",
            dist.refusals()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_router_certificate_is_refused() {
    let pki = Pki::new();
    let dist = Distribution::new();
    dist.publish(retail());
    let op = Operator::start(&dist, &pki.operator()).await;
    let mut router = Router::start(
        "store-0142",
        op.addr,
        &pki.router_valid("store-0142", expired()),
        &pki.state("store-0142"),
    );
    let status = router.until("a refusal", |s| s.last_error.is_some()).await;
    let error = status.last_error.unwrap_or_default();
    assert!(
        error.contains("this router's certificate (tls.crt) would be refused")
            && error.contains("certificate expired"),
        "router side: {error}"
    );
    let refusal = wait_refusal(&op.dist, "expired").await;
    assert!(
        refusal.contains("the router's certificate is refused"),
        "{refusal}"
    );
    eprintln!("router: {error}\noperator: {refusal}");
    assert!(router.sink.version().is_none());
    router.stop().await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hello_claiming_another_router_is_refused() {
    let pki = Pki::new();
    let dist = Distribution::new();
    dist.publish(retail());
    let op = Operator::start(&dist, &pki.operator()).await;
    // store-0142's certificate, asking for store-0217's config.
    let mut router = Router::start(
        "store-0217",
        op.addr,
        &pki.router("store-0142"),
        &pki.state("store-0217"),
    );
    let status = router.until("a refusal", |s| s.last_error.is_some()).await;
    let error = status.last_error.unwrap_or_default();
    assert!(
        error.contains("PermissionDenied")
            && error.contains("certificate names router `store-0142`, Hello claims `store-0217`"),
        "{error}"
    );
    wait_refusal(
        &op.dist,
        "certificate names router `store-0142`, Hello claims `store-0217`",
    )
    .await;
    assert!(router.sink.version().is_none());
    assert!(op.dist.routers().is_empty(), "no stream was opened");
    router.stop().await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_without_a_config_is_told_so_and_served_once_it_has_one() {
    let pki = Pki::new();
    let dist = Distribution::new();
    let op = Operator::start(&dist, &pki.operator()).await;
    let mut router = Router::start(
        "store-0142",
        op.addr,
        &pki.router("store-0142"),
        &pki.state("store-0142"),
    );
    let status = router.until("a refusal", |s| s.last_error.is_some()).await;
    let error = status.last_error.unwrap_or_default();
    assert!(
        error.contains("FailedPrecondition")
            && error.contains("the operator has no config for router `store-0142`"),
        "{error}"
    );
    // Its retries find the config once there is one.
    let configs = retail();
    let expected = configs["store-0142"].version.clone();
    dist.publish(configs);
    router
        .until("the config applied", |s| {
            s.applied_version.as_ref() == Some(&expected)
        })
        .await;
    router.stop().await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_restarted_while_the_operator_is_down_starts_from_last_known_good() {
    let pki = Pki::new();
    let dist = Distribution::new();
    let configs = retail();
    let expected = configs["store-0142"].version.clone();
    dist.publish(configs);
    let op = Operator::start(&dist, &pki.operator()).await;
    let addr = op.addr;
    let tls = pki.router("store-0142");
    let state = pki.state("store-0142");
    let mut router = Router::start("store-0142", addr, &tls, &state);
    router
        .until("the config applied", |s| {
            s.applied_version.as_ref() == Some(&expected)
        })
        .await;
    let mut board = op.dist.watch_routers();
    until(&mut board, "the Ack recorded", |m| {
        m.get("store-0142")
            .is_some_and(|s| s.applied_version.as_ref() == Some(&expected))
    })
    .await;
    // The operator stops with the router connected: it says so on the stream.
    op.stop().await;
    let status = router
        .until("the stop noticed", |s| {
            !s.connected && s.last_error.is_some()
        })
        .await;
    let error = status.last_error.unwrap_or_default();
    assert!(error.contains("the operator is shutting down"), "{error}");
    router.stop().await;

    // The operator is gone; the router restarts.
    let mut router = Router::start("store-0142", addr, &tls, &state);
    let status = router
        .until("a failed dial", |s| s.last_error.is_some())
        .await;
    assert!(!status.connected);
    assert_eq!(status.applied_version.as_ref(), Some(&expected));
    assert!(status.from_last_known_good);
    let error = status.last_error.unwrap_or_default();
    assert!(
        error.contains(&format!("cannot connect to the operator at https://{addr}")),
        "{error}"
    );
    assert_eq!(
        router.sink.version().as_ref(),
        Some(&expected),
        "tables in force"
    );
    assert_eq!(
        router
            .sink
            .tables
            .current()
            .map(|t| t.router.clone())
            .as_deref(),
        Some("store-0142")
    );
    router.stop().await;
}
