//! Classic libpcap capture files (<https://wiki.wireshark.org/Development/LibpcapFileFormat>):
//! a [`PcapWriter`] for the router's own traces and test fixtures, and a zero-copy
//! [`PcapReader`] for files written by tcpdump, tshark or us — both byte orders, microsecond
//! and nanosecond timestamps, and the link types of Ethernet ports, tun devices and
//! `tshark -i any`. pcapng is recognised only to say how to convert it.
//!
//! ```text
//! file header (24 bytes): magic u32 | version 2.4 (u16, u16) | thiszone i32 | sigfigs u32
//!                         | snaplen u32 | link type u32        (all in the writer's byte order)
//! record header (16):     seconds u32 | micro- or nanoseconds u32 | captured len u32
//!                         | original len u32, then `captured len` bytes of packet
//! ```

use core::fmt;
use core::time::Duration;
use std::io::{self, Write};

/// Bytes of the file header.
pub const FILE_HEADER_LEN: usize = 24;
/// Bytes of each record header.
pub const RECORD_HEADER_LEN: usize = 16;
/// The snapshot length the writer declares; longer packets are cut to it, as tcpdump does.
pub const SNAPLEN: u32 = 65_535;

/// The magic of a microsecond file, as a number; its byte order in the file is the file's.
const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
/// The magic of a nanosecond file.
const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
/// A pcapng file starts with a Section Header Block, type 0x0a0d0d0a (a palindrome, so the
/// same bytes in either byte order).
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];
const VERSION_MAJOR: u16 = 2;
const VERSION_MINOR: u16 = 4;

/// The link-layer header in front of each packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// Ethernet II, optionally 802.1Q-tagged (LINKTYPE_ETHERNET, 1).
    Ethernet,
    /// An IPv4 or IPv6 packet with no link header, as on a tun device (LINKTYPE_RAW, 101).
    /// Read also from 12 (DLT_RAW as Linux numbers it, found in older files), 228
    /// (LINKTYPE_IPV4) and 229 (LINKTYPE_IPV6); written as 101.
    Raw,
    /// Linux "cooked" capture v1, the 16-byte header of `tcpdump -i any` (113).
    LinuxSll,
    /// Linux "cooked" capture v2, the 20-byte header of `tshark -i any` (276).
    LinuxSll2,
}

impl LinkType {
    /// The number this link type is written with.
    pub const fn number(self) -> u32 {
        match self {
            LinkType::Ethernet => 1,
            LinkType::Raw => 101,
            LinkType::LinuxSll => 113,
            LinkType::LinuxSll2 => 276,
        }
    }

    /// The link type a file header's number means, if this reader supports it.
    pub const fn from_number(number: u32) -> Option<LinkType> {
        Some(match number {
            1 => LinkType::Ethernet,
            12 | 101 | 228 | 229 => LinkType::Raw,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            _ => return None,
        })
    }

    /// The name tcpdump's list gives it, for reports.
    pub const fn name(self) -> &'static str {
        match self {
            LinkType::Ethernet => "ETHERNET",
            LinkType::Raw => "RAW",
            LinkType::LinuxSll => "LINUX_SLL",
            LinkType::LinuxSll2 => "LINUX_SLL2",
        }
    }
}

impl fmt::Display for LinkType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.number())
    }
}

/// The unit of a record's sub-second timestamp field, fixed per file by its magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Precision {
    Microseconds,
    Nanoseconds,
}

impl Precision {
    const fn magic(self) -> u32 {
        match self {
            Precision::Microseconds => MAGIC_MICROS,
            Precision::Nanoseconds => MAGIC_NANOS,
        }
    }

    /// Splits a timestamp into the record's seconds and fraction fields.
    fn fraction(self, timestamp: Duration) -> u32 {
        match self {
            Precision::Microseconds => timestamp.subsec_micros(),
            Precision::Nanoseconds => timestamp.subsec_nanos(),
        }
    }

    fn duration(self, seconds: u32, fraction: u32) -> Duration {
        // A fraction of a second or more is out of spec; tools accept it, and so does adding.
        let fraction = match self {
            Precision::Microseconds => Duration::from_micros(u64::from(fraction)),
            Precision::Nanoseconds => Duration::from_nanos(u64::from(fraction)),
        };
        Duration::from_secs(u64::from(seconds)) + fraction
    }
}

/// Why bytes cannot be read as a pcap file. Record indexes count from 0; offsets are bytes from
/// the start of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PcapError {
    /// The file is pcapng, which this reader does not parse.
    Pcapng,
    /// Fewer than 24 bytes: no complete file header.
    HeaderTruncated { available: usize },
    /// The first four bytes are no pcap magic in either byte order.
    UnknownMagic([u8; 4]),
    /// A major version other than 2.
    UnsupportedVersion { major: u16, minor: u16 },
    /// A link type this reader cannot take apart.
    UnsupportedLinkType(u32),
    /// The file ends inside a record header.
    RecordHeaderTruncated {
        index: usize,
        offset: usize,
        available: usize,
    },
    /// The file ends before the bytes a record header announces.
    RecordDataTruncated {
        index: usize,
        offset: usize,
        captured_len: u32,
        available: usize,
    },
}

impl fmt::Display for PcapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PcapError::Pcapng => f.write_str("pcapng file: convert with `editcap -F pcap IN OUT`"),
            PcapError::HeaderTruncated { available } => write!(
                f,
                "not a complete pcap file: the file header needs {FILE_HEADER_LEN} bytes, the \
                 file has {available}"
            ),
            PcapError::UnknownMagic(magic) => write!(
                f,
                "not a pcap file: it starts with {:02x}{:02x}{:02x}{:02x}, not the pcap magic \
                 a1b2c3d4 (microseconds) or a1b23c4d (nanoseconds) in either byte order",
                magic[0], magic[1], magic[2], magic[3]
            ),
            PcapError::UnsupportedVersion { major, minor } => write!(
                f,
                "pcap version {major}.{minor} is not supported: this reader reads version \
                 {VERSION_MAJOR}.x"
            ),
            PcapError::UnsupportedLinkType(number) => write!(
                f,
                "pcap link type {number} is not supported: this reader takes ETHERNET (1), RAW \
                 (101, 12, 228, 229), LINUX_SLL (113) and LINUX_SLL2 (276); capture on an \
                 Ethernet, tun or `any` interface"
            ),
            PcapError::RecordHeaderTruncated {
                index,
                offset,
                available,
            } => write!(
                f,
                "record {index} at byte {offset}: the record header needs {RECORD_HEADER_LEN} \
                 bytes, only {available} remain in the file (the capture was cut short)"
            ),
            PcapError::RecordDataTruncated {
                index,
                offset,
                captured_len,
                available,
            } => write!(
                f,
                "record {index} at byte {offset}: the header announces {captured_len} captured \
                 bytes, only {available} remain in the file (the capture was cut short or the \
                 length is corrupt)"
            ),
        }
    }
}

impl std::error::Error for PcapError {}

/// Writes a classic pcap file: the header on creation, then one record per packet. Wrap `W` in
/// a `BufWriter` for files; nothing is buffered here.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    out: W,
    precision: Precision,
}

impl<W: Write> PcapWriter<W> {
    /// Writes a microsecond file header for `link_type` (native byte order, as libpcap does).
    pub fn new(out: W, link_type: LinkType) -> io::Result<Self> {
        Self::with_precision(out, link_type, Precision::Microseconds)
    }

    /// Writes a file header whose records carry timestamps in `precision`.
    pub fn with_precision(
        mut out: W,
        link_type: LinkType,
        precision: Precision,
    ) -> io::Result<Self> {
        let mut header = [0u8; FILE_HEADER_LEN];
        header[0..4].copy_from_slice(&precision.magic().to_ne_bytes());
        header[4..6].copy_from_slice(&VERSION_MAJOR.to_ne_bytes());
        header[6..8].copy_from_slice(&VERSION_MINOR.to_ne_bytes());
        // thiszone and sigfigs stay 0: timestamps are UTC, accuracy unstated.
        header[16..20].copy_from_slice(&SNAPLEN.to_ne_bytes());
        header[20..24].copy_from_slice(&link_type.number().to_ne_bytes());
        out.write_all(&header)?;
        Ok(PcapWriter { out, precision })
    }

    /// Appends one packet. `timestamp` is since the Unix epoch, or since the start of a trace
    /// (tools then show dates in 1970). Packets longer than [`SNAPLEN`] are cut to it, with
    /// their full length recorded as the original length.
    pub fn write_packet(&mut self, timestamp: Duration, data: &[u8]) -> io::Result<()> {
        let seconds = u32::try_from(timestamp.as_secs()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "pcap timestamps end in 2106: {} s does not fit the 32-bit seconds field",
                    timestamp.as_secs()
                ),
            )
        })?;
        let orig_len = u32::try_from(data.len()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a {}-byte packet does not fit the 32-bit pcap length field",
                    data.len()
                ),
            )
        })?;
        let captured = data.get(..SNAPLEN as usize).unwrap_or(data);
        let mut header = [0u8; RECORD_HEADER_LEN];
        header[0..4].copy_from_slice(&seconds.to_ne_bytes());
        header[4..8].copy_from_slice(&self.precision.fraction(timestamp).to_ne_bytes());
        header[8..12].copy_from_slice(&(captured.len() as u32).to_ne_bytes());
        header[12..16].copy_from_slice(&orig_len.to_ne_bytes());
        self.out.write_all(&header)?;
        self.out.write_all(captured)
    }

    /// Flushes the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// The underlying writer, e.g. the `Vec<u8>` a test wrote into.
    pub fn into_inner(self) -> W {
        self.out
    }
}

/// One packet of a capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Position in the file, from 0 (tshark numbers frames from 1).
    pub index: usize,
    /// As written: since the epoch, or since the start of the trace.
    pub timestamp: Duration,
    /// The packet's length on the wire; more than `data.len()` when the snaplen cut it.
    pub orig_len: u32,
    /// The captured bytes, starting with the link-layer header.
    pub data: &'a [u8],
}

/// The byte order a file was written in, told by how its magic reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ByteOrder {
    Little,
    Big,
}

impl ByteOrder {
    fn u16(self, bytes: [u8; 2]) -> u16 {
        match self {
            ByteOrder::Little => u16::from_le_bytes(bytes),
            ByteOrder::Big => u16::from_be_bytes(bytes),
        }
    }

    fn u32(self, bytes: [u8; 4]) -> u32 {
        match self {
            ByteOrder::Little => u32::from_le_bytes(bytes),
            ByteOrder::Big => u32::from_be_bytes(bytes),
        }
    }
}

/// Reads a pcap file held in memory, yielding [`Record`]s that borrow from it. An error ends
/// the iteration.
#[derive(Debug, Clone)]
pub struct PcapReader<'a> {
    bytes: &'a [u8],
    byte_order: ByteOrder,
    precision: Precision,
    link_type: LinkType,
    link_type_number: u32,
    snaplen: u32,
    /// Where the next record header starts; `None` once an error was yielded.
    offset: Option<usize>,
    index: usize,
}

impl<'a> PcapReader<'a> {
    /// Checks the file header. Records are checked as they are iterated.
    pub fn new(bytes: &'a [u8]) -> Result<Self, PcapError> {
        let magic: [u8; 4] = match bytes.first_chunk::<4>() {
            Some(magic) => *magic,
            None => {
                return Err(PcapError::HeaderTruncated {
                    available: bytes.len(),
                });
            }
        };
        if magic == PCAPNG_MAGIC {
            return Err(PcapError::Pcapng);
        }
        let (byte_order, precision) = match u32::from_le_bytes(magic) {
            MAGIC_MICROS => (ByteOrder::Little, Precision::Microseconds),
            MAGIC_NANOS => (ByteOrder::Little, Precision::Nanoseconds),
            other => match other.swap_bytes() {
                MAGIC_MICROS => (ByteOrder::Big, Precision::Microseconds),
                MAGIC_NANOS => (ByteOrder::Big, Precision::Nanoseconds),
                _ => return Err(PcapError::UnknownMagic(magic)),
            },
        };
        let Some(header) = bytes.first_chunk::<FILE_HEADER_LEN>() else {
            return Err(PcapError::HeaderTruncated {
                available: bytes.len(),
            });
        };
        let u16_at = |at: usize| byte_order.u16([header[at], header[at + 1]]);
        let u32_at = |at: usize| {
            byte_order.u32([header[at], header[at + 1], header[at + 2], header[at + 3]])
        };
        let (major, minor) = (u16_at(4), u16_at(6));
        if major != VERSION_MAJOR {
            return Err(PcapError::UnsupportedVersion { major, minor });
        }
        let snaplen = u32_at(16);
        // The top bits may carry FCS information (draft-ietf-opsawg-pcap); the link type is
        // the low 16. A trailing FCS is harmless here: IP views trim to their own length.
        let link_type_number = u32_at(20) & 0xffff;
        let link_type = LinkType::from_number(link_type_number)
            .ok_or(PcapError::UnsupportedLinkType(link_type_number))?;
        Ok(PcapReader {
            bytes,
            byte_order,
            precision,
            link_type,
            link_type_number,
            snaplen,
            offset: Some(FILE_HEADER_LEN),
            index: 0,
        })
    }

    pub fn link_type(&self) -> LinkType {
        self.link_type
    }

    /// The number in the file header (e.g. 12 or 228 for a [`LinkType::Raw`] file).
    pub fn link_type_number(&self) -> u32 {
        self.link_type_number
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    pub fn snaplen(&self) -> u32 {
        self.snaplen
    }

    /// True when the file was written big-endian.
    pub fn is_big_endian(&self) -> bool {
        self.byte_order == ByteOrder::Big
    }

    fn read_record(&mut self, offset: usize) -> Result<Record<'a>, PcapError> {
        let index = self.index;
        let rest = self.bytes.get(offset..).unwrap_or(&[]);
        let Some((header, after)) = rest.split_first_chunk::<RECORD_HEADER_LEN>() else {
            return Err(PcapError::RecordHeaderTruncated {
                index,
                offset,
                available: rest.len(),
            });
        };
        let u32_at = |at: usize| {
            self.byte_order
                .u32([header[at], header[at + 1], header[at + 2], header[at + 3]])
        };
        let (seconds, fraction, captured_len, orig_len) =
            (u32_at(0), u32_at(4), u32_at(8), u32_at(12));
        let data = usize::try_from(captured_len)
            .ok()
            .and_then(|len| after.get(..len))
            .ok_or(PcapError::RecordDataTruncated {
                index,
                offset,
                captured_len,
                available: after.len(),
            })?;
        self.offset = Some(offset + RECORD_HEADER_LEN + data.len());
        self.index += 1;
        Ok(Record {
            index,
            timestamp: self.precision.duration(seconds, fraction),
            orig_len,
            data,
        })
    }
}

impl<'a> Iterator for PcapReader<'a> {
    type Item = Result<Record<'a>, PcapError>;

    fn next(&mut self) -> Option<Self::Item> {
        let offset = self.offset.take()?;
        if offset == self.bytes.len() {
            return None;
        }
        Some(self.read_record(offset))
    }
}

impl core::iter::FusedIterator for PcapReader<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn write(
        link_type: LinkType,
        precision: Precision,
        packets: &[(Duration, Vec<u8>)],
    ) -> Vec<u8> {
        let mut writer = PcapWriter::with_precision(Vec::new(), link_type, precision).unwrap();
        for (timestamp, data) in packets {
            writer.write_packet(*timestamp, data).unwrap();
        }
        writer.into_inner()
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<Record<'_>>, PcapError> {
        PcapReader::new(bytes)?.collect()
    }

    /// A header and records as a big-endian writer on another machine would lay them out,
    /// byte by byte.
    fn big_endian_nanosecond_file() -> Vec<u8> {
        let mut bytes = vec![
            0xa1, 0xb2, 0x3c, 0x4d, // nanosecond magic, big-endian
            0x00, 0x02, 0x00, 0x04, // version 2.4
            0x00, 0x00, 0x00, 0x00, // thiszone
            0x00, 0x00, 0x00, 0x00, // sigfigs
            0x00, 0x00, 0x01, 0x00, // snaplen 256
            0x00, 0x00, 0x00, 0x65, // link type 101 (RAW)
        ];
        bytes.extend_from_slice(&[
            0x65, 0x00, 0x00, 0x01, // 1694498817 s
            0x3b, 0x9a, 0xc9, 0xff, // 999999999 ns
            0x00, 0x00, 0x00, 0x03, // captured 3
            0x00, 0x00, 0x05, 0xdc, // original 1500
            0xaa, 0xbb, 0xcc,
        ]);
        bytes.extend_from_slice(&[
            0x00, 0x00, 0x00, 0x02, // 2 s
            0x00, 0x00, 0x00, 0x07, // 7 ns
            0x00, 0x00, 0x00, 0x00, // captured 0
            0x00, 0x00, 0x00, 0x00, // original 0
        ]);
        bytes
    }

    #[test]
    fn round_trip_both_link_types() {
        for link_type in [LinkType::Ethernet, LinkType::Raw] {
            let packets: Vec<(Duration, Vec<u8>)> = (0..50u32)
                .map(|i| {
                    let timestamp = Duration::new(1_700_000_000 + u64::from(i), i * 1_000);
                    (timestamp, (0..i * 7).map(|b| b as u8).collect())
                })
                .collect();
            let bytes = write(link_type, Precision::Microseconds, &packets);
            let reader = PcapReader::new(&bytes).unwrap();
            assert_eq!(reader.link_type(), link_type);
            assert_eq!(reader.precision(), Precision::Microseconds);
            assert_eq!(reader.snaplen(), SNAPLEN);
            let records = read_all(&bytes).unwrap();
            assert_eq!(records.len(), packets.len());
            for (i, (record, (timestamp, data))) in records.iter().zip(&packets).enumerate() {
                assert_eq!(record.index, i);
                assert_eq!(record.timestamp, *timestamp);
                assert_eq!(record.data, &data[..]);
                assert_eq!(record.orig_len as usize, data.len());
            }
        }
    }

    #[test]
    fn header_layout_is_the_documented_one() {
        let bytes = write(LinkType::Raw, Precision::Microseconds, &[]);
        assert_eq!(bytes.len(), FILE_HEADER_LEN);
        let native = |v: u32| v.to_ne_bytes();
        assert_eq!(bytes[0..4], native(0xa1b2_c3d4));
        assert_eq!(
            bytes[4..8],
            [2u16.to_ne_bytes(), 4u16.to_ne_bytes()].concat()[..]
        );
        assert_eq!(bytes[8..16], [0u8; 8]);
        assert_eq!(bytes[16..20], native(65_535));
        assert_eq!(bytes[20..24], native(101));
        assert_eq!(read_all(&bytes).unwrap(), []);
    }

    #[test]
    fn microseconds_drop_the_nanoseconds_and_nanoseconds_keep_them() {
        let timestamp = Duration::new(12, 345_678_901);
        let packets = [(timestamp, vec![1, 2, 3])];
        let micro = write(LinkType::Ethernet, Precision::Microseconds, &packets);
        assert_eq!(
            read_all(&micro).unwrap()[0].timestamp,
            Duration::new(12, 345_678_000)
        );
        let nano = write(LinkType::Ethernet, Precision::Nanoseconds, &packets);
        assert_eq!(
            PcapReader::new(&nano).unwrap().precision(),
            Precision::Nanoseconds
        );
        assert_eq!(read_all(&nano).unwrap()[0].timestamp, timestamp);
    }

    #[test]
    fn reads_a_big_endian_nanosecond_file() {
        let bytes = big_endian_nanosecond_file();
        let reader = PcapReader::new(&bytes).unwrap();
        assert!(reader.is_big_endian());
        assert_eq!(reader.precision(), Precision::Nanoseconds);
        assert_eq!(reader.snaplen(), 256);
        assert_eq!(reader.link_type(), LinkType::Raw);
        let records = read_all(&bytes).unwrap();
        assert_eq!(
            records,
            [
                Record {
                    index: 0,
                    timestamp: Duration::new(1_694_498_817, 999_999_999),
                    orig_len: 1500,
                    data: &[0xaa, 0xbb, 0xcc],
                },
                Record {
                    index: 1,
                    timestamp: Duration::new(2, 7),
                    orig_len: 0,
                    data: &[],
                },
            ]
        );
    }

    #[test]
    fn reads_a_little_endian_file_on_any_host() {
        // Written out by hand as an x86 tcpdump writes it: microseconds, Linux cooked v2.
        let mut bytes = vec![
            0xd4, 0xc3, 0xb2, 0xa1, 0x02, 0x00, 0x04, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x00,
            0x04, 0x00, 0x14, 0x01, 0x00, 0x00,
        ];
        bytes.extend_from_slice(&[
            0x0a, 0x00, 0x00, 0x00, 0x40, 0x42, 0x0f, 0x00, 0x02, 0x00, 0x00, 0x00, 0x02, 0x00,
            0x00, 0x00, 0x08, 0x00,
        ]);
        let reader = PcapReader::new(&bytes).unwrap();
        assert!(!reader.is_big_endian());
        assert_eq!(reader.link_type(), LinkType::LinuxSll2);
        assert_eq!(reader.snaplen(), 262_144);
        let records = read_all(&bytes).unwrap();
        // 1_000_000 microseconds is out of spec but readable: one more second.
        assert_eq!(records[0].timestamp, Duration::from_secs(11));
        assert_eq!(records[0].data, &[0x08, 0x00]);
    }

    #[test]
    fn link_type_numbers() {
        for (number, link_type) in [
            (1, LinkType::Ethernet),
            (101, LinkType::Raw),
            (12, LinkType::Raw),
            (228, LinkType::Raw),
            (229, LinkType::Raw),
            (113, LinkType::LinuxSll),
            (276, LinkType::LinuxSll2),
        ] {
            assert_eq!(LinkType::from_number(number), Some(link_type));
            let mut bytes = write(LinkType::Ethernet, Precision::Microseconds, &[]);
            bytes[20..24].copy_from_slice(&number.to_ne_bytes());
            let reader = PcapReader::new(&bytes).unwrap();
            assert_eq!(reader.link_type(), link_type);
            assert_eq!(reader.link_type_number(), number);
        }
        for link_type in [
            LinkType::Ethernet,
            LinkType::Raw,
            LinkType::LinuxSll,
            LinkType::LinuxSll2,
        ] {
            assert_eq!(LinkType::from_number(link_type.number()), Some(link_type));
        }
        assert_eq!(LinkType::Raw.to_string(), "RAW (101)");

        let mut bytes = write(LinkType::Ethernet, Precision::Microseconds, &[]);
        bytes[20..24].copy_from_slice(&105u32.to_ne_bytes()); // 802.11
        let error = PcapReader::new(&bytes).unwrap_err();
        assert_eq!(error, PcapError::UnsupportedLinkType(105));
        assert!(error.to_string().starts_with(
            "pcap link type 105 is not supported: this reader takes ETHERNET (1), RAW (101, 12, \
             228, 229), LINUX_SLL (113) and LINUX_SLL2 (276)"
        ));
        // FCS bits above the low 16 do not change the link type.
        bytes[20..24].copy_from_slice(&(0x1000_0000u32 | 1).to_ne_bytes());
        assert_eq!(
            PcapReader::new(&bytes).unwrap().link_type(),
            LinkType::Ethernet
        );
    }

    #[test]
    fn truncated_header_errors() {
        let bytes = write(LinkType::Ethernet, Precision::Microseconds, &[]);
        for len in 0..FILE_HEADER_LEN {
            let error = PcapReader::new(&bytes[..len]).unwrap_err();
            assert_eq!(error, PcapError::HeaderTruncated { available: len });
        }
        assert_eq!(
            PcapError::HeaderTruncated { available: 10 }.to_string(),
            "not a complete pcap file: the file header needs 24 bytes, the file has 10"
        );
    }

    #[test]
    fn truncated_records_name_the_record_and_what_is_short() {
        let packets = [
            (Duration::from_secs(1), vec![0x11; 40]),
            (Duration::from_secs(2), vec![0x22; 60]),
        ];
        let bytes = write(LinkType::Raw, Precision::Microseconds, &packets);
        let second_at = FILE_HEADER_LEN + RECORD_HEADER_LEN + 40;
        assert_eq!(bytes.len(), second_at + RECORD_HEADER_LEN + 60);

        // Cut inside the second record's header: the first is still read.
        let cut = &bytes[..second_at + 5];
        let results: Vec<_> = PcapReader::new(cut).unwrap().collect();
        assert_eq!(results.len(), 2);
        assert_eq!(results[0].as_ref().unwrap().data, &[0x11; 40][..]);
        let error = results[1].clone().unwrap_err();
        assert_eq!(
            error,
            PcapError::RecordHeaderTruncated {
                index: 1,
                offset: second_at,
                available: 5
            }
        );
        assert_eq!(
            error.to_string(),
            "record 1 at byte 80: the record header needs 16 bytes, only 5 remain in the file \
             (the capture was cut short)"
        );

        // Cut inside the second record's data.
        let cut = &bytes[..bytes.len() - 1];
        let error = read_all(cut).unwrap_err();
        assert_eq!(
            error,
            PcapError::RecordDataTruncated {
                index: 1,
                offset: second_at,
                captured_len: 60,
                available: 59
            }
        );
        assert_eq!(
            error.to_string(),
            "record 1 at byte 80: the header announces 60 captured bytes, only 59 remain in the \
             file (the capture was cut short or the length is corrupt)"
        );

        // The iterator stops after an error.
        let mut reader = PcapReader::new(cut).unwrap();
        assert!(reader.next().unwrap().is_ok());
        assert!(reader.next().unwrap().is_err());
        assert!(reader.next().is_none());
    }

    #[test]
    fn a_huge_captured_length_is_an_error_not_an_allocation() {
        let mut bytes = write(LinkType::Raw, Precision::Microseconds, &[]);
        bytes.extend_from_slice(&[0; 8]);
        bytes.extend_from_slice(&u32::MAX.to_ne_bytes());
        bytes.extend_from_slice(&u32::MAX.to_ne_bytes());
        assert!(matches!(
            read_all(&bytes),
            Err(PcapError::RecordDataTruncated {
                index: 0,
                offset: 24,
                captured_len: u32::MAX,
                available: 0
            })
        ));
    }

    #[test]
    fn pcapng_and_other_files_are_named() {
        // The start of a pcapng Section Header Block, little-endian.
        let pcapng = [
            0x0a, 0x0d, 0x0d, 0x0a, 0x1c, 0x00, 0x00, 0x00, 0x4d, 0x3c, 0x2b, 0x1a,
        ];
        let error = PcapReader::new(&pcapng).unwrap_err();
        assert_eq!(error, PcapError::Pcapng);
        assert_eq!(
            error.to_string(),
            "pcapng file: convert with `editcap -F pcap IN OUT`"
        );
        assert_eq!(
            PcapReader::new(&pcapng[..4]).unwrap_err(),
            PcapError::Pcapng
        );

        let error = PcapReader::new(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap_err();
        assert_eq!(error, PcapError::UnknownMagic(*b"GET "));
        assert_eq!(
            error.to_string(),
            "not a pcap file: it starts with 47455420, not the pcap magic a1b2c3d4 \
             (microseconds) or a1b23c4d (nanoseconds) in either byte order"
        );

        let mut old = write(LinkType::Ethernet, Precision::Microseconds, &[]);
        old[4..6].copy_from_slice(&1u16.to_ne_bytes());
        assert_eq!(
            PcapReader::new(&old).unwrap_err().to_string(),
            "pcap version 1.4 is not supported: this reader reads version 2.x"
        );
    }

    #[test]
    fn writer_cuts_to_the_snaplen_and_refuses_far_future_timestamps() {
        let big = vec![0x5a; SNAPLEN as usize + 100];
        let bytes = write(
            LinkType::Ethernet,
            Precision::Microseconds,
            &[(Duration::ZERO, big)],
        );
        let records = read_all(&bytes).unwrap();
        assert_eq!(records[0].data.len(), SNAPLEN as usize);
        assert_eq!(records[0].orig_len, SNAPLEN + 100);

        let mut writer = PcapWriter::new(Vec::new(), LinkType::Raw).unwrap();
        let error = writer
            .write_packet(Duration::from_secs(1 << 32), &[0x45])
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert!(error.to_string().contains("4294967296 s"), "{error}");
        assert_eq!(
            writer.into_inner().len(),
            FILE_HEADER_LEN,
            "nothing half-written"
        );
    }

    #[test]
    fn writer_passes_io_errors_on() {
        #[derive(Debug)]
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let error = PcapWriter::new(Full, LinkType::Raw).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::StorageFull);
    }

    proptest! {
        #![proptest_config(crate::packet::proptest_config())]

        #[test]
        fn round_trip_any_packets(
            nanos in any::<bool>(),
            ethernet in any::<bool>(),
            packets in proptest::collection::vec(
                (0u64..u64::from(u32::MAX), 0u32..1_000_000_000, proptest::collection::vec(any::<u8>(), 0..200)),
                0..20,
            ),
        ) {
            let precision = if nanos { Precision::Nanoseconds } else { Precision::Microseconds };
            let link_type = if ethernet { LinkType::Ethernet } else { LinkType::Raw };
            let packets: Vec<_> = packets
                .into_iter()
                .map(|(s, n, data)| (Duration::new(s, n), data))
                .collect();
            let bytes = write(link_type, precision, &packets);
            let records = read_all(&bytes).unwrap();
            prop_assert_eq!(records.len(), packets.len());
            for (record, (timestamp, data)) in records.iter().zip(&packets) {
                let expected = match precision {
                    Precision::Nanoseconds => *timestamp,
                    Precision::Microseconds => Duration::new(timestamp.as_secs(), timestamp.subsec_micros() * 1000),
                };
                prop_assert_eq!(record.timestamp, expected);
                prop_assert_eq!(record.data, &data[..]);
            }
        }

        #[test]
        fn any_bytes_after_a_header_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut bytes = write(LinkType::Ethernet, Precision::Microseconds, &[]);
            bytes.extend_from_slice(&tail);
            let results: Vec<_> = PcapReader::new(&bytes).unwrap().collect();
            let mut consumed = FILE_HEADER_LEN;
            for (index, result) in results.iter().enumerate() {
                match result {
                    Ok(record) => {
                        prop_assert_eq!(record.index, index);
                        consumed += RECORD_HEADER_LEN + record.data.len();
                    }
                    // An error is the last item, and names the record it stopped at.
                    Err(PcapError::RecordHeaderTruncated { index: at, offset, .. }
                        | PcapError::RecordDataTruncated { index: at, offset, .. }) => {
                        prop_assert_eq!((*at, *offset), (index, consumed));
                        prop_assert_eq!(index + 1, results.len());
                        consumed = bytes.len();
                    }
                    Err(other) => prop_assert!(false, "unexpected {other}"),
                }
            }
            prop_assert_eq!(consumed, bytes.len(), "every byte is a record or the error");
        }

        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            if let Ok(reader) = PcapReader::new(&bytes) {
                for result in reader {
                    let _ = result.map(|record| record.data.len());
                }
            }
        }
    }
}
