//! `signpost-operator`: the operator, in one of two modes.
//!
//! **Cluster mode** (no `--manifests`): intent from the Kubernetes API server (in-cluster
//! config, or `KUBECONFIG`), status, router workloads and leader election — see
//! `signpost_operator::controller`:
//!
//!     signpost-operator --listen 0.0.0.0:7443 --metrics 0.0.0.0:9090 [--namespace NS]
//!         [--ca-secret signpost-ca] [--server-name NAME ...] [--router-image IMAGE]
//!         [--distribution-endpoint URL] [--lease-name signpost-operator]
//!
//! with `POD_NAMESPACE` and `POD_NAME` from the downward API.
//!
//! **Local mode**: intent from a directory of manifests instead of the Kubernetes API:
//!
//!     signpost-operator --manifests DIR --listen ADDR --tls-dir DIR [--key-master-file F]
//!
//! It compiles the manifests, serves each router its config over mutual TLS (see
//! `signpost_operator::distribution`), watches the directory and pushes new versions to the
//! routers whose config changed. `--tls-dir` holds `ca.pem`, `tls.crt` and `tls.key`; when the
//! certificate is absent the operator creates its CA (`ca.key`) and certificate there. Issue
//! router certificates from the same directory with `signpostctl certs issue --dir DIR`, or
//! bootstrap tokens with `signpostctl bootstrap create --dir DIR` (bootstrap is on when the
//! directory has `ca.key`).
//!
//! Once listening it prints `listening on ADDR` on standard output (with the real port when
//! `--listen` asked for port 0); logs go to standard error (`RUST_LOG` filters them).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use signpost_operator::bootstrap::{Enrollment, LocalTokens};
use signpost_operator::compiler::Options;
use signpost_operator::controller::{self, ClusterOptions, workloads};
use signpost_operator::distribution::{self, Distribution};
use signpost_operator::identity::{self, CertificateAuthority};
use signpost_operator::local::{self, LocalMode};
use signpost_operator::metrics::Metrics;

#[derive(Parser)]
#[command(
    name = "signpost-operator",
    version,
    about = "Signpost operator: compile Tenants, Services, Policies and Routers and serve each router its config (cluster mode, or local mode with --manifests)"
)]
struct Cli {
    /// Local mode: a directory (read recursively) or a file of YAML/JSON manifests. Without it, cluster mode.
    #[arg(long, value_name = "DIR")]
    manifests: Option<PathBuf>,
    /// Where routers dial in, e.g. 0.0.0.0:7443 (port 0: any free port, printed).
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// Serve /metrics, /healthz and /readyz here, e.g. 0.0.0.0:9090.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Local mode: ca.pem, tls.crt, tls.key (and ca.key, key-master when the operator creates them).
    #[arg(long, value_name = "DIR", requires = "manifests")]
    tls_dir: Option<PathBuf>,
    /// Local mode: the master secret for peer keys (64 hex digits or 32 raw bytes). Default: TLS_DIR/key-master, created when absent.
    #[arg(long, value_name = "FILE", requires = "manifests")]
    key_master_file: Option<PathBuf>,
    /// The key rotation epoch; raising it rotates every peer key.
    #[arg(long, default_value_t = 0)]
    key_epoch: u64,
    /// A DNS name or address routers use to reach the operator, put in its certificate (repeatable). Local mode: localhost, 127.0.0.1 and ::1 are always in; cluster mode default: signpost-operator.POD_NAMESPACE.svc and its shorter and longer forms.
    #[arg(long = "server-name", value_name = "NAME")]
    server_names: Vec<String>,
    /// Local mode: how often to look for changed manifests, in milliseconds.
    #[arg(long, default_value_t = 200)]
    poll_ms: u64,
    /// Cluster mode: watch only this namespace (default: all namespaces).
    #[arg(long, value_name = "NS", conflicts_with = "manifests")]
    namespace: Option<String>,
    /// Cluster mode: the Secret in the operator's namespace with ca.pem, ca.key and key-master (created when absent).
    #[arg(long, value_name = "NAME", default_value = "signpost-ca")]
    ca_secret: String,
    /// Cluster mode: the image of router workloads.
    #[arg(long, value_name = "IMAGE")]
    router_image: Option<String>,
    /// Cluster mode: what router pods dial (default https://signpost-operator.POD_NAMESPACE.svc:LISTEN_PORT).
    #[arg(long, value_name = "URL")]
    distribution_endpoint: Option<String>,
    /// Cluster mode: the Lease for leader election, in the operator's namespace.
    #[arg(long, value_name = "NAME", default_value = "signpost-operator")]
    lease_name: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.manifests.clone() {
            Some(manifests) => run_local(cli, manifests).await,
            None => run_cluster(cli).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_cluster(cli: Cli) -> Result<(), String> {
    let client = kube::Client::try_default().await.map_err(|e| {
        format!(
            "cluster mode (no --manifests) needs the Kubernetes API: in-cluster config or \
             KUBECONFIG: {e}"
        )
    })?;
    let operator_namespace = std::env::var("POD_NAMESPACE")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| client.default_namespace().to_string());
    let pod_name = std::env::var("POD_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|n| !n.is_empty()))
        .ok_or("set POD_NAME (the downward API's metadata.name): it names this replica in the leader Lease")?;
    let options = ClusterOptions {
        listen: cli.listen,
        metrics: cli.metrics,
        namespace: cli.namespace,
        operator_namespace,
        pod_name,
        ca_secret: cli.ca_secret,
        server_names: cli.server_names,
        router_image: cli.router_image.unwrap_or_else(workloads::default_image),
        distribution_endpoint: cli.distribution_endpoint,
        lease_name: cli.lease_name,
        key_epoch: cli.key_epoch,
    };
    controller::run(client, options, async {
        wait_for_signal().await;
        tracing::info!("stopping");
    })
    .await
}

async fn run_local(cli: Cli, manifests: PathBuf) -> Result<(), String> {
    let tls_dir = cli
        .tls_dir
        .clone()
        .ok_or("local mode (--manifests) needs --tls-dir")?;
    let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    if !cli.listen.ip().is_unspecified() {
        names.push(cli.listen.ip().to_string());
    }
    for n in cli.server_names {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    if let Some(done) =
        identity::ensure_operator_identity(&tls_dir, &names).map_err(|e| e.to_string())?
    {
        tracing::info!("{done}");
    }
    let tls = distribution::server_tls(&tls_dir).map_err(|e| e.to_string())?;
    let key_master =
        local::key_master(cli.key_master_file.as_deref(), &tls_dir.join("key-master"))?;
    let options = Options {
        key_master,
        key_epoch: cli.key_epoch,
    };
    let (listener, bound) = distribution::listen(cli.listen).await?;

    let distribution = Distribution::new();
    if tls_dir.join(identity::CA_KEY_FILE).exists() {
        let ca = CertificateAuthority::load(&tls_dir).map_err(|e| e.to_string())?;
        distribution.enable_bootstrap(Enrollment::new(
            Arc::new(ca),
            Arc::new(LocalTokens::new(&tls_dir)),
        ));
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    // The first compile happens before the first router is served: no router is told "no
    // config" just because it was quicker than the compiler.
    let mut local = LocalMode::new(&manifests, options);
    let first = local.reload();
    local::log_reload(&first, local.served());
    distribution.publish(local.served().clone());
    let watcher = tokio::spawn(local::watch(
        local,
        distribution.clone(),
        Duration::from_millis(cli.poll_ms.max(10)),
        stopped(stop_rx.clone()),
    ));

    let metrics = match cli.metrics {
        Some(addr) => {
            let m = Arc::new(Metrics::default());
            m.set_ready();
            Some(tokio::spawn(controller::serve_metrics(
                addr,
                m,
                distribution.clone(),
                stopped(stop_rx.clone()),
            )))
        }
        None => None,
    };
    println!("listening on {bound}");
    tracing::info!(
        "serving router configs on {bound} (manifests: {})",
        manifests.display()
    );
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("stopping");
        let _ = stop_tx.send(true);
    });
    let served = distribution
        .serve(listener, tls, stopped(stop_rx))
        .await
        .map_err(|e| e.to_string());
    let _ = watcher.await;
    if let Some(m) = metrics {
        let _ = m.await;
    }
    served
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
