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
//!   Meanwhile another service's location (`bulk`, TCP) goes unhealthy: the busy session's
//!   entries stay (it is installed once), only sessions whose plan that changes would leave.
//! - A flow no policy allows (`vault`) stays denied: the program has no entry for it, punts it,
//!   and the pipeline drops it.
//! - Stopped (SIGTERM), each router detaches its program from its devices.
//! - With a second WAN (LTE) beside broadband: broadband is cut under a busy offloaded session;
//!   its entries leave the kernel when the path monitor marks the path down, its next packet
//!   moves it to LTE (the hub re-binds it, no new session) and it returns to the kernel there.
//!
//! The endpoints' veths have GRO on: a veth accepts XDP-redirected frames only when its peer
//! has NAPI (GRO or an XDP program), see README "The in-kernel fast path". Needs root; without
//! it prints `SKIPPED: ...` and passes. Every wait is bounded.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use signpost_e2e::lab::Metrics;
use signpost_e2e::router_pair::{
    BULK_AND_POLICY, CLIENT, POS_AND_TELEMETRY, ROUTERS, RouterPair, TELEMETRY_POLICY,
};
use signpost_e2e::{available, in_namespace};

const TELEMETRY: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(10, 255, 1, 20)), 5140);
const VAULT: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(10, 255, 1, 40)), 5141);
const IDLE_SECONDS: u64 = 3;
const BULK_PORT: u16 = 5201;

/// A second service no policy allows: `pos` → `vault` stays denied.
const VAULT_SERVICE: &str = r#"
apiVersion: signpost.dev/v1alpha1
kind: Service
metadata: {name: vault}
spec:
  addresses: [10.255.1.40/32]
  transports: [{protocol: udp, ports: [{port: 5141}]}]
  locations: [{router: hub-1, addresses: [10.100.1.10]}]
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
    exchange_in(&pair.client.name, sport, to, count, gap).map(|(n, _)| n)
}

/// [`exchange`] in namespace `ns`: the answers and the longest time without one.
fn exchange_in(
    ns: &str,
    sport: u16,
    to: SocketAddr,
    count: u32,
    gap: Duration,
) -> Result<(u32, Duration), String> {
    in_namespace(ns, move || {
        let socket = UdpSocket::bind((CLIENT, sport)).map_err(|e| e.to_string())?;
        socket
            .set_read_timeout(Some(Duration::from_millis(1)))
            .map_err(|e| e.to_string())?;
        let mut answered = 0;
        let mut buf = [0u8; 256];
        let (mut last, mut longest) = (Instant::now(), Duration::ZERO);
        let mut answer = |answered: &mut u32| {
            *answered += 1;
            longest = longest.max(last.elapsed());
            last = Instant::now();
        };
        for i in 0..count {
            let started = Instant::now();
            socket
                .send_to(format!("reading {i}").as_bytes(), to)
                .map_err(|e| e.to_string())?;
            while started.elapsed() < gap {
                if socket.recv_from(&mut buf).is_ok() {
                    answer(&mut answered);
                }
            }
        }
        let end = Instant::now() + Duration::from_millis(300);
        while Instant::now() < end {
            if socket.recv_from(&mut buf).is_ok() {
                answer(&mut answered);
            }
        }
        Ok((answered, longest))
    })
    .join()
    .map_err(|_| "client thread panicked".to_string())?
}

struct Seen {
    forwarded_in_kernel: f64,
    kernel_sessions: f64,
    installs: f64,
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
        installs: m.sum("signpost_fast_path_installs_total", &[]),
        user_space_forwarded: forwarded - m.sum("signpost_fast_path_synced_packets_total", &[]),
        created: m.sum("signpost_session_events_total", &[("event", "created")]),
        expired: m.sum("signpost_session_events_total", &[("event", "expired")]),
        // The edge knows no service a policy does not grant it (need to know): `no_service`.
        no_rule: m.sum("signpost_drops_total", &[("reason", "no_service")])
            + m.sum("signpost_drops_total", &[("reason", "no_policy")]),
    })
}

/// GRO on the endpoints, both routers with `--fast-path on`, the echo server, and one answered
/// datagram (from port 4999: a probe session that then idles out) once the configs are in.
fn start(pair: &mut RouterPair) -> Arc<AtomicBool> {
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
    echo_server(pair, running.clone()).expect("echo server");
    let deadline = Instant::now() + Duration::from_secs(20);
    while exchange(pair, 4999, TELEMETRY, 1, Duration::from_millis(200)).unwrap_or(0) == 0 {
        assert!(
            Instant::now() < deadline,
            "telemetry never answered\n{}",
            pair.logs()
        );
    }
    running
}

#[test]
fn established_sessions_are_forwarded_in_the_kernel_and_policy_still_decides_new_ones() {
    if let Some(why) = available() {
        println!("SKIPPED: {why}");
        return;
    }
    let mut pair = RouterPair::up().expect("namespaces");
    pair.write_manifests(&[
        ("routers.yaml", &routers()),
        ("pos-telemetry.yaml", POS_AND_TELEMETRY),
        ("vault.yaml", VAULT_SERVICE),
        ("bulk.yaml", BULK_AND_POLICY),
        ("policy.yaml", TELEMETRY_POLICY),
    ])
    .expect("manifests");
    // The bulk location is healthy while this listener is open.
    let listening = Arc::new(AtomicBool::new(true));
    let listener = {
        let listening = listening.clone();
        in_namespace(&pair.server, move || {
            let l =
                std::net::TcpListener::bind(("0.0.0.0", BULK_PORT)).map_err(|e| e.to_string())?;
            l.set_nonblocking(true).map_err(|e| e.to_string())?;
            while listening.load(Ordering::Relaxed) {
                let _ = l.accept();
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok::<(), String>(())
        })
    };
    let running = start(&mut pair);
    // The hub's gauge for the bulk location (the metric must be there: 0 is a verdict).
    let bulk_healthy = |pair: &RouterPair| -> f64 {
        let text = RouterPair::scrape(&pair.hub).expect("hub metrics");
        assert!(
            text.lines()
                .any(|l| l.starts_with("signpost_location_healthy{")
                    && l.contains("service=\"bulk\"")),
            "the hub reports the bulk location:\n{text}"
        );
        Metrics::parse(&text).sum("signpost_location_healthy", &[("service", "bulk")])
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while bulk_healthy(&pair) < 1.0 {
        assert!(
            Instant::now() < deadline,
            "bulk never became healthy\n{}",
            pair.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let installs_before = [
        seen(&pair.edge).expect("edge metrics").installs,
        seen(&pair.hub).expect("hub metrics").installs,
    ];

    // Busy for more than twice the idle timeout: 1,600 datagrams 5 ms apart (8 s). A second
    // in, the bulk listener closes: its location goes down while the session is busy.
    let closer = {
        let listening = listening.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(1));
            listening.store(false, Ordering::Relaxed);
        })
    };
    let count = 1600;
    let answered =
        exchange(&pair, 5000, TELEMETRY, count, Duration::from_millis(5)).expect("exchange");
    closer.join().expect("closer");
    listener
        .join()
        .expect("listener thread")
        .expect("bulk listener");
    assert_eq!(
        bulk_healthy(&pair),
        0.0,
        "the bulk location went down during the busy phase\n{}",
        pair.logs()
    );
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
        // Two sessions' handshakes (the probe's and this one's): a few packets each, as the
        // worker installs a session right after the packet that makes it offloadable.
        assert!(
            s.user_space_forwarded < 20.0,
            "{name}: {} packets still went through user space",
            s.user_space_forwarded
        );
        assert_eq!(
            s.kernel_sessions, 1.0,
            "{name}: the session is in the kernel"
        );
        // Installed once: another service's health change did not take it out of the kernel.
        let before = if name == "edge" {
            installs_before[0]
        } else {
            installs_before[1]
        };
        assert_eq!(
            s.installs - before,
            1.0,
            "{name}: the busy session's entries were installed once"
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

/// Both routers with a second WAN (`wan1`, vector `lte`), broadband preferred.
fn two_path_routers() -> String {
    let edge_lte = "    - {name: lte, role: wan, device: wan1, addresses: [198.51.100.11/24], neighborhood: carrier, vector: lte}\n";
    let hub_lte = "    - {name: carrier, role: wan, device: wan1, addresses: [198.51.100.1/24], neighborhood: carrier, vector: lte}\n";
    let edge_wan = "    - {name: broadband, role: wan, device: wan0, addresses: [192.0.2.11/24], neighborhood: internet, vector: broadband}\n";
    let hub_wan = "    - {name: internet, role: wan, device: wan0, addresses: [192.0.2.1/24], neighborhood: internet, vector: internet}\n";
    routers()
        .replace(edge_wan, &format!("{edge_wan}{edge_lte}"))
        .replace(hub_wan, &format!("{hub_wan}{hub_lte}"))
}

#[test]
fn an_offloaded_session_leaves_the_kernel_when_its_path_fails_and_returns_on_the_next() {
    if let Some(why) = available() {
        println!("SKIPPED: {why}");
        return;
    }
    let mut pair = RouterPair::up().expect("namespaces");
    pair.add_second_wan().expect("second WAN");
    let routers = two_path_routers();
    assert!(routers.contains("wan1"), "manifests name the second WAN");
    // Broadband preferred, so that the session starts there.
    let policy = TELEMETRY_POLICY.replace(
        "security: none}",
        "security: none, pathPreference: [broadband, lte]}",
    );
    assert!(policy.contains("pathPreference"));
    pair.write_manifests(&[
        ("routers.yaml", &routers),
        ("pos-telemetry.yaml", POS_AND_TELEMETRY),
        ("vault.yaml", VAULT_SERVICE),
        ("policy.yaml", &policy),
    ])
    .expect("manifests");
    let running = start(&mut pair);

    // 10 s of echoes 5 ms apart; broadband is cut after 3 s.
    let client = pair.client.name.clone();
    let flow = std::thread::spawn(move || {
        exchange_in(&client, 5000, TELEMETRY, 2000, Duration::from_millis(5))
    });
    std::thread::sleep(Duration::from_secs(3));
    let before = Metrics::parse(&RouterPair::scrape(&pair.edge).expect("edge metrics"));
    let on_lte_before = before.sum(
        "signpost_interface_tx_packets_total",
        &[("interface", "wan1")],
    );
    pair.hub
        .ip(&["link", "set", "wan0", "down"])
        .expect("cut broadband");
    let (answered, longest) = flow.join().expect("client").expect("exchange");
    std::thread::sleep(Duration::from_millis(600));
    let edge = Metrics::parse(&RouterPair::scrape(&pair.edge).expect("edge metrics"));
    let hub = Metrics::parse(&RouterPair::scrape(&pair.hub).expect("hub metrics"));
    let on_lte = edge.sum(
        "signpost_interface_tx_packets_total",
        &[("interface", "wan1")],
    ) - on_lte_before;
    let in_kernel = |m: &Metrics| {
        m.sum(
            "signpost_fast_path_total",
            &[("event", "forwarded-packets")],
        )
    };
    println!(
        "answered {answered}/2000, longest gap {longest:?}; edge: {:.0} in the kernel, {on_lte:.0} \
         sent on LTE after the cut; hub: {:.0} in the kernel, rebound {:.0}",
        in_kernel(&edge),
        in_kernel(&hub),
        hub.sum("signpost_session_events_total", &[("event", "rebound")])
    );
    assert!(
        answered >= 1800,
        "answered {answered} of 2000\n{}",
        pair.logs()
    );
    assert!(
        longest < Duration::from_secs(2),
        "the flow stopped for {longest:?} after the cut"
    );
    assert_eq!(
        edge.sum("signpost_session_events_total", &[("event", "created")]),
        2.0,
        "the session moved, it was not opened again"
    );
    assert!(
        hub.sum("signpost_session_events_total", &[("event", "rebound")]) >= 1.0,
        "the hub re-bound the session to the new path"
    );
    // Offloaded again on LTE: what left on wan1 after the cut went mostly through the kernel.
    assert!(
        on_lte >= 1000.0,
        "only {on_lte} packets left on LTE after the cut"
    );
    assert_eq!(edge.sum("signpost_fast_path_sessions", &[]), 1.0);
    assert!(
        in_kernel(&edge) >= 3000.0,
        "edge: {} in the kernel",
        in_kernel(&edge)
    );
    running.store(false, Ordering::Relaxed);
}
