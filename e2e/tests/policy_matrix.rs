//! Every tenant × service of the example, end to end: from each of a store's tenant clients to
//! every service address and port, through the real routers. What must pass is computed from
//! the Policy objects of the manifests (`lab::expect`), not written here. An allowed flow must
//! complete (TCP echo, UDP echo, an HTTP GET for the internet breakout); a denied one must not
//! even open; and `signpostctl explain` on the store router must give the same verdict, naming
//! the policy that allows or the reason for the denial.
//!
//! A flow to a service's address is that service's flow, also where a broader service covers
//! it: a guest's flow to `inventory` (10.255.3.10:443, inside `internet`'s 0.0.0.0/0) is denied
//! at the store with `no-policy`, because the store knows inventory without reaching it.
//!
//! And a breakout session cannot reach a host behind a hub: a guest sending straight to
//! video-archive's real address (10.100.2.20) is, at the store, a flow to `internet` (the store
//! knows no real addresses); the hub refuses it (`service_mismatch`) and counts it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use signpost_e2e::lab::{self, LabOptions, Proto, RetailLab, Target, expect, plan::WEB};
use signpost_e2e::{in_namespace, traffic};
use std::net::Ipv4Addr;

const STORE: &str = "store-0142";

/// Whether the flow to `t` completes, from inside a client namespace.
fn flows(t: &Target, allowed: bool) -> Result<bool, String> {
    let to = SocketAddr::from((t.address, t.port));
    // Denied flows get a short window: nothing ever comes back.
    let timeout = if allowed {
        Duration::from_secs(3)
    } else {
        Duration::from_millis(400)
    };
    Ok(match t.proto {
        Proto::Tcp if t.address == WEB => traffic::http_get(to, 512, timeout).is_ok(),
        Proto::Tcp => traffic::tcp_exchange(to, 600, timeout).is_ok(),
        Proto::Udp => traffic::udp_echoes(to, timeout)?,
    })
}

#[test]
fn every_tenant_reaches_exactly_the_services_its_policies_allow() {
    if signpost_e2e::skip_unless_able(lab::available()) {
        return;
    }
    let lab = RetailLab::start(LabOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    // One thread per client: the denied probes' timeouts overlap.
    let mut runs = Vec::new();
    for client in lab.plan.clients.iter().filter(|c| c.router == STORE) {
        let Some(tenant) = client.tenant.clone() else {
            continue;
        };
        let probes: Vec<(Target, bool)> = lab
            .plan
            .targets
            .iter()
            .map(|t| {
                let allowed = expect::allowing(&lab.intent, &tenant, &t.service).is_some();
                (t.clone(), allowed)
            })
            .collect();
        let ns = lab.client(STORE, &tenant).unwrap_or_else(|e| panic!("{e}"));
        let handle = in_namespace(ns, move || {
            probes
                .into_iter()
                .map(|(t, allowed)| flows(&t, allowed).map(|worked| (t, allowed, worked)))
                .collect::<Result<Vec<_>, String>>()
        });
        runs.push((client.clone(), handle));
    }
    let mut failures = Vec::new();
    let mut table = String::new();
    let word = |b: bool| if b { "allowed" } else { "denied" };
    for (client, handle) in runs {
        let tenant = client.tenant.clone().unwrap_or_default();
        let rows = handle
            .join()
            .unwrap_or_else(|_| panic!("client thread panicked"))
            .unwrap_or_else(|e| panic!("{e}"));
        for (t, allowed, worked) in rows {
            let to = SocketAddr::from((t.address, t.port));
            let explain = lab
                .explain(STORE, &tenant, to, t.proto)
                .unwrap_or_else(|e| panic!("{e}"));
            let said = explain["allowed"].as_bool().unwrap_or(false);
            let as_service = explain["service"].as_str().unwrap_or("");
            let why = if said {
                explain["policy"].as_str().unwrap_or("").to_string()
            } else {
                explain["reason"].as_str().unwrap_or("").to_string()
            };
            table += &format!(
                "{tenant:8} -> {:14} {}/{:<5} policies: {:7} traffic: {:7} explain: {} ({why}) as {as_service}\n",
                t.service,
                t.proto,
                t.port,
                word(allowed),
                word(worked),
                word(said),
            );
            // The store classifies every probe as the service probed (it knows the services
            // nested in the ones it routes), and denies what no policy allows there.
            let denied_right = allowed || why == "no-policy";
            if allowed != worked
                || allowed != said
                || as_service != t.service
                || !denied_right
                || why.is_empty()
            {
                failures.push(format!("{tenant} -> {} {}/{}", t.service, t.proto, t.port));
            }
        }
    }
    // A breakout session to a host behind a hub: nothing comes back, and a hub counts it.
    let mismatches = |lab: &RetailLab| -> f64 {
        ["hub-aws", "hub-azure"]
            .iter()
            .map(|hub| {
                lab.scrape(hub)
                    .unwrap_or_else(|e| panic!("{e}"))
                    .sum("signpost_drops_total", &[("reason", "service_mismatch")])
            })
            .sum()
    };
    let flows_checked = table.lines().count();
    let before = mismatches(&lab);
    // 10.100.2.20:443 in the example, from its manifests.
    let video_real = lab
        .intent
        .services
        .iter()
        .find(|s| s.metadata.name.as_deref() == Some("video-archive"))
        .and_then(|s| s.spec.locations.first()?.addresses.first())
        .and_then(|a| a.to_string().parse::<Ipv4Addr>().ok())
        .map(|a| SocketAddr::from((a, 443)))
        .unwrap_or_else(|| panic!("video-archive has no real address in the manifests"));
    let explain = lab
        .explain(STORE, "guest", video_real, Proto::Tcp)
        .unwrap_or_else(|e| panic!("{e}"));
    let ns = lab.client(STORE, "guest").unwrap_or_else(|e| panic!("{e}"));
    let reached = in_namespace(ns, move || {
        Ok::<bool, String>(traffic::tcp_exchange(video_real, 600, Duration::from_secs(2)).is_ok())
    })
    .join()
    .unwrap_or_else(|_| panic!("client thread panicked"))
    .unwrap_or_else(|e| panic!("{e}"));
    // Bounded: the drop counter is read once the client gave up; let the scrape catch up.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut counted = mismatches(&lab) - before;
    while counted < 1.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        counted = mismatches(&lab) - before;
    }
    table += &format!(
        "guest    -> video-archive's real address {video_real}: traffic: {} (store's explain: {} as {}); hubs counted {counted} service_mismatch drops\n",
        if reached { "reached" } else { "nothing" },
        explain["policy"]
            .as_str()
            .or(explain["reason"].as_str())
            .unwrap_or(""),
        explain["service"].as_str().unwrap_or(""),
    );
    if reached || counted < 1.0 {
        failures.push(format!(
            "guest -> {video_real} (video-archive's real address, as internet): reached {reached}, \
             {counted} service_mismatch drops counted at the hubs"
        ));
    }
    println!(
        "{table}matrix of {} flows checked in {:.1} s ({} cores)",
        flows_checked,
        started.elapsed().as_secs_f64(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if !failures.is_empty() {
        panic!(
            "{} flows differ from the policies:\n{}\n{table}\n{}",
            failures.len(),
            failures.join("\n"),
            lab.logs()
        );
    }
}
