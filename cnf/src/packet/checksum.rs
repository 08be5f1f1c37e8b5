//! The Internet checksum: RFC 1071 one's complement sums, the IPv4/IPv6 pseudo-header sums that
//! TCP, UDP and ICMPv6 include, and RFC 1624 incremental updates for NAT rewrites.
//!
//! Vocabulary: a *sum* is the folded (16-bit) one's complement sum, not yet complemented; the
//! *checksum* written into a header is `!sum`. A buffer whose checksum field is filled in sums
//! to `0xffff`, which is what the `verify` functions test.

use core::net::{Ipv4Addr, Ipv6Addr};

/// Folds a 64-bit accumulator into 16 bits with end-around carry.
#[inline]
fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The one's complement sum of `data` taken as big-endian 16-bit words; an odd final byte is
/// padded with a zero byte on the right (RFC 1071).
pub fn data(data: &[u8]) -> u16 {
    // Summing 32-bit words into a 64-bit accumulator is equivalent (one's complement addition is
    // associative and byte-order independent when folded) and halves the loop count.
    let mut acc: u64 = 0;
    let mut words = data.chunks_exact(4);
    for word in &mut words {
        acc += u64::from(u32::from_be_bytes([word[0], word[1], word[2], word[3]]));
    }
    let mut rest = words.remainder();
    if rest.len() >= 2 {
        acc += u64::from(u16::from_be_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
    }
    if let Some(&last) = rest.first() {
        acc += u64::from(u16::from_be_bytes([last, 0]));
    }
    fold(acc)
}

/// One's complement sum of several partial sums.
pub fn combine(sums: &[u16]) -> u16 {
    fold(sums.iter().map(|&s| u64::from(s)).sum())
}

/// Sum of the IPv4 pseudo-header (RFC 793 / RFC 768): addresses, zero, protocol, L4 length.
/// The length is at most 65535 in a valid IPv4 packet; it is taken as `u32` so callers can pass a
/// buffer length without a conversion that could fail.
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u32) -> u16 {
    let acc = u64::from(src.to_bits())
        + u64::from(dst.to_bits())
        + u64::from(protocol)
        + u64::from(length);
    fold(acc)
}

/// Sum of the IPv6 pseudo-header (RFC 8200 §8.1): addresses, 32-bit upper-layer length, next
/// header.
pub fn pseudo_header_v6(src: &Ipv6Addr, dst: &Ipv6Addr, next_header: u8, length: u32) -> u16 {
    let src = src.to_bits();
    let dst = dst.to_bits();
    let halves = [
        src >> 64,
        src & u128::from(u64::MAX),
        dst >> 64,
        dst & u128::from(u64::MAX),
    ];
    let mut acc: u64 = 0;
    for half in halves {
        // Two 32-bit words per half: eight of them cannot overflow the 64-bit accumulator.
        let half = half as u64;
        acc += (half >> 32) + (half & 0xffff_ffff);
    }
    acc += u64::from(length) + u64::from(next_header);
    fold(acc)
}

/// The checksum to write into a header whose other bytes (and pseudo-header) sum to `sum`.
#[inline]
pub fn finish(sum: u16) -> u16 {
    !sum
}

/// RFC 1624 eqn. 3: the checksum after one 16-bit word covered by `checksum` changed from `old`
/// to `new`: `HC' = ~(~HC + ~m + m')`.
#[inline]
pub fn update_u16(checksum: u16, old: u16, new: u16) -> u16 {
    !combine(&[!checksum, !old, new])
}

/// The checksum after a 32-bit field (an IPv4 address, a TCP sequence number) changed.
#[inline]
pub fn update_u32(checksum: u16, old: u32, new: u32) -> u16 {
    let (old_hi, old_lo) = ((old >> 16) as u16, old as u16);
    let (new_hi, new_lo) = ((new >> 16) as u16, new as u16);
    !combine(&[!checksum, !old_hi, !old_lo, new_hi, new_lo])
}

/// RFC 1624 for several 32-bit words at once (addresses, a pair of ports): the checksum after
/// `old[i]` became `new[i]` for every `i`, with a single fold. A 32-bit word is two 16-bit
/// words to the one's complement sum, so this equals [`update_u32`] applied word by word.
#[inline]
pub fn update_u32s<const N: usize>(checksum: u16, old: [u32; N], new: [u32; N]) -> u16 {
    let mut acc = u64::from(!checksum);
    for (o, n) in old.into_iter().zip(new) {
        acc += u64::from(!o) + u64::from(n);
    }
    !fold(acc)
}

/// The checksum after an IPv4 address changed (NAT of the address or of a pseudo-header).
#[inline]
pub fn update_ipv4_addr(checksum: u16, old: Ipv4Addr, new: Ipv4Addr) -> u16 {
    update_u32(checksum, old.to_bits(), new.to_bits())
}

/// The checksum after an IPv6 address changed (TCP/UDP/ICMPv6 pseudo-header under NAT66).
pub fn update_ipv6_addr(checksum: u16, old: &Ipv6Addr, new: &Ipv6Addr) -> u16 {
    let (old, new) = (old.octets(), new.octets());
    let mut acc = u64::from(!checksum);
    for (o, n) in old.chunks_exact(2).zip(new.chunks_exact(2)) {
        acc += u64::from(!u16::from_be_bytes([o[0], o[1]]));
        acc += u64::from(u16::from_be_bytes([n[0], n[1]]));
    }
    !fold(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_words_at_once_equal_one_word_at_a_time() {
        let (old, new) = (
            [0xc000_020b, 0x0a64_031e, 0x2710_2328],
            [0xcb00_710a, 0x0a01_0a05, 0x4e20_4e21],
        );
        for c in [0x0000, 0x1234, 0xfffe, 0xffff] {
            let one_by_one = (0..3).fold(c, |c, i| update_u32(c, old[i], new[i]));
            assert_eq!(update_u32s(c, old, new), one_by_one, "checksum {c:#06x}");
        }
    }
    use proptest::prelude::*;

    /// The reference: a plain word-by-word loop straight from RFC 1071 §4.1.
    fn reference_sum(bytes: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        let mut i = 0;
        while i + 1 < bytes.len() {
            acc += u32::from(u16::from_be_bytes([bytes[i], bytes[i + 1]]));
            i += 2;
        }
        if i < bytes.len() {
            acc += u32::from(bytes[i]) << 8;
        }
        while acc >> 16 != 0 {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        assert_eq!(
            data(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0xddf2
        );
    }

    #[test]
    fn ipv4_header_from_wikipedia() {
        // The IPv4 header checksum example everyone checks against: checksum b861.
        let mut header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(finish(data(&header)), 0xb861);
        header[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(data(&header), 0xffff);
    }

    #[test]
    fn odd_length_pads_right() {
        assert_eq!(data(&[0xab]), 0xab00);
        assert_eq!(data(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
        assert_eq!(data(&[]), 0);
    }

    #[test]
    fn pseudo_header_v6_matches_bytes() {
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst: Ipv6Addr = "fe80::ffff:ffff:ffff:ffff".parse().unwrap();
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&src.octets());
        bytes.extend_from_slice(&dst.octets());
        bytes.extend_from_slice(&70_000u32.to_be_bytes());
        bytes.extend_from_slice(&[0, 0, 0, 17]);
        assert_eq!(
            pseudo_header_v6(&src, &dst, 17, 70_000),
            reference_sum(&bytes)
        );
    }

    proptest! {
        #![proptest_config(crate::packet::proptest_config())]

        #[test]
        fn data_matches_reference(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(data(&bytes), reference_sum(&bytes));
        }

        #[test]
        fn pseudo_v4_matches_bytes(src: u32, dst: u32, proto: u8, len: u16) {
            let mut bytes = Vec::new();
            bytes.extend_from_slice(&src.to_be_bytes());
            bytes.extend_from_slice(&dst.to_be_bytes());
            bytes.extend_from_slice(&[0, proto]);
            bytes.extend_from_slice(&len.to_be_bytes());
            prop_assert_eq!(
                pseudo_header_v4(Ipv4Addr::from_bits(src), Ipv4Addr::from_bits(dst), proto, len.into()),
                reference_sum(&bytes)
            );
        }

        #[test]
        fn pseudo_v6_matches_bytes(src: u128, dst: u128, nh: u8, len: u32) {
            let mut bytes = Vec::new();
            bytes.extend_from_slice(&src.to_be_bytes());
            bytes.extend_from_slice(&dst.to_be_bytes());
            bytes.extend_from_slice(&len.to_be_bytes());
            bytes.extend_from_slice(&[0, 0, 0, nh]);
            prop_assert_eq!(
                pseudo_header_v6(&Ipv6Addr::from_bits(src), &Ipv6Addr::from_bits(dst), nh, len),
                reference_sum(&bytes)
            );
        }

        /// Replace a 16-bit word and a 32-bit word in a random checksummed buffer: the
        /// incremental result must verify exactly like a full recomputation.
        #[test]
        fn incremental_matches_full(
            mut body in proptest::collection::vec(any::<u8>(), 8..64),
            new16: u16,
            new32: u32,
            new128: u128,
        ) {
            // Keep a non-zero word so the sum is never the all-zero corner case, where one's
            // complement has two zeros and eqn. 3 may legitimately pick the other one.
            body[0] |= 0x80;
            // Header fields sit on 16-bit boundaries; so does the address appended below.
            body.truncate(body.len() & !1);
            let full = |b: &[u8]| finish(data(b));
            let checksum = full(&body);

            let old16 = u16::from_be_bytes([body[2], body[3]]);
            body[2..4].copy_from_slice(&new16.to_be_bytes());
            let checksum = update_u16(checksum, old16, new16);
            prop_assert_eq!(checksum, full(&body));

            let old32 = u32::from_be_bytes([body[4], body[5], body[6], body[7]]);
            body[4..8].copy_from_slice(&new32.to_be_bytes());
            let checksum = update_u32(checksum, old32, new32);
            prop_assert_eq!(checksum, full(&body));

            let mut with_v6 = body.clone();
            with_v6.extend_from_slice(&[0; 16]);
            let at = with_v6.len() - 16;
            let checksum = full(&with_v6);
            let new = Ipv6Addr::from_bits(new128);
            with_v6[at..].copy_from_slice(&new.octets());
            let checksum = update_ipv6_addr(checksum, &Ipv6Addr::UNSPECIFIED, &new);
            prop_assert_eq!(checksum, full(&with_v6));
        }
    }
}
