//! The reconcilers: what the leader does for one object. Non-leaders return at once and write
//! nothing, and every write checks leadership again just before it is sent
//! ([`Error::NotLeader`]): a replica that loses the Lease in the middle of a reconcile stops
//! there instead of finishing it with a leader's writes.
//!
//! * **Tenant, Service, Policy**: status from the last compile ([`super::status`]), written
//!   with server-side apply to the status subresource when it changed, plus Events for
//!   transitions.
//! * **Router**: under the `signpost.dev/cleanup` finalizer —
//!   1. its workload ([`super::workloads`]): the identity Secret (issued when missing, from
//!      another CA, bound to another uid, or within 30 days of expiry; certificates last 90
//!      days), the ServiceAccount and the Deployment or DaemonSet, all server-side applied
//!      with field manager `signpost-operator`; the other of Deployment/DaemonSet is deleted
//!      when `perNode` changes. What was applied is remembered, so a reconcile caused by a
//!      router's Ack does not apply everything again; it is applied again when the Router's
//!      spec or the operator's settings change, the workload disappears from the cache, the
//!      certificate nears expiry, or 10 minutes have passed.
//!   2. its status: conditions from the compile and the router's Ack/Nack, `configVersion`,
//!      `appliedVersion`, `peers`.
//!
//!   On deletion the finalizer deletes the Router's bootstrap-token Secrets (tokens may be
//!   minted before the Router exists, so they are not owned by it); garbage collection removes
//!   the owned workload and identity Secret, and the certificates bound to the Router's uid
//!   stop being accepted (see [`crate::distribution::Distribution::bind_identities`]).
//!
//! The status of a generation the compiler has not seen yet is not written: the compile that
//! follows the change triggers the reconcile again, so `observedGeneration` never claims a
//! generation whose diagnostics are not in.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ObjectReference, Secret, ServiceAccount};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{self, finalizer};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::Context;
use super::status::{self, Transition};
use super::tokens;
use super::workloads::{self, App, FIELD_MANAGER, WorkloadError};
use super::world::{Kind, ObjectKey, RouterFacts};
use crate::crd::{Policy, Router, RouterStatus, Service, Status, Tenant};
use crate::identity::{self, CA_CERT_FILE, CERT_FILE, KEY_FILE, Validity};

/// The Router finalizer.
pub const FINALIZER: &str = "signpost.dev/cleanup";
/// Router certificates issued into identity Secrets last this long...
pub const IDENTITY_DAYS: u32 = 90;
/// ...and are issued again when less than this is left.
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 86_400);
/// Workloads are applied again at least this often (drift correction).
pub const REAPPLY: Duration = Duration::from_secs(600);

/// Why a reconcile failed. Variant names are the `result` label of the reconcile metric.
#[derive(Debug)]
pub enum Error {
    /// An API call failed; `doing` says which.
    Kube { doing: String, error: kube::Error },
    /// A certificate could not be issued.
    Identity(String),
    /// The finalizer machinery refused the object.
    Finalizer(String),
    /// This replica lost the Lease during the reconcile; the new leader reconciles everything.
    NotLeader,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kube { doing, error } => write!(f, "{doing}: {error}"),
            Self::Identity(e) => write!(f, "issuing the router's certificate: {e}"),
            Self::Finalizer(e) => write!(f, "finalizer: {e}"),
            Self::NotLeader => write!(f, "lost the leader Lease; stopped before writing"),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube { .. } => "Kube",
            Self::Identity(_) => "Identity",
            Self::Finalizer(_) => "Finalizer",
            Self::NotLeader => "NotLeader",
        }
    }
}

/// Called before every write: `Err` once this replica is no longer leader.
fn leading(ctx: &Context) -> Result<(), Error> {
    if ctx.is_leader() {
        Ok(())
    } else {
        Err(Error::NotLeader)
    }
}

fn kube_error(doing: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let doing = doing.into();
    move |error| Error::Kube { doing, error }
}

/// The kinds whose status is only what the compiler says.
pub trait Reported:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + fmt::Debug
    + Send
    + Sync
    + 'static
{
    const KIND: Kind;
    fn status(&self) -> Option<&Status>;
}

impl Reported for Tenant {
    const KIND: Kind = Kind::Tenant;
    fn status(&self) -> Option<&Status> {
        self.status.as_ref()
    }
}

impl Reported for Service {
    const KIND: Kind = Kind::Service;
    fn status(&self) -> Option<&Status> {
        self.status.as_ref()
    }
}

impl Reported for Policy {
    const KIND: Kind = Kind::Policy;
    fn status(&self) -> Option<&Status> {
        self.status.as_ref()
    }
}

fn key_of<K: Resource>(kind: Kind, obj: &K) -> ObjectKey {
    ObjectKey::new(
        kind,
        obj.meta().namespace.as_deref().unwrap_or_default(),
        obj.meta().name.as_deref().unwrap_or_default(),
    )
}

/// Publishes the Events for `transitions`. Events are for people: a failure is logged, not
/// retried.
async fn publish(ctx: &Context, reference: &ObjectReference, transitions: &[Transition]) {
    for t in transitions {
        if !ctx.is_leader() {
            return;
        }
        let event = Event {
            type_: if t.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: t.reason.clone(),
            // An Event's note holds 1 KiB (bytes, not characters): longer, it is refused.
            note: Some(status::shorten(t.note.clone(), 1024)),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, reference).await {
            tracing::warn!(
                object = reference.name.as_deref().unwrap_or(""),
                "publishing event {}: {e}",
                t.reason
            );
        }
    }
}

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Tenant, Service or Policy.
pub async fn reconcile_object<K: Reported>(
    obj: Arc<K>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    if !ctx.is_leader() {
        return Ok(Action::await_change());
    }
    let key = key_of(K::KIND, obj.as_ref());
    let facts = ctx.report.borrow().get(&key).cloned();
    let Some(facts) = facts.filter(|f| f.generation == obj.meta().generation) else {
        // Not compiled yet: the compile will trigger this object again.
        return Ok(Action::await_change());
    };
    let old = obj.status().cloned().unwrap_or_default();
    let conditions = status::conditions(
        &old.conditions,
        &status::object_conditions(&facts),
        facts.generation,
        ctx.now(),
    );
    if status::changed(&old.conditions, &conditions) || old.observed_generation != facts.generation
    {
        let new = Status {
            observed_generation: facts.generation,
            conditions,
        };
        let body = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": new,
        });
        let api: Api<K> = Api::namespaced(ctx.client.clone(), &key.namespace);
        leading(&ctx)?;
        api.patch_status(&key.name, &apply_params(), &Patch::Apply(&body))
            .await
            .map_err(kube_error(format!(
                "writing the status of {} {}/{}",
                K::KIND.as_str(),
                key.namespace,
                key.name
            )))?;
        publish(
            &ctx,
            &obj.object_ref(&()),
            &status::transitions(&old.conditions, &new.conditions),
        )
        .await;
    }
    Ok(Action::await_change())
}

/// A Router.
pub async fn reconcile_router(router: Arc<Router>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !ctx.is_leader() {
        return Ok(Action::await_change());
    }
    let ns = router.namespace().unwrap_or_default();
    let api: Api<Router> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, router, |event| async {
        match event {
            finalizer::Event::Apply(r) => apply_router(&r, &ctx).await,
            finalizer::Event::Cleanup(r) => cleanup_router(&r, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        finalizer::Error::AddFinalizer(error) => Error::Kube {
            doing: "adding the finalizer".into(),
            error,
        },
        finalizer::Error::RemoveFinalizer(error) => Error::Kube {
            doing: "removing the finalizer".into(),
            error,
        },
        other => Error::Finalizer(other.to_string()),
    })
}

/// What was last applied for a Router.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    fingerprint: [u8; 32],
    at: SystemTime,
    /// When the identity Secret's certificate is to be issued again.
    renew_at: SystemTime,
    /// `Deployment` or `DaemonSet`, and its name.
    workload: (&'static str, String),
}

async fn apply_router(router: &Router, ctx: &Context) -> Result<Action, Error> {
    let now = ctx.now();
    let workload_error = match ensure_workload(router, ctx, now).await {
        Ok(()) => None,
        Err(Failure::Invalid(e)) => Some(e),
        Err(Failure::Api(e)) => return Err(e),
    };
    write_router_status(router, ctx, workload_error.as_ref(), now).await?;
    Ok(Action::requeue(REAPPLY))
}

enum Failure {
    /// The Router asks for something that cannot be built; reported in its status.
    Invalid(WorkloadError),
    Api(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Self::Api(e)
    }
}

async fn ensure_workload(router: &Router, ctx: &Context, now: SystemTime) -> Result<(), Failure> {
    let key = key_of(Kind::Router, router);
    let sa = workloads::service_account(router).map_err(Failure::Invalid)?;
    let app = workloads::app(router, &ctx.workloads).map_err(Failure::Invalid)?;
    let (kind, name) = match &app {
        App::Deployment(d) => ("Deployment", d.name_any()),
        App::DaemonSet(d) => ("DaemonSet", d.name_any()),
    };
    let fingerprint: [u8; 32] = {
        let mut h = Sha256::new();
        h.update(serde_json::to_vec(&sa).unwrap_or_default());
        match &app {
            App::Deployment(d) => h.update(serde_json::to_vec(d).unwrap_or_default()),
            App::DaemonSet(d) => h.update(serde_json::to_vec(d).unwrap_or_default()),
        }
        h.update(router.uid().unwrap_or_default());
        h.finalize().into()
    };
    let remembered = ctx.applied(&key);
    let fresh = remembered.as_ref().is_some_and(|a| {
        a.fingerprint == fingerprint
            && now < a.at + REAPPLY
            && now < a.renew_at
            && ctx.workload_cached(&key.namespace, a.workload.0, &a.workload.1)
    });
    if fresh {
        return Ok(());
    }
    let ns = &key.namespace;
    let renew_at = ensure_identity(router, ctx, now).await?;

    let sas: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), ns);
    leading(ctx)?;
    sas.patch(&sa.name_any(), &apply_params(), &Patch::Apply(&sa))
        .await
        .map_err(kube_error(format!(
            "applying ServiceAccount {ns}/{}",
            sa.name_any()
        )))?;
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    let daemonsets: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), ns);
    let generation = match &app {
        App::Deployment(d) => {
            leading(ctx)?;
            let applied = deployments
                .patch(&name, &apply_params(), &Patch::Apply(d))
                .await
                .map_err(kube_error(format!("applying Deployment {ns}/{name}")))?;
            if ctx.workload_cached(ns, "DaemonSet", &name) {
                leading(ctx)?;
                delete_absent(&daemonsets, &name).await?;
            }
            applied.metadata.generation
        }
        App::DaemonSet(d) => {
            leading(ctx)?;
            let applied = daemonsets
                .patch(&name, &apply_params(), &Patch::Apply(d))
                .await
                .map_err(kube_error(format!("applying DaemonSet {ns}/{name}")))?;
            if ctx.workload_cached(ns, "Deployment", &name) {
                leading(ctx)?;
                delete_absent(&deployments, &name).await?;
            }
            applied.metadata.generation
        }
    };
    if remembered.is_none() && generation == Some(1) {
        let transition = Transition {
            warning: false,
            reason: "WorkloadCreated".into(),
            note: format!("created {kind} {name} running {}", ctx.workloads.image),
        };
        publish(ctx, &router.object_ref(&()), &[transition]).await;
    }
    ctx.remember(
        key,
        Applied {
            fingerprint,
            at: now,
            renew_at,
            workload: (kind, name),
        },
    );
    Ok(())
}

/// Deletes `name` if it exists: the Router changed between Deployment and DaemonSet. Called
/// only when the cache of the operator's workloads holds it (always without a cache): every
/// periodic re-apply of every Router would otherwise cost a DELETE answered 404.
async fn delete_absent<K>(api: &Api<K>, name: &str) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + fmt::Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(error) => Err(Error::Kube {
            doing: format!("deleting the previous workload {name}"),
            error,
        }),
    }
}

/// Makes sure the identity Secret holds a certificate for this Router (name and uid), from the
/// current CA, far enough from expiry; returns when it should be issued again.
async fn ensure_identity(
    router: &Router,
    ctx: &Context,
    now: SystemTime,
) -> Result<SystemTime, Failure> {
    let name = router.name_any();
    let ns = router.namespace().unwrap_or_default();
    let secret_name = workloads::secret_name(&name);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let existing = secrets
        .get_opt(&secret_name)
        .await
        .map_err(kube_error(format!("reading Secret {ns}/{secret_name}")))?;
    let uid = router.uid();
    if let Some(not_after) = existing
        .as_ref()
        .and_then(|s| current_identity(s, &name, uid.as_deref(), ctx.ca.cert_pem()))
        && let Some(renew_at) = not_after.checked_sub(RENEW_BEFORE)
        && now < renew_at
    {
        return Ok(renew_at);
    }
    let issued = ctx
        .ca
        .issue_router_bound(
            &name,
            uid.as_deref(),
            Validity::days_from_now(IDENTITY_DAYS),
        )
        .map_err(|e| Error::Identity(e.to_string()))?;
    let secret = workloads::identity_secret(router, &issued).map_err(Failure::Invalid)?;
    leading(ctx)?;
    secrets
        .patch(&secret_name, &apply_params(), &Patch::Apply(&secret))
        .await
        .map_err(kube_error(format!("applying Secret {ns}/{secret_name}")))?;
    let transition = Transition {
        warning: false,
        reason: "IdentityIssued".into(),
        note: format!(
            "issued router `{name}`'s certificate for {IDENTITY_DAYS} days into Secret \
             {secret_name}"
        ),
    };
    publish(ctx, &router.object_ref(&()), &[transition]).await;
    let lifetime = Duration::from_secs(u64::from(IDENTITY_DAYS) * 86_400);
    Ok(now + lifetime - RENEW_BEFORE)
}

/// The expiry of the identity in `secret`, if it is one this operator would issue now.
fn current_identity(
    secret: &Secret,
    router: &str,
    uid: Option<&str>,
    ca_pem: &str,
) -> Option<SystemTime> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let data = secret.data.as_ref()?;
    if data.get(CA_CERT_FILE)?.0 != ca_pem.as_bytes() || !data.contains_key(KEY_FILE) {
        return None;
    }
    let cert = CertificateDer::from_pem_slice(&data.get(CERT_FILE)?.0).ok()?;
    let id = identity::router_identity(&cert).ok()?;
    (id.name == router && id.uid.as_deref() == uid).then_some(id.not_after)
}

async fn write_router_status(
    router: &Router,
    ctx: &Context,
    workload_error: Option<&WorkloadError>,
    now: SystemTime,
) -> Result<(), Error> {
    let key = key_of(Kind::Router, router);
    let facts = ctx.report.borrow().get(&key).cloned();
    let Some(facts) = facts.filter(|f| f.generation == router.metadata.generation) else {
        return Ok(());
    };
    let state = ctx.routers.borrow().get(&key.name).cloned();
    let workload_error = workload_error.map(|e| ("WorkloadInvalid", e.0.as_str()));
    let (want, fields) = status::router_conditions(
        &facts,
        &facts.router.clone().unwrap_or_else(RouterFacts::default),
        state.as_ref(),
        workload_error,
    );
    let old = router.status.clone().unwrap_or_default();
    let conditions = status::conditions(&old.conditions, &want, facts.generation, now);
    let new = RouterStatus {
        observed_generation: facts.generation,
        conditions,
        config_version: fields.config_version,
        applied_version: fields.applied_version,
        peers: fields.peers,
    };
    let unchanged = !status::changed(&old.conditions, &new.conditions)
        && old.observed_generation == new.observed_generation
        && old.config_version == new.config_version
        && old.applied_version == new.applied_version
        && old.peers == new.peers;
    if unchanged {
        return Ok(());
    }
    let body = serde_json::json!({
        "apiVersion": Router::api_version(&()),
        "kind": Router::kind(&()),
        "status": new,
    });
    let api: Api<Router> = Api::namespaced(ctx.client.clone(), &key.namespace);
    leading(ctx)?;
    api.patch_status(&key.name, &apply_params(), &Patch::Apply(&body))
        .await
        .map_err(kube_error(format!(
            "writing the status of Router {}/{}",
            key.namespace, key.name
        )))?;
    publish(
        ctx,
        &router.object_ref(&()),
        &status::transitions(&old.conditions, &new.conditions),
    )
    .await;
    Ok(())
}

async fn cleanup_router(router: &Router, ctx: &Context) -> Result<Action, Error> {
    let name = router.name_any();
    let ns = router.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    leading(ctx)?;
    let deleted = tokens::delete_for_router(&secrets, &name)
        .await
        .map_err(kube_error(format!(
            "deleting the bootstrap tokens of Router {ns}/{name}"
        )))?;
    ctx.forget(&key_of(Kind::Router, router));
    let note = format!(
        "deleted {deleted} bootstrap token(s); the workload and identity Secret go with the \
         Router, and certificates issued for it are no longer accepted"
    );
    tracing::info!(router = name.as_str(), namespace = ns.as_str(), "{note}");
    let transition = Transition {
        warning: false,
        reason: "CleanedUp".into(),
        note,
    };
    publish(ctx, &router.object_ref(&()), &[transition]).await;
    Ok(Action::await_change())
}

/// After a failed reconcile: log, count, retry in 30 s — except after losing the Lease, when
/// the next leader (this replica again, perhaps) reconciles everything on taking over.
pub fn error_policy<K: Resource>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    if matches!(error, Error::NotLeader) {
        return Action::await_change();
    }
    tracing::warn!(
        object = obj.meta().name.as_deref().unwrap_or(""),
        namespace = obj.meta().namespace.as_deref().unwrap_or(""),
        "reconcile failed: {error}"
    );
    let _ = ctx;
    Action::requeue(Duration::from_secs(30))
}
