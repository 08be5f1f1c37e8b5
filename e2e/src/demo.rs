//! `signpost-lab demo`: the retail lab with every tenant's traffic, flows no policy allows, and
//! the first store's broadband cut and restored; a summary read from the routers and a
//! throughput-over-time chart across the cut.
//!
//! The flows, from the first store (each other store runs payments too):
//!
//! | tenant | flow | service, security |
//! |---|---|---|
//! | pos | a payment per session (TCP request/response, 2 KiB), 5/s | payments, `encrypt` |
//! | pos | one long-lived TCP session, an exchange every 50 ms — must survive a path change | payments, `encrypt` |
//! | cameras | footage upload (bulk TCP, paced) | video-archive, `none` |
//! | guest | browsing (HTTP/1.1 GETs of 16 KiB pages), 5/s | internet, `none` |
//! | signage | promotion stream (UDP, 1,200 bytes at 100 packets/s) | ads-cdn, `authenticate` |
//!
//! Denied: POS and camera hosts to `inventory` (no policy at all) and guest Wi-Fi to payments;
//! `signpostctl explain` gives the router's reason. Everything in the summary comes from the
//! routers' `/metrics` and admin API except what only an application can see — how long a
//! session went without an answer — which the lab's clients measure and say so.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use signpost_operator::manifests::Intent;

use crate::lab::{LabOptions, Metrics, Plan, Proto, RetailLab};
use crate::plot::{self, Band, Series};
use crate::traffic::{self, Bulk, Requests, Stream, Timeline};

#[derive(Clone, Debug)]
pub struct DemoOptions {
    pub stores: usize,
    /// How long traffic runs.
    pub duration: Duration,
    /// When the first store's broadband is cut, and restored (since traffic started).
    pub cut_at: Duration,
    pub restore_at: Duration,
    /// The cameras' upload pace.
    pub camera_bps: u64,
    /// Where the chart and the summary are written.
    pub out_dir: PathBuf,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            stores: 1,
            duration: Duration::from_secs(30),
            cut_at: Duration::from_secs(10),
            restore_at: Duration::from_secs(20),
            camera_bps: 20_000_000,
            out_dir: PathBuf::from("target/signpost-lab"),
        }
    }
}

/// What a demo run produced.
pub struct DemoReport {
    pub summary: String,
    pub chart: PathBuf,
    /// The long-lived POS session's longest silence, as its client saw it.
    pub session_gap: Duration,
    /// Whether that session broke (reset or timed out).
    pub session_broke: bool,
}

/// Progress lines: `[  12.3 s] what happened`.
struct Progress(Instant);

impl Progress {
    fn step(&self, what: impl AsRef<str>) {
        println!(
            "[{:6.1} s] {}",
            self.0.elapsed().as_secs_f64(),
            what.as_ref()
        );
    }
}

pub fn run(options: &DemoOptions) -> Result<DemoReport, String> {
    let progress = Progress(Instant::now());
    progress.step(format!(
        "building the lab from examples/retail: {} store(s), both hubs",
        options.stores
    ));
    let lab = RetailLab::start(LabOptions {
        stores: options.stores,
        ..LabOptions::default()
    })?;
    let stores: Vec<String> = lab.plan.stores().map(|r| r.name.clone()).collect();
    let hubs: Vec<String> = lab.plan.hubs().map(|r| r.name.clone()).collect();
    progress.step(format!(
        "{} namespaces; operator on {} (local mode on a copy of the manifests)",
        lab.namespace_names().len(),
        lab.plan.operator()
    ));
    progress.step(format!(
        "routers forwarding on AF_XDP: {}",
        stores
            .iter()
            .chain(&hubs)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let store = stores.first().ok_or("the manifests have no store")?.clone();
    let routers: Vec<String> = stores.iter().chain(&hubs).cloned().collect();
    let cpu = |lab: &RetailLab| -> Vec<Duration> {
        routers
            .iter()
            .map(|r| lab.router_cpu(r).unwrap_or_default())
            .collect()
    };
    // The routers' cost at rest: their workers sleep in poll(2) after a 50 µs spin.
    let idle_from = (Instant::now(), cpu(&lab));
    std::thread::sleep(Duration::from_secs(2));
    let idle = (idle_from.0.elapsed(), cpu(&lab), idle_from.1);

    let payments = lab.target("payments", Proto::Tcp)?;
    let video = lab.target("video-archive", Proto::Tcp)?;
    let web = lab.target("internet", Proto::Tcp)?;
    let ads = lab.target("ads-cdn", Proto::Udp)?;
    let ns = |tenant: &str| lab.client(&store, tenant).map(|n| n.name.clone());
    let d = options.duration;
    let timeout = Duration::from_secs(2);
    progress.step(format!(
        "traffic for {} s at {store}: pos pays 5/s + one long-lived POS session, cameras \
         upload at {} Mbit/s, guest browses 5 pages/s, signage streams 100 packets/s",
        d.as_secs(),
        options.camera_bps / 1_000_000
    ));
    let start = Instant::now();
    let busy_from = cpu(&lab);
    let pay = traffic::tcp_requests(&ns("pos")?, payments, 2048, 5.0, d, timeout);
    // The session waits as long as the run: it shows whether it survives, not how TCP gives up.
    let session = traffic::tcp_session(&ns("pos")?, payments, 512, 20.0, d, d);
    let upload = traffic::tcp_bulk(
        &ns("cameras")?,
        video,
        Some(options.camera_bps),
        d,
        Duration::from_secs(5),
    );
    let browse = traffic::http_browse(&ns("guest")?, web, 16 * 1024, 5.0, d, timeout);
    let stream = traffic::udp_stream(&ns("signage")?, ads, 1200, 100, d);
    let mut others = Vec::new();
    for other in stores.iter().skip(1) {
        let pos = lab.client(other, "pos")?.name.clone();
        others.push(traffic::tcp_requests(&pos, payments, 2048, 2.0, d, timeout));
    }

    // Flows no policy allows, shown while the allowed ones run.
    std::thread::sleep(Duration::from_secs(1));
    let inventory = lab.target("inventory", Proto::Tcp)?;
    for (tenant, service, to) in [
        ("pos", "inventory", inventory),
        ("cameras", "inventory", inventory),
        ("guest", "payments", payments),
    ] {
        let line = denied_line(&lab, &store, tenant, service, to)?;
        progress.step(line);
    }

    // The cut, sampled twice a second: path states and live sessions from the store.
    let mut sampler = Sampler::default();
    let mut cut = false;
    let mut restored = false;
    while start.elapsed() < d {
        let now = start.elapsed();
        if !cut && now >= options.cut_at {
            lab.cut(&store, CUT)?;
            progress.step(format!(
                "cut: {store}'s broadband link is down (in the internet transit)"
            ));
            cut = true;
        }
        if cut && !restored && now >= options.restore_at {
            lab.restore(&store, CUT)?;
            progress.step(format!("restored: {store}'s broadband link is up"));
            restored = true;
        }
        for change in sampler.sample(&lab, &store, now) {
            progress.step(change);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let join = |h: std::thread::JoinHandle<Result<Requests, String>>| {
        h.join()
            .map_err(|_| "a client thread panicked".to_string())?
    };
    let pay = join(pay)?;
    let session = join(session)?;
    let browse = join(browse)?;
    let upload: Bulk = upload
        .join()
        .map_err(|_| "the upload thread panicked".to_string())??;
    let stream: Stream = stream
        .join()
        .map_err(|_| "the stream thread panicked".to_string())??;
    let mut other_pay = Vec::new();
    for h in others {
        other_pay.push(join(h)?);
    }
    let busy = (start.elapsed(), cpu(&lab), busy_from);
    progress.step("traffic stopped; reading the routers");

    let mut summary = String::new();
    let _ = writeln!(
        summary,
        "Harbor Foods lab: {} store(s), {} s of traffic, {store} broadband cut at {:.0} s and \
         restored at {:.0} s ({} cores, load average {})",
        stores.len(),
        d.as_secs(),
        options.cut_at.as_secs_f64(),
        options.restore_at.as_secs_f64(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg()
    );
    let scrapes: BTreeMap<String, Metrics> = stores
        .iter()
        .chain(&hubs)
        .map(|r| lab.scrape(r).map(|m| (r.clone(), m)))
        .collect::<Result<_, _>>()?;
    let cut_link = CUT;
    let reach: BTreeMap<(String, String), Reach> = FLOWS
        .iter()
        .filter_map(|&(tenant, service)| {
            Reach::of(&lab.intent, &lab.plan, &store, cut_link, tenant, service)
                .map(|r| ((tenant.to_string(), service.to_string()), r))
        })
        .collect();
    let flows = Flows {
        pay: &pay,
        session: &session,
        upload: &upload,
        browse: &browse,
        stream: &stream,
        other_pay: &other_pay,
    };
    summary += &flows_table(&flows, &reach, cut_link);
    summary += &sessions_table(&sampler, &scrapes);
    summary += &failover_text(&sampler, &scrapes, &session, options);
    summary += &wan_table(&lab, &scrapes);
    summary += &drops_table(&scrapes);
    summary += &cpu_table(&routers, idle, busy);

    std::fs::create_dir_all(&options.out_dir)
        .map_err(|e| format!("{}: {e}", options.out_dir.display()))?;
    let chart = options.out_dir.join("demo-throughput.svg");
    let note = |(tenant, service): (&str, &str)| {
        reach
            .get(&(tenant.to_string(), service.to_string()))
            .and_then(Reach::panel_note)
    };
    // Payments and pages come 5 a second: a 500 ms bin holds 2 or 3 of them and the line
    // zigzags; a 1 s bin shows the rate. The other flows are continuous (20 exchanges/s, a
    // paced upload, 100 packets/s): 500 ms bins show their gaps.
    let (second, half) = (Duration::from_secs(1), Duration::from_millis(500));
    let series = vec![
        series(
            "pos → payments: payments (new session each), kbit/s",
            note(FLOWS[0]),
            &pay.timeline,
            1e3,
            second,
        ),
        series(
            "pos → payments: one long-lived session, kbit/s",
            note(FLOWS[1]),
            &session.timeline,
            1e3,
            half,
        ),
        series(
            "cameras → video-archive: upload acknowledged, Mbit/s",
            note(FLOWS[2]),
            &upload.timeline,
            1e6,
            half,
        ),
        series(
            "guest → internet: pages, Mbit/s",
            note(FLOWS[3]),
            &browse.timeline,
            1e6,
            second,
        ),
        series(
            "signage → ads-cdn: UDP stream echoed, Mbit/s",
            note(FLOWS[4]),
            &stream.timeline,
            1e6,
            half,
        ),
    ];
    let bands = [Band {
        from: options.cut_at.as_secs_f64(),
        to: options.restore_at.as_secs_f64(),
        label: format!("{store} {cut_link} cut"),
    }];
    let svg = plot::svg(
        &format!("Throughput at {store} across a broadband cut (signpost-lab demo)"),
        &series,
        &bands,
        d.as_secs_f64(),
    );
    std::fs::write(&chart, svg).map_err(|e| format!("{}: {e}", chart.display()))?;
    let summary_file = options.out_dir.join("demo-summary.txt");
    std::fs::write(&summary_file, &summary)
        .map_err(|e| format!("{}: {e}", summary_file.display()))?;
    let count = lab.namespace_names().len();
    drop(lab);
    progress.step(format!("lab removed ({count} namespaces)"));
    println!("\n{summary}");
    println!(
        "chart: {}\nsummary: {}",
        chart.display(),
        summary_file.display()
    );
    Ok(DemoReport {
        summary,
        chart,
        session_gap: session.max_gap,
        session_broke: session.failed > 0,
    })
}

/// What a flow's policy lets it use at the store, read from the Policy objects: the WAN
/// vectors allowed, and whether the cut link's is the only one (then the flow stops during the
/// cut because the policy says so).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Reach {
    policy: String,
    /// The policy's `pathPreference` (empty: any path).
    preference: Vec<String>,
    /// The store's WAN vectors the policy allows, in the store's order.
    usable: Vec<String>,
    /// Every allowed vector is the cut link's.
    cut_only: bool,
}

impl Reach {
    fn of(
        intent: &Intent,
        plan: &Plan,
        store: &str,
        cut: &str,
        tenant: &str,
        service: &str,
    ) -> Option<Reach> {
        let policy = crate::lab::expect::allowing(intent, tenant, service)?;
        let preference: Vec<String> = policy
            .spec
            .path_preference
            .iter()
            .map(|v| v.as_str().to_string())
            .collect();
        let wans = &plan.routers.iter().find(|r| r.name == store)?.wans;
        let usable: Vec<String> = wans
            .iter()
            .filter(|w| preference.is_empty() || preference.contains(&w.vector))
            .map(|w| w.vector.clone())
            .collect();
        let cut_vector = wans.iter().find(|w| w.interface == cut).map(|w| &w.vector);
        let cut_only = !usable.is_empty() && usable.iter().all(|v| Some(v) == cut_vector);
        Some(Reach {
            policy: policy.metadata.name.clone().unwrap_or_default(),
            preference,
            usable,
            cut_only,
        })
    }

    /// `broadband, lte` or `broadband only`.
    fn paths(&self) -> String {
        match self.usable.as_slice() {
            [] => "none".into(),
            [one] => format!("{one} only"),
            many => many.join(", "),
        }
    }

    /// For a chart panel: `broadband only by policy guest-internet: stops during the cut`.
    fn panel_note(&self) -> Option<String> {
        self.cut_only.then(|| {
            format!(
                "{} by policy {}: stops during the cut by design",
                self.paths(),
                self.policy
            )
        })
    }
}

/// The first store's WAN interface the demo cuts.
const CUT: &str = "broadband";

/// The flows of the first store, by (tenant, service), as the summary names them.
const FLOWS: [(&str, &str); 5] = [
    ("pos", "payments"),
    ("pos", "payments"),
    ("cameras", "video-archive"),
    ("guest", "internet"),
    ("signage", "ads-cdn"),
];

/// `denied: cameras → inventory tcp 10.255.3.10:443 — no connection; explain: no-policy (...)`.
fn denied_line(
    lab: &RetailLab,
    store: &str,
    tenant: &str,
    service: &str,
    to: SocketAddr,
) -> Result<String, String> {
    let ns = lab.client(store, tenant)?;
    let opened = crate::netns::in_namespace(ns, move || {
        Ok(traffic::tcp_opens(to, Duration::from_millis(500)))
    })
    .join()
    .map_err(|_| "probe thread panicked".to_string())??;
    let explain = lab.explain(store, tenant, to, Proto::Tcp)?;
    let reason = explain["reason"].as_str().unwrap_or("-");
    // A store is told only about services its tenants may reach: another service's address
    // can look like one of those (inventory's like `internet`'s 0.0.0.0/0).
    let seen_as = match explain["service"].as_str() {
        Some(s) if !s.is_empty() && s != service => format!(" (the store sees it as `{s}`)"),
        _ => String::new(),
    };
    let last = explain["steps"]
        .as_array()
        .and_then(|s| s.last())
        .and_then(|s| s.as_str())
        .unwrap_or("");
    Ok(format!(
        "denied: {tenant} → {service} ({to}): {}; explain: {}{seen_as} — {reason}: {last}",
        if opened {
            "IT OPENED (unexpected)"
        } else {
            "no connection"
        },
        if explain["allowed"].as_bool() == Some(true) {
            "allowed"
        } else {
            "denied"
        },
    ))
}

/// What the store router said over time.
#[derive(Default)]
struct Sampler {
    /// Path id → (state, since).
    paths: BTreeMap<String, String>,
    /// (seconds, path id, state) for every change after the first sample.
    changes: Vec<(f64, String, String)>,
    /// (tenant, service) → peak live sessions.
    peak: BTreeMap<(String, String), f64>,
    started: bool,
}

impl Sampler {
    fn sample(&mut self, lab: &RetailLab, store: &str, at: Duration) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(paths) = lab.ctl_json(store, &["paths"]) {
            for p in paths["paths"].as_array().into_iter().flatten() {
                let id = p["path_id"].as_str().unwrap_or("").to_string();
                let state = p["state"].as_str().unwrap_or("").to_string();
                let old = self.paths.insert(id.clone(), state.clone());
                if self.started && old.as_deref() != Some(state.as_str()) {
                    out.push(format!("{store} says path {id} is {state}"));
                    self.changes.push((at.as_secs_f64(), id, state));
                }
            }
        }
        self.started = true;
        if let Ok(m) = lab.scrape(store) {
            for s in m
                .samples
                .iter()
                .filter(|s| s.name == "signpost_sessions_by_service")
            {
                let key = (
                    s.labels.get("tenant").cloned().unwrap_or_default(),
                    s.labels.get("service").cloned().unwrap_or_default(),
                );
                let peak = self.peak.entry(key).or_insert(0.0);
                *peak = peak.max(s.value);
            }
        }
        out
    }
}

/// The flows measured by the clients, with the paths each policy allows; flows whose policy
/// allows only the cut link are marked, and a note says their outage is the policy's doing.
fn flows_table(flows: &Flows<'_>, reach: &BTreeMap<(String, String), Reach>, cut: &str) -> String {
    let mut t =
        String::from("\nFlows (measured by the lab's clients; paths: what the policy allows)\n");
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let paths = |tenant: &str, service: &str| {
        reach
            .get(&(tenant.to_string(), service.to_string()))
            .map_or_else(
                || "-".to_string(),
                |r| {
                    if r.cut_only {
                        format!("{} *", r.paths())
                    } else {
                        r.paths()
                    }
                },
            )
    };
    let _ = writeln!(
        t,
        "  {:<44} {:>8} {:>8} {:>10} {:>12}  paths",
        "flow", "done", "failed", "p50 ms", "longest gap"
    );
    let mut row = |name: &str, r: &Requests, (tenant, service): (&str, &str)| {
        let _ = writeln!(
            t,
            "  {:<44} {:>8} {:>8} {:>10.1} {:>9.0} ms  {}",
            name,
            r.ok,
            r.failed,
            ms(traffic::quantile(&r.latencies, 0.5)),
            ms(r.max_gap),
            paths(tenant, service)
        );
    };
    row("pos → payments, a session per payment", flows.pay, FLOWS[0]);
    row(
        "pos → payments, one long-lived session",
        flows.session,
        FLOWS[1],
    );
    row("guest → internet, HTTP GET 16 KiB", flows.browse, FLOWS[3]);
    for (i, r) in flows.other_pay.iter().enumerate() {
        row(&format!("pos → payments at store #{}", i + 2), r, FLOWS[0]);
    }
    let upload = flows.upload;
    let _ = writeln!(
        t,
        "  {:<44} {:>8} {:>8} {:>10} {:>12}  {}",
        "cameras → video-archive, upload",
        format!("{:.1} MB", upload.acked as f64 / 1e6),
        if upload.error.is_some() {
            "stalled"
        } else {
            "0"
        },
        format!("{:.1} Mb/s", upload.mbps()),
        "-",
        paths(FLOWS[2].0, FLOWS[2].1)
    );
    let stream = flows.stream;
    let _ = writeln!(
        t,
        "  {:<44} {:>8} {:>8} {:>10.1} {:>9.0} ms  {}",
        "signage → ads-cdn, UDP (echoes)",
        stream.received,
        stream.sent.saturating_sub(stream.received),
        ms(traffic::quantile(&stream.rtts, 0.5)),
        ms(stream.max_gap),
        paths(FLOWS[4].0, FLOWS[4].1)
    );
    if reach.values().any(|r| r.cut_only) {
        let names: Vec<String> = reach
            .iter()
            .filter(|(_, r)| r.cut_only)
            .map(|((tenant, service), r)| {
                format!(
                    "{tenant} → {service} ({}: pathPreference [{}])",
                    r.policy,
                    r.preference.join(", ")
                )
            })
            .collect();
        let _ = writeln!(
            t,
            "  * allowed on {cut} only by policy: {}. These flows stop while {cut} is cut, by \
             design: their failures and gaps in the cut window are the policy's intent (no other \
             path may carry them), not a failover fault.",
            names.join(", ")
        );
    }
    t
}

/// The first store's measured flows, for the summary.
struct Flows<'a> {
    pay: &'a Requests,
    session: &'a Requests,
    upload: &'a Bulk,
    browse: &'a Requests,
    stream: &'a Stream,
    other_pay: &'a [Requests],
}

fn sessions_table(sampler: &Sampler, scrapes: &BTreeMap<String, Metrics>) -> String {
    let mut t = String::from(
        "\nSessions at the store by tenant and service (peak live, signpost_sessions_by_service)\n",
    );
    for ((tenant, service), n) in &sampler.peak {
        let _ = writeln!(t, "  {tenant:<10} {service:<16} {n:>6.0}");
    }
    let _ = writeln!(
        t,
        "Sessions created per router (signpost_session_events_total{{event=\"created\"}})"
    );
    for (router, m) in scrapes {
        let _ = writeln!(
            t,
            "  {router:<12} {:>8.0}",
            m.sum("signpost_session_events_total", &[("event", "created")])
        );
    }
    t
}

fn failover_text(
    sampler: &Sampler,
    scrapes: &BTreeMap<String, Metrics>,
    session: &Requests,
    options: &DemoOptions,
) -> String {
    let mut t = String::from("\nFailover\n");
    if sampler.changes.is_empty() {
        let _ = writeln!(
            t,
            "  no failover: the store never marked a path down (signpostctl paths stayed `up`) — \
             this build has no path monitoring (BFD), so nothing notices a cut link"
        );
    }
    for (at, id, state) in &sampler.changes {
        let _ = writeln!(t, "  {at:6.1} s  {id} → {state}");
    }
    let rebound: f64 = scrapes
        .values()
        .map(|m| m.sum("signpost_session_events_total", &[("event", "rebound")]))
        .sum();
    let _ = writeln!(
        t,
        "  sessions re-bound to another path (signpost_session_events_total{{event=\"rebound\"}}): {rebound:.0}"
    );
    let cut = options.cut_at.as_secs_f64();
    let _ = writeln!(
        t,
        "  the long-lived POS session (client's view): longest gap {:.0} ms starting at {:.1} s \
         (cut at {cut:.1} s); {}",
        session.max_gap.as_secs_f64() * 1e3,
        session.max_gap_at.as_secs_f64(),
        match &session.first_error {
            Some(e) => format!("it broke: {e}"),
            None => "never reset".to_string(),
        }
    );
    t
}

fn wan_table(lab: &RetailLab, scrapes: &BTreeMap<String, Metrics>) -> String {
    let mut t = String::from("\nBytes on each WAN link (signpost_interface_{tx,rx}_bytes_total)\n");
    let _ = writeln!(
        t,
        "  {:<12} {:<10} {:<7} {:>12} {:>12}",
        "router", "interface", "device", "sent", "received"
    );
    for r in &lab.plan.routers {
        let Some(m) = scrapes.get(&r.name) else {
            continue;
        };
        for w in &r.wans {
            let l = [("interface", w.device.as_str())];
            let _ = writeln!(
                t,
                "  {:<12} {:<10} {:<7} {:>12} {:>12}",
                r.name,
                w.interface,
                w.device,
                bytes(m.sum("signpost_interface_tx_bytes_total", &l)),
                bytes(m.sum("signpost_interface_rx_bytes_total", &l)),
            );
        }
    }
    t
}

fn drops_table(scrapes: &BTreeMap<String, Metrics>) -> String {
    let mut t = String::from("\nDrops by reason (signpost_drops_total, non-zero)\n");
    for (router, m) in scrapes {
        for (reason, n) in m.by("signpost_drops_total", "reason") {
            if n > 0.0 {
                let _ = writeln!(t, "  {router:<12} {reason:<24} {n:>8.0}");
            }
        }
    }
    t
}

type CpuSpan = (Duration, Vec<Duration>, Vec<Duration>);

fn cpu_table(routers: &[String], idle: CpuSpan, busy: CpuSpan) -> String {
    let mut t = String::from(
        "\nRouter CPU (user + system from /proc, % of one core; workers spin 50 µs, then sleep)\n",
    );
    let pct = |span: &CpuSpan, i: usize| {
        let used = span.1.get(i).copied().unwrap_or_default();
        let before = span.2.get(i).copied().unwrap_or_default();
        used.saturating_sub(before).as_secs_f64() / span.0.as_secs_f64().max(1e-9) * 100.0
    };
    let _ = writeln!(t, "  {:<12} {:>8} {:>14}", "router", "idle", "with traffic");
    for (i, r) in routers.iter().enumerate() {
        let _ = writeln!(
            t,
            "  {r:<12} {:>7.1}% {:>13.1}%",
            pct(&idle, i),
            pct(&busy, i)
        );
    }
    t
}

/// A panel's line: the client's buckets summed into bins of `bin`.
fn series(
    title: &str,
    note: Option<String>,
    timeline: &Timeline,
    unit: f64,
    bin: Duration,
) -> Series {
    let per = (bin.as_nanos() / timeline.bucket.as_nanos().max(1)).max(1) as usize;
    let width = timeline.bucket.as_secs_f64() * per as f64;
    let points = timeline
        .bytes
        .chunks(per)
        .enumerate()
        .map(|(i, c)| {
            let bits = c.iter().sum::<u64>() as f64 * 8.0;
            ((i as f64 + 0.5) * width, bits / width / unit)
        })
        .collect();
    Series {
        title: title.to_string(),
        note,
        unit: if unit >= 1e6 { "Mb/s" } else { "kb/s" }.to_string(),
        points,
    }
}

fn bytes(n: f64) -> String {
    if n >= 1e9 {
        format!("{:.2} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1} MB", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1} kB", n / 1e3)
    } else {
        format!("{n:.0} B")
    }
}

/// The 1-minute load average, as `/proc/loadavg` says.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use signpost_operator::admission::Admission;
    use signpost_operator::manifests;

    #[test]
    fn broadband_only_flows_are_read_from_the_policies() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/retail");
        let docs = manifests::read_documents(&dir).expect("readable");
        let intent = manifests::decode(&docs, &Admission::new()).expect("admitted");
        let plan = Plan::new(&intent, 1).expect("plan");
        let store = plan.stores().next().expect("a store").name.clone();
        let reach = |t: &str, s: &str| Reach::of(&intent, &plan, &store, CUT, t, s).expect(s);
        let pay = reach("pos", "payments");
        assert_eq!(
            (pay.paths().as_str(), pay.cut_only),
            ("broadband, lte", false)
        );
        assert_eq!(pay.panel_note(), None);
        for (t, s, policy) in [
            ("guest", "internet", "guest-internet"),
            ("cameras", "video-archive", "cameras-video-archive"),
            ("signage", "ads-cdn", "signage-ads-cdn"),
        ] {
            let r = reach(t, s);
            assert!(r.cut_only, "{t} → {s}: {r:?}");
            assert_eq!(r.policy, policy);
            assert_eq!(
                r.panel_note().as_deref(),
                Some(
                    format!("broadband only by policy {policy}: stops during the cut by design")
                        .as_str()
                )
            );
        }
        assert!(
            Reach::of(&intent, &plan, &store, CUT, "guest", "payments").is_none(),
            "denied"
        );
    }
}
