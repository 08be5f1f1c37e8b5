//! Target `svr_metadata`: any bytes as the start of an L4 payload. Classification must agree
//! with the block view, the TLV iterator must tile each section exactly or stop at the error it
//! reports, and a block that parses must emit and parse back to an equal `Metadata`, in the
//! same canonical bytes the second time.

use crate::svr::wire::{BASE_HEADER_LEN, MAX_PAYLOAD_LEN, TLV_HEADER_LEN, emit_tlv};
use crate::svr::{
    COOKIE, Classified, Error, FALSE_POSITIVE_MARKER, Metadata, MetadataPacket, Section, TlvName,
    Tlvs, classify, metadata_len, starts_with_cookie,
};

pub(super) fn run(data: &[u8]) {
    let cookie = starts_with_cookie(data);
    assert_eq!(cookie, data.get(..COOKIE.len()) == Some(&COOKIE[..]));
    match classify(data) {
        Ok(Classified::Ordinary) => {
            assert!(!cookie, "a payload with the cookie classified as ordinary");
            assert_eq!(metadata_len(data), Err(Error::NoCookie));
        }
        Ok(Classified::FalsePositiveMarker { original_payload }) => {
            assert_eq!(
                data.get(..BASE_HEADER_LEN),
                Some(&FALSE_POSITIVE_MARKER[..])
            );
            assert_eq!(Some(original_payload), data.get(BASE_HEADER_LEN..));
            assert_eq!(metadata_len(data), Ok(BASE_HEADER_LEN));
        }
        Ok(Classified::Metadata(packet)) => block(&packet, data),
        Err(error) => {
            assert!(cookie, "no cookie, yet classify failed: {error}");
            assert!(!matches!(error, Error::NoCookie));
            assert_eq!(metadata_len(data), Err(error.clone()));
            let _ = error.to_string();
        }
    }
    // The iterator on raw bytes, as a header section that starts at the base header.
    let end = BASE_HEADER_LEN + data.len();
    tile(
        Tlvs::new(data, BASE_HEADER_LEN, Section::Header),
        BASE_HEADER_LEN,
        end,
    );
    // One TLV written from the input reads back as itself.
    if let Some((&[hi, lo], value)) = data.split_first_chunk::<2>() {
        let tlv_type = u16::from_be_bytes([hi, lo]);
        let mut buf = vec![0u8; TLV_HEADER_LEN + value.len()];
        match emit_tlv(&mut buf, tlv_type, value) {
            Ok(written) => {
                assert_eq!(written, buf.len());
                let mut tlvs = Tlvs::new(&buf, 0, Section::Payload);
                match tlvs.next() {
                    Some(Ok(tlv)) => {
                        assert_eq!((tlv.tlv_type, tlv.value, tlv.offset), (tlv_type, value, 0))
                    }
                    other => panic!("an emitted TLV did not read back: {other:?}"),
                }
                assert!(tlvs.next().is_none());
            }
            Err(error) => assert!(
                value.len() > usize::from(u16::MAX),
                "emit_tlv refused a {}-byte value: {error}",
                value.len()
            ),
        }
        let _ = TlvName(tlv_type).to_string();
    }
}

/// A block `classify` accepted as metadata.
pub(super) fn block(packet: &MetadataPacket<&[u8]>, data: &[u8]) {
    let (header_len, payload_len, total_len) = (
        packet.header_len(),
        packet.payload_len(),
        packet.total_len(),
    );
    assert_eq!(packet.version(), 1);
    assert!(header_len >= BASE_HEADER_LEN && total_len == header_len + payload_len);
    assert!(
        total_len <= data.len(),
        "block of {total_len} in {} bytes",
        data.len()
    );
    assert!(!packet.is_false_positive_marker());
    assert_eq!(metadata_len(data), Ok(total_len));
    assert_eq!(packet.header_tlvs_range(), BASE_HEADER_LEN..header_len);
    assert_eq!(packet.payload_tlvs_range(), header_len..total_len);
    assert_eq!(
        Some(packet.header_tlv_bytes()),
        data.get(BASE_HEADER_LEN..header_len)
    );
    assert_eq!(
        Some(packet.payload_tlv_bytes()),
        data.get(header_len..total_len)
    );
    assert_eq!(Some(packet.original_payload()), data.get(total_len..));
    tile(packet.header_tlvs(), BASE_HEADER_LEN, header_len);
    tile(packet.payload_tlvs(), header_len, total_len);
    match Metadata::parse(packet) {
        Ok(metadata) => round_trip(&metadata, data.len()),
        Err(error) => {
            let _ = error.to_string();
        }
    }
}

/// The TLVs of a section `start..end` (offsets from the cookie): each begins where the last
/// ended and they cover the section, or the iterator yields one error there and stops.
fn tile(tlvs: Tlvs<'_>, start: usize, end: usize) {
    let mut at = start;
    let mut failed = false;
    for tlv in tlvs {
        assert!(!failed, "the TLV iterator went on after an error");
        match tlv {
            Ok(tlv) => {
                assert_eq!(tlv.offset, at, "TLV offsets do not follow each other");
                at += TLV_HEADER_LEN + tlv.value.len();
                assert!(
                    at <= end,
                    "TLV at {} runs past the section end {end}",
                    tlv.offset
                );
            }
            Err(Error::TlvHeaderTruncated {
                offset, remaining, ..
            }) => {
                assert_eq!((offset, remaining), (at, end - at));
                assert!(remaining < TLV_HEADER_LEN);
                failed = true;
            }
            Err(Error::TlvOverrun {
                offset,
                len,
                remaining,
                ..
            }) => {
                assert_eq!((offset, remaining), (at, end - at - TLV_HEADER_LEN));
                assert!(usize::from(len) > remaining);
                failed = true;
            }
            Err(other) => panic!("the TLV iterator yielded {other:?}"),
        }
    }
    if !failed {
        assert_eq!(at, end, "the TLVs do not fill their section");
    }
}

/// `Metadata` → bytes → `Metadata` is the identity, and the bytes are canonical. `input_len`
/// is the size of the block it was parsed from, which bounds what it can hold.
pub(super) fn round_trip(metadata: &Metadata, input_len: usize) {
    let len = metadata.buffer_len();
    assert_eq!(len, metadata.header_len() + metadata.payload_len());
    let _ = format!("{metadata:?}");
    for context in [metadata.forward_context, metadata.reverse_context]
        .into_iter()
        .flatten()
    {
        let _ = context.to_string();
    }
    if let Some(message) = metadata.control_message {
        let _ = message.to_string();
    }
    if let Some(metrics) = metadata.path_metrics {
        let _ = metrics.to_string();
    }
    let mut buf = vec![0u8; len];
    match metadata.emit(&mut buf) {
        Ok(written) => assert_eq!(written, len),
        // Typed TLVs that arrived in the header section are emitted in the payload section,
        // which can then outgrow its 16-bit length, but only for blocks that large.
        Err(Error::SectionTooLong {
            section: Section::Payload,
            ..
        }) if input_len > MAX_PAYLOAD_LEN => return,
        Err(error) => panic!("a parsed Metadata does not emit: {error}"),
    }
    let packet = match MetadataPacket::new_checked(&buf[..]) {
        Ok(packet) => packet,
        Err(error) => panic!("emitted metadata is not a valid block: {error}"),
    };
    assert_eq!(packet.total_len(), len);
    assert_eq!(packet.payload_tlvs_range(), metadata.payload_tlvs_range());
    let again = match Metadata::parse(&packet) {
        Ok(again) => again,
        Err(error) => panic!("emitted metadata does not parse: {error}"),
    };
    assert_eq!(&again, metadata, "parse(emit(m)) != m");
    let mut second = vec![0u8; again.buffer_len()];
    assert_eq!(again.emit(&mut second), Ok(len));
    assert_eq!(second, buf, "emit is not canonical");
    if len > 0 {
        let mut short = vec![0u8; len - 1];
        assert_eq!(
            metadata.emit(&mut short),
            Err(Error::BufferTooSmall {
                needed: len,
                available: len - 1
            })
        );
    }
}
