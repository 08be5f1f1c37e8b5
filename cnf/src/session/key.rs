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

/// An address as a packet holds it, before it goes into a [`FlowKey`].
#[derive(Clone, Copy)]
pub(crate) enum Octets {
    V4([u8; 4]),
    V6([u8; 16]),
}

impl Octets {
    #[inline]
    fn packed(self) -> [u8; 16] {
        match self {
            Octets::V4([a, b, c, d]) => [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d],
            Octets::V6(v6) => v6,
        }
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

    /// A key from addresses as the packet holds them: 4 bytes (IPv4) or 16 (IPv6).
    #[inline]
    pub(crate) fn from_octets(
        protocol: u8,
        src: Octets,
        src_port: u16,
        dst: Octets,
        dst_port: u16,
    ) -> Self {
        Self {
            src: src.packed(),
            dst: dst.packed(),
            src_port,
            dst_port,
            protocol,
        }
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

    /// How `self` (a session's key) sees a packet's 5-tuple `probe`: `Some(false)` when they are
    /// the same, `Some(true)` when `probe` is this flow reversed, `None` otherwise.
    #[inline]
    pub fn orientation(&self, probe: &FlowKey) -> Option<bool> {
        if self.protocol != probe.protocol {
            return None;
        }
        if self.src == probe.src
            && self.dst == probe.dst
            && self.src_port == probe.src_port
            && self.dst_port == probe.dst_port
        {
            Some(false)
        } else if self.src == probe.dst
            && self.dst == probe.src
            && self.src_port == probe.dst_port
            && self.dst_port == probe.src_port
        {
            Some(true)
        } else {
            None
        }
    }

    /// The IPv4 source and destination, when this is an IPv4 flow (IPv4-mapped in the key).
    #[inline]
    pub fn v4_addrs(&self) -> Option<([u8; 4], [u8; 4])> {
        let v4 = |a: &[u8; 16]| -> Option<[u8; 4]> {
            let [
                p0,
                p1,
                p2,
                p3,
                p4,
                p5,
                p6,
                p7,
                p8,
                p9,
                p10,
                p11,
                a0,
                a1,
                a2,
                a3,
            ] = *a;
            let prefix = [p0, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11];
            (prefix == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]).then_some([a0, a1, a2, a3])
        };
        Some((v4(&self.src)?, v4(&self.dst)?))
    }
}

/// Hashes flow keys for the session index, alike in both orientations of a flow (so one index
/// entry serves a flow's packets both ways), seeded per process so that flows cannot be chosen
/// to collide without knowing the seed.
///
/// Each endpoint (address, port) is mixed on its own with a folded 64 × 64 → 128-bit multiply
/// (foldhash's and wyhash's primitive) and the two are added: addition commutes, so there is no
/// canonical form to build and compare on the fast path. About 20 instructions per key.
#[derive(Clone, Copy, Debug)]
pub struct FlowHasher {
    k: [u64; 4],
}

#[inline]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

impl FlowHasher {
    pub fn new(seed: u64) -> Self {
        let mut state = seed;
        let mut next = || {
            // splitmix64: spreads one seed over four independent-looking keys.
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            // An odd key never zeroes the multiply.
            (z ^ (z >> 31)) | 1
        };
        Self {
            k: [next(), next(), next(), next()],
        }
    }

    #[inline]
    pub fn hash(&self, key: &FlowKey) -> u64 {
        let a = self.endpoint(&key.src, key.src_port);
        let b = self.endpoint(&key.dst, key.dst_port);
        folded_multiply(
            a.wrapping_add(b) ^ self.k[2],
            u64::from(key.protocol) ^ self.k[3],
        )
    }

    #[inline]
    fn endpoint(&self, addr: &[u8; 16], port: u16) -> u64 {
        let (hi, lo) = addr.split_at(8);
        let hi = u64::from_le_bytes(hi.try_into().unwrap_or([0; 8]));
        let lo = u64::from_le_bytes(lo.try_into().unwrap_or([0; 8]));
        // The port lands on the two bytes an IPv4-mapped address has as zero.
        folded_multiply(hi ^ self.k[0], lo ^ self.k[1] ^ u64::from(port))
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
        let hasher = FlowHasher::new(7);
        assert_eq!(k.canonical(), k.reversed().canonical());
        assert_eq!(hasher.hash(&k), hasher.hash(&k.reversed()));
        assert_ne!(hasher.hash(&k), FlowHasher::new(8).hash(&k));
        assert_eq!(k.orientation(&k), Some(false));
        assert_eq!(k.orientation(&k.reversed()), Some(true));
        let other = FlowKey::v4(
            17,
            Ipv4Addr::new(192, 0, 2, 11),
            20001,
            Ipv4Addr::new(203, 0, 113, 10),
            30000,
        );
        assert_eq!(k.orientation(&other), None);
        assert_ne!(hasher.hash(&k), hasher.hash(&other));
        assert_eq!(k.v4_addrs(), Some(([192, 0, 2, 11], [203, 0, 113, 10])));
        let same = FlowKey::from_octets(
            17,
            Octets::V4([192, 0, 2, 11]),
            20000,
            Octets::V4([203, 0, 113, 10]),
            30000,
        );
        assert_eq!(same, k);
        assert_ne!(k, k.reversed());
        assert_eq!(k.reversed().reversed(), k);
    }
}
