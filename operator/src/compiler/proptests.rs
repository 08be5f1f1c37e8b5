//! Properties of the compiler over random small worlds, including broken ones (dangling
//! references, duplicate names, routers without WAN interfaces).

use std::collections::BTreeMap;

use proptest::prelude::*;
use signpost_proto::v1 as pb;

use super::world::enclosing;
use super::*;
use crate::crd::*;
use crate::manifests::Intent;

const TENANTS: &[&str] = &["pos", "cameras", "lanes.pos", "east.lanes.pos", "guest"];
const SERVICES: &[&str] = &["payments", "video", "internet"];
const ROUTERS: &[&str] = &["hub-a", "hub-b", "store-1", "store-2", "store-3"];
const NETWORKS: &[&str] = &["pos", "cameras", "guest"];
const PREFIXES: &[&str] = &[
    "10.1.0.0/16",
    "10.1.10.0/24",
    "10.1.10.128/25",
    "10.2.0.0/16",
];

fn name(pool: &'static [&'static str], ghost: &'static str) -> impl Strategy<Value = String> {
    // Mostly real names, sometimes a dangling one.
    prop_oneof![9 => proptest::sample::select(pool).prop_map(String::from), 1 => Just(ghost.to_string())]
}

fn tenant(n: &'static str) -> impl Strategy<Value = Tenant> {
    (
        Just(n),
        proptest::sample::subsequence(NETWORKS, 0..=2),
        proptest::sample::subsequence(PREFIXES, 0..=1),
    )
        .prop_map(|(n, networks, prefixes)| {
            Tenant::new(
                n,
                TenantSpec {
                    description: None,
                    networks: networks.into_iter().map(SymbolicName::from).collect(),
                    prefixes: prefixes.into_iter().map(Prefix::from).collect(),
                },
            )
        })
}

/// Service addresses that nest in each other (and one IPv6 prefix that nests in none of them).
const SERVICE_PREFIXES: &[&str] = &[
    "0.0.0.0/0",
    "10.255.0.0/16",
    "10.255.0.0/24",
    "10.255.0.10/32",
    "10.3.0.0/16",
    "fd00:255::/48",
];

fn service(n: &'static str) -> impl Strategy<Value = Service> {
    (
        Just(n),
        proptest::collection::vec(name(ROUTERS, "hub-ghost"), 1..3),
        1u16..3,
        proptest::sample::subsequence(SERVICE_PREFIXES, 1..=2),
    )
        .prop_map(|(n, locations, port, prefixes)| {
            Service::new(
                n,
                ServiceSpec {
                    description: None,
                    addresses: prefixes.into_iter().map(Prefix::from).collect(),
                    hostname: None,
                    transports: vec![Transport {
                        protocol: Protocol::Tcp,
                        ports: vec![PortRange {
                            port,
                            end_port: None,
                        }],
                    }],
                    locations: locations
                        .into_iter()
                        .map(|r| ServiceLocation {
                            router: ObjectName(r),
                            addresses: vec![],
                            priority: 0,
                        })
                        .collect(),
                    traffic_class: TrafficClass::BestEffort,
                    load_balancing: LoadBalancing::Proximity,
                    health_check: None,
                },
            )
        })
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        0usize..4,
        proptest::collection::vec(name(TENANTS, "pso"), 1..3),
        proptest::collection::vec(name(SERVICES, "paymnets"), 1..3),
        proptest::sample::select(&[Priority::Critical, Priority::Normal, Priority::Low][..]),
        proptest::sample::subsequence(&["broadband", "lte", "mpls"][..], 0..=2),
    )
        .prop_map(|(i, tenants, services, priority, preference)| {
            Policy::new(
                &format!("policy-{i}"),
                PolicySpec {
                    description: None,
                    tenants: tenants.into_iter().map(ObjectName).collect(),
                    services: services.into_iter().map(ObjectName).collect(),
                    direction: Direction::FromTenant,
                    sla: None,
                    path_preference: preference.into_iter().map(SymbolicName::from).collect(),
                    priority,
                    rate_limit: None,
                    security: SecurityMode::Encrypt,
                },
            )
        })
}

fn interface(
    index: usize,
    wan: bool,
    neighborhood: &str,
    vector: &str,
    networks: &[&str],
) -> Interface {
    Interface {
        name: SymbolicName(format!("if{index}")),
        role: if wan {
            InterfaceRole::Wan
        } else {
            InterfaceRole::Lan
        },
        device: None,
        addresses: if wan {
            vec![InterfaceAddress(format!("192.0.2.{}/24", index + 1))]
        } else {
            vec![]
        },
        gateway: None,
        neighborhood: wan.then(|| SymbolicName::from(neighborhood)),
        vector: wan.then(|| SymbolicName::from(vector)),
        capacity: None,
        cost: None,
        waypoint_ports: None,
        networks: if wan {
            vec![]
        } else {
            networks
                .iter()
                .map(|n| LanNetwork {
                    name: SymbolicName::from(*n),
                    prefixes: vec![Prefix::from("10.1.10.0/24")],
                    vlan: None,
                })
                .collect()
        },
        multus: None,
    }
}

fn router(n: &'static str) -> impl Strategy<Value = Router> {
    (
        Just(n),
        proptest::collection::vec(
            (
                proptest::sample::select(&["internet", "internet", "mpls"][..]),
                proptest::sample::select(&["broadband", "lte"][..]),
            ),
            0..3,
        ),
        proptest::sample::subsequence(NETWORKS, 0..=3),
        any::<bool>(),
        // The hubs an edge may peer with; none means any.
        proptest::sample::subsequence(&["hub-a", "hub-b"][..], 0..=1),
    )
        .prop_map(|(n, wans, networks, edges, hubs)| {
            let mut interfaces: Vec<Interface> = wans
                .iter()
                .enumerate()
                .map(|(i, (nb, v))| interface(i, true, nb, v, &[]))
                .collect();
            if !networks.is_empty() {
                interfaces.push(interface(9, false, "", "", &networks));
            }
            let role = if n.starts_with("hub") {
                RouterRole::Hub
            } else {
                RouterRole::Edge
            };
            Router::new(
                n,
                RouterSpec {
                    role,
                    site: BTreeMap::new(),
                    interfaces,
                    peering: (edges || !hubs.is_empty()).then(|| Peering {
                        edges,
                        hubs: hubs.into_iter().map(ObjectName::from).collect(),
                    }),
                    placement: None,
                    ha: None,
                    limits: None,
                    path_monitoring: None,
                },
            )
        })
}

/// Each name at most once (duplicates have their own unit test); each object present with
/// probability 0.8.
fn some<T: std::fmt::Debug>(
    names: &'static [&'static str],
    one: fn(&'static str) -> BoxedStrategy<T>,
) -> impl Strategy<Value = Vec<T>> {
    names
        .iter()
        .map(|n| proptest::option::weighted(0.8, one(n)))
        .collect::<Vec<_>>()
        .prop_map(|v| v.into_iter().flatten().collect())
}

fn intent() -> impl Strategy<Value = Intent> {
    (
        some(TENANTS, |n| tenant(n).boxed()),
        some(SERVICES, |n| service(n).boxed()),
        proptest::collection::vec(policy(), 0..5),
        some(ROUTERS, |n| router(n).boxed()),
    )
        .prop_map(|(tenants, services, mut policies, routers)| {
            // Policy names are drawn from a small pool: keep the first of each name.
            let mut seen = std::collections::BTreeSet::new();
            policies.retain(|p| seen.insert(p.metadata.name.clone()));
            Intent {
                tenants,
                services,
                policies,
                routers,
            }
        })
}

/// One edit to an intent, as an operator or a GitOps commit would make it.
#[derive(Clone, Debug)]
enum Edit {
    /// Put this object in place of the one with its name (or add it).
    Tenant(Tenant),
    Service(Service),
    Policy(Policy),
    Router(Router),
    /// Remove the object at this index (modulo the count) of a kind (0 to 3).
    Remove(u8, usize),
    /// Give the object at this index another name.
    Rename(u8, usize, String),
    /// Add a second definition of the object at this index.
    Duplicate(u8, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let names: Vec<&'static str> = TENANTS
        .iter()
        .chain(SERVICES)
        .chain(ROUTERS)
        .chain(&["policy-1", "policy-5", "ghost"])
        .copied()
        .collect();
    prop_oneof![
        3 => proptest::sample::select(TENANTS).prop_flat_map(tenant).prop_map(Edit::Tenant),
        3 => proptest::sample::select(SERVICES).prop_flat_map(service).prop_map(Edit::Service),
        3 => policy().prop_map(Edit::Policy),
        4 => proptest::sample::select(ROUTERS).prop_flat_map(router).prop_map(Edit::Router),
        2 => (0u8..4, any::<usize>()).prop_map(|(k, i)| Edit::Remove(k, i)),
        2 => (0u8..4, any::<usize>(), proptest::sample::select(names))
            .prop_map(|(k, i, n)| Edit::Rename(k, i, n.to_string())),
        1 => (0u8..4, any::<usize>()).prop_map(|(k, i)| Edit::Duplicate(k, i)),
    ]
}

fn put<K: kube::Resource + Clone>(objects: &mut Vec<K>, object: &K) {
    match objects
        .iter_mut()
        .find(|o| o.meta().name == object.meta().name)
    {
        Some(o) => *o = object.clone(),
        None => objects.push(object.clone()),
    }
}

fn at<K: kube::Resource + Clone>(objects: &mut Vec<K>, edit: &Edit) {
    if objects.is_empty() {
        return;
    }
    match edit {
        Edit::Remove(_, i) => {
            objects.remove(i % objects.len());
        }
        Edit::Rename(_, i, name) => {
            let n = objects.len();
            if let Some(o) = objects.get_mut(i % n) {
                o.meta_mut().name = Some(name.clone());
            }
        }
        Edit::Duplicate(_, i) => {
            let n = objects.len();
            if let Some(o) = objects.get(i % n).cloned() {
                objects.push(o);
            }
        }
        _ => {}
    }
}

fn apply(intent: &mut Intent, edit: &Edit) {
    match edit {
        Edit::Tenant(t) => put(&mut intent.tenants, t),
        Edit::Service(s) => put(&mut intent.services, s),
        Edit::Policy(p) => put(&mut intent.policies, p),
        Edit::Router(r) => put(&mut intent.routers, r),
        Edit::Remove(kind, _) | Edit::Rename(kind, _, _) | Edit::Duplicate(kind, _) => match kind {
            0 => at(&mut intent.tenants, edit),
            1 => at(&mut intent.services, edit),
            2 => at(&mut intent.policies, edit),
            _ => at(&mut intent.routers, edit),
        },
    }
}

fn options() -> Options {
    Options {
        key_master: [3; 32],
        key_epoch: 1,
    }
}

fn configs(c: &Compiled) -> BTreeMap<String, pb::RouterConfig> {
    c.routers
        .iter()
        .map(|(n, o)| (n.clone(), o.config().expect("decodes")))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_access_entry_is_granted_by_a_whole_policy(intent in intent()) {
        let c = compile(&intent, &options());
        for (router, config) in configs(&c) {
            for rule in &config.access {
                let granted = intent.policies.iter().filter(|p| p.metadata.name.as_deref() == Some(&rule.policy)).any(|p| {
                    let covers = p.spec.tenants.iter().any(|t| t.as_str() == rule.tenant || enclosing(&rule.tenant).any(|e| e == t.as_str()));
                    let whole = p.spec.tenants.iter().all(|t| intent.tenants.iter().any(|x| x.metadata.name.as_deref() == Some(t.as_str())))
                        && p.spec.services.iter().all(|s| intent.services.iter().any(|x| x.metadata.name.as_deref() == Some(s.as_str())));
                    covers && whole && p.spec.services.iter().any(|s| s.as_str() == rule.service)
                });
                prop_assert!(granted, "{router}: {} -> {} has no whole policy `{}`", rule.tenant, rule.service, rule.policy);
            }
        }
    }

    /// A router knows every service with an address inside a prefix of a service it routes
    /// (reaches or fronts), and learns nothing else: every service it does not route is nested
    /// in one it does, and comes without locations or access entries.
    #[test]
    fn every_service_nested_in_a_routed_prefix_is_known(intent in intent()) {
        let c = compile(&intent, &options());
        // Services defined once (a duplicate name is dropped), with their prefixes.
        let defined: BTreeMap<&str, Vec<ipnet::IpNet>> = intent
            .services
            .iter()
            .filter_map(|s| Some((s.metadata.name.as_deref()?, s)))
            .filter(|(n, _)| intent.services.iter().filter(|s| s.metadata.name.as_deref() == Some(n)).count() == 1)
            .map(|(n, s)| (n, s.spec.addresses.iter().filter_map(|p| p.as_str().parse().ok()).collect()))
            .collect();
        let inside = |inner: &[ipnet::IpNet], outer: &[ipnet::IpNet]| {
            inner.iter().any(|i| outer.iter().any(|o| o.contains(i)))
        };
        for (router, config) in configs(&c) {
            let routed: Vec<&pb::Service> = config.services.iter().filter(|s| !s.locations.is_empty()).collect();
            let listed: Vec<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
            for (name, prefixes) in &defined {
                let encloser = routed.iter().find(|r| r.name != *name && inside(prefixes, &defined[r.name.as_str()]));
                if let Some(r) = encloser {
                    prop_assert!(listed.contains(name), "{}: routes {} but does not know {} inside it", router, r.name, name);
                }
            }
            for known in config.services.iter().filter(|s| s.locations.is_empty()) {
                let prefixes = &defined[known.name.as_str()];
                prop_assert!(
                    routed.iter().any(|r| inside(prefixes, &defined[r.name.as_str()])),
                    "{}: knows {} without routing anything around it", router, known.name
                );
                prop_assert!(!config.access.iter().any(|a| a.service == known.name), "{}: {}", router, known.name);
                prop_assert!(known.hostname.is_empty() && known.traffic_class == 0 && known.load_balancing == 0);
            }
            let mut sorted = listed.clone();
            sorted.sort_unstable();
            prop_assert_eq!(sorted, listed, "{}: services in name order", router);
        }
    }

    #[test]
    fn peering_is_symmetric_and_needs_a_shared_neighborhood(intent in intent()) {
        let c = compile(&intent, &options());
        let all = configs(&c);
        for (name, config) in &all {
            for peer in &config.peers {
                let back = all.get(&peer.name).is_some_and(|p| p.peers.iter().any(|q| &q.name == name));
                prop_assert!(back, "{name} -> {} is one-way", peer.name);
                prop_assert!(!peer.paths.is_empty(), "{name} -> {} has no path", peer.name);
                prop_assert!(peer.name != *name);
            }
        }
    }

    #[test]
    fn input_order_does_not_matter(intent in intent()) {
        let a = compile(&intent, &options());
        let mut reversed = intent.clone();
        reversed.tenants.reverse();
        reversed.services.reverse();
        reversed.policies.reverse();
        reversed.routers.reverse();
        let b = compile(&reversed, &options());
        prop_assert_eq!(&a.diagnostics, &b.diagnostics);
        prop_assert_eq!(a.routers.len(), b.routers.len());
        for (name, out) in &a.routers {
            prop_assert_eq!(&out.encoded, &b.routers[name].encoded);
        }
    }

    #[test]
    fn incremental_equals_from_scratch(before in intent(), after in intent()) {
        let mut compiler = Compiler::new(options());
        compiler.compile(&before);
        let incremental = compiler.compile(&after);
        let scratch = compile(&after, &options());
        prop_assert_eq!(&incremental.diagnostics, &scratch.diagnostics);
        prop_assert_eq!(incremental.routers.len(), scratch.routers.len());
        for (name, out) in &scratch.routers {
            prop_assert_eq!(&out.version, &incremental.routers[name].version);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, failure_persistence: None, ..ProptestConfig::default() })]

    /// After every edit of a sequence, the compiler that saw the earlier versions gives exactly
    /// what a fresh compiler gives; it reselects every router it rebuilds, and every router
    /// whose config changed is among those it rebuilt.
    #[test]
    fn incremental_equals_from_scratch_after_each_edit(
        start in intent(),
        edits in proptest::collection::vec(edit(), 1..8),
    ) {
        let mut compiler = Compiler::new(options());
        let mut intent = start;
        let mut previous = compiler.compile(&intent);
        for (step, edit) in edits.iter().enumerate() {
            apply(&mut intent, edit);
            let incremental = compiler.compile(&intent);
            let scratch = compile(&intent, &options());
            prop_assert_eq!(&incremental.diagnostics, &scratch.diagnostics, "step {}: {:?}", step, edit);
            prop_assert_eq!(
                incremental.routers.keys().collect::<Vec<_>>(),
                scratch.routers.keys().collect::<Vec<_>>(),
                "step {}: {:?}", step, edit
            );
            for (name, out) in &scratch.routers {
                prop_assert_eq!(&out.encoded, &incremental.routers[name].encoded, "step {}: {} after {:?}", step, name, edit);
                let changed = previous.routers.get(name).is_none_or(|o| o.version != out.version);
                prop_assert!(!changed || incremental.rebuilt.contains(name), "step {}: {} changed but was not rebuilt", step, name);
            }
            for name in &incremental.rebuilt {
                prop_assert!(incremental.reselected.contains(name));
            }
            previous = incremental;
        }
    }

    /// Writing a config from shared pieces gives the bytes of encoding the built config.
    #[test]
    fn pieces_encode_what_build_returns(intent in intent()) {
        let mut world = World::default();
        world.update(&intent);
        let mut pieces = super::pieces::Pieces::default();
        pieces.refresh(&world, &options());
        let keys = super::select::PeerKeys::new(&options().key_master);
        for name in world.router_names() {
            let Some(selection) = select(&world, name, &mut Vec::new()) else {
                prop_assert!(false, "{} is listed but cannot be selected", name);
                continue;
            };
            let built = prost::Message::encode_to_vec(&selection.build(&options()));
            let mut own = super::pieces::RouterPieces::default();
            let encoded = super::pieces::encode(&selection, &world, &pieces, &mut own, &keys, &options());
            prop_assert_eq!(encoded, built, "{}", name);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// A router that fronts no service gets from its shape exactly the contents it would get on
    /// its own, diagnostics included: sharing contents between routers of one shape is sound.
    #[test]
    fn shaped_contents_are_the_routers_own(intent in intent()) {
        let mut world = World::default();
        world.update(&intent);
        for name in world.router_names() {
            let Some(own) = super::select::contents_of(&world, name) else {
                prop_assert!(false, "{} is listed but has no contents", name);
                continue;
            };
            let Some(shape) = super::select::shape(&world, name) else {
                prop_assert!(world.services_by_router.contains_key(name.as_ref()));
                continue;
            };
            let shared = super::select::shaped_contents(&world, &shape);
            prop_assert_eq!(shared.tenants(), own.tenants(), "{}", name);
            prop_assert_eq!(shared.services(), own.services(), "{}", name);
            prop_assert_eq!(shared.known(), own.known(), "{}", name);
            prop_assert_eq!(shared.access(), own.access(), "{}", name);
            prop_assert_eq!(shared.fingerprint(&world), own.fingerprint(&world), "{}", name);
            let diagnose = |c: super::select::Contents<'_>| {
                let mut d = Vec::new();
                if let Some(s) = Selection::new(&world, name, std::sync::Arc::new(c)) {
                    s.diagnose(&mut d);
                }
                d
            };
            prop_assert_eq!(diagnose(shared), diagnose(own), "{}", name);
        }
    }
}

/// Edit sequences must change what routers get, or the property above would hold vacuously.
#[test]
fn generated_edits_change_configs() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut rebuilt_some, mut rebuilt_not_all) = (0, 0);
    for _ in 0..200 {
        let (Ok(start), Ok(edit)) = (intent().new_tree(&mut runner), edit().new_tree(&mut runner))
        else {
            continue;
        };
        let mut intent = start.current();
        let mut compiler = Compiler::new(options());
        let first = compiler.compile(&intent);
        apply(&mut intent, &edit.current());
        let after = compiler.compile(&intent);
        rebuilt_some += usize::from(!after.rebuilt.is_empty());
        rebuilt_not_all +=
            usize::from(!after.rebuilt.is_empty() && after.reselected.len() < first.routers.len());
    }
    assert!(
        rebuilt_some > 60,
        "only {rebuilt_some}/200 edits rebuild a router"
    );
    assert!(
        rebuilt_not_all > 20,
        "only {rebuilt_not_all}/200 edits rebuild some routers but not all"
    );
}

/// The generator must reach the interesting cases, or the properties above would hold vacuously.
#[test]
fn generated_worlds_exercise_the_rules() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut with_access, mut with_peers, mut with_errors, mut with_known) = (0, 0, 0, 0);
    for _ in 0..300 {
        let Ok(tree) = intent().new_tree(&mut runner) else {
            continue;
        };
        let c = compile(&tree.current(), &options());
        let all = configs(&c);
        with_access += usize::from(all.values().any(|c| !c.access.is_empty()));
        with_peers += usize::from(all.values().any(|c| !c.peers.is_empty()));
        with_errors += usize::from(c.has_errors());
        with_known += usize::from(
            all.values()
                .any(|c| c.services.iter().any(|s| s.locations.is_empty())),
        );
    }
    assert!(
        with_access > 30,
        "only {with_access}/300 worlds allow anything"
    );
    assert!(with_peers > 30, "only {with_peers}/300 worlds have peers");
    assert!(
        with_errors > 30,
        "only {with_errors}/300 worlds have errors"
    );
    assert!(
        with_known > 30,
        "only {with_known}/300 worlds have a router that knows a service it does not route"
    );
}
