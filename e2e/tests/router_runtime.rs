//! The router runtime end to end, with real processes in real network namespaces:
//!
//! ```text
//!  client ──cl0|lan0── store-1 ──wan0|wan0── hub-1 ──lan0|srv0── server
//!  10.1.10.5   (edge, AF_XDP)   192.0.2.11/.1   (hub, AF_XDP)    10.100.1.10
//!                  └─mgmt0──┐                       ┌──mgmt0─┘
//!                           └── br0 172.31.0.1 ─────┘  signpost-operator --manifests DIR
//! ```
//!
//! The operator runs in local mode on a manifests directory; both routers dial it over mTLS
//! with certificates from its CA, receive their compiled configs and forward on AF_XDP. The
//! router devices carry no kernel addresses: ARP, echo and forwarding are the routers' own.
//! The client reaches the payments service by its virtual address 10.255.1.10 (TCP, `encrypt`)
//! and telemetry at 10.255.1.20 (UDP, `none`); the hub delivers both to the real server.
//!
//! Every wait is bounded; namespaces and processes are removed when the test ends, also on
//! failure. Without root the tests print `SKIPPED: ...` and pass.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use signpost_e2e::router_pair::{POS_AND_TELEMETRY, ROUTERS, RouterPair, TELEMETRY_POLICY};
use signpost_e2e::{Child, Namespace, binary, in_namespace};

const PAYMENTS: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(10, 255, 1, 10)), 443);
const TELEMETRY: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(10, 255, 1, 20)), 5140);
const OPERATOR: &str = "172.31.0.1:7443";

const PAYMENTS_SERVICE: &str = r#"
apiVersion: signpost.dev/v1alpha1
kind: Service
metadata: {name: payments}
spec:
  addresses: [10.255.1.10/32]
  transports: [{protocol: tcp, ports: [{port: 443}]}]
  locations: [{router: hub-1, addresses: [10.100.1.10]}]
"#;

const PAYMENTS_POLICY: &str = r#"
apiVersion: signpost.dev/v1alpha1
kind: Policy
metadata: {name: pos-payments}
spec: {tenants: [pos], services: [payments], security: encrypt}
"#;

struct Lab {
    dir: tempfile::TempDir,
    operator: Option<Child>,
    routers: Vec<(String, Child)>,
    // Dropped last: processes first, then the namespaces (`client — edge — hub — server`).
    pair: RouterPair,
}

impl std::ops::Deref for Lab {
    type Target = RouterPair;

    fn deref(&self) -> &RouterPair {
        &self.pair
    }
}

fn skip() -> bool {
    if let Some(why) = signpost_e2e::available() {
        eprintln!("SKIPPED: {why}");
        return true;
    }
    false
}

impl Lab {
    fn up() -> Result<Lab, String> {
        let pair = RouterPair::up()?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        Ok(Lab {
            dir,
            operator: None,
            routers: Vec::new(),
            pair,
        })
    }

    fn manifests(&self) -> PathBuf {
        self.dir.path().join("manifests")
    }

    fn write_manifests(&self, with_payments_policy: bool) -> Result<(), String> {
        let dir = self.manifests();
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let write = |name: &str, text: &str| {
            std::fs::write(dir.join(name), text).map_err(|e| format!("{name}: {e}"))
        };
        write("routers.yaml", ROUTERS)?;
        write("pos-telemetry.yaml", POS_AND_TELEMETRY)?;
        write("payments.yaml", PAYMENTS_SERVICE)?;
        write("policy-telemetry.yaml", TELEMETRY_POLICY)?;
        let payments = dir.join("policy-payments.yaml");
        if with_payments_policy {
            write("policy-payments.yaml", PAYMENTS_POLICY)?;
        } else if payments.exists() {
            std::fs::remove_file(&payments).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn tls_dir(&self) -> PathBuf {
        self.dir.path().join("operator")
    }

    fn start_operator(&mut self) -> Result<(), String> {
        let mut cmd = self.mgmt.command(&path(binary("signpost-operator")?));
        cmd.args(["--manifests", &path(self.manifests()), "--listen", OPERATOR])
            .args(["--tls-dir", &path(self.tls_dir()), "--poll-ms", "100"]);
        let mut child = Child::spawn("signpost-operator", cmd)?;
        child.wait_for_line("listening on", Duration::from_secs(20))?;
        self.operator = Some(child);
        Ok(())
    }

    fn issue(&self, router: &str) -> Result<PathBuf, String> {
        let out = self.dir.path().join(format!("tls-{router}"));
        let status = Command::new(binary("signpostctl")?)
            .args([
                "certs",
                "issue",
                "--dir",
                &path(self.tls_dir()),
                "--router",
                router,
            ])
            .args(["--out", &path(&out)])
            .output()
            .map_err(|e| e.to_string())?;
        if !status.status.success() {
            return Err(format!(
                "certs issue {router}: {}",
                String::from_utf8_lossy(&status.stderr)
            ));
        }
        Ok(out)
    }

    fn start_router(&mut self, router: &str) -> Result<(), String> {
        let ns = if router == "hub-1" {
            &self.hub
        } else {
            &self.edge
        };
        let tls = self.dir.path().join(format!("tls-{router}"));
        if !tls.exists() {
            self.issue(router)?;
        }
        let state = self.dir.path().join(format!("state-{router}"));
        let mut cmd = ns.command(&path(binary("signpost-router")?));
        cmd.args([
            "--router",
            router,
            "--operator",
            &format!("https://{OPERATOR}"),
        ])
        .args(["--tls-dir", &path(&tls), "--state-dir", &path(&state)])
        .args(["--driver", "xdp"])
        .env("RUST_LOG", "info");
        let mut child = Child::spawn(router, cmd)?;
        child.wait_for_line("packet I/O started", Duration::from_secs(20))?;
        self.routers.retain(|(n, _)| n != router);
        self.routers.push((router.to_string(), child));
        Ok(())
    }

    fn router(&mut self, name: &str) -> Option<&mut Child> {
        self.routers
            .iter_mut()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c)
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

    /// Everything up: manifests, operator, both routers, an echo server.
    fn start_all() -> Result<Lab, String> {
        let mut lab = Lab::up()?;
        lab.write_manifests(true)?;
        lab.start_operator()?;
        lab.start_router("hub-1")?;
        lab.start_router("store-1")?;
        lab.start_echo_servers()?;
        Ok(lab)
    }

    /// TCP and UDP echo in the server namespace, for the lab's lifetime (the namespace's
    /// deletion ends them).
    fn start_echo_servers(&self) -> Result<(), String> {
        let ready = in_namespace(&self.server, || {
            let tcp = TcpListener::bind("0.0.0.0:443").map_err(|e| e.to_string())?;
            let udp = UdpSocket::bind("0.0.0.0:5140").map_err(|e| e.to_string())?;
            std::thread::spawn(move || {
                for stream in tcp.incoming().map_while(Result::ok) {
                    std::thread::spawn(move || {
                        let mut s = stream;
                        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                        let mut buf = [0u8; 16384];
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
        });
        ready
            .join()
            .map_err(|_| "echo server thread panicked".to_string())?
    }

    /// A TCP connection from the client to payments: sends `bytes`, expects them back.
    fn tcp_exchange(&self, bytes: usize, timeout: Duration) -> Result<(), String> {
        in_namespace(&self.client, move || {
            let mut s = TcpStream::connect_timeout(&PAYMENTS, timeout)
                .map_err(|e| format!("connect to payments: {e}"))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))
                .map_err(|e| e.to_string())?;
            let data: Vec<u8> = (0..bytes).map(|i| (i * 7 % 251) as u8).collect();
            let writer = {
                let mut w = s.try_clone().map_err(|e| e.to_string())?;
                let data = data.clone();
                std::thread::spawn(move || w.write_all(&data))
            };
            let mut back = vec![0u8; bytes];
            s.read_exact(&mut back)
                .map_err(|e| format!("reading the echo: {e}"))?;
            writer
                .join()
                .map_err(|_| "writer panicked".to_string())?
                .map_err(|e| format!("sending: {e}"))?;
            if back != data {
                return Err("the echo differs from what was sent".into());
            }
            Ok(())
        })
        .join()
        .map_err(|_| "client thread panicked".to_string())?
    }

    /// `count` UDP datagrams to telemetry, one at a time; how many echoes came back.
    fn udp_exchange(&self, count: u32) -> Result<u32, String> {
        in_namespace(&self.client, move || {
            let s = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .map_err(|e| e.to_string())?;
            let mut echoed = 0;
            let mut buf = [0u8; 2048];
            for i in 0..count {
                let msg = format!("reading {i}");
                s.send_to(msg.as_bytes(), TELEMETRY)
                    .map_err(|e| e.to_string())?;
                if let Ok((n, _)) = s.recv_from(&mut buf)
                    && &buf[..n] == msg.as_bytes()
                {
                    echoed += 1;
                }
            }
            Ok(echoed)
        })
        .join()
        .map_err(|_| "client thread panicked".to_string())?
    }
}

impl Lab {
    /// `signpostctl ARGS --router 127.0.0.1:7900` inside router namespace `ns`.
    fn ctl(&self, ns: &Namespace, args: &[&str]) -> Result<String, String> {
        let ctl = path(binary("signpostctl")?);
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["--router", "127.0.0.1:7900"]);
        let out = ns.exec(&ctl, &full)?;
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
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
            if !text.starts_with("HTTP/1.1 200") {
                return Err(format!("scrape failed: {text}"));
            }
            Ok(text)
        })
        .join()
        .map_err(|_| "scrape thread panicked".to_string())?
    }
}

fn path(p: impl AsRef<Path>) -> String {
    p.as_ref().display().to_string()
}

fn check(lab: &Lab, result: Result<(), String>) {
    if let Err(e) = result {
        panic!("{e}\n{}", lab.logs());
    }
}

/// Stops the routers gracefully (they log their counters) and panics with every log.
fn fail(lab: &mut Lab, what: String) -> ! {
    for (_, c) in &mut lab.routers {
        c.stop(Duration::from_secs(3));
    }
    panic!("{what}\n{}", lab.logs());
}

#[test]
fn routers_forward_over_af_xdp_and_a_removed_policy_denies_within_a_second() {
    if skip() {
        return;
    }
    let mut lab = Lab::start_all().unwrap_or_else(|e| panic!("{e}"));
    if let Err(e) = lab.tcp_exchange(256 * 1024, Duration::from_secs(5)) {
        fail(&mut lab, e);
    }
    for (ns, dev) in [(&lab.edge, "wan0"), (&lab.edge, "lan0"), (&lab.hub, "wan0")] {
        let link = ns.ip(&["link", "show", "dev", dev]).map(|o| o.stdout);
        let text = String::from_utf8_lossy(link.as_deref().unwrap_or_default()).to_string();
        assert!(text.contains("xdp"), "no XDP program on {dev}: {text}");
    }
    check(&lab, lab.tcp_exchange(256 * 1024, Duration::from_secs(5)));
    let echoed = lab.udp_exchange(50);
    check(&lab, echoed.as_ref().map(drop).map_err(Clone::clone));
    let echoed = echoed.unwrap_or(0);
    assert!(
        echoed >= 48,
        "only {echoed} of 50 UDP echoes came back\n{}",
        lab.logs()
    );

    // The admin API and the metrics tell what happened.
    let sessions = lab.ctl(&lab.edge, &["sessions"]);
    check(&lab, sessions.as_ref().map(drop).map_err(Clone::clone));
    let sessions = sessions.unwrap_or_default();
    assert!(
        sessions.contains("payments") && sessions.contains("telemetry") && sessions.contains("pos"),
        "{sessions}"
    );
    let explain = lab
        .ctl(
            &lab.edge,
            &[
                "explain",
                "--ingress",
                "lan",
                "--src",
                "10.1.10.5",
                "--dst",
                "10.255.1.10",
            ],
        )
        .err();
    // explain needs --proto; the error says so (exit 2 before asking the router).
    assert!(explain.is_some());
    let explain = lab.ctl(
        &lab.edge,
        &[
            "explain",
            "--ingress",
            "lan",
            "--src",
            "10.1.10.5",
            "--dst",
            "10.255.1.10",
            "--proto",
            "tcp",
            "--dport",
            "443",
        ],
    );
    let explain = explain.unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    assert!(explain.contains("pos-payments"), "{explain}");
    println!("signpostctl sessions (store-1):\n{sessions}\nsignpostctl explain:\n{explain}");
    let metrics = lab.scrape(&lab.hub).unwrap_or_else(|e| panic!("{e}"));
    for needle in [
        "signpost_sessions_by_service{service=\"payments\",tenant=\"pos\"}",
        "signpost_interface_rx_packets_total{interface=\"wan0\"}",
        "signpost_drops_total{reason=",
        "signpost_config_info{version=",
    ] {
        assert!(metrics.contains(needle), "no {needle} in\n{metrics}");
    }

    // Remove the payments policy: new payments sessions must be denied within a second.
    check(&lab, lab.write_manifests(false));
    let removed = Instant::now();
    let mut denied_after = None;
    while removed.elapsed() < Duration::from_secs(3) {
        let started = removed.elapsed();
        if lab.tcp_exchange(100, Duration::from_millis(200)).is_err() {
            denied_after = Some(started);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let denied_after = denied_after.unwrap_or_else(|| {
        panic!(
            "payments still allowed 3 s after the policy was removed\n{}",
            lab.logs()
        )
    });
    println!(
        "policy removed → new payments sessions denied after {} ms ({} cores)",
        denied_after.as_millis(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    assert!(
        denied_after <= Duration::from_secs(1),
        "denied only after {denied_after:?}"
    );
    assert!(
        lab.tcp_exchange(100, Duration::from_millis(500)).is_err(),
        "denied stays denied"
    );
    // Telemetry's policy is untouched.
    let echoed = lab.udp_exchange(10).unwrap_or(0);
    assert!(
        echoed >= 9,
        "telemetry broke: {echoed} of 10\n{}",
        lab.logs()
    );
}

#[test]
fn without_the_operator_routers_keep_forwarding_and_restart_from_last_known_good() {
    if skip() {
        return;
    }
    let mut lab = Lab::start_all().unwrap_or_else(|e| panic!("{e}"));
    check(&lab, lab.tcp_exchange(64 * 1024, Duration::from_secs(5)));
    // Both routers have acknowledged and stored their config before the operator goes.
    for r in ["store-1", "hub-1"] {
        let state = lab.dir.path().join(format!("state-{r}/last-known-good.pb"));
        let deadline = Instant::now() + Duration::from_secs(5);
        while !state.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(state.exists(), "{r} stored no last-known-good config");
    }
    if let Some(op) = lab.operator.as_mut() {
        op.kill();
    }
    check(&lab, lab.tcp_exchange(64 * 1024, Duration::from_secs(5)));

    // The store router restarts while the operator is down.
    if let Some(edge) = lab.router("store-1") {
        edge.stop(Duration::from_secs(5));
    }
    let restarted = lab.start_router("store-1");
    check(&lab, restarted);
    let line = lab
        .router("store-1")
        .map(|c| c.wait_for_line("last-known-good", Duration::from_secs(5)));
    check(&lab, line.unwrap_or(Err("no router".into())).map(drop));
    check(&lab, lab.tcp_exchange(64 * 1024, Duration::from_secs(5)));
    let echoed = lab.udp_exchange(20).unwrap_or(0);
    assert!(echoed >= 19, "{echoed} of 20 UDP echoes\n{}", lab.logs());
}
