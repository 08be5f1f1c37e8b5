//! A `RouterConfig` compiled into the lookup structures the pipeline reads: the classifier,
//! interfaces with parsed addresses, peers with their paths and keys, and where each service can
//! be reached. Built once per config version; a config that cannot be built is refused whole
//! (the router answers Nack with the error and keeps its previous tables).

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use signpost_proto::v1::{PortRange, RouterConfig, RouterRole};

use crate::classify::lpm::Prefix;
use crate::classify::{Classifier, ServiceId};
use crate::guard::GuardConfig;
use crate::qos::QosConfig;
use crate::security::PeerKeys;
use crate::session::{TableLimits, Timeouts};

/// Why a config cannot be used. The text names the object and field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// A WAN interface, ready for the fast path.
#[derive(Debug, Clone)]
pub struct Wan {
    pub name: String,
    /// The operating system device (the config's `device`, or `name` when that is empty).
    pub device: String,
    pub vector: String,
    pub v4: Option<Ipv4Addr>,
    pub v6: Option<Ipv6Addr>,
    pub gateway: Option<IpAddr>,
    /// Inclusive waypoint port range.
    pub ports: (u16, u16),
}

impl Wan {
    pub fn address_for(&self, remote: IpAddr) -> Option<IpAddr> {
        match remote {
            IpAddr::V4(_) => self.v4.map(IpAddr::V4),
            IpAddr::V6(_) => self.v6.map(IpAddr::V6),
        }
    }

    pub fn owns(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => self.v4 == Some(a),
            IpAddr::V6(a) => self.v6 == Some(a),
        }
    }

    pub fn is_waypoint_port(&self, port: u16) -> bool {
        (self.ports.0..=self.ports.1).contains(&port)
    }
}

/// A LAN interface: its own addresses (traffic to them is for the router's host).
#[derive(Debug, Clone)]
pub struct Lan {
    pub name: String,
    /// The operating system device (the config's `device`, or `name` when that is empty).
    pub device: String,
    pub addresses: Vec<IpAddr>,
    /// Where destinations off `on_link` go (the config's `gateway`); `None`: they are not routed.
    pub gateway: Option<IpAddr>,
    /// The interface's subnets and its networks' prefixes: destinations reached directly.
    pub on_link: Vec<Prefix>,
}

impl Lan {
    /// The neighbour to hand a packet for `dst` to: `dst` itself when on-link, else the gateway.
    pub fn next_hop(&self, dst: IpAddr) -> IpAddr {
        match self.gateway {
            Some(gw) if !self.on_link.iter().any(|p| p.contains(dst)) => gw,
            _ => dst,
        }
    }
}

/// One way to reach a peer.
#[derive(Debug, Clone)]
pub struct PeerPath {
    pub id: String,
    /// Index into `Tables::wans`.
    pub wan: usize,
    pub remote: IpAddr,
    pub remote_ports: (u16, u16),
    /// The peer's interface at the far end (for names both routers agree on).
    pub remote_interface: String,
    pub vector: String,
    pub cost: u32,
}

#[derive(Debug, Clone)]
pub struct Peer {
    pub name: String,
    pub hub: bool,
    pub paths: Vec<PeerPath>,
    pub keys: PeerKeys,
}

/// A location of a service on a peer, for the ingress router's choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub peer: u16,
    pub priority: u32,
}

/// Everything the pipeline looks up, built from one config.
#[derive(Debug)]
pub struct Tables {
    pub router: String,
    pub hub: bool,
    pub classifier: Classifier,
    pub wans: Vec<Wan>,
    pub lans: Vec<Lan>,
    pub peers: Vec<Peer>,
    peer_by_name: HashMap<String, u16>,
    /// By service id: locations on peers, in config order.
    pub routes: Vec<Vec<Route>>,
    /// By service id: `Some(real addresses)` when this router fronts the service (empty: deliver
    /// to the original destination).
    pub fronted: Vec<Option<Vec<IpAddr>>>,
    /// By service id: how this router probes its location's addresses (`crate::health`);
    /// `None` when it fronts none of them or the checks are disabled.
    pub health_checks: Vec<Option<crate::health::CheckSettings>>,
    pub limits: TableLimits,
    pub timeouts: Timeouts,
    /// Classes, link capacities, per-rule class and rate limit (`crate::qos`).
    pub qos: QosConfig,
    /// Per-rule and per-tenant admission rates (`crate::guard`).
    pub guard: GuardConfig,
    /// BFD settings as configured (the path monitor applies its defaults to zero fields).
    pub path_monitoring: signpost_proto::v1::PathMonitoring,
    pub version: String,
}

fn ports(range: Option<&PortRange>, what: &str) -> Result<(u16, u16), ConfigError> {
    let range = range.copied().unwrap_or(PortRange {
        first: 16384,
        last: 65535,
    });
    match (u16::try_from(range.first), u16::try_from(range.last)) {
        (Ok(first), Ok(last)) if first >= 1 && first <= last => Ok((first, last)),
        _ => Err(ConfigError(format!(
            "{what}: waypoint port range {}-{} is not within 1-65535 with first <= last",
            range.first, range.last
        ))),
    }
}

fn device(device: &str, name: &str) -> String {
    if device.is_empty() { name } else { device }.to_string()
}

fn address(text: &str, what: &str) -> Result<IpAddr, ConfigError> {
    let bare = text.split('/').next().unwrap_or(text);
    bare.parse()
        .map_err(|_| ConfigError(format!("{what}: `{text}` is not an IP address")))
}

impl Tables {
    pub fn new(config: &RouterConfig, version: &str) -> Result<Tables, ConfigError> {
        let classifier = Classifier::new(config).map_err(|e| ConfigError(e.to_string()))?;
        let mut wans = Vec::new();
        for w in &config.wan_interfaces {
            let what = format!("WAN interface `{}`", w.name);
            let mut wan = Wan {
                name: w.name.clone(),
                device: device(&w.device, &w.name),
                vector: w.vector.clone(),
                v4: None,
                v6: None,
                gateway: None,
                ports: ports(w.waypoint_ports.as_ref(), &what)?,
            };
            for a in &w.addresses {
                match address(a, &what)? {
                    IpAddr::V4(v4) => {
                        wan.v4.get_or_insert(v4);
                    }
                    IpAddr::V6(v6) => {
                        wan.v6.get_or_insert(v6);
                    }
                }
            }
            if !w.gateway.is_empty() {
                wan.gateway = Some(address(&w.gateway, &format!("{what} gateway"))?);
            }
            wans.push(wan);
        }
        let mut lans = Vec::new();
        for l in &config.lan_interfaces {
            let what = format!("LAN interface `{}`", l.name);
            let addresses = l
                .addresses
                .iter()
                .map(|a| address(a, &what))
                .collect::<Result<_, _>>()?;
            let on_link = l
                .addresses
                .iter()
                .chain(l.networks.iter().flat_map(|n| n.prefixes.iter()))
                .filter_map(|p| Prefix::parse(p))
                .collect();
            let gateway = match l.gateway.as_str() {
                "" => None,
                g => Some(address(g, &format!("{what} gateway"))?),
            };
            lans.push(Lan {
                name: l.name.clone(),
                device: device(&l.device, &l.name),
                addresses,
                gateway,
                on_link,
            });
        }
        let mut peers = Vec::new();
        let mut peer_by_name = HashMap::new();
        for p in &config.peers {
            let keys = PeerKeys::from_config(p).map_err(|e| ConfigError(e.to_string()))?;
            let mut paths = Vec::new();
            for path in &p.paths {
                let what = format!("peer `{}` path `{}`", p.name, path.id);
                let wan = config
                    .wan_interfaces
                    .iter()
                    .position(|w| w.name == path.local_interface)
                    .ok_or_else(|| {
                        ConfigError(format!(
                            "{what}: local interface `{}` is not a WAN interface of this router",
                            path.local_interface
                        ))
                    })?;
                paths.push(PeerPath {
                    id: path.id.clone(),
                    wan,
                    remote: address(&path.remote_address, &what)?,
                    remote_ports: ports(path.remote_waypoint_ports.as_ref(), &what)?,
                    remote_interface: path.remote_interface.clone(),
                    vector: path.vector.clone(),
                    cost: path.cost,
                });
            }
            let index = u16::try_from(peers.len())
                .map_err(|_| ConfigError("more than 65535 peers".into()))?;
            peer_by_name.insert(p.name.clone(), index);
            peers.push(Peer {
                name: p.name.clone(),
                hub: p.role == RouterRole::Hub as i32,
                paths,
                keys,
            });
        }
        let mut routes = Vec::new();
        let mut fronted = Vec::new();
        let mut health_checks = Vec::new();
        for s in &config.services {
            let mut here = None;
            let mut there = Vec::new();
            for loc in &s.locations {
                if loc.router == config.router {
                    let what = format!("service `{}` location on `{}`", s.name, loc.router);
                    let addrs = loc
                        .addresses
                        .iter()
                        .map(|a| address(a, &what))
                        .collect::<Result<Vec<_>, _>>()?;
                    here = Some(addrs);
                } else if let Some(&peer) = peer_by_name.get(&loc.router) {
                    there.push(Route {
                        peer,
                        priority: loc.priority,
                    });
                }
                // A location on a router that is not a peer is unreachable from here: skipped.
            }
            routes.push(there);
            health_checks.push(
                here.as_ref()
                    .filter(|a| !a.is_empty())
                    .and_then(|_| crate::health::CheckSettings::from_config(s)),
            );
            fronted.push(here);
        }
        let l = config.limits.unwrap_or_default();
        let secs = |s: u32, default: Duration| {
            if s == 0 {
                default
            } else {
                Duration::from_secs(u64::from(s))
            }
        };
        let defaults = Timeouts::default();
        let timeouts = Timeouts {
            tcp_established: secs(l.tcp_idle_timeout_s, defaults.tcp_established),
            tcp_half_open: secs(l.tcp_half_open_timeout_s, defaults.tcp_half_open),
            udp: secs(l.udp_idle_timeout_s, defaults.udp),
            icmp: secs(l.icmp_idle_timeout_s, defaults.icmp),
            ..defaults
        };
        let max_sessions = if l.max_sessions == 0 {
            TableLimits::default().max_sessions
        } else {
            l.max_sessions
        };
        // Half-open sessions are bounded by default (an eighth of the table), and each tenant
        // to half of that, so that a SYN flood neither fills the table nor starves other tenants.
        let max_half_open = if l.max_half_open == 0 {
            (max_sessions / 8).max(1)
        } else {
            l.max_half_open
        };
        let limits = TableLimits {
            max_sessions,
            max_per_tenant: l.max_sessions_per_tenant,
            max_half_open,
            max_half_open_per_tenant: if l.max_half_open_per_tenant == 0 {
                (max_half_open / 2).max(1)
            } else {
                l.max_half_open_per_tenant
            },
        };
        let qos = QosConfig::new(config).map_err(ConfigError)?;
        let guard = GuardConfig::new(config);
        Ok(Tables {
            router: config.router.clone(),
            hub: config.role == RouterRole::Hub as i32,
            classifier,
            wans,
            lans,
            peers,
            peer_by_name,
            routes,
            fronted,
            health_checks,
            limits,
            timeouts,
            qos,
            guard,
            path_monitoring: config.path_monitoring.unwrap_or_default(),
            version: version.to_string(),
        })
    }

    pub fn peer_named(&self, name: &str) -> Option<u16> {
        self.peer_by_name.get(name).copied()
    }

    pub fn routes_of(&self, service: ServiceId) -> &[Route] {
        self.routes
            .get(usize::from(service.0))
            .map_or(&[], Vec::as_slice)
    }

    pub fn fronted_addresses(&self, service: ServiceId) -> Option<&[IpAddr]> {
        self.fronted.get(usize::from(service.0))?.as_deref()
    }

    /// How this router probes its location of `service`, if it does.
    pub fn health_check(&self, service: ServiceId) -> Option<crate::health::CheckSettings> {
        self.health_checks
            .get(usize::from(service.0))
            .copied()
            .flatten()
    }

    /// The WAN interface (index) whose address is `addr`.
    pub fn wan_owning(&self, addr: IpAddr) -> Option<usize> {
        self.wans.iter().position(|w| w.owns(addr))
    }

    pub fn lan_owns(&self, addr: IpAddr) -> bool {
        self.lans.iter().any(|l| l.addresses.contains(&addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lan_hands_off_link_destinations_to_its_gateway() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mut lan = Lan {
            name: "vpc".into(),
            device: "eth2".into(),
            addresses: vec![ip("10.100.0.1")],
            gateway: None,
            on_link: vec![Prefix::parse("10.100.0.0/16").unwrap()],
        };
        assert_eq!(lan.next_hop(ip("198.18.80.80")), ip("198.18.80.80"));
        lan.gateway = Some(ip("10.100.255.254"));
        assert_eq!(lan.next_hop(ip("198.18.80.80")), ip("10.100.255.254"));
        assert_eq!(lan.next_hop(ip("10.100.1.10")), ip("10.100.1.10"));
    }
}
