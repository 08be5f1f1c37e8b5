//! Waypoint allocation: the unique 5-tuple a session uses between two routers on one path.
//!
//! The ingress router picks both ports — its own from its interface's waypoint range, the peer's
//! from the peer's range — so that no two live sessions share a waypoint 5-tuple. Uniqueness is
//! checked against the session table itself (no second structure to keep in step), and the
//! candidates come from a cursor that walks the whole range before it returns to a port, so a
//! 5-tuple is reused only after expiry and after every other port had its turn (late packets of
//! an old session are not mistaken for a new one).

use std::net::IpAddr;

use super::key::FlowKey;
use super::table::SessionTable;
use crate::packet::ip_protocol;

/// Tries up to `attempts` candidates from `cursor` and returns the first free waypoint 5-tuple
/// (initiator → responder), advancing the cursor past it. `None` when all tried were in use, or
/// a range is empty: the caller drops the packet with "waypoints exhausted".
#[allow(clippy::too_many_arguments)]
pub fn allocate_waypoint<S>(
    table: &SessionTable<S>,
    cursor: &mut u32,
    protocol: u8,
    local: IpAddr,
    local_ports: (u16, u16),
    remote: IpAddr,
    remote_ports: (u16, u16),
    attempts: u32,
) -> Option<FlowKey> {
    let span =
        |(first, last): (u16, u16)| u32::from(last).checked_sub(u32::from(first)).map(|d| d + 1);
    let local_span = span(local_ports)?;
    let remote_span = span(remote_ports)?;
    let echo = protocol == ip_protocol::ICMP || protocol == ip_protocol::ICMPV6;
    for _ in 0..attempts {
        let n = *cursor;
        *cursor = cursor.wrapping_add(1);
        let (local_port, remote_port) = if echo {
            // ICMP echo has one identifier for both "ports": it must lie in both ranges.
            let (lo, hi) = (
                local_ports.0.max(remote_ports.0),
                local_ports.1.min(remote_ports.1),
            );
            let both = span((lo, hi))?;
            let port = u32::from(lo) + n % both;
            (port, port)
        } else {
            // The peer's port changes each time the local range wraps, so the pair space is the
            // product of both ranges, and spreads over the peer's receive queues.
            let local = u32::from(local_ports.0) + n % local_span;
            let mix = n.wrapping_mul(2_654_435_761) ^ (n / local_span);
            (local, u32::from(remote_ports.0) + mix % remote_span)
        };
        let key = FlowKey::new(
            protocol,
            local,
            local_port as u16,
            remote,
            remote_port as u16,
        );
        if !table.contains_key(&key) {
            return Some(key);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{Insert, TableLimits, Timeouts};
    use std::collections::HashSet;
    use std::net::Ipv4Addr;
    use std::time::Instant;

    #[test]
    fn allocations_are_unique_until_the_space_is_used_up() {
        let now = Instant::now();
        let mut t: SessionTable<()> =
            SessionTable::new(now, TableLimits::default(), Timeouts::default(), 3);
        let (local, remote) = (
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11)),
            IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10)),
        );
        let mut cursor = 0;
        let mut seen = HashSet::new();
        // 4 local ports x 2 remote ports: 8 distinct 5-tuples.
        for n in 0..8u8 {
            let key = allocate_waypoint(
                &t,
                &mut cursor,
                17,
                local,
                (16384, 16387),
                remote,
                (20000, 20001),
                64,
            )
            .expect("space left");
            assert!(seen.insert(key), "{key} allocated twice");
            let lan = FlowKey::v4(
                17,
                Ipv4Addr::new(10, 1, 10, n),
                5000,
                Ipv4Addr::new(10, 255, 1, 10),
                53,
            );
            t.insert(
                now,
                Insert {
                    keys: [lan, key],
                    uuid: [n; 16],
                    index_uuid: false,
                    tenant: 0,
                    state: (),
                },
            )
            .expect("room");
            assert!(
                (16384..=16387).contains(&key.src_port())
                    && (20000..=20001).contains(&key.dst_port())
            );
        }
        assert_eq!(
            allocate_waypoint(
                &t,
                &mut cursor,
                17,
                local,
                (16384, 16387),
                remote,
                (20000, 20001),
                64
            ),
            None
        );
        // A port comes back once its session is gone.
        t.remove(crate::session::SessionId(5));
        let again = allocate_waypoint(
            &t,
            &mut cursor,
            17,
            local,
            (16384, 16387),
            remote,
            (20000, 20001),
            64,
        );
        assert!(again.is_some_and(|k| !t.contains_key(&k)));
    }

    #[test]
    fn an_empty_range_allocates_nothing() {
        let t: SessionTable<()> = SessionTable::new(
            Instant::now(),
            TableLimits::default(),
            Timeouts::default(),
            3,
        );
        let a = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert_eq!(
            allocate_waypoint(&t, &mut 0, 17, a, (10, 9), a, (1, 1), 8),
            None
        );
    }
}
