//! The router's own IPv4 neighbour table. With AF_XDP the kernel never sees the router's
//! interfaces' traffic, so the router answers ARP for its addresses and resolves its next hops
//! itself: a packet for an unknown next hop waits (at most [`PENDING_PER_NEIGHBOR`] per
//! neighbour, like the kernel's `unres_qlen`) while an ARP request goes out, and leaves when
//! the reply arrives. Entries are refreshed with a new request after [`REACHABLE`], while the
//! old address stays in use.
//!
//! IPv6 neighbour discovery is not implemented: IPv6 next hops must be resolved some other way
//! (they are dropped and counted as `neighbor-ipv6-unsupported` for now).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::packet::MacAddress;

/// Packets held per unresolved neighbour; more are dropped (counted).
pub const PENDING_PER_NEIGHBOR: usize = 3;
/// A learned address is used without question for this long, then re-requested.
pub const REACHABLE: Duration = Duration::from_secs(60);
/// At most one request per neighbour per this interval.
pub const RETRY: Duration = Duration::from_millis(500);
/// Packets wait this long for an answer, then are dropped.
pub const PENDING_FOR: Duration = Duration::from_secs(3);

#[derive(Debug, Default)]
struct Entry {
    mac: Option<MacAddress>,
    learned: Option<Instant>,
    requested: Option<Instant>,
    /// Complete Ethernet frames waiting for `mac` (their destination address is filled then).
    pending: Vec<(Instant, Vec<u8>)>,
}

/// What a lookup says to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Send to this address.
    Known(MacAddress),
    /// Send to this address, and also send an ARP request to refresh it.
    Refresh(MacAddress),
    /// Unknown: hold the packet and send an ARP request.
    Request,
    /// Unknown and a request is already out: hold the packet.
    Wait,
}

/// Per port: address → entry.
#[derive(Debug, Default)]
pub struct Neighbors {
    ports: Vec<HashMap<Ipv4Addr, Entry>>,
}

impl Neighbors {
    pub fn new(ports: usize) -> Self {
        Self {
            ports: (0..ports).map(|_| HashMap::new()).collect(),
        }
    }

    /// A static or kernel-learned entry.
    pub fn insert(&mut self, port: usize, address: Ipv4Addr, mac: MacAddress, now: Instant) {
        if let Some(table) = self.ports.get_mut(port) {
            let e = table.entry(address).or_default();
            e.mac = Some(mac);
            e.learned = Some(now);
        }
    }

    pub fn lookup(&mut self, port: usize, address: Ipv4Addr, now: Instant) -> Resolution {
        let Some(table) = self.ports.get_mut(port) else {
            return Resolution::Wait;
        };
        let e = table.entry(address).or_default();
        let may_request = e
            .requested
            .is_none_or(|t| now.saturating_duration_since(t) >= RETRY);
        match (e.mac, e.learned) {
            (Some(mac), Some(learned)) => {
                if now.saturating_duration_since(learned) >= REACHABLE && may_request {
                    e.requested = Some(now);
                    Resolution::Refresh(mac)
                } else {
                    Resolution::Known(mac)
                }
            }
            _ if may_request => {
                e.requested = Some(now);
                Resolution::Request
            }
            _ => Resolution::Wait,
        }
    }

    /// Holds `frame` for `address`; false when the queue is full (the caller counts the drop).
    pub fn hold(&mut self, port: usize, address: Ipv4Addr, frame: &[u8], now: Instant) -> bool {
        let Some(e) = self
            .ports
            .get_mut(port)
            .map(|t| t.entry(address).or_default())
        else {
            return false;
        };
        e.pending
            .retain(|(t, _)| now.saturating_duration_since(*t) < PENDING_FOR);
        if e.pending.len() >= PENDING_PER_NEIGHBOR {
            return false;
        }
        e.pending.push((now, frame.to_vec()));
        true
    }

    /// An ARP packet showed `address` at `mac`. RFC 826's merge rule: an existing entry is
    /// updated; a new one is created only when `create` (the ARP was addressed to us).
    /// Returns the frames that were waiting, for the caller to send.
    pub fn learn(
        &mut self,
        port: usize,
        address: Ipv4Addr,
        mac: MacAddress,
        create: bool,
        now: Instant,
    ) -> Vec<Vec<u8>> {
        let Some(table) = self.ports.get_mut(port) else {
            return Vec::new();
        };
        if address.is_unspecified() || mac.is_multicast() {
            return Vec::new();
        }
        let e = match table.get_mut(&address) {
            Some(e) => e,
            None if create => table.entry(address).or_default(),
            None => return Vec::new(),
        };
        e.mac = Some(mac);
        e.learned = Some(now);
        e.requested = None;
        std::mem::take(&mut e.pending)
            .into_iter()
            .filter(|(t, _)| now.saturating_duration_since(*t) < PENDING_FOR)
            .map(|(_, f)| f)
            .collect()
    }

    /// Drops frames that waited too long; returns how many.
    pub fn expire(&mut self, now: Instant) -> u64 {
        let mut dropped = 0;
        for table in &mut self.ports {
            for e in table.values_mut() {
                let before = e.pending.len();
                e.pending
                    .retain(|(t, _)| now.saturating_duration_since(*t) < PENDING_FOR);
                dropped += (before - e.pending.len()) as u64;
            }
            table.retain(|_, e| {
                e.mac.is_some()
                    || !e.pending.is_empty()
                    || e.requested
                        .is_some_and(|t| now.saturating_duration_since(t) < PENDING_FOR)
            });
        }
        dropped
    }

    /// Every resolved entry: (port, address, mac).
    pub fn entries(&self) -> Vec<(usize, Ipv4Addr, MacAddress)> {
        let mut out = Vec::new();
        for (port, table) in self.ports.iter().enumerate() {
            for (a, e) in table {
                if let Some(mac) = e.mac {
                    out.push((port, *a, mac));
                }
            }
        }
        out.sort_by_key(|(p, a, _)| (*p, *a));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const MAC: MacAddress = MacAddress([2, 0, 0, 0, 0, 1]);

    #[test]
    fn an_unknown_neighbour_is_requested_once_per_retry_and_its_packets_wait() {
        let t0 = Instant::now();
        let mut n = Neighbors::new(1);
        assert_eq!(n.lookup(0, A, t0), Resolution::Request);
        assert!(n.hold(0, A, b"one", t0));
        assert_eq!(
            n.lookup(0, A, t0 + Duration::from_millis(100)),
            Resolution::Wait
        );
        assert!(n.hold(0, A, b"two", t0));
        assert!(n.hold(0, A, b"three", t0));
        assert!(!n.hold(0, A, b"four", t0), "the queue holds three");
        assert_eq!(n.lookup(0, A, t0 + RETRY), Resolution::Request);
        let released = n.learn(0, A, MAC, false, t0 + RETRY);
        assert_eq!(
            released,
            vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
        );
        assert_eq!(n.lookup(0, A, t0 + RETRY), Resolution::Known(MAC));
        assert_eq!(
            n.lookup(0, A, t0 + RETRY + REACHABLE),
            Resolution::Refresh(MAC),
            "an old entry is refreshed but still used"
        );
    }

    #[test]
    fn arp_not_addressed_to_us_updates_but_does_not_create() {
        let t0 = Instant::now();
        let mut n = Neighbors::new(1);
        n.learn(0, A, MAC, false, t0);
        assert!(n.entries().is_empty());
        n.learn(0, A, MAC, true, t0);
        assert_eq!(n.entries(), vec![(0, A, MAC)]);
        assert!(n.learn(0, Ipv4Addr::UNSPECIFIED, MAC, true, t0).is_empty());
        assert_eq!(n.entries().len(), 1);
    }

    #[test]
    fn packets_that_wait_too_long_are_dropped() {
        let t0 = Instant::now();
        let mut n = Neighbors::new(1);
        assert_eq!(n.lookup(0, A, t0), Resolution::Request);
        assert!(n.hold(0, A, b"x", t0));
        assert_eq!(n.expire(t0 + PENDING_FOR), 1);
        assert!(n.learn(0, A, MAC, false, t0 + PENDING_FOR).is_empty());
    }
}
