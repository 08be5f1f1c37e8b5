//! Reference configs of a two-router network, a store edge and a cloud hub, that the pipeline's
//! tests and the fuzz targets (`crate::fuzzing`) both drive: tenants `pos` (VLAN 10) and `guest`
//! (VLAN 30), services `payments` (TCP 443 to a VIP, re-addressed at the hub) and `telemetry`
//! (UDP 9000), two WAN paths at the store (broadband preferred, LTE) and one WAN at the hub.
//! Not a public API: it exists so that test code outside `#[cfg(test)]` can build the same lab.

use std::time::Instant;

use signpost_proto::v1 as pb;

use super::{Action, Ingress, Interface, PacketBuf, Pipeline};

/// Where the testbed's packets come in: POS and guest on the store's LAN (VLANs 10 and 30),
/// the first WAN, the hub's LAN.
pub const POS: Ingress = Ingress {
    interface: Interface::Lan(0),
    vlan: Some(10),
};
pub const GUEST_IN: Ingress = Ingress {
    interface: Interface::Lan(0),
    vlan: Some(30),
};
pub const WAN0: Ingress = Ingress {
    interface: Interface::Wan(0),
    vlan: None,
};
pub const HUB_LAN: Ingress = Ingress {
    interface: Interface::Lan(0),
    vlan: None,
};

/// The key both routers hold for each other, security id 7.
pub const KEY: [u8; 32] = [0x42; 32];
/// A POS terminal, in tenant `pos` (VLAN 10 at the store).
pub const CLIENT: [u8; 4] = [10, 1, 10, 5];
/// A guest device, in tenant `guest` (VLAN 30), which no policy lets reach a service.
pub const GUEST: [u8; 4] = [10, 1, 30, 9];
/// The address the store dials for `payments`.
pub const PAYMENTS_VIP: [u8; 4] = [10, 255, 1, 10];
/// Where the hub delivers `payments`.
pub const PAYMENTS_REAL: [u8; 4] = [10, 100, 1, 10];
/// A `telemetry` collector, delivered to as dialed.
pub const TELEMETRY: [u8; 4] = [10, 100, 3, 30];

fn range(first: u32, last: u32) -> Option<pb::PortRange> {
    Some(pb::PortRange { first, last })
}

fn tcp(port: u32) -> pb::Transport {
    pb::Transport {
        protocol: pb::Protocol::Tcp as i32,
        ports: vec![pb::PortRange {
            first: port,
            last: port,
        }],
    }
}

fn udp(port: u32) -> pb::Transport {
    pb::Transport {
        protocol: pb::Protocol::Udp as i32,
        ports: vec![pb::PortRange {
            first: port,
            last: port,
        }],
    }
}

fn services() -> Vec<pb::Service> {
    let loc = |addr: &str| pb::ServiceLocation {
        router: "hub".into(),
        addresses: vec![addr.into()],
        priority: 0,
    };
    vec![
        pb::Service {
            name: "payments".into(),
            prefixes: vec!["10.255.1.10/32".into()],
            transports: vec![tcp(443)],
            locations: vec![loc("10.100.1.10")],
            load_balancing: pb::LoadBalancing::Proximity as i32,
            ..Default::default()
        },
        pb::Service {
            name: "telemetry".into(),
            prefixes: vec!["10.100.3.0/24".into()],
            transports: vec![udp(9000)],
            locations: vec![pb::ServiceLocation {
                router: "hub".into(),
                addresses: vec![],
                priority: 0,
            }],
            ..Default::default()
        },
    ]
}

fn tenants() -> Vec<pb::Tenant> {
    ["guest", "pos"]
        .iter()
        .map(|n| pb::Tenant {
            name: (*n).into(),
            networks: vec![(*n).into()],
            ..Default::default()
        })
        .collect()
}

fn access(payments_security: pb::SecurityMode) -> Vec<pb::AccessRule> {
    let rule = |service: &str, security: pb::SecurityMode| pb::AccessRule {
        tenant: "pos".into(),
        service: service.into(),
        policy: format!("pos-{service}"),
        path_preference: vec!["broadband".into(), "lte".into()],
        security: security as i32,
        direction: pb::Direction::FromTenant as i32,
        ..Default::default()
    };
    vec![
        rule("payments", payments_security),
        rule("telemetry", pb::SecurityMode::None),
    ]
}

fn key() -> Vec<pb::PeerKey> {
    vec![pb::PeerKey {
        security_id: 7,
        key: KEY.to_vec(),
        epoch: 1,
    }]
}

pub fn edge_config(security: pb::SecurityMode) -> pb::RouterConfig {
    let wan = |name: &str, addr: &str, gw: &str, id: u32| pb::WanInterface {
        name: name.into(),
        device: name.into(),
        neighborhood: "internet".into(),
        vector: name.into(),
        addresses: vec![addr.into()],
        gateway: gw.into(),
        waypoint_ports: range(16384, 65535),
        global_id: id,
        ..Default::default()
    };
    let path = |local: &str, cost: u32| pb::PeerPath {
        id: format!("store/{local}->hub/internet"),
        local_interface: local.into(),
        remote_interface: "internet".into(),
        remote_address: "203.0.113.10".into(),
        vector: local.into(),
        neighborhood: "internet".into(),
        remote_waypoint_ports: range(20000, 40000),
        cost,
    };
    let network = |name: &str, prefix: &str, vlan: u32| pb::LanNetwork {
        name: name.into(),
        prefixes: vec![prefix.into()],
        vlan,
    };
    pb::RouterConfig {
        router: "store".into(),
        role: pb::RouterRole::Edge as i32,
        wan_interfaces: vec![
            wan("broadband", "192.0.2.11/24", "192.0.2.1", 1),
            wan("lte", "100.64.1.2/24", "100.64.1.1", 2),
        ],
        lan_interfaces: vec![pb::LanInterface {
            name: "lan".into(),
            device: "eth1".into(),
            addresses: vec!["10.1.0.1/16".into()],
            networks: vec![
                network("pos", "10.1.10.0/24", 10),
                network("guest", "10.1.30.0/24", 30),
            ],
            gateway: String::new(),
        }],
        tenants: tenants(),
        services: services(),
        access: access(security),
        peers: vec![pb::Peer {
            name: "hub".into(),
            role: pb::RouterRole::Hub as i32,
            paths: vec![path("broadband", 10), path("lte", 100)],
            keys: key(),
        }],
        ..Default::default()
    }
}

pub fn hub_config(security: pb::SecurityMode) -> pb::RouterConfig {
    let path = |remote: &str, addr: &str| pb::PeerPath {
        id: format!("hub/internet->store/{remote}"),
        local_interface: "internet".into(),
        remote_interface: remote.into(),
        remote_address: addr.into(),
        vector: "internet".into(),
        neighborhood: "internet".into(),
        remote_waypoint_ports: range(16384, 65535),
        cost: 10,
    };
    pb::RouterConfig {
        router: "hub".into(),
        role: pb::RouterRole::Hub as i32,
        wan_interfaces: vec![pb::WanInterface {
            name: "internet".into(),
            device: "eth0".into(),
            neighborhood: "internet".into(),
            vector: "internet".into(),
            addresses: vec!["203.0.113.10/24".into()],
            waypoint_ports: range(20000, 40000),
            global_id: 1,
            ..Default::default()
        }],
        lan_interfaces: vec![pb::LanInterface {
            name: "vpc".into(),
            device: "eth2".into(),
            addresses: vec!["10.100.0.1/16".into()],
            networks: vec![pb::LanNetwork {
                name: "services".into(),
                prefixes: vec!["10.100.0.0/16".into()],
                vlan: 0,
            }],
            gateway: String::new(),
        }],
        tenants: tenants(),
        services: services(),
        access: access(security),
        peers: vec![pb::Peer {
            name: "store".into(),
            role: pb::RouterRole::Edge as i32,
            paths: vec![path("broadband", "192.0.2.11"), path("lte", "100.64.1.2")],
            keys: key(),
        }],
        ..Default::default()
    }
}

/// One packet through `p`: the action and the bytes after it (a 2 KiB buffer, as a driver's).
pub fn run(p: &mut Pipeline, now: Instant, ingress: Ingress, packet: &[u8]) -> (Action, Vec<u8>) {
    let mut buf = vec![0u8; 2048];
    let len = packet.len().min(buf.len());
    buf[..len].copy_from_slice(&packet[..len]);
    let mut pkt = PacketBuf::new(&mut buf, len);
    let action = p.handle(now, ingress, &mut pkt);
    let len = pkt.len();
    buf.truncate(len);
    (action, buf)
}

/// An IPv4 header of `len` bytes in all, TTL `ttl`, protocol `protocol`, checksum filled.
fn ipv4(src: [u8; 4], dst: [u8; 4], ttl: u8, protocol: u8, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut ip = crate::packet::Ipv4Packet::new_unchecked(&mut out[..]);
    ip.set_version_and_header_len(20);
    ip.set_total_len(u16::try_from(len).unwrap_or(u16::MAX));
    ip.set_flags_and_frag_offset(true, false, 0);
    ip.set_ttl(ttl);
    ip.set_protocol(protocol);
    ip.set_src_addr(src.into());
    ip.set_dst_addr(dst.into());
    ip.fill_checksum();
    out
}

/// IPv4 / UDP `src:sport → dst:dport` with `payload`, checksums filled (the fast-path tests'
/// packets; the back-to-back tests build theirs with `etherparse`, an independent
/// implementation).
pub fn udp_v4(
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    ttl: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = ipv4(
        src,
        dst,
        ttl,
        crate::packet::ip_protocol::UDP,
        28 + payload.len(),
    );
    out[28..].copy_from_slice(payload);
    let mut udp = crate::packet::UdpDatagram::new_unchecked(&mut out[20..]);
    udp.set_src_port(sport);
    udp.set_dst_port(dport);
    udp.set_len(u16::try_from(8 + payload.len()).unwrap_or(u16::MAX));
    udp.fill_checksum_v4(src.into(), dst.into());
    out
}

/// IPv4 / TCP `src:sport → dst:dport` with `payload`, no options, checksums filled; `flags`
/// names them: `S`YN, `A`CK, `F`IN, `R`ST, `P`SH.
#[allow(clippy::too_many_arguments)] // a packet is its fields
pub fn tcp_v4(
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    ttl: u8,
    flags: &str,
    payload: &[u8],
) -> Vec<u8> {
    let bits = [
        ('F', 0x01),
        ('S', 0x02),
        ('R', 0x04),
        ('P', 0x08),
        ('A', 0x10),
    ]
    .iter()
    .filter(|(c, _)| flags.contains(*c))
    .fold(0u8, |b, (_, bit)| b | bit);
    let mut out = ipv4(
        src,
        dst,
        ttl,
        crate::packet::ip_protocol::TCP,
        40 + payload.len(),
    );
    out[40..].copy_from_slice(payload);
    let mut tcp = crate::packet::TcpSegment::new_unchecked(&mut out[20..]);
    tcp.set_src_port(sport);
    tcp.set_dst_port(dport);
    tcp.set_seq_number(1000);
    tcp.set_ack_number(u32::from(bits & 0x10 != 0));
    tcp.set_header_len(20);
    tcp.set_flags(bits);
    tcp.set_window_len(64240);
    tcp.fill_checksum_v4(src.into(), dst.into());
    out
}
