//! `signpost-lab compare`: the same flows from a store's POS client to a host behind `hub-aws`,
//! carried four ways over the same lab topology, captured with tshark on the store's broadband
//! link (in the internet transit) and on the client's LAN port:
//!
//! - Signpost, security `none` and `encrypt` (the routers on AF_XDP; a policy of the lab's own,
//!   `compare.yaml`, added to the copy of `examples/retail`);
//! - a kernel VXLAN overlay between the store and hub namespaces (plain: VXLAN has no
//!   encryption, and the usual encrypted underlay — IPsec or WireGuard — is not in this kernel);
//! - OpenVPN (Debian's `openvpn`, UDP, TLS with certificates made here by `openssl`,
//!   AES-256-GCM), which stands for the encrypted overlay.
//!
//! Captured with dumpcap (tshark's capture engine) — a capture that drops packets fails the run.
//! The bulk flow is paced for its byte count (a capture of an unpaced upload on two loaded cores
//! loses packets) and run again unpaced, without captures, for its throughput.
//!
//! For the overlays the store and hub namespaces become kernel routers (addresses on the same
//! devices, the store terminating the POS VLAN with the lab's tc programs), and the client
//! sends to the host's real address through the tunnel; with Signpost it sends to the service's
//! address. Flows: VoIP-like (UDP, 172-byte payloads — RTP header + 20 ms of G.711 — at 50
//! packets/s), a small-request API (a new TCP connection per 256-byte request and answer) and a
//! bulk TCP upload. Bytes are IP bytes (the Ethernet header is the same for every carrier).

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::capture::{Capture, Tally};
use crate::lab::{LabOptions, Proto, RetailLab};
use crate::netns::in_namespace;
use crate::process::Child;
use crate::traffic;

const STORE: &str = "store-0142";
const HUB: &str = "hub-aws";
const TENANT: &str = "pos";
/// The compare host behind hub-aws, and its services' addresses.
const HOST: Ipv4Addr = Ipv4Addr::new(10, 100, 9, 10);
const VOICE_PORT: u16 = 4000;
const API_PORT: u16 = 8080;
const BULK_PORT: u16 = 5201;
/// RTP header + 160 bytes of G.711 (20 ms at 8 kHz).
const VOIP_PAYLOAD: usize = 172;
/// The bulk flow's pace while it is captured.
const BULK_PACED: u64 = 50_000_000;

#[derive(Clone, Debug)]
pub struct CompareOptions {
    pub voip: Duration,
    pub api_requests: u32,
    pub bulk: Duration,
    pub out_dir: PathBuf,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            voip: Duration::from_secs(60),
            api_requests: 200,
            bulk: Duration::from_secs(5),
            out_dir: PathBuf::from("target/signpost-lab"),
        }
    }
}

/// The lab's own services and policy for the comparison (added to the manifests copy).
fn manifest(security: &str) -> String {
    let mut out = String::new();
    for (i, (name, proto, port)) in [
        ("compare-voice", "udp", VOICE_PORT),
        ("compare-api", "tcp", API_PORT),
        ("compare-bulk", "tcp", BULK_PORT),
    ]
    .into_iter()
    .enumerate()
    {
        let _ = write!(
            out,
            "apiVersion: signpost.dev/v1alpha1
kind: Service
metadata: {{name: {name}}}
spec:
  addresses: [10.255.9.{}/32]
  transports: [{{protocol: {proto}, ports: [{{port: {port}}}]}}]
  locations: [{{router: {HUB}, addresses: [{HOST}]}}]
---
",
            10 + i
        );
    }
    let _ = write!(
        out,
        "apiVersion: signpost.dev/v1alpha1
kind: Policy
metadata: {{name: compare}}
spec:
  tenants: [{TENANT}]
  services: [compare-voice, compare-api, compare-bulk]
  security: {security}
  pathPreference: [broadband]
"
    );
    out
}

/// One flow over one carrier.
#[derive(Clone, Debug)]
struct Row {
    flow: &'static str,
    carrier: &'static str,
    wan: Tally,
    lan: Tally,
    /// What the flow achieved, in words (latency, rate, throughput).
    result: String,
    mbps: Option<f64>,
}

impl Row {
    /// WAN bytes per original (LAN) byte.
    fn ratio(&self) -> f64 {
        self.wan.bytes as f64 / self.lan.bytes.max(1) as f64
    }
}

/// Where each flow goes for a carrier.
struct Targets {
    voice: SocketAddr,
    api: SocketAddr,
    bulk: SocketAddr,
}

pub fn run(options: &CompareOptions) -> Result<String, String> {
    let started = Instant::now();
    let step = |what: &str| println!("[{:6.1} s] {what}", started.elapsed().as_secs_f64());
    std::fs::create_dir_all(&options.out_dir)
        .map_err(|e| format!("{}: {e}", options.out_dir.display()))?;
    let mut rows = Vec::new();

    step("Signpost: the retail lab with one store, a compare policy (security none)");
    let mut lab = RetailLab::start(LabOptions {
        extra_manifests: vec![("compare.yaml".into(), manifest("none"))],
        ..LabOptions::default()
    })?;
    let shaped_to = broadband_capacity(&lab);
    let targets = Targets {
        voice: lab.target("compare-voice", Proto::Udp)?,
        api: lab.target("compare-api", Proto::Tcp)?,
        bulk: lab.target("compare-bulk", Proto::Tcp)?,
    };
    rows.extend(flows(&lab, "Signpost none", &targets, options, &step)?);
    step("Signpost: the compare policy switched to security encrypt");
    let before: Vec<usize> = [STORE, HUB]
        .iter()
        .map(|r| lab.configs_applied(r))
        .collect();
    std::fs::write(
        lab.manifests_dir().join("compare.yaml"),
        manifest("encrypt"),
    )
    .map_err(|e| e.to_string())?;
    for (r, n) in [STORE, HUB].iter().zip(before) {
        lab.wait_config_after(r, n, Duration::from_secs(10))?;
    }
    rows.extend(flows(&lab, "Signpost encrypt", &targets, options, &step)?);
    lab.stop_router(STORE);
    drop(lab);

    step("overlays: the same namespaces as kernel routers, no Signpost router");
    let lab = RetailLab::start(LabOptions {
        extra_manifests: vec![("compare.yaml".into(), manifest("none"))],
        routers: false,
        ..LabOptions::default()
    })?;
    let kernel = kernel_routing(&lab)?;
    let real = Targets {
        voice: SocketAddr::from((HOST, VOICE_PORT)),
        api: SocketAddr::from((HOST, API_PORT)),
        bulk: SocketAddr::from((HOST, BULK_PORT)),
    };
    step("VXLAN between the store and hub-aws");
    kernel.vxlan(&lab, true)?;
    rows.extend(flows(&lab, "VXLAN", &real, options, &step)?);
    kernel.vxlan(&lab, false)?;
    step("OpenVPN (UDP, TLS, AES-256-GCM) between the store and hub-aws");
    let vpn = kernel.openvpn(&lab)?;
    rows.extend(flows(&lab, "OpenVPN", &real, options, &step)?);
    drop(vpn);
    drop(lab);

    let table = report(&rows, options, shaped_to.as_deref());
    let file = options.out_dir.join("compare.txt");
    std::fs::write(&file, &table).map_err(|e| format!("{}: {e}", file.display()))?;
    println!("\n{table}\ntable: {}", file.display());
    Ok(table)
}

/// The three flows over whatever carries `targets`, each captured on the WAN and the LAN.
fn flows(
    lab: &RetailLab,
    carrier: &'static str,
    targets: &Targets,
    options: &CompareOptions,
    step: &dyn Fn(&str),
) -> Result<Vec<Row>, String> {
    let client = lab.client(STORE, TENANT)?.name.clone();
    let mut rows = Vec::new();
    let voip = options.voip;
    let to = targets.voice;
    step(&format!(
        "  {carrier}: VoIP-like UDP for {} s",
        voip.as_secs()
    ));
    let (wan, lan, stream) = captured(lab, carrier, "voip", || {
        traffic::udp_stream(&client, to, VOIP_PAYLOAD, 50, voip)
            .join()
            .map_err(|_| "stream thread panicked".to_string())?
    })?;
    rows.push(Row {
        flow: "VoIP (UDP 172 B, 50/s)",
        carrier,
        wan,
        lan,
        result: format!(
            "{}/{} echoed, rtt p50 {:.2} ms",
            stream.received,
            stream.sent,
            traffic::quantile(&stream.rtts, 0.5).as_secs_f64() * 1e3
        ),
        mbps: None,
    });
    let n = options.api_requests;
    let to = targets.api;
    step(&format!("  {carrier}: {n} API requests"));
    let (wan, lan, latencies) = captured(lab, carrier, "api", || {
        in_namespace(&client, move || {
            let mut lat = Vec::new();
            for _ in 0..n {
                lat.push(traffic::tcp_exchange(to, 256, Duration::from_secs(3))?);
            }
            Ok(lat)
        })
        .join()
        .map_err(|_| "api thread panicked".to_string())?
    })?;
    rows.push(Row {
        flow: "API (TCP, 256 B each way)",
        carrier,
        wan,
        lan,
        result: format!(
            "p50 {:.2} ms per request",
            traffic::quantile(&latencies, 0.5).as_secs_f64() * 1e3
        ),
        mbps: None,
    });
    let d = options.bulk;
    let to = targets.bulk;
    step(&format!(
        "  {carrier}: bulk TCP upload for {} s at {} Mbit/s, captured",
        d.as_secs(),
        BULK_PACED / 1_000_000
    ));
    let (wan, lan, _) = captured(lab, carrier, "bulk", || {
        traffic::tcp_bulk(&client, to, Some(BULK_PACED), d, Duration::from_secs(3))
            .join()
            .map_err(|_| "bulk thread panicked".to_string())?
    })?;
    step(&format!(
        "  {carrier}: bulk TCP upload for {} s, unpaced",
        d.as_secs()
    ));
    let bulk = traffic::tcp_bulk(&client, to, None, d, Duration::from_secs(3))
        .join()
        .map_err(|_| "bulk thread panicked".to_string())??;
    rows.push(Row {
        flow: "bulk TCP upload",
        carrier,
        wan,
        lan,
        result: format!("{:.0} Mbit/s unpaced", bulk.mbps()),
        mbps: Some(bulk.mbps()),
    });
    Ok(rows)
}

/// Runs `work` with captures on the store's broadband port and the client's LAN port.
fn captured<T>(
    lab: &RetailLab,
    carrier: &str,
    flow: &str,
    work: impl FnOnce() -> Result<T, String>,
) -> Result<(Tally, Tally, T), String> {
    let dir = lab.work_dir();
    let slug = carrier.replace(' ', "-").to_lowercase();
    let (wns, wdev) = lab.wan_port(STORE, "broadband")?;
    let (lns, ldev) = lab.lan_port(STORE, TENANT)?;
    // BFD (3784, 4784) is the routers' own traffic, not the flow's.
    let filter = "ip and not (udp port 3784 or udp port 4784)";
    let wan = Capture::start(
        wns,
        &wdev,
        filter,
        &dir.join(format!("{slug}-{flow}-wan.pcap")),
    )?;
    let lan = Capture::start(
        lns,
        &ldev,
        "ip",
        &dir.join(format!("{slug}-{flow}-lan.pcap")),
    )?;
    let out = work()?;
    Ok((wan.finish()?, lan.finish()?, out))
}

/// The store and hub namespaces as kernel routers for the overlays.
struct Kernel {
    store_wan: Ipv4Addr,
    hub_wan: Ipv4Addr,
}

impl Kernel {
    /// VXLAN up (`on`) or down between the store and the hub, with routes through it.
    fn vxlan(&self, lab: &RetailLab, on: bool) -> Result<(), String> {
        let (s, h) = (lab.router_ns(STORE)?, lab.router_ns(HUB)?);
        if !on {
            s.ip(&["link", "del", "vx0"])?;
            h.ip(&["link", "del", "vx0"])?;
            return Ok(());
        }
        for (ns, local, remote, addr) in [
            (s, self.store_wan, self.hub_wan, "10.200.0.1/30"),
            (h, self.hub_wan, self.store_wan, "10.200.0.2/30"),
        ] {
            let (local, remote) = (local.to_string(), remote.to_string());
            ns.ip(&[
                "link", "add", "vx0", "type", "vxlan", "id", "42", "local", &local, "remote",
                &remote, "dstport", "4789",
            ])?;
            ns.address("vx0", addr)?;
            ns.ip(&["link", "set", "vx0", "up"])?;
        }
        s.ip(&["route", "add", "10.100.0.0/16", "via", "10.200.0.2"])?;
        h.ip(&["route", "add", "10.1.0.0/16", "via", "10.200.0.1"])?;
        Ok(())
    }

    /// OpenVPN between the store (client) and the hub (server), with routes through it; the
    /// processes stop when the returned value is dropped.
    fn openvpn(&self, lab: &RetailLab) -> Result<Vec<Child>, String> {
        let dir = lab.work_dir().join("openvpn");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let d = |f: &str| dir.join(f).display().to_string();
        let openssl = |args: &[&str]| crate::netns::run("openssl", args).map(drop);
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &["-keyout", &d("ca.key"), "-out", &d("ca.crt")],
                &["-days", "2", "-subj", "/CN=signpost-lab-ca"],
            ]
            .concat(),
        )?;
        for name in ["hub", "store"] {
            openssl(
                &[
                    &["req"][..],
                    &ec,
                    &["-keyout", &d(&format!("{name}.key"))],
                    &[
                        "-out",
                        &d(&format!("{name}.csr")),
                        "-subj",
                        &format!("/CN={name}"),
                    ],
                ]
                .concat(),
            )?;
            openssl(&[
                "x509",
                "-req",
                "-in",
                &d(&format!("{name}.csr")),
                "-CA",
                &d("ca.crt"),
                "-CAkey",
                &d("ca.key"),
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &d(&format!("{name}.crt")),
            ])?;
        }
        let (s, h) = (lab.router_ns(STORE)?, lab.router_ns(HUB)?);
        let common = |name: &str, local: &str, remote: &str| -> Vec<String> {
            [
                "--dev",
                "tun0",
                "--dev-type",
                "tun",
                "--proto",
                "udp",
                "--port",
                "1194",
                "--data-ciphers",
                "AES-256-GCM",
                "--verb",
                "3",
                "--ifconfig",
                local,
                remote,
                "--ca",
            ]
            .iter()
            .map(|s| s.to_string())
            .chain([
                d("ca.crt"),
                "--cert".into(),
                d(&format!("{name}.crt")),
                "--key".into(),
                d(&format!("{name}.key")),
            ])
            .collect()
        };
        let mut server = h.command("openvpn");
        server
            .args(common("hub", "10.201.0.2", "10.201.0.1"))
            .args([
                "--tls-server",
                "--dh",
                "none",
                "--local",
                &self.hub_wan.to_string(),
            ]);
        let mut client = s.command("openvpn");
        client
            .args(common("store", "10.201.0.1", "10.201.0.2"))
            .args(["--tls-client", "--remote", &self.hub_wan.to_string()])
            .args(["--local", &self.store_wan.to_string()]);
        let mut server = Child::spawn("openvpn (hub)", server)?;
        let mut client = Child::spawn("openvpn (store)", client)?;
        for c in [&mut server, &mut client] {
            c.wait_for_line("Initialization Sequence Completed", Duration::from_secs(30))?;
        }
        s.ip(&["route", "add", "10.100.0.0/16", "via", "10.201.0.2"])?;
        h.ip(&["route", "add", "10.1.0.0/16", "via", "10.201.0.1"])?;
        Ok(vec![server, client])
    }
}

/// Addresses and forwarding on the store and hub namespaces' own devices.
fn kernel_routing(lab: &RetailLab) -> Result<Kernel, String> {
    let store = lab.plan.router(STORE).ok_or("no store in the plan")?;
    let hub = lab.plan.router(HUB).ok_or("no hub in the plan")?;
    let bb = store
        .wans
        .iter()
        .find(|w| w.interface == "broadband")
        .ok_or("the store has no broadband")?;
    let hub_wan = hub.wans.first().ok_or("the hub has no WAN")?;
    let gateway = |w: &crate::lab::plan::WanPlan| {
        lab.plan
            .segments
            .get(w.segment)
            .map(|s| s.gateway.addr().to_string())
            .ok_or("segment")
    };
    let (s, h) = (lab.router_ns(STORE)?, lab.router_ns(HUB)?);
    for ns in [s, h] {
        ns.exec("sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
    }
    s.address(&bb.device, &bb.address.to_string())?;
    s.ip(&[
        "route",
        "add",
        &format!("{}/32", hub_wan.address.addr()),
        "via",
        &gateway(bb)?,
    ])?;
    h.address(&hub_wan.device, &hub_wan.address.to_string())?;
    h.ip(&[
        "route",
        "add",
        &format!("{}/32", bb.address.addr()),
        "via",
        &gateway(hub_wan)?,
    ])?;
    let lan = store.lan.as_ref().ok_or("the store has no LAN")?;
    for a in &lan.addresses {
        s.address(&lan.device, &a.to_string())?;
    }
    let vid = lab
        .plan
        .client(STORE, TENANT)
        .and_then(|c| c.vlan)
        .ok_or("the POS network has no VLAN")?;
    lab.vlans()?.endpoint(s, &lan.device, vid)?;
    let hub_lan = hub.lan.as_ref().ok_or("the hub has no LAN")?;
    for a in &hub_lan.addresses {
        h.address(&hub_lan.device, &a.to_string())?;
    }
    Ok(Kernel {
        store_wan: bb.address.addr(),
        hub_wan: hub_wan.address.addr(),
    })
}

/// The capacity the store's router shapes its broadband link to (its Router's `capacity`).
fn broadband_capacity(lab: &RetailLab) -> Option<String> {
    lab.intent
        .routers
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some(STORE))?
        .spec
        .interfaces
        .iter()
        .find(|i| i.name.as_str() == "broadband")?
        .capacity
        .clone()
}

/// The table; `shaped_to` is the capacity Signpost shapes the store's broadband to.
fn report(rows: &[Row], options: &CompareOptions, shaped_to: Option<&str>) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "Bytes on the store's broadband link (IP bytes, both directions) for the same flows \
         ({} cores, load average {})",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        crate::demo::loadavg()
    );
    let _ = writeln!(
        t,
        "{:<26} {:<17} {:>8} {:>11} {:>9} {:>11} {:>9} {:>10} {:>10}  result",
        "flow",
        "carrier",
        "packets",
        "WAN bytes",
        "B/packet",
        "original",
        "overhead",
        "vs VXLAN",
        "vs OpenVPN",
    );
    for r in rows {
        let overlay = |name: &str| {
            rows.iter()
                .find(|o| o.flow == r.flow && o.carrier == name)
                .map(|o| 1.0 - r.ratio() / o.ratio())
        };
        let saved = |name: &str| match (r.carrier.starts_with("Signpost"), overlay(name)) {
            (true, Some(s)) => format!("{:+.1}%", -s * 100.0),
            _ => "-".into(),
        };
        let _ = writeln!(
            t,
            "{:<26} {:<17} {:>8} {:>11} {:>9.1} {:>11} {:>8.2}% {:>10} {:>10}  {}",
            r.flow,
            r.carrier,
            r.wan.packets,
            r.wan.bytes,
            r.wan.per_packet(),
            r.lan.bytes,
            (r.ratio() - 1.0) * 100.0,
            saved("VXLAN"),
            saved("OpenVPN"),
            r.result
        );
    }
    let _ = writeln!(
        t,
        "overhead: WAN bytes over the original packets' bytes (captured on the client's LAN port); \
         vs VXLAN/OpenVPN: Signpost's WAN bytes per original byte relative to the overlay's \
         (negative: fewer bytes)"
    );
    if let Some(r) = rows
        .iter()
        .find(|r| r.carrier == "Signpost none" && r.flow.starts_with("VoIP"))
    {
        let over = (r.ratio() - 1.0) * 100.0;
        let _ = writeln!(
            t,
            "design target: a {} s G.711-like flow with `none` costs ≤ 1% above the original \
             bytes: {over:.2}% — {}",
            options.voip.as_secs(),
            if over <= 1.0 { "met" } else { "MISSED" }
        );
    }
    let bulk: Vec<String> = rows
        .iter()
        .filter_map(|r| r.mbps.map(|m| format!("{} {m:.0} Mbit/s", r.carrier)))
        .collect();
    let _ = writeln!(t, "bulk throughput: {}", bulk.join(", "));
    if let Some(capacity) = shaped_to {
        let _ = writeln!(
            t,
            "  Signpost shapes {STORE}'s broadband to its Router's capacity ({capacity}: the QoS \
             scheduler's link rate, so the critical class keeps its latency); the overlays run \
             unshaped on the veths"
        );
    }
    t
}
