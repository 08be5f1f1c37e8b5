//! Packet captures inside a namespace with `dumpcap` (tshark's capture engine, from the same
//! Debian package: it starts in milliseconds where tshark loads its dissectors for seconds), and
//! the pcap reading the comparisons need: how many IP packets and bytes crossed a link. The
//! files are ordinary pcap: `tshark -r FILE` reads them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::netns::Namespace;
use crate::process::Child;

/// A running `dumpcap -w FILE` on one device; [`Capture::finish`] stops it and reads the file.
pub struct Capture {
    child: Child,
    file: PathBuf,
}

/// What a capture saw: IP packets (the Ethernet header is not counted: it is the same for
/// every carrier) and their bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub packets: u64,
    pub bytes: u64,
}

impl Tally {
    pub fn per_packet(&self) -> f64 {
        self.bytes as f64 / (self.packets.max(1)) as f64
    }
}

impl Capture {
    /// Starts capturing on `device` in `ns` with capture filter `filter`, into `file`.
    pub fn start(
        ns: &Namespace,
        device: &str,
        filter: &str,
        file: &Path,
    ) -> Result<Capture, String> {
        let mut cmd = ns.command("dumpcap");
        cmd.args(["-i", device, "-q", "-n", "-P", "-f", filter, "-w"])
            .arg(file);
        let mut child = Child::spawn("dumpcap", cmd)?;
        child.wait_for_line("Capturing on", Duration::from_secs(15))?;
        Ok(Capture {
            child,
            file: file.to_path_buf(),
        })
    }

    /// Stops the capture and counts what it saw.
    pub fn finish(mut self) -> Result<Tally, String> {
        // Let the last frames reach the file, then stop (SIGTERM flushes it).
        std::thread::sleep(Duration::from_millis(300));
        self.child.stop(Duration::from_secs(5));
        // `Packets received/dropped on interface 'X': 5000/0 (...)`: a lossy capture would
        // make every figure drawn from it wrong.
        let output = self.child.output();
        if let Some(line) = output.lines().find(|l| l.contains("received/dropped")) {
            let dropped = line
                .split(": ")
                .nth(1)
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.split('/').nth(1))
                .and_then(|v| v.parse::<u64>().ok());
            if dropped != Some(0) {
                return Err(format!("the capture lost packets: {line}"));
            }
        }
        let data =
            std::fs::read(&self.file).map_err(|e| format!("{}: {e}", self.file.display()))?;
        tally(&data).map_err(|e| format!("{}: {e}", self.file.display()))
    }
}

/// Counts the IPv4/IPv6 packets of a pcap file (Ethernet link type), by their original length.
pub fn tally(data: &[u8]) -> Result<Tally, String> {
    if data.len() < 24 {
        return Err("not a pcap file (too short)".into());
    }
    let magic = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    let le = match magic {
        0xa1b2_c3d4 | 0xa1b2_3c4d => true,
        0xd4c3_b2a1 | 0x4d3c_b2a1 => false,
        0x0a0d_0d0a => return Err("pcapng; capture with -F pcap".into()),
        _ => return Err(format!("not a pcap file (magic {magic:#x})")),
    };
    let u32_at = |b: &[u8]| {
        let a = [b[0], b[1], b[2], b[3]];
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let link = u32_at(&data[20..24]);
    if link != 1 {
        return Err(format!("link type {link}, expected Ethernet (1)"));
    }
    let mut out = Tally::default();
    let mut at = 24;
    while at + 16 <= data.len() {
        let caplen = u32_at(&data[at + 8..at + 12]) as usize;
        let orig = u32_at(&data[at + 12..at + 16]) as u64;
        let frame = data
            .get(at + 16..at + 16 + caplen)
            .ok_or("truncated record")?;
        at += 16 + caplen;
        let mut ethertype = frame.get(12..14).map(|t| u16::from_be_bytes([t[0], t[1]]));
        let mut l2 = 14u64;
        if ethertype == Some(0x8100) {
            ethertype = frame.get(16..18).map(|t| u16::from_be_bytes([t[0], t[1]]));
            l2 = 18;
        }
        if matches!(ethertype, Some(0x0800 | 0x86dd)) {
            out.packets += 1;
            out.bytes += orig.saturating_sub(l2);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut header = Vec::new();
        header.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        header.extend_from_slice(&2u16.to_le_bytes());
        header.extend_from_slice(&4u16.to_le_bytes());
        header.extend_from_slice(&[0; 8]);
        header.extend_from_slice(&65535u32.to_le_bytes());
        header.extend_from_slice(&1u32.to_le_bytes());
        let mut out = header;
        for f in frames {
            out.extend_from_slice(&[0; 8]);
            out.extend_from_slice(&(f.len() as u32).to_le_bytes());
            out.extend_from_slice(&(f.len() as u32).to_le_bytes());
            out.extend_from_slice(f);
        }
        out
    }

    fn frame(ethertype: u16, len: usize) -> Vec<u8> {
        let mut f = vec![0u8; len];
        f[12..14].copy_from_slice(&ethertype.to_be_bytes());
        f
    }

    #[test]
    fn counts_ip_packets_without_their_ethernet_header() {
        let data = pcap(&[frame(0x0800, 214), frame(0x0806, 42), frame(0x0800, 64)]);
        assert_eq!(
            tally(&data),
            Ok(Tally {
                packets: 2,
                bytes: 200 + 50
            })
        );
        assert!(tally(&data[..10]).is_err());
    }
}
