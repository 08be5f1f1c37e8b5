//! The stream driver: dial the operator, say Hello, answer snapshots, report health, and when
//! anything fails, wait (exponential backoff with jitter, capped) and dial again — forever,
//! while the router keeps forwarding with the config it has.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use signpost_proto::v1::{Health, Hello, RouterMessage, router_message};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Endpoint;
use tonic_prost::ProstCodec;

use super::ConfigSink;
use super::lkg::LastKnownGood;
use super::snapshot::{self, RawOperatorMessage};
use super::tls::TlsFiles;

/// The gRPC method, as generated from `distribution.proto`.
const SUBSCRIBE: &str = "/signpost.v1.Distribution/Subscribe";
/// The largest snapshot accepted: a hub of a 10,000-store chain has a config of tens of MB.
const MAX_SNAPSHOT_BYTES: usize = 512 << 20;

/// Reconnection delays: attempt `n` waits a random time in `[d/2, d]` with
/// `d = min(max, initial * 2^n)` — growing, capped, and spread so that a thousand routers that
/// lost the operator together do not dial back in the same millisecond.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The delay before attempt `attempt` (0-based), `unit` a random number in `[0, 1)`.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let ceiling = self
            .initial
            .checked_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
            .unwrap_or(self.max)
            .min(self.max);
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        ceiling / 2 + ceiling.mul_f64(unit / 2.0)
    }
}

pub(super) fn random_unit() -> f64 {
    let mut b = [0u8; 4];
    match ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b) {
        Ok(()) => f64::from(u32::from_le_bytes(b)) / (f64::from(u32::MAX) + 1.0),
        // No randomness: no jitter, still a correct delay.
        Err(_) => 0.5,
    }
}

/// Where and how to reach the operator.
#[derive(Clone, Debug)]
pub struct ControlSettings {
    /// This router's name; its certificate must name it.
    pub router: String,
    /// The operator's address, `https://HOST:PORT`.
    pub operator: String,
    /// The name the operator's certificate must be valid for (a DNS name or an address).
    pub server_name: String,
    /// `ca.pem`, `tls.crt`, `tls.key` (see [`super::tls`]).
    pub tls_dir: PathBuf,
    /// Where the last-known-good config lives (see [`super::lkg`]).
    pub state_dir: PathBuf,
    pub backoff: Backoff,
    /// How often to send Health on an open stream.
    pub health_interval: Duration,
    /// Reported in Hello.
    pub software_version: String,
}

impl ControlSettings {
    /// Defaults for everything but the names and directories.
    pub fn new(
        router: &str,
        operator: &str,
        server_name: &str,
        tls_dir: PathBuf,
        state_dir: PathBuf,
    ) -> Self {
        Self {
            router: router.to_string(),
            operator: operator.to_string(),
            server_name: server_name.to_string(),
            tls_dir,
            state_dir,
            backoff: Backoff::default(),
            health_interval: Duration::from_secs(10),
            software_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

/// What the control client is doing, for the admin API, health and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ControlStatus {
    /// The version in force, whether from the operator or from the last-known-good file.
    pub applied_version: Option<String>,
    /// Whether the version in force came from the last-known-good file at start.
    pub from_last_known_good: bool,
    /// A stream to the operator is open (its Hello was accepted).
    pub connected: bool,
    /// Streams opened so far.
    pub connections: u64,
    /// Why the last attempt or stream failed.
    pub last_error: Option<String>,
    /// The last snapshot this router refused, and why.
    pub last_refused: Option<(String, String)>,
}

/// The router's side of the config stream.
pub struct ControlClient {
    settings: ControlSettings,
    sink: Arc<dyn ConfigSink>,
    lkg: LastKnownGood,
    status: watch::Sender<ControlStatus>,
}

impl ControlClient {
    pub fn new(settings: ControlSettings, sink: Arc<dyn ConfigSink>) -> Self {
        let lkg = LastKnownGood::in_dir(&settings.state_dir);
        Self {
            settings,
            sink,
            lkg,
            status: watch::Sender::new(ControlStatus::default()),
        }
    }

    /// Follows [`ControlStatus`] changes.
    pub fn status(&self) -> watch::Receiver<ControlStatus> {
        self.status.subscribe()
    }

    /// Applies the last-known-good config, if any, then keeps a stream to the operator open
    /// until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        self.start_from_last_known_good().await;
        let mut attempt = 0u32;
        loop {
            let result = tokio::select! {
                () = &mut shutdown => return,
                r = self.stream() => r,
            };
            let (opened, error) = match result {
                Ok(()) => (true, "the operator ended the stream".to_string()),
                Err(Failure { opened, error }) => (opened, error),
            };
            if opened {
                attempt = 0;
            }
            let delay = self.settings.backoff.delay(attempt, random_unit());
            attempt = attempt.saturating_add(1);
            tracing::warn!(
                router = self.settings.router.as_str(),
                operator = self.settings.operator.as_str(),
                "{error}; retrying in {delay:?}"
            );
            self.status.send_modify(|s| {
                s.connected = false;
                s.last_error = Some(error);
            });
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    async fn start_from_last_known_good(&self) {
        let lkg = self.lkg.clone();
        let router = self.settings.router.clone();
        let sink = Arc::clone(&self.sink);
        let loaded = tokio::task::spawn_blocking(move || {
            let checked = lkg.load(&router)?;
            match checked {
                None => Ok(None),
                Some(c) => match sink.apply(c.config, &c.version) {
                    Ok(()) => Ok(Some(c.version)),
                    Err(e) => Err(format!(
                        "the last-known-good config {} is refused: {e}",
                        c.version
                    )),
                },
            }
        })
        .await
        .unwrap_or_else(|e| Err(format!("loading the last-known-good config: {e}")));
        match loaded {
            Ok(Some(version)) => {
                tracing::info!(
                    router = self.settings.router.as_str(),
                    version = version.as_str(),
                    "running the last-known-good config until the operator is reached"
                );
                self.status.send_modify(|s| {
                    s.applied_version = Some(version);
                    s.from_last_known_good = true;
                });
            }
            Ok(None) => tracing::info!(
                router = self.settings.router.as_str(),
                "no last-known-good config: waiting for the operator"
            ),
            Err(e) => tracing::error!(router = self.settings.router.as_str(), "{e}"),
        }
    }

    /// One stream, from dialing to its end.
    async fn stream(&self) -> Result<(), Failure> {
        let s = &self.settings;
        let closed = |error: String| Failure {
            opened: false,
            error,
        };
        let files = TlsFiles::read(&s.tls_dir).map_err(|e| closed(format!("TLS identity: {e}")))?;
        let endpoint = Endpoint::from_shared(s.operator.clone())
            .map_err(|e| closed(format!("operator address `{}`: {}", s.operator, chain(&e))))?
            .tls_config(files.client_config(&s.server_name))
            .map_err(|e| closed(format!("TLS configuration: {}", chain(&e))))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true);
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| closed(diagnose(explain_connect(&s.operator, &e), &files)))?;
        let mut grpc =
            tonic::client::Grpc::new(channel).max_decoding_message_size(MAX_SNAPSHOT_BYTES);
        grpc.ready().await.map_err(|e| {
            closed(format!(
                "the connection to {} is not ready: {}",
                s.operator,
                chain(&e)
            ))
        })?;

        let (tx, rx) = mpsc::channel::<RouterMessage>(8);
        let applied = self
            .status
            .borrow()
            .applied_version
            .clone()
            .unwrap_or_default();
        let hello = RouterMessage {
            kind: Some(router_message::Kind::Hello(Hello {
                router: s.router.clone(),
                last_applied_version: applied,
                software_version: s.software_version.clone(),
            })),
        };
        // Queued before the call: the operator reads Hello before it answers.
        tx.send(hello)
            .await
            .map_err(|_| closed("the outgoing stream closed before Hello".into()))?;
        let response = grpc
            .streaming(
                tonic::Request::new(ReceiverStream::new(rx)),
                PathAndQuery::from_static(SUBSCRIBE),
                ProstCodec::<RouterMessage, RawOperatorMessage>::default(),
            )
            .await
            .map_err(|status| closed(explain_refusal(&status, &files)))?;
        let mut inbound = response.into_inner();
        tracing::info!(
            router = s.router.as_str(),
            operator = s.operator.as_str(),
            "connected to the operator"
        );
        self.status.send_modify(|st| {
            st.connected = true;
            st.connections += 1;
            st.last_error = None;
        });
        let opened = |error: String| Failure {
            opened: true,
            error,
        };
        let mut health = tokio::time::interval(s.health_interval);
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        health.tick().await;
        loop {
            let outgoing = tokio::select! {
                message = inbound.message() => match message {
                    Ok(Some(RawOperatorMessage { snapshot: Some(raw) })) => {
                        self.on_snapshot(raw).await
                    }
                    Ok(Some(RawOperatorMessage { snapshot: None })) => {
                        tracing::debug!("a message of a kind this router does not know: ignored");
                        continue;
                    }
                    Ok(None) => return Ok(()),
                    Err(status) => return Err(opened(explain_status(&status))),
                },
                _ = health.tick() => self.health(),
            };
            if tx.send(outgoing).await.is_err() {
                // The stream ended while this router was busy; the operator's status says why.
                let why =
                    match tokio::time::timeout(Duration::from_secs(1), inbound.message()).await {
                        Ok(Err(status)) => explain_status(&status),
                        _ => "the stream closed while this router was sending".to_string(),
                    };
                return Err(opened(why));
            }
        }
    }

    /// Checks, applies and persists a snapshot off the async threads (building tables for a
    /// large config takes a while); returns the Ack or Nack.
    async fn on_snapshot(&self, raw: snapshot::RawSnapshot) -> RouterMessage {
        let sink = Arc::clone(&self.sink);
        let lkg = self.lkg.clone();
        let router = self.settings.router.clone();
        let result = tokio::task::spawn_blocking(move || {
            let result = snapshot::apply(raw, &router, sink.as_ref());
            if let Ok(checked) = &result
                && let Err(e) = lkg.store(&checked.version, &checked.encoded)
            {
                // Applied all the same: the router runs it; only a restart without the
                // operator would come up with an older config.
                tracing::error!(
                    router = router.as_str(),
                    "keeping the last-known-good config: {e}"
                );
            }
            result
        })
        .await;
        let result = match result {
            Ok(r) => r,
            Err(e) => Err(snapshot::Refused {
                version: String::new(),
                error: format!("applying the snapshot failed: {e}"),
            }),
        };
        let router = self.settings.router.as_str();
        match &result {
            Ok(c) => {
                tracing::info!(router, version = c.version.as_str(), "config applied");
                self.status.send_modify(|s| {
                    s.applied_version = Some(c.version.clone());
                    s.from_last_known_good = false;
                });
            }
            Err(r) => {
                tracing::warn!(
                    router,
                    version = r.version.as_str(),
                    "config refused: {}",
                    r.error
                );
                self.status
                    .send_modify(|s| s.last_refused = Some((r.version.clone(), r.error.clone())));
            }
        }
        snapshot::answer(&result)
    }

    fn health(&self) -> RouterMessage {
        let unix_time_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        RouterMessage {
            kind: Some(router_message::Kind::Health(Health {
                unix_time_ms,
                applied_version: self
                    .status
                    .borrow()
                    .applied_version
                    .clone()
                    .unwrap_or_default(),
                ..Health::default()
            })),
        }
    }
}

/// Why a stream ended, and whether it had been opened (which resets the backoff).
struct Failure {
    opened: bool,
    error: String,
}

/// An error and its causes, `a: b: c`.
pub(super) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// A failed dial, with what to check.
pub(super) fn explain_connect(operator: &str, e: &tonic::transport::Error) -> String {
    let text = chain(e);
    let hint = if text.contains("UnknownIssuer") || text.contains("BadSignature") {
        "; the operator's certificate is not from the CA in this router's ca.pem"
    } else if text.contains("NotValidForName") {
        "; the operator's certificate does not name the address dialed (set the server name)"
    } else if text.contains("Expired") {
        "; a certificate has expired"
    } else if text.contains("alert") {
        "; the operator refused this router's certificate: it must be issued by the operator's \
         CA and valid now"
    } else {
        ""
    };
    format!("cannot connect to the operator at {operator}: {text}{hint}")
}

/// A stream that did not open. When the operator answered, its words say why; when the
/// connection was cut instead — how an operator refusing this router's certificate looks with
/// TLS 1.3, where the client learns it only after sending its first request — the router
/// checks its own certificate to say why.
fn explain_refusal(status: &tonic::Status, files: &TlsFiles) -> String {
    let out = explain_status(status);
    match status.code() {
        tonic::Code::Unknown | tonic::Code::Cancelled | tonic::Code::Unavailable => {
            diagnose(out, files)
        }
        _ => out,
    }
}

/// Appends what is wrong with this router's own certificate, if anything.
fn diagnose(error: String, files: &TlsFiles) -> String {
    match files.verify_own() {
        Ok(()) => error,
        Err(own) => format!("{error}; the likely reason: {own}"),
    }
}

/// A refused or failed stream: the operator's own words come first.
fn explain_status(status: &tonic::Status) -> String {
    let message = status.message();
    let mut out = match status.code() {
        // Statuses the transport made up: the connection failed, nobody said no.
        tonic::Code::Unknown | tonic::Code::Cancelled | tonic::Code::Unavailable
            if std::error::Error::source(status).is_some() =>
        {
            "the stream to the operator failed".to_string()
        }
        code => format!("the operator ended the stream: {code:?}: {message}"),
    };
    if let Some(source) = std::error::Error::source(status) {
        let causes = chain(source);
        out.push_str(": ");
        out.push_str(&causes);
    }
    if out.contains("alert") && !out.contains("certificate names") {
        out.push_str(
            "; the operator refused this router's certificate: it must be issued by the \
             operator's CA and valid now",
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn backoff_grows_then_stays_at_its_cap() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        assert_eq!(b.delay(0, 1.0), Duration::from_millis(100));
        assert_eq!(b.delay(0, 0.0), Duration::from_millis(50));
        assert_eq!(b.delay(3, 1.0), Duration::from_millis(800));
        assert_eq!(b.delay(5, 1.0), Duration::from_secs(2));
        assert_eq!(b.delay(u32::MAX, 1.0), Duration::from_secs(2));
        assert_eq!(b.delay(u32::MAX, 0.0), Duration::from_secs(1));
    }

    proptest! {
        #![proptest_config(crate::packet::proptest_config())]

        #[test]
        fn backoff_is_within_half_and_all_of_its_capped_ceiling(
            initial_ms in 1u64..10_000,
            max_ms in 1u64..600_000,
            attempt in any::<u32>(),
            unit in any::<f64>(),
        ) {
            let b = Backoff {
                initial: Duration::from_millis(initial_ms),
                max: Duration::from_millis(max_ms),
            };
            let d = b.delay(attempt, unit);
            let ceiling = Duration::from_millis(
                initial_ms.saturating_mul(1u64 << attempt.min(40)).min(max_ms),
            );
            prop_assert!(d <= ceiling, "{d:?} > {ceiling:?}");
            prop_assert!(d >= ceiling / 2, "{d:?} < half of {ceiling:?}");
        }
    }

    #[test]
    fn jitter_is_a_unit_fraction() {
        for _ in 0..100 {
            let u = random_unit();
            assert!((0.0..1.0).contains(&u), "{u}");
        }
    }
}
