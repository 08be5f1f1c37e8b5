//! The classification rules of `signpost_cnf::classify`, one test per rule, on `RouterConfig`
//! values built here; the error texts of malformed configs; and that lookups do not allocate.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::IpAddr;

use signpost_cnf::classify::{
    Classifier, ConfigError, ForeignDestination, LanRoute, Location, RuleId, ServiceId, TenantId,
};
use signpost_proto::v1::{
    AccessRule, Direction, LanInterface, LanNetwork, LoadBalancing, PortRange, Priority, Protocol,
    RateLimit, RouterConfig, SecurityMode, Service, ServiceLocation, Sla, Tenant, TrafficClass,
    Transport,
};

// ---- config builders ---------------------------------------------------------------------

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn network(name: &str, vlan: u32, prefixes: &[&str]) -> LanNetwork {
    LanNetwork {
        name: name.into(),
        prefixes: strings(prefixes),
        vlan,
    }
}

fn lan(name: &str, addresses: &[&str], networks: Vec<LanNetwork>) -> LanInterface {
    LanInterface {
        name: name.into(),
        device: name.into(),
        addresses: strings(addresses),
        networks,
        gateway: String::new(),
    }
}

fn tenant(name: &str, networks: &[&str], prefixes: &[&str]) -> Tenant {
    Tenant {
        name: name.into(),
        networks: strings(networks),
        prefixes: strings(prefixes),
        parent: String::new(),
    }
}

fn transport(protocol: Protocol, ports: &[(u32, u32)]) -> Transport {
    Transport {
        protocol: protocol as i32,
        ports: ports
            .iter()
            .map(|&(first, last)| PortRange { first, last })
            .collect(),
    }
}

fn service(name: &str, prefixes: &[&str], transports: Vec<Transport>) -> Service {
    Service {
        name: name.into(),
        prefixes: strings(prefixes),
        hostname: String::new(),
        transports,
        locations: Vec::new(),
        traffic_class: TrafficClass::BestEffort as i32,
        load_balancing: LoadBalancing::Proximity as i32,
        health_check: None,
    }
}

fn access(tenant: &str, service: &str, policy: &str) -> AccessRule {
    AccessRule {
        tenant: tenant.into(),
        service: service.into(),
        policy: policy.into(),
        sla: None,
        path_preference: Vec::new(),
        priority: Priority::Normal as i32,
        rate_limit: None,
        security: SecurityMode::Encrypt as i32,
        direction: Direction::FromTenant as i32,
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn tcp(ports: &[(u32, u32)]) -> Transport {
    transport(Protocol::Tcp, ports)
}

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
const ICMPV6: u8 = 58;

/// A store edge: `lan0` carries `pos` on VLAN 10 and `guest` untagged; `lan1` carries another
/// untagged `pos` network.
fn store() -> RouterConfig {
    RouterConfig {
        router: "store-0042".into(),
        lan_interfaces: vec![
            lan(
                "lan0",
                &["10.0.0.1/24", "2001:db8:100::1/64"],
                vec![
                    network("pos", 10, &["10.1.0.0/24", "2001:db8:1::/64"]),
                    network("guest", 0, &["10.2.0.0/24"]),
                ],
            ),
            lan(
                "lan1",
                &["10.9.0.1/24"],
                vec![network("pos", 0, &["10.3.0.0/24"])],
            ),
        ],
        ..Default::default()
    }
}

fn classifier(config: &RouterConfig) -> Classifier {
    match Classifier::new(config) {
        Ok(c) => c,
        Err(e) => panic!("config rejected: {e}"),
    }
}

fn error(config: &RouterConfig) -> ConfigError {
    match Classifier::new(config) {
        Ok(_) => panic!("config accepted"),
        Err(e) => e,
    }
}

fn named(c: &Classifier, t: Option<TenantId>) -> Option<&str> {
    t.map(|t| c.tenant_info(t).name.as_str())
}

fn service_name(c: &Classifier, s: Option<ServiceId>) -> Option<&str> {
    s.map(|s| c.service_info(s).name.as_str())
}

// ---- tenants -----------------------------------------------------------------------------

#[test]
fn network_claims_hold_on_their_interface_and_vlan_only() {
    let mut config = store();
    config.tenants = vec![
        tenant("guest", &["guest"], &[]),
        tenant("pos", &["pos"], &[]),
    ];
    let c = classifier(&config);
    let t = |lan, vlan, src| named(&c, c.tenant(lan, vlan, ip(src)));
    // pos on lan0 is VLAN 10.
    assert_eq!(t(0, Some(10), "10.1.0.5"), Some("pos"));
    assert_eq!(t(0, None, "10.1.0.5"), None);
    assert_eq!(t(0, Some(20), "10.1.0.5"), None);
    assert_eq!(t(0, Some(10), "2001:db8:1::7"), Some("pos"));
    // pos on lan1 is untagged.
    assert_eq!(t(1, None, "10.3.0.1"), Some("pos"));
    assert_eq!(t(1, Some(10), "10.3.0.1"), None);
    // A network's prefixes count only on the interface that has it.
    assert_eq!(t(1, Some(10), "10.1.0.5"), None);
    assert_eq!(t(0, None, "10.3.0.1"), None);
    // guest is untagged; a VLAN 0 tag (priority only) is untagged.
    assert_eq!(t(0, None, "10.2.0.9"), Some("guest"));
    assert_eq!(t(0, Some(0), "10.2.0.9"), Some("guest"));
    assert_eq!(t(0, Some(10), "10.2.0.9"), None);
    // Nothing claims the interface subnet.
    assert_eq!(t(0, None, "10.0.0.7"), None);
}

#[test]
fn tenant_prefixes_apply_on_every_interface_and_vlan() {
    let mut config = store();
    config.tenants = vec![tenant(
        "corp",
        &[],
        &["172.16.0.0/12", "2001:db8:cafe::/48"],
    )];
    let c = classifier(&config);
    let corp = c.tenant_named("corp");
    assert!(corp.is_some());
    for (lan, vlan) in [
        (0, None),
        (0, Some(10)),
        (0, Some(4000)),
        (1, None),
        (7, None),
    ] {
        assert_eq!(
            c.tenant(lan, vlan, ip("172.20.1.1")),
            corp,
            "{lan} {vlan:?}"
        );
        assert_eq!(c.tenant(lan, vlan, ip("2001:db8:cafe:1::1")), corp);
        assert_eq!(c.tenant(lan, vlan, ip("172.32.0.1")), None);
        assert_eq!(c.tenant(lan, vlan, ip("2001:db8:caff::1")), None);
    }
}

#[test]
fn longest_claim_wins_whatever_its_kind() {
    let mut config = store();
    config.lan_interfaces[1].networks = vec![network("pos", 0, &["10.1.0.0/16"])];
    config.tenants = vec![
        tenant("cameras", &[], &["10.3.0.128/25"]),
        tenant("corp", &[], &["10.0.0.0/8"]),
        tenant("pos", &["pos"], &[]),
    ];
    let c = classifier(&config);
    let t = |lan, vlan, src| named(&c, c.tenant(lan, vlan, ip(src)));
    // A longer network claim beats a shorter prefix claim...
    assert_eq!(t(0, Some(10), "10.1.0.5"), Some("pos"));
    assert_eq!(t(1, None, "10.1.200.5"), Some("pos"));
    // ...where the network is; elsewhere the prefix claim holds.
    assert_eq!(t(0, None, "10.1.0.5"), Some("corp"));
    assert_eq!(t(0, Some(10), "10.9.9.9"), Some("corp"));
    // A longer prefix claim beats a shorter network claim.
    config.lan_interfaces[1].networks = vec![network("pos", 0, &["10.3.0.0/24"])];
    let c = classifier(&config);
    let t = |lan, vlan, src| named(&c, c.tenant(lan, vlan, ip(src)));
    assert_eq!(t(1, None, "10.3.0.200"), Some("cameras"));
    assert_eq!(t(1, None, "10.3.0.100"), Some("pos"));
}

#[test]
fn at_equal_length_a_network_claim_beats_a_prefix_claim() {
    let mut config = store();
    config.lan_interfaces[1].networks = vec![network("pos", 0, &["10.3.0.0/24"])];
    // `legacy` comes first in config order, and still loses to the network claim.
    config.tenants = vec![
        tenant("legacy", &[], &["10.3.0.0/24"]),
        tenant("pos", &["pos"], &[]),
    ];
    let c = classifier(&config);
    assert_eq!(named(&c, c.tenant(1, None, ip("10.3.0.1"))), Some("pos"));
    // Where the network is not, the prefix claim holds.
    assert_eq!(named(&c, c.tenant(0, None, ip("10.3.0.1"))), Some("legacy"));
}

#[test]
fn two_tenants_claiming_the_same_thing_first_in_config_order_wins() {
    let mut config = store();
    config.tenants = vec![
        tenant("alpha", &["pos"], &["192.0.2.0/24"]),
        tenant("beta", &["pos"], &["192.0.2.0/24"]),
    ];
    let c = classifier(&config);
    assert_eq!(
        named(&c, c.tenant(0, Some(10), ip("10.1.0.1"))),
        Some("alpha")
    );
    assert_eq!(named(&c, c.tenant(1, None, ip("10.3.0.1"))), Some("alpha"));
    assert_eq!(named(&c, c.tenant(1, None, ip("192.0.2.1"))), Some("alpha"));
    config.tenants.swap(0, 1);
    let c = classifier(&config);
    assert_eq!(
        named(&c, c.tenant(0, Some(10), ip("10.1.0.1"))),
        Some("beta")
    );
    assert_eq!(named(&c, c.tenant(1, None, ip("192.0.2.1"))), Some("beta"));
}

#[test]
fn unknown_network_names_claim_nothing_and_unmatched_sources_have_no_tenant() {
    let mut config = store();
    config.tenants = vec![tenant("kiosk", &["kiosk"], &[])];
    let c = classifier(&config);
    for (lan, vlan, src) in [
        (0, Some(10), "10.1.0.1"),
        (1, None, "10.3.0.1"),
        (0, None, "::1"),
    ] {
        assert_eq!(c.tenant(lan, vlan, ip(src)), None);
    }
}

// ---- services ----------------------------------------------------------------------------

fn with_services(services: Vec<Service>) -> RouterConfig {
    RouterConfig {
        services,
        ..Default::default()
    }
}

fn breakout() -> RouterConfig {
    RouterConfig {
        services: vec![
            service(
                "internet",
                &["0.0.0.0/0"],
                vec![tcp(&[(80, 80), (443, 443)])],
            ),
            service("payments", &["10.255.1.10/32"], vec![tcp(&[(443, 443)])]),
        ],
        ..Default::default()
    }
}

#[test]
fn service_is_the_longest_prefix_whose_transports_accept_the_port() {
    let c = classifier(&breakout());
    let s = |dst, proto, port| service_name(&c, c.service(ip(dst), proto, port));
    assert_eq!(s("10.255.1.10", TCP, 443), Some("payments"));
    assert_eq!(s("10.255.1.10", TCP, 80), Some("internet"));
    assert_eq!(s("10.255.1.10", TCP, 22), None);
    assert_eq!(s("10.255.1.10", UDP, 443), None);
    assert_eq!(s("198.51.100.7", TCP, 443), Some("internet"));
    assert_eq!(s("198.51.100.7", TCP, 8080), None);
}

/// The breakout at hub `hub`, which fronts `internet`, `payments` (real address 10.100.1.10)
/// and `video` and `cctv`, two services on one host (10.100.2.20; the first in config order
/// names it when it is foreign); `printing`'s location on
/// another router has a real address this hub does not front.
fn egress_hub() -> RouterConfig {
    let at = |router: &str, addresses: &[&str]| ServiceLocation {
        router: router.into(),
        addresses: strings(addresses),
        priority: 0,
    };
    let mut config = breakout();
    config.router = "hub".into();
    config.services[0].locations = vec![at("hub", &[])];
    config.services[1].locations = vec![at("hub", &["10.100.1.10"]), at("other", &["10.110.1.10"])];
    for name in ["video", "cctv"] {
        let mut s = service(
            name,
            &["10.255.2.0/24"],
            vec![tcp(&[(443, 443), (554, 554)])],
        );
        s.locations = vec![at("hub", &["10.100.2.20"])];
        config.services.push(s);
    }
    let mut printing = service("printing", &["10.255.5.0/24"], vec![tcp(&[(631, 631)])]);
    printing.locations = vec![at("other", &["10.100.5.5"])];
    config.services.push(printing);
    config
}

#[test]
fn the_original_destination_must_belong_to_the_named_service() {
    let c = classifier(&egress_hub());
    let id = |name| c.service_named(name).expect("service");
    let check = |service, dst, port| {
        c.check_destination(id(service), ip(dst), TCP, port)
            .map_err(|e| match e {
                ForeignDestination::OtherService(s) => c.service_info(s).name.clone(),
                ForeignDestination::NoService => "none".to_string(),
            })
    };
    // Legitimate: the breakout to the web, a VIP of the named service, a shared host.
    assert_eq!(check("internet", "198.18.80.80", 80), Ok(()));
    assert_eq!(check("payments", "10.255.1.10", 443), Ok(()));
    assert_eq!(check("video", "10.255.2.20", 554), Ok(()));
    assert_eq!(check("cctv", "10.100.2.20", 443), Ok(()));
    assert_eq!(check("video", "10.100.2.20", 443), Ok(()));
    // A real address here belongs to its service on every port.
    assert_eq!(
        check("internet", "10.100.1.10", 443),
        Err("payments".into())
    );
    assert_eq!(check("internet", "10.100.1.10", 80), Err("payments".into()));
    assert_eq!(check("internet", "10.100.2.20", 80), Err("video".into()));
    assert_eq!(check("payments", "10.100.2.20", 443), Err("video".into()));
    // A more specific prefix belongs to its service.
    assert_eq!(
        check("internet", "10.255.1.10", 443),
        Err("payments".into())
    );
    // Port fallthrough is the service lookup's: 10.255.1.10:80 is internet's.
    assert_eq!(check("internet", "10.255.1.10", 80), Ok(()));
    // A location on another router fronts nothing here: its real address is just an address.
    assert_eq!(check("internet", "10.100.5.5", 443), Ok(()));
    // Outside the named service altogether.
    assert_eq!(check("internet", "10.1.1.1", 22), Err("none".into()));
    assert_eq!(
        check("payments", "198.18.80.80", 443),
        Err("internet".into())
    );
}

#[test]
fn ipv4_and_ipv6_services_are_independent() {
    let mut config = breakout();
    config
        .services
        .push(service("registry", &["2001:db8:5::/48"], vec![tcp(&[])]));
    let c = classifier(&config);
    let s = |dst, proto, port| service_name(&c, c.service(ip(dst), proto, port));
    // 0.0.0.0/0 does not cover IPv6, nor does an IPv4-mapped address reach IPv4 services.
    assert_eq!(s("2001:db8:6::1", TCP, 443), None);
    assert_eq!(s("::ffff:10.255.1.10", TCP, 443), None);
    assert_eq!(s("2001:db8:5::1", TCP, 443), Some("registry"));
    assert_eq!(s("10.1.1.1", TCP, 80), Some("internet"));
}

#[test]
fn port_ranges_empty_port_lists_and_icmp() {
    let config = with_services(vec![
        service(
            "dns",
            &["10.53.0.0/16"],
            vec![transport(Protocol::Udp, &[(53, 53)]), tcp(&[(53, 53)])],
        ),
        service(
            "monitoring",
            &["10.53.0.0/24"],
            vec![
                tcp(&[(9000, 9100)]),
                transport(Protocol::Icmp, &[]),
                transport(Protocol::Icmpv6, &[]),
            ],
        ),
        service(
            "voice",
            &["10.60.0.0/16"],
            vec![transport(Protocol::Udp, &[])],
        ),
        service("dark", &["10.70.0.0/16"], vec![]),
    ]);
    let c = classifier(&config);
    let s = |dst, proto, port| service_name(&c, c.service(ip(dst), proto, port));
    assert_eq!(s("10.53.0.1", TCP, 9000), Some("monitoring"));
    assert_eq!(s("10.53.0.1", TCP, 9100), Some("monitoring"));
    assert_eq!(s("10.53.0.1", TCP, 9101), None);
    assert_eq!(s("10.53.0.1", TCP, 8999), None);
    // Longest prefix does not take UDP 53: the shorter one does.
    assert_eq!(s("10.53.0.1", UDP, 53), Some("dns"));
    assert_eq!(s("10.53.9.1", TCP, 53), Some("dns"));
    assert_eq!(s("10.53.9.1", TCP, 9000), None);
    // ICMP ignores the port argument; a transport's protocol is exact.
    assert_eq!(s("10.53.0.1", ICMP, 0), Some("monitoring"));
    assert_eq!(s("10.53.0.1", ICMP, 2048), Some("monitoring"));
    assert_eq!(s("10.53.0.1", ICMPV6, 0), Some("monitoring"));
    assert_eq!(s("10.53.9.1", ICMP, 0), None);
    // An empty port list is every port, 0 and 65535 included.
    for port in [0, 1, 5060, 65535] {
        assert_eq!(s("10.60.1.1", UDP, port), Some("voice"));
    }
    assert_eq!(s("10.60.1.1", TCP, 5060), None);
    // A service without transports accepts nothing.
    assert_eq!(s("10.70.1.1", TCP, 80), None);
    assert_eq!(s("10.70.1.1", ICMP, 0), None);
}

#[test]
fn services_with_the_same_prefix_first_accepting_in_config_order_wins() {
    let config = with_services(vec![
        service("web", &["203.0.113.0/24"], vec![tcp(&[(80, 443)])]),
        service("web-tls", &["203.0.113.0/24"], vec![tcp(&[(443, 443)])]),
        service("ssh", &["203.0.113.0/24"], vec![tcp(&[(22, 22)])]),
    ]);
    let c = classifier(&config);
    let s = |port| service_name(&c, c.service(ip("203.0.113.9"), TCP, port));
    assert_eq!(s(443), Some("web"));
    assert_eq!(s(22), Some("ssh"));
    assert_eq!(s(8443), None);
}

#[test]
fn fallback_walks_every_shorter_prefix() {
    let config = with_services(vec![
        service("a", &["10.0.0.0/8"], vec![tcp(&[(1, 1)])]),
        service("b", &["10.1.0.0/16"], vec![tcp(&[(2, 2)])]),
        service("c", &["10.1.2.0/24"], vec![tcp(&[(3, 3)])]),
        service("d", &["10.1.2.3/32"], vec![tcp(&[(4, 4)])]),
        service("e", &["0.0.0.0/0"], vec![tcp(&[(5, 5)])]),
    ]);
    let c = classifier(&config);
    let s = |dst, port| service_name(&c, c.service(ip(dst), TCP, port));
    for (port, want) in [(1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, "e")] {
        assert_eq!(s("10.1.2.3", port), Some(want), "port {port}");
    }
    assert_eq!(s("10.1.2.4", 4), None);
    assert_eq!(s("10.1.3.3", 3), None);
    assert_eq!(s("10.1.3.3", 2), Some("b"));
    assert_eq!(s("11.0.0.1", 1), None);
    assert_eq!(s("11.0.0.1", 5), Some("e"));
}

// ---- rules -------------------------------------------------------------------------------

fn with_rules() -> RouterConfig {
    let mut config = store();
    config.tenants = vec![
        tenant("corp", &[], &["172.16.0.0/12"]),
        Tenant {
            parent: "corp".into(),
            ..tenant("pos.corp", &["pos"], &[])
        },
    ];
    config.services = breakout().services;
    config.services[1].locations = vec![
        ServiceLocation {
            router: "hub-east".into(),
            addresses: strings(&["10.200.0.10", "2001:db8:200::10"]),
            priority: 1,
        },
        ServiceLocation {
            router: "hub-west".into(),
            addresses: Vec::new(),
            priority: 2,
        },
    ];
    let mut precise = access("pos.corp", "payments", "pos-to-payments");
    precise.sla = Some(Sla {
        max_latency_ms: 150,
        max_loss_ppm: 10_000,
        max_jitter_ms: 30,
    });
    precise.rate_limit = Some(RateLimit {
        bits_per_second: 2_000_000,
        burst_bytes: 25_000,
        new_sessions_per_second: 10,
    });
    precise.path_preference = strings(&["mpls", "broadband"]);
    precise.priority = Priority::Critical as i32;
    precise.direction = Direction::Both as i32;
    config.access = vec![
        access("corp", "internet", "corp-breakout"),
        precise,
        // A repeat of a pair: the first entry stays.
        access("pos.corp", "payments", "later"),
    ];
    config
}

#[test]
fn rules_are_exactly_the_listed_pairs_first_entry_wins() {
    let c = classifier(&with_rules());
    let corp = c.tenant_named("corp").unwrap();
    let pos = c.tenant_named("pos.corp").unwrap();
    let internet = c.service_named("internet").unwrap();
    let payments = c.service_named("payments").unwrap();
    assert_eq!(c.rule(corp, internet), Some(RuleId(0)));
    assert_eq!(c.rule(pos, payments), Some(RuleId(1)));
    // Not listed: denied, even for a child of a tenant that is allowed (the compiler expands).
    assert_eq!(c.rule(pos, internet), None);
    assert_eq!(c.rule(corp, payments), None);
    // Ids from elsewhere are denied, not a panic.
    assert_eq!(c.rule(TenantId(9), payments), None);
    assert_eq!(c.rule(corp, ServiceId(9)), None);
    assert_eq!(c.rule(TenantId(u16::MAX), ServiceId(u16::MAX)), None);

    let r = c.rule_info(RuleId(1));
    assert_eq!(r.policy, "pos-to-payments");
    assert_eq!((r.tenant, r.service), (pos, payments));
    assert_eq!(r.security, SecurityMode::Encrypt);
    assert_eq!(r.direction, Direction::Both);
    assert_eq!(r.priority, Priority::Critical);
    assert_eq!(r.sla.max_latency_ms, 150);
    assert_eq!(r.rate_limit.bits_per_second, 2_000_000);
    assert_eq!(r.path_preference, ["mpls", "broadband"]);
    // Absent SLA and rate limit read as "no requirement".
    assert_eq!(c.rule_info(RuleId(0)).sla, Sla::default());
    assert_eq!(c.rule_info(RuleId(0)).rate_limit, RateLimit::default());
    assert_eq!(c.rule_count(), 3);
}

#[test]
fn whole_pipeline_on_a_first_packet() {
    let c = classifier(&with_rules());
    let tenant = c.tenant(0, Some(10), ip("10.1.0.20")).unwrap();
    let service = c.service(ip("10.255.1.10"), TCP, 443).unwrap();
    let rule = c.rule(tenant, service).unwrap();
    assert_eq!(c.rule_info(rule).policy, "pos-to-payments");
    // A guest host has no tenant at all; a corp host may not reach payments.
    assert_eq!(c.tenant(0, None, ip("10.2.0.20")), None);
    let corp = c.tenant(1, None, ip("172.16.5.5")).unwrap();
    assert_eq!(c.rule(corp, service), None);
}

// ---- names and entries -------------------------------------------------------------------

#[test]
fn names_and_entries() {
    let c = classifier(&with_rules());
    let corp = c.tenant_named("corp").unwrap();
    let pos = c.tenant_named("pos.corp").unwrap();
    assert_eq!(c.tenant_named("pos"), None);
    assert_eq!(c.tenant_named(""), None);
    assert_eq!(c.tenant_info(pos).parent, Some(corp));
    assert_eq!(c.tenant_info(corp).parent, None);
    assert_eq!(c.tenant_count(), 2);

    let payments = c.service_named("payments").unwrap();
    assert_eq!(c.service_named("pay"), None);
    let entry = c.service_info(payments);
    assert_eq!(entry.name, "payments");
    assert_eq!(entry.load_balancing, LoadBalancing::Proximity);
    assert_eq!(entry.traffic_class, TrafficClass::BestEffort);
    assert_eq!(
        entry.locations,
        [
            Location {
                router: "hub-east".into(),
                addresses: vec![ip("10.200.0.10"), ip("2001:db8:200::10")],
                priority: 1,
            },
            Location {
                router: "hub-west".into(),
                addresses: Vec::new(),
                priority: 2,
            },
        ]
    );
    assert_eq!(c.service_count(), 2);

    // Ids this classifier did not issue give empty entries, not panics.
    assert_eq!(c.tenant_info(TenantId(500)).name, "");
    assert_eq!(c.service_info(ServiceId(500)).name, "");
    assert!(c.service_info(ServiceId(500)).locations.is_empty());
    assert_eq!(c.rule_info(RuleId(500)).policy, "");
}

#[test]
fn names_need_not_arrive_sorted() {
    let config = RouterConfig {
        tenants: vec![tenant("zeta", &[], &[]), tenant("alpha", &[], &[])],
        ..Default::default()
    };
    let c = classifier(&config);
    assert_eq!(c.tenant_named("zeta"), Some(TenantId(0)));
    assert_eq!(c.tenant_named("alpha"), Some(TenantId(1)));
}

// ---- LAN routes --------------------------------------------------------------------------

#[test]
fn lan_route_longest_match_over_networks_and_interface_subnets() {
    let mut config = store();
    // lan1's subnet equals a network of lan0 on VLAN 10: the network wins.
    config.lan_interfaces[1].addresses = strings(&["10.9.0.1/24", "10.1.0.1/24"]);
    let c = classifier(&config);
    let r = |dst| c.lan_route(ip(dst));
    let route = |lan, vlan| Some(LanRoute { lan, vlan });
    assert_eq!(r("10.1.0.9"), route(0, Some(10)));
    assert_eq!(r("2001:db8:1::9"), route(0, Some(10)));
    assert_eq!(r("10.2.0.9"), route(0, None));
    assert_eq!(r("10.0.0.9"), route(0, None));
    assert_eq!(r("2001:db8:100::9"), route(0, None));
    assert_eq!(r("10.3.0.9"), route(1, None));
    assert_eq!(r("10.9.0.200"), route(1, None));
    assert_eq!(r("10.4.0.1"), None);
    assert_eq!(r("2001:db8:2::1"), None);

    // A longer network inside an interface subnet wins over the subnet.
    config.lan_interfaces[0]
        .networks
        .push(network("cams", 30, &["10.0.0.128/25"]));
    let c = classifier(&config);
    assert_eq!(c.lan_route(ip("10.0.0.200")), route(0, Some(30)));
    assert_eq!(c.lan_route(ip("10.0.0.100")), route(0, None));
}

#[test]
fn a_lan_gateway_takes_every_destination_no_subnet_holds() {
    let mut config = store();
    assert_eq!(classifier(&config).lan_route(ip("198.18.80.80")), None);
    config.lan_interfaces[1].gateway = "10.3.0.254".into();
    let c = classifier(&config);
    let route = |lan, vlan| Some(LanRoute { lan, vlan });
    assert_eq!(c.lan_route(ip("198.18.80.80")), route(1, None));
    // Subnets and networks still win; the gateway is IPv4, so IPv6 stays unrouted.
    assert_eq!(c.lan_route(ip("10.1.0.9")), route(0, Some(10)));
    assert_eq!(c.lan_route(ip("2001:db8:2::1")), None);

    config.lan_interfaces[1].gateway = "10.3.0".into();
    assert_eq!(
        error(&config).to_string(),
        "LAN interface `lan1`: gateway `10.3.0` is not an IP address such as 10.1.2.3 or \
         2001:db8::3"
    );
}

// ---- malformed configs -------------------------------------------------------------------

#[test]
fn malformed_configs_are_rejected_with_what_to_fix() {
    let text = |config: &RouterConfig| error(config).to_string();

    let mut c = breakout();
    c.services[1].prefixes = strings(&["10.255.1.300/32"]);
    assert_eq!(
        text(&c),
        "service `payments`: prefix `10.255.1.300/32` is not a CIDR prefix such as \
         10.20.0.0/16 or 2001:db8::/48"
    );

    let mut c = store();
    c.tenants = vec![tenant("corp", &[], &["172.16.0.0"])];
    assert!(
        text(&c).starts_with("tenant `corp`: prefix `172.16.0.0` is not a CIDR prefix"),
        "{}",
        text(&c)
    );

    let mut c = store();
    c.lan_interfaces[1].networks[0].prefixes = strings(&["10.3.0.0/33"]);
    assert!(text(&c).starts_with(
        "LAN interface `lan1` network `pos`: prefix `10.3.0.0/33` is not a CIDR prefix"
    ));

    let mut c = store();
    c.lan_interfaces[0].addresses = strings(&["10.0.0.1"]);
    assert_eq!(
        text(&c),
        "LAN interface `lan0`: address `10.0.0.1` is not an address with prefix length such \
         as 10.1.0.1/24"
    );

    let mut c = store();
    c.lan_interfaces[0].networks[0].vlan = 4095;
    assert_eq!(
        text(&c),
        "LAN interface `lan0` network `pos`: VLAN 4095 is not 1-4094 (0 means untagged)"
    );

    let mut c = with_rules();
    c.services[1].locations[0].addresses = strings(&["10.200.0.10/32"]);
    assert_eq!(
        text(&c),
        "service `payments` location `hub-east`: address `10.200.0.10/32` is not an IP \
         address such as 10.1.2.3 or 2001:db8::3"
    );

    let mut c = with_rules();
    c.access.push(access("pso", "payments", "pos-to-payments"));
    assert_eq!(
        text(&c),
        "access rule 3 (`pso` x `payments`, policy `pos-to-payments`): tenant `pso` is not \
         among the config's tenants; the operator must send every tenant an access rule names"
    );

    let mut c = with_rules();
    c.access.push(access("corp", "paymnts", "p"));
    assert!(text(&c).contains("service `paymnts` is not among the config's services"));

    let mut c = with_rules();
    c.tenants[1].parent = "corporate".into();
    assert_eq!(
        text(&c),
        "tenant `pos.corp`: parent `corporate` is not among the config's tenants; the \
         operator must send a tenant's enclosing tenants with it"
    );

    let mut c = with_rules();
    c.tenants[0].parent = "pos.corp".into();
    assert!(matches!(error(&c), ConfigError::ParentCycle { .. }));
    assert!(
        text(&c).contains("following `parent` leads back to"),
        "{}",
        text(&c)
    );
    let c = RouterConfig {
        tenants: vec![Tenant {
            parent: "self".into(),
            ..tenant("self", &[], &[])
        }],
        ..Default::default()
    };
    assert!(matches!(error(&c), ConfigError::ParentCycle { .. }));

    let mut c = breakout();
    c.services.push(service("internet", &[], vec![]));
    assert_eq!(
        text(&c),
        "two services are named `internet`; a router needs unique names to tell them apart"
    );

    let mut c = breakout();
    c.services[0].transports = vec![tcp(&[(443, 80)])];
    assert_eq!(
        text(&c),
        "service `internet`: transport 0 has port range 443-80; ports are 0-65535 and \
         `first` must not exceed `last`"
    );
    c.services[0].transports = vec![tcp(&[]), tcp(&[(1, 70_000)])];
    assert!(text(&c).contains("transport 1 has port range 1-70000"));

    let mut c = breakout();
    c.services[0].transports = vec![Transport {
        protocol: 0,
        ports: Vec::new(),
    }];
    assert_eq!(
        text(&c),
        "service `internet` transport 0: protocol is unspecified; set a protocol"
    );

    let mut c = with_rules();
    c.access[0].security = 9;
    assert!(text(&c).starts_with(
        "access rule 0 (`corp` x `internet`, policy `corp-breakout`): security 9 is not a \
         value this router knows"
    ));

    let mut c = RouterConfig {
        tenants: (0..=u32::from(u16::MAX))
            .map(|i| tenant(&format!("t{i}"), &[], &[]))
            .collect(),
        ..Default::default()
    };
    assert_eq!(
        text(&c),
        "the config has 65536 tenants; a router holds at most 65535 — split the router's scope"
    );
    c.tenants.pop();
    assert!(Classifier::new(&c).is_ok());
}

// ---- no allocation -----------------------------------------------------------------------

/// Counts allocations made by the current thread, so other test threads do not interfere.
struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

#[test]
fn lookups_do_not_allocate() {
    let c = classifier(&with_rules());
    let probes: Vec<(usize, Option<u16>, IpAddr, IpAddr, u8, u16)> = vec![
        (0, Some(10), ip("10.1.0.20"), ip("10.255.1.10"), TCP, 443),
        (0, None, ip("10.2.0.20"), ip("10.255.1.10"), TCP, 80),
        (1, None, ip("172.16.5.5"), ip("8.8.8.8"), UDP, 53),
        (3, Some(99), ip("2001:db8:1::1"), ip("2001:db8::1"), TCP, 22),
    ];
    let before = ALLOCATIONS.with(Cell::get);
    let mut found = 0;
    for _ in 0..100 {
        for &(lan, vlan, src, dst, proto, port) in &probes {
            let t = c.tenant(lan, vlan, src);
            let s = c.service(dst, proto, port);
            if let (Some(t), Some(s)) = (t, s)
                && c.rule(t, s).is_some()
            {
                found += 1;
            }
            if c.lan_route(dst).is_some() {
                found += 1;
            }
        }
    }
    let after = ALLOCATIONS.with(Cell::get);
    assert_eq!(after - before, 0, "lookups allocated");
    assert_eq!(found, 100);
    // The counter works: an allocation on this thread is seen.
    let v = std::hint::black_box(vec![1u8; 10]);
    assert_eq!(ALLOCATIONS.with(Cell::get) - after, 1);
    drop(v);
}
