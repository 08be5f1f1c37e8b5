//! The packet I/O drivers forward real traffic: namespaces `a <-> r <-> b` joined by veths, the
//! L3 forwarder running in `r` on the AF_XDP driver (and, in a second test, on the AF_PACKET
//! driver chosen by the automatic fallback), and then ping, a TCP transfer checked byte for
//! byte, and a UDP stream from `a` to `b`. The kernel's own forwarding stays off in `r`, and
//! before the router starts `b` is checked to be unreachable, so the traffic can only have
//! gone through the driver.
//!
//! Needs root (network namespaces, AF_XDP) and `ip`, `ethtool`, `ping`; elsewhere each test
//! prints "skipped: needs root and netns" and passes. Every wait is bounded.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use signpost_cnf::io::{DriverChoice, DriverKind, IoConfig, PortStats};
use support::netns::{self, A_ADDR, B_ADDR, Lab, ROUTER_PORTS};
use support::router;

const TCP_BYTES: usize = 4 << 20;
const UDP_DATAGRAMS: u32 = 2000;
const UDP_PAYLOAD: usize = 200;

/// Log lines of the whole test binary, so a test can check what the drivers said.
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut log) = LOG.lock() {
            log.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_writer(|| LogWriter)
            .with_ansi(false)
            .try_init();
    });
}

fn logged() -> String {
    LOG.lock()
        .map(|log| String::from_utf8_lossy(&log).into_owned())
        .unwrap_or_default()
}

fn ping(lab: &Lab, count: u32) -> Result<(), String> {
    let count = count.to_string();
    let target = B_ADDR.to_string();
    lab.exec(
        &lab.a,
        "timeout",
        &[
            "10", "ping", "-n", "-q", "-c", &count, "-i", "0.2", "-W", "1", &target,
        ],
    )
    .map(|_| ())
}

/// FNV-1a: enough to tell a corrupted or reordered byte stream from the one sent.
fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn pattern(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

/// Sends `TCP_BYTES` from `a` to `b`; `b` answers with the byte count and hash it received.
/// Returns the achieved rate in Mbit/s.
fn tcp_transfer(lab: &Lab) -> Result<f64, String> {
    let server_addr = SocketAddr::from((B_ADDR, 5201));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = netns::in_namespace(&lab.b, move || {
        let listener = TcpListener::bind(server_addr).map_err(|e| format!("bind: {e}"))?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let _ = ready_tx.send(());
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        return Err("no TCP connection within 30 s".into());
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(format!("accept: {e}")),
            }
        };
        stream.set_nonblocking(false).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let (mut count, mut hash) = (0u64, FNV_OFFSET);
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = stream
                .read(&mut buf)
                .map_err(|e| format!("read after {count} bytes: {e}"))?;
            if n == 0 {
                break;
            }
            count += n as u64;
            hash = fnv1a(hash, &buf[..n]);
        }
        let mut answer = [0u8; 16];
        answer[..8].copy_from_slice(&count.to_be_bytes());
        answer[8..].copy_from_slice(&hash.to_be_bytes());
        stream
            .write_all(&answer)
            .map_err(|e| format!("answer: {e}"))?;
        Ok(())
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| "the TCP server in b did not start".to_string())?;
    let data = pattern(TCP_BYTES, 0x5157_7061_7468);
    let expected_hash = fnv1a(FNV_OFFSET, &data);
    let client = netns::in_namespace(&lab.a, move || {
        let started = Instant::now();
        let mut stream = TcpStream::connect_timeout(&server_addr, Duration::from_secs(5))
            .map_err(|e| format!("connect from a to b: {e}"))?;
        stream
            .set_write_timeout(Some(Duration::from_secs(20)))
            .map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .map_err(|e| e.to_string())?;
        stream.write_all(&data).map_err(|e| format!("send: {e}"))?;
        stream
            .shutdown(std::net::Shutdown::Write)
            .map_err(|e| e.to_string())?;
        let mut answer = [0u8; 16];
        stream
            .read_exact(&mut answer)
            .map_err(|e| format!("b's answer: {e}"))?;
        let elapsed = started.elapsed().as_secs_f64();
        let mut count = [0u8; 8];
        let mut hash = [0u8; 8];
        count.copy_from_slice(&answer[..8]);
        hash.copy_from_slice(&answer[8..]);
        Ok((u64::from_be_bytes(count), u64::from_be_bytes(hash), elapsed))
    });
    let (count, hash, elapsed) = client.join().map_err(|_| "client panicked")??;
    server.join().map_err(|_| "server panicked")??;
    if count != TCP_BYTES as u64 || hash != expected_hash {
        return Err(format!(
            "b received {count} bytes with hash {hash:#x}; a sent {TCP_BYTES} with hash \
             {expected_hash:#x}"
        ));
    }
    Ok(TCP_BYTES as f64 * 8.0 / elapsed / 1e6)
}

/// Sends `UDP_DATAGRAMS` numbered datagrams from `a` to `b`, round robin from `flows` sockets
/// (source ports); returns how many arrived intact.
fn udp_stream(lab: &Lab, flows: usize) -> Result<u32, String> {
    let server_addr = SocketAddr::from((B_ADDR, 5300));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = netns::in_namespace(&lab.b, move || {
        let socket = UdpSocket::bind(server_addr).map_err(|e| format!("bind: {e}"))?;
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .map_err(|e| e.to_string())?;
        let _ = ready_tx.send(());
        // Receive first and check afterwards, so that checking does not slow the receiver.
        let mut datagrams = Vec::with_capacity(UDP_DATAGRAMS as usize);
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            datagrams.push((from, buf[..n].to_vec()));
            if datagrams.len() == UDP_DATAGRAMS as usize {
                break;
            }
        }
        let mut seen = vec![false; UDP_DATAGRAMS as usize];
        let mut intact = 0;
        for (from, datagram) in datagrams {
            let n = datagram.len();
            if from.ip() != A_ADDR || n != UDP_PAYLOAD {
                return Err(format!("unexpected datagram of {n} bytes from {from}"));
            }
            let seq = u32::from_be_bytes([datagram[0], datagram[1], datagram[2], datagram[3]]);
            if datagram[4..] != pattern(n - 4, u64::from(seq) + 1)[..] {
                return Err(format!("datagram {seq} arrived corrupted"));
            }
            match seen.get_mut(seq as usize) {
                Some(slot) if !*slot => {
                    *slot = true;
                    intact += 1;
                }
                _ => return Err(format!("datagram {seq} duplicated or unknown")),
            }
        }
        Ok(intact)
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| "the UDP receiver in b did not start".to_string())?;
    let client = netns::in_namespace(&lab.a, move || {
        let sockets = (0..flows.max(1))
            .map(|_| UdpSocket::bind((A_ADDR, 0)).map_err(|e| format!("bind: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        for seq in 0..UDP_DATAGRAMS {
            let mut datagram = seq.to_be_bytes().to_vec();
            datagram.extend(pattern(UDP_PAYLOAD - 4, u64::from(seq) + 1));
            sockets[seq as usize % sockets.len()]
                .send_to(&datagram, server_addr)
                .map_err(|e| format!("send {seq}: {e}"))?;
            if seq % 50 == 49 {
                // Paced (about 25k datagrams/s), so that b's socket buffer does not overflow.
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        Ok(())
    });
    client.join().map_err(|_| "client panicked")??;
    server.join().map_err(|_| "server panicked".to_string())?
}

/// The whole scenario; returns the router's per-port counters.
fn forwarding_scenario(tag: &str, config: IoConfig, expected: DriverKind) -> Vec<PortStats> {
    let lab = Lab::create(tag).unwrap_or_else(|e| panic!("creating the lab: {e}"));
    assert!(
        ping(&lab, 1).is_err(),
        "b must be unreachable from a before the router runs (kernel forwarding is off)"
    );
    let router = router::start(&lab, config).unwrap_or_else(|e| panic!("starting the router: {e}"));
    assert_eq!(router.driver, expected, "the driver that was selected");

    ping(&lab, 3).unwrap_or_else(|e| panic!("ping a -> b through {expected}: {e}"));
    for port in ROUTER_PORTS {
        assert_eq!(
            lab.has_xdp_program(&lab.r, port),
            Ok(expected == DriverKind::Xdp),
            "an XDP program is attached to {port} exactly when the AF_XDP driver runs"
        );
    }
    let mbps = tcp_transfer(&lab).unwrap_or_else(|e| panic!("TCP a -> b through {expected}: {e}"));
    let udp = udp_stream(&lab, 1).unwrap_or_else(|e| panic!("UDP a -> b through {expected}: {e}"));
    let stats = router
        .stop()
        .unwrap_or_else(|e| panic!("stopping the router: {e}"));
    println!(
        "{expected}: ping ok; TCP {TCP_BYTES} bytes intact at {mbps:.0} Mbit/s; UDP \
         {udp}/{UDP_DATAGRAMS} datagrams intact"
    );
    for (port, stats) in ROUTER_PORTS.iter().zip(&stats) {
        println!("  {port}: {stats}");
    }
    assert!(
        udp >= UDP_DATAGRAMS * 95 / 100,
        "only {udp} of {UDP_DATAGRAMS} UDP datagrams arrived"
    );
    for (port, stats) in ROUTER_PORTS.iter().zip(&stats) {
        assert!(
            stats.rx_packets > 0 && stats.tx_packets > 0,
            "{port} moved no traffic: {stats}"
        );
    }
    for port in ROUTER_PORTS {
        assert!(
            !lab.has_xdp_program(&lab.r, port).unwrap_or(true),
            "the XDP program on {port} must be detached when the router stops"
        );
    }
    stats
}

#[test]
fn af_xdp_driver_forwards_ping_tcp_and_udp() {
    if !netns::netns_available() {
        println!("skipped: needs root and netns");
        return;
    }
    let mut config = IoConfig::new(ROUTER_PORTS);
    config.driver = DriverChoice::Xdp;
    let stats = forwarding_scenario("xdp", config, DriverKind::Xdp);
    // Every TCP segment from a crossed r-a and went out r-b.
    assert!(stats[0].rx_packets as usize >= TCP_BYTES / 1500);
}

#[test]
fn af_packet_fallback_is_chosen_and_forwards_ping_tcp_and_udp() {
    if !netns::netns_available() {
        println!("skipped: needs root and netns");
        return;
    }
    capture_logs();
    // veths have one queue: AF_XDP cannot bind queue 1, AF_PACKET does not care.
    let mut config = IoConfig::new(ROUTER_PORTS);
    config.driver = DriverChoice::Auto;
    config.queues = vec![1];
    forwarding_scenario("pkt", config, DriverKind::AfPacket);
    let log = logged();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("falling back to AF_PACKET"))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "one warning line for the fallback: {log}"
    );
    assert!(
        warnings[0].contains("WARN") && warnings[0].contains("queue 1"),
        "the warning says why: {}",
        warnings[0]
    );
}

#[test]
fn af_xdp_driver_serves_every_queue_with_its_own_worker() {
    if !netns::netns_available() {
        println!("skipped: needs root and netns");
        return;
    }
    let lab =
        Lab::create_with_queues("xdpq", 2).unwrap_or_else(|e| panic!("creating the lab: {e}"));
    let mut config = IoConfig::new(ROUTER_PORTS);
    config.driver = DriverChoice::Xdp;
    config.queues = vec![0, 1];
    let router = router::start(&lab, config).unwrap_or_else(|e| panic!("starting the router: {e}"));
    assert_eq!(router.driver, DriverKind::Xdp);
    ping(&lab, 1).unwrap_or_else(|e| panic!("ping a -> b: {e}"));
    // 16 flows: a0 spreads them over its two queues by hash, and veth delivers each on the
    // same queue of r-a; that all land on one queue has a chance of 2^-15.
    let udp = udp_stream(&lab, 16).unwrap_or_else(|e| panic!("UDP a -> b: {e}"));
    let queues = router.queue_stats();
    router
        .stop()
        .unwrap_or_else(|e| panic!("stopping the router: {e}"));
    println!("2 queues: UDP {udp}/{UDP_DATAGRAMS} datagrams intact");
    for (queue, port, stats) in &queues {
        println!("  queue {queue} {port}: {stats}");
    }
    assert!(
        udp >= UDP_DATAGRAMS * 95 / 100,
        "only {udp} of {UDP_DATAGRAMS} UDP datagrams arrived"
    );
    for queue in [0, 1] {
        let received: u64 = queues
            .iter()
            .filter(|(q, port, _)| *q == queue && port == "r-a")
            .map(|(_, _, stats)| stats.rx_packets)
            .sum();
        assert!(
            received > 0,
            "the worker of queue {queue} received nothing on r-a"
        );
    }
}
