//! The router core's performance targets, measured on the in-memory path (no I/O):
//!
//! - established-session fast path, 64-byte frames (50-byte IPv4/UDP packets), LAN → WAN at the
//!   store edge, with 10,000 and with 1,000,000 live sessions visited in a scattered order
//!   (targets ≥ 10 and ≥ 5 Mpps per core);
//! - first packet: classify + policy + location/path + waypoint allocation + session insert +
//!   metadata encode + HMAC (target ≥ 300,000 new sessions/s per core);
//! - memory per session, counted by a global allocator (target ≤ 256 bytes).
//!
//! `cargo bench -p signpost-cnf --bench pipeline`. Criterion measures; the summary at the end
//! prints each figure with its unit and the machine's core count, and the process exits 1 when a
//! target is missed, so a regression fails loudly.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use signpost_cnf::packet::{Ipv4Packet, UdpDatagram};
use signpost_cnf::pipeline::testbed::{TELEMETRY, edge_config, hub_config};
use signpost_cnf::pipeline::{Action, Ingress, Interface, Options, PacketBuf, Pipeline, Tables};
use signpost_proto::v1::SecurityMode;

/// Counts live heap bytes, to measure what a session costs.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const POS: Ingress = Ingress {
    interface: Interface::Lan(0),
    vlan: Some(10),
};
const WAN: Ingress = Ingress {
    interface: Interface::Wan(0),
    vlan: None,
};
const HUB_LAN: Ingress = Ingress {
    interface: Interface::Lan(0),
    vlan: None,
};
/// A 64-byte Ethernet frame without FCS carries 50 bytes of IPv4: 20 IP + 8 UDP + 22 payload.
const PACKET_LEN: usize = 50;

fn udp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut p[..]);
        ip.set_version_and_header_len(20);
        ip.set_total_len(len as u16);
        ip.set_ttl(64);
        ip.set_protocol(17);
        ip.set_src_addr(src);
        ip.set_dst_addr(dst);
        ip.fill_checksum();
    }
    let mut u = UdpDatagram::new_unchecked(&mut p[20..]);
    u.set_src_port(sport);
    u.set_dst_port(dport);
    u.set_len((len - 20) as u16);
    u.fill_checksum_v4(src, dst);
    p
}

/// The `n`th POS terminal flow: distinct source address and port.
fn client(n: usize) -> (Ipv4Addr, u16) {
    (
        Ipv4Addr::new(10, 1, 10, 1 + (n / 50_000) as u8),
        10_000 + (n % 50_000) as u16,
    )
}

fn pipelines(now: Instant) -> (Pipeline, Pipeline) {
    let edge = Tables::new(&edge_config(SecurityMode::Encrypt), "bench").expect("edge config");
    let hub = Tables::new(&hub_config(SecurityMode::Encrypt), "bench").expect("hub config");
    (
        Pipeline::new(now, Arc::new(edge), Options::default()),
        Pipeline::new(
            now,
            Arc::new(hub),
            Options {
                hash_seed: 9,
                uuid_seed: [3, 4],
                ..Options::default()
            },
        ),
    )
}

fn handle(
    p: &mut Pipeline,
    now: Instant,
    ingress: Ingress,
    packet: &[u8],
    buf: &mut [u8],
) -> (Action, usize) {
    buf[..packet.len()].copy_from_slice(packet);
    let mut pkt = PacketBuf::new(buf, packet.len());
    let action = p.handle(now, ingress, &mut pkt);
    (action, pkt.len())
}

/// `n` sessions through the whole handshake (edge → hub → reply → edge), so the edge sends them
/// without metadata from now on. Returns the edge, and each session's next LAN packet.
fn established(n: usize, now: Instant) -> (Pipeline, Vec<[u8; PACKET_LEN]>, isize) {
    let (mut edge, mut hub) = pipelines(now);
    let before = LIVE.load(Ordering::Relaxed);
    let mut buf = vec![0u8; 2048];
    let mut packets = Vec::with_capacity(n);
    for i in 0..n {
        let (src, port) = client(i);
        let first = udp(src, port, Ipv4Addr::from(TELEMETRY), 9000, PACKET_LEN);
        let (a, len) = handle(&mut edge, now, POS, &first, &mut buf);
        assert!(
            matches!(a, Action::Forward(_)),
            "edge first packet {i}: {a:?}"
        );
        let wan = buf[..len].to_vec();
        let (b, _) = handle(&mut hub, now, WAN, &wan, &mut buf);
        assert!(
            matches!(b, Action::Forward(_)),
            "hub first packet {i}: {b:?}"
        );
        let reply = udp(Ipv4Addr::from(TELEMETRY), 9000, src, port, PACKET_LEN);
        let (c, len) = handle(&mut hub, now, HUB_LAN, &reply, &mut buf);
        assert!(matches!(c, Action::Forward(_)), "hub reply {i}: {c:?}");
        let wan = buf[..len].to_vec();
        let (d, _) = handle(&mut edge, now, WAN, &wan, &mut buf);
        assert!(matches!(d, Action::Forward(_)), "edge reply {i}: {d:?}");
        let mut next = [0u8; PACKET_LEN];
        next.copy_from_slice(&first);
        packets.push(next);
    }
    drop(hub);
    // What the edge grew by: everything still live since `before`, less the packets kept here.
    let grown = LIVE.load(Ordering::Relaxed) - before - (packets.capacity() * PACKET_LEN) as isize;
    (edge, packets, grown)
}

/// Visits sessions in a scattered order (a stride coprime with n), as real traffic does.
fn stride(n: usize) -> usize {
    let mut s = n / 2 + 7919;
    while gcd(s, n) != 1 {
        s += 1;
    }
    s
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

struct Figures {
    fast_10k_ns: f64,
    fast_1m_ns: f64,
    first_ns: f64,
    bytes_per_session: f64,
    table_bytes_per_session: f64,
}

fn fast_path(c: &mut Criterion, n: usize) -> f64 {
    let now = Instant::now();
    let (mut edge, packets, _) = established(n, now);
    let step = stride(n);
    let mut buf = vec![0u8; 2048];
    let mut i = 0usize;
    let mut group = c.benchmark_group("fast_path");
    group.throughput(Throughput::Elements(1));
    let name = format!("udp64_{n}_sessions");
    group.bench_function(&name, |b| {
        b.iter(|| {
            i = (i + step) % n;
            let (a, len) = handle(&mut edge, now, POS, &packets[i], &mut buf);
            black_box((a, len))
        })
    });
    group.finish();
    // The summary's own measurement: one long timed run, the same loop.
    let rounds = 5_000_000usize;
    let start = Instant::now();
    let mut forwarded = 0usize;
    for _ in 0..rounds {
        i = (i + step) % n;
        let (a, _) = handle(&mut edge, now, POS, &packets[i], &mut buf);
        forwarded += usize::from(matches!(a, Action::Forward(_)));
    }
    let ns = start.elapsed().as_nanos() as f64 / rounds as f64;
    assert_eq!(
        forwarded, rounds,
        "every packet of an established session is forwarded"
    );
    ns
}

fn first_packet(c: &mut Criterion) -> f64 {
    // New sessions until the table holds `chunk`, then a fresh pipeline (outside the timing).
    let chunk = 200_000usize;
    let dst = Ipv4Addr::from(TELEMETRY);
    let packets: Vec<Vec<u8>> = (0..chunk)
        .map(|i| {
            let (src, port) = client(i);
            udp(src, port, dst, 9000, PACKET_LEN)
        })
        .collect();
    let mut buf = vec![0u8; 2048];
    let mut run = |iters: u64| -> Duration {
        let mut total = Duration::ZERO;
        let mut done = 0u64;
        while done < iters {
            let now = Instant::now();
            let (mut edge, _) = pipelines(now);
            let batch = (iters - done).min(chunk as u64) as usize;
            let start = Instant::now();
            for packet in &packets[..batch] {
                let (a, len) = handle(&mut edge, now, POS, packet, &mut buf);
                debug_assert!(matches!(a, Action::Forward(_)));
                black_box((a, len));
            }
            total += start.elapsed();
            assert_eq!(edge.counters().sessions_created as usize, batch);
            done += batch as u64;
        }
        total
    };
    let mut group = c.benchmark_group("first_packet");
    group.throughput(Throughput::Elements(1));
    group.bench_function("classify_allocate_metadata_hmac", |b| {
        b.iter_custom(&mut run)
    });
    group.finish();
    let rounds = 1_000_000u64;
    run(rounds).as_nanos() as f64 / rounds as f64
}

fn main() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut c = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(3));
    let fast_10k_ns = fast_path(&mut c, 10_000);
    let fast_1m_ns = fast_path(&mut c, 1_000_000);
    let first_ns = first_packet(&mut c);
    let n = 1_000_000usize;
    let (edge, _, grown) = established(n, Instant::now());
    let figures = Figures {
        fast_10k_ns,
        fast_1m_ns,
        first_ns,
        bytes_per_session: grown as f64 / n as f64,
        table_bytes_per_session: edge.sessions().memory_bytes() as f64 / n as f64,
    };
    c.final_summary();
    let mpps = |ns: f64| 1_000.0 / ns;
    println!();
    println!("signpost-cnf pipeline ({cores} cores on this machine; one core used)");
    let mut missed = Vec::new();
    let mut line = |what: &str, value: String, target: &str, met: bool| {
        println!(
            "  {what:<58} {value:>22}   target {target:<22} {}",
            if met { "met" } else { "MISSED" }
        );
        if !met {
            missed.push(what.to_string());
        }
    };
    line(
        "fast path, 64-byte UDP, 10,000 sessions",
        format!(
            "{:.1} Mpps ({:.0} ns/pkt)",
            mpps(figures.fast_10k_ns),
            figures.fast_10k_ns
        ),
        ">= 10 Mpps per core",
        mpps(figures.fast_10k_ns) >= 10.0,
    );
    line(
        "fast path, 64-byte UDP, 1,000,000 sessions",
        format!(
            "{:.1} Mpps ({:.0} ns/pkt)",
            mpps(figures.fast_1m_ns),
            figures.fast_1m_ns
        ),
        ">= 5 Mpps per core",
        mpps(figures.fast_1m_ns) >= 5.0,
    );
    line(
        "first packet (classify, policy, allocate, metadata, HMAC)",
        format!("{:.0} k sessions/s", 1e6 / figures.first_ns),
        ">= 300 k/s per core",
        1e6 / figures.first_ns >= 300.0,
    );
    line(
        "memory per session (allocator, 1,000,000 sessions)",
        format!("{:.0} bytes", figures.bytes_per_session),
        "<= 256 bytes",
        figures.bytes_per_session <= 256.0,
    );
    println!(
        "  {:<58} {:>22}",
        "  of which session table (slots + indexes)",
        format!("{:.0} bytes", figures.table_bytes_per_session)
    );
    if !missed.is_empty() {
        println!("missed: {}", missed.join("; "));
        std::process::exit(1);
    }
}
