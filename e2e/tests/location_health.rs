//! Service-location health in the retail lab, with real routers, a real server process and
//! real probes: `payments` lives in both clouds (here in `failover` mode, AWS first, probed
//! every 500 ms); its server process in the AWS host's namespace is killed — not the hub, whose
//! paths stay up — while a POS terminal holds a UDP flow to payments and opens TCP payments.
//!
//! - hub-aws's probes (ICMP echo and a half-open TCP connection to 443, from its LAN address
//!   through its own stack) see the port refused and report the location down to the store;
//! - new TCP payments open through hub-azure within a bound, the UDP flow continues there;
//! - the server restarted, hub-aws reports the location up and new payments return to AWS
//!   (failover mode: AWS is first).
//!
//! Every wait is bounded; without root it prints `SKIPPED: ...` (a failure under CI).

use std::time::{Duration, Instant};

use signpost_e2e::lab::{self, LabOptions, Proto, RetailLab};
use signpost_e2e::{in_namespace, skip_unless_able, traffic};

const STORE: &str = "store-0142";
const AWS: &str = "hub-aws";
const AZURE: &str = "hub-azure";

/// The retail manifests with payments in failover mode (AWS first) and a 500 ms health check.
fn start() -> Option<RetailLab> {
    if skip_unless_able(lab::available()) {
        return None;
    }
    let mut lab = RetailLab::build(&LabOptions {
        routers: false,
        ..LabOptions::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let path = lab.manifests_dir().join("services.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
    let edited = text
        .replacen(
            "  trafficClass: transactional\n  loadBalancing: proximity\n",
            "  trafficClass: transactional\n  loadBalancing: failover\n  healthCheck:\n    \
             intervalMs: 500\n    unhealthyThreshold: 3\n    healthyThreshold: 2\n",
            1,
        )
        .replacen(
            "    - router: hub-azure\n      addresses: [10.110.1.10]\n",
            "    - router: hub-azure\n      addresses: [10.110.1.10]\n      priority: 1\n",
            1,
        );
    assert!(
        edited.contains("healthCheck") && edited.contains("priority: 1"),
        "examples/retail/services.yaml changed shape: edit this test"
    );
    std::fs::write(&path, edited).unwrap_or_else(|e| panic!("{e}"));
    lab.start_operator().unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<String> = lab.plan.routers.iter().map(|r| r.name.clone()).collect();
    for name in &names {
        lab.start_router(name).unwrap_or_else(|e| panic!("{e}"));
    }
    Some(lab)
}

/// The state of payments' location at `router` as `at` sees it (`signpostctl paths`).
fn location(lab: &RetailLab, at: &str, router: &str) -> Option<String> {
    let v = lab.ctl_json(at, &["paths"]).ok()?;
    v["locations"]
        .as_array()?
        .iter()
        .find(|l| l["service"] == "payments" && l["router"] == router)
        .and_then(|l| l["state"].as_str().map(str::to_string))
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < limit {
        if ok() {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what}: not within {limit:?}");
}

/// The peers of the store's payments sessions of `protocol` ("tcp"/"udp"), the most recently
/// active first.
fn session_peers(lab: &RetailLab, protocol: &str) -> Vec<String> {
    let s = lab
        .ctl_json(STORE, &["sessions", "--service", "payments"])
        .unwrap_or_default();
    s["sessions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| {
            s["original"]["protocol"]
                .as_str()
                .is_some_and(|p| p.eq_ignore_ascii_case(protocol))
        })
        .map(|s| s["peer"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Opens payments until one completes (each attempt bounded); how long it took.
fn pay_until_ok(pos: &str, to: std::net::SocketAddr, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        let r = in_namespace(pos, move || {
            traffic::tcp_exchange(to, 1024, Duration::from_millis(400))
        })
        .join()
        .unwrap_or_else(|_| Err("the client thread panicked".into()));
        if r.is_ok() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn payments_leave_a_location_whose_server_died_and_come_back_when_it_returns() {
    let Some(mut lab) = start() else { return };
    let mut server = lab
        .serve_as_process("payments", AWS)
        .unwrap_or_else(|e| panic!("{e}"));
    wait_for(
        "hub-aws probes payments up",
        Duration::from_secs(10),
        || location(&lab, AWS, AWS).as_deref() == Some("up"),
    );
    let tcp = lab.target("payments", Proto::Tcp).unwrap();
    let udp = lab.target("payments", Proto::Udp).unwrap();
    let pos = lab.client(STORE, "pos").unwrap().name.clone();
    pay_until_ok(&pos, tcp, Duration::from_secs(10)).expect("a payment before the kill");
    let stream = traffic::udp_stream(&pos, udp, 200, 50, Duration::from_secs(14));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        session_peers(&lab, "udp"),
        [AWS],
        "failover mode starts at AWS"
    );

    // The server process dies; the host (and hub-aws, and every path) stays up.
    server.kill();
    let killed = Instant::now();
    let noticed = wait_for(
        "the store hears that payments at hub-aws is down",
        Duration::from_secs(6),
        || location(&lab, STORE, AWS).as_deref() == Some("down"),
    );
    let explain = lab
        .explain(STORE, "pos", tcp, Proto::Tcp)
        .unwrap_or_else(|e| panic!("{e}"));
    let steps = explain["steps"].to_string();
    assert!(
        explain["peer"] == AZURE && steps.contains("location at hub-aws skipped"),
        "explain does not say why hub-aws is skipped: {explain}"
    );
    let paid = pay_until_ok(&pos, tcp, Duration::from_secs(6))
        .map(|_| killed.elapsed())
        .unwrap_or_else(|| panic!("no payment within 6 s of the kill\n{}", lab.logs()));
    let tcp_peers = session_peers(&lab, "tcp");
    assert_eq!(
        tcp_peers.first().map(String::as_str),
        Some(AZURE),
        "the new payment did not go to hub-azure: {tcp_peers:?}"
    );
    let stream = stream.join().unwrap().unwrap();
    let udp_peers = session_peers(&lab, "udp");
    // The UDP flow carried on through Azure: echoes in the last seconds of the stream.
    let live_at_end = stream
        .timeline
        .bytes
        .iter()
        .rev()
        .take(30)
        .filter(|b| **b > 0)
        .count();
    let hub_aws = lab.scrape(AWS).unwrap();
    let store = lab.scrape(STORE).unwrap();
    let refused = hub_aws.sum("signpost_health_probes_total", &[("event", "tcp-refused")]);
    let accepted = store.sum("signpost_health_messages_total", &[("event", "accepted")]);
    let relocated = store.sum("signpost_session_events_total", &[("event", "relocated")]);
    println!(
        "payments server at hub-aws killed: the store marked the location down after {} ms; a \
         new payment through hub-azure after {} ms; the UDP flow: {} of {} echoed, longest gap \
         {} ms; {refused} refused probes at hub-aws, {accepted} health messages accepted at the \
         store, {relocated} session(s) relocated ({} cores, load {})",
        noticed.as_millis(),
        paid.as_millis(),
        stream.received,
        stream.sent,
        stream.max_gap.as_millis(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        signpost_e2e::demo::loadavg()
    );
    assert_eq!(udp_peers, [AZURE], "the UDP session moved to hub-azure");
    assert!(
        live_at_end >= 20,
        "the UDP flow stopped after the kill ({live_at_end} live 100 ms buckets in the last 3 s)"
    );
    assert!(refused >= 3.0, "hub-aws counted {refused} refused probes");
    assert!(relocated >= 1.0, "no session was relocated");
    // Design bound: 3 probes at 500 ms plus a message; allow for a loaded 2-core machine.
    assert!(
        noticed <= Duration::from_secs(4),
        "noticed after {noticed:?}"
    );

    // The server is back: hub-aws reports the location up, new payments return to AWS.
    let mut server = lab
        .serve_as_process("payments", AWS)
        .unwrap_or_else(|e| panic!("{e}"));
    let back = wait_for(
        "the store hears that payments at hub-aws is up again",
        Duration::from_secs(6),
        || location(&lab, STORE, AWS).as_deref() == Some("up"),
    );
    pay_until_ok(&pos, tcp, Duration::from_secs(5)).expect("a payment after the restore");
    let peers = session_peers(&lab, "tcp");
    println!(
        "payments server restarted: the store saw the location up after {} ms; payment \
         sessions now at {peers:?}",
        back.as_millis()
    );
    assert_eq!(
        peers.first().map(String::as_str),
        Some(AWS),
        "failover mode: new payments go back to AWS ({peers:?})"
    );
    server.kill();
}
