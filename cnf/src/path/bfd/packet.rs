//! The BFD Control packet (RFC 5880 §4): a checked zero-copy view, [`ControlPacket`], and its
//! high-level form, [`Control`], with the optional authentication section (§4.2–§4.4).
//!
//! [`ControlPacket::new_checked`] applies the packet-level checks of the reception rules
//! (§6.8.6): version 1, a Length field of at least 24 (26 with the A bit) and no longer than the
//! UDP payload, a non-zero Detect Mult, the Multipoint bit clear, a non-zero My Discriminator,
//! an authentication section whose type and length agree. [`Control::parse`] adds the last
//! check that needs no session: a zero Your Discriminator is only valid in Down or AdminDown.
//! Nothing here panics on any input; the session checks (demultiplexing, authentication) are
//! [`super::session`]'s and the monitor's.
//!
//! Keyed SHA1 (§6.7.4): the 20-byte digest is SHA-1 over the whole packet with the key in the
//! digest field, which [`seal_sha1`] and [`verify_sha1`] implement for the two SHA-1 types.

use core::fmt;

use ring::digest;
use subtle::ConstantTimeEq;

use crate::packet::{Error, Field, Result, read_u32, write_u32};

mod field {
    use crate::packet::Field;

    pub const VERS_DIAG: usize = 0;
    pub const STATE_FLAGS: usize = 1;
    pub const DETECT_MULT: usize = 2;
    pub const LENGTH: usize = 3;
    pub const MY_DISCR: Field = 4..8;
    pub const YOUR_DISCR: Field = 8..12;
    pub const DESIRED_MIN_TX: Field = 12..16;
    pub const REQUIRED_MIN_RX: Field = 16..20;
    pub const REQUIRED_MIN_ECHO_RX: Field = 20..24;
    pub const HEADER_LEN: usize = 24;
    // The authentication section, relative to HEADER_LEN.
    pub const AUTH_TYPE: usize = 0;
    pub const AUTH_LEN: usize = 1;
    pub const AUTH_KEY_ID: usize = 2;
    /// Keyed MD5 / SHA1: reserved byte, then the sequence number and the digest.
    pub const AUTH_SEQ: Field = 4..8;
    pub const AUTH_DIGEST_AT: usize = 8;
}

/// Flag bits of the second byte (after the two state bits).
mod flag {
    pub const POLL: u8 = 0x20;
    pub const FINAL: u8 = 0x10;
    pub const CONTROL_PLANE_INDEPENDENT: u8 = 0x08;
    pub const AUTH_PRESENT: u8 = 0x04;
    pub const DEMAND: u8 = 0x02;
    pub const MULTIPOINT: u8 = 0x01;
}

/// The fixed part of a Control packet, in bytes.
pub const HEADER_LEN: usize = field::HEADER_LEN;
/// The (Meticulous) Keyed SHA1 authentication section: type, length, key id, reserved,
/// sequence number and the 20-byte digest (§4.4).
pub const SHA1_AUTH_LEN: usize = 28;
const SHA1_DIGEST_LEN: usize = 20;

/// BFD session states as carried in the Sta field (§4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    AdminDown = 0,
    Down = 1,
    Init = 2,
    Up = 3,
}

impl State {
    fn from_bits(bits: u8) -> State {
        match bits & 0x03 {
            0 => State::AdminDown,
            1 => State::Down,
            2 => State::Init,
            _ => State::Up,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            State::AdminDown => "admin-down",
            State::Down => "down",
            State::Init => "init",
            State::Up => "up",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Diagnostic codes (§4.1); codes 9–31 are reserved and kept as [`Diagnostic::Other`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Diagnostic {
    None,
    ControlDetectionTimeExpired,
    EchoFunctionFailed,
    NeighborSignaledSessionDown,
    ForwardingPlaneReset,
    PathDown,
    ConcatenatedPathDown,
    AdministrativelyDown,
    ReverseConcatenatedPathDown,
    Other(u8),
}

impl Diagnostic {
    fn from_code(code: u8) -> Diagnostic {
        match code & 0x1f {
            0 => Diagnostic::None,
            1 => Diagnostic::ControlDetectionTimeExpired,
            2 => Diagnostic::EchoFunctionFailed,
            3 => Diagnostic::NeighborSignaledSessionDown,
            4 => Diagnostic::ForwardingPlaneReset,
            5 => Diagnostic::PathDown,
            6 => Diagnostic::ConcatenatedPathDown,
            7 => Diagnostic::AdministrativelyDown,
            8 => Diagnostic::ReverseConcatenatedPathDown,
            other => Diagnostic::Other(other),
        }
    }

    pub fn code(self) -> u8 {
        match self {
            Diagnostic::None => 0,
            Diagnostic::ControlDetectionTimeExpired => 1,
            Diagnostic::EchoFunctionFailed => 2,
            Diagnostic::NeighborSignaledSessionDown => 3,
            Diagnostic::ForwardingPlaneReset => 4,
            Diagnostic::PathDown => 5,
            Diagnostic::ConcatenatedPathDown => 6,
            Diagnostic::AdministrativelyDown => 7,
            Diagnostic::ReverseConcatenatedPathDown => 8,
            Diagnostic::Other(code) => code & 0x1f,
        }
    }
}

/// Authentication types (§4.1, Auth Type).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthType {
    SimplePassword = 1,
    KeyedMd5 = 2,
    MeticulousKeyedMd5 = 3,
    KeyedSha1 = 4,
    MeticulousKeyedSha1 = 5,
}

impl AuthType {
    fn from_code(code: u8) -> Option<AuthType> {
        Some(match code {
            1 => AuthType::SimplePassword,
            2 => AuthType::KeyedMd5,
            3 => AuthType::MeticulousKeyedMd5,
            4 => AuthType::KeyedSha1,
            5 => AuthType::MeticulousKeyedSha1,
            _ => return None,
        })
    }

    /// Whether the Auth Len field fits the type (§4.2–§4.4).
    fn len_ok(self, len: usize) -> bool {
        match self {
            AuthType::SimplePassword => (4..=19).contains(&len),
            AuthType::KeyedMd5 | AuthType::MeticulousKeyedMd5 => len == 24,
            AuthType::KeyedSha1 | AuthType::MeticulousKeyedSha1 => len == SHA1_AUTH_LEN,
        }
    }

    fn has_sequence(self) -> bool {
        !matches!(self, AuthType::SimplePassword)
    }
}

/// The authentication section's header fields (the digest or password stays in the buffer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Auth {
    pub kind: AuthType,
    pub key_id: u8,
    /// The sequence number; 0 for Simple Password, which has none.
    pub sequence: u32,
}

/// A checked view over a BFD Control packet: the UDP payload. The buffer may be longer than the
/// Length field; the packet stops there.
#[derive(Debug, Clone)]
pub struct ControlPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ControlPacket<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        ControlPacket { buffer }
    }

    /// Checks the packet-level rules of §6.8.6 listed in the module docs.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    fn check(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        if data.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 1 {
            return Err(Error::Malformed("BFD version is not 1"));
        }
        let len = self.len();
        let min = if self.auth_present() {
            HEADER_LEN + 2
        } else {
            HEADER_LEN
        };
        if len < min {
            return Err(Error::Malformed("BFD Length below the header it must hold"));
        }
        if len > data.len() {
            return Err(Error::Truncated);
        }
        if self.detect_mult() == 0 {
            return Err(Error::Malformed("BFD Detect Mult is zero"));
        }
        if self.multipoint() {
            return Err(Error::Malformed("BFD Multipoint bit is set"));
        }
        if self.my_discriminator() == 0 {
            return Err(Error::Malformed("BFD My Discriminator is zero"));
        }
        if self.auth_present() {
            let auth = &data[HEADER_LEN..len];
            let kind = AuthType::from_code(auth[field::AUTH_TYPE])
                .ok_or(Error::Malformed("BFD Auth Type unknown"))?;
            let auth_len = usize::from(auth[field::AUTH_LEN]);
            if !kind.len_ok(auth_len) {
                return Err(Error::Malformed("BFD Auth Len does not fit the Auth Type"));
            }
            if auth_len != auth.len() {
                return Err(Error::Malformed(
                    "BFD Length does not end at the authentication section",
                ));
            }
        } else if len != HEADER_LEN {
            // Without authentication nothing follows the header (§4.1: Length is 24 then).
            return Err(Error::Malformed(
                "BFD Length is not 24 without authentication",
            ));
        }
        Ok(())
    }

    fn byte(&self, at: usize) -> u8 {
        self.buffer.as_ref().get(at).copied().unwrap_or(0)
    }

    pub fn version(&self) -> u8 {
        self.byte(field::VERS_DIAG) >> 5
    }

    pub fn diagnostic(&self) -> Diagnostic {
        Diagnostic::from_code(self.byte(field::VERS_DIAG))
    }

    pub fn state(&self) -> State {
        State::from_bits(self.byte(field::STATE_FLAGS) >> 6)
    }

    fn flag(&self, bit: u8) -> bool {
        self.byte(field::STATE_FLAGS) & bit != 0
    }

    pub fn poll(&self) -> bool {
        self.flag(flag::POLL)
    }

    pub fn final_(&self) -> bool {
        self.flag(flag::FINAL)
    }

    pub fn control_plane_independent(&self) -> bool {
        self.flag(flag::CONTROL_PLANE_INDEPENDENT)
    }

    pub fn auth_present(&self) -> bool {
        self.flag(flag::AUTH_PRESENT)
    }

    pub fn demand(&self) -> bool {
        self.flag(flag::DEMAND)
    }

    pub fn multipoint(&self) -> bool {
        self.flag(flag::MULTIPOINT)
    }

    pub fn detect_mult(&self) -> u8 {
        self.byte(field::DETECT_MULT)
    }

    /// The Length field, in bytes.
    #[allow(clippy::len_without_is_empty)] // never empty: at least 24 once checked
    pub fn len(&self) -> usize {
        usize::from(self.byte(field::LENGTH))
    }

    fn word(&self, f: Field) -> u32 {
        read_u32(self.buffer.as_ref(), f)
    }

    pub fn my_discriminator(&self) -> u32 {
        self.word(field::MY_DISCR)
    }

    pub fn your_discriminator(&self) -> u32 {
        self.word(field::YOUR_DISCR)
    }

    /// Microseconds.
    pub fn desired_min_tx(&self) -> u32 {
        self.word(field::DESIRED_MIN_TX)
    }

    /// Microseconds.
    pub fn required_min_rx(&self) -> u32 {
        self.word(field::REQUIRED_MIN_RX)
    }

    /// Microseconds.
    pub fn required_min_echo_rx(&self) -> u32 {
        self.word(field::REQUIRED_MIN_ECHO_RX)
    }

    /// The authentication section's header, when the A bit is set.
    pub fn auth(&self) -> Option<Auth> {
        if !self.auth_present() {
            return None;
        }
        let data = self.buffer.as_ref().get(HEADER_LEN..self.len())?;
        let kind = AuthType::from_code(*data.get(field::AUTH_TYPE)?)?;
        let sequence = if kind.has_sequence() {
            read_u32(data, field::AUTH_SEQ)
        } else {
            0
        };
        Some(Auth {
            kind,
            key_id: *data.get(field::AUTH_KEY_ID)?,
            sequence,
        })
    }

    /// The packet up to its Length field.
    pub fn as_bytes(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        data.get(..self.len()).unwrap_or(data)
    }
}

/// A BFD Control packet's fields, for building and for the session state machine. Intervals
/// are in microseconds, as on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Control {
    pub diagnostic: Diagnostic,
    pub state: State,
    pub poll: bool,
    pub final_: bool,
    pub control_plane_independent: bool,
    pub demand: bool,
    pub detect_mult: u8,
    pub my_discriminator: u32,
    pub your_discriminator: u32,
    pub desired_min_tx: u32,
    pub required_min_rx: u32,
    pub required_min_echo_rx: u32,
    /// The authentication section's header; `emit` writes a zero digest, which
    /// [`seal_sha1`] then fills.
    pub auth: Option<Auth>,
}

impl Control {
    /// The high-level form of a checked packet. Fails when Your Discriminator is zero outside
    /// Down and AdminDown (§6.8.6).
    pub fn parse<T: AsRef<[u8]>>(p: &ControlPacket<T>) -> Result<Control> {
        let c = Control {
            diagnostic: p.diagnostic(),
            state: p.state(),
            poll: p.poll(),
            final_: p.final_(),
            control_plane_independent: p.control_plane_independent(),
            demand: p.demand(),
            detect_mult: p.detect_mult(),
            my_discriminator: p.my_discriminator(),
            your_discriminator: p.your_discriminator(),
            desired_min_tx: p.desired_min_tx(),
            required_min_rx: p.required_min_rx(),
            required_min_echo_rx: p.required_min_echo_rx(),
            auth: p.auth(),
        };
        if c.your_discriminator == 0 && !matches!(c.state, State::Down | State::AdminDown) {
            return Err(Error::Malformed(
                "BFD Your Discriminator is zero in state Init or Up",
            ));
        }
        if p.auth_present() && c.auth.is_none() {
            return Err(Error::Malformed("BFD authentication section unreadable"));
        }
        Ok(c)
    }

    /// Bytes `emit` writes: 24, plus the authentication section (only SHA1 is built).
    pub fn buffer_len(&self) -> usize {
        match self.auth {
            Some(_) => HEADER_LEN + SHA1_AUTH_LEN,
            None => HEADER_LEN,
        }
    }

    /// Writes the packet into `out` (at least [`Control::buffer_len`] bytes); returns its
    /// length. Only (Meticulous) Keyed SHA1 authentication sections are built; the digest is
    /// left zero for [`seal_sha1`].
    pub fn emit(&self, out: &mut [u8]) -> Result<usize> {
        let len = self.buffer_len();
        let out = out.get_mut(..len).ok_or(Error::Truncated)?;
        out.fill(0);
        out[field::VERS_DIAG] = (1 << 5) | self.diagnostic.code();
        let mut flags = (self.state as u8) << 6;
        for (on, bit) in [
            (self.poll, flag::POLL),
            (self.final_, flag::FINAL),
            (
                self.control_plane_independent,
                flag::CONTROL_PLANE_INDEPENDENT,
            ),
            (self.auth.is_some(), flag::AUTH_PRESENT),
            (self.demand, flag::DEMAND),
        ] {
            if on {
                flags |= bit;
            }
        }
        out[field::STATE_FLAGS] = flags;
        out[field::DETECT_MULT] = self.detect_mult;
        out[field::LENGTH] = len as u8;
        write_u32(out, field::MY_DISCR, self.my_discriminator);
        write_u32(out, field::YOUR_DISCR, self.your_discriminator);
        write_u32(out, field::DESIRED_MIN_TX, self.desired_min_tx);
        write_u32(out, field::REQUIRED_MIN_RX, self.required_min_rx);
        write_u32(out, field::REQUIRED_MIN_ECHO_RX, self.required_min_echo_rx);
        if let Some(auth) = self.auth {
            if !matches!(
                auth.kind,
                AuthType::KeyedSha1 | AuthType::MeticulousKeyedSha1
            ) {
                return Err(Error::Malformed("only Keyed SHA1 sections are built"));
            }
            let a = &mut out[HEADER_LEN..];
            a[field::AUTH_TYPE] = auth.kind as u8;
            a[field::AUTH_LEN] = SHA1_AUTH_LEN as u8;
            a[field::AUTH_KEY_ID] = auth.key_id;
            write_u32(a, field::AUTH_SEQ, auth.sequence);
        }
        Ok(len)
    }
}

/// The SHA-1 digest of `packet` with `key` (zero-padded to 20 bytes) in the digest field.
fn sha1_digest(packet: &[u8], key: &[u8; SHA1_DIGEST_LEN]) -> Option<[u8; SHA1_DIGEST_LEN]> {
    let at = HEADER_LEN + field::AUTH_DIGEST_AT;
    let head = packet.get(..at)?;
    let tail = packet.get(at + SHA1_DIGEST_LEN..)?;
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(head);
    ctx.update(key);
    ctx.update(tail);
    let mut out = [0u8; SHA1_DIGEST_LEN];
    out.copy_from_slice(ctx.finish().as_ref());
    Some(out)
}

/// Fills the digest of an emitted packet with (Meticulous) Keyed SHA1 authentication (§6.7.4).
pub fn seal_sha1(packet: &mut [u8], key: &[u8; SHA1_DIGEST_LEN]) -> Result<()> {
    let digest = sha1_digest(packet, key).ok_or(Error::Truncated)?;
    let at = HEADER_LEN + field::AUTH_DIGEST_AT;
    packet
        .get_mut(at..at + SHA1_DIGEST_LEN)
        .ok_or(Error::Truncated)?
        .copy_from_slice(&digest);
    Ok(())
}

/// Whether a checked packet's Keyed SHA1 digest is right for `key` (constant time).
pub fn verify_sha1<T: AsRef<[u8]>>(p: &ControlPacket<T>, key: &[u8; SHA1_DIGEST_LEN]) -> bool {
    let Some(auth) = p.auth() else { return false };
    if !matches!(
        auth.kind,
        AuthType::KeyedSha1 | AuthType::MeticulousKeyedSha1
    ) {
        return false;
    }
    let packet = p.as_bytes();
    let at = HEADER_LEN + field::AUTH_DIGEST_AT;
    let (Some(expected), Some(got)) = (
        sha1_digest(packet, key),
        packet.get(at..at + SHA1_DIGEST_LEN),
    ) else {
        return false;
    };
    expected.ct_eq(got).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Captured from FRR `bfdd` 8.4.4 (single-hop, UDP 49152 → 3784, TTL 255, TOS 0xc0): its
    /// first packet, Down, Detect Mult 3, My Discriminator 0x80106bfc, Your Discriminator 0,
    /// Desired Min TX and Required Min RX 1 s (the slow rate), Required Min Echo RX 50 ms.
    const FRR_DOWN: [u8; 24] = [
        0x20, 0x40, 0x03, 0x18, 0x80, 0x10, 0x6b, 0xfc, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0f, 0x42,
        0x40, 0x00, 0x0f, 0x42, 0x40, 0x00, 0x00, 0xc3, 0x50,
    ];

    fn up(poll: bool) -> Control {
        Control {
            diagnostic: Diagnostic::None,
            state: State::Up,
            poll,
            final_: false,
            control_plane_independent: false,
            demand: false,
            detect_mult: 3,
            my_discriminator: 7,
            your_discriminator: 9,
            desired_min_tx: 50_000,
            required_min_rx: 50_000,
            required_min_echo_rx: 0,
            auth: None,
        }
    }

    #[test]
    fn a_bfdd_packet_parses_field_by_field() {
        let p = ControlPacket::new_checked(&FRR_DOWN[..]).expect("valid");
        let c = Control::parse(&p).expect("valid");
        assert_eq!(c.state, State::Down);
        assert_eq!(c.diagnostic, Diagnostic::None);
        assert_eq!(c.detect_mult, 3);
        assert_eq!(c.my_discriminator, 0x8010_6bfc);
        assert_eq!(c.your_discriminator, 0);
        assert_eq!(
            (c.desired_min_tx, c.required_min_rx, c.required_min_echo_rx),
            (1_000_000, 1_000_000, 50_000)
        );
        assert!(!c.poll && !c.final_ && c.auth.is_none());
        let mut out = [0u8; 24];
        assert_eq!(c.emit(&mut out), Ok(24));
        assert_eq!(out, FRR_DOWN, "emit reproduces the capture byte for byte");
    }

    #[test]
    fn the_reception_rules_reject_what_section_6_8_6_discards() {
        let bad = |edit: fn(&mut [u8; 24]), why: &str| {
            let mut b = FRR_DOWN;
            edit(&mut b);
            let checked = ControlPacket::new_checked(&b[..]);
            let parsed = checked.as_ref().map(Control::parse);
            assert!(!matches!(parsed, Ok(Ok(_))), "{why}: accepted {parsed:?}");
        };
        bad(|b| b[0] = 0x40, "version 2");
        bad(|b| b[3] = 23, "length 23");
        bad(|b| b[3] = 25, "length beyond the payload");
        bad(|b| b[2] = 0, "detect mult 0");
        bad(|b| b[1] |= 0x01, "multipoint");
        bad(|b| b[4..8].fill(0), "my discriminator 0");
        bad(|b| b[1] = 0xc0, "your discriminator 0 in Up");
        bad(|b| b[1] = 0x80, "your discriminator 0 in Init");
        bad(|b| b[1] |= 0x04, "A bit without a section");
        assert!(ControlPacket::new_checked(&FRR_DOWN[..20]).is_err());
    }

    #[test]
    fn keyed_sha1_seals_and_verifies_and_detects_tampering() {
        let key = [0x42u8; 20];
        let mut c = up(true);
        c.auth = Some(Auth {
            kind: AuthType::MeticulousKeyedSha1,
            key_id: 3,
            sequence: 0xdead_beef,
        });
        let mut buf = [0u8; 64];
        let n = c.emit(&mut buf).expect("room");
        assert_eq!(n, 52);
        seal_sha1(&mut buf[..n], &key).expect("sealed");
        let p = ControlPacket::new_checked(&buf[..n]).expect("valid");
        assert_eq!(Control::parse(&p), Ok(c));
        assert!(verify_sha1(&p, &key));
        assert!(!verify_sha1(&p, &[0x43; 20]), "another key");
        let mut tampered = buf;
        tampered[15] ^= 1;
        let p = ControlPacket::new_checked(&tampered[..n]).expect("still well-formed");
        assert!(!verify_sha1(&p, &key));
        let plain = ControlPacket::new_checked(&FRR_DOWN[..]).expect("valid");
        assert!(!verify_sha1(&plain, &key), "no section, no pass");
    }

    #[test]
    fn auth_sections_must_fit_their_type_and_the_length() {
        let mut c = up(false);
        c.auth = Some(Auth {
            kind: AuthType::KeyedSha1,
            key_id: 1,
            sequence: 1,
        });
        let mut buf = [0u8; 52];
        c.emit(&mut buf).expect("room");
        let mut short = buf;
        short[25] = 24; // Auth Len of MD5 on a SHA1 type
        assert!(ControlPacket::new_checked(&short[..]).is_err());
        let mut unknown = buf;
        unknown[24] = 9;
        assert!(ControlPacket::new_checked(&unknown[..]).is_err());
        let mut longer = buf;
        longer[3] = 51;
        assert!(ControlPacket::new_checked(&longer[..]).is_err());
        // Simple password, 3 bytes: type 1, len 6, key id, "abc".
        let mut pw = [0u8; 30];
        pw[..24].copy_from_slice(&FRR_DOWN);
        pw[1] |= 0x04;
        pw[3] = 30;
        pw[24..30].copy_from_slice(&[1, 6, 1, b'a', b'b', b'c']);
        let p = ControlPacket::new_checked(&pw[..]).expect("valid simple password");
        assert_eq!(
            p.auth().map(|a| (a.kind, a.sequence)),
            Some((AuthType::SimplePassword, 0))
        );
    }

    proptest! {
        #![proptest_config(crate::packet::proptest_config())]

        #[test]
        fn any_bytes_parse_or_fail_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(p) = ControlPacket::new_checked(&bytes[..]) {
                let _ = (p.auth(), p.as_bytes().len(), p.diagnostic(), p.state());
                if let Ok(c) = Control::parse(&p) {
                    let _ = verify_sha1(&p, &[0; 20]);
                    prop_assert!(c.detect_mult != 0 && c.my_discriminator != 0);
                }
            }
        }

        #[test]
        fn emit_then_parse_is_the_identity(
            state in 0u8..4, diag in 0u8..32, poll: bool, fin: bool, demand: bool, cpi: bool,
            mult in 1u8.., my in 1u32.., your: u32, tx: u32, rx: u32, echo: u32,
            auth in proptest::option::of((any::<u8>(), any::<u32>(), any::<bool>())),
        ) {
            let state = State::from_bits(state);
            let your = if your == 0 && matches!(state, State::Init | State::Up) { 1 } else { your };
            let c = Control {
                diagnostic: Diagnostic::from_code(diag), state, poll, final_: fin,
                control_plane_independent: cpi, demand, detect_mult: mult,
                my_discriminator: my, your_discriminator: your, desired_min_tx: tx,
                required_min_rx: rx, required_min_echo_rx: echo,
                auth: auth.map(|(key_id, sequence, meticulous)| Auth {
                    kind: if meticulous { AuthType::MeticulousKeyedSha1 } else { AuthType::KeyedSha1 },
                    key_id, sequence,
                }),
            };
            let mut buf = [0u8; 64];
            let n = c.emit(&mut buf).expect("room");
            prop_assert_eq!(n, c.buffer_len());
            let p = ControlPacket::new_checked(&buf[..n]).expect("valid");
            prop_assert_eq!(Control::parse(&p), Ok(c));
        }
    }
}
