//! One router's share of the world, and its config built from that share alone.
//!
//! [`select`] decides what a router needs to know; [`Selection::fingerprint`] hashes exactly
//! those objects; [`Selection::build`] reads nothing else. So a router whose fingerprint did not
//! change would get a byte-identical config, and the incremental compiler can skip it.

use std::collections::BTreeSet;

use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use signpost_proto::v1 as pb;

use super::Options;
use super::diagnostics::Diagnostic;
use super::units::{parse_bits_per_second, parse_loss_ppm};
use super::world::{World, enclosing, lan_networks};
use crate::crd::{
    Direction, Interface, InterfaceRole, LoadBalancing, PortRange, Priority, Protocol, Router,
    RouterRole, SecurityMode, TrafficClass,
};

/// Waypoint ports when a WAN interface does not say.
pub const DEFAULT_WAYPOINT_PORTS: (u32, u32) = (16384, 65535);

/// What one router's config is made of.
#[derive(Debug)]
pub struct Selection<'w, 'a> {
    world: &'w World<'a>,
    name: &'a str,
    router: &'a Router,
    peers: Vec<&'a str>,
    tenants: BTreeSet<&'a str>,
    services: BTreeSet<&'a str>,
    access: BTreeSet<(&'a str, &'a str)>,
}

/// Chooses what router `name` needs. `None` when the router cannot be configured (its own
/// diagnostics were reported while resolving).
pub fn select<'w, 'a>(
    world: &'w World<'a>,
    name: &str,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Selection<'w, 'a>> {
    let (&name, &router) = world.routers.get_key_value(name)?;
    let peers: Vec<&'a str> = world
        .peers
        .get(name)
        .map(|p| p.iter().copied().collect())
        .unwrap_or_default();
    let reachable = |service: &str| {
        world.services.get(service).is_some_and(|s| {
            s.locations.iter().any(|&i| {
                let at = s.service.spec.locations[i].router.as_str();
                at == name || peers.contains(&at)
            })
        })
    };

    // Tenants whose hosts can appear on this router's LAN.
    let mut local = BTreeSet::new();
    // Named networks' prefixes and the subnets of the LAN interfaces' own addresses: a host on
    // the LAN outside any named network can still belong to a tenant by prefix.
    let lan_prefixes: Vec<ipnet::IpNet> = lan_networks(router)
        .flat_map(|n| n.prefixes.iter().map(|p| p.as_str()))
        .chain(
            router
                .spec
                .interfaces
                .iter()
                .filter(|i| i.role == InterfaceRole::Lan)
                .flat_map(|i| i.addresses.iter().map(|a| a.as_str())),
        )
        .filter_map(|p| p.parse::<ipnet::IpNet>().ok().map(|n| n.trunc()))
        .collect();
    for network in lan_networks(router) {
        if let Some(tenants) = world.tenants_by_network.get(network.name.as_str()) {
            local.extend(tenants.iter().copied());
        }
    }
    for (tenant_name, tenant) in &world.tenants {
        let overlaps = tenant
            .spec
            .prefixes
            .iter()
            .filter_map(|p| p.as_str().parse::<ipnet::IpNet>().ok())
            .any(|t| lan_prefixes.iter().any(|l| l.contains(&t) || t.contains(l)));
        if overlaps {
            local.insert(*tenant_name);
        }
    }

    let mut access = BTreeSet::new();
    let fronted = world.services_by_router.get(name);
    for service in fronted.into_iter().flatten() {
        for tenant in world.tenants_by_service.get(service).into_iter().flatten() {
            access.insert((*tenant, *service));
        }
    }
    for tenant in &local {
        for service in world.services_by_tenant.get(tenant).into_iter().flatten() {
            if access.contains(&(*tenant, *service)) {
                continue;
            }
            if reachable(service) {
                access.insert((*tenant, *service));
            } else if let Some(grant) = world.grants.get(&(*tenant, *service)) {
                diagnostics.push(Diagnostic::warning(
                    "Router",
                    name,
                    "ServiceUnreachable",
                    format!(
                        "policy `{}` lets tenant `{tenant}` reach service `{service}`, but no \
                         location of it is on router `{name}` or one of its peers",
                        grant.policy_name
                    ),
                ));
            }
        }
    }

    let mut tenants: BTreeSet<&'a str> = local;
    tenants.extend(access.iter().map(|(t, _)| *t));
    let enclosing_tenants: Vec<&'a str> = tenants
        .iter()
        .flat_map(|t| enclosing(t))
        .filter_map(|e| world.tenants.get_key_value(e).map(|(k, _)| *k))
        .collect();
    tenants.extend(enclosing_tenants);
    let mut services: BTreeSet<&'a str> = access.iter().map(|(_, s)| *s).collect();
    services.extend(fronted.into_iter().flatten().copied());
    Some(Selection {
        world,
        name,
        router,
        peers,
        tenants,
        services,
        access,
    })
}

impl Selection<'_, '_> {
    /// SHA-256 over everything [`build`](Self::build) reads.
    pub fn fingerprint(&self, options: &Options) -> [u8; 32] {
        let mut h = Sha256::new();
        // Each item is written as tag, name, NUL, spec hash: unambiguous without allocating.
        fn put(h: &mut Sha256, tag: u8, name: &str, hash: Option<&[u8; 32]>) {
            h.update([tag]);
            h.update(name.as_bytes());
            h.update([0]);
            h.update(hash.map(|x| &x[..]).unwrap_or(&[0; 32]));
        }
        let w = self.world;
        put(
            &mut h,
            b'R',
            self.name,
            w.hashes.get(&("Router", self.name)),
        );
        for p in &self.peers {
            put(&mut h, b'P', p, w.hashes.get(&("Router", *p)));
        }
        for t in &self.tenants {
            put(&mut h, b'T', t, w.hashes.get(&("Tenant", *t)));
        }
        for s in &self.services {
            put(&mut h, b'S', s, w.hashes.get(&("Service", *s)));
            if let Some(resolved) = w.services.get(s) {
                // Count first, so that the index list cannot run into the next item.
                h.update((resolved.locations.len() as u64).to_be_bytes());
                for i in &resolved.locations {
                    h.update((*i as u64).to_be_bytes());
                }
            }
        }
        for (t, s) in &self.access {
            if let Some(g) = w.grants.get(&(*t, *s)) {
                put(&mut h, b'A', t, None);
                put(&mut h, b'a', s, w.hashes.get(&("Policy", g.policy_name)));
                h.update(g.policy_name.as_bytes());
            }
        }
        h.update(options.key_master);
        h.update(options.key_epoch.to_be_bytes());
        h.finalize().into()
    }

    /// The router's config.
    pub fn build(&self, options: &Options) -> pb::RouterConfig {
        let spec = &self.router.spec;
        let w = self.world;
        let mut wan_id = 0;
        let mut wan_interfaces = Vec::new();
        let mut lan_interfaces = Vec::new();
        for i in &spec.interfaces {
            match i.role {
                InterfaceRole::Wan => {
                    wan_id += 1;
                    wan_interfaces.push(wan_interface(i, wan_id));
                }
                InterfaceRole::Lan => lan_interfaces.push(lan_interface(i)),
            }
        }
        let tenants = self
            .tenants
            .iter()
            .filter_map(|name| w.tenants.get(name).map(|t| (name, t)))
            .map(|(name, t)| pb::Tenant {
                name: name.to_string(),
                networks: t.spec.networks.iter().map(|n| n.to_string()).collect(),
                prefixes: t
                    .spec
                    .prefixes
                    .iter()
                    .map(|p| canonical_prefix(p.as_str()))
                    .collect(),
                parent: enclosing(name)
                    .find(|e| w.tenants.contains_key(e))
                    .unwrap_or_default()
                    .to_string(),
            })
            .collect();
        let services = self
            .services
            .iter()
            .filter_map(|name| self.service(name))
            .collect();
        let access = self
            .access
            .iter()
            .filter_map(|(t, s)| self.access_rule(t, s))
            .collect();
        let peers = self
            .peers
            .iter()
            .filter_map(|p| self.peer(p, options))
            .collect();
        pb::RouterConfig {
            router: self.name.to_string(),
            role: role(spec.role) as i32,
            site_labels: spec
                .site
                .iter()
                .map(|(k, v)| pb::Label {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            wan_interfaces,
            lan_interfaces,
            tenants,
            services,
            access,
            peers,
            qos_classes: qos_classes(),
            limits: Some(pb::Limits::default()),
            key_epoch: options.key_epoch,
        }
    }

    fn service(&self, name: &str) -> Option<pb::Service> {
        let resolved = self.world.services.get(name)?;
        let spec = &resolved.service.spec;
        let mut locations: Vec<pb::ServiceLocation> = resolved
            .locations
            .iter()
            .filter_map(|&i| spec.locations.get(i))
            .map(|l| pb::ServiceLocation {
                router: l.router.to_string(),
                addresses: l.addresses.iter().map(|a| a.to_string()).collect(),
                priority: u32::from(l.priority),
            })
            .collect();
        locations.sort_by(|a, b| (a.priority, &a.router).cmp(&(b.priority, &b.router)));
        Some(pb::Service {
            name: name.to_string(),
            prefixes: spec
                .addresses
                .iter()
                .map(|p| canonical_prefix(p.as_str()))
                .collect(),
            hostname: spec.hostname.clone().unwrap_or_default(),
            transports: spec
                .transports
                .iter()
                .map(|t| pb::Transport {
                    protocol: protocol(t.protocol) as i32,
                    ports: t.ports.iter().map(port_range).collect(),
                })
                .collect(),
            locations,
            traffic_class: traffic_class(spec.traffic_class) as i32,
            load_balancing: load_balancing(spec.load_balancing) as i32,
        })
    }

    fn access_rule(&self, tenant: &str, service: &str) -> Option<pb::AccessRule> {
        let grant = self.world.grants.get(&(tenant, service))?;
        let spec = &grant.policy.spec;
        Some(pb::AccessRule {
            tenant: tenant.to_string(),
            service: service.to_string(),
            policy: grant.policy_name.to_string(),
            sla: spec.sla.as_ref().map(|sla| pb::Sla {
                max_latency_ms: sla.max_latency_ms.unwrap_or(0),
                max_loss_ppm: sla
                    .max_loss
                    .as_deref()
                    .and_then(parse_loss_ppm)
                    .unwrap_or(0),
                max_jitter_ms: sla.max_jitter_ms.unwrap_or(0),
            }),
            path_preference: spec.path_preference.iter().map(|v| v.to_string()).collect(),
            priority: priority(spec.priority) as i32,
            rate_limit: spec.rate_limit.as_ref().map(|r| {
                let bits_per_second = r
                    .bandwidth
                    .as_deref()
                    .and_then(parse_bits_per_second)
                    .unwrap_or(0);
                pb::RateLimit {
                    bits_per_second,
                    // 100 ms worth of traffic, at least one full-size packet.
                    burst_bytes: (bits_per_second / 80).max(if bits_per_second > 0 {
                        1500
                    } else {
                        0
                    }),
                    new_sessions_per_second: r.new_sessions_per_second.unwrap_or(0),
                }
            }),
            security: security(spec.security) as i32,
            direction: direction(spec.direction) as i32,
        })
    }

    fn peer(&self, peer: &str, options: &Options) -> Option<pb::Peer> {
        let remote = self.world.routers.get(peer)?;
        let mut paths = Vec::new();
        for local_if in self
            .router
            .spec
            .interfaces
            .iter()
            .filter(|i| i.role == InterfaceRole::Wan)
        {
            for remote_if in remote
                .spec
                .interfaces
                .iter()
                .filter(|i| i.role == InterfaceRole::Wan)
            {
                let (Some(ln), Some(rn)) = (&local_if.neighborhood, &remote_if.neighborhood) else {
                    continue;
                };
                if ln != rn {
                    continue;
                }
                paths.push(pb::PeerPath {
                    id: format!("{}/{}->{peer}/{}", self.name, local_if.name, remote_if.name),
                    local_interface: local_if.name.to_string(),
                    remote_interface: remote_if.name.to_string(),
                    // Empty when the peer learns its address (DHCP): the far side learns it from
                    // the first packet.
                    remote_address: remote_if
                        .addresses
                        .first()
                        .map(|a| a.as_str().split('/').next().unwrap_or_default().to_string())
                        .unwrap_or_default(),
                    vector: local_if
                        .vector
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                    neighborhood: ln.to_string(),
                    remote_waypoint_ports: Some(waypoint_ports(remote_if)),
                    cost: u32::from(local_if.cost.unwrap_or(0))
                        + u32::from(remote_if.cost.unwrap_or(0)),
                });
            }
        }
        let epochs = options.key_epoch.saturating_sub(1)..=options.key_epoch;
        let keys = epochs
            .map(|epoch| pb::PeerKey {
                // The wire carries 32 bits; epochs wrap, which is harmless with two live keys.
                security_id: epoch as u32,
                key: peer_key(&options.key_master, self.name, peer, epoch).to_vec(),
                epoch,
            })
            .collect::<Vec<_>>();
        Some(pb::Peer {
            name: peer.to_string(),
            role: role(remote.spec.role) as i32,
            paths,
            keys,
        })
    }
}

/// The key two routers share for `epoch`: HKDF-SHA256 over the operator's master secret, with
/// the two names in sorted order so both ends derive the same key.
pub fn peer_key(master: &[u8; 32], a: &str, b: &str, epoch: u64) -> [u8; 32] {
    let (first, second) = if a <= b { (a, b) } else { (b, a) };
    let mut info = Vec::with_capacity(first.len() + second.len() + 10);
    info.extend_from_slice(first.as_bytes());
    info.push(0);
    info.extend_from_slice(second.as_bytes());
    info.push(0);
    info.extend_from_slice(&epoch.to_be_bytes());
    let mut key = [0u8; 32];
    Hkdf::<Sha256>::new(Some(b"signpost peer key v1"), master)
        .expand(&info, &mut key)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    key
}

fn canonical_prefix(p: &str) -> String {
    p.parse::<ipnet::IpNet>()
        .map(|n| n.trunc().to_string())
        .unwrap_or_else(|_| p.to_string())
}

fn waypoint_ports(i: &Interface) -> pb::PortRange {
    match &i.waypoint_ports {
        Some(r) => port_range(r),
        None => pb::PortRange {
            first: DEFAULT_WAYPOINT_PORTS.0,
            last: DEFAULT_WAYPOINT_PORTS.1,
        },
    }
}

fn wan_interface(i: &Interface, global_id: u32) -> pb::WanInterface {
    pb::WanInterface {
        name: i.name.to_string(),
        device: i.device.clone().unwrap_or_else(|| i.name.to_string()),
        neighborhood: i
            .neighborhood
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        vector: i
            .vector
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        addresses: i.addresses.iter().map(ToString::to_string).collect(),
        gateway: i
            .gateway
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        capacity_bps: i
            .capacity
            .as_deref()
            .and_then(parse_bits_per_second)
            .unwrap_or(0),
        cost: u32::from(i.cost.unwrap_or(0)),
        waypoint_ports: Some(waypoint_ports(i)),
        global_id,
    }
}

fn lan_interface(i: &Interface) -> pb::LanInterface {
    pb::LanInterface {
        name: i.name.to_string(),
        device: i.device.clone().unwrap_or_else(|| i.name.to_string()),
        addresses: i.addresses.iter().map(ToString::to_string).collect(),
        networks: i
            .networks
            .iter()
            .map(|n| pb::LanNetwork {
                name: n.name.to_string(),
                prefixes: n
                    .prefixes
                    .iter()
                    .map(|p| canonical_prefix(p.as_str()))
                    .collect(),
                vlan: n.vlan.map(u32::from).unwrap_or(0),
            })
            .collect(),
    }
}

fn port_range(r: &PortRange) -> pb::PortRange {
    pb::PortRange {
        first: u32::from(r.port),
        last: u32::from(r.end_port.unwrap_or(r.port)),
    }
}

/// One queue per priority on every WAN link: critical is strict, the rest share by weight.
fn qos_classes() -> Vec<pb::QosClass> {
    [
        (Priority::Critical, true, 0, 46),
        (Priority::High, false, 60, 34),
        (Priority::Normal, false, 30, 18),
        (Priority::Low, false, 10, 8),
    ]
    .into_iter()
    .map(|(p, strict, weight, dscp)| pb::QosClass {
        priority: priority(p) as i32,
        strict,
        weight,
        dscp,
    })
    .collect()
}

fn role(r: RouterRole) -> pb::RouterRole {
    match r {
        RouterRole::Hub => pb::RouterRole::Hub,
        RouterRole::Edge => pb::RouterRole::Edge,
    }
}

fn protocol(p: Protocol) -> pb::Protocol {
    match p {
        Protocol::Tcp => pb::Protocol::Tcp,
        Protocol::Udp => pb::Protocol::Udp,
        Protocol::Icmp => pb::Protocol::Icmp,
        Protocol::Icmpv6 => pb::Protocol::Icmpv6,
    }
}

fn priority(p: Priority) -> pb::Priority {
    match p {
        Priority::Critical => pb::Priority::Critical,
        Priority::High => pb::Priority::High,
        Priority::Normal => pb::Priority::Normal,
        Priority::Low => pb::Priority::Low,
    }
}

fn security(s: SecurityMode) -> pb::SecurityMode {
    match s {
        SecurityMode::Encrypt => pb::SecurityMode::Encrypt,
        SecurityMode::Authenticate => pb::SecurityMode::Authenticate,
        SecurityMode::None => pb::SecurityMode::None,
    }
}

fn direction(d: Direction) -> pb::Direction {
    match d {
        Direction::FromTenant => pb::Direction::FromTenant,
        Direction::FromService => pb::Direction::FromService,
        Direction::Both => pb::Direction::Both,
    }
}

fn traffic_class(c: TrafficClass) -> pb::TrafficClass {
    match c {
        TrafficClass::Realtime => pb::TrafficClass::Realtime,
        TrafficClass::Transactional => pb::TrafficClass::Transactional,
        TrafficClass::Interactive => pb::TrafficClass::Interactive,
        TrafficClass::Bulk => pb::TrafficClass::Bulk,
        TrafficClass::BestEffort => pb::TrafficClass::BestEffort,
    }
}

fn load_balancing(l: LoadBalancing) -> pb::LoadBalancing {
    match l {
        LoadBalancing::Proximity => pb::LoadBalancing::Proximity,
        LoadBalancing::LeastLoaded => pb::LoadBalancing::LeastLoaded,
        LoadBalancing::Failover => pb::LoadBalancing::Failover,
    }
}
