//! Shared by the config-stream tests: certificates from a real CA in a temporary directory, a
//! router control client with fast retries, and waiting for a condition with a deadline.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use signpost_cnf::control::{
    Backoff, ConfigSink, ControlClient, ControlSettings, ControlStatus, PipelineTables,
};
use signpost_operator::distribution::{self, Distribution, DistributionError};
use signpost_operator::identity::{CertificateAuthority, Validity};
use signpost_proto::v1::RouterConfig;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// Every wait in these tests ends by this deadline, well above what a loaded 2-core machine
/// needs, so a failure means broken, not slow.
pub const DEADLINE: Duration = Duration::from_secs(15);

pub fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/retail")
}

/// A CA and identities issued by it, under one temporary directory.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: CertificateAuthority,
}

impl Pki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = CertificateAuthority::create(&dir.path().join("ca")).expect("CA");
        Self { dir, ca }
    }

    /// The operator's TLS directory (`ca.pem`, `tls.crt`, `tls.key`), for localhost.
    pub fn operator(&self) -> PathBuf {
        let out = self.dir.path().join("operator");
        self.ca
            .issue_operator(
                &["localhost".into(), "127.0.0.1".into()],
                Validity::days_from_now(1),
            )
            .expect("operator certificate")
            .write(&out)
            .expect("write");
        out
    }

    /// A router's TLS directory.
    pub fn router(&self, name: &str) -> PathBuf {
        self.router_valid(name, Validity::days_from_now(1))
    }

    pub fn router_valid(&self, name: &str, validity: Validity) -> PathBuf {
        let out = self.dir.path().join(format!("router-{name}"));
        self.ca
            .issue_router(name, validity)
            .expect("router certificate")
            .write(&out)
            .expect("write");
        out
    }

    pub fn state(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("state-{name}"))
    }
}

/// The retail example's configs.
pub fn retail() -> signpost_operator::distribution::Configs {
    let mut local = signpost_operator::local::LocalMode::new(
        &examples(),
        signpost_operator::compiler::Options {
            key_master: [1; 32],
            key_epoch: 0,
        },
    );
    local.reload();
    local.served().clone()
}

/// A day from now.
pub fn valid() -> Validity {
    Validity::days_from_now(1)
}

/// A validity window entirely in the past.
pub fn expired() -> Validity {
    let now = SystemTime::now();
    Validity {
        not_before: now - Duration::from_secs(10 * 86_400),
        not_after: now - Duration::from_secs(86_400),
    }
}

/// The real data-plane sink, also counting what it accepted.
#[derive(Default)]
pub struct Sink {
    pub tables: PipelineTables,
    pub applied: Mutex<Vec<String>>,
}

impl ConfigSink for Sink {
    fn apply(&self, config: RouterConfig, version: &str) -> Result<(), String> {
        self.tables.apply(config, version)?;
        if let Ok(mut a) = self.applied.lock() {
            a.push(version.to_string());
        }
        Ok(())
    }
}

impl Sink {
    /// The version of the tables in force.
    pub fn version(&self) -> Option<String> {
        self.tables.current().map(|t| t.version.clone())
    }

    pub fn applied(&self) -> Vec<String> {
        self.applied.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

/// A running control client.
pub struct Router {
    pub status: watch::Receiver<ControlStatus>,
    pub sink: Arc<Sink>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Router {
    /// Starts router `name` dialing `operator` with the identity in `tls_dir`.
    pub fn start(name: &str, operator: SocketAddr, tls_dir: &Path, state_dir: &Path) -> Self {
        let mut settings = ControlSettings::new(
            name,
            &format!("https://{operator}"),
            "localhost",
            tls_dir.to_path_buf(),
            state_dir.to_path_buf(),
        );
        // Fast retries: the tests wait for reconnections.
        settings.backoff = Backoff {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(200),
        };
        settings.health_interval = Duration::from_millis(200);
        let sink = Arc::new(Sink::default());
        let client = ControlClient::new(settings, sink.clone());
        let status = client.status();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(client.run(async move {
            let _ = stopped.await;
        }));
        Self {
            status,
            sink,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Waits until the client's status satisfies `pred`.
    pub async fn until(
        &mut self,
        what: &str,
        pred: impl FnMut(&ControlStatus) -> bool,
    ) -> ControlStatus {
        until(&mut self.status, what, pred).await
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(DEADLINE, t).await;
        }
    }
}

/// Waits until `rx`'s value satisfies `pred`, or fails the test naming `what` and the value.
pub async fn until<T: Clone + std::fmt::Debug>(
    rx: &mut watch::Receiver<T>,
    what: &str,
    pred: impl FnMut(&T) -> bool,
) -> T {
    let result = tokio::time::timeout(DEADLINE, rx.wait_for(pred))
        .await
        .map(|r| r.map(|v| v.clone()));
    match result {
        Ok(Ok(v)) => v,
        Ok(Err(_)) => panic!("waiting for {what}: the sender is gone"),
        Err(_) => panic!(
            "waiting for {what}: not within {DEADLINE:?}; last: {:?}",
            *rx.borrow()
        ),
    }
}

/// A `Distribution` server on 127.0.0.1, any free port.
pub struct Operator {
    pub dist: Distribution,
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), DistributionError>>,
}

impl Operator {
    pub async fn start(dist: &Distribution, tls_dir: &Path) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let tls = distribution::server_tls(tls_dir).expect("server TLS");
        let (stop, stopped) = oneshot::channel::<()>();
        let d = dist.clone();
        let task = tokio::spawn(async move {
            d.serve(listener, tls, async move {
                let _ = stopped.await;
            })
            .await
        });
        Self {
            dist: dist.clone(),
            addr,
            stop,
            task,
        }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        let served = tokio::time::timeout(DEADLINE, self.task).await;
        assert!(
            matches!(served, Ok(Ok(Ok(())))),
            "the server stops cleanly: {served:?}"
        );
    }
}
