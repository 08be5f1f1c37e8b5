//! Failover in the retail lab, with real routers and real link cuts:
//!
//! - the store's broadband is cut in the internet transit: a live POS session moves to LTE
//!   without a reset, new payments open over LTE, and the cameras' upload (a broadband-only
//!   policy) stays off LTE;
//! - payments live in two clouds: the hub carrying a POS UDP flow is killed; the flow continues
//!   through the other hub and new TCP payments open there.
//!
//! Both rest on path monitoring (BFD, SLA path choice, location failover): without it nothing
//! marks a cut link or a dead hub down. Each test first waits (bounded) until the store router
//! measures its paths — `signpostctl paths` reports a measured latency for a path that is up —
//! and fails when it does not: a router that stopped monitoring its paths is a regression, not
//! a reason to skip. Nothing here is simulated.

use std::time::{Duration, Instant};

use signpost_e2e::lab::{self, LabOptions, Proto, RetailLab};
use signpost_e2e::traffic;

const STORE: &str = "store-0142";

fn start() -> Option<RetailLab> {
    if signpost_e2e::skip_unless_able(lab::available()) {
        return None;
    }
    let lab = RetailLab::start(LabOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    // Path monitoring shows as measured latency on live paths within a few probe intervals;
    // the bound leaves room for a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let paths = lab.ctl_json(STORE, &["paths"]).unwrap_or_default();
        let measured = paths["paths"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["latency_us"].as_u64().unwrap_or(0) > 0);
        if measured {
            return Some(lab);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "path monitoring (BFD): {STORE} measured none of its paths within 10 s \
         (signpostctl paths: latency 0), so nothing would notice a cut link"
    );
}

/// The store's paths by id → state.
fn path_states(lab: &RetailLab) -> Vec<(String, String)> {
    let paths = lab.ctl_json(STORE, &["paths"]).unwrap_or_default();
    paths["paths"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["path_id"].as_str().unwrap_or("").to_string(),
                p["state"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The path ids of the store's sessions of `service`.
fn session_paths(lab: &RetailLab, service: &str) -> Vec<String> {
    let s = lab
        .ctl_json(STORE, &["sessions", "--service", service])
        .unwrap_or_default();
    s["sessions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| s["path_id"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn a_cut_broadband_link_moves_live_sessions_to_lte_without_a_reset() {
    let Some(lab) = start() else { return };
    let payments = lab.target("payments", Proto::Tcp).unwrap();
    let video = lab.target("video-archive", Proto::Tcp).unwrap();
    let pos = lab.client(STORE, "pos").unwrap().name.clone();
    let cameras = lab.client(STORE, "cameras").unwrap().name.clone();
    let run = Duration::from_secs(10);
    let session = traffic::tcp_session(&pos, payments, 256, 50.0, run, Duration::from_secs(5));
    let upload = traffic::tcp_bulk(
        &cameras,
        video,
        Some(5_000_000),
        run,
        Duration::from_secs(2),
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        session_paths(&lab, "payments")
            .iter()
            .all(|p| p.contains("broadband")),
        "payments prefer broadband: {:?}",
        session_paths(&lab, "payments")
    );
    let cut = Instant::now();
    lab.cut(STORE, "broadband").unwrap();
    // The router notices: the broadband paths go down.
    let mut noticed = None;
    while cut.elapsed() < Duration::from_secs(3) {
        if path_states(&lab)
            .iter()
            .any(|(id, state)| id.contains("broadband") && state == "down")
        {
            noticed = Some(cut.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let noticed = noticed.unwrap_or_else(|| panic!("broadband never marked down\n{}", lab.logs()));
    // A new payment opens over LTE while broadband is down.
    let fresh = signpost_e2e::in_namespace(&pos, move || {
        traffic::tcp_exchange(payments, 1024, Duration::from_secs(3))
    })
    .join()
    .unwrap();
    assert!(
        fresh.is_ok(),
        "a new payment failed: {fresh:?}\n{}",
        lab.logs()
    );
    // A live session moves on its next forward packet; one in TCP retransmission backoff sends
    // that packet up to an RTO after the cut, so give it (bounded) time.
    let on_lte = |paths: &[String]| !paths.is_empty() && paths.iter().all(|p| p.contains("lte"));
    let mut moved = session_paths(&lab, "payments");
    let waited = Instant::now();
    while !on_lte(&moved) && waited.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(50));
        moved = session_paths(&lab, "payments");
    }
    assert!(on_lte(&moved), "payments sessions are on {moved:?}");
    // Footage never goes over LTE (cameras-video-archive: pathPreference [broadband]).
    assert!(
        session_paths(&lab, "video-archive")
            .iter()
            .all(|p| !p.contains("lte")),
        "video went over LTE: {:?}",
        session_paths(&lab, "video-archive")
    );
    let session = session.join().unwrap().unwrap();
    let _ = upload.join();
    let rebound = lab
        .scrape("hub-aws")
        .unwrap()
        .sum("signpost_session_events_total", &[("event", "rebound")])
        + lab
            .scrape("hub-azure")
            .unwrap()
            .sum("signpost_session_events_total", &[("event", "rebound")]);
    println!(
        "broadband cut: marked down after {} ms; the live POS session's longest gap {} ms; \
         {rebound} session(s) re-bound at the hubs ({} cores, load {})",
        noticed.as_millis(),
        session.max_gap.as_millis(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        signpost_e2e::demo::loadavg()
    );
    assert_eq!(
        session.failed, 0,
        "the live session broke: {:?}",
        session.first_error
    );
    assert!(rebound >= 1.0, "no session was re-bound at a hub");
    // Design target 300 ms; on a shared 2-core machine allow a second before calling it broken.
    assert!(
        session.max_gap <= Duration::from_secs(1),
        "the session stalled {:?}",
        session.max_gap
    );
}

#[test]
fn payments_continue_through_the_other_cloud_when_a_hub_dies() {
    let Some(mut lab) = start() else { return };
    let udp = lab.target("payments", Proto::Udp).unwrap();
    let tcp = lab.target("payments", Proto::Tcp).unwrap();
    let pos = lab.client(STORE, "pos").unwrap().name.clone();
    let stream = traffic::udp_stream(&pos, udp, 200, 50, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(3));
    let s = lab
        .ctl_json(STORE, &["sessions", "--service", "payments"])
        .unwrap();
    let hub = s["sessions"][0]["peer"]
        .as_str()
        .unwrap_or_else(|| panic!("no payments session: {s}"))
        .to_string();
    let other = lab
        .plan
        .hubs()
        .map(|h| h.name.clone())
        .find(|h| *h != hub)
        .unwrap();
    lab.kill_router(&hub);
    let killed = Instant::now();
    // New TCP payments open through the other cloud.
    let mut opened = None;
    while killed.elapsed() < Duration::from_secs(4) {
        let r = signpost_e2e::in_namespace(&pos, move || {
            traffic::tcp_exchange(tcp, 1024, Duration::from_millis(500))
        })
        .join()
        .unwrap();
        if r.is_ok() {
            opened = Some(killed.elapsed());
            break;
        }
    }
    let opened = opened.unwrap_or_else(|| {
        panic!(
            "no new payment through {other} within 4 s of {hub} dying\n{}",
            lab.logs()
        )
    });
    let stream = stream.join().unwrap().unwrap();
    let peers: Vec<String> = lab
        .ctl_json(STORE, &["sessions", "--service", "payments"])
        .unwrap()["sessions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| s["peer"].as_str().unwrap_or("").to_string())
        .collect();
    println!(
        "{hub} killed: a new payment through {other} after {} ms; the UDP flow lost {} of {} \
         packets, longest gap {} ms",
        opened.as_millis(),
        stream.sent - stream.received,
        stream.sent,
        stream.max_gap.as_millis()
    );
    assert!(
        peers.iter().all(|p| *p == other),
        "payments sessions still name {peers:?}"
    );
    // The UDP flow carried on: echoes came back after the hub died, not just before.
    let after = stream
        .timeline
        .bytes
        .iter()
        .skip(50)
        .filter(|b| **b > 0)
        .count();
    assert!(
        after >= 30,
        "the UDP flow stopped when {hub} died ({after} live 100 ms buckets after 5 s)"
    );
}
