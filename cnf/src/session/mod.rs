//! The session table: every session the router holds, found by its 5-tuple on either side, with
//! idle timeouts per protocol and TCP state, and the global, per-tenant and half-open limits.
//!
//! A session has two keys, both oriented initiator → responder: the **LAN key** (the 5-tuple the
//! hosts use) and the **WAN key** (the waypoint 5-tuple between the two routers). A packet that
//! matches one key is rewritten to the other key in the same orientation — that one rule is the
//! whole NAT, at the ingress router and at the egress router alike. One index entry per key serves
//! both directions (a key and its reverse hash alike), so a session costs two entries.
//!
//! The table is generic over what the pipeline keeps per session (`S`); it owns keys, time, TCP
//! state, byte counts and limits. Time is an argument (`now`), never read here. Expired sessions
//! are removed lazily when a lookup meets them and by [`SessionTable::sweep`], which visits a
//! bounded number of slots per call so that expiry costs amortized O(1) per packet.

mod index;
mod key;
mod table;
pub mod tcp;
mod waypoint;

pub use key::FlowKey;
pub(crate) use key::Octets;
pub use table::{
    Expired, Hit, Insert, Refused, Session, SessionId, SessionTable, Side, TableLimits, Timeouts,
};
pub use tcp::{Segment, TcpState};
pub use waypoint::allocate_waypoint;
