//! Why packets are dropped, and the counters the router exports (one per reason, so a metric
//! `signpost_drops_total{reason="no_policy"}` says what to fix).

macro_rules! drop_reasons {
    ($($variant:ident => $name:literal, $text:literal;)*) => {
        /// Why a packet was not forwarded.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum DropReason { $($variant,)* }

        impl DropReason {
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];
            pub const COUNT: usize = Self::ALL.len();

            /// The metric label.
            pub fn name(self) -> &'static str {
                match self { $(DropReason::$variant => $name,)* }
            }

            /// What it means, for `explain` and logs.
            pub fn text(self) -> &'static str {
                match self { $(DropReason::$variant => $text,)* }
            }
        }
    };
}

drop_reasons! {
    Malformed => "malformed", "not a valid IPv4/IPv6 packet with a TCP, UDP or ICMP echo header";
    Fragment => "fragment", "IP fragments are not carried (reassembly is not implemented)";
    TtlExpired => "ttl_expired", "TTL / hop limit reached zero";
    UnsupportedProtocol => "unsupported_protocol", "only TCP, UDP and ICMP echo are routed as sessions";
    IcmpNotEcho => "icmp_not_echo", "ICMP messages other than echo are not carried";
    FamilyMismatch => "family_mismatch", "the session's LAN and WAN sides use different IP versions";
    NoTenant => "no_tenant", "the source belongs to no tenant on this interface";
    NoService => "no_service", "the destination, protocol and port match no service";
    NoPolicy => "no_policy", "no policy allows this tenant to reach this service (deny by default)";
    Direction => "direction", "the policy does not let this side open sessions";
    NoPath => "no_path", "no peer path that the policy allows is up towards any location of the service";
    WaypointsExhausted => "waypoints_exhausted", "no free waypoint port pair on the chosen path";
    TableFull => "table_full", "the session table is full (limits.maxSessions)";
    TenantLimit => "tenant_limit", "the tenant holds its session limit (limits.maxSessionsPerTenant)";
    HalfOpenLimit => "half_open_limit", "too many half-open TCP sessions (limits.maxHalfOpen)";
    TenantHalfOpenLimit => "tenant_half_open_limit", "the tenant holds its share of half-open TCP sessions (limits.maxHalfOpenPerTenant)";
    SourceSessionRate => "source_session_rate", "the source opens sessions faster than its policy allows (rateLimit.newSessionsPerSecond)";
    TenantSessionRate => "tenant_session_rate", "the tenant opens sessions faster than this router allows (limits.newSessionsPerSecondPerTenant)";
    RateLimited => "rate_limited", "the tenant x service sends more than its policy allows (rateLimit.bandwidth)";
    TcpNotSyn => "tcp_not_syn", "a TCP segment other than SYN cannot open a session";
    IcmpNotRequest => "icmp_not_request", "an ICMP echo reply cannot open a session";
    NoSession => "no_session", "a WAN packet without metadata matches no session";
    BadMetadata => "bad_metadata", "SVR metadata that does not parse or lacks required TLVs";
    UnknownPeer => "unknown_peer", "metadata names a source router that is not a peer";
    UnknownKey => "unknown_key", "metadata names a security id (key version) this router does not hold";
    AuthFailed => "auth_failed", "authentication failed: tampered packet or wrong key";
    Replayed => "replayed", "a sequence number seen before or too old (replay window)";
    NotALocation => "not_a_location", "metadata asks for a service this router does not front";
    NoRoute => "no_route", "no LAN interface holds the destination";
    NoRoom => "no_room", "the buffer has no room for metadata or trailer";
    ExceedsMtu => "exceeds_mtu", "the packet with metadata or trailer would exceed the MTU";
    KeyInUse => "key_in_use", "the 5-tuple belongs to another session";
    NotForwarded => "not_forwarded", "traffic between two WAN interfaces or two LAN hosts is not routed";
    ServiceMismatch => "service_mismatch", "the original destination belongs to another service (a location's real address here, or a more specific prefix) or to none, not to the service the metadata names";
}

/// The pipeline's counters. Plain integers: the pipeline is single-threaded per queue; the
/// runtime sums queues when it exports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counters {
    pub drops: [u64; DropReason::COUNT],
    /// LAN → WAN and WAN → LAN packets forwarded.
    pub to_wan: u64,
    pub to_lan: u64,
    pub sessions_created: u64,
    pub sessions_expired: u64,
    pub sessions_closed_by_peer: u64,
    pub sessions_rebound: u64,
    /// Sessions set up on a path that misses their SLA (no path met it).
    pub sessions_sla_fallback: u64,
    /// UDP/ICMP sessions re-established at another location when theirs became unreachable.
    pub sessions_relocated: u64,
    /// TCP sessions reset (RST to the client) because their location became unreachable.
    pub sessions_reset: u64,
    pub metadata_sent: u64,
    pub metadata_received: u64,
    /// Packets for the router itself, handed to the host.
    pub local: u64,
    /// Of `to_wan` and `to_lan`: packets the in-kernel fast path forwarded (`offload`).
    pub fast_path: u64,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            drops: [0; DropReason::COUNT],
            to_wan: 0,
            to_lan: 0,
            sessions_created: 0,
            sessions_expired: 0,
            sessions_closed_by_peer: 0,
            sessions_rebound: 0,
            sessions_sla_fallback: 0,
            sessions_relocated: 0,
            sessions_reset: 0,
            metadata_sent: 0,
            metadata_received: 0,
            local: 0,
            fast_path: 0,
        }
    }
}

impl Counters {
    pub fn drop(&mut self, reason: DropReason) {
        if let Some(n) = self.drops.get_mut(reason as usize) {
            *n += 1;
        }
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops.get(reason as usize).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_a_distinct_metric_name() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
        assert!(DropReason::ALL.iter().all(|r| !r.text().is_empty()));
    }
}
