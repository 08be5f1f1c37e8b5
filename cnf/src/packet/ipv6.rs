//! IPv6 fixed headers (RFC 8200 §3). Extension headers are not walked: `next_header` is exposed
//! as-is and `payload()` starts right after the fixed header. Jumbograms (payload length 0 with
//! a Hop-by-Hop jumbo option) are not supported: their payload reads as empty.

use core::net::Ipv6Addr;

use super::{
    Error, Result, clamped, clamped_mut, read_array, read_u16, read_u32, write_u16, write_u32,
};

mod field {
    use crate::packet::Field;

    /// Version (4 bits), traffic class (8), flow label (20).
    pub const VER_TC_FLOW: Field = 0..4;
    pub const PAYLOAD_LEN: Field = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Field = 8..24;
    pub const DST_ADDR: Field = 24..40;

    pub const HEADER_LEN: usize = 40;
}

/// A view over an IPv6 packet. The buffer may extend past the payload length (link padding).
#[derive(Debug, Clone)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Length of the fixed header.
    pub const HEADER_LEN: usize = field::HEADER_LEN;

    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    /// Checks version 6 and `40 + payload_len <= buffer length`.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check()?;
        Ok(packet)
    }

    fn check(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        if data.len() < field::HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 6 {
            return Err(Error::Malformed("IP version is not 6"));
        }
        if data.len() < field::HEADER_LEN + usize::from(self.payload_len()) {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    fn ver_tc_flow(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::VER_TC_FLOW)
    }

    #[inline]
    pub fn version(&self) -> u8 {
        (self.ver_tc_flow() >> 28) as u8
    }

    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (self.ver_tc_flow() >> 20) as u8
    }

    /// Differentiated Services Code Point: the high 6 bits of the traffic class.
    #[inline]
    pub fn dscp(&self) -> u8 {
        self.traffic_class() >> 2
    }

    #[inline]
    pub fn ecn(&self) -> u8 {
        self.traffic_class() & 0x03
    }

    #[inline]
    pub fn flow_label(&self) -> u32 {
        self.ver_tc_flow() & 0x000f_ffff
    }

    /// Bytes after the fixed header, extension headers included.
    #[inline]
    pub fn payload_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::PAYLOAD_LEN)
    }

    /// The first extension header or the upper-layer protocol (see [`super::ip_protocol`]).
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_HEADER]
    }

    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    #[inline]
    pub fn src_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(read_array::<16>(self.buffer.as_ref(), field::SRC_ADDR))
    }

    #[inline]
    pub fn dst_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(read_array::<16>(self.buffer.as_ref(), field::DST_ADDR))
    }

    /// The `payload_len` bytes after the fixed header, without link padding.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let end = field::HEADER_LEN + usize::from(self.payload_len());
        clamped(self.buffer.as_ref(), field::HEADER_LEN, end)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    #[inline]
    fn set_ver_tc_flow(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::VER_TC_FLOW, value);
    }

    /// Sets the version to 6, keeping traffic class and flow label.
    #[inline]
    pub fn set_version(&mut self) {
        let word = (self.ver_tc_flow() & 0x0fff_ffff) | (6 << 28);
        self.set_ver_tc_flow(word);
    }

    #[inline]
    pub fn set_traffic_class(&mut self, value: u8) {
        let word = (self.ver_tc_flow() & 0xf00f_ffff) | (u32::from(value) << 20);
        self.set_ver_tc_flow(word);
    }

    #[inline]
    pub fn set_dscp(&mut self, dscp: u8) {
        self.set_traffic_class((dscp << 2) | self.ecn());
    }

    #[inline]
    pub fn set_ecn(&mut self, ecn: u8) {
        self.set_traffic_class((self.traffic_class() & !0x03) | (ecn & 0x03));
    }

    #[inline]
    pub fn set_flow_label(&mut self, value: u32) {
        let word = (self.ver_tc_flow() & 0xfff0_0000) | (value & 0x000f_ffff);
        self.set_ver_tc_flow(word);
    }

    #[inline]
    pub fn set_payload_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::PAYLOAD_LEN, value);
    }

    #[inline]
    pub fn set_next_header(&mut self, value: u8) {
        self.buffer.as_mut()[field::NEXT_HEADER] = value;
    }

    #[inline]
    pub fn set_hop_limit(&mut self, value: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = value;
    }

    #[inline]
    pub fn set_src_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    #[inline]
    pub fn set_dst_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = field::HEADER_LEN + usize::from(self.payload_len());
        clamped_mut(self.buffer.as_mut(), field::HEADER_LEN, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::fixtures::*;
    use crate::packet::ip_protocol;

    fn udp_ip() -> &'static [u8] {
        &UDP_V6[14..]
    }

    #[test]
    fn parses_the_fixed_header() {
        let ip = Ipv6Packet::new_checked(udp_ip()).unwrap();
        assert_eq!(ip.version(), 6);
        assert_eq!(ip.traffic_class(), 0xb8);
        assert_eq!((ip.dscp(), ip.ecn()), (46, 0));
        assert_eq!(ip.flow_label(), 0x12345);
        assert_eq!(ip.payload_len(), 16);
        assert_eq!(ip.next_header(), ip_protocol::UDP);
        assert_eq!(ip.hop_limit(), 255);
        assert_eq!(ip.src_addr(), "2001:db8:1::10".parse::<Ipv6Addr>().unwrap());
        assert_eq!(ip.dst_addr(), "2001:db8:2::20".parse::<Ipv6Addr>().unwrap());
        assert_eq!(ip.payload(), &udp_ip()[40..]);
    }

    #[test]
    fn every_truncation_is_rejected() {
        for packet in [udp_ip(), &TCP_V6[..], &ICMPV6_ECHO[14..]] {
            for len in 0..packet.len() {
                assert_eq!(
                    Ipv6Packet::new_checked(&packet[..len]).unwrap_err(),
                    Error::Truncated,
                    "len {len}"
                );
            }
        }
    }

    #[test]
    fn rejects_other_versions() {
        let mut bytes = udp_ip().to_vec();
        bytes[0] = 0x46;
        assert_eq!(
            Ipv6Packet::new_checked(&bytes[..]).unwrap_err(),
            Error::Malformed("IP version is not 6")
        );
    }

    #[test]
    fn trailing_padding_is_not_payload() {
        let mut bytes = udp_ip().to_vec();
        bytes.extend_from_slice(&[0; 6]);
        let ip = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(ip.payload().len(), 16);
    }

    #[test]
    fn setters_round_trip() {
        let mut bytes = udp_ip().to_vec();
        let mut ip = Ipv6Packet::new_checked(&mut bytes[..]).unwrap();
        let (src, dst): (Ipv6Addr, Ipv6Addr) =
            ("fd00:1::1".parse().unwrap(), "fd00:2::2".parse().unwrap());
        ip.set_src_addr(src);
        ip.set_dst_addr(dst);
        ip.set_hop_limit(63);
        ip.set_dscp(10);
        ip.set_ecn(3);
        ip.set_flow_label(0xfffff);
        ip.set_next_header(ip_protocol::TCP);
        ip.set_version();
        assert_eq!(
            (ip.src_addr(), ip.dst_addr(), ip.hop_limit()),
            (src, dst, 63)
        );
        assert_eq!((ip.dscp(), ip.ecn(), ip.flow_label()), (10, 3, 0xfffff));
        assert_eq!((ip.version(), ip.next_header()), (6, ip_protocol::TCP));
        ip.set_payload_len(u16::MAX);
        assert!(
            ip.payload().is_empty(),
            "inconsistent lengths read as empty, not a panic"
        );
    }

    #[test]
    fn agrees_with_etherparse() {
        for packet in [udp_ip(), &TCP_V6[..], &ICMPV6_ECHO[14..]] {
            let ours = Ipv6Packet::new_checked(packet).unwrap();
            let theirs = etherparse::Ipv6HeaderSlice::from_slice(packet).unwrap();
            assert_eq!(ours.traffic_class(), theirs.traffic_class());
            assert_eq!(ours.flow_label(), theirs.flow_label().value());
            assert_eq!(ours.payload_len(), theirs.payload_length());
            assert_eq!(ours.next_header(), theirs.next_header().0);
            assert_eq!(ours.hop_limit(), theirs.hop_limit());
            assert_eq!(ours.src_addr(), theirs.source_addr());
            assert_eq!(ours.dst_addr(), theirs.destination_addr());
        }
    }
}
