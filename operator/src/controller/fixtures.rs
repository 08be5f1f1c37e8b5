//! The mock API server of the controller tests, in the style of kube-rs's controller-rs
//! `ApiServerVerifier`: a test lists the API calls it expects, in order — method, path, what
//! the body must say — and the answer to each. The verifier fails the test on a call out of
//! order, a body that does not say what it must, a call that never comes, any call after the
//! last expected one, and any call the operator's RBAC ([`super::rbac::GRANTS`], which the
//! chart renders) would refuse.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use serde_json::Value;
use tokio::sync::{oneshot, watch};

use super::Context;
use super::workloads::WorkloadSettings;
use super::world::Report;
use crate::distribution::RouterState;
use crate::identity::CertificateAuthority;

pub type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// How long the verifier waits for an expected call.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// One expected API call.
pub struct Call {
    method: http::Method,
    /// The path without the query.
    path: String,
    /// Checks on the query string (`labelSelector=...`, `fieldManager=...`).
    query: Vec<String>,
    check: Box<dyn Fn(&Value) + Send>,
    status: StatusCode,
    reply: Value,
    /// Computes the reply when the call comes (from what earlier calls carried).
    reply_later: Option<Box<dyn Fn() -> Value + Send>>,
    /// Runs when the call comes, before the reply (the world changing meanwhile).
    then: Option<Box<dyn Fn() + Send>>,
    /// Never answered: the client waits until it gives up.
    unanswered: bool,
}

impl Call {
    fn new(method: http::Method, path: &str) -> Self {
        Self {
            method,
            path: path.to_string(),
            query: Vec::new(),
            check: Box::new(|_| {}),
            status: StatusCode::OK,
            reply: Value::Null,
            reply_later: None,
            then: None,
            unanswered: false,
        }
    }

    pub fn method(&self) -> &http::Method {
        &self.method
    }

    pub fn get(path: &str) -> Self {
        Self::new(http::Method::GET, path)
    }

    pub fn post(path: &str) -> Self {
        Self::new(http::Method::POST, path)
    }

    pub fn put(path: &str) -> Self {
        Self::new(http::Method::PUT, path)
    }

    pub fn patch(path: &str) -> Self {
        Self::new(http::Method::PATCH, path)
    }

    pub fn delete(path: &str) -> Self {
        Self::new(http::Method::DELETE, path)
    }

    /// The query string must contain `part` (for example `fieldManager=signpost-operator`).
    pub fn query(mut self, part: &str) -> Self {
        self.query.push(part.to_string());
        self
    }

    /// Checks the request body (JSON).
    pub fn body(mut self, check: impl Fn(&Value) + Send + 'static) -> Self {
        self.check = Box::new(check);
        self
    }

    pub fn reply(mut self, status: u16, body: Value) -> Self {
        self.status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        self.reply = body;
        self
    }

    /// Replies 200 with what `reply` returns when the call comes.
    pub fn reply_later(mut self, reply: impl Fn() -> Value + Send + 'static) -> Self {
        self.reply_later = Some(Box::new(reply));
        self
    }

    /// Runs `f` when the call comes, before it is answered.
    pub fn then(mut self, f: impl Fn() + Send + 'static) -> Self {
        self.then = Some(Box::new(f));
        self
    }

    /// The API server never answers this call (the connection hangs).
    pub fn unanswered(mut self) -> Self {
        self.unanswered = true;
        self
    }

    /// The API server's answer for a missing object.
    pub fn not_found(self) -> Self {
        self.reply(
            404,
            serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": "not found", "reason": "NotFound", "code": 404
            }),
        )
    }

    pub fn conflict(self) -> Self {
        self.reply(
            409,
            serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": "the object has been modified", "reason": "Conflict", "code": 409
            }),
        )
    }
}

/// The running verifier.
pub struct ApiServer {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<(Vec<String>, Handle)>,
}

impl ApiServer {
    /// Answers `calls` in order, then refuses (and records) anything else.
    pub fn expect(mut handle: Handle, calls: Vec<Call>) -> Self {
        let (stop, mut stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            // Answers held back from calls that are never answered.
            let mut held = Vec::new();
            for (i, call) in calls.into_iter().enumerate() {
                let next = tokio::time::timeout(CALL_TIMEOUT, handle.next_request()).await;
                let Ok(Some((request, send))) = next else {
                    panic!(
                        "expected call #{} ({} {}) never came",
                        i + 1,
                        call.method,
                        call.path
                    );
                };
                let method = request.method().clone();
                let path = request.uri().path().to_string();
                let query = request.uri().query().unwrap_or("").to_string();
                let apply = request
                    .headers()
                    .get(http::header::CONTENT_TYPE)
                    .is_some_and(|t| t.as_bytes().starts_with(b"application/apply-patch"));
                permitted(i, method.as_str(), &path, &query, apply);
                assert_eq!(
                    (&method, path.as_str()),
                    (&call.method, call.path.as_str()),
                    "call #{} is not the one expected",
                    i + 1
                );
                for part in &call.query {
                    assert!(
                        query.contains(part.as_str()),
                        "call #{} ({method} {path}): query `{query}` lacks `{part}`",
                        i + 1
                    );
                }
                let bytes = request
                    .into_body()
                    .collect_bytes()
                    .await
                    .unwrap_or_default();
                let body: Value = if bytes.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                        panic!("call #{} ({method} {path}): body is not JSON: {e}", i + 1)
                    })
                };
                (call.check)(&body);
                if let Some(then) = &call.then {
                    then();
                }
                if call.unanswered {
                    held.push(send);
                    continue;
                }
                let reply = match &call.reply_later {
                    Some(later) => later(),
                    None => call.reply,
                };
                let reply = serde_json::to_vec(&reply).unwrap_or_default();
                let response = Response::builder()
                    .status(call.status)
                    .header("content-type", "application/json")
                    .body(Body::from(reply));
                match response {
                    Ok(r) => send.send_response(r),
                    Err(e) => panic!("building the reply: {e}"),
                }
            }
            // Anything after the script is a call the test did not expect.
            let mut unexpected = Vec::new();
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    next = handle.next_request() => match next {
                        Some((request, send)) => {
                            unexpected.push(format!("{} {}", request.method(), request.uri()));
                            let response = Response::builder()
                                .status(StatusCode::INTERNAL_SERVER_ERROR)
                                .body(Body::from(Vec::new()));
                            if let Ok(r) = response {
                                send.send_response(r);
                            }
                        }
                        None => break,
                    },
                }
            }
            drop(held);
            (unexpected, handle)
        });
        Self { stop, task }
    }

    /// Ends the verification: every expected call came, in order, and nothing else. Returns
    /// the handle for the test's next script.
    pub async fn done(self) -> Handle {
        // Give a stray call a moment to arrive.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = self.stop.send(());
        match self.task.await {
            Ok((unexpected, handle)) => {
                assert!(
                    unexpected.is_empty(),
                    "calls no test expected: {unexpected:?}"
                );
                handle
            }
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("the verifier stopped: {e}"),
        }
    }
}

/// Fails the test when the operator's RBAC would refuse the call: every call the code makes
/// must be granted by the chart. A server-side apply needs `create` too (it creates the
/// object when absent), except on a subresource.
fn permitted(i: usize, method: &str, path: &str, query: &str, apply: bool) {
    let Some((group, resource, verb)) = super::rbac::request_attributes(method, path, query) else {
        panic!("call #{} ({method} {path}) names no resource", i + 1);
    };
    let mut verbs = vec![verb];
    if apply && !resource.contains('/') {
        verbs.push("create");
    }
    for verb in verbs {
        assert!(
            super::rbac::allows(&group, &resource, verb),
            "call #{} ({method} {path}): the operator's RBAC does not grant `{verb}` on \
             `{resource}` (group `{group}`): add it to controller::rbac::GRANTS and the chart",
            i + 1
        );
    }
}

/// The inputs a test controls.
pub struct Inputs {
    pub report: watch::Sender<Arc<Report>>,
    pub routers: watch::Sender<std::collections::BTreeMap<String, RouterState>>,
    /// Shared, so that a [`Call::then`] can take leadership away mid-reconcile.
    pub leader: Arc<watch::Sender<bool>>,
}

/// A fixed clock: 2027-01-15T08:00:00Z.
pub fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

/// A context whose client talks to the mock; leader unless told otherwise.
pub fn context(ca: Arc<CertificateAuthority>) -> (Arc<Context>, Handle, Inputs) {
    context_with(ca, |_| {})
}

/// [`context`], changed by `adjust` before it is shared (caches of workloads, say).
pub fn context_with(
    ca: Arc<CertificateAuthority>,
    adjust: impl FnOnce(&mut Context),
) -> (Arc<Context>, Handle, Inputs) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let (report, report_rx) = watch::channel(Arc::new(Report::default()));
    let (routers, routers_rx) = watch::channel(Default::default());
    let (leader, leader_rx) = watch::channel(true);
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "signpost-operator".into(),
            instance: Some("signpost-operator-0".into()),
        },
    );
    let mut ctx = Context::new(
        client,
        recorder,
        report_rx,
        routers_rx,
        leader_rx,
        WorkloadSettings {
            image: "registry.example/signpost-router:1.2.3".into(),
            distribution_endpoint: "https://signpost-operator.signpost.svc:7443".into(),
        },
        ca,
    );
    ctx.clock = Arc::new(now);
    adjust(&mut ctx);
    (
        Arc::new(ctx),
        handle,
        Inputs {
            report,
            routers,
            leader: Arc::new(leader),
        },
    )
}
