//! First-packet classification: which tenant sent a packet, which service it asks for, and the
//! access rule (if any) that lets that tenant reach that service. A [`Classifier`] is compiled
//! once from a `RouterConfig` ([`Classifier::new`]) and then only read; lookups never allocate.
//!
//! # Tenants ([`Classifier::tenant`])
//!
//! * A tenant listing network `pos` claims the prefixes of every LAN network named `pos`, on
//!   the interface where that network is. A network with a VLAN matches only packets tagged
//!   with that VLAN; an untagged network (VLAN 0) only untagged packets. A packet tagged with
//!   VLAN 0 (802.1p priority only) counts as untagged.
//! * A tenant's own `prefixes` apply on every LAN interface and VLAN (also for a `lan` index the
//!   config does not have).
//! * The longest matching prefix wins. At equal length a network claim beats a prefix claim;
//!   two tenants claiming the very same prefix the same way: the first in config order wins
//!   (the operator's compiler reports the conflict).
//! * A network name no LAN interface has claims nothing (hubs receive tenants to name them, not
//!   to classify them). A source nothing matches has no tenant.
//!
//! # Services ([`Classifier::service`])
//!
//! The longest prefix among the services whose transports accept (protocol, destination port)
//! wins; when the longest does not accept the port, shorter prefixes are tried. A transport with
//! no port ranges accepts every port; ICMP and ICMPv6 transports accept their protocol whatever
//! the port argument. A service without transports accepts nothing. Several services with the
//! very same prefix that all accept a port: the first in config order wins. IPv4 and IPv6 are
//! independent tables (an IPv4-mapped IPv6 address is looked up as IPv6).
//!
//! With `internet` 0.0.0.0/0 tcp 80,443 and `payments` 10.255.1.10/32 tcp 443:
//! 10.255.1.10:443 is `payments`, 10.255.1.10:80 is `internet`, 10.255.1.10:22 is nothing.
//!
//! # Rules ([`Classifier::rule`])
//!
//! Exactly the (tenant, service) pairs listed in `access` — the compiler has already expanded
//! nested tenants into an entry per tenant — in a dense tenant x service matrix (a sorted list
//! when the matrix would exceed 16 Mi cells). A pair listed twice: the first entry wins. A
//! [`RuleId`] is the entry's index in `access`.
//!
//! # Egress ([`Classifier::check_destination`])
//!
//! A session that arrives from a peer names its service in the metadata, and a service without
//! real addresses (an internet breakout, 0.0.0.0/0) is delivered to the original destination.
//! That destination must belong to the named service here too, or metadata naming `internet`
//! could carry a flow to another service's host: a real address of a location this router
//! fronts belongs to that location's service whatever the protocol and port (the host is that
//! service's, and it sits on this router's LAN); any other destination belongs to the service
//! the service lookup above gives for it. At hub-aws, `internet` to 10.100.2.20:443
//! (video-archive's real address) or to 10.255.3.10:443 (inventory's prefix, which hub-aws knows
//! because it lies inside `internet`'s) is foreign; `payments` to its own 10.255.1.10:443, and
//! `internet` to 198.18.80.80:80, are not.
//!
//! # LAN routes ([`Classifier::lan_route`])
//!
//! The LAN interface whose network prefixes or interface-address subnets contain a destination,
//! longest match first; at equal length a network beats an interface subnet, then config order
//! wins. The VLAN is the matching network's (`None` for untagged networks and subnets).
//!
//! # Config checks
//!
//! Prefixes are `address/length` (host bits are cleared, as the compiler does); location
//! addresses are single addresses. [`ConfigError`] rejects unparsable prefixes and addresses,
//! access rules naming a tenant or service the config lacks, unknown or looping tenant parents,
//! duplicate tenant or service names, more than 65535 tenants, services or rules, bad port
//! ranges and VLANs, and enum values this router does not know.

mod compile;
mod error;
pub mod lpm;

use core::net::IpAddr;

use signpost_proto::v1::{
    Direction, LoadBalancing, Priority, RateLimit, SecurityMode, Sla, TrafficClass,
};

pub use error::ConfigError;

use lpm::Lpm;

/// A tenant of this router's config: its index in `RouterConfig::tenants`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(pub u16);

/// A service of this router's config: its index in `RouterConfig::services`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceId(pub u16);

/// An access rule of this router's config: its index in `RouterConfig::access`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId(pub u16);

/// What the router keeps of a tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantEntry {
    pub name: String,
    /// The enclosing tenant.
    pub parent: Option<TenantId>,
}

/// What the router keeps of a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceEntry {
    pub name: String,
    pub hostname: String,
    /// In the order the config lists them (the compiler sorts by priority, then router).
    pub locations: Vec<Location>,
    pub load_balancing: LoadBalancing,
    pub traffic_class: TrafficClass,
}

/// Where a service is reachable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The router that fronts the service there.
    pub router: String,
    /// Real addresses behind that router; empty means "deliver to the original destination".
    pub addresses: Vec<IpAddr>,
    /// Order for failover (lower first).
    pub priority: u32,
}

/// What the router keeps of an access rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleEntry {
    /// The Policy that granted it.
    pub policy: String,
    pub tenant: TenantId,
    pub service: ServiceId,
    pub security: SecurityMode,
    pub direction: Direction,
    pub priority: Priority,
    pub sla: Sla,
    /// Vector names in order of preference; empty means any path.
    pub path_preference: Vec<String>,
    pub rate_limit: RateLimit,
}

/// Where a destination lives on this router's LAN side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LanRoute {
    /// Index into `RouterConfig::lan_interfaces`.
    pub lan: usize,
    /// The matching network's VLAN; `None` when untagged or matched by an interface subnet.
    pub vlan: Option<u16>,
}

/// The answer for ids this classifier did not issue.
static NO_TENANT: TenantEntry = TenantEntry {
    name: String::new(),
    parent: None,
};
static NO_SERVICE: ServiceEntry = ServiceEntry {
    name: String::new(),
    hostname: String::new(),
    locations: Vec::new(),
    load_balancing: LoadBalancing::Unspecified,
    traffic_class: TrafficClass::Unspecified,
};
static NO_RULE: RuleEntry = RuleEntry {
    policy: String::new(),
    tenant: TenantId(u16::MAX),
    service: ServiceId(u16::MAX),
    security: SecurityMode::Unspecified,
    direction: Direction::Unspecified,
    priority: Priority::Unspecified,
    sla: Sla {
        max_latency_ms: 0,
        max_loss_ppm: 0,
        max_jitter_ms: 0,
    },
    path_preference: Vec::new(),
    rate_limit: RateLimit {
        bits_per_second: 0,
        burst_bytes: 0,
        new_sessions_per_second: 0,
    },
};

/// The compiled classification tables of one config. See the module docs for the rules.
#[derive(Clone, Debug)]
pub struct Classifier {
    tenants: Vec<TenantEntry>,
    /// (name, id), sorted by name.
    tenant_names: Vec<(String, TenantId)>,
    services: Vec<ServiceEntry>,
    service_names: Vec<(String, ServiceId)>,
    rules: Vec<RuleEntry>,
    membership: Membership,
    destinations: Destinations,
    matrix: RuleMatrix,
    lan_routes: LanRoutes,
    /// The real addresses of the service locations this router fronts, each with its service;
    /// sorted (an address several services share appears once per service).
    fronted: Vec<(IpAddr, ServiceId)>,
}

/// Why the original destination of a session does not belong to the service its metadata
/// names ([`Classifier::check_destination`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForeignDestination {
    /// It is a real address of another service's location here, or that service's (more
    /// specific) prefix.
    OtherService(ServiceId),
    /// No service here has it.
    NoService,
}

/// Tenant membership tables: one per (LAN interface, VLAN) that has network claims, each also
/// holding every prefix claim, and one of prefix claims alone for everywhere else.
#[derive(Clone, Debug)]
struct Membership {
    /// Per LAN interface: (VLAN, 0 for untagged; index into `tables`), sorted by VLAN.
    by_lan: Vec<Vec<(u16, u32)>>,
    tables: Vec<Lpm>,
    /// Prefix claims only. Values are tenant ids.
    anywhere: Lpm,
}

/// Service destination tables. The LPM finds the longest prefix containing the destination; its
/// group lists the services with exactly that prefix and links to the next shorter prefix.
#[derive(Clone, Debug)]
struct Destinations {
    lpm: Lpm,
    groups: Vec<DestinationGroup>,
    /// The services of every group, back to back, each group in config order.
    members: Vec<ServiceId>,
    /// Per service: range into `accepts`.
    transports: Vec<(u32, u32)>,
    accepts: Vec<Accept>,
}

#[derive(Clone, Copy, Debug)]
struct DestinationGroup {
    /// Range into `members`.
    first: u32,
    end: u32,
    /// The group of the longest strictly shorter prefix containing this one.
    shorter: Option<u32>,
}

/// One protocol and inclusive port range a service accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Accept {
    protocol: u8,
    first: u16,
    last: u16,
}

/// Tenant x service -> rule.
#[derive(Clone, Debug)]
enum RuleMatrix {
    /// Row per tenant, `NO_CELL` where denied.
    Dense { services: usize, cells: Vec<u16> },
    /// ((tenant << 16) | service, rule), sorted by key; for configs whose matrix is too big.
    Sparse(Vec<(u32, RuleId)>),
}

const NO_CELL: u16 = u16::MAX;

#[derive(Clone, Debug)]
struct LanRoutes {
    lpm: Lpm,
    routes: Vec<LanRoute>,
}

impl Classifier {
    /// Compiles a config; see the module docs for what is rejected.
    pub fn new(config: &signpost_proto::v1::RouterConfig) -> Result<Classifier, ConfigError> {
        compile::compile(config)
    }

    /// Which tenant a source belongs to, for a packet that arrived on LAN interface `lan`
    /// (index into `config.lan_interfaces`) with 802.1Q `vlan` (`None` = untagged).
    #[inline]
    pub fn tenant(&self, lan: usize, vlan: Option<u16>, src: IpAddr) -> Option<TenantId> {
        let m = &self.membership;
        let vlan = vlan.unwrap_or(0);
        let table = m
            .by_lan
            .get(lan)
            .and_then(|vlans| {
                let i = vlans.binary_search_by_key(&vlan, |&(v, _)| v).ok()?;
                vlans.get(i)
            })
            .and_then(|&(_, t)| m.tables.get(t as usize))
            .unwrap_or(&m.anywhere);
        table.lookup(src).map(|t| TenantId(t as u16))
    }

    /// Which service a destination asks for.
    #[inline]
    pub fn service(&self, dst: IpAddr, protocol: u8, dst_port: u16) -> Option<ServiceId> {
        let d = &self.destinations;
        let mut group = d.lpm.lookup(dst)?;
        loop {
            let g = d.groups.get(group as usize)?;
            let members = d.members.get(g.first as usize..g.end as usize)?;
            for &service in members {
                if d.accepts(service, protocol, dst_port) {
                    return Some(service);
                }
            }
            group = g.shorter?;
        }
    }

    /// The access rule for tenant x service; `None` means denied.
    #[inline]
    pub fn rule(&self, tenant: TenantId, service: ServiceId) -> Option<RuleId> {
        match &self.matrix {
            RuleMatrix::Dense { services, cells } => {
                let s = usize::from(service.0);
                if s >= *services {
                    return None;
                }
                let cell = *cells.get(usize::from(tenant.0) * services + s)?;
                (cell != NO_CELL).then_some(RuleId(cell))
            }
            RuleMatrix::Sparse(pairs) => {
                let key = (u32::from(tenant.0) << 16) | u32::from(service.0);
                let i = pairs.binary_search_by_key(&key, |&(k, _)| k).ok()?;
                pairs.get(i).map(|&(_, r)| r)
            }
        }
    }

    /// Whether `dst` (with protocol and port), the original destination of a session that
    /// arrives for `service`, belongs to `service` at this router (see "Egress" in the module
    /// docs). Not on the fast path: it runs once per session, at the egress router.
    pub fn check_destination(
        &self,
        service: ServiceId,
        dst: IpAddr,
        protocol: u8,
        dst_port: u16,
    ) -> Result<(), ForeignDestination> {
        let start = self.fronted.partition_point(|&(a, _)| a < dst);
        let mut owners = self
            .fronted
            .get(start..)
            .unwrap_or(&[])
            .iter()
            .take_while(|&&(a, _)| a == dst)
            .map(|&(_, s)| s)
            .peekable();
        if let Some(&first) = owners.peek() {
            if owners.any(|s| s == service) {
                return Ok(());
            }
            return Err(ForeignDestination::OtherService(first));
        }
        match self.service(dst, protocol, dst_port) {
            Some(s) if s == service => Ok(()),
            Some(other) => Err(ForeignDestination::OtherService(other)),
            None => Err(ForeignDestination::NoService),
        }
    }

    /// Where a destination lives on this router's LAN side (see the module docs).
    #[inline]
    pub fn lan_route(&self, dst: IpAddr) -> Option<LanRoute> {
        let r = self.lan_routes.lpm.lookup(dst)?;
        self.lan_routes.routes.get(r as usize).copied()
    }

    pub fn tenant_named(&self, name: &str) -> Option<TenantId> {
        lookup_name(&self.tenant_names, name)
    }

    pub fn service_named(&self, name: &str) -> Option<ServiceId> {
        lookup_name(&self.service_names, name)
    }

    /// The tenant `id`; an id this classifier did not issue gives an entry with an empty name.
    pub fn tenant_info(&self, id: TenantId) -> &TenantEntry {
        self.tenants.get(usize::from(id.0)).unwrap_or(&NO_TENANT)
    }

    /// The service `id`; an id this classifier did not issue gives an entry with an empty name.
    pub fn service_info(&self, id: ServiceId) -> &ServiceEntry {
        self.services.get(usize::from(id.0)).unwrap_or(&NO_SERVICE)
    }

    /// The rule `id`; an id this classifier did not issue gives an entry with an empty policy
    /// and unspecified settings.
    pub fn rule_info(&self, id: RuleId) -> &RuleEntry {
        self.rules.get(usize::from(id.0)).unwrap_or(&NO_RULE)
    }

    pub fn tenant_count(&self) -> usize {
        self.tenants.len()
    }

    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }
}

impl Destinations {
    #[inline]
    fn accepts(&self, service: ServiceId, protocol: u8, port: u16) -> bool {
        let Some(&(first, end)) = self.transports.get(usize::from(service.0)) else {
            return false;
        };
        self.accepts
            .get(first as usize..end as usize)
            .unwrap_or(&[])
            .iter()
            .any(|a| a.protocol == protocol && a.first <= port && port <= a.last)
    }
}

fn lookup_name<Id: Copy>(names: &[(String, Id)], name: &str) -> Option<Id> {
    let i = names.binary_search_by(|(n, _)| n.as_str().cmp(name)).ok()?;
    names.get(i).map(|&(_, id)| id)
}
