//! One packet worker's state and what it does to a frame around the session pipeline: Ethernet
//! and 802.1Q in and out, ARP for the router's addresses, neighbour resolution, ICMP echo to the
//! router, and the pipeline in between (which sees IP packets only).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use super::neighbor::{Neighbors, Resolution};
use super::paths::{BfdPacket, BfdSender};
use super::raw::RawSenders;
use super::{Port, RuntimeCounters};
use crate::io::l3::L3Forwarder;
use crate::io::{Forwarder, Frame, PortId, Verdict};
use crate::packet::arp::operation;
use crate::packet::ethernet::ethertype;
use crate::packet::{ArpPacket, EthernetFrame, Ipv4Packet, MacAddress};
use crate::pipeline::{
    Action, Egress, Ingress, Interface, Lan, PacketBuf, Pipeline, Prepared, Tables,
};
use crate::qos::{LinkSpec, Offer, WanQueues};

const ETH: usize = 14;
const ETH_VLAN: usize = 18;
/// An ARP request or reply: Ethernet header and the 28-byte IPv4 ARP body, padded to 60.
const ARP_FRAME: usize = 60;

/// A worker's state. The worker thread locks it per frame (uncontended: a few nanoseconds); the
/// housekeeping thread and the admin API lock it briefly.
pub struct Worker {
    pub(super) pipeline: Option<Pipeline>,
    /// Generation of the tables `pipeline` runs.
    pub(super) generation: u64,
    pub(super) ports: Arc<[Port]>,
    /// By port: the config's interface on it.
    port_iface: Vec<Option<Interface>>,
    pub(super) iface_port: HashMap<Interface, usize>,
    /// By port: IPv4 addresses the router answers ARP and ping for.
    own_v4: Vec<Vec<Ipv4Addr>>,
    /// By port: the LAN interface on it, whose gateway takes off-link destinations.
    lan: Vec<Option<Lan>>,
    pub(super) neighbors: Neighbors,
    raw: Arc<RawSenders>,
    pub(super) counters: RuntimeCounters,
    /// Scratch for [`Worker::handle_batch`]: per frame, its packet as the pipeline prepared it.
    prepared: Vec<Option<Prepared>>,
    /// Shaped WAN links: the frames waiting for their turn (`crate::qos`).
    pub(super) wan_queues: WanQueues,
    /// Workers that share each WAN link (each shapes to its part of the capacity).
    pub(super) link_share: u32,
    /// Where BFD packets for the router go (the path monitor thread).
    bfd: Option<BfdSender>,
    /// The sessions this worker put into the in-kernel fast path (`super::offload`).
    pub(super) offloaded: Option<super::offload::Offloaded>,
}

impl Worker {
    pub fn new(ports: Arc<[Port]>, raw: Arc<RawSenders>, now: Instant) -> Self {
        let mut neighbors = Neighbors::new(ports.len());
        for (i, p) in ports.iter().enumerate() {
            for (address, mac) in &p.static_neighbors {
                neighbors.insert(i, *address, *mac, now);
            }
        }
        Self {
            pipeline: None,
            generation: 0,
            port_iface: vec![None; ports.len()],
            iface_port: HashMap::new(),
            own_v4: ports.iter().map(|p| p.os_v4.clone()).collect(),
            lan: vec![None; ports.len()],
            ports,
            neighbors,
            raw,
            counters: RuntimeCounters::default(),
            prepared: Vec::new(),
            wan_queues: WanQueues::new(now),
            link_share: 1,
            bfd: None,
            offloaded: None,
        }
    }

    /// Hands BFD packets for the router to the path monitor from now on.
    pub fn set_path_monitor(&mut self, sender: BfdSender) {
        self.bfd = Some(sender);
    }

    /// Runs `tables` from now on (a first config starts the pipeline; later ones go through
    /// [`Pipeline::set_tables`], which keeps the sessions the new config still allows).
    pub fn install(
        &mut self,
        now: Instant,
        tables: Arc<Tables>,
        generation: u64,
        options: crate::pipeline::Options,
    ) {
        self.port_iface = vec![None; self.ports.len()];
        self.iface_port.clear();
        self.own_v4 = self.ports.iter().map(|p| p.os_v4.clone()).collect();
        self.lan = vec![None; self.ports.len()];
        let position = |device: &str| self.ports.iter().position(|p| p.device == device);
        for (i, w) in tables.wans.iter().enumerate() {
            if let (Some(port), Ok(i)) = (position(&w.device), u8::try_from(i)) {
                self.port_iface[port] = Some(Interface::Wan(i));
                self.iface_port.insert(Interface::Wan(i), port);
                if let Some(v4) = w.v4 {
                    self.own_v4[port].push(v4);
                }
            }
        }
        for (i, l) in tables.lans.iter().enumerate() {
            if let (Some(port), Ok(i)) = (position(&l.device), u8::try_from(i)) {
                self.port_iface[port] = Some(Interface::Lan(i));
                self.iface_port.insert(Interface::Lan(i), port);
                self.lan[port] = l.gateway.is_some().then(|| l.clone());
                for a in &l.addresses {
                    if let IpAddr::V4(v4) = a {
                        self.own_v4[port].push(*v4);
                    }
                }
            }
        }
        let links: Vec<Option<LinkSpec>> = tables
            .wans
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let port = *self
                    .iface_port
                    .get(&Interface::Wan(u8::try_from(i).ok()?))?;
                Some(LinkSpec {
                    name: w.name.clone(),
                    port: PortId(port as u16),
                    capacity_bps: tables.qos.wan_capacity.get(i).copied().unwrap_or(0),
                })
            })
            .collect();
        // Frames up to the MTU behind a tagged Ethernet header.
        let slot = (usize::from(options.mtu) + ETH_VLAN).next_multiple_of(64);
        self.wan_queues
            .configure(&links, &tables.qos.classes, self.link_share, slot);
        match &mut self.pipeline {
            Some(p) => p.set_tables(tables),
            None => {
                let mut pipeline = Pipeline::new(now, tables, options);
                pipeline.set_offload(self.offloaded.is_some());
                self.pipeline = Some(pipeline);
            }
        }
        self.generation = generation;
    }

    /// A receive batch: [`Worker::handle_frame`] on each frame in turn, after the pipeline has
    /// prepared every IP packet of the batch and started fetching their sessions. Preparing
    /// reads the frames only (no counters, no ARP), so each frame's handling is unchanged.
    fn handle_batch(
        &mut self,
        now: Instant,
        ingress: PortId,
        frames: &mut [Frame<'_>],
        verdicts: &mut Vec<Verdict>,
    ) {
        let port = ingress.index();
        let mut prepared = std::mem::take(&mut self.prepared);
        prepared.clear();
        if let Some(pipeline) = self.pipeline.as_ref() {
            for frame in frames.iter() {
                let ip = self.pipeline_packet(port, frame.data());
                prepared.push(ip.map(|ip| pipeline.prepare(ip)));
            }
            for p in prepared.iter().flatten() {
                pipeline.prefetch(p);
            }
        }
        verdicts.clear();
        for (i, frame) in frames.iter_mut().enumerate() {
            let p = prepared.get(i).copied().flatten();
            verdicts.push(self.handle_frame(now, ingress, frame, p));
        }
        self.prepared = prepared;
    }

    /// The IP packet in `frame` if [`Worker::handle_frame`] will hand it to the pipeline.
    fn pipeline_packet<'f>(&self, port: usize, frame: &'f [u8]) -> Option<&'f [u8]> {
        let port_mac = self.ports.get(port)?.mac;
        let eth = EthernetFrame::new_checked(frame).ok()?;
        let ip = matches!(eth.ethertype(), ethertype::IPV4 | ethertype::IPV6);
        if !ip || eth.dst_addr() != port_mac {
            return None;
        }
        self.port_iface.get(port).copied().flatten()?;
        frame.get(eth.header_len()..)
    }

    /// One frame; `prepared` is its IP packet as [`Pipeline::prepare`] saw it, if it was.
    fn handle_frame(
        &mut self,
        now: Instant,
        ingress: PortId,
        frame: &mut Frame<'_>,
        prepared: Option<Prepared>,
    ) -> Verdict {
        let port = ingress.index();
        let Some(port_mac) = self.ports.get(port).map(|p| p.mac) else {
            self.counters.unknown_port += 1;
            return Verdict::Drop;
        };
        let (dst, kind, vlan, l2) = match EthernetFrame::new_checked(frame.data()) {
            Ok(eth) => (
                eth.dst_addr(),
                eth.ethertype(),
                eth.vlan_id(),
                eth.header_len(),
            ),
            Err(_) => {
                self.counters.malformed += 1;
                return Verdict::Drop;
            }
        };
        if dst != port_mac && !dst.is_multicast() {
            self.counters.not_for_us += 1;
            return Verdict::Drop;
        }
        match kind {
            ethertype::ARP => return self.arp(now, port, port_mac, frame),
            ethertype::IPV4 | ethertype::IPV6 if dst == port_mac => {}
            ethertype::IPV4 | ethertype::IPV6 => {
                self.counters.not_for_us += 1;
                return Verdict::Drop;
            }
            _ => {
                self.counters.other_ethertype += 1;
                return Verdict::Drop;
            }
        }
        let Some(interface) = self.port_iface.get(port).copied().flatten() else {
            self.counters.unconfigured_port += 1;
            return Verdict::Drop;
        };
        let Some(pipeline) = self.pipeline.as_mut() else {
            self.counters.no_config += 1;
            return Verdict::Drop;
        };
        let len = frame.len();
        if frame.set_len(frame.capacity()).is_err() {
            self.counters.malformed += 1;
            return Verdict::Drop;
        }
        let buf = frame.data_mut();
        let (action, ip_len) = {
            let Some(ip) = buf.get_mut(l2..) else {
                self.counters.malformed += 1;
                return Verdict::Drop;
            };
            let mut pkt = PacketBuf::new(ip, len.saturating_sub(l2));
            let ingress = Ingress { interface, vlan };
            let action = match prepared {
                Some(p) => pipeline.handle_prepared(now, ingress, &mut pkt, p),
                None => pipeline.handle(now, ingress, &mut pkt),
            };
            (action, pkt.len())
        };
        match action {
            Action::Forward(egress) => self.forward(now, frame, l2, ip_len, egress),
            Action::Local => {
                let _ = frame.set_len(l2 + ip_len);
                if let Some(ip) = frame.data().get(l2..)
                    && self.hand_to_path_monitor(now, interface, ip)
                {
                    return Verdict::Drop;
                }
                self.local(port, port_mac, frame, l2)
            }
            Action::Consumed | Action::Drop(_) => Verdict::Drop,
        }
    }

    /// Frames the pipeline's IP packet (at `l2..l2 + ip_len`) for `egress` and sends it, or
    /// holds it for its next hop's address.
    fn forward(
        &mut self,
        now: Instant,
        frame: &mut Frame<'_>,
        l2: usize,
        ip_len: usize,
        egress: Egress,
    ) -> Verdict {
        let Some(port) = self.iface_port.get(&egress.interface).copied() else {
            self.counters.unconfigured_port += 1;
            return Verdict::Drop;
        };
        let out_l2 = if egress.vlan.is_some() { ETH_VLAN } else { ETH };
        if out_l2 + ip_len > frame.capacity() {
            self.counters.no_room += 1;
            return Verdict::Drop;
        }
        if out_l2 != l2 {
            frame.data_mut().copy_within(l2..l2 + ip_len, out_l2);
        }
        if frame.set_len(out_l2 + ip_len).is_err() {
            self.counters.no_room += 1;
            return Verdict::Drop;
        }
        let Some(src_mac) = self.ports.get(port).map(|p| p.mac) else {
            return Verdict::Drop;
        };
        write_ethernet(frame.data_mut(), src_mac, egress.vlan);
        let IpAddr::V4(hop) = self.next_hop(port, egress.next_hop) else {
            self.counters.neighbor_ipv6_unsupported += 1;
            return Verdict::Drop;
        };
        let mac = match self.neighbors.lookup(port, hop, now) {
            Resolution::Known(mac) => mac,
            Resolution::Refresh(mac) => {
                self.send_arp_request(port, hop, egress.vlan);
                mac
            }
            Resolution::Request => {
                self.send_arp_request(port, hop, egress.vlan);
                self.hold(port, hop, frame.data(), now);
                return Verdict::Drop;
            }
            Resolution::Wait => {
                self.hold(port, hop, frame.data(), now);
                return Verdict::Drop;
            }
        };
        set_dst(frame.data_mut(), mac);
        let Interface::Wan(wan) = egress.interface else {
            return Verdict::Forward(PortId(port as u16));
        };
        // The WAN link's scheduler: at once when nothing waits and the shaper allows, else a
        // copy waits in the class's queue (counted there), or the queue is full (counted).
        match self.wan_queues.offer(now, wan, egress.class, frame.data()) {
            Offer::Send => Verdict::Forward(PortId(port as u16)),
            Offer::Queued | Offer::Dropped => Verdict::Drop,
        }
    }

    /// The neighbour for `hop` on `port`: a LAN with a gateway sends off-link destinations to
    /// it (the pipeline names the destination; choosing the neighbour is Ethernet's business).
    pub(super) fn next_hop(&self, port: usize, hop: IpAddr) -> IpAddr {
        match self.lan.get(port) {
            Some(Some(lan)) => lan.next_hop(hop),
            _ => hop,
        }
    }

    fn hold(&mut self, port: usize, hop: Ipv4Addr, frame: &[u8], now: Instant) {
        if self.neighbors.hold(port, hop, frame, now) {
            self.counters.neighbor_held += 1;
        } else {
            self.counters.neighbor_queue_full += 1;
        }
    }

    /// A packet for the path monitor thread goes there (true: taken, or dropped for a full
    /// queue): from a WAN, BFD (and peers' health messages on BFD's ports); from a LAN, what
    /// may answer a service-location health probe.
    fn hand_to_path_monitor(&mut self, now: Instant, interface: Interface, ip: &[u8]) -> bool {
        let Some(tx) = &self.bfd else { return false };
        let Ok(p) = crate::pipeline::ip::parse(ip) else {
            return false;
        };
        let wanted = match interface {
            Interface::Wan(_) => {
                crate::path::is_bfd(p.protocol, p.key.src_port(), p.key.dst_port())
            }
            Interface::Lan(_) => crate::health::is_probe_answer(
                p.protocol,
                p.key.dst_port(),
                ip.get(p.l4..).unwrap_or(&[]),
            ),
        };
        if !wanted {
            return false;
        }
        let packet = BfdPacket {
            at: now,
            interface,
            packet: ip.get(..p.end).unwrap_or(ip).to_vec(),
        };
        match tx.try_send(packet) {
            Ok(()) => self.counters.bfd_received += 1,
            Err(_) => self.counters.bfd_queue_full += 1,
        }
        true
    }

    /// A packet for the router itself: ICMP echo requests are answered on the port they came
    /// from; anything else is dropped (the router's host stack is not on this path).
    fn local(
        &mut self,
        port: usize,
        port_mac: MacAddress,
        frame: &mut Frame<'_>,
        l2: usize,
    ) -> Verdict {
        let data = frame.data_mut();
        let requester = EthernetFrame::new_checked(&*data).map(|e| e.src_addr());
        let answered = match data.get_mut(l2..).map(Ipv4Packet::new_checked) {
            Some(Ok(mut ip)) if ip.verify_checksum() => L3Forwarder::answer_echo(&mut ip),
            _ => false,
        };
        match requester {
            Ok(requester) if answered => {
                if let Ok(mut eth) = EthernetFrame::new_checked(&mut *data) {
                    eth.set_dst_addr(requester);
                    eth.set_src_addr(port_mac);
                }
                self.counters.echo_replies += 1;
                Verdict::Forward(PortId(port as u16))
            }
            _ => {
                self.counters.local_dropped += 1;
                Verdict::Drop
            }
        }
    }

    /// ARP: learn the sender, answer requests for the router's addresses on this port, and
    /// release the packets that waited for the sender.
    fn arp(
        &mut self,
        now: Instant,
        port: usize,
        port_mac: MacAddress,
        frame: &mut Frame<'_>,
    ) -> Verdict {
        let data = frame.data_mut();
        let Ok(mut eth) = EthernetFrame::new_checked(&mut *data) else {
            self.counters.malformed += 1;
            return Verdict::Drop;
        };
        let Ok(mut arp) = ArpPacket::new_checked(eth.payload_mut()) else {
            self.counters.malformed += 1;
            return Verdict::Drop;
        };
        let (sender_mac, sender_ip) = (arp.sender_hardware_addr(), arp.sender_protocol_addr());
        let target = arp.target_protocol_addr();
        let ours = self.own_v4.get(port).is_some_and(|a| a.contains(&target));
        let waiting = self.neighbors.learn(port, sender_ip, sender_mac, ours, now);
        for mut held in waiting {
            set_dst(&mut held, sender_mac);
            match self.raw.send(port, &held) {
                Ok(()) => self.counters.neighbor_released += 1,
                Err(_) => self.counters.raw_send_errors += 1,
            }
        }
        if arp.operation() != operation::REQUEST || !ours {
            self.counters.arp_seen += 1;
            return Verdict::Drop;
        }
        arp.set_operation(operation::REPLY);
        arp.set_sender_hardware_addr(port_mac);
        arp.set_sender_protocol_addr(target);
        arp.set_target_hardware_addr(sender_mac);
        arp.set_target_protocol_addr(sender_ip);
        eth.set_dst_addr(sender_mac);
        eth.set_src_addr(port_mac);
        self.counters.arp_replies += 1;
        Verdict::Forward(PortId(port as u16))
    }

    /// Broadcasts "who has `hop`" on `port` from the router's address in `hop`'s family there.
    pub(super) fn send_arp_request(&mut self, port: usize, hop: Ipv4Addr, vlan: Option<u16>) {
        let Some(src_mac) = self.ports.get(port).map(|p| p.mac) else {
            return;
        };
        let Some(src_ip) = self.own_v4.get(port).and_then(|a| a.first()).copied() else {
            self.counters.no_source_address += 1;
            return;
        };
        let (frame, len) = arp_request(src_mac, src_ip, hop, vlan);
        match self.raw.send(port, &frame[..len]) {
            Ok(()) => self.counters.arp_requests += 1,
            Err(_) => self.counters.raw_send_errors += 1,
        }
    }

    /// Frames and sends a packet the pipeline originated (an SVR control message).
    pub(super) fn originate(&mut self, now: Instant, egress: Egress, ip: &[u8]) {
        let Some(port) = self.iface_port.get(&egress.interface).copied() else {
            self.counters.unconfigured_port += 1;
            return;
        };
        let l2 = if egress.vlan.is_some() { ETH_VLAN } else { ETH };
        let mut frame = vec![0u8; l2 + ip.len()];
        frame[l2..].copy_from_slice(ip);
        let Some(src_mac) = self.ports.get(port).map(|p| p.mac) else {
            return;
        };
        write_ethernet(&mut frame, src_mac, egress.vlan);
        let IpAddr::V4(hop) = self.next_hop(port, egress.next_hop) else {
            self.counters.neighbor_ipv6_unsupported += 1;
            return;
        };
        match self.neighbors.lookup(port, hop, now) {
            Resolution::Known(mac) | Resolution::Refresh(mac) => {
                set_dst(&mut frame, mac);
                match self.raw.send(port, &frame) {
                    Ok(()) => self.counters.originated += 1,
                    Err(_) => self.counters.raw_send_errors += 1,
                }
            }
            Resolution::Request => {
                self.send_arp_request(port, hop, egress.vlan);
                self.hold(port, hop, &frame, now);
            }
            Resolution::Wait => self.hold(port, hop, &frame, now),
        }
    }
}

/// A broadcast "who has `hop`, tell `src_ip`" frame and its length.
fn arp_request(
    src_mac: MacAddress,
    src_ip: Ipv4Addr,
    hop: Ipv4Addr,
    vlan: Option<u16>,
) -> ([u8; ARP_FRAME + 4], usize) {
    let l2 = if vlan.is_some() { ETH_VLAN } else { ETH };
    let mut frame = [0u8; ARP_FRAME + 4];
    let len = (l2 + 28).max(ARP_FRAME);
    write_ethernet(&mut frame, src_mac, vlan);
    set_dst(&mut frame, MacAddress::BROADCAST);
    if let Some(t) = frame.get_mut(l2 - 2..l2) {
        t.copy_from_slice(&ethertype::ARP.to_be_bytes());
    }
    if let Some(body) = frame.get_mut(l2..l2 + 28) {
        let mut arp = ArpPacket::new_unchecked(body);
        arp.fill_ethernet_ipv4();
        arp.set_operation(operation::REQUEST);
        arp.set_sender_hardware_addr(src_mac);
        arp.set_sender_protocol_addr(src_ip);
        arp.set_target_hardware_addr(MacAddress([0; 6]));
        arp.set_target_protocol_addr(hop);
    }
    (frame, len)
}

/// Source address, VLAN tag and EtherType (from the IP version nibble, ARP when there is no
/// IP packet) of a frame whose payload starts at 14 or 18.
fn write_ethernet(frame: &mut [u8], src: MacAddress, vlan: Option<u16>) {
    let l2 = if vlan.is_some() { ETH_VLAN } else { ETH };
    let kind = match frame.get(l2).map(|b| b >> 4) {
        Some(6) => ethertype::IPV6,
        Some(4) => ethertype::IPV4,
        _ => ethertype::ARP,
    };
    let Some(header) = frame.get_mut(..l2) else {
        return;
    };
    header[6..12].copy_from_slice(&src.0);
    match vlan {
        Some(id) => {
            header[12..14].copy_from_slice(&ethertype::VLAN.to_be_bytes());
            header[14..16].copy_from_slice(&(id & 0x0fff).to_be_bytes());
            header[16..18].copy_from_slice(&kind.to_be_bytes());
        }
        None => header[12..14].copy_from_slice(&kind.to_be_bytes()),
    }
}

fn set_dst(frame: &mut [u8], mac: MacAddress) {
    if let Some(d) = frame.get_mut(..6) {
        d.copy_from_slice(&mac.0);
    }
}

/// The [`Forwarder`] a driver's worker thread runs: the shared [`Worker`] behind a mutex.
pub struct SessionForwarder {
    pub(super) worker: Arc<Mutex<Worker>>,
}

impl Forwarder for SessionForwarder {
    fn handle(&mut self, now: Instant, ingress: PortId, frame: &mut Frame<'_>) -> Verdict {
        let mut worker = self.worker.lock().unwrap_or_else(PoisonError::into_inner);
        let verdict = worker.handle_frame(now, ingress, frame, None);
        worker.sync_noted(now);
        verdict
    }

    /// One lock per batch, and the pipeline's lookups of the batch overlapped. Sessions the
    /// batch made offloadable go to the kernel right after it (see [`super::offload`]).
    fn handle_batch(
        &mut self,
        now: Instant,
        ingress: PortId,
        frames: &mut [Frame<'_>],
        verdicts: &mut Vec<Verdict>,
    ) {
        let mut worker = self.worker.lock().unwrap_or_else(PoisonError::into_inner);
        worker.handle_batch(now, ingress, frames, verdicts);
        worker.sync_noted(now);
    }

    fn poll_release(
        &mut self,
        now: Instant,
        release: &mut dyn FnMut(PortId, &[u8]) -> bool,
    ) -> Option<Instant> {
        let mut worker = self.worker.lock().unwrap_or_else(PoisonError::into_inner);
        worker.wan_queues.release(now, release)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: MacAddress = MacAddress([2, 0, 0, 0, 0, 9]);
    const ME: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);
    const HOP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

    #[test]
    fn arp_requests_parse_as_requests_for_the_next_hop_tagged_or_not() {
        for vlan in [None, Some(10)] {
            let (frame, len) = arp_request(MAC, ME, HOP, vlan);
            let eth = EthernetFrame::new_checked(&frame[..len]).expect("ethernet");
            assert_eq!(eth.dst_addr(), MacAddress::BROADCAST);
            assert_eq!(eth.src_addr(), MAC);
            assert_eq!(eth.vlan_id(), vlan);
            assert_eq!(eth.ethertype(), ethertype::ARP);
            let arp = ArpPacket::new_checked(eth.payload()).expect("a valid ARP body");
            assert_eq!(arp.operation(), operation::REQUEST);
            assert_eq!(arp.sender_protocol_addr(), ME);
            assert_eq!(arp.sender_hardware_addr(), MAC);
            assert_eq!(arp.target_protocol_addr(), HOP);
            assert!(len >= ARP_FRAME);
        }
    }

    #[test]
    fn ethernet_headers_take_their_ethertype_from_the_ip_version() {
        let mut frame = [0u8; 64];
        frame[ETH] = 0x45;
        write_ethernet(&mut frame, MAC, None);
        assert_eq!(u16::from_be_bytes([frame[12], frame[13]]), ethertype::IPV4);
        let mut frame = [0u8; 64];
        frame[ETH_VLAN] = 0x60;
        write_ethernet(&mut frame, MAC, Some(4095));
        let eth = EthernetFrame::new_checked(&frame[..]).expect("ethernet");
        assert_eq!(
            (eth.vlan_id(), eth.ethertype()),
            (Some(4095), ethertype::IPV6)
        );
    }

    /// A store edge's worker on ports `broadband`, `lte`, `eth1` (the LAN), gateway known.
    fn edge_worker(now: Instant) -> Worker {
        use crate::pipeline::testbed::edge_config;
        let gateway = (Ipv4Addr::new(192, 0, 2, 1), MacAddress([2, 0, 0, 0, 1, 1]));
        let ports: Arc<[Port]> = ["broadband", "lte", "eth1"]
            .iter()
            .enumerate()
            .map(|(i, device)| Port {
                device: device.to_string(),
                mac: MacAddress([2, 0, 0, 0, 0, i as u8]),
                os_v4: Vec::new(),
                static_neighbors: vec![gateway],
            })
            .collect();
        let raw = Arc::new(RawSenders::open(&[]).expect("no devices to open"));
        let mut worker = Worker::new(ports, raw, now);
        let config = edge_config(signpost_proto::v1::SecurityMode::Encrypt);
        let tables = Tables::new(&config, "v1").expect("edge config builds");
        worker.install(
            now,
            Arc::new(tables),
            1,
            crate::pipeline::Options::default(),
        );
        worker
    }

    #[test]
    fn a_batch_of_frames_is_handled_exactly_as_frame_by_frame() {
        use crate::pipeline::testbed::{CLIENT, PAYMENTS_VIP, TELEMETRY};
        let now = Instant::now();
        let (mut one_by_one, mut batched) = (edge_worker(now), edge_worker(now));
        let lan_mac = MacAddress([2, 0, 0, 0, 0, 2]);
        let client_mac = MacAddress([2, 0, 0, 0, 2, 5]);
        let client = Ipv4Addr::from(CLIENT);
        let udp = |dst_mac: MacAddress, sport: u16, dst: [u8; 4]| {
            let mut out = Vec::new();
            etherparse::PacketBuilder::ethernet2(client_mac.0, dst_mac.0)
                .single_vlan(etherparse::VlanId::try_new(10).expect("vlan id"))
                .ipv4(CLIENT, dst, 64)
                .udp(sport, 9000)
                .write(&mut out, &[7; 22])
                .expect("builds");
            out
        };
        let (arp, arp_len) = arp_request(client_mac, client, Ipv4Addr::new(10, 1, 0, 1), Some(10));
        let mut other_ethertype = udp(lan_mac, 5009, TELEMETRY);
        other_ethertype[16..18].copy_from_slice(&0x88b5u16.to_be_bytes());
        let input: Vec<Vec<u8>> = vec![
            udp(lan_mac, 5004, TELEMETRY),
            arp[..arp_len].to_vec(),
            udp(lan_mac, 5004, TELEMETRY),
            udp(MacAddress([2, 9, 9, 9, 9, 9]), 5005, TELEMETRY),
            udp(lan_mac, 5006, PAYMENTS_VIP),
            other_ethertype,
            vec![0xff; 10],
            udp(lan_mac, 5007, TELEMETRY),
        ];
        let mut bufs: [Vec<Vec<u8>>; 2] = [0, 1].map(|_| {
            input
                .iter()
                .map(|f| {
                    let mut buf = vec![0u8; 2048];
                    buf[..f.len()].copy_from_slice(f);
                    buf
                })
                .collect()
        });
        let lan = PortId(2);
        let [one_bufs, batch_bufs] = &mut bufs;
        let mut expected = Vec::new();
        for (buf, f) in one_bufs.iter_mut().zip(&input) {
            let mut frame = Frame::new(buf, f.len()).expect("fits");
            let verdict = one_by_one.handle_frame(now, lan, &mut frame, None);
            expected.push((verdict, frame.data().to_vec()));
        }
        let mut frames: Vec<Frame<'_>> = batch_bufs
            .iter_mut()
            .zip(&input)
            .map(|(buf, f)| Frame::new(buf, f.len()).expect("fits"))
            .collect();
        let mut verdicts = Vec::new();
        batched.handle_batch(now, lan, &mut frames, &mut verdicts);
        let got: Vec<(Verdict, Vec<u8>)> = verdicts
            .into_iter()
            .zip(&frames)
            .map(|(v, f)| (v, f.data().to_vec()))
            .collect();
        assert_eq!(got, expected);
        assert_eq!(batched.counters, one_by_one.counters);
        let counters = |w: &Worker| w.pipeline.as_ref().map(|p| p.counters().clone());
        assert_eq!(counters(&batched), counters(&one_by_one));
        let forwarded = expected
            .iter()
            .filter(|(v, _)| matches!(v, Verdict::Forward(_)))
            .count();
        assert!(forwarded >= 4, "{expected:?}");
    }
}
