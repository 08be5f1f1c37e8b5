//! ICMPv4 (RFC 792) and ICMPv6 (RFC 4443) messages: one view for both, since they share the
//! layout `type | code | checksum | rest of header (4) | body`. They differ in the type numbers
//! and in the checksum: ICMPv6 includes the IPv6 pseudo-header, ICMPv4 does not.
//!
//! The view's buffer must be the whole message (the IP payload): the checksum covers all of it.

use core::net::Ipv6Addr;

use super::checksum;
use super::ip_protocol;
use super::{Error, Result, clamped, clamped_mut, read_array, read_u16, write_u16};

mod field {
    use crate::packet::Field;

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    pub const REST_OF_HEADER: Field = 4..8;
    /// Echo request/reply: identifier and sequence number within the rest of header.
    pub const ECHO_IDENT: Field = 4..6;
    pub const ECHO_SEQ_NO: Field = 6..8;

    pub const HEADER_LEN: usize = 8;
}

/// ICMPv4 message types the router handles.
pub mod icmpv4_type {
    pub const ECHO_REPLY: u8 = 0;
    pub const DEST_UNREACHABLE: u8 = 3;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
    pub const PARAMETER_PROBLEM: u8 = 12;
}

/// ICMPv6 message types the router handles.
pub mod icmpv6_type {
    pub const DEST_UNREACHABLE: u8 = 1;
    pub const PACKET_TOO_BIG: u8 = 2;
    pub const TIME_EXCEEDED: u8 = 3;
    pub const PARAMETER_PROBLEM: u8 = 4;
    pub const ECHO_REQUEST: u8 = 128;
    pub const ECHO_REPLY: u8 = 129;
    pub const ROUTER_SOLICIT: u8 = 133;
    pub const ROUTER_ADVERT: u8 = 134;
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    pub const NEIGHBOR_ADVERT: u8 = 136;
}

/// A view over an ICMPv4 or ICMPv6 message.
#[derive(Debug, Clone)]
pub struct IcmpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IcmpPacket<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        IcmpPacket { buffer }
    }

    /// Checks that the 8-byte header is present.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        if packet.buffer.as_ref().len() < field::HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(packet)
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    #[inline]
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The four type-specific bytes after the checksum (echo id/seq, MTU, pointer, unused).
    #[inline]
    pub fn rest_of_header(&self) -> [u8; 4] {
        read_array(self.buffer.as_ref(), field::REST_OF_HEADER)
    }

    /// True for ICMPv4 echo request or reply.
    #[inline]
    pub fn is_echo_v4(&self) -> bool {
        matches!(
            self.msg_type(),
            icmpv4_type::ECHO_REQUEST | icmpv4_type::ECHO_REPLY
        )
    }

    /// True for ICMPv6 echo request or reply.
    #[inline]
    pub fn is_echo_v6(&self) -> bool {
        matches!(
            self.msg_type(),
            icmpv6_type::ECHO_REQUEST | icmpv6_type::ECHO_REPLY
        )
    }

    /// The echo identifier (the "port" NAT rewrites); meaningful for echo messages only.
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// The echo sequence number; meaningful for echo messages only.
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ECHO_SEQ_NO)
    }

    /// The body after the 8-byte header: echo data, or the invoking packet of an error.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        clamped(data, field::HEADER_LEN, data.len())
    }

    /// True when the ICMPv4 checksum (over the message alone) is correct.
    pub fn verify_checksum_v4(&self) -> bool {
        checksum::data(self.buffer.as_ref()) == 0xffff
    }

    /// True when the ICMPv6 checksum (with the IPv6 pseudo-header) is correct.
    pub fn verify_checksum_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        let data = self.buffer.as_ref();
        let pseudo = checksum::pseudo_header_v6(src, dst, ip_protocol::ICMPV6, data.len() as u32);
        checksum::combine(&[pseudo, checksum::data(data)]) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IcmpPacket<T> {
    #[inline]
    pub fn set_msg_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::TYPE] = value;
    }

    #[inline]
    pub fn set_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }

    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    #[inline]
    pub fn set_rest_of_header(&mut self, value: [u8; 4]) {
        self.buffer.as_mut()[field::REST_OF_HEADER].copy_from_slice(&value);
    }

    #[inline]
    pub fn set_echo_ident(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::ECHO_IDENT, value);
    }

    #[inline]
    pub fn set_echo_seq_no(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::ECHO_SEQ_NO, value);
    }

    /// Computes and writes the ICMPv4 checksum.
    pub fn fill_checksum_v4(&mut self) {
        self.set_checksum(0);
        let value = checksum::finish(checksum::data(self.buffer.as_ref()));
        self.set_checksum(value);
    }

    /// Computes and writes the ICMPv6 checksum.
    pub fn fill_checksum_v6(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let pseudo = checksum::pseudo_header_v6(src, dst, ip_protocol::ICMPV6, data.len() as u32);
        let value = checksum::finish(checksum::combine(&[pseudo, checksum::data(data)]));
        self.set_checksum(value);
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let data = self.buffer.as_mut();
        let end = data.len();
        clamped_mut(data, field::HEADER_LEN, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Ipv6Packet;
    use crate::packet::fixtures::*;
    use proptest::prelude::*;

    fn echo_v4() -> &'static [u8] {
        &ICMPV4_ECHO[14 + 20..]
    }

    fn echo_v6() -> (Ipv6Addr, Ipv6Addr, &'static [u8]) {
        let ip = Ipv6Packet::new_checked(&ICMPV6_ECHO[14..]).unwrap();
        (ip.src_addr(), ip.dst_addr(), &ICMPV6_ECHO[14 + 40..])
    }

    #[test]
    fn parses_an_icmpv4_echo_request() {
        let icmp = IcmpPacket::new_checked(echo_v4()).unwrap();
        assert_eq!(
            (icmp.msg_type(), icmp.code()),
            (icmpv4_type::ECHO_REQUEST, 0)
        );
        assert!(icmp.is_echo_v4());
        assert_eq!((icmp.echo_ident(), icmp.echo_seq_no()), (0x0b0e, 7));
        assert_eq!(icmp.rest_of_header(), [0x0b, 0x0e, 0x00, 0x07]);
        assert_eq!(icmp.payload(), &(0u8..16).collect::<Vec<_>>()[..]);
        assert!(icmp.verify_checksum_v4());
    }

    #[test]
    fn parses_an_icmpv6_echo_request() {
        let (src, dst, bytes) = echo_v6();
        let icmp = IcmpPacket::new_checked(bytes).unwrap();
        assert_eq!(icmp.msg_type(), icmpv6_type::ECHO_REQUEST);
        assert!(icmp.is_echo_v6() && !icmp.is_echo_v4());
        assert_eq!((icmp.echo_ident(), icmp.echo_seq_no()), (0x1234, 1));
        assert_eq!(icmp.payload(), b"pingpong");
        assert!(icmp.verify_checksum_v6(&src, &dst));
        assert!(!icmp.verify_checksum_v6(&dst, &src.to_bits().wrapping_add(1).into()));
        assert!(
            !icmp.verify_checksum_v4(),
            "ICMPv6 checksum covers the pseudo-header"
        );
    }

    #[test]
    fn every_truncation_is_rejected() {
        for len in 0..field::HEADER_LEN {
            assert_eq!(
                IcmpPacket::new_checked(&echo_v4()[..len]).unwrap_err(),
                Error::Truncated
            );
        }
    }

    #[test]
    fn builds_an_echo_reply() {
        let mut bytes = echo_v4().to_vec();
        let mut icmp = IcmpPacket::new_checked(&mut bytes[..]).unwrap();
        icmp.set_msg_type(icmpv4_type::ECHO_REPLY);
        icmp.set_code(0);
        icmp.fill_checksum_v4();
        assert!(icmp.verify_checksum_v4());
        let theirs = etherparse::Icmpv4Slice::from_slice(&bytes).unwrap();
        assert_eq!(theirs.type_u8(), icmpv4_type::ECHO_REPLY);
        assert_eq!(
            theirs.header().icmp_type.calc_checksum(theirs.payload()),
            theirs.checksum()
        );

        let (src, dst, bytes) = echo_v6();
        let mut bytes = bytes.to_vec();
        let mut icmp = IcmpPacket::new_checked(&mut bytes[..]).unwrap();
        icmp.set_msg_type(icmpv6_type::ECHO_REPLY);
        icmp.set_rest_of_header([0xaa, 0xbb, 0x00, 0x02]);
        icmp.payload_mut()[0] = b'P';
        icmp.fill_checksum_v6(&dst, &src);
        assert_eq!((icmp.echo_ident(), icmp.echo_seq_no()), (0xaabb, 2));
        let theirs = etherparse::Icmpv6Slice::from_slice(&bytes).unwrap();
        assert!(theirs.is_checksum_valid(dst.octets(), src.octets()));
    }

    #[test]
    fn agrees_with_etherparse() {
        let theirs = etherparse::Icmpv4Slice::from_slice(echo_v4()).unwrap();
        let ours = IcmpPacket::new_checked(echo_v4()).unwrap();
        assert_eq!(
            (ours.msg_type(), ours.code()),
            (theirs.type_u8(), theirs.code_u8())
        );
        assert_eq!(ours.rest_of_header(), theirs.bytes5to8());
        assert_eq!(ours.payload(), theirs.payload());

        let (src, dst, bytes) = echo_v6();
        let theirs = etherparse::Icmpv6Slice::from_slice(bytes).unwrap();
        let ours = IcmpPacket::new_checked(bytes).unwrap();
        assert_eq!(ours.rest_of_header(), theirs.bytes5to8());
        assert_eq!(ours.checksum(), theirs.checksum());
        assert!(theirs.is_checksum_valid(src.octets(), dst.octets()));
    }

    proptest! {
        #![proptest_config(crate::packet::proptest_config())]

        /// ICMP echo NAT rewrites the identifier; the incremental update must match.
        #[test]
        fn echo_ident_incremental_matches_fill(ident: u16) {
            let mut bytes = echo_v4().to_vec();
            let mut icmp = IcmpPacket::new_checked(&mut bytes[..]).unwrap();
            let sum = checksum::update_u16(icmp.checksum(), icmp.echo_ident(), ident);
            icmp.set_echo_ident(ident);
            icmp.set_checksum(sum);
            prop_assert!(icmp.verify_checksum_v4());
            icmp.fill_checksum_v4();
            prop_assert_eq!(sum, icmp.checksum());
        }
    }
}
