//! Cluster mode: the operator against the Kubernetes API (`signpost-operator` without
//! `--manifests`).
//!
//! Every replica runs the same pipeline as local mode, fed by the API server instead of a
//! directory: reflectors of Tenant, Service, Policy and Router ([`world`]) → one incremental
//! compile per namespace → [`Distribution::publish`], so routers may dial any replica. The
//! leader ([`lease`]) also writes: status on every object ([`status`], [`reconcile`]), the
//! router workloads ([`workloads`]) and Events. The operator never writes `spec`, so GitOps
//! tools see no drift; on Routers it adds one finalizer (`signpost.dev/cleanup`).
//!
//! | module | owns |
//! |---|---|
//! | [`world`] | reflectors, the snapshot, the compile across namespaces, the [`world::Report`] status is made from |
//! | [`status`] | conditions and Events from the report and the routers' Ack/Nack (pure) |
//! | [`workloads`] | ServiceAccount, identity Secret, Deployment/DaemonSet for a Router (pure) |
//! | [`reconcile`] | the reconcilers, the finalizer, applying workloads and status |
//! | [`lease`] | leader election on a `coordination.k8s.io/v1` Lease |
//! | [`ca`] | the CA Secret (CA and peer-key master) |
//! | [`tokens`] | bootstrap tokens as Secrets |
//! | [`rbac`] | the API permissions all of the above need |
//!
//! # Command line
//!
//! ```text
//! signpost-operator --listen 0.0.0.0:7443 --metrics 0.0.0.0:9090 \
//!   [--namespace NS]            # watch only NS (default: all namespaces)
//!   [--ca-secret signpost-ca]   # in the operator's namespace: ca.pem, ca.key, key-master; created when absent
//!   [--server-name NAME ...]    # DNS names in the serving certificate (default signpost-operator.NS.svc and kin)
//!   [--router-image IMAGE]      # default ghcr.io/signpost-dev/signpost-router:<version>
//!   [--distribution-endpoint URL]  # what router pods dial (default https://signpost-operator.NS.svc:PORT)
//!   [--lease-name signpost-operator]
//! ```
//!
//! Environment: `POD_NAMESPACE` (the operator's namespace) and `POD_NAME` (its Lease
//! identity), from the downward API. Probes: `GET /healthz` and `/readyz` on the metrics port
//! (ready once the caches synced and the first compile is served).
//!
//! # RBAC
//!
//! What the operator's ServiceAccount needs — no more — is [`rbac::GRANTS`]: the chart renders
//! it, the READMEs table it, and the controller tests fail on any call it does not grant.
//!
//! Router workloads are created in the Router's namespace, which must admit pods with
//! `NET_ADMIN`, `NET_RAW`, `BPF`, `IPC_LOCK` (and host networking where asked for): Pod
//! Security `privileged` for that namespace.

pub mod ca;
pub mod lease;
pub mod rbac;
pub mod reconcile;
pub mod status;
pub mod tokens;
pub mod workloads;
pub mod world;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::controller::Controller;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use tokio::sync::{Notify, mpsc, watch};
use tokio_stream::wrappers::{UnboundedReceiverStream, WatchStream};

use crate::bootstrap::Enrollment;
use crate::compiler::{Options, Severity};
use crate::crd::{Policy, Router, Service, Tenant};
use crate::distribution::{self, Distribution, RouterState, ServingCert};
use crate::identity::{CertificateAuthority, Validity};
use crate::metrics::Metrics;
use reconcile::Applied;
use workloads::WorkloadSettings;
use world::{ClusterCompiler, Kind, ObjectKey, Report, Stores};

/// What the reconcilers share.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    /// The last compile's findings.
    pub report: watch::Receiver<Arc<Report>>,
    /// The routers' streams, as [`Distribution::watch_routers`] reports them.
    pub routers: watch::Receiver<BTreeMap<String, RouterState>>,
    pub leader: watch::Receiver<bool>,
    pub workloads: WorkloadSettings,
    pub ca: Arc<CertificateAuthority>,
    /// The current time; a fixed clock in tests.
    pub clock: Arc<dyn Fn() -> SystemTime + Send + Sync>,
    /// Caches of router workloads, to notice one deleted behind the operator's back.
    pub deployments: Option<Store<Deployment>>,
    pub daemonsets: Option<Store<DaemonSet>>,
    applied: Mutex<HashMap<ObjectKey, Applied>>,
}

impl Context {
    pub fn new(
        client: Client,
        recorder: Recorder,
        report: watch::Receiver<Arc<Report>>,
        routers: watch::Receiver<BTreeMap<String, RouterState>>,
        leader: watch::Receiver<bool>,
        workloads: WorkloadSettings,
        ca: Arc<CertificateAuthority>,
    ) -> Self {
        Self {
            client,
            recorder,
            report,
            routers,
            leader,
            workloads,
            ca,
            clock: Arc::new(SystemTime::now),
            deployments: None,
            daemonsets: None,
            applied: Mutex::new(HashMap::new()),
        }
    }

    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    pub fn now(&self) -> SystemTime {
        (self.clock)()
    }

    fn applied(&self, key: &ObjectKey) -> Option<Applied> {
        self.applied.lock().ok()?.get(key).cloned()
    }

    fn remember(&self, key: ObjectKey, applied: Applied) {
        if let Ok(mut a) = self.applied.lock() {
            a.insert(key, applied);
        }
    }

    fn forget(&self, key: &ObjectKey) {
        if let Ok(mut a) = self.applied.lock() {
            a.remove(key);
        }
    }

    /// Forgets everything applied: a new leader applies every workload once.
    pub fn forget_all(&self) {
        if let Ok(mut a) = self.applied.lock() {
            a.clear();
        }
    }

    /// Whether the workload is in the cache (true when there is no cache, as in tests).
    pub(crate) fn workload_cached(&self, namespace: &str, kind: &str, name: &str) -> bool {
        match kind {
            "Deployment" => self
                .deployments
                .as_ref()
                .is_none_or(|s| s.get(&ObjectRef::new(name).within(namespace)).is_some()),
            _ => self
                .daemonsets
                .as_ref()
                .is_none_or(|s| s.get(&ObjectRef::new(name).within(namespace)).is_some()),
        }
    }
}

/// Cluster mode's settings (see the module docs for the flags).
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    pub listen: SocketAddr,
    pub metrics: Option<SocketAddr>,
    /// Watch only this namespace.
    pub namespace: Option<String>,
    /// The operator's own namespace (`POD_NAMESPACE`).
    pub operator_namespace: String,
    /// This replica (`POD_NAME`).
    pub pod_name: String,
    pub ca_secret: String,
    pub server_names: Vec<String>,
    pub router_image: String,
    pub distribution_endpoint: Option<String>,
    pub lease_name: String,
    pub key_epoch: u64,
}

impl ClusterOptions {
    /// The names in the serving certificate: those given, or the operator Service's.
    pub fn server_names(&self) -> Vec<String> {
        if !self.server_names.is_empty() {
            return self.server_names.clone();
        }
        let ns = &self.operator_namespace;
        vec![
            "signpost-operator".into(),
            format!("signpost-operator.{ns}"),
            format!("signpost-operator.{ns}.svc"),
            format!("signpost-operator.{ns}.svc.cluster.local"),
        ]
    }

    pub fn distribution_endpoint(&self) -> String {
        self.distribution_endpoint.clone().unwrap_or_else(|| {
            format!(
                "https://signpost-operator.{}.svc:{}",
                self.operator_namespace,
                self.listen.port()
            )
        })
    }
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Starts a reflector for `K` (objects matching `labels`, if given) whose every event pokes
/// `changed`; returns its store.
fn reflect<K>(api: Api<K>, labels: Option<&str>, changed: Arc<Notify>) -> Store<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let config = match labels {
        Some(l) => watcher::Config::default().labels(l),
        None => watcher::Config::default(),
    };
    let stream = reflector(writer, watcher(api, config))
        .default_backoff()
        .touched_objects();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            match item {
                Ok(_) => changed.notify_one(),
                Err(e) => tracing::warn!("watching {}: {e}", K::plural(&())),
            }
        }
    });
    reader
}

/// One trigger per reconcile-on stream.
type Triggers<K> = mpsc::UnboundedSender<ObjectRef<K>>;

/// Runs cluster mode until `shutdown`.
pub async fn run(
    client: Client,
    options: ClusterOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let op_ns = options.operator_namespace.clone();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &op_ns);
    let cluster_ca = ca::load_or_create(&secrets, &options.ca_secret).await?;
    let ca = Arc::new(cluster_ca.ca);
    let names = options.server_names();
    let validity = Validity::days_from_now(SERVING_DAYS);
    let not_after = validity.not_after;
    let issued = ca
        .issue_operator(&names, validity)
        .map_err(|e| e.to_string())?;
    let origin = PathBuf::from(format!("Secret {op_ns}/{}", options.ca_secret));
    let serving = Arc::new(ServingCert::new(&issued, &origin).map_err(|e| e.to_string())?);
    let tls = distribution::server_tls_serving(ca.cert_pem(), Arc::clone(&serving), &origin)
        .map_err(|e| e.to_string())?;
    let compile_options = Options {
        key_master: cluster_ca.key_master,
        key_epoch: options.key_epoch,
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });

    tokio::spawn(renew_serving(
        Arc::clone(&ca),
        names,
        serving,
        origin,
        not_after,
        stopped(),
    ));

    let distribution = Distribution::new();
    let metrics = Arc::new(Metrics::default());
    let (report_tx, report_rx) = watch::channel(Arc::new(Report::default()));
    distribution.enable_bootstrap(Enrollment::new(
        Arc::clone(&ca),
        Arc::new(tokens::SecretTokens::new(client.clone(), report_rx.clone())),
    ));

    // The world: reflectors feed the compile loop.
    let changed = Arc::new(Notify::new());
    let scope = options.namespace.as_deref();
    let stores = Stores {
        tenants: reflect(scoped::<Tenant>(&client, scope), None, changed.clone()),
        services: reflect(scoped::<Service>(&client, scope), None, changed.clone()),
        policies: reflect(scoped::<Policy>(&client, scope), None, changed.clone()),
        routers: reflect(scoped::<Router>(&client, scope), None, changed.clone()),
    };
    // Only the operator's own workloads, not every Deployment of the cluster.
    let ours = Some("app.kubernetes.io/managed-by=signpost-operator");
    let quiet = || Arc::new(Notify::new());
    let deployments = reflect(scoped::<Deployment>(&client, scope), ours, quiet());
    let daemonsets = reflect(scoped::<DaemonSet>(&client, scope), ours, quiet());

    let (tenant_tx, tenant_rx) = mpsc::unbounded_channel();
    let (service_tx, service_rx) = mpsc::unbounded_channel();
    let (policy_tx, policy_rx) = mpsc::unbounded_channel();
    let (router_tx, router_rx) = mpsc::unbounded_channel();
    let triggers = CompileTriggers {
        tenants: tenant_tx,
        services: service_tx,
        policies: policy_tx,
        routers: router_tx.clone(),
    };
    let compile = tokio::spawn(compile_loop(
        stores,
        ClusterCompiler::new(compile_options),
        changed,
        distribution.clone(),
        report_tx,
        triggers,
        Arc::clone(&metrics),
        stopped(),
    ));
    tokio::spawn(follow_routers(
        distribution.watch_routers(),
        report_rx.clone(),
        router_tx,
        stopped(),
    ));

    // Leadership.
    let (leader_tx, leader_rx) = watch::channel(false);
    let lease = lease::LeaseClient::new(
        Api::<Lease>::namespaced(client.clone(), &op_ns),
        lease::LeaseSettings::new(&options.lease_name, &options.pod_name),
    );
    let elect = tokio::spawn(lease.run(leader_tx, stopped()));

    let reporter = Reporter {
        controller: "signpost-operator".into(),
        instance: Some(options.pod_name.clone()),
    };
    let mut context = Context::new(
        client.clone(),
        Recorder::new(client.clone(), reporter),
        report_rx.clone(),
        distribution.watch_routers(),
        leader_rx.clone(),
        WorkloadSettings {
            image: options.router_image.clone(),
            distribution_endpoint: options.distribution_endpoint(),
        },
        Arc::clone(&ca),
    );
    context.deployments = Some(deployments);
    context.daemonsets = Some(daemonsets);
    let ctx = Arc::new(context);
    {
        let ctx = Arc::clone(&ctx);
        let metrics = Arc::clone(&metrics);
        let mut leader = leader_rx.clone();
        tokio::spawn(async move {
            while leader.changed().await.is_ok() {
                let is = *leader.borrow_and_update();
                metrics.set_leader(is);
                if is {
                    ctx.forget_all();
                }
            }
        });
    }

    macro_rules! controller {
        ($kind:ty, $triggers:expr, $reconcile:expr) => {
            tokio::spawn(run_controller::<$kind, _, _>(
                scoped(&client, scope),
                $triggers,
                leader_rx.clone(),
                Arc::clone(&ctx),
                Arc::clone(&metrics),
                $reconcile,
                stopped(),
            ))
        };
    }
    let controllers = [
        controller!(Router, router_rx, reconcile::reconcile_router),
        controller!(Tenant, tenant_rx, reconcile::reconcile_object::<Tenant>),
        controller!(Service, service_rx, reconcile::reconcile_object::<Service>),
        controller!(Policy, policy_rx, reconcile::reconcile_object::<Policy>),
    ];

    let metrics_server = options.metrics.map(|addr| {
        tokio::spawn(serve_metrics(
            addr,
            Arc::clone(&metrics),
            distribution.clone(),
            stopped(),
        ))
    });

    let (listener, bound) = distribution::listen(options.listen).await?;
    println!("listening on {bound}");
    tracing::info!(
        "cluster mode: serving router configs on {bound}, watching {}, lease {}/{} as {}",
        scope.map_or_else(
            || "all namespaces".to_string(),
            |ns| format!("namespace {ns}")
        ),
        op_ns,
        options.lease_name,
        options.pod_name
    );
    let served = distribution
        .serve(listener, tls, stopped())
        .await
        .map_err(|e| e.to_string());
    for c in controllers {
        let _ = c.await;
    }
    let _ = compile.await;
    let _ = elect.await;
    if let Some(m) = metrics_server {
        let _ = m.await;
    }
    served
}

/// The operator's serving certificate lasts this long and is issued again (in memory, from the
/// CA) [`reconcile::RENEW_BEFORE`] before it ends: the process may run longer than a year.
pub const SERVING_DAYS: u32 = 365;

/// How long until the serving certificate ending at `not_after` is due to be issued again.
pub fn until_renewal(not_after: SystemTime, now: SystemTime) -> Duration {
    not_after
        .checked_sub(reconcile::RENEW_BEFORE)
        .and_then(|due| due.duration_since(now).ok())
        .unwrap_or(Duration::ZERO)
}

/// Issues the serving certificate again when it is due; new handshakes present the new one.
async fn renew_serving(
    ca: Arc<CertificateAuthority>,
    names: Vec<String>,
    serving: Arc<ServingCert>,
    origin: PathBuf,
    mut not_after: SystemTime,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut retry = false;
    loop {
        // At most a day at a time: the wall clock may be set while this sleeps.
        let wait = if retry {
            Duration::from_secs(3600)
        } else {
            until_renewal(not_after, SystemTime::now()).min(Duration::from_secs(86_400))
        };
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(wait) => {}
        }
        if until_renewal(not_after, SystemTime::now()) > Duration::ZERO {
            retry = false;
            continue;
        }
        let validity = Validity::days_from_now(SERVING_DAYS);
        let next = validity.not_after;
        let renewed = ca
            .issue_operator(&names, validity)
            .map_err(|e| e.to_string())
            .and_then(|issued| serving.replace(&issued, &origin).map_err(|e| e.to_string()));
        match renewed {
            Ok(()) => {
                not_after = next;
                retry = false;
                tracing::info!(
                    "issued the operator's serving certificate again, for {SERVING_DAYS} days"
                );
            }
            Err(e) => {
                retry = true;
                tracing::error!(
                    "renewing the operator's serving certificate: {e}; retrying in an hour"
                );
            }
        }
    }
}

/// Where the compile loop sends the objects whose status may have changed.
struct CompileTriggers {
    tenants: Triggers<Tenant>,
    services: Triggers<Service>,
    policies: Triggers<Policy>,
    routers: Triggers<Router>,
}

impl CompileTriggers {
    fn send(&self, key: &ObjectKey) {
        let (name, ns) = (key.name.as_str(), key.namespace.as_str());
        // A closed channel means the controller stopped (shutdown): nothing to tell.
        let _ = match key.kind {
            Kind::Tenant => self.tenants.send(ObjectRef::new(name).within(ns)).is_ok(),
            Kind::Service => self.services.send(ObjectRef::new(name).within(ns)).is_ok(),
            Kind::Policy => self.policies.send(ObjectRef::new(name).within(ns)).is_ok(),
            Kind::Router => self.routers.send(ObjectRef::new(name).within(ns)).is_ok(),
        };
    }
}

/// Waits for the caches, then compiles after every change (changes arriving within 100 ms are
/// compiled together), publishes, and triggers the reconciles of objects whose facts changed.
/// A change that leaves every object's name, uid and generation as they were (a status write,
/// a label) is not compiled: it cannot change the outcome.
#[allow(clippy::too_many_arguments)]
async fn compile_loop(
    stores: Stores,
    mut compiler: ClusterCompiler,
    changed: Arc<Notify>,
    distribution: Distribution,
    report: watch::Sender<Arc<Report>>,
    triggers: CompileTriggers,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    tokio::select! {
        () = &mut shutdown => return,
        r = stores.ready() => if let Err(e) = r {
            tracing::error!("{e}");
            return;
        },
    }
    let mut compiled: Option<Vec<world::Identity>> = None;
    loop {
        let snapshot = stores.snapshot();
        let fingerprint = snapshot.fingerprint();
        if compiled.as_ref() == Some(&fingerprint) {
            if !next_change(&changed, &mut shutdown).await {
                return;
            }
            continue;
        }
        compiled = Some(fingerprint);
        let started = Instant::now();
        let (back, outcome) = match tokio::task::spawn_blocking(move || {
            let outcome = compiler.compile(&snapshot);
            (compiler, outcome)
        })
        .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("the compiler stopped: {e}");
                return;
            }
        };
        compiler = back;
        metrics.compiled(started.elapsed(), &outcome.diagnostics);
        for d in &outcome.diagnostics {
            match d.severity {
                Severity::Error => tracing::warn!("{d}"),
                Severity::Warning => tracing::info!("{d}"),
            }
        }
        distribution.bind_identities(outcome.bindings.clone());
        if !outcome.served.changed.is_empty() || !outcome.served.removed.is_empty() {
            distribution.publish(outcome.served.configs.clone());
        }
        tracing::info!(
            routers = outcome.served.configs.len(),
            changed = outcome.served.changed.len(),
            removed = outcome.served.removed.len(),
            kept = outcome.served.kept.len(),
            "compiled in {:?}",
            started.elapsed()
        );
        report.send_replace(Arc::clone(&outcome.report));
        metrics.set_ready();
        for key in &outcome.changed {
            triggers.send(key);
        }
        if !next_change(&changed, &mut shutdown).await {
            return;
        }
    }
}

/// Waits for a change, then 100 ms more so that a burst is compiled once; `false` on shutdown.
async fn next_change(
    changed: &Notify,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> bool {
    tokio::select! {
        () = shutdown.as_mut() => return false,
        () = changed.notified() => {}
    }
    tokio::select! {
        () = shutdown.as_mut() => false,
        () = tokio::time::sleep(Duration::from_millis(100)) => true,
    }
}

/// Triggers a Router's reconcile whenever what its stream reports (connected, applied
/// version, Ack/Nack) changes.
async fn follow_routers(
    mut routers: watch::Receiver<BTreeMap<String, RouterState>>,
    report: watch::Receiver<Arc<Report>>,
    triggers: Triggers<Router>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let seen = |s: &RouterState| (s.connected, s.applied_version.clone(), s.outcome.clone());
    let mut last: BTreeMap<String, _> = BTreeMap::new();
    loop {
        let now: BTreeMap<String, _> = routers
            .borrow_and_update()
            .iter()
            .map(|(name, s)| (name.clone(), seen(s)))
            .collect();
        let report = report.borrow().clone();
        for (name, state) in &now {
            if last.get(name) != Some(state)
                && let Some(ns) = report.router_namespace(name)
            {
                let _ = triggers.send(ObjectRef::new(name).within(ns));
            }
        }
        last = now;
        tokio::select! {
            () = &mut shutdown => return,
            r = routers.changed() => if r.is_err() { return },
        }
    }
}

/// A kube Controller for `K`: reconciles on its own watch, on the compile's and the routers'
/// triggers, and all objects when this replica becomes leader.
async fn run_controller<K, F, Fut>(
    api: Api<K>,
    triggers: mpsc::UnboundedReceiver<ObjectRef<K>>,
    leader: watch::Receiver<bool>,
    ctx: Arc<Context>,
    metrics: Arc<Metrics>,
    reconcile: F,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    F: FnMut(Arc<K>, Arc<Context>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<kube::runtime::controller::Action, reconcile::Error>>
        + Send
        + 'static,
{
    let became_leader = WatchStream::new(leader)
        .filter(|l| std::future::ready(*l))
        .map(|_| ());
    let kind = kind_name::<K>();
    Controller::new(api, watcher::Config::default())
        .reconcile_on(UnboundedReceiverStream::new(triggers))
        .reconcile_all_on(became_leader)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, reconcile::error_policy, ctx)
        .for_each(|result| {
            let label = match &result {
                Ok(_) => "ok",
                Err(kube::runtime::controller::Error::ReconcilerFailed(e, _)) => e.metric_label(),
                Err(_) => "Queue",
            };
            metrics.reconciled(kind, label);
            std::future::ready(())
        })
        .await;
}

fn kind_name<K: Resource<DynamicType = ()>>() -> &'static str {
    match K::kind(&()).as_ref() {
        "Tenant" => "Tenant",
        "Service" => "Service",
        "Policy" => "Policy",
        _ => "Router",
    }
}

/// `/metrics`, `/healthz`, `/readyz`.
pub async fn serve_metrics(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    distribution: Distribution,
    shutdown: impl Future<Output = ()>,
) {
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("metrics on {addr}: {e}");
            return;
        }
    };
    tracing::info!(%addr, "metrics listening on /metrics, /healthz, /readyz");
    let render = {
        let metrics = Arc::clone(&metrics);
        Arc::new(move || metrics.render(&distribution))
    };
    let ready = Arc::new(move || metrics.is_ready());
    if let Err(e) =
        signpost_cnf::telemetry::serve_metrics_and_readiness(listener, render, ready, shutdown)
            .await
    {
        tracing::error!("metrics on {addr}: {e}");
    }
}
