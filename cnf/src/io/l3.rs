//! A minimal IPv4 router on the [`Forwarder`] interface, for lab tests and driver benchmarks:
//! static routes and static neighbours (read from a network namespace's kernel tables or given
//! directly), TTL decrement with an incremental header checksum, ARP replies and ICMP echo
//! replies for the router's own addresses. It is the stand-in pipeline that proves the drivers
//! move real traffic; the session pipeline replaces it in the router.
//!
//! Not here: ARP resolution of unknown neighbours (they must be in the table), ICMP errors (TTL
//! exceeded, unreachable: such frames are dropped and counted), IPv6, VLANs, fragmentation.
//! Tables are scanned linearly: they are meant for a handful of routes.

use core::fmt;
use core::net::Ipv4Addr;
use std::ffi::CStr;
use std::io;
use std::time::Instant;

use super::{Forwarder, Frame, PortId, Verdict};
use crate::packet::arp::operation;
use crate::packet::ethernet::ethertype;
use crate::packet::icmp::icmpv4_type;
use crate::packet::{
    ArpPacket, EthernetFrame, IcmpPacket, Ipv4Packet, MacAddress, checksum, ip_protocol,
};

/// One port's link-layer address and the IPv4 addresses the router answers for on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortAddresses {
    pub mac: MacAddress,
    pub addresses: Vec<Ipv4Addr>,
}

/// `prefix/len` is reached through `port`, directly or via `gateway`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub prefix: Ipv4Addr,
    pub len: u8,
    pub port: PortId,
    pub gateway: Option<Ipv4Addr>,
}

impl Route {
    fn mask(&self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.len.min(32)))
            .unwrap_or(0)
    }

    fn contains(&self, address: Ipv4Addr) -> bool {
        (u32::from(address) ^ u32::from(self.prefix)) & self.mask() == 0
    }
}

/// `address` on `port` has link-layer address `mac`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbor {
    pub address: Ipv4Addr,
    pub port: PortId,
    pub mac: MacAddress,
}

/// Why the router's tables could not be read.
#[derive(Debug)]
pub struct TablesError(String);

impl fmt::Display for TablesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TablesError {}

/// Ports, routes and neighbours, in [`PortId`] order of the interfaces they were read for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tables {
    pub ports: Vec<PortAddresses>,
    pub routes: Vec<Route>,
    pub neighbors: Vec<Neighbor>,
}

impl Tables {
    /// Reads the calling thread's network namespace: each interface's MAC and IPv4 addresses
    /// (`getifaddrs`), the main routing table (`/proc/thread-self/net/route`) and the complete
    /// or permanent ARP entries (`/proc/thread-self/net/arp`), keeping only what concerns
    /// `interfaces`.
    pub fn read_namespace(interfaces: &[String]) -> Result<Tables, TablesError> {
        let mut ports: Vec<Option<MacAddress>> = vec![None; interfaces.len()];
        let mut addresses: Vec<Vec<Ipv4Addr>> = vec![Vec::new(); interfaces.len()];
        for (name, entry) in interface_addresses()
            .map_err(|e| TablesError(format!("cannot list interface addresses: {e}")))?
        {
            let Some(index) = interfaces.iter().position(|i| *i == name) else {
                continue;
            };
            match entry {
                Address::Link(mac) => ports[index] = Some(mac),
                Address::Ipv4(ip) => addresses[index].push(ip),
            }
        }
        let mut tables = Tables::default();
        for ((name, mac), addresses) in interfaces.iter().zip(ports).zip(addresses) {
            let mac = mac.ok_or_else(|| {
                TablesError(format!(
                    "interface {name} has no Ethernet address in this network namespace; check \
                     the name and that the caller runs in the router's namespace"
                ))
            })?;
            tables.ports.push(PortAddresses { mac, addresses });
        }
        let read = |file: &str| {
            std::fs::read_to_string(file).map_err(|e| {
                TablesError(format!(
                    "cannot read {file}: {e} (needs Linux 3.17+ and /proc)"
                ))
            })
        };
        tables.routes = parse_proc_routes(&read("/proc/thread-self/net/route")?, interfaces);
        tables.neighbors = parse_proc_arp(&read("/proc/thread-self/net/arp")?, interfaces);
        Ok(tables)
    }
}

enum Address {
    Link(MacAddress),
    Ipv4(Ipv4Addr),
}

/// `getifaddrs(3)`: (interface name, address) for Ethernet and IPv4 addresses.
fn interface_addresses() -> io::Result<Vec<(String, Address)>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cursor = head;
    while !cursor.is_null() {
        // SAFETY: `cursor` is a node of the list getifaddrs returned, not yet freed.
        let entry = unsafe { &*cursor };
        cursor = entry.ifa_next;
        if entry.ifa_addr.is_null() || entry.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(entry.ifa_name) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: ifa_addr is non-null and starts with the address family.
        let family = i32::from(unsafe { (*entry.ifa_addr).sa_family });
        if family == libc::AF_PACKET {
            // SAFETY: AF_PACKET entries carry a sockaddr_ll.
            let link = unsafe { &*(entry.ifa_addr as *const libc::sockaddr_ll) };
            if link.sll_halen == 6 {
                let mut mac = [0u8; 6];
                mac.copy_from_slice(&link.sll_addr[..6]);
                out.push((name, Address::Link(MacAddress(mac))));
            }
        } else if family == libc::AF_INET {
            // SAFETY: AF_INET entries carry a sockaddr_in.
            let inet = unsafe { &*(entry.ifa_addr as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(inet.sin_addr.s_addr.to_ne_bytes());
            out.push((name, Address::Ipv4(ip)));
        }
    }
    // SAFETY: frees the list getifaddrs allocated; no reference into it survives.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// An address as `/proc/net/{route,arp}` print it: the 32-bit network-order value as a
/// host-order hex integer.
fn proc_hex_addr(hex: &str) -> Option<Ipv4Addr> {
    u32::from_str_radix(hex, 16)
        .ok()
        .map(|v| Ipv4Addr::from(v.to_ne_bytes()))
}

/// Routes of `/proc/net/route` that are up and leave through one of `interfaces`. Malformed
/// lines are skipped.
fn parse_proc_routes(text: &str, interfaces: &[String]) -> Vec<Route> {
    const RTF_UP: u32 = 0x1;
    const RTF_GATEWAY: u32 = 0x2;
    let mut routes = Vec::new();
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [
            iface,
            destination,
            gateway,
            flags,
            _refcnt,
            _use,
            _metric,
            mask,
            ..,
        ] = fields[..]
        else {
            continue;
        };
        let Some(port) = interfaces.iter().position(|i| i == iface) else {
            continue;
        };
        let (Some(prefix), Some(gateway), Ok(flags), Some(mask)) = (
            proc_hex_addr(destination),
            proc_hex_addr(gateway),
            u32::from_str_radix(flags, 16),
            proc_hex_addr(mask),
        ) else {
            continue;
        };
        let mask = u32::from(mask);
        if flags & RTF_UP == 0 || mask.leading_ones() != mask.count_ones() {
            continue;
        }
        routes.push(Route {
            prefix,
            len: mask.count_ones() as u8,
            port: PortId(port as u16),
            gateway: (flags & RTF_GATEWAY != 0).then_some(gateway),
        });
    }
    routes
}

/// Complete or permanent entries of `/proc/net/arp` on one of `interfaces`.
fn parse_proc_arp(text: &str, interfaces: &[String]) -> Vec<Neighbor> {
    const ATF_COM: u32 = 0x2;
    let mut neighbors = Vec::new();
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [address, _hw_type, flags, mac, _mask, device] = fields[..] else {
            continue;
        };
        let Some(port) = interfaces.iter().position(|i| i == device) else {
            continue;
        };
        let flags = u32::from_str_radix(flags.trim_start_matches("0x"), 16).unwrap_or(0);
        let (Ok(address), Some(mac)) = (address.parse::<Ipv4Addr>(), parse_mac(mac)) else {
            continue;
        };
        if flags & ATF_COM != 0 {
            neighbors.push(Neighbor {
                address,
                port: PortId(port as u16),
                mac,
            });
        }
    }
    neighbors
}

fn parse_mac(text: &str) -> Option<MacAddress> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(MacAddress(mac))
}

/// Frames the router dropped, by reason.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct L3Drops {
    /// Addressed to another station's MAC, or multicast.
    pub not_for_us: u64,
    /// Truncated or malformed headers, bad IPv4 header checksum.
    pub malformed: u64,
    /// Not IPv4 or ARP, VLAN-tagged, fragments or options the router does not handle.
    pub unsupported: u64,
    pub no_route: u64,
    /// The next hop is not in the neighbour table.
    pub no_neighbor: u64,
    pub ttl_expired: u64,
    /// For the router itself, and not an echo request or ARP request it answers.
    pub local: u64,
}

/// The router: see the module documentation.
#[derive(Debug, Clone)]
pub struct L3Forwarder {
    ports: Vec<PortAddresses>,
    /// Longest prefix first.
    routes: Vec<Route>,
    neighbors: Vec<Neighbor>,
    drops: L3Drops,
}

impl L3Forwarder {
    pub fn new(tables: Tables) -> Self {
        let mut routes = tables.routes;
        routes.sort_by_key(|r| core::cmp::Reverse(r.len));
        L3Forwarder {
            ports: tables.ports,
            routes,
            neighbors: tables.neighbors,
            drops: L3Drops::default(),
        }
    }

    pub fn drops(&self) -> L3Drops {
        self.drops
    }

    fn is_local(&self, address: Ipv4Addr) -> bool {
        self.ports.iter().any(|p| p.addresses.contains(&address))
    }

    fn next_hop(&self, dst: Ipv4Addr) -> Option<(PortId, MacAddress)> {
        let route = self.routes.iter().find(|r| r.contains(dst))?;
        let hop = route.gateway.unwrap_or(dst);
        self.neighbors
            .iter()
            .find(|n| n.port == route.port && n.address == hop)
            .map(|n| (n.port, n.mac))
    }

    fn drop(&mut self, reason: fn(&mut L3Drops) -> &mut u64) -> Verdict {
        *reason(&mut self.drops) += 1;
        Verdict::Drop
    }

    /// Turns an ARP request for one of the port's addresses into the reply, in place.
    fn answer_arp(&mut self, ingress: PortId, port_mac: MacAddress, data: &mut [u8]) -> Verdict {
        let Ok(mut eth) = EthernetFrame::new_checked(&mut *data) else {
            return self.drop(|d| &mut d.malformed);
        };
        let Ok(mut arp) = ArpPacket::new_checked(eth.payload_mut()) else {
            return self.drop(|d| &mut d.malformed);
        };
        let asked = arp.target_protocol_addr();
        let ours = self
            .ports
            .get(ingress.index())
            .is_some_and(|p| p.addresses.contains(&asked));
        if arp.operation() != operation::REQUEST || !ours {
            return self.drop(|d| &mut d.local);
        }
        let (requester_mac, requester_ip) =
            (arp.sender_hardware_addr(), arp.sender_protocol_addr());
        arp.set_operation(operation::REPLY);
        arp.set_sender_hardware_addr(port_mac);
        arp.set_sender_protocol_addr(asked);
        arp.set_target_hardware_addr(requester_mac);
        arp.set_target_protocol_addr(requester_ip);
        eth.set_dst_addr(requester_mac);
        eth.set_src_addr(port_mac);
        Verdict::Forward(ingress)
    }

    /// Turns an ICMP echo request to the router into the reply, in place.
    pub(crate) fn answer_echo(ip: &mut Ipv4Packet<&mut [u8]>) -> bool {
        if ip.protocol() != ip_protocol::ICMP || ip.is_fragment() {
            return false;
        }
        let Ok(mut icmp) = IcmpPacket::new_checked(ip.payload_mut()) else {
            return false;
        };
        if icmp.msg_type() != icmpv4_type::ECHO_REQUEST || !icmp.verify_checksum_v4() {
            return false;
        }
        let old_word = u16::from_be_bytes([icmp.msg_type(), icmp.code()]);
        icmp.set_msg_type(icmpv4_type::ECHO_REPLY);
        let new_word = u16::from_be_bytes([icmp.msg_type(), icmp.code()]);
        icmp.set_checksum(checksum::update_u16(icmp.checksum(), old_word, new_word));
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        ip.set_src_addr(dst);
        ip.set_dst_addr(src);
        ip.set_ttl(64);
        ip.fill_checksum();
        true
    }
}

impl Forwarder for L3Forwarder {
    fn handle(&mut self, _now: Instant, ingress: PortId, frame: &mut Frame<'_>) -> Verdict {
        let Some(port_mac) = self.ports.get(ingress.index()).map(|p| p.mac) else {
            return self.drop(|d| &mut d.not_for_us);
        };
        let data = frame.data_mut();
        let (dst_mac, kind) = match EthernetFrame::new_checked(&*data) {
            Ok(eth) if eth.is_vlan_tagged() => return self.drop(|d| &mut d.unsupported),
            Ok(eth) => (eth.dst_addr(), eth.ethertype()),
            Err(_) => return self.drop(|d| &mut d.malformed),
        };
        if dst_mac != port_mac && dst_mac != MacAddress::BROADCAST {
            return self.drop(|d| &mut d.not_for_us);
        }
        match kind {
            ethertype::ARP => return self.answer_arp(ingress, port_mac, data),
            ethertype::IPV4 if dst_mac == port_mac => {}
            ethertype::IPV4 => return self.drop(|d| &mut d.not_for_us),
            _ => return self.drop(|d| &mut d.unsupported),
        }
        let mut eth = EthernetFrame::new_unchecked(&mut *data);
        let Ok(mut ip) = Ipv4Packet::new_checked(eth.payload_mut()) else {
            return self.drop(|d| &mut d.malformed);
        };
        if !ip.verify_checksum() {
            return self.drop(|d| &mut d.malformed);
        }
        let dst = ip.dst_addr();
        let (egress, next_mac) = if self.is_local(dst) {
            if !Self::answer_echo(&mut ip) {
                return self.drop(|d| &mut d.local);
            }
            // The reply goes back where the request came from.
            let src = ip.dst_addr();
            match self.next_hop(src) {
                Some(hop) => hop,
                None => return self.drop(|d| &mut d.no_neighbor),
            }
        } else {
            let Some(hop) = self.next_hop(dst) else {
                return if self.routes.iter().any(|r| r.contains(dst)) {
                    self.drop(|d| &mut d.no_neighbor)
                } else {
                    self.drop(|d| &mut d.no_route)
                };
            };
            if ip.decrement_ttl().is_none() {
                return self.drop(|d| &mut d.ttl_expired);
            }
            hop
        };
        let Some(egress_mac) = self.ports.get(egress.index()).map(|p| p.mac) else {
            return self.drop(|d| &mut d.no_route);
        };
        eth.set_src_addr(egress_mac);
        eth.set_dst_addr(next_mac);
        Verdict::Forward(egress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{TcpSegment, UdpDatagram};
    use proptest::prelude::*;

    const R_A: MacAddress = MacAddress([0x02, 0, 0, 0, 0, 0x1a]);
    const R_B: MacAddress = MacAddress([0x02, 0, 0, 0, 0, 0x1b]);
    const HOST_A: MacAddress = MacAddress([0x02, 0, 0, 0, 0, 0xaa]);
    const HOST_B: MacAddress = MacAddress([0x02, 0, 0, 0, 0, 0xbb]);

    fn lab_tables() -> Tables {
        Tables {
            ports: vec![
                PortAddresses {
                    mac: R_A,
                    addresses: vec![Ipv4Addr::new(10, 0, 1, 1)],
                },
                PortAddresses {
                    mac: R_B,
                    addresses: vec![Ipv4Addr::new(10, 0, 2, 1)],
                },
            ],
            routes: vec![
                Route {
                    prefix: Ipv4Addr::new(10, 0, 1, 0),
                    len: 24,
                    port: PortId(0),
                    gateway: None,
                },
                Route {
                    prefix: Ipv4Addr::new(10, 0, 2, 0),
                    len: 24,
                    port: PortId(1),
                    gateway: None,
                },
                Route {
                    prefix: Ipv4Addr::new(0, 0, 0, 0),
                    len: 0,
                    port: PortId(1),
                    gateway: Some(Ipv4Addr::new(10, 0, 2, 2)),
                },
            ],
            neighbors: vec![
                Neighbor {
                    address: Ipv4Addr::new(10, 0, 1, 2),
                    port: PortId(0),
                    mac: HOST_A,
                },
                Neighbor {
                    address: Ipv4Addr::new(10, 0, 2, 2),
                    port: PortId(1),
                    mac: HOST_B,
                },
            ],
        }
    }

    /// An Ethernet/IPv4 frame from `HOST_A` to `R_A` built with etherparse, the reference.
    fn udp_frame(dst: Ipv4Addr, ttl: u8, payload: &[u8]) -> Vec<u8> {
        let builder = etherparse::PacketBuilder::ethernet2(HOST_A.0, R_A.0)
            .ipv4([10, 0, 1, 2], dst.octets(), ttl)
            .udp(4000, 5000);
        let mut out = Vec::with_capacity(builder.size(payload.len()));
        builder.write(&mut out, payload).unwrap();
        out
    }

    fn run(router: &mut L3Forwarder, ingress: PortId, bytes: &mut Vec<u8>) -> Verdict {
        let len = bytes.len();
        bytes.resize(len + 256, 0);
        let mut frame = Frame::new(bytes, len).unwrap();
        let verdict = router.handle(Instant::now(), ingress, &mut frame);
        let len = frame.len();
        bytes.truncate(len);
        verdict
    }

    #[test]
    fn forwards_with_ttl_decremented_and_macs_rewritten() {
        let mut router = L3Forwarder::new(lab_tables());
        let mut frame = udp_frame(Ipv4Addr::new(10, 0, 2, 2), 64, b"payload");
        assert_eq!(
            run(&mut router, PortId(0), &mut frame),
            Verdict::Forward(PortId(1))
        );
        let parsed = etherparse::SlicedPacket::from_ethernet(&frame).unwrap();
        let Some(etherparse::LinkSlice::Ethernet2(eth)) = parsed.link else {
            panic!("not Ethernet II")
        };
        assert_eq!((eth.source(), eth.destination()), (R_B.0, HOST_B.0));
        let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
        assert_eq!(ip.ttl(), 63);
        assert!(
            ip.verify_checksum(),
            "the incremental update keeps the header checksum valid"
        );
        let udp = UdpDatagram::new_checked(ip.payload()).unwrap();
        assert!(udp.verify_checksum_v4(ip.src_addr(), ip.dst_addr()));
    }

    #[test]
    fn the_default_route_goes_through_its_gateway() {
        let mut router = L3Forwarder::new(lab_tables());
        let mut frame = udp_frame(Ipv4Addr::new(192, 0, 2, 7), 64, b"far");
        assert_eq!(
            run(&mut router, PortId(0), &mut frame),
            Verdict::Forward(PortId(1))
        );
        assert_eq!(&frame[0..6], &HOST_B.0, "sent to the gateway's MAC");
    }

    #[test]
    fn drops_are_counted_by_reason() {
        let mut tables = lab_tables();
        tables.routes.pop();
        let mut router = L3Forwarder::new(tables);
        let mut expired = udp_frame(Ipv4Addr::new(10, 0, 2, 2), 1, b"");
        assert_eq!(run(&mut router, PortId(0), &mut expired), Verdict::Drop);
        let mut nowhere = udp_frame(Ipv4Addr::new(192, 0, 2, 7), 64, b"");
        assert_eq!(run(&mut router, PortId(0), &mut nowhere), Verdict::Drop);
        let mut unknown_host = udp_frame(Ipv4Addr::new(10, 0, 2, 9), 64, b"");
        assert_eq!(
            run(&mut router, PortId(0), &mut unknown_host),
            Verdict::Drop
        );
        let mut not_ours = udp_frame(Ipv4Addr::new(10, 0, 2, 2), 64, b"");
        not_ours[0..6].copy_from_slice(&HOST_B.0);
        assert_eq!(run(&mut router, PortId(0), &mut not_ours), Verdict::Drop);
        let mut bad_sum = udp_frame(Ipv4Addr::new(10, 0, 2, 2), 64, b"");
        bad_sum[14 + 10] ^= 0xff;
        assert_eq!(run(&mut router, PortId(0), &mut bad_sum), Verdict::Drop);
        let mut short = udp_frame(Ipv4Addr::new(10, 0, 2, 2), 64, b"")[..20].to_vec();
        assert_eq!(run(&mut router, PortId(0), &mut short), Verdict::Drop);
        assert_eq!(
            router.drops(),
            L3Drops {
                ttl_expired: 1,
                no_route: 1,
                no_neighbor: 1,
                not_for_us: 1,
                malformed: 2,
                ..L3Drops::default()
            }
        );
    }

    #[test]
    fn answers_arp_for_its_own_address_only() {
        let mut router = L3Forwarder::new(lab_tables());
        let request = |target: [u8; 4]| {
            let mut frame = vec![0u8; 42];
            frame[0..6].copy_from_slice(&MacAddress::BROADCAST.0);
            frame[6..12].copy_from_slice(&HOST_A.0);
            frame[12..14].copy_from_slice(&ethertype::ARP.to_be_bytes());
            let mut arp = ArpPacket::new_unchecked(&mut frame[14..]);
            arp.fill_ethernet_ipv4();
            arp.set_operation(operation::REQUEST);
            arp.set_sender_hardware_addr(HOST_A);
            arp.set_sender_protocol_addr(Ipv4Addr::new(10, 0, 1, 2));
            arp.set_target_protocol_addr(Ipv4Addr::from(target));
            frame
        };
        let mut frame = request([10, 0, 1, 1]);
        assert_eq!(
            run(&mut router, PortId(0), &mut frame),
            Verdict::Forward(PortId(0))
        );
        let arp = etherparse::ArpPacketSlice::from_slice(&frame[14..]).unwrap();
        assert_eq!(arp.operation(), etherparse::ArpOperation::REPLY);
        assert_eq!(arp.sender_hw_addr(), &R_A.0);
        assert_eq!(arp.sender_protocol_addr(), &[10, 0, 1, 1]);
        assert_eq!(arp.target_hw_addr(), &HOST_A.0);
        assert_eq!(&frame[0..6], &HOST_A.0);
        // The address of the other port is not answered on this one.
        let mut other = request([10, 0, 2, 1]);
        assert_eq!(run(&mut router, PortId(0), &mut other), Verdict::Drop);
    }

    #[test]
    fn answers_ping_to_the_router() {
        let mut router = L3Forwarder::new(lab_tables());
        let builder = etherparse::PacketBuilder::ethernet2(HOST_A.0, R_A.0)
            .ipv4([10, 0, 1, 2], [10, 0, 1, 1], 64)
            .icmpv4_echo_request(7, 1);
        let mut frame = Vec::new();
        builder.write(&mut frame, b"ping").unwrap();
        assert_eq!(
            run(&mut router, PortId(0), &mut frame),
            Verdict::Forward(PortId(0))
        );
        let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
        assert_eq!(
            (ip.src_addr(), ip.dst_addr()),
            (Ipv4Addr::new(10, 0, 1, 1), Ipv4Addr::new(10, 0, 1, 2))
        );
        assert!(ip.verify_checksum());
        let icmp = IcmpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(icmp.msg_type(), icmpv4_type::ECHO_REPLY);
        assert!(icmp.verify_checksum_v4());
        assert_eq!(&frame[0..6], &HOST_A.0);
    }

    #[test]
    fn reads_kernel_route_and_arp_tables() {
        // As printed by Linux on a little-endian host for: 10.0.1.0/24 dev r-a, 10.0.2.0/24
        // dev r-b, default via 10.0.2.2 dev r-b, and a route on an interface not served.
        let routes = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            r-b\t00000000\t0202000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
            r-a\t0001000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
            r-b\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
            eth9\t0009000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
            r-b\tgarbage\n";
        let arp = "IP address       HW type     Flags       HW address            Mask     Device\n\
            10.0.1.2         0x1         0x6         02:00:00:00:00:aa     *        r-a\n\
            10.0.2.2         0x1         0x2         02:00:00:00:00:bb     *        r-b\n\
            10.0.2.3         0x1         0x0         00:00:00:00:00:00     *        r-b\n\
            10.0.2.4         0x1         0x2         02:00:00:00:00     *        r-b\n";
        let interfaces = ["r-a".to_string(), "r-b".to_string()];
        if cfg!(target_endian = "little") {
            let mut expected = lab_tables();
            let parsed = parse_proc_routes(routes, &interfaces);
            expected.routes.rotate_right(1);
            assert_eq!(parsed, expected.routes);
            assert_eq!(parse_proc_arp(arp, &interfaces), expected.neighbors);
        }
    }

    proptest! {
        #![proptest_config(crate::packet::proptest_config())]

        /// Any TTL above 1 and any header fields: the forwarded header's checksum stays valid,
        /// and the TCP checksum (which TTL does not cover) is untouched.
        #[test]
        fn forwarding_keeps_checksums_valid(
            ttl in 2u8..=255,
            ident in any::<u16>(),
            seq in any::<u32>(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let builder = etherparse::PacketBuilder::ethernet2(HOST_A.0, R_A.0)
                .ipv4([10, 0, 1, 2], [10, 0, 2, 2], ttl)
                .tcp(4000, 80, seq, 1024);
            let mut frame = Vec::new();
            builder.write(&mut frame, &payload).unwrap();
            frame[14 + 4..14 + 6].copy_from_slice(&ident.to_be_bytes());
            {
                let mut ip = Ipv4Packet::new_unchecked(&mut frame[14..]);
                ip.fill_checksum();
            }
            let mut router = L3Forwarder::new(lab_tables());
            prop_assert_eq!(run(&mut router, PortId(0), &mut frame), Verdict::Forward(PortId(1)));
            let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
            prop_assert_eq!(ip.ttl(), ttl - 1);
            prop_assert!(ip.verify_checksum());
            let tcp = TcpSegment::new_checked(ip.payload()).unwrap();
            prop_assert!(tcp.verify_checksum_v4(ip.src_addr(), ip.dst_addr()));
        }

        /// Random bytes never panic the router, on either port.
        #[test]
        fn random_frames_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..128),
            port in 0u16..3,
        ) {
            let mut router = L3Forwarder::new(lab_tables());
            let mut frame = bytes;
            let _ = run(&mut router, PortId(port), &mut frame);
        }

        /// Random /proc text never panics the parsers.
        #[test]
        fn random_proc_text_never_panics(text in "[ -~\\t\\n]{0,300}") {
            let interfaces = ["r-a".to_string()];
            let _ = parse_proc_routes(&text, &interfaces);
            let _ = parse_proc_arp(&text, &interfaces);
        }
    }
}
