//! Compiling a `RouterConfig` into a [`Classifier`]: validation, id assignment, and the build of
//! the membership, destination, rule and LAN route tables.

use core::net::IpAddr;
use std::collections::{BTreeMap, HashMap};

use signpost_proto::v1::{
    Direction, LanNetwork, LoadBalancing, Priority, Protocol, RouterConfig, SecurityMode,
    TrafficClass,
};

use super::lpm::{Lpm, Prefix};
use super::{
    Accept, Classifier, ConfigError, DestinationGroup, Destinations, LanRoute, LanRoutes, Location,
    Membership, NO_CELL, RuleEntry, RuleId, RuleMatrix, ServiceEntry, ServiceId, TenantEntry,
    TenantId,
};

/// Above this many tenant x service cells (32 MiB of u16) the rule matrix is a sorted list.
const DENSE_CELLS: usize = 1 << 24;

pub(super) fn compile(config: &RouterConfig) -> Result<Classifier, ConfigError> {
    count("tenant", config.tenants.len())?;
    count("service", config.services.len())?;
    count("access rule", config.access.len())?;

    let tenant_names = name_index("tenant", config.tenants.iter().map(|t| &t.name), TenantId)?;
    let service_names = name_index(
        "service",
        config.services.iter().map(|s| &s.name),
        ServiceId,
    )?;
    let tenants = tenants(config, &tenant_names)?;
    let services = services(config)?;
    let rules = rules(config, &tenant_names, &service_names)?;
    let membership = membership(config)?;
    let destinations = destinations(config)?;
    let matrix = matrix(&rules, tenants.len(), services.len(), DENSE_CELLS);
    let lan_routes = lan_routes(config)?;
    let fronted = fronted(config, &services);
    Ok(Classifier {
        tenants,
        tenant_names,
        services,
        service_names,
        rules,
        membership,
        destinations,
        matrix,
        lan_routes,
        fronted,
    })
}

/// The real addresses of the locations on this router, each with its service; sorted.
fn fronted(config: &RouterConfig, services: &[ServiceEntry]) -> Vec<(IpAddr, ServiceId)> {
    let mut fronted: Vec<(IpAddr, ServiceId)> = services
        .iter()
        .zip(0u16..)
        .flat_map(|(s, id)| {
            s.locations
                .iter()
                .filter(|l| l.router == config.router)
                .flat_map(move |l| l.addresses.iter().map(move |&a| (a, ServiceId(id))))
        })
        .collect();
    fronted.sort_unstable();
    fronted.dedup();
    fronted
}

fn count(kind: &'static str, count: usize) -> Result<(), ConfigError> {
    // Ids are u16; `u16::MAX` entries number 0..=65534, which keeps `u16::MAX` free as the
    // matrix's "denied" cell.
    if count > usize::from(u16::MAX) {
        return Err(ConfigError::TooMany { kind, count });
    }
    Ok(())
}

/// (name, id) sorted by name. The operator sends lists sorted by name, but lookups must not
/// depend on it, so the index is sorted here.
fn name_index<'a, Id>(
    kind: &'static str,
    names: impl Iterator<Item = &'a String>,
    id: impl Fn(u16) -> Id,
) -> Result<Vec<(String, Id)>, ConfigError> {
    let mut index: Vec<(String, Id)> = names
        .zip(0u16..)
        .map(|(name, i)| (name.clone(), id(i)))
        .collect();
    index.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(pair) = index.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(ConfigError::DuplicateName {
            kind,
            name: pair[0].0.clone(),
        });
    }
    Ok(index)
}

fn find<Id: Copy>(index: &[(String, Id)], name: &str) -> Option<Id> {
    super::lookup_name(index, name)
}

fn tenants(
    config: &RouterConfig,
    names: &[(String, TenantId)],
) -> Result<Vec<TenantEntry>, ConfigError> {
    let mut entries = Vec::with_capacity(config.tenants.len());
    for t in &config.tenants {
        let parent = if t.parent.is_empty() {
            None
        } else {
            Some(
                find(names, &t.parent).ok_or_else(|| ConfigError::UnknownParent {
                    tenant: t.name.clone(),
                    parent: t.parent.clone(),
                })?,
            )
        };
        entries.push(TenantEntry {
            name: t.name.clone(),
            parent,
        });
    }
    // A chain longer than the number of tenants has visited one twice.
    for (i, t) in entries.iter().enumerate() {
        let mut at = t.parent;
        for _ in 0..=entries.len() {
            match at {
                None => break,
                Some(p) if usize::from(p.0) == i => {
                    return Err(ConfigError::ParentCycle {
                        tenant: t.name.clone(),
                    });
                }
                Some(p) => at = entries.get(usize::from(p.0)).and_then(|e| e.parent),
            }
        }
        if at.is_some() {
            return Err(ConfigError::ParentCycle {
                tenant: t.name.clone(),
            });
        }
    }
    Ok(entries)
}

fn services(config: &RouterConfig) -> Result<Vec<ServiceEntry>, ConfigError> {
    let mut entries = Vec::with_capacity(config.services.len());
    for s in &config.services {
        let object = || format!("service `{}`", s.name);
        let mut locations = Vec::with_capacity(s.locations.len());
        for l in &s.locations {
            let mut addresses = Vec::with_capacity(l.addresses.len());
            for a in &l.addresses {
                let addr = a.parse::<IpAddr>().map_err(|_| ConfigError::Address {
                    object: format!("service `{}` location `{}`", s.name, l.router),
                    field: "address",
                    value: a.clone(),
                })?;
                addresses.push(addr);
            }
            locations.push(Location {
                router: l.router.clone(),
                addresses,
                priority: l.priority,
            });
        }
        entries.push(ServiceEntry {
            name: s.name.clone(),
            hostname: s.hostname.clone(),
            locations,
            load_balancing: known(
                LoadBalancing::try_from(s.load_balancing),
                object,
                "load_balancing",
                s.load_balancing,
            )?,
            traffic_class: known(
                TrafficClass::try_from(s.traffic_class),
                object,
                "traffic_class",
                s.traffic_class,
            )?,
        });
    }
    Ok(entries)
}

fn known<T, E>(
    parsed: Result<T, E>,
    object: impl Fn() -> String,
    field: &'static str,
    value: i32,
) -> Result<T, ConfigError> {
    parsed.map_err(|_| ConfigError::Enum {
        object: object(),
        field,
        value,
    })
}

fn rules(
    config: &RouterConfig,
    tenants: &[(String, TenantId)],
    services: &[(String, ServiceId)],
) -> Result<Vec<RuleEntry>, ConfigError> {
    let mut entries = Vec::with_capacity(config.access.len());
    for (i, r) in config.access.iter().enumerate() {
        let object = || {
            format!(
                "access rule {i} (`{}` x `{}`, policy `{}`)",
                r.tenant, r.service, r.policy
            )
        };
        let tenant = find(tenants, &r.tenant).ok_or_else(|| ConfigError::UnknownTenant {
            rule: object(),
            tenant: r.tenant.clone(),
        })?;
        let service = find(services, &r.service).ok_or_else(|| ConfigError::UnknownService {
            rule: object(),
            service: r.service.clone(),
        })?;
        entries.push(RuleEntry {
            policy: r.policy.clone(),
            tenant,
            service,
            security: known(
                SecurityMode::try_from(r.security),
                object,
                "security",
                r.security,
            )?,
            direction: known(
                Direction::try_from(r.direction),
                object,
                "direction",
                r.direction,
            )?,
            priority: known(
                Priority::try_from(r.priority),
                object,
                "priority",
                r.priority,
            )?,
            sla: r.sla.unwrap_or_default(),
            path_preference: r.path_preference.clone(),
            rate_limit: r.rate_limit.unwrap_or_default(),
        });
    }
    Ok(entries)
}

fn prefix(
    text: &str,
    object: impl Fn() -> String,
    field: &'static str,
) -> Result<Prefix, ConfigError> {
    Prefix::parse(text).ok_or_else(|| ConfigError::Prefix {
        object: object(),
        field,
        value: text.to_string(),
    })
}

/// The VLAN key of a network: 0 for untagged, else 1-4094.
fn vlan(interface: &str, network: &LanNetwork) -> Result<u16, ConfigError> {
    match u16::try_from(network.vlan) {
        Ok(v) if v <= 4094 => Ok(v),
        _ => Err(ConfigError::Vlan {
            interface: interface.to_string(),
            network: network.name.clone(),
            vlan: network.vlan,
        }),
    }
}

fn membership(config: &RouterConfig) -> Result<Membership, ConfigError> {
    // Every tenant's own prefixes, in config order.
    let mut prefix_claims = Vec::new();
    for (t, tenant) in config.tenants.iter().enumerate() {
        for p in &tenant.prefixes {
            let object = || format!("tenant `{}`", tenant.name);
            prefix_claims.push((prefix(p, object, "prefix")?, t as u32));
        }
    }

    // Network claims per (LAN interface, VLAN), tenants in config order so that the first
    // tenant claiming a network wins.
    let mut networks_named: HashMap<&str, Vec<(usize, &LanNetwork)>> = HashMap::new();
    for (lan, interface) in config.lan_interfaces.iter().enumerate() {
        for network in &interface.networks {
            networks_named
                .entry(network.name.as_str())
                .or_default()
                .push((lan, network));
        }
    }
    let mut network_claims: BTreeMap<(usize, u16), Vec<(Prefix, u32)>> = BTreeMap::new();
    // Every network is checked, claimed or not, so that a bad one is reported whichever tenants
    // this router receives.
    for interface in &config.lan_interfaces {
        for network in &interface.networks {
            vlan(&interface.name, network)?;
            for p in &network.prefixes {
                let object = || {
                    format!(
                        "LAN interface `{}` network `{}`",
                        interface.name, network.name
                    )
                };
                prefix(p, object, "prefix")?;
            }
        }
    }
    for (t, tenant) in config.tenants.iter().enumerate() {
        for name in &tenant.networks {
            for &(lan, network) in networks_named.get(name.as_str()).into_iter().flatten() {
                let interface = config.lan_interfaces.get(lan).map_or("", |i| &i.name);
                let key = (lan, vlan(interface, network)?);
                let claims = network_claims.entry(key).or_default();
                for p in &network.prefixes {
                    // Validated above; a parse failure here cannot happen, skip defensively.
                    if let Some(p) = Prefix::parse(p) {
                        claims.push((p, t as u32));
                    }
                }
            }
        }
    }

    let mut by_lan = vec![Vec::new(); config.lan_interfaces.len()];
    let mut tables = Vec::with_capacity(network_claims.len());
    for ((lan, vlan), mut claims) in network_claims {
        // Network claims first: at equal prefix the first entry is kept.
        claims.extend_from_slice(&prefix_claims);
        if let Some(vlans) = by_lan.get_mut(lan) {
            vlans.push((vlan, tables.len() as u32));
        }
        tables.push(Lpm::build(&claims).0);
    }
    // BTreeMap iteration is ordered by (lan, vlan), so each list is sorted by VLAN.
    Ok(Membership {
        by_lan,
        tables,
        anywhere: Lpm::build(&prefix_claims).0,
    })
}

fn destinations(config: &RouterConfig) -> Result<Destinations, ConfigError> {
    // Group services by identical prefix, keeping config order inside each group.
    let mut group_of: HashMap<Prefix, usize> = HashMap::new();
    let mut grouped: Vec<(Prefix, Vec<ServiceId>)> = Vec::new();
    let mut transports = Vec::with_capacity(config.services.len());
    let mut accepts = Vec::new();
    for (s, service) in config.services.iter().enumerate() {
        let id = ServiceId(s as u16);
        let object = || format!("service `{}`", service.name);
        for p in &service.prefixes {
            let p = prefix(p, object, "prefix")?;
            let g = *group_of.entry(p).or_insert_with(|| {
                grouped.push((p, Vec::new()));
                grouped.len() - 1
            });
            if let Some((_, members)) = grouped.get_mut(g)
                && members.last() != Some(&id)
            {
                members.push(id);
            }
        }
        let first = accepts.len() as u32;
        for (n, t) in service.transports.iter().enumerate() {
            let protocol = match Protocol::try_from(t.protocol) {
                Ok(Protocol::Unspecified) | Err(_) => {
                    return Err(ConfigError::Enum {
                        object: format!("service `{}` transport {n}", service.name),
                        field: "protocol",
                        value: t.protocol,
                    });
                }
                Ok(p) => p as i32 as u8,
            };
            let icmp = matches!(
                Protocol::try_from(t.protocol),
                Ok(Protocol::Icmp | Protocol::Icmpv6)
            );
            let mut ranges = Vec::with_capacity(t.ports.len().max(1));
            for r in &t.ports {
                match (u16::try_from(r.first), u16::try_from(r.last)) {
                    (Ok(first), Ok(last)) if first <= last => ranges.push((first, last)),
                    _ => {
                        return Err(ConfigError::PortRange {
                            service: service.name.clone(),
                            transport: n,
                            first: r.first,
                            last: r.last,
                        });
                    }
                }
            }
            // No ranges means every port; ICMP has no ports, so its ranges are ignored.
            if ranges.is_empty() || icmp {
                ranges = vec![(0, u16::MAX)];
            }
            accepts.extend(ranges.into_iter().map(|(first, last)| Accept {
                protocol,
                first,
                last,
            }));
        }
        transports.push((first, accepts.len() as u32));
    }

    let entries: Vec<(Prefix, u32)> = grouped
        .iter()
        .enumerate()
        .map(|(g, (p, _))| (*p, g as u32))
        .collect();
    let (lpm, covering) = Lpm::build(&entries);
    let mut groups = Vec::with_capacity(grouped.len());
    let mut members = Vec::new();
    for ((_, services), shorter) in grouped.into_iter().zip(covering) {
        let first = members.len() as u32;
        members.extend(services);
        groups.push(DestinationGroup {
            first,
            end: members.len() as u32,
            shorter,
        });
    }
    Ok(Destinations {
        lpm,
        groups,
        members,
        transports,
        accepts,
    })
}

fn matrix(rules: &[RuleEntry], tenants: usize, services: usize, dense_cells: usize) -> RuleMatrix {
    let cells = tenants.saturating_mul(services);
    if cells <= dense_cells {
        let mut matrix = vec![NO_CELL; cells];
        for (i, r) in rules.iter().enumerate() {
            let at = usize::from(r.tenant.0) * services + usize::from(r.service.0);
            if let Some(cell) = matrix.get_mut(at)
                && *cell == NO_CELL
            {
                *cell = i as u16;
            }
        }
        RuleMatrix::Dense {
            services,
            cells: matrix,
        }
    } else {
        let mut pairs: Vec<(u32, RuleId)> = rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let key = (u32::from(r.tenant.0) << 16) | u32::from(r.service.0);
                (key, RuleId(i as u16))
            })
            .collect();
        // Stable: of two entries for one pair, the first stays first and is kept.
        pairs.sort_by_key(|&(k, _)| k);
        pairs.dedup_by_key(|&mut (k, _)| k);
        RuleMatrix::Sparse(pairs)
    }
}

fn lan_routes(config: &RouterConfig) -> Result<LanRoutes, ConfigError> {
    let mut routes: Vec<LanRoute> = Vec::new();
    let mut route_index: HashMap<LanRoute, u32> = HashMap::new();
    let mut intern = |route: LanRoute| {
        *route_index.entry(route).or_insert_with(|| {
            routes.push(route);
            (routes.len() - 1) as u32
        })
    };
    // Networks first: at equal prefix, the first entry is kept.
    let mut entries = Vec::new();
    for (lan, interface) in config.lan_interfaces.iter().enumerate() {
        for network in &interface.networks {
            let vlan = vlan(&interface.name, network)?;
            let route = intern(LanRoute {
                lan,
                vlan: (vlan != 0).then_some(vlan),
            });
            for p in &network.prefixes {
                let object = || {
                    format!(
                        "LAN interface `{}` network `{}`",
                        interface.name, network.name
                    )
                };
                entries.push((prefix(p, object, "prefix")?, route));
            }
        }
    }
    for (lan, interface) in config.lan_interfaces.iter().enumerate() {
        let route = intern(LanRoute { lan, vlan: None });
        for a in &interface.addresses {
            let subnet = Prefix::parse(a).ok_or_else(|| ConfigError::InterfaceAddress {
                interface: interface.name.clone(),
                value: a.clone(),
            })?;
            entries.push((subnet, route));
        }
        // A gateway makes the interface the way to everything else (internet breakout).
        if !interface.gateway.is_empty() {
            let gateway: IpAddr = interface
                .gateway
                .parse()
                .map_err(|_| ConfigError::Address {
                    object: format!("LAN interface `{}`", interface.name),
                    field: "gateway",
                    value: interface.gateway.clone(),
                })?;
            entries.push((Prefix::new(gateway, 0), route));
        }
    }
    Ok(LanRoutes {
        lpm: Lpm::build(&entries).0,
        routes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(tenant: u16, service: u16) -> RuleEntry {
        RuleEntry {
            policy: String::new(),
            tenant: TenantId(tenant),
            service: ServiceId(service),
            security: SecurityMode::Encrypt,
            direction: Direction::FromTenant,
            priority: Priority::Normal,
            sla: Default::default(),
            path_preference: Vec::new(),
            rate_limit: Default::default(),
        }
    }

    fn lookup(m: &RuleMatrix, t: u16, s: u16) -> Option<u16> {
        let c = Classifier {
            tenants: Vec::new(),
            tenant_names: Vec::new(),
            services: Vec::new(),
            service_names: Vec::new(),
            rules: Vec::new(),
            membership: Membership {
                by_lan: Vec::new(),
                tables: Vec::new(),
                anywhere: Lpm::build(&[]).0,
            },
            destinations: Destinations {
                lpm: Lpm::build(&[]).0,
                groups: Vec::new(),
                members: Vec::new(),
                transports: Vec::new(),
                accepts: Vec::new(),
            },
            matrix: m.clone(),
            lan_routes: LanRoutes {
                lpm: Lpm::build(&[]).0,
                routes: Vec::new(),
            },
            fronted: Vec::new(),
        };
        c.rule(TenantId(t), ServiceId(s)).map(|r| r.0)
    }

    #[test]
    fn dense_and_sparse_matrices_agree() {
        let rules = [rule(0, 2), rule(3, 1), rule(0, 2), rule(2, 0), rule(3, 4)];
        let dense = matrix(&rules, 4, 5, DENSE_CELLS);
        let sparse = matrix(&rules, 4, 5, 0);
        assert!(matches!(dense, RuleMatrix::Dense { .. }));
        assert!(matches!(sparse, RuleMatrix::Sparse(_)));
        for t in 0..6 {
            for s in 0..7 {
                let expected = rules
                    .iter()
                    .position(|r| r.tenant.0 == t && r.service.0 == s)
                    .map(|i| i as u16);
                assert_eq!(lookup(&dense, t, s), expected, "dense {t} x {s}");
                assert_eq!(lookup(&sparse, t, s), expected, "sparse {t} x {s}");
            }
        }
    }
}
