//! The router process: the config stream from the operator (mTLS, last-known-good), the
//! session pipeline on AF_XDP (or AF_PACKET) packet I/O, and the admin API.
//!
//! ```text
//! signpost-router --router store-0142 --operator https://10.0.0.1:7443 \
//!     --tls-dir /etc/signpost/tls --state-dir /var/lib/signpost [--interfaces wan0,lan0]
//! ```
//!
//! With `--bootstrap-token-file F` a router that has no certificate yet enrolls first: `--tls-dir`
//! then supplies only `ca.pem` (the operator's CA, pinned), the token in F buys a certificate
//! (see `signpost_cnf::control::bootstrap`), and the identity is kept in `STATE_DIR/identity`,
//! which later starts use without enrolling again.
//!
//! At start the router serves its metrics port (`/metrics`, and the probes `/healthz` and
//! `/readyz`), applies its last-known-good config (if any) and dials the operator; once it has
//! a config it opens the interfaces (those given, or the devices the config names) and
//! forwards. `/healthz` answers 200 from the start and, once forwarding, 503 when the packet
//! I/O workers stop making progress; `/readyz` answers 200 once the data plane runs with a
//! config. SIGINT or SIGTERM stops it.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use signpost_cnf::control::bootstrap::{self, BootstrapSettings};
use signpost_cnf::control::{Backoff, ControlClient, ControlSettings};
use signpost_cnf::io::{DriverChoice, IdlePolicy, IoConfig};
use signpost_cnf::runtime::admin::AdminService;
use signpost_cnf::runtime::{self, ConfigSlot, Runtime, RuntimeOptions};
use signpost_cnf::telemetry::{self, Heartbeat};

#[derive(Parser, Debug)]
#[command(name = "signpost-router", version, about = "The Signpost router (CNF)")]
struct Args {
    /// This router's name (its certificate must name it).
    #[arg(long)]
    router: String,
    /// The operator's distribution endpoint, https://HOST:PORT.
    #[arg(long)]
    operator: String,
    /// The name the operator's certificate must carry (default: the operator URL's host).
    #[arg(long)]
    server_name: Option<String>,
    /// Directory with ca.pem, tls.crt, tls.key (a cert-manager Secret's layout).
    #[arg(long)]
    tls_dir: PathBuf,
    /// Directory for the last-known-good config (and the enrolled identity).
    #[arg(long)]
    state_dir: PathBuf,
    /// Enroll with this one-time bootstrap token when STATE_DIR/identity has no certificate yet (TLS_DIR then needs only ca.pem).
    #[arg(long, value_name = "FILE")]
    bootstrap_token_file: Option<PathBuf>,
    /// Devices to run on, comma-separated (default: the devices the first config names).
    #[arg(long, value_delimiter = ',')]
    interfaces: Vec<String>,
    #[arg(long, value_enum, default_value_t = Driver::Auto)]
    driver: Driver,
    /// Forward established sessions whose packets need only a rewrite (security `none`, no
    /// rate limit, unshaped WAN) in the kernel with an XDP program (AF_XDP driver only; each
    /// egress device must accept XDP frames, see README "The in-kernel fast path").
    #[arg(long, value_enum, default_value_t = Switch::Off)]
    fast_path: Switch,
    /// Queue ids to serve, one worker each.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    queues: Vec<u32>,
    /// WAN MTU: packets that metadata would push past it are dropped (counted).
    #[arg(long, default_value_t = 1500)]
    mtu: u16,
    /// Frames per receive batch and per ring operation (default: the driver's, 64).
    #[arg(long)]
    batch: Option<u32>,
    /// Entries of each AF_XDP ring, a power of two (default 2048).
    #[arg(long)]
    ring: Option<u32>,
    /// Frames of packet memory per worker (default 16384).
    #[arg(long)]
    frames: Option<u32>,
    /// What idle workers do: `busy` (poll without pause; one core per worker) or `spin:US`
    /// (poll for US microseconds after the last frame, then sleep; default spin:50).
    #[arg(long, value_parser = parse_idle)]
    idle: Option<IdlePolicy>,
    /// Admin gRPC address ("off" to disable).
    #[arg(long, default_value = "127.0.0.1:7900")]
    admin: String,
    /// Prometheus metrics and probes address, serving /metrics, /healthz and /readyz from the start ("off" to disable).
    #[arg(long, default_value = "0.0.0.0:9464")]
    metrics: String,
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log filter (EnvFilter directives); RUST_LOG when set wins.
    #[arg(long, default_value = "info")]
    log: String,
    /// OTLP/gRPC collector for spans, http://HOST:PORT (default: OTEL_EXPORTER_OTLP_ENDPOINT).
    #[arg(long)]
    otlp_endpoint: Option<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Driver {
    Auto,
    Xdp,
    AfPacket,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Switch {
    On,
    Off,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn server_name_of(operator: &str) -> String {
    let rest = operator.split("://").nth(1).unwrap_or(operator);
    let authority = rest.split('/').next().unwrap_or(rest);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6).to_string();
    }
    authority.split(':').next().unwrap_or(authority).to_string()
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        let options = telemetry::LogOptions {
            format: match args.log_format {
                LogFormat::Text => telemetry::LogFormat::Text,
                LogFormat::Json => telemetry::LogFormat::Json,
            },
            filter: std::env::var("RUST_LOG").unwrap_or_else(|_| args.log.clone()),
            otlp_endpoint: telemetry::otlp_endpoint(args.otlp_endpoint.as_deref()),
            service_name: "signpost-router".into(),
        };
        let guard = match telemetry::init(&options) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("error: logging and tracing: {e}");
                return Err(());
            }
        };
        let result = run(args).await;
        if let Err(e) = &result {
            tracing::error!("{e}");
        }
        if let Err(e) = guard.shutdown() {
            eprintln!("error: flushing spans: {e}");
        }
        result.map_err(drop)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(()) => ExitCode::FAILURE,
    }
}

async fn wait_or_stop<T>(
    what: impl Future<Output = T>,
    stop: &mut (impl Future<Output = ()> + Unpin),
) -> Option<T> {
    tokio::select! {
        v = what => Some(v),
        () = stop => None,
    }
}

/// Packet I/O that made no progress for this long counts as dead (`/healthz` answers 503): an
/// idle worker passes over its sockets every 10 ms, so this leaves room for a starved CPU.
const IO_STALL: Duration = Duration::from_secs(5);

/// What the metrics endpoint answers from, from the start: the data plane once it runs, and the
/// heartbeat of its packet I/O.
struct Probes {
    data_plane: Mutex<Option<Arc<Runtime>>>,
    heartbeat: Mutex<Heartbeat>,
}

impl Probes {
    fn new() -> Self {
        Self {
            data_plane: Mutex::new(None),
            heartbeat: Mutex::new(Heartbeat::new(IO_STALL)),
        }
    }

    fn data_plane(&self) -> Option<Arc<Runtime>> {
        self.data_plane.lock().ok()?.clone()
    }

    fn set_data_plane(&self, data_plane: Option<Arc<Runtime>>) {
        if let Ok(mut d) = self.data_plane.lock() {
            *d = data_plane;
        }
    }

    /// `/metrics`: nothing until the data plane runs.
    fn render(&self) -> String {
        self.data_plane()
            .map(|dp| runtime::metrics::render(&dp))
            .unwrap_or_default()
    }

    /// `/healthz`: the process answers (it is alive while it enrolls or waits for a config),
    /// and once the data plane runs, its packet I/O is making progress. The workers' per-port
    /// counters are summed over queues: a single stuck queue among live ones goes unnoticed.
    fn live(&self) -> Result<(), String> {
        let Some(dp) = self.data_plane() else {
            return Ok(());
        };
        let progress = dp.port_stats().iter().fold(0u64, |sum, (_, s)| {
            sum.wrapping_add(s.rx_packets)
                .wrapping_add(s.rx_empty_polls)
                .wrapping_add(s.fill_starved)
        });
        let now = Instant::now();
        let Ok(mut heartbeat) = self.heartbeat.lock() else {
            return Ok(());
        };
        heartbeat.observe(now, progress);
        if heartbeat.alive(now) {
            return Ok(());
        }
        Err(format!(
            "packet I/O made no progress for {:.0?}: no I/O worker is running (see the log for \
             the one that stopped)",
            heartbeat.still_for(now)
        ))
    }

    /// `/readyz`: a config is applied (the data plane runs with it) and the I/O is alive.
    fn ready(&self) -> bool {
        self.data_plane().is_some() && self.live().is_ok()
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` ("off": not at all) until `stop`.
async fn serve_probes(
    addr: &str,
    probes: Arc<Probes>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<Option<tokio::task::JoinHandle<std::io::Result<()>>>, String> {
    if addr == "off" {
        return Ok(None);
    }
    let addr: SocketAddr = addr
        .parse()
        .map_err(|_| format!("--metrics `{addr}` is not an address:port"))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("metrics on {addr}: {e}"))?;
    tracing::info!(%addr, "metrics listening on /metrics, /healthz, /readyz");
    let render: Arc<dyn Fn() -> String + Send + Sync> = {
        let probes = Arc::clone(&probes);
        Arc::new(move || probes.render())
    };
    let live: telemetry::Liveness = {
        let probes = Arc::clone(&probes);
        Arc::new(move || probes.live())
    };
    let ready = Arc::new(move || probes.ready());
    Ok(Some(tokio::spawn(telemetry::serve_metrics_and_probes(
        listener, render, live, ready, stop,
    ))))
}

async fn run(args: Args) -> Result<(), String> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    // Probes answer from the start: a router enrolling or waiting for its first config is
    // alive, not ready.
    let probes = Arc::new(Probes::new());
    let metrics =
        serve_probes(&args.metrics, Arc::clone(&probes), stopped(stop_rx.clone())).await?;
    let result = run_router(args, &probes).await;
    let _ = stop_tx.send(true);
    if let Some(metrics) = metrics {
        let _ = metrics.await;
    }
    let stopped = match probes.data_plane.lock().ok().and_then(|mut d| d.take()) {
        Some(dp) => match Arc::try_unwrap(dp) {
            Ok(dp) => tokio::task::spawn_blocking(move || dp.stop())
                .await
                .map_err(|e| format!("stopping the data plane: {e}"))?,
            // A scrape still holds it: it stops when the last reference goes.
            Err(_) => Ok(()),
        },
        None => Ok(()),
    };
    result.and(stopped)
}

/// Enrolls if asked to, dials the operator, starts the data plane with the first config and
/// runs until SIGINT or SIGTERM.
async fn run_router(args: Args, probes: &Probes) -> Result<(), String> {
    let slot = Arc::new(ConfigSlot::new());
    let server_name = args
        .server_name
        .clone()
        .unwrap_or_else(|| server_name_of(&args.operator));
    let mut signal = Box::pin(shutdown_signal());
    let tls_dir = match &args.bootstrap_token_file {
        None => args.tls_dir.clone(),
        Some(token_file) => {
            let enrollment = BootstrapSettings {
                router: args.router.clone(),
                operator: args.operator.clone(),
                server_name: server_name.clone(),
                ca_file: args.tls_dir.join(signpost_cnf::control::tls::CA_CERT_FILE),
                token_file: token_file.clone(),
                identity_dir: args.state_dir.join("identity"),
                backoff: Backoff::default(),
            };
            if !bootstrap::ensure_identity(&enrollment, &mut signal).await? {
                return Ok(());
            }
            enrollment.identity_dir
        }
    };
    let settings = ControlSettings::new(
        &args.router,
        &args.operator,
        &server_name,
        tls_dir,
        args.state_dir.clone(),
    );
    let client = ControlClient::new(settings, slot.clone());
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let control = tokio::spawn(client.run(stopped(stop_rx.clone())));

    // A config first (last-known-good or the operator's): it names the devices.
    let first = async {
        let mut logged = false;
        loop {
            if let Some(t) = slot.current() {
                return t;
            }
            if !logged {
                tracing::info!(operator = args.operator.as_str(), "waiting for a config");
                logged = true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let Some(tables) = wait_or_stop(first, &mut signal).await else {
        let _ = stop_tx.send(true);
        let _ = control.await;
        return Ok(());
    };
    let interfaces = if args.interfaces.is_empty() {
        runtime::config_devices(&tables)
    } else {
        args.interfaces.clone()
    };
    let mut io = IoConfig::new(interfaces);
    io.queues = args.queues.clone();
    io.batch_size = args.batch.unwrap_or(io.batch_size);
    io.ring_size = args.ring.unwrap_or(io.ring_size);
    io.frames_per_queue = args.frames.unwrap_or(io.frames_per_queue);
    io.idle = args.idle.unwrap_or(io.idle);
    io.driver = match args.driver {
        Driver::Auto => DriverChoice::Auto,
        Driver::Xdp => DriverChoice::Xdp,
        Driver::AfPacket => DriverChoice::AfPacket,
    };
    io.fast_path = args.fast_path == Switch::On;
    if io.fast_path && io.driver == DriverChoice::AfPacket {
        let _ = stop_tx.send(true);
        let _ = control.await;
        return Err(
            "--fast-path on needs the AF_XDP driver (--driver xdp or auto): the XDP \
                    program hands what it does not forward to AF_XDP sockets"
                .into(),
        );
    }
    if io.fast_path {
        tracing::info!(
            "fast path on: established sessions that need only a rewrite are forwarded in the \
             kernel by the XDP program; everything else comes to user space"
        );
    } else {
        tracing::info!("fast path off: every packet goes through the user-space pipeline");
    }
    let options = RuntimeOptions {
        io,
        pipeline: runtime::random_options(args.mtu),
    };
    let start_slot = slot.clone();
    let started = tokio::task::spawn_blocking(move || Runtime::start(start_slot, options))
        .await
        .map_err(|e| format!("starting the data plane: {e}"))?;
    let data_plane = match started {
        Ok(dp) => Arc::new(dp),
        Err(e) => {
            let _ = stop_tx.send(true);
            let _ = control.await;
            return Err(e);
        }
    };
    probes.set_data_plane(Some(Arc::clone(&data_plane)));

    let admin = if args.admin == "off" {
        None
    } else {
        let addr: SocketAddr = args
            .admin
            .parse()
            .map_err(|_| format!("--admin `{}` is not an address:port", args.admin))?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("admin API on {addr}: {e}"))?;
        tracing::info!(%addr, "admin API listening");
        let service = AdminService::new(data_plane.clone());
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        Some(tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, stopped(stop_rx.clone())),
        ))
    };

    signal.await;
    let counters = signpost_cnf::runtime::admin::all_counters(&data_plane);
    let nonzero: Vec<String> = counters
        .iter()
        .filter(|c| c.value != 0)
        .map(|c| {
            let labels: Vec<String> = c
                .labels
                .iter()
                .map(|l| format!("{}={}", l.key, l.value))
                .collect();
            format!("{}{{{}}} {}", c.name, labels.join(","), c.value)
        })
        .collect();
    tracing::info!("stopping; counters: {}", nonzero.join(" "));
    let _ = stop_tx.send(true);
    let _ = control.await;
    if let Some(admin) = admin {
        let _ = admin.await;
    }
    Ok(())
}

fn parse_idle(text: &str) -> Result<IdlePolicy, String> {
    match text {
        "busy" => Ok(IdlePolicy::BusyPoll),
        _ => text
            .strip_prefix("spin:")
            .and_then(|us| us.parse().ok())
            .map(|us| IdlePolicy::SpinThenSleep {
                spin: Duration::from_micros(us),
            })
            .ok_or_else(|| format!("`{text}`: use `busy` or `spin:MICROSECONDS`")),
    }
}
