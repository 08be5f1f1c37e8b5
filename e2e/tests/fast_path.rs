//! The in-kernel fast path end to end, with real `signpost-router` processes started with
//! `--fast-path on` in real network namespaces (the [`RouterPair`] topology:
//! `client ── store-1 ── hub-1 ── server`, both routers on AF_XDP with the XDP program attached
//! to their devices).
//!
//! - A UDP session (`telemetry`, security `none`) of a few thousand answered datagrams: after
//!   the handshake both routers forward it in the kernel (the program's `forwarded-packets`
//!   counter, the sessions in the fast path), user space forwards only its first packets, and
//!   the session outlives several idle timeouts (3 s here) while busy: one session created,
//!   none expired. Once quiet it expires and its entries leave the kernel.
//! - A flow no policy allows (`vault`) stays denied: the program has no entry for it, punts it,
//!   and the pipeline drops it.
//! - Stopped (SIGTERM), each router detaches its program from its devices.
//!
//! The endpoints' veths have GRO on: a veth accepts XDP-redirected frames only when its peer
//! has NAPI (GRO or an XDP program), see README "The in-kernel fast path". Needs root; without
//! it prints `SKIPPED: ...` and passes. Every wait is bounded.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use signpost_e2e::lab::Metrics;
use signpost_e2e::router_pair::{CLIENT, ROUTERS, RouterPair};
use signpost_e2e::{available, in_namespace};

const TELEMETRY: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(10, 255, 1, 20)), 5140);
const VAULT: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(10, 255, 1, 40)), 5141);
const IDLE_SECONDS: u64 = 3;

const SERVICES: &str = r#"
apiVersion: signpost.dev/v1alpha1
kind: Tenant
metadata: {name: pos}
spec: {networks: [pos]}
---
apiVersion: signpost.dev/v1alpha1
kind: Service
metadata: {name: telemetry}
spec:
  addresses: [10.255.1.20/32]
  transports: [{protocol: udp, ports: [{port: 5140}]}]
  locations: [{router: hub-1, addresses: [10.100.1.10]}]
---
apiVersion: signpost.dev/v1alpha1
kind: Service
metadata: {name: vault}
spec:
  addresses: [10.255.1.40/32]
  transports: [{protocol: udp, ports: [{port: 5141}]}]
  locations: [{router: hub-1, addresses: [10.100.1.10]}]
---
apiVersion: signpost.dev/v1alpha1
kind: Policy
metadata: {name: pos-telemetry}
spec: {tenants: [pos], services: [telemetry], security: none}
"#;

/// Both routers with a short UDP idle timeout, so that "survives expiry while busy" takes
/// seconds.
fn routers() -> String {
    let limits = format!("  limits: {{udpIdleTimeoutSeconds: {IDLE_SECONDS}}}\n");
    ROUTERS
        .replace("  role: edge\n", &format!("  role: edge\n{limits}"))
        .replace("  role: hub\n", &format!("  role: hub\n{limits}"))
}

/// An echo server on both service ports until `running` turns false.
fn echo_server(pair: &RouterPair, running: Arc<AtomicBool>) -> Result<(), String> {
    in_namespace(&pair.server, move || {
        for port in [TELEMETRY.port(), VAULT.port()] {
            let socket = UdpSocket::bind(("0.0.0.0", port)).map_err(|e| e.to_string())?;
            socket
                .set_read_timeout(Some(Duration::from_millis(50)))
                .map_err(|e| e.to_string())?;
            let running = running.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while running.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = socket.recv_from(&mut buf) {
                        let _ = socket.send_to(&buf[..n], from);
                    }
                }
            });
        }
        Ok(())
    })
    .join()
    .map_err(|_| "server thread panicked".to_string())?
}

/// Sends `count` datagrams from `sport` to `to`, one every `gap`, and counts the answers.
fn exchange(
    pair: &RouterPair,
    sport: u16,
    to: SocketAddr,
    count: u32,
    gap: Duration,
) -> Result<u32, String> {
    in_namespace(&pair.client, move || {
        let socket = UdpSocket::bind((CLIENT, sport)).map_err(|e| e.to_string())?;
        socket
            .set_read_timeout(Some(Duration::from_millis(1)))
            .map_err(|e| e.to_string())?;
        let mut answered = 0;
        let mut buf = [0u8; 256];
        for i in 0..count {
            let started = Instant::now();
            socket
                .send_to(format!("reading {i}").as_bytes(), to)
                .map_err(|e| e.to_string())?;
            while started.elapsed() < gap {
                if socket.recv_from(&mut buf).is_ok() {
                    answered += 1;
                }
            }
        }
        let end = Instant::now() + Duration::from_millis(300);
        while Instant::now() < end {
            if socket.recv_from(&mut buf).is_ok() {
                answered += 1;
            }
        }
        Ok(answered)
    })
    .join()
    .map_err(|_| "client thread panicked".to_string())?
}

struct Seen {
    forwarded_in_kernel: f64,
    kernel_sessions: f64,
    user_space_forwarded: f64,
    created: f64,
    expired: f64,
    no_rule: f64,
}

fn seen(ns: &signpost_e2e::Namespace) -> Result<Seen, String> {
    let m = Metrics::parse(&RouterPair::scrape(ns)?);
    let forwarded = m.sum(
        "signpost_forwarded_packets_total",
        &[("direction", "to-wan")],
    ) + m.sum(
        "signpost_forwarded_packets_total",
        &[("direction", "to-lan")],
    );
    Ok(Seen {
        forwarded_in_kernel: m.sum(
            "signpost_fast_path_total",
            &[("event", "forwarded-packets")],
        ),
        kernel_sessions: m.sum("signpost_fast_path_sessions", &[]),
        user_space_forwarded: forwarded - m.sum("signpost_fast_path_synced_packets_total", &[]),
        created: m.sum("signpost_session_events_total", &[("event", "created")]),
        expired: m.sum("signpost_session_events_total", &[("event", "expired")]),
        // The edge knows no service a policy does not grant it (need to know): `no_service`.
        no_rule: m.sum("signpost_drops_total", &[("reason", "no_service")])
            + m.sum("signpost_drops_total", &[("reason", "no_policy")]),
    })
}

#[test]
fn established_sessions_are_forwarded_in_the_kernel_and_policy_still_decides_new_ones() {
    if let Some(why) = available() {
        println!("SKIPPED: {why}");
        return;
    }
    let mut pair = RouterPair::up().expect("namespaces");
    pair.write_manifests(&[("routers.yaml", &routers()), ("services.yaml", SERVICES)])
        .expect("manifests");
    // XDP_REDIRECT into a veth needs NAPI on its peer: GRO on the endpoints' ends (the routers'
    // own ends have the fast path's XDP program, which enables it).
    pair.client
        .exec("ethtool", &["-K", "cl0", "gro", "on"])
        .expect("gro on cl0");
    pair.server
        .exec("ethtool", &["-K", "srv0", "gro", "on"])
        .expect("gro on srv0");
    pair.start_routers("store-1", "hub-1", &["--fast-path".into(), "on".into()])
        .expect("routers start");
    for (_, router) in &pair.routers {
        let log = router.output();
        assert!(log.contains("fast_path=true"), "the router says so:\n{log}");
    }
    let running = Arc::new(AtomicBool::new(true));
    echo_server(&pair, running.clone()).expect("echo server");

    // Until the config is in, the first datagrams may go unanswered.
    let deadline = Instant::now() + Duration::from_secs(20);
    while exchange(&pair, 4999, TELEMETRY, 1, Duration::from_millis(200)).unwrap_or(0) == 0 {
        assert!(
            Instant::now() < deadline,
            "telemetry never answered\n{}",
            pair.logs()
        );
    }

    // Busy for more than twice the idle timeout: 1,600 datagrams 5 ms apart (8 s).
    let count = 1600;
    let answered =
        exchange(&pair, 5000, TELEMETRY, count, Duration::from_millis(5)).expect("exchange");
    // Let the routers read the kernel's counts back (every 250 ms).
    std::thread::sleep(Duration::from_millis(600));
    let edge = seen(&pair.edge).expect("edge metrics");
    let hub = seen(&pair.hub).expect("hub metrics");
    println!(
        "answered {answered}/{count}; edge: {:.0} forwarded in the kernel, {:.0} in user space, \
         {:.0} sessions in the kernel; hub: {:.0} in the kernel, {:.0} in user space",
        edge.forwarded_in_kernel,
        edge.user_space_forwarded,
        edge.kernel_sessions,
        hub.forwarded_in_kernel,
        hub.user_space_forwarded
    );
    assert!(
        f64::from(answered) >= 0.98 * f64::from(count),
        "answered {answered} of {count}\n{}",
        pair.logs()
    );
    // Both directions of 1,600 exchanges: 3,200 packets per router, all but the first few in
    // the kernel.
    for (name, s) in [("edge", &edge), ("hub", &hub)] {
        assert!(
            s.forwarded_in_kernel >= 3000.0,
            "{name}: only {} packets forwarded in the kernel\n{}",
            s.forwarded_in_kernel,
            pair.logs()
        );
        assert!(
            s.user_space_forwarded < 60.0,
            "{name}: {} packets still went through user space",
            s.user_space_forwarded
        );
        assert_eq!(
            s.kernel_sessions, 1.0,
            "{name}: the session is in the kernel"
        );
        // The probe session of port 4999 went idle and expired meanwhile; the busy one did not.
        assert_eq!(s.created, 2.0, "{name}: sessions created");
        assert_eq!(
            s.expired, 1.0,
            "{name}: only the idle probe session expired"
        );
    }

    // A flow no policy allows: punted (no entry) and dropped by the pipeline.
    let denied = exchange(&pair, 6000, VAULT, 20, Duration::from_millis(20)).expect("vault");
    assert_eq!(denied, 0, "a denied flow must stay denied");
    let edge_after = seen(&pair.edge).expect("edge metrics");
    assert!(
        edge_after.no_rule >= 20.0,
        "the edge's pipeline dropped the denied flow (drops by reason: {})",
        edge_after.no_rule
    );
    assert_eq!(
        edge_after.created, edge.created,
        "no session for a denied flow"
    );

    // Quiet now: the session expires and leaves the kernel.
    let deadline = Instant::now() + Duration::from_secs(IDLE_SECONDS + 10);
    loop {
        let e = seen(&pair.edge).expect("edge metrics");
        if e.expired >= 2.0 && e.kernel_sessions == 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the idle session did not leave the kernel (expired {}, in the kernel {})",
            e.expired,
            e.kernel_sessions
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    running.store(false, Ordering::Relaxed);

    // Stopped, each router detaches its program from its devices.
    for (_, router) in &mut pair.routers {
        router.stop(Duration::from_secs(5));
    }
    for (name, ns) in [("edge", &pair.edge), ("hub", &pair.hub)] {
        for dev in ["wan0", "lan0"] {
            let out = ns.ip(&["link", "show", "dev", dev]).expect("ip link");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                !text.contains("prog/xdp"),
                "{name} {dev}: the XDP program stayed attached:\n{text}"
            );
        }
    }
}
