//! A snapshot from the wire to an answer, without I/O: check it, decode it, hand it to the
//! [`ConfigSink`], say Ack or Nack. The stream driver and the last-known-good loader both go
//! through [`check`], so a file and a stream are trusted exactly as much.
//!
//! The router reads snapshots through [`RawOperatorMessage`], which is wire-compatible with
//! `signpost.v1.OperatorMessage` but keeps the config as bytes. That is what makes a damaged
//! config answerable: the version is read first, then the config bytes are decoded and hashed
//! here, and any fault becomes a Nack naming that version instead of a dropped stream.

use prost::Message;
use signpost_proto::v1::{Ack, Nack, RouterConfig, RouterMessage, router_message};

use super::ConfigSink;

/// `signpost.v1.OperatorMessage` as the router reads it. A oneof with one field is encoded like
/// a plain optional field; variants added later are unknown fields here, skipped.
#[derive(Clone, PartialEq, Message)]
pub struct RawOperatorMessage {
    #[prost(message, optional, tag = "1")]
    pub snapshot: Option<RawSnapshot>,
}

/// `signpost.v1.Snapshot` with its config left encoded. Also the last-known-good file's format.
#[derive(Clone, PartialEq, Message)]
pub struct RawSnapshot {
    /// A string on the wire; read as bytes so that bad UTF-8 is this module's error to report.
    #[prost(bytes = "vec", tag = "1")]
    pub version: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub config: Vec<u8>,
}

impl RawSnapshot {
    pub fn new(version: &str, config: Vec<u8>) -> Self {
        Self {
            version: version.as_bytes().to_vec(),
            config,
        }
    }
}

/// A snapshot that passed [`check`].
#[derive(Clone, Debug, PartialEq)]
pub struct Checked {
    pub version: String,
    pub config: RouterConfig,
    /// The config exactly as received: what the version hashes, and what is persisted.
    pub encoded: Vec<u8>,
}

/// Why a snapshot was not applied: the Nack's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub version: String,
    pub error: String,
}

/// Hex SHA-256: a config's version.
pub fn version_of(encoded: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, encoded);
    let mut out = String::with_capacity(64);
    for b in digest.as_ref() {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Checks a snapshot meant for router `router`: the config decodes, hashes to the version it
/// claims (a config cut at a field boundary still decodes; the hash catches it), and names this
/// router.
pub fn check(raw: RawSnapshot, router: &str) -> Result<Checked, Refused> {
    let version = match String::from_utf8(raw.version) {
        Ok(v) => v,
        Err(e) => {
            return Err(Refused {
                version: String::from_utf8_lossy(e.as_bytes()).into_owned(),
                error: "the snapshot's version is not UTF-8: the snapshot was damaged".into(),
            });
        }
    };
    let refuse = |error: String| Refused {
        version: version.clone(),
        error,
    };
    if version.is_empty() {
        return Err(refuse("the snapshot has no version".into()));
    }
    let config = RouterConfig::decode(raw.config.as_slice()).map_err(|e| {
        refuse(format!(
            "the snapshot's config cannot be decoded ({} bytes): {e}",
            raw.config.len()
        ))
    })?;
    let hashed = version_of(&raw.config);
    if hashed != version {
        return Err(refuse(format!(
            "the snapshot's config hashes to {hashed}, not to its version: the snapshot was \
             damaged or cut short"
        )));
    }
    if config.router != router {
        return Err(refuse(format!(
            "the snapshot is for router `{}`, this router is `{router}`",
            config.router
        )));
    }
    Ok(Checked {
        version,
        config,
        encoded: raw.config,
    })
}

/// Checks and applies a snapshot: `Ok` with what to persist, `Err` with what to Nack. Nothing
/// reaches the sink unless every check passed.
pub fn apply(raw: RawSnapshot, router: &str, sink: &dyn ConfigSink) -> Result<Checked, Refused> {
    let checked = check(raw, router)?;
    match sink.apply(checked.config.clone(), &checked.version) {
        Ok(()) => Ok(checked),
        Err(error) => Err(Refused {
            version: checked.version,
            error,
        }),
    }
}

/// The answer to send.
pub fn answer(result: &Result<Checked, Refused>) -> RouterMessage {
    let kind = match result {
        Ok(c) => router_message::Kind::Ack(Ack {
            version: c.version.clone(),
        }),
        Err(r) => router_message::Kind::Nack(Nack {
            version: r.version.clone(),
            error: r.error.clone(),
        }),
    };
    RouterMessage { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use proptest::prelude::*;
    use signpost_proto::v1::{OperatorMessage, Snapshot, operator_message};

    use super::*;

    /// Records what it was given; refuses configs with no WAN interface.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl ConfigSink for Recorder {
        fn apply(&self, config: RouterConfig, version: &str) -> Result<(), String> {
            if config.wan_interfaces.is_empty() {
                return Err("no WAN interface".into());
            }
            if let Ok(mut v) = self.0.lock() {
                v.push(version.to_string());
            }
            Ok(())
        }
    }

    impl Recorder {
        fn applied(&self) -> Vec<String> {
            self.0.lock().map(|v| v.clone()).unwrap_or_default()
        }
    }

    fn config(router: &str) -> RouterConfig {
        RouterConfig {
            router: router.into(),
            wan_interfaces: vec![signpost_proto::v1::WanInterface {
                name: "broadband".into(),
                addresses: vec!["192.0.2.11/24".into()],
                ..Default::default()
            }],
            tenants: vec![signpost_proto::v1::Tenant {
                name: "pos".into(),
                prefixes: vec!["10.1.10.0/24".into()],
                ..Default::default()
            }],
            key_epoch: 3,
            ..Default::default()
        }
    }

    fn raw(config: &RouterConfig) -> RawSnapshot {
        let encoded = config.encode_to_vec();
        RawSnapshot::new(&version_of(&encoded), encoded)
    }

    #[test]
    fn the_raw_view_reads_what_the_operator_sends() {
        let c = config("store-1");
        let version = version_of(&c.encode_to_vec());
        let sent = OperatorMessage {
            kind: Some(operator_message::Kind::Snapshot(Snapshot {
                version: version.clone(),
                config: Some(c.clone()),
            })),
        }
        .encode_to_vec();
        let got = RawOperatorMessage::decode(sent.as_slice()).expect("decodes");
        let checked = check(got.snapshot.expect("a snapshot"), "store-1").expect("checks");
        assert_eq!(checked.version, version);
        assert_eq!(checked.config, c);
        // And a snapshot read raw and written back is the same message.
        let back = Snapshot::decode(raw(&c).encode_to_vec().as_slice()).expect("decodes");
        assert_eq!(back.config, Some(c));
    }

    #[test]
    fn a_good_snapshot_is_applied_and_acked() {
        let sink = Recorder::default();
        let r = raw(&config("store-1"));
        let version = String::from_utf8(r.version.clone()).expect("utf8");
        let result = apply(r, "store-1", &sink);
        assert_eq!(sink.applied(), std::slice::from_ref(&version));
        assert_eq!(
            answer(&result).kind,
            Some(router_message::Kind::Ack(Ack { version }))
        );
    }

    #[test]
    fn the_sinks_refusal_is_nacked_with_its_text() {
        let sink = Recorder::default();
        let mut c = config("store-1");
        c.wan_interfaces.clear();
        let result = apply(raw(&c), "store-1", &sink);
        match answer(&result).kind {
            Some(router_message::Kind::Nack(n)) => assert_eq!(n.error, "no WAN interface"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn another_routers_snapshot_is_refused() {
        let sink = Recorder::default();
        let err = apply(raw(&config("store-2")), "store-1", &sink).err();
        assert_eq!(
            err.map(|e| e.error).as_deref(),
            Some("the snapshot is for router `store-2`, this router is `store-1`")
        );
        assert!(sink.applied().is_empty());
    }

    #[test]
    fn a_truncated_snapshot_is_nacked_with_the_decode_error_and_nothing_is_applied() {
        let sink = Recorder::default();
        let mut r = raw(&config("store-1"));
        let version = String::from_utf8(r.version.clone()).expect("utf8");
        // Cut inside the tenant's prefix string: a length that runs past the end.
        r.config.truncate(r.config.len() - 3);
        let err = apply(r, "store-1", &sink).expect_err("refused");
        assert_eq!(err.version, version);
        assert!(
            err.error
                .starts_with("the snapshot's config cannot be decoded"),
            "{}",
            err.error
        );
        assert!(sink.applied().is_empty());
    }

    #[test]
    fn a_snapshot_cut_at_a_field_boundary_still_decodes_but_is_caught_by_its_hash() {
        let sink = Recorder::default();
        let mut r = raw(&config("store-1"));
        // key_epoch (field 12, varint 3) is encoded last: two bytes.
        r.config.truncate(r.config.len() - 2);
        assert!(RouterConfig::decode(r.config.as_slice()).is_ok());
        let err = apply(r, "store-1", &sink).expect_err("refused");
        assert!(err.error.contains("damaged or cut short"), "{}", err.error);
        assert!(sink.applied().is_empty());
    }

    proptest! {
        #![proptest_config(crate::packet::proptest_config())]

        /// Any damage to a snapshot's config — a flipped byte, a cut — is refused, and the
        /// sink never sees it.
        #[test]
        fn damaged_snapshots_never_reach_the_sink(
            position in any::<prop::sample::Index>(),
            flip in 1u8..=255,
            cut in any::<bool>(),
        ) {
            let sink = Recorder::default();
            let mut r = raw(&config("store-1"));
            let i = position.index(r.config.len());
            if cut {
                r.config.truncate(i);
            } else if let Some(b) = r.config.get_mut(i) {
                *b ^= flip;
            }
            prop_assert!(apply(r, "store-1", &sink).is_err());
            prop_assert!(sink.applied().is_empty());
        }

        /// Arbitrary bytes as an operator message never panic the reader.
        #[test]
        fn arbitrary_messages_are_read_or_refused(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let sink = Recorder::default();
            if let Ok(RawOperatorMessage { snapshot: Some(s) }) =
                RawOperatorMessage::decode(bytes.as_slice())
            {
                let _ = apply(s, "store-1", &sink);
            }
        }
    }
}
