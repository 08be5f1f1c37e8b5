//! Forwarding benchmark in network namespaces (root only): the same `a <-> r <-> b` veth lab
//! as the driver tests, forwarded by the Linux kernel (`ip_forward=1` in `r`, no router), by
//! the AF_XDP driver and by the AF_PACKET driver (both with the L3 lab forwarder), side by side.
//!
//! - Small UDP: 64-byte frames (60 bytes + FCS: 18 bytes of UDP payload, 64 flows) from
//!   `--senders` threads in `a` for `--seconds`, each sending batches with AF_PACKET
//!   `sendmmsg` with the qdisc bypassed, as trafgen does. (trafgen itself aborts with "Flushing
//!   TX_RING failed: Resource temporarily unavailable" when a veth whose peer runs XDP pushes
//!   back, which it does here under load.) Offered = frames the senders handed to `a0`,
//!   received = `b`'s `Ip: InReceives` (datagrams that reached b's IP layer), loss = 1 -
//!   received / offered. CPU per packet = CPU time (from `schedstat`) of the senders, the
//!   router's workers and `ksoftirqd`, over datagrams received; "of which r" is the router's
//!   workers and `ksoftirqd`. This kernel has no separate IRQ time accounting, so softirq work
//!   counts for the thread that raised it: the kernel's forwarding and b's receiving happen in
//!   the senders' system calls; with a router, b's receiving happens in the router's `sendto`.
//!   CPU per packet holds up when other jobs share the machine; packets/s does not.
//! - TCP: `iperf3 -c b -t --tcp-seconds` from `a`; receiver's throughput and retransmissions.
//!
//! The same run with `--tx-budget 32 --no-rekick --idle busy --seconds 0` shows what a forwarder
//! that kicks the kernel only when it has new frames to send does to TCP.
//!
//! ```text
//! cargo run --release -p signpost-cnf --example xdp_forward -- bench
//!     [--seconds 5 (0: no UDP)] [--senders 2] [--tcp-seconds 3] [--only kernel,xdp,packet]
//!     [--batch 64] [--ring 2048] [--frames 16384] [--frame-size 2048]
//!     [--idle busy|sleep|spin:MICROSECONDS] [--tx-budget 32..ring|ring] [--no-rekick]
//!     [--offload on|off] [--repeat N] [--queues N (veth queues, one worker each)]
//! ```

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use signpost_cnf::io::{DriverChoice, FrameSize, IdlePolicy, IoConfig, PortStats};
use signpost_e2e::bench;
use support::netns::{self, A_ADDR, B_ADDR, Lab, ROUTER_PORTS};
use support::router;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Kernel,
    Xdp,
    AfPacket,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Kernel => "Linux kernel",
            Scenario::Xdp => "AF_XDP driver",
            Scenario::AfPacket => "AF_PACKET driver",
        }
    }
}

struct Options {
    seconds: u64,
    senders: u32,
    tcp_seconds: u64,
    repeat: usize,
    scenarios: Vec<Scenario>,
    offload: bool,
    config: IoConfig,
}

fn parse_options() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("bench") => {}
        _ => return Err("usage: xdp_forward bench [options]; see the file's documentation".into()),
    }
    let mut options = Options {
        seconds: 5,
        senders: 2,
        tcp_seconds: 3,
        repeat: 1,
        scenarios: vec![Scenario::Kernel, Scenario::Xdp, Scenario::AfPacket],
        offload: false,
        config: IoConfig::new(ROUTER_PORTS),
    };
    while let Some(flag) = args.next() {
        if flag == "--no-rekick" {
            options.config.tx_kick.while_in_flight = false;
            continue;
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = |v: &str| v.parse::<u64>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--seconds" => options.seconds = number(&value)?,
            "--senders" => options.senders = number(&value)?.max(1) as u32,
            "--tcp-seconds" => options.tcp_seconds = number(&value)?.max(1),
            "--repeat" => options.repeat = number(&value)?.max(1) as usize,
            "--queues" => {
                options.config.queues = (0..number(&value)?.clamp(1, 64) as u32).collect()
            }
            "--tx-budget" => {
                options.config.tx_kick.budget = match value.as_str() {
                    "ring" => None,
                    v => Some(number(v)? as u32),
                }
            }
            "--batch" => options.config.batch_size = number(&value)? as u32,
            "--ring" => options.config.ring_size = number(&value)? as u32,
            "--frames" => options.config.frames_per_queue = number(&value)? as u32,
            "--frame-size" => {
                options.config.frame_size = match value.as_str() {
                    "2048" => FrameSize::B2048,
                    "4096" => FrameSize::B4096,
                    _ => return Err("--frame-size is 2048 or 4096".into()),
                }
            }
            "--idle" => {
                options.config.idle = match value.as_str() {
                    "busy" => IdlePolicy::BusyPoll,
                    "sleep" => IdlePolicy::default(),
                    v => match v.strip_prefix("spin:") {
                        Some(n) => IdlePolicy::SpinThenSleep {
                            spin: Duration::from_micros(number(n)?),
                        },
                        None => return Err("--idle is busy, sleep or spin:MICROSECONDS".into()),
                    },
                }
            }
            "--offload" => options.offload = value == "on",
            "--only" => {
                options.scenarios = value
                    .split(',')
                    .map(|s| match s {
                        "kernel" => Ok(Scenario::Kernel),
                        "xdp" => Ok(Scenario::Xdp),
                        "packet" => Ok(Scenario::AfPacket),
                        other => Err(format!("--only: unknown scenario {other}")),
                    })
                    .collect::<Result<_, _>>()?
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    options.config.validate().map_err(|e| e.to_string())?;
    Ok(options)
}

fn mac_bytes(text: &str) -> [u8; 6] {
    let mut mac = [0u8; 6];
    for (byte, part) in mac.iter_mut().zip(text.split(':')) {
        *byte = u8::from_str_radix(part, 16).unwrap_or(0);
    }
    mac
}

/// 64 frames of 60 bytes (64 on the wire with the FCS) from a to b, UDP with 18 bytes of
/// payload, one source port each so they are 64 flows.
fn udp_frames() -> Vec<Vec<u8>> {
    (0..64u16)
        .map(|i| {
            bench::udp_frame(
                mac_bytes(support::netns::A_MAC),
                mac_bytes(support::netns::R_A_MAC),
                (A_ADDR, 1024 + i),
                (B_ADDR, 9),
                60,
            )
        })
        .collect()
}

/// CPU time so far of the router's worker threads (named `io-q*`) in this process and of the
/// kernel's `ksoftirqd` threads (softirq work deferred out of the threads that raised it).
fn router_and_softirq_cpu_ns() -> u64 {
    bench::own_threads_cpu_ns("io-q") + bench::softirq_cpu_ns()
}

struct UdpResult {
    offered: u64,
    received: u64,
    /// CPU time of the senders (with the softirq work they did) during the run.
    sender_cpu_ns: u64,
    /// CPU time of the router's workers and of ksoftirqd during the run.
    router_cpu_ns: u64,
    seconds: f64,
}

fn udp_run(lab: &Lab, options: &Options) -> Result<UdpResult, String> {
    let received_before = lab.ip_in_receives(&lab.b)?;
    let cpu_before = router_and_softirq_cpu_ns();
    let started = Instant::now();
    let flood = bench::flood(
        &lab.a,
        "a0",
        &udp_frames(),
        options.senders,
        Duration::from_secs(options.seconds),
        None,
    )?;
    let (offered, sender_cpu_ns) = (flood.sent, flood.cpu_ns);
    let seconds = started.elapsed().as_secs_f64();
    // Frames still queued in the router reach b within this pause.
    std::thread::sleep(Duration::from_millis(300));
    let router_cpu_ns = router_and_softirq_cpu_ns().saturating_sub(cpu_before);
    Ok(UdpResult {
        offered,
        received: lab.ip_in_receives(&lab.b)? - received_before,
        sender_cpu_ns,
        router_cpu_ns,
        seconds,
    })
}

struct Outcome {
    udp: UdpResult,
    tcp: bench::Tcp,
    router: Option<Vec<PortStats>>,
    offloads: String,
}

impl Outcome {
    fn offered_pps(&self) -> f64 {
        self.udp.offered as f64 / self.udp.seconds
    }
    fn received_pps(&self) -> f64 {
        self.udp.received as f64 / self.udp.seconds
    }
    /// CPU nanoseconds spent per datagram that reached b.
    fn cpu_per_packet(&self) -> f64 {
        (self.udp.sender_cpu_ns + self.udp.router_cpu_ns) as f64 / self.udp.received.max(1) as f64
    }
    /// The router's workers' and ksoftirqd's share of it.
    fn router_cpu_per_packet(&self) -> f64 {
        self.udp.router_cpu_ns as f64 / self.udp.received.max(1) as f64
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn run_scenario(scenario: Scenario, options: &Options) -> Result<Outcome, String> {
    let lab = Lab::create_with_queues("bench", options.config.queues.len() as u32)?;
    lab.set_checksum_offload(options.offload)?;
    let router = match scenario {
        Scenario::Kernel => {
            lab.set_kernel_forwarding(true)?;
            None
        }
        Scenario::Xdp | Scenario::AfPacket => {
            let mut config = options.config.clone();
            config.driver = if scenario == Scenario::Xdp {
                DriverChoice::Xdp
            } else {
                DriverChoice::AfPacket
            };
            Some(router::start(&lab, config)?)
        }
    };
    // Let a and b learn the router's MAC before measuring.
    let _ = lab.exec(&lab.a, "ping", &["-c", "1", "-W", "2", &B_ADDR.to_string()]);
    let offloads = format!(
        "a0 [{}], r-a [{}]",
        offload_summary(&lab, &lab.a, "a0"),
        offload_summary(&lab, &lab.r, "r-a")
    );
    // A socket on the flood's port in b, never read: datagrams are dropped when its buffer is
    // full instead of each costing an ICMP port-unreachable.
    let (stop_sink, sink_stop) = std::sync::mpsc::channel::<()>();
    let sink = netns::in_namespace(&lab.b, move || {
        let socket = std::net::UdpSocket::bind((B_ADDR, 9)).map_err(|e| format!("sink: {e}"))?;
        let _ = sink_stop.recv();
        drop(socket);
        Ok(())
    });
    std::thread::sleep(Duration::from_millis(50));
    let udp = if options.seconds == 0 {
        Ok(UdpResult {
            offered: 0,
            received: 0,
            sender_cpu_ns: 0,
            router_cpu_ns: 0,
            seconds: 1.0,
        })
    } else {
        udp_run(&lab, options)
    };
    drop(stop_sink);
    let _ = sink.join();
    let udp = udp?;
    let tcp = bench::iperf3_tcp(
        &lab.a,
        &lab.b,
        &B_ADDR.to_string(),
        5201,
        options.tcp_seconds,
    )?;
    let router = router.map(|r| r.stop()).transpose()?;
    Ok(Outcome {
        udp,
        tcp,
        router,
        offloads,
    })
}

/// `ethtool -k` of one interface, the features that decide frame sizes and checksums.
fn offload_summary(lab: &Lab, ns: &str, interface: &str) -> String {
    let Ok(out) = lab.exec(ns, "ethtool", &["-k", interface]) else {
        return "ethtool failed".into();
    };
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    [
        ("tx-checksumming", "tx-csum"),
        ("tcp-segmentation-offload", "tso"),
        ("generic-segmentation-offload", "gso"),
        ("generic-receive-offload", "gro"),
    ]
    .iter()
    .map(|(feature, short)| {
        let value = text
            .lines()
            .find_map(|l| l.trim().strip_prefix(feature)?.strip_prefix(':'))
            .map_or("?", str::trim);
        format!("{short} {value}")
    })
    .collect::<Vec<_>>()
    .join(", ")
}

fn main() {
    let options = match parse_options() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("xdp_forward: {e}");
            std::process::exit(2);
        }
    };
    if !support::netns::netns_available() {
        eprintln!("xdp_forward: needs root and network namespaces (ip netns)");
        std::process::exit(2);
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!(
        "machine: {cores} cores, Linux {}; TX offload on the hosts' veths: {}; router: {} \
         queue(s), batch {}, ring {}, {} frames of {} B per queue, idle {:?}, {:?}",
        kernel.trim(),
        if options.offload { "on" } else { "off" },
        options.config.queues.len(),
        options.config.batch_size,
        options.config.ring_size,
        options.config.frames_per_queue,
        options.config.frame_size.bytes(),
        options.config.idle,
        options.config.tx_kick
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "UDP: 64-byte frames from {} sender threads for {} s; TCP: iperf3 -t {}; {} run(s) per \
         forwarder, interleaved, medians shown; load average before: {}",
        options.senders,
        options.seconds,
        options.tcp_seconds,
        options.repeat,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut results: Vec<(Scenario, Vec<Outcome>)> =
        options.scenarios.iter().map(|&s| (s, Vec::new())).collect();
    let mut failed = false;
    for _ in 0..options.repeat {
        for (scenario, outcomes) in &mut results {
            match run_scenario(*scenario, &options) {
                Ok(outcome) => outcomes.push(outcome),
                Err(e) => {
                    eprintln!("{}: {e}", scenario.name());
                    failed = true;
                }
            }
        }
    }
    println!();
    println!(
        "{:<18} {:>13} {:>14} {:>7} {:>12} {:>11} {:>11} {:>8}   each run: UDP Mpps / TCP \
         Gbit/s",
        "forwarder",
        "offered Mpps",
        "received Mpps",
        "loss %",
        "CPU ns/pkt",
        "of which r",
        "TCP Gbit/s",
        "retrans"
    );
    let mut medians = Vec::new();
    for (scenario, outcomes) in &results {
        if outcomes.is_empty() {
            continue;
        }
        let offered = median(outcomes.iter().map(Outcome::offered_pps).collect());
        let received = median(outcomes.iter().map(Outcome::received_pps).collect());
        let tcp = median(outcomes.iter().map(|o| o.tcp.bits_per_second).collect());
        let retrans = median(outcomes.iter().map(|o| o.tcp.retransmits as f64).collect());
        let cpu = median(outcomes.iter().map(Outcome::cpu_per_packet).collect());
        let router_cpu = median(
            outcomes
                .iter()
                .map(Outcome::router_cpu_per_packet)
                .collect(),
        );
        let loss = if offered > 0.0 {
            100.0 * (1.0 - received / offered)
        } else {
            0.0
        };
        let runs: Vec<String> = outcomes
            .iter()
            .map(|o| {
                format!(
                    "{:.3}/{:.3}",
                    o.received_pps() / 1e6,
                    o.tcp.bits_per_second / 1e9
                )
            })
            .collect();
        println!(
            "{:<18} {:>13.3} {:>14.3} {:>7.1} {:>12.0} {:>11.0} {:>11.3} {:>8.0}   {}",
            scenario.name(),
            offered / 1e6,
            received / 1e6,
            loss,
            cpu,
            router_cpu,
            tcp / 1e9,
            retrans,
            runs.join(" ")
        );
        medians.push((*scenario, received, tcp, cpu));
    }
    if let Some(&(_, kernel_pps, kernel_tcp, kernel_cpu)) =
        medians.iter().find(|(s, ..)| *s == Scenario::Kernel)
    {
        for &(scenario, pps, tcp, cpu) in medians.iter().filter(|(s, ..)| *s != Scenario::Kernel) {
            println!(
                "{} / kernel: UDP received {:.2}x, CPU per packet {:.2}x, TCP {:.2}x",
                scenario.name(),
                pps / kernel_pps.max(1.0),
                cpu / kernel_cpu.max(1.0),
                tcp / kernel_tcp.max(1.0)
            );
        }
    }
    for (scenario, outcomes) in &results {
        let Some(last) = outcomes.last() else {
            continue;
        };
        println!(
            "{} offloads while running: {}",
            scenario.name(),
            last.offloads
        );
        if let Some(ports) = &last.router {
            for (port, stats) in ROUTER_PORTS.iter().zip(ports) {
                println!("{} {port} (last run): {stats}", scenario.name());
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}
