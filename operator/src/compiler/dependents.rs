//! Which routers a change can reach: those whose selection may read something that
//! [`World::update`](super::world::World::update) reported as changed. Each rule follows a read
//! in [`select`](super::select::select), looking at the world both before and after the change,
//! since a router may have depended on the old version or depend on the new one. Finding too
//! many costs time only (the fingerprint still decides what is rebuilt); missing one would leave
//! a stale config, which the property tests look for.

use std::collections::BTreeSet;

use super::world::{Changes, Name, World, enclosing, nested_in, overlaps};

/// The routers that can be configured and whose selection may differ after `changes`.
pub fn dependents(world: &World, changes: &Changes) -> BTreeSet<Name> {
    let mut reach = Reach {
        world,
        changes,
        local_done: BTreeSet::new(),
        out: BTreeSet::new(),
    };
    // A router reads its own spec, its peers and their specs.
    reach.out.extend(changes.routers.iter().cloned());
    reach.out.extend(changes.peers.iter().cloned());
    for tenant in changes.tenants.keys() {
        reach.holders(tenant);
        // An enclosing tenant is carried along with (and names the parent of) its members.
        let nested: Vec<&Name> = world
            .tenants
            .keys()
            .filter(|t| enclosing(t).any(|e| e == tenant.as_ref()))
            .collect();
        for member in nested {
            reach.holders(member);
        }
    }
    for service in &changes.services {
        reach.routing(service);
        // Routers that route a service enclosing it (before or after) know it, and which
        // services they know depends on its prefixes. An enclosing service that changed too is
        // reached by this loop on its own account.
        let prefixes = [
            changes.services_before.get(service),
            world.services.get(service),
        ];
        let enclosing: Vec<&Name> = world
            .services
            .iter()
            .filter(|(other, s)| {
                *other != service
                    && prefixes
                        .iter()
                        .flatten()
                        .any(|p| nested_in(&p.prefixes, &s.prefixes))
            })
            .map(|(other, _)| other)
            .collect();
        for other in enclosing {
            reach.routing(other);
        }
    }
    for (tenant, service) in &changes.grants {
        reach.fronts(service);
        reach.local(tenant);
    }
    let Reach { mut out, .. } = reach;
    out.retain(|name| world.router(name).is_some());
    out
}

struct Reach<'a> {
    world: &'a World,
    changes: &'a Changes,
    /// Tenants whose local routers are already in `out`.
    local_done: BTreeSet<Name>,
    out: BTreeSet<Name>,
}

impl Reach<'_> {
    /// Routers that route `service`, before or after: those that front it, and those with
    /// local tenants granted it (reachability, access entries and diagnostics).
    fn routing(&mut self, service: &Name) {
        self.fronts(service);
        let granted: BTreeSet<&Name> = self
            .changes
            .tenants_by_service_before
            .get(service)
            .into_iter()
            .chain(self.world.tenants_by_service.get(service))
            .flatten()
            .collect();
        for tenant in granted {
            self.local(tenant);
        }
    }

    /// Routers that front `service`, before or after.
    fn fronts(&mut self, service: &str) {
        for resolved in [
            self.changes.services_before.get(service),
            self.world.services.get(service),
        ]
        .into_iter()
        .flatten()
        {
            for router in resolved.routers() {
                if let Some((name, _)) = self.world.router(router) {
                    self.out.insert(Name::clone(name));
                }
            }
        }
    }

    /// Routers whose LAN has hosts of `tenant`, by its spec before or after.
    fn local(&mut self, tenant: &Name) {
        if !self.local_done.insert(Name::clone(tenant)) {
            return;
        }
        let before = self.changes.tenants.get(tenant).and_then(Option::as_ref);
        for entry in [before, self.world.tenants.get(tenant)]
            .into_iter()
            .flatten()
        {
            for network in &entry.tenant.spec.networks {
                if let Some(routers) = self.world.routers_by_network.get(network.as_str()) {
                    self.out.extend(routers.iter().cloned());
                }
            }
            if entry.prefixes.is_empty() {
                continue;
            }
            for (name, router) in self.world.usable_routers() {
                if overlaps(&entry.prefixes, &router.lan_prefixes) {
                    self.out.insert(Name::clone(name));
                }
            }
        }
    }

    /// Routers whose selection may hold `tenant`: where it is local, and where it has access to
    /// a service the router fronts.
    fn holders(&mut self, tenant: &Name) {
        self.local(tenant);
        let services: BTreeSet<Name> = [
            self.changes.grants_before.get(tenant),
            self.world.grants.get(tenant),
        ]
        .into_iter()
        .flatten()
        .flat_map(|by_service| by_service.keys().cloned())
        .collect();
        for service in services {
            self.fronts(&service);
        }
    }
}
