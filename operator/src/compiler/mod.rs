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
//! * **Known, not allowed.** A router also receives every service with an address inside a
//!   prefix of a service it routes (reaches or fronts) — name, prefixes and transports only, no
//!   locations, no access entries. Without them a broad service would swallow the narrower
//!   ones at the router's longest-prefix match: with `internet` (0.0.0.0/0) allowed to guests,
//!   a guest's flow to inventory's 10.255.3.10:443 would be classified as internet and let
//!   through; with inventory known it is inventory's flow, and denied (`no_policy`). Need to
//!   know still holds: a router learns only addresses nested in prefixes it already routes
//!   (a store whose tenants reach only 10.255.1.10/32 learns nothing new), and never where a
//!   service lives. A change to a nested service reaches the routers that route an enclosing
//!   one ([`dependents`]).
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
//!
//! A [`Compiler`] keeps its [`World`] between compiles. Each compile compares every object with
//! the one it replaces, updates the world for what changed, and reselects only the routers a
//! change can reach ([`dependents`]); the others keep their config and diagnostics. Configs are
//! written from pieces encoded once and shared ([`pieces`]), on all cores.

mod dependents;
mod diagnostics;
mod pieces;
mod select;
mod units;
mod world;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use prost::Message;
use sha2::{Digest, Sha256};
use signpost_proto::v1::RouterConfig;

pub use diagnostics::{Diagnostic, Severity};
pub use select::{Selection, select};
pub use units::{parse_bits_per_second, parse_loss_ppm};
pub use world::World;

use crate::manifests::Intent;
use pieces::{Pieces, RouterPieces};
use select::{Contents, PeerKeys, Shape};
use world::Name;

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
    fn new(encoded: Vec<u8>) -> Self {
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
    /// Routers whose selection was computed again (all of them on a first compile), sorted: the
    /// routers the changes could reach.
    pub reselected: Vec<String>,
    /// Routers rebuilt by this compilation (all of them on a first compile), sorted: those of
    /// `reselected` whose fingerprint changed.
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
    world: World,
    pieces: Pieces,
    routers: BTreeMap<Name, RouterState>,
    /// The next compile reselects every router: nothing compiled yet, or new options.
    reselect_all: bool,
}

/// What the compiler remembers of one router.
#[derive(Debug)]
struct RouterState {
    fingerprint: [u8; 32],
    output: Arc<RouterOutput>,
    /// From its selection (the world reports the rest).
    diagnostics: Vec<Diagnostic>,
    own_pieces: RouterPieces,
}

/// One router to reselect.
struct Job {
    name: Name,
    state: Option<RouterState>,
    rebuilt: bool,
}

impl Compiler {
    pub fn new(options: Options) -> Self {
        Self {
            options,
            world: World::default(),
            pieces: Pieces::default(),
            routers: BTreeMap::new(),
            reselect_all: true,
        }
    }

    /// New options (a key rotation); the next compile rebuilds the routers they change.
    pub fn set_options(&mut self, options: Options) {
        if options != self.options {
            self.options = options;
            self.reselect_all = true;
            for state in self.routers.values_mut() {
                state.own_pieces.forget_keys();
            }
        }
    }

    pub fn compile(&mut self, intent: &Intent) -> Compiled {
        let (changes, mut diagnostics) = self.world.update(intent);
        let world = &self.world;
        let reselect: Vec<Name> = if self.reselect_all {
            world.router_names().cloned().collect()
        } else {
            dependents::dependents(world, &changes)
                .into_iter()
                .collect()
        };
        self.reselect_all = false;
        for name in &changes.routers {
            if world.router(name).is_none() {
                self.routers.remove(name);
            }
        }
        self.pieces.refresh(world, &self.options);

        let mut jobs: Vec<Job> = reselect
            .into_iter()
            .map(|name| Job {
                state: self.routers.remove(&name),
                name,
                rebuilt: false,
            })
            .collect();
        let keys = PeerKeys::new(&self.options.key_master);
        let (pieces, options) = (&self.pieces, &self.options);
        let shared = SharedContents::default();
        on_all_cores(&mut jobs, |job| {
            reselect_router(world, pieces, &keys, options, &shared, job)
        });

        let mut out = Compiled::default();
        for job in jobs {
            out.reselected.push(job.name.to_string());
            if job.rebuilt {
                out.rebuilt.push(job.name.to_string());
            }
            if let Some(state) = job.state {
                self.routers.insert(job.name, state);
            }
        }
        out.routers = self
            .routers
            .iter()
            .map(|(name, state)| (name.to_string(), Arc::clone(&state.output)))
            .collect();
        for state in self.routers.values() {
            diagnostics.extend_from_slice(&state.diagnostics);
        }
        diagnostics.sort();
        diagnostics.dedup();
        out.diagnostics = diagnostics;
        out
    }
}

/// Contents by shape, made once by the first router of each shape that needs them.
type SharedContents<'w> = Mutex<HashMap<Shape<'w>, Arc<OnceLock<Arc<Contents<'w>>>>>>;

/// Selects one router again; rebuilds its config when the fingerprint changed.
fn reselect_router<'w>(
    world: &'w World,
    pieces: &Pieces,
    keys: &PeerKeys,
    options: &Options,
    shared: &SharedContents<'w>,
    job: &mut Job,
) {
    let contents = match select::shape(world, &job.name) {
        Some(shape) => {
            let cell = {
                // A poisoned lock means another worker panicked; the scope re-raises that panic.
                let mut map = shared.lock().unwrap_or_else(|e| e.into_inner());
                match map.get(&shape) {
                    Some(cell) => Arc::clone(cell),
                    None => Arc::clone(map.entry(shape.clone()).or_default()),
                }
            };
            Arc::clone(cell.get_or_init(|| Arc::new(select::shaped_contents(world, &shape))))
        }
        None => match select::contents_of(world, &job.name) {
            Some(contents) => Arc::new(contents),
            None => {
                job.state = None;
                return;
            }
        },
    };
    let Some(selection) = Selection::new(world, &job.name, contents) else {
        job.state = None;
        return;
    };
    let mut diagnostics = Vec::new();
    selection.diagnose(&mut diagnostics);
    let fingerprint = selection.fingerprint(options);
    if let Some(state) = job.state.as_mut().filter(|s| s.fingerprint == fingerprint) {
        state.diagnostics = diagnostics;
        return;
    }
    let mut own_pieces = job.state.take().map(|s| s.own_pieces).unwrap_or_default();
    let encoded = pieces::encode(&selection, world, pieces, &mut own_pieces, keys, options);
    job.state = Some(RouterState {
        fingerprint,
        output: Arc::new(RouterOutput::new(encoded)),
        diagnostics,
        own_pieces,
    });
    job.rebuilt = true;
}

/// Runs `work` on every item, spread over the available cores (at most 8). Items are handed out
/// in small batches, so that a few heavy ones (hubs) do not leave a core idle.
fn on_all_cores<T: Send>(items: &mut [T], work: impl Fn(&mut T) + Sync) {
    const BATCH: usize = 16;
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8)
        .min(items.len().div_ceil(BATCH));
    if workers <= 1 {
        items.iter_mut().for_each(work);
        return;
    }
    let batches: Vec<Mutex<&mut [T]>> = items.chunks_mut(BATCH).map(Mutex::new).collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                while let Some(batch) = batches.get(next.fetch_add(1, Ordering::Relaxed)) {
                    // Each batch is taken by exactly one worker; a poisoned lock means another
                    // worker panicked, and the scope propagates that panic.
                    if let Ok(mut batch) = batch.lock() {
                        batch.iter_mut().for_each(&work);
                    }
                }
            });
        }
    });
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;
