//! One router's share of the world, and its config built from that share alone.
//!
//! [`select`] decides what a router needs to know (the services it routes, and those nested in
//! them that it only knows, see [`Contents::known`]); [`Selection::fingerprint`] hashes exactly
//! those objects; [`Selection::build`] reads nothing else, and neither does
//! [`pieces::encode`](super::pieces::encode), which writes the same config from pre-encoded
//! pieces. So a router whose fingerprint did not change would get a byte-identical config, and
//! the incremental compiler can skip it.

use std::sync::{Arc, OnceLock};

use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use signpost_proto::v1 as pb;

use super::Options;
use super::diagnostics::Diagnostic;
use super::units::{parse_bits_per_second, parse_loss_ppm};
use super::world::{Name, RouterEntry, World, enclosing, lan_networks, overlaps};
use crate::crd::{
    Direction, Interface, InterfaceRole, LoadBalancing, PortRange, Priority, Protocol, Router,
    RouterLimits, RouterRole, SecurityMode, TrafficClass,
};

/// Waypoint ports when a WAN interface does not say.
pub const DEFAULT_WAYPOINT_PORTS: (u32, u32) = (16384, 65535);

/// What a router's config holds besides its own spec and its peers: tenants, services (those it
/// routes and those it only knows, see [`known`](Contents::known)) and access entries, and the
/// grants it cannot honour. Routers that front no service and have the
/// same local tenants and peers (the stores of a chain, mostly) have the same contents, so the
/// compiler makes them once per [`Shape`] and shares them, fingerprint and encoding included.
#[derive(Debug)]
pub struct Contents<'w> {
    tenants: Vec<&'w str>,
    /// The services it routes: those its tenants may reach, and those it fronts.
    services: Vec<&'w str>,
    /// The services it only knows: nested in a prefix of one it routes, not routed themselves.
    known: Vec<&'w str>,
    /// By tenant, then service.
    access: Vec<(&'w str, &'w str)>,
    /// (tenant, service, policy) granted to a local tenant, with no location of the service on
    /// the router or its peers.
    unreachable: Vec<(&'w str, &'w str, &'w str)>,
    fingerprint: OnceLock<[u8; 32]>,
    /// Written by [`pieces`](super::pieces) on first use.
    pub(super) encoded: OnceLock<Vec<u8>>,
}

/// What decides the [`Contents`] of a router that fronts no service.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Shape<'w> {
    local: Vec<&'w str>,
    peers: Vec<&'w str>,
}

/// What one router's config is made of.
#[derive(Debug)]
pub struct Selection<'w> {
    world: &'w World,
    name: &'w Name,
    entry: &'w RouterEntry,
    peers: Vec<&'w Name>,
    contents: Arc<Contents<'w>>,
}

/// Chooses what router `name` needs. `None` when the router cannot be configured (its own
/// diagnostics were reported while resolving).
pub fn select<'w>(
    world: &'w World,
    name: &str,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Selection<'w>> {
    let (name, entry) = world.router(name)?;
    let local = local_tenants(world, entry);
    let contents = Arc::new(contents(world, name, &local)?);
    let selection = Selection::new(world, name, contents)?;
    selection.diagnose(diagnostics);
    Some(selection)
}

/// The shape of router `name` when it fronts no service (and so its contents depend on its
/// local tenants and its peers only); `None` when it does, or cannot be configured.
pub fn shape<'w>(world: &'w World, name: &str) -> Option<Shape<'w>> {
    let (name, entry) = world.router(name)?;
    if world.services_by_router.contains_key(name.as_ref()) {
        return None;
    }
    Some(Shape {
        local: local_tenants(world, entry),
        peers: world
            .peers
            .get(name.as_ref())?
            .iter()
            .map(|p| p.as_ref())
            .collect(),
    })
}

/// The contents of router `name`, for any router; `shape(name)` gives the same for `name`'s
/// shape.
pub fn contents_of<'w>(world: &'w World, name: &str) -> Option<Contents<'w>> {
    let (name, entry) = world.router(name)?;
    contents(world, name, &local_tenants(world, entry))
}

/// The contents shared by every router of `shape`.
pub fn shaped_contents<'w>(world: &'w World, shape: &Shape<'w>) -> Contents<'w> {
    contents_for(world, None, &shape.local, |at| {
        shape.peers.binary_search(&at).is_ok()
    })
}

/// Tenants whose hosts can appear on the router's LAN, by named network or by prefix; sorted.
fn local_tenants<'w>(world: &'w World, entry: &RouterEntry) -> Vec<&'w str> {
    let mut local: Vec<&'w str> = Vec::new();
    for network in lan_networks(&entry.router) {
        if let Some(tenants) = world.tenants_by_network.get(network.name.as_str()) {
            local.extend(tenants.iter().map(|t| t.as_ref()));
        }
    }
    if !entry.lan_prefixes.is_empty() {
        for (tenant_name, tenant) in &world.tenants {
            if overlaps(&tenant.prefixes, &entry.lan_prefixes) {
                local.push(tenant_name);
            }
        }
    }
    local.sort_unstable();
    local.dedup();
    local
}

fn contents<'w>(world: &'w World, name: &'w Name, local: &[&'w str]) -> Option<Contents<'w>> {
    let peers = world.peers.get(name.as_ref())?;
    Some(contents_for(world, Some(name), local, |at| {
        at == name.as_ref() || peers.contains(at)
    }))
}

/// `router` is the router whose services (the ones it fronts) are included, if any; `near`
/// says whether a location on a router is on this router or one of its peers.
fn contents_for<'w>(
    world: &'w World,
    router: Option<&'w Name>,
    local: &[&'w str],
    near: impl Fn(&str) -> bool,
) -> Contents<'w> {
    let fronted = router.and_then(|r| world.services_by_router.get(r.as_ref()));
    // Every tenant allowed to a service the router fronts; those need no route to it.
    let mut fronted_access: Vec<(&'w str, &'w str)> = Vec::new();
    for service in fronted.into_iter().flatten() {
        for tenant in world.tenants_by_service.get(service).into_iter().flatten() {
            fronted_access.push((tenant, service));
        }
    }
    fronted_access.sort_unstable();
    let mut access: Vec<(&'w str, &'w str)> = Vec::new();
    let mut unreachable = Vec::new();
    for &tenant in local {
        for (service, grant) in world.grants.get(tenant).into_iter().flatten() {
            if fronted_access
                .binary_search(&(tenant, service.as_ref()))
                .is_ok()
            {
                continue;
            }
            let reachable = world
                .services
                .get(service)
                .is_some_and(|s| s.routers().any(&near));
            if reachable {
                access.push((tenant, service));
            } else {
                unreachable.push((tenant, service.as_ref(), grant.policy_name.as_ref()));
            }
        }
    }
    access.extend(fronted_access);
    access.sort_unstable();
    access.dedup();

    let mut tenants: Vec<&'w str> = local.to_vec();
    tenants.extend(access.iter().map(|(t, _)| *t));
    tenants.sort_unstable();
    tenants.dedup();
    let enclosing_tenants: Vec<&'w str> = tenants
        .iter()
        .flat_map(|t| enclosing(t))
        .filter_map(|e| world.tenants.get_key_value(e).map(|(k, _)| k.as_ref()))
        .collect();
    tenants.extend(enclosing_tenants);
    tenants.sort_unstable();
    tenants.dedup();
    let mut services: Vec<&'w str> = access.iter().map(|(_, s)| *s).collect();
    services.extend(fronted.into_iter().flatten().map(|s| s.as_ref()));
    services.sort_unstable();
    services.dedup();
    // Known, not allowed: without them, the longest match at the router would take a flow to a
    // nested service's address for the enclosing service's (a guest's flow to `inventory` for
    // `internet`) and let it through.
    let mut known: Vec<&'w str> = services
        .iter()
        .filter_map(|s| world.nested.get(*s))
        .flatten()
        .map(|n| n.as_ref())
        .filter(|n| services.binary_search(n).is_err())
        .collect();
    known.sort_unstable();
    known.dedup();
    Contents {
        tenants,
        services,
        known,
        access,
        unreachable,
        fingerprint: OnceLock::new(),
        encoded: OnceLock::new(),
    }
}

impl<'w> Contents<'w> {
    pub fn tenants(&self) -> &[&'w str] {
        &self.tenants
    }

    /// The services it routes.
    pub fn services(&self) -> &[&'w str] {
        &self.services
    }

    /// The services it knows without routing them: each lies inside a prefix of one it routes
    /// and is sent with its name, prefixes and transports only (no locations, no access
    /// entries), so that the router classifies their flows as theirs and denies them.
    pub fn known(&self) -> &[&'w str] {
        &self.known
    }

    /// Every service of the config in its order (by name), each with whether it is only known.
    pub fn listed(&self) -> impl Iterator<Item = (&'w str, bool)> + '_ {
        let mut routed = self.services.iter().copied().peekable();
        let mut known = self.known.iter().copied().peekable();
        std::iter::from_fn(move || match (routed.peek(), known.peek()) {
            (Some(r), Some(k)) if k < r => known.next().map(|k| (k, true)),
            (Some(_), _) => routed.next().map(|r| (r, false)),
            (None, _) => known.next().map(|k| (k, true)),
        })
    }

    pub fn access(&self) -> &[(&'w str, &'w str)] {
        &self.access
    }

    /// SHA-256 over every object the contents come from; computed once.
    pub fn fingerprint(&self, w: &World) -> [u8; 32] {
        *self.fingerprint.get_or_init(|| {
            let mut h = Sha256::new();
            for t in &self.tenants {
                put(&mut h, b'T', t, w.tenants.get(*t).map(|e| &e.hash));
            }
            for s in &self.services {
                let resolved = w.services.get(*s);
                put(&mut h, b'S', s, resolved.map(|r| &r.hash));
                if let Some(resolved) = resolved {
                    // Count first, so that the index list cannot run into the next item.
                    h.update((resolved.locations.len() as u64).to_be_bytes());
                    for i in &resolved.locations {
                        h.update((*i as u64).to_be_bytes());
                    }
                }
            }
            for s in &self.known {
                put(&mut h, b'K', s, w.services.get(*s).map(|r| &r.known_hash));
            }
            for (t, s) in &self.access {
                if let Some(g) = w.grant(t, s) {
                    put(&mut h, b'A', t, None);
                    put(&mut h, b'a', s, Some(&g.hash));
                    h.update(g.policy_name.as_bytes());
                    h.update([0]);
                }
            }
            h.finalize().into()
        })
    }
}

/// Writes one fingerprint item as tag, name, NUL, spec hash: unambiguous without allocating.
fn put(h: &mut Sha256, tag: u8, name: &str, hash: Option<&[u8; 32]>) {
    h.update([tag]);
    h.update(name.as_bytes());
    h.update([0]);
    h.update(hash.map(|x| &x[..]).unwrap_or(&[0; 32]));
}

impl<'w> Selection<'w> {
    /// Router `name` with `contents`, which must be its own: [`contents_of`] it, or the
    /// [`shaped_contents`] of its [`shape`].
    pub fn new(world: &'w World, name: &str, contents: Arc<Contents<'w>>) -> Option<Self> {
        let (name, entry) = world.router(name)?;
        Some(Self {
            world,
            name,
            entry,
            peers: world.peers.get(name.as_ref())?.iter().collect(),
            contents,
        })
    }

    /// The router's own diagnostics: grants its local tenants cannot use.
    pub fn diagnose(&self, diagnostics: &mut Vec<Diagnostic>) {
        let name = self.name;
        for (tenant, service, policy) in &self.contents.unreachable {
            diagnostics.push(Diagnostic::warning(
                "Router",
                name,
                "ServiceUnreachable",
                format!(
                    "policy `{policy}` lets tenant `{tenant}` reach service `{service}`, but no \
                     location of it is on router `{name}` or one of its peers"
                ),
            ));
        }
    }

    pub fn name(&self) -> &'w Name {
        self.name
    }

    pub fn entry(&self) -> &'w RouterEntry {
        self.entry
    }

    /// Its peers, by name.
    pub fn peers(&self) -> &[&'w Name] {
        &self.peers
    }

    pub fn contents(&self) -> &Contents<'w> {
        &self.contents
    }

    /// SHA-256 over everything [`build`](Self::build) reads.
    pub fn fingerprint(&self, options: &Options) -> [u8; 32] {
        let mut h = Sha256::new();
        let w = self.world;
        put(&mut h, b'R', self.name, Some(&self.entry.hash));
        // Count first, so that the peers cannot run into the contents' digest.
        h.update((self.peers.len() as u64).to_be_bytes());
        for p in &self.peers {
            put(&mut h, b'P', p, w.router(p).map(|(_, e)| &e.hash));
        }
        h.update(self.contents.fingerprint(w));
        h.update(options.key_master);
        h.update(options.key_epoch.to_be_bytes());
        h.finalize().into()
    }

    /// The router's config.
    pub fn build(&self, options: &Options) -> pb::RouterConfig {
        let w = self.world;
        let keys = PeerKeys::new(&options.key_master);
        let tail = tail(options);
        let c = &self.contents;
        pb::RouterConfig {
            tenants: c.tenants.iter().filter_map(|t| tenant(w, t)).collect(),
            services: c
                .listed()
                .filter_map(|(s, known)| {
                    if known {
                        known_service(w, s)
                    } else {
                        service(w, s)
                    }
                })
                .collect(),
            access: c
                .access
                .iter()
                .filter_map(|(t, s)| access_rule(w, t, s))
                .collect(),
            peers: self
                .peers
                .iter()
                .filter_map(|p| peer(w, self.name, &self.entry.router, p, &keys, options))
                .collect(),
            qos_classes: tail.qos_classes,
            limits: Some(limits(self.entry.router.spec.limits.as_ref())),
            key_epoch: tail.key_epoch,
            path_monitoring: self.trailer().path_monitoring,
            ..self.header()
        }
    }

    /// The fields that come from the router's own spec (1 to 5), the others left empty.
    pub fn header(&self) -> pb::RouterConfig {
        let spec = &self.entry.router.spec;
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
            ..Default::default()
        }
    }

    /// The fields from the router's own spec numbered after the tail (13 on), the others
    /// left empty: encoded last, so that the assembled encoding stays in field order.
    pub fn trailer(&self) -> pb::RouterConfig {
        let spec = &self.entry.router.spec;
        pb::RouterConfig {
            path_monitoring: spec.path_monitoring.as_ref().map(path_monitoring),
            ..Default::default()
        }
    }
}

fn path_monitoring(m: &crate::crd::PathMonitoring) -> pb::PathMonitoring {
    use crate::crd::BfdAuthentication;
    let interval = m.interval_ms.unwrap_or(0);
    pb::PathMonitoring {
        min_tx_ms: interval,
        min_rx_ms: interval,
        multiplier: m.multiplier.map_or(0, u32::from),
        authentication: match m.authentication {
            None => pb::BfdAuthentication::Unspecified,
            Some(BfdAuthentication::PeerKey) => pb::BfdAuthentication::PeerKey,
            Some(BfdAuthentication::None) => pb::BfdAuthentication::None,
        } as i32,
        hold_down_ms: m.hold_down_ms.unwrap_or(0),
        disabled: m.disabled,
    }
}

/// The fields that depend on the options only (10 to 12), the others left empty.
pub fn tail(options: &Options) -> pb::RouterConfig {
    pb::RouterConfig {
        qos_classes: qos_classes(),
        limits: Some(pb::Limits::default()),
        key_epoch: options.key_epoch,
        ..Default::default()
    }
}

/// A tenant as routers see it; its parent is the nearest enclosing tenant that exists.
pub fn tenant(w: &World, name: &str) -> Option<pb::Tenant> {
    let entry = w.tenants.get(name)?;
    Some(pb::Tenant {
        name: name.to_string(),
        networks: entry
            .tenant
            .spec
            .networks
            .iter()
            .map(|n| n.to_string())
            .collect(),
        prefixes: entry
            .tenant
            .spec
            .prefixes
            .iter()
            .map(|p| canonical_prefix(p.as_str()))
            .collect(),
        parent: parent(w, name).map(|p| p.to_string()).unwrap_or_default(),
    })
}

/// The nearest enclosing tenant that exists.
pub fn parent<'w>(w: &'w World, name: &str) -> Option<&'w Name> {
    enclosing(name).find_map(|e| w.tenants.get_key_value(e).map(|(k, _)| k))
}

pub fn service(w: &World, name: &str) -> Option<pb::Service> {
    let resolved = w.services.get(name)?;
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
        health_check: spec.health_check.as_ref().map(|h| pb::HealthCheck {
            disabled: h.disabled,
            interval_ms: h.interval_ms.unwrap_or(0),
            timeout_ms: h.timeout_ms.unwrap_or(0),
            unhealthy_threshold: h.unhealthy_threshold.unwrap_or(0),
            healthy_threshold: h.healthy_threshold.unwrap_or(0),
            port: h.port.map_or(0, u32::from),
        }),
    })
}

/// A service as a router that only knows it sees it: its name, prefixes and transports.
pub fn known_service(w: &World, name: &str) -> Option<pb::Service> {
    let full = service(w, name)?;
    Some(pb::Service {
        name: full.name,
        prefixes: full.prefixes,
        transports: full.transports,
        ..Default::default()
    })
}

pub fn access_rule(w: &World, tenant: &str, service: &str) -> Option<pb::AccessRule> {
    let grant = w.grant(tenant, service)?;
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
                burst_bytes: (bits_per_second / 80).max(if bits_per_second > 0 { 1500 } else { 0 }),
                new_sessions_per_second: r.new_sessions_per_second.unwrap_or(0),
            }
        }),
        security: security(spec.security) as i32,
        direction: direction(spec.direction) as i32,
    })
}

/// Router `name`'s entry for its peer `peer`: a path per pair of WAN interfaces in a shared
/// neighborhood, and the keys of the current and the previous epoch.
pub fn peer(
    w: &World,
    name: &str,
    router: &Router,
    peer: &str,
    keys: &PeerKeys,
    options: &Options,
) -> Option<pb::Peer> {
    let (_, remote) = w.router(peer)?;
    let remote = &remote.router;
    let remote_wan: Vec<&Interface> = wan_interfaces(remote).collect();
    let mut paths = Vec::new();
    for local_if in wan_interfaces(router) {
        for remote_if in &remote_wan {
            let (Some(ln), Some(rn)) = (&local_if.neighborhood, &remote_if.neighborhood) else {
                continue;
            };
            if ln != rn {
                continue;
            }
            paths.push(pb::PeerPath {
                id: format!("{name}/{}->{peer}/{}", local_if.name, remote_if.name),
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
            key: keys.key(name, peer, epoch).to_vec(),
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

fn wan_interfaces(r: &Router) -> impl Iterator<Item = &Interface> {
    r.spec
        .interfaces
        .iter()
        .filter(|i| i.role == InterfaceRole::Wan)
}

/// Derives peer keys from the operator's master secret: HKDF-SHA256, extracted once and expanded
/// per pair and epoch.
#[derive(Clone)]
pub struct PeerKeys {
    hkdf: Hkdf<Sha256>,
}

impl PeerKeys {
    pub fn new(master: &[u8; 32]) -> Self {
        Self {
            hkdf: Hkdf::<Sha256>::new(Some(b"signpost peer key v1"), master),
        }
    }

    /// The key routers `a` and `b` share for `epoch`, with the two names in sorted order so both
    /// ends derive the same key.
    pub fn key(&self, a: &str, b: &str, epoch: u64) -> [u8; 32] {
        let (first, second) = if a <= b { (a, b) } else { (b, a) };
        let mut key = [0u8; 32];
        self.hkdf
            .expand_multi_info(
                &[
                    first.as_bytes(),
                    &[0],
                    second.as_bytes(),
                    &[0],
                    &epoch.to_be_bytes(),
                ],
                &mut key,
            )
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        key
    }
}

impl std::fmt::Debug for PeerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerKeys(..)")
    }
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
        gateway: i
            .gateway
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
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

/// One queue per priority on every WAN link — the router's defaults
/// ([`signpost_cnf::qos::default_classes`]): critical is strict (capped at half the link), the
/// rest share by weight.
fn qos_classes() -> Vec<pb::QosClass> {
    signpost_cnf::qos::default_classes()
}

/// The Router's `limits`, unset fields as 0 (the router's default).
pub fn limits(l: Option<&RouterLimits>) -> pb::Limits {
    let l = l.cloned().unwrap_or_default();
    pb::Limits {
        max_sessions: l.max_sessions.unwrap_or(0),
        max_sessions_per_tenant: l.max_sessions_per_tenant.unwrap_or(0),
        max_half_open: l.max_half_open.unwrap_or(0),
        max_half_open_per_tenant: l.max_half_open_per_tenant.unwrap_or(0),
        new_sessions_per_second_per_tenant: l.new_sessions_per_second_per_tenant.unwrap_or(0),
        tcp_half_open_timeout_s: l.tcp_half_open_timeout_seconds.unwrap_or(0),
        udp_idle_timeout_s: l.udp_idle_timeout_seconds.unwrap_or(0),
        ..Default::default()
    }
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
