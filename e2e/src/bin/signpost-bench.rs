//! Lab benchmarks of the real router processes (root only; build the binaries first):
//!
//! ```text
//! cargo build --release --workspace --bins && target/release/signpost-bench forward
//!     [--seconds 5] [--senders 6] [--flows 64] [--rate PPS] [--tcp-seconds 5] [--repeat 1]
//!     [--only kernel,routers,fast-path] [--router-arg ARG]...
//! ```
//!
//! `forward`: packets per second and TCP throughput from a client to a server through a store
//! edge and a hub `signpost-router` on AF_XDP (the session pipeline: the edge NATs each flow to
//! waypoints, the hub back to the service's real address) against the Linux kernel forwarding
//! the same traffic on the same namespaces and veths (`ip_forward=1` in both middle namespaces,
//! static routes), side by side; see [`signpost_e2e::router_pair`] for the topology. Two routers
//! because a Signpost session exists between two: one router's WAN output is waypoint-addressed
//! and carries metadata until its peer answers, so it is not something a plain host receives.
//!
//! - UDP: every flow (`--flows`, distinct source ports) first exchanges two datagrams with the
//!   server (through the routers, that completes the session handshake: the hub answers with
//!   reverse metadata until the initiator's next packet arrives without forward metadata, see
//!   SVR-NOTES), then `--senders` threads in the client send 64-byte frames (60 + FCS) of those
//!   flows for `--seconds` with AF_PACKET `sendmmsg`, as fast as they can or paced to `--rate`
//!   frames per second in all (the same offered load for both forwarders, below what overloads
//!   either). Offered = frames handed to the client's veth; received = the server's
//!   `Ip: InReceives`; loss = 1 - received / offered. CPU per packet = CPU time of the senders,
//!   of both router processes and of `ksoftirqd`, over datagrams received; idle = the machine's
//!   idle CPU time during the flood. The kernel forwards inside the senders' own system calls
//!   (softirq work counts for the thread that raised it), the routers in their own threads: on
//!   this machine's cores generator, routers and receiver all share, so packets/s say who got
//!   the CPU, and CPU per packet is the figure that holds up under sharing.
//! - Senders: 6 by default, because fewer make the generator the bottleneck of the XDP path
//!   (README "Benchmarks" has the sweep). A sender whose veth pushes back (the XDP-enabled
//!   peer's ring is full) yields: with two senders each was switched out ~77,000 times a second
//!   and the fast path's CPU per packet was the kernel's; with six, 0.94x, and from six on
//!   neither forwarder forwards more with more senders (under 1 %). Kernel forwarding moves by
//!   under 2 % from two senders to eight (it never pushes back: it forwards inside the send).
//! - TCP: `iperf3 -c SERVICE -t --tcp-seconds`: the server's received throughput and the
//!   client's retransmissions.
//!
//! Three forwarders: the kernel, the routers with every packet through the user-space pipeline
//! (`--fast-path off`, the default), and the routers with the in-kernel fast path
//! (`--fast-path on`: established sessions are forwarded by the routers' XDP program). Every run
//! gets the same host settings, printed with the results: GRO on the client's and the server's
//! veth ends (`cl0`, `srv0`), which XDP_REDIRECT into a veth needs on its peer, and TX checksum
//! offload off on every veth end that sends into a forwarder.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use signpost_e2e::bench::{self, Flood, Tcp};
use signpost_e2e::lab::Metrics;
use signpost_e2e::router_pair::{
    BULK_AND_POLICY, CLIENT, POS_AND_TELEMETRY, ROUTERS, RouterPair, TELEMETRY_POLICY,
};
use signpost_e2e::{available, in_namespace};

const TELEMETRY: Ipv4Addr = Ipv4Addr::new(10, 255, 1, 20);
const TELEMETRY_PORT: u16 = 5140;
const BULK: Ipv4Addr = Ipv4Addr::new(10, 255, 1, 30);
const BULK_PORT: u16 = 5201;
const FIRST_PORT: u16 = 1024;
/// Applied to every forwarder's run alike.
const HOST_SETTINGS: &str = "GRO on cl0 (client) and srv0 (server); TX checksum offload (and \
                             TSO) off on cl0, srv0 and the edge's and hub's veth ends; one \
                             queue per veth";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Forwarder {
    Kernel,
    Routers,
    FastPath,
}

impl Forwarder {
    fn name(self) -> &'static str {
        match self {
            Forwarder::Kernel => "Linux kernel",
            Forwarder::Routers => "routers, fast path off",
            Forwarder::FastPath => "routers, fast path on",
        }
    }
}

struct Options {
    seconds: u64,
    senders: u32,
    flows: u16,
    tcp_seconds: u64,
    /// Offered frames per second in all (None: as fast as the senders can).
    rate: Option<u64>,
    repeat: usize,
    only: Vec<Forwarder>,
    router_args: Vec<String>,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut o = Options {
        seconds: 5,
        senders: 6,
        flows: 64,
        tcp_seconds: 5,
        rate: None,
        repeat: 1,
        only: vec![Forwarder::Kernel, Forwarder::Routers, Forwarder::FastPath],
        router_args: Vec::new(),
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = |v: &str| v.parse::<u64>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--seconds" => o.seconds = number(&value)?.max(1),
            "--senders" => o.senders = number(&value)?.clamp(1, 16) as u32,
            "--flows" => o.flows = number(&value)?.clamp(1, 4096) as u16,
            "--tcp-seconds" => o.tcp_seconds = number(&value)?,
            "--repeat" => o.repeat = number(&value)?.clamp(1, 20) as usize,
            "--rate" => o.rate = Some(number(&value)?.max(1)),
            "--router-arg" => o.router_args.push(value),
            "--only" => {
                o.only = value
                    .split(',')
                    .map(|s| match s {
                        "kernel" => Ok(Forwarder::Kernel),
                        "routers" => Ok(Forwarder::Routers),
                        "fast-path" => Ok(Forwarder::FastPath),
                        other => Err(format!(
                            "--only: {other} is not kernel, routers or fast-path"
                        )),
                    })
                    .collect::<Result<_, _>>()?
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(o)
}

struct Udp {
    flood: Flood,
    received: u64,
    /// Share of the machine's CPU time that was idle during the flood: above a percent or so,
    /// the senders did not keep the cores busy.
    idle: f64,
    /// CPU time of both router processes and of ksoftirqd during the flood.
    forwarder_cpu_ns: u64,
    seconds: f64,
}

struct Outcome {
    udp: Udp,
    tcp: Option<Tcp>,
    /// Through the routers: their interface counters after the UDP run.
    interfaces: Vec<String>,
}

impl Outcome {
    fn offered_pps(&self) -> f64 {
        self.udp.flood.sent as f64 / self.udp.seconds
    }
    fn received_pps(&self) -> f64 {
        self.udp.received as f64 / self.udp.seconds
    }
    fn loss(&self) -> f64 {
        // A datagram or two of the handshakes may still arrive during the flood.
        (100.0 * (1.0 - self.udp.received as f64 / self.udp.flood.sent.max(1) as f64)).max(0.0)
    }
    fn cpu_per_packet(&self) -> f64 {
        (self.udp.flood.cpu_ns + self.udp.forwarder_cpu_ns) as f64 / self.udp.received.max(1) as f64
    }
    fn idle_percent(&self) -> f64 {
        100.0 * self.udp.idle
    }
    fn forwarder_cpu_per_packet(&self) -> f64 {
        self.udp.forwarder_cpu_ns as f64 / self.udp.received.max(1) as f64
    }
}

/// Answers every datagram on the telemetry port until `answering` turns false, then keeps the
/// socket open unread (datagrams are dropped when its buffer is full, not answered with ICMP).
fn server_sink(pair: &RouterPair, answering: Arc<AtomicBool>) -> Result<(), String> {
    let ready = in_namespace(&pair.server, move || {
        let socket = UdpSocket::bind(("0.0.0.0", TELEMETRY_PORT)).map_err(|e| e.to_string())?;
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .map_err(|e| e.to_string())?;
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while answering.load(Ordering::Relaxed) {
                if let Ok((n, from)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(&buf[..n], from);
                }
            }
            // Held until the namespace goes.
            std::thread::park();
            drop(socket);
        });
        Ok(())
    });
    ready
        .join()
        .map_err(|_| "sink thread panicked".to_string())?
}

/// Two answered datagrams per flow from its own source port: through the routers this is each
/// session's handshake (the second one tells the hub the store saw its reverse metadata), so
/// that the flood measures established sessions at both routers. Returns the flows answered
/// twice.
fn open_flows(pair: &RouterPair, flows: u16) -> Result<u16, String> {
    in_namespace(&pair.client, move || {
        let mut answered = 0;
        let mut buf = [0u8; 64];
        for i in 0..flows {
            let socket = UdpSocket::bind((CLIENT, FIRST_PORT + i)).map_err(|e| e.to_string())?;
            socket
                .set_read_timeout(Some(Duration::from_millis(300)))
                .map_err(|e| e.to_string())?;
            let mut answers = 0;
            for _ in 0..6 {
                socket
                    .send_to(b"hello", SocketAddr::from((TELEMETRY, TELEMETRY_PORT)))
                    .map_err(|e| e.to_string())?;
                if socket.recv_from(&mut buf).is_ok() {
                    answers += 1;
                    if answers == 2 {
                        answered += 1;
                        break;
                    }
                }
            }
        }
        Ok(answered)
    })
    .join()
    .map_err(|_| "client thread panicked".to_string())?
}

fn forwarder_cpu_ns(pair: &RouterPair) -> u64 {
    let routers: u64 = pair
        .routers
        .iter()
        .map(|(_, c)| bench::process_cpu_ns(c.id()))
        .sum();
    routers + bench::softirq_cpu_ns()
}

fn run(forwarder: Forwarder, o: &Options) -> Result<Outcome, String> {
    let mut pair = RouterPair::up()?;
    pair.write_manifests(&[
        ("routers.yaml", ROUTERS),
        ("pos-telemetry.yaml", POS_AND_TELEMETRY),
        ("policy.yaml", TELEMETRY_POLICY),
        ("bulk.yaml", BULK_AND_POLICY),
    ])?;
    // The same host settings for every forwarder (see HOST_SETTINGS).
    pair.client.exec("ethtool", &["-K", "cl0", "gro", "on"])?;
    pair.server.exec("ethtool", &["-K", "srv0", "gro", "on"])?;
    match forwarder {
        Forwarder::Kernel => pair.kernel_forwarding(&["10.255.1.20", "10.255.1.30"])?,
        Forwarder::Routers | Forwarder::FastPath => {
            let mut args = o.router_args.clone();
            let on = forwarder == Forwarder::FastPath;
            args.extend([
                "--fast-path".to_string(),
                if on { "on" } else { "off" }.into(),
            ]);
            pair.start_routers("store-1", "hub-1", &args)?
        }
    }
    let answering = Arc::new(AtomicBool::new(true));
    server_sink(&pair, answering.clone())?;
    let answered = open_flows(&pair, o.flows)?;
    answering.store(false, Ordering::Relaxed);
    if answered < o.flows {
        return Err(format!(
            "{}: only {answered} of {} flows were answered\n{}",
            forwarder.name(),
            o.flows,
            pair.logs()
        ));
    }
    let client_mac = RouterPair::mac(&pair.client, "cl0")?;
    let gateway_mac = RouterPair::mac(&pair.edge, "lan0")?;
    let client: Ipv4Addr = CLIENT.parse().map_err(|e| format!("{e}"))?;
    let frames: Vec<Vec<u8>> = (0..o.flows)
        .map(|i| {
            bench::udp_frame(
                client_mac,
                gateway_mac,
                (client, FIRST_PORT + i),
                (TELEMETRY, TELEMETRY_PORT),
                60,
            )
        })
        .collect();
    let received_before = bench::ip_counter(&pair.server.name, "InReceives")?;
    let cpu_before = forwarder_cpu_ns(&pair);
    let ticks_before = bench::cpu_ticks();
    let started = Instant::now();
    let flood = bench::flood(
        &pair.client.name,
        "cl0",
        &frames,
        o.senders,
        Duration::from_secs(o.seconds),
        o.rate,
    )?;
    let seconds = started.elapsed().as_secs_f64();
    let ticks = bench::cpu_ticks();
    let idle = (ticks.0.saturating_sub(ticks_before.0)) as f64
        / (ticks.1.saturating_sub(ticks_before.1)).max(1) as f64;
    // Frames still queued in the routers reach the server within this pause.
    std::thread::sleep(Duration::from_millis(300));
    let udp = Udp {
        flood,
        received: bench::ip_counter(&pair.server.name, "InReceives")? - received_before,
        forwarder_cpu_ns: forwarder_cpu_ns(&pair).saturating_sub(cpu_before),
        idle,
        seconds,
    };
    let mut interfaces = Vec::new();
    for (name, ns) in [("edge", &pair.edge), ("hub", &pair.hub)] {
        if forwarder != Forwarder::Kernel {
            interfaces.push(format!(
                "{name}: {}",
                interface_counters(&RouterPair::scrape(ns)?)
            ));
        }
    }
    let tcp = if o.tcp_seconds == 0 {
        None
    } else {
        let addr = BULK.to_string();
        Some(
            bench::iperf3_tcp(
                &pair.client.name,
                &pair.server.name,
                &addr,
                BULK_PORT,
                o.tcp_seconds,
            )
            .map_err(|e| format!("{}: {e}\n{}", forwarder.name(), pair.logs()))?,
        )
    };
    Ok(Outcome {
        udp,
        tcp,
        interfaces,
    })
}

/// Frames in and out and drops per interface, from a router's metrics.
fn interface_counters(metrics: &str) -> String {
    let metrics = Metrics::parse(metrics);
    let mut out: Vec<String> = Vec::new();
    for (metric, short) in [
        ("signpost_interface_rx_packets_total", "rx"),
        ("signpost_interface_tx_packets_total", "tx"),
        ("signpost_interface_dropped_rx_total", "dropped rx"),
        ("signpost_interface_dropped_tx_total", "dropped tx"),
        (
            "signpost_interface_kernel_rx_dropped_total",
            "kernel dropped rx",
        ),
    ] {
        for (device, value) in metrics.by(metric, "interface") {
            out.push(format!("{device} {short} {value}"));
        }
    }
    // With the fast path: what the XDP program forwarded, and what it handed to user space.
    for (event, value) in metrics.by("signpost_fast_path_total", "event") {
        if value > 0.0 {
            out.push(format!("xdp {event} {value}"));
        }
    }
    out.join(", ")
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn forward(o: &Options) -> Result<(), String> {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    println!(
        "signpost-bench forward: {cores} cores; client → edge → hub → server; UDP: {} flows, \
         64-byte frames from {} sender threads ({}) for {} s; TCP: iperf3 -t {}; {} run(s) \
         each, interleaved, medians; load average before: {}",
        o.flows,
        o.senders,
        o.rate
            .map_or("as fast as they can".to_string(), |r| format!(
                "{r} frames/s in all"
            )),
        o.seconds,
        o.tcp_seconds,
        o.repeat,
        load.join(" ")
    );
    println!("host settings, every run: {HOST_SETTINGS}");
    if !o.router_args.is_empty() {
        println!("router arguments: {}", o.router_args.join(" "));
    }
    let mut results: Vec<(Forwarder, Vec<Outcome>)> =
        o.only.iter().map(|&f| (f, Vec::new())).collect();
    let mut failures = Vec::new();
    for _ in 0..o.repeat {
        for (forwarder, outcomes) in &mut results {
            match run(*forwarder, o) {
                Ok(outcome) => outcomes.push(outcome),
                Err(e) => failures.push(e),
            }
        }
    }
    println!();
    println!(
        "{:<24} {:>12} {:>13} {:>7} {:>10} {:>11} {:>13} {:>7} {:>11} {:>8}",
        "forwarder",
        "offered Mpps",
        "received Mpps",
        "loss %",
        "vs kernel",
        "CPU ns/pkt",
        "of which fwd",
        "idle %",
        "TCP Gbit/s",
        "retrans"
    );
    let kernel_pps = results
        .iter()
        .find(|(f, o)| *f == Forwarder::Kernel && !o.is_empty())
        .map(|(_, o)| median(o.iter().map(Outcome::received_pps).collect()));
    let mut medians = Vec::new();
    for (forwarder, outcomes) in &results {
        if outcomes.is_empty() {
            continue;
        }
        let m = |f: &dyn Fn(&Outcome) -> f64| median(outcomes.iter().map(f).collect());
        let tcp = m(&|o| o.tcp.map_or(0.0, |t| t.bits_per_second));
        let row = (
            m(&Outcome::offered_pps),
            m(&Outcome::received_pps),
            m(&Outcome::loss),
            m(&Outcome::cpu_per_packet),
            m(&Outcome::forwarder_cpu_per_packet),
            tcp,
            m(&|o| o.tcp.map_or(0.0, |t| t.retransmits as f64)),
            m(&Outcome::idle_percent),
        );
        let ratio = kernel_pps.map_or("-".to_string(), |k| format!("{:.2}x", row.1 / k.max(1.0)));
        println!(
            "{:<24} {:>12.3} {:>13.3} {:>7.1} {:>10} {:>11.0} {:>13.0} {:>7.1} {:>11.2} {:>8.0}",
            forwarder.name(),
            row.0 / 1e6,
            row.1 / 1e6,
            row.2,
            ratio,
            row.3,
            row.4,
            row.7,
            row.5 / 1e9,
            row.6
        );
        medians.push((*forwarder, row));
    }
    let find = |f: Forwarder| medians.iter().find(|(x, _)| *x == f).map(|(_, r)| *r);
    for f in [Forwarder::Routers, Forwarder::FastPath] {
        if let (Some(k), Some(r)) = (find(Forwarder::Kernel), find(f)) {
            println!(
                "{} / kernel: received pps {:.2}x (target >= 1.0), CPU per packet {:.2}x, TCP {:.2}x",
                f.name(),
                r.1 / k.1.max(1.0),
                r.3 / k.3.max(1.0),
                r.5 / k.5.max(1.0)
            );
        }
        if let Some(r) = find(f) {
            println!(
                "TCP through the {}: {:.2} Gbit/s (target >= 1 Gbit/s on this {cores}-core machine)",
                f.name(),
                r.5 / 1e9
            );
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    println!("load average after: {}", load.join(" "));
    for (forwarder, outcomes) in &results {
        for line in outcomes
            .last()
            .map(|o| o.interfaces.as_slice())
            .unwrap_or_default()
        {
            println!("{} (last run) {line}", forwarder.name());
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let command = args.next();
    let options = match (command.as_deref(), parse(args)) {
        (Some("forward"), Ok(o)) => o,
        (_, Err(e)) => {
            eprintln!("signpost-bench: {e}");
            std::process::exit(2);
        }
        _ => {
            eprintln!("usage: signpost-bench forward [options]; see the file's documentation");
            std::process::exit(2);
        }
    };
    if let Some(why) = available() {
        eprintln!("signpost-bench: {why}");
        std::process::exit(2);
    }
    if let Err(e) = forward(&options) {
        eprintln!("signpost-bench: {e}");
        std::process::exit(1);
    }
}
