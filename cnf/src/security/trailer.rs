//! Sealing and opening packets: the `seq | tag` trailer at the end of the L4 payload, made with
//! HMAC-SHA256 and the peer key on packets that carry metadata, and with the session AEAD on
//! the others (see the module docs of [`super`] for the layouts and what each tag covers).
//!
//! Every function works in place on a caller's buffer and checks every offset it is given: a
//! bad range is an error, never a panic. After an error from an `open_*` function the
//! buffer's bytes are unspecified (a failed AEAD open may have overwritten them): drop the
//! packet.

use ring::aead;
use signpost_proto::v1::SecurityMode;
use subtle::ConstantTimeEq;

use super::keys::{PeerKey, SessionKey, copy_prefix, hmac_sha256};
use super::{AEAD, AuthError, Direction, SEQ_LEN, SealError, TAG_LEN, TRAILER_LEN, overhead};
use crate::svr::{starts_with_cookie, wire::BASE_HEADER_LEN};

/// Domain separation for the metadata HMAC: no other use of a peer key hashes this prefix.
pub(crate) const METADATA_MAC_LABEL: &[u8] = b"signpost svr v1 metadata hmac-sha256";

/// What a verified trailer said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Opened {
    /// The sender's sequence number, to give to a [`super::ReplayWindow`]. 0 when the packet
    /// had no trailer (security mode NONE on a packet without metadata): 0 is never sent.
    pub seq: u64,
    /// Bytes between the metadata block (or `start`) and the trailer: after [`open_payload`]
    /// in ENCRYPT mode these are plaintext.
    pub payload_len: usize,
}

/// The 96-bit AEAD nonce: the direction as a u32 in the first 4 bytes, `seq` in the last 8,
/// both big-endian. Unique per session key as long as `seq` never repeats in a direction.
#[inline]
fn nonce(dir: Direction, seq: u64) -> aead::Nonce {
    let mut nonce = [0u8; aead::NONCE_LEN];
    let (dir_bytes, seq_bytes) = nonce.split_at_mut(4);
    copy_prefix(dir_bytes, &u32::from(dir.byte()).to_be_bytes());
    copy_prefix(seq_bytes, &seq.to_be_bytes());
    aead::Nonce::assume_unique_for_key(nonce)
}

#[inline]
fn aead_key(key: &SessionKey) -> Option<aead::LessSafeKey> {
    aead::UnboundKey::new(AEAD, key.bytes())
        .ok()
        .map(aead::LessSafeKey::new)
}

/// HMAC-SHA256 truncated to 16 bytes over label, security id, direction, everything from the
/// cookie to the trailer (metadata block and payload as transmitted), and `seq`.
#[inline]
fn metadata_tag(peer_key: &PeerKey, dir: Direction, covered: &[u8], seq: u64) -> [u8; TAG_LEN] {
    let tag = hmac_sha256(
        peer_key.mac(),
        &[
            METADATA_MAC_LABEL,
            &peer_key.security_id().to_be_bytes(),
            &[dir.byte()],
            covered,
            &seq.to_be_bytes(),
        ],
    );
    let mut truncated = [0u8; TAG_LEN];
    copy_prefix(&mut truncated, tag.as_ref());
    truncated
}

#[inline]
fn write_trailer(trailer: &mut [u8], seq: u64, tag: &[u8]) {
    let (seq_bytes, tag_bytes) = trailer.split_at_mut(trailer.len().min(SEQ_LEN));
    copy_prefix(seq_bytes, &seq.to_be_bytes());
    copy_prefix(tag_bytes, tag);
}

/// Splits a trailer into `seq` and tag. `trailer` is exactly [`TRAILER_LEN`] bytes.
#[inline]
fn read_trailer(trailer: &[u8]) -> (u64, [u8; TAG_LEN]) {
    let mut seq = [0u8; SEQ_LEN];
    let mut tag = [0u8; TAG_LEN];
    copy_prefix(&mut seq, trailer);
    copy_prefix(&mut tag, trailer.get(SEQ_LEN..).unwrap_or(&[]));
    (u64::from_be_bytes(seq), tag)
}

/// The trailer room after `len`, or [`SealError::NoRoom`].
#[inline]
fn tailroom(buf: &[u8], len: usize, needed: usize) -> Result<(), SealError> {
    let available = buf.len().saturating_sub(len);
    if available < needed {
        return Err(SealError::NoRoom { needed, available });
    }
    Ok(())
}

#[inline]
fn check_bounds(buf_len: usize, start: usize, len: usize) -> Result<(), (usize, usize, usize)> {
    if start <= len && len <= buf_len {
        Ok(())
    } else {
        Err((start, len, buf_len))
    }
}

/// Authenticates a packet that carries metadata. `l4_payload[..len]` is the metadata block
/// (`metadata_len` bytes, beginning with the cookie) followed by the payload as it will be
/// transmitted; the 24-byte trailer `seq | HMAC tag` is written at `len`, and the new length
/// returned. The block's security id TLV (16) must name `peer_key`.
pub fn seal_metadata_packet(
    peer_key: &PeerKey,
    dir: Direction,
    seq: u64,
    l4_payload: &mut [u8],
    len: usize,
    metadata_len: usize,
) -> Result<usize, SealError> {
    if seq == 0 {
        return Err(SealError::ZeroSeq);
    }
    check_bounds(l4_payload.len(), metadata_len, len).map_err(|(start, len, buf_len)| {
        SealError::OutOfBounds {
            start,
            len,
            buf_len,
        }
    })?;
    let (covered, tail) = l4_payload.split_at_mut(len);
    if metadata_len < BASE_HEADER_LEN || !starts_with_cookie(covered) {
        return Err(SealError::NotMetadata);
    }
    let available = tail.len();
    let trailer = tail.get_mut(..TRAILER_LEN).ok_or(SealError::NoRoom {
        needed: TRAILER_LEN,
        available,
    })?;
    let tag = metadata_tag(peer_key, dir, covered, seq);
    write_trailer(trailer, seq, &tag);
    Ok(len + TRAILER_LEN)
}

/// Verifies a packet that carries metadata: `l4_payload` is the whole L4 payload as received
/// (metadata block of `metadata_len` bytes, payload, trailer). Pick `peer_key` with
/// [`super::PeerKeys::for_metadata`]. Does not check the replay window.
pub fn open_metadata_packet(
    peer_key: &PeerKey,
    dir: Direction,
    l4_payload: &[u8],
    metadata_len: usize,
) -> Result<Opened, AuthError> {
    let len = l4_payload.len();
    let needed = metadata_len.saturating_add(TRAILER_LEN);
    if len < needed {
        return Err(AuthError::Truncated { len, needed });
    }
    let (covered, trailer) = l4_payload.split_at(len - TRAILER_LEN);
    let (seq, tag) = read_trailer(trailer);
    let expected = metadata_tag(peer_key, dir, covered, seq);
    if !bool::from(expected.ct_eq(&tag)) {
        return Err(AuthError::BadTag);
    }
    Ok(Opened {
        seq,
        payload_len: len - needed,
    })
}

/// Protects the application payload `buf[start..len]` of a packet that carries no metadata
/// (or the payload after the block, see [`seal_session_metadata_packet`]), in place, and
/// returns the new length:
/// - NONE: nothing to do, returns `len`;
/// - AUTHENTICATE: appends `seq | tag`, the tag an AEAD seal of no plaintext with the payload
///   as associated data;
/// - ENCRYPT: encrypts the payload in place and appends `seq | tag`.
///
/// `seq` starts at 1 and must never repeat for this session and direction.
pub fn seal_payload(
    key: &SessionKey,
    mode: SecurityMode,
    dir: Direction,
    seq: u64,
    buf: &mut [u8],
    start: usize,
    len: usize,
) -> Result<usize, SealError> {
    check_bounds(buf.len(), start, len).map_err(|(start, len, buf_len)| {
        SealError::OutOfBounds {
            start,
            len,
            buf_len,
        }
    })?;
    let encrypt = match mode {
        SecurityMode::Unspecified => return Err(SealError::UnspecifiedMode),
        SecurityMode::None => return Ok(len),
        SecurityMode::Authenticate => false,
        SecurityMode::Encrypt => true,
    };
    if seq == 0 {
        return Err(SealError::ZeroSeq);
    }
    tailroom(buf, len, TRAILER_LEN)?;
    let (head, tail) = buf.split_at_mut(len);
    let payload = head.get_mut(start..).unwrap_or_default();
    let trailer = tail.get_mut(..TRAILER_LEN).unwrap_or_default();
    let aead = aead_key(key).ok_or(SealError::Cipher)?;
    let tag = if encrypt {
        aead.seal_in_place_separate_tag(nonce(dir, seq), aead::Aad::empty(), payload)
    } else {
        aead.seal_in_place_separate_tag(nonce(dir, seq), aead::Aad::from(&*payload), &mut [])
    }
    .map_err(|_| SealError::Cipher)?;
    write_trailer(trailer, seq, tag.as_ref());
    Ok(len + TRAILER_LEN)
}

/// Verifies (AUTHENTICATE) or decrypts (ENCRYPT) `buf[start..len]` in place, trailer
/// included; the plaintext is then `buf[start..start + payload_len]`. NONE returns the bytes
/// as they are, with `seq` 0. Does not check the replay window.
pub fn open_payload(
    key: &SessionKey,
    mode: SecurityMode,
    dir: Direction,
    buf: &mut [u8],
    start: usize,
    len: usize,
) -> Result<Opened, AuthError> {
    check_bounds(buf.len(), start, len).map_err(|(start, len, buf_len)| {
        AuthError::OutOfBounds {
            start,
            len,
            buf_len,
        }
    })?;
    let encrypted = match mode {
        SecurityMode::Unspecified => return Err(AuthError::UnspecifiedMode),
        SecurityMode::None => {
            return Ok(Opened {
                seq: 0,
                payload_len: len - start,
            });
        }
        SecurityMode::Authenticate => false,
        SecurityMode::Encrypt => true,
    };
    let protected = buf.get_mut(start..len).unwrap_or_default();
    let Some(payload_len) = protected.len().checked_sub(TRAILER_LEN) else {
        return Err(AuthError::Truncated {
            len: protected.len(),
            needed: TRAILER_LEN,
        });
    };
    let (payload, trailer) = protected.split_at_mut(payload_len);
    let (seq, tag) = read_trailer(trailer);
    let aead = aead_key(key).ok_or(AuthError::BadTag)?;
    let tag = aead::Tag::from(tag);
    let opened = if encrypted {
        aead.open_in_place_separate_tag(nonce(dir, seq), aead::Aad::empty(), tag, payload, 0..)
    } else {
        aead.open_in_place_separate_tag(
            nonce(dir, seq),
            aead::Aad::from(&*payload),
            tag,
            &mut [],
            0..,
        )
    };
    opened.map_err(|_| AuthError::BadTag)?;
    Ok(Opened { seq, payload_len })
}

/// Seals a packet that carries metadata in a session of `mode`: in ENCRYPT the payload after
/// the block is first encrypted with [`seal_payload`] (trailer and all), then the whole is
/// authenticated with [`seal_metadata_packet`], both under the same `seq`; in NONE and
/// AUTHENTICATE only the HMAC trailer is added. Checks room for both trailers before touching
/// the buffer.
#[allow(clippy::too_many_arguments)] // two keys and a packet: each argument is one fact
pub fn seal_session_metadata_packet(
    peer_key: &PeerKey,
    session_key: &SessionKey,
    mode: SecurityMode,
    dir: Direction,
    seq: u64,
    l4_payload: &mut [u8],
    len: usize,
    metadata_len: usize,
) -> Result<usize, SealError> {
    if mode == SecurityMode::Unspecified {
        return Err(SealError::UnspecifiedMode);
    }
    if seq == 0 {
        return Err(SealError::ZeroSeq);
    }
    check_bounds(l4_payload.len(), metadata_len, len).map_err(|(start, len, buf_len)| {
        SealError::OutOfBounds {
            start,
            len,
            buf_len,
        }
    })?;
    if metadata_len < BASE_HEADER_LEN || !starts_with_cookie(l4_payload) {
        return Err(SealError::NotMetadata);
    }
    tailroom(l4_payload, len, overhead(mode, true))?;
    let len = if mode == SecurityMode::Encrypt {
        seal_payload(session_key, mode, dir, seq, l4_payload, metadata_len, len)?
    } else {
        len
    };
    seal_metadata_packet(peer_key, dir, seq, l4_payload, len, metadata_len)
}

/// The second step of receiving a packet that carries metadata, once
/// [`open_metadata_packet`] verified it (`outer`) and the session key is known: in ENCRYPT
/// decrypts the payload after the block and checks that both trailers carry the same `seq`;
/// in NONE and AUTHENTICATE returns `outer`. The plaintext is then
/// `l4_payload[metadata_len..metadata_len + payload_len]`.
pub fn open_session_metadata_payload(
    session_key: &SessionKey,
    mode: SecurityMode,
    dir: Direction,
    l4_payload: &mut [u8],
    metadata_len: usize,
    outer: Opened,
) -> Result<Opened, AuthError> {
    match mode {
        SecurityMode::Unspecified => Err(AuthError::UnspecifiedMode),
        SecurityMode::None | SecurityMode::Authenticate => Ok(outer),
        SecurityMode::Encrypt => {
            let end = metadata_len.saturating_add(outer.payload_len);
            let inner = open_payload(session_key, mode, dir, l4_payload, metadata_len, end)?;
            if inner.seq != outer.seq {
                return Err(AuthError::SeqMismatch {
                    metadata: outer.seq,
                    payload: inner.seq,
                });
            }
            Ok(inner)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::{PeerKeys, ReplayWindow};
    use crate::svr::{Metadata, SessionContext};
    use core::net::Ipv4Addr;
    use proptest::prelude::*;
    use signpost_proto::v1 as pb;

    const MODES: [SecurityMode; 3] = [
        SecurityMode::None,
        SecurityMode::Authenticate,
        SecurityMode::Encrypt,
    ];
    const DIRS: [Direction; 2] = [Direction::Forward, Direction::Reverse];
    const UUID: [u8; 16] = *b"session-uuid-001";

    fn peer_key() -> PeerKey {
        PeerKey::new(7, 7, &[0x5a; 32])
    }

    fn session_key() -> SessionKey {
        SessionKey::derive(&peer_key(), &UUID)
    }

    fn metadata(security_id: u32) -> Metadata {
        Metadata {
            security_id: Some(security_id),
            forward_context: Some(SessionContext {
                addrs: crate::svr::ContextAddrs::V4 {
                    src: Ipv4Addr::new(10, 1, 2, 3),
                    dst: Ipv4Addr::new(172, 16, 0, 9),
                },
                src_port: 40_001,
                dst_port: 443,
                protocol: 6,
            }),
            session_uuid: Some(UUID),
            tenant: Some("pos.store-0042".into()),
            service: Some("payments".into()),
            source_router: Some("store-0042".into()),
            ..Metadata::default()
        }
    }

    /// An L4 payload: the metadata block, then `payload`, then `tailroom` spare bytes.
    fn metadata_packet(security_id: u32, payload: &[u8], tailroom: usize) -> (Vec<u8>, usize) {
        let metadata = metadata(security_id);
        let block_len = metadata.buffer_len();
        let mut buf = vec![0u8; block_len + payload.len() + tailroom];
        assert_eq!(metadata.emit(&mut buf).unwrap(), block_len);
        buf[block_len..block_len + payload.len()].copy_from_slice(payload);
        (buf, block_len)
    }

    #[test]
    fn metadata_packet_round_trip_each_direction() {
        let key = peer_key();
        for dir in DIRS {
            let payload = b"\x16\x03\x01 client hello";
            let (mut buf, block_len) = metadata_packet(7, payload, 64);
            let len = block_len + payload.len();
            let sealed = seal_metadata_packet(&key, dir, 3, &mut buf, len, block_len).unwrap();
            assert_eq!(sealed, len + TRAILER_LEN);
            assert_eq!(&buf[len..len + 8], &3u64.to_be_bytes());
            assert_eq!(&buf[block_len..len], payload, "metadata packets stay clear");
            let opened = open_metadata_packet(&key, dir, &buf[..sealed], block_len).unwrap();
            assert_eq!(
                opened,
                Opened {
                    seq: 3,
                    payload_len: payload.len()
                }
            );
            assert_eq!(
                open_metadata_packet(&key, dir.reversed(), &buf[..sealed], block_len),
                Err(AuthError::BadTag),
                "wrong direction"
            );
        }
    }

    /// The tag is exactly HMAC-SHA256(label | security id | direction | bytes | seq)[..16]:
    /// computed here in one piece with ring, independently of the streaming wrapper.
    #[test]
    fn metadata_tag_construction_is_as_documented() {
        let key = peer_key();
        let (mut buf, block_len) = metadata_packet(7, b"abc", 24);
        let len = block_len + 3;
        seal_metadata_packet(&key, Direction::Reverse, 0x0102, &mut buf, len, block_len).unwrap();
        let mut message = METADATA_MAC_LABEL.to_vec();
        message.extend_from_slice(&[0, 0, 0, 7, 1]);
        message.extend_from_slice(&buf[..len]);
        message.extend_from_slice(&0x0102u64.to_be_bytes());
        let tag = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[0x5a; 32]),
            &message,
        );
        assert_eq!(&buf[len + 8..len + 24], &tag.as_ref()[..16]);
    }

    /// The payload trailers are ring's AEAD with the documented nonce, computed here directly.
    #[test]
    fn payload_trailer_construction_is_as_documented() {
        let session = session_key();
        let raw = aead::LessSafeKey::new(aead::UnboundKey::new(AEAD, session.bytes()).unwrap());
        let mut nonce_bytes = [0u8; 12];
        nonce_bytes[3] = 1; // reverse
        nonce_bytes[4..].copy_from_slice(&9u64.to_be_bytes());
        let plaintext = b"forty-two bytes of point-of-sale traffic!!";

        let mut buf = plaintext.to_vec();
        buf.resize(plaintext.len() + TRAILER_LEN, 0);
        let n = seal_payload(
            &session,
            SecurityMode::Encrypt,
            Direction::Reverse,
            9,
            &mut buf,
            0,
            plaintext.len(),
        )
        .unwrap();
        let mut expected = plaintext.to_vec();
        let tag = raw
            .seal_in_place_separate_tag(
                aead::Nonce::assume_unique_for_key(nonce_bytes),
                aead::Aad::empty(),
                &mut expected,
            )
            .unwrap();
        expected.extend_from_slice(&9u64.to_be_bytes());
        expected.extend_from_slice(tag.as_ref());
        assert_eq!(&buf[..n], expected.as_slice());

        let mut buf = plaintext.to_vec();
        buf.resize(plaintext.len() + TRAILER_LEN, 0);
        let n = seal_payload(
            &session,
            SecurityMode::Authenticate,
            Direction::Reverse,
            9,
            &mut buf,
            0,
            plaintext.len(),
        )
        .unwrap();
        let tag = raw
            .seal_in_place_separate_tag(
                aead::Nonce::assume_unique_for_key(nonce_bytes),
                aead::Aad::from(&plaintext[..]),
                &mut [],
            )
            .unwrap();
        assert_eq!(&buf[..plaintext.len()], plaintext);
        assert_eq!(&buf[plaintext.len()..n - 16], &9u64.to_be_bytes());
        assert_eq!(&buf[n - 16..n], tag.as_ref());
    }

    #[test]
    fn payload_round_trip_each_mode_and_direction() {
        let key = session_key();
        for mode in MODES {
            for dir in DIRS {
                for size in [0usize, 1, 64, 1400] {
                    let plaintext: Vec<u8> = (0..size).map(|i| (i * 7) as u8).collect();
                    // 20 bytes of headers in front that the trailer does not cover.
                    let mut buf = vec![0xee; 20];
                    buf.extend_from_slice(&plaintext);
                    let len = buf.len();
                    buf.resize(len + 40, 0);
                    let sealed = seal_payload(&key, mode, dir, 5, &mut buf, 20, len).unwrap();
                    assert_eq!(sealed - len, overhead(mode, false), "{mode:?}");
                    let on_wire = buf[20..sealed].to_vec();
                    if mode == SecurityMode::Encrypt && size > 0 {
                        assert_ne!(&on_wire[..size], plaintext.as_slice(), "encrypted");
                    } else {
                        assert_eq!(&on_wire[..size], plaintext.as_slice(), "{mode:?} is clear");
                    }
                    let opened = open_payload(&key, mode, dir, &mut buf, 20, sealed).unwrap();
                    let expected_seq = if mode == SecurityMode::None { 0 } else { 5 };
                    assert_eq!(
                        opened,
                        Opened {
                            seq: expected_seq,
                            payload_len: size
                        }
                    );
                    assert_eq!(&buf[20..20 + size], plaintext.as_slice());
                    if mode != SecurityMode::None {
                        let mut replay = buf.clone();
                        replay[20..sealed].copy_from_slice(&on_wire);
                        assert_eq!(
                            open_payload(&key, mode, dir.reversed(), &mut replay, 20, sealed),
                            Err(AuthError::BadTag),
                            "wrong direction, {mode:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn ciphertext_differs_per_seq_and_direction() {
        let key = session_key();
        let seal = |dir, seq| {
            let mut buf = [0u8; 32 + TRAILER_LEN];
            seal_payload(&key, SecurityMode::Encrypt, dir, seq, &mut buf, 0, 32).unwrap();
            buf
        };
        let a = seal(Direction::Forward, 1);
        assert_ne!(a[..32], seal(Direction::Forward, 2)[..32]);
        assert_ne!(a[..32], seal(Direction::Reverse, 1)[..32]);
        assert_eq!(
            a,
            seal(Direction::Forward, 1),
            "deterministic for one nonce"
        );
    }

    #[test]
    fn wrong_keys_fail() {
        let (mut buf, block_len) = metadata_packet(7, b"data", 24);
        let len = block_len + 4;
        let n = seal_metadata_packet(&peer_key(), Direction::Forward, 1, &mut buf, len, block_len)
            .unwrap();
        let other = PeerKey::new(7, 7, &[0x5b; 32]);
        assert_eq!(
            open_metadata_packet(&other, Direction::Forward, &buf[..n], block_len),
            Err(AuthError::BadTag)
        );
        // Same bytes, another security id: the id is covered too.
        let renamed = PeerKey::new(8, 7, &[0x5a; 32]);
        assert_eq!(
            open_metadata_packet(&renamed, Direction::Forward, &buf[..n], block_len),
            Err(AuthError::BadTag)
        );

        for mode in [SecurityMode::Authenticate, SecurityMode::Encrypt] {
            let mut buf = [3u8; 100 + TRAILER_LEN];
            let n = seal_payload(
                &session_key(),
                mode,
                Direction::Forward,
                1,
                &mut buf,
                0,
                100,
            )
            .unwrap();
            let other_session = SessionKey::derive(&peer_key(), b"session-uuid-002");
            assert_eq!(
                open_payload(&other_session, mode, Direction::Forward, &mut buf, 0, n),
                Err(AuthError::BadTag),
                "{mode:?}"
            );
        }
    }

    #[test]
    fn truncation_is_an_error() {
        let key = session_key();
        for mode in [SecurityMode::Authenticate, SecurityMode::Encrypt] {
            let mut buf = [1u8; 10 + TRAILER_LEN];
            let n = seal_payload(&key, mode, Direction::Forward, 1, &mut buf, 0, 10).unwrap();
            for cut in 1..=n {
                let error =
                    open_payload(&key, mode, Direction::Forward, &mut buf.clone(), 0, n - cut)
                        .unwrap_err();
                if n - cut < TRAILER_LEN {
                    assert_eq!(
                        error,
                        AuthError::Truncated {
                            len: n - cut,
                            needed: TRAILER_LEN
                        }
                    );
                } else {
                    assert_eq!(error, AuthError::BadTag, "cut {cut}");
                }
            }
        }
        let (mut buf, block_len) = metadata_packet(7, b"", 24);
        let n = seal_metadata_packet(
            &peer_key(),
            Direction::Forward,
            1,
            &mut buf,
            block_len,
            block_len,
        )
        .unwrap();
        for cut in 1..=n {
            let error =
                open_metadata_packet(&peer_key(), Direction::Forward, &buf[..n - cut], block_len)
                    .unwrap_err();
            assert!(
                matches!(error, AuthError::Truncated { needed, .. } if needed == block_len + 24),
                "cut {cut}: {error}"
            );
        }
    }

    #[test]
    fn seal_checks_room_ranges_and_seq() {
        let key = session_key();
        let mut buf = [0u8; 40];
        assert_eq!(
            seal_payload(
                &key,
                SecurityMode::Encrypt,
                Direction::Forward,
                1,
                &mut buf,
                0,
                17
            ),
            Err(SealError::NoRoom {
                needed: 24,
                available: 23
            })
        );
        assert_eq!(
            seal_payload(
                &key,
                SecurityMode::Encrypt,
                Direction::Forward,
                1,
                &mut buf,
                0,
                16
            ),
            Ok(40)
        );
        assert_eq!(
            seal_payload(
                &key,
                SecurityMode::None,
                Direction::Forward,
                1,
                &mut buf,
                0,
                40
            ),
            Ok(40),
            "NONE needs no room"
        );
        assert_eq!(
            seal_payload(
                &key,
                SecurityMode::Encrypt,
                Direction::Forward,
                1,
                &mut buf,
                9,
                8
            ),
            Err(SealError::OutOfBounds {
                start: 9,
                len: 8,
                buf_len: 40
            })
        );
        assert_eq!(
            seal_payload(
                &key,
                SecurityMode::None,
                Direction::Forward,
                1,
                &mut buf,
                0,
                41
            ),
            Err(SealError::OutOfBounds {
                start: 0,
                len: 41,
                buf_len: 40
            })
        );
        assert_eq!(
            seal_payload(
                &key,
                SecurityMode::Authenticate,
                Direction::Forward,
                0,
                &mut buf,
                0,
                1
            ),
            Err(SealError::ZeroSeq)
        );
        assert_eq!(
            seal_payload(
                &key,
                SecurityMode::Unspecified,
                Direction::Forward,
                1,
                &mut buf,
                0,
                1
            ),
            Err(SealError::UnspecifiedMode)
        );
        assert_eq!(
            open_payload(
                &key,
                SecurityMode::Unspecified,
                Direction::Forward,
                &mut buf,
                0,
                30
            ),
            Err(AuthError::UnspecifiedMode)
        );

        let (mut buf, block_len) = metadata_packet(7, b"xyz", 23);
        let len = block_len + 3;
        let pk = peer_key();
        assert_eq!(
            seal_metadata_packet(&pk, Direction::Forward, 1, &mut buf, len, block_len),
            Err(SealError::NoRoom {
                needed: 24,
                available: 23
            })
        );
        assert_eq!(
            seal_metadata_packet(&pk, Direction::Forward, 0, &mut buf, len, block_len),
            Err(SealError::ZeroSeq)
        );
        assert_eq!(
            seal_metadata_packet(&pk, Direction::Forward, 1, &mut buf, len, len + 1),
            Err(SealError::OutOfBounds {
                start: len + 1,
                len,
                buf_len: buf.len()
            })
        );
        let mut ordinary = [0u8; 64];
        assert_eq!(
            seal_metadata_packet(&pk, Direction::Forward, 1, &mut ordinary, 20, 12),
            Err(SealError::NotMetadata)
        );
        // ENCRYPT metadata packets need room for both trailers, checked before any change.
        let (mut buf, block_len) = metadata_packet(7, b"xyz", 47);
        let before = buf.clone();
        assert_eq!(
            seal_session_metadata_packet(
                &pk,
                &key,
                SecurityMode::Encrypt,
                Direction::Forward,
                1,
                &mut buf,
                block_len + 3,
                block_len
            ),
            Err(SealError::NoRoom {
                needed: 48,
                available: 47
            })
        );
        assert_eq!(buf, before, "nothing was encrypted");
    }

    /// The full first-packet exchange for each mode: the ingress seals with the current key;
    /// the egress picks the key by the security id TLV, verifies, parses the metadata, derives
    /// the session key from its UUID and recovers the payload.
    #[test]
    fn session_metadata_packets_each_mode() {
        let config = pb::Peer {
            name: "store-0042".into(),
            keys: vec![
                pb::PeerKey {
                    security_id: 6,
                    key: vec![0x11; 32],
                    epoch: 6,
                },
                pb::PeerKey {
                    security_id: 7,
                    key: vec![0x5a; 32],
                    epoch: 7,
                },
            ],
            ..Default::default()
        };
        let keys = PeerKeys::from_config(&config).unwrap();
        let payload = b"GET /authorize HTTP/1.1\r\n\r\n";
        for mode in MODES {
            for dir in DIRS {
                let sender_key = keys.current();
                let session = SessionKey::derive(sender_key, &UUID);
                let (mut buf, block_len) = metadata_packet(7, payload, 48);
                let len = block_len + payload.len();
                let n = seal_session_metadata_packet(
                    sender_key, &session, mode, dir, 11, &mut buf, len, block_len,
                )
                .unwrap();
                assert_eq!(n - len, overhead(mode, true), "{mode:?}");

                let received = &mut buf[..n];
                let peer_key = keys.for_metadata(received).unwrap();
                assert_eq!(peer_key.security_id(), 7);
                let block_len = crate::svr::metadata_len(received).unwrap();
                let outer = open_metadata_packet(peer_key, dir, received, block_len).unwrap();
                let packet = crate::svr::MetadataPacket::new_checked(&received[..]).unwrap();
                let uuid = Metadata::parse(&packet).unwrap().session_uuid.unwrap();
                let session = SessionKey::derive(peer_key, &uuid);
                let inner =
                    open_session_metadata_payload(&session, mode, dir, received, block_len, outer)
                        .unwrap();
                assert_eq!(inner.seq, 11);
                assert_eq!(&received[block_len..block_len + inner.payload_len], payload);
            }
        }
    }

    #[test]
    fn rotation_keeps_old_sessions_open() {
        let config = pb::Peer {
            name: "hub-west".into(),
            keys: vec![pb::PeerKey {
                security_id: 41,
                key: vec![0x41; 32],
                epoch: 41,
            }],
            ..Default::default()
        };
        let before = PeerKeys::from_config(&config).unwrap();
        let old = before.current();
        let (mut buf, block_len) = metadata_packet(41, b"still here", 24);
        let len = block_len + 10;
        let n = seal_metadata_packet(old, Direction::Forward, 9, &mut buf, len, block_len).unwrap();
        let old_session = SessionKey::derive(old, &UUID);
        let mut data = [9u8; 30 + TRAILER_LEN];
        let m = seal_payload(
            &old_session,
            SecurityMode::Encrypt,
            Direction::Reverse,
            4,
            &mut data,
            0,
            30,
        )
        .unwrap();

        // The operator rotates: key 42 is appended, 41 stays.
        let mut rotated = config.clone();
        rotated.keys.push(pb::PeerKey {
            security_id: 42,
            key: vec![0x42; 32],
            epoch: 42,
        });
        let after = PeerKeys::from_config(&rotated).unwrap();
        assert_eq!(after.current().security_id(), 42);
        let key = after.for_metadata(&buf[..n]).unwrap();
        assert_eq!(key.security_id(), 41);
        assert!(open_metadata_packet(key, Direction::Forward, &buf[..n], block_len).is_ok());
        let session = SessionKey::derive(after.get(41).unwrap(), &UUID);
        assert_eq!(
            open_payload(
                &session,
                SecurityMode::Encrypt,
                Direction::Reverse,
                &mut data,
                0,
                m
            )
            .map(|o| o.payload_len),
            Ok(30)
        );

        // Once 41 is retired, its packets name a key this router no longer has.
        rotated.keys.remove(0);
        let retired = PeerKeys::from_config(&rotated).unwrap();
        assert_eq!(
            retired.for_metadata(&buf[..n]).unwrap_err(),
            AuthError::UnknownKey(41)
        );
    }

    #[test]
    fn key_lookup_errors() {
        let keys = PeerKeys::from_config(&pb::Peer {
            name: "p".into(),
            keys: vec![pb::PeerKey {
                security_id: 1,
                key: vec![0; 32],
                epoch: 1,
            }],
            ..Default::default()
        })
        .unwrap();
        let mut no_id = metadata(1);
        no_id.security_id = None;
        let mut buf = vec![0u8; no_id.buffer_len()];
        no_id.emit(&mut buf).unwrap();
        assert_eq!(
            keys.for_metadata(&buf).unwrap_err(),
            AuthError::NoSecurityId
        );
        assert_eq!(
            keys.for_metadata(b"plain data").unwrap_err(),
            AuthError::Malformed(crate::svr::Error::NoCookie)
        );
    }

    /// A full receive path over one direction: verify, check the window, accept.
    #[test]
    fn replayed_packets_are_refused_after_verifying() {
        let key = session_key();
        let mut window = ReplayWindow::default();
        let mut sent = Vec::new();
        for seq in 1..=3u64 {
            let mut buf = vec![seq as u8; 8 + TRAILER_LEN];
            seal_payload(
                &key,
                SecurityMode::Authenticate,
                Direction::Forward,
                seq,
                &mut buf,
                0,
                8,
            )
            .unwrap();
            sent.push(buf);
        }
        let mut receive = |buf: &[u8]| -> Result<u64, AuthError> {
            let mut buf = buf.to_vec();
            let len = buf.len();
            let opened = open_payload(
                &key,
                SecurityMode::Authenticate,
                Direction::Forward,
                &mut buf,
                0,
                len,
            )?;
            window.check(opened.seq)?;
            window.accept(opened.seq);
            Ok(opened.seq)
        };
        assert_eq!(receive(&sent[1]), Ok(2));
        assert_eq!(receive(&sent[0]), Ok(1), "reordered within the window");
        assert_eq!(receive(&sent[1]), Err(AuthError::Replayed));
        assert_eq!(receive(&sent[2]), Ok(3));
    }

    proptest! {
        #![proptest_config(crate::packet::proptest_config())]

        /// Any single bit flipped in what a metadata packet's tag covers, or in its trailer,
        /// makes the tag fail.
        #[test]
        fn metadata_packet_bit_flips_fail(
            payload in proptest::collection::vec(any::<u8>(), 0..200),
            seq in 1u64..,
            reverse in any::<bool>(),
            position in any::<proptest::sample::Index>(),
            bit in 0u8..8,
        ) {
            let dir = if reverse { Direction::Reverse } else { Direction::Forward };
            let (mut buf, block_len) = metadata_packet(7, &payload, TRAILER_LEN);
            let len = block_len + payload.len();
            let n = seal_metadata_packet(&peer_key(), dir, seq, &mut buf, len, block_len).unwrap();
            prop_assert_eq!(n, buf.len());
            prop_assert!(open_metadata_packet(&peer_key(), dir, &buf, block_len).is_ok());
            buf[position.index(n)] ^= 1 << bit;
            prop_assert_eq!(
                open_metadata_packet(&peer_key(), dir, &buf, block_len),
                Err(AuthError::BadTag)
            );
        }

        /// Any single bit flipped in a protected payload or its trailer makes the tag fail.
        #[test]
        fn payload_bit_flips_fail(
            payload in proptest::collection::vec(any::<u8>(), 0..200),
            encrypt in any::<bool>(),
            seq in 1u64..,
            reverse in any::<bool>(),
            position in any::<proptest::sample::Index>(),
            bit in 0u8..8,
        ) {
            let mode = if encrypt { SecurityMode::Encrypt } else { SecurityMode::Authenticate };
            let dir = if reverse { Direction::Reverse } else { Direction::Forward };
            let key = session_key();
            let mut buf = payload.clone();
            buf.resize(payload.len() + TRAILER_LEN, 0);
            let n = seal_payload(&key, mode, dir, seq, &mut buf, 0, payload.len()).unwrap();
            let mut good = buf.clone();
            prop_assert_eq!(
                open_payload(&key, mode, dir, &mut good, 0, n).map(|o| (o.seq, o.payload_len)),
                Ok((seq, payload.len()))
            );
            prop_assert_eq!(&good[..payload.len()], payload.as_slice());
            buf[position.index(n)] ^= 1 << bit;
            prop_assert_eq!(open_payload(&key, mode, dir, &mut buf, 0, n), Err(AuthError::BadTag));
        }

        /// Any input to the open functions, any offsets: an answer, never a panic.
        #[test]
        fn open_never_panics(
            mut buf in proptest::collection::vec(any::<u8>(), 0..120),
            start in 0usize..140,
            len in 0usize..140,
            metadata_len in any::<usize>(),
            mode in 0i32..5,
        ) {
            let mode = SecurityMode::try_from(mode).unwrap_or(SecurityMode::Encrypt);
            let _ = open_payload(&session_key(), mode, Direction::Forward, &mut buf, start, len);
            let _ = open_metadata_packet(&peer_key(), Direction::Reverse, &buf, metadata_len);
            let outer = Opened { seq: len as u64, payload_len: start };
            let _ = open_session_metadata_payload(
                &session_key(), mode, Direction::Forward, &mut buf, metadata_len, outer,
            );
            let keys = PeerKeys::from_config(&pb::Peer {
                name: "p".into(),
                keys: vec![pb::PeerKey { security_id: 7, key: vec![0; 32], epoch: 1 }],
                ..Default::default()
            }).unwrap();
            let _ = keys.for_metadata(&buf);
            let _ = seal_payload(&session_key(), mode, Direction::Forward, len as u64, &mut buf, start, len);
            let _ = seal_metadata_packet(&peer_key(), Direction::Forward, 1, &mut buf, len, start);
        }
    }
}
