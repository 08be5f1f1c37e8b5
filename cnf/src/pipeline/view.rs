//! Read-only views of a pipeline's state, by name, for the admin API and metrics: sessions,
//! peer paths and per-tenant / per-service session counts. Built on demand (they allocate);
//! never on the packet path.

use std::time::{Duration, Instant};

use signpost_proto::v1::SecurityMode;

use super::{Pipeline, Role, mode_name};
use crate::classify::TenantId;
use crate::path::book::PathHealth;
use crate::session::{FlowKey, Side, TcpState};

/// One session, by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionView {
    /// The session UUID (SVR TLV 6), lowercase hex.
    pub id: String,
    pub tenant: String,
    pub service: String,
    /// The 5-tuple on the LAN side (initiator → responder).
    pub original: FlowKey,
    /// The waypoint 5-tuple on the WAN side (initiator → responder).
    pub waypoint: FlowKey,
    pub peer: String,
    /// The peer path an ingress router chose; the WAN interface name on an egress router.
    pub path: String,
    /// "ingress" (this router classified the first packet) or "egress".
    pub role: &'static str,
    pub security: SecurityMode,
    /// IP bytes initiator → responder plus responder → initiator, as received.
    pub bytes: u64,
    pub idle: Duration,
    /// TCP state, or "active" / "unreplied" for UDP and ICMP.
    pub state: &'static str,
}

/// One peer path with its state and the sessions this pipeline has on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathView {
    pub peer: String,
    pub path: String,
    pub wan: String,
    pub vector: String,
    /// Usable: up, or not yet known (no BFD verdict).
    pub up: bool,
    /// Liveness and quality as the path monitor last reported them.
    pub health: PathHealth,
    /// Up but breaking the SLA of some policy that may use it.
    pub degraded: bool,
    pub sessions: u64,
}

fn tcp_state_name(state: TcpState) -> &'static str {
    match state {
        TcpState::SynSent => "syn-sent",
        TcpState::SynReceived => "syn-received",
        TcpState::Established => "established",
        TcpState::FinWait => "fin-wait",
        TcpState::Closing => "closing",
        TcpState::Closed => "closed",
    }
}

impl Pipeline {
    /// Every live session (expired ones not yet swept included: they go on the next sweep).
    pub fn session_views(&self, now: Instant) -> Vec<SessionView> {
        let t = &self.tables;
        let now_ms = u64::try_from(
            now.saturating_duration_since(self.sessions.base())
                .as_millis(),
        )
        .unwrap_or(u64::MAX);
        self.sessions
            .iter()
            .map(|(_, s)| {
                let st = &s.state;
                let peer = t.peers.get(usize::from(st.peer));
                let path = match st.role {
                    Role::Ingress => peer
                        .and_then(|p| p.paths.get(usize::from(st.path)))
                        .map(|p| p.id.clone()),
                    Role::Egress => t.wans.get(usize::from(st.wan)).map(|w| w.name.clone()),
                };
                let original = *s.key(Side::Lan);
                let state = if original.protocol() == crate::packet::ip_protocol::TCP {
                    tcp_state_name(s.tcp_state())
                } else if s.replied() {
                    "active"
                } else {
                    "unreplied"
                };
                SessionView {
                    id: s.uuid().iter().map(|b| format!("{b:02x}")).collect(),
                    tenant: t.classifier.tenant_info(TenantId(s.tenant())).name.clone(),
                    service: t.classifier.service_info(st.service).name.clone(),
                    original,
                    waypoint: *s.key(Side::Wan),
                    peer: peer.map(|p| p.name.clone()).unwrap_or_default(),
                    path: path.unwrap_or_default(),
                    role: match st.role {
                        Role::Ingress => "ingress",
                        Role::Egress => "egress",
                    },
                    security: st.security,
                    bytes: s.bytes().iter().sum(),
                    idle: Duration::from_millis(now_ms.saturating_sub(s.last_seen_ms())),
                    state,
                }
            })
            .collect()
    }

    /// Every peer path in config order, with its state and session count.
    pub fn path_views(&self) -> Vec<PathView> {
        let mut on_path: Vec<Vec<u64>> = self
            .tables
            .peers
            .iter()
            .map(|p| vec![0; p.paths.len()])
            .collect();
        for (_, s) in self.sessions.iter() {
            if s.state.role == Role::Ingress
                && let Some(n) = on_path
                    .get_mut(usize::from(s.state.peer))
                    .and_then(|v| v.get_mut(usize::from(s.state.path)))
            {
                *n += 1;
            }
        }
        let mut out = Vec::new();
        for (p, peer) in self.tables.peers.iter().enumerate() {
            for (i, path) in peer.paths.iter().enumerate() {
                let wan = self.tables.wans.get(path.wan);
                let health = self.paths.health_at(p, i).unwrap_or_default();
                out.push(PathView {
                    peer: peer.name.clone(),
                    path: path.id.clone(),
                    wan: wan.map(|w| w.name.clone()).unwrap_or_default(),
                    vector: path.vector.clone(),
                    up: health.usable(),
                    health,
                    degraded: self.paths.degraded(p, i),
                    sessions: on_path.get(p).and_then(|v| v.get(i)).copied().unwrap_or(0),
                });
            }
        }
        out
    }

    /// Live sessions per (tenant, service) name pair, sorted.
    pub fn session_counts(&self) -> Vec<((String, String), u64)> {
        let mut counts: std::collections::BTreeMap<(String, String), u64> = Default::default();
        let c = &self.tables.classifier;
        for (_, s) in self.sessions.iter() {
            let key = (
                c.tenant_info(TenantId(s.tenant())).name.clone(),
                c.service_info(s.state.service).name.clone(),
            );
            *counts.entry(key).or_default() += 1;
        }
        counts.into_iter().collect()
    }

    /// The security mode's name as the config spells it.
    pub fn security_name(mode: SecurityMode) -> &'static str {
        mode_name(mode)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::pipeline::testbed::{self, CLIENT, PAYMENTS_VIP};
    use crate::pipeline::{Action, Ingress, Interface, Options, PacketBuf, Tables};

    fn syn(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        let mut out = Vec::new();
        etherparse::PacketBuilder::ipv4(src, dst, 64)
            .tcp(40000, 443, 1, 64240)
            .syn()
            .write(&mut out, &[])
            .expect("writes");
        out
    }

    #[test]
    fn a_session_shows_with_its_names_path_and_state() {
        let now = Instant::now();
        let tables = Arc::new(
            Tables::new(&testbed::edge_config(SecurityMode::Encrypt), "v1")
                .expect("the shared store config builds"),
        );
        let mut edge = Pipeline::new(now, tables, Options::default());
        let mut buf = vec![0u8; 2048];
        let packet = syn(CLIENT, PAYMENTS_VIP);
        buf[..packet.len()].copy_from_slice(&packet);
        let mut pkt = PacketBuf::new(&mut buf, packet.len());
        let action = edge.handle(
            now,
            Ingress {
                interface: Interface::Lan(0),
                vlan: Some(10),
            },
            &mut pkt,
        );
        assert!(matches!(action, Action::Forward(_)), "{action:?}");
        let views = edge.session_views(now + Duration::from_millis(1500));
        assert_eq!(views.len(), 1);
        let v = &views[0];
        assert_eq!((v.tenant.as_str(), v.service.as_str()), ("pos", "payments"));
        assert_eq!(v.role, "ingress");
        assert_eq!(v.state, "syn-sent");
        assert_eq!(v.original.dst_port(), 443);
        assert_eq!(v.idle, Duration::from_millis(1500));
        assert_eq!(v.id.len(), 32);
        assert!(!v.peer.is_empty() && !v.path.is_empty());
        let paths = edge.path_views();
        let used: Vec<_> = paths.iter().filter(|p| p.sessions == 1).collect();
        assert_eq!(used.len(), 1, "{paths:?}");
        assert_eq!(
            (used[0].peer.as_str(), used[0].path.as_str()),
            (v.peer.as_str(), v.path.as_str())
        );
        assert!(paths.iter().all(|p| p.up));
        assert_eq!(
            edge.session_counts(),
            vec![(("pos".to_string(), "payments".to_string()), 1)]
        );
    }
}
