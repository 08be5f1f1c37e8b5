//! Compiler rules, one test per rule, on small hand-written worlds and on `examples/retail`.

use std::path::PathBuf;

use signpost_proto::v1 as pb;

use prost::Message;

use super::*;
use crate::admission::Admission;
use crate::manifests::{self, Intent};

fn options() -> Options {
    Options {
        key_master: [7; 32],
        key_epoch: 3,
    }
}

fn load(path: &str) -> Intent {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path);
    let docs = manifests::read_documents(&dir).expect("readable manifests");
    manifests::decode(&docs, &Admission::new()).expect("admitted")
}

fn yaml(text: &str) -> Intent {
    let docs = manifests::parse_documents(std::path::Path::new("test.yaml"), text).expect("YAML");
    manifests::decode(&docs, &Admission::new()).expect("admitted")
}

fn cfg(out: &RouterOutput) -> pb::RouterConfig {
    out.config().expect("the compiler's own encoding decodes")
}

fn retail() -> Compiled {
    compile(&load("examples/retail"), &options())
}

fn stores(c: &Compiled) -> Vec<pb::RouterConfig> {
    c.routers
        .iter()
        .filter(|(n, _)| n.starts_with("store-"))
        .map(|(_, o)| cfg(o))
        .collect()
}

#[test]
fn retail_compiles_without_errors() {
    let c = retail();
    assert!(!c.has_errors(), "{:#?}", c.diagnostics);
    assert_eq!(c.routers.len(), 5);
    assert_eq!(c.rebuilt.len(), 5);
}

#[test]
fn guest_never_reaches_payments() {
    let c = retail();
    for (name, out) in &c.routers {
        assert!(
            !cfg(out)
                .access
                .iter()
                .any(|a| a.tenant == "guest" && a.service == "payments"),
            "{name} lets guest reach payments"
        );
    }
    // Guest reaches the internet and nothing else, on every store.
    for out in stores(&c) {
        let guest: Vec<&str> = out
            .access
            .iter()
            .filter(|a| a.tenant == "guest")
            .map(|a| a.service.as_str())
            .collect();
        assert_eq!(guest, ["internet"], "{}", out.router);
    }
}

#[test]
fn pos_reaches_payments_encrypted_on_every_store() {
    let c = retail();
    let s = stores(&c);
    assert_eq!(s.len(), 3);
    for out in s {
        let rule = out
            .access
            .iter()
            .find(|a| a.tenant == "pos" && a.service == "payments")
            .unwrap_or_else(|| panic!("{} has no pos -> payments", out.router));
        assert_eq!(rule.security, pb::SecurityMode::Encrypt as i32);
        assert_eq!(rule.priority, pb::Priority::Critical as i32);
        assert_eq!(rule.path_preference, ["broadband", "lte"]);
        assert_eq!(
            rule.sla,
            Some(pb::Sla {
                max_latency_ms: 150,
                max_loss_ppm: 10_000,
                max_jitter_ms: 0
            })
        );
        let payments = out
            .services
            .iter()
            .find(|s| s.name == "payments")
            .expect("payments service");
        let at: Vec<&str> = payments
            .locations
            .iter()
            .map(|l| l.router.as_str())
            .collect();
        assert_eq!(at, ["hub-aws", "hub-azure"]);
    }
}

#[test]
fn nothing_else_is_allowed() {
    let c = retail();
    for out in stores(&c) {
        let mut pairs: Vec<(String, String)> = out
            .access
            .iter()
            .map(|a| (a.tenant.clone(), a.service.clone()))
            .collect();
        pairs.sort();
        let want: Vec<(String, String)> = [
            ("cameras", "video-archive"),
            ("guest", "internet"),
            ("pos", "payments"),
            ("signage", "ads-cdn"),
        ]
        .iter()
        .map(|(t, s)| (t.to_string(), s.to_string()))
        .collect();
        assert_eq!(pairs, want, "{}", out.router);
    }
}

#[test]
fn stores_know_the_services_nested_in_internet_without_reaching_them() {
    let c = retail();
    for out in stores(&c) {
        // Inside `internet`'s 0.0.0.0/0, which guest may reach: the store must classify a flow
        // to 10.255.3.10:443 as inventory's (and deny it), not as internet's.
        let inventory = out
            .services
            .iter()
            .find(|s| s.name == "inventory")
            .unwrap_or_else(|| panic!("{} does not know inventory", out.router));
        assert_eq!(inventory.prefixes, ["10.255.3.10/32"]);
        assert_eq!(inventory.transports.len(), 1);
        assert!(inventory.locations.is_empty(), "{inventory:?}");
        assert!(inventory.hostname.is_empty());
        assert!(!out.access.iter().any(|a| a.service == "inventory"));
        let names: Vec<&str> = out.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "ads-cdn",
                "internet",
                "inventory",
                "payments",
                "video-archive"
            ],
            "{}: in name order, routed and known alike",
            out.router
        );
    }
}

#[test]
fn a_router_learns_no_service_outside_what_it_routes() {
    // Without a tenant allowed `internet`, nothing encloses inventory: the store does not learn
    // it (need to know).
    let c = compile(&without_breakout(load("examples/retail")), &options());
    for out in stores(&c) {
        let names: Vec<&str> = out.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["ads-cdn", "payments", "video-archive"],
            "{}",
            out.router
        );
    }
}

#[test]
fn a_change_to_a_nested_service_rebuilds_the_routers_that_know_it() {
    let intent = load("examples/retail");
    let mut compiler = Compiler::new(options());
    compiler.compile(&intent);
    let mut changed = intent.clone();
    let inventory = changed
        .services
        .iter_mut()
        .find(|s| s.metadata.name.as_deref() == Some("inventory"))
        .expect("inventory");
    inventory.spec.transports[0].ports[0].port = 9443;
    let out = compiler.compile(&changed);
    // Every store knows it through `internet`; hub-azure fronts it, hub-aws knows it through
    // `internet`, which it fronts.
    assert_eq!(
        out.rebuilt,
        [
            "hub-aws",
            "hub-azure",
            "store-0142",
            "store-0217",
            "store-0388"
        ]
    );
    let store = cfg(&out.routers["store-0142"]);
    let inventory = store.services.iter().find(|s| s.name == "inventory");
    assert_eq!(
        inventory.map(|s| s.transports[0].ports[0].first),
        Some(9443)
    );
}

#[test]
fn each_store_peers_with_both_hubs_over_both_wan_links() {
    let c = retail();
    for out in stores(&c) {
        let peers: Vec<&str> = out.peers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            peers,
            ["hub-aws", "hub-azure"],
            "{}: stores do not peer with stores",
            out.router
        );
        for peer in &out.peers {
            let mut vectors: Vec<&str> = peer.paths.iter().map(|p| p.vector.as_str()).collect();
            vectors.sort();
            assert_eq!(
                vectors,
                ["broadband", "lte"],
                "{} -> {}",
                out.router,
                peer.name
            );
            assert!(
                peer.paths
                    .iter()
                    .all(|p| !p.remote_address.is_empty() && p.remote_waypoint_ports.is_some())
            );
            assert_eq!(peer.keys.len(), 2, "current and previous epoch");
        }
    }
}

#[test]
fn hubs_mesh_and_know_every_store() {
    let c = retail();
    let aws = cfg(&c.routers["hub-aws"]);
    let peers: Vec<&str> = aws.peers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        peers,
        ["hub-azure", "store-0142", "store-0217", "store-0388"]
    );
    // It fronts payments, video-archive and internet; inventory and ads-cdn lie inside
    // internet's 0.0.0.0/0, so it knows them (without locations).
    let services: Vec<(&str, usize)> = aws
        .services
        .iter()
        .map(|s| (s.name.as_str(), s.locations.len()))
        .collect();
    assert_eq!(
        services,
        [
            ("ads-cdn", 0),
            ("internet", 2),
            ("inventory", 0),
            ("payments", 2),
            ("video-archive", 1)
        ]
    );
    let tenants: Vec<&str> = aws.tenants.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(tenants, ["cameras", "guest", "pos"]);
    // Internet breakout leaves through the VPC's egress firewall.
    assert_eq!(aws.lan_interfaces[0].gateway, "10.100.0.254");
}

#[test]
fn stores_do_not_learn_about_each_other() {
    let c = retail();
    let config = cfg(&c.routers["store-0142"]);
    let text = format!("{config:?}");
    assert!(!text.contains("store-0217") && !text.contains("store-0388"));
}

#[test]
fn both_ends_of_a_peering_hold_the_same_keys() {
    let c = retail();
    let key = |from: &str, to: &str| {
        cfg(&c.routers[from])
            .peers
            .iter()
            .find(|p| p.name == to)
            .map(|p| p.keys.clone())
            .expect("peer")
    };
    assert_eq!(key("store-0142", "hub-aws"), key("hub-aws", "store-0142"));
    assert_ne!(key("store-0142", "hub-aws"), key("store-0217", "hub-aws"));
}

#[test]
fn same_objects_in_any_order_give_identical_configs() {
    let intent = load("examples/retail");
    let reference = compile(&intent, &options());
    let mut shuffled = intent.clone();
    // A deterministic shuffle per kind (reverse and rotate), several times.
    for round in 1..5 {
        shuffled.tenants.reverse();
        let n = shuffled.services.len();
        shuffled.services.rotate_left(round % n);
        shuffled.policies.reverse();
        let n = shuffled.routers.len();
        shuffled.routers.rotate_left(round % n);
        let again = compile(&shuffled, &options());
        for (name, out) in &reference.routers {
            assert_eq!(
                out.encoded, again.routers[name].encoded,
                "{name} (round {round})"
            );
            assert_eq!(out.version, again.routers[name].version);
        }
        assert_eq!(reference.diagnostics, again.diagnostics);
    }
}

#[test]
fn a_change_recompiles_only_the_routers_it_touches() {
    let intent = without_breakout(load("examples/retail"));
    let mut compiler = Compiler::new(options());
    let first = compiler.compile(&intent);
    assert_eq!(first.rebuilt.len(), 5);

    // Nothing changed: nothing rebuilt, same versions.
    let again = compiler.compile(&intent);
    assert!(again.rebuilt.is_empty());

    // A tenant only store-0142 has, allowed to a new service at hub-aws.
    let mut changed = intent.clone();
    changed.tenants.push(tenant("kiosk", &["10.1.50.0/24"]));
    changed
        .services
        .push(service("loyalty", "10.255.9.0/24", "hub-aws"));
    changed
        .policies
        .push(policy("kiosk-loyalty", "kiosk", "loyalty"));
    let after = compiler.compile(&changed);
    // hub-azure fronts `internet` (0.0.0.0/0), so it knows every IPv4 service.
    assert_eq!(
        after.rebuilt,
        ["hub-aws", "hub-azure", "store-0142"],
        "{:?}",
        after.diagnostics
    );
    for name in ["store-0217", "store-0388"] {
        assert_eq!(
            after.routers[name].version, first.routers[name].version,
            "{name}"
        );
    }
    // The rebuilt outputs equal a from-scratch compile.
    let scratch = compile(&changed, &options());
    for (name, out) in &after.routers {
        assert_eq!(out.version, scratch.routers[name].version, "{name}");
    }

    // Changing that service (a new port) touches the same three routers only.
    let mut changed2 = changed.clone();
    if let Some(s) = changed2
        .services
        .iter_mut()
        .find(|s| s.metadata.name.as_deref() == Some("loyalty"))
    {
        s.spec.transports[0].ports.push(crate::crd::PortRange {
            port: 8443,
            end_port: None,
        });
    }
    let after2 = compiler.compile(&changed2);
    assert_eq!(after2.rebuilt, ["hub-aws", "hub-azure", "store-0142"]);

    // A key rotation touches everyone.
    compiler.set_options(Options {
        key_epoch: 4,
        ..options()
    });
    assert_eq!(compiler.compile(&changed2).rebuilt.len(), 5);
}

fn tenant(name: &str, prefixes: &[&str]) -> crate::crd::Tenant {
    crate::crd::Tenant::new(
        name,
        crate::crd::TenantSpec {
            description: None,
            networks: vec![],
            prefixes: prefixes
                .iter()
                .map(|p| crate::crd::Prefix::from(*p))
                .collect(),
        },
    )
}

fn service(name: &str, prefix: &str, router: &str) -> crate::crd::Service {
    let text = format!(
        "apiVersion: signpost.dev/v1alpha1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  \
         addresses: [{prefix}]\n  transports: [{{protocol: tcp, ports: [{{port: 443}}]}}]\n  \
         locations: [{{router: {router}}}]\n"
    );
    yaml(&text).services.remove(0)
}

fn policy(name: &str, tenant: &str, service: &str) -> crate::crd::Policy {
    let text = format!(
        "apiVersion: signpost.dev/v1alpha1\nkind: Policy\nmetadata: {{name: {name}}}\nspec:\n  \
         tenants: [{tenant}]\n  services: [{service}]\n"
    );
    yaml(&text).policies.remove(0)
}

#[test]
fn nested_tenants_inherit_their_parents_policies() {
    let mut intent = load("examples/retail");
    // `lanes.pos` (self-checkout lanes) is inside `pos`.
    intent
        .tenants
        .push(tenant("lanes.pos", &["10.1.10.128/25"]));
    let c = compile(&intent, &options());
    assert!(!c.has_errors(), "{:#?}", c.diagnostics);
    let config = cfg(&c.routers["store-0142"]);
    let lanes = config
        .tenants
        .iter()
        .find(|t| t.name == "lanes.pos")
        .expect("nested tenant is local");
    assert_eq!(lanes.parent, "pos");
    assert!(
        config.access.iter().any(|a| a.tenant == "lanes.pos"
            && a.service == "payments"
            && a.policy == "pos-payments")
    );
    // Only store-0142's LAN holds 10.1.10.128/25.
    assert!(
        !cfg(&c.routers["store-0217"])
            .tenants
            .iter()
            .any(|t| t.name == "lanes.pos")
    );
}

#[test]
fn edge_to_edge_peering_needs_both_edges_to_ask() {
    let mut intent = load("examples/retail");
    let ask = |r: &mut crate::crd::Router| {
        r.spec.peering = Some(crate::crd::Peering {
            edges: true,
            hubs: vec![],
        });
    };
    if let Some(r) = intent
        .routers
        .iter_mut()
        .find(|r| r.metadata.name.as_deref() == Some("store-0142"))
    {
        ask(r);
    }
    let one = compile(&intent, &options());
    assert!(
        !cfg(&one.routers["store-0142"])
            .peers
            .iter()
            .any(|p| p.name == "store-0217")
    );
    if let Some(r) = intent
        .routers
        .iter_mut()
        .find(|r| r.metadata.name.as_deref() == Some("store-0217"))
    {
        ask(r);
    }
    let both = compile(&intent, &options());
    assert!(
        cfg(&both.routers["store-0142"])
            .peers
            .iter()
            .any(|p| p.name == "store-0217")
    );
    assert!(
        cfg(&both.routers["store-0217"])
            .peers
            .iter()
            .any(|p| p.name == "store-0142")
    );
}

#[test]
fn reference_errors_name_the_object_and_the_fix() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/invalid/references");
    let files = manifests::manifest_files(&dir).expect("dir");
    assert!(files.len() >= 6);
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable");
        let expect = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect:"))
            .expect("expect line")
            .trim();
        let docs = manifests::parse_documents(&file, &text).expect("YAML");
        let intent = manifests::decode(&docs, &Admission::new()).expect("admitted");
        let c = compile(&intent, &options());
        assert!(c.has_errors(), "{}: no error", file.display());
        let errors: Vec<String> = c
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(ToString::to_string)
            .collect();
        assert!(
            errors.iter().any(|e| e.contains(expect)),
            "{}: expected `{expect}` in {errors:#?}",
            file.display()
        );
    }
}

#[test]
fn a_policy_with_a_dangling_reference_grants_nothing() {
    let mut intent = load("examples/retail");
    if let Some(p) = intent
        .policies
        .iter_mut()
        .find(|p| p.metadata.name.as_deref() == Some("pos-payments"))
    {
        p.spec.tenants.push("pso".into());
    }
    let c = compile(&intent, &options());
    assert!(
        c.routers
            .values()
            .all(|o| !cfg(o).access.iter().any(|a| a.policy == "pos-payments"))
    );
    // The other policies still apply.
    assert!(
        cfg(&c.routers["store-0142"])
            .access
            .iter()
            .any(|a| a.tenant == "guest")
    );
}

#[test]
fn duplicate_names_are_errors_whatever_the_order() {
    let mut intent = load("examples/retail");
    let mut twin = intent.tenants[0].clone();
    twin.spec.description = Some("a second definition".into());
    intent.tenants.push(twin);
    let c = compile(&intent, &options());
    assert!(c.diagnostics.iter().any(|d| d.reason == "DefinedTwice"));
    intent.tenants.reverse();
    let d = compile(&intent, &options());
    for (name, out) in &c.routers {
        assert_eq!(out.version, d.routers[name].version);
    }
}

#[test]
fn pieces_encode_exactly_what_build_returns() {
    let mut nested = load("examples/retail");
    nested
        .tenants
        .push(tenant("lanes.pos", &["10.1.10.128/25"]));
    for intent in [load("examples/retail"), retail_with_kiosk(), nested] {
        let mut world = World::default();
        world.update(&intent);
        let mut pieces = pieces::Pieces::default();
        pieces.refresh(&world, &options());
        let keys = select::PeerKeys::new(&options().key_master);
        let mut seen = 0;
        for name in world.router_names() {
            let selection = select(&world, name, &mut Vec::new()).expect("a usable router");
            let built = selection.build(&options()).encode_to_vec();
            let mut own = pieces::RouterPieces::default();
            let encoded = pieces::encode(&selection, &world, &pieces, &mut own, &keys, &options());
            assert_eq!(encoded, built, "{name}");
            // Again with the router's peer pieces kept from the first time.
            let again = pieces::encode(&selection, &world, &pieces, &mut own, &keys, &options());
            assert_eq!(again, built, "{name}, reused router pieces");
            seen += 1;
        }
        assert_eq!(seen, 5);
    }
}

#[test]
fn peer_keys_are_hkdf_of_the_sorted_names_and_the_epoch() {
    let master = [9u8; 32];
    let mut info = b"hub-a\0store-1\0".to_vec();
    info.extend(5u64.to_be_bytes());
    let mut want = [0u8; 32];
    hkdf::Hkdf::<sha2::Sha256>::new(Some(b"signpost peer key v1"), &master)
        .expand(&info, &mut want)
        .expect("32 bytes");
    let keys = select::PeerKeys::new(&master);
    assert_eq!(keys.key("store-1", "hub-a", 5), want);
    assert_eq!(keys.key("hub-a", "store-1", 5), want);
    assert_ne!(keys.key("hub-a", "store-1", 6), want);
}

/// `intent` without the Policy `guest-internet`. With it, every store and both hubs route
/// `internet` (0.0.0.0/0) and so know every IPv4 service: no service change would be narrow.
fn without_breakout(mut intent: Intent) -> Intent {
    intent
        .policies
        .retain(|p| p.metadata.name.as_deref() != Some("guest-internet"));
    intent
}

/// The retail example without the breakout, plus a tenant only store-0142 has (`kiosk`, 10.1.50.0/24), allowed by
/// `kiosk-loyalty` to a service only hub-aws fronts (`loyalty`).
fn retail_with_kiosk() -> Intent {
    let mut intent = without_breakout(load("examples/retail"));
    intent.tenants.push(tenant("kiosk", &["10.1.50.0/24"]));
    intent
        .services
        .push(service("loyalty", "10.255.9.0/24", "hub-aws"));
    intent
        .policies
        .push(policy("kiosk-loyalty", "kiosk", "loyalty"));
    intent
}

/// Compiles `before`, then `after` with the same compiler; checks that the second result is
/// exactly a from-scratch compile of `after`, and returns it.
fn recompile(before: &Intent, after: &Intent) -> Compiled {
    let mut compiler = Compiler::new(options());
    compiler.compile(before);
    let incremental = compiler.compile(after);
    let scratch = compile(after, &options());
    assert_eq!(incremental.diagnostics, scratch.diagnostics);
    let versions = |c: &Compiled| -> Vec<(String, String)> {
        c.routers
            .iter()
            .map(|(n, o)| (n.clone(), o.version.clone()))
            .collect()
    };
    assert_eq!(versions(&incremental), versions(&scratch));
    for name in &incremental.rebuilt {
        assert!(incremental.reselected.contains(name), "{name}");
    }
    incremental
}

fn named<'a, T: kube::Resource>(objects: &'a mut [T], name: &str) -> &'a mut T {
    objects
        .iter_mut()
        .find(|o| o.meta().name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no object named {name}"))
}

#[test]
fn changing_a_service_one_store_uses_reaches_that_store_and_its_hub() {
    let before = retail_with_kiosk();
    let mut after = before.clone();
    named(&mut after.services, "loyalty").spec.transports[0].ports[0].port = 8443;
    let c = recompile(&before, &after);
    // And hub-azure, which knows it: it fronts `internet` (0.0.0.0/0).
    assert_eq!(c.reselected, ["hub-aws", "hub-azure", "store-0142"]);
    assert_eq!(c.rebuilt, ["hub-aws", "hub-azure", "store-0142"]);
}

#[test]
fn renaming_a_router_reaches_it_and_its_peers() {
    let before = load("examples/retail");
    let mut after = before.clone();
    named(&mut after.routers, "store-0217").metadata.name = Some("store-0500".into());
    let c = recompile(&before, &after);
    assert_eq!(c.reselected, ["hub-aws", "hub-azure", "store-0500"]);
    assert_eq!(c.rebuilt, ["hub-aws", "hub-azure", "store-0500"]);
    assert!(!c.routers.contains_key("store-0217"));
}

#[test]
fn changing_a_store_reaches_it_and_its_hubs() {
    let before = load("examples/retail");
    let mut after = before.clone();
    named(&mut after.routers, "store-0388").spec.interfaces[1].cost = Some(200);
    let c = recompile(&before, &after);
    assert_eq!(c.reselected, ["hub-aws", "hub-azure", "store-0388"]);
    assert_eq!(c.rebuilt, ["hub-aws", "hub-azure", "store-0388"]);
}

#[test]
fn deleting_a_policy_reaches_the_routers_it_granted_on() {
    // signage is on every store; ads-cdn is fronted by hub-azure only.
    let before = load("examples/retail");
    let mut after = before.clone();
    after
        .policies
        .retain(|p| p.metadata.name.as_deref() != Some("signage-ads-cdn"));
    let c = recompile(&before, &after);
    assert_eq!(
        c.reselected,
        ["hub-azure", "store-0142", "store-0217", "store-0388"]
    );
    assert_eq!(c.rebuilt, c.reselected);

    let before = retail_with_kiosk();
    let mut after = before.clone();
    after
        .policies
        .retain(|p| p.metadata.name.as_deref() != Some("kiosk-loyalty"));
    let c = recompile(&before, &after);
    assert_eq!(c.reselected, ["hub-aws", "store-0142"]);
    assert_eq!(c.rebuilt, ["hub-aws", "store-0142"]);
}

#[test]
fn changing_a_tenant_reaches_where_it_was_and_is_local_and_the_hubs_it_reaches() {
    // kiosk moves from store-0142's LAN to store-0217's.
    let before = retail_with_kiosk();
    let mut after = before.clone();
    named(&mut after.tenants, "kiosk").spec.prefixes = vec!["10.2.50.0/24".into()];
    let c = recompile(&before, &after);
    assert_eq!(c.reselected, ["hub-aws", "store-0142", "store-0217"]);
    assert_eq!(c.rebuilt, ["hub-aws", "store-0142", "store-0217"]);
    let tenants = |router: &str| -> Vec<String> {
        cfg(&c.routers[router])
            .tenants
            .iter()
            .map(|t| t.name.clone())
            .collect()
    };
    assert!(!tenants("store-0142").contains(&"kiosk".to_string()));
    assert!(tenants("store-0217").contains(&"kiosk".to_string()));
}

#[test]
fn changing_an_enclosing_tenant_reaches_its_members_routers() {
    // `corp` has no hosts of its own; `kiosk.corp` is on store-0142 and reaches loyalty at
    // hub-aws, so both carry `corp` as its parent.
    let mut before = retail_with_kiosk();
    named(&mut before.tenants, "kiosk").metadata.name = Some("kiosk.corp".into());
    named(&mut before.policies, "kiosk-loyalty").spec.tenants = vec!["kiosk.corp".into()];
    before.tenants.push(tenant("corp", &[]));
    let mut after = before.clone();
    named(&mut after.tenants, "corp").spec.description = Some("the company".into());
    let c = recompile(&before, &after);
    assert_eq!(c.reselected, ["hub-aws", "store-0142"]);
    assert_eq!(c.rebuilt, ["hub-aws", "store-0142"]);

    // Without `corp`, `kiosk.corp` has no parent: the same two routers change.
    let mut after = before.clone();
    after
        .tenants
        .retain(|t| t.metadata.name.as_deref() != Some("corp"));
    let c = recompile(&before, &after);
    assert_eq!(c.reselected, ["hub-aws", "store-0142"]);
    assert_eq!(c.rebuilt, ["hub-aws", "store-0142"]);
    let kiosk = cfg(&c.routers["store-0142"])
        .tenants
        .into_iter()
        .find(|t| t.name == "kiosk.corp")
        .expect("kiosk.corp is local");
    assert_eq!(kiosk.parent, "");
}

#[test]
fn an_unchanged_intent_reselects_nothing() {
    let intent = retail_with_kiosk();
    let mut compiler = Compiler::new(options());
    compiler.compile(&intent);
    let mut shuffled = intent.clone();
    shuffled.routers.reverse();
    shuffled.tenants.reverse();
    let again = compiler.compile(&shuffled);
    assert!(again.reselected.is_empty(), "{:?}", again.reselected);
    assert_eq!(again.routers.len(), 5);
}

#[test]
fn qos_classes_rate_limits_capacities_and_router_limits_reach_the_router() {
    let c = retail();
    let store = cfg(&c.routers["store-0142"]);
    assert_eq!(
        c.routers["store-0142"].encoded,
        store.encode_to_vec(),
        "assembled in field order with the router's own limits between the shared pieces"
    );
    assert_eq!(store.qos_classes, signpost_cnf::qos::default_classes());
    let critical = store
        .qos_classes
        .iter()
        .find(|q| q.priority == pb::Priority::Critical as i32)
        .expect("a critical class");
    assert!(critical.strict && critical.dscp == 46 && critical.limit_percent == 50);
    let broadband = store
        .wan_interfaces
        .iter()
        .find(|w| w.name == "broadband")
        .expect("broadband");
    assert_eq!(broadband.capacity_bps, 500_000_000);
    let guest = store
        .access
        .iter()
        .find(|r| r.policy == "guest-internet")
        .expect("guest-internet");
    assert_eq!(guest.priority, pb::Priority::Low as i32);
    let limit = guest.rate_limit.expect("a rate limit");
    assert_eq!(
        (
            limit.bits_per_second,
            limit.burst_bytes,
            limit.new_sessions_per_second
        ),
        (20_000_000, 250_000, 50)
    );
    let pay = store
        .access
        .iter()
        .find(|r| r.policy == "pos-payments")
        .expect("pos-payments");
    assert_eq!(pay.priority, pb::Priority::Critical as i32);
    let limits = store.limits.expect("limits");
    assert_eq!(
        (
            limits.max_half_open_per_tenant,
            limits.new_sessions_per_second_per_tenant,
            limits.max_half_open
        ),
        (2000, 500, 0)
    );
    // A router without `limits` gets the router's defaults (all zero).
    let other = cfg(&c.routers["store-0217"]);
    assert_eq!(other.limits, Some(pb::Limits::default()));
    // The config the router gets builds, with those classes and limits.
    let tables = signpost_cnf::pipeline::Tables::new(&store, "v").expect("the router takes it");
    assert_eq!(tables.limits.max_half_open_per_tenant, 2000);
    assert_eq!(tables.guard.tenant_rate(), 500);
}

#[test]
fn path_monitoring_settings_reach_the_router_config() {
    let intent = yaml(
        r#"
apiVersion: signpost.dev/v1alpha1
kind: Router
metadata: {name: store-1}
spec:
  role: edge
  pathMonitoring: {intervalMs: 20, multiplier: 5, authentication: none, holdDownMs: 2000}
  interfaces:
    - {name: wan, role: wan, addresses: [192.0.2.11/24], neighborhood: internet, vector: broadband}
---
apiVersion: signpost.dev/v1alpha1
kind: Router
metadata: {name: hub-1}
spec:
  role: hub
  interfaces:
    - {name: wan, role: wan, addresses: [192.0.2.1/24], neighborhood: internet, vector: internet}
"#,
    );
    let c = compile(&intent, &options());
    let out = c.routers.get("store-1").expect("store-1 compiled");
    let store = cfg(out);
    assert_eq!(
        out.encoded,
        store.encode_to_vec(),
        "assembled in field order: what the router re-encodes hashes to the version"
    );
    assert_eq!(
        store.path_monitoring,
        Some(pb::PathMonitoring {
            min_tx_ms: 20,
            min_rx_ms: 20,
            multiplier: 5,
            authentication: pb::BfdAuthentication::None as i32,
            hold_down_ms: 2000,
            disabled: false,
        })
    );
    let hub = c
        .routers
        .get("hub-1")
        .map(|o| cfg(o))
        .expect("hub-1 compiled");
    assert_eq!(hub.path_monitoring, None, "absent: the router's defaults");
}
