//! Which sessions the in-kernel fast path (`cnf/bpf/fastpath.c`, loaded by
//! [`crate::io::fastpath`]) may forward, and what it must do to their packets: a pure decision
//! on the session's state and the tables, with `now` nowhere needed (the decision reads no
//! timer). The runtime turns a [`Plan`] into map entries (interface indexes, link-layer
//! addresses) and removes them when the pipeline says so.
//!
//! A session goes to the kernel only when every packet of it, in both directions, is a pure
//! rewrite the program performs byte for byte as the pipeline would (TTL, NAT with incremental
//! checksums, DSCP, Ethernet and VLAN). Per feature:
//!
//! - **Established only**: TCP in `Established` (SYN, FIN and RST are punted by the program, so
//!   the pipeline sees every state change), UDP once the responder has answered. ICMP never
//!   (the program handles TCP and UDP only).
//! - **IPv4 only**: the program parses IPv4 without options; IPv6 stays in user space.
//! - **Security `none` only**: `authenticate` and `encrypt` add and check a trailer on every
//!   packet (sequence, tag, replay window), which is user-space work.
//! - **No SVR metadata to send**: while the ingress still adds forward metadata or the egress
//!   still answers with reverse metadata (`metadata_tx`), the session stays in user space.
//!   Received metadata (a payload starting with the cookie) is punted by the program.
//! - **Rate limits** (`qos::Policer`, a policy's `rateLimit`): every packet of such a rule is
//!   metered in user space, so its sessions are never offloaded.
//! - **Shaped WAN links** (`qos::WanQueues`, a WAN with a capacity): the scheduler queues and
//!   orders packets per class, which the kernel path would bypass, so sessions that leave on a
//!   shaped WAN stay in user space. On an unshaped link the scheduler sends at once, and the
//!   only QoS effect is the class's DSCP mark, which the program writes.
//! - **DoS guard** (`crate::guard`): it admits and counts new sessions and the policer's
//!   refusals; established packets of a session without a rate limit never reach it, so the
//!   kernel path bypasses nothing of it. New sessions always start in user space (a miss is
//!   punted), so policy and the guard see every first packet.
//! - **Path choice**: an ingress session whose path is not its class's target any more moves on
//!   its next forward packet; it is offloaded only while its path is the target, and every
//!   path-book change (a path down, an SLA miss, a hold-down ending), location health change
//!   and config change bumps [`Offload::epoch`], on which the runtime decides every installed
//!   session again at once: one whose plan fails now (its path is no longer the target, its
//!   location went unhealthy) or changed loses its entries, so that its next forward packet
//!   comes to user space and moves the session; the others keep theirs.
//! - **Removal**: a session that leaves the table (idle expiry, closed by its peer, a reset,
//!   replaced) is listed in [`Offload::take_removed`]; the runtime deletes its entries.
//!
//! Counters: the program counts packets, bytes and the last packet's time per entry; the
//! runtime adds them to the session ([`super::Pipeline::offload_account`]), so a busy
//! offloaded session never expires and its bytes and the forwarded-packet counters include
//! the kernel's.

use std::time::Instant;

use signpost_proto::v1::SecurityMode;

use super::{Egress, Interface, Pipeline, Role};
use crate::packet::ip_protocol;
use crate::session::{FlowKey, SessionId, Side, TcpState};

/// Sessions noted per runtime visit at most; more wait for the next visit.
const NOTED_MAX: usize = 4096;

/// One direction of an offloaded session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rewrite {
    /// Where its packets arrive.
    pub ingress: Interface,
    /// The 5-tuple as they arrive.
    pub key: FlowKey,
    /// The 5-tuple they leave with.
    pub target: FlowKey,
    /// Where they leave (the next hop to resolve, the VLAN to tag).
    pub egress: Egress,
    /// The DSCP the pipeline marks (WAN egress), if any.
    pub dscp: Option<u8>,
    /// Larger IP packets are punted (the pipeline drops them as `exceeds-mtu` towards a WAN).
    pub max_len: u16,
    /// The responder → initiator direction.
    pub reply: bool,
}

/// Both directions of a session the kernel may forward: initiator → responder, then back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub rewrites: [Rewrite; 2],
}

/// Why a session stays in user space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotOffloaded {
    /// No such session (it ended).
    Gone,
    NotIpv4,
    /// ICMP (or anything but TCP and UDP).
    Protocol,
    /// TCP not in `Established`, or UDP not answered yet.
    NotEstablished,
    /// `authenticate` or `encrypt`.
    Security,
    /// SVR metadata still to be sent.
    Metadata,
    /// The rule has a rate limit.
    RateLimited,
    /// Its WAN link is shaped.
    Shaped,
    /// An ingress session whose path is not (or no longer) its class's target.
    PathChanging,
    /// Its tables name an interface that does not exist.
    NoInterface,
}

/// The pipeline's side of the fast path: what changed since the runtime last looked.
#[derive(Debug, Default)]
pub struct Offload {
    enabled: bool,
    noted: Vec<SessionId>,
    removed: Vec<SessionId>,
    epoch: u64,
}

impl Offload {
    /// Sessions whose packets reached the pipeline since the last call (sorted, each once): the
    /// runtime (re)decides them. Only while enabled.
    pub fn take_noted(&mut self, into: &mut Vec<SessionId>) {
        into.clear();
        into.append(&mut self.noted);
        into.sort_unstable_by_key(|id| id.0);
        into.dedup();
    }

    /// Whether sessions were noted since the last [`Offload::take_noted`].
    pub fn has_noted(&self) -> bool {
        !self.noted.is_empty()
    }

    /// Sessions that left the table since the last call.
    pub fn take_removed(&mut self, into: &mut Vec<SessionId>) {
        into.clear();
        into.append(&mut self.removed);
    }

    /// Changes on every config, path-book or location-health change: entries made before are
    /// to be decided again.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    #[inline]
    pub(super) fn note(&mut self, id: SessionId) {
        if self.enabled && self.noted.len() < NOTED_MAX && self.noted.last() != Some(&id) {
            self.noted.push(id);
        }
    }

    pub(super) fn removed(&mut self, id: SessionId) {
        if self.enabled {
            self.removed.push(id);
        }
    }

    pub(super) fn invalidate(&mut self) {
        self.epoch += 1;
    }
}

impl Pipeline {
    /// Turns the fast-path bookkeeping on or off (off by default: nothing is noted).
    pub fn set_offload(&mut self, enabled: bool) {
        self.offload.enabled = enabled;
        self.offload.noted.clear();
        self.offload.removed.clear();
        self.offload.invalidate();
    }

    pub fn offload(&mut self) -> &mut Offload {
        &mut self.offload
    }

    /// What the kernel may do with session `id` now, or why it may not.
    pub fn offload_plan(&self, id: SessionId) -> Result<Plan, NotOffloaded> {
        let s = self.sessions.get(id).ok_or(NotOffloaded::Gone)?;
        let st = &s.state;
        let (lan_key, wan_key) = (*s.key(Side::Lan), *s.key(Side::Wan));
        if lan_key.v4_addrs().is_none() || wan_key.v4_addrs().is_none() {
            return Err(NotOffloaded::NotIpv4);
        }
        match lan_key.protocol() {
            ip_protocol::TCP if s.tcp_state() == TcpState::Established => {}
            ip_protocol::UDP if s.replied() => {}
            ip_protocol::TCP | ip_protocol::UDP => return Err(NotOffloaded::NotEstablished),
            _ => return Err(NotOffloaded::Protocol),
        }
        if !matches!(st.security, SecurityMode::None | SecurityMode::Unspecified) {
            return Err(NotOffloaded::Security);
        }
        if st.metadata_tx {
            return Err(NotOffloaded::Metadata);
        }
        let tables = &*self.tables;
        let rule = usize::from(st.rule.0);
        if tables.qos.rule_rate(rule).is_some() {
            return Err(NotOffloaded::RateLimited);
        }
        if tables
            .qos
            .wan_capacity
            .get(usize::from(st.wan))
            .copied()
            .unwrap_or(0)
            != 0
        {
            return Err(NotOffloaded::Shaped);
        }
        if st.role == Role::Ingress
            && !self
                .paths
                .is_target(self.paths.class_of(st.rule), st.peer, st.path)
        {
            return Err(NotOffloaded::PathChanging);
        }
        let wan = tables
            .wans
            .get(usize::from(st.wan))
            .ok_or(NotOffloaded::NoInterface)?;
        tables
            .lans
            .get(usize::from(st.lan))
            .ok_or(NotOffloaded::NoInterface)?;
        let (class, dscp) = tables.qos.rule_class(rule);
        let mtu = self.options.mtu;
        // LAN → WAN (`lan_to_wan`): the WAN key (reversed for replies), next hop the WAN's
        // gateway or the far waypoint, the class's DSCP.
        let to_wan = |key: FlowKey, target: FlowKey, reply: bool| Rewrite {
            ingress: Interface::Lan(st.lan),
            key,
            target,
            egress: Egress {
                interface: Interface::Wan(st.wan),
                vlan: None,
                next_hop: wan.gateway.unwrap_or_else(|| target.dst()),
                class,
            },
            dscp: Some(dscp & 0x3f),
            max_len: mtu,
            reply,
        };
        // WAN → LAN (`wan_to_lan`): the LAN key (reversed for replies), the session's VLAN.
        let to_lan = |key: FlowKey, target: FlowKey, reply: bool| Rewrite {
            ingress: Interface::Wan(st.wan),
            key,
            target,
            egress: Egress {
                interface: Interface::Lan(st.lan),
                vlan: (st.vlan != 0).then_some(st.vlan),
                next_hop: target.dst(),
                class: 0,
            },
            dscp: None,
            max_len: mtu,
            reply,
        };
        let rewrites = match st.role {
            // The initiator is on this router's LAN.
            Role::Ingress => [
                to_wan(lan_key, wan_key, false),
                to_lan(wan_key.reversed(), lan_key.reversed(), true),
            ],
            // The initiator is behind the peer; the responder on this router's LAN.
            Role::Egress => [
                to_lan(wan_key, lan_key, false),
                to_wan(lan_key.reversed(), wan_key.reversed(), true),
            ],
        };
        Ok(Plan { rewrites })
    }

    /// Adds what the kernel forwarded for one direction of session `id` since the last call:
    /// the session's idle timer moves to `last_seen` (when later than what it has), its bytes
    /// and the pipeline's forwarded-packet counters grow. `None` for a session that has left
    /// the table (its slot may hold another one already): only the counters grow.
    pub fn offload_account(
        &mut self,
        id: Option<SessionId>,
        rewrite: &Rewrite,
        packets: u64,
        bytes: u64,
        last_seen: Instant,
    ) {
        if packets == 0 {
            return;
        }
        if let Some(id) = id {
            self.sessions
                .add_forwarded_elsewhere(id, last_seen, rewrite.reply, bytes);
        }
        match rewrite.egress.interface {
            Interface::Wan(_) => self.counters.to_wan += packets,
            Interface::Lan(_) => self.counters.to_lan += packets,
        }
        self.counters.fast_path += packets;
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use signpost_proto::v1 as pb;

    use super::super::testbed::{
        CLIENT, HUB_LAN, PAYMENTS_VIP, POS, TELEMETRY, WAN0, edge_config, hub_config, run, tcp_v4,
        udp_v4,
    };
    use super::super::{Action, Options, Tables};
    use super::*;

    fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
        udp_v4(src, sport, dst, dport, 64, payload)
    }

    fn tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: &str) -> Vec<u8> {
        tcp_v4(src, sport, dst, dport, 64, flags, &[])
    }

    struct Pair {
        now: Instant,
        edge: Pipeline,
        hub: Pipeline,
    }

    impl Pair {
        fn new(edge: pb::RouterConfig, hub: pb::RouterConfig) -> Pair {
            let now = Instant::now();
            let build = |c: &pb::RouterConfig| Arc::new(Tables::new(c, "v1").expect("builds"));
            let mut edge = Pipeline::new(now, build(&edge), Options::default());
            let mut hub = Pipeline::new(now, build(&hub), Options::default());
            edge.set_offload(true);
            hub.set_offload(true);
            Pair { now, edge, hub }
        }

        fn plain() -> Pair {
            Pair::new(
                edge_config(pb::SecurityMode::None),
                hub_config(pb::SecurityMode::None),
            )
        }

        /// Store LAN → hub LAN; what the hub delivered.
        #[track_caller]
        fn up(&mut self, packet: &[u8]) -> Action {
            let (a, wan) = run(&mut self.edge, self.now, POS, packet);
            assert!(matches!(a, Action::Forward(_)), "edge: {a:?}");
            let b = run(&mut self.hub, self.now, WAN0, &wan).0;
            assert!(matches!(b, Action::Forward(_)), "hub: {b:?}");
            b
        }

        #[track_caller]
        fn down(&mut self, packet: &[u8]) -> Action {
            let (a, wan) = run(&mut self.hub, self.now, HUB_LAN, packet);
            assert!(matches!(a, Action::Forward(_)), "hub: {a:?}");
            let b = run(&mut self.edge, self.now, WAN0, &wan).0;
            assert!(matches!(b, Action::Forward(_)), "edge: {b:?}");
            b
        }
    }

    fn only_session(p: &Pipeline) -> SessionId {
        let ids: Vec<SessionId> = p.sessions().iter().map(|(id, _)| id).collect();
        assert_eq!(ids.len(), 1, "one session");
        ids[0]
    }

    fn noted(p: &mut Pipeline) -> Vec<SessionId> {
        let mut v = Vec::new();
        p.offload().take_noted(&mut v);
        v
    }

    #[test]
    fn a_udp_session_goes_to_the_kernel_once_answered_and_its_handshake_is_done() {
        let mut pair = Pair::plain();
        pair.up(&udp(CLIENT, 5004, TELEMETRY, 9000, b"one"));
        let edge_id = only_session(&pair.edge);
        let hub_id = only_session(&pair.hub);
        assert_eq!(
            pair.edge.offload_plan(edge_id),
            Err(NotOffloaded::NotEstablished)
        );
        pair.down(&udp(TELEMETRY, 9000, CLIENT, 5004, b"ok"));
        // The edge has the hub's reverse metadata; the hub still answers with it until a
        // forward packet without metadata arrives.
        let plan = pair.edge.offload_plan(edge_id).expect("edge offloads");
        assert_eq!(pair.hub.offload_plan(hub_id), Err(NotOffloaded::Metadata));
        pair.up(&udp(CLIENT, 5004, TELEMETRY, 9000, b"two"));
        let hub_plan = pair.hub.offload_plan(hub_id).expect("hub offloads");

        let s = pair.edge.sessions().get(edge_id).expect("live");
        let (lan, wan) = (*s.key(Side::Lan), *s.key(Side::Wan));
        let [up, back] = plan.rewrites;
        assert_eq!((up.ingress, up.key, up.target), (POS.interface, lan, wan));
        assert_eq!(up.egress.interface, Interface::Wan(0));
        assert_eq!(
            up.dscp,
            Some(18),
            "the normal class's AF21, as the pipeline marks"
        );
        assert!(!up.reply && back.reply);
        assert_eq!(back.ingress, WAN0.interface);
        assert_eq!((back.key, back.target), (wan.reversed(), lan.reversed()));
        assert_eq!(back.egress.vlan, Some(10), "back to the POS VLAN");
        assert_eq!(back.egress.next_hop, IpAddr::V4(Ipv4Addr::from(CLIENT)));
        assert_eq!(back.dscp, None);

        let h = pair.hub.sessions().get(hub_id).expect("live");
        let [fwd, reply] = hub_plan.rewrites;
        assert_eq!(
            (fwd.key, fwd.target),
            (*h.key(Side::Wan), *h.key(Side::Lan))
        );
        assert_eq!(fwd.egress.interface, Interface::Lan(0));
        assert_eq!(reply.egress.interface, Interface::Wan(0));
        assert_eq!(reply.target, h.key(Side::Wan).reversed());
        // Every packet that reached either pipeline noted its session (once per visit).
        assert_eq!(noted(&mut pair.edge), vec![edge_id]);
        assert_eq!(noted(&mut pair.hub), vec![hub_id]);
        assert!(noted(&mut pair.edge).is_empty());
    }

    #[test]
    fn tcp_waits_for_the_handshake_and_encrypted_sessions_never_go() {
        let mut pair = Pair::plain();
        pair.up(&tcp(CLIENT, 40000, PAYMENTS_VIP, 443, "S"));
        let id = only_session(&pair.edge);
        assert_eq!(
            pair.edge.offload_plan(id),
            Err(NotOffloaded::NotEstablished)
        );
        let hub_real = pair
            .hub
            .sessions()
            .get(only_session(&pair.hub))
            .expect("live");
        let lan = *hub_real.key(Side::Lan);
        let (_, real) = lan.v4_addrs().expect("v4");
        pair.down(&tcp(real, 443, CLIENT, 40000, "SA"));
        pair.up(&tcp(CLIENT, 40000, PAYMENTS_VIP, 443, "A"));
        assert!(pair.edge.offload_plan(id).is_ok());
        assert!(pair.hub.offload_plan(only_session(&pair.hub)).is_ok());

        let mut sealed = Pair::new(
            edge_config(pb::SecurityMode::Encrypt),
            hub_config(pb::SecurityMode::Encrypt),
        );
        sealed.up(&tcp(CLIENT, 40001, PAYMENTS_VIP, 443, "S"));
        sealed.down(&tcp(real, 443, CLIENT, 40001, "SA"));
        sealed.up(&tcp(CLIENT, 40001, PAYMENTS_VIP, 443, "A"));
        let id = only_session(&sealed.edge);
        let s = sealed.edge.sessions().get(id).expect("live");
        assert_eq!(s.tcp_state(), TcpState::Established);
        assert_eq!(sealed.edge.offload_plan(id), Err(NotOffloaded::Security));
    }

    #[test]
    fn rate_limited_rules_and_shaped_links_stay_in_user_space() {
        let mut limited = edge_config(pb::SecurityMode::None);
        for rule in &mut limited.access {
            rule.rate_limit = Some(pb::RateLimit {
                bits_per_second: 10_000_000,
                ..Default::default()
            });
        }
        let mut pair = Pair::new(limited, hub_config(pb::SecurityMode::None));
        pair.up(&udp(CLIENT, 5004, TELEMETRY, 9000, b"one"));
        pair.down(&udp(TELEMETRY, 9000, CLIENT, 5004, b"ok"));
        let id = only_session(&pair.edge);
        assert_eq!(pair.edge.offload_plan(id), Err(NotOffloaded::RateLimited));

        let mut shaped = edge_config(pb::SecurityMode::None);
        shaped.wan_interfaces[0].capacity_bps = 20_000_000;
        let mut pair = Pair::new(shaped, hub_config(pb::SecurityMode::None));
        pair.up(&udp(CLIENT, 5004, TELEMETRY, 9000, b"one"));
        pair.down(&udp(TELEMETRY, 9000, CLIENT, 5004, b"ok"));
        let id = only_session(&pair.edge);
        assert_eq!(pair.edge.offload_plan(id), Err(NotOffloaded::Shaped));
    }

    #[test]
    fn a_path_change_invalidates_every_entry_and_the_session_waits_to_move() {
        let mut pair = Pair::plain();
        pair.up(&udp(CLIENT, 5004, TELEMETRY, 9000, b"one"));
        pair.down(&udp(TELEMETRY, 9000, CLIENT, 5004, b"ok"));
        let id = only_session(&pair.edge);
        assert!(pair.edge.offload_plan(id).is_ok());
        let epoch = pair.edge.offload().epoch();
        let peer = pair.edge.tables().peers[0].clone();
        assert!(pair.edge.set_path_up(&peer.name, &peer.paths[0].id, false));
        assert_ne!(
            pair.edge.offload().epoch(),
            epoch,
            "entries must go at once"
        );
        assert_eq!(pair.edge.offload_plan(id), Err(NotOffloaded::PathChanging));
        // Its next forward packet (punted: no entry) moves it; then it may go again.
        pair.up(&udp(CLIENT, 5004, TELEMETRY, 9000, b"two"));
        pair.down(&udp(TELEMETRY, 9000, CLIENT, 5004, b"ok"));
        let plan = pair
            .edge
            .offload_plan(id)
            .expect("offloaded on the new path");
        assert_eq!(plan.rewrites[0].egress.interface, Interface::Wan(1));
    }

    #[test]
    fn kernel_counts_keep_a_busy_session_alive_and_expiry_lists_it_for_removal() {
        let mut pair = Pair::plain();
        pair.up(&udp(CLIENT, 5004, TELEMETRY, 9000, b"one"));
        pair.down(&udp(TELEMETRY, 9000, CLIENT, 5004, b"ok"));
        let id = only_session(&pair.edge);
        let plan = pair.edge.offload_plan(id).expect("offloads");
        let udp_timeout = pair.edge.tables().timeouts.udp;
        let before = pair.edge.sessions().get(id).expect("live").bytes();
        // The kernel forwards for three timeouts; the runtime syncs every half timeout.
        let mut t = pair.now;
        for _ in 0..6 {
            t += udp_timeout / 2;
            pair.edge
                .offload_account(Some(id), &plan.rewrites[0], 10, 1000, t);
            pair.edge.poll_timers(t + Duration::from_millis(1), 1 << 20);
            assert!(
                pair.edge.sessions().get(id).is_some(),
                "busy: never expires"
            );
        }
        let after = pair.edge.sessions().get(id).expect("live").bytes();
        assert_eq!(after[0] - before[0], 6000);
        assert_eq!(pair.edge.counters().fast_path, 60);
        let mut removed = Vec::new();
        pair.edge.offload().take_removed(&mut removed);
        assert!(removed.is_empty());
        pair.edge
            .poll_timers(t + udp_timeout + Duration::from_secs(1), 1 << 20);
        assert!(pair.edge.sessions().get(id).is_none(), "idle: expired");
        pair.edge.offload().take_removed(&mut removed);
        assert_eq!(removed, vec![id]);
    }
}
