//! UDP datagrams (RFC 768), with the checksum over the IPv4 or IPv6 pseudo-header.
//!
//! Checksum rules that differ from TCP: over IPv4 a zero checksum means "none" and verifies;
//! a computed zero is sent as `0xffff`; over IPv6 the checksum is mandatory (RFC 8200 §8.1), so
//! zero fails verification. [`UdpDatagram::adjust_checksum`] applies the same rules to NAT's
//! incremental updates.

use core::net::{Ipv4Addr, Ipv6Addr};

use super::checksum;
use super::ip_protocol;
use super::{Error, Result, clamped, clamped_mut, read_u16, write_u16};

mod field {
    use crate::packet::Field;

    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;

    pub const HEADER_LEN: usize = 8;
}

/// A view over a UDP datagram. The buffer may be longer than the UDP length field says; the
/// datagram (and its checksum) stops at that length.
#[derive(Debug, Clone)]
pub struct UdpDatagram<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpDatagram<T> {
    /// Length of the UDP header.
    pub const HEADER_LEN: usize = field::HEADER_LEN;

    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpDatagram { buffer }
    }

    /// Checks `8 <= length <= buffer length`.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let datagram = Self::new_unchecked(buffer);
        datagram.check()?;
        Ok(datagram)
    }

    fn check(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        if data.len() < field::HEADER_LEN {
            return Err(Error::Truncated);
        }
        let len = usize::from(self.len());
        if len < field::HEADER_LEN {
            // Zero is the IPv6 jumbogram escape (RFC 2675), which the router does not carry.
            return Err(Error::Malformed("UDP length below its 8-byte header"));
        }
        if data.len() < len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// The length field: header plus payload, in bytes.
    #[inline]
    #[allow(clippy::len_without_is_empty)] // a datagram is never empty: the header is 8 bytes
    pub fn len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The datagram up to its length field.
    #[inline]
    fn datagram(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), 0, usize::from(self.len()))
    }

    #[inline]
    pub fn payload(&self) -> &[u8] {
        clamped(
            self.buffer.as_ref(),
            field::HEADER_LEN,
            usize::from(self.len()),
        )
    }

    /// True when the checksum is absent (zero) or correct, for carriage in IPv4.
    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let data = self.datagram();
        let pseudo = checksum::pseudo_header_v4(src, dst, ip_protocol::UDP, data.len() as u32);
        checksum::combine(&[pseudo, checksum::data(data)]) == 0xffff
    }

    /// True when the checksum is present and correct, for carriage in IPv6.
    pub fn verify_checksum_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        if self.checksum() == 0 {
            return false;
        }
        let data = self.datagram();
        let pseudo = checksum::pseudo_header_v6(src, dst, ip_protocol::UDP, data.len() as u32);
        checksum::combine(&[pseudo, checksum::data(data)]) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpDatagram<T> {
    #[inline]
    pub fn set_src_port(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::SRC_PORT, value);
    }

    #[inline]
    pub fn set_dst_port(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::DST_PORT, value);
    }

    #[inline]
    pub fn set_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH, value);
    }

    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Applies an incremental checksum update (e.g. `|c| checksum::update_u16(c, old, new)`)
    /// with UDP's rules: a datagram without checksum (zero, IPv4 only) stays without one, and an
    /// updated checksum that comes out as zero is written as `0xffff`.
    #[inline]
    pub fn adjust_checksum(&mut self, update: impl FnOnce(u16) -> u16) {
        let current = self.checksum();
        if current == 0 {
            return;
        }
        let value = match update(current) {
            0 => 0xffff,
            value => value,
        };
        self.set_checksum(value);
    }

    fn fill_with_pseudo(&mut self, pseudo: impl FnOnce(u32) -> u16) {
        self.set_checksum(0);
        let data = self.datagram();
        let sum = checksum::combine(&[pseudo(data.len() as u32), checksum::data(data)]);
        let value = match checksum::finish(sum) {
            0 => 0xffff,
            value => value,
        };
        self.set_checksum(value);
    }

    /// Computes and writes the checksum for carriage in IPv4.
    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.fill_with_pseudo(|len| checksum::pseudo_header_v4(src, dst, ip_protocol::UDP, len));
    }

    /// Computes and writes the checksum for carriage in IPv6.
    pub fn fill_checksum_v6(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.fill_with_pseudo(|len| checksum::pseudo_header_v6(src, dst, ip_protocol::UDP, len));
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        clamped_mut(self.buffer.as_mut(), field::HEADER_LEN, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::fixtures::*;
    use crate::packet::{Ipv4Packet, Ipv6Packet};
    use proptest::prelude::*;

    fn dns() -> (Ipv4Addr, Ipv4Addr, &'static [u8]) {
        let ip = Ipv4Packet::new_checked(&DNS_QUERY_V4[14..]).unwrap();
        (ip.src_addr(), ip.dst_addr(), &DNS_QUERY_V4[14 + 20..])
    }

    fn v6() -> (Ipv6Addr, Ipv6Addr, &'static [u8]) {
        let ip = Ipv6Packet::new_checked(&UDP_V6[14..]).unwrap();
        (ip.src_addr(), ip.dst_addr(), &UDP_V6[14 + 40..])
    }

    #[test]
    fn parses_a_dns_query() {
        let (src, dst, bytes) = dns();
        let udp = UdpDatagram::new_checked(bytes).unwrap();
        assert_eq!((udp.src_port(), udp.dst_port(), udp.len()), (53001, 53, 37));
        assert_eq!(udp.checksum(), 0xe367);
        assert_eq!(&udp.payload()[..2], &[0xab, 0xcd], "DNS id");
        assert!(udp.verify_checksum_v4(src, dst));
        assert!(!udp.verify_checksum_v4(dst, dst));
    }

    #[test]
    fn parses_over_ipv6() {
        let (src, dst, bytes) = v6();
        let udp = UdpDatagram::new_checked(bytes).unwrap();
        assert_eq!((udp.src_port(), udp.dst_port()), (5353, 5353));
        assert_eq!(udp.payload(), b"signpost");
        assert!(udp.verify_checksum_v6(&src, &dst));
        assert!(!udp.verify_checksum_v6(&dst, &Ipv6Addr::LOCALHOST));
    }

    #[test]
    fn every_truncation_is_rejected() {
        for bytes in [dns().2, v6().2] {
            for len in 0..bytes.len() {
                assert_eq!(
                    UdpDatagram::new_checked(&bytes[..len]).unwrap_err(),
                    Error::Truncated
                );
            }
        }
    }

    #[test]
    fn rejects_a_length_below_the_header() {
        let mut bytes = dns().2.to_vec();
        bytes[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert!(matches!(
            UdpDatagram::new_checked(&bytes[..]),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn zero_checksum_rules() {
        let (src, dst, bytes) = dns();
        let mut bytes = bytes.to_vec();
        let mut udp = UdpDatagram::new_checked(&mut bytes[..]).unwrap();
        udp.set_checksum(0);
        assert!(
            udp.verify_checksum_v4(src, dst),
            "absent checksum is fine over IPv4"
        );
        udp.adjust_checksum(|c| checksum::update_u16(c, 53001, 1));
        assert_eq!(udp.checksum(), 0, "absent checksum stays absent under NAT");
        let (s6, d6) = (Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST);
        assert!(!udp.verify_checksum_v6(&s6, &d6), "mandatory over IPv6");
    }

    #[test]
    fn computed_zero_is_sent_as_ffff() {
        // Pick a payload word that makes the one's complement sum 0xffff, so the checksum
        // would be 0: it must go out as 0xffff and still verify.
        let (src, dst) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let mut bytes = [0x12, 0x34, 0x56, 0x78, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x00];
        let pseudo = checksum::pseudo_header_v4(src, dst, ip_protocol::UDP, 10);
        let partial = checksum::combine(&[pseudo, checksum::data(&bytes)]);
        bytes[8..10].copy_from_slice(&(!partial).to_be_bytes());
        let mut udp = UdpDatagram::new_checked(&mut bytes[..]).unwrap();
        udp.fill_checksum_v4(src, dst);
        assert_eq!(udp.checksum(), 0xffff);
        assert!(udp.verify_checksum_v4(src, dst));
    }

    #[test]
    fn setters_then_fill_checksum() {
        let (src, dst, bytes) = v6();
        let mut bytes = bytes.to_vec();
        bytes.extend_from_slice(&[0xee; 3]); // trailing bytes beyond the UDP length
        let mut udp = UdpDatagram::new_checked(&mut bytes[..]).unwrap();
        udp.set_src_port(1024);
        udp.set_dst_port(4789);
        udp.payload_mut()[0] = b'S';
        udp.fill_checksum_v6(&src, &dst);
        assert!(udp.verify_checksum_v6(&src, &dst));
        assert_eq!(udp.payload(), b"Signpost");
        let ours = udp.checksum();
        let theirs = etherparse::UdpHeaderSlice::from_slice(&bytes)
            .unwrap()
            .to_header();
        let expected = theirs.calc_checksum_ipv6_raw(src.octets(), dst.octets(), b"Signpost");
        assert_eq!(expected.unwrap(), ours);
        let mut udp = UdpDatagram::new_checked(&mut bytes[..]).unwrap();
        udp.set_len(u16::MAX);
        assert!(udp.payload().is_empty());
    }

    #[test]
    fn agrees_with_etherparse() {
        let (src, dst, bytes) = dns();
        let theirs = etherparse::UdpHeaderSlice::from_slice(bytes).unwrap();
        let ours = UdpDatagram::new_checked(bytes).unwrap();
        assert_eq!(ours.src_port(), theirs.source_port());
        assert_eq!(ours.dst_port(), theirs.destination_port());
        assert_eq!(ours.len(), theirs.length());
        let expected =
            theirs
                .to_header()
                .calc_checksum_ipv4_raw(src.octets(), dst.octets(), ours.payload());
        assert_eq!(expected.unwrap(), ours.checksum());
    }

    proptest! {
        #![proptest_config(crate::packet::proptest_config())]

        #[test]
        fn nat_v4_incremental_matches_fill(src: u32, dst: u32, sport: u16, dport: u16) {
            let (old_src, old_dst, bytes) = dns();
            let mut bytes = bytes.to_vec();
            let mut udp = UdpDatagram::new_checked(&mut bytes[..]).unwrap();
            let (src, dst) = (Ipv4Addr::from_bits(src), Ipv4Addr::from_bits(dst));
            let (old_sport, old_dport) = (udp.src_port(), udp.dst_port());
            udp.adjust_checksum(|c| checksum::update_ipv4_addr(c, old_src, src));
            udp.adjust_checksum(|c| checksum::update_ipv4_addr(c, old_dst, dst));
            udp.adjust_checksum(|c| checksum::update_u16(c, old_sport, sport));
            udp.adjust_checksum(|c| checksum::update_u16(c, old_dport, dport));
            udp.set_src_port(sport);
            udp.set_dst_port(dport);
            prop_assert!(udp.verify_checksum_v4(src, dst));
            let incremental = udp.checksum();
            udp.fill_checksum_v4(src, dst);
            prop_assert_eq!(incremental, udp.checksum());
        }
    }
}
