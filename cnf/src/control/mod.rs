//! The router's control plane client: the config stream from the operator, last-known-good on
//! disk, and the hand-over of each config to the data plane through a [`ConfigSink`].
//!
//! This is the one part of the crate with I/O (tokio, tonic, rustls); the sans-IO modules
//! (`packet`, `classify`, `session`, `svr`, `pipeline`, ...) use none of it.
//!
//! # Trust model
//!
//! The operator runs a certificate authority (or uses cert-manager with one). The router trusts
//! only that CA, and the operator trusts only that CA for clients. The router dials the
//! operator (this works from behind store NAT) and both sides authenticate in the TLS
//! handshake:
//!
//! * **The router checks** that the operator's certificate chains to `ca.pem`, is valid now,
//!   and is valid for the server name it was told to expect. It trusts no public roots.
//! * **The operator checks** that the router's certificate chains to its CA, is valid now and
//!   is for client authentication; that its URI SAN `spiffe://signpost/router/<name>` names
//!   the same router as the stream's Hello; and that it has a config for that router. A router
//!   can therefore read only its own config.
//! * **The router checks each snapshot** ([`snapshot::check`]): the config decodes, hashes
//!   (SHA-256) to the version it claims, and names this router; then the [`ConfigSink`]
//!   validates it for the data plane. Any failure is a Nack with the reason, and the previous
//!   config stays in force.
//!
//! # Files
//!
//! * TLS directory ([`tls`]): `ca.pem`, `tls.crt`, `tls.key` — a cert-manager Secret's layout,
//!   or what `signpostctl certs issue` writes. Re-read at every connection attempt.
//! * State directory ([`lkg`]): `last-known-good.pb`, the last applied snapshot, replaced
//!   atomically after each Ack and applied at start, before the operator is reached; and, for a
//!   router enrolled with a bootstrap token ([`bootstrap`]), `identity/` with the `ca.pem`,
//!   `tls.crt` and `tls.key` it obtained.
//!
//! # Reconnection
//!
//! Any failure — refused handshake, refused Hello, a broken or ended stream — is logged with
//! its cause and retried after an exponential backoff with jitter ([`Backoff`]: 250 ms doubling
//! to 30 s by default, each delay drawn from the upper half of its range). The data plane keeps
//! its config throughout.

pub mod bootstrap;
pub mod client;
pub mod lkg;
pub mod snapshot;
pub mod tls;

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use signpost_proto::v1::RouterConfig;

pub use client::{Backoff, ControlClient, ControlSettings, ControlStatus};
pub use lkg::LastKnownGood;

use crate::pipeline::Tables;

/// Where configs go once the stream has checked them: the runtime validates the config for its
/// data plane and swaps it in. An `Err` is sent back to the operator as the Nack's text, so it
/// should name the object and the field; the previous config must stay in force.
pub trait ConfigSink: Send + Sync {
    fn apply(&self, config: RouterConfig, version: &str) -> Result<(), String>;
}

/// The data plane's sink: builds [`Tables`] from the config (which validates it) and swaps them
/// in atomically; packet workers load [`PipelineTables::current`] per batch.
#[derive(Default)]
pub struct PipelineTables {
    current: ArcSwapOption<Tables>,
}

impl PipelineTables {
    pub fn new() -> Self {
        Self::default()
    }

    /// The tables in force, if a config was ever applied.
    pub fn current(&self) -> Option<Arc<Tables>> {
        self.current.load_full()
    }
}

impl ConfigSink for PipelineTables {
    fn apply(&self, config: RouterConfig, version: &str) -> Result<(), String> {
        let tables = Tables::new(&config, version).map_err(|e| e.to_string())?;
        self.current.store(Some(Arc::new(tables)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use signpost_proto::v1::WanInterface;

    use super::*;

    #[test]
    fn the_pipeline_sink_swaps_valid_tables_in_and_keeps_them_on_a_bad_config() {
        let sink = PipelineTables::new();
        assert!(sink.current().is_none());
        let good = RouterConfig {
            router: "store-1".into(),
            wan_interfaces: vec![WanInterface {
                name: "broadband".into(),
                addresses: vec!["192.0.2.11/24".into()],
                ..Default::default()
            }],
            ..Default::default()
        };
        sink.apply(good.clone(), "v1").expect("a valid config");
        let mut bad = good;
        bad.wan_interfaces[0].addresses = vec!["not-an-address".into()];
        let err = sink.apply(bad, "v2").err().unwrap_or_default();
        assert!(
            err.contains("`not-an-address` is not an IP address"),
            "{err}"
        );
        assert_eq!(
            sink.current().map(|t| t.version.clone()).as_deref(),
            Some("v1")
        );
    }
}
