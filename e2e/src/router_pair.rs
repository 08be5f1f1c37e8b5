//! A store edge and a hub router between a client and a server, each in its own namespace,
//! with a management bridge to the operator (in local mode, on a manifests directory) — the
//! lab of the runtime tests (`e2e/tests/router_runtime.rs`) and of `signpost-bench forward`:
//!
//! ```text
//!  client ──cl0|lan0── edge ──wan0|wan0── hub ──lan0|srv0── server
//!  10.1.10.5        10.1.10.1  192.0.2.11/.1  10.100.1.1      10.100.1.10
//!                     └─mgmt0──┐               ┌──mgmt0─┘
//!                              └── br0 172.31.0.1 ──┘  signpost-operator
//! ```
//!
//! Either the two Signpost routers forward ([`RouterPair::start_routers`]: the router devices
//! carry no kernel addresses, ARP and forwarding are the routers' own), or the Linux kernel does
//! on the same namespaces and veths ([`RouterPair::kernel_forwarding`]: the addresses above on
//! the kernel, `ip_forward=1` in edge and hub, static routes, the services' virtual addresses on
//! the server). TX checksum offload (and with it TSO) is off on every veth end that sends into a
//! router, in both cases, so both forward the same MTU-sized frames.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::netns::Namespace;
use crate::process::{Child, binary};

pub const CLIENT: &str = "10.1.10.5";
pub const SERVER: &str = "10.100.1.10";
const OPERATOR: &str = "172.31.0.1:7443";

/// The two routers' manifests for this topology: `store-1` (edge) and `hub-1` (hub), their
/// devices and addresses as wired here.
pub const ROUTERS: &str = r#"
apiVersion: signpost.dev/v1alpha1
kind: Router
metadata: {name: store-1}
spec:
  role: edge
  interfaces:
    - {name: broadband, role: wan, device: wan0, addresses: [192.0.2.11/24], neighborhood: internet, vector: broadband}
    - name: lan
      role: lan
      device: lan0
      addresses: [10.1.10.1/24]
      networks: [{name: pos, prefixes: [10.1.10.0/24]}]
---
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
"#;

/// The `pos` tenant (the edge's `pos` network) and a UDP service behind the hub, `telemetry`
/// (10.255.1.20 udp/5140 at [`SERVER`]): what every user of the pair sends through it. Tests and
/// benches add their own services and policies beside these.
pub const POS_AND_TELEMETRY: &str = r#"
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
"#;

/// `pos` may reach `telemetry`, security `none`.
pub const TELEMETRY_POLICY: &str = r#"
apiVersion: signpost.dev/v1alpha1
kind: Policy
metadata: {name: pos-telemetry}
spec: {tenants: [pos], services: [telemetry], security: none}
"#;

/// A TCP service `bulk` (10.255.1.30:5201) at the same location, and `pos` may reach it,
/// security `none`: what iperf3 measures, and a location whose health a test can turn (its
/// probes are TCP SYNs to 5201 on the server).
pub const BULK_AND_POLICY: &str = r#"
apiVersion: signpost.dev/v1alpha1
kind: Service
metadata: {name: bulk}
spec:
  addresses: [10.255.1.30/32]
  transports: [{protocol: tcp, ports: [{port: 5201}]}]
  locations: [{router: hub-1, addresses: [10.100.1.10]}]
---
apiVersion: signpost.dev/v1alpha1
kind: Policy
metadata: {name: pos-bulk}
spec: {tenants: [pos], services: [bulk], security: none}
"#;

/// The namespaces, the operator and the routers; all removed on drop (processes first).
pub struct RouterPair {
    dir: PathBuf,
    _tmp: Option<TempDir>,
    operator: Option<Child>,
    pub routers: Vec<(String, Child)>,
    pub mgmt: Namespace,
    pub client: Namespace,
    pub edge: Namespace,
    pub hub: Namespace,
    pub server: Namespace,
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn path(p: impl AsRef<Path>) -> String {
    p.as_ref().display().to_string()
}

impl RouterPair {
    /// The namespaces and veths, nothing forwarding yet.
    pub fn up() -> Result<RouterPair, String> {
        let mgmt = Namespace::create("mgmt")?;
        let client = Namespace::create("cl")?;
        let edge = Namespace::create("edge")?;
        let hub = Namespace::create("hub")?;
        let server = Namespace::create("srv")?;
        let dir = std::env::temp_dir().join(format!("signpost-{}", mgmt.name));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let pair = RouterPair {
            _tmp: Some(TempDir(dir.clone())),
            dir,
            operator: None,
            routers: Vec::new(),
            mgmt,
            client,
            edge,
            hub,
            server,
        };
        pair.wire()?;
        Ok(pair)
    }

    fn wire(&self) -> Result<(), String> {
        let (m, c, e, h, s) = (
            &self.mgmt,
            &self.client,
            &self.edge,
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
        e.veth("wan0", h, "wan0")?;
        h.veth("lan0", s, "srv0")?;
        c.address("cl0", &format!("{CLIENT}/24"))?;
        c.ip(&["route", "add", "default", "via", "10.1.10.1"])?;
        s.address("srv0", &format!("{SERVER}/24"))?;
        s.ip(&["route", "add", "default", "via", "10.100.1.1"])?;
        c.tx_offload_off("cl0")?;
        s.tx_offload_off("srv0")?;
        for r in [e, h] {
            for dev in ["lan0", "wan0"] {
                r.tx_offload_off(dev)?;
            }
        }
        Ok(())
    }

    /// A second WAN link between the routers, `wan1` on both (for manifests that name it: an
    /// LTE path beside broadband), wired like the first.
    pub fn add_second_wan(&self) -> Result<(), String> {
        self.edge.veth("wan1", &self.hub, "wan1")?;
        self.edge.tx_offload_off("wan1")?;
        self.hub.tx_offload_off("wan1")
    }

    /// The kernel forwards instead of the routers: addresses, `ip_forward=1`, routes, and the
    /// virtual addresses `vips` on the server (where the hub router would NAT them to).
    pub fn kernel_forwarding(&self, vips: &[&str]) -> Result<(), String> {
        let (e, h) = (&self.edge, &self.hub);
        e.address("lan0", "10.1.10.1/24")?;
        e.address("wan0", "192.0.2.11/24")?;
        h.address("wan0", "192.0.2.1/24")?;
        h.address("lan0", "10.100.1.1/24")?;
        for ns in [e, h] {
            ns.exec("sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
        }
        for net in ["10.100.0.0/16", "10.255.0.0/16"] {
            e.ip(&["route", "add", net, "via", "192.0.2.1"])?;
        }
        h.ip(&["route", "add", "10.1.0.0/16", "via", "192.0.2.11"])?;
        for vip in vips {
            self.server.address("lo", &format!("{vip}/32"))?;
            h.ip(&["route", "add", vip, "via", SERVER])?;
        }
        Ok(())
    }

    /// Writes `files` (name, YAML) into the operator's manifests directory.
    pub fn write_manifests(&self, files: &[(&str, &str)]) -> Result<(), String> {
        let dir = self.dir.join("manifests");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        for (name, text) in files {
            std::fs::write(dir.join(name), text).map_err(|e| format!("{name}: {e}"))?;
        }
        Ok(())
    }

    /// The operator in local mode on the manifests, then routers `edge` and `hub` (names as in
    /// the manifests) in their namespaces on AF_XDP, each with `router_args` added.
    pub fn start_routers(
        &mut self,
        edge: &str,
        hub: &str,
        router_args: &[String],
    ) -> Result<(), String> {
        let tls = self.dir.join("operator");
        let mut cmd = self.mgmt.command(&path(binary("signpost-operator")?));
        cmd.args([
            "--manifests",
            &path(self.dir.join("manifests")),
            "--listen",
            OPERATOR,
        ])
        .args(["--tls-dir", &path(&tls), "--poll-ms", "100"]);
        let mut operator = Child::spawn("signpost-operator", cmd)?;
        operator.wait_for_line("listening on", Duration::from_secs(20))?;
        self.operator = Some(operator);
        for (name, hub_side) in [(hub, true), (edge, false)] {
            let certs = self.dir.join(format!("tls-{name}"));
            let out = Command::new(binary("signpostctl")?)
                .args(["certs", "issue", "--dir", &path(&tls), "--router", name])
                .args(["--out", &path(&certs)])
                .output()
                .map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(format!(
                    "certs issue {name}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            let ns = if hub_side { &self.hub } else { &self.edge };
            let mut cmd = ns.command(&path(binary("signpost-router")?));
            cmd.args([
                "--router",
                name,
                "--operator",
                &format!("https://{OPERATOR}"),
            ])
            .args(["--tls-dir", &path(&certs)])
            .args(["--state-dir", &path(self.dir.join(format!("state-{name}")))])
            .args(["--driver", "xdp"])
            .args(router_args)
            .env("RUST_LOG", "warn,signpost_cnf::runtime=info");
            let mut child = Child::spawn(name, cmd)?;
            child.wait_for_line("packet I/O started", Duration::from_secs(20))?;
            self.routers.push((name.to_string(), child));
        }
        Ok(())
    }

    /// Every router's output so far, for errors.
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

    /// `GET /metrics` from the router in `ns` (its default metrics address).
    pub fn scrape(ns: &Namespace) -> Result<String, String> {
        crate::netns::in_namespace(ns, || {
            use std::io::{Read, Write};
            let mut s =
                std::net::TcpStream::connect("127.0.0.1:9464").map_err(|e| e.to_string())?;
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

    /// The MAC address of `device` in `ns`.
    pub fn mac(ns: &Namespace, device: &str) -> Result<[u8; 6], String> {
        let out = ns.ip(&["-br", "link", "show", "dev", device])?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let field = text
            .split_whitespace()
            .nth(2)
            .ok_or_else(|| format!("no MAC for {device}: {text}"))?;
        let mut mac = [0u8; 6];
        for (byte, part) in mac.iter_mut().zip(field.split(':')) {
            *byte = u8::from_str_radix(part, 16).map_err(|e| format!("MAC {field}: {e}"))?;
        }
        Ok(mac)
    }
}

impl Drop for RouterPair {
    fn drop(&mut self) {
        for (_, router) in &mut self.routers {
            router.stop(Duration::from_secs(2));
        }
        self.routers.clear();
        self.operator = None;
    }
}
