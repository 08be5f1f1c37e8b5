//! The controllers against a mock API server: each test states the calls it expects, in order,
//! with what their bodies must say, and answers them ([`super::fixtures`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};

use super::fixtures::{ApiServer, Call, Handle, context, now};
use super::lease::{LeaseClient, LeaseSettings};
use super::reconcile::{FINALIZER, reconcile_object, reconcile_router};
use super::tokens::{self, SecretTokens};
use super::world::{Kind, ObjectFacts, ObjectKey, Report, RouterFacts};
use crate::bootstrap::{Refusal, Token, TokenRecord, TokenStore};
use crate::compiler::Diagnostic;
use crate::crd::{Policy, PolicySpec, Router, RouterSpec, RouterStatus, Status};
use crate::distribution::{Outcome, RouterState};
use crate::identity::{self, CertificateAuthority};

const ROUTERS: &str = "/apis/signpost.dev/v1alpha1/namespaces/chain/routers";
const VERSION: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const NACK: &str = "interface `lte` names device `wwan0`, which this router did not open";

fn ca() -> Arc<CertificateAuthority> {
    Arc::new(CertificateAuthority::generate().expect("CA").0)
}

fn router() -> Router {
    let spec: RouterSpec = serde_yaml_ng::from_str(
        "
role: edge
interfaces:
  - {name: broadband, role: wan, device: eth1, neighborhood: internet, vector: broadband}
  - {name: lan, role: lan, networks: [{name: pos, prefixes: [10.1.0.0/24]}]}
",
    )
    .expect("spec");
    let mut r = Router::new("store-1", spec);
    r.metadata.namespace = Some("chain".into());
    r.metadata.uid = Some("uid-1".into());
    r.metadata.generation = Some(1);
    r.metadata.resource_version = Some("100".into());
    r
}

fn finalized(mut r: Router) -> Router {
    r.metadata.finalizers = Some(vec![FINALIZER.into()]);
    r
}

fn with_status(mut r: Router, status: &Value) -> Router {
    r.status =
        Some(serde_json::from_value::<RouterStatus>(status.clone()).expect("a RouterStatus"));
    r
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("JSON")
}

/// The compile's report for `store-1`: compiled at generation 1, one peer.
fn router_report(diagnostics: Vec<Diagnostic>) -> Arc<Report> {
    let mut report = Report::default();
    report.objects.insert(
        ObjectKey::new(Kind::Router, "chain", "store-1"),
        ObjectFacts {
            generation: Some(1),
            uid: Some("uid-1".into()),
            diagnostics,
            router: Some(RouterFacts {
                config_version: Some(VERSION.into()),
                peers: Some(1),
            }),
        },
    );
    report
        .router_namespaces
        .insert("store-1".into(), "chain".into());
    report.compiles = 1;
    Arc::new(report)
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

fn event(
    regarding: &'static str,
    reason: &'static str,
    type_: &'static str,
    note: &'static str,
) -> Call {
    Call::post("/apis/events.k8s.io/v1/namespaces/chain/events")
        .body(move |b| {
            assert_eq!(b["reason"], reason, "{b}");
            assert_eq!(b["type"], type_, "{b}");
            assert_eq!(b["regarding"]["name"], regarding, "{b}");
            let text = b["note"].as_str().unwrap_or_default();
            assert!(text.contains(note), "event note `{text}` lacks `{note}`");
            assert!(
                text.len() <= 1024,
                "the API server refuses notes over 1 KiB"
            );
        })
        .reply(
            201,
            json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"}}),
        )
}

/// The status patch of `store-1`; `check` looks at the status, which is kept in `seen`.
fn router_status(seen: &Arc<Mutex<Value>>, check: impl Fn(&Value) + Send + 'static) -> Call {
    let keep = Arc::clone(seen);
    Call::patch(&format!("{ROUTERS}/store-1/status"))
        .query("fieldManager=signpost-operator")
        .query("force=true")
        .body(move |b| {
            assert_eq!(b["apiVersion"], "signpost.dev/v1alpha1");
            assert_eq!(b["kind"], "Router");
            assert!(
                b.get("spec").is_none(),
                "the operator never writes spec: {b}"
            );
            check(&b["status"]);
            if let Ok(mut k) = keep.lock() {
                *k = b["status"].clone();
            }
        })
        .reply(200, to_json(&finalized(router())))
}

/// The calls of a first workload apply for `store-1`: identity Secret (absent, so issued),
/// ServiceAccount, Deployment (created), no DaemonSet to delete.
fn workload_calls(ca_pem: String) -> Vec<Call> {
    let secret = "/api/v1/namespaces/chain/secrets/signpost-router-store-1-tls";
    vec![
        Call::get(secret).not_found(),
        Call::patch(secret)
            .query("fieldManager=signpost-operator")
            .query("force=true")
            .body(move |b| {
                let s: Secret = serde_json::from_value(b.clone()).expect("a Secret");
                assert_eq!(s.type_.as_deref(), Some("kubernetes.io/tls"));
                let owner = &s.metadata.owner_references.clone().unwrap_or_default()[0];
                assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("Router", "uid-1"));
                let data = s.data.unwrap_or_default();
                let field = |k: &str| {
                    data.get(k)
                        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
                        .unwrap_or_default()
                };
                assert_eq!(field("ca.pem"), ca_pem, "the router trusts this operator's CA");
                assert!(field("tls.key").contains("PRIVATE KEY"));
                let cert = CertificateDer::from_pem_slice(field("tls.crt").as_bytes())
                    .expect("a certificate");
                let id = identity::router_identity(&cert).expect("a router identity");
                assert_eq!(
                    (id.name.as_str(), id.uid.as_deref()),
                    ("store-1", Some("uid-1"))
                );
            })
            .reply(
                200,
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "signpost-router-store-1-tls"}}),
            ),
        event(
            "store-1",
            "IdentityIssued",
            "Normal",
            "for 90 days into Secret signpost-router-store-1-tls",
        ),
        Call::patch("/api/v1/namespaces/chain/serviceaccounts/signpost-router-store-1")
            .query("fieldManager=signpost-operator")
            .body(|b| assert_eq!(b["automountServiceAccountToken"], false))
            .reply(
                200,
                json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "signpost-router-store-1"}}),
            ),
        Call::patch("/apis/apps/v1/namespaces/chain/deployments/signpost-router-store-1")
            .query("fieldManager=signpost-operator")
            .body(|b| {
                assert_eq!(b["kind"], "Deployment");
                let c = &b["spec"]["template"]["spec"]["containers"][0];
                assert_eq!(
                    c["securityContext"]["capabilities"]["add"],
                    json!(["NET_ADMIN", "NET_RAW", "BPF", "IPC_LOCK"])
                );
                assert_eq!(c["securityContext"]["privileged"], false);
                assert_eq!(c["args"][1], "store-1");
            })
            .reply(
                200,
                json!({
                    "apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": "signpost-router-store-1", "generation": 1},
                    "spec": {"selector": {}, "template": {}}
                }),
            ),
        Call::delete("/apis/apps/v1/namespaces/chain/daemonsets/signpost-router-store-1")
            .not_found(),
        event(
            "store-1",
            "WorkloadCreated",
            "Normal",
            "created Deployment signpost-router-store-1 running registry.example/signpost-router:1.2.3",
        ),
    ]
}

fn acked_state() -> RouterState {
    let mut state = RouterState::new(now());
    state.connected = true;
    state.applied_version = Some(VERSION.into());
    state.outcome = Some(Outcome::Acked {
        version: VERSION.into(),
    });
    state
}

fn seen() -> Arc<Mutex<Value>> {
    Arc::new(Mutex::new(Value::Null))
}

fn last(seen: &Arc<Mutex<Value>>) -> Value {
    seen.lock().map(|s| s.clone()).unwrap_or_default()
}

/// Runs the first two reconciles of a new Router (finalizer, then workload and status);
/// returns the handle and the status written. `acked`: the router has applied its config.
async fn created(
    ctx: &Arc<super::Context>,
    handle: Handle,
    ca: &CertificateAuthority,
    acked: bool,
) -> (Handle, Value) {
    let status = seen();
    let mut calls = vec![
        Call::patch(&format!("{ROUTERS}/store-1"))
            .body(|b| {
                assert_eq!(
                    b,
                    &json!([
                        {"op": "test", "path": "/metadata/finalizers", "value": null},
                        {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}
                    ])
                )
            })
            .reply(200, to_json(&finalized(router()))),
    ];
    calls.extend(workload_calls(ca.cert_pem().to_string()));
    calls.push(router_status(&status, move |s| {
        assert_eq!(s["observedGeneration"], 1);
        assert_eq!(s["configVersion"], VERSION);
        assert_eq!(s["peers"], 1);
        let programmed = condition(s, "Programmed");
        let expected = if acked {
            (json!("True"), json!("Applied"))
        } else {
            (json!("False"), json!("Pending"))
        };
        assert_eq!(
            (&programmed["status"], &programmed["reason"]),
            (&expected.0, &expected.1)
        );
        assert_eq!(condition(s, "Degraded")["status"], "False");
        assert_eq!(
            condition(s, "Ready")["status"],
            json!(if acked { "True" } else { "False" })
        );
        assert_eq!(
            condition(s, "Ready")["lastTransitionTime"],
            "2027-01-15T08:00:00Z"
        );
    }));
    if acked {
        calls.push(event(
            "store-1",
            "Applied",
            "Normal",
            "the router applied config",
        ));
    }
    let server = ApiServer::expect(handle, calls);
    let first = reconcile_router(Arc::new(router()), Arc::clone(ctx)).await;
    assert!(first.is_ok(), "{first:?}");
    let second = reconcile_router(Arc::new(finalized(router())), Arc::clone(ctx)).await;
    assert!(second.is_ok(), "{second:?}");
    (server.done().await, last(&status))
}

#[tokio::test]
async fn a_new_router_gets_its_finalizer_then_its_workload_then_its_status_then_acks() {
    let ca = ca();
    let (ctx, handle, inputs) = context(Arc::clone(&ca));
    inputs.report.send_replace(router_report(vec![]));
    let (handle, status) = created(&ctx, handle, &ca, false).await;

    // The router connects and acknowledges: only its status changes (the workload applied a
    // moment ago is not applied again), with an event.
    inputs
        .routers
        .send_replace(BTreeMap::from([("store-1".to_string(), acked_state())]));
    let written = seen();
    let server = ApiServer::expect(
        handle,
        vec![
            router_status(&written, |s| {
                assert_eq!(condition(s, "Programmed")["status"], "True");
                assert_eq!(condition(s, "Programmed")["reason"], "Applied");
                assert_eq!(condition(s, "Ready")["status"], "True");
                assert_eq!(s["appliedVersion"], VERSION);
            }),
            event(
                "store-1",
                "Applied",
                "Normal",
                "the router applied config 9f86d081884c",
            ),
        ],
    );
    let r = Arc::new(with_status(finalized(router()), &status));
    assert!(reconcile_router(r, Arc::clone(&ctx)).await.is_ok());
    let handle = server.done().await;

    // Nothing changed: nothing is written.
    let server = ApiServer::expect(handle, vec![]);
    let r = Arc::new(with_status(finalized(router()), &last(&written)));
    assert!(reconcile_router(r, Arc::clone(&ctx)).await.is_ok());
    server.done().await;
}

/// With the operator's cache of workloads, a DaemonSet that is not in it is not deleted on
/// every apply (one DELETE answered 404 per Router per re-apply, without the cache).
#[tokio::test]
async fn a_workload_kind_absent_from_the_cache_is_not_deleted_again() {
    let ca = ca();
    let (deployments, _) = kube::runtime::reflector::store();
    let (daemonsets, _) = kube::runtime::reflector::store();
    let (ctx, handle, inputs) = super::fixtures::context_with(Arc::clone(&ca), |ctx| {
        ctx.deployments = Some(deployments);
        ctx.daemonsets = Some(daemonsets);
    });
    inputs.report.send_replace(router_report(vec![]));
    let mut calls = workload_calls(ca.cert_pem().to_string());
    calls.retain(|c| c.method() != http::Method::DELETE);
    let status = seen();
    calls.push(router_status(&status, |s| {
        assert_eq!(s["observedGeneration"], 1)
    }));
    let server = ApiServer::expect(handle, calls);
    let r = reconcile_router(Arc::new(finalized(router())), Arc::clone(&ctx)).await;
    assert!(r.is_ok(), "{r:?}");
    server.done().await;
}

#[tokio::test]
async fn a_routers_nack_makes_it_not_programmed_with_the_routers_error_text() {
    let ca = ca();
    let (ctx, handle, inputs) = context(Arc::clone(&ca));
    inputs.report.send_replace(router_report(vec![]));
    inputs
        .routers
        .send_replace(BTreeMap::from([("store-1".to_string(), acked_state())]));
    let (handle, status) = created(&ctx, handle, &ca, true).await;
    assert_eq!(condition(&status, "Programmed")["status"], "True");

    let mut nacked = acked_state();
    nacked.applied_version = Some("0ld".into());
    nacked.outcome = Some(Outcome::Nacked {
        version: VERSION.into(),
        error: NACK.into(),
    });
    inputs
        .routers
        .send_replace(BTreeMap::from([("store-1".to_string(), nacked)]));
    let written = seen();
    let server = ApiServer::expect(
        handle,
        vec![
            router_status(&written, |s| {
                let p = condition(s, "Programmed");
                assert_eq!(
                    (&p["status"], &p["reason"]),
                    (&json!("False"), &json!("Rejected"))
                );
                let message = p["message"].as_str().unwrap_or_default();
                assert!(message.contains(NACK), "{message}");
                assert_eq!(condition(s, "Ready")["reason"], "Rejected");
                assert_eq!(s["appliedVersion"], "0ld");
                assert_eq!(s["configVersion"], VERSION);
            }),
            event("store-1", "Rejected", "Warning", NACK),
        ],
    );
    let r = Arc::new(with_status(finalized(router()), &status));
    assert!(reconcile_router(r, Arc::clone(&ctx)).await.is_ok());
    server.done().await;
}

fn policy(generation: i64) -> Policy {
    let spec: PolicySpec =
        serde_yaml_ng::from_str("{tenants: [pos, pso], services: [payments]}").expect("spec");
    let mut p = Policy::new("pos-pay", spec);
    p.metadata.namespace = Some("chain".into());
    p.metadata.uid = Some("uid-p".into());
    p.metadata.generation = Some(generation);
    p
}

const MISSING: &str = "policy `pos-pay` names tenant `pso`, which does not exist (known: pos)";

fn policy_report(generation: i64) -> Arc<Report> {
    let mut report = Report::default();
    report.objects.insert(
        ObjectKey::new(Kind::Policy, "chain", "pos-pay"),
        ObjectFacts {
            generation: Some(generation),
            uid: Some("uid-p".into()),
            diagnostics: vec![Diagnostic::error(
                "Policy",
                "pos-pay",
                "UnknownTenant",
                MISSING.into(),
            )],
            router: None,
        },
    );
    Arc::new(report)
}

#[tokio::test]
async fn a_dangling_reference_is_degraded_with_the_diagnostics_message_once_compiled() {
    let (ctx, handle, inputs) = context(ca());
    // Generation 2 is not compiled yet: its status is not written.
    inputs.report.send_replace(policy_report(1));
    let server = ApiServer::expect(handle, vec![]);
    assert!(
        reconcile_object(Arc::new(policy(2)), Arc::clone(&ctx))
            .await
            .is_ok()
    );
    let handle = server.done().await;

    inputs.report.send_replace(policy_report(2));
    let written = seen();
    let keep = Arc::clone(&written);
    let server = ApiServer::expect(
        handle,
        vec![
            Call::patch("/apis/signpost.dev/v1alpha1/namespaces/chain/policies/pos-pay/status")
                .query("fieldManager=signpost-operator")
                .body(move |b| {
                    assert_eq!(b["kind"], "Policy");
                    let s = &b["status"];
                    assert_eq!(s["observedGeneration"], 2);
                    let d = condition(s, "Degraded");
                    assert_eq!(
                        (&d["status"], &d["reason"], &d["message"]),
                        (&json!("True"), &json!("UnknownTenant"), &json!(MISSING))
                    );
                    assert_eq!(condition(s, "Ready")["status"], "False");
                    assert_eq!(condition(s, "Programmed")["status"], "False");
                    if let Ok(mut k) = keep.lock() {
                        *k = s.clone();
                    }
                })
                .reply(200, to_json(&policy(2))),
            event("pos-pay", "UnknownTenant", "Warning", MISSING),
        ],
    );
    assert!(
        reconcile_object(Arc::new(policy(2)), Arc::clone(&ctx))
            .await
            .is_ok()
    );
    let handle = server.done().await;

    // Its status now says so: nothing more to write.
    let mut p = policy(2);
    p.status = Some(serde_json::from_value::<Status>(last(&written)).expect("status"));
    let server = ApiServer::expect(handle, vec![]);
    assert!(
        reconcile_object(Arc::new(p), Arc::clone(&ctx))
            .await
            .is_ok()
    );
    server.done().await;
}

#[tokio::test]
async fn a_deleted_router_loses_its_bootstrap_tokens_then_its_finalizer() {
    let (ctx, handle, inputs) = context(ca());
    inputs.report.send_replace(router_report(vec![]));
    let mut deleting = finalized(router());
    deleting.metadata.deletion_timestamp =
        Some(Time(Timestamp::from_second(1_800_000_000).expect("time")));
    let server = ApiServer::expect(
        handle,
        vec![
            Call::get("/api/v1/namespaces/chain/secrets")
                .query("labelSelector=signpost.dev%2Fbootstrap-token%3Dtrue%2Csignpost.dev%2Frouter%3Dstore-1")
                .reply(
                    200,
                    json!({
                        "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
                        "metadata": {},
                        "items": [{"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                                   "metadata": {"name": "signpost-bootstrap-abc123", "namespace": "chain"}}]
                    }),
                ),
            Call::delete("/api/v1/namespaces/chain/secrets/signpost-bootstrap-abc123").reply(
                200,
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "signpost-bootstrap-abc123"}}),
            ),
            event("store-1", "CleanedUp", "Normal", "deleted 1 bootstrap token(s)"),
            Call::patch(&format!("{ROUTERS}/store-1"))
                .body(|b| {
                    assert_eq!(
                        b,
                        &json!([
                            {"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER},
                            {"op": "remove", "path": "/metadata/finalizers/0"}
                        ])
                    )
                })
                .reply(200, to_json(&router())),
        ],
    );
    let result = reconcile_router(Arc::new(deleting), Arc::clone(&ctx)).await;
    assert!(result.is_ok(), "{result:?}");
    server.done().await;
}

/// A Router whose name is too long for a label (its workload was refused with
/// WorkloadInvalid) is deleted without asking for its tokens: a label selector with that name
/// would be refused by the API server on every retry, and the finalizer would never go.
#[tokio::test]
async fn a_router_named_too_long_for_a_label_is_still_deleted() {
    let (ctx, handle, inputs) = context(ca());
    inputs.report.send_replace(router_report(vec![]));
    let long = "s".repeat(64);
    let mut deleting = finalized(router());
    deleting.metadata.name = Some(long.clone());
    deleting.metadata.deletion_timestamp =
        Some(Time(Timestamp::from_second(1_800_000_000).expect("time")));
    let mut gone = router();
    gone.metadata.name = Some(long.clone());
    let server = ApiServer::expect(
        handle,
        vec![
            Call::post("/apis/events.k8s.io/v1/namespaces/chain/events")
                .body(|b| {
                    assert_eq!(b["reason"], "CleanedUp");
                    let note = b["note"].as_str().unwrap_or_default();
                    assert!(note.contains("deleted 0 bootstrap token(s)"), "{note}");
                })
                .reply(201, json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"}})),
            Call::patch(&format!("{ROUTERS}/{long}"))
                .body(|b| assert_eq!(b[1]["op"], "remove", "{b}"))
                .reply(200, to_json(&gone)),
        ],
    );
    let result = reconcile_router(Arc::new(deleting), Arc::clone(&ctx)).await;
    assert!(result.is_ok(), "{result:?}");
    server.done().await;
}

#[tokio::test]
async fn a_non_leader_writes_nothing() {
    let (ctx, handle, inputs) = context(ca());
    inputs.leader.send_replace(false);
    inputs.report.send_replace(router_report(vec![]));
    let server = ApiServer::expect(handle, vec![]);
    assert!(
        reconcile_router(Arc::new(router()), Arc::clone(&ctx))
            .await
            .is_ok()
    );
    assert!(
        reconcile_object(Arc::new(policy(1)), Arc::clone(&ctx))
            .await
            .is_ok()
    );
    server.done().await;
}

#[tokio::test]
async fn a_name_too_long_for_a_label_is_reported_instead_of_applied() {
    let ca = ca();
    let (ctx, handle, inputs) = context(Arc::clone(&ca));
    let long = "s".repeat(64);
    let mut r = finalized(router());
    r.metadata.name = Some(long.clone());
    let mut report = Report::default();
    report.objects.insert(
        ObjectKey::new(Kind::Router, "chain", &long),
        ObjectFacts {
            generation: Some(1),
            router: Some(RouterFacts::default()),
            ..ObjectFacts::default()
        },
    );
    inputs.report.send_replace(Arc::new(report));
    let server = ApiServer::expect(
        handle,
        vec![
            Call::patch(&format!("{ROUTERS}/{long}/status"))
                .body(|b| {
                    let d = condition(&b["status"], "Degraded");
                    assert_eq!((&d["status"], &d["reason"]), (&json!("True"), &json!("WorkloadInvalid")));
                    assert!(d["message"].as_str().unwrap_or_default().contains("at most 63"));
                })
                .reply(200, to_json(&r)),
            Call::post("/apis/events.k8s.io/v1/namespaces/chain/events")
                .body(|b| assert_eq!(b["reason"], "WorkloadInvalid"))
                .reply(201, json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"}})),
        ],
    );
    assert!(
        reconcile_router(Arc::new(r), Arc::clone(&ctx))
            .await
            .is_ok()
    );
    server.done().await;
}

#[test]
fn the_serving_certificate_is_renewed_30_days_before_it_ends() {
    let now = now();
    let day = Duration::from_secs(86_400);
    let not_after = now + 365 * day;
    assert_eq!(super::until_renewal(not_after, now), 335 * day);
    assert_eq!(
        super::until_renewal(not_after, now + 335 * day),
        Duration::ZERO
    );
    assert_eq!(
        super::until_renewal(not_after, now + 400 * day),
        Duration::ZERO,
        "overdue: at once"
    );
}

// Leader election.

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/signpost/leases/signpost-operator";

fn lease_client(handle_for: &str) -> (LeaseClient, Handle) {
    let (service, handle) = tower_test::mock::pair::<
        http::Request<kube::client::Body>,
        http::Response<kube::client::Body>,
    >();
    let client = kube::Client::new(service, "default");
    let api: Api<Lease> = Api::namespaced(client, "signpost");
    (
        LeaseClient::new(api, LeaseSettings::new("signpost-operator", handle_for)),
        handle,
    )
}

fn lease(holder: &str, rv: &str) -> Value {
    to_json(&Lease {
        metadata: ObjectMeta {
            name: Some("signpost-operator".into()),
            namespace: Some("signpost".into()),
            resource_version: Some(rv.into()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        }),
    })
}

/// No Lease, then `holder` creates it.
fn lease_created(holder: &str) -> [Call; 2] {
    [
        Call::get(LEASE).not_found(),
        Call::post("/apis/coordination.k8s.io/v1/namespaces/signpost/leases")
            .reply(201, lease(holder, "1")),
    ]
}

/// The API server failing to read the Lease.
fn lease_failure() -> Call {
    Call::get(LEASE).reply(
        500,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "etcd", "code": 500}),
    )
}

#[tokio::test]
async fn the_lease_is_acquired_renewed_with_its_resource_version_and_lost() {
    let (mut client, handle) = lease_client("pod-a");
    let t0 = Instant::now();
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let server = ApiServer::expect(
        handle,
        vec![
            Call::get(LEASE).not_found(),
            Call::post("/apis/coordination.k8s.io/v1/namespaces/signpost/leases")
                .body(|b| {
                    assert_eq!(b["spec"]["holderIdentity"], "pod-a");
                    assert_eq!(b["spec"]["leaseDurationSeconds"], 15);
                    assert_eq!(b["spec"]["renewTime"], "2027-01-15T08:00:00.000000Z");
                })
                .reply(201, lease("pod-a", "1")),
            // Renewal: a replace carrying the version read.
            Call::get(LEASE).reply(200, lease("pod-a", "5")),
            Call::put(LEASE)
                .body(|b| {
                    assert_eq!(b["metadata"]["resourceVersion"], "5");
                    assert_eq!(b["spec"]["holderIdentity"], "pod-a");
                    assert_eq!(b["spec"]["renewTime"], "2027-01-15T08:00:02.000000Z");
                })
                .reply(200, lease("pod-a", "6")),
            // Someone else wrote the Lease in between (a renewal lost to a conflict)...
            Call::get(LEASE).reply(200, lease("pod-a", "6")),
            Call::put(LEASE).conflict(),
            // ...and now it is theirs: follow, write nothing.
            Call::get(LEASE).reply(200, lease("pod-b", "7")),
        ],
    );
    assert!(client.round(t0, wall).await, "acquired");
    assert!(
        client
            .round(t0 + Duration::from_secs(2), wall + Duration::from_secs(2))
            .await,
        "renewed"
    );
    assert!(
        !client
            .round(t0 + Duration::from_secs(4), wall + Duration::from_secs(4))
            .await,
        "a conflict loses leadership at once"
    );
    assert!(
        !client
            .round(t0 + Duration::from_secs(6), wall + Duration::from_secs(6))
            .await
    );
    server.done().await;
}

#[tokio::test]
async fn a_leader_that_cannot_renew_steps_down_before_its_lease_can_be_taken() {
    let (mut client, handle) = lease_client("pod-a");
    let t0 = Instant::now();
    let wall = SystemTime::now();
    let mut calls = Vec::from(lease_created("pod-a"));
    calls.extend([lease_failure(), lease_failure()]);
    let server = ApiServer::expect(handle, calls);
    assert!(client.round(t0, wall).await);
    assert!(
        client.round(t0 + Duration::from_secs(9), wall).await,
        "still leader within the renew deadline"
    );
    assert!(
        !client.round(t0 + Duration::from_secs(10), wall).await,
        "not leader after 10 s without renewing: others may take over after 15 s"
    );
    server.done().await;
}

#[tokio::test]
async fn a_held_lease_is_followed_then_taken_over_once_it_stood_still() {
    let (mut client, handle) = lease_client("pod-b");
    let t0 = Instant::now();
    let wall = SystemTime::now();
    let server = ApiServer::expect(
        handle,
        vec![
            Call::get(LEASE).reply(200, lease("pod-a", "7")),
            Call::get(LEASE).reply(200, lease("pod-a", "7")),
            Call::put(LEASE)
                .body(|b| {
                    assert_eq!(b["metadata"]["resourceVersion"], "7");
                    assert_eq!(b["spec"]["holderIdentity"], "pod-b");
                    assert_eq!(b["spec"]["leaseTransitions"], 1);
                })
                .reply(200, lease("pod-b", "8")),
        ],
    );
    assert!(!client.round(t0, wall).await);
    assert!(client.round(t0 + Duration::from_secs(15), wall).await);
    server.done().await;
}

/// A leader whose renewal hangs steps down at its renew deadline (10 s after its last write),
/// before anyone may take over (15 s): not when the hung round finally returns, nor a round
/// later.
#[tokio::test(start_paused = true)]
async fn a_leader_whose_renewal_hangs_steps_down_at_the_renew_deadline() {
    let (client, handle) = lease_client("pod-a");
    // t = 0: created, leader until t = 10.
    let mut calls = Vec::from(lease_created("pod-a"));
    calls.extend([
        // t = 2, 4, 6: the API server fails; t = 8: it hangs past the deadline.
        lease_failure(),
        lease_failure(),
        lease_failure(),
        Call::get(LEASE).unanswered(),
        // On shutdown the replica reads the Lease to release it: someone else's by then.
        Call::get(LEASE).reply(200, lease("pod-b", "9")),
    ]);
    let server = ApiServer::expect(handle, calls);
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let start = tokio::time::Instant::now();
    let run = tokio::spawn(client.run(tx, async {
        let _ = stopped.await;
    }));
    assert!(rx.wait_for(|l| *l).await.is_ok(), "acquired");
    assert!(rx.wait_for(|l| !*l).await.is_ok(), "stepped down");
    let stepped = start.elapsed();
    assert!(
        stepped <= Duration::from_secs(10),
        "still published as leader {stepped:?} after its last renewal"
    );
    let _ = stop.send(());
    assert!(run.await.is_ok());
    server.done().await;
}

/// Leadership lost in the middle of a reconcile: the reconcile stops before its next write.
#[tokio::test]
async fn a_leader_that_loses_the_lease_mid_reconcile_stops_writing() {
    let ca = ca();
    let (ctx, handle, inputs) = context(Arc::clone(&ca));
    inputs.report.send_replace(router_report(vec![]));
    let leader = Arc::clone(&inputs.leader);
    let server = ApiServer::expect(
        handle,
        vec![
            // Reading the identity Secret, the Lease is lost: no Secret, ServiceAccount,
            // Deployment or status is written after it.
            Call::get("/api/v1/namespaces/chain/secrets/signpost-router-store-1-tls")
                .then(move || {
                    leader.send_replace(false);
                })
                .not_found(),
        ],
    );
    let result = reconcile_router(Arc::new(finalized(router())), Arc::clone(&ctx)).await;
    assert!(
        matches!(result, Err(super::reconcile::Error::NotLeader)),
        "{result:?}"
    );
    server.done().await;
}

// Bootstrap tokens in Secrets.

fn token_secret(record: &TokenRecord, rv: &str, used: bool) -> Value {
    let mut s = tokens::token_secret(record, "chain");
    s.metadata.resource_version = Some(rv.into());
    if used {
        s.metadata.annotations = Some(BTreeMap::from([
            (
                tokens::USED_AT.to_string(),
                "2027-01-15T07:59:00Z".to_string(),
            ),
            (tokens::USED_BY.to_string(), "192.0.2.9:40000".to_string()),
        ]));
    }
    to_json(&s)
}

/// Cluster-mode tokens on the mock API, Router `store-1` compiled: the store, the handle, a
/// token minted for `store-1` with its record, and the path of its Secret.
fn token_store() -> (SecretTokens, Handle, Token, TokenRecord, String) {
    let (ctx, handle, inputs) = context(ca());
    inputs.report.send_replace(router_report(vec![]));
    let store = SecretTokens::new(ctx.client.clone(), ctx.report.clone());
    let (token, record) =
        TokenRecord::mint("store-1", Duration::from_secs(3600), now()).expect("mint");
    let path = format!(
        "/api/v1/namespaces/chain/secrets/signpost-bootstrap-{}",
        token.id()
    );
    (store, handle, token, record, path)
}

#[tokio::test]
async fn a_token_secret_is_redeemed_under_its_resource_version_and_a_race_is_lost_cleanly() {
    let (store, handle, token, record, path) = token_store();
    let first = token_secret(&record, "41", false);
    let server = ApiServer::expect(
        handle,
        vec![
            Call::get(&path).reply(200, first.clone()),
            Call::patch(&path)
                .body(|b| {
                    assert_eq!(b["metadata"]["resourceVersion"], "41");
                    assert_eq!(
                        b["metadata"]["annotations"][tokens::USED_BY],
                        "192.0.2.7:50000"
                    );
                })
                .reply(200, first.clone()),
            // A second router with the same token, racing: its patch conflicts, the re-read
            // shows the token used.
            Call::get(&path).reply(200, first),
            Call::patch(&path).conflict(),
            Call::get(&path).reply(200, token_secret(&record, "42", true)),
            // A token for a router no Router object has.
        ],
    );
    let redeemed = store
        .redeem("store-1", &token, "192.0.2.7:50000", now())
        .await
        .expect("redeemed");
    assert_eq!(
        redeemed.uid.as_deref(),
        Some("uid-1"),
        "the certificate is bound to the Router"
    );
    let raced = store
        .redeem("store-1", &token, "192.0.2.8:50000", now())
        .await;
    assert!(
        matches!(&raced, Err(Refusal::Used { by, .. }) if by == "192.0.2.9:40000"),
        "{raced:?}"
    );
    let nobody = store.redeem("store-9", &token, "x", now()).await;
    assert!(
        matches!(nobody, Err(Refusal::NoSuchRouter { .. })),
        "{nobody:?}"
    );
    server.done().await;
}

/// A token Secret read without a resourceVersion cannot be marked used under a precondition:
/// the redemption is refused (retryable) instead of patched unguarded.
#[tokio::test]
async fn a_token_secret_without_a_resource_version_is_not_redeemed_unguarded() {
    let (store, handle, token, record, path) = token_store();
    let mut secret = token_secret(&record, "1", false);
    if let Some(m) = secret["metadata"].as_object_mut() {
        m.remove("resourceVersion");
    }
    let server = ApiServer::expect(handle, vec![Call::get(&path).reply(200, secret)]);
    let refused = store
        .redeem("store-1", &token, "192.0.2.7:50000", now())
        .await;
    assert!(
        matches!(&refused, Err(Refusal::Unavailable(why)) if why.contains("resourceVersion")),
        "{refused:?}"
    );
    server.done().await;
}

// The CA Secret.

#[tokio::test]
async fn the_ca_secret_is_created_once_and_a_replica_that_loses_the_race_reads_the_winners() {
    use super::ca;
    let (service, handle) = tower_test::mock::pair::<
        http::Request<kube::client::Body>,
        http::Response<kube::client::Body>,
    >();
    let client = kube::Client::new(service, "default");
    let api: Api<Secret> = Api::namespaced(client, "signpost");
    let path = "/api/v1/namespaces/signpost/secrets/signpost-ca";
    let created = Arc::new(Mutex::new(Value::Null));
    let keep = Arc::clone(&created);
    let server = ApiServer::expect(
        handle,
        vec![
            Call::get(path).not_found(),
            Call::post("/api/v1/namespaces/signpost/secrets")
                .body(move |b| {
                    let s: Secret = serde_json::from_value(b.clone()).expect("a Secret");
                    let keys: Vec<String> = s.data.unwrap_or_default().keys().cloned().collect();
                    assert_eq!(keys, ["ca.key", "ca.pem", "key-master"]);
                    if let Ok(mut k) = keep.lock() {
                        *k = b.clone();
                    }
                })
                .conflict(),
            // Another replica was first: the Secret is read again. The script answers with
            // what this replica tried to create, standing in for the winner's.
            Call::get(path).reply_later(move || last(&created)),
        ],
    );
    let loaded = ca::load_or_create(&api, "signpost-ca").await;
    server.done().await;
    let loaded = loaded.expect("the winner's CA");
    assert!(loaded.ca.cert_pem().contains("BEGIN CERTIFICATE"));
}
