//! The retail lab: a chain's manifests (by default `examples/retail`) carried out in network
//! namespaces — store edges with their WAN links through an internet and a carrier (NAT)
//! transit, a VLAN switch per store ([`vlan`]) with one client per LAN network, cloud hubs with their
//! service hosts and egress firewalls, a management network with `signpost-operator` in local
//! mode on a copy of the manifests, and every router as a `signpost-router` process on AF_XDP.
//!
//! ```no_run
//! use signpost_e2e::lab::{LabOptions, RetailLab};
//! let lab = RetailLab::start(LabOptions { stores: 1, ..LabOptions::default() })?;
//! let pos = lab.client("store-0142", "pos")?;                // a Namespace
//! let payments = lab.target("payments", signpost_e2e::lab::Proto::Tcp)?; // 10.255.1.10:443
//! lab.cut("store-0142", "broadband")?;                       // link down in the transit
//! let paths = lab.ctl("store-0142", &["paths"])?;            // signpostctl against the router
//! # Ok::<(), String>(())
//! ```
//!
//! [`plan`] decides the layout from the manifests; this module builds it, runs the processes
//! and removes everything when the [`RetailLab`] is dropped (also on a panic), or — in a
//! binary that called [`crate::netns::remove_all_on_signal`] — on SIGINT/SIGTERM.
//!
//! The routers' devices carry no kernel addresses and every veth end the lab creates has TX
//! checksum offload off (see `crate::netns::Namespace::tx_offload_off`). With
//! [`LabOptions::routers`] `false` the namespaces are built but no router runs: the
//! comparisons put kernel routing and overlays (VXLAN, OpenVPN) in the same places.

pub mod expect;
pub mod metrics;
pub mod plan;
pub mod vlan;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use signpost_operator::admission::Admission;
use signpost_operator::manifests::{self, Intent};

use crate::netns::{Namespace, in_namespace, run};
use crate::process::{Child, binary};
use crate::traffic::Servers;
pub use metrics::Metrics;
pub use plan::{Plan, Proto, Target, Transit};

/// The router's admin API and metrics inside its namespace (its defaults).
const ADMIN: &str = "127.0.0.1:7900";
const METRICS: &str = "127.0.0.1:9464";

/// How to build the lab.
#[derive(Clone, Debug)]
pub struct LabOptions {
    /// The manifests to copy (a directory); default `examples/retail` of this repository.
    pub manifests: PathBuf,
    /// How many stores (edge routers, first by name) to run; every hub always runs.
    pub stores: usize,
    /// Extra manifest files `(name, YAML)` written into the copy before it is read.
    pub extra_manifests: Vec<(String, String)>,
    /// Start the operator and the routers (else only the namespaces and the hosts).
    pub routers: bool,
    /// The routers' `RUST_LOG`.
    pub router_log: String,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            manifests: Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/retail"),
            stores: 1,
            extra_manifests: Vec::new(),
            routers: true,
            router_log: "info".into(),
        }
    }
}

/// The namespaces, by what they stand for.
struct Namespaces {
    mgmt: Namespace,
    internet: Namespace,
    carrier: Option<Namespace>,
    web: Namespace,
    routers: BTreeMap<String, Namespace>,
    switches: BTreeMap<String, Namespace>,
    /// By (router, network).
    clients: BTreeMap<(String, String), Namespace>,
    vpcs: BTreeMap<String, Namespace>,
    /// In [`Plan::hosts`] order.
    hosts: Vec<Namespace>,
    /// By hub.
    egresses: BTreeMap<String, Namespace>,
}

/// A running lab. Fields drop in order: servers and processes first, then namespaces.
pub struct RetailLab {
    pub plan: Plan,
    /// The objects of the manifests copy as the lab was built.
    pub intent: Intent,
    servers: Vec<Servers>,
    operator: Option<Child>,
    routers: BTreeMap<String, Child>,
    dir: tempfile::TempDir,
    ns: Namespaces,
}

impl RetailLab {
    /// Builds the namespaces and hosts, then starts the operator and every router (unless
    /// `options.routers` is false) and waits until each applied its config.
    pub fn start(options: LabOptions) -> Result<RetailLab, String> {
        let mut lab = RetailLab::build(&options)?;
        if options.routers {
            lab.start_operator()?;
            let names: Vec<String> = lab.plan.routers.iter().map(|r| r.name.clone()).collect();
            for name in &names {
                lab.spawn_router(name, &options.router_log)?;
            }
            for name in &names {
                lab.wait_router(name, Duration::from_secs(30))?;
            }
        }
        Ok(lab)
    }

    /// The namespaces, links, addresses and hosts, without processes.
    pub fn build(options: &LabOptions) -> Result<RetailLab, String> {
        let dir = tempfile::Builder::new()
            .prefix("signpost-lab-")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        let manifests_dir = dir.path().join("manifests");
        copy_manifests(&options.manifests, &manifests_dir)?;
        for (name, text) in &options.extra_manifests {
            std::fs::write(manifests_dir.join(name), text).map_err(|e| format!("{name}: {e}"))?;
        }
        let intent = read_intent(&manifests_dir)?;
        let plan = Plan::new(&intent, options.stores)?;
        let ns = Namespaces::create(&plan)?;
        let mut lab = RetailLab {
            plan,
            intent,
            servers: Vec::new(),
            operator: None,
            routers: BTreeMap::new(),
            dir,
            ns,
        };
        lab.wire()?;
        lab.start_servers()?;
        Ok(lab)
    }

    /// The lab's copy of the manifests: edit it and the operator recompiles (polled every 100 ms).
    pub fn manifests_dir(&self) -> PathBuf {
        self.dir.path().join("manifests")
    }

    /// A scratch directory that lives as long as the lab.
    pub fn work_dir(&self) -> &Path {
        self.dir.path()
    }

    fn tls_dir(&self) -> PathBuf {
        self.dir.path().join("operator")
    }

    /// Starts `signpost-operator --manifests COPY` on the management network.
    pub fn start_operator(&mut self) -> Result<(), String> {
        let listen = self.plan.operator().to_string();
        let mut cmd = self.ns.mgmt.command(&display(binary("signpost-operator")?));
        cmd.args(["--manifests", &display(self.manifests_dir())])
            .args(["--listen", &listen, "--tls-dir", &display(self.tls_dir())])
            .args(["--poll-ms", "100"]);
        let mut child = Child::spawn("signpost-operator", cmd)?;
        child.wait_for_line("listening on", Duration::from_secs(30))?;
        self.operator = Some(child);
        Ok(())
    }

    /// Kills the operator (routers keep their last-known-good configs).
    pub fn kill_operator(&mut self) {
        if let Some(mut op) = self.operator.take() {
            op.kill();
        }
    }

    fn spawn_router(&mut self, name: &str, log: &str) -> Result<(), String> {
        let ns = self
            .ns
            .routers
            .get(name)
            .ok_or_else(|| format!("no router `{name}` in the lab"))?;
        let tls = self.dir.path().join(format!("tls-{name}"));
        if !tls.exists() {
            let out = Command::new(binary("signpostctl")?)
                .args(["certs", "issue", "--dir", &display(self.tls_dir())])
                .args(["--router", name, "--out", &display(&tls)])
                .output()
                .map_err(|e| format!("signpostctl certs issue: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "certs issue {name}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        let state = self.dir.path().join(format!("state-{name}"));
        let mut cmd = ns.command(&display(binary("signpost-router")?));
        cmd.args(["--router", name])
            .args(["--operator", &format!("https://{}", self.plan.operator())])
            .args(["--tls-dir", &display(&tls), "--state-dir", &display(&state)])
            .args(["--driver", "xdp"])
            .env("RUST_LOG", log);
        let child = Child::spawn(name, cmd)?;
        self.routers.insert(name.to_string(), child);
        Ok(())
    }

    fn wait_router(&mut self, name: &str, timeout: Duration) -> Result<(), String> {
        let child = self
            .routers
            .get_mut(name)
            .ok_or_else(|| format!("router `{name}` is not running"))?;
        child.wait_for_line("packet I/O started", timeout)?;
        Ok(())
    }

    /// Starts (or restarts) router `name` and waits until it forwards.
    pub fn start_router(&mut self, name: &str) -> Result<(), String> {
        self.stop_router(name);
        self.spawn_router(name, "info")?;
        self.wait_router(name, Duration::from_secs(30))
    }

    /// SIGKILL to router `name`, as a crash or a lost cloud would.
    pub fn kill_router(&mut self, name: &str) {
        if let Some(mut c) = self.routers.remove(name) {
            c.kill();
        }
    }

    /// Stops router `name` gracefully (it logs its counters).
    pub fn stop_router(&mut self, name: &str) {
        if let Some(mut c) = self.routers.remove(name) {
            c.stop(Duration::from_secs(3));
        }
    }

    /// CPU time router `name` has used so far.
    pub fn router_cpu(&self, name: &str) -> Option<Duration> {
        self.routers.get(name).and_then(Child::cpu_time)
    }

    /// How many configs router `name` has applied so far (its log's `config applied` lines).
    pub fn configs_applied(&self, name: &str) -> usize {
        self.routers.get(name).map_or(0, |c| {
            c.output()
                .lines()
                .filter(|l| l.contains("config applied"))
                .count()
        })
    }

    /// Waits until router `name` has applied more than `before` configs.
    pub fn wait_config_after(
        &self,
        name: &str,
        before: usize,
        timeout: Duration,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while self.configs_applied(name) <= before {
            if Instant::now() > deadline {
                return Err(format!(
                    "router `{name}` applied no new config within {timeout:?}\n{}",
                    self.logs()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Every process's output so far, for a failure message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        if let Some(op) = &self.operator {
            out += &format!("--- operator\n{}\n", op.output());
        }
        for (name, c) in &self.routers {
            out += &format!("--- {name}\n{}\n", c.output());
        }
        out
    }

    /// The names of every namespace the lab holds.
    pub fn namespace_names(&self) -> Vec<String> {
        let n = &self.ns;
        let mut out = vec![
            n.mgmt.name.clone(),
            n.internet.name.clone(),
            n.web.name.clone(),
        ];
        out.extend(n.carrier.iter().map(|c| c.name.clone()));
        for map in [&n.routers, &n.switches, &n.vpcs, &n.egresses] {
            out.extend(map.values().map(|c| c.name.clone()));
        }
        out.extend(n.clients.values().map(|c| c.name.clone()));
        out.extend(n.hosts.iter().map(|c| c.name.clone()));
        out
    }

    /// The namespace of router `name`.
    pub fn router_ns(&self, name: &str) -> Result<&Namespace, String> {
        self.ns
            .routers
            .get(name)
            .ok_or_else(|| format!("no router `{name}` in the lab"))
    }

    /// The client namespace of `tenant` at store `router`.
    pub fn client(&self, router: &str, tenant: &str) -> Result<&Namespace, String> {
        let c = self
            .plan
            .client(router, tenant)
            .ok_or_else(|| format!("store `{router}` has no network of tenant `{tenant}`"))?;
        self.ns
            .clients
            .get(&(c.router.clone(), c.network.clone()))
            .ok_or_else(|| format!("no client namespace for {router}/{}", c.network))
    }

    /// The host namespace answering for `service` behind `hub`.
    pub fn host(&self, service: &str, hub: &str) -> Result<&Namespace, String> {
        self.plan
            .hosts
            .iter()
            .position(|h| h.router == hub && h.services.iter().any(|s| s == service))
            .and_then(|i| self.ns.hosts.get(i))
            .ok_or_else(|| format!("no host of `{service}` behind `{hub}`"))
    }

    /// Hands the host of `service` behind `hub` over to a server process of its own
    /// (`signpost-lab serve`, in that namespace, on the same ports) instead of the lab's
    /// in-process servers, so that a test can kill the server while the host stays up: the host
    /// then refuses TCP with RSTs and UDP with ICMP port unreachable, as a host whose server
    /// died does. Call it again to start a new server after a kill.
    pub fn serve_as_process(&mut self, service: &str, hub: &str) -> Result<Child, String> {
        let i = self
            .plan
            .hosts
            .iter()
            .position(|h| h.router == hub && h.services.iter().any(|s| s == service))
            .ok_or_else(|| format!("no host of `{service}` behind `{hub}`"))?;
        if let Some(s) = self.servers.get_mut(i) {
            s.stop();
        }
        let ns = self
            .ns
            .hosts
            .get(i)
            .ok_or_else(|| format!("no namespace for the host of `{service}`"))?;
        let (tcp, udp) = split_ports(&self.plan.hosts[i].ports);
        let mut cmd = Command::new(binary("signpost-lab")?);
        cmd.args(["serve", "--netns", &ns.name]);
        for p in tcp {
            cmd.args(["--tcp", &p.to_string()]);
        }
        for p in udp {
            cmd.args(["--udp", &p.to_string()]);
        }
        let mut child = Child::spawn(&format!("{service}-server@{hub}"), cmd)?;
        child.wait_for_line("serving", Duration::from_secs(10))?;
        Ok(child)
    }

    /// The transit namespace (`internet`, or `carrier` when the manifests have one).
    pub fn transit(&self, transit: Transit) -> Result<&Namespace, String> {
        match transit {
            Transit::Internet => Ok(&self.ns.internet),
            Transit::Carrier => self
                .ns
                .carrier
                .as_ref()
                .ok_or_else(|| "the manifests have no carrier (100.64.0.0/10) WAN".into()),
        }
    }

    /// The management namespace (where the operator runs).
    pub fn mgmt(&self) -> &Namespace {
        &self.ns.mgmt
    }

    /// The transit side of router `router`'s WAN `interface`: (namespace, device). Capture
    /// there to see what the router puts on the wire.
    pub fn wan_port(&self, router: &str, interface: &str) -> Result<(&Namespace, String), String> {
        let r = self
            .plan
            .router(router)
            .ok_or_else(|| format!("no router `{router}` in the lab"))?;
        let wan = r
            .wans
            .iter()
            .find(|w| w.interface == interface)
            .ok_or_else(|| format!("router `{router}` has no WAN `{interface}`"))?;
        let transit = self
            .plan
            .segments
            .get(wan.segment)
            .map(|s| s.transit)
            .ok_or("segment")?;
        Ok((self.transit(transit)?, wan.port.clone()))
    }

    /// The store switch's access port of `tenant`'s client at `router`: (switch namespace,
    /// device). Capture there to see the original packets, untagged.
    pub fn lan_port(&self, router: &str, tenant: &str) -> Result<(&Namespace, String), String> {
        let c = self
            .plan
            .client(router, tenant)
            .ok_or_else(|| format!("store `{router}` has no network of tenant `{tenant}`"))?;
        let i = self
            .plan
            .clients
            .iter()
            .filter(|x| x.router == router)
            .position(|x| x == c)
            .ok_or("client")?;
        let sw = self
            .ns
            .switches
            .get(router)
            .ok_or_else(|| format!("store `{router}` has no switch"))?;
        Ok((sw, format!("p{i}")))
    }

    /// The VLAN programs of the lab (for a kernel router terminating a store VLAN).
    pub fn vlans(&self) -> Result<vlan::Programs, String> {
        vlan::Programs::new(&self.dir.path().join("bpf"))
    }

    /// Cuts `router`'s WAN `interface` on the transit side (the far end loses carrier).
    pub fn cut(&self, router: &str, interface: &str) -> Result<(), String> {
        let (ns, port) = self.wan_port(router, interface)?;
        ns.ip(&["link", "set", &port, "down"]).map(drop)
    }

    /// Restores a link [`Self::cut`] took down.
    pub fn restore(&self, router: &str, interface: &str) -> Result<(), String> {
        let (ns, port) = self.wan_port(router, interface)?;
        ns.ip(&["link", "set", &port, "up"]).map(drop)
    }

    /// Where a client sends to reach `service` over `proto` (its first such port).
    pub fn target(&self, service: &str, proto: Proto) -> Result<SocketAddr, String> {
        self.plan
            .targets_of(service)
            .find(|t| t.proto == proto)
            .map(|t| SocketAddr::from((t.address, t.port)))
            .ok_or_else(|| format!("service `{service}` has no {proto} port"))
    }

    /// `signpostctl ARGS --router ADMIN` inside router `router`'s namespace; its stdout.
    pub fn ctl(&self, router: &str, args: &[&str]) -> Result<String, String> {
        let ctl = display(binary("signpostctl")?);
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["--router", ADMIN]);
        let out = self.router_ns(router)?.exec(&ctl, &full)?;
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    }

    /// [`Self::ctl`] with `--json`, parsed.
    pub fn ctl_json(&self, router: &str, args: &[&str]) -> Result<serde_json::Value, String> {
        let mut full: Vec<&str> = args.to_vec();
        full.push("--json");
        let text = self.ctl(router, &full)?;
        serde_json::from_str(&text).map_err(|e| format!("signpostctl {args:?} --json: {e}"))
    }

    /// `signpostctl explain --json` at store `router` for the first packet of a `proto` flow
    /// from `tenant`'s client to `to` (its LAN interface and VLAN, its address, from the plan).
    pub fn explain(
        &self,
        router: &str,
        tenant: &str,
        to: SocketAddr,
        proto: Proto,
    ) -> Result<serde_json::Value, String> {
        let client = self
            .plan
            .client(router, tenant)
            .ok_or_else(|| format!("store `{router}` has no network of tenant `{tenant}`"))?;
        let lan = self
            .plan
            .router(router)
            .and_then(|r| r.lan.as_ref())
            .ok_or_else(|| format!("router `{router}` has no LAN"))?;
        let ingress = match client.vlan {
            Some(v) => format!("{}@{v}", lan.interface),
            None => lan.interface.clone(),
        };
        let (src, dst) = (client.address.addr().to_string(), to.ip().to_string());
        let (proto, port) = (proto.to_string(), to.port().to_string());
        self.ctl_json(
            router,
            &[
                "explain",
                "--ingress",
                &ingress,
                "--src",
                &src,
                "--dst",
                &dst,
                "--proto",
                &proto,
                "--dport",
                &port,
            ],
        )
    }

    /// Router `router`'s `/metrics`, parsed.
    pub fn scrape(&self, router: &str) -> Result<Metrics, String> {
        let ns = self.router_ns(router)?;
        in_namespace(ns, || {
            let mut s = TcpStream::connect(METRICS).map_err(|e| format!("metrics: {e}"))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))
                .map_err(|e| e.to_string())?;
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: router\r\nConnection: close\r\n\r\n")
                .map_err(|e| e.to_string())?;
            let mut text = String::new();
            s.read_to_string(&mut text).map_err(|e| e.to_string())?;
            if !text.starts_with("HTTP/1.1 200") {
                return Err(format!(
                    "scrape failed: {}",
                    text.lines().next().unwrap_or("")
                ));
            }
            Ok(Metrics::parse(&text))
        })
        .join()
        .map_err(|_| "scrape thread panicked".to_string())?
    }
}

impl Namespaces {
    fn create(plan: &Plan) -> Result<Namespaces, String> {
        let mut routers = BTreeMap::new();
        let mut switches = BTreeMap::new();
        let mut vpcs = BTreeMap::new();
        for r in &plan.routers {
            routers.insert(r.name.clone(), Namespace::create(&r.name)?);
            if r.lan.is_some() {
                let (map, role) = if r.hub {
                    (&mut vpcs, "vpc")
                } else {
                    (&mut switches, "switch")
                };
                map.insert(
                    r.name.clone(),
                    Namespace::create(&format!("{}-{role}", r.name))?,
                );
            }
        }
        let mut clients = BTreeMap::new();
        for c in &plan.clients {
            let ns = Namespace::create(&format!("{}-{}", c.router, c.network))?;
            clients.insert((c.router.clone(), c.network.clone()), ns);
        }
        let mut hosts = Vec::new();
        for h in &plan.hosts {
            let role = format!("{}-{}", h.router, h.services.join("+"));
            hosts.push(Namespace::create(&role)?);
        }
        let mut egresses = BTreeMap::new();
        for e in &plan.egresses {
            egresses.insert(
                e.router.clone(),
                Namespace::create(&format!("{}-egress", e.router))?,
            );
        }
        let carrier = plan.segments.iter().any(|s| s.transit == Transit::Carrier);
        Ok(Namespaces {
            mgmt: Namespace::create("mgmt")?,
            internet: Namespace::create("internet")?,
            carrier: carrier.then(|| Namespace::create("carrier")).transpose()?,
            web: Namespace::create("web")?,
            routers,
            switches,
            clients,
            vpcs,
            hosts,
            egresses,
        })
    }
}

impl RetailLab {
    fn wire(&self) -> Result<(), String> {
        let (plan, ns) = (&self.plan, &self.ns);
        let vlans = vlan::Programs::new(&self.dir.path().join("bpf"))?;
        // IPv4 only: no router solicitations or DAD noise in the routers' drop counters.
        for name in self.namespace_names() {
            run(
                "ip",
                &[
                    "netns",
                    "exec",
                    &name,
                    "sysctl",
                    "-qw",
                    "net.ipv6.conf.all.disable_ipv6=1",
                ],
            )?;
            run(
                "ip",
                &[
                    "netns",
                    "exec",
                    &name,
                    "sysctl",
                    "-qw",
                    "net.ipv6.conf.default.disable_ipv6=1",
                ],
            )?;
        }
        // Management: the operator at .1 on a bridge, each router on mgmt0.
        let m = &ns.mgmt;
        m.ip(&["link", "add", "br0", "type", "bridge"])?;
        m.ip(&["link", "set", "br0", "up"])?;
        let op = self.plan.operator().ip().to_string();
        m.address("br0", &format!("{op}/{}", plan::MGMT_NET.prefix_len()))?;
        for (i, r) in plan.routers.iter().enumerate() {
            let rns = &ns.routers[&r.name];
            let port = format!("m{i}");
            rns.veth("mgmt0", m, &port)?;
            rns.address("mgmt0", &r.mgmt.to_string())?;
            m.ip(&["link", "set", &port, "master", "br0"])?;
        }

        // Transits: a bridge per segment holding its gateway; the carrier NATs to its uplink.
        let inet = &ns.internet;
        sysctl(inet, "net.ipv4.ip_forward", "1")?;
        for s in &plan.segments {
            let t = self.transit(s.transit)?;
            t.ip(&["link", "add", &s.bridge, "type", "bridge"])?;
            t.ip(&["link", "set", &s.bridge, "up"])?;
            t.address(&s.bridge, &s.gateway.to_string())?;
        }
        if let Some(c) = &ns.carrier {
            sysctl(c, "net.ipv4.ip_forward", "1")?;
            c.veth("up0", inet, "carrier0")?;
            let up = plan::CARRIER_UPLINK;
            c.address("up0", &format!("{}/30", plan::nth(up, 2)))?;
            inet.address("carrier0", &format!("{}/30", plan::nth(up, 1)))?;
            c.ip(&[
                "route",
                "add",
                "default",
                "via",
                &plan::nth(up, 1).to_string(),
            ])?;
            offload_off(&[(c, "up0"), (inet, "carrier0")])?;
            masquerade(c, "up0", Some(plan::CARRIER_RANGE))?;
        }
        for r in &plan.routers {
            let rns = &ns.routers[&r.name];
            for w in &r.wans {
                let seg = &plan.segments[w.segment];
                let t = self.transit(seg.transit)?;
                rns.veth(&w.device, t, &w.port)?;
                t.ip(&["link", "set", &w.port, "master", &seg.bridge])?;
                offload_off(&[(rns, &w.device), (t, &w.port)])?;
            }
        }
        // The lab internet's web host.
        ns.web.veth("eth0", inet, "web0")?;
        ns.web.address(
            "eth0",
            &format!("{}/{}", plan::WEB, plan::WEB_NET.prefix_len()),
        )?;
        let web_gw = plan::nth(plan::WEB_NET, 1);
        inet.address("web0", &format!("{web_gw}/{}", plan::WEB_NET.prefix_len()))?;
        ns.web
            .ip(&["route", "add", "default", "via", &web_gw.to_string()])?;
        offload_off(&[(&ns.web, "eth0"), (inet, "web0")])?;

        // Store LANs: a VLAN-filtering switch, the router's LAN device a trunk.
        for r in plan.stores() {
            let (Some(lan), Some(sw)) = (&r.lan, ns.switches.get(&r.name)) else {
                continue;
            };
            let rns = &ns.routers[&r.name];
            sw.ip(&["link", "add", "br0", "type", "bridge"])?;
            sw.ip(&["link", "set", "br0", "up"])?;
            rns.veth(&lan.device, sw, "trunk")?;
            sw.ip(&["link", "set", "trunk", "master", "br0"])?;
            offload_off(&[(rns, &lan.device), (sw, "trunk")])?;
            vlans.trunk_port(sw, "trunk")?;
            for (i, c) in plan
                .clients
                .iter()
                .filter(|c| c.router == r.name)
                .enumerate()
            {
                let cns = &ns.clients[&(c.router.clone(), c.network.clone())];
                let port = format!("p{i}");
                cns.veth("eth0", sw, &port)?;
                sw.ip(&["link", "set", &port, "master", "br0"])?;
                vlans.access_port(sw, &port, c.vlan)?;
                cns.address("eth0", &c.address.to_string())?;
                let gw = c.gateway.to_string();
                cns.ip(&[
                    "route", "add", "default", "via", &gw, "dev", "eth0", "onlink",
                ])?;
                offload_off(&[(cns, "eth0"), (sw, &port)])?;
            }
        }

        // Hub LANs: a bridge with the service hosts and, where needed, the egress firewall.
        for r in plan.hubs() {
            let (Some(lan), Some(vpc)) = (&r.lan, ns.vpcs.get(&r.name)) else {
                continue;
            };
            let rns = &ns.routers[&r.name];
            vpc.ip(&["link", "add", "br0", "type", "bridge"])?;
            vpc.ip(&["link", "set", "br0", "up"])?;
            rns.veth(&lan.device, vpc, "hub")?;
            vpc.ip(&["link", "set", "hub", "master", "br0"])?;
            offload_off(&[(rns, &lan.device), (vpc, "hub")])?;
            for (i, h) in plan.hosts.iter().enumerate() {
                if h.router != r.name {
                    continue;
                }
                let hns = &ns.hosts[i];
                let port = format!("h{i}");
                hns.veth("eth0", vpc, &port)?;
                vpc.ip(&["link", "set", &port, "master", "br0"])?;
                hns.address("eth0", &h.address.to_string())?;
                hns.ip(&["route", "add", "default", "via", &h.gateway.to_string()])?;
                offload_off(&[(hns, "eth0"), (vpc, &port)])?;
            }
        }
        for (i, e) in plan.egresses.iter().enumerate() {
            let (Some(vpc), Some(ens)) = (ns.vpcs.get(&e.router), ns.egresses.get(&e.router))
            else {
                continue;
            };
            ens.veth("lan0", vpc, "egress")?;
            vpc.ip(&["link", "set", "egress", "master", "br0"])?;
            ens.address("lan0", &e.lan.to_string())?;
            let port = format!("eg{i}");
            ens.veth("wan0", inet, &port)?;
            ens.address("wan0", &format!("{}/30", plan::nth(e.uplink, 2)))?;
            inet.address(&port, &format!("{}/30", plan::nth(e.uplink, 1)))?;
            ens.ip(&[
                "route",
                "add",
                "default",
                "via",
                &plan::nth(e.uplink, 1).to_string(),
            ])?;
            for store in &e.stores {
                ens.ip(&[
                    "route",
                    "add",
                    &store.to_string(),
                    "via",
                    &e.hub.to_string(),
                ])?;
            }
            sysctl(ens, "net.ipv4.ip_forward", "1")?;
            masquerade(ens, "wan0", None)?;
            offload_off(&[(ens, "lan0"), (ens, "wan0"), (vpc, "egress"), (inet, &port)])?;
        }
        Ok(())
    }

    fn start_servers(&mut self) -> Result<(), String> {
        for (i, h) in self.plan.hosts.iter().enumerate() {
            let (tcp, udp) = split_ports(&h.ports);
            self.servers
                .push(Servers::start(&self.ns.hosts[i].name, &tcp, &udp)?);
        }
        if !self.plan.web_ports.is_empty() {
            let (tcp, udp) = split_ports(&self.plan.web_ports);
            self.servers
                .push(Servers::start(&self.ns.web.name, &tcp, &udp)?);
        }
        Ok(())
    }
}

fn split_ports(ports: &[(Proto, u16)]) -> (Vec<u16>, Vec<u16>) {
    let pick = |p: Proto| {
        ports
            .iter()
            .filter(|(q, _)| *q == p)
            .map(|(_, n)| *n)
            .collect()
    };
    (pick(Proto::Tcp), pick(Proto::Udp))
}

fn offload_off(ends: &[(&Namespace, &str)]) -> Result<(), String> {
    for (ns, dev) in ends {
        ns.tx_offload_off(dev)?;
    }
    Ok(())
}

fn sysctl(ns: &Namespace, key: &str, value: &str) -> Result<(), String> {
    ns.exec("sysctl", &["-qw", &format!("{key}={value}")])
        .map(drop)
}

/// Source NAT to `device`'s address for traffic leaving on it (from `from` only, when given).
fn masquerade(ns: &Namespace, device: &str, from: Option<ipnet::Ipv4Net>) -> Result<(), String> {
    ns.exec("nft", &["add", "table", "ip", "lab"])?;
    ns.exec(
        "nft",
        &["add chain ip lab post { type nat hook postrouting priority srcnat ; }"],
    )?;
    let mut rule = format!("add rule ip lab post oifname \"{device}\"");
    if let Some(from) = from {
        rule += &format!(" ip saddr {from}");
    }
    rule += " masquerade";
    ns.exec("nft", &[&rule]).map(drop)
}

/// Copies the YAML files of `from` (not recursing) into `to`.
fn copy_manifests(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    let entries = std::fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
        if yaml && path.is_file() {
            let name = entry.file_name();
            std::fs::copy(&path, to.join(&name)).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    Ok(())
}

/// The admitted objects of a manifests directory; any refusal is an error naming the object.
pub fn read_intent(dir: &Path) -> Result<Intent, String> {
    let docs = manifests::read_documents(dir).map_err(|e| e.to_string())?;
    manifests::decode(&docs, &Admission::new()).map_err(|errors| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })
}

fn display(p: impl AsRef<Path>) -> String {
    p.as_ref().display().to_string()
}

/// Why this machine cannot run the lab (beyond [`crate::available`]), or `None`.
pub fn available() -> Option<String> {
    if let Some(why) = crate::available() {
        return Some(why);
    }
    for tool in [
        ["nft", "--version"],
        ["tc", "-V"],
        ["sysctl", "--version"],
        ["clang", "--version"],
    ] {
        if run(tool[0], &tool[1..]).is_err() {
            return Some(format!("needs `{}` on PATH", tool[0]));
        }
    }
    None
}
