//! Ethernet II frames, with at most one 802.1Q VLAN tag (stacked tags and 802.3 length frames
//! are not router traffic: their "ethertype" is returned as-is for the caller to drop).

use core::fmt;

use super::{Error, Result, clamped, clamped_mut, read_array, read_u16, write_u16};

/// EtherType values the router dispatches on.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    /// An 802.1Q tag follows the source address.
    pub const VLAN: u16 = 0x8100;
    pub const IPV6: u16 = 0x86dd;
}

mod field {
    use crate::packet::Field;

    pub const DESTINATION: Field = 0..6;
    pub const SOURCE: Field = 6..12;
    /// The EtherType of an untagged frame, or the TPID (0x8100) of a tagged one.
    pub const OUTER_ETHERTYPE: Field = 12..14;
    /// 802.1Q tag control information: PCP (3 bits), DEI (1), VID (12).
    pub const TCI: Field = 14..16;
    pub const INNER_ETHERTYPE: Field = 16..18;

    pub const UNTAGGED_HEADER_LEN: usize = 14;
    pub const TAGGED_HEADER_LEN: usize = 18;
}

/// A 48-bit IEEE 802 MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct MacAddress(pub [u8; 6]);

impl MacAddress {
    pub const BROADCAST: MacAddress = MacAddress([0xff; 6]);

    /// True for group (multicast and broadcast) addresses: the I/G bit of the first octet.
    #[inline]
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }
}

impl fmt::Display for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// A view over an Ethernet II frame (without FCS, as AF_XDP and raw sockets deliver it).
#[derive(Debug, Clone)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps a buffer without checking it; accessors may panic if it is too short.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wraps a buffer after checking that it holds the whole header, including the VLAN tag the
    /// header announces.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Checks that every accessor is in bounds.
    pub fn check_len(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        if data.len() < field::UNTAGGED_HEADER_LEN {
            return Err(Error::Truncated);
        }
        if data.len() < self.header_len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn dst_addr(&self) -> MacAddress {
        MacAddress(read_array(self.buffer.as_ref(), field::DESTINATION))
    }

    #[inline]
    pub fn src_addr(&self) -> MacAddress {
        MacAddress(read_array(self.buffer.as_ref(), field::SOURCE))
    }

    /// True when an 802.1Q tag follows the source address.
    #[inline]
    pub fn is_vlan_tagged(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::OUTER_ETHERTYPE) == ethertype::VLAN
    }

    /// The 802.1Q tag control information (PCP, DEI, VID), if the frame is tagged.
    #[inline]
    pub fn vlan_tci(&self) -> Option<u16> {
        self.is_vlan_tagged()
            .then(|| read_u16(self.buffer.as_ref(), field::TCI))
    }

    /// The 12-bit VLAN id, if the frame is tagged.
    #[inline]
    pub fn vlan_id(&self) -> Option<u16> {
        self.vlan_tci().map(|tci| tci & 0x0fff)
    }

    /// The 802.1p priority code point, if the frame is tagged.
    #[inline]
    pub fn vlan_pcp(&self) -> Option<u8> {
        self.vlan_tci().map(|tci| (tci >> 13) as u8)
    }

    /// The EtherType of the payload: after the VLAN tag when there is one.
    #[inline]
    pub fn ethertype(&self) -> u16 {
        let field = if self.is_vlan_tagged() {
            field::INNER_ETHERTYPE
        } else {
            field::OUTER_ETHERTYPE
        };
        read_u16(self.buffer.as_ref(), field)
    }

    /// Bytes before the payload: 14, or 18 with a VLAN tag.
    #[inline]
    pub fn header_len(&self) -> usize {
        if self.is_vlan_tagged() {
            field::TAGGED_HEADER_LEN
        } else {
            field::UNTAGGED_HEADER_LEN
        }
    }

    /// The payload, including any link padding (the IP view trims it by its own length).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        clamped(data, self.header_len(), data.len())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    #[inline]
    pub fn set_dst_addr(&mut self, addr: MacAddress) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&addr.0);
    }

    #[inline]
    pub fn set_src_addr(&mut self, addr: MacAddress) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&addr.0);
    }

    /// Sets the payload's EtherType (after the VLAN tag when there is one).
    #[inline]
    pub fn set_ethertype(&mut self, value: u16) {
        let field = if self.is_vlan_tagged() {
            field::INNER_ETHERTYPE
        } else {
            field::OUTER_ETHERTYPE
        };
        write_u16(self.buffer.as_mut(), field, value);
    }

    /// Rewrites the VLAN id of a tagged frame, keeping PCP and DEI. Returns false (and changes
    /// nothing) on an untagged frame: adding a tag changes the frame length, which a view cannot.
    #[inline]
    pub fn set_vlan_id(&mut self, vid: u16) -> bool {
        match self.vlan_tci() {
            Some(tci) => {
                write_u16(
                    self.buffer.as_mut(),
                    field::TCI,
                    (tci & 0xf000) | (vid & 0x0fff),
                );
                true
            }
            None => false,
        }
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

    #[test]
    fn untagged_frame() {
        let frame = EthernetFrame::new_checked(&DNS_QUERY_V4[..]).unwrap();
        assert_eq!(
            frame.dst_addr(),
            MacAddress([0x52, 0x54, 0x00, 0xab, 0xcd, 0xef])
        );
        assert_eq!(frame.src_addr().to_string(), "52:54:00:12:34:56");
        assert!(!frame.is_vlan_tagged());
        assert_eq!(frame.vlan_id(), None);
        assert_eq!(frame.ethertype(), ethertype::IPV4);
        assert_eq!(frame.header_len(), 14);
        assert_eq!(frame.payload(), &DNS_QUERY_V4[14..]);
    }

    #[test]
    fn tagged_frame_honours_the_tag() {
        let frame = EthernetFrame::new_checked(&TCP_SYN_VLAN[..]).unwrap();
        assert!(frame.is_vlan_tagged());
        assert_eq!(frame.vlan_id(), Some(100));
        assert_eq!(frame.vlan_pcp(), Some(3));
        assert_eq!(frame.ethertype(), ethertype::IPV4);
        assert_eq!(frame.header_len(), 18);
        assert_eq!(frame.payload()[0], 0x45);
    }

    #[test]
    fn every_truncation_is_rejected() {
        for frame in [&DNS_QUERY_V4[..], &TCP_SYN_VLAN[..]] {
            let header_len = EthernetFrame::new_checked(frame).unwrap().header_len();
            for len in 0..header_len {
                assert_eq!(
                    EthernetFrame::new_checked(&frame[..len]).unwrap_err(),
                    Error::Truncated,
                    "len {len}"
                );
            }
        }
    }

    #[test]
    fn setters_round_trip() {
        let mut bytes = TCP_SYN_VLAN;
        let mut frame = EthernetFrame::new_checked(&mut bytes[..]).unwrap();
        frame.set_dst_addr(MacAddress::BROADCAST);
        frame.set_src_addr(MacAddress([2, 0, 0, 0, 0, 1]));
        assert!(frame.set_vlan_id(4000));
        frame.set_ethertype(ethertype::IPV6);
        frame.payload_mut()[0] = 0x60;
        assert!(frame.dst_addr().is_multicast());
        assert_eq!(frame.src_addr(), MacAddress([2, 0, 0, 0, 0, 1]));
        assert_eq!(frame.vlan_id(), Some(4000));
        assert_eq!(frame.vlan_pcp(), Some(3), "PCP survives a VID rewrite");
        assert_eq!(frame.ethertype(), ethertype::IPV6);
        assert_eq!(&bytes[12..14], &[0x81, 0x00], "the TPID is untouched");
        assert_eq!(bytes[18], 0x60);

        let mut untagged = DNS_QUERY_V4;
        assert!(
            !EthernetFrame::new_checked(&mut untagged[..])
                .unwrap()
                .set_vlan_id(7)
        );
        assert_eq!(untagged, DNS_QUERY_V4);
    }

    #[test]
    fn agrees_with_etherparse() {
        use etherparse::SlicedPacket;
        for frame in [
            &DNS_QUERY_V4[..],
            &TCP_SYN_VLAN[..],
            &UDP_V6[..],
            &ARP_REQUEST[..],
        ] {
            let ours = EthernetFrame::new_checked(frame).unwrap();
            let theirs = SlicedPacket::from_ethernet(frame).unwrap();
            let Some(etherparse::LinkSlice::Ethernet2(eth)) = &theirs.link else {
                panic!("etherparse saw no Ethernet II header")
            };
            assert_eq!(ours.dst_addr().0, eth.destination());
            assert_eq!(ours.src_addr().0, eth.source());
            assert_eq!(ours.vlan_id(), theirs.vlan_ids().first().map(|v| v.value()));
        }
    }
}
