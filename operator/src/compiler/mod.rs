//! The compiler: Tenants, Services, Policies and Routers in, one `RouterConfig` per router and a
//! list of diagnostics out. Pure — no Kubernetes client, no clock, no I/O — and total: whatever
//! the input, it returns (bad references become diagnostics, never panics).
//!
//! # Resolution rules
//!
//! * **Tenants.** A host belongs to a tenant when it is on one of the tenant's named LAN
//!   networks, or when its address is in one of the tenant's prefixes; the router picks the
//!   longest matching prefix. Tenants nest by name, child first: `pos.corp` is inside `corp`, and
//!   a Policy that allows `corp` allows `pos.corp` (the compiler expands it into an entry per
//!   tenant). Two tenants claiming the very same prefix is an error: no rule could choose.
//! * **Services.** Addresses/prefixes, transports and locations. A location on a Router that does
//!   not exist is dropped with an error; the service stays usable through its other locations.
//! * **Peering.** Routers whose WAN interfaces share a neighborhood can peer. Edges peer with the
//!   hubs they share a neighborhood with (only those in `peering.hubs` when it is set); hubs peer
//!   with each other (mesh); two edges peer only when both set `peering.edges`. Each pair of WAN
//!   interfaces in a shared neighborhood is a path, named by the local interface's vector.
//! * **Deny by default.** An access entry exists only where a Policy grants it; `direction` is
//!   carried to the router, which enforces who may open sessions.
//! * **Need to know.** A router receives the tenants present on its LAN networks (and their
//!   enclosing tenants), the services those tenants may reach through a location on itself or a
//!   peer, the services it fronts with every tenant allowed to reach them, and its own peers. A
//!   store does not receive other stores' tenants or peers.
//! * **Waypoints and keys.** Each WAN interface has a waypoint port range (default
//!   16384-65535). Each pair of peers shares a key derived with HKDF-SHA256 from the operator's
//!   master secret, the two router names and the rotation epoch; a router holds the keys of the
//!   current and the previous epoch so that rotation never breaks live sessions.
//!
//! # Determinism and incrementality
//!
//! Everything is keyed and sorted by name, so the same objects in any order give byte-identical
//! configs; a config's version is the SHA-256 of its encoding. Each router's config is built only
//! from a [`selection`](select) of the objects it depends on; the selection's fingerprint decides
//! whether [`Compiler::compile`] rebuilds it or reuses the previous result.

mod diagnostics;
mod select;
mod units;
mod world;

use std::collections::BTreeMap;
use std::sync::Arc;

use prost::Message;
use sha2::{Digest, Sha256};
use signpost_proto::v1::RouterConfig;

pub use diagnostics::{Diagnostic, Severity};
pub use select::select;
pub use units::{parse_bits_per_second, parse_loss_ppm};
pub use world::World;

use crate::manifests::Intent;

/// Inputs that are not objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// The operator's master secret for peer keys (a Kubernetes Secret, or a file in local mode).
    pub key_master: [u8; 32],
    /// The key rotation epoch; raising it rotates every peer key.
    pub key_epoch: u64,
}

/// One router's compiled configuration. Only the encoding is kept — it is what is sent and
/// persisted, and a decoded `RouterConfig` takes several times its size in memory (a hub of a
/// 10,000-store chain holds 10,000 peers).
#[derive(Clone, Debug, PartialEq)]
pub struct RouterOutput {
    /// The config's protobuf encoding.
    pub encoded: Vec<u8>,
    /// Hex SHA-256 of `encoded`.
    pub version: String,
}

impl RouterOutput {
    fn new(config: &RouterConfig) -> Self {
        let encoded = config.encode_to_vec();
        let version = hex::encode(Sha256::digest(&encoded));
        Self { encoded, version }
    }

    /// The config, decoded from `encoded` (which this module wrote, so decoding cannot fail
    /// short of memory corruption; an error is still an error, not a panic).
    pub fn config(&self) -> Result<RouterConfig, prost::DecodeError> {
        RouterConfig::decode(self.encoded.as_slice())
    }
}

/// The result of a compilation.
#[derive(Clone, Debug, Default)]
pub struct Compiled {
    /// By router name. Routers with errors of their own are absent (they keep their last config).
    /// Shared with the compiler's memory of its last results, never copied.
    pub routers: BTreeMap<String, Arc<RouterOutput>>,
    /// Sorted, de-duplicated.
    pub diagnostics: Vec<Diagnostic>,
    /// Routers rebuilt by this compilation (all of them on a first compile).
    pub rebuilt: Vec<String>,
}

impl Compiled {
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }
}

/// Compiles once, with no memory of earlier results.
pub fn compile(intent: &Intent, options: &Options) -> Compiled {
    Compiler::new(options.clone()).compile(intent)
}

/// A compiler that remembers its last results and rebuilds only the routers whose inputs changed.
#[derive(Debug)]
pub struct Compiler {
    options: Options,
    /// Router name → (selection fingerprint, output).
    last: BTreeMap<String, ([u8; 32], Arc<RouterOutput>)>,
}

impl Compiler {
    pub fn new(options: Options) -> Self {
        Self {
            options,
            last: BTreeMap::new(),
        }
    }

    /// New options (a key rotation); the next compile rebuilds the routers they change.
    pub fn set_options(&mut self, options: Options) {
        self.options = options;
    }

    pub fn compile(&mut self, intent: &Intent) -> Compiled {
        let (world, mut diagnostics) = World::resolve(intent);
        let names: Vec<&str> = world.router_names().collect();
        // Routers are independent once the world is resolved: split them over the cores.
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(8);
        let chunk = names.len().div_ceil(workers).max(1);
        let (options, last) = (&self.options, &self.last);
        let world = &world;
        let results: Vec<RouterResults> = std::thread::scope(|scope| {
            let handles: Vec<_> = names
                .chunks(chunk)
                .map(|part| scope.spawn(move || compile_routers(world, part, options, last)))
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        let mut out = Compiled::default();
        let mut next = BTreeMap::new();
        for r in results {
            diagnostics.extend(r.diagnostics);
            out.rebuilt.extend(r.rebuilt);
            for (name, fingerprint, output) in r.outputs {
                out.routers.insert(name.clone(), Arc::clone(&output));
                next.insert(name, (fingerprint, output));
            }
        }
        out.rebuilt.sort();
        self.last = next;
        diagnostics.sort();
        diagnostics.dedup();
        out.diagnostics = diagnostics;
        out
    }
}

/// What one worker produced.
#[derive(Default)]
struct RouterResults {
    outputs: Vec<(String, [u8; 32], Arc<RouterOutput>)>,
    rebuilt: Vec<String>,
    diagnostics: Vec<Diagnostic>,
}

fn compile_routers(
    world: &World<'_>,
    names: &[&str],
    options: &Options,
    last: &BTreeMap<String, ([u8; 32], Arc<RouterOutput>)>,
) -> RouterResults {
    let mut r = RouterResults::default();
    for &name in names {
        let Some(selection) = select(world, name, &mut r.diagnostics) else {
            continue;
        };
        let fingerprint = selection.fingerprint(options);
        let output = match last.get(name) {
            Some((previous, output)) if *previous == fingerprint => Arc::clone(output),
            _ => {
                r.rebuilt.push(name.to_string());
                Arc::new(RouterOutput::new(&selection.build(options)))
            }
        };
        r.outputs.push((name.to_string(), fingerprint, output));
    }
    r
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;
