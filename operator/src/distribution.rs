//! The config stream, operator side: a gRPC `Distribution` server over mutual TLS that hands each
//! router its compiled config and records what the router did with it.
//!
//! # What the operator checks
//!
//! 1. **TLS handshake** (rustls): a router presenting a certificate must present one chaining
//!    to the CA in the TLS directory's `ca.pem`, valid now, with the `clientAuth` usage; any
//!    other certificate is refused before HTTP/2 starts, the refusal logged with the peer's
//!    address and kept in [`Distribution::refusals`]. A client presenting none gets through the
//!    handshake so that it can call `Bootstrap` ([`crate::bootstrap`]: a one-time token buys a
//!    certificate); `Subscribe` refuses it with `UNAUTHENTICATED`.
//! 2. **Identity**: the certificate's URI SAN `spiffe://signpost/router/<name>` names the router
//!    ([`crate::identity::router_identity`]). A certificate bound to a Router uid that is not
//!    the current Router's ([`Distribution::bind_identities`], cluster mode) is refused: the
//!    Router it was issued for was deleted. The stream's first message must be a `Hello` whose
//!    `router` equals that name — otherwise `PERMISSION_DENIED` "certificate names router `a`,
//!    Hello claims `b`". A router may read only its own config.
//! 3. **A config exists** for that router; otherwise `FAILED_PRECONDITION` saying so (the
//!    router retries; a Router object added later is picked up on its next attempt).
//!
//! Then the operator sends a `Snapshot` unless the Hello's `last_applied_version` is already
//! current, and a new one each time [`Distribution::publish`] changes that router's version.
//! Every Ack and Nack (with the router's error text) and every Health report lands in a shared
//! per-router [`RouterState`] — [`Distribution::routers`] and [`Distribution::watch_routers`] —
//! for controllers to turn into status conditions, and in the log.
//!
//! # TLS directory (`--tls-dir`)
//!
//! `ca.pem` (the CA routers' certificates must chain to), `tls.crt` and `tls.key` (the
//! operator's own certificate, `serverAuth`). In local mode the operator creates its CA
//! (`ca.key`) and server certificate there when they are absent; see [`crate::identity`].

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime};

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use signpost_proto::v1::distribution_server::{self, DistributionServer};
use signpost_proto::v1::{
    BootstrapRequest, BootstrapResponse, Health, Hello, OperatorMessage, RouterMessage, Snapshot,
    operator_message, router_message,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::bootstrap::Enrollment;
use crate::compiler::RouterOutput;
use crate::identity::{self, CA_CERT_FILE, CERT_FILE, Issued, KEY_FILE};

/// How long a router has to finish the TLS handshake, then to send its Hello.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Refusals kept for [`Distribution::refusals`].
const REFUSALS_KEPT: usize = 64;

/// The configs being served, by router name.
pub type Configs = BTreeMap<String, Arc<RouterOutput>>;

/// What a router last answered to a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Acked { version: String },
    Nacked { version: String, error: String },
}

/// What the operator knows about one router's stream.
#[derive(Clone, Debug, PartialEq)]
pub struct RouterState {
    pub connected: bool,
    pub peer: Option<SocketAddr>,
    /// The router software's version, from its Hello.
    pub software_version: String,
    /// When the router last connected or disconnected.
    pub since: SystemTime,
    /// The version the router says it runs (Hello, then each Ack).
    pub applied_version: Option<String>,
    /// The last snapshot version sent to it.
    pub sent_version: Option<String>,
    /// Its answer to the last snapshot.
    pub outcome: Option<Outcome>,
    pub health: Option<Health>,
    /// Which stream this state belongs to: a router that reconnects before its old stream is
    /// noticed dead must not be marked disconnected by the old one ending.
    stream: u64,
}

impl RouterState {
    /// A router that has not connected (yet): what tools and tests build states from.
    pub fn new(since: SystemTime) -> Self {
        Self {
            connected: false,
            peer: None,
            software_version: String::new(),
            since,
            applied_version: None,
            sent_version: None,
            outcome: None,
            health: None,
            stream: 0,
        }
    }
}

/// What to serve after a compile, and how it differs from what was served.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NextServed {
    pub configs: Configs,
    /// New versions (added routers included).
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    /// Routers kept on their last good config because their own objects have errors.
    pub kept: Vec<String>,
}

/// The configs to serve after a compile: the compiled ones, plus the last good config of each
/// router that still exists but compiled with errors of its own (it keeps running what it has
/// rather than losing its config); routers that no longer exist are dropped.
pub fn next_served(
    served: &Configs,
    compiled: Configs,
    exists: impl Fn(&str) -> bool,
) -> NextServed {
    let mut next = NextServed {
        configs: compiled,
        ..NextServed::default()
    };
    for (name, output) in served {
        if next.configs.contains_key(name) {
            continue;
        }
        if exists(name) {
            next.configs.insert(name.clone(), Arc::clone(output));
            next.kept.push(name.clone());
        } else {
            next.removed.push(name.clone());
        }
    }
    next.changed = next
        .configs
        .iter()
        .filter(|(name, out)| {
            served
                .get(*name)
                .is_none_or(|old| old.version != out.version)
        })
        .map(|(name, _)| name.clone())
        .collect();
    next
}

/// A connection or stream the operator refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub peer: Option<SocketAddr>,
    /// The router, when the certificate named one.
    pub router: Option<String>,
    pub reason: String,
    pub at: SystemTime,
}

/// Why the server cannot start.
#[derive(Debug)]
pub enum DistributionError {
    Tls { path: PathBuf, error: String },
    Serve(String),
}

impl fmt::Display for DistributionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tls { path, error } => write!(f, "{}: {error}", path.display()),
            Self::Serve(e) => write!(f, "serving the config stream: {e}"),
        }
    }
}

impl std::error::Error for DistributionError {}

/// Binds the config stream's listener; returns it with the address it got (port 0: any).
pub async fn listen(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), String> {
    let fail = |e: std::io::Error| format!("listening on {addr}: {e}");
    let listener = TcpListener::bind(addr).await.map_err(fail)?;
    let bound = listener.local_addr().map_err(fail)?;
    Ok((listener, bound))
}

/// The rustls server config for the config stream, from a TLS directory (`ca.pem`, `tls.crt`,
/// `tls.key`): see [`server_tls_for`].
pub fn server_tls(dir: &Path) -> Result<Arc<rustls::ServerConfig>, DistributionError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|e| DistributionError::Tls {
            path,
            error: e.to_string(),
        })
    };
    let identity = Issued {
        ca_pem: read(CA_CERT_FILE)?,
        cert_pem: read(CERT_FILE)?,
        key_pem: read(KEY_FILE)?,
    };
    server_tls_for(&identity, dir)
}

/// The rustls server config for the config stream: the operator's certificate and key, and
/// the CA client certificates must chain to. `origin` (a directory, or a Secret's name) is
/// what errors name, as `origin/ca.pem`.
///
/// A client without a certificate is let through the handshake: it may only call `Bootstrap`
/// (which wants a token); `Subscribe` refuses it. A client presenting a certificate the CA did
/// not issue, or an expired one, is refused in the handshake.
pub fn server_tls_for(
    identity: &Issued,
    origin: &Path,
) -> Result<Arc<rustls::ServerConfig>, DistributionError> {
    let serving = Arc::new(ServingCert::new(identity, origin)?);
    server_tls_serving(&identity.ca_pem, serving, origin)
}

/// [`server_tls_for`] with a serving certificate that can be replaced while the server runs
/// ([`ServingCert::replace`]): cluster mode renews its own before it expires.
pub fn server_tls_serving(
    ca_pem: &str,
    serving: Arc<ServingCert>,
    origin: &Path,
) -> Result<Arc<rustls::ServerConfig>, DistributionError> {
    let tls = |name: &str, error: String| DistributionError::Tls {
        path: origin.join(name),
        error,
    };
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let c = c.map_err(|e| tls(CA_CERT_FILE, format!("not a PEM certificate: {e}")))?;
        roots
            .add(c)
            .map_err(|e| tls(CA_CERT_FILE, format!("not a usable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(tls(CA_CERT_FILE, "holds no certificate".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| tls(CA_CERT_FILE, format!("cannot verify clients with it: {e}")))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls("", e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(serving);
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The operator's serving certificate and key; new handshakes get whichever is current.
#[derive(Debug)]
pub struct ServingCert {
    current: RwLock<Arc<rustls::sign::CertifiedKey>>,
}

impl ServingCert {
    /// From an identity's `tls.crt` and `tls.key`; `origin` names them in errors.
    pub fn new(identity: &Issued, origin: &Path) -> Result<Self, DistributionError> {
        Ok(Self {
            current: RwLock::new(Arc::new(certified_key(identity, origin)?)),
        })
    }

    /// Serves `identity` from the next handshake on; open connections keep theirs.
    pub fn replace(&self, identity: &Issued, origin: &Path) -> Result<(), DistributionError> {
        let key = Arc::new(certified_key(identity, origin)?);
        if let Ok(mut current) = self.current.write() {
            *current = key;
        }
        Ok(())
    }

    /// The certificate (DER) new handshakes present.
    pub fn current_der(&self) -> Option<CertificateDer<'static>> {
        let current = self.current.read().ok()?;
        current.cert.first().cloned()
    }
}

impl rustls::server::ResolvesServerCert for ServingCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.current.read().ok().map(|c| Arc::clone(&c))
    }
}

fn certified_key(
    identity: &Issued,
    origin: &Path,
) -> Result<rustls::sign::CertifiedKey, DistributionError> {
    let tls = |name: &str, error: String| DistributionError::Tls {
        path: origin.join(name),
        error,
    };
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(identity.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| tls(CERT_FILE, format!("not a PEM certificate: {e}")))?;
    if chain.is_empty() {
        return Err(tls(CERT_FILE, "holds no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes())
        .map_err(|e| tls(KEY_FILE, format!("holds no PEM private key: {e}")))?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = rustls::sign::CertifiedKey::from_der(chain, key, &provider)
        .map_err(|e| tls(CERT_FILE, format!("does not match {KEY_FILE}: {e}")))?;
    Ok(certified)
}

struct Shared {
    feed: watch::Sender<Arc<Configs>>,
    routers: watch::Sender<BTreeMap<String, RouterState>>,
    refusals: Mutex<VecDeque<Refusal>>,
    next_stream: AtomicU64,
    /// Router name → the uid of its Router object (cluster mode): certificates bound to
    /// another uid are refused.
    bindings: RwLock<Arc<BTreeMap<String, String>>>,
    enrollment: OnceLock<Arc<Enrollment>>,
    bootstraps_ok: AtomicU64,
    bootstraps_refused: AtomicU64,
}

/// Bootstrap requests answered so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bootstraps {
    pub ok: u64,
    pub refused: u64,
}

impl Shared {
    fn refuse(&self, peer: Option<SocketAddr>, router: Option<&str>, reason: String) {
        let peer_text = peer.map_or_else(|| "a peer".to_string(), |p| p.to_string());
        match router {
            Some(r) => tracing::warn!("refused router `{r}` ({peer_text}): {reason}"),
            None => tracing::warn!("refused {peer_text}: {reason}"),
        }
        if let Ok(mut r) = self.refusals.lock() {
            if r.len() == REFUSALS_KEPT {
                r.pop_front();
            }
            r.push_back(Refusal {
                peer,
                router: router.map(str::to_string),
                reason,
                at: SystemTime::now(),
            });
        }
    }
}

/// The config stream's state: the configs being served and what each router did with them.
/// Cheap to clone; every clone shares the same state.
#[derive(Clone)]
pub struct Distribution {
    shared: Arc<Shared>,
}

impl Default for Distribution {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Distribution")
            .field("configs", &self.shared.feed.borrow().len())
            .finish_non_exhaustive()
    }
}

impl Distribution {
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                feed: watch::Sender::new(Arc::new(Configs::new())),
                routers: watch::Sender::new(BTreeMap::new()),
                refusals: Mutex::new(VecDeque::new()),
                next_stream: AtomicU64::new(1),
                bindings: RwLock::new(Arc::new(BTreeMap::new())),
                enrollment: OnceLock::new(),
                bootstraps_ok: AtomicU64::new(0),
                bootstraps_refused: AtomicU64::new(0),
            }),
        }
    }

    /// Serves `configs` from now on. Connected routers whose version changed get a snapshot;
    /// a router no longer in `configs` has its stream ended with an error.
    pub fn publish(&self, configs: Configs) {
        self.shared.feed.send_replace(Arc::new(configs));
    }

    /// From now on, a router certificate bound to a Router uid (see
    /// [`identity::RouterIdentity::uid`]) is accepted only when that uid is the one given here
    /// for its router: the certificates of a deleted Router stop working, even when a Router of
    /// the same name is created again. Unbound certificates are not affected.
    pub fn bind_identities(&self, bindings: BTreeMap<String, String>) {
        if let Ok(mut b) = self.shared.bindings.write() {
            *b = Arc::new(bindings);
        }
    }

    /// Serves `Distribution/Bootstrap` with `enrollment` (without it, Bootstrap is refused as
    /// off). Set once, before or while serving; a second call is ignored and returns false.
    pub fn enable_bootstrap(&self, enrollment: Enrollment) -> bool {
        self.shared.enrollment.set(Arc::new(enrollment)).is_ok()
    }

    /// Bootstrap requests answered so far.
    pub fn bootstraps(&self) -> Bootstraps {
        Bootstraps {
            ok: self.shared.bootstraps_ok.load(Ordering::Relaxed),
            refused: self.shared.bootstraps_refused.load(Ordering::Relaxed),
        }
    }

    /// The configs being served.
    pub fn configs(&self) -> Arc<Configs> {
        self.shared.feed.borrow().clone()
    }

    /// Every router that has connected since the operator started.
    pub fn routers(&self) -> BTreeMap<String, RouterState> {
        self.shared.routers.borrow().clone()
    }

    /// Notified on every change of [`Distribution::routers`].
    pub fn watch_routers(&self) -> watch::Receiver<BTreeMap<String, RouterState>> {
        self.shared.routers.subscribe()
    }

    /// The latest refused connections and streams, oldest first.
    pub fn refusals(&self) -> Vec<Refusal> {
        self.shared
            .refusals
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Serves the config stream on `listener` until `shutdown` completes; then ends every
    /// router's stream with `UNAVAILABLE` and returns.
    pub async fn serve(
        &self,
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), DistributionError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let (conn_tx, conn_rx) = mpsc::channel::<Result<TlsStream<TcpStream>, std::io::Error>>(64);
        let acceptor = TlsAcceptor::from(tls);
        let shared = Arc::clone(&self.shared);
        let accept = tokio::spawn(accept_loop(listener, acceptor, conn_tx, shared));
        let service = Subscriptions {
            shared: Arc::clone(&self.shared),
            stop: stop_rx,
        };
        let mut stop_sessions = stop_tx.subscribe();
        let served = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(10)))
            .http2_keepalive_timeout(Some(Duration::from_secs(5)))
            .add_service(DistributionServer::new(service))
            .serve_with_incoming_shutdown(ReceiverStream::new(conn_rx), async move {
                let _ = stop_sessions.wait_for(|s| *s).await;
            });
        tokio::pin!(served);
        let result = tokio::select! {
            r = &mut served => r,
            () = shutdown => {
                let _ = stop_tx.send(true);
                // Sessions end their streams on the signal; give them a moment to say so.
                match tokio::time::timeout(Duration::from_secs(5), &mut served).await {
                    Ok(r) => r,
                    Err(_) => Ok(()),
                }
            }
        };
        accept.abort();
        result.map_err(|e| DistributionError::Serve(e.to_string()))
    }
}

/// Accepts TCP connections and runs each TLS handshake in its own task, so that one slow or
/// hostile client delays nobody.
async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    conns: mpsc::Sender<Result<TlsStream<TcpStream>, std::io::Error>>,
    shared: Arc<Shared>,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!("accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let conns = conns.clone();
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let handshake = acceptor.accept(tcp).into_fallible();
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                Ok(Ok(tls)) => {
                    let _ = conns.send(Ok(tls)).await;
                }
                Ok(Err((e, tcp))) => {
                    shared.refuse(Some(peer), None, handshake_failure(&e));
                    linger(tcp).await;
                }
                Err(_) => shared.refuse(
                    Some(peer),
                    None,
                    format!("TLS handshake not finished within {HANDSHAKE_TIMEOUT:?}"),
                ),
            }
        });
    }
}

/// Why a TLS handshake failed, and what to fix, told apart by who refused whom.
fn handshake_failure(e: &std::io::Error) -> String {
    let tls = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match tls {
        Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented) => {
            format!(
                "TLS handshake failed: {e}: the router's certificate is refused; a router must \
                 present a certificate issued by this operator's CA (ca.pem in its TLS \
                 directory), valid now, for client authentication"
            )
        }
        Some(rustls::Error::AlertReceived(alert)) => format!(
            "TLS handshake failed: the router refused this operator's certificate (alert \
             {alert:?}): its ca.pem must be this operator's CA, and the name it dials must be in \
             the operator's certificate"
        ),
        _ => format!("TLS handshake failed: {e}"),
    }
}

/// Closes a refused connection gently so that the router reads the TLS alert saying why: with
/// TLS 1.3 the router has finished its handshake and sent its first request before it learns
/// that its certificate was refused, and closing a socket with that request unread would reset
/// the connection and lose the alert.
async fn linger(mut tcp: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tcp.shutdown().await;
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Ok(n) = tcp.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// The gRPC service; one [`Subscriptions::subscribe`] call per connected router.
struct Subscriptions {
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
}

type OutboundStream = ReceiverStream<Result<OperatorMessage, Status>>;

#[tonic::async_trait]
impl distribution_server::Distribution for Subscriptions {
    type SubscribeStream = OutboundStream;

    async fn subscribe(
        &self,
        request: Request<Streaming<RouterMessage>>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let peer = request.remote_addr();
        let shared = &self.shared;
        let certified = match request.peer_certs().as_deref().and_then(|c| c.first()) {
            None => Err(
                "the connection has no client certificate: present this router's \
                         certificate (tls.crt), or enroll first with a bootstrap token"
                    .to_string(),
            ),
            Some(cert) => identity::router_identity(cert).map_err(|e| e.to_string()),
        };
        let certified = match certified {
            Ok(id) => id,
            Err(reason) => {
                shared.refuse(peer, None, reason.clone());
                return Err(Status::unauthenticated(reason));
            }
        };
        if let Some(reason) = stale_binding(shared, &certified) {
            shared.refuse(peer, Some(&certified.name), reason.clone());
            return Err(Status::permission_denied(reason));
        }
        let certified = certified.name;
        let mut inbound = request.into_inner();
        let hello = match tokio::time::timeout(HANDSHAKE_TIMEOUT, inbound.message()).await {
            Ok(Ok(Some(RouterMessage {
                kind: Some(router_message::Kind::Hello(hello)),
            }))) => hello,
            Ok(Ok(Some(_))) => {
                let reason = "the stream's first message must be Hello".to_string();
                shared.refuse(peer, Some(&certified), reason.clone());
                return Err(Status::invalid_argument(reason));
            }
            Ok(Ok(None)) => return Err(Status::cancelled("the stream ended before Hello")),
            Ok(Err(status)) => return Err(status),
            Err(_) => {
                let reason = format!("no Hello within {HANDSHAKE_TIMEOUT:?}");
                shared.refuse(peer, Some(&certified), reason.clone());
                return Err(Status::deadline_exceeded(reason));
            }
        };
        if hello.router != certified {
            let reason = format!(
                "certificate names router `{certified}`, Hello claims `{}`",
                hello.router
            );
            shared.refuse(peer, Some(&certified), reason.clone());
            return Err(Status::permission_denied(reason));
        }
        if !shared.feed.borrow().contains_key(&certified) {
            let reason = format!(
                "the operator has no config for router `{certified}`: there is no Router object \
                 of that name, or it has errors (see the operator's diagnostics)"
            );
            shared.refuse(peer, Some(&certified), reason.clone());
            return Err(Status::failed_precondition(reason));
        }
        let (tx, rx) = mpsc::channel(4);
        let stream = shared.next_stream.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            router = certified.as_str(),
            peer = peer.map(|p| p.to_string()).unwrap_or_default(),
            applied = hello.last_applied_version.as_str(),
            software = hello.software_version.as_str(),
            "router connected"
        );
        connected(shared, &certified, peer, &hello, stream);
        let session = Session {
            shared: Arc::clone(shared),
            router: certified,
            stream,
            inbound,
            outbound: tx,
            stop: self.stop.clone(),
        };
        tokio::spawn(session.run(nonempty(hello.last_applied_version)));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn bootstrap(
        &self,
        request: Request<BootstrapRequest>,
    ) -> Result<Response<BootstrapResponse>, Status> {
        let peer = request.remote_addr();
        let shared = &self.shared;
        let request = request.into_inner();
        let Some(enrollment) = shared.enrollment.get() else {
            let reason = "bootstrap is off on this operator: it has no CA key to issue \
                          certificates with (local mode needs ca.key in its --tls-dir)"
                .to_string();
            shared.refuse(peer, Some(&request.router), reason.clone());
            shared.bootstraps_refused.fetch_add(1, Ordering::Relaxed);
            return Err(Status::unimplemented(reason));
        };
        let by = peer.map_or_else(|| "an unknown peer".to_string(), |p| p.to_string());
        match enrollment
            .enroll(&request, &by, SystemTime::now(), std::time::Instant::now())
            .await
        {
            Ok(response) => {
                shared.bootstraps_ok.fetch_add(1, Ordering::Relaxed);
                Ok(Response::new(response))
            }
            Err(refusal) => {
                shared.bootstraps_refused.fetch_add(1, Ordering::Relaxed);
                shared.refuse(
                    peer,
                    Some(&request.router),
                    format!("bootstrap refused: {refusal}"),
                );
                Err(refusal.status())
            }
        }
    }
}

/// Why a certificate bound to a Router uid no longer counts, if it does not.
fn stale_binding(shared: &Shared, id: &identity::RouterIdentity) -> Option<String> {
    let uid = id.uid.as_deref()?;
    let bindings = shared.bindings.read().ok()?.clone();
    let current = bindings.get(&id.name)?;
    (current != uid).then(|| {
        format!(
            "the certificate was issued for an earlier Router `{}` (uid {uid}), which was \
             deleted; the current one (uid {current}) has a new identity: use its identity \
             Secret, or bootstrap again",
            id.name
        )
    })
}

fn nonempty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn connected(shared: &Shared, router: &str, peer: Option<SocketAddr>, hello: &Hello, stream: u64) {
    let state = RouterState {
        connected: true,
        peer,
        software_version: hello.software_version.clone(),
        since: SystemTime::now(),
        applied_version: nonempty(hello.last_applied_version.clone()),
        sent_version: None,
        outcome: None,
        health: None,
        stream,
    };
    shared.routers.send_modify(|m| {
        // A reconnect keeps the last outcome: it is still the router's last word on that version.
        let outcome = m.get(router).and_then(|s| s.outcome.clone());
        m.insert(router.to_string(), RouterState { outcome, ..state });
    });
}

/// What woke a session up.
enum Event {
    Published,
    Message(RouterMessage),
    End(String),
    Stop,
}

/// One router's stream.
struct Session {
    shared: Arc<Shared>,
    router: String,
    stream: u64,
    inbound: Streaming<RouterMessage>,
    outbound: mpsc::Sender<Result<OperatorMessage, Status>>,
    stop: watch::Receiver<bool>,
}

impl Session {
    async fn run(mut self, applied: Option<String>) {
        let mut feed = self.shared.feed.subscribe();
        // What the router has, or has been sent: nothing to send while it is current.
        let mut sent = applied;
        let why = loop {
            let current = feed.borrow_and_update().get(&self.router).cloned();
            let Some(current) = current else {
                let reason = format!(
                    "router `{}` no longer has a config: its Router object was removed or has \
                     errors",
                    self.router
                );
                let _ = self
                    .outbound
                    .send(Err(Status::not_found(reason.clone())))
                    .await;
                break reason;
            };
            if sent.as_deref() != Some(current.version.as_str()) {
                if let Err(e) = self.send_snapshot(&current).await {
                    break e;
                }
                sent = Some(current.version.clone());
            }
            let event = tokio::select! {
                changed = feed.changed() => match changed {
                    Ok(()) => Event::Published,
                    Err(_) => Event::End("the operator is stopping".to_string()),
                },
                message = self.inbound.message() => match message {
                    Ok(Some(m)) => Event::Message(m),
                    Ok(None) => Event::End("the router closed the stream".to_string()),
                    Err(status) => Event::End(format!("the stream failed: {}", status.message())),
                },
                () = self.outbound.closed() => Event::End("the router went away".to_string()),
                _ = self.stop.wait_for(|s| *s) => Event::Stop,
            };
            match event {
                Event::Published => {}
                Event::Message(m) => self.on_message(m),
                Event::End(why) => break why,
                Event::Stop => {
                    let _ = self
                        .outbound
                        .send(Err(Status::unavailable("the operator is shutting down")))
                        .await;
                    break "the operator is shutting down".to_string();
                }
            }
        };
        tracing::info!(router = self.router.as_str(), "router disconnected: {why}");
        let stream = self.stream;
        self.shared
            .routers
            .send_if_modified(|m| match m.get_mut(&self.router) {
                Some(s) if s.stream == stream => {
                    s.connected = false;
                    s.since = SystemTime::now();
                    true
                }
                _ => false,
            });
    }

    async fn send_snapshot(&mut self, output: &RouterOutput) -> Result<(), String> {
        let config = output.config().map_err(|e| {
            let e = format!("decoding the compiled config {}: {e}", output.version);
            tracing::error!(router = self.router.as_str(), "{e}");
            e
        })?;
        let message = OperatorMessage {
            kind: Some(operator_message::Kind::Snapshot(Snapshot {
                version: output.version.clone(),
                config: Some(config),
            })),
        };
        self.outbound
            .send(Ok(message))
            .await
            .map_err(|_| "the router went away".to_string())?;
        tracing::info!(
            router = self.router.as_str(),
            version = output.version.as_str(),
            bytes = output.encoded.len(),
            "snapshot sent"
        );
        let version = output.version.clone();
        self.update(|s| s.sent_version = Some(version));
        Ok(())
    }

    fn on_message(&mut self, message: RouterMessage) {
        let router = self.router.as_str();
        match message.kind {
            Some(router_message::Kind::Ack(ack)) => {
                tracing::info!(
                    router,
                    version = ack.version.as_str(),
                    "router applied config"
                );
                self.update(|s| {
                    s.applied_version = Some(ack.version.clone());
                    s.outcome = Some(Outcome::Acked {
                        version: ack.version,
                    });
                });
            }
            Some(router_message::Kind::Nack(nack)) => {
                tracing::warn!(
                    router,
                    version = nack.version.as_str(),
                    "router refused config: {}",
                    nack.error
                );
                self.update(|s| {
                    s.outcome = Some(Outcome::Nacked {
                        version: nack.version,
                        error: nack.error,
                    });
                });
            }
            Some(router_message::Kind::Health(health)) => {
                tracing::debug!(router, applied = health.applied_version.as_str(), "health");
                self.update(|s| s.health = Some(health));
            }
            Some(router_message::Kind::Hello(_)) => {
                tracing::warn!(router, "a second Hello on one stream is ignored");
            }
            None => tracing::warn!(router, "a message of a kind this operator does not know"),
        }
    }

    fn update(&self, change: impl FnOnce(&mut RouterState)) {
        let stream = self.stream;
        self.shared
            .routers
            .send_if_modified(|m| match m.get_mut(&self.router) {
                Some(s) if s.stream == stream => {
                    change(s);
                    true
                }
                _ => false,
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{CertificateAuthority, Validity};

    #[test]
    fn a_replaced_serving_certificate_is_what_new_handshakes_get() {
        let (ca, _) = CertificateAuthority::generate().expect("CA");
        let names = ["signpost-operator.signpost.svc".to_string()];
        let first = ca
            .issue_operator(&names, Validity::days_from_now(1))
            .expect("certificate");
        let second = ca
            .issue_operator(&names, Validity::days_from_now(365))
            .expect("certificate");
        let origin = Path::new("Secret signpost/signpost-ca");
        let der = |issued: &Issued| {
            CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).expect("PEM")
        };
        let serving = Arc::new(ServingCert::new(&first, origin).expect("serving"));
        assert!(server_tls_serving(ca.cert_pem(), Arc::clone(&serving), origin).is_ok());
        assert_eq!(serving.current_der(), Some(der(&first)));
        serving.replace(&second, origin).expect("replaced");
        assert_eq!(serving.current_der(), Some(der(&second)));

        // A key that is not the certificate's is refused, and the current one stays.
        let mismatched = Issued {
            key_pem: first.key_pem.clone(),
            ..second.clone()
        };
        let err = serving
            .replace(&mismatched, origin)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("does not match tls.key"), "{err}");
        assert_eq!(serving.current_der(), Some(der(&second)));
    }
}
