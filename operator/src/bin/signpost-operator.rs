//! `signpost-operator`: the operator. Today it runs in local mode — intent from a directory of
//! manifests instead of the Kubernetes API:
//!
//!     signpost-operator --manifests DIR --listen ADDR --tls-dir DIR [--key-master-file F]
//!
//! It compiles the manifests, serves each router its config over mutual TLS (see
//! `signpost_operator::distribution`), watches the directory and pushes new versions to the
//! routers whose config changed. `--tls-dir` holds `ca.pem`, `tls.crt` and `tls.key`; when the
//! certificate is absent the operator creates its CA (`ca.key`) and certificate there. Issue
//! router certificates from the same directory with `signpostctl certs issue --dir DIR`.
//!
//! Once listening it prints `listening on ADDR` on standard output (with the real port when
//! `--listen` asked for port 0); logs go to standard error (`RUST_LOG` filters them).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use signpost_operator::compiler::Options;
use signpost_operator::distribution::{self, Distribution};
use signpost_operator::identity;
use signpost_operator::local::{self, LocalMode};

#[derive(Parser)]
#[command(
    name = "signpost-operator",
    version,
    about = "Signpost operator, local mode: compile a directory of manifests and serve the configs to routers"
)]
struct Cli {
    /// A directory (read recursively) or a file of YAML/JSON manifests.
    #[arg(long, value_name = "DIR")]
    manifests: PathBuf,
    /// Where routers dial in, e.g. 0.0.0.0:7443 (port 0: any free port, printed).
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// ca.pem, tls.crt, tls.key (and ca.key, key-master when the operator creates them).
    #[arg(long, value_name = "DIR")]
    tls_dir: PathBuf,
    /// The master secret for peer keys (64 hex digits or 32 raw bytes). Default: TLS_DIR/key-master, created when absent.
    #[arg(long, value_name = "FILE")]
    key_master_file: Option<PathBuf>,
    /// The key rotation epoch; raising it rotates every peer key.
    #[arg(long, default_value_t = 0)]
    key_epoch: u64,
    /// A DNS name or address routers use to reach the operator, put in its certificate when the operator creates it (repeatable; localhost, 127.0.0.1 and ::1 are always in).
    #[arg(long = "server-name", value_name = "NAME")]
    server_names: Vec<String>,
    /// How often to look for changed manifests, in milliseconds.
    #[arg(long, default_value_t = 200)]
    poll_ms: u64,
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
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
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
        identity::ensure_operator_identity(&cli.tls_dir, &names).map_err(|e| e.to_string())?
    {
        tracing::info!("{done}");
    }
    let tls = distribution::server_tls(&cli.tls_dir).map_err(|e| e.to_string())?;
    let key_master = local::key_master(
        cli.key_master_file.as_deref(),
        &cli.tls_dir.join("key-master"),
    )?;
    let options = Options {
        key_master,
        key_epoch: cli.key_epoch,
    };
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .map_err(|e| format!("listening on {}: {e}", cli.listen))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("listening on {}: {e}", cli.listen))?;

    let distribution = Distribution::new();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    // The first compile happens before the first router is served: no router is told "no
    // config" just because it was quicker than the compiler.
    let mut local = LocalMode::new(&cli.manifests, options);
    let first = local.reload();
    local::log_reload(&first, local.served());
    distribution.publish(local.served().clone());
    let watcher = tokio::spawn(local::watch(
        local,
        distribution.clone(),
        Duration::from_millis(cli.poll_ms.max(10)),
        stopped(stop_rx.clone()),
    ));

    println!("listening on {bound}");
    tracing::info!(
        "serving router configs on {bound} (manifests: {})",
        cli.manifests.display()
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
