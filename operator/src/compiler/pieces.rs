//! A router's config encoding assembled from pieces encoded once. One service, tenant or access
//! rule appears in thousands of configs, and a hub's entries for its peers rarely change; each is
//! encoded once, framed as the repeated field it is, and a config is their concatenation. That
//! is byte-identical to encoding what [`Selection::build`] returns, because protobuf writes a
//! message field by field in field-number order (tested in `tests.rs`).
//!
//! Every piece carries a stamp of what it was made from and is reused only while the stamp
//! matches, so a stale piece cannot outlive a change however the change was found.

use std::collections::BTreeMap;

use prost::Message;
use signpost_proto::v1 as pb;

use super::Options;
use super::select::{self, Contents, PeerKeys, Selection};
use super::world::{Name, World};

/// `RouterConfig` field numbers of the repeated fields built from pieces.
const TENANTS: u32 = 6;
const SERVICES: u32 = 7;
const ACCESS: u32 = 8;
const PEERS: u32 = 9;

fn framed<M: Message>(tag: u32, message: &M) -> Vec<u8> {
    let mut buf = Vec::with_capacity(message.encoded_len() + 8);
    prost::encoding::message::encode(tag, message, &mut buf);
    buf
}

#[derive(Debug)]
struct Piece<S> {
    stamp: S,
    bytes: Vec<u8>,
}

/// The spec hash and the parent tenant.
type TenantStamp = ([u8; 32], Option<Name>);
/// The spec hash and the surviving locations.
type ServiceStamp = ([u8; 32], Vec<usize>);
/// The granting policy and its spec hash.
type AccessStamp = (Name, [u8; 32]);
/// The spec hashes of the router and of its peer.
type PeerStamp = ([u8; 32], [u8; 32]);

/// Pieces shared by all routers, refreshed from the world before each compile.
#[derive(Debug, Default)]
pub struct Pieces {
    tenants: BTreeMap<Name, Piece<TenantStamp>>,
    services: BTreeMap<Name, Piece<ServiceStamp>>,
    /// The same services as routers that only know them see them; stamped with the known hash.
    known: BTreeMap<Name, Piece<[u8; 32]>>,
    /// Tenant → service → the access rule.
    access: BTreeMap<Name, BTreeMap<Name, Piece<AccessStamp>>>,
    /// Fields 10 and 12, which depend on the options only (field 11, the limits, is the
    /// router's own and goes between them).
    qos: Vec<u8>,
    epoch: Vec<u8>,
}

impl Pieces {
    /// Brings every piece in line with `world`, re-encoding only those whose stamp changed.
    pub fn refresh(&mut self, world: &World, options: &Options) {
        let mut old = std::mem::take(&mut self.tenants);
        for (name, entry) in &world.tenants {
            let stamp = (entry.hash, select::parent(world, name).cloned());
            let piece = match old.remove(name) {
                Some(p) if p.stamp == stamp => p,
                _ => Piece {
                    bytes: select::tenant(world, name)
                        .map(|t| framed(TENANTS, &t))
                        .unwrap_or_default(),
                    stamp,
                },
            };
            self.tenants.insert(Name::clone(name), piece);
        }

        let mut old = std::mem::take(&mut self.services);
        for (name, resolved) in &world.services {
            let stamp = (resolved.hash, resolved.locations.clone());
            let piece = match old.remove(name) {
                Some(p) if p.stamp == stamp => p,
                _ => Piece {
                    bytes: select::service(world, name)
                        .map(|s| framed(SERVICES, &s))
                        .unwrap_or_default(),
                    stamp,
                },
            };
            self.services.insert(Name::clone(name), piece);
        }

        let mut old = std::mem::take(&mut self.known);
        for (name, resolved) in &world.services {
            let piece = match old.remove(name) {
                Some(p) if p.stamp == resolved.known_hash => p,
                _ => Piece {
                    bytes: select::known_service(world, name)
                        .map(|s| framed(SERVICES, &s))
                        .unwrap_or_default(),
                    stamp: resolved.known_hash,
                },
            };
            self.known.insert(Name::clone(name), piece);
        }

        let mut old = std::mem::take(&mut self.access);
        for (tenant, by_service) in &world.grants {
            let mut old = old.remove(tenant).unwrap_or_default();
            let mut pieces = BTreeMap::new();
            for (service, grant) in by_service {
                let stamp = (Name::clone(&grant.policy_name), grant.hash);
                let piece = match old.remove(service) {
                    Some(p) if p.stamp == stamp => p,
                    _ => Piece {
                        bytes: select::access_rule(world, tenant, service)
                            .map(|a| framed(ACCESS, &a))
                            .unwrap_or_default(),
                        stamp,
                    },
                };
                pieces.insert(Name::clone(service), piece);
            }
            self.access.insert(Name::clone(tenant), pieces);
        }

        let tail = select::tail(options);
        self.qos = pb::RouterConfig {
            qos_classes: tail.qos_classes,
            ..Default::default()
        }
        .encode_to_vec();
        self.epoch = pb::RouterConfig {
            key_epoch: tail.key_epoch,
            ..Default::default()
        }
        .encode_to_vec();
    }
}

/// Fields 6 to 8 of a config: its tenants, services and access entries.
fn encode_contents(contents: &Contents<'_>, pieces: &Pieces) -> Vec<u8> {
    let tenants = contents
        .tenants()
        .iter()
        .filter_map(|t| pieces.tenants.get(*t));
    let services = contents.listed().filter_map(|(s, known)| {
        if known {
            pieces.known.get(s).map(|p| &p.bytes)
        } else {
            pieces.services.get(s).map(|p| &p.bytes)
        }
    });
    let access = contents
        .access()
        .iter()
        .filter_map(|(t, s)| pieces.access.get(*t)?.get(*s));
    let mut out = Vec::new();
    for piece in tenants {
        out.extend_from_slice(&piece.bytes);
    }
    for bytes in services {
        out.extend_from_slice(bytes);
    }
    for piece in access {
        out.extend_from_slice(&piece.bytes);
    }
    out
}

/// A router's own pieces: its header, which depends on its spec, and its entries for its peers,
/// which depend on both routers' specs and the options. A router keeps them from one build to
/// the next.
#[derive(Debug, Default)]
pub struct RouterPieces {
    /// Fields 1 to 5; the stamp is the router's spec hash.
    header: Option<Piece<[u8; 32]>>,
    /// Sorted by peer name.
    peers: Vec<(Name, Piece<PeerStamp>)>,
}

impl RouterPieces {
    /// Drops the pieces that depend on the options (the keys changed).
    pub fn forget_keys(&mut self) {
        self.peers.clear();
    }
}

/// The encoding of `selection`'s config: `selection.build(options).encode_to_vec()`, from pieces.
/// `own` is updated to the selection's router and peers.
pub fn encode(
    selection: &Selection<'_>,
    world: &World,
    pieces: &Pieces,
    own: &mut RouterPieces,
    keys: &PeerKeys,
    options: &Options,
) -> Vec<u8> {
    let entry = selection.entry();
    let header = match own.header.take() {
        Some(p) if p.stamp == entry.hash => p,
        _ => Piece {
            bytes: selection.header().encode_to_vec(),
            stamp: entry.hash,
        },
    };
    let mut old = std::mem::take(&mut own.peers).into_iter().peekable();
    for &peer in selection.peers() {
        // Both lists are sorted by name: skip the old pieces of routers that are no longer peers.
        while old.next_if(|(n, _)| n < peer).is_some() {}
        let stamp = (
            entry.hash,
            world.router(peer).map(|(_, e)| e.hash).unwrap_or_default(),
        );
        let piece = match old.next_if(|(n, _)| n == peer) {
            Some((_, p)) if p.stamp == stamp => p,
            _ => Piece {
                bytes: select::peer(world, selection.name(), &entry.router, peer, keys, options)
                    .map(|p| framed(PEERS, &p))
                    .unwrap_or_default(),
                stamp,
            },
        };
        own.peers.push((Name::clone(peer), piece));
    }
    let contents = selection
        .contents()
        .encoded
        .get_or_init(|| encode_contents(selection.contents(), pieces));

    let limits = pb::RouterConfig {
        limits: Some(select::limits(entry.router.spec.limits.as_ref())),
        ..Default::default()
    }
    .encode_to_vec();
    // Fields 13 on, from the router's own spec: a few bytes, encoded each time.
    let trailer = selection.trailer().encode_to_vec();
    let len = header.bytes.len()
        + contents.len()
        + own.peers.iter().map(|(_, p)| p.bytes.len()).sum::<usize>()
        + pieces.qos.len()
        + limits.len()
        + pieces.epoch.len()
        + trailer.len();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&header.bytes);
    out.extend_from_slice(contents);
    for (_, piece) in &own.peers {
        out.extend_from_slice(&piece.bytes);
    }
    out.extend_from_slice(&pieces.qos);
    out.extend_from_slice(&limits);
    out.extend_from_slice(&pieces.epoch);
    out.extend_from_slice(&trailer);
    own.header = Some(header);
    out
}
