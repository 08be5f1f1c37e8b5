//! `signpostctl svr decode`: the real binary on a capture written with the router's pcap writer
//! (packets built with etherparse, metadata with the router's codec), and the same file read
//! by tshark when it is installed.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use etherparse::PacketBuilder;
use signpost_cnf::pcap::{LinkType, PcapWriter};
use signpost_cnf::svr::{COOKIE, ContextAddrs, FALSE_POSITIVE_MARKER, Metadata, SessionContext};

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
const STORE: [u8; 4] = [192, 0, 2, 10];
const HUB: [u8; 4] = [198, 51, 100, 20];

fn forward_metadata() -> Metadata {
    Metadata {
        security_id: Some(7),
        forward_context: Some(SessionContext {
            addrs: ContextAddrs::V4 {
                src: Ipv4Addr::new(10, 0, 0, 5),
                dst: Ipv4Addr::new(10, 9, 8, 7),
            },
            src_port: 50000,
            dst_port: 443,
            protocol: 6,
        }),
        session_uuid: Some([0x11; 16]),
        tenant: Some("retail".into()),
        service: Some("pos".into()),
        source_router: Some("store-0042".into()),
        ..Metadata::default()
    }
}

fn with_metadata(metadata: &Metadata, original: &[u8]) -> Vec<u8> {
    let mut payload = vec![0u8; metadata.buffer_len()];
    let len = metadata
        .emit(&mut payload)
        .expect("the buffer is sized by buffer_len");
    payload.truncate(len);
    payload.extend_from_slice(original);
    payload
}

fn udp(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(STORE, HUB, 64)
        .udp(16385, 16386)
        .write(&mut out, payload)
        .expect("etherparse writes to a Vec");
    out
}

fn tcp_syn(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(STORE, HUB, 64)
        .tcp(40000, 443, 1, 64240)
        .syn()
        .write(&mut out, payload)
        .expect("etherparse writes to a Vec");
    out
}

/// A block with the given version and payload TLV bytes, no header TLVs.
fn block(version: u8, payload_tlvs: &[u8]) -> Vec<u8> {
    let mut bytes = COOKIE.to_vec();
    bytes.extend_from_slice(&((u16::from(version) << 12) | 12).to_be_bytes());
    bytes.extend_from_slice(&(payload_tlvs.len() as u16).to_be_bytes());
    bytes.extend_from_slice(payload_tlvs);
    bytes
}

/// The eight packets every test reads, in order.
fn packets() -> Vec<Vec<u8>> {
    let mut marked = FALSE_POSITIVE_MARKER.to_vec();
    marked.extend_from_slice(&COOKIE);
    marked.extend_from_slice(b"tail");
    let mut truncated = COOKIE.to_vec();
    truncated.push(0x10);
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&MAC_A);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&[0; 38]); // addresses, then padding to 60 bytes
    vec![
        udp(&with_metadata(&forward_metadata(), b"hello")),
        tcp_syn(&with_metadata(
            &Metadata {
                tenant: Some("retail".into()),
                ..Metadata::default()
            },
            b"",
        )),
        udp(&marked),
        udp(b"GET / HTTP/1.1\r\n"),
        udp(&truncated),
        udp(&block(3, &[])),
        udp(&block(1, &[0x03, 0xe7, 0x00, 0x02, 0xbe, 0xef])),
        arp,
    ]
}

fn write_capture(name: &str, link_type: LinkType, packets: &[Vec<u8>]) -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let mut writer = PcapWriter::new(Vec::new(), link_type).expect("writing to a Vec");
    for (i, packet) in packets.iter().enumerate() {
        let timestamp = Duration::new(1_700_000_000, i as u32 * 250_000_000);
        writer
            .write_packet(timestamp, packet)
            .expect("writing to a Vec");
    }
    std::fs::write(&path, writer.into_inner()).expect("the target tmp dir is writable");
    path
}

fn signpostctl(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_signpostctl"))
        .args(args)
        .output()
        .expect("signpostctl runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temp path")
}

#[test]
fn text_output_shows_every_verdict() {
    let path = write_capture("svr-decode-text.pcap", LinkType::Ethernet, &packets());
    let (code, stdout, stderr) = signpostctl(&["svr", "decode", path_str(&path)]);
    assert_eq!(code, Some(0), "{stderr}");
    let expected_lines = [
        "link type ETHERNET (1), 8 packets",
        "packet 0  1700000000.000000  UDP 192.0.2.10:16385 -> 198.51.100.20:16386",
        "  metadata: header 20 bytes, payload TLVs 68 bytes, 5 bytes of original payload",
        "    header     16 security id",
        "    payload     2 forward context IPv4           13 B  10.0.0.5:50000 -> 10.9.8.7:443 TCP",
        "    payload     6 session UUID                   16 B  11111111-1111-1111-1111-111111111111",
        "    payload     7 tenant name                     6 B  \"retail\"",
        "    payload    14 source router name             10 B  \"store-0042\"",
        "packet 1  1700000000.250000  TCP 192.0.2.10:40000 -> 198.51.100.20:443 [SYN]",
        "  false-positive marker: strip 12 bytes, 12 bytes of ordinary payload follow",
        "  no metadata: 16 bytes of ordinary payload",
        "  invalid metadata: SVR metadata truncated: the base header needs 12 bytes, only 9 are present",
        "  invalid metadata: SVR metadata version 3 is not supported (this router speaks version 1)",
        "    payload   999 unknown                         2 B  beef",
        "packet 7  1700000001.750000  -  60 bytes",
        "  not IP: EtherType 0x0806 (ARP)",
        "8 packets: 3 metadata, 1 false-positive marker, 1 no metadata, 2 invalid metadata, 1 not IP",
    ];
    for line in expected_lines {
        assert!(
            stdout.lines().any(|l| l.starts_with(line)),
            "missing {line:?} in:\n{stdout}"
        );
    }
}

#[test]
fn json_output_has_the_same_content() {
    let path = write_capture("svr-decode-json.pcap", LinkType::Ethernet, &packets());
    let (code, stdout, stderr) = signpostctl(&["svr", "decode", path_str(&path), "--json"]);
    assert_eq!(code, Some(0), "{stderr}");
    let packets: serde_json::Value = serde_json::from_str(&stdout).expect("JSON on stdout");
    let packets = packets.as_array().expect("an array");
    assert_eq!(packets.len(), 8);
    let verdicts: Vec<&str> = packets
        .iter()
        .map(|p| p["verdict"].as_str().expect("a verdict"))
        .collect();
    assert_eq!(
        verdicts,
        [
            "metadata",
            "metadata",
            "false-positive marker",
            "no metadata",
            "invalid metadata",
            "invalid metadata",
            "metadata",
            "not IP"
        ]
    );

    let first = &packets[0];
    assert_eq!(first["time"], "1700000000.000000");
    assert_eq!(first["flow"]["src"], "192.0.2.10");
    assert_eq!(first["flow"]["dst_port"], 16386);
    assert_eq!(first["flow"]["protocol"], 17);
    let tlvs = first["block"]["tlvs"].as_array().expect("TLVs");
    assert_eq!(tlvs.len(), 6);
    assert_eq!(tlvs[0]["section"], "header");
    assert_eq!(tlvs[0]["type"], 16);
    assert_eq!(tlvs[0]["hex"], "00000007");
    assert_eq!(tlvs[1]["name"], "forward context IPv4");
    assert_eq!(tlvs[1]["length"], 13);
    assert_eq!(tlvs[1]["value"], "10.0.0.5:50000 -> 10.9.8.7:443 TCP");
    assert_eq!(first["metadata"]["tenant"], "retail");
    assert_eq!(first["metadata"]["security_id"], 7);
    assert_eq!(first["metadata"]["forward_context"]["dst_port"], 443);
    assert_eq!(first["metadata"]["session_uuid"], "11".repeat(16));
    assert_eq!(first["block"]["original_payload_len"], 5);

    assert_eq!(packets[1]["flow"]["tcp_flags"], "SYN");
    assert_eq!(packets[2]["original_payload_len"], 12);
    assert_eq!(packets[3]["payload_len"], 16);
    assert_eq!(
        packets[4]["error"],
        "SVR metadata truncated: the base header needs 12 bytes, only 9 are present"
    );
    assert_eq!(packets[4]["block"], serde_json::Value::Null);
    assert_eq!(packets[6]["block"]["tlvs"][0]["name"], "unknown");
    assert_eq!(packets[6]["metadata"]["unknown"][0]["type"], 999);
    assert_eq!(packets[7]["reason"], "EtherType 0x0806 (ARP)");
    assert_eq!(packets[7]["flow"], serde_json::Value::Null);
}

#[test]
fn unreadable_files_exit_1_with_the_reason() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let pcapng = dir.join("svr-decode-capture.pcapng");
    std::fs::write(&pcapng, [0x0a, 0x0d, 0x0d, 0x0a, 0x1c, 0, 0, 0]).expect("writable");
    let (code, stdout, stderr) = signpostctl(&["svr", "decode", path_str(&pcapng)]);
    assert_eq!(code, Some(1));
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("pcapng file: convert with `editcap -F pcap IN OUT`"),
        "{stderr}"
    );

    let missing = dir.join("svr-decode-no-such-file.pcap");
    let (code, _, stderr) = signpostctl(&["svr", "decode", path_str(&missing)]);
    assert_eq!(code, Some(1));
    assert!(stderr.starts_with("error: cannot read "), "{stderr}");

    // Cut inside the last record: the packets before it are printed, then the error.
    let whole = write_capture("svr-decode-whole.pcap", LinkType::Ethernet, &packets());
    let mut bytes = std::fs::read(&whole).expect("just written");
    bytes.truncate(bytes.len() - 10);
    let cut = dir.join("svr-decode-cut.pcap");
    std::fs::write(&cut, bytes).expect("writable");
    let (code, stdout, stderr) = signpostctl(&["svr", "decode", path_str(&cut), "--json"]);
    assert_eq!(code, Some(1));
    let packets: serde_json::Value = serde_json::from_str(&stdout).expect("JSON on stdout");
    assert_eq!(packets.as_array().map(Vec::len), Some(7));
    assert!(
        stderr.contains("record 7 at byte ")
            && stderr.contains("the header announces 60 captured bytes, only 50 remain"),
        "{stderr}"
    );
}

fn tshark(args: &[&str]) -> Option<String> {
    let out = match Command::new("tshark").args(args).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("tshark did not start: {e}"),
    };
    assert!(
        out.status.success(),
        "tshark {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn tshark_reads_what_we_write() {
    let packets = packets();
    let path = write_capture("svr-decode-tshark.pcap", LinkType::Ethernet, &packets);
    let Some(fields) = tshark(&[
        "-r",
        path_str(&path),
        "-T",
        "fields",
        "-e",
        "frame.number",
        "-e",
        "frame.time_epoch",
        "-e",
        "frame.len",
        "-e",
        "ip.src",
        "-e",
        "udp.dstport",
        "-e",
        "tcp.dstport",
    ]) else {
        println!("skipped: tshark not installed");
        return;
    };
    let rows: Vec<Vec<&str>> = fields.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), packets.len(), "{fields}");
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row[0], (i + 1).to_string());
        let time: f64 = row[1].parse().expect("an epoch time");
        assert!(
            (time - (1_700_000_000.0 + i as f64 * 0.25)).abs() < 1e-3,
            "{row:?}"
        );
        assert_eq!(row[2], packets[i].len().to_string());
    }
    assert_eq!(rows[0][3..5], ["192.0.2.10", "16386"]);
    assert_eq!(rows[1][5], "443");
    assert_eq!(rows[7][3], "", "ARP has no IP source");

    // Raw IP files, numbered 101 as we write them and 12 as older Linux files are: tshark
    // reads IP straight away in both, as our reader does.
    let ip_only: Vec<Vec<u8>> = packets[..4].iter().map(|p| p[14..].to_vec()).collect();
    let raw = write_capture("svr-decode-raw.pcap", LinkType::Raw, &ip_only);
    let mut bytes = std::fs::read(&raw).expect("just written");
    bytes[20..24].copy_from_slice(&12u32.to_ne_bytes());
    let raw12 = raw.with_file_name("svr-decode-raw12.pcap");
    std::fs::write(&raw12, bytes).expect("writable");
    for file in [&raw, &raw12] {
        let fields = tshark(&["-r", path_str(file), "-T", "fields", "-e", "ip.dst"])
            .expect("tshark ran above");
        assert_eq!(fields.lines().count(), 4, "{fields}");
        assert!(fields.lines().all(|l| l == "198.51.100.20"), "{fields}");
        let (code, stdout, stderr) = signpostctl(&["svr", "decode", path_str(file)]);
        assert_eq!(code, Some(0), "{stderr}");
        assert!(stdout.contains("4 packets: 2 metadata"), "{stdout}");
    }
}
