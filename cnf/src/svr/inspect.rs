//! What a capture shows of SVR: each packet of a pcap file taken apart down to its L4 payload
//! and sorted as the receiving router would — ordinary data, the false-positive marker, a
//! metadata block (every TLV, and the typed [`Metadata`] when it parses) or a malformed block
//! with the codec's own error. The engine behind `signpostctl svr decode`; it only reads, with
//! the crate's packet views and the SVR codec, and never decrypts.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use core::time::Duration;

use super::Metadata;
use super::metadata::{ControlMessage, PathMetrics, SessionContext};
use super::wire::{
    Classified, Error, Hex, MetadataPacket, Section, Tlv, classify, tlv_name, tlv_type,
};
use crate::packet::ethernet::ethertype;
use crate::packet::{
    EthernetFrame, Ipv4Packet, Ipv6Packet, TcpSegment, UdpDatagram, ip_protocol, tcp,
};
use crate::pcap::{LinkType, PcapError, PcapReader, Record};

/// One packet of a capture, as far as it could be taken apart.
#[derive(Debug, Clone, PartialEq)]
pub struct PacketReport {
    /// Position in the file, from 0.
    pub index: usize,
    pub timestamp: Duration,
    /// Bytes in the file.
    pub captured_len: usize,
    /// Bytes on the wire.
    pub orig_len: u32,
    /// Addresses, protocol and ports, when the IP header was readable.
    pub flow: Option<Flow>,
    pub verdict: Verdict,
    /// What else the reader should know: a capture cut at the snaplen, a first fragment,
    /// payload TLVs that may be encrypted.
    pub notes: Vec<String>,
}

/// The 5-tuple of a packet (without ports when it is not TCP or UDP, or a later fragment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol number (after any IPv6 extension headers).
    pub protocol: u8,
    /// Source and destination port, for TCP and UDP.
    pub ports: Option<(u16, u16)>,
    /// The TCP flag bits.
    pub tcp_flags: Option<u8>,
}

/// What the packet's L4 payload is, or why it could not be reached.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The link header does not announce IPv4 or IPv6 (ARP, LLDP, a second VLAN tag, ...).
    NotIp { reason: String },
    /// IP carrying neither TCP nor UDP (ICMP, ESP, ...); the protocol is in the flow.
    NotTcpUdp { protocol: u8 },
    /// A header is truncated or malformed, or the packet is a later fragment.
    Undecodable { reason: String },
    /// No cookie: ordinary application data.
    Ordinary { payload_len: usize },
    /// The 12-byte marker in front of ordinary data that itself begins with the cookie.
    FalsePositiveMarker { original_payload_len: usize },
    /// A well-formed metadata block.
    Metadata {
        block: MetadataBlock,
        metadata: Box<Metadata>,
    },
    /// The cookie is there but the block does not decode. `block` holds what was read before
    /// the error, when the base header was sound.
    InvalidMetadata {
        block: Option<MetadataBlock>,
        error: Error,
    },
}

impl Verdict {
    /// A short label, the same in text and JSON output.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::NotIp { .. } => "not IP",
            Verdict::NotTcpUdp { .. } => "not TCP/UDP",
            Verdict::Undecodable { .. } => "undecodable",
            Verdict::Ordinary { .. } => "no metadata",
            Verdict::FalsePositiveMarker { .. } => "false-positive marker",
            Verdict::Metadata { .. } => "metadata",
            Verdict::InvalidMetadata { .. } => "invalid metadata",
        }
    }
}

/// The layout of a metadata block and its TLVs in wire order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataBlock {
    /// The header length field: base header plus header TLVs.
    pub header_len: usize,
    /// The payload length field: bytes of payload TLVs.
    pub payload_len: usize,
    /// Bytes of the original L4 payload after the block.
    pub original_payload_len: usize,
    pub tlvs: Vec<TlvReport>,
}

/// One TLV as found on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlvReport {
    pub section: Section,
    /// Where its type field is, counted from the cookie.
    pub offset: usize,
    pub tlv_type: u16,
    /// The draft's name, or "unknown".
    pub name: &'static str,
    pub value: Vec<u8>,
    /// Addresses and ports for contexts, quoted text for names, numbers, flags; hex otherwise.
    pub readable: String,
}

impl TlvReport {
    fn new(tlv: Tlv<'_>, section: Section) -> Self {
        TlvReport {
            section,
            offset: tlv.offset,
            tlv_type: tlv.tlv_type,
            name: tlv_name(tlv.tlv_type).unwrap_or("unknown"),
            value: tlv.value.to_vec(),
            readable: readable(tlv.tlv_type, tlv.value),
        }
    }
}

/// Reads a whole pcap file and reports every packet. Stops at the first file-level error; use
/// [`PcapReader`] with [`inspect_record`] to keep the packets read before it.
pub fn inspect_capture(bytes: &[u8]) -> Result<Vec<PacketReport>, PcapError> {
    let reader = PcapReader::new(bytes)?;
    let link_type = reader.link_type();
    reader
        .map(|record| record.map(|record| inspect_record(link_type, &record)))
        .collect()
}

/// Reports one record of a file whose link type is `link_type`.
pub fn inspect_record(link_type: LinkType, record: &Record<'_>) -> PacketReport {
    let mut report = PacketReport {
        index: record.index,
        timestamp: record.timestamp,
        captured_len: record.data.len(),
        orig_len: record.orig_len,
        flow: None,
        verdict: Verdict::Ordinary { payload_len: 0 },
        notes: Vec::new(),
    };
    if (record.orig_len as usize) > record.data.len() {
        report.notes.push(format!(
            "the capture kept {} of {} bytes (snaplen): later layers may be cut",
            record.data.len(),
            record.orig_len
        ));
    }
    report.verdict = match network_layer(link_type, record.data) {
        Ok(network) => inspect_ip(network, &mut report),
        Err(verdict) => verdict,
    };
    report
}

/// The bytes after the link header when it announces IP, or the verdict when it does not.
fn network_layer(link_type: LinkType, data: &[u8]) -> Result<&[u8], Verdict> {
    let (ethertype, payload) = match link_type {
        LinkType::Raw => return Ok(data),
        LinkType::Ethernet => {
            let frame = EthernetFrame::new_checked(data).map_err(|error| Verdict::Undecodable {
                reason: format!("Ethernet header: {error}"),
            })?;
            let header_len = frame.header_len();
            (frame.ethertype(), data.get(header_len..).unwrap_or(&[]))
        }
        // Linux cooked headers: the protocol (an EtherType for IP) at 14 of 16 bytes in v1, at
        // 0 of 20 in v2.
        LinkType::LinuxSll => cooked(data, 16, 14, "Linux cooked (SLL)")?,
        LinkType::LinuxSll2 => cooked(data, 20, 0, "Linux cooked v2 (SLL2)")?,
    };
    match ethertype {
        ethertype::IPV4 | ethertype::IPV6 => Ok(payload),
        other => Err(Verdict::NotIp {
            reason: match ethertype_name(other) {
                Some(name) => format!("EtherType {other:#06x} ({name})"),
                None => format!("EtherType {other:#06x}"),
            },
        }),
    }
}

fn cooked<'a>(
    data: &'a [u8],
    header_len: usize,
    protocol_at: usize,
    what: &str,
) -> Result<(u16, &'a [u8]), Verdict> {
    match (
        data.get(protocol_at..protocol_at + 2),
        data.get(header_len..),
    ) {
        (Some(&[hi, lo]), Some(payload)) => Ok((u16::from_be_bytes([hi, lo]), payload)),
        _ => Err(Verdict::Undecodable {
            reason: format!(
                "{what} header truncated: it needs {header_len} bytes, {} were captured",
                data.len()
            ),
        }),
    }
}

fn ethertype_name(ethertype: u16) -> Option<&'static str> {
    Some(match ethertype {
        ethertype::ARP => "ARP",
        ethertype::VLAN => "a second 802.1Q tag",
        0x88a8 => "802.1ad service tag",
        0x88cc => "LLDP",
        0x8847 | 0x8848 => "MPLS",
        _ => return None,
    })
}

/// The IP layer on: fills the flow and notes, returns the verdict.
fn inspect_ip(data: &[u8], report: &mut PacketReport) -> Verdict {
    let transport = match data.first().map(|b| b >> 4) {
        Some(4) => ipv4_transport(data, report),
        Some(6) => ipv6_transport(data, report),
        Some(version) => {
            return Verdict::NotIp {
                reason: format!("IP version nibble {version}, neither 4 nor 6"),
            };
        }
        None => {
            return Verdict::Undecodable {
                reason: "empty packet".to_owned(),
            };
        }
    };
    let cut = cut_note(report);
    let (protocol, l4, first_fragment) = match transport {
        Ok(found) => found,
        Err(verdict) => return verdict,
    };
    let payload = match protocol {
        ip_protocol::TCP => match TcpSegment::new_checked(l4) {
            Ok(segment) => {
                set_ports(report, segment.src_port(), segment.dst_port());
                if let Some(flow) = &mut report.flow {
                    flow.tcp_flags = Some(segment.flags());
                }
                l4.get(segment.header_len()..).unwrap_or(&[])
            }
            Err(error) => {
                return Verdict::Undecodable {
                    reason: format!("TCP header{cut}: {error}"),
                };
            }
        },
        ip_protocol::UDP => match UdpDatagram::new_checked(l4) {
            Ok(datagram) => {
                set_ports(report, datagram.src_port(), datagram.dst_port());
                // Checked: 8 <= length <= buffer; the bytes past the length are link padding.
                l4.get(UDP_HEADER_LEN..usize::from(datagram.len()))
                    .unwrap_or(&[])
            }
            // A first fragment holds the UDP header but not the whole datagram its length
            // counts: what it holds is still the start of the payload, where metadata sits.
            Err(_) if first_fragment && l4.len() >= UDP_HEADER_LEN => {
                let datagram = UdpDatagram::new_unchecked(l4);
                set_ports(report, datagram.src_port(), datagram.dst_port());
                l4.get(UDP_HEADER_LEN..).unwrap_or(&[])
            }
            Err(error) => {
                return Verdict::Undecodable {
                    reason: format!("UDP header{cut}: {error}"),
                };
            }
        },
        protocol => return Verdict::NotTcpUdp { protocol },
    };
    classify_payload(payload, report)
}

/// `(protocol, L4 bytes, first fragment)` of an IPv4 packet, or why there is no L4 header.
fn ipv4_transport<'a>(
    data: &'a [u8],
    report: &mut PacketReport,
) -> Result<(u8, &'a [u8], bool), Verdict> {
    let ip = Ipv4Packet::new_checked(data).map_err(|error| Verdict::Undecodable {
        reason: format!("IPv4 packet{}: {error}", cut_note(report)),
    })?;
    let protocol = ip.protocol();
    report.flow = Some(flow(ip.src_addr().into(), ip.dst_addr().into(), protocol));
    if ip.frag_offset() != 0 {
        return Err(later_fragment("IPv4", ip.frag_offset()));
    }
    let first_fragment = ip.more_frags();
    if first_fragment {
        report.notes.push(first_fragment_note());
    }
    // Checked above: header length <= total length <= buffer length.
    let l4 = data
        .get(ip.header_len()..usize::from(ip.total_len()))
        .unwrap_or(&[]);
    Ok((protocol, l4, first_fragment))
}

/// The same for IPv6, walking the extension headers that may stand before TCP or UDP.
fn ipv6_transport<'a>(
    data: &'a [u8],
    report: &mut PacketReport,
) -> Result<(u8, &'a [u8], bool), Verdict> {
    let ip = Ipv6Packet::new_checked(data).map_err(|error| Verdict::Undecodable {
        reason: format!("IPv6 packet{}: {error}", cut_note(report)),
    })?;
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let payload_end = Ipv6Packet::<&[u8]>::HEADER_LEN + usize::from(ip.payload_len());
    // Checked above: the payload length lies within the buffer.
    let mut rest = data
        .get(Ipv6Packet::<&[u8]>::HEADER_LEN..payload_end)
        .unwrap_or(&[]);
    let mut next = ip.next_header();
    let mut first_fragment = false;
    // Hop-by-hop, routing and destination options share one shape; a fragment header is 8
    // bytes. Eight headers is more than any real packet carries.
    for _ in 0..8 {
        match next {
            HOP_BY_HOP | ROUTING | DESTINATION_OPTIONS => {
                let (Some(&following), Some(&len_units)) = (rest.first(), rest.get(1)) else {
                    return Err(truncated_extension(src, dst, next, report));
                };
                let len = (usize::from(len_units) + 1) * 8;
                let Some(after) = rest.get(len..) else {
                    return Err(truncated_extension(src, dst, next, report));
                };
                (next, rest) = (following, after);
            }
            FRAGMENT => {
                let (Some(&following), Some(&[hi, lo])) = (rest.first(), rest.get(2..4)) else {
                    return Err(truncated_extension(src, dst, next, report));
                };
                let offset_and_more = u16::from_be_bytes([hi, lo]);
                let offset = offset_and_more & 0xfff8; // 8-byte units in the top 13 bits
                report.flow = Some(flow(src.into(), dst.into(), following));
                if offset != 0 {
                    return Err(later_fragment("IPv6", offset));
                }
                if offset_and_more & 1 != 0 {
                    first_fragment = true;
                    report.notes.push(first_fragment_note());
                }
                next = following;
                rest = rest.get(8..).unwrap_or(&[]);
            }
            _ => break,
        }
    }
    report.flow = Some(flow(src.into(), dst.into(), next));
    Ok((next, rest, first_fragment))
}

const UDP_HEADER_LEN: usize = UdpDatagram::<&[u8]>::HEADER_LEN;
const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const DESTINATION_OPTIONS: u8 = 60;

fn truncated_extension(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    header: u8,
    report: &mut PacketReport,
) -> Verdict {
    report.flow = Some(flow(src.into(), dst.into(), header));
    Verdict::Undecodable {
        reason: format!("IPv6 extension header {header} runs past the end of the packet"),
    }
}

fn later_fragment(ip: &str, offset: u16) -> Verdict {
    Verdict::Undecodable {
        reason: format!(
            "{ip} fragment at offset {offset}: only the first fragment holds the L4 header and \
             metadata (fragments are not reassembled here)"
        ),
    }
}

/// Said after a layer's name when its header may be missing only because of the snaplen.
fn cut_note(report: &PacketReport) -> &'static str {
    if report.captured_len < report.orig_len as usize {
        " (cut by the snaplen)"
    } else {
        ""
    }
}

fn first_fragment_note() -> String {
    "first fragment: the L4 payload continues in later fragments".to_owned()
}

fn flow(src: IpAddr, dst: IpAddr, protocol: u8) -> Flow {
    Flow {
        src,
        dst,
        protocol,
        ports: None,
        tcp_flags: None,
    }
}

fn set_ports(report: &mut PacketReport, src: u16, dst: u16) {
    if let Some(flow) = &mut report.flow {
        flow.ports = Some((src, dst));
    }
}

/// Sorts the L4 payload with the codec, walking every TLV of a block.
fn classify_payload(payload: &[u8], report: &mut PacketReport) -> Verdict {
    let packet = match classify(payload) {
        Ok(Classified::Ordinary) => {
            return Verdict::Ordinary {
                payload_len: payload.len(),
            };
        }
        Ok(Classified::FalsePositiveMarker { original_payload }) => {
            return Verdict::FalsePositiveMarker {
                original_payload_len: original_payload.len(),
            };
        }
        Ok(Classified::Metadata(packet)) => packet,
        Err(error) => return Verdict::InvalidMetadata { block: None, error },
    };
    let mut block = MetadataBlock {
        header_len: packet.header_len(),
        payload_len: packet.payload_len(),
        original_payload_len: packet.original_payload().len(),
        tlvs: Vec::new(),
    };
    let walked = walk(&packet, &mut block.tlvs).and_then(|()| Metadata::parse(&packet));
    match walked {
        Ok(metadata) => Verdict::Metadata {
            block,
            metadata: Box::new(metadata),
        },
        Err(error) => {
            let keyed = block
                .tlvs
                .iter()
                .any(|tlv| tlv.tlv_type == tlv_type::SECURITY_ID);
            if keyed && block.payload_len > 0 {
                report.notes.push(
                    "a security id is present: the payload TLVs may be encrypted, which would \
                     explain this error (this tool does not decrypt)"
                        .to_owned(),
                );
            }
            Verdict::InvalidMetadata {
                block: Some(block),
                error,
            }
        }
    }
}

/// Every TLV of both sections, in wire order, up to the first that does not fit.
fn walk(packet: &MetadataPacket<&[u8]>, out: &mut Vec<TlvReport>) -> Result<(), Error> {
    for (section, tlvs) in [
        (Section::Header, packet.header_tlvs()),
        (Section::Payload, packet.payload_tlvs()),
    ] {
        for tlv in tlvs {
            out.push(TlvReport::new(tlv?, section));
        }
    }
    Ok(())
}

/// A TLV value as a person reads it; hex when the type is unknown or the value malformed.
fn readable(tlv_type: u16, value: &[u8]) -> String {
    use tlv_type::*;
    let text = match tlv_type {
        FORWARD_CONTEXT_V4 | FORWARD_CONTEXT_V6 | REVERSE_CONTEXT_V4 | REVERSE_CONTEXT_V6 => {
            SessionContext::decode(tlv_type, value)
                .ok()
                .map(|context| context.to_string())
        }
        SESSION_UUID => <[u8; 16]>::try_from(value).ok().map(|uuid| {
            let hex = Hex(&uuid).to_string();
            format!(
                "{}-{}-{}-{}-{}",
                &hex[..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..]
            )
        }),
        TENANT_NAME
        | SERVICE_NAME
        | SOURCE_ROUTER_NAME
        | SECURITY_POLICY_NAME
        | DESTINATION_ROUTER_NAME
        | PEER_PATHWAY_ID
        | APPLICATION_NAME => core::str::from_utf8(value)
            .ok()
            .map(|text| format!("{text:?}")),
        GLOBAL_INTERFACE_ID | SECURITY_ID => <[u8; 4]>::try_from(value)
            .ok()
            .map(|n| u32::from_be_bytes(n).to_string()),
        REMAINING_SESSION_TIME => <[u8; 4]>::try_from(value)
            .ok()
            .map(|n| format!("{} s", u32::from_be_bytes(n))),
        PAYLOAD_ENCRYPTED | TCP_SYN_AS_UDP | DISABLE_FORWARD_METADATA => {
            value.is_empty().then(|| "set".to_owned())
        }
        CONTROL_MESSAGE => match value {
            &[code] => Some(ControlMessage::from(code).to_string()),
            _ => None,
        },
        PATH_METRICS => <[u8; PathMetrics::LEN]>::try_from(value)
            .ok()
            .map(|bytes| PathMetrics::decode(bytes).to_string()),
        ICMP_ERROR_LOCATION_V4 | SOURCE_NAT_V4 => <[u8; 4]>::try_from(value)
            .ok()
            .map(|octets| Ipv4Addr::from(octets).to_string()),
        ICMP_ERROR_LOCATION_V6 => <[u8; 16]>::try_from(value)
            .ok()
            .map(|octets| Ipv6Addr::from(octets).to_string()),
        _ => None,
    };
    match text {
        Some(text) => text,
        None if value.is_empty() => "(empty)".to_owned(),
        None if tlv_name(tlv_type).is_some() => format!("{} (not the expected form)", Hex(value)),
        None => Hex(value).to_string(),
    }
}

/// `UDP 10.0.0.1:5000 -> 10.0.0.2:443`, `TCP [2001:db8::1]:443 -> ... [SYN]`, `ICMP a -> b`.
impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match ip_protocol::name(self.protocol) {
            Some(name) => f.write_str(name)?,
            None => write!(f, "protocol {}", self.protocol)?,
        }
        match self.ports {
            Some((src_port, dst_port)) => {
                let src = core::net::SocketAddr::new(self.src, src_port);
                let dst = core::net::SocketAddr::new(self.dst, dst_port);
                write!(f, " {src} -> {dst}")?;
            }
            None => write!(f, " {} -> {}", self.src, self.dst)?,
        }
        if let Some(flags) = self.tcp_flags {
            write!(f, " [{}]", TcpFlags(flags))?;
        }
        Ok(())
    }
}

/// TCP flag bits by name, "SYN,ACK"; "none" when no bit is set.
pub struct TcpFlags(pub u8);

impl fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use tcp::flags::*;
        let names = [
            (SYN, "SYN"),
            (ACK, "ACK"),
            (FIN, "FIN"),
            (RST, "RST"),
            (PSH, "PSH"),
            (URG, "URG"),
            (ECE, "ECE"),
            (CWR, "CWR"),
        ];
        let mut first = true;
        for (bit, name) in names {
            if self.0 & bit != 0 {
                if !first {
                    f.write_str(",")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::XorShift;
    use crate::pcap::{PcapWriter, Precision};
    use crate::svr::wire::{COOKIE, FALSE_POSITIVE_MARKER};
    use crate::svr::{ContextAddrs, UnknownTlv};
    use etherparse::PacketBuilder;

    const HOST_A: [u8; 4] = [192, 0, 2, 1];
    const HOST_B: [u8; 4] = [198, 51, 100, 2];
    const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
    const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

    fn capture(link_type: LinkType, packets: &[Vec<u8>]) -> Vec<u8> {
        let mut writer =
            PcapWriter::with_precision(Vec::new(), link_type, Precision::Nanoseconds).unwrap();
        for (i, packet) in packets.iter().enumerate() {
            let timestamp = Duration::new(1_700_000_000, i as u32 * 1000);
            writer.write_packet(timestamp, packet).unwrap();
        }
        writer.into_inner()
    }

    fn forward_metadata() -> Metadata {
        Metadata {
            security_id: Some(7),
            forward_context: Some(SessionContext {
                addrs: ContextAddrs::V4 {
                    src: Ipv4Addr::new(10, 0, 0, 5),
                    dst: Ipv4Addr::new(10, 9, 8, 7),
                },
                src_port: 50000,
                dst_port: 443,
                protocol: 6,
            }),
            session_uuid: Some([
                0x6f, 0x9a, 0x1c, 0x02, 0x3b, 0x44, 0x4e, 0x1f, 0x9d, 0x2e, 0x55, 0x77, 0x01, 0x02,
                0x03, 0x04,
            ]),
            tenant: Some("retail".into()),
            service: Some("pos".into()),
            tcp_syn_as_udp: true,
            source_router: Some("store-0042".into()),
            peer_pathway_id: Some("lte-1".into()),
            ..Metadata::default()
        }
    }

    /// The metadata block followed by the original payload.
    fn with_metadata(metadata: &Metadata, original: &[u8]) -> Vec<u8> {
        let mut payload = vec![0u8; metadata.buffer_len()];
        let len = metadata.emit(&mut payload).unwrap();
        assert_eq!(len, payload.len());
        payload.extend_from_slice(original);
        payload
    }

    fn udp_v4(payload: &[u8]) -> Vec<u8> {
        let builder = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(HOST_A, HOST_B, 64)
            .udp(1280, 1281);
        let mut out = Vec::new();
        builder.write(&mut out, payload).unwrap();
        out
    }

    fn tcp_syn_v4(payload: &[u8]) -> Vec<u8> {
        let builder = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(HOST_A, HOST_B, 64)
            .tcp(40000, 443, 1, 64240)
            .syn();
        let mut out = Vec::new();
        builder.write(&mut out, payload).unwrap();
        out
    }

    /// A metadata block written by hand: base header, then header and payload TLV bytes.
    fn block(version: u8, header: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut bytes = COOKIE.to_vec();
        let word = (u16::from(version) << 12) | (12 + header.len() as u16);
        bytes.extend_from_slice(&word.to_be_bytes());
        bytes.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(payload);
        bytes
    }

    fn expect_metadata(report: &PacketReport) -> (&MetadataBlock, &Metadata) {
        match &report.verdict {
            Verdict::Metadata { block, metadata } => (block, &**metadata),
            other => panic!("packet {}: expected metadata, got {other:?}", report.index),
        }
    }

    #[test]
    fn a_capture_of_every_kind() {
        let forward = forward_metadata();
        let syn_metadata = Metadata {
            security_id: Some(7),
            tenant: Some("retail".into()),
            ..Metadata::default()
        };
        let mut marked = FALSE_POSITIVE_MARKER.to_vec();
        marked.extend_from_slice(&COOKIE);
        marked.extend_from_slice(b"tail");
        let unknown_tlv = block(1, &[], &[0x03, 0xe7, 0x00, 0x03, 0xde, 0xad, 0x01]);
        // Tenant "retail", then a TLV that claims 9 value bytes where 2 remain.
        let overrun = block(
            1,
            &[],
            &[
                0x00, 0x07, 0x00, 0x06, b'r', b'e', b't', b'a', b'i', b'l', 0x00, 0x0a, 0x00, 0x09,
                b'p', b'o',
            ],
        );
        let arp = {
            let mut frame = vec![0xff; 6];
            frame.extend_from_slice(&MAC_A);
            frame.extend_from_slice(&[0x08, 0x06]);
            frame.extend_from_slice(&[0; 28]);
            frame
        };
        let icmp = {
            let builder = PacketBuilder::ethernet2(MAC_A, MAC_B)
                .ipv4(HOST_A, HOST_B, 64)
                .icmpv4_echo_request(1, 1);
            let mut out = Vec::new();
            builder.write(&mut out, b"ping").unwrap();
            out
        };
        let truncated_ip = udp_v4(b"hello")[..14 + 12].to_vec();

        let packets = vec![
            udp_v4(&with_metadata(&forward, b"hello")),
            tcp_syn_v4(&with_metadata(&syn_metadata, b"")),
            udp_v4(&marked),
            udp_v4(b"GET / HTTP/1.1"),
            udp_v4(&COOKIE[..].iter().copied().chain([0x10]).collect::<Vec<_>>()),
            udp_v4(&block(2, &[], &[])),
            udp_v4(&unknown_tlv),
            arp,
            icmp,
            udp_v4(&overrun),
            truncated_ip,
        ];
        let reports = inspect_capture(&capture(LinkType::Ethernet, &packets)).unwrap();
        assert_eq!(reports.len(), packets.len());
        for (i, report) in reports.iter().enumerate() {
            assert_eq!(report.index, i);
            assert_eq!(
                report.timestamp,
                Duration::new(1_700_000_000, i as u32 * 1000)
            );
            assert_eq!(report.captured_len, packets[i].len());
        }

        // 0: full forward metadata over UDP.
        let report = &reports[0];
        let flow = report.flow.unwrap();
        assert_eq!(flow.to_string(), "UDP 192.0.2.1:1280 -> 198.51.100.2:1281");
        let (block0, metadata) = expect_metadata(report);
        assert_eq!(metadata, &forward);
        assert_eq!(block0.header_len, 20);
        assert_eq!(block0.original_payload_len, 5);
        let listed: Vec<_> = block0
            .tlvs
            .iter()
            .map(|tlv| (tlv.section, tlv.tlv_type, tlv.name, tlv.readable.as_str()))
            .collect();
        assert_eq!(
            listed,
            [
                (Section::Header, 16, "security id", "7"),
                (
                    Section::Payload,
                    2,
                    "forward context IPv4",
                    "10.0.0.5:50000 -> 10.9.8.7:443 TCP"
                ),
                (
                    Section::Payload,
                    6,
                    "session UUID",
                    "6f9a1c02-3b44-4e1f-9d2e-557701020304"
                ),
                (Section::Payload, 7, "tenant name", "\"retail\""),
                (Section::Payload, 10, "service name", "\"pos\""),
                (Section::Payload, 12, "TCP SYN as UDP", "set"),
                (Section::Payload, 14, "source router name", "\"store-0042\""),
                (Section::Payload, 19, "peer pathway id", "\"lte-1\""),
            ]
        );
        assert_eq!(block0.tlvs[1].value.len(), 13);
        assert_eq!(block0.tlvs[0].offset, 12);
        assert_eq!(block0.tlvs[1].offset, 20);

        // 1: a TCP SYN carrying metadata.
        let report = &reports[1];
        assert_eq!(
            report.flow.unwrap().to_string(),
            "TCP 192.0.2.1:40000 -> 198.51.100.2:443 [SYN]"
        );
        assert_eq!(expect_metadata(report).1, &syn_metadata);

        assert_eq!(
            reports[2].verdict,
            Verdict::FalsePositiveMarker {
                original_payload_len: 12
            }
        );
        assert_eq!(reports[3].verdict, Verdict::Ordinary { payload_len: 14 });
        assert_eq!(
            reports[4].verdict,
            Verdict::InvalidMetadata {
                block: None,
                error: Error::Truncated { available: 9 }
            }
        );
        assert_eq!(
            reports[5].verdict,
            Verdict::InvalidMetadata {
                block: None,
                error: Error::BadVersion(2)
            }
        );

        // 6: an unknown type is listed, kept, and not an error.
        let (block6, metadata) = expect_metadata(&reports[6]);
        assert_eq!(block6.tlvs.len(), 1);
        let tlv = &block6.tlvs[0];
        assert_eq!((tlv.tlv_type, tlv.name), (999, "unknown"));
        assert_eq!((tlv.value.len(), tlv.readable.as_str()), (3, "dead01"));
        assert_eq!(
            metadata.unknown,
            [UnknownTlv {
                section: Section::Payload,
                tlv_type: 999,
                value: vec![0xde, 0xad, 0x01]
            }]
        );

        assert_eq!(
            reports[7].verdict,
            Verdict::NotIp {
                reason: "EtherType 0x0806 (ARP)".into()
            }
        );
        assert_eq!(reports[7].flow, None);
        assert_eq!(reports[8].verdict, Verdict::NotTcpUdp { protocol: 1 });
        assert_eq!(
            reports[8].flow.unwrap().to_string(),
            "ICMP 192.0.2.1 -> 198.51.100.2"
        );

        // 9: the TLVs before the overrun are still listed.
        match &reports[9].verdict {
            Verdict::InvalidMetadata {
                block: Some(block),
                error,
            } => {
                assert_eq!(block.tlvs.len(), 1);
                assert_eq!(block.tlvs[0].readable, "\"retail\"");
                assert_eq!(
                    error.to_string(),
                    "payload TLVs: TLV service name (10) at byte 22 claims 9 value bytes, only \
                     2 remain in the section"
                );
            }
            other => panic!("expected invalid metadata, got {other:?}"),
        }
        assert!(
            reports[9].notes.is_empty(),
            "no security id: no encryption hint"
        );

        assert_eq!(
            reports[10].verdict,
            Verdict::Undecodable {
                reason: "IPv4 packet: packet truncated: buffer shorter than its headers say".into()
            }
        );
    }

    #[test]
    fn ipv6_vlan_and_extension_headers() {
        let metadata = Metadata {
            forward_context: Some(SessionContext {
                addrs: ContextAddrs::V6 {
                    src: "2001:db8::5".parse().unwrap(),
                    dst: "2001:db8:9::7".parse().unwrap(),
                },
                src_port: 50000,
                dst_port: 53,
                protocol: 17,
            }),
            ..Metadata::default()
        };
        let payload = with_metadata(&metadata, b"query");
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let builder = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .single_vlan(etherparse::VlanId::try_new(42).unwrap())
            .ipv6(src.octets(), dst.octets(), 64)
            .udp(4500, 4501);
        let mut tagged = Vec::new();
        builder.write(&mut tagged, &payload).unwrap();

        // The same packet with a hop-by-hop header (PadN) spliced in before UDP.
        let ip_at = 18;
        let mut with_hop_by_hop = tagged.clone();
        with_hop_by_hop[ip_at + 6] = HOP_BY_HOP;
        let payload_len = u16::from_be_bytes([tagged[ip_at + 4], tagged[ip_at + 5]]) + 8;
        with_hop_by_hop[ip_at + 4..ip_at + 6].copy_from_slice(&payload_len.to_be_bytes());
        let hop_by_hop = [ip_protocol::UDP, 0, 1, 4, 0, 0, 0, 0];
        with_hop_by_hop.splice(ip_at + 40..ip_at + 40, hop_by_hop);

        // And with a fragment header: first fragment (offset 0, more fragments), then a later
        // one (offset 1232 bytes).
        let with_fragment = |offset_and_more: u16| {
            let mut packet = tagged.clone();
            packet[ip_at + 6] = FRAGMENT;
            packet[ip_at + 4..ip_at + 6].copy_from_slice(&payload_len.to_be_bytes());
            let mut header = [ip_protocol::UDP, 0, 0, 0, 0, 0, 0x12, 0x34];
            header[2..4].copy_from_slice(&offset_and_more.to_be_bytes());
            packet.splice(ip_at + 40..ip_at + 40, header);
            packet
        };
        let first_fragment = with_fragment(1);
        let later_fragment = with_fragment(1232 | 1);

        let reports = inspect_capture(&capture(
            LinkType::Ethernet,
            &[tagged, with_hop_by_hop, first_fragment, later_fragment],
        ))
        .unwrap();
        assert_eq!(
            reports[2].notes,
            ["first fragment: the L4 payload continues in later fragments"]
        );
        assert_eq!(
            reports[3].verdict,
            Verdict::Undecodable {
                reason: "IPv6 fragment at offset 1232: only the first fragment holds the L4 \
                         header and metadata (fragments are not reassembled here)"
                    .into()
            }
        );
        assert_eq!(
            reports[3].flow.unwrap().to_string(),
            "UDP 2001:db8::1 -> 2001:db8::2"
        );
        for report in &reports[..3] {
            assert_eq!(
                report.flow.unwrap().to_string(),
                "UDP [2001:db8::1]:4500 -> [2001:db8::2]:4501"
            );
            let (block, parsed) = expect_metadata(report);
            assert_eq!(parsed, &metadata);
            assert_eq!(
                block.tlvs[0].readable,
                "[2001:db8::5]:50000 -> [2001:db8:9::7]:53 UDP"
            );
            assert_eq!(block.original_payload_len, 5);
        }
    }

    #[test]
    fn linux_cooked_and_raw_captures() {
        let metadata = forward_metadata();
        let mut ip = Vec::new();
        PacketBuilder::ipv4(HOST_A, HOST_B, 64)
            .udp(1280, 1281)
            .write(&mut ip, &with_metadata(&metadata, b"x"))
            .unwrap();

        let mut sll = Vec::new();
        PacketBuilder::linux_sll(
            etherparse::LinuxSllPacketType::OUTGOING,
            6,
            [2, 0, 0, 0, 0, 10, 0, 0],
        )
        .ipv4(HOST_A, HOST_B, 64)
        .udp(1280, 1281)
        .write(&mut sll, &with_metadata(&metadata, b"x"))
        .unwrap();
        assert_eq!(&sll[14..16], &[0x08, 0x00], "etherparse wrote SLL v1");

        // SLL2 by hand: protocol, reserved, interface index, ARPHRD_ETHER, outgoing, 6-byte
        // address padded to 8.
        let mut sll2 = vec![0x08, 0x00, 0, 0, 0, 0, 0, 3, 0x00, 0x01, 4, 6];
        sll2.extend_from_slice(&[2, 0, 0, 0, 0, 10, 0, 0]);
        sll2.extend_from_slice(&ip);

        for (link_type, packet) in [
            (LinkType::Raw, ip.clone()),
            (LinkType::LinuxSll, sll),
            (LinkType::LinuxSll2, sll2),
        ] {
            let reports = inspect_capture(&capture(link_type, &[packet])).unwrap();
            assert_eq!(expect_metadata(&reports[0]).1, &metadata, "{link_type}");
            assert_eq!(
                reports[0].flow.unwrap().to_string(),
                "UDP 192.0.2.1:1280 -> 198.51.100.2:1281"
            );
        }

        let reports = inspect_capture(&capture(
            LinkType::LinuxSll2,
            &[vec![0x08, 0x06, 0, 0], vec![0x86, 0xdd]],
        ))
        .unwrap();
        assert_eq!(
            reports[0].verdict,
            Verdict::Undecodable {
                reason: "Linux cooked v2 (SLL2) header truncated: it needs 20 bytes, 4 were \
                         captured"
                    .into()
            }
        );
        let reports =
            inspect_capture(&capture(LinkType::Raw, &[vec![0x20, 0, 0], vec![]])).unwrap();
        assert_eq!(
            reports[0].verdict,
            Verdict::NotIp {
                reason: "IP version nibble 2, neither 4 nor 6".into()
            }
        );
        assert_eq!(
            reports[1].verdict,
            Verdict::Undecodable {
                reason: "empty packet".into()
            }
        );
    }

    /// Sets IPv4 flags/fragment offset and refreshes the header checksum.
    fn fragment(mut packet: Vec<u8>, more: bool, offset_units: u16) -> Vec<u8> {
        let word = (u16::from(more) << 13) | offset_units;
        packet[14 + 6..14 + 8].copy_from_slice(&word.to_be_bytes());
        let mut ip = Ipv4Packet::new_unchecked(&mut packet[14..]);
        ip.fill_checksum();
        packet
    }

    #[test]
    fn fragments() {
        let metadata = forward_metadata();
        // A first fragment: the UDP length counts 400 more bytes than the fragment holds.
        let mut whole = udp_v4(&with_metadata(&metadata, &[0x55; 600]));
        let ip_len = 20 + 8 + metadata.buffer_len() + 200;
        whole.truncate(14 + ip_len);
        whole[14 + 2..14 + 4].copy_from_slice(&(ip_len as u16).to_be_bytes());
        let first = fragment(whole, true, 0);
        let later = fragment(udp_v4(&[0x55; 64]), false, 100);

        let reports = inspect_capture(&capture(LinkType::Ethernet, &[first, later])).unwrap();
        let (block, parsed) = expect_metadata(&reports[0]);
        assert_eq!(parsed, &metadata);
        assert_eq!(block.original_payload_len, 200);
        assert_eq!(
            reports[0].notes,
            ["first fragment: the L4 payload continues in later fragments"]
        );
        assert_eq!(
            reports[1].verdict,
            Verdict::Undecodable {
                reason: "IPv4 fragment at offset 800: only the first fragment holds the L4 \
                         header and metadata (fragments are not reassembled here)"
                    .into()
            }
        );
        assert_eq!(reports[1].flow.unwrap().ports, None);
    }

    #[test]
    fn encrypted_payload_tlvs_get_a_hint() {
        let security_id = [0x00, 0x10, 0x00, 0x04, 0, 0, 0, 3];
        let ciphertext = [0x9c, 0x4e, 0xff, 0xf0, 0x11, 0x22];
        let reports = inspect_capture(&capture(
            LinkType::Ethernet,
            &[udp_v4(&block(1, &security_id, &ciphertext))],
        ))
        .unwrap();
        match &reports[0].verdict {
            Verdict::InvalidMetadata {
                block: Some(block),
                error: Error::TlvOverrun { .. },
            } => assert_eq!(block.tlvs[0].readable, "3"),
            other => panic!("expected an overrun, got {other:?}"),
        }
        assert!(reports[0].notes[0].contains("may be encrypted"));
    }

    #[test]
    fn a_snaplen_cut_is_noted() {
        let packet = udp_v4(&with_metadata(&forward_metadata(), b""));
        let record = Record {
            index: 0,
            timestamp: Duration::ZERO,
            orig_len: packet.len() as u32,
            data: &packet[..40],
        };
        let report = inspect_record(LinkType::Ethernet, &record);
        assert_eq!(
            report.verdict,
            Verdict::Undecodable {
                reason: "IPv4 packet (cut by the snaplen): packet truncated: buffer shorter \
                         than its headers say"
                    .into()
            }
        );
        assert!(report.notes[0].starts_with("the capture kept 40 of "));
    }

    #[test]
    fn readable_values() {
        let cases: [(u16, &[u8], &str); 14] = [
            (24, &[6], "delete session (6)"),
            (24, &[99], "reason (99)"),
            (42, &[0, 0, 0x0e, 0x10], "3600 s"),
            (8, &[0, 0, 1, 0], "256"),
            (
                26,
                &[0x80, 0, 0x12, 0x34, 0, 0, 0x56, 0x78, 0x80, 0x03],
                "tx color/time 0x80001234, rx color/time 0x00005678, drop/previous rx count 0x8003",
            ),
            (20, &[10, 1, 2, 3], "10.1.2.3"),
            (
                21,
                &[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                "2001:db8::1",
            ),
            (35, b"pos \"v2\"", "\"pos \\\"v2\\\"\""),
            (7, &[0xc3, 0x28], "c328 (not the expected form)"),
            (11, &[], "set"),
            (11, &[1], "01 (not the expected form)"),
            (2, &[1, 2, 3], "010203 (not the expected form)"),
            (46, &[], "(empty)"),
            (4000, &[0xab], "ab"),
        ];
        for (tlv_type, value, expected) in cases {
            assert_eq!(readable(tlv_type, value), expected, "type {tlv_type}");
        }
        assert_eq!(TcpFlags(0x12).to_string(), "SYN,ACK");
        assert_eq!(TcpFlags(0).to_string(), "none");
    }

    #[test]
    fn file_errors_pass_through() {
        assert_eq!(
            inspect_capture(&[0x0a, 0x0d, 0x0d, 0x0a, 0, 0]).unwrap_err(),
            PcapError::Pcapng
        );
        let mut cut = capture(LinkType::Ethernet, &[udp_v4(b"a"), udp_v4(b"b")]);
        cut.pop();
        assert!(matches!(
            inspect_capture(&cut),
            Err(PcapError::RecordDataTruncated { index: 1, .. })
        ));
    }

    #[test]
    fn random_records_never_panic() {
        let mut rng = XorShift(0x1a5e_c0de_0000_0001);
        let mut udp_v6 = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv6([0x20; 16], [0x21; 16], 64)
            .udp(1, 2)
            .write(&mut udp_v6, &with_metadata(&forward_metadata(), b"v6"))
            .unwrap();
        let seeds = [
            udp_v4(&with_metadata(&forward_metadata(), b"hi")),
            tcp_syn_v4(&with_metadata(&forward_metadata(), b"")),
            udp_v6,
        ];
        for round in 0..4000 {
            let link_type = [
                LinkType::Ethernet,
                LinkType::Raw,
                LinkType::LinuxSll,
                LinkType::LinuxSll2,
            ][round % 4];
            let mut data = if round % 2 == 0 {
                let len = (rng.next_u64() % 160) as usize;
                rng.bytes(len)
            } else {
                // Real packets with a few bytes changed and the tail cut at random.
                let mut data = seeds[round / 2 % seeds.len()].clone();
                for _ in 0..1 + rng.next_u64() % 3 {
                    let at = (rng.next_u64() % data.len() as u64) as usize;
                    data[at] = rng.next_u64() as u8;
                }
                data
            };
            data.truncate((rng.next_u64() % (data.len() as u64 + 1)) as usize);
            let record = Record {
                index: round,
                timestamp: Duration::ZERO,
                orig_len: rng.next_u64() as u32,
                data: &data,
            };
            let report = inspect_record(link_type, &record);
            let _ = (report.verdict.label(), report.flow.map(|f| f.to_string()));
        }
    }
}
