//! Keys: the per-peer keys a router receives in its config ([`PeerKey`], [`PeerKeys`]), the
//! per-session key derived from one of them ([`SessionKey`]), and the two primitives built on
//! ring's HMAC-SHA256 that everything else uses: a many-part HMAC and HKDF-SHA256 (RFC 5869).
//!
//! Raw key bytes are wiped when a key is dropped and never printed by `Debug`. ring's own key
//! schedules (the HMAC pads kept in [`PeerKey`], the AEAD key built per packet) are not wiped:
//! ring gives no way to.

use core::fmt;

use ring::hmac;
use signpost_proto::v1 as pb;
use zeroize::Zeroize;

use super::AuthError;
use crate::svr::{MetadataPacket, tlv_type};

/// Bytes of a peer key and of a session key.
pub const KEY_LEN: usize = 32;

/// HKDF `info` prefix for session keys; the security id follows (4 bytes, big-endian).
const SESSION_KEY_LABEL: &[u8] = b"signpost svr v1 session key";

/// A key shared with one peer router, named on the wire by its security id (SVR TLV 16).
///
/// Keeps the HMAC key schedule (the hashed inner and outer pads) next to the raw bytes, so a
/// metadata packet costs no key setup; the raw bytes feed HKDF for session keys.
#[derive(Clone)]
pub struct PeerKey {
    security_id: u32,
    epoch: u64,
    key: [u8; KEY_LEN],
    mac: hmac::Key,
}

impl PeerKey {
    /// A peer key from its 32 bytes.
    pub fn new(security_id: u32, epoch: u64, key: &[u8; KEY_LEN]) -> PeerKey {
        PeerKey {
            security_id,
            epoch,
            key: *key,
            mac: hmac::Key::new(hmac::HMAC_SHA256, key),
        }
    }

    /// The key version carried in SVR TLV 16.
    #[inline]
    pub fn security_id(&self) -> u32 {
        self.security_id
    }

    /// The rotation epoch the operator made this key for.
    #[inline]
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Key material for another protocol between the same two routers (BFD authentication):
    /// `HKDF-SHA256(salt = label, ikm = peer key, info = label || security id, L = N)`, so
    /// that it reveals nothing about the SVR keys.
    pub fn derive<const N: usize>(&self, label: &[u8]) -> [u8; N] {
        hkdf_sha256(label, &self.key, &[label, &self.security_id.to_be_bytes()])
    }

    #[inline]
    pub(crate) fn mac(&self) -> &hmac::Key {
        &self.mac
    }
}

impl Drop for PeerKey {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

impl fmt::Debug for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerKey")
            .field("security_id", &self.security_id)
            .field("epoch", &self.epoch)
            .field("key", &format_args!("<{KEY_LEN} bytes, not shown>"))
            .finish()
    }
}

/// Why a peer's keys in the config cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The peer has no key at all, so no session with it can be authenticated.
    NoKeys { peer: String },
    /// A key is not 32 bytes.
    BadKeyLength {
        peer: String,
        security_id: u32,
        len: usize,
    },
    /// Two keys share a security id, so the wire cannot say which one a packet uses.
    DuplicateSecurityId { peer: String, security_id: u32 },
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::NoKeys { peer } => write!(
                f,
                "peer `{peer}` has no keys in the router config: sessions with it cannot be \
                 authenticated; the operator must list at least one key for this peer"
            ),
            KeyError::BadKeyLength {
                peer,
                security_id,
                len,
            } => write!(
                f,
                "peer `{peer}`: the key with security id {security_id} is {len} bytes, keys \
                 must be exactly {KEY_LEN}; fix the key material the operator sends for this peer"
            ),
            KeyError::DuplicateSecurityId { peer, security_id } => write!(
                f,
                "peer `{peer}`: security id {security_id} names two keys, so packets cannot say \
                 which one they use; give every key of a peer its own security id"
            ),
        }
    }
}

impl std::error::Error for KeyError {}

/// All keys shared with one peer, oldest first. The newest signs new sessions; older ones stay
/// valid so that a rotation does not break sessions that started before it.
#[derive(Debug, Clone)]
pub struct PeerKeys {
    peer: String,
    /// The newest key.
    current: PeerKey,
    /// Older keys still accepted, oldest first.
    previous: Vec<PeerKey>,
}

impl PeerKeys {
    /// Reads `peer.keys` (newest last, as the config promises). Errors name the peer and the
    /// security id at fault.
    pub fn from_config(peer: &pb::Peer) -> Result<PeerKeys, KeyError> {
        let mut keys: Vec<PeerKey> = Vec::with_capacity(peer.keys.len());
        for config in &peer.keys {
            let Ok(bytes) = <&[u8; KEY_LEN]>::try_from(config.key.as_slice()) else {
                return Err(KeyError::BadKeyLength {
                    peer: peer.name.clone(),
                    security_id: config.security_id,
                    len: config.key.len(),
                });
            };
            if keys.iter().any(|k| k.security_id == config.security_id) {
                return Err(KeyError::DuplicateSecurityId {
                    peer: peer.name.clone(),
                    security_id: config.security_id,
                });
            }
            keys.push(PeerKey::new(config.security_id, config.epoch, bytes));
        }
        let Some(current) = keys.pop() else {
            return Err(KeyError::NoKeys {
                peer: peer.name.clone(),
            });
        };
        Ok(PeerKeys {
            peer: peer.name.clone(),
            current,
            previous: keys,
        })
    }

    /// The peer router's name.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// The newest key: the one new sessions and metadata packets use.
    pub fn current(&self) -> &PeerKey {
        &self.current
    }

    /// The key a packet names by its security id, current or older.
    pub fn get(&self, security_id: u32) -> Option<&PeerKey> {
        self.keys().find(|k| k.security_id == security_id)
    }

    /// All keys, oldest first (the current one last).
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &PeerKey> {
        self.previous.iter().chain(core::iter::once(&self.current))
    }

    /// The key named by the security id TLV (16) in the header of the metadata block at the
    /// start of `l4_payload`, to pass to [`super::open_metadata_packet`]. Reads only the base
    /// header and the header TLVs, which are never encrypted.
    pub fn for_metadata(&self, l4_payload: &[u8]) -> Result<&PeerKey, AuthError> {
        let packet = MetadataPacket::new_checked(l4_payload).map_err(AuthError::Malformed)?;
        for tlv in packet.header_tlvs() {
            let tlv = tlv.map_err(AuthError::Malformed)?;
            if tlv.tlv_type == tlv_type::SECURITY_ID {
                let Ok(value) = <[u8; 4]>::try_from(tlv.value) else {
                    return Err(AuthError::Malformed(crate::svr::Error::BadTlvLength {
                        tlv_type: tlv.tlv_type,
                        len: tlv.value.len(),
                        expected: "4",
                    }));
                };
                let security_id = u32::from_be_bytes(value);
                return self
                    .get(security_id)
                    .ok_or(AuthError::UnknownKey(security_id));
            }
        }
        Err(AuthError::NoSecurityId)
    }
}

/// A session's AEAD key: HKDF-SHA256 of the peer key, salted with the session UUID. Stored as
/// its 32 raw bytes so a session table entry stays small; the cipher key is set up per packet.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKey {
    key: [u8; KEY_LEN],
}

impl SessionKey {
    /// `HKDF-SHA256(salt = session_uuid, ikm = peer key, info = label || security id (u32
    /// BE), L = 32)`. Both routers derive the same key from the metadata's UUID and security
    /// id; the security id in `info` keeps keys of different key versions apart even if the
    /// key bytes were reused.
    pub fn derive(peer_key: &PeerKey, session_uuid: &[u8; 16]) -> SessionKey {
        let security_id = peer_key.security_id.to_be_bytes();
        SessionKey {
            key: hkdf_sha256(
                session_uuid,
                &peer_key.key,
                &[SESSION_KEY_LABEL, &security_id],
            ),
        }
    }

    #[inline]
    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.key
    }
}

impl Drop for SessionKey {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionKey(<{KEY_LEN} bytes, not shown>)")
    }
}

/// HMAC-SHA256 over the concatenation of `parts`.
pub(crate) fn hmac_sha256(key: &hmac::Key, parts: &[&[u8]]) -> hmac::Tag {
    let mut context = hmac::Context::with_key(key);
    for part in parts {
        context.update(part);
    }
    context.sign()
}

/// HKDF-SHA256 (RFC 5869), extract then expand, with `info` given in parts. `L` is checked at
/// compile time against the RFC's limit of 255 blocks, so this cannot fail.
pub(crate) fn hkdf_sha256<const L: usize>(salt: &[u8], ikm: &[u8], info: &[&[u8]]) -> [u8; L] {
    const { assert!(L <= 255 * 32, "HKDF-SHA256 yields at most 8160 bytes") };
    let prk = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, salt), ikm);
    let prk = hmac::Key::new(hmac::HMAC_SHA256, prk.as_ref());
    let mut okm = [0u8; L];
    let mut previous: Option<hmac::Tag> = None;
    for (counter, block) in (1..=u8::MAX).zip(okm.chunks_mut(32)) {
        let mut context = hmac::Context::with_key(&prk);
        if let Some(previous) = &previous {
            context.update(previous.as_ref());
        }
        for part in info {
            context.update(part);
        }
        context.update(&[counter]);
        let t = context.sign();
        copy_prefix(block, t.as_ref());
        previous = Some(t);
    }
    okm
}

/// Copies as many bytes as both slices have; never panics.
#[inline]
pub(crate) fn copy_prefix(dst: &mut [u8], src: &[u8]) {
    dst.iter_mut().zip(src).for_each(|(d, s)| *d = *s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn config_key(security_id: u32, epoch: u64, byte: u8, len: usize) -> pb::PeerKey {
        pb::PeerKey {
            security_id,
            key: vec![byte; len],
            epoch,
        }
    }

    fn peer(keys: Vec<pb::PeerKey>) -> pb::Peer {
        pb::Peer {
            name: "hub-east".into(),
            keys,
            ..Default::default()
        }
    }

    // RFC 4231 §4: HMAC-SHA-256 test cases 1–7, through `hmac_sha256` with the data split in
    // parts (the way the metadata tag is computed).
    #[test]
    fn hmac_sha256_rfc4231_vectors() {
        let cases: [(Vec<u8>, Vec<u8>, &str); 6] = [
            (
                vec![0x0b; 20],
                b"Hi There".to_vec(),
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            (
                b"Jefe".to_vec(),
                b"what do ya want for nothing?".to_vec(),
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                vec![0xaa; 20],
                vec![0xdd; 50],
                "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
            ),
            (
                hex("0102030405060708090a0b0c0d0e0f10111213141516171819"),
                vec![0xcd; 50],
                "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
            ),
            (
                vec![0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
            (
                vec![0xaa; 131],
                b"This is a test using a larger than block-size key and a larger than \
                  block-size data. The key needs to be hashed before being used by the HMAC \
                  algorithm."
                    .to_vec(),
                "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
            ),
        ];
        for (key, data, expected) in cases {
            let key = hmac::Key::new(hmac::HMAC_SHA256, &key);
            for split in [0, 1, data.len() / 2, data.len()] {
                let (a, b) = data.split_at(split);
                let tag = hmac_sha256(&key, &[a, &[], b]);
                assert_eq!(tag.as_ref(), hex(expected).as_slice(), "split at {split}");
            }
        }
        // Test case 5: output truncated to 128 bits, as the metadata trailer does.
        let key = hmac::Key::new(hmac::HMAC_SHA256, &[0x0c; 20]);
        let tag = hmac_sha256(&key, &[b"Test With ", b"Truncation"]);
        assert_eq!(&tag.as_ref()[..16], hex("a3b6167473100ee06e0c796c2955552b"));
    }

    // RFC 5869 Appendix A: test cases 1–3 (SHA-256), through `hkdf_sha256`.
    #[test]
    fn hkdf_sha256_rfc5869_vectors() {
        let okm: [u8; 42] = hkdf_sha256(
            &hex("000102030405060708090a0b0c"),
            &[0x0b; 22],
            &[&hex("f0f1f2f3f4"), &hex("f5f6f7f8f9")],
        );
        assert_eq!(
            okm.as_slice(),
            hex(
                "3cb25f25faacd57a90434f64d0362f2a 2d2d0a90cf1a5a4c5db02d56ecc4c5bf
                 34007208d5b887185865"
            )
        );

        let salt: Vec<u8> = (0x60..=0xaf).collect();
        let ikm: Vec<u8> = (0x00..=0x4f).collect();
        let info: Vec<u8> = (0xb0..=0xff).collect();
        let okm: [u8; 82] = hkdf_sha256(&salt, &ikm, &[&info]);
        assert_eq!(
            okm.as_slice(),
            hex(
                "b11e398dc80327a1c8e7f78c596a4934 4f012eda2d4efad8a050cc4c19afa97c
                 59045a99cac7827271cb41c65e590e09 da3275600c2f09b8367793a9aca3db71
                 cc30c58179ec3e87c14c01d5c1f3434f 1d87"
            )
        );

        let okm: [u8; 42] = hkdf_sha256(&[], &[0x0b; 22], &[]);
        assert_eq!(
            okm.as_slice(),
            hex(
                "8da4e775a563c18f715f802a063c5a31 b8a11f5c5ee1879ec3454e5f3c738d2d
                 9d201395faa4b61a96c8"
            )
        );
    }

    proptest! {
        #![proptest_config(crate::packet::proptest_config())]

        /// Our HKDF agrees with ring's own on any salt, key and info.
        #[test]
        fn hkdf_agrees_with_ring(
            salt in proptest::collection::vec(any::<u8>(), 0..80),
            ikm in proptest::collection::vec(any::<u8>(), 0..80),
            info in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            struct Len(usize);
            impl ring::hkdf::KeyType for Len {
                fn len(&self) -> usize { self.0 }
            }
            let ours: [u8; 72] = hkdf_sha256(&salt, &ikm, &[&info]);
            let mut theirs = [0u8; 72];
            let info_parts = [info.as_slice()];
            ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, &salt)
                .extract(&ikm)
                .expand(&info_parts, Len(72))
                .unwrap()
                .fill(&mut theirs)
                .unwrap();
            prop_assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn from_config_reads_keys_newest_last() {
        let keys = PeerKeys::from_config(&peer(vec![
            config_key(6, 6, 0x11, 32),
            config_key(7, 7, 0x22, 32),
        ]))
        .unwrap();
        assert_eq!(keys.peer(), "hub-east");
        assert_eq!(keys.current().security_id(), 7);
        assert_eq!(keys.current().epoch(), 7);
        assert_eq!(keys.get(6).map(PeerKey::epoch), Some(6));
        assert!(keys.get(8).is_none());
        assert_eq!(
            keys.keys().map(PeerKey::security_id).collect::<Vec<_>>(),
            [6, 7]
        );
    }

    #[test]
    fn from_config_rejects_bad_keys_by_name() {
        let error = PeerKeys::from_config(&peer(vec![
            config_key(6, 6, 0x11, 32),
            config_key(7, 7, 0x22, 31),
        ]))
        .unwrap_err();
        assert_eq!(
            error,
            KeyError::BadKeyLength {
                peer: "hub-east".into(),
                security_id: 7,
                len: 31
            }
        );
        assert_eq!(
            error.to_string(),
            "peer `hub-east`: the key with security id 7 is 31 bytes, keys must be exactly 32; \
             fix the key material the operator sends for this peer"
        );
        assert!(matches!(
            PeerKeys::from_config(&peer(vec![config_key(1, 1, 0, 33)])),
            Err(KeyError::BadKeyLength { len: 33, .. })
        ));
        assert_eq!(
            PeerKeys::from_config(&peer(vec![])).unwrap_err(),
            KeyError::NoKeys {
                peer: "hub-east".into()
            }
        );
        assert_eq!(
            PeerKeys::from_config(&peer(vec![
                config_key(5, 1, 1, 32),
                config_key(5, 2, 2, 32)
            ]))
            .unwrap_err(),
            KeyError::DuplicateSecurityId {
                peer: "hub-east".into(),
                security_id: 5
            }
        );
    }

    #[test]
    fn debug_never_prints_key_bytes() {
        let key = PeerKey::new(9, 3, &[0xab; 32]);
        let session = SessionKey::derive(&key, &[7; 16]);
        let keys = PeerKeys::from_config(&peer(vec![config_key(9, 3, 0xab, 32)])).unwrap();
        let session_hex: String = session.bytes()[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let session_decimal = format!("{:?}", &session.bytes()[..4]);
        let session_decimal = session_decimal.trim_matches(|c| c == '[' || c == ']');
        for text in [
            format!("{key:?}"),
            format!("{key:#?}"),
            format!("{keys:?}"),
            format!("{session:?}"),
            format!("{session:#?}"),
        ] {
            assert!(!text.contains("171"), "a key byte in decimal: {text}");
            assert!(
                !text.to_lowercase().contains("abab"),
                "key bytes in hex: {text}"
            );
            assert!(!text.contains(&session_hex), "session key in hex: {text}");
            assert!(!text.contains(session_decimal), "session key bytes: {text}");
            assert!(text.contains("not shown"), "{text}");
        }
        assert!(format!("{key:?}").contains("security_id: 9"));
    }

    #[test]
    fn derive_is_deterministic_and_separates_sessions_and_versions() {
        let key = PeerKey::new(1, 1, &[0x42; 32]);
        let a = SessionKey::derive(&key, &[1; 16]);
        assert_eq!(a, SessionKey::derive(&key, &[1; 16]));
        assert_eq!(a, SessionKey::derive(&key.clone(), &[1; 16]));
        let mut uuid = [1; 16];
        uuid[15] = 2;
        assert_ne!(a, SessionKey::derive(&key, &uuid));
        // Same key bytes under another security id: another session key.
        assert_ne!(
            a,
            SessionKey::derive(&PeerKey::new(2, 1, &[0x42; 32]), &[1; 16])
        );
        assert_ne!(
            a,
            SessionKey::derive(&PeerKey::new(1, 1, &[0x43; 32]), &[1; 16])
        );
        // The construction, spelled out with ring's HKDF.
        struct Len;
        impl ring::hkdf::KeyType for Len {
            fn len(&self) -> usize {
                32
            }
        }
        let mut expected = [0u8; 32];
        let info = [SESSION_KEY_LABEL, &1u32.to_be_bytes()[..]];
        ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, &[1; 16])
            .extract(&[0x42; 32])
            .expand(&info, Len)
            .unwrap()
            .fill(&mut expected)
            .unwrap();
        assert_eq!(a.bytes(), &expected);
    }

    #[test]
    fn a_session_key_is_its_32_bytes() {
        assert_eq!(core::mem::size_of::<SessionKey>(), 32);
    }
}
