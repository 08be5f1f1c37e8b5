//! A three-namespace lab, `a <-> r <-> b`, for driver tests and benchmarks: host `a`
//! (10.71.1.2/24, default via 10.71.1.1), router `r` (10.71.1.1 on `r-a`, 10.71.2.1 on `r-b`,
//! permanent neighbour entries for both hosts, IP forwarding off), host `b` (10.71.2.2/24,
//! default via 10.71.2.1). Namespace names are unique per lab; dropping the lab deletes them,
//! which also deletes the veths, also when a test panics.
//!
//! TX checksum offload is turned off on the hosts' veths (the senders into the router): a
//! frame whose checksum was left to offload reaches AF_XDP unfinished, and AF_XDP has no way to
//! tell (see `signpost_cnf::io`). Turning it off also turns TSO off, so frames stay within the
//! MTU.

#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

pub const A_ADDR: Ipv4Addr = Ipv4Addr::new(10, 71, 1, 2);
pub const R_A_ADDR: Ipv4Addr = Ipv4Addr::new(10, 71, 1, 1);
pub const R_B_ADDR: Ipv4Addr = Ipv4Addr::new(10, 71, 2, 1);
pub const B_ADDR: Ipv4Addr = Ipv4Addr::new(10, 71, 2, 2);
pub const A_MAC: &str = "02:00:00:71:01:02";
pub const R_A_MAC: &str = "02:00:00:71:01:01";
pub const R_B_MAC: &str = "02:00:00:71:02:01";
pub const B_MAC: &str = "02:00:00:71:02:02";
/// The router's interfaces, in port order.
pub const ROUTER_PORTS: [&str; 2] = ["r-a", "r-b"];

pub struct Lab {
    pub a: String,
    pub r: String,
    pub b: String,
}

/// True when this process may create network namespaces (root with the `ip` tool).
pub fn netns_available() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    root && Command::new("ip")
        .args(["netns", "list"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(program: &str, args: &[&str]) -> Result<Output, String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(output)
}

impl Lab {
    /// Creates the namespaces and links; `tag` goes into the names to tell labs apart.
    pub fn create(tag: &str) -> Result<Lab, String> {
        Self::create_with_queues(tag, 1)
    }

    /// Like [`Lab::create`], with `queues` RX and TX queues on every veth.
    pub fn create_with_queues(tag: &str, queues: u32) -> Result<Lab, String> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let id = format!(
            "{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let lab = Lab {
            a: format!("spa-{id}"),
            r: format!("spr-{id}"),
            b: format!("spb-{id}"),
        };
        for ns in [&lab.a, &lab.r, &lab.b] {
            run("ip", &["netns", "add", ns])?;
        }
        // From here on, dropping `lab` cleans up whatever was created.
        let (a, r, b) = (lab.a.as_str(), lab.r.as_str(), lab.b.as_str());
        let a_addr = format!("{A_ADDR}/24");
        let b_addr = format!("{B_ADDR}/24");
        let ra_addr = format!("{R_A_ADDR}/24");
        let rb_addr = format!("{R_B_ADDR}/24");
        let (ra_gw, rb_gw) = (R_A_ADDR.to_string(), R_B_ADDR.to_string());
        let (a_ip, b_ip) = (A_ADDR.to_string(), B_ADDR.to_string());
        let q = queues.max(1).to_string();
        let steps: Vec<Vec<&str>> = vec![
            vec![
                "-n",
                r,
                "link",
                "add",
                "r-a",
                "address",
                R_A_MAC,
                "numtxqueues",
                &q,
                "numrxqueues",
                &q,
                "type",
                "veth",
                "peer",
                "name",
                "a0",
                "address",
                A_MAC,
                "numtxqueues",
                &q,
                "numrxqueues",
                &q,
                "netns",
                a,
            ],
            vec![
                "-n",
                r,
                "link",
                "add",
                "r-b",
                "address",
                R_B_MAC,
                "numtxqueues",
                &q,
                "numrxqueues",
                &q,
                "type",
                "veth",
                "peer",
                "name",
                "b0",
                "address",
                B_MAC,
                "numtxqueues",
                &q,
                "numrxqueues",
                &q,
                "netns",
                b,
            ],
            vec!["-n", a, "addr", "add", &a_addr, "dev", "a0"],
            vec!["-n", b, "addr", "add", &b_addr, "dev", "b0"],
            vec!["-n", r, "addr", "add", &ra_addr, "dev", "r-a"],
            vec!["-n", r, "addr", "add", &rb_addr, "dev", "r-b"],
            vec!["-n", a, "link", "set", "lo", "up"],
            vec!["-n", b, "link", "set", "lo", "up"],
            vec!["-n", r, "link", "set", "lo", "up"],
            vec!["-n", a, "link", "set", "a0", "up"],
            vec!["-n", b, "link", "set", "b0", "up"],
            vec!["-n", r, "link", "set", "r-a", "up"],
            vec!["-n", r, "link", "set", "r-b", "up"],
            vec!["-n", a, "route", "add", "default", "via", &ra_gw],
            vec!["-n", b, "route", "add", "default", "via", &rb_gw],
            vec![
                "-n",
                r,
                "neigh",
                "replace",
                &a_ip,
                "lladdr",
                A_MAC,
                "dev",
                "r-a",
                "nud",
                "permanent",
            ],
            vec![
                "-n",
                r,
                "neigh",
                "replace",
                &b_ip,
                "lladdr",
                B_MAC,
                "dev",
                "r-b",
                "nud",
                "permanent",
            ],
        ];
        for step in steps {
            run("ip", &step)?;
        }
        lab.set_checksum_offload(false)?;
        lab.set_kernel_forwarding(false)?;
        Ok(lab)
    }

    /// Runs `program args` inside namespace `ns` and returns its output if it succeeded.
    pub fn exec(&self, ns: &str, program: &str, args: &[&str]) -> Result<Output, String> {
        let mut full = vec!["netns", "exec", ns, program];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// TX checksum offload (and with it TSO) on the hosts' veths.
    pub fn set_checksum_offload(&self, on: bool) -> Result<(), String> {
        let state = if on { "on" } else { "off" };
        self.exec(&self.a, "ethtool", &["-K", "a0", "tx", state])?;
        self.exec(&self.b, "ethtool", &["-K", "b0", "tx", state])?;
        Ok(())
    }

    /// The router namespace's own IPv4 forwarding (the kernel baseline).
    pub fn set_kernel_forwarding(&self, on: bool) -> Result<(), String> {
        let value = format!("net.ipv4.ip_forward={}", u8::from(on));
        self.exec(&self.r, "sysctl", &["-qw", &value])?;
        Ok(())
    }

    /// One counter of `/sys/class/net/IF/statistics` inside namespace `ns`.
    pub fn link_counter(&self, ns: &str, interface: &str, counter: &str) -> Result<u64, String> {
        let path = format!("/sys/class/net/{interface}/statistics/{counter}");
        let out = self.exec(ns, "cat", &[&path])?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|e| format!("{path} in {ns}: {e}"))
    }

    /// The `Ip: InReceives` counter of namespace `ns`: datagrams that reached its IP layer.
    pub fn ip_in_receives(&self, ns: &str) -> Result<u64, String> {
        let out = self.exec(ns, "cat", &["/proc/net/snmp"])?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines().filter(|l| l.starts_with("Ip:"));
        let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
            return Err(format!("no Ip lines in /proc/net/snmp of {ns}"));
        };
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(name, _)| *name == "InReceives")
            .and_then(|(_, value)| value.parse().ok())
            .ok_or_else(|| format!("no InReceives in /proc/net/snmp of {ns}"))
    }

    /// Whether an XDP program is attached to `interface` in namespace `ns`.
    pub fn has_xdp_program(&self, ns: &str, interface: &str) -> Result<bool, String> {
        let out = run("ip", &["-n", ns, "link", "show", "dev", interface])?;
        Ok(String::from_utf8_lossy(&out.stdout).contains("prog/xdp"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.a, &self.r, &self.b] {
            // Processes the lab started in the namespace (a generator, a server) would keep
            // it alive; they are ended by id first.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<libc::pid_t>() {
                        // SAFETY: kill(2) on a process id of our own namespace.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

// Entering a namespace from a thread is the e2e harness's; the driver tests share it.
pub use signpost_e2e::{enter, in_namespace};
