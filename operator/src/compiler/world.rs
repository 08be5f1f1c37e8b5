//! The resolved view of all objects: names indexed, references checked, policies expanded into
//! tenant × service grants, peerings decided. Everything a router's selection reads from.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use super::diagnostics::{Diagnostic, known};
use crate::crd::{InterfaceRole, Policy, Priority, Router, RouterRole, Service, Tenant};
use crate::manifests::Intent;

/// A Policy's grant of one tenant × service pair.
#[derive(Clone, Copy, Debug)]
pub struct Grant<'a> {
    pub policy_name: &'a str,
    pub policy: &'a Policy,
}

/// A service with the locations that survived resolution.
#[derive(Clone, Debug)]
pub struct ResolvedService<'a> {
    pub service: &'a Service,
    /// Indexes into `service.spec.locations` whose router exists.
    pub locations: Vec<usize>,
}

#[derive(Debug, Default)]
pub struct World<'a> {
    pub tenants: BTreeMap<&'a str, &'a Tenant>,
    pub services: BTreeMap<&'a str, ResolvedService<'a>>,
    /// Routers that can be configured (they have a WAN interface).
    pub routers: BTreeMap<&'a str, &'a Router>,
    /// (tenant, service) → the grant that applies, after nesting is expanded.
    pub grants: BTreeMap<(&'a str, &'a str), Grant<'a>>,
    /// Router → its peers (symmetric).
    pub peers: BTreeMap<&'a str, BTreeSet<&'a str>>,
    /// LAN network name → tenants that claim it.
    pub tenants_by_network: BTreeMap<&'a str, BTreeSet<&'a str>>,
    /// Tenant → the services it may reach (an index of `grants`).
    pub services_by_tenant: BTreeMap<&'a str, BTreeSet<&'a str>>,
    /// Router → the services with a (resolved) location on it.
    pub services_by_router: BTreeMap<&'a str, BTreeSet<&'a str>>,
    /// Service → the tenants that may reach it (an index of `grants`).
    pub tenants_by_service: BTreeMap<&'a str, BTreeSet<&'a str>>,
    /// (kind, name) → SHA-256 of the object's spec, for selection fingerprints.
    pub hashes: BTreeMap<(&'static str, &'a str), [u8; 32]>,
}

fn name_of<K: kube::Resource>(object: &K) -> Option<&str> {
    object.meta().name.as_deref()
}

fn spec_hash<S: serde::Serialize>(spec: &S) -> [u8; 32] {
    // serde_json writes struct fields in declaration order and maps sorted (BTreeMap), so equal
    // specs hash equally.
    Sha256::digest(serde_json::to_vec(spec).unwrap_or_default()).into()
}

/// Indexes objects by name. A name defined twice is an error and both definitions are dropped,
/// so that the result never depends on the order the objects came in.
fn index<'a, K: kube::Resource>(
    kind: &'static str,
    objects: &'a [K],
    diagnostics: &mut Vec<Diagnostic>,
) -> BTreeMap<&'a str, &'a K> {
    let mut seen: BTreeMap<&str, Vec<&K>> = BTreeMap::new();
    for o in objects {
        match name_of(o) {
            Some(name) => seen.entry(name).or_default().push(o),
            None => diagnostics.push(Diagnostic::error(
                kind,
                "",
                "MissingName",
                format!("a {kind} has no metadata.name"),
            )),
        }
    }
    seen.into_iter()
        .filter_map(|(name, all)| {
            if all.len() > 1 {
                diagnostics.push(Diagnostic::error(
                    kind,
                    name,
                    "DefinedTwice",
                    format!("{kind} `{name}` is defined {} times; keep one", all.len()),
                ));
                None
            } else {
                all.first().map(|o| (name, *o))
            }
        })
        .collect()
}

/// `pos.corp` → [`corp`]; `a.pos.corp` → [`pos.corp`, `corp`]. Only names, existence is checked
/// by the caller.
pub fn enclosing(name: &str) -> impl Iterator<Item = &str> {
    name.char_indices()
        .filter(|(_, c)| *c == '.')
        .map(move |(i, _)| &name[i + 1..])
}

pub fn wan_neighborhoods(router: &Router) -> BTreeSet<&str> {
    router
        .spec
        .interfaces
        .iter()
        .filter(|i| i.role == InterfaceRole::Wan)
        .filter_map(|i| i.neighborhood.as_ref().map(|n| n.as_str()))
        .collect()
}

pub fn lan_networks(router: &Router) -> impl Iterator<Item = &crate::crd::LanNetwork> {
    router
        .spec
        .interfaces
        .iter()
        .filter(|i| i.role == InterfaceRole::Lan)
        .flat_map(|i| i.networks.iter())
}

impl<'a> World<'a> {
    pub fn router_names(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.routers.keys().copied()
    }

    pub fn resolve(intent: &'a Intent) -> (Self, Vec<Diagnostic>) {
        let mut d = Vec::new();
        let mut world = World {
            tenants: index("Tenant", &intent.tenants, &mut d),
            ..World::default()
        };
        let services = index("Service", &intent.services, &mut d);
        let policies = index("Policy", &intent.policies, &mut d);
        let all_routers = index("Router", &intent.routers, &mut d);

        for (name, t) in &world.tenants {
            world.hashes.insert(("Tenant", name), spec_hash(&t.spec));
        }
        for (name, s) in &services {
            world.hashes.insert(("Service", name), spec_hash(&s.spec));
        }
        for (name, p) in &policies {
            world.hashes.insert(("Policy", name), spec_hash(&p.spec));
        }
        for (name, r) in &all_routers {
            world.hashes.insert(("Router", name), spec_hash(&r.spec));
        }

        world.resolve_routers(&all_routers, &mut d);
        world.resolve_tenants(&mut d);
        world.resolve_services(&services, &all_routers, &mut d);
        world.resolve_policies(&policies, &mut d);
        world.resolve_peering(&mut d);
        (world, d)
    }

    fn resolve_routers(&mut self, all: &BTreeMap<&'a str, &'a Router>, d: &mut Vec<Diagnostic>) {
        for (name, router) in all {
            if router
                .spec
                .interfaces
                .iter()
                .any(|i| i.role == InterfaceRole::Wan)
            {
                self.routers.insert(name, router);
            } else {
                d.push(Diagnostic::error(
                    "Router",
                    name,
                    "NoWanInterface",
                    format!(
                        "router `{name}` has no WAN interface: add an interface with role `wan`, \
                         a neighborhood and a vector"
                    ),
                ));
            }
        }
    }

    fn resolve_tenants(&mut self, d: &mut Vec<Diagnostic>) {
        let mut claims: BTreeMap<ipnet::IpNet, BTreeSet<&'a str>> = BTreeMap::new();
        for (name, tenant) in &self.tenants {
            for network in &tenant.spec.networks {
                self.tenants_by_network
                    .entry(network.as_str())
                    .or_default()
                    .insert(name);
            }
            for prefix in &tenant.spec.prefixes {
                match prefix.as_str().parse::<ipnet::IpNet>() {
                    Ok(net) => {
                        claims.entry(net.trunc()).or_default().insert(name);
                    }
                    Err(_) => d.push(Diagnostic::error(
                        "Tenant",
                        name,
                        "InvalidPrefix",
                        format!(
                            "tenant `{name}` has prefix `{prefix}`, which is not a CIDR prefix"
                        ),
                    )),
                }
            }
        }
        for (net, owners) in claims {
            if owners.len() > 1 {
                let names: Vec<&str> = owners.iter().copied().collect();
                let (first, rest) = (names[0], &names[1..]);
                let message = format!(
                    "tenants `{}` both claim prefix {net}: give the prefix to one tenant, or \
                     nest a longer prefix inside it",
                    names.join("` and `")
                );
                d.push(Diagnostic::error(
                    "Tenant",
                    first,
                    "OverlappingPrefix",
                    message.clone(),
                ));
                for other in rest {
                    d.push(Diagnostic::error(
                        "Tenant",
                        other,
                        "OverlappingPrefix",
                        message.clone(),
                    ));
                }
            }
        }
        let networks: BTreeSet<&str> = self
            .routers
            .values()
            .flat_map(|r| lan_networks(r).map(|n| n.name.as_str()))
            .collect();
        for (network, tenants) in &self.tenants_by_network {
            if !networks.contains(network) {
                for tenant in tenants {
                    d.push(Diagnostic::warning(
                        "Tenant",
                        tenant,
                        "UnknownNetwork",
                        format!(
                            "tenant `{tenant}` names network `{network}`, which no router's LAN \
                             interface has{}",
                            known(networks.iter().copied())
                        ),
                    ));
                }
            }
        }
    }

    fn resolve_services(
        &mut self,
        services: &BTreeMap<&'a str, &'a Service>,
        all_routers: &BTreeMap<&'a str, &'a Router>,
        d: &mut Vec<Diagnostic>,
    ) {
        for (name, service) in services {
            let mut locations = Vec::new();
            for (i, location) in service.spec.locations.iter().enumerate() {
                let router = location.router.as_str();
                if let Some((router, _)) = self.routers.get_key_value(router) {
                    locations.push(i);
                    self.services_by_router
                        .entry(router)
                        .or_default()
                        .insert(name);
                } else if all_routers.contains_key(router) {
                    d.push(Diagnostic::error(
                        "Service",
                        name,
                        "LocationRouterUnusable",
                        format!(
                            "service `{name}` has a location on router `{router}`, which has \
                             errors of its own (see its status)"
                        ),
                    ));
                } else {
                    d.push(Diagnostic::error(
                        "Service",
                        name,
                        "UnknownRouter",
                        format!(
                            "service `{name}` has a location on router `{router}`, which does not \
                             exist{}",
                            known(all_routers.keys().copied())
                        ),
                    ));
                }
            }
            self.services
                .insert(name, ResolvedService { service, locations });
        }
    }

    fn resolve_policies(
        &mut self,
        policies: &BTreeMap<&'a str, &'a Policy>,
        d: &mut Vec<Diagnostic>,
    ) {
        let vectors: BTreeSet<&str> = self
            .routers
            .values()
            .flat_map(|r| r.spec.interfaces.iter())
            .filter(|i| i.role == InterfaceRole::Wan)
            .filter_map(|i| i.vector.as_ref().map(|v| v.as_str()))
            .collect();
        // Every (tenant, service) with the policies granting it.
        let mut granted: BTreeMap<(&'a str, &'a str), Vec<Grant<'a>>> = BTreeMap::new();
        for (name, policy) in policies {
            let mut usable = true;
            for tenant in &policy.spec.tenants {
                if !self.tenants.contains_key(tenant.as_str()) {
                    usable = false;
                    d.push(Diagnostic::error(
                        "Policy",
                        name,
                        "UnknownTenant",
                        format!(
                            "policy `{name}` names tenant `{tenant}`, which does not exist{}",
                            known(self.tenants.keys().copied())
                        ),
                    ));
                }
            }
            for service in &policy.spec.services {
                if !self.services.contains_key(service.as_str()) {
                    usable = false;
                    d.push(Diagnostic::error(
                        "Policy",
                        name,
                        "UnknownService",
                        format!(
                            "policy `{name}` names service `{service}`, which does not exist{}",
                            known(self.services.keys().copied())
                        ),
                    ));
                }
            }
            for vector in &policy.spec.path_preference {
                if !vectors.contains(vector.as_str()) {
                    d.push(Diagnostic::error(
                        "Policy",
                        name,
                        "UnknownVector",
                        format!(
                            "policy `{name}` prefers vector `{vector}`, which no WAN interface \
                             has{}",
                            known(vectors.iter().copied())
                        ),
                    ));
                }
            }
            // A policy with a dangling reference grants nothing: half a policy could open more
            // (or less) than its author meant.
            if !usable {
                continue;
            }
            for tenant in &policy.spec.tenants {
                for member in self.tenant_and_nested(tenant.as_str()) {
                    for service in &policy.spec.services {
                        if let Some((s, _)) = self.services.get_key_value(service.as_str()) {
                            granted.entry((member, s)).or_default().push(Grant {
                                policy_name: name,
                                policy,
                            });
                        }
                    }
                }
            }
        }
        for ((tenant, service), mut grants) in granted {
            // Several policies for one pair: the highest priority wins, then the first name.
            grants.sort_by_key(|g| (priority_rank(g.policy.spec.priority), g.policy_name));
            if grants.len() > 1 {
                let names: Vec<&str> = grants.iter().map(|g| g.policy_name).collect();
                d.push(Diagnostic::warning(
                    "Policy",
                    grants[0].policy_name,
                    "OverlappingPolicies",
                    format!(
                        "tenant `{tenant}` × service `{service}` is allowed by policies `{}`; \
                         `{}` applies (highest priority, then name)",
                        names.join("`, `"),
                        names[0]
                    ),
                ));
            }
            self.grants.insert((tenant, service), grants[0]);
            self.services_by_tenant
                .entry(tenant)
                .or_default()
                .insert(service);
            self.tenants_by_service
                .entry(service)
                .or_default()
                .insert(tenant);
        }
    }

    /// The tenant itself and every tenant nested inside it.
    fn tenant_and_nested(&self, tenant: &str) -> Vec<&'a str> {
        self.tenants
            .keys()
            .copied()
            .filter(|t| *t == tenant || enclosing(t).any(|e| e == tenant))
            .collect()
    }

    /// Peers by shared neighborhood. Only pairs that may peer are compared (edge–hub, hub–hub,
    /// and edges that ask for edge peering), so 10,000 edges cost 10,000 × hubs, not 10,000².
    fn resolve_peering(&mut self, d: &mut Vec<Diagnostic>) {
        let wants_edges = |r: &Router| r.spec.peering.as_ref().is_some_and(|p| p.edges);
        let mut hubs = Vec::new();
        let mut edges = Vec::new();
        let mut social_edges = Vec::new();
        for (name, router) in &self.routers {
            let entry = (*name, *router, wan_neighborhoods(router));
            match router.spec.role {
                RouterRole::Hub => hubs.push(entry),
                RouterRole::Edge if wants_edges(router) => {
                    social_edges.push(entry.clone());
                    edges.push(entry);
                }
                RouterRole::Edge => edges.push(entry),
            }
            self.peers.insert(name, BTreeSet::new());
        }
        let mut pairs = Vec::new();
        for (i, (a, ra, na)) in hubs.iter().enumerate() {
            for (b, rb, nb) in &hubs[i + 1..] {
                pairs.push((*a, *ra, na, *b, *rb, nb));
            }
            for (b, rb, nb) in &edges {
                pairs.push((*a, *ra, na, *b, *rb, nb));
            }
        }
        for (i, (a, ra, na)) in social_edges.iter().enumerate() {
            for (b, rb, nb) in &social_edges[i + 1..] {
                pairs.push((*a, *ra, na, *b, *rb, nb));
            }
        }
        for (a, ra, na, b, rb, nb) in pairs {
            if na.is_disjoint(nb) || !may_peer(a, ra, b, rb) {
                continue;
            }
            self.peers.entry(a).or_default().insert(b);
            self.peers.entry(b).or_default().insert(a);
        }
        for (name, router, _) in &edges {
            let has_hub = self.peers.get(name).is_some_and(|peers| {
                peers.iter().any(|p| {
                    self.routers
                        .get(p)
                        .is_some_and(|r| r.spec.role == RouterRole::Hub)
                })
            });
            if !has_hub {
                let restricted = router
                    .spec
                    .peering
                    .as_ref()
                    .is_some_and(|p| !p.hubs.is_empty());
                let message = if restricted {
                    format!(
                        "edge `{name}` shares no neighborhood with any hub named in its \
                         peering.hubs: check the names and the hubs' WAN neighborhoods"
                    )
                } else {
                    format!(
                        "edge `{name}` shares no neighborhood with any hub: give one of its WAN \
                         interfaces a neighborhood a hub's WAN interface has"
                    )
                };
                d.push(Diagnostic::error("Router", name, "NoReachableHub", message));
            }
        }
    }
}

fn may_peer(a: &str, ra: &Router, b: &str, rb: &Router) -> bool {
    let allows_hub = |edge: &Router, hub: &str| {
        edge.spec
            .peering
            .as_ref()
            .is_none_or(|p| p.hubs.is_empty() || p.hubs.iter().any(|h| h.as_str() == hub))
    };
    let wants_edges = |r: &Router| r.spec.peering.as_ref().is_some_and(|p| p.edges);
    match (ra.spec.role, rb.spec.role) {
        (RouterRole::Hub, RouterRole::Hub) => true,
        (RouterRole::Edge, RouterRole::Hub) => allows_hub(ra, b),
        (RouterRole::Hub, RouterRole::Edge) => allows_hub(rb, a),
        (RouterRole::Edge, RouterRole::Edge) => wants_edges(ra) && wants_edges(rb),
    }
}

pub fn priority_rank(p: Priority) -> u8 {
    match p {
        Priority::Critical => 0,
        Priority::High => 1,
        Priority::Normal => 2,
        Priority::Low => 3,
    }
}
