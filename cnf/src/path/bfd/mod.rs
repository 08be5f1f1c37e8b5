//! BFD (RFC 5880, asynchronous mode) for peer paths: the Control packet codec and the session
//! state machine, both sans-IO. Single-hop (RFC 5881, UDP 3784, TTL 255) and multihop
//! (RFC 5883, UDP 4784) differ only in how the monitor frames and checks packets.

pub mod packet;
pub mod session;

pub use packet::{Auth, AuthType, Control, ControlPacket, Diagnostic, State};
pub use session::{Event, Session, SessionConfig};

/// UDP destination port of single-hop BFD Control packets (RFC 5881).
pub const SINGLE_HOP_PORT: u16 = 3784;
/// UDP destination port of multihop BFD Control packets (RFC 5883).
pub const MULTIHOP_PORT: u16 = 4784;
