//! The config stream at scale: ROUTERS router control clients (default 1,000), each with its
//! own certificate, dial one operator over mutual TLS on 127.0.0.1 — all in this one process,
//! so clients and server share the machine's cores. Then one publish changes every router's
//! config, and the time until each router's Ack is recorded at the operator is measured.
//!
//!     cargo bench -p signpost-operator --bench distribution_scale [-- ROUTERS]
//!
//! Routers apply through the real data-plane sink and persist last-known-good; their state
//! directories are on /dev/shm when it exists, since a thousand routers' fsyncs on one disk
//! would measure that disk, not the stream. Exits non-zero when p99 exceeds the 2 s target.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use sha2::{Digest, Sha256};
use signpost_cnf::control::{Backoff, ControlClient, ControlSettings, PipelineTables};
use signpost_operator::compiler::RouterOutput;
use signpost_operator::distribution::{self, Configs, Distribution, Outcome};
use signpost_operator::identity::{CertificateAuthority, Validity};
use signpost_proto::v1::{RouterConfig, WanInterface};

const TARGET_P99: Duration = Duration::from_secs(2);

fn config(name: &str, epoch: u64) -> Arc<RouterOutput> {
    let encoded = RouterConfig {
        router: name.to_string(),
        wan_interfaces: vec![WanInterface {
            name: "broadband".into(),
            addresses: vec!["192.0.2.11/24".into()],
            ..Default::default()
        }],
        key_epoch: epoch,
        ..Default::default()
    }
    .encode_to_vec();
    let version = hex::encode(Sha256::digest(&encoded));
    Arc::new(RouterOutput { encoded, version })
}

fn configs(names: &[String], epoch: u64) -> Configs {
    names
        .iter()
        .map(|n| (n.clone(), config(n, epoch)))
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len().max(1)) - 1;
    sorted.get(i).copied().unwrap_or_default()
}

/// Waits until every router's outcome is an Ack of the version `want` gives it; returns when
/// each Ack was first seen, from `start`.
async fn acked(
    dist: &Distribution,
    want: &Configs,
    start: Instant,
    deadline: Duration,
) -> Result<Vec<Duration>, String> {
    let mut board = dist.watch_routers();
    let mut seen: BTreeMap<String, Duration> = BTreeMap::new();
    loop {
        {
            let m = board.borrow_and_update();
            for (name, out) in want {
                if seen.contains_key(name) {
                    continue;
                }
                let ok = m.get(name).is_some_and(|s| {
                    s.outcome
                        == Some(Outcome::Acked {
                            version: out.version.clone(),
                        })
                });
                if ok {
                    seen.insert(name.clone(), start.elapsed());
                }
            }
        }
        if seen.len() == want.len() {
            let mut times: Vec<Duration> = seen.into_values().collect();
            times.sort();
            return Ok(times);
        }
        match tokio::time::timeout_at((start + deadline).into(), board.changed()).await {
            Ok(Ok(())) => {}
            _ => {
                return Err(format!(
                    "{} of {} routers acked within {deadline:?}",
                    seen.len(),
                    want.len()
                ));
            }
        }
    }
}

fn main() -> std::process::ExitCode {
    let routers: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1000);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(routers, cores)) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(routers: usize, cores: usize) -> Result<bool, String> {
    let shm = PathBuf::from("/dev/shm");
    let tmp = if shm.is_dir() {
        tempfile::tempdir_in(&shm)
    } else {
        tempfile::tempdir()
    }
    .map_err(|e| e.to_string())?;
    let ca = CertificateAuthority::create(&tmp.path().join("ca")).map_err(|e| e.to_string())?;
    let op_dir = tmp.path().join("operator");
    ca.issue_operator(&["localhost".into()], Validity::days_from_now(1))
        .and_then(|i| i.write(&op_dir))
        .map_err(|e| e.to_string())?;
    let names: Vec<String> = (0..routers).map(|i| format!("store-{i:05}")).collect();
    let started = Instant::now();
    for n in &names {
        ca.issue_router(n, Validity::days_from_now(1))
            .and_then(|i| i.write(&tmp.path().join("tls").join(n)))
            .map_err(|e| e.to_string())?;
    }
    println!(
        "issued {routers} router certificates in {:.2} s",
        started.elapsed().as_secs_f64()
    );

    let dist = Distribution::new();
    let v1 = configs(&names, 1);
    dist.publish(v1.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let tls = distribution::server_tls(&op_dir).map_err(|e| e.to_string())?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = {
        let dist = dist.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            dist.serve(listener, tls, async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
        })
    };

    let started = Instant::now();
    let mut clients = Vec::new();
    for n in &names {
        let mut settings = ControlSettings::new(
            n,
            &format!("https://{addr}"),
            "localhost",
            tmp.path().join("tls").join(n),
            tmp.path().join("state").join(n),
        );
        settings.backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        let client = ControlClient::new(settings, Arc::new(PipelineTables::new()));
        let mut stop = stop_rx.clone();
        clients.push(tokio::spawn(client.run(async move {
            let _ = stop.wait_for(|s| *s).await;
        })));
    }
    let connect = acked(&dist, &v1, started, Duration::from_secs(120)).await?;
    println!(
        "{routers} routers connected over mTLS and acked their first config: last after {:.2} s \
         ({cores} cores, clients and operator in one process)",
        connect.last().copied().unwrap_or_default().as_secs_f64()
    );

    let v2 = configs(&names, 2);
    let start = Instant::now();
    dist.publish(v2.clone());
    let times = acked(&dist, &v2, start, Duration::from_secs(60)).await?;
    let (p50, p99, max) = (
        percentile(&times, 0.50),
        percentile(&times, 0.99),
        percentile(&times, 1.0),
    );
    println!(
        "config change -> Ack recorded at the operator, {routers} routers: p50 {:.0} ms, p99 {:.0} \
         ms, max {:.0} ms (target p99 <= {} ms; {cores} cores)",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        TARGET_P99.as_millis()
    );

    let _ = stop_tx.send(true);
    for c in clients {
        let _ = c.await;
    }
    let _ = server.await;
    Ok(p99 <= TARGET_P99)
}
