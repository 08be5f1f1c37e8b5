//! The lab's topology, planned from a chain's manifests: which namespaces, links and addresses
//! stand in for its Routers' surroundings, where each LAN network's client sits and which host
//! answers for each service location. Pure: [`Plan::new`] reads only the decoded objects, so the
//! plan is tested without root and the running lab ([`super::RetailLab`]) only carries it out.
//!
//! ```text
//!            ┌──────────── internet (transit) ─────────────┐        web 198.18.80.80
//!   store ───┤ one bridge per WAN segment, gateway address │── hub ── vpc bridge ── service hosts
//!   LAN ─────┤            198.18.0.0/30 │                  │          └─ egress (gateway, NAT)
//!   switch   └──────────────────────────┼──────────────────┘
//!   (VLANs)       carrier (NAT) ─ one link per 100.64.0.0/10 WAN
//! ```
//!
//! The rules, so that the manifests stay believable production files:
//! - A WAN interface attaches to a segment (a bridge) named by its gateway's subnet in a transit
//!   namespace; the transit owns the gateway address and routes between segments. Interfaces
//!   addressed from 100.64.0.0/10 (RFC 6598, carrier-grade NAT) sit behind the **carrier**
//!   transit, which masquerades them to its own address — the middlebox SVR must cross; every
//!   other interface sits on the **internet** transit.
//! - A LAN network gets one client host at `.5` of its prefix on the VLAN the network names,
//!   gatewayed by the router's LAN address in that prefix, or else by the one whose subnet
//!   holds the prefix (`10.1.0.1/16` for VLAN networks `10.1.10.0/24`...: an on-link route).
//! - A service location's addresses are hosts on the hub's LAN behind a bridge (one host per
//!   address, listening on the service's ports). A location without addresses delivers to the
//!   original destination (internet breakout) through the hub LAN's `gateway`: there the lab
//!   puts an egress firewall that masquerades onto the lab internet, where a web host stands
//!   for "the internet".
//! - Lab-only addresses (transit uplinks, the web host) are from 198.18.0.0/15 (RFC 2544,
//!   benchmarking), which no example uses.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use signpost_operator::crd::{InterfaceRole, Protocol, RouterRole};
use signpost_operator::manifests::Intent;

/// The carrier-grade NAT range (RFC 6598): WAN interfaces addressed from it are behind the carrier.
pub const CARRIER_RANGE: Ipv4Net = net(100, 64, 0, 0, 10);
/// The carrier's link to the internet transit: carrier .2, internet .1.
pub const CARRIER_UPLINK: Ipv4Net = net(198, 18, 0, 0, 30);
/// The lab internet's web host (what `internet`-style services reach) and its subnet.
pub const WEB: Ipv4Addr = Ipv4Addr::new(198, 18, 80, 80);
pub const WEB_NET: Ipv4Net = net(198, 18, 80, 0, 24);
/// The management network: the operator at .1, routers from .10.
pub const MGMT_NET: Ipv4Net = net(172, 31, 0, 0, 24);
pub const OPERATOR_PORT: u16 = 7443;

const fn net(a: u8, b: u8, c: u8, d: u8, len: u8) -> Ipv4Net {
    match Ipv4Net::new(Ipv4Addr::new(a, b, c, d), len) {
        Ok(n) => n,
        Err(_) => panic!("prefix length above 32"),
    }
}

/// Which transit namespace a WAN segment hangs off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Transit {
    Internet,
    Carrier,
}

/// A transport a host listens on and a client probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The routers the lab runs, stores first then hubs, each with its management address.
    pub routers: Vec<RouterPlan>,
    pub segments: Vec<Segment>,
    pub clients: Vec<ClientPlan>,
    pub hosts: Vec<HostPlan>,
    pub egresses: Vec<EgressPlan>,
    /// Ports the web host answers on (those of services that break out to the internet).
    pub web_ports: Vec<(Proto, u16)>,
    /// Where a client sends to reach each service, one entry per (service, protocol, port).
    pub targets: Vec<Target>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouterPlan {
    pub name: String,
    pub hub: bool,
    pub mgmt: Ipv4Net,
    pub wans: Vec<WanPlan>,
    pub lan: Option<LanPlan>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WanPlan {
    /// The interface's name in the manifests (`broadband`, `lte`).
    pub interface: String,
    pub device: String,
    pub vector: String,
    pub address: Ipv4Net,
    pub segment: usize,
    /// The device on the transit's side: cut this link with `ip link set PORT down` there.
    pub port: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LanPlan {
    pub interface: String,
    pub device: String,
    pub addresses: Vec<Ipv4Net>,
    /// The next hop for off-LAN destinations (a hub's egress firewall).
    pub gateway: Option<Ipv4Addr>,
    pub networks: Vec<NetworkPlan>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkPlan {
    pub name: String,
    pub prefix: Ipv4Net,
    pub vlan: Option<u16>,
}

/// A WAN subnet: a bridge in a transit namespace holding the gateway address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub transit: Transit,
    pub bridge: String,
    /// The gateway address with the subnet's prefix length.
    pub gateway: Ipv4Net,
}

/// A host on a store's LAN network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientPlan {
    pub router: String,
    pub network: String,
    /// The tenant the manifests put this network in, if any.
    pub tenant: Option<String>,
    pub vlan: Option<u16>,
    pub address: Ipv4Net,
    pub gateway: Ipv4Addr,
}

/// A host behind a hub answering for one or more service locations at one address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPlan {
    pub router: String,
    pub services: Vec<String>,
    pub address: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub ports: Vec<(Proto, u16)>,
}

/// The egress firewall on a hub's LAN (its LAN gateway), for services delivered to their
/// original destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EgressPlan {
    pub router: String,
    /// Its address on the hub's LAN: the hub LAN's gateway.
    pub lan: Ipv4Net,
    /// The hub's LAN address it sends returning traffic to.
    pub hub: Ipv4Addr,
    /// Its link to the internet transit: egress side .2, internet side .1.
    pub uplink: Ipv4Net,
    /// Store networks (routed back through the hub).
    pub stores: Vec<Ipv4Net>,
}

/// A service as a client reaches it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub service: String,
    pub proto: Proto,
    pub port: u16,
    pub address: Ipv4Addr,
}

impl Plan {
    /// Plans the lab for `intent` with its first `stores` edge routers (by name) and every hub.
    /// The error names the object to fix when the manifests cannot be laid out (an IPv6-only
    /// interface, a WAN without gateway on a foreign subnet...).
    pub fn new(intent: &Intent, stores: usize) -> Result<Plan, String> {
        let mut edges: Vec<_> = intent
            .routers
            .iter()
            .filter(|r| r.spec.role == RouterRole::Edge)
            .collect();
        edges.sort_by_key(|r| r.metadata.name.clone());
        if stores > edges.len() {
            return Err(format!(
                "{stores} stores asked for, the manifests have {}",
                edges.len()
            ));
        }
        edges.truncate(stores);
        let mut hubs: Vec<_> = intent
            .routers
            .iter()
            .filter(|r| r.spec.role == RouterRole::Hub)
            .collect();
        hubs.sort_by_key(|r| r.metadata.name.clone());

        let mut plan = Plan {
            routers: Vec::new(),
            segments: Vec::new(),
            clients: Vec::new(),
            hosts: Vec::new(),
            egresses: Vec::new(),
            web_ports: Vec::new(),
            targets: Vec::new(),
        };
        for (i, router) in edges.iter().chain(hubs.iter()).enumerate() {
            let name = router.metadata.name.clone().unwrap_or_default();
            let mgmt = Ipv4Net::new(nth(MGMT_NET, 10 + i as u32), MGMT_NET.prefix_len())
                .map_err(|e| e.to_string())?;
            let mut r = RouterPlan {
                name: name.clone(),
                hub: router.spec.role == RouterRole::Hub,
                mgmt,
                wans: Vec::new(),
                lan: None,
            };
            for iface in &router.spec.interfaces {
                let device = iface
                    .device
                    .clone()
                    .unwrap_or_else(|| iface.name.to_string());
                let addresses = v4_addresses(&iface.addresses, &name, iface.name.as_str())?;
                match iface.role {
                    InterfaceRole::Wan => {
                        let address = *addresses.first().ok_or_else(|| {
                            format!(
                                "router `{name}` interface `{}`: the lab needs an IPv4 address",
                                iface.name
                            )
                        })?;
                        let segment = plan.segment_for(address, iface.gateway.as_ref())?;
                        r.wans.push(WanPlan {
                            interface: iface.name.to_string(),
                            device,
                            vector: iface
                                .vector
                                .as_ref()
                                .map(ToString::to_string)
                                .unwrap_or_default(),
                            address,
                            segment,
                            port: format!("r{i}w{}", r.wans.len()),
                        });
                    }
                    InterfaceRole::Lan => {
                        let mut networks = Vec::new();
                        for n in &iface.networks {
                            for p in &n.prefixes {
                                if let Ok(prefix) = p.as_str().parse::<Ipv4Net>() {
                                    networks.push(NetworkPlan {
                                        name: n.name.to_string(),
                                        prefix,
                                        vlan: n.vlan,
                                    });
                                }
                            }
                        }
                        if r.lan.is_some() {
                            return Err(format!(
                                "router `{name}`: the lab wires one LAN interface per router"
                            ));
                        }
                        r.lan = Some(LanPlan {
                            interface: iface.name.to_string(),
                            device,
                            addresses,
                            gateway: iface.gateway.as_ref().and_then(|g| g.as_str().parse().ok()),
                            networks,
                        });
                    }
                }
            }
            plan.routers.push(r);
        }
        plan.place_clients(intent)?;
        plan.place_services(intent)?;
        Ok(plan)
    }

    /// The segment for a WAN address, created on first use.
    fn segment_for(
        &mut self,
        address: Ipv4Net,
        gateway: Option<&signpost_operator::crd::IpAddress>,
    ) -> Result<usize, String> {
        let gateway: Ipv4Addr = match gateway {
            Some(g) => g
                .as_str()
                .parse()
                .map_err(|_| format!("gateway `{g}` is not an IPv4 address"))?,
            None => nth(address.trunc(), 1),
        };
        let subnet = Ipv4Net::new(gateway, address.prefix_len()).map_err(|e| e.to_string())?;
        if !subnet.contains(&address.addr()) {
            return Err(format!(
                "WAN address {address} and its gateway {gateway} are not on one subnet"
            ));
        }
        if let Some(i) = self.segments.iter().position(|s| s.gateway == subnet) {
            return Ok(i);
        }
        let transit = if CARRIER_RANGE.contains(&address.addr()) {
            Transit::Carrier
        } else {
            Transit::Internet
        };
        self.segments.push(Segment {
            transit,
            bridge: format!("seg{}", self.segments.len()),
            gateway: subnet,
        });
        Ok(self.segments.len() - 1)
    }

    fn place_clients(&mut self, intent: &Intent) -> Result<(), String> {
        for r in self.routers.iter().filter(|r| !r.hub) {
            let Some(lan) = &r.lan else { continue };
            for n in &lan.networks {
                // The router's address in the network, else the one whose subnet holds it
                // (one /16 for the store, a /24 per VLAN): then the route is on-link.
                let gateway = lan
                    .addresses
                    .iter()
                    .find(|a| n.prefix.contains(&a.addr()))
                    .or_else(|| lan.addresses.iter().find(|a| a.contains(&n.prefix)))
                    .map(|a| a.addr())
                    .ok_or_else(|| {
                        format!(
                            "router `{}` network `{}` ({}): no LAN address of the router is in \
                             or around it, so its hosts have no gateway",
                            r.name, n.name, n.prefix
                        )
                    })?;
                let address = host_address(n.prefix, 5, &[gateway])?;
                let tenant = intent
                    .tenants
                    .iter()
                    .filter(|t| {
                        t.spec.networks.iter().any(|m| m.as_str() == n.name)
                            || t.spec.prefixes.iter().any(|p| {
                                p.as_str()
                                    .parse::<Ipv4Net>()
                                    .is_ok_and(|p| p.contains(&address.addr()))
                            })
                    })
                    .filter_map(|t| t.metadata.name.clone())
                    .next();
                self.clients.push(ClientPlan {
                    router: r.name.clone(),
                    network: n.name.clone(),
                    tenant,
                    vlan: n.vlan,
                    address,
                    gateway,
                });
            }
        }
        Ok(())
    }

    fn place_services(&mut self, intent: &Intent) -> Result<(), String> {
        let hubs: BTreeMap<String, &RouterPlan> = self
            .routers
            .iter()
            .filter(|r| r.hub || r.lan.is_some())
            .map(|r| (r.name.clone(), r))
            .collect();
        let mut hosts: BTreeMap<(String, Ipv4Addr), HostPlan> = BTreeMap::new();
        let mut web_ports = Vec::new();
        let mut services: Vec<_> = intent.services.iter().collect();
        services.sort_by_key(|s| s.metadata.name.clone());
        for service in services {
            let name = service.metadata.name.clone().unwrap_or_default();
            let ports = ports_of(service);
            let mut breaks_out = false;
            for location in &service.spec.locations {
                let Some(hub) = hubs.get(location.router.as_str()) else {
                    continue; // a router the lab does not run (an unselected store)
                };
                let Some(lan) = &hub.lan else { continue };
                if location.addresses.is_empty() {
                    breaks_out = true;
                    continue;
                }
                for a in &location.addresses {
                    let Ok(addr) = a.as_str().parse::<Ipv4Addr>() else {
                        continue;
                    };
                    let (address, gateway) = lan
                        .addresses
                        .iter()
                        .find(|l| l.contains(&addr))
                        .map(|l| (Ipv4Net::new(addr, l.prefix_len()), l.addr()))
                        .ok_or_else(|| {
                            format!(
                                "service `{name}` location {addr} at `{}`: not on any of its LAN \
                                 subnets",
                                hub.name
                            )
                        })?;
                    let address = address.map_err(|e| e.to_string())?;
                    let host = hosts
                        .entry((hub.name.clone(), addr))
                        .or_insert_with(|| HostPlan {
                            router: hub.name.clone(),
                            services: Vec::new(),
                            address,
                            gateway,
                            ports: Vec::new(),
                        });
                    host.services.push(name.clone());
                    host.ports.extend(ports.iter().copied());
                }
            }
            if breaks_out {
                web_ports.extend(ports.iter().copied());
            }
            let address = if breaks_out {
                let covers = service.spec.addresses.iter().any(|p| {
                    p.as_str()
                        .parse::<Ipv4Net>()
                        .is_ok_and(|p| p.contains(&WEB))
                });
                covers.then_some(WEB)
            } else {
                service
                    .spec
                    .addresses
                    .iter()
                    .find_map(|p| p.as_str().parse::<Ipv4Net>().ok())
                    .map(|p| {
                        if p.prefix_len() == 32 {
                            p.addr()
                        } else {
                            nth(p.trunc(), 10)
                        }
                    })
            };
            if let Some(address) = address {
                for &(proto, port) in &ports {
                    self.targets.push(Target {
                        service: name.clone(),
                        proto,
                        port,
                        address,
                    });
                }
            }
        }
        for host in hosts.values_mut() {
            host.ports.sort();
            host.ports.dedup();
        }
        self.hosts = hosts.into_values().collect();
        web_ports.sort();
        web_ports.dedup();
        self.web_ports = web_ports;
        let stores: Vec<Ipv4Net> = self
            .clients
            .iter()
            .map(|c| c.address.trunc())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let gatewayed = hubs.values().filter_map(|h| {
            let lan = h.lan.as_ref()?;
            let gateway = lan.gateway?;
            let subnet = lan.addresses.iter().find(|a| a.contains(&gateway))?;
            Some((h.name.clone(), gateway, *subnet))
        });
        for (i, (hub, gateway, hub_addr)) in gatewayed.enumerate() {
            let lan_addr =
                Ipv4Net::new(gateway, hub_addr.prefix_len()).map_err(|e| e.to_string())?;
            let uplink = Ipv4Net::new(Ipv4Addr::new(198, 18, 1 + i as u8, 0), 30)
                .map_err(|e| e.to_string())?;
            self.egresses.push(EgressPlan {
                router: hub,
                lan: lan_addr,
                hub: hub_addr.addr(),
                uplink,
                stores: stores.clone(),
            });
        }
        Ok(())
    }

    pub fn router(&self, name: &str) -> Option<&RouterPlan> {
        self.routers.iter().find(|r| r.name == name)
    }

    pub fn stores(&self) -> impl Iterator<Item = &RouterPlan> {
        self.routers.iter().filter(|r| !r.hub)
    }

    pub fn hubs(&self) -> impl Iterator<Item = &RouterPlan> {
        self.routers.iter().filter(|r| r.hub)
    }

    /// The client of tenant `tenant` at store `router`.
    pub fn client(&self, router: &str, tenant: &str) -> Option<&ClientPlan> {
        self.clients
            .iter()
            .find(|c| c.router == router && c.tenant.as_deref() == Some(tenant))
    }

    /// The targets of service `service`.
    pub fn targets_of<'a>(&'a self, service: &'a str) -> impl Iterator<Item = &'a Target> + 'a {
        self.targets.iter().filter(move |t| t.service == service)
    }

    /// The address of the operator on the management network.
    pub fn operator(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from((nth(MGMT_NET, 1), OPERATOR_PORT))
    }
}

/// The `n`th address of `net` (`net.network() + n`).
pub fn nth(net: Ipv4Net, n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()).wrapping_add(n))
}

/// A host address in `prefix`, preferably `.offset`, avoiding `taken`.
fn host_address(prefix: Ipv4Net, offset: u32, taken: &[Ipv4Addr]) -> Result<Ipv4Net, String> {
    let preferred = nth(prefix.trunc(), offset);
    let candidate = std::iter::once(preferred)
        .chain(prefix.hosts())
        .find(|a| prefix.contains(a) && *a != prefix.broadcast() && !taken.contains(a))
        .ok_or_else(|| format!("{prefix} has no room for a lab host"))?;
    Ipv4Net::new(candidate, prefix.prefix_len()).map_err(|e| e.to_string())
}

fn v4_addresses(
    addresses: &[signpost_operator::crd::InterfaceAddress],
    router: &str,
    iface: &str,
) -> Result<Vec<Ipv4Net>, String> {
    let mut out = Vec::new();
    for a in addresses {
        match a.as_str().parse::<ipnet::IpNet>() {
            Ok(ipnet::IpNet::V4(n)) => out.push(n),
            Ok(ipnet::IpNet::V6(_)) => {} // the lab is IPv4 (no IPv6 neighbour discovery yet)
            Err(_) => {
                return Err(format!(
                    "router `{router}` interface `{iface}`: address `{a}` is not a CIDR"
                ));
            }
        }
    }
    Ok(out)
}

/// The ports a service listens on: every port of small ranges, the ends of large ones.
fn ports_of(service: &signpost_operator::crd::Service) -> Vec<(Proto, u16)> {
    let mut out = Vec::new();
    for t in &service.spec.transports {
        let proto = match t.protocol {
            Protocol::Tcp => Proto::Tcp,
            Protocol::Udp => Proto::Udp,
            Protocol::Icmp | Protocol::Icmpv6 => continue,
        };
        for r in &t.ports {
            let last = r.end_port.unwrap_or(r.port).max(r.port);
            if last - r.port < 16 {
                out.extend((r.port..=last).map(|p| (proto, p)));
            } else {
                out.extend([(proto, r.port), (proto, last)]);
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use signpost_operator::admission::Admission;
    use signpost_operator::manifests;

    fn retail() -> Intent {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/retail");
        let docs = manifests::read_documents(&dir).expect("readable");
        manifests::decode(&docs, &Admission::new()).expect("admitted")
    }

    #[test]
    fn retail_plans_stores_behind_internet_and_carrier_and_hosts_behind_hubs() {
        let plan = Plan::new(&retail(), 3).expect("plan");
        let names: Vec<_> = plan.routers.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "store-0142",
                "store-0217",
                "store-0388",
                "hub-aws",
                "hub-azure"
            ]
        );
        // Broadband of all stores shares 192.0.2.0/24; each LTE is its own carrier subnet.
        let store = plan.router("store-0142").expect("store");
        let bb = &store.wans[0];
        let lte = &store.wans[1];
        assert_eq!(
            plan.segments[bb.segment].gateway,
            "192.0.2.1/24".parse().unwrap()
        );
        assert_eq!(plan.segments[bb.segment].transit, Transit::Internet);
        assert_eq!(plan.segments[lte.segment].transit, Transit::Carrier);
        assert_eq!(
            plan.router("store-0217").unwrap().wans[0].segment,
            bb.segment
        );
        assert_ne!(
            plan.router("store-0217").unwrap().wans[1].segment,
            lte.segment
        );
        // One client per network, on its VLAN, gatewayed by the router's address in it.
        let pos = plan.client("store-0142", "pos").expect("pos client");
        assert_eq!(pos.address, "10.1.10.5/24".parse().unwrap());
        assert_eq!(pos.gateway, Ipv4Addr::new(10, 1, 0, 1));
        assert_eq!(pos.vlan, Some(10));
        assert_eq!(plan.clients.len(), 12);
        // Payments lives in both clouds; internet breaks out at both hubs.
        let payments: Vec<_> = plan
            .hosts
            .iter()
            .filter(|h| h.services.contains(&"payments".to_string()))
            .map(|h| (h.router.as_str(), h.address.to_string()))
            .collect();
        assert_eq!(
            payments,
            [
                ("hub-aws", "10.100.1.10/16".into()),
                ("hub-azure", "10.110.1.10/16".into())
            ]
        );
        assert_eq!(plan.egresses.len(), 2);
        let internet: Vec<_> = plan.targets_of("internet").collect();
        assert!(internet.iter().all(|t| t.address == WEB), "{internet:?}");
        assert!(plan.web_ports.contains(&(Proto::Tcp, 80)));
        let video: Vec<_> = plan.targets_of("video-archive").map(|t| t.port).collect();
        assert_eq!(video, [443, 554]);
        assert!(
            plan.targets_of("ads-cdn")
                .any(|t| t.proto == Proto::Udp && t.address == Ipv4Addr::new(10, 255, 4, 10))
        );
    }

    #[test]
    fn one_store_keeps_both_hubs() {
        let plan = Plan::new(&retail(), 1).expect("plan");
        assert_eq!(plan.stores().count(), 1);
        assert_eq!(plan.hubs().count(), 2);
        assert_eq!(plan.clients.len(), 4);
        assert!(Plan::new(&retail(), 4).is_err());
    }
}
