//! TCP segment headers (RFC 9293): ports, sequence numbers, data offset, flags, window, options,
//! and the checksum with the IPv4 or IPv6 pseudo-header.
//!
//! The view's buffer must be the whole segment (the IP payload): the checksum covers all of it.

use core::net::{Ipv4Addr, Ipv6Addr};

use super::checksum;
use super::ip_protocol;
use super::{Error, Result, clamped, clamped_mut, read_u16, read_u32, write_u16, write_u32};

mod field {
    use crate::packet::Field;

    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const SEQ_NUM: Field = 4..8;
    pub const ACK_NUM: Field = 8..12;
    /// Data offset (4 bits), reserved (3), NS (1).
    pub const DATA_OFFSET: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: Field = 14..16;
    pub const CHECKSUM: Field = 16..18;
    pub const URGENT: Field = 18..20;

    pub const MIN_HEADER_LEN: usize = 20;
}

/// The flag bits of byte 13.
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

/// A view over a TCP segment.
#[derive(Debug, Clone)]
pub struct TcpSegment<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpSegment<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        TcpSegment { buffer }
    }

    /// Checks `20 <= header_len <= buffer length`.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let segment = Self::new_unchecked(buffer);
        segment.check()?;
        Ok(segment)
    }

    fn check(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        if data.len() < field::MIN_HEADER_LEN {
            return Err(Error::Truncated);
        }
        let header_len = self.header_len();
        if header_len < field::MIN_HEADER_LEN {
            return Err(Error::Malformed("TCP data offset below 5 words"));
        }
        if data.len() < header_len {
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

    #[inline]
    pub fn seq_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::SEQ_NUM)
    }

    #[inline]
    pub fn ack_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::ACK_NUM)
    }

    /// Header length in bytes, options included (data offset × 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFFSET] >> 4) * 4
    }

    /// The eight flag bits (see [`flags`]).
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    #[inline]
    pub fn fin(&self) -> bool {
        self.flags() & flags::FIN != 0
    }

    #[inline]
    pub fn syn(&self) -> bool {
        self.flags() & flags::SYN != 0
    }

    #[inline]
    pub fn rst(&self) -> bool {
        self.flags() & flags::RST != 0
    }

    #[inline]
    pub fn psh(&self) -> bool {
        self.flags() & flags::PSH != 0
    }

    #[inline]
    pub fn ack(&self) -> bool {
        self.flags() & flags::ACK != 0
    }

    #[inline]
    pub fn urg(&self) -> bool {
        self.flags() & flags::URG != 0
    }

    #[inline]
    pub fn ece(&self) -> bool {
        self.flags() & flags::ECE != 0
    }

    #[inline]
    pub fn cwr(&self) -> bool {
        self.flags() & flags::CWR != 0
    }

    /// The advertised window, unscaled.
    #[inline]
    pub fn window_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::WINDOW)
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    #[inline]
    pub fn urgent_at(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::URGENT)
    }

    /// The raw option bytes (MSS, window scale, SACK, timestamps...), not parsed here.
    #[inline]
    pub fn options(&self) -> &[u8] {
        clamped(
            self.buffer.as_ref(),
            field::MIN_HEADER_LEN,
            self.header_len(),
        )
    }

    #[inline]
    pub fn payload(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        clamped(data, self.header_len(), data.len())
    }

    /// True when the checksum is correct for a segment carried in IPv4 between `src` and `dst`.
    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let data = self.buffer.as_ref();
        let pseudo = checksum::pseudo_header_v4(src, dst, ip_protocol::TCP, data.len() as u32);
        checksum::combine(&[pseudo, checksum::data(data)]) == 0xffff
    }

    /// True when the checksum is correct for a segment carried in IPv6 between `src` and `dst`.
    pub fn verify_checksum_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        let data = self.buffer.as_ref();
        let pseudo = checksum::pseudo_header_v6(src, dst, ip_protocol::TCP, data.len() as u32);
        checksum::combine(&[pseudo, checksum::data(data)]) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpSegment<T> {
    #[inline]
    pub fn set_src_port(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::SRC_PORT, value);
    }

    #[inline]
    pub fn set_dst_port(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::DST_PORT, value);
    }

    #[inline]
    pub fn set_seq_number(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::SEQ_NUM, value);
    }

    #[inline]
    pub fn set_ack_number(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::ACK_NUM, value);
    }

    /// Sets the data offset from a header length in bytes (a multiple of 4, 20 to 60), keeping
    /// the NS bit.
    #[inline]
    pub fn set_header_len(&mut self, header_len: usize) {
        debug_assert!(header_len.is_multiple_of(4) && (20..=60).contains(&header_len));
        let byte = &mut self.buffer.as_mut()[field::DATA_OFFSET];
        *byte = (*byte & 0x0f) | (((header_len / 4) as u8) << 4);
    }

    #[inline]
    pub fn set_flags(&mut self, value: u8) {
        self.buffer.as_mut()[field::FLAGS] = value;
    }

    #[inline]
    pub fn set_window_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::WINDOW, value);
    }

    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    #[inline]
    pub fn set_urgent_at(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::URGENT, value);
    }

    /// Computes and writes the checksum for carriage in IPv4.
    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let pseudo = checksum::pseudo_header_v4(src, dst, ip_protocol::TCP, data.len() as u32);
        let value = checksum::finish(checksum::combine(&[pseudo, checksum::data(data)]));
        self.set_checksum(value);
    }

    /// Computes and writes the checksum for carriage in IPv6.
    pub fn fill_checksum_v6(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let pseudo = checksum::pseudo_header_v6(src, dst, ip_protocol::TCP, data.len() as u32);
        let value = checksum::finish(checksum::combine(&[pseudo, checksum::data(data)]));
        self.set_checksum(value);
    }

    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        clamped_mut(self.buffer.as_mut(), field::MIN_HEADER_LEN, end)
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        let data = self.buffer.as_mut();
        let end = data.len();
        clamped_mut(data, start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::fixtures::*;
    use crate::packet::{Ipv4Packet, Ipv6Packet};
    use proptest::prelude::*;

    fn syn() -> (Ipv4Addr, Ipv4Addr, &'static [u8]) {
        let ip = Ipv4Packet::new_checked(&TCP_SYN_VLAN[18..]).unwrap();
        (ip.src_addr(), ip.dst_addr(), &TCP_SYN_VLAN[18 + 20..])
    }

    #[test]
    fn parses_a_syn_with_options() {
        let (src, dst, bytes) = syn();
        let tcp = TcpSegment::new_checked(bytes).unwrap();
        assert_eq!((tcp.src_port(), tcp.dst_port()), (40000, 443));
        assert_eq!((tcp.seq_number(), tcp.ack_number()), (0x6b8b_4567, 0));
        assert_eq!(tcp.header_len(), 40);
        assert_eq!(tcp.flags(), flags::SYN);
        assert!(tcp.syn() && !tcp.ack() && !tcp.fin() && !tcp.rst());
        assert_eq!(tcp.window_len(), 64240);
        assert_eq!(tcp.urgent_at(), 0);
        assert_eq!(&tcp.options()[..4], &[0x02, 0x04, 0x05, 0xb4], "MSS 1460");
        assert_eq!(tcp.options().len(), 20);
        assert!(tcp.payload().is_empty());
        assert!(tcp.verify_checksum_v4(src, dst));
        assert!(!tcp.verify_checksum_v4(dst, src.to_bits().wrapping_add(1).into()));
    }

    #[test]
    fn parses_an_ipv6_segment_with_data() {
        let ip = Ipv6Packet::new_checked(&TCP_V6[..]).unwrap();
        let tcp = TcpSegment::new_checked(ip.payload()).unwrap();
        assert!(tcp.psh() && tcp.ack() && !tcp.syn());
        assert_eq!(
            (tcp.seq_number(), tcp.ack_number(), tcp.window_len()),
            (1000, 2000, 502)
        );
        assert_eq!(tcp.options()[..2], [0x01, 0x01]);
        assert_eq!(tcp.payload(), b"hello");
        assert!(tcp.verify_checksum_v6(&ip.src_addr(), &ip.dst_addr()));
        assert!(!tcp.verify_checksum_v6(&ip.dst_addr(), &Ipv6Addr::LOCALHOST));
    }

    #[test]
    fn every_truncation_is_rejected() {
        let (_, _, bytes) = syn();
        for len in 0..bytes.len() {
            assert_eq!(
                TcpSegment::new_checked(&bytes[..len]).unwrap_err(),
                Error::Truncated
            );
        }
    }

    #[test]
    fn rejects_a_short_data_offset() {
        let (_, _, bytes) = syn();
        let mut bytes = bytes.to_vec();
        bytes[12] = 0x40;
        assert!(matches!(
            TcpSegment::new_checked(&bytes[..]),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn setters_then_fill_checksum() {
        let (src, dst, bytes) = syn();
        let mut bytes = bytes.to_vec();
        let mut tcp = TcpSegment::new_checked(&mut bytes[..]).unwrap();
        tcp.set_src_port(1);
        tcp.set_dst_port(2);
        tcp.set_seq_number(3);
        tcp.set_ack_number(4);
        tcp.set_flags(flags::SYN | flags::ACK | flags::ECE);
        tcp.set_window_len(5);
        tcp.set_urgent_at(6);
        tcp.set_header_len(24);
        tcp.options_mut()[0] = 1;
        tcp.fill_checksum_v4(src, dst);
        assert!(tcp.verify_checksum_v4(src, dst));
        assert_eq!(
            (tcp.src_port(), tcp.dst_port(), tcp.seq_number()),
            (1, 2, 3)
        );
        assert_eq!(
            (tcp.ack_number(), tcp.window_len(), tcp.urgent_at()),
            (4, 5, 6)
        );
        assert!(tcp.syn() && tcp.ack() && tcp.ece() && !tcp.cwr());
        assert_eq!(tcp.header_len(), 24);
        assert_eq!(tcp.payload().len(), 16);

        let theirs = etherparse::TcpHeaderSlice::from_slice(&bytes).unwrap();
        let expected = theirs.calc_checksum_ipv4_raw(src.octets(), dst.octets(), &bytes[24..]);
        assert_eq!(expected.unwrap(), theirs.checksum());
    }

    #[test]
    fn agrees_with_etherparse() {
        let (src, dst, v4) = syn();
        let ip6 = Ipv6Packet::new_checked(&TCP_V6[..]).unwrap();
        for bytes in [v4, ip6.payload()] {
            let ours = TcpSegment::new_checked(bytes).unwrap();
            let theirs = etherparse::TcpHeaderSlice::from_slice(bytes).unwrap();
            assert_eq!(ours.src_port(), theirs.source_port());
            assert_eq!(ours.dst_port(), theirs.destination_port());
            assert_eq!(ours.seq_number(), theirs.sequence_number());
            assert_eq!(ours.ack_number(), theirs.acknowledgment_number());
            assert_eq!(ours.header_len(), usize::from(theirs.data_offset()) * 4);
            assert_eq!(
                (ours.syn(), ours.ack(), ours.psh()),
                (theirs.syn(), theirs.ack(), theirs.psh())
            );
            assert_eq!(ours.window_len(), theirs.window_size());
            assert_eq!(ours.options(), theirs.options());
        }
        let theirs = etherparse::TcpHeaderSlice::from_slice(v4).unwrap();
        let payload = &v4[theirs.slice().len()..];
        assert_eq!(
            theirs
                .calc_checksum_ipv4_raw(src.octets(), dst.octets(), payload)
                .unwrap(),
            TcpSegment::new_checked(v4).unwrap().checksum()
        );
    }

    proptest! {
        #![proptest_config(crate::packet::proptest_config())]

        /// Source NAT of an IPv4 TCP segment: address (pseudo-header) and port change, checksum
        /// updated incrementally, compared with a full recomputation.
        #[test]
        fn snat_v4_incremental_matches_fill(addr: u32, port: u16, seq: u32) {
            let (src, dst, bytes) = syn();
            let mut bytes = bytes.to_vec();
            let mut tcp = TcpSegment::new_checked(&mut bytes[..]).unwrap();
            let new_src = Ipv4Addr::from_bits(addr);

            let mut sum = tcp.checksum();
            sum = checksum::update_ipv4_addr(sum, src, new_src);
            sum = checksum::update_u16(sum, tcp.src_port(), port);
            sum = checksum::update_u32(sum, tcp.seq_number(), seq);
            tcp.set_src_port(port);
            tcp.set_seq_number(seq);
            tcp.set_checksum(sum);
            prop_assert!(tcp.verify_checksum_v4(new_src, dst));

            tcp.fill_checksum_v4(new_src, dst);
            prop_assert_eq!(sum, tcp.checksum());
        }

        #[test]
        fn dnat_v6_incremental_matches_fill(addr: u128, port: u16) {
            let ip = Ipv6Packet::new_checked(&TCP_V6[..]).unwrap();
            let (src, dst) = (ip.src_addr(), ip.dst_addr());
            let mut bytes = ip.payload().to_vec();
            let mut tcp = TcpSegment::new_checked(&mut bytes[..]).unwrap();
            let new_dst = Ipv6Addr::from_bits(addr);

            let mut sum = tcp.checksum();
            sum = checksum::update_ipv6_addr(sum, &dst, &new_dst);
            sum = checksum::update_u16(sum, tcp.dst_port(), port);
            tcp.set_dst_port(port);
            tcp.set_checksum(sum);
            prop_assert!(tcp.verify_checksum_v6(&src, &new_dst));

            tcp.fill_checksum_v6(&src, &new_dst);
            prop_assert_eq!(sum, tcp.checksum());
        }
    }
}
