//! The SVR metadata block as bytes (draft-menon-svr §10, summarised in SVR-NOTES.md): the
//! cookie, the 12-byte base header, and the two TLV sections, with a zero-copy view, a TLV
//! iterator and the errors an operator reads when a block does not decode.
//!
//! ```text
//! offset 0   8   cookie 4c 48 db c6 dd f6 67 0c
//! offset 8   2   version (high 4 bits, = 1) | header length (low 12 bits: 12 + header TLVs)
//! offset 10  2   payload length (bytes of payload TLVs)
//! offset 12      header TLVs (never encrypted)   ... up to `header length`
//!                payload TLVs (may be encrypted)  ... `payload length` bytes
//!                the original L4 payload
//! TLV:           type u16 | length u16 | value[length], big-endian
//! ```

use core::fmt;
use core::ops::Range;

/// The eight bytes that mark an L4 payload as starting with SVR metadata.
pub const COOKIE: [u8; 8] = 0x4C48_DBC6_DDF6_670Cu64.to_be_bytes();
/// The metadata format version this codec reads and writes.
pub const VERSION: u8 = 1;
/// Cookie, version/header length and payload length.
pub const BASE_HEADER_LEN: usize = 12;
/// Type and length of one TLV.
pub const TLV_HEADER_LEN: usize = 4;
/// The header length field has 12 bits.
pub const MAX_HEADER_LEN: usize = 0x0fff;
/// The payload length field has 16 bits.
pub const MAX_PAYLOAD_LEN: usize = 0xffff;

/// The 12-byte false-positive marker: a base header without TLVs. It is inserted in front of an
/// ordinary payload that happens to begin with the cookie, so the far side strips these 12
/// bytes and delivers the rest unchanged.
pub const FALSE_POSITIVE_MARKER: [u8; BASE_HEADER_LEN] = {
    let mut marker = [0u8; BASE_HEADER_LEN];
    let mut i = 0;
    while i < COOKIE.len() {
        marker[i] = COOKIE[i];
        i += 1;
    }
    marker[8] = VERSION << 4;
    marker[9] = BASE_HEADER_LEN as u8;
    marker
};

/// The false-positive marker, to copy in front of a payload that begins with the cookie.
#[inline]
pub const fn false_positive_marker() -> [u8; BASE_HEADER_LEN] {
    FALSE_POSITIVE_MARKER
}

/// TLV type numbers, as in the draft.
pub mod tlv_type {
    pub const FRAGMENT: u16 = 1;
    pub const FORWARD_CONTEXT_V4: u16 = 2;
    pub const FORWARD_CONTEXT_V6: u16 = 3;
    pub const REVERSE_CONTEXT_V4: u16 = 4;
    pub const REVERSE_CONTEXT_V6: u16 = 5;
    pub const SESSION_UUID: u16 = 6;
    pub const TENANT_NAME: u16 = 7;
    pub const GLOBAL_INTERFACE_ID: u16 = 8;
    pub const SERVICE_NAME: u16 = 10;
    pub const PAYLOAD_ENCRYPTED: u16 = 11;
    pub const TCP_SYN_AS_UDP: u16 = 12;
    pub const SOURCE_ROUTER_NAME: u16 = 14;
    pub const SECURITY_POLICY_NAME: u16 = 15;
    pub const SECURITY_ID: u16 = 16;
    pub const DESTINATION_ROUTER_NAME: u16 = 17;
    pub const DISABLE_FORWARD_METADATA: u16 = 18;
    pub const PEER_PATHWAY_ID: u16 = 19;
    pub const ICMP_ERROR_LOCATION_V4: u16 = 20;
    pub const ICMP_ERROR_LOCATION_V6: u16 = 21;
    pub const CONTROL_MESSAGE: u16 = 24;
    pub const SOURCE_NAT_V4: u16 = 25;
    pub const PATH_METRICS: u16 = 26;
    pub const APPLICATION_NAME: u16 = 35;
    pub const REMAINING_SESSION_TIME: u16 = 42;
    pub const SESSION_HEALTH_CHECK_OR_KEY: u16 = 46;
    pub const MULTICAST_GROUP_CONTEXT: u16 = 50;
    pub const MULTICAST_EGRESS_ROUTERS: u16 = 51;
}

/// A human name for a TLV type, for error texts and `signpostctl svr decode`.
pub fn tlv_name(tlv_type: u16) -> Option<&'static str> {
    use tlv_type::*;
    Some(match tlv_type {
        FRAGMENT => "fragment",
        FORWARD_CONTEXT_V4 => "forward context IPv4",
        FORWARD_CONTEXT_V6 => "forward context IPv6",
        REVERSE_CONTEXT_V4 => "reverse context IPv4",
        REVERSE_CONTEXT_V6 => "reverse context IPv6",
        SESSION_UUID => "session UUID",
        TENANT_NAME => "tenant name",
        GLOBAL_INTERFACE_ID => "global interface id",
        SERVICE_NAME => "service name",
        PAYLOAD_ENCRYPTED => "payload encrypted",
        TCP_SYN_AS_UDP => "TCP SYN as UDP",
        SOURCE_ROUTER_NAME => "source router name",
        SECURITY_POLICY_NAME => "security policy name",
        SECURITY_ID => "security id",
        DESTINATION_ROUTER_NAME => "destination router name",
        DISABLE_FORWARD_METADATA => "disable forward metadata",
        PEER_PATHWAY_ID => "peer pathway id",
        ICMP_ERROR_LOCATION_V4 => "ICMP error location IPv4",
        ICMP_ERROR_LOCATION_V6 => "ICMP error location IPv6",
        CONTROL_MESSAGE => "control message",
        SOURCE_NAT_V4 => "IPv4 source NAT address",
        PATH_METRICS => "path metrics",
        APPLICATION_NAME => "application name",
        REMAINING_SESSION_TIME => "remaining session time",
        SESSION_HEALTH_CHECK_OR_KEY => "session health check / security key",
        MULTICAST_GROUP_CONTEXT => "multicast group context",
        MULTICAST_EGRESS_ROUTERS => "multicast egress router list",
        _ => return None,
    })
}

/// Displays a TLV type as "security id (16)" or "type 99".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlvName(pub u16);

impl fmt::Display for TlvName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match tlv_name(self.0) {
            Some(name) => write!(f, "{name} ({})", self.0),
            None => write!(f, "type {}", self.0),
        }
    }
}

/// Which TLV section of the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Section {
    /// After the base header, counted by the header length; never encrypted.
    Header,
    /// After the header TLVs, counted by the payload length; may be encrypted.
    Payload,
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Section::Header => "header TLVs",
            Section::Payload => "payload TLVs",
        })
    }
}

/// Why bytes are not (valid) SVR metadata, or cannot be written as such. Byte offsets count
/// from the first byte of the cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The L4 payload does not begin with the cookie: it is ordinary data, not metadata.
    NoCookie,
    /// The cookie is there but the 12-byte base header is not.
    Truncated { available: usize },
    /// The version nibble is not [`VERSION`].
    BadVersion(u8),
    /// The header length is below the 12-byte base header it includes.
    HeaderLenTooShort(u16),
    /// The header length reaches past the end of the buffer.
    HeaderLenBeyondBuffer { header_len: u16, available: usize },
    /// The payload TLVs reach past the end of the buffer.
    PayloadLenBeyondBuffer { payload_len: u16, available: usize },
    /// Fewer than four bytes remain in a section where a TLV begins.
    TlvHeaderTruncated {
        section: Section,
        offset: usize,
        remaining: usize,
    },
    /// A TLV's length runs past the end of its section.
    TlvOverrun {
        section: Section,
        offset: usize,
        tlv_type: u16,
        len: u16,
        remaining: usize,
    },
    /// A known TLV with a value of the wrong size.
    BadTlvLength {
        tlv_type: u16,
        len: usize,
        expected: &'static str,
    },
    /// A name TLV whose value is not UTF-8.
    BadText { tlv_type: u16 },
    /// A known TLV appears twice (or both address families of a context appear).
    DuplicateTlv { tlv_type: u16 },
    /// A TLV found in a section where it must not be (the security id outside the header).
    MisplacedTlv { tlv_type: u16, section: Section },
    /// Emitting: the buffer cannot hold the block.
    BufferTooSmall { needed: usize, available: usize },
    /// Emitting: a section is longer than its length field can say.
    SectionTooLong {
        section: Section,
        len: usize,
        max: usize,
    },
    /// Emitting: a TLV value is longer than 65535 bytes.
    ValueTooLong { tlv_type: u16, len: usize },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::NoCookie => write!(
                f,
                "not SVR metadata: the payload does not begin with the cookie {}; it is ordinary data",
                Hex(&COOKIE)
            ),
            Error::Truncated { available } => write!(
                f,
                "SVR metadata truncated: the base header needs {BASE_HEADER_LEN} bytes, \
                 only {available} are present"
            ),
            Error::BadVersion(version) => write!(
                f,
                "SVR metadata version {version} is not supported (this router speaks version \
                 {VERSION})"
            ),
            Error::HeaderLenTooShort(len) => write!(
                f,
                "SVR header length {len} is shorter than the {BASE_HEADER_LEN}-byte base header \
                 it must include"
            ),
            Error::HeaderLenBeyondBuffer {
                header_len,
                available,
            } => write!(
                f,
                "SVR header length {header_len} runs past the end of the packet: only \
                 {available} bytes of metadata are present"
            ),
            Error::PayloadLenBeyondBuffer {
                payload_len,
                available,
            } => write!(
                f,
                "SVR payload length {payload_len} runs past the end of the packet: only \
                 {available} bytes follow the header TLVs"
            ),
            Error::TlvHeaderTruncated {
                section,
                offset,
                remaining,
            } => write!(
                f,
                "{section}: a TLV starting at byte {offset} needs {TLV_HEADER_LEN} bytes for type \
                 and length, only {remaining} remain in the section"
            ),
            Error::TlvOverrun {
                section,
                offset,
                tlv_type,
                len,
                remaining,
            } => write!(
                f,
                "{section}: TLV {} at byte {offset} claims {len} value bytes, only {remaining} \
                 remain in the section",
                TlvName(tlv_type)
            ),
            Error::BadTlvLength {
                tlv_type,
                len,
                expected,
            } => write!(
                f,
                "TLV {} has {len} value bytes, expected {expected}",
                TlvName(tlv_type)
            ),
            Error::BadText { tlv_type } => {
                write!(f, "TLV {} is not valid UTF-8 text", TlvName(tlv_type))
            }
            Error::DuplicateTlv { tlv_type } => write!(
                f,
                "TLV {} appears more than once (a context may be IPv4 or IPv6, not both)",
                TlvName(tlv_type)
            ),
            Error::MisplacedTlv { tlv_type, section } => write!(
                f,
                "TLV {} found in the {section}; it belongs in the header TLVs, which are never \
                 encrypted",
                TlvName(tlv_type)
            ),
            Error::BufferTooSmall { needed, available } => write!(
                f,
                "cannot write SVR metadata: it needs {needed} bytes, the buffer has {available}"
            ),
            Error::SectionTooLong { section, len, max } => write!(
                f,
                "cannot write SVR metadata: the {section} would take {len} bytes, the format \
                 allows at most {max}"
            ),
            Error::ValueTooLong { tlv_type, len } => write!(
                f,
                "cannot write SVR metadata: TLV {} value of {len} bytes exceeds the 65535-byte \
                 TLV limit",
                TlvName(tlv_type)
            ),
        }
    }
}

impl std::error::Error for Error {}

/// Result of SVR metadata decoding and encoding.
pub type Result<T> = core::result::Result<T, Error>;

/// Lower-case hex without separators, for error texts and reports.
pub(crate) struct Hex<'a>(pub(crate) &'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

mod field {
    use core::ops::Range;

    pub const COOKIE: Range<usize> = 0..8;
    pub const VERSION_HEADER_LEN: Range<usize> = 8..10;
    pub const PAYLOAD_LEN: Range<usize> = 10..12;
}

/// True when `payload` begins with the SVR cookie. It may still be a false-positive marker or
/// malformed; [`classify`] tells which.
#[inline]
pub fn starts_with_cookie(payload: &[u8]) -> bool {
    payload.get(field::COOKIE) == Some(&COOKIE[..])
}

/// The number of bytes of metadata (base header, header TLVs, payload TLVs) at the start of
/// `payload`, i.e. where the original L4 payload begins. Validates the base header only, so it
/// works on encrypted payload TLVs.
pub fn metadata_len(payload: &[u8]) -> Result<usize> {
    MetadataPacket::new_checked(payload).map(|packet| packet.total_len())
}

/// What the start of an L4 payload holds, as the receiving router must treat it.
#[derive(Debug, Clone)]
pub enum Classified<'a> {
    /// No cookie: ordinary application data, deliver as is.
    Ordinary,
    /// The false-positive marker: strip it, `original_payload` is the data (which itself begins
    /// with the cookie).
    FalsePositiveMarker { original_payload: &'a [u8] },
    /// A metadata block (its TLVs not yet walked or authenticated).
    Metadata(MetadataPacket<&'a [u8]>),
}

/// Sorts an L4 payload into ordinary data, false-positive marker, or metadata. Errors mean the
/// cookie is there but the block is malformed.
pub fn classify(payload: &[u8]) -> Result<Classified<'_>> {
    match MetadataPacket::new_checked(payload) {
        Err(Error::NoCookie) => Ok(Classified::Ordinary),
        Err(error) => Err(error),
        Ok(packet) if packet.is_false_positive_marker() => {
            let original_payload = payload.get(BASE_HEADER_LEN..).unwrap_or(&[]);
            Ok(Classified::FalsePositiveMarker { original_payload })
        }
        Ok(packet) => Ok(Classified::Metadata(packet)),
    }
}

/// A zero-copy view over an SVR metadata block at the start of an L4 payload. The buffer may
/// continue past the block with the original payload.
#[derive(Debug, Clone)]
pub struct MetadataPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> MetadataPacket<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        MetadataPacket { buffer }
    }

    /// Checks the cookie, version, and that both sections lie within the buffer. The TLVs are
    /// not walked: the payload TLVs may still be encrypted.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check()?;
        Ok(packet)
    }

    fn check(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        if !starts_with_cookie(data) {
            return Err(Error::NoCookie);
        }
        if data.len() < BASE_HEADER_LEN {
            return Err(Error::Truncated {
                available: data.len(),
            });
        }
        if self.version() != VERSION {
            return Err(Error::BadVersion(self.version()));
        }
        let header_len = self.header_len();
        if header_len < BASE_HEADER_LEN {
            return Err(Error::HeaderLenTooShort(header_len as u16));
        }
        if header_len > data.len() {
            let available = data.len();
            return Err(Error::HeaderLenBeyondBuffer {
                header_len: header_len as u16,
                available,
            });
        }
        if header_len + self.payload_len() > data.len() {
            let payload_len = self.payload_len() as u16;
            let available = data.len() - header_len;
            return Err(Error::PayloadLenBeyondBuffer {
                payload_len,
                available,
            });
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    fn version_header_len(&self) -> u16 {
        let data = self.buffer.as_ref();
        let field = field::VERSION_HEADER_LEN;
        u16::from_be_bytes([data[field.start], data[field.start + 1]])
    }

    #[inline]
    pub fn version(&self) -> u8 {
        (self.version_header_len() >> 12) as u8
    }

    /// The base header plus header TLVs, in bytes.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.version_header_len() & 0x0fff)
    }

    /// Bytes of payload TLVs.
    #[inline]
    pub fn payload_len(&self) -> usize {
        let data = self.buffer.as_ref();
        let field = field::PAYLOAD_LEN;
        usize::from(u16::from_be_bytes([
            data[field.start],
            data[field.start + 1],
        ]))
    }

    /// The whole block: what to strip to recover the original L4 payload.
    #[inline]
    pub fn total_len(&self) -> usize {
        self.header_len() + self.payload_len()
    }

    /// A base header with no TLVs in either section.
    #[inline]
    pub fn is_false_positive_marker(&self) -> bool {
        self.header_len() == BASE_HEADER_LEN && self.payload_len() == 0
    }

    /// Where the header TLVs lie in the buffer.
    #[inline]
    pub fn header_tlvs_range(&self) -> Range<usize> {
        BASE_HEADER_LEN..self.header_len()
    }

    /// Where the payload TLVs lie in the buffer: the bytes to encrypt or decrypt in place.
    #[inline]
    pub fn payload_tlvs_range(&self) -> Range<usize> {
        self.header_len()..self.total_len()
    }

    #[inline]
    pub fn header_tlv_bytes(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(self.header_tlvs_range())
            .unwrap_or(&[])
    }

    #[inline]
    pub fn payload_tlv_bytes(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(self.payload_tlvs_range())
            .unwrap_or(&[])
    }

    /// The bytes after the block: the original L4 payload.
    #[inline]
    pub fn original_payload(&self) -> &[u8] {
        self.buffer.as_ref().get(self.total_len()..).unwrap_or(&[])
    }

    /// Iterates over the header TLVs.
    #[inline]
    pub fn header_tlvs(&self) -> Tlvs<'_> {
        Tlvs::new(self.header_tlv_bytes(), BASE_HEADER_LEN, Section::Header)
    }

    /// Iterates over the payload TLVs (decrypt them first if they are encrypted).
    #[inline]
    pub fn payload_tlvs(&self) -> Tlvs<'_> {
        Tlvs::new(
            self.payload_tlv_bytes(),
            self.header_len(),
            Section::Payload,
        )
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> MetadataPacket<T> {
    /// Writes the cookie, version 1 and the header length (12 + header TLV bytes).
    #[inline]
    pub fn set_base_header(&mut self, header_len: usize, payload_len: usize) {
        debug_assert!(header_len <= MAX_HEADER_LEN && payload_len <= MAX_PAYLOAD_LEN);
        let data = self.buffer.as_mut();
        data[field::COOKIE].copy_from_slice(&COOKIE);
        let word = (u16::from(VERSION) << 12) | (header_len as u16 & 0x0fff);
        data[field::VERSION_HEADER_LEN].copy_from_slice(&word.to_be_bytes());
        data[field::PAYLOAD_LEN].copy_from_slice(&(payload_len as u16).to_be_bytes());
    }

    /// Rewrites the payload length, e.g. after encryption appended an authentication tag.
    #[inline]
    pub fn set_payload_len(&mut self, payload_len: u16) {
        self.buffer.as_mut()[field::PAYLOAD_LEN].copy_from_slice(&payload_len.to_be_bytes());
    }

    /// The payload TLV bytes, to encrypt or decrypt in place.
    #[inline]
    pub fn payload_tlv_bytes_mut(&mut self) -> &mut [u8] {
        let range = self.payload_tlvs_range();
        self.buffer.as_mut().get_mut(range).unwrap_or(&mut [])
    }
}

/// One TLV as found in a section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    pub tlv_type: u16,
    pub value: &'a [u8],
    /// Where the TLV's type field is, counted from the start of the metadata block.
    pub offset: usize,
}

/// An iterator over the TLVs of one section. It yields an error, then stops, when a TLV does
/// not fit in what remains of the section.
#[derive(Debug, Clone)]
pub struct Tlvs<'a> {
    rest: &'a [u8],
    offset: usize,
    section: Section,
}

impl<'a> Tlvs<'a> {
    /// TLVs in `bytes`, a section starting `offset` bytes into the block.
    pub fn new(bytes: &'a [u8], offset: usize, section: Section) -> Self {
        Tlvs {
            rest: bytes,
            offset,
            section,
        }
    }
}

impl<'a> Iterator for Tlvs<'a> {
    type Item = Result<Tlv<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let (section, offset) = (self.section, self.offset);
        let rest = core::mem::take(&mut self.rest); // an error ends the iteration
        let Some((header, after)) = rest.split_first_chunk::<TLV_HEADER_LEN>() else {
            let remaining = rest.len();
            return Some(Err(Error::TlvHeaderTruncated {
                section,
                offset,
                remaining,
            }));
        };
        let tlv_type = u16::from_be_bytes([header[0], header[1]]);
        let len = u16::from_be_bytes([header[2], header[3]]);
        if usize::from(len) > after.len() {
            let remaining = after.len();
            return Some(Err(Error::TlvOverrun {
                section,
                offset,
                tlv_type,
                len,
                remaining,
            }));
        }
        let (value, rest) = after.split_at(usize::from(len));
        self.rest = rest;
        self.offset += TLV_HEADER_LEN + value.len();
        Some(Ok(Tlv {
            tlv_type,
            value,
            offset,
        }))
    }
}

impl core::iter::FusedIterator for Tlvs<'_> {}

/// Writes one TLV at the start of `buf`, returning the bytes written.
pub fn emit_tlv(buf: &mut [u8], tlv_type: u16, value: &[u8]) -> Result<usize> {
    let len = u16::try_from(value.len()).map_err(|_| Error::ValueTooLong {
        tlv_type,
        len: value.len(),
    })?;
    let needed = TLV_HEADER_LEN + value.len();
    let available = buf.len();
    let out = buf
        .get_mut(..needed)
        .ok_or(Error::BufferTooSmall { needed, available })?;
    out[..2].copy_from_slice(&tlv_type.to_be_bytes());
    out[2..4].copy_from_slice(&len.to_be_bytes());
    out[TLV_HEADER_LEN..].copy_from_slice(value);
    Ok(needed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::XorShift;

    /// Cookie, version 1 / header length 20, payload length 17; header TLV security id 7;
    /// payload TLVs tenant "retail" and service "pos"; then 8 bytes of original payload.
    const SMALL: [u8; 45] = [
        0x4c, 0x48, 0xdb, 0xc6, 0xdd, 0xf6, 0x67, 0x0c, // cookie
        0x10, 0x14, // version 1, header length 20
        0x00, 0x11, // payload length 17
        0x00, 0x10, 0x00, 0x04, 0x00, 0x00, 0x00, 0x07, // security id = 7
        0x00, 0x07, 0x00, 0x06, b'r', b'e', b't', b'a', b'i', b'l', // tenant "retail"
        0x00, 0x0a, 0x00, 0x03, b'p', b'o', b's', // service "pos"
        b'D', b'A', b'T', b'A', 0x00, 0x00, 0x00, 0x00, // original payload
    ];

    #[test]
    fn cookie_constant_is_big_endian() {
        assert_eq!(COOKIE, [0x4c, 0x48, 0xdb, 0xc6, 0xdd, 0xf6, 0x67, 0x0c]);
        assert!(starts_with_cookie(&SMALL));
        assert!(!starts_with_cookie(&SMALL[..7]));
        assert!(!starts_with_cookie(b"GET / HTTP/1.1"));
    }

    #[test]
    fn view_reads_the_layout() {
        let packet = MetadataPacket::new_checked(&SMALL[..]).unwrap();
        assert_eq!(packet.version(), 1);
        assert_eq!(packet.header_len(), 20);
        assert_eq!(packet.payload_len(), 17);
        assert_eq!(packet.total_len(), 37);
        assert_eq!(metadata_len(&SMALL), Ok(37));
        assert_eq!(packet.payload_tlvs_range(), 20..37);
        assert_eq!(packet.original_payload(), b"DATA\0\0\0\0");
        assert!(!packet.is_false_positive_marker());

        let header: Vec<_> = packet.header_tlvs().collect::<Result<_>>().unwrap();
        assert_eq!(
            header,
            [Tlv {
                tlv_type: 16,
                value: &[0, 0, 0, 7],
                offset: 12
            }]
        );
        let payload: Vec<_> = packet.payload_tlvs().collect::<Result<_>>().unwrap();
        assert_eq!(payload.len(), 2);
        assert_eq!(
            (payload[0].tlv_type, payload[0].value, payload[0].offset),
            (7, &b"retail"[..], 20)
        );
        assert_eq!(
            (payload[1].tlv_type, payload[1].value, payload[1].offset),
            (10, &b"pos"[..], 30)
        );
    }

    #[test]
    fn false_positive_marker_layout() {
        let marker = false_positive_marker();
        assert_eq!(
            marker,
            [
                0x4c, 0x48, 0xdb, 0xc6, 0xdd, 0xf6, 0x67, 0x0c, 0x10, 0x0c, 0x00, 0x00
            ]
        );
        let mut payload = marker.to_vec();
        payload.extend_from_slice(&COOKIE); // the ordinary data that began with the cookie
        payload.extend_from_slice(b"tail");
        match classify(&payload).unwrap() {
            Classified::FalsePositiveMarker { original_payload } => {
                assert_eq!(&original_payload[..8], &COOKIE);
                assert_eq!(&original_payload[8..], b"tail");
            }
            other => panic!("expected the marker, got {other:?}"),
        }
        assert_eq!(metadata_len(&payload), Ok(12));
    }

    #[test]
    fn classify_ordinary_and_metadata() {
        assert!(matches!(classify(b"hello world"), Ok(Classified::Ordinary)));
        assert!(matches!(classify(b""), Ok(Classified::Ordinary)));
        assert!(matches!(classify(&SMALL), Ok(Classified::Metadata(_))));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let block = &SMALL[..37];
        for len in 0..block.len() {
            let result = MetadataPacket::new_checked(&block[..len]);
            let error = result.unwrap_err();
            let expected_kind = match len {
                0..8 => matches!(error, Error::NoCookie),
                8..12 => matches!(error, Error::Truncated { .. }),
                12..20 => matches!(error, Error::HeaderLenBeyondBuffer { .. }),
                _ => matches!(error, Error::PayloadLenBeyondBuffer { .. }),
            };
            assert!(expected_kind, "len {len}: {error}");
        }
    }

    #[test]
    fn header_errors() {
        let mut bytes = SMALL;
        bytes[8] = 0x20;
        assert_eq!(
            MetadataPacket::new_checked(&bytes[..]).unwrap_err(),
            Error::BadVersion(2)
        );
        let mut bytes = SMALL;
        bytes[9] = 11;
        assert_eq!(
            MetadataPacket::new_checked(&bytes[..]).unwrap_err(),
            Error::HeaderLenTooShort(11)
        );
        let mut bytes = SMALL;
        bytes[8..10].copy_from_slice(&[0x1f, 0xff]);
        assert_eq!(
            MetadataPacket::new_checked(&bytes[..]).unwrap_err(),
            Error::HeaderLenBeyondBuffer {
                header_len: 4095,
                available: 45
            }
        );
        let mut bytes = SMALL;
        bytes[10..12].copy_from_slice(&[0x00, 0x1a]);
        assert_eq!(
            MetadataPacket::new_checked(&bytes[..]).unwrap_err(),
            Error::PayloadLenBeyondBuffer {
                payload_len: 26,
                available: 25
            }
        );
    }

    #[test]
    fn tlv_overrunning_its_section() {
        // The header section says 20 bytes but its TLV claims 5 value bytes: 1 byte too many,
        // even though the buffer continues (the next byte belongs to the payload section).
        let mut bytes = SMALL;
        bytes[15] = 5;
        let packet = MetadataPacket::new_checked(&bytes[..]).unwrap();
        let mut tlvs = packet.header_tlvs();
        let error = tlvs.next().unwrap().unwrap_err();
        assert_eq!(
            error,
            Error::TlvOverrun {
                section: Section::Header,
                offset: 12,
                tlv_type: 16,
                len: 5,
                remaining: 4
            }
        );
        assert_eq!(
            error.to_string(),
            "header TLVs: TLV security id (16) at byte 12 claims 5 value bytes, only 4 remain in the section"
        );
        assert!(tlvs.next().is_none(), "the iterator stops after an error");

        // A section that ends inside a TLV's type/length.
        let mut bytes = SMALL;
        bytes[11] = 19; // payload length 19: "pos" TLV then 2 stray bytes
        let packet = MetadataPacket::new_checked(&bytes[..]).unwrap();
        let results: Vec<_> = packet.payload_tlvs().collect();
        assert_eq!(results.len(), 3);
        assert_eq!(
            results[2],
            Err(Error::TlvHeaderTruncated {
                section: Section::Payload,
                offset: 37,
                remaining: 2
            })
        );
    }

    #[test]
    fn error_texts_read_well() {
        assert_eq!(
            Error::NoCookie.to_string(),
            "not SVR metadata: the payload does not begin with the cookie 4c48dbc6ddf6670c; it is ordinary data"
        );
        assert_eq!(
            Error::BadVersion(3).to_string(),
            "SVR metadata version 3 is not supported (this router speaks version 1)"
        );
        assert_eq!(
            Error::MisplacedTlv {
                tlv_type: 16,
                section: Section::Payload
            }
            .to_string(),
            "TLV security id (16) found in the payload TLVs; it belongs in the header TLVs, which are never encrypted"
        );
        assert_eq!(TlvName(9999).to_string(), "type 9999");
    }

    #[test]
    fn setters_and_in_place_payload() {
        let mut bytes = SMALL;
        let mut packet = MetadataPacket::new_checked(&mut bytes[..]).unwrap();
        packet
            .payload_tlv_bytes_mut()
            .iter_mut()
            .for_each(|b| *b ^= 0xff);
        packet.set_payload_len(21); // as if an AEAD had appended a 4-byte tag
        assert_eq!(packet.total_len(), 41);
        assert_eq!(
            &bytes[20..22],
            &[0xff, 0xf8],
            "payload TLVs were flipped in place"
        );
        let mut fresh = [0u8; 12];
        MetadataPacket::new_unchecked(&mut fresh[..]).set_base_header(12, 0);
        assert_eq!(fresh, FALSE_POSITIVE_MARKER);
    }

    #[test]
    fn emit_tlv_checks_room_and_length() {
        let mut buf = [0u8; 8];
        assert_eq!(emit_tlv(&mut buf, 24, &[6]), Ok(5));
        assert_eq!(&buf[..5], &[0x00, 0x18, 0x00, 0x01, 0x06]);
        assert_eq!(
            emit_tlv(&mut buf, 7, b"too long"),
            Err(Error::BufferTooSmall {
                needed: 12,
                available: 8
            })
        );
        let big = vec![0u8; 70_000];
        let mut out = vec![0u8; 70_010];
        assert_eq!(
            emit_tlv(&mut out, 7, &big),
            Err(Error::ValueTooLong {
                tlv_type: 7,
                len: 70_000
            })
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = XorShift(0x5356_5200_0000_0001);
        for round in 0..4000 {
            let len = (rng.next_u64() % 96) as usize;
            let mut buf = rng.bytes(len);
            if round % 4 != 0 && len >= 8 {
                buf[..8].copy_from_slice(&COOKIE);
            }
            if round % 2 == 1 && len >= 12 {
                buf[8] = 0x10 | (buf[8] & 0x01); // version 1, small header lengths
                buf[10] = 0;
            }
            if let Ok(Classified::Metadata(packet)) = classify(&buf) {
                let _ = (packet.total_len(), packet.original_payload().len());
                for tlv in packet.header_tlvs().chain(packet.payload_tlvs()) {
                    let _ = tlv.map(|t| t.value.len());
                }
                let _ = crate::svr::Metadata::parse(&packet);
            }
            let _ = metadata_len(&buf);
        }
    }
}
