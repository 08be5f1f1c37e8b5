//! QoS on a congested WAN link and the DoS guard under a SYN flood, with real processes in real
//! network namespaces:
//!
//! ```text
//!  client ──cl0|lan0── store-1 ──wan0|t-store─[transit: bridge, tbf 20 Mbit/s → hub]─t-hub|wan0── hub-1 ──lan0|srv0── server
//!  10.1.10.5 (pos)     (edge, AF_XDP,            192.0.2.0/24                           (hub, AF_XDP)      10.100.1.10
//!  10.1.30.9 (guest)    WAN capacity 19 Mbit/s)                                                            echo, iperf3 -s
//! ```
//!
//! The operator runs in local mode (on a management bridge, as in `router_runtime.rs`); both
//! routers forward on AF_XDP. The transit namespace is the ISP: a bridge whose port towards the
//! hub is a `tc tbf` at 20 Mbit/s with a 100 ms queue, like a modem's uplink. The store's WAN
//! `capacity` is set just below it, so the queue forms in the router, where strict priority
//! keeps the critical class ahead of bulk.
//!
//! 1. `critical_traffic_keeps_its_latency_on_a_congested_link`: a 50 pps UDP flow from POS to
//!    payments (critical) alone, then with an iperf3 bulk TCP upload from a guest (low), then
//!    the same with the store's shaping off (capacity removed: the queue forms in the tbf).
//! 2. `a_syn_flood_from_a_guest_leaves_pos_sessions_alone`: hping3 floods SYNs from a guest to
//!    a guest service; POS keeps opening TCP sessions to payments; the drops are counted by
//!    reason and tenant in the store's metrics.
//!
//! Each prints its figures with units and the core count. Without root, or without `iperf3`,
//! `hping3`, `tc` or `nft`, they print `SKIPPED: ...` and pass — unless `CI` is set, where a
//! missing tool fails the test (`.ci/run` installs them). The two tests take turns (a lock), so
//! that one's load does not disturb the other's figures.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use signpost_e2e::{Child, Namespace, binary, in_namespace};

const OPERATOR: &str = "172.31.0.1:7443";
const PAYMENTS_TCP: SocketAddr = SocketAddr::new(ip(10, 255, 1, 10), 443);
const PAYMENTS_UDP: SocketAddr = SocketAddr::new(ip(10, 255, 1, 10), 5140);
const BACKUP: &str = "10.255.1.30";
const WEB: &str = "10.255.1.40";
const GUEST: &str = "10.1.30.9";

const fn ip(a: u8, b: u8, c: u8, d: u8) -> std::net::IpAddr {
    std::net::IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// The store router; `{capacity}` is replaced by the WAN's capacity line (or nothing).
const STORE: &str = r#"
apiVersion: signpost.dev/v1alpha1
kind: Router
metadata: {name: store-1}
spec:
  role: edge
  interfaces:
    - {name: broadband, role: wan, device: wan0, addresses: [192.0.2.11/24], neighborhood: internet, vector: broadband{capacity}}
    - name: lan
      role: lan
      device: lan0
      addresses: [10.1.0.1/16]
      networks:
        - {name: pos, prefixes: [10.1.10.0/24]}
        - {name: guest, prefixes: [10.1.30.0/24]}
  limits: {maxHalfOpenPerTenant: 200, newSessionsPerSecondPerTenant: 400}
"#;

const REST: &str = r#"
apiVersion: signpost.dev/v1alpha1
kind: Router
metadata: {name: hub-1}
spec:
  role: hub
  interfaces:
    - {name: internet, role: wan, device: wan0, addresses: [192.0.2.1/24], neighborhood: internet, vector: internet}
    - name: vpc
      role: lan
      device: lan0
      addresses: [10.100.1.1/24]
      networks: [{name: services, prefixes: [10.100.0.0/16]}]
---
apiVersion: signpost.dev/v1alpha1
kind: Tenant
metadata: {name: pos}
spec: {networks: [pos]}
---
apiVersion: signpost.dev/v1alpha1
kind: Tenant
metadata: {name: guest}
spec: {networks: [guest]}
---
apiVersion: signpost.dev/v1alpha1
kind: Service
metadata: {name: payments}
spec:
  addresses: [10.255.1.10/32]
  transports: [{protocol: tcp, ports: [{port: 443}]}, {protocol: udp, ports: [{port: 5140}]}]
  locations: [{router: hub-1, addresses: [10.100.1.10]}]
---
apiVersion: signpost.dev/v1alpha1
kind: Service
metadata: {name: backup}
spec:
  addresses: [10.255.1.30/32]
  transports: [{protocol: tcp, ports: [{port: 5201}]}]
  locations: [{router: hub-1, addresses: [10.100.1.10]}]
---
apiVersion: signpost.dev/v1alpha1
kind: Service
metadata: {name: web}
spec:
  addresses: [10.255.1.40/32]
  transports: [{protocol: tcp, ports: [{port: 80}]}]
  # Nobody answers there: every SYN a guest gets through stays half-open.
  locations: [{router: hub-1, addresses: [10.100.1.99]}]
---
apiVersion: signpost.dev/v1alpha1
kind: Policy
metadata: {name: pos-payments}
spec: {tenants: [pos], services: [payments], priority: critical, security: none}
---
apiVersion: signpost.dev/v1alpha1
kind: Policy
metadata: {name: guest-backup}
spec: {tenants: [guest], services: [backup], priority: low, security: none}
---
apiVersion: signpost.dev/v1alpha1
kind: Policy
metadata: {name: guest-web}
spec:
  tenants: [guest]
  services: [web]
  priority: low
  security: none
  rateLimit: {newSessionsPerSecond: 20}
"#;

/// One lab at a time in this binary: the figures of one test must not carry the other's load.
static TURN: Mutex<()> = Mutex::new(());

fn cores() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Why this test cannot run here (printed as `SKIPPED`), or `None`. A missing tool fails the
/// test under CI, where `.ci/run` installs it.
fn skip(tools: &[&str]) -> bool {
    if let Some(why) = signpost_e2e::available() {
        eprintln!("SKIPPED: {why}");
        return true;
    }
    for tool in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            if std::env::var_os("CI").is_some() {
                panic!("`{tool}` is missing; .ci/run installs it");
            }
            eprintln!("SKIPPED: needs `{tool}` on PATH");
            return true;
        }
    }
    false
}

fn driver() -> String {
    std::env::var("SIGNPOST_LAB_DRIVER").unwrap_or_else(|_| "xdp".into())
}

fn path(p: impl AsRef<Path>) -> String {
    p.as_ref().display().to_string()
}

struct Lab {
    dir: tempfile::TempDir,
    operator: Option<Child>,
    routers: Vec<(String, Child)>,
    iperf: Option<Child>,
    // Dropped last: processes first, then namespaces.
    mgmt: Namespace,
    client: Namespace,
    edge: Namespace,
    transit: Namespace,
    hub: Namespace,
    server: Namespace,
}

impl Lab {
    fn up(capacity: Option<&str>) -> Result<Lab, String> {
        let lab = Lab {
            dir: tempfile::tempdir().map_err(|e| e.to_string())?,
            operator: None,
            routers: Vec::new(),
            iperf: None,
            mgmt: Namespace::create("mgmt")?,
            client: Namespace::create("cl")?,
            edge: Namespace::create("edge")?,
            transit: Namespace::create("isp")?,
            hub: Namespace::create("hub")?,
            server: Namespace::create("srv")?,
        };
        lab.wire()?;
        lab.write_manifests(capacity)?;
        Ok(lab)
    }

    fn wire(&self) -> Result<(), String> {
        let (m, c, e, t, h, s) = (
            &self.mgmt,
            &self.client,
            &self.edge,
            &self.transit,
            &self.hub,
            &self.server,
        );
        m.ip(&["link", "add", "br0", "type", "bridge"])?;
        m.ip(&["link", "set", "br0", "up"])?;
        m.address("br0", "172.31.0.1/24")?;
        for (router, addr, port) in [
            (e, "172.31.0.11/24", "m-edge"),
            (h, "172.31.0.12/24", "m-hub"),
        ] {
            router.veth("mgmt0", m, port)?;
            router.address("mgmt0", addr)?;
            m.ip(&["link", "set", port, "master", "br0"])?;
        }
        c.veth("cl0", e, "lan0")?;
        e.veth("wan0", t, "t-store")?;
        t.veth("t-hub", h, "wan0")?;
        h.veth("lan0", s, "srv0")?;
        t.ip(&["link", "add", "br0", "type", "bridge"])?;
        for port in ["t-store", "t-hub"] {
            t.ip(&["link", "set", port, "master", "br0"])?;
        }
        t.ip(&["link", "set", "br0", "up"])?;
        // The ISP's uplink: 20 Mbit/s towards the hub, a 100 ms queue (a modem's buffer).
        t.exec(
            "tc",
            &[
                "qdisc", "add", "dev", "t-hub", "root", "tbf", "rate", "20mbit", "burst", "32kb",
                "latency", "100ms",
            ],
        )?;
        // What the ISP sees: packets per DSCP (the routers mark each class's packets).
        t.exec("nft", &["add", "table", "bridge", "isp"])?;
        t.exec(
            "nft",
            &[
                "add",
                "chain",
                "bridge",
                "isp",
                "through",
                "{ type filter hook forward priority 0; }",
            ],
        )?;
        for dscp in ["ef", "cs1"] {
            t.exec(
                "nft",
                &[
                    "add", "rule", "bridge", "isp", "through", "ip", "dscp", dscp, "counter",
                ],
            )?;
        }
        c.address("cl0", "10.1.10.5/16")?;
        c.address("cl0", "10.1.30.9/16")?;
        // POS is the default source; guest tools bind 10.1.30.9.
        c.ip(&[
            "route",
            "add",
            "default",
            "via",
            "10.1.0.1",
            "src",
            "10.1.10.5",
        ])?;
        s.address("srv0", "10.100.1.10/24")?;
        s.ip(&["route", "add", "default", "via", "10.100.1.1"])?;
        // Senders into the routers: finished checksums, MTU-sized frames.
        c.tx_offload_off("cl0")?;
        s.tx_offload_off("srv0")?;
        t.tx_offload_off("t-store")?;
        t.tx_offload_off("t-hub")?;
        for r in [e, h] {
            for dev in ["lan0", "wan0"] {
                r.tx_offload_off(dev)?;
            }
        }
        Ok(())
    }

    fn manifests(&self) -> PathBuf {
        self.dir.path().join("manifests")
    }

    /// The manifests, with the store's WAN `capacity` (e.g. `19Mbps`) or without one.
    fn write_manifests(&self, capacity: Option<&str>) -> Result<(), String> {
        let dir = self.manifests();
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let capacity = capacity.map_or(String::new(), |c| format!(", capacity: {c}"));
        let store = STORE.replace("{capacity}", &capacity);
        // Write the new file next to the old and rename, so the operator never reads half.
        let tmp = dir.join(".store.yaml.tmp");
        std::fs::write(&tmp, store).map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, dir.join("store.yaml")).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("rest.yaml"), REST).map_err(|e| e.to_string())
    }

    fn tls_dir(&self) -> PathBuf {
        self.dir.path().join("operator")
    }

    fn start(&mut self) -> Result<(), String> {
        let mut cmd = self.mgmt.command(&path(binary("signpost-operator")?));
        cmd.args(["--manifests", &path(self.manifests()), "--listen", OPERATOR])
            .args(["--tls-dir", &path(self.tls_dir()), "--poll-ms", "100"]);
        let mut op = Child::spawn("signpost-operator", cmd)?;
        op.wait_for_line("listening on", Duration::from_secs(20))?;
        self.operator = Some(op);
        for router in ["hub-1", "store-1"] {
            let tls = self.dir.path().join(format!("tls-{router}"));
            let out = Command::new(binary("signpostctl")?)
                .args(["certs", "issue", "--dir", &path(self.tls_dir())])
                .args(["--router", router, "--out", &path(&tls)])
                .output()
                .map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(String::from_utf8_lossy(&out.stderr).to_string());
            }
            let ns = if router == "hub-1" {
                &self.hub
            } else {
                &self.edge
            };
            let mut cmd = ns.command(&path(binary("signpost-router")?));
            cmd.args([
                "--router",
                router,
                "--operator",
                &format!("https://{OPERATOR}"),
            ])
            .args(["--tls-dir", &path(&tls)])
            .args(["--state-dir", &path(self.dir.path().join(router))])
            .args(["--driver", "xdp"])
            .env("RUST_LOG", "info");
            let mut child = Child::spawn(router, cmd)?;
            child.wait_for_line("packet I/O started", Duration::from_secs(20))?;
            self.routers.push((router.to_string(), child));
        }
        self.start_servers()
    }

    /// TCP echo on 443 and UDP echo on 5140 (threads in the server namespace, ended with it),
    /// and `iperf3 -s` on 5201.
    fn start_servers(&mut self) -> Result<(), String> {
        in_namespace(&self.server, || {
            let tcp = TcpListener::bind("0.0.0.0:443").map_err(|e| e.to_string())?;
            let udp = UdpSocket::bind("0.0.0.0:5140").map_err(|e| e.to_string())?;
            std::thread::spawn(move || {
                for stream in tcp.incoming().map_while(Result::ok) {
                    std::thread::spawn(move || {
                        let mut s = stream;
                        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                        let mut buf = [0u8; 4096];
                        while let Ok(n) = s.read(&mut buf) {
                            if n == 0 || s.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    });
                }
            });
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while let Ok((n, from)) = udp.recv_from(&mut buf) {
                    let _ = udp.send_to(&buf[..n], from);
                }
            });
            Ok(())
        })
        .join()
        .map_err(|_| "echo server thread panicked".to_string())??;
        let mut cmd = self.server.command("iperf3");
        cmd.args(["-s", "-p", "5201", "--forceflush"]);
        let mut iperf = Child::spawn("iperf3 -s", cmd)?;
        iperf.wait_for_line("Server listening", Duration::from_secs(5))?;
        self.iperf = Some(iperf);
        Ok(())
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        if let Some(op) = &self.operator {
            out += &format!("--- operator\n{}\n", op.output());
        }
        for (name, c) in &self.routers {
            out += &format!("--- {name}\n{}\n", c.output());
        }
        out
    }

    /// Waits until POS reaches payments (both routers configured, neighbours resolved).
    fn wait_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if pos_session(&self.client, Duration::from_millis(500)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err("POS never reached payments".into())
    }

    /// GET /metrics from the router in `ns`.
    fn scrape(&self, ns: &Namespace) -> Result<String, String> {
        in_namespace(ns, || {
            let mut s = TcpStream::connect("127.0.0.1:9464").map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(Duration::from_secs(5)))
                .map_err(|e| e.to_string())?;
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: router\r\nConnection: close\r\n\r\n")
                .map_err(|e| e.to_string())?;
            let mut text = String::new();
            s.read_to_string(&mut text).map_err(|e| e.to_string())?;
            Ok(text)
        })
        .join()
        .map_err(|_| "scrape thread panicked".to_string())?
    }

    /// Packets the ISP forwarded with DSCP `dscp` (`ef`, `cs1`), from its nftables counters.
    fn seen_with_dscp(&self, dscp: &str) -> Result<u64, String> {
        let out = self
            .transit
            .exec("nft", &["list", "table", "bridge", "isp"])?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let needle = format!("ip dscp {dscp} counter packets ");
        text.lines()
            .find_map(|l| l.trim().strip_prefix(needle.as_str()))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("no {dscp} counter in\n{text}"))
    }

    /// `signpostctl ARGS --router 127.0.0.1:7900` in the store's namespace.
    fn ctl(&self, args: &[&str]) -> Result<String, String> {
        let ctl = path(binary("signpostctl")?);
        let mut full = args.to_vec();
        full.extend(["--router", "127.0.0.1:7900"]);
        let out = self.edge.exec(&ctl, &full)?;
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    }
}

/// A sample's value of a metric line `name{labels} value` in a scrape.
fn metric(scrape: &str, name_and_labels: &str) -> Option<f64> {
    scrape
        .lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// One POS session: connect to payments, echo 64 bytes; how long it took.
fn pos_session(client: &Namespace, timeout: Duration) -> Result<Duration, String> {
    in_namespace(client, move || {
        let start = Instant::now();
        let mut s = TcpStream::connect_timeout(&PAYMENTS_TCP, timeout)
            .map_err(|e| format!("connect to payments: {e}"))?;
        s.set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        s.write_all(&[7u8; 64]).map_err(|e| e.to_string())?;
        let mut back = [0u8; 64];
        s.read_exact(&mut back)
            .map_err(|e| format!("echo from payments: {e}"))?;
        Ok(start.elapsed())
    })
    .join()
    .map_err(|_| "client thread panicked".to_string())?
}

/// Latency and loss of a critical flow: 50 pps UDP (172-byte packets, G.711-like) from POS to
/// payments for `secs`, each echoed by the server.
struct Probe {
    rtt_ms: Vec<f64>,
    sent: u32,
}

impl Probe {
    fn run(client: &Namespace, secs: u64) -> Result<Probe, String> {
        in_namespace(client, move || {
            let s = UdpSocket::bind("10.1.10.5:0").map_err(|e| e.to_string())?;
            s.connect(PAYMENTS_UDP).map_err(|e| e.to_string())?;
            let r = s.try_clone().map_err(|e| e.to_string())?;
            r.set_read_timeout(Some(Duration::from_millis(200)))
                .map_err(|e| e.to_string())?;
            let base = Instant::now();
            let total = (secs * 50) as u32;
            let end = base + Duration::from_secs(secs) + Duration::from_secs(1);
            let receiver = std::thread::spawn(move || {
                let mut seen = vec![None; total as usize];
                let mut buf = [0u8; 2048];
                while Instant::now() < end {
                    if let Ok(n) = r.recv(&mut buf)
                        && n >= 12
                    {
                        let seq = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                        let mut t = [0u8; 8];
                        t.copy_from_slice(&buf[4..12]);
                        let sent = Duration::from_nanos(u64::from_be_bytes(t));
                        if let Some(slot) = seen.get_mut(seq) {
                            let rtt = base.elapsed().saturating_sub(sent);
                            *slot = Some(rtt.as_secs_f64() * 1000.0);
                        }
                    }
                }
                seen
            });
            let mut payload = [0x5au8; 144]; // + 8 UDP + 20 IP = 172 bytes
            for seq in 0..total {
                let due = base + Duration::from_millis(u64::from(seq) * 20);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                payload[..4].copy_from_slice(&seq.to_be_bytes());
                let now = base.elapsed().as_nanos() as u64;
                payload[4..12].copy_from_slice(&now.to_be_bytes());
                s.send(&payload).map_err(|e| e.to_string())?;
            }
            let seen = receiver
                .join()
                .map_err(|_| "receiver panicked".to_string())?;
            Ok(Probe {
                rtt_ms: seen.into_iter().flatten().collect(),
                sent: total,
            })
        })
        .join()
        .map_err(|_| "probe thread panicked".to_string())?
    }

    fn lost(&self) -> u32 {
        self.sent - self.rtt_ms.len() as u32
    }

    fn percentile(&self, p: f64) -> f64 {
        percentile(&self.rtt_ms, p)
    }

    fn line(&self, what: &str) -> String {
        format!(
            "{what:<44} p50 {:6.2} ms  p99 {:6.2} ms  loss {}/{} ({:.1}%)",
            self.percentile(50.0),
            self.percentile(99.0),
            self.lost(),
            self.sent,
            f64::from(self.lost()) * 100.0 / f64::from(self.sent.max(1))
        )
    }
}

fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[i.min(v.len() - 1)]
}

/// The bulk upload: `iperf3` from the guest to backup for `secs`; received bits per second.
fn bulk(client: &Namespace, secs: u64) -> std::thread::JoinHandle<Result<f64, String>> {
    let mut cmd = client.command("iperf3");
    cmd.args([
        "-c",
        BACKUP,
        "-p",
        "5201",
        "-B",
        GUEST,
        "-t",
        &secs.to_string(),
        "-J",
    ]);
    std::thread::spawn(move || {
        let out = cmd.output().map_err(|e| format!("iperf3: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("iperf3 output: {e}: {text}"))?;
        json["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .ok_or_else(|| format!("iperf3 reported no throughput: {text}"))
    })
}

/// Critical traffic under congestion, with the router's shaping on and off.
fn qos_run(lab: &mut Lab) -> Result<(), String> {
    lab.wait_ready()?;
    let alone = Probe::run(&lab.client, 4)?;
    let iperf = bulk(&lab.client, 7);
    std::thread::sleep(Duration::from_millis(1500)); // TCP fills the link
    let loaded = Probe::run(&lab.client, 4)?;
    let throughput = iperf
        .join()
        .map_err(|_| "iperf3 thread panicked".to_string())??;
    let scrape = lab.scrape(&lab.edge)?;
    let (ef, cs1) = (lab.seen_with_dscp("ef")?, lab.seen_with_dscp("cs1")?);

    // The same load with the store's shaping off: the queue forms in the ISP's tbf instead.
    lab.write_manifests(None)?;
    std::thread::sleep(Duration::from_millis(1500)); // recompiled, pushed, installed
    let iperf = bulk(&lab.client, 7);
    std::thread::sleep(Duration::from_millis(1500));
    let unshaped = Probe::run(&lab.client, 4)?;
    let unshaped_throughput = iperf
        .join()
        .map_err(|_| "iperf3 thread panicked".to_string())??;

    println!(
        "QoS on a 20 Mbit/s tbf link, store WAN capacity 19 Mbit/s, {} ({} cores, load average {}):",
        driver(),
        cores(),
        load_average()
    );
    println!("{}", alone.line("critical 50 pps UDP, alone"));
    println!("{}", loaded.line("critical, with bulk TCP (router shapes)"));
    println!(
        "{:<44} {:.2} Mbit/s",
        "bulk TCP (iperf3, guest, low class)",
        throughput / 1e6
    );
    println!(
        "{}",
        unshaped.line("critical, with bulk TCP (no router shaping)")
    );
    println!(
        "{:<44} {:.2} Mbit/s",
        "bulk TCP, no router shaping",
        unshaped_throughput / 1e6
    );
    let class = |c: &str, e: &str| {
        metric(
            &scrape,
            &format!(
                "signpost_qos_packets_total{{class=\"{c}\",event=\"{e}\",interface=\"broadband\"}}"
            ),
        )
        .unwrap_or(0.0)
    };
    println!(
        "store-1 broadband queues: critical sent {} queued {} dropped {}; low sent {} queued {} dropped {}",
        class("critical", "sent"),
        class("critical", "queued"),
        class("critical", "dropped"),
        class("low", "sent"),
        class("low", "queued"),
        class("low", "dropped"),
    );

    println!("the ISP saw {ef} packets marked EF (critical) and {cs1} marked CS1 (low)");

    // The critical class keeps its latency and loss; bulk is held to the shaped rate.
    if ef < u64::from(alone.sent + loaded.sent) || cs1 < 1000 {
        return Err(format!("DSCP marks on the wire: {ef} EF, {cs1} CS1"));
    }
    if loaded.lost() > 2 {
        return Err(format!(
            "critical lost {} of {} under load",
            loaded.lost(),
            loaded.sent
        ));
    }
    if loaded.percentile(99.0) > alone.percentile(99.0) + 15.0 {
        return Err(format!(
            "critical p99 {:.1} ms under load against {:.1} ms alone",
            loaded.percentile(99.0),
            alone.percentile(99.0)
        ));
    }
    if !(8e6..=19.5e6).contains(&throughput) {
        return Err(format!("bulk at {:.2} Mbit/s", throughput / 1e6));
    }
    if class("low", "queued") == 0.0 {
        return Err("the low class never waited: the router did not shape".into());
    }
    if class("critical", "dropped") > 0.0 {
        return Err("the critical class dropped packets".into());
    }
    Ok(())
}

#[test]
fn critical_traffic_keeps_its_latency_on_a_congested_link() {
    if skip(&["iperf3", "tc", "nft"]) {
        return;
    }
    let _turn = TURN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut lab = Lab::up(Some("19Mbps")).unwrap_or_else(|e| panic!("{e}"));
    let result = lab.start().and_then(|()| qos_run(&mut lab));
    if let Err(e) = result {
        panic!("{e}\n{}", lab.logs());
    }
}

/// POS sessions while a guest floods SYNs; the guard's drops in the metrics.
fn flood_run(lab: &mut Lab) -> Result<(), String> {
    lab.wait_ready()?;
    let mut before = Vec::new();
    for _ in 0..20 {
        before.push(pos_session(&lab.client, Duration::from_secs(2))?.as_secs_f64() * 1000.0);
    }
    // 30,000 SYNs at 10,000/s from one guest, each from the next source port.
    let mut cmd = lab.client.command("hping3");
    cmd.args([
        "-S", "-p", "80", "-i", "u100", "-c", "30000", "-a", GUEST, WEB,
    ]);
    let started = Instant::now();
    let flood = std::thread::spawn(move || cmd.output());
    std::thread::sleep(Duration::from_millis(300));
    let mut during = Vec::new();
    let mut failed = 0;
    while !flood.is_finished() && during.len() < 200 {
        match pos_session(&lab.client, Duration::from_secs(2)) {
            Ok(d) => during.push(d.as_secs_f64() * 1000.0),
            Err(_) => failed += 1,
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = flood
        .join()
        .map_err(|_| "hping3 thread panicked".to_string())?
        .map_err(|e| format!("hping3: {e}"))?;
    let flood_secs = started.elapsed().as_secs_f64();
    let scrape = lab.scrape(&lab.edge)?;
    let guard = |reason: &str| {
        metric(
            &scrape,
            &format!("signpost_guard_drops_total{{reason=\"{reason}\",tenant=\"guest\"}}"),
        )
        .unwrap_or(0.0)
    };
    let counters = lab.ctl(&["counters", "--prefix", "signpost_guard"])?;
    let explain = lab.ctl(&[
        "explain",
        "--ingress",
        "lan",
        "--src",
        GUEST,
        "--dst",
        WEB,
        "--proto",
        "tcp",
        "--dport",
        "80",
    ])?;
    println!(
        "SYN flood from one guest ({} cores, load average {}): {} ({:.1} s)",
        cores(),
        load_average(),
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .unwrap_or("hping3 gave no summary"),
        flood_secs
    );
    println!(
        "{:<44} p50 {:6.2} ms  p99 {:6.2} ms  ({} sessions)",
        "POS session (connect + echo), before",
        percentile(&before, 50.0),
        percentile(&before, 99.0),
        before.len()
    );
    println!(
        "{:<44} p50 {:6.2} ms  p99 {:6.2} ms  ({} sessions, {failed} failed)",
        "POS session, during the flood",
        percentile(&during, 50.0),
        percentile(&during, 99.0),
        during.len()
    );
    println!("signpostctl counters --prefix signpost_guard:\n{counters}");
    println!("signpostctl explain (guest → web):\n{explain}");

    if failed > 0 || during.len() < 5 {
        return Err(format!(
            "POS sessions during the flood: {} succeeded, {failed} failed",
            during.len()
        ));
    }
    if percentile(&during, 99.0) > percentile(&before, 99.0) + 100.0 {
        return Err("POS session latency did not hold during the flood".into());
    }
    let early = guard("source_session_rate");
    if early < 10_000.0 {
        return Err(format!(
            "only {early} SYNs dropped for the source's rate\n{scrape}"
        ));
    }
    if !counters
        .contains("signpost_guard_drops_total{reason=\"source_session_rate\",tenant=\"guest\"}")
    {
        return Err(format!(
            "signpostctl counters does not show the drops:\n{counters}"
        ));
    }
    if metric(
        &scrape,
        "signpost_drops_total{reason=\"source_session_rate\"}",
    )
    .unwrap_or(0.0)
        < early
    {
        return Err("signpost_drops_total does not count the guard's drops".into());
    }
    if !explain.contains("20 new sessions/s per source") {
        return Err(format!("explain does not state the rate:\n{explain}"));
    }
    Ok(())
}

#[test]
fn a_syn_flood_from_a_guest_leaves_pos_sessions_alone() {
    if skip(&["hping3"]) {
        return;
    }
    let _turn = TURN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut lab = Lab::up(Some("19Mbps")).unwrap_or_else(|e| panic!("{e}"));
    let result = lab.start().and_then(|()| flood_run(&mut lab));
    if let Err(e) = result {
        panic!("{e}\n{}", lab.logs());
    }
}
