//! `signpostctl svr decode`: the router's capture inspector ([`signpost_cnf::svr::inspect`])
//! printed for people (one block per packet, TLVs indented) or as JSON for scripts. The
//! inspection is the router's own code; this module only lays its reports out.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Map, Value, json};
use signpost_cnf::pcap::{PcapError, PcapReader, Precision};
use signpost_cnf::svr::{
    ContextAddrs, Flow, Metadata, MetadataBlock, PacketReport, Section, SessionContext, TcpFlags,
    TlvReport, Verdict, inspect_record,
};

/// What was read from a file: its packets, and the error that stopped the reading early, if
/// any (the packets before it are still worth printing).
#[derive(Debug, Clone)]
pub struct Decoded {
    /// e.g. "ETHERNET (1)".
    pub link_type: String,
    pub precision: Precision,
    pub packets: Vec<PacketReport>,
    pub stopped_by: Option<PcapError>,
}

/// Reads a pcap file's bytes; an error here means no packet could be read at all.
pub fn decode(bytes: &[u8]) -> Result<Decoded, PcapError> {
    let reader = PcapReader::new(bytes)?;
    let link_type = reader.link_type();
    let mut decoded = Decoded {
        link_type: format!("{} ({})", link_type.name(), reader.link_type_number()),
        precision: reader.precision(),
        packets: Vec::new(),
        stopped_by: None,
    };
    for record in reader {
        match record {
            Ok(record) => decoded.packets.push(inspect_record(link_type, &record)),
            Err(error) => decoded.stopped_by = Some(error),
        }
    }
    Ok(decoded)
}

/// "1700000000.000001000", with as many digits as the file records.
fn time(timestamp: Duration, precision: Precision) -> String {
    match precision {
        Precision::Microseconds => {
            format!("{}.{:06}", timestamp.as_secs(), timestamp.subsec_micros())
        }
        Precision::Nanoseconds => {
            format!("{}.{:09}", timestamp.as_secs(), timestamp.subsec_nanos())
        }
    }
}

/// The human form: a line per packet, then the verdict and TLVs indented beneath it.
pub fn text(decoded: &Decoded) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "link type {}, {}",
        decoded.link_type,
        packets(decoded.packets.len())
    );
    for packet in &decoded.packets {
        let flow = packet
            .flow
            .as_ref()
            .map_or_else(|| "-".to_owned(), Flow::to_string);
        let _ = writeln!(
            out,
            "\npacket {}  {}  {}  {} bytes",
            packet.index,
            time(packet.timestamp, decoded.precision),
            flow,
            packet.captured_len
        );
        let _ = match &packet.verdict {
            Verdict::NotIp { reason } => writeln!(out, "  not IP: {reason}"),
            Verdict::NotTcpUdp { protocol } => {
                writeln!(out, "  not TCP/UDP (IP protocol {protocol})")
            }
            Verdict::Undecodable { reason } => writeln!(out, "  undecodable: {reason}"),
            Verdict::Ordinary { payload_len } => {
                writeln!(
                    out,
                    "  no metadata: {payload_len} bytes of ordinary payload"
                )
            }
            Verdict::FalsePositiveMarker {
                original_payload_len,
            } => writeln!(
                out,
                "  false-positive marker: strip 12 bytes, {original_payload_len} bytes of \
                 ordinary payload follow (they begin with the cookie)"
            ),
            Verdict::Metadata { block, .. } => {
                let _ = writeln!(out, "  metadata: {}", block_summary(block));
                tlv_lines(&mut out, block);
                Ok(())
            }
            Verdict::InvalidMetadata { block, error } => {
                let _ = writeln!(out, "  invalid metadata: {error}");
                if let Some(block) = block {
                    let _ = writeln!(out, "    read before the error: {}", block_summary(block));
                    tlv_lines(&mut out, block);
                }
                Ok(())
            }
        };
        for note in &packet.notes {
            let _ = writeln!(out, "  note: {note}");
        }
    }
    let _ = writeln!(out, "\n{}", summary(&decoded.packets));
    out
}

fn section_name(section: Section) -> &'static str {
    match section {
        Section::Header => "header",
        Section::Payload => "payload",
    }
}

fn block_summary(block: &MetadataBlock) -> String {
    format!(
        "header {} bytes, payload TLVs {} bytes, {} bytes of original payload after the block",
        block.header_len, block.payload_len, block.original_payload_len
    )
}

fn tlv_lines(out: &mut String, block: &MetadataBlock) {
    for tlv in &block.tlvs {
        let _ = writeln!(
            out,
            "    {:<7} {:>5} {:<28} {:>4} B  {}",
            section_name(tlv.section),
            tlv.tlv_type,
            tlv.name,
            tlv.value.len(),
            tlv.readable
        );
    }
}

/// "11 packets: 4 with metadata, 3 invalid metadata, ...", the non-zero counts only.
fn summary(packets: &[PacketReport]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for packet in packets {
        let label = packet.verdict.label();
        match counts.iter_mut().find(|(seen, _)| *seen == label) {
            Some((_, count)) => *count += 1,
            None => counts.push((label, 1)),
        }
    }
    let parts: Vec<String> = counts
        .iter()
        .map(|(label, count)| format!("{count} {label}"))
        .collect();
    format!("{}: {}", self::packets(packets.len()), parts.join(", "))
}

fn packets(count: usize) -> String {
    match count {
        1 => "1 packet".to_owned(),
        n => format!("{n} packets"),
    }
}

/// The JSON form: an array with one object per packet, the same content as [`text`].
pub fn json(decoded: &Decoded) -> Value {
    decoded
        .packets
        .iter()
        .map(|packet| packet_json(packet, decoded.precision))
        .collect()
}

fn packet_json(packet: &PacketReport, precision: Precision) -> Value {
    let mut object = Map::new();
    object.insert("index".into(), json!(packet.index));
    object.insert("time".into(), json!(time(packet.timestamp, precision)));
    object.insert("captured_len".into(), json!(packet.captured_len));
    object.insert("orig_len".into(), json!(packet.orig_len));
    object.insert(
        "flow".into(),
        packet.flow.as_ref().map_or(Value::Null, flow_json),
    );
    object.insert("verdict".into(), json!(packet.verdict.label()));
    match &packet.verdict {
        Verdict::NotIp { reason } | Verdict::Undecodable { reason } => {
            object.insert("reason".into(), json!(reason));
        }
        Verdict::NotTcpUdp { protocol } => {
            object.insert("protocol".into(), json!(protocol));
        }
        Verdict::Ordinary { payload_len } => {
            object.insert("payload_len".into(), json!(payload_len));
        }
        Verdict::FalsePositiveMarker {
            original_payload_len,
        } => {
            object.insert("original_payload_len".into(), json!(original_payload_len));
        }
        Verdict::Metadata { block, metadata } => {
            object.insert("block".into(), block_json(block));
            object.insert("metadata".into(), metadata_json(metadata));
        }
        Verdict::InvalidMetadata { block, error } => {
            object.insert("error".into(), json!(error.to_string()));
            object.insert(
                "block".into(),
                block.as_ref().map_or(Value::Null, block_json),
            );
        }
    }
    object.insert("notes".into(), json!(packet.notes));
    Value::Object(object)
}

fn flow_json(flow: &Flow) -> Value {
    let (src_port, dst_port) = flow.ports.unzip();
    json!({
        "protocol": flow.protocol,
        "src": flow.src.to_string(),
        "dst": flow.dst.to_string(),
        "src_port": src_port,
        "dst_port": dst_port,
        "tcp_flags": flow.tcp_flags.map(|flags| TcpFlags(flags).to_string()),
    })
}

fn block_json(block: &MetadataBlock) -> Value {
    json!({
        "header_len": block.header_len,
        "payload_len": block.payload_len,
        "original_payload_len": block.original_payload_len,
        "tlvs": block.tlvs.iter().map(tlv_json).collect::<Vec<_>>(),
    })
}

fn tlv_json(tlv: &TlvReport) -> Value {
    json!({
        "section": section_name(tlv.section),
        "offset": tlv.offset,
        "type": tlv.tlv_type,
        "name": tlv.name,
        "length": tlv.value.len(),
        "value": tlv.readable,
        "hex": hex::encode(&tlv.value),
    })
}

/// The typed parse, with the fields that are set.
fn metadata_json(metadata: &Metadata) -> Value {
    let mut object = Map::new();
    let mut put = |key: &str, value: Value| {
        if !value.is_null() {
            object.insert(key.to_owned(), value);
        }
    };
    let context = |context: &SessionContext| {
        let (src, dst) = match context.addrs {
            ContextAddrs::V4 { src, dst } => (src.to_string(), dst.to_string()),
            ContextAddrs::V6 { src, dst } => (src.to_string(), dst.to_string()),
        };
        json!({
            "src": src,
            "dst": dst,
            "src_port": context.src_port,
            "dst_port": context.dst_port,
            "protocol": context.protocol,
        })
    };
    put("security_id", json!(metadata.security_id));
    put(
        "forward_context",
        metadata
            .forward_context
            .as_ref()
            .map_or(Value::Null, context),
    );
    put(
        "reverse_context",
        metadata
            .reverse_context
            .as_ref()
            .map_or(Value::Null, context),
    );
    put(
        "session_uuid",
        json!(metadata.session_uuid.map(hex::encode)),
    );
    put("tenant", json!(metadata.tenant));
    put("global_interface_id", json!(metadata.global_interface_id));
    put("service", json!(metadata.service));
    let flags = [
        ("payload_encrypted", metadata.payload_encrypted),
        ("tcp_syn_as_udp", metadata.tcp_syn_as_udp),
        (
            "disable_forward_metadata",
            metadata.disable_forward_metadata,
        ),
    ];
    for (key, set) in flags {
        if set {
            put(key, json!(true));
        }
    }
    put("source_router", json!(metadata.source_router));
    put("security_policy", json!(metadata.security_policy));
    put("destination_router", json!(metadata.destination_router));
    put("peer_pathway_id", json!(metadata.peer_pathway_id));
    put(
        "control_message",
        json!(metadata.control_message.map(|m| m.to_string())),
    );
    put(
        "path_metrics",
        json!(metadata.path_metrics.map(|m| m.to_string())),
    );
    put(
        "remaining_session_time",
        json!(metadata.remaining_session_time),
    );
    let unknown: Vec<Value> = metadata
        .unknown
        .iter()
        .map(|tlv| {
            json!({
                "section": section_name(tlv.section),
                "type": tlv.tlv_type,
                "hex": hex::encode(&tlv.value),
            })
        })
        .collect();
    if !unknown.is_empty() {
        put("unknown", Value::Array(unknown));
    }
    Value::Object(object)
}
