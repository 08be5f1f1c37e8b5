//! Every tenant × service of the example, end to end: from each of a store's tenant clients to
//! every service address and port, through the real routers. What must pass is computed from
//! the Policy objects of the manifests (`lab::expect`), not written here. An allowed flow must
//! complete (TCP echo, UDP echo, an HTTP GET for the internet breakout); a denied one must not
//! even open; and `signpostctl explain` on the store router must give the same verdict, naming
//! the policy that allows or the reason for the denial.
//!
//! One known disagreement is reported, not hidden: a store is only told about the services its
//! tenants may reach, so a guest's flow to `inventory`'s address (10.255.3.10:443) is, at the
//! store, a flow to `internet` (0.0.0.0/0, 443) — explain says "allowed (guest-internet)" and
//! the hub hands it to the egress firewall, where it goes nowhere. Traffic is still checked
//! strictly; explain is checked wherever it classified the flow as the service probed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use signpost_e2e::lab::{self, LabOptions, Proto, RetailLab, Target, expect, plan::WEB};
use signpost_e2e::{in_namespace, traffic};

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
            let other = said && as_service != t.service;
            let why = if said {
                explain["policy"].as_str().unwrap_or("").to_string()
            } else {
                explain["reason"].as_str().unwrap_or("").to_string()
            };
            let note = if other {
                format!(" — NOTE: the store sees it as `{as_service}`")
            } else {
                String::new()
            };
            table += &format!(
                "{tenant:8} -> {:14} {}/{:<5} policies: {:7} traffic: {:7} explain: {} ({why}){note}\n",
                t.service,
                t.proto,
                t.port,
                word(allowed),
                word(worked),
                word(said),
            );
            if allowed != worked || (!other && allowed != said) || why.is_empty() {
                failures.push(format!("{tenant} -> {} {}/{}", t.service, t.proto, t.port));
            }
        }
    }
    println!(
        "{table}matrix of {} flows checked in {:.1} s ({} cores)",
        table.lines().count(),
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
