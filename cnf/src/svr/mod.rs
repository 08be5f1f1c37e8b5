//! SVR metadata: the codec for the block that rides at the start of the L4 payload of a
//! session's first packets (draft-menon-svr §10; the facts we rely on are in SVR-NOTES.md).
//!
//! - [`wire`]: the byte layout — cookie, base header, TLV sections — as a zero-copy
//!   [`MetadataPacket`] view with a [`Tlvs`] iterator, [`classify`] (ordinary data, the
//!   false-positive marker, or metadata), [`metadata_len`] to strip the block, and the [`Error`]
//!   texts operators read.
//! - [`metadata`]: the typed [`Metadata`] (`parse` / `emit` / `buffer_len`) for the TLVs the
//!   router uses; unknown TLVs are kept so they survive a round trip.
//!
//! - [`inspect`]: a pcap capture taken apart packet by packet down to the metadata, for
//!   `signpostctl svr decode`.
//!
//! Authentication (HMAC), payload-TLV encryption, sessions and the handshake are built on top:
//! [`Metadata::emit`] writes into a caller's buffer and returns the length,
//! [`MetadataPacket::payload_tlvs_range`] / [`Metadata::payload_tlvs_range`] give the bytes to
//! encrypt in place, and [`MetadataPacket::set_payload_len`] accounts for a tag appended to them.

pub mod inspect;
pub mod metadata;
pub mod wire;

pub use inspect::{
    Flow, MetadataBlock, PacketReport, TcpFlags, TlvReport, Verdict, inspect_capture,
    inspect_record,
};
pub use metadata::{
    ContextAddrs, ControlMessage, Metadata, PathMetrics, SessionContext, UnknownTlv,
};
pub use wire::{
    COOKIE, Classified, Error, FALSE_POSITIVE_MARKER, MetadataPacket, Result, Section, Tlv,
    TlvName, Tlvs, classify, false_positive_marker, metadata_len, starts_with_cookie, tlv_name,
    tlv_type,
};
