//! The cryptography of SVR sessions, as pure functions over byte slices (no sockets, no
//! clocks): per-peer keys and per-session keys ([`keys`]), the trailer that authenticates or
//! encrypts a packet ([`trailer`]), and the replay window ([`replay`]). Built on `ring`.
//!
//! # Keys
//!
//! - **Peer keys**: the router config lists, per peer, `keys[] = { security_id, key (32
//!   bytes), epoch }`, newest last ([`PeerKeys::from_config`]). The newest signs new packets
//!   ([`PeerKeys::current`]); older ones stay valid ([`PeerKeys::get`]) so that a rotation does
//!   not break live sessions. A metadata block names its key in the security id TLV (16),
//!   which sits in the header TLVs and is never encrypted ([`PeerKeys::for_metadata`]).
//! - **Session keys**: `HKDF-SHA256(salt = session UUID, ikm = peer key, info =
//!   "signpost svr v1 session key" || security id (u32 BE))`, 32 bytes ([`SessionKey::derive`]).
//!   Both routers derive it from the metadata; it is stored raw (32 bytes) in the session
//!   entry and the AEAD key is set up from it per packet.
//!
//! # The trailer
//!
//! Every protected packet ends (at the end of its L4 payload) with a 24-byte trailer:
//!
//! ```text
//! ... | seq: u64 BE | tag: 16 bytes |
//! ```
//!
//! `seq` starts at 1 and never repeats for one session and direction (the sender counts); the
//! receiver's [`ReplayWindow`] refuses duplicates and anything 64 or more behind the highest
//! accepted. The IP and L4 headers are never covered: NATs between routers rewrite them.
//!
//! **Packets that carry metadata** (every mode) are authenticated with the *peer* key:
//! `tag = HMAC-SHA256(peer key, "signpost svr v1 metadata hmac-sha256" || security id (u32 BE)
//! || direction (1 byte) || metadata block || payload as transmitted || seq (u64 BE))`
//! truncated to 16 bytes ([`seal_metadata_packet`]). The tag covers every byte from the cookie
//! to the trailer; the block's own length fields (covered) say where the payload begins.
//!
//! **Packets without metadata** use the *session* AEAD with nonce `direction (u32 BE: 0 =
//! forward, initiator to responder; 1 = reverse) || seq (u64 BE)` (96 bits), per
//! [`SecurityMode`] ([`seal_payload`]):
//!
//! - NONE: nothing is added.
//! - AUTHENTICATE: `tag` = AEAD seal of an empty plaintext with the payload as associated data.
//! - ENCRYPT: the payload is encrypted in place, `tag` is the AEAD tag.
//!
//! **ENCRYPT packets that carry metadata** get both, nested: the payload after the block is
//! sealed as above (ciphertext, then `seq | AEAD tag`), then the whole is HMAC'd with the peer
//! key and a second `seq | HMAC tag` appended, with the same `seq`
//! ([`seal_session_metadata_packet`]). The receiver checks the HMAC before it creates any
//! state, then derives the session key from the metadata and decrypts
//! ([`open_session_metadata_payload`]). The 8 repeated `seq` bytes buy one trailer format and
//! two steps that each stand alone; metadata rides on a handful of packets per session.
//!
//! ```text
//! with metadata, NONE / AUTHENTICATE   [block][payload]          [seq|HMAC]
//! with metadata, ENCRYPT               [block][ciphertext][seq|AEAD][seq|HMAC]
//! without metadata, NONE               [payload]
//! without metadata, AUTHENTICATE       [payload]   [seq|AEAD over payload as AD]
//! without metadata, ENCRYPT            [ciphertext][seq|AEAD]
//! ```
//!
//! # Bytes added per packet ([`overhead`])
//!
//! | mode | packet with metadata | packet without metadata |
//! |---|---|---|
//! | NONE | metadata + 24 | 0 |
//! | AUTHENTICATE | metadata + 24 | 24 |
//! | ENCRYPT | metadata + 48 | 24 |
//!
//! # The AEAD: ChaCha20-Poly1305
//!
//! ChaCha20-Poly1305 (RFC 8439) from ring, because: its key setup is a copy, so building the
//! cipher from the session entry's 32 raw bytes costs next to nothing per packet; it treats
//! associated data as fast as plaintext, so AUTHENTICATE costs no more than ENCRYPT; and it is
//! fast and constant-time without AES hardware, which store edges may lack.
//!
//! The trade, measured on the bench machine (AES-NI, VAES, VPCLMULQDQ; 2 cores, shared): ring's
//! AES-256-GCM needs about 290 ns of key setup per packet (AES key expansion and GHASH table;
//! ring keeps a set-up key in 544 bytes, too big for a session entry), about 5 times ChaCha20-Poly1305's. With
//! that included, AES-256-GCM is about as fast at 64 bytes, about 2x faster for ENCRYPT of
//! 1400 bytes, and about 1.6x slower for AUTHENTICATE of 1400 bytes (ring hashes associated
//! data one 16-byte block at a time). Figures: `cargo bench -p signpost-cnf --bench security`,
//! groups `aead_key_setup` and `aead_raw`. Both routers must use the same AEAD: changing it is
//! a wire change.
//!
//! # Errors
//!
//! Nothing here panics on any input: every offset is checked and a bad one is an error. A
//! packet that fails to open is dropped; the buffer's contents are then unspecified.

pub mod keys;
pub mod replay;
pub mod trailer;

use core::fmt;

use ring::aead;
use signpost_proto::v1::SecurityMode;

pub use keys::{KEY_LEN, KeyError, PeerKey, PeerKeys, SessionKey};
pub use replay::{REPLAY_WINDOW, ReplayWindow};
pub use trailer::{
    Opened, open_metadata_packet, open_payload, open_session_metadata_payload,
    seal_metadata_packet, seal_payload, seal_session_metadata_packet,
};

/// Bytes of the sequence number at the start of a trailer.
pub const SEQ_LEN: usize = 8;
/// Bytes of a tag: the truncated HMAC or the AEAD tag.
pub const TAG_LEN: usize = 16;
/// `seq | tag`.
pub const TRAILER_LEN: usize = SEQ_LEN + TAG_LEN;

/// The session AEAD (see the module docs for why this one).
pub(crate) const AEAD: &aead::Algorithm = &aead::CHACHA20_POLY1305;

/// Which way a packet goes in its session; part of every tag and nonce, so a packet cannot be
/// reflected back to its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Initiator to responder (byte 0).
    Forward,
    /// Responder to initiator (byte 1).
    Reverse,
}

impl Direction {
    /// The byte that stands for the direction in tags and nonces.
    #[inline]
    pub const fn byte(self) -> u8 {
        match self {
            Direction::Forward => 0,
            Direction::Reverse => 1,
        }
    }

    /// The other direction.
    #[inline]
    pub const fn reversed(self) -> Direction {
        match self {
            Direction::Forward => Direction::Reverse,
            Direction::Reverse => Direction::Forward,
        }
    }
}

/// Trailer bytes a packet gains in `mode` (see the table in the module docs). UNSPECIFIED,
/// which the seal functions refuse, counts as ENCRYPT so that MTU budgets stay safe.
pub const fn overhead(mode: SecurityMode, carries_metadata: bool) -> usize {
    match (mode, carries_metadata) {
        (SecurityMode::None, false) => 0,
        (SecurityMode::None | SecurityMode::Authenticate, true) => TRAILER_LEN,
        (SecurityMode::Authenticate | SecurityMode::Encrypt | SecurityMode::Unspecified, false) => {
            TRAILER_LEN
        }
        (SecurityMode::Encrypt | SecurityMode::Unspecified, true) => 2 * TRAILER_LEN,
    }
}

/// Why a packet could not be sealed. Each is a bug or a buffer too small on the sending side,
/// never something a peer controls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SealError {
    /// The buffer has fewer spare bytes after the packet than the trailer(s) need.
    NoRoom { needed: usize, available: usize },
    /// `start..len` (or `metadata_len..len`) is not a range within the buffer.
    OutOfBounds {
        start: usize,
        len: usize,
        buf_len: usize,
    },
    /// Sequence numbers start at 1; 0 would collide with "no trailer".
    ZeroSeq,
    /// A metadata packet must begin with the SVR cookie and a whole base header.
    NotMetadata,
    /// The session's security mode is UNSPECIFIED.
    UnspecifiedMode,
    /// ring refused the key or the input size (cannot happen with 32-byte keys and packets).
    Cipher,
}

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SealError::NoRoom { needed, available } => write!(
                f,
                "no room for the security trailer: it needs {needed} bytes after the packet, \
                 the buffer has {available}; reserve tailroom (see security::overhead)"
            ),
            SealError::OutOfBounds {
                start,
                len,
                buf_len,
            } => write!(
                f,
                "payload range {start}..{len} does not lie within the {buf_len}-byte buffer"
            ),
            SealError::ZeroSeq => write!(
                f,
                "sequence number 0 is never sent: a session's sequence numbers start at 1"
            ),
            SealError::NotMetadata => write!(
                f,
                "the packet to authenticate as metadata does not begin with an SVR metadata \
                 block (cookie and 12-byte base header)"
            ),
            SealError::UnspecifiedMode => write!(
                f,
                "the session's security mode is unspecified; the policy must say none, \
                 authenticate or encrypt (the operator's config is incomplete)"
            ),
            SealError::Cipher => write!(
                f,
                "the cipher refused the key or the packet size; this is a bug, please report it"
            ),
        }
    }
}

impl std::error::Error for SealError {}

/// Why a received packet is not accepted. Operators see these in drop counters and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// The packet is shorter than its metadata plus the trailer.
    Truncated { len: usize, needed: usize },
    /// The tag does not match: the packet was altered, or sent with another key, session or
    /// direction.
    BadTag,
    /// The security id names no key shared with this peer.
    UnknownKey(u32),
    /// This sequence number was already accepted.
    Replayed,
    /// The sequence number is 64 or more behind the highest accepted.
    TooOld,
    /// Sequence number 0, which no sender uses.
    ZeroSeq,
    /// The metadata block carries no security id TLV (16).
    NoSecurityId,
    /// The metadata block does not decode far enough to find its security id.
    Malformed(crate::svr::Error),
    /// An ENCRYPT metadata packet whose two trailers carry different sequence numbers.
    SeqMismatch { metadata: u64, payload: u64 },
    /// The session's security mode is UNSPECIFIED.
    UnspecifiedMode,
    /// `start..len` is not a range within the buffer (a caller bug).
    OutOfBounds {
        start: usize,
        len: usize,
        buf_len: usize,
    },
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::Truncated { len, needed } => write!(
                f,
                "packet truncated: {len} bytes, too short for its security trailer (needs at \
                 least {needed})"
            ),
            AuthError::BadTag => write!(
                f,
                "authentication failed: the packet was altered in transit or sealed with \
                 another key, session or direction; check that both routers have the same \
                 peer keys"
            ),
            AuthError::UnknownKey(security_id) => write!(
                f,
                "security id {security_id} names no key shared with this peer: the peer uses \
                 a key this router was not given or has already retired; check that both \
                 routers run the same config version"
            ),
            AuthError::Replayed => write!(
                f,
                "replayed packet: this sequence number was already received in this session \
                 direction (a duplicate, or a replay attack)"
            ),
            AuthError::TooOld => write!(
                f,
                "packet too old: its sequence number is {REPLAY_WINDOW} or more behind the \
                 newest received (heavy reordering, or a replay)"
            ),
            AuthError::ZeroSeq => write!(
                f,
                "sequence number 0 is never sent (sequences start at 1): the packet is forged \
                 or its sender is broken"
            ),
            AuthError::NoSecurityId => write!(
                f,
                "the SVR metadata carries no security id (TLV 16), so no key can verify it; \
                 the sending router must name its key"
            ),
            AuthError::Malformed(error) => write!(f, "cannot find the packet's key: {error}"),
            AuthError::SeqMismatch { metadata, payload } => write!(
                f,
                "the metadata trailer says sequence {metadata} but the payload trailer says \
                 {payload}; the sending router is broken"
            ),
            AuthError::UnspecifiedMode => write!(
                f,
                "the session's security mode is unspecified; the policy must say none, \
                 authenticate or encrypt (the operator's config is incomplete)"
            ),
            AuthError::OutOfBounds {
                start,
                len,
                buf_len,
            } => write!(
                f,
                "payload range {start}..{len} does not lie within the {buf_len}-byte buffer"
            ),
        }
    }
}

impl std::error::Error for AuthError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overhead_table() {
        use SecurityMode::*;
        assert_eq!(TRAILER_LEN, 24);
        assert_eq!(overhead(None, false), 0);
        assert_eq!(overhead(None, true), 24);
        assert_eq!(overhead(Authenticate, false), 24);
        assert_eq!(overhead(Authenticate, true), 24);
        assert_eq!(overhead(Encrypt, false), 24);
        assert_eq!(overhead(Encrypt, true), 48);
        assert_eq!(overhead(Unspecified, true), 48);
    }

    #[test]
    fn directions() {
        assert_eq!(Direction::Forward.byte(), 0);
        assert_eq!(Direction::Reverse.byte(), 1);
        assert_eq!(Direction::Forward.reversed(), Direction::Reverse);
    }

    #[test]
    fn error_texts_read_well() {
        assert_eq!(
            AuthError::UnknownKey(42).to_string(),
            "security id 42 names no key shared with this peer: the peer uses a key this \
             router was not given or has already retired; check that both routers run the \
             same config version"
        );
        assert_eq!(
            AuthError::Truncated {
                len: 10,
                needed: 24
            }
            .to_string(),
            "packet truncated: 10 bytes, too short for its security trailer (needs at least 24)"
        );
        assert!(AuthError::TooOld.to_string().contains("64 or more behind"));
        assert_eq!(
            SealError::NoRoom {
                needed: 24,
                available: 3
            }
            .to_string(),
            "no room for the security trailer: it needs 24 bytes after the packet, the buffer \
             has 3; reserve tailroom (see security::overhead)"
        );
    }
}
