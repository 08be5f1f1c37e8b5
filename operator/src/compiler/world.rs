//! The resolved view of all objects, kept from one compile to the next: names indexed,
//! references checked, policies expanded into tenant × service grants, peerings decided.
//! Everything a router's selection reads from.
//!
//! [`World::update`] takes the whole intent every time. What grows with the number of routers —
//! the router index, spec hashes, peerings, the LAN networks and WAN vectors in use — is updated
//! only for the routers whose spec changed. What grows with tenants, services and policies is
//! derived again from the stored objects on every update: it is small, and its diagnostics are
//! then exactly those of a first compile. The update reports what changed ([`Changes`]) so that
//! the compiler can find the routers that depend on it (see [`dependents`](super::dependents)).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ipnet::IpNet;
use sha2::{Digest, Sha256};

use super::diagnostics::{Diagnostic, known};
use crate::crd::{InterfaceRole, Policy, Priority, Router, RouterRole, Service, Tenant};
use crate::manifests::Intent;

/// An object's name, shared by every index that mentions it.
pub type Name = Arc<str>;

/// A tenant as last seen, with what selections read from it often.
#[derive(Clone, Debug)]
pub struct TenantEntry {
    pub tenant: Arc<Tenant>,
    /// SHA-256 of the spec.
    pub hash: [u8; 32],
    /// The prefixes that parse (as written, not truncated).
    pub prefixes: Vec<IpNet>,
}

/// A router as last seen, with what selections and peering read from it often.
#[derive(Clone, Debug)]
pub struct RouterEntry {
    pub router: Arc<Router>,
    /// SHA-256 of the spec.
    pub hash: [u8; 32],
    /// It has a WAN interface, so it can be configured.
    pub usable: bool,
    pub neighborhoods: BTreeSet<String>,
    /// Its LAN networks' prefixes and its LAN interfaces' own subnets, truncated: a host on the
    /// LAN outside any named network can still belong to a tenant by prefix.
    pub lan_prefixes: Vec<IpNet>,
}

#[derive(Clone, Debug)]
struct Stored<T> {
    object: Arc<T>,
    hash: [u8; 32],
}

/// A service with the locations that survived resolution.
#[derive(Clone, Debug)]
pub struct ResolvedService {
    pub service: Arc<Service>,
    /// SHA-256 of the spec.
    pub hash: [u8; 32],
    /// Indexes into `service.spec.locations` whose router exists and is usable.
    pub locations: Vec<usize>,
    /// Its addresses that parse, truncated.
    pub prefixes: Vec<IpNet>,
    /// SHA-256 of what a router that only *knows* the service receives (addresses and
    /// transports, see [`World::nested`]): a change elsewhere in the spec leaves it alone.
    pub known_hash: [u8; 32],
}

impl ResolvedService {
    /// The routers of the surviving locations.
    pub fn routers(&self) -> impl Iterator<Item = &str> {
        self.locations
            .iter()
            .filter_map(|&i| self.service.spec.locations.get(i))
            .map(|l| l.router.as_str())
    }
}

/// The policy that grants one tenant × service pair.
#[derive(Clone, Debug)]
pub struct Grant {
    pub policy_name: Name,
    pub policy: Arc<Policy>,
    /// SHA-256 of the policy's spec.
    pub hash: [u8; 32],
}

/// What one [`World::update`] changed, with the derived indexes as they were before it, so that
/// both the old and the new dependents of a change can be found.
#[derive(Debug, Default)]
pub struct Changes {
    /// Routers added, removed, or whose spec changed (usable or not).
    pub routers: BTreeSet<Name>,
    /// Routers that lost or gained a peer, or whose peer changed: the old and new peers of
    /// changed routers.
    pub peers: BTreeSet<Name>,
    /// Tenants added, removed, or whose spec changed, with their previous entry.
    pub tenants: BTreeMap<Name, Option<TenantEntry>>,
    /// Services whose resolution differs: added, removed, spec or surviving locations changed.
    pub services: BTreeSet<Name>,
    /// Tenant × service pairs whose grant differs: added, removed, another policy, or the same
    /// policy with another spec.
    pub grants: BTreeSet<(Name, Name)>,
    /// Resolved services before the update.
    pub services_before: BTreeMap<Name, ResolvedService>,
    /// Grants before the update (tenant → service → grant).
    pub grants_before: BTreeMap<Name, BTreeMap<Name, Grant>>,
    /// Service → tenants granted it, before the update.
    pub tenants_by_service_before: BTreeMap<Name, BTreeSet<Name>>,
}

#[derive(Debug, Default)]
pub struct World {
    pub tenants: BTreeMap<Name, TenantEntry>,
    service_objects: BTreeMap<Name, Stored<Service>>,
    policies: BTreeMap<Name, Stored<Policy>>,
    /// Every router defined once, usable or not.
    routers: BTreeMap<Name, RouterEntry>,

    // Maintained per changed router.
    /// Usable router → its peers (symmetric).
    pub peers: BTreeMap<Name, BTreeSet<Name>>,
    /// LAN network name → the usable routers with a LAN interface on it.
    pub routers_by_network: BTreeMap<String, BTreeSet<Name>>,
    /// WAN vector → how many WAN interfaces of usable routers have it.
    vectors: BTreeMap<String, usize>,
    /// Usable routers by peering class.
    hubs: BTreeSet<Name>,
    edges: BTreeSet<Name>,
    /// Edges that ask for edge peering.
    social_edges: BTreeSet<Name>,
    no_wan: BTreeMap<Name, Diagnostic>,
    no_hub: BTreeMap<Name, Diagnostic>,

    // Derived again on every update.
    pub services: BTreeMap<Name, ResolvedService>,
    /// Tenant → service → the grant that applies, after nesting is expanded.
    pub grants: BTreeMap<Name, BTreeMap<Name, Grant>>,
    /// LAN network name → tenants that claim it.
    pub tenants_by_network: BTreeMap<String, BTreeSet<Name>>,
    /// Router → the services with a surviving location on it.
    pub services_by_router: BTreeMap<Name, BTreeSet<Name>>,
    /// Service → the tenants that may reach it (an index of `grants`).
    pub tenants_by_service: BTreeMap<Name, BTreeSet<Name>>,
    /// Service → the other services with an address inside one of its prefixes (equal
    /// included), sorted. A router that routes a service must also know these, or its
    /// longest-prefix match would take their flows for the enclosing service's
    /// ([`select`](super::select)).
    pub nested: BTreeMap<Name, Vec<Name>>,
}

fn name_of<K: kube::Resource>(object: &K) -> Option<&str> {
    object.meta().name.as_deref()
}

fn spec_hash<S: serde::Serialize>(spec: &S) -> [u8; 32] {
    // serde_json writes struct fields in declaration order and maps sorted (BTreeMap), so equal
    // specs hash equally.
    Sha256::digest(serde_json::to_vec(spec).unwrap_or_default()).into()
}

/// Objects by name, sorted. A name defined twice is an error and both definitions are dropped,
/// so that the result never depends on the order the objects came in.
fn index<'a, K: kube::Resource>(
    kind: &'static str,
    objects: &'a [K],
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<(&'a str, &'a K)> {
    let mut named = Vec::with_capacity(objects.len());
    for o in objects {
        match name_of(o) {
            Some(name) => named.push((name, o)),
            None => diagnostics.push(Diagnostic::error(
                kind,
                "",
                "MissingName",
                format!("a {kind} has no metadata.name"),
            )),
        }
    }
    named.sort_by(|a, b| a.0.cmp(b.0));
    let mut unique = Vec::with_capacity(named.len());
    for run in named.chunk_by(|a, b| a.0 == b.0) {
        match run {
            [one] => unique.push(*one),
            [(name, _), ..] => diagnostics.push(Diagnostic::error(
                kind,
                name,
                "DefinedTwice",
                format!("{kind} `{name}` is defined {} times; keep one", run.len()),
            )),
            [] => {}
        }
    }
    unique
}

/// Merges two sequences sorted by key: `f(key, old, new)` for every key on either side.
fn merge<K: Ord, A, B>(
    old: impl Iterator<Item = (K, A)>,
    new: impl Iterator<Item = (K, B)>,
    mut f: impl FnMut(K, Option<A>, Option<B>),
) {
    let mut old = old.peekable();
    let mut new = new.peekable();
    loop {
        let order = match (old.peek(), new.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((o, _)), Some((n, _))) => o.cmp(n),
        };
        match order {
            Ordering::Less => {
                if let Some((k, a)) = old.next() {
                    f(k, Some(a), None);
                }
            }
            Ordering::Greater => {
                if let Some((k, b)) = new.next() {
                    f(k, None, Some(b));
                }
            }
            Ordering::Equal => {
                if let (Some((k, a)), Some((_, b))) = (old.next(), new.next()) {
                    f(k, Some(a), Some(b));
                }
            }
        }
    }
}

/// Brings `store` in line with `objects` (sorted, unique), keeping the stored entry of every
/// object whose spec is unchanged. Returns the names that changed with their previous entries.
fn sync<T, E>(
    store: &mut BTreeMap<Name, E>,
    objects: &[(&str, &T)],
    unchanged: impl Fn(&E, &T) -> bool,
    entry: impl Fn(&T) -> E,
) -> Vec<(Name, Option<E>)> {
    let mut edits: Vec<(Name, Option<&T>)> = Vec::new();
    merge(
        store.iter().map(|(k, e)| (k.as_ref(), e)),
        objects.iter().map(|(k, o)| (*k, *o)),
        |name, stored, object| match (stored, object) {
            (Some(e), Some(o)) if unchanged(e, o) => {}
            (_, object) => edits.push((Name::from(name), object)),
        },
    );
    edits
        .into_iter()
        .map(|(name, object)| {
            let before = store.remove(&name);
            if let Some(object) = object {
                store.insert(Name::clone(&name), entry(object));
            }
            (name, before)
        })
        .collect()
}

/// Keys present on one side only, or whose values differ, of two sequences sorted by key.
fn differing<K: Ord, V>(
    old: impl Iterator<Item = (K, V)>,
    new: impl Iterator<Item = (K, V)>,
    same: impl Fn(&V, &V) -> bool,
) -> BTreeSet<K> {
    let mut out = BTreeSet::new();
    merge(old, new, |k, a, b| match (a, b) {
        (Some(a), Some(b)) if same(&a, &b) => {}
        _ => {
            out.insert(k);
        }
    });
    out
}

/// `pos.corp` → [`corp`]; `a.pos.corp` → [`pos.corp`, `corp`]. Only names, existence is checked
/// by the caller.
pub fn enclosing(name: &str) -> impl Iterator<Item = &str> {
    name.char_indices()
        .filter(|(_, c)| *c == '.')
        .filter_map(move |(i, _)| name.get(i + 1..))
}

pub fn lan_networks(router: &Router) -> impl Iterator<Item = &crate::crd::LanNetwork> {
    router
        .spec
        .interfaces
        .iter()
        .filter(|i| i.role == InterfaceRole::Lan)
        .flat_map(|i| i.networks.iter())
}

fn wan_vectors(router: &Router) -> impl Iterator<Item = &str> {
    router
        .spec
        .interfaces
        .iter()
        .filter(|i| i.role == InterfaceRole::Wan)
        .filter_map(|i| i.vector.as_ref().map(|v| v.as_str()))
}

/// Whether a tenant with these prefixes has hosts on a LAN with these prefixes.
pub fn overlaps(tenant_prefixes: &[IpNet], lan_prefixes: &[IpNet]) -> bool {
    tenant_prefixes
        .iter()
        .any(|t| lan_prefixes.iter().any(|l| l.contains(t) || t.contains(l)))
}

/// Whether one of `inner` lies inside (or equals) one of `outer`.
pub fn nested_in(inner: &[IpNet], outer: &[IpNet]) -> bool {
    inner.iter().any(|i| outer.iter().any(|o| o.contains(i)))
}

/// [`World::nested`] for these services. Every prefix is sorted by (family, network, length);
/// the prefixes inside a prefix P are then a run from P's network to its broadcast address, so
/// each service costs a binary search per prefix plus what it contains.
fn nesting(services: &BTreeMap<Name, ResolvedService>) -> BTreeMap<Name, Vec<Name>> {
    fn key(p: &IpNet) -> (bool, u128, u8) {
        match p {
            IpNet::V4(v4) => (false, u128::from(u32::from(v4.network())), v4.prefix_len()),
            IpNet::V6(v6) => (true, u128::from(v6.network()), v6.prefix_len()),
        }
    }
    let mut all: Vec<((bool, u128, u8), &Name)> = services
        .iter()
        .flat_map(|(name, s)| s.prefixes.iter().map(move |p| (key(p), name)))
        .collect();
    all.sort_unstable();
    let mut nested = BTreeMap::new();
    for (name, s) in services {
        let mut inside: Vec<Name> = Vec::new();
        for p in &s.prefixes {
            let (family, first, len) = key(p);
            let last = match p {
                IpNet::V4(v4) => u128::from(u32::from(v4.broadcast())),
                IpNet::V6(v6) => u128::from(v6.broadcast()),
            };
            let start = all.partition_point(|(k, _)| *k < (family, first, 0));
            for (k, other) in all.get(start..).into_iter().flatten() {
                if k.0 != family || k.1 > last {
                    break;
                }
                if k.2 >= len && *other != name {
                    inside.push(Name::clone(other));
                }
            }
        }
        if !inside.is_empty() {
            inside.sort_unstable();
            inside.dedup();
            nested.insert(Name::clone(name), inside);
        }
    }
    nested
}

impl TenantEntry {
    fn new(tenant: &Tenant) -> Self {
        Self {
            tenant: Arc::new(tenant.clone()),
            hash: spec_hash(&tenant.spec),
            prefixes: tenant
                .spec
                .prefixes
                .iter()
                .filter_map(|p| p.as_str().parse().ok())
                .collect(),
        }
    }
}

impl RouterEntry {
    fn new(router: &Router) -> Self {
        let wan = || {
            router
                .spec
                .interfaces
                .iter()
                .filter(|i| i.role == InterfaceRole::Wan)
        };
        let lan_prefixes = lan_networks(router)
            .flat_map(|n| n.prefixes.iter().map(|p| p.as_str()))
            .chain(
                router
                    .spec
                    .interfaces
                    .iter()
                    .filter(|i| i.role == InterfaceRole::Lan)
                    .flat_map(|i| i.addresses.iter().map(|a| a.as_str())),
            )
            .filter_map(|p| p.parse::<IpNet>().ok().map(|n| n.trunc()))
            .collect();
        Self {
            router: Arc::new(router.clone()),
            hash: spec_hash(&router.spec),
            usable: wan().next().is_some(),
            neighborhoods: wan()
                .filter_map(|i| i.neighborhood.as_ref().map(|n| n.to_string()))
                .collect(),
            lan_prefixes,
        }
    }

    fn wants_edges(&self) -> bool {
        self.router.spec.peering.as_ref().is_some_and(|p| p.edges)
    }
}

impl World {
    /// The routers that can be configured, by name.
    pub fn router_names(&self) -> impl Iterator<Item = &Name> {
        self.peers.keys()
    }

    /// A router that can be configured.
    pub fn router(&self, name: &str) -> Option<(&Name, &RouterEntry)> {
        self.routers.get_key_value(name).filter(|(_, r)| r.usable)
    }

    /// The routers that can be configured, with their entries.
    pub fn usable_routers(&self) -> impl Iterator<Item = (&Name, &RouterEntry)> {
        self.routers.iter().filter(|(_, r)| r.usable)
    }

    /// Brings the world in line with `intent` and returns what changed with the diagnostics of
    /// the whole intent.
    pub fn update(&mut self, intent: &Intent) -> (Changes, Vec<Diagnostic>) {
        let mut d = Vec::new();
        let tenants = index("Tenant", &intent.tenants, &mut d);
        let services = index("Service", &intent.services, &mut d);
        let policies = index("Policy", &intent.policies, &mut d);
        let routers = index("Router", &intent.routers, &mut d);
        let mut changes = Changes::default();

        self.update_routers(&routers, &mut changes);
        for (name, before) in sync(
            &mut self.tenants,
            &tenants,
            |e, t| e.tenant.spec == t.spec,
            TenantEntry::new,
        ) {
            changes.tenants.insert(name, before);
        }
        let stored = |o: &Service| Stored {
            object: Arc::new(o.clone()),
            hash: spec_hash(&o.spec),
        };
        sync(
            &mut self.service_objects,
            &services,
            |e, s| e.object.spec == s.spec,
            stored,
        );
        let stored = |o: &Policy| Stored {
            object: Arc::new(o.clone()),
            hash: spec_hash(&o.spec),
        };
        sync(
            &mut self.policies,
            &policies,
            |e, p| e.object.spec == p.spec,
            stored,
        );

        d.extend(self.no_wan.values().cloned());
        d.extend(self.no_hub.values().cloned());
        self.resolve_tenants(&mut d);
        changes.services_before = std::mem::take(&mut self.services);
        changes.grants_before = std::mem::take(&mut self.grants);
        changes.tenants_by_service_before = std::mem::take(&mut self.tenants_by_service);
        self.services_by_router.clear();
        self.resolve_services(&mut d);
        self.nested = nesting(&self.services);
        self.resolve_policies(&mut d);
        changes.services = differing(
            changes
                .services_before
                .iter()
                .map(|(k, v)| (Name::clone(k), v)),
            self.services.iter().map(|(k, v)| (Name::clone(k), v)),
            |a, b| a.hash == b.hash && a.locations == b.locations,
        );
        changes.grants = differing(
            flatten(&changes.grants_before),
            flatten(&self.grants),
            |a, b| a.policy_name == b.policy_name && a.hash == b.hash,
        );
        (changes, d)
    }

    /// Updates the router index, the per-router indexes and the peerings for the routers whose
    /// spec changed.
    fn update_routers(&mut self, routers: &[(&str, &Router)], changes: &mut Changes) {
        let changed = sync(
            &mut self.routers,
            routers,
            |e, r| e.router.spec == r.spec,
            RouterEntry::new,
        );
        for (name, before) in &changed {
            changes.routers.insert(Name::clone(name));
            self.no_wan.remove(name);
            self.no_hub.remove(name);
            if let Some(before) = before.as_ref().filter(|b| b.usable) {
                self.forget_router(name, before, changes);
            }
        }
        // Peers are decided once every changed router is in place: two changed routers may peer.
        let mut added = Vec::new();
        for (name, _) in &changed {
            let Some(entry) = self.routers.get(name) else {
                continue;
            };
            if entry.usable {
                let entry = entry.clone();
                self.index_router(name, &entry);
                added.push((Name::clone(name), entry));
            } else {
                self.no_wan.insert(
                    Name::clone(name),
                    Diagnostic::error(
                        "Router",
                        name,
                        "NoWanInterface",
                        format!(
                            "router `{name}` has no WAN interface: add an interface with role \
                             `wan`, a neighborhood and a vector"
                        ),
                    ),
                );
            }
        }
        for (name, entry) in &added {
            self.peer_router(name, entry, changes);
        }
        let touched: Vec<Name> = changes
            .routers
            .iter()
            .chain(&changes.peers)
            .cloned()
            .collect();
        for name in touched {
            self.check_hub(&name);
        }
    }

    /// Removes a usable router's entries from the indexes and its peerings.
    fn forget_router(&mut self, name: &Name, before: &RouterEntry, changes: &mut Changes) {
        for network in lan_networks(&before.router) {
            if let Some(routers) = self.routers_by_network.get_mut(network.name.as_str()) {
                routers.remove(name);
                if routers.is_empty() {
                    self.routers_by_network.remove(network.name.as_str());
                }
            }
        }
        for vector in wan_vectors(&before.router) {
            if let Some(count) = self.vectors.get_mut(vector) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.vectors.remove(vector);
                }
            }
        }
        self.hubs.remove(name);
        self.edges.remove(name);
        self.social_edges.remove(name);
        for peer in self.peers.remove(name).unwrap_or_default() {
            if let Some(theirs) = self.peers.get_mut(&peer) {
                theirs.remove(name);
            }
            changes.peers.insert(peer);
        }
    }

    /// Adds a usable router to the indexes, without peers yet.
    fn index_router(&mut self, name: &Name, entry: &RouterEntry) {
        for network in lan_networks(&entry.router) {
            self.routers_by_network
                .entry(network.name.to_string())
                .or_default()
                .insert(Name::clone(name));
        }
        for vector in wan_vectors(&entry.router) {
            *self.vectors.entry(vector.to_string()).or_default() += 1;
        }
        match entry.router.spec.role {
            RouterRole::Hub => {
                self.hubs.insert(Name::clone(name));
            }
            RouterRole::Edge => {
                self.edges.insert(Name::clone(name));
                if entry.wants_edges() {
                    self.social_edges.insert(Name::clone(name));
                }
            }
        }
        self.peers.insert(Name::clone(name), BTreeSet::new());
    }

    /// Peers a usable router by shared neighborhood. Only pairs that may peer are compared
    /// (edge–hub, hub–hub, and edges that ask for edge peering), so a new edge costs the number
    /// of hubs, and a new hub the number of routers.
    fn peer_router(&mut self, name: &Name, entry: &RouterEntry, changes: &mut Changes) {
        let mut partners: Vec<&Name> = self.hubs.iter().collect();
        match entry.router.spec.role {
            RouterRole::Hub => partners.extend(&self.edges),
            RouterRole::Edge if entry.wants_edges() => partners.extend(&self.social_edges),
            RouterRole::Edge => {}
        }
        let found: Vec<Name> = partners
            .into_iter()
            .filter(|other| *other != name)
            .filter(|other| {
                self.routers.get(*other).is_some_and(|o| {
                    o.usable
                        && !entry.neighborhoods.is_disjoint(&o.neighborhoods)
                        && may_peer(name, &entry.router, other, &o.router)
                })
            })
            .cloned()
            .collect();
        for other in found {
            if let Some(theirs) = self.peers.get_mut(&other) {
                theirs.insert(Name::clone(name));
            }
            if let Some(mine) = self.peers.get_mut(name) {
                mine.insert(Name::clone(&other));
            }
            changes.peers.insert(other);
        }
    }

    /// An edge needs a hub among its peers.
    fn check_hub(&mut self, name: &Name) {
        self.no_hub.remove(name);
        let Some((_, entry)) = self.router(name) else {
            return;
        };
        if entry.router.spec.role != RouterRole::Edge {
            return;
        }
        let has_hub = self
            .peers
            .get(name)
            .is_some_and(|peers| peers.iter().any(|p| self.hubs.contains(p)));
        if has_hub {
            return;
        }
        let restricted = entry
            .router
            .spec
            .peering
            .as_ref()
            .is_some_and(|p| !p.hubs.is_empty());
        let message = if restricted {
            format!(
                "edge `{name}` shares no neighborhood with any hub named in its peering.hubs: \
                 check the names and the hubs' WAN neighborhoods"
            )
        } else {
            format!(
                "edge `{name}` shares no neighborhood with any hub: give one of its WAN \
                 interfaces a neighborhood a hub's WAN interface has"
            )
        };
        self.no_hub.insert(
            Name::clone(name),
            Diagnostic::error("Router", name, "NoReachableHub", message),
        );
    }

    fn resolve_tenants(&mut self, d: &mut Vec<Diagnostic>) {
        self.tenants_by_network.clear();
        let mut claims: BTreeMap<IpNet, BTreeSet<&Name>> = BTreeMap::new();
        for (name, entry) in &self.tenants {
            for network in &entry.tenant.spec.networks {
                self.tenants_by_network
                    .entry(network.to_string())
                    .or_default()
                    .insert(Name::clone(name));
            }
            for prefix in &entry.tenant.spec.prefixes {
                match prefix.as_str().parse::<IpNet>() {
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
                let names: Vec<&str> = owners.iter().map(|n| n.as_ref()).collect();
                let message = format!(
                    "tenants `{}` both claim prefix {net}: give the prefix to one tenant, or \
                     nest a longer prefix inside it",
                    names.join("` and `")
                );
                for owner in names {
                    d.push(Diagnostic::error(
                        "Tenant",
                        owner,
                        "OverlappingPrefix",
                        message.clone(),
                    ));
                }
            }
        }
        for (network, tenants) in &self.tenants_by_network {
            if !self.routers_by_network.contains_key(network) {
                for tenant in tenants {
                    d.push(Diagnostic::warning(
                        "Tenant",
                        tenant,
                        "UnknownNetwork",
                        format!(
                            "tenant `{tenant}` names network `{network}`, which no router's LAN \
                             interface has{}",
                            known(self.routers_by_network.keys().map(String::as_str))
                        ),
                    ));
                }
            }
        }
    }

    fn resolve_services(&mut self, d: &mut Vec<Diagnostic>) {
        for (name, stored) in &self.service_objects {
            let mut locations = Vec::new();
            for (i, location) in stored.object.spec.locations.iter().enumerate() {
                let router = location.router.as_str();
                match self.routers.get_key_value(router) {
                    Some((router, entry)) if entry.usable => {
                        locations.push(i);
                        self.services_by_router
                            .entry(Name::clone(router))
                            .or_default()
                            .insert(Name::clone(name));
                    }
                    Some(_) => d.push(Diagnostic::error(
                        "Service",
                        name,
                        "LocationRouterUnusable",
                        format!(
                            "service `{name}` has a location on router `{router}`, which has \
                             errors of its own (see its status)"
                        ),
                    )),
                    None => d.push(Diagnostic::error(
                        "Service",
                        name,
                        "UnknownRouter",
                        format!(
                            "service `{name}` has a location on router `{router}`, which does not \
                             exist{}",
                            known(self.routers.keys().map(|k| k.as_ref()))
                        ),
                    )),
                }
            }
            let spec = &stored.object.spec;
            self.services.insert(
                Name::clone(name),
                ResolvedService {
                    service: Arc::clone(&stored.object),
                    hash: stored.hash,
                    locations,
                    prefixes: spec
                        .addresses
                        .iter()
                        .filter_map(|p| p.as_str().parse::<IpNet>().ok())
                        .map(|p| p.trunc())
                        .collect(),
                    known_hash: spec_hash(&(&spec.addresses, &spec.transports)),
                },
            );
        }
    }

    fn resolve_policies(&mut self, d: &mut Vec<Diagnostic>) {
        // Every (tenant, service) with the policies granting it.
        type Granting<'p> = Vec<(&'p Name, &'p Stored<Policy>)>;
        let mut granted: BTreeMap<(Name, Name), Granting> = BTreeMap::new();
        for (name, stored) in &self.policies {
            let spec = &stored.object.spec;
            let mut usable = true;
            for tenant in &spec.tenants {
                if !self.tenants.contains_key(tenant.as_str()) {
                    usable = false;
                    d.push(Diagnostic::error(
                        "Policy",
                        name,
                        "UnknownTenant",
                        format!(
                            "policy `{name}` names tenant `{tenant}`, which does not exist{}",
                            known(self.tenants.keys().map(|k| k.as_ref()))
                        ),
                    ));
                }
            }
            for service in &spec.services {
                if !self.services.contains_key(service.as_str()) {
                    usable = false;
                    d.push(Diagnostic::error(
                        "Policy",
                        name,
                        "UnknownService",
                        format!(
                            "policy `{name}` names service `{service}`, which does not exist{}",
                            known(self.services.keys().map(|k| k.as_ref()))
                        ),
                    ));
                }
            }
            for vector in &spec.path_preference {
                if !self.vectors.contains_key(vector.as_str()) {
                    d.push(Diagnostic::error(
                        "Policy",
                        name,
                        "UnknownVector",
                        format!(
                            "policy `{name}` prefers vector `{vector}`, which no WAN interface \
                             has{}",
                            known(self.vectors.keys().map(String::as_str))
                        ),
                    ));
                }
            }
            // A policy with a dangling reference grants nothing: half a policy could open more
            // (or less) than its author meant.
            if !usable {
                continue;
            }
            for tenant in &spec.tenants {
                for member in self.tenant_and_nested(tenant.as_str()) {
                    for service in &spec.services {
                        if let Some((s, _)) = self.services.get_key_value(service.as_str()) {
                            granted
                                .entry((Name::clone(member), Name::clone(s)))
                                .or_default()
                                .push((name, stored));
                        }
                    }
                }
            }
        }
        let mut grants: BTreeMap<Name, BTreeMap<Name, Grant>> = BTreeMap::new();
        for ((tenant, service), mut candidates) in granted {
            // Several policies for one pair: the highest priority wins, then the first name.
            candidates.sort_by_key(|(name, p)| (priority_rank(p.object.spec.priority), *name));
            let Some(&(winner, policy)) = candidates.first() else {
                continue;
            };
            if candidates.len() > 1 {
                let names: Vec<&str> = candidates.iter().map(|(n, _)| n.as_ref()).collect();
                d.push(Diagnostic::warning(
                    "Policy",
                    winner,
                    "OverlappingPolicies",
                    format!(
                        "tenant `{tenant}` × service `{service}` is allowed by policies `{}`; \
                         `{winner}` applies (highest priority, then name)",
                        names.join("`, `"),
                    ),
                ));
            }
            self.tenants_by_service
                .entry(Name::clone(&service))
                .or_default()
                .insert(Name::clone(&tenant));
            grants.entry(tenant).or_default().insert(
                service,
                Grant {
                    policy_name: Name::clone(winner),
                    policy: Arc::clone(&policy.object),
                    hash: policy.hash,
                },
            );
        }
        self.grants = grants;
    }

    /// The tenant itself and every tenant nested inside it.
    fn tenant_and_nested<'w>(&'w self, tenant: &'w str) -> impl Iterator<Item = &'w Name> {
        self.tenants
            .keys()
            .filter(move |t| t.as_ref() == tenant || enclosing(t).any(|e| e == tenant))
    }

    /// The grant of `tenant` × `service`, if any.
    pub fn grant(&self, tenant: &str, service: &str) -> Option<&Grant> {
        self.grants.get(tenant)?.get(service)
    }
}

/// Grants as one sequence sorted by (tenant, service).
fn flatten(
    grants: &BTreeMap<Name, BTreeMap<Name, Grant>>,
) -> impl Iterator<Item = ((Name, Name), &Grant)> {
    grants.iter().flat_map(|(t, by_service)| {
        by_service
            .iter()
            .map(move |(s, g)| ((Name::clone(t), Name::clone(s)), g))
    })
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
