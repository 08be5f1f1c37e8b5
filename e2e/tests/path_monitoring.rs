//! Path monitoring and failover with real processes in real network namespaces, on the retail
//! lab (`signpost_e2e::lab`):
//!
//! 1. `bfd_with_frr_comes_up_and_detects_a_cut_link`: a store router and FRR's `bfdd` standing
//!    at a hub's address across the lab internet (multihop, RFC 5883, no authentication) bring
//!    a BFD session Up; our router measures round trips with Polls FRR answers; the store's
//!    link cut in the transit (`ip link set down`) is detected within a bound.
//! 2. `cutting_the_active_wan_link_moves_live_sessions_without_reset`: `examples/retail` with
//!    one store (broadband on the internet transit, LTE behind the carrier NAT, two hubs);
//!    a POS terminal runs a TCP echo stream (payments) and a 50 packets/s UDP stream (voice)
//!    while broadband is cut: the largest gap is reported and the TCP connection must keep
//!    transferring, every byte checked.
//! 3. `loss_on_a_path_moves_only_the_sessions_whose_sla_it_breaks`: 5 % loss (nftables
//!    `numgen random`) on the store's broadband in the internet transit: payments (SLA 1 %)
//!    moves to LTE, voice (no SLA) stays.
//!
//! Every wait is bounded; the lab removes its namespaces and processes when dropped, also on a
//! failure. Without root or a tool, a test prints `SKIPPED: ...`; under CI that is a failure.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use signpost_e2e::lab::{self, LabOptions, Metrics, Proto, RetailLab, Transit};
use signpost_e2e::{Child, in_namespace, skip_unless_able, traffic};

const BFDD: &str = "/usr/lib/frr/bfdd";
const STORE: &str = "store-0142";

/// `lab::available()` plus the tools a test names.
fn unable(tools: &[&str]) -> Option<String> {
    lab::available().or_else(|| {
        tools
            .iter()
            .find(|t| !Path::new(t).exists() && Command::new(t).arg("--version").output().is_err())
            .map(|t| format!("needs `{t}`"))
    })
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn display(p: impl AsRef<Path>) -> String {
    p.as_ref().display().to_string()
}

fn check<T>(lab: &RetailLab, r: Result<T, String>) -> T {
    r.unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()))
}

fn path_value(m: &Metrics, name: &str, path: &str) -> f64 {
    m.sum(name, &[("path", path)])
}

/// Scrapes `router` every 5 ms until `done` holds; how long that took.
fn wait_metrics(
    lab: &RetailLab,
    router: &str,
    timeout: Duration,
    done: impl Fn(&Metrics) -> bool,
) -> Result<Duration, String> {
    let start = Instant::now();
    let mut last = Metrics::default();
    while start.elapsed() < timeout {
        if let Ok(m) = lab.scrape(router) {
            if done(&m) {
                return Ok(start.elapsed());
            }
            last = m;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let paths: Vec<String> = last
        .samples
        .iter()
        .filter(|s| s.name.starts_with("signpost_path") || s.name.starts_with("signpost_bfd"))
        .map(|s| format!("{} {:?} {}", s.name, s.labels, s.value))
        .collect();
    Err(format!(
        "{router}: not reached within {timeout:?}; last metrics:\n{}",
        paths.join("\n")
    ))
}

// ---------------------------------------------------------------------------------------------
// 1. FRR bfdd
// ---------------------------------------------------------------------------------------------

const FRR_ROUTERS: &str = r#"
apiVersion: signpost.dev/v1alpha1
kind: Router
metadata: {name: store-1}
spec:
  role: edge
  pathMonitoring: {authentication: none}
  interfaces:
    - {name: broadband, role: wan, device: eth0, addresses: [192.0.2.11/24], gateway: 192.0.2.1, neighborhood: internet, vector: broadband}
    - name: lan
      role: lan
      device: eth1
      addresses: [10.1.10.1/24]
      networks: [{name: pos, prefixes: [10.1.10.0/24]}]
---
# FRR's bfdd answers at this hub's address; no Signpost router runs there.
apiVersion: signpost.dev/v1alpha1
kind: Router
metadata: {name: frr-1}
spec:
  role: hub
  interfaces:
    - {name: internet, role: wan, device: eth0, addresses: [198.51.100.10/24], gateway: 198.51.100.1, neighborhood: internet, vector: internet}
    - name: vpc
      role: lan
      device: eth1
      addresses: [10.100.0.1/16]
      networks: [{name: services, prefixes: [10.100.0.0/16]}]
"#;

const BFDD_CONF: &str = "bfd
 peer 192.0.2.11 multihop local-address 198.51.100.10
  receive-interval 50
  transmit-interval 50
  detect-multiplier 3
 !
!
";

/// FRR's view of its peer (`vtysh -c 'show bfd peers json'`): the `status` field.
fn frr_status(ns: &signpost_e2e::Namespace, vty: &Path) -> String {
    let out = ns
        .exec(
            "vtysh",
            &["--vty_socket", &display(vty), "-c", "show bfd peers json"],
        )
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    out.split("\"status\":\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or("")
        .to_string()
}

#[test]
fn bfd_with_frr_comes_up_and_detects_a_cut_link() {
    if skip_unless_able(unable(&[BFDD, "vtysh"])) {
        return;
    }
    let manifests = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(manifests.path().join("routers.yaml"), FRR_ROUTERS)
        .unwrap_or_else(|e| panic!("{e}"));
    let options = LabOptions {
        manifests: manifests.path().to_path_buf(),
        routers: false,
        ..LabOptions::default()
    };
    let mut lab = RetailLab::build(&options).unwrap_or_else(|e| panic!("{e}"));
    // The hub's namespace gets kernel addresses and bfdd instead of a router.
    let setup = (|| {
        let frr_ns = lab.router_ns("frr-1")?;
        frr_ns.ip(&["addr", "add", "198.51.100.10/24", "dev", "eth0"])?;
        frr_ns.ip(&["route", "add", "default", "via", "198.51.100.1"])?;
        frr_ns.tx_offload_off("eth0")?;
        Ok::<(), String>(())
    })();
    check(&lab, setup);
    let vty = lab.work_dir().join("frr");
    check(
        &lab,
        std::fs::create_dir_all(&vty).map_err(|e| e.to_string()),
    );
    check(
        &lab,
        std::fs::write(vty.join("bfdd.conf"), BFDD_CONF).map_err(|e| e.to_string()),
    );
    // bfdd drops to user frr: its directory must be frr's, and the path to it searchable.
    let _ = Command::new("chown")
        .args(["-R", "frr:frr"])
        .arg(&vty)
        .status();
    let _ = Command::new("chmod")
        .arg("755")
        .arg(lab.work_dir())
        .status();
    let mut cmd = check(&lab, lab.router_ns("frr-1")).command(BFDD);
    cmd.args(["-f", &display(vty.join("bfdd.conf"))])
        .args(["-z", &display(vty.join("zserv"))])
        .args(["-i", &display(vty.join("bfdd.pid"))])
        .args(["--vty_socket", &display(&vty)])
        .args(["--bfdctl", &display(vty.join("bfdd.sock"))])
        .args(["-u", "frr", "-g", "frr", "--log", "stdout"]);
    let bfdd = check(&lab, Child::spawn("bfdd", cmd));
    let started = lab.start_operator();
    check(&lab, started);
    let started = lab.start_router("store-1");
    check(&lab, started);

    let id = "store-1/broadband->frr-1/internet";
    let up = check(
        &lab,
        wait_metrics(&lab, "store-1", Duration::from_secs(15), |m| {
            path_value(m, "signpost_path_up", id) == 1.0
                && path_value(m, "signpost_path_latency_us", id) > 0.0
        }),
    );
    let frr_side = frr_status(check(&lab, lab.router_ns("frr-1")), &vty);
    let m = check(&lab, lab.scrape("store-1"));
    let rtt = path_value(&m, "signpost_path_latency_us", id);
    println!(
        "BFD with FRR bfdd (multihop across the lab internet): Up {} ms after the router \
         started (1 s slow rate until Up); FRR says `{frr_side}`; round trip {rtt} µs from \
         Polls FRR answered ({} cores, load {})",
        up.as_millis(),
        cores(),
        load_average()
    );
    assert_eq!(frr_side, "up", "bfdd:\n{}\n{}", bfdd.output(), lab.logs());

    check(&lab, lab.cut("store-1", "broadband"));
    let down = check(
        &lab,
        wait_metrics(&lab, "store-1", Duration::from_secs(3), |m| {
            path_value(m, "signpost_path_up", id) == 0.0
        }),
    );
    println!(
        "link cut → path down after {} ms (detect time 3 × 50 ms; metrics polled every 5 ms; \
         {} cores, load {})",
        down.as_millis(),
        cores(),
        load_average()
    );
    assert!(
        down <= Duration::from_millis(600),
        "{down:?}\n{}",
        lab.logs()
    );
    check(&lab, lab.restore("store-1", "broadband"));
    let again = check(
        &lab,
        wait_metrics(&lab, "store-1", Duration::from_secs(15), |m| {
            path_value(m, "signpost_path_up", id) == 1.0
        }),
    );
    println!("link restored → Up again after {} ms", again.as_millis());
    drop(bfdd);
}

// ---------------------------------------------------------------------------------------------
// 2 and 3. The retail store, two WAN links, two hubs
// ---------------------------------------------------------------------------------------------

/// A UDP service both links may carry, without an SLA (next to payments, which has 1 %).
const VOICE: &str = r#"
apiVersion: signpost.dev/v1alpha1
kind: Service
metadata: {name: voice}
spec:
  addresses: [10.255.9.20/32]
  transports: [{protocol: udp, ports: [{port: 5140}]}]
  locations: [{router: hub-aws, addresses: [10.100.9.20]}]
---
apiVersion: signpost.dev/v1alpha1
kind: Policy
metadata: {name: pos-voice}
spec: {tenants: [pos], services: [voice], security: none, pathPreference: [broadband, lte]}
"#;

/// The retail lab with one store and `voice`, every path of the store Up.
fn retail_lab() -> RetailLab {
    let options = LabOptions {
        extra_manifests: vec![("voice.yaml".into(), VOICE.into())],
        ..LabOptions::default()
    };
    let lab = RetailLab::start(options).unwrap_or_else(|e| panic!("{e}"));
    let up = check(
        &lab,
        wait_metrics(&lab, STORE, Duration::from_secs(20), |m| {
            let paths = m.by("signpost_path_up", "path");
            paths.len() == 4
                && paths.values().all(|v| *v == 1.0)
                && m.by("signpost_path_latency_us", "path")
                    .values()
                    .all(|v| *v > 0.0)
        }),
    );
    println!(
        "{STORE}: all 4 paths Up (authenticated multihop BFD; LTE through the carrier NAT), \
         {} ms after the lab reported its routers forwarding",
        up.as_millis()
    );
    lab
}

/// What the TCP echo stream saw.
#[derive(Debug, Default)]
struct EchoStream {
    exchanges: u64,
    bytes: u64,
    /// Completion times of every exchange, from the start.
    done_at: Vec<Duration>,
    error: Option<String>,
}

/// One TCP connection from `ns` to `to`: a 1,000-byte echo exchange every 10 ms until `stop`,
/// each echo compared byte for byte (the lab servers' echo protocol, `traffic`).
fn tcp_echo_stream(
    ns: &str,
    to: SocketAddr,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Result<EchoStream, String>> {
    in_namespace(ns, move || {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(5))
            .map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let _ = s.set_nodelay(true);
        let start = Instant::now();
        let mut out = EchoStream::default();
        let mut back = vec![0u8; 1000];
        while !stop.load(Ordering::Relaxed) {
            let n = out.exchanges;
            let data: Vec<u8> = (0..1000u64).map(|i| ((i + n) % 251) as u8).collect();
            let mut msg = vec![1u8];
            msg.extend_from_slice(&1000u32.to_be_bytes());
            msg.extend_from_slice(&data);
            let r = s
                .write_all(&msg)
                .and_then(|()| s.read_exact(&mut back))
                .map_err(|e| format!("exchange {n} on the same connection: {e}"));
            if let Err(e) = r {
                out.error = Some(e);
                break;
            }
            if back != data {
                out.error = Some(format!("exchange {n}: the echo differs"));
                break;
            }
            out.exchanges += 1;
            out.bytes += 1000;
            out.done_at.push(start.elapsed());
            let due = start + Duration::from_millis(10) * (n as u32 + 1);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        Ok(out)
    })
}

/// The POS terminal's flows: the payments TCP echo stream (until the flag is set) and a
/// 50 packets/s voice stream of 172-byte datagrams for `voice_for`.
struct Flows {
    stop: Arc<AtomicBool>,
    tcp: std::thread::JoinHandle<Result<EchoStream, String>>,
    udp: std::thread::JoinHandle<Result<traffic::Stream, String>>,
}

fn start_flows(lab: &RetailLab, voice_for: Duration) -> Flows {
    let pos = check(lab, lab.client(STORE, "pos")).name.clone();
    let payments = check(lab, lab.target("payments", Proto::Tcp));
    let voice = check(lab, lab.target("voice", Proto::Udp));
    let stop = Arc::new(AtomicBool::new(false));
    Flows {
        tcp: tcp_echo_stream(&pos, payments, stop.clone()),
        udp: traffic::udp_stream(&pos, voice, 172, 50, voice_for),
        stop,
    }
}

fn largest_gap(times: &[Duration]) -> Duration {
    times
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .max()
        .unwrap_or_default()
}

fn session_line(sessions: &str, service: &str) -> String {
    sessions
        .lines()
        .find(|l| l.split_whitespace().nth(2) == Some(service))
        .unwrap_or("")
        .to_string()
}

#[test]
fn cutting_the_active_wan_link_moves_live_sessions_without_reset() {
    if skip_unless_able(unable(&[])) {
        return;
    }
    let lab = retail_lab();
    let flows = start_flows(&lab, Duration::from_secs(8));
    std::thread::sleep(Duration::from_secs(3));
    let before = check(&lab, lab.ctl(STORE, &["sessions"]));
    check(&lab, lab.cut(STORE, "broadband"));
    std::thread::sleep(Duration::from_secs(4));
    let after = check(&lab, lab.ctl(STORE, &["sessions"]));
    let paths = check(&lab, lab.ctl(STORE, &["paths"]));
    let udp = flows
        .udp
        .join()
        .map_err(|_| "udp stream panicked".to_string());
    let udp = check(&lab, udp.and_then(|r| r));
    flows.stop.store(true, Ordering::Relaxed);
    let tcp = flows
        .tcp
        .join()
        .map_err(|_| "tcp stream panicked".to_string());
    let tcp = check(&lab, tcp.and_then(|r| r));
    let m = check(&lab, lab.scrape(STORE));
    let wakeups = m.sum("signpost_bfd_timer_wakeups_total", &[]).max(1.0);
    let tcp_after = tcp
        .done_at
        .iter()
        .filter(|t| **t > Duration::from_secs(4))
        .count();
    println!(
        "{STORE}: broadband cut under a TCP echo stream (1,000 bytes every 10 ms) and 50 pps \
         UDP: largest gap UDP {} ms (echoes: {} of {} came back), TCP {} ms (target ≤ 300 ms); \
         TCP: {} exchanges on one connection, {} after the cut, error: {:?}; sessions moved: {}; \
         path monitor timers late by {:.0} µs on average, {} µs at most ({} cores, load {})\n\
         before:\n{before}after:\n{after}{paths}",
        udp.max_gap.as_millis(),
        udp.received,
        udp.sent,
        largest_gap(&tcp.done_at).as_millis(),
        tcp.exchanges,
        tcp_after,
        tcp.error,
        m.sum("signpost_session_events_total", &[("event", "rebound")]),
        m.sum("signpost_bfd_timer_late_us_total", &[]) / wakeups,
        m.sum("signpost_bfd_timer_late_max_us", &[]),
        cores(),
        load_average()
    );
    assert!(tcp.error.is_none(), "{:?}\n{}", tcp.error, lab.logs());
    assert!(tcp_after > 100, "TCP stopped after the cut\n{}", lab.logs());
    for svc in ["payments", "voice"] {
        let line = session_line(&after, svc);
        assert!(
            line.contains("/lte->"),
            "{svc} did not move: {line}\n{after}"
        );
    }
    assert!(udp.max_gap < Duration::from_secs(1), "{:?}", udp.max_gap);
}

#[test]
fn loss_on_a_path_moves_only_the_sessions_whose_sla_it_breaks() {
    if skip_unless_able(unable(&["nft"])) {
        return;
    }
    let lab = retail_lab();
    let flows = start_flows(&lab, Duration::from_secs(12));
    std::thread::sleep(Duration::from_secs(2));
    let sessions = check(&lab, lab.ctl(STORE, &["sessions"]));
    for svc in ["payments", "voice"] {
        let line = session_line(&sessions, svc);
        assert!(
            line.contains("/broadband->"),
            "{svc} starts on broadband: {sessions}"
        );
    }
    // 5 % of the store's broadband packets, each way, dropped in the internet transit.
    let transit = check(&lab, lab.transit(Transit::Internet));
    let rules = lab.work_dir().join("loss.nft");
    let ruleset = "table inet sp_loss {\n  chain lossy {\n    type filter hook forward priority 0;\n    \
                   ip saddr 192.0.2.11 numgen random mod 100 < 5 drop\n    \
                   ip daddr 192.0.2.11 numgen random mod 100 < 5 drop\n  }\n}\n";
    check(
        &lab,
        std::fs::write(&rules, ruleset).map_err(|e| e.to_string()),
    );
    check(
        &lab,
        transit.exec("nft", &["-f", &display(&rules)]).map(drop),
    );
    let injected = Instant::now();
    let mut moved = None;
    let mut last = String::new();
    while injected.elapsed() < Duration::from_secs(9) {
        last = check(&lab, lab.ctl(STORE, &["sessions"]));
        if session_line(&last, "payments").contains("/lte->") {
            moved = Some(injected.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // A new payments session would start on LTE too, and `explain` says why. Each broadband
    // path (one per hub) crosses the 1 % limit when its own loss estimate does, so a new
    // session may still be offered the other hub's broadband path for a moment: wait for both.
    let explain_payments = || {
        check(
            &lab,
            lab.ctl(
                STORE,
                &[
                    "explain",
                    "--ingress",
                    "lan@10",
                    "--src",
                    "10.1.10.5",
                    "--dst",
                    "10.255.1.10",
                    "--proto",
                    "tcp",
                    "--dport",
                    "443",
                ],
            ),
        )
    };
    let mut explain = explain_payments();
    let asked = Instant::now();
    while moved.is_some() && !explain.contains("/lte->") && asked.elapsed() < Duration::from_secs(6)
    {
        std::thread::sleep(Duration::from_millis(200));
        explain = explain_payments();
    }
    let paths = check(&lab, lab.ctl(STORE, &["paths"]));
    flows.stop.store(true, Ordering::Relaxed);
    let _ = flows.tcp.join();
    let _ = flows.udp.join();
    let Some(moved) = moved else {
        panic!(
            "payments did not leave broadband:\n{last}\n{paths}\n{}",
            lab.logs()
        );
    };
    let voice_line = session_line(&last, "voice");
    println!(
        "{STORE}: 5 % loss on broadband: payments (SLA 1 %) on LTE after {} ms, voice (no SLA) \
         stayed ({} cores, load {})\n{last}{paths}",
        moved.as_millis(),
        cores(),
        load_average()
    );
    assert!(
        voice_line.contains("/broadband->"),
        "voice moved: {voice_line}"
    );
    println!("signpostctl explain:\n{explain}");
    assert!(explain.contains("/lte->"), "{explain}");
}
