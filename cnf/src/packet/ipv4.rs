//! IPv4 headers (RFC 791): options located through IHL, the total length checked against the
//! buffer, header checksum verification and filling.
//!
//! Setters write the field only; the header checksum is the caller's to fix, with
//! [`Ipv4Packet::fill_checksum`] or incrementally with [`super::checksum`] (what NAT does).

use core::net::Ipv4Addr;

use super::checksum;
use super::{Error, Result, clamped, clamped_mut, read_array, read_u16, write_u16};

mod field {
    use crate::packet::Field;

    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const TOTAL_LEN: Field = 2..4;
    pub const IDENT: Field = 4..6;
    pub const FLAGS_FRAG_OFFSET: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC_ADDR: Field = 12..16;
    pub const DST_ADDR: Field = 16..20;

    /// The 16-bit word that holds TTL and protocol, for incremental checksum updates.
    pub const TTL_PROTOCOL: Field = 8..10;

    pub const MIN_HEADER_LEN: usize = 20;
}

const FLAG_DONT_FRAG: u16 = 0x4000;
const FLAG_MORE_FRAGS: u16 = 0x2000;
const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// A view over an IPv4 packet. The buffer may extend past `total_len` (Ethernet padding);
/// [`Ipv4Packet::payload`] stops at `total_len`.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Checks version 4, `20 <= header_len <= total_len <= buffer length`.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check()?;
        Ok(packet)
    }

    fn check(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        if data.len() < field::MIN_HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 4 {
            return Err(Error::Malformed("IP version is not 4"));
        }
        let header_len = self.header_len();
        if header_len < field::MIN_HEADER_LEN {
            return Err(Error::Malformed("IPv4 header length (IHL) below 20 bytes"));
        }
        if data.len() < header_len {
            return Err(Error::Truncated);
        }
        let total_len = usize::from(self.total_len());
        if total_len < header_len {
            return Err(Error::Malformed(
                "IPv4 total length shorter than its header",
            ));
        }
        if data.len() < total_len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes, options included (IHL × 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// Differentiated Services Code Point (6 bits).
    #[inline]
    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] >> 2
    }

    /// Explicit Congestion Notification (2 bits).
    #[inline]
    pub fn ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] & 0x03
    }

    /// Length of header and payload in bytes.
    #[inline]
    pub fn total_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::TOTAL_LEN)
    }

    #[inline]
    pub fn ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::IDENT)
    }

    #[inline]
    pub fn dont_frag(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::FLAGS_FRAG_OFFSET) & FLAG_DONT_FRAG != 0
    }

    #[inline]
    pub fn more_frags(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::FLAGS_FRAG_OFFSET) & FLAG_MORE_FRAGS != 0
    }

    /// Fragment offset in bytes.
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (read_u16(self.buffer.as_ref(), field::FLAGS_FRAG_OFFSET) & FRAG_OFFSET_MASK) << 3
    }

    /// True for any fragment, first included: only the first carries the L4 header.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// The payload's IP protocol number (see [`super::ip_protocol`]).
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(read_array::<4>(self.buffer.as_ref(), field::SRC_ADDR))
    }

    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(read_array::<4>(self.buffer.as_ref(), field::DST_ADDR))
    }

    /// The option bytes between the fixed header and the payload.
    #[inline]
    pub fn options(&self) -> &[u8] {
        clamped(
            self.buffer.as_ref(),
            field::MIN_HEADER_LEN,
            self.header_len(),
        )
    }

    /// True when the header checksum is correct.
    pub fn verify_checksum(&self) -> bool {
        let header = clamped(self.buffer.as_ref(), 0, self.header_len());
        checksum::data(header) == 0xffff
    }

    /// The payload up to `total_len`, without link padding.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        clamped(
            self.buffer.as_ref(),
            self.header_len(),
            usize::from(self.total_len()),
        )
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets version 4 and the header length in bytes (a multiple of 4, 20 to 60).
    #[inline]
    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        debug_assert!(header_len.is_multiple_of(4) && (20..=60).contains(&header_len));
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | ((header_len / 4) as u8 & 0x0f);
    }

    #[inline]
    pub fn set_dscp(&mut self, dscp: u8) {
        let byte = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *byte = (*byte & 0x03) | (dscp << 2);
    }

    #[inline]
    pub fn set_ecn(&mut self, ecn: u8) {
        let byte = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *byte = (*byte & !0x03) | (ecn & 0x03);
    }

    #[inline]
    pub fn set_total_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::TOTAL_LEN, value);
    }

    #[inline]
    pub fn set_ident(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::IDENT, value);
    }

    /// Sets DF and MF and the fragment offset (in bytes, a multiple of 8).
    #[inline]
    pub fn set_flags_and_frag_offset(&mut self, dont_frag: bool, more_frags: bool, offset: u16) {
        let mut word = (offset >> 3) & FRAG_OFFSET_MASK;
        if dont_frag {
            word |= FLAG_DONT_FRAG;
        }
        if more_frags {
            word |= FLAG_MORE_FRAGS;
        }
        write_u16(self.buffer.as_mut(), field::FLAGS_FRAG_OFFSET, word);
    }

    #[inline]
    pub fn set_ttl(&mut self, value: u8) {
        self.buffer.as_mut()[field::TTL] = value;
    }

    #[inline]
    pub fn set_protocol(&mut self, value: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = value;
    }

    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    #[inline]
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    #[inline]
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// Computes and writes the header checksum.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let header = clamped(self.buffer.as_ref(), 0, self.header_len());
        let value = checksum::finish(checksum::data(header));
        self.set_checksum(value);
    }

    /// Forwarding's TTL decrement with an incremental checksum update (RFC 1624). Returns the
    /// new TTL, or `None` (packet unchanged) when the TTL is already 0 or 1 and the packet must
    /// be dropped with an ICMP time-exceeded instead.
    #[inline]
    pub fn decrement_ttl(&mut self) -> Option<u8> {
        let ttl = self.ttl();
        if ttl <= 1 {
            return None;
        }
        let old_word = read_u16(self.buffer.as_ref(), field::TTL_PROTOCOL);
        self.set_ttl(ttl - 1);
        let new_word = read_u16(self.buffer.as_ref(), field::TTL_PROTOCOL);
        let value = checksum::update_u16(self.checksum(), old_word, new_word);
        self.set_checksum(value);
        Some(ttl - 1)
    }

    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        clamped_mut(self.buffer.as_mut(), field::MIN_HEADER_LEN, end)
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, end) = (self.header_len(), usize::from(self.total_len()));
        clamped_mut(self.buffer.as_mut(), start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::fixtures::*;
    use crate::packet::ip_protocol;
    use proptest::prelude::*;

    fn dns_ip() -> &'static [u8] {
        &DNS_QUERY_V4[14..]
    }

    #[test]
    fn parses_a_udp_packet() {
        let ip = Ipv4Packet::new_checked(dns_ip()).unwrap();
        assert_eq!(ip.version(), 4);
        assert_eq!(ip.header_len(), 20);
        assert_eq!((ip.dscp(), ip.ecn()), (0, 0));
        assert_eq!(ip.total_len(), 57);
        assert_eq!(ip.ident(), 0x1c46);
        assert!(ip.dont_frag() && !ip.more_frags() && !ip.is_fragment());
        assert_eq!(ip.frag_offset(), 0);
        assert_eq!(ip.ttl(), 64);
        assert_eq!(ip.protocol(), ip_protocol::UDP);
        assert_eq!(ip.checksum(), 0x4cac);
        assert!(ip.verify_checksum());
        assert_eq!(ip.src_addr(), Ipv4Addr::new(192, 168, 1, 10));
        assert_eq!(ip.dst_addr(), Ipv4Addr::new(8, 8, 8, 8));
        assert!(ip.options().is_empty());
        assert_eq!(ip.payload(), &dns_ip()[20..]);
    }

    #[test]
    fn options_and_padding() {
        let ip = Ipv4Packet::new_checked(&IPV4_OPTIONS_UDP[..]).unwrap();
        assert_eq!(ip.header_len(), 24);
        assert_eq!(ip.options(), &[0x94, 0x04, 0x00, 0x00]);
        assert!(ip.verify_checksum());
        assert_eq!(ip.ttl(), 1);
        assert!(!ip.dont_frag());
        // Four bytes of link padding follow the packet; the payload ends at total_len.
        assert_eq!(usize::from(ip.total_len()) + 4, IPV4_OPTIONS_UDP.len());
        assert_eq!(ip.payload().len(), 10);
    }

    #[test]
    fn dscp_of_the_tagged_syn() {
        let ip = Ipv4Packet::new_checked(&TCP_SYN_VLAN[18..]).unwrap();
        assert_eq!(ip.dscp(), 46, "EF");
        assert!(ip.verify_checksum());
    }

    #[test]
    fn every_truncation_is_rejected() {
        for packet in [dns_ip(), &IPV4_OPTIONS_UDP[..IPV4_OPTIONS_UDP.len() - 4]] {
            for len in 0..packet.len() {
                assert_eq!(
                    Ipv4Packet::new_checked(&packet[..len]).unwrap_err(),
                    Error::Truncated,
                    "len {len}"
                );
            }
        }
    }

    #[test]
    fn rejects_malformed_headers() {
        let mut bytes = dns_ip().to_vec();
        bytes[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&bytes[..]).unwrap_err(),
            Error::Malformed("IP version is not 4")
        );
        bytes[0] = 0x44; // IHL 4: 16 bytes
        assert!(matches!(
            Ipv4Packet::new_checked(&bytes[..]),
            Err(Error::Malformed(_))
        ));
        let mut bytes = dns_ip().to_vec();
        bytes[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert!(matches!(
            Ipv4Packet::new_checked(&bytes[..]),
            Err(Error::Malformed(_))
        ));
        let mut bytes = dns_ip().to_vec();
        bytes[0] = 0x4f; // IHL 15: 60 bytes, more than the buffer
        assert_eq!(
            Ipv4Packet::new_checked(&bytes[..]).unwrap_err(),
            Error::Truncated
        );
    }

    #[test]
    fn setters_then_fill_checksum() {
        let mut bytes = dns_ip().to_vec();
        let mut ip = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        ip.set_src_addr(Ipv4Addr::new(100, 64, 0, 1));
        ip.set_dst_addr(Ipv4Addr::new(203, 0, 113, 7));
        ip.set_dscp(34);
        ip.set_ecn(1);
        ip.set_ident(7);
        ip.set_flags_and_frag_offset(false, true, 1480);
        assert!(!ip.verify_checksum());
        ip.fill_checksum();
        assert!(ip.verify_checksum());
        assert_eq!((ip.dscp(), ip.ecn(), ip.ident()), (34, 1, 7));
        assert_eq!(
            (ip.dont_frag(), ip.more_frags(), ip.frag_offset()),
            (false, true, 1480)
        );
        assert!(ip.is_fragment());

        let theirs = etherparse::Ipv4HeaderSlice::from_slice(&bytes).unwrap();
        assert_eq!(theirs.source_addr(), Ipv4Addr::new(100, 64, 0, 1));
        assert_eq!(theirs.destination_addr(), Ipv4Addr::new(203, 0, 113, 7));
        assert_eq!(theirs.dcp().value(), 34);
        assert_eq!(theirs.fragments_offset().value() * 8, 1480);
        assert_eq!(
            theirs.to_header().calc_header_checksum(),
            theirs.header_checksum()
        );
    }

    #[test]
    fn decrement_ttl_keeps_the_checksum_valid() {
        let mut bytes = dns_ip().to_vec();
        let mut ip = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        assert_eq!(ip.decrement_ttl(), Some(63));
        assert!(ip.verify_checksum());

        let mut bytes = IPV4_OPTIONS_UDP;
        let mut ip = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        assert_eq!(ip.decrement_ttl(), None);
        assert_eq!(bytes, IPV4_OPTIONS_UDP);
    }

    #[test]
    fn set_total_len_beyond_the_buffer_does_not_panic() {
        let mut bytes = dns_ip().to_vec();
        let mut ip = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        ip.set_total_len(u16::MAX);
        ip.set_version_and_header_len(60);
        assert!(ip.payload().is_empty());
        assert!(ip.payload_mut().is_empty());
        let _ = ip.verify_checksum();
        ip.fill_checksum();
    }

    #[test]
    fn agrees_with_etherparse() {
        for packet in [
            dns_ip(),
            &TCP_SYN_VLAN[18..],
            &ICMPV4_ECHO[14..],
            &IPV4_OPTIONS_UDP,
        ] {
            let ours = Ipv4Packet::new_checked(packet).unwrap();
            let theirs = etherparse::Ipv4Slice::from_slice(packet).unwrap();
            let header = theirs.header();
            assert_eq!(ours.header_len(), usize::from(header.ihl()) * 4);
            assert_eq!(ours.total_len(), header.total_len());
            assert_eq!(ours.ttl(), header.ttl());
            assert_eq!(ours.protocol(), header.protocol().0);
            assert_eq!(ours.src_addr(), header.source_addr());
            assert_eq!(ours.dst_addr(), header.destination_addr());
            assert_eq!(ours.options(), header.options());
            assert_eq!(ours.payload(), theirs.payload().payload);
            assert_eq!(header.to_header().calc_header_checksum(), ours.checksum());
        }
    }

    proptest! {
        #![proptest_config(crate::packet::proptest_config())]

        /// The NAT recipe: rewrite both addresses, update the header checksum incrementally,
        /// and compare with a full recomputation.
        #[test]
        fn nat_incremental_update_matches_fill(src: u32, dst: u32, ttl in 2u8..) {
            let mut bytes = dns_ip().to_vec();
            let mut ip = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
            let (src, dst) = (Ipv4Addr::from_bits(src), Ipv4Addr::from_bits(dst));
            ip.set_ttl(ttl);
            ip.fill_checksum();

            let mut sum = ip.checksum();
            sum = checksum::update_ipv4_addr(sum, ip.src_addr(), src);
            sum = checksum::update_ipv4_addr(sum, ip.dst_addr(), dst);
            ip.set_src_addr(src);
            ip.set_dst_addr(dst);
            ip.set_checksum(sum);
            prop_assert_eq!(ip.decrement_ttl(), Some(ttl - 1));
            prop_assert!(ip.verify_checksum());

            let incremental = ip.checksum();
            ip.fill_checksum();
            prop_assert_eq!(incremental, ip.checksum());
        }
    }
}
