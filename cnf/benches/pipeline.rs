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
    fast_10k: Timing,
    fast_1m: Timing,
    single_10k: Timing,
    single_1m: Timing,
    first: Timing,
    bytes_per_session: f64,
    table_bytes_per_session: f64,
}

/// Wall-clock and CPU time of this thread: the CPU time is what one core spent, which other
/// processes sharing the machine's cores do not inflate (they do disturb caches).
#[derive(Clone, Copy)]
struct Clocks {
    wall: Instant,
    cpu: Duration,
}

impl Clocks {
    fn now() -> Self {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; the call only writes it.
        let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0;
        let cpu = if ok {
            Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
        } else {
            Duration::ZERO
        };
        Self {
            wall: Instant::now(),
            cpu,
        }
    }

    /// Wall-clock and CPU nanoseconds per item since `self`.
    fn per(self, items: usize) -> Timing {
        let end = Clocks::now();
        Timing {
            wall_ns: end.wall.duration_since(self.wall).as_nanos() as f64 / items as f64,
            cpu_ns: end.cpu.saturating_sub(self.cpu).as_nanos() as f64 / items as f64,
        }
    }
}

#[derive(Clone, Copy)]
struct Timing {
    wall_ns: f64,
    cpu_ns: f64,
}

/// Packets per [`Pipeline::handle_batch`] call, as the drivers hand them out (`IoConfig`'s
/// default batch is 64; a receive often returns fewer).
const BATCH: usize = 32;

/// Frame-sized buffers for one batch.
struct Buffers(Box<[[u8; 2048]; BATCH]>);

impl Buffers {
    fn new() -> Self {
        Self(Box::new([[0u8; 2048]; BATCH]))
    }

    /// Copies the next `BATCH` sessions' packets in (as a driver's receive would) and hands them
    /// to the pipeline as one batch. Returns how many were forwarded.
    fn run(
        &mut self,
        edge: &mut Pipeline,
        now: Instant,
        packets: &[[u8; PACKET_LEN]],
        cursor: &mut usize,
        step: usize,
        actions: &mut Vec<Action>,
    ) -> usize {
        let n = packets.len();
        let mut pkts = self.0.each_mut().map(|buf| {
            *cursor = (*cursor + step) % n;
            buf[..PACKET_LEN].copy_from_slice(&packets[*cursor]);
            PacketBuf::new(&mut buf[..], PACKET_LEN)
        });
        edge.handle_batch(now, POS, &mut pkts, actions);
        actions
            .iter()
            .filter(|a| matches!(a, Action::Forward(_)))
            .count()
    }
}

/// The fast path at `n` sessions: one packet per call, and in batches of [`BATCH`].
fn fast_path(c: &mut Criterion, n: usize) -> (Timing, Timing) {
    let now = Instant::now();
    let (mut edge, packets, _) = established(n, now);
    let step = stride(n);
    let mut buf = vec![0u8; 2048];
    let mut buffers = Buffers::new();
    let mut actions = Vec::with_capacity(BATCH);
    let mut i = 0usize;
    let mut group = c.benchmark_group("fast_path");
    group.throughput(Throughput::Elements(1));
    group.bench_function(format!("udp64_{n}_sessions"), |b| {
        b.iter(|| {
            i = (i + step) % n;
            let (a, len) = handle(&mut edge, now, POS, &packets[i], &mut buf);
            black_box((a, len))
        })
    });
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function(format!("udp64_{n}_sessions_batch{BATCH}"), |b| {
        b.iter(|| black_box(buffers.run(&mut edge, now, &packets, &mut i, step, &mut actions)))
    });
    group.finish();
    // The summary's own measurements: long timed runs of the same loops.
    let rounds = 2_000_000usize;
    let start = Clocks::now();
    let mut forwarded = 0usize;
    for _ in 0..rounds {
        i = (i + step) % n;
        let (a, _) = handle(&mut edge, now, POS, &packets[i], &mut buf);
        forwarded += usize::from(matches!(a, Action::Forward(_)));
    }
    let single = start.per(rounds);
    assert_eq!(
        forwarded, rounds,
        "every packet of an established session is forwarded"
    );
    let batches = 5_000_000 / BATCH;
    let start = Clocks::now();
    let mut forwarded = 0usize;
    for _ in 0..batches {
        forwarded += buffers.run(&mut edge, now, &packets, &mut i, step, &mut actions);
    }
    let batch = start.per(batches * BATCH);
    assert_eq!(
        forwarded,
        batches * BATCH,
        "every packet of an established session is forwarded"
    );
    (single, batch)
}

fn first_packet(c: &mut Criterion) -> Timing {
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
    // Returns wall-clock and CPU time spent in the timed loops.
    let mut run = |iters: u64| -> (Duration, Duration) {
        let (mut total, mut cpu) = (Duration::ZERO, Duration::ZERO);
        let mut done = 0u64;
        while done < iters {
            let now = Instant::now();
            let (mut edge, _) = pipelines(now);
            let batch = (iters - done).min(chunk as u64) as usize;
            let start = Clocks::now();
            for packet in &packets[..batch] {
                let (a, len) = handle(&mut edge, now, POS, packet, &mut buf);
                debug_assert!(matches!(a, Action::Forward(_)));
                black_box((a, len));
            }
            let end = Clocks::now();
            total += end.wall.duration_since(start.wall);
            cpu += end.cpu.saturating_sub(start.cpu);
            assert_eq!(edge.counters().sessions_created as usize, batch);
            done += batch as u64;
        }
        (total, cpu)
    };
    let mut group = c.benchmark_group("first_packet");
    group.throughput(Throughput::Elements(1));
    group.bench_function("classify_allocate_metadata_hmac", |b| {
        b.iter_custom(|iters| run(iters).0)
    });
    group.finish();
    let rounds = 1_000_000u64;
    let (wall, cpu) = run(rounds);
    Timing {
        wall_ns: wall.as_nanos() as f64 / rounds as f64,
        cpu_ns: cpu.as_nanos() as f64 / rounds as f64,
    }
}

/// `SIGNPOST_PROFILE=N` runs only the fast path at `N` sessions for 1,000,000 packets, in
/// batches inside [`profiled_batches`] (one per call inside [`profiled_rounds`] with
/// `SIGNPOST_PROFILE_SINGLE=1`), so that `valgrind --tool=callgrind
/// --toggle-collect='*profiled_*'` counts the instructions of the fast path alone, undisturbed
/// by other load on the machine.
fn profile(n: usize) {
    let now = Instant::now();
    let (mut edge, packets, _) = established(n, now);
    let rounds = 1_000_000;
    let forwarded = if std::env::var_os("SIGNPOST_PROFILE_SINGLE").is_some() {
        profiled_rounds(&mut edge, now, &packets, rounds)
    } else {
        profiled_batches(&mut edge, now, &packets, rounds / BATCH)
    };
    println!("profiled {rounds} packets at {n} sessions, {forwarded} forwarded");
}

#[inline(never)]
fn profiled_batches(
    edge: &mut Pipeline,
    now: Instant,
    packets: &[[u8; PACKET_LEN]],
    batches: usize,
) -> usize {
    let step = stride(packets.len());
    let mut buffers = Buffers::new();
    let mut actions = Vec::with_capacity(BATCH);
    let (mut i, mut forwarded) = (0usize, 0usize);
    for _ in 0..batches {
        forwarded += buffers.run(edge, now, packets, &mut i, step, &mut actions);
    }
    forwarded
}

#[inline(never)]
fn profiled_rounds(
    edge: &mut Pipeline,
    now: Instant,
    packets: &[[u8; PACKET_LEN]],
    rounds: usize,
) -> usize {
    let n = packets.len();
    let step = stride(n);
    let mut buf = vec![0u8; 2048];
    let (mut i, mut forwarded) = (0usize, 0usize);
    for _ in 0..rounds {
        i = (i + step) % n;
        let (a, _) = handle(edge, now, POS, &packets[i], &mut buf);
        forwarded += usize::from(matches!(a, Action::Forward(_)));
    }
    forwarded
}

fn main() {
    if let Some(n) = std::env::var("SIGNPOST_PROFILE")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return profile(n);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut c = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(3));
    let (single_10k, fast_10k) = fast_path(&mut c, 10_000);
    let (single_1m, fast_1m) = fast_path(&mut c, 1_000_000);
    let first = first_packet(&mut c);
    let n = 1_000_000usize;
    let (edge, _, grown) = established(n, Instant::now());
    let figures = Figures {
        fast_10k,
        fast_1m,
        single_10k,
        single_1m,
        first,
        bytes_per_session: grown as f64 / n as f64,
        table_bytes_per_session: edge.sessions().memory_bytes() as f64 / n as f64,
    };
    c.final_summary();
    let mpps = |ns: f64| 1_000.0 / ns;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    println!();
    println!(
        "signpost-cnf pipeline ({cores} cores on this machine; one core used; load average {load})"
    );
    println!(
        "  rates are per core: from the CPU time of the benchmark thread (wall-clock figures, \
         inflated when other processes share the cores, in brackets)"
    );
    let mut missed = Vec::new();
    let mut line = |what: &str, value: String, target: &str, met: bool| {
        println!(
            "  {what:<58} {value:>34}   target {target:<22} {}",
            if met { "met" } else { "MISSED" }
        );
        if !met {
            missed.push(what.to_string());
        }
    };
    let rate = |t: Timing| {
        format!(
            "{:.1} Mpps ({:.0} ns/pkt) [{:.0} ns]",
            mpps(t.cpu_ns),
            t.cpu_ns,
            t.wall_ns
        )
    };
    line(
        &format!("fast path, 64-byte UDP, 10,000 sessions, batches of {BATCH}"),
        rate(figures.fast_10k),
        ">= 10 Mpps per core",
        mpps(figures.fast_10k.cpu_ns) >= 10.0,
    );
    line(
        &format!("fast path, 64-byte UDP, 1,000,000 sessions, batches of {BATCH}"),
        rate(figures.fast_1m),
        ">= 5 Mpps per core",
        mpps(figures.fast_1m.cpu_ns) >= 5.0,
    );
    for (what, t) in [
        ("  one packet per call, 10,000 sessions", figures.single_10k),
        (
            "  one packet per call, 1,000,000 sessions",
            figures.single_1m,
        ),
    ] {
        println!("  {what:<58} {:>34}", rate(t));
    }
    line(
        "first packet (classify, policy, allocate, metadata, HMAC)",
        format!(
            "{:.0} k sessions/s [{:.0} k/s]",
            1e6 / figures.first.cpu_ns,
            1e6 / figures.first.wall_ns
        ),
        ">= 300 k/s per core",
        1e6 / figures.first.cpu_ns >= 300.0,
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
