//! The 5-tuple a session is found by, in a compact form: both address families in 16 bytes
//! (IPv4 as IPv4-mapped IPv6, which never appears as a real address on the wire), so one key type
//! serves both and a key is 37 bytes of data.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Source and destination of one direction of a flow. For ICMP echo, both ports hold the echo
/// identifier, so a request and its reply are one flow.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    src: [u8; 16],
    dst: [u8; 16],
    src_port: u16,
    dst_port: u16,
    protocol: u8,
}

fn pack(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

fn unpack(bytes: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(bytes);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

impl FlowKey {
    pub fn new(protocol: u8, src: IpAddr, src_port: u16, dst: IpAddr, dst_port: u16) -> Self {
        Self {
            src: pack(src),
            dst: pack(dst),
            src_port,
            dst_port,
            protocol,
        }
    }

    pub fn v4(protocol: u8, src: Ipv4Addr, src_port: u16, dst: Ipv4Addr, dst_port: u16) -> Self {
        Self::new(protocol, src.into(), src_port, dst.into(), dst_port)
    }

    pub fn protocol(&self) -> u8 {
        self.protocol
    }

    pub fn src(&self) -> IpAddr {
        unpack(self.src)
    }

    pub fn dst(&self) -> IpAddr {
        unpack(self.dst)
    }

    pub fn src_port(&self) -> u16 {
        self.src_port
    }

    pub fn dst_port(&self) -> u16 {
        self.dst_port
    }

    /// The same flow seen from the other end.
    pub fn reversed(&self) -> Self {
        Self {
            src: self.dst,
            dst: self.src,
            src_port: self.dst_port,
            dst_port: self.src_port,
            protocol: self.protocol,
        }
    }

    /// The orientation both directions of a flow share: the lower endpoint first. Lets one index
    /// entry serve a flow's packets both ways.
    pub fn canonical(&self) -> Self {
        if (self.src, self.src_port) <= (self.dst, self.dst_port) {
            *self
        } else {
            self.reversed()
        }
    }

    /// Bytes hashed for the index (the canonical form's fields, in a fixed order).
    pub(crate) fn hash_with(&self, state: &impl std::hash::BuildHasher) -> u64 {
        let c = self.canonical();
        let mut bytes = [0u8; 37];
        bytes[..16].copy_from_slice(&c.src);
        bytes[16..32].copy_from_slice(&c.dst);
        bytes[32..34].copy_from_slice(&c.src_port.to_be_bytes());
        bytes[34..36].copy_from_slice(&c.dst_port.to_be_bytes());
        bytes[36] = c.protocol;
        state.hash_one(bytes)
    }
}

impl core::fmt::Debug for FlowKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{self}")
    }
}

impl core::fmt::Display for FlowKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let proto = match self.protocol {
            1 => "icmp",
            6 => "tcp",
            17 => "udp",
            58 => "icmpv6",
            _ => "ip",
        };
        let endpoint = |addr: IpAddr, port: u16| match addr {
            IpAddr::V4(a) => format!("{a}:{port}"),
            IpAddr::V6(a) => format!("[{a}]:{port}"),
        };
        write!(
            f,
            "{proto} {} -> {}",
            endpoint(self.src(), self.src_port),
            endpoint(self.dst(), self.dst_port)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_round_trip_and_stay_distinct() {
        let k4 = FlowKey::v4(
            6,
            Ipv4Addr::new(10, 1, 10, 5),
            40000,
            Ipv4Addr::new(10, 255, 1, 10),
            443,
        );
        assert_eq!(k4.src(), IpAddr::V4(Ipv4Addr::new(10, 1, 10, 5)));
        assert_eq!(k4.dst_port(), 443);
        let v6: IpAddr = "2001:db8::1"
            .parse()
            .unwrap_or(IpAddr::V6(Ipv6Addr::LOCALHOST));
        let k6 = FlowKey::new(17, v6, 1, v6, 2);
        assert_eq!(k6.src(), v6);
        assert_eq!(k4.to_string(), "tcp 10.1.10.5:40000 -> 10.255.1.10:443");
    }

    #[test]
    fn both_directions_share_a_canonical_form_and_hash() {
        let k = FlowKey::v4(
            17,
            Ipv4Addr::new(192, 0, 2, 11),
            20000,
            Ipv4Addr::new(203, 0, 113, 10),
            30000,
        );
        let state = foldhash::fast::FixedState::with_seed(7);
        assert_eq!(k.canonical(), k.reversed().canonical());
        assert_eq!(k.hash_with(&state), k.reversed().hash_with(&state));
        assert_ne!(k, k.reversed());
        assert_eq!(k.reversed().reversed(), k);
    }
}
