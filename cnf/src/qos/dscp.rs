//! DSCP marking of egress packets: the class's code point goes into the IPv4 DS field (with the
//! header checksum updated incrementally, RFC 1624) or the IPv6 traffic class. The two ECN bits
//! are kept: they belong to the endpoints' congestion control, not to the router's classes.

use crate::packet::{Ipv4Packet, Ipv6Packet, checksum};

/// Writes `dscp` (0–63) into the IP header at the start of `packet`. The packet has been
/// parsed by the pipeline already; a buffer that is not an IPv4 or IPv6 header is left alone
/// and `false` returned.
#[inline]
pub fn mark(packet: &mut [u8], dscp: u8) -> bool {
    let dscp = dscp & 0x3f;
    match packet.first().map(|b| b >> 4) {
        Some(4) => {
            // A header of known length, so that the view's field accesses need no checks.
            let Some(header) = packet.first_chunk_mut::<20>() else {
                return false;
            };
            // Bytes 0-1 (version/IHL and DS field) are one word of the header checksum.
            let old = u16::from_be_bytes([header[0], header[1]]);
            let new = (old & 0xff03) | (u16::from(dscp) << 2);
            if new != old {
                let mut ip = Ipv4Packet::new_unchecked(&mut header[..]);
                ip.set_dscp(dscp);
                let sum = checksum::update_u16(ip.checksum(), old, new);
                ip.set_checksum(sum);
            }
            true
        }
        Some(6) if packet.len() >= 40 => {
            Ipv6Packet::new_unchecked(packet).set_dscp(dscp);
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(tos: u8) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        let mut ip = Ipv4Packet::new_unchecked(&mut p[..]);
        ip.set_version_and_header_len(20);
        ip.set_total_len(40);
        ip.set_ttl(64);
        ip.set_protocol(17);
        ip.set_src_addr(Ipv4Addr::new(10, 1, 10, 5));
        ip.set_dst_addr(Ipv4Addr::new(203, 0, 113, 10));
        ip.set_dscp(tos >> 2);
        ip.set_ecn(tos & 3);
        ip.fill_checksum();
        p
    }

    #[test]
    fn ipv4_marking_keeps_ecn_and_a_valid_checksum_for_every_code_point() {
        for before in [0u8, 0x01, 0x02, 0x03, 0xb8, 0xff] {
            for dscp in 0..64u8 {
                let mut p = v4(before);
                assert!(mark(&mut p, dscp));
                let ip = Ipv4Packet::new_checked(&p[..]).expect("still a valid IPv4 header");
                assert_eq!(ip.dscp(), dscp);
                assert_eq!(ip.ecn(), before & 3, "ECN bits are the endpoints'");
                assert!(ip.verify_checksum(), "before {before:#x}, dscp {dscp}");
                // The incremental update equals a full recomputation.
                let mut full = p.clone();
                Ipv4Packet::new_unchecked(&mut full[..]).fill_checksum();
                assert_eq!(full, p);
            }
        }
    }

    #[test]
    fn ipv6_marking_writes_the_traffic_class_and_keeps_the_flow_label() {
        let mut p = vec![0u8; 48];
        {
            let mut ip = Ipv6Packet::new_unchecked(&mut p[..]);
            ip.set_version();
            ip.set_traffic_class(0x01);
            ip.set_flow_label(0xabcde);
            ip.set_payload_len(8);
            ip.set_next_header(17);
            ip.set_hop_limit(64);
            ip.set_src_addr(Ipv6Addr::LOCALHOST);
            ip.set_dst_addr(Ipv6Addr::LOCALHOST);
        }
        assert!(mark(&mut p, 46));
        let ip = Ipv6Packet::new_checked(&p[..]).expect("still a valid IPv6 header");
        assert_eq!((ip.dscp(), ip.ecn(), ip.flow_label()), (46, 1, 0xabcde));
        assert_eq!(ip.version(), 6);
    }

    #[test]
    fn anything_else_is_left_alone() {
        for mut p in [vec![], vec![0x45; 10], vec![0x60; 39], vec![0x00; 60]] {
            let before = p.clone();
            assert!(!mark(&mut p, 46));
            assert_eq!(p, before);
        }
    }
}
