//! The compiler's output for `examples/retail`, fed to the router core: every router must accept
//! its config, and a POS terminal's first packet at store-0142 must reach the payment service
//! through hub-aws, while guest Wi-Fi's is denied. Catches drift between what the operator emits
//! and what the router accepts.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use etherparse::PacketBuilder;
use signpost_cnf::pipeline::{
    Action, DropReason, Egress, Ingress, Interface, Options, PacketBuf, Pipeline, Tables,
};
use signpost_operator::admission::Admission;
use signpost_operator::compiler::{self, Options as CompileOptions};
use signpost_operator::manifests;

fn compiled() -> compiler::Compiled {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/retail");
    let docs = manifests::read_documents(&dir).expect("readable");
    let intent = manifests::decode(&docs, &Admission::new()).expect("admitted");
    let options = CompileOptions {
        key_master: [7; 32],
        key_epoch: 3,
    };
    compiler::compile(&intent, &options)
}

fn tables(c: &compiler::Compiled, router: &str) -> Tables {
    let out = c
        .routers
        .get(router)
        .unwrap_or_else(|| panic!("{router} compiled"));
    let config = out.config().expect("decodes");
    Tables::new(&config, &out.version)
        .unwrap_or_else(|e| panic!("{router} refuses its config: {e}"))
}

#[test]
fn every_router_accepts_its_compiled_config() {
    let c = compiled();
    assert!(!c.has_errors(), "{:?}", c.diagnostics);
    for name in c.routers.keys() {
        tables(&c, name);
    }
}

fn syn(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv4(src, dst, 64)
        .tcp(40000, 443, 1, 64240)
        .syn()
        .write(&mut out, &[])
        .expect("builds");
    out
}

fn run(p: &mut Pipeline, ingress: Ingress, packet: &[u8]) -> (Action, Vec<u8>) {
    let mut buf = vec![0u8; 2048];
    buf[..packet.len()].copy_from_slice(packet);
    let mut pkt = PacketBuf::new(&mut buf, packet.len());
    let action = p.handle(Instant::now(), ingress, &mut pkt);
    let len = pkt.len();
    buf.truncate(len);
    (action, buf)
}

#[test]
fn a_store_reaches_payments_through_its_hub_with_compiled_configs() {
    let c = compiled();
    let now = Instant::now();
    let mut store = Pipeline::new(now, Arc::new(tables(&c, "store-0142")), Options::default());
    let mut hub = Pipeline::new(now, Arc::new(tables(&c, "hub-aws")), Options::default());
    // The store's POS network is VLAN 10, 10.1.10.0/24; payments is 10.255.1.10:443.
    let pos = Ingress {
        interface: Interface::Lan(0),
        vlan: Some(10),
    };
    let (a, wan) = run(&mut store, pos, &syn([10, 1, 10, 5], [10, 255, 1, 10]));
    let Action::Forward(Egress {
        interface: Interface::Wan(w),
        next_hop,
        ..
    }) = a
    else {
        panic!("store: {a:?}")
    };
    assert_eq!(
        (w, next_hop),
        (0, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
        "broadband, via its gateway"
    );
    // Proximity with no measurements yet: equal path costs, so the first location (hub-aws).
    let (b, delivered) = run(
        &mut hub,
        Ingress {
            interface: Interface::Wan(0),
            vlan: None,
        },
        &wan,
    );
    assert!(
        matches!(
            b,
            Action::Forward(Egress {
                interface: Interface::Lan(0),
                ..
            })
        ),
        "hub: {b:?}"
    );
    assert_eq!(
        &delivered[16..20],
        &[10, 100, 1, 10],
        "delivered to the real payments address"
    );
    // Guest Wi-Fi (VLAN 30) may not reach payments.
    let guest = Ingress {
        interface: Interface::Lan(0),
        vlan: Some(30),
    };
    let (a, _) = run(&mut store, guest, &syn([10, 1, 30, 9], [10, 255, 1, 10]));
    assert_eq!(a, Action::Drop(DropReason::NoPolicy));
}
