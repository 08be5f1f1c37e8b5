//! ARP for IPv4 over Ethernet (RFC 826), the only ARP the router speaks: any other hardware or
//! protocol type is rejected as malformed.

use core::net::Ipv4Addr;

use super::ethernet::{MacAddress, ethertype};
use super::{Error, Result, read_array, read_u16, write_u16};

/// ARP operation codes.
pub mod operation {
    pub const REQUEST: u16 = 1;
    pub const REPLY: u16 = 2;
}

mod field {
    use crate::packet::Field;

    pub const HARDWARE_TYPE: Field = 0..2;
    pub const PROTOCOL_TYPE: Field = 2..4;
    pub const HARDWARE_LEN: usize = 4;
    pub const PROTOCOL_LEN: usize = 5;
    pub const OPERATION: Field = 6..8;
    pub const SENDER_HARDWARE_ADDR: Field = 8..14;
    pub const SENDER_PROTOCOL_ADDR: Field = 14..18;
    pub const TARGET_HARDWARE_ADDR: Field = 18..24;
    pub const TARGET_PROTOCOL_ADDR: Field = 24..28;

    pub const LEN: usize = 28;
}

/// Hardware type of Ethernet in ARP.
const HARDWARE_ETHERNET: u16 = 1;

/// A view over an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    /// Checks the length and that the packet maps IPv4 addresses to Ethernet addresses.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check()?;
        Ok(packet)
    }

    fn check(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        if data.len() < field::LEN {
            return Err(Error::Truncated);
        }
        if read_u16(data, field::HARDWARE_TYPE) != HARDWARE_ETHERNET
            || data[field::HARDWARE_LEN] != 6
        {
            return Err(Error::Malformed("ARP hardware is not Ethernet"));
        }
        if read_u16(data, field::PROTOCOL_TYPE) != ethertype::IPV4 || data[field::PROTOCOL_LEN] != 4
        {
            return Err(Error::Malformed("ARP protocol is not IPv4"));
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// [`operation::REQUEST`], [`operation::REPLY`], or another code to ignore.
    #[inline]
    pub fn operation(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::OPERATION)
    }

    #[inline]
    pub fn sender_hardware_addr(&self) -> MacAddress {
        MacAddress(read_array(
            self.buffer.as_ref(),
            field::SENDER_HARDWARE_ADDR,
        ))
    }

    #[inline]
    pub fn sender_protocol_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(read_array::<4>(
            self.buffer.as_ref(),
            field::SENDER_PROTOCOL_ADDR,
        ))
    }

    #[inline]
    pub fn target_hardware_addr(&self) -> MacAddress {
        MacAddress(read_array(
            self.buffer.as_ref(),
            field::TARGET_HARDWARE_ADDR,
        ))
    }

    #[inline]
    pub fn target_protocol_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(read_array::<4>(
            self.buffer.as_ref(),
            field::TARGET_PROTOCOL_ADDR,
        ))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Writes the fixed Ethernet/IPv4 preamble (hardware and protocol types and lengths), so a
    /// zeroed buffer becomes a valid packet once the other fields are set.
    pub fn fill_ethernet_ipv4(&mut self) {
        let data = self.buffer.as_mut();
        write_u16(data, field::HARDWARE_TYPE, HARDWARE_ETHERNET);
        write_u16(data, field::PROTOCOL_TYPE, ethertype::IPV4);
        data[field::HARDWARE_LEN] = 6;
        data[field::PROTOCOL_LEN] = 4;
    }

    #[inline]
    pub fn set_operation(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::OPERATION, value);
    }

    #[inline]
    pub fn set_sender_hardware_addr(&mut self, addr: MacAddress) {
        self.buffer.as_mut()[field::SENDER_HARDWARE_ADDR].copy_from_slice(&addr.0);
    }

    #[inline]
    pub fn set_sender_protocol_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SENDER_PROTOCOL_ADDR].copy_from_slice(&addr.octets());
    }

    #[inline]
    pub fn set_target_hardware_addr(&mut self, addr: MacAddress) {
        self.buffer.as_mut()[field::TARGET_HARDWARE_ADDR].copy_from_slice(&addr.0);
    }

    #[inline]
    pub fn set_target_protocol_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::TARGET_PROTOCOL_ADDR].copy_from_slice(&addr.octets());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::EthernetFrame;
    use crate::packet::fixtures::ARP_REQUEST;

    fn arp_bytes() -> &'static [u8] {
        &ARP_REQUEST[14..]
    }

    #[test]
    fn parses_a_request() {
        let frame = EthernetFrame::new_checked(&ARP_REQUEST[..]).unwrap();
        assert_eq!(frame.ethertype(), ethertype::ARP);
        let arp = ArpPacket::new_checked(frame.payload()).unwrap();
        assert_eq!(arp.operation(), operation::REQUEST);
        assert_eq!(arp.sender_hardware_addr().to_string(), "52:54:00:12:34:56");
        assert_eq!(arp.sender_protocol_addr(), Ipv4Addr::new(192, 168, 1, 10));
        assert_eq!(arp.target_hardware_addr(), MacAddress([0; 6]));
        assert_eq!(arp.target_protocol_addr(), Ipv4Addr::new(192, 168, 1, 1));
    }

    #[test]
    fn every_truncation_is_rejected() {
        for len in 0..field::LEN {
            assert_eq!(
                ArpPacket::new_checked(&arp_bytes()[..len]).unwrap_err(),
                Error::Truncated
            );
        }
    }

    #[test]
    fn rejects_other_hardware_and_protocols() {
        let mut bytes = arp_bytes().to_vec();
        bytes[1] = 6; // IEEE 802 networks
        assert!(matches!(
            ArpPacket::new_checked(&bytes[..]),
            Err(Error::Malformed(_))
        ));
        let mut bytes = arp_bytes().to_vec();
        bytes[2..4].copy_from_slice(&ethertype::IPV6.to_be_bytes());
        assert!(matches!(
            ArpPacket::new_checked(&bytes[..]),
            Err(Error::Malformed(_))
        ));
        let mut bytes = arp_bytes().to_vec();
        bytes[5] = 16;
        assert!(matches!(
            ArpPacket::new_checked(&bytes[..]),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn builds_the_reply() {
        let request = ArpPacket::new_checked(arp_bytes()).unwrap();
        let ours = MacAddress([0x02, 0, 0, 0, 0, 0x01]);
        let mut buf = [0u8; 28];
        let mut reply = ArpPacket::new_unchecked(&mut buf[..]);
        reply.fill_ethernet_ipv4();
        reply.set_operation(operation::REPLY);
        reply.set_sender_hardware_addr(ours);
        reply.set_sender_protocol_addr(request.target_protocol_addr());
        reply.set_target_hardware_addr(request.sender_hardware_addr());
        reply.set_target_protocol_addr(request.sender_protocol_addr());

        let reply = ArpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(reply.operation(), operation::REPLY);
        assert_eq!(reply.sender_hardware_addr(), ours);
        assert_eq!(reply.sender_protocol_addr(), Ipv4Addr::new(192, 168, 1, 1));
        assert_eq!(reply.target_hardware_addr(), request.sender_hardware_addr());
        assert_eq!(reply.target_protocol_addr(), Ipv4Addr::new(192, 168, 1, 10));

        let theirs = etherparse::ArpPacketSlice::from_slice(&buf)
            .unwrap()
            .to_packet();
        let theirs = theirs.try_eth_ipv4().unwrap();
        assert_eq!(theirs.operation, etherparse::ArpOperation::REPLY);
        assert_eq!(theirs.sender_mac, ours.0);
        assert_eq!(theirs.target_ipv4, [192, 168, 1, 10]);
    }
}
