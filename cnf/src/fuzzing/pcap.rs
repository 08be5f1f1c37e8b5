//! Target `pcap_inspect`: any bytes as a pcap file for `inspect_capture`, and as one captured
//! packet of each link type for `inspect_record`. A file that reads is written again with the
//! crate's writer and must read back to the same packets; every report must agree with the
//! reader's records and with the SVR codec.

use core::time::Duration;

use crate::pcap::{LinkType, PcapReader, PcapWriter, Record};
use crate::svr::{PacketReport, Verdict, inspect_capture, inspect_record};

pub(super) fn run(data: &[u8]) {
    match inspect_capture(data) {
        Ok(reports) => capture(data, &reports),
        Err(error) => {
            let _ = error.to_string();
            // The same error the reader reports, at the header or at a record.
            let from_reader = match PcapReader::new(data) {
                Err(error) => Some(error),
                Ok(mut reader) => reader.find_map(Result::err),
            };
            assert_eq!(from_reader, Some(error));
        }
    }
    for link_type in [
        LinkType::Ethernet,
        LinkType::Raw,
        LinkType::LinuxSll,
        LinkType::LinuxSll2,
    ] {
        let record = Record {
            index: 0,
            timestamp: Duration::ZERO,
            orig_len: u32::try_from(data.len()).unwrap_or(u32::MAX),
            data,
        };
        report(&inspect_record(link_type, &record));
    }
}

fn capture(data: &[u8], reports: &[PacketReport]) {
    let reader = match PcapReader::new(data) {
        Ok(reader) => reader,
        Err(error) => panic!("inspect_capture read a file the reader refuses: {error}"),
    };
    let (link_type, precision) = (reader.link_type(), reader.precision());
    let _ = (
        reader.snaplen(),
        reader.is_big_endian(),
        link_type.to_string(),
    );
    assert_eq!(
        LinkType::from_number(reader.link_type_number()),
        Some(link_type)
    );
    let records: Vec<Record<'_>> = match reader.collect() {
        Ok(records) => records,
        Err(error) => panic!("inspect_capture read a file whose records fail: {error}"),
    };
    assert_eq!(records.len(), reports.len());
    for (i, (record, packet)) in records.iter().zip(reports).enumerate() {
        assert_eq!((record.index, packet.index), (i, i));
        assert_eq!(packet.captured_len, record.data.len());
        assert_eq!(
            (packet.timestamp, packet.orig_len),
            (record.timestamp, record.orig_len)
        );
        assert_eq!(
            packet,
            &inspect_record(link_type, record),
            "a report is not repeatable"
        );
        report(packet);
    }

    // Written again by the writer, the file reads back to the same packets.
    let mut writer = match PcapWriter::with_precision(Vec::new(), link_type, precision) {
        Ok(writer) => writer,
        Err(error) => panic!("writing to memory failed: {error}"),
    };
    for record in &records {
        if let Err(error) = writer.write_packet(record.timestamp, record.data) {
            // Only a timestamp past 2106 (more seconds than 32 bits hold) cannot be written.
            assert!(
                record.timestamp.as_secs() > u64::from(u32::MAX),
                "the writer refused a record the reader read: {error}"
            );
            return;
        }
    }
    let written = writer.into_inner();
    let again = match PcapReader::new(&written) {
        Ok(reader) => reader,
        Err(error) => panic!("the writer's file does not read: {error}"),
    };
    assert_eq!(
        (again.link_type(), again.precision()),
        (link_type, precision)
    );
    let mut count = 0;
    for (record, reread) in records.iter().zip(again) {
        let reread = match reread {
            Ok(reread) => reread,
            Err(error) => panic!("the writer's record does not read: {error}"),
        };
        assert_eq!(
            (reread.index, reread.timestamp, reread.data),
            (record.index, record.timestamp, record.data)
        );
        count += 1;
    }
    assert_eq!(count, records.len());
}

/// One report: its texts render, and a metadata verdict agrees with the codec.
fn report(packet: &PacketReport) {
    if let Some(flow) = &packet.flow {
        let _ = flow.to_string();
    }
    let _ = (packet.verdict.label(), packet.notes.len());
    match &packet.verdict {
        Verdict::Metadata { block, metadata } => {
            let tlv_bytes: usize = block.tlvs.iter().map(|tlv| 4 + tlv.value.len()).sum();
            assert_eq!(
                tlv_bytes,
                block.header_len - 12 + block.payload_len,
                "the TLVs reported do not fill the block"
            );
            for tlv in &block.tlvs {
                let _ = (tlv.name, tlv.readable.len(), tlv.section.to_string());
            }
            super::svr::round_trip(metadata, block.header_len + block.payload_len);
        }
        Verdict::InvalidMetadata { error, .. } => {
            let _ = error.to_string();
        }
        _ => {}
    }
}
