//! The typed form of an SVR metadata block (smoltcp's `Repr`): [`Metadata::parse`] reads a
//! checked [`MetadataPacket`], [`Metadata::emit`] writes one into a caller's buffer.
//!
//! Where the emitter puts each TLV:
//! - header TLVs (never encrypted): security id (16), then unknown TLVs that arrived in the
//!   header section;
//! - payload TLVs (may be encrypted): every other typed TLV, in ascending type order (2/3, 4/5,
//!   6, 7, 8, 10, 11, 12, 14, 15, 17, 18, 19, 24, 26, 42), then unknown TLVs that arrived in the
//!   payload section, in arrival order.
//!
//! The parser accepts any order, and typed TLVs other than the security id in either section
//! (re-emitting moves them to the payload section). It rejects a security id outside the header,
//! a known TLV twice, and a known TLV of the wrong size. Unknown types are kept, with their
//! section, and skipped by length: the format is meant to grow.
//!
//! A `Metadata` with no field set emits exactly the false-positive marker, and the marker parses
//! as an empty `Metadata`; callers tell them apart with [`super::classify`] first.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use core::ops::Range;

use super::wire::{
    BASE_HEADER_LEN, Error, MAX_HEADER_LEN, MAX_PAYLOAD_LEN, MetadataPacket, Result, Section,
    TLV_HEADER_LEN, Tlv, emit_tlv, tlv_type,
};

/// The addresses of a session context; both ends are of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContextAddrs {
    V4 { src: Ipv4Addr, dst: Ipv4Addr },
    V6 { src: Ipv6Addr, dst: Ipv6Addr },
}

/// A session's 5-tuple as carried in the forward (2/3) and reverse (4/5) context TLVs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionContext {
    pub addrs: ContextAddrs,
    pub src_port: u16,
    pub dst_port: u16,
    /// IP protocol number.
    pub protocol: u8,
}

impl SessionContext {
    /// src (16) + dst (16) + ports (2 + 2) + protocol (1); IPv4 takes 13 of these.
    const V6_LEN: usize = 37;

    /// The value bytes, in a stack buffer sized for IPv6, and how many are used.
    fn encode(&self) -> ([u8; Self::V6_LEN], usize) {
        let mut out = [0u8; Self::V6_LEN];
        let at = match self.addrs {
            ContextAddrs::V4 { src, dst } => {
                out[..4].copy_from_slice(&src.octets());
                out[4..8].copy_from_slice(&dst.octets());
                8
            }
            ContextAddrs::V6 { src, dst } => {
                out[..16].copy_from_slice(&src.octets());
                out[16..32].copy_from_slice(&dst.octets());
                32
            }
        };
        out[at..at + 2].copy_from_slice(&self.src_port.to_be_bytes());
        out[at + 2..at + 4].copy_from_slice(&self.dst_port.to_be_bytes());
        out[at + 4] = self.protocol;
        (out, at + 5)
    }

    /// Reads the value of a context TLV (2 to 5); `tlv_type` says the address family.
    pub(crate) fn decode(tlv_type: u16, value: &[u8]) -> Result<Self> {
        let v6 = matches!(
            tlv_type,
            tlv_type::FORWARD_CONTEXT_V6 | tlv_type::REVERSE_CONTEXT_V6
        );
        let (addr_len, expected) = if v6 { (16, "37") } else { (4, "13") };
        if value.len() != 2 * addr_len + 5 {
            return Err(Error::BadTlvLength {
                tlv_type,
                len: value.len(),
                expected,
            });
        }
        let (src, rest) = value.split_at(addr_len);
        let (dst, rest) = rest.split_at(addr_len);
        let addrs = if v6 {
            let src = Ipv6Addr::from(fixed::<16>(tlv_type, src, expected)?);
            let dst = Ipv6Addr::from(fixed::<16>(tlv_type, dst, expected)?);
            ContextAddrs::V6 { src, dst }
        } else {
            let src = Ipv4Addr::from(fixed::<4>(tlv_type, src, expected)?);
            let dst = Ipv4Addr::from(fixed::<4>(tlv_type, dst, expected)?);
            ContextAddrs::V4 { src, dst }
        };
        let [sp0, sp1, dp0, dp1, protocol] = fixed::<5>(tlv_type, rest, expected)?;
        Ok(SessionContext {
            addrs,
            src_port: u16::from_be_bytes([sp0, sp1]),
            dst_port: u16::from_be_bytes([dp0, dp1]),
            protocol,
        })
    }

    fn forward_type(&self) -> u16 {
        match self.addrs {
            ContextAddrs::V4 { .. } => tlv_type::FORWARD_CONTEXT_V4,
            ContextAddrs::V6 { .. } => tlv_type::FORWARD_CONTEXT_V6,
        }
    }

    fn reverse_type(&self) -> u16 {
        match self.addrs {
            ContextAddrs::V4 { .. } => tlv_type::REVERSE_CONTEXT_V4,
            ContextAddrs::V6 { .. } => tlv_type::REVERSE_CONTEXT_V6,
        }
    }
}

/// "10.0.0.5:50000 -> 10.9.8.7:443 TCP", as `signpostctl svr decode` prints a context.
impl fmt::Display for SessionContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (src, dst): (IpAddr, IpAddr) = match self.addrs {
            ContextAddrs::V4 { src, dst } => (src.into(), dst.into()),
            ContextAddrs::V6 { src, dst } => (src.into(), dst.into()),
        };
        let src = SocketAddr::new(src, self.src_port);
        let dst = SocketAddr::new(dst, self.dst_port);
        match crate::packet::ip_protocol::name(self.protocol) {
            Some(name) => write!(f, "{src} -> {dst} {name}"),
            None => write!(f, "{src} -> {dst} protocol {}", self.protocol),
        }
    }
}

/// The reason code of a control message TLV (24).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlMessage {
    KeepAlive,
    EnableMetadata,
    DisableMetadata,
    DeleteSession,
    /// Health check answer: the peer holds state for the session.
    HealthCheckStateExists,
    /// A code this router does not act on, kept so it round-trips. `Other` never holds one of
    /// the codes above: build values with `ControlMessage::from(u8)`.
    Other(u8),
}

impl From<u8> for ControlMessage {
    fn from(code: u8) -> Self {
        match code {
            1 => ControlMessage::KeepAlive,
            2 => ControlMessage::EnableMetadata,
            3 => ControlMessage::DisableMetadata,
            6 => ControlMessage::DeleteSession,
            8 => ControlMessage::HealthCheckStateExists,
            other => ControlMessage::Other(other),
        }
    }
}

impl From<ControlMessage> for u8 {
    fn from(message: ControlMessage) -> u8 {
        match message {
            ControlMessage::KeepAlive => 1,
            ControlMessage::EnableMetadata => 2,
            ControlMessage::DisableMetadata => 3,
            ControlMessage::DeleteSession => 6,
            ControlMessage::HealthCheckStateExists => 8,
            ControlMessage::Other(code) => code,
        }
    }
}

impl fmt::Display for ControlMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            ControlMessage::KeepAlive => "keep-alive",
            ControlMessage::EnableMetadata => "enable metadata",
            ControlMessage::DisableMetadata => "disable metadata",
            ControlMessage::DeleteSession => "delete session",
            ControlMessage::HealthCheckStateExists => "health check: state exists",
            ControlMessage::Other(_) => "reason",
        };
        write!(f, "{name} ({})", u8::from(*self))
    }
}

/// The path metrics TLV (26). The draft packs a color and a time value into each 32-bit word
/// and a drop flag with the previous receive count into the last 16 bits; the words are kept as
/// sent, for the path monitor to interpret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PathMetrics {
    pub tx_color_and_time: u32,
    pub rx_color_and_time: u32,
    pub drop_and_previous_rx_count: u16,
}

impl PathMetrics {
    /// The value bytes of the TLV.
    pub(crate) const LEN: usize = 10;

    fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..4].copy_from_slice(&self.tx_color_and_time.to_be_bytes());
        out[4..8].copy_from_slice(&self.rx_color_and_time.to_be_bytes());
        out[8..].copy_from_slice(&self.drop_and_previous_rx_count.to_be_bytes());
        out
    }

    pub(crate) fn decode(value: [u8; Self::LEN]) -> Self {
        let [a, b, c, d, e, f, g, h, i, j] = value;
        PathMetrics {
            tx_color_and_time: u32::from_be_bytes([a, b, c, d]),
            rx_color_and_time: u32::from_be_bytes([e, f, g, h]),
            drop_and_previous_rx_count: u16::from_be_bytes([i, j]),
        }
    }
}

impl fmt::Display for PathMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tx color/time {:#010x}, rx color/time {:#010x}, drop/previous rx count {:#06x}",
            self.tx_color_and_time, self.rx_color_and_time, self.drop_and_previous_rx_count
        )
    }
}

/// A TLV of a type this codec does not interpret, kept byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UnknownTlv {
    /// The section it arrived in, and is emitted in.
    pub section: Section,
    pub tlv_type: u16,
    pub value: Vec<u8>,
}

/// The metadata the router reads and writes. `None`/`false` fields are absent from the wire.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Metadata {
    /// Key version (16); always a header TLV.
    pub security_id: Option<u32>,
    /// The original 5-tuple at the ingress router (2 or 3).
    pub forward_context: Option<SessionContext>,
    /// The 5-tuple seen from the server side (4 or 5).
    pub reverse_context: Option<SessionContext>,
    /// Session UUID (6), kept across path changes.
    pub session_uuid: Option<[u8; 16]>,
    /// Tenant name (7).
    pub tenant: Option<String>,
    /// Global interface id (8).
    pub global_interface_id: Option<u32>,
    /// Service name (10).
    pub service: Option<String>,
    /// The session payload is encrypted (11).
    pub payload_encrypted: bool,
    /// A TCP SYN travels as UDP (12).
    pub tcp_syn_as_udp: bool,
    /// Source router name (14).
    pub source_router: Option<String>,
    /// Security policy name (15).
    pub security_policy: Option<String>,
    /// Destination router name (17).
    pub destination_router: Option<String>,
    /// The handshake is complete: stop sending forward metadata (18).
    pub disable_forward_metadata: bool,
    /// Peer pathway id (19).
    pub peer_pathway_id: Option<String>,
    /// Control message reason (24).
    pub control_message: Option<ControlMessage>,
    /// Path metrics (26).
    pub path_metrics: Option<PathMetrics>,
    /// Remaining session time in seconds (42).
    pub remaining_session_time: Option<u32>,
    /// TLVs of other types, header-section ones first after parsing.
    pub unknown: Vec<UnknownTlv>,
}

impl Metadata {
    /// Reads every TLV of a checked block. The payload TLVs must be in clear text (decrypted).
    pub fn parse<T: AsRef<[u8]>>(packet: &MetadataPacket<T>) -> Result<Metadata> {
        let mut metadata = Metadata::default();
        for tlv in packet.header_tlvs() {
            metadata.absorb(tlv?, Section::Header)?;
        }
        for tlv in packet.payload_tlvs() {
            metadata.absorb(tlv?, Section::Payload)?;
        }
        Ok(metadata)
    }

    fn absorb(&mut self, tlv: Tlv<'_>, section: Section) -> Result<()> {
        use tlv_type::*;
        let Tlv {
            tlv_type: t, value, ..
        } = tlv;
        match t {
            SECURITY_ID => {
                if section != Section::Header {
                    return Err(Error::MisplacedTlv {
                        tlv_type: t,
                        section,
                    });
                }
                set_once(
                    &mut self.security_id,
                    t,
                    u32::from_be_bytes(fixed(t, value, "4")?),
                )
            }
            FORWARD_CONTEXT_V4 | FORWARD_CONTEXT_V6 => set_once(
                &mut self.forward_context,
                t,
                SessionContext::decode(t, value)?,
            ),
            REVERSE_CONTEXT_V4 | REVERSE_CONTEXT_V6 => set_once(
                &mut self.reverse_context,
                t,
                SessionContext::decode(t, value)?,
            ),
            SESSION_UUID => set_once(&mut self.session_uuid, t, fixed(t, value, "16")?),
            TENANT_NAME => set_once(&mut self.tenant, t, text(t, value)?),
            GLOBAL_INTERFACE_ID => set_once(
                &mut self.global_interface_id,
                t,
                u32::from_be_bytes(fixed(t, value, "4")?),
            ),
            SERVICE_NAME => set_once(&mut self.service, t, text(t, value)?),
            PAYLOAD_ENCRYPTED => set_flag(&mut self.payload_encrypted, t, value),
            TCP_SYN_AS_UDP => set_flag(&mut self.tcp_syn_as_udp, t, value),
            SOURCE_ROUTER_NAME => set_once(&mut self.source_router, t, text(t, value)?),
            SECURITY_POLICY_NAME => set_once(&mut self.security_policy, t, text(t, value)?),
            DESTINATION_ROUTER_NAME => set_once(&mut self.destination_router, t, text(t, value)?),
            DISABLE_FORWARD_METADATA => set_flag(&mut self.disable_forward_metadata, t, value),
            PEER_PATHWAY_ID => set_once(&mut self.peer_pathway_id, t, text(t, value)?),
            CONTROL_MESSAGE => {
                let [code] = fixed(t, value, "1")?;
                set_once(&mut self.control_message, t, ControlMessage::from(code))
            }
            PATH_METRICS => set_once(
                &mut self.path_metrics,
                t,
                PathMetrics::decode(fixed(t, value, "10")?),
            ),
            REMAINING_SESSION_TIME => {
                let seconds = u32::from_be_bytes(fixed(t, value, "4")?);
                set_once(&mut self.remaining_session_time, t, seconds)
            }
            _ => {
                self.unknown.push(UnknownTlv {
                    section,
                    tlv_type: t,
                    value: value.to_vec(),
                });
                Ok(())
            }
        }
    }

    /// Calls `f` with every TLV of `section`, in emission order. The one list behind both
    /// [`Metadata::buffer_len`] and [`Metadata::emit`], so they cannot disagree.
    fn visit(&self, section: Section, f: &mut dyn FnMut(u16, &[u8]) -> Result<()>) -> Result<()> {
        use tlv_type::*;
        if section == Section::Header {
            if let Some(id) = self.security_id {
                f(SECURITY_ID, &id.to_be_bytes())?;
            }
        } else {
            if let Some(context) = &self.forward_context {
                let (value, len) = context.encode();
                f(context.forward_type(), &value[..len])?;
            }
            if let Some(context) = &self.reverse_context {
                let (value, len) = context.encode();
                f(context.reverse_type(), &value[..len])?;
            }
            if let Some(uuid) = &self.session_uuid {
                f(SESSION_UUID, uuid)?;
            }
            if let Some(tenant) = &self.tenant {
                f(TENANT_NAME, tenant.as_bytes())?;
            }
            if let Some(id) = self.global_interface_id {
                f(GLOBAL_INTERFACE_ID, &id.to_be_bytes())?;
            }
            if let Some(service) = &self.service {
                f(SERVICE_NAME, service.as_bytes())?;
            }
            if self.payload_encrypted {
                f(PAYLOAD_ENCRYPTED, &[])?;
            }
            if self.tcp_syn_as_udp {
                f(TCP_SYN_AS_UDP, &[])?;
            }
            if let Some(router) = &self.source_router {
                f(SOURCE_ROUTER_NAME, router.as_bytes())?;
            }
            if let Some(policy) = &self.security_policy {
                f(SECURITY_POLICY_NAME, policy.as_bytes())?;
            }
            if let Some(router) = &self.destination_router {
                f(DESTINATION_ROUTER_NAME, router.as_bytes())?;
            }
            if self.disable_forward_metadata {
                f(DISABLE_FORWARD_METADATA, &[])?;
            }
            if let Some(pathway) = &self.peer_pathway_id {
                f(PEER_PATHWAY_ID, pathway.as_bytes())?;
            }
            if let Some(message) = self.control_message {
                f(CONTROL_MESSAGE, &[u8::from(message)])?;
            }
            if let Some(metrics) = &self.path_metrics {
                f(PATH_METRICS, &metrics.encode())?;
            }
            if let Some(seconds) = self.remaining_session_time {
                f(REMAINING_SESSION_TIME, &seconds.to_be_bytes())?;
            }
        }
        for tlv in self.unknown.iter().filter(|tlv| tlv.section == section) {
            f(tlv.tlv_type, &tlv.value)?;
        }
        Ok(())
    }

    fn section_len(&self, section: Section) -> usize {
        let mut len = 0;
        // This closure never fails, so neither does the visit.
        let _ = self.visit(section, &mut |_, value| {
            len += TLV_HEADER_LEN + value.len();
            Ok(())
        });
        len
    }

    /// The header length field: base header plus header TLVs.
    pub fn header_len(&self) -> usize {
        BASE_HEADER_LEN + self.section_len(Section::Header)
    }

    /// The payload length field: bytes of payload TLVs.
    pub fn payload_len(&self) -> usize {
        self.section_len(Section::Payload)
    }

    /// Bytes [`Metadata::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload_len()
    }

    /// Where [`Metadata::emit`] puts the payload TLVs: the range to encrypt in place.
    pub fn payload_tlvs_range(&self) -> Range<usize> {
        let header_len = self.header_len();
        header_len..header_len + self.payload_len()
    }

    /// Writes the block at the start of `buf` and returns its length; the caller places the
    /// original L4 payload after it.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let header_len = self.header_len();
        if header_len > MAX_HEADER_LEN {
            let (section, len, max) = (Section::Header, header_len, MAX_HEADER_LEN);
            return Err(Error::SectionTooLong { section, len, max });
        }
        let payload_len = self.payload_len();
        if payload_len > MAX_PAYLOAD_LEN {
            let (section, len, max) = (Section::Payload, payload_len, MAX_PAYLOAD_LEN);
            return Err(Error::SectionTooLong { section, len, max });
        }
        let needed = header_len + payload_len;
        let available = buf.len();
        let out = buf
            .get_mut(..needed)
            .ok_or(Error::BufferTooSmall { needed, available })?;

        MetadataPacket::new_unchecked(&mut *out).set_base_header(header_len, payload_len);
        let mut at = BASE_HEADER_LEN;
        for section in [Section::Header, Section::Payload] {
            self.visit(section, &mut |tlv_type, value| {
                at += emit_tlv(&mut out[at..], tlv_type, value)?;
                Ok(())
            })?;
        }
        debug_assert_eq!(at, needed);
        Ok(needed)
    }
}

fn set_once<V>(slot: &mut Option<V>, tlv_type: u16, value: V) -> Result<()> {
    if slot.is_some() {
        return Err(Error::DuplicateTlv { tlv_type });
    }
    *slot = Some(value);
    Ok(())
}

fn set_flag(slot: &mut bool, tlv_type: u16, value: &[u8]) -> Result<()> {
    if !value.is_empty() {
        return Err(Error::BadTlvLength {
            tlv_type,
            len: value.len(),
            expected: "0 (a flag)",
        });
    }
    if *slot {
        return Err(Error::DuplicateTlv { tlv_type });
    }
    *slot = true;
    Ok(())
}

fn fixed<const N: usize>(tlv_type: u16, value: &[u8], expected: &'static str) -> Result<[u8; N]> {
    value.try_into().map_err(|_| Error::BadTlvLength {
        tlv_type,
        len: value.len(),
        expected,
    })
}

fn text(tlv_type: u16, value: &[u8]) -> Result<String> {
    core::str::from_utf8(value)
        .map(str::to_owned)
        .map_err(|_| Error::BadText { tlv_type })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::XorShift;
    use crate::svr::wire::{COOKIE, Classified, FALSE_POSITIVE_MARKER, classify, metadata_len};
    use proptest::prelude::*;

    /// A first packet's metadata, written out by hand from SVR-NOTES.md, followed by the
    /// original payload. Every length below was counted by hand.
    const GOLDEN: [u8; 104] = [
        // Base header.
        0x4c, 0x48, 0xdb, 0xc6, 0xdd, 0xf6, 0x67, 0x0c, // cookie 0x4C48DBC6DDF6670C
        0x10, 0x14, // version 1 (high nibble) | header length 0x014 = 20 = 12 + 8
        0x00, 0x51, // payload length 0x51 = 81 = 17 + 20 + 10 + 7 + 4 + 14 + 9
        // Header TLVs (8 bytes).
        0x00, 0x10, 0x00, 0x04, 0x00, 0x00, 0x00, 0x07, // 16 security id, len 4: key version 7
        // Payload TLVs (81 bytes), ascending type.
        0x00, 0x02, 0x00, 0x0d, // 2 forward context IPv4, len 13
        0x0a, 0x00, 0x00, 0x05, //   src 10.0.0.5
        0x0a, 0x09, 0x08, 0x07, //   dst 10.9.8.7
        0xc3, 0x50, 0x01, 0xbb, //   src port 50000, dst port 443
        0x06, //                     protocol TCP
        0x00, 0x06, 0x00, 0x10, // 6 session UUID, len 16
        0x6f, 0x9a, 0x1c, 0x02, 0x3b, 0x44, 0x4e, 0x1f, 0x9d, 0x2e, 0x55, 0x77, 0x01, 0x02, 0x03,
        0x04, //
        0x00, 0x07, 0x00, 0x06, b'r', b'e', b't', b'a', b'i', b'l', // 7 tenant "retail"
        0x00, 0x0a, 0x00, 0x03, b'p', b'o', b's', // 10 service "pos"
        0x00, 0x0b, 0x00, 0x00, // 11 payload encrypted (flag, empty)
        0x00, 0x0e, 0x00, 0x0a, b's', b't', b'o', b'r', b'e', b'-', b'0', b'0', b'4',
        b'2', // 14 source router "store-0042"
        0x00, 0x13, 0x00, 0x05, b'l', b't', b'e', b'-', b'1', // 19 peer pathway "lte-1"
        // Original L4 payload (the start of a TLS ClientHello).
        0x16, 0x03, 0x01,
    ];

    fn golden_metadata() -> Metadata {
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
            payload_encrypted: true,
            source_router: Some("store-0042".into()),
            peer_pathway_id: Some("lte-1".into()),
            ..Metadata::default()
        }
    }

    fn decode(bytes: &[u8]) -> Result<Metadata> {
        Metadata::parse(&MetadataPacket::new_checked(bytes)?)
    }

    fn encode(metadata: &Metadata) -> Vec<u8> {
        let mut buf = vec![0u8; metadata.buffer_len()];
        let len = metadata.emit(&mut buf).unwrap();
        assert_eq!(len, buf.len());
        buf
    }

    #[test]
    fn golden_decodes_and_reencodes_identically() {
        let packet = match classify(&GOLDEN).unwrap() {
            Classified::Metadata(packet) => packet,
            other => panic!("expected metadata, got {other:?}"),
        };
        assert_eq!(packet.total_len(), 101);
        assert_eq!(packet.original_payload(), &[0x16, 0x03, 0x01]);
        let metadata = Metadata::parse(&packet).unwrap();
        assert_eq!(metadata, golden_metadata());

        assert_eq!(metadata.buffer_len(), 101);
        assert_eq!(metadata.payload_tlvs_range(), 20..101);
        assert_eq!(encode(&metadata), &GOLDEN[..101]);
        assert_eq!(metadata_len(&GOLDEN), Ok(101));
    }

    /// Each typed field alone: emitted as its TLV type, parsed back equal.
    #[test]
    fn every_tlv_round_trips() {
        let v6 = ContextAddrs::V6 {
            src: Ipv6Addr::LOCALHOST,
            dst: "2001:db8::9".parse().unwrap(),
        };
        let context_v6 = SessionContext {
            addrs: v6,
            src_port: 1,
            dst_port: 2,
            protocol: 17,
        };
        let context_v4 = golden_metadata().forward_context;
        let base = Metadata::default;
        let cases: Vec<(u16, Metadata)> = vec![
            (
                16,
                Metadata {
                    security_id: Some(0xdead_beef),
                    ..base()
                },
            ),
            (
                2,
                Metadata {
                    forward_context: context_v4,
                    ..base()
                },
            ),
            (
                3,
                Metadata {
                    forward_context: Some(context_v6),
                    ..base()
                },
            ),
            (
                4,
                Metadata {
                    reverse_context: context_v4,
                    ..base()
                },
            ),
            (
                5,
                Metadata {
                    reverse_context: Some(context_v6),
                    ..base()
                },
            ),
            (
                6,
                Metadata {
                    session_uuid: Some([0xab; 16]),
                    ..base()
                },
            ),
            (
                7,
                Metadata {
                    tenant: Some("guest-wifi".into()),
                    ..base()
                },
            ),
            (
                8,
                Metadata {
                    global_interface_id: Some(42),
                    ..base()
                },
            ),
            (
                10,
                Metadata {
                    service: Some("payments".into()),
                    ..base()
                },
            ),
            (
                11,
                Metadata {
                    payload_encrypted: true,
                    ..base()
                },
            ),
            (
                12,
                Metadata {
                    tcp_syn_as_udp: true,
                    ..base()
                },
            ),
            (
                14,
                Metadata {
                    source_router: Some("store-1".into()),
                    ..base()
                },
            ),
            (
                15,
                Metadata {
                    security_policy: Some("aes-hmac".into()),
                    ..base()
                },
            ),
            (
                17,
                Metadata {
                    destination_router: Some("hub-eu".into()),
                    ..base()
                },
            ),
            (
                18,
                Metadata {
                    disable_forward_metadata: true,
                    ..base()
                },
            ),
            (
                19,
                Metadata {
                    peer_pathway_id: Some("mpls-0".into()),
                    ..base()
                },
            ),
            (
                24,
                Metadata {
                    control_message: Some(ControlMessage::DeleteSession),
                    ..base()
                },
            ),
            (
                24,
                Metadata {
                    control_message: Some(ControlMessage::Other(99)),
                    ..base()
                },
            ),
            (
                26,
                Metadata {
                    path_metrics: Some(PathMetrics {
                        tx_color_and_time: 0x8000_1234,
                        rx_color_and_time: 0x0000_5678,
                        drop_and_previous_rx_count: 0x8003,
                    }),
                    ..base()
                },
            ),
            (
                42,
                Metadata {
                    remaining_session_time: Some(3600),
                    ..base()
                },
            ),
        ];
        for (tlv_type, metadata) in cases {
            let bytes = encode(&metadata);
            let packet = MetadataPacket::new_checked(&bytes[..]).unwrap();
            let section = if tlv_type == 16 {
                packet.header_tlvs()
            } else {
                packet.payload_tlvs()
            };
            let tlvs: Vec<_> = section.collect::<Result<_>>().unwrap();
            assert_eq!(tlvs.len(), 1);
            assert_eq!(tlvs[0].tlv_type, tlv_type);
            assert_eq!(decode(&bytes).unwrap(), metadata, "type {tlv_type}");
        }
    }

    #[test]
    fn control_message_codes() {
        for (code, message) in [
            (1, ControlMessage::KeepAlive),
            (2, ControlMessage::EnableMetadata),
            (3, ControlMessage::DisableMetadata),
            (6, ControlMessage::DeleteSession),
            (8, ControlMessage::HealthCheckStateExists),
            (4, ControlMessage::Other(4)),
        ] {
            assert_eq!(ControlMessage::from(code), message);
            assert_eq!(u8::from(message), code);
        }
    }

    #[test]
    fn unknown_tlvs_are_skipped_and_kept() {
        // Header: security id, then unknown type 0x7fff; payload: tenant, unknown type 1
        // (fragment, not interpreted here) with 10 bytes, service.
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&COOKIE);
        bytes.extend_from_slice(&[0x10, 12 + 8 + 7, 0x00, 10 + 14 + 7]);
        bytes.extend_from_slice(&[0x00, 0x10, 0x00, 0x04, 0, 0, 0, 1]);
        bytes.extend_from_slice(&[0x7f, 0xff, 0x00, 0x03, 0xaa, 0xbb, 0xcc]);
        bytes.extend_from_slice(&[0x00, 0x07, 0x00, 0x06]);
        bytes.extend_from_slice(b"retail");
        bytes.extend_from_slice(&[0x00, 0x01, 0x00, 0x0a, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        bytes.extend_from_slice(&[0x00, 0x0a, 0x00, 0x03]);
        bytes.extend_from_slice(b"pos");

        let metadata = decode(&bytes).unwrap();
        assert_eq!(metadata.tenant.as_deref(), Some("retail"));
        assert_eq!(
            metadata.service.as_deref(),
            Some("pos"),
            "parsing continued past type 1"
        );
        assert_eq!(
            metadata.unknown,
            [
                UnknownTlv {
                    section: Section::Header,
                    tlv_type: 0x7fff,
                    value: vec![0xaa, 0xbb, 0xcc]
                },
                UnknownTlv {
                    section: Section::Payload,
                    tlv_type: 1,
                    value: (1..=10).collect()
                },
            ]
        );
        // Re-emitting keeps each unknown TLV in its section, after the typed ones.
        let reencoded = encode(&metadata);
        assert_eq!(reencoded.len(), bytes.len());
        assert_eq!(&reencoded[..27], &bytes[..27], "header section identical");
        assert_eq!(decode(&reencoded).unwrap(), metadata);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let block = &GOLDEN[..101];
        for len in 0..block.len() {
            assert!(decode(&block[..len]).is_err(), "len {len}");
        }
        // Shorten the payload section itself: a cut inside a TLV is an overrun error, a cut on
        // a TLV boundary is a valid, shorter block.
        let boundaries = [0, 17, 37, 47, 54, 58, 72, 81];
        for payload_len in 0..=81u8 {
            let mut bytes = GOLDEN;
            bytes[11] = payload_len;
            let result = decode(&bytes);
            assert_eq!(
                result.is_ok(),
                boundaries.contains(&payload_len),
                "payload length {payload_len}"
            );
        }
    }

    #[test]
    fn false_positive_marker_is_empty_metadata() {
        assert_eq!(decode(&FALSE_POSITIVE_MARKER).unwrap(), Metadata::default());
        assert_eq!(encode(&Metadata::default()), FALSE_POSITIVE_MARKER);
    }

    #[test]
    fn rejects_duplicates_misplaced_and_malformed_values() {
        let block = |header: &[u8], payload: &[u8]| {
            let mut bytes = COOKIE.to_vec();
            let header_len = (12 + header.len()) as u16 | 0x1000;
            bytes.extend_from_slice(&header_len.to_be_bytes());
            bytes.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            bytes.extend_from_slice(header);
            bytes.extend_from_slice(payload);
            bytes
        };
        let security_id = [0x00, 0x10, 0x00, 0x04, 0, 0, 0, 1];
        assert_eq!(
            decode(&block(&[], &security_id)),
            Err(Error::MisplacedTlv {
                tlv_type: 16,
                section: Section::Payload
            })
        );
        let two_ids = [security_id, security_id].concat();
        assert_eq!(
            decode(&block(&two_ids, &[])),
            Err(Error::DuplicateTlv { tlv_type: 16 })
        );
        let flag = [0x00, 0x0b, 0x00, 0x00];
        assert_eq!(
            decode(&block(&[], &[flag, flag].concat())),
            Err(Error::DuplicateTlv { tlv_type: 11 })
        );
        assert_eq!(
            decode(&block(&[], &[0x00, 0x0b, 0x00, 0x01, 0xff])),
            Err(Error::BadTlvLength {
                tlv_type: 11,
                len: 1,
                expected: "0 (a flag)"
            })
        );
        let short_context = [
            0x00, 0x02, 0x00, 0x0c, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
        ];
        let error = decode(&block(&[], &short_context)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "TLV forward context IPv4 (2) has 12 value bytes, expected 13"
        );
        let mut v4_then_v6 = golden_metadata();
        v4_then_v6.security_id = None;
        let mut payload = encode(&v4_then_v6)[12..29].to_vec(); // the IPv4 forward context
        payload.extend_from_slice(&[0x00, 0x03, 0x00, 37]);
        payload.extend_from_slice(&[0; 37]);
        assert_eq!(
            decode(&block(&[], &payload)),
            Err(Error::DuplicateTlv { tlv_type: 3 })
        );
        assert_eq!(
            decode(&block(&[], &[0x00, 0x07, 0x00, 0x02, 0xc3, 0x28])),
            Err(Error::BadText { tlv_type: 7 })
        );
        // Typed TLVs other than the security id are accepted in the header section too.
        let tenant = [0x00, 0x07, 0x00, 0x01, b'x'];
        assert_eq!(
            decode(&block(&tenant, &[])).unwrap().tenant.as_deref(),
            Some("x")
        );
    }

    #[test]
    fn emit_checks_the_buffer_and_the_length_fields() {
        let metadata = golden_metadata();
        for len in 0..metadata.buffer_len() {
            let mut buf = vec![0u8; len];
            assert_eq!(
                metadata.emit(&mut buf),
                Err(Error::BufferTooSmall {
                    needed: 101,
                    available: len
                })
            );
        }
        let too_big_header = Metadata {
            unknown: vec![UnknownTlv {
                section: Section::Header,
                tlv_type: 900,
                value: vec![0; 4080],
            }],
            ..Metadata::default()
        };
        assert_eq!(
            too_big_header.emit(&mut vec![0u8; 5000]),
            Err(Error::SectionTooLong {
                section: Section::Header,
                len: 4096,
                max: 4095
            })
        );
        let too_big_payload = Metadata {
            tenant: Some("x".repeat(65_532)),
            ..Metadata::default()
        };
        assert_eq!(
            too_big_payload.emit(&mut vec![0u8; 70_000]),
            Err(Error::SectionTooLong {
                section: Section::Payload,
                len: 65_536,
                max: 65_535
            })
        );
    }

    #[test]
    fn mutated_encodings_never_panic() {
        let mut rng = XorShift(0x474f_4c44_454e_0001);
        for _ in 0..4000 {
            let mut bytes = GOLDEN.to_vec();
            for _ in 0..1 + rng.next_u64() % 4 {
                let at = (rng.next_u64() % bytes.len() as u64) as usize;
                bytes[at] = rng.next_u64() as u8;
            }
            bytes.truncate((rng.next_u64() % (bytes.len() as u64 + 1)) as usize);
            if let Ok(Classified::Metadata(packet)) = classify(&bytes)
                && let Ok(metadata) = Metadata::parse(&packet)
            {
                // Whatever parsed must emit and parse back the same.
                assert_eq!(decode(&encode(&metadata)).unwrap(), metadata);
            }
        }
    }

    fn text() -> impl Strategy<Value = String> {
        "[a-z0-9-]{0,24}"
    }

    fn context() -> impl Strategy<Value = SessionContext> {
        let v4 = (any::<u32>(), any::<u32>()).prop_map(|(s, d)| ContextAddrs::V4 {
            src: s.into(),
            dst: d.into(),
        });
        let v6 = (any::<u128>(), any::<u128>()).prop_map(|(s, d)| ContextAddrs::V6 {
            src: s.into(),
            dst: d.into(),
        });
        (prop_oneof![v4, v6], any::<u16>(), any::<u16>(), any::<u8>()).prop_map(
            |(addrs, src_port, dst_port, protocol)| SessionContext {
                addrs,
                src_port,
                dst_port,
                protocol,
            },
        )
    }

    fn unknown() -> impl Strategy<Value = Vec<UnknownTlv>> {
        // Types the codec does not interpret: the untyped ones from the notes and beyond.
        let untyped = proptest::sample::select(vec![1u16, 9, 20, 21, 25, 35, 46, 50, 51]);
        let tlv_type = prop_oneof![untyped, 100u16..];
        let section = prop_oneof![Just(Section::Header), Just(Section::Payload)];
        let tlv = (
            section,
            tlv_type,
            proptest::collection::vec(any::<u8>(), 0..24),
        )
            .prop_map(|(section, tlv_type, value)| UnknownTlv {
                section,
                tlv_type,
                value,
            });
        proptest::collection::vec(tlv, 0..4).prop_map(|mut tlvs| {
            // Parsing lists header-section TLVs first; keep arrival order within a section.
            tlvs.sort_by_key(|tlv| tlv.section);
            tlvs
        })
    }

    prop_compose! {
        fn metadata()(
            security_id in proptest::option::of(any::<u32>()),
            forward_context in proptest::option::of(context()),
            reverse_context in proptest::option::of(context()),
            session_uuid in proptest::option::of(any::<[u8; 16]>()),
            names in (
                proptest::option::of(text()),
                proptest::option::of(text()),
                proptest::option::of(text()),
                proptest::option::of(text()),
                proptest::option::of(text()),
                proptest::option::of(text()),
            ),
            global_interface_id in proptest::option::of(any::<u32>()),
            flags in any::<[bool; 3]>(),
            control_code in proptest::option::of(any::<u8>()),
            path_metrics in proptest::option::of(any::<(u32, u32, u16)>()),
            remaining_session_time in proptest::option::of(any::<u32>()),
            unknown in unknown(),
        ) -> Metadata {
            let (tenant, service, source_router, security_policy, destination_router, peer_pathway_id) = names;
            Metadata {
                security_id,
                forward_context,
                reverse_context,
                session_uuid,
                tenant,
                global_interface_id,
                service,
                payload_encrypted: flags[0],
                tcp_syn_as_udp: flags[1],
                source_router,
                security_policy,
                destination_router,
                disable_forward_metadata: flags[2],
                peer_pathway_id,
                control_message: control_code.map(ControlMessage::from),
                path_metrics: path_metrics.map(|(tx, rx, drop)| PathMetrics {
                    tx_color_and_time: tx,
                    rx_color_and_time: rx,
                    drop_and_previous_rx_count: drop,
                }),
                remaining_session_time,
                unknown,
            }
        }
    }

    proptest! {
        #![proptest_config(crate::packet::proptest_config())]

        #[test]
        fn round_trip(metadata in metadata(), trailer in proptest::collection::vec(any::<u8>(), 0..8)) {
            let mut bytes = encode(&metadata);
            let len = bytes.len();
            bytes.extend_from_slice(&trailer);
            let packet = MetadataPacket::new_checked(&bytes[..]).unwrap();
            prop_assert_eq!(packet.total_len(), len);
            prop_assert_eq!(packet.original_payload(), &trailer[..]);
            prop_assert_eq!(packet.payload_tlvs_range(), metadata.payload_tlvs_range());
            prop_assert_eq!(Metadata::parse(&packet).unwrap(), metadata);
        }

        #[test]
        fn every_truncation_of_a_random_encoding_fails(metadata in metadata()) {
            let bytes = encode(&metadata);
            for len in 0..bytes.len() {
                prop_assert!(decode(&bytes[..len]).is_err());
            }
        }
    }
}
