//! Longest-prefix match: CIDR [`Prefix`]es and [`Lpm`], a compiled, read-only table from IPv4
//! and IPv6 prefixes to `u32` values.
//!
//! Each address family is a multibit trie in the style of Poptrie (Asai and Ohara, SIGCOMM
//! 2015): every node consumes 6 bits of the address and holds two 64-bit bitmaps, one marking
//! the slots that have a child node and one marking where a run of equal leaves starts. Children
//! and leaves of a node are stored contiguously, so the index of slot `s` is a base plus a
//! popcount of the bitmap below `s`. Prefixes are expanded to the node's stride and pushed down
//! to the leaves when the table is built, so a lookup walks at most 6 nodes (IPv4) or 22 (IPv6)
//! and reads one leaf at the end: no backtracking, no allocation, no pointer other than array
//! indices. Levels that store no prefix and have a single child are elided (the next node
//! checks the skipped bits in one comparison), which keeps sparse IPv6 tables shallow. Nodes
//! are 32 bytes, so a table of a few thousand prefixes stays in L1/L2.
//!
//! The table is immutable: the router compiles a new one with each config.

use core::net::IpAddr;
use std::collections::VecDeque;

/// Bits of the address consumed per trie level.
const STRIDE: u32 = 6;
/// Slots per node.
const SLOTS: usize = 1 << STRIDE;
/// "No value" in leaves and "no child" while building.
const NONE: u32 = u32::MAX;

/// An IPv4 or IPv6 prefix: the address bits left-aligned in a `u128`, host bits zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    v6: bool,
    bits: u128,
    len: u8,
}

impl Prefix {
    /// The prefix of `addr` with `len` bits (clamped to the family's width); host bits are
    /// cleared, so `10.1.2.3/24` is `10.1.2.0/24`.
    pub fn new(addr: IpAddr, len: u8) -> Prefix {
        let (v6, key) = key(addr);
        let len = len.min(if v6 { 128 } else { 32 });
        Prefix {
            v6,
            bits: key & mask(len),
            len,
        }
    }

    /// Parses `address/length` (`10.20.0.0/16`, `2001:db8::/48`). Host bits are cleared, as the
    /// operator's compiler does, so an interface address `10.1.0.1/24` gives its subnet. `None`
    /// when the address does not parse, the length is missing, not decimal or too long.
    pub fn parse(text: &str) -> Option<Prefix> {
        let (addr, len) = text.split_once('/')?;
        let addr: IpAddr = addr.parse().ok()?;
        // `u8::from_str` also takes "+24"; a CIDR length is plain digits.
        if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let len: u8 = len.parse().ok()?;
        let width = if addr.is_ipv6() { 128 } else { 32 };
        (len <= width).then(|| Prefix::new(addr, len))
    }

    /// Whether this is an IPv6 prefix.
    pub fn is_v6(&self) -> bool {
        self.v6
    }

    /// The prefix length in bits.
    pub fn length(&self) -> u8 {
        self.len
    }

    /// Whether `addr` is inside the prefix (never, for the other family).
    pub fn contains(&self, addr: IpAddr) -> bool {
        let (v6, key) = key(addr);
        v6 == self.v6 && key & mask(self.len) == self.bits
    }
}

/// The address as a family flag and its bits left-aligned in a `u128`.
#[inline]
fn key(addr: IpAddr) -> (bool, u128) {
    match addr {
        IpAddr::V4(a) => (false, u128::from(a.to_bits()) << 96),
        IpAddr::V6(a) => (true, a.to_bits()),
    }
}

/// The top `len` bits set.
#[inline]
fn mask(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

/// The 6-bit slot of `key` at bit `offset`; bits past the key's end read as zero.
#[inline]
fn slot(key: u128, offset: u32) -> Option<u32> {
    Some((key.checked_shl(offset)? >> (128 - STRIDE)) as u32)
}

/// A compiled prefix table for both families. Values are the caller's (e.g. a tenant id).
#[derive(Clone, Debug)]
pub struct Lpm {
    v4: Trie,
    v6: Trie,
}

impl Lpm {
    /// Compiles `entries`. A prefix listed twice keeps its first value. Also returns, for each
    /// entry in input order, the value of the longest strictly shorter prefix of the same family
    /// that contains it (`None` when there is none, or when the entry repeats an earlier prefix).
    pub fn build(entries: &[(Prefix, u32)]) -> (Lpm, Vec<Option<u32>>) {
        let mut covering = vec![None; entries.len()];
        let v4 = Trie::build(entries, false, &mut covering);
        let v6 = Trie::build(entries, true, &mut covering);
        (Lpm { v4, v6 }, covering)
    }

    /// The value of the longest prefix containing `addr`. Never allocates.
    #[inline]
    pub fn lookup(&self, addr: IpAddr) -> Option<u32> {
        match key(addr) {
            (false, k) => self.v4.lookup(k),
            (true, k) => self.v6.lookup(k),
        }
    }
}

/// One trie node: which slots have children, where leaf runs start, and where the node's
/// children and leaves begin in their arrays.
#[derive(Clone, Copy, Debug)]
struct Node {
    children: u64,
    leaf_runs: u64,
    child_base: u32,
    leaf_base: u32,
    /// Address bits of the single-branch levels elided above this node (a multiple of the
    /// stride; 0 when none). They must equal `Trie::paths[node]`.
    skip_bits: u32,
    /// The value of every address that leaves the elided path.
    off_path: u32,
}

/// The trie of one address family.
#[derive(Clone, Debug)]
struct Trie {
    nodes: Vec<Node>,
    leaves: Vec<u32>,
    /// Per node, the elided path's bits, right-aligned. Read only when `skip_bits != 0`.
    paths: Vec<u128>,
}

/// A node of the build-time trie: every slot expanded, values not yet pushed to the leaves.
struct BuildNode {
    /// Per slot: the longest prefix stored at this level covering the slot, as (length, value).
    best: [Option<(u8, u32)>; SLOTS],
    child: [u32; SLOTS],
}

impl BuildNode {
    fn new() -> BuildNode {
        BuildNode {
            best: [None; SLOTS],
            child: [NONE; SLOTS],
        }
    }
}

impl Trie {
    /// Builds the trie of the entries of one family and fills in their `covering` values.
    fn build(entries: &[(Prefix, u32)], v6: bool, covering: &mut [Option<u32>]) -> Trie {
        let mut order: Vec<usize> = (0..entries.len())
            .filter(|&i| entries.get(i).is_some_and(|(p, _)| p.v6 == v6))
            .collect();
        // Shortest first, so that every prefix overwrites the expanded slots of the shorter
        // prefixes around it and finds its covering prefix already in place. The sort is
        // stable: of two equal prefixes, the first listed is inserted first and kept.
        order.sort_by_key(|&i| entries.get(i).map_or(0, |(p, _)| p.len));
        let mut nodes = vec![BuildNode::new()];
        for i in order {
            let Some(&(prefix, value)) = entries.get(i) else {
                continue;
            };
            let cover = insert(&mut nodes, prefix, value);
            if let Some(c) = covering.get_mut(i) {
                *c = cover.unwrap_or(None);
            }
        }
        compress(&nodes)
    }

    #[inline]
    fn lookup(&self, key: u128) -> Option<u32> {
        let mut index = 0;
        let mut node = self.nodes.first()?;
        let mut offset = 0;
        loop {
            if node.skip_bits != 0 {
                let path = key.checked_shl(offset)? >> (128 - node.skip_bits);
                if path != *self.paths.get(index)? {
                    return (node.off_path != NONE).then_some(node.off_path);
                }
                offset += node.skip_bits;
            }
            let s = slot(key, offset)?;
            let below = u64::MAX >> (63 - s);
            if node.children & (1 << s) != 0 {
                let i = node
                    .child_base
                    .wrapping_add((node.children & below).count_ones())
                    .wrapping_sub(1);
                index = i as usize;
                node = self.nodes.get(index)?;
                offset += STRIDE;
            } else {
                let i = node
                    .leaf_base
                    .wrapping_add((node.leaf_runs & below).count_ones())
                    .wrapping_sub(1);
                let value = *self.leaves.get(i as usize)?;
                return (value != NONE).then_some(value);
            }
        }
    }
}

/// Inserts `prefix` (all shorter prefixes already inserted). Returns `None` when the prefix
/// repeats one already inserted, else its covering value.
fn insert(nodes: &mut Vec<BuildNode>, prefix: Prefix, value: u32) -> Option<Option<u32>> {
    // A prefix of length `len` lives at the level whose 6 bits hold its last bit; `/0` at the
    // root, expanded over all 64 slots.
    let level = u32::from(prefix.len.saturating_sub(1)) / STRIDE;
    let mut cover = None;
    let mut node = 0usize;
    for l in 0..level {
        let s = slot(prefix.bits, l * STRIDE)? as usize;
        let here = nodes.get_mut(node)?;
        if let Some((_, v)) = here.best[s] {
            cover = Some(v);
        }
        node = match here.child[s] {
            NONE => {
                let fresh = nodes.len();
                nodes.get_mut(node)?.child[s] = u32::try_from(fresh).ok()?;
                nodes.push(BuildNode::new());
                fresh
            }
            c => c as usize,
        };
    }
    let first = slot(prefix.bits, level * STRIDE)? as usize;
    let span = 1usize << ((level + 1) * STRIDE - u32::from(prefix.len));
    let here = nodes.get_mut(node)?;
    match here.best[first] {
        Some((len, _)) if len == prefix.len => return None,
        // Inserted in length order, anything stored here is shorter and contains the prefix.
        Some((_, v)) => cover = Some(v),
        None => {}
    }
    for best in here.best.iter_mut().skip(first).take(span) {
        *best = Some((prefix.len, value));
    }
    Some(cover)
}

/// Pushes every slot's value down to the leaves below it, elides single-branch levels, and lays
/// the nodes out breadth-first, so that each node's children are consecutive.
fn compress(build: &[BuildNode]) -> Trie {
    let mut nodes = Vec::with_capacity(build.len());
    let mut leaves = Vec::new();
    let mut paths = Vec::with_capacity(build.len());
    // (build node, value inherited from the slot above it, elided bits, elided path)
    let mut queue = VecDeque::from([(0usize, NONE, 0u32, 0u128)]);
    let mut allocated: u32 = 1;
    while let Some((b, inherited, skip_bits, path)) = queue.pop_front() {
        let Some(bn) = build.get(b) else { continue };
        let mut node = Node {
            children: 0,
            leaf_runs: 0,
            child_base: allocated,
            leaf_base: u32::try_from(leaves.len()).unwrap_or(NONE),
            skip_bits,
            off_path: inherited,
        };
        let mut previous = None;
        for s in 0..SLOTS {
            let value = bn.best[s].map_or(inherited, |(_, v)| v);
            match bn.child[s] {
                NONE => {
                    if previous != Some(value) {
                        node.leaf_runs |= 1 << s;
                        leaves.push(value);
                        previous = Some(value);
                    }
                }
                child => {
                    node.children |= 1 << s;
                    allocated += 1;
                    let (child, skip_bits, path) = elide(build, child as usize);
                    queue.push_back((child, value, skip_bits, path));
                }
            }
        }
        nodes.push(node);
        paths.push(path);
    }
    Trie {
        nodes,
        leaves,
        paths,
    }
}

/// Follows `node` down while it stores no prefix and has exactly one child: every address off
/// that path gets the value inherited from above, so a lookup can compare the path's bits at
/// once instead of visiting each level. Returns the first node that must be kept, with the
/// elided bits and path. IPv6 prefixes sharing `2001:db8:` and /128 host routes make long
/// such chains.
fn elide(build: &[BuildNode], mut node: usize) -> (usize, u32, u128) {
    let (mut bits, mut path) = (0, 0u128);
    while let Some(bn) = build.get(node) {
        let mut children = bn.child.iter().enumerate().filter(|&(_, &c)| c != NONE);
        let (Some((s, &only)), None) = (children.next(), children.next()) else {
            break;
        };
        if bn.best.iter().any(Option::is_some) {
            break;
        }
        path = (path << STRIDE) | s as u128;
        bits += STRIDE;
        node = only as usize;
    }
    (node, bits, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{Ipv4Addr, Ipv6Addr};
    use proptest::prelude::*;

    fn p(text: &str) -> Prefix {
        Prefix::parse(text).unwrap()
    }

    fn v4(text: &str) -> IpAddr {
        IpAddr::V4(text.parse::<Ipv4Addr>().unwrap())
    }

    /// The reference: scan every entry, keep the longest (first among repeats).
    fn naive(entries: &[(Prefix, u32)], addr: IpAddr) -> Option<u32> {
        let mut best: Option<(u8, u32)> = None;
        for &(prefix, value) in entries {
            if prefix.contains(addr) && best.is_none_or(|(len, _)| prefix.len > len) {
                best = Some((prefix.len, value));
            }
        }
        best.map(|(_, v)| v)
    }

    fn naive_covering(entries: &[(Prefix, u32)], i: usize) -> Option<u32> {
        let (prefix, _) = entries[i];
        if entries[..i].iter().any(|(q, _)| *q == prefix) {
            return None;
        }
        let addr = if prefix.v6 {
            IpAddr::V6(Ipv6Addr::from_bits(prefix.bits))
        } else {
            IpAddr::V4(Ipv4Addr::from_bits((prefix.bits >> 96) as u32))
        };
        let shorter: Vec<_> = entries
            .iter()
            .copied()
            .filter(|(q, _)| q.len < prefix.len)
            .collect();
        naive(&shorter, addr)
    }

    #[test]
    fn parse_accepts_cidr_and_clears_host_bits() {
        assert_eq!(p("10.1.0.1/24"), p("10.1.0.0/24"));
        assert_eq!(p("0.0.0.0/0").length(), 0);
        assert_eq!(p("2001:db8::1/128").length(), 128);
        assert!(p("2001:db8::/48").is_v6());
        assert!(!p("2001:db8::/48").contains(v4("32.1.13.184")));
        for bad in [
            "10.255.1.300/32",
            "10.0.0.0",
            "10.0.0.0/",
            "10.0.0.0/33",
            "10.0.0.0/+8",
            "10.0.0.0/ 8",
            "10.0.0.0/0008",
            "2001:db8::/129",
            "pos/24",
            "",
        ] {
            assert_eq!(Prefix::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn longest_match_wins_and_misses_are_none() {
        let entries = [
            (p("0.0.0.0/0"), 0),
            (p("10.0.0.0/8"), 1),
            (p("10.255.1.0/24"), 2),
            (p("10.255.1.10/32"), 3),
            (p("10.255.1.11/32"), 4),
            (p("2001:db8::/32"), 5),
        ];
        let (lpm, covering) = Lpm::build(&entries);
        assert_eq!(lpm.lookup(v4("10.255.1.10")), Some(3));
        assert_eq!(lpm.lookup(v4("10.255.1.11")), Some(4));
        assert_eq!(lpm.lookup(v4("10.255.1.12")), Some(2));
        assert_eq!(lpm.lookup(v4("10.9.9.9")), Some(1));
        assert_eq!(lpm.lookup(v4("192.0.2.1")), Some(0));
        assert_eq!(lpm.lookup("2001:db8:1::1".parse().unwrap()), Some(5));
        assert_eq!(lpm.lookup("2001:db9::1".parse().unwrap()), None);
        assert_eq!(covering, [None, Some(0), Some(1), Some(2), Some(2), None]);
    }

    #[test]
    fn repeated_prefix_keeps_first_value() {
        let entries = [(p("10.0.0.0/8"), 7), (p("10.0.0.0/8"), 9)];
        let (lpm, covering) = Lpm::build(&entries);
        assert_eq!(lpm.lookup(v4("10.1.2.3")), Some(7));
        assert_eq!(covering, [None, None]);
    }

    #[test]
    fn empty_table_matches_nothing() {
        let (lpm, _) = Lpm::build(&[]);
        assert_eq!(lpm.lookup(v4("10.1.2.3")), None);
        assert_eq!(lpm.lookup("::1".parse().unwrap()), None);
    }

    #[test]
    fn every_length_at_stride_boundaries() {
        // One prefix per length along one address: each address that leaves the chain after
        // bit n must match the /n entry.
        let base: u128 = 0x2001_0db8_85a3_0000_0000_8a2e_0370_7334;
        let entries: Vec<_> = (0..=128u8)
            .map(|len| {
                let addr = IpAddr::V6(Ipv6Addr::from_bits(base));
                (Prefix::new(addr, len), u32::from(len))
            })
            .collect();
        let (lpm, covering) = Lpm::build(&entries);
        for len in 0..128u32 {
            let flipped = base ^ (1u128 << (127 - len));
            let got = lpm.lookup(IpAddr::V6(Ipv6Addr::from_bits(flipped)));
            assert_eq!(got, Some(len), "address differing at bit {len}");
        }
        assert_eq!(lpm.lookup(IpAddr::V6(Ipv6Addr::from_bits(base))), Some(128));
        for (len, c) in covering.iter().enumerate() {
            assert_eq!(*c, len.checked_sub(1).map(|l| l as u32));
        }
    }

    #[test]
    fn single_branch_levels_are_elided() {
        let entries = [
            (p("::/0"), 0),
            (p("2001:db8::/32"), 1),
            (p("2001:db8:0:1::7/128"), 2),
        ];
        let (lpm, _) = Lpm::build(&entries);
        // Root, the /32's node after 5 elided levels, the /128's node after 15.
        assert_eq!(lpm.v6.nodes.len(), 3, "{:?}", lpm.v6.nodes);
        let at = |text: &str| lpm.lookup(text.parse().unwrap());
        assert_eq!(at("2001:db8:0:1::7"), Some(2));
        // Leaving the elided path at its first, middle and last level.
        assert_eq!(at("2001:db9::"), Some(0));
        assert_eq!(at("2001:db8:0:2::7"), Some(1));
        assert_eq!(at("2001:db8:0:1::6"), Some(1));
        assert_eq!(at("2001:db8:0:1:8000::7"), Some(1));
        assert_eq!(at("3001:db8::"), Some(0));
    }

    /// Prefixes clustered around a few base addresses, so that they nest and overlap.
    fn prefix_set(width: u8) -> impl Strategy<Value = Vec<(u128, u8)>> {
        let bases = prop::collection::vec(any::<u128>(), 1..4);
        bases.prop_flat_map(move |bases| {
            let n = bases.len();
            prop::collection::vec((0..n, 0..=width, any::<u128>(), any::<bool>()), 0..60).prop_map(
                move |specs| {
                    specs
                        .into_iter()
                        .map(|(b, len, noise, exact)| {
                            // Keep the base's bits most of the time; sometimes a random prefix.
                            let bits = if exact {
                                bases[b]
                            } else {
                                bases[b] ^ (noise >> 8)
                            };
                            (bits, len)
                        })
                        .collect()
                },
            )
        })
    }

    fn addresses() -> impl Strategy<Value = Vec<(u128, u8)>> {
        prop::collection::vec((any::<u128>(), 0..=128u8), 1..64)
    }

    fn check(v6: bool, prefixes: Vec<(u128, u8)>, probes: Vec<(u128, u8)>) {
        let to_addr = |bits: u128| {
            if v6 {
                IpAddr::V6(Ipv6Addr::from_bits(bits))
            } else {
                IpAddr::V4(Ipv4Addr::from_bits((bits >> 96) as u32))
            }
        };
        let entries: Vec<(Prefix, u32)> = prefixes
            .iter()
            .enumerate()
            .map(|(i, &(bits, len))| (Prefix::new(to_addr(bits), len), i as u32))
            .collect();
        let (lpm, covering) = Lpm::build(&entries);
        // Probe random addresses and addresses inside each prefix (sharing `keep` leading
        // bits with it), where nesting is exercised.
        let mut addrs: Vec<IpAddr> = probes.iter().map(|&(a, _)| to_addr(a)).collect();
        for (&(bits, _), &(noise, keep)) in prefixes.iter().zip(probes.iter().cycle()) {
            addrs.push(to_addr((bits & mask(keep)) | (noise & !mask(keep))));
        }
        for addr in addrs {
            assert_eq!(lpm.lookup(addr), naive(&entries, addr), "{addr}");
        }
        for (i, &cover) in covering.iter().enumerate() {
            assert_eq!(cover, naive_covering(&entries, i), "covering of {i}");
        }
    }

    proptest! {
        #![proptest_config(crate::packet::proptest_config())]

        #[test]
        fn v4_agrees_with_linear_scan(prefixes in prefix_set(32), probes in addresses()) {
            check(false, prefixes, probes);
        }

        #[test]
        fn v6_agrees_with_linear_scan(prefixes in prefix_set(128), probes in addresses()) {
            check(true, prefixes, probes);
        }
    }
}
