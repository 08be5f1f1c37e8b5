//! The health message a router sends its peers about the service locations it fronts, framed
//! with the SVR metadata codec and authenticated with the peer key.
//!
//! ```text
//! UDP payload = SVR metadata block, no original payload, then the 24-byte trailer:
//!   header TLVs   16 security id (the peer key's version)
//!   payload TLVs  10 service name          the location's service
//!                 14 source router name    who fronts it (the sender)
//!                 17 destination router    the peer it is meant for
//!                 24 control message = 8   "health check"
//!                 46 (1 byte)              the location's state: 1 up, 0 down
//!   trailer       seq (u64 BE) | HMAC-SHA256(peer key, ...)[..16]   (crate::security)
//! ```
//!
//! Why this framing: SVR's own vocabulary has a control message for health checks (TLV 24 code
//! 8) and a one-byte health-check TLV (46), and every Signpost router already authenticates
//! metadata blocks with the peer key ([`security::seal_metadata_packet`]); the draft's health
//! check asks about a *session's* state, ours reports a *location's*, so the message carries a
//! service name and no session UUID or context, which also means no session code path can
//! mistake it for one of its own. It travels on the 5-tuple of a peer path's BFD session
//! (the only one a carrier NAT keeps open towards a store when no session is live); a BFD
//! Control packet can never begin with the SVR cookie (its version bits are 1, the cookie's
//! first byte has 2), so the receiver tells them apart by the first bytes.
//!
//! **Freshness.** `seq` is the sender's wall clock in microseconds since the Unix epoch, made
//! strictly increasing: the receiver keeps a replay window per peer (a duplicate or a replay
//! is refused, counted), and refuses a message more than [`MAX_SKEW`] away from its own clock,
//! so a recorded message cannot be replayed to a router that restarted either. The cost is that
//! the two routers' clocks must agree within [`MAX_SKEW`]; when they do not, the messages are
//! refused and counted (`stale`) and failover falls back to path liveness alone.

use std::time::Duration;

use crate::security::{self, PeerKey, PeerKeys, TRAILER_LEN};
use crate::svr::{self, Classified, ControlMessage, Metadata, Section, UnknownTlv, tlv_type};

/// How far a message's time may be from the receiver's clock.
pub const MAX_SKEW: Duration = Duration::from_secs(300);
/// Messages are authenticated as the forward direction of the peer key's metadata HMAC.
const DIRECTION: security::Direction = security::Direction::Forward;

/// One location's state, from the router that fronts it to one peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthMessage {
    pub service: String,
    /// The sender: the router that fronts the location.
    pub from: String,
    /// The peer it is meant for.
    pub to: String,
    pub up: bool,
}

/// Why a received message was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not a metadata block, a TLV missing or malformed, or not a health check.
    Malformed,
    /// The security id names no key of the peer.
    UnknownKey,
    /// Wrong HMAC, or the source / destination routers are not the peer and this router.
    AuthFailed,
    /// Seen already, or too far behind the newest seen (replay window).
    Replay,
    /// Its time is more than [`MAX_SKEW`] from this router's clock.
    Stale,
    /// Authentic, but about a service this router does not know at that peer.
    UnknownService,
}

impl HealthMessage {
    fn metadata(&self, security_id: u32) -> Metadata {
        Metadata {
            security_id: Some(security_id),
            service: Some(self.service.clone()),
            source_router: Some(self.from.clone()),
            destination_router: Some(self.to.clone()),
            control_message: Some(ControlMessage::HealthCheckStateExists),
            unknown: vec![UnknownTlv {
                section: Section::Payload,
                tlv_type: tlv_type::SESSION_HEALTH_CHECK_OR_KEY,
                value: vec![u8::from(self.up)],
            }],
            ..Metadata::default()
        }
    }

    /// The UDP payload carrying this message, sealed with `key` under sequence number `seq`
    /// (non-zero, never repeated for this peer).
    pub fn seal(&self, key: &PeerKey, seq: u64) -> Option<Vec<u8>> {
        let meta = self.metadata(key.security_id());
        let len = meta.buffer_len();
        let mut out = vec![0u8; len + TRAILER_LEN];
        let written = meta.emit(&mut out).ok()?;
        let sealed =
            security::seal_metadata_packet(key, DIRECTION, seq, &mut out, written, written).ok()?;
        out.truncate(sealed);
        Some(out)
    }

    /// Reads and authenticates a message from the peer whose keys are `keys`, meant for the
    /// router `me`. Returns the message and its sequence number; the caller checks the replay
    /// window and the clock.
    pub fn open(
        payload: &[u8],
        keys: &PeerKeys,
        me: &str,
    ) -> Result<(HealthMessage, u64), Refusal> {
        let view = match svr::classify(payload) {
            Ok(Classified::Metadata(view)) => view,
            _ => return Err(Refusal::Malformed),
        };
        let meta_len = view.total_len();
        let meta = Metadata::parse(&view).map_err(|_| Refusal::Malformed)?;
        let key = keys
            .get(meta.security_id.ok_or(Refusal::Malformed)?)
            .ok_or(Refusal::UnknownKey)?;
        let opened = security::open_metadata_packet(key, DIRECTION, payload, meta_len).map_err(
            |e| match e {
                security::AuthError::BadTag => Refusal::AuthFailed,
                _ => Refusal::Malformed,
            },
        )?;
        if opened.payload_len != 0
            || meta.control_message != Some(ControlMessage::HealthCheckStateExists)
            || meta.session_uuid.is_some()
        {
            return Err(Refusal::Malformed);
        }
        let state = meta
            .unknown
            .iter()
            .find(|t| t.tlv_type == tlv_type::SESSION_HEALTH_CHECK_OR_KEY)
            .ok_or(Refusal::Malformed)?;
        let up = match state.value.as_slice() {
            [0] => false,
            [1] => true,
            _ => return Err(Refusal::Malformed),
        };
        let (Some(service), Some(from), Some(to)) =
            (meta.service, meta.source_router, meta.destination_router)
        else {
            return Err(Refusal::Malformed);
        };
        // Authentic, but a message for another router, or reflected back at its sender, is not
        // ours to act on.
        if from != keys.peer() || to != me {
            return Err(Refusal::AuthFailed);
        }
        Ok((
            HealthMessage {
                service,
                from,
                to,
                up,
            },
            opened.seq,
        ))
    }
}

/// Whether `seq` (a sender's clock, µs since the epoch) is within [`MAX_SKEW`] of `wall_us`.
pub fn fresh(seq: u64, wall_us: u64) -> bool {
    seq.abs_diff(wall_us) <= MAX_SKEW.as_micros() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use signpost_proto::v1 as pb;

    fn keys(peer: &str, key: u8) -> PeerKeys {
        PeerKeys::from_config(&pb::Peer {
            name: peer.into(),
            keys: vec![pb::PeerKey {
                security_id: 7,
                key: vec![key; 32],
                epoch: 1,
            }],
            ..Default::default()
        })
        .expect("a valid key")
    }

    fn message(up: bool) -> HealthMessage {
        HealthMessage {
            service: "payments".into(),
            from: "hub-aws".into(),
            to: "store-0142".into(),
            up,
        }
    }

    #[test]
    fn a_sealed_message_opens_with_the_peer_key_and_reads_as_svr() {
        let hub_side = keys("store-0142", 0x42);
        let store_side = keys("hub-aws", 0x42);
        for up in [true, false] {
            let wire = message(up)
                .seal(hub_side.current(), 1_000_000)
                .expect("sealed");
            let (m, seq) = HealthMessage::open(&wire, &store_side, "store-0142").expect("opens");
            assert_eq!((m, seq), (message(up), 1_000_000));
            // Standard SVR tooling reads it: a metadata block with the health-check control code.
            let Ok(Classified::Metadata(view)) = svr::classify(&wire) else {
                panic!("not metadata");
            };
            let meta = Metadata::parse(&view).expect("parses");
            assert_eq!(
                meta.control_message,
                Some(ControlMessage::HealthCheckStateExists)
            );
        }
    }

    #[test]
    fn forgeries_and_misdirected_messages_are_refused() {
        let store_side = keys("hub-aws", 0x42);
        let wire = message(false)
            .seal(keys("store-0142", 0x43).current(), 5)
            .expect("sealed");
        assert_eq!(
            HealthMessage::open(&wire, &store_side, "store-0142"),
            Err(Refusal::AuthFailed),
            "a wrong key"
        );
        let good = message(false)
            .seal(keys("store-0142", 0x42).current(), 5)
            .expect("sealed");
        // One bit flipped anywhere: refused.
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            assert!(
                HealthMessage::open(&bad, &store_side, "store-0142").is_err(),
                "{i}"
            );
        }
        // Meant for another store, or claiming another sender.
        assert_eq!(
            HealthMessage::open(&good, &store_side, "store-0143"),
            Err(Refusal::AuthFailed)
        );
        let other = HealthMessage {
            from: "hub-azure".into(),
            ..message(false)
        }
        .seal(keys("store-0142", 0x42).current(), 6)
        .expect("sealed");
        assert_eq!(
            HealthMessage::open(&other, &store_side, "store-0142"),
            Err(Refusal::AuthFailed)
        );
        for len in 0..good.len() {
            assert!(HealthMessage::open(&good[..len], &store_side, "store-0142").is_err());
        }
    }

    #[test]
    fn freshness_is_judged_against_the_receivers_clock() {
        let now = 1_800_000_000_000_000u64;
        assert!(fresh(now - 1_000_000, now));
        assert!(!fresh(now - MAX_SKEW.as_micros() as u64 - 1, now));
        assert!(!fresh(now + MAX_SKEW.as_micros() as u64 + 1, now));
    }
}
