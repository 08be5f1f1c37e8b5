//! The cluster as the compiler sees it: reflectors of the four kinds, a snapshot of them, one
//! incremental [`Compiler`] per namespace, and the [`Report`] that status is written from.
//!
//! References between objects are by name within a namespace, so each namespace is compiled on
//! its own (its own [`Compiler`], which keeps its world between compiles). Router names,
//! though, are global: a router's certificate and its config stream are named by its name
//! alone. When two namespaces have a Router of the same name, the older object keeps it and
//! the other is left out of its namespace's compile with a `RouterNameTaken` error.
//!
//! A router whose own objects have errors keeps its last good config
//! ([`crate::distribution::next_served`]), as in local mode.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use kube::ResourceExt;
use kube::runtime::reflector::Store;

use crate::compiler::{Compiler, Diagnostic, Options};
use crate::crd::{Policy, Router, Service, Tenant};
use crate::distribution::{self, Configs};
use crate::manifests::Intent;

/// The four kinds, as diagnostics name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Tenant,
    Service,
    Policy,
    Router,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Tenant, Kind::Service, Kind::Policy, Kind::Router];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Tenant => "Tenant",
            Kind::Service => "Service",
            Kind::Policy => "Policy",
            Kind::Router => "Router",
        }
    }

    fn from_diagnostic(kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == kind)
    }
}

/// One object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(kind: Kind, namespace: &str, name: &str) -> Self {
        Self {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

/// What the last compile says about one object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObjectFacts {
    /// The `metadata.generation` that was compiled: status describes this generation only.
    pub generation: Option<i64>,
    pub uid: Option<String>,
    pub diagnostics: Vec<Diagnostic>,
    /// Routers only.
    pub router: Option<RouterFacts>,
}

/// A router's part of the report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouterFacts {
    /// The version being served to it (possibly its last good one).
    pub config_version: Option<String>,
    /// Peers in that config.
    pub peers: Option<u32>,
}

/// The last compile's findings, by object.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub objects: BTreeMap<ObjectKey, ObjectFacts>,
    /// Router name → namespace of the Router object that has the name.
    pub router_namespaces: BTreeMap<String, String>,
    /// Compiles so far: 0 until the caches are synced and the first compile ran.
    pub compiles: u64,
}

impl Report {
    pub fn get(&self, key: &ObjectKey) -> Option<&ObjectFacts> {
        self.objects.get(key)
    }

    pub fn router_namespace(&self, router: &str) -> Option<&str> {
        self.router_namespaces.get(router).map(String::as_str)
    }
}

/// Every object of the four kinds, as the reflectors hold them.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub tenants: Vec<Arc<Tenant>>,
    pub services: Vec<Arc<Service>>,
    pub policies: Vec<Arc<Policy>>,
    pub routers: Vec<Arc<Router>>,
}

/// What a compile depends on of one object besides its spec: the compiler reads names and
/// specs, the report uids and generations. The spec is covered by the generation, which the
/// API server bumps on every spec change (and when deletion starts).
pub type Identity = (Kind, String, String, Option<String>, Option<i64>);

impl Snapshot {
    /// Every object's [`Identity`], sorted: equal fingerprints compile to the same outcome, so
    /// a watch event that changed only status or metadata (the operator's own status writes,
    /// most often) need not cost a compile.
    pub fn fingerprint(&self) -> Vec<Identity> {
        fn of(kind: Kind, m: &kube::core::ObjectMeta) -> Identity {
            (
                kind,
                m.namespace.clone().unwrap_or_default(),
                m.name.clone().unwrap_or_default(),
                m.uid.clone(),
                m.generation,
            )
        }
        let mut out: Vec<Identity> = self
            .tenants
            .iter()
            .map(|o| of(Kind::Tenant, &o.metadata))
            .chain(self.services.iter().map(|o| of(Kind::Service, &o.metadata)))
            .chain(self.policies.iter().map(|o| of(Kind::Policy, &o.metadata)))
            .chain(self.routers.iter().map(|o| of(Kind::Router, &o.metadata)))
            .collect();
        out.sort();
        out
    }
}

/// The reflectors' stores.
#[derive(Clone)]
pub struct Stores {
    pub tenants: Store<Tenant>,
    pub services: Store<Service>,
    pub policies: Store<Policy>,
    pub routers: Store<Router>,
}

impl Stores {
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            tenants: self.tenants.state(),
            services: self.services.state(),
            policies: self.policies.state(),
            routers: self.routers.state(),
        }
    }

    /// Waits until every store has its initial list: compiling before that would serve
    /// configs built from part of the intent (a missing Policy denies what it allows).
    pub async fn ready(&self) -> Result<(), String> {
        let e = |kind: &'static str| move |e| format!("the {kind} cache never synced: {e}");
        self.tenants.wait_until_ready().await.map_err(e("Tenant"))?;
        self.services
            .wait_until_ready()
            .await
            .map_err(e("Service"))?;
        self.policies
            .wait_until_ready()
            .await
            .map_err(e("Policy"))?;
        self.routers.wait_until_ready().await.map_err(e("Router"))?;
        Ok(())
    }
}

/// What one compile of the whole cluster produced.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub served: distribution::NextServed,
    /// Router name → uid of its Router object.
    pub bindings: BTreeMap<String, String>,
    pub report: Arc<Report>,
    /// Objects whose facts changed since the previous compile (removed ones included).
    pub changed: Vec<ObjectKey>,
    pub diagnostics: Vec<Diagnostic>,
}

/// The compilers of every namespace and what they last produced.
pub struct ClusterCompiler {
    options: Options,
    compilers: BTreeMap<String, Compiler>,
    served: Configs,
    /// Peers per config version, counted once per version.
    peers: HashMap<String, u32>,
    report: Arc<Report>,
}

impl ClusterCompiler {
    pub fn new(options: Options) -> Self {
        Self {
            options,
            compilers: BTreeMap::new(),
            served: Configs::new(),
            peers: HashMap::new(),
            report: Arc::new(Report::default()),
        }
    }

    pub fn served(&self) -> &Configs {
        &self.served
    }

    pub fn compile(&mut self, snapshot: &Snapshot) -> Outcome {
        let mut intents: BTreeMap<String, Intent> = BTreeMap::new();
        let mut facts: BTreeMap<ObjectKey, ObjectFacts> = BTreeMap::new();
        let note = note_object;
        for t in &snapshot.tenants {
            if let Some(ns) = note(&mut facts, Kind::Tenant, &t.metadata) {
                intents.entry(ns).or_default().tenants.push((**t).clone());
            }
        }
        for s in &snapshot.services {
            if let Some(ns) = note(&mut facts, Kind::Service, &s.metadata) {
                intents.entry(ns).or_default().services.push((**s).clone());
            }
        }
        for p in &snapshot.policies {
            if let Some(ns) = note(&mut facts, Kind::Policy, &p.metadata) {
                intents.entry(ns).or_default().policies.push((**p).clone());
            }
        }
        // Router names are global: the oldest object of a name keeps it.
        let mut routers: Vec<&Arc<Router>> = snapshot.routers.iter().collect();
        routers.sort_by(|a, b| {
            let key = |r: &Router| {
                (
                    r.metadata.creation_timestamp.as_ref().map(|t| t.0),
                    r.metadata.namespace.clone(),
                )
            };
            key(a).cmp(&key(b))
        });
        let mut owners: BTreeMap<String, String> = BTreeMap::new();
        let mut bindings = BTreeMap::new();
        let mut diagnostics = Vec::new();
        for r in routers {
            let Some(ns) = note(&mut facts, Kind::Router, &r.metadata) else {
                continue;
            };
            let name = r.name_any();
            if let Some(owner) = owners.get(&name) {
                let d = Diagnostic::error(
                    "Router",
                    &name,
                    "RouterNameTaken",
                    format!(
                        "router name `{name}` is already used by the Router in namespace \
                         `{owner}`; router names are unique across the namespaces this operator \
                         watches (they name certificates and config streams): rename one"
                    ),
                );
                if let Some(f) = facts.get_mut(&ObjectKey::new(Kind::Router, &ns, &name)) {
                    f.diagnostics.push(d.clone());
                }
                diagnostics.push(d);
                continue;
            }
            owners.insert(name.clone(), ns.clone());
            if let Some(uid) = &r.metadata.uid {
                bindings.insert(name, uid.clone());
            }
            intents.entry(ns).or_default().routers.push((**r).clone());
        }

        // Namespaces gone from the snapshot lose their compiler; the others compile.
        self.compilers.retain(|ns, _| intents.contains_key(ns));
        let mut compiled = Configs::new();
        for (ns, intent) in &intents {
            let compiler = self
                .compilers
                .entry(ns.clone())
                .or_insert_with(|| Compiler::new(self.options.clone()));
            let out = compiler.compile(intent);
            for d in out.diagnostics {
                if let Some(kind) = Kind::from_diagnostic(d.kind)
                    && let Some(f) = facts.get_mut(&ObjectKey::new(kind, ns, &d.name))
                {
                    f.diagnostics.push(d.clone());
                }
                diagnostics.push(d);
            }
            compiled.extend(out.routers);
        }
        let served =
            distribution::next_served(&self.served, compiled, |name| owners.contains_key(name));
        self.served = served.configs.clone();

        // Router facts: the version served and its peers.
        self.peers
            .retain(|version, _| served.configs.values().any(|o| &o.version == version));
        for (name, ns) in &owners {
            let output = served.configs.get(name);
            let peers = output.map(|o| {
                *self
                    .peers
                    .entry(o.version.clone())
                    .or_insert_with(|| count_peers(&o.encoded))
            });
            if let Some(f) = facts.get_mut(&ObjectKey::new(Kind::Router, ns, name)) {
                f.router = Some(RouterFacts {
                    config_version: output.map(|o| o.version.clone()),
                    peers,
                });
            }
        }
        for (key, f) in facts.iter_mut() {
            if key.kind == Kind::Router && f.router.is_none() {
                f.router = Some(RouterFacts::default());
            }
        }

        let previous = &self.report.objects;
        let mut changed: BTreeSet<ObjectKey> = facts
            .iter()
            .filter(|(k, f)| previous.get(*k) != Some(*f))
            .map(|(k, _)| k.clone())
            .collect();
        changed.extend(previous.keys().filter(|k| !facts.contains_key(*k)).cloned());
        diagnostics.sort();
        diagnostics.dedup();
        let report = Arc::new(Report {
            objects: facts,
            router_namespaces: owners,
            compiles: self.report.compiles + 1,
        });
        self.report = Arc::clone(&report);
        Outcome {
            served,
            bindings,
            report,
            changed: changed.into_iter().collect(),
            diagnostics,
        }
    }
}

/// Records an object's generation and uid; returns its namespace (None for a nameless object,
/// which the API server never returns).
fn note_object(
    facts: &mut BTreeMap<ObjectKey, ObjectFacts>,
    kind: Kind,
    meta: &kube::core::ObjectMeta,
) -> Option<String> {
    let ns = meta.namespace.clone().unwrap_or_default();
    let name = meta.name.clone()?;
    facts.insert(
        ObjectKey::new(kind, &ns, &name),
        ObjectFacts {
            generation: meta.generation,
            uid: meta.uid.clone(),
            ..ObjectFacts::default()
        },
    );
    Some(ns)
}

/// The number of `peers` (field 9) in an encoded `RouterConfig`, read without decoding the
/// rest: a hub's config holds thousands of peers and this runs for every new version.
pub fn count_peers(encoded: &[u8]) -> u32 {
    use prost::encoding::{DecodeContext, decode_key, skip_field};
    const PEERS: u32 = 9;
    let mut buf = encoded;
    let mut n = 0u32;
    while !buf.is_empty() {
        let Ok((tag, wire_type)) = decode_key(&mut buf) else {
            break;
        };
        if tag == PEERS {
            n = n.saturating_add(1);
        }
        if skip_field(wire_type, tag, &mut buf, DecodeContext::default()).is_err() {
            break;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    use prost::Message;
    use signpost_proto::v1::{Peer, RouterConfig};

    use super::*;
    use crate::admission::Admission;
    use crate::manifests;

    fn options() -> Options {
        Options {
            key_master: [3; 32],
            key_epoch: 0,
        }
    }

    /// The retail example, in namespace `ns`, with uids and generations as the API server sets.
    fn retail(ns: &str, created: i64) -> Snapshot {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/retail");
        let docs = manifests::read_documents(&dir).expect("read");
        let intent = manifests::decode(&docs, &Admission::new()).expect("decode");
        fn meta(m: &mut kube::core::ObjectMeta, ns: &str, created: i64) {
            m.namespace = Some(ns.into());
            m.uid = Some(format!("{ns}-{}", m.name.as_deref().unwrap_or("")));
            m.generation = Some(1);
            m.creation_timestamp = Some(Time(Timestamp::from_second(created).expect("a time")));
        }
        let mut s = Snapshot::default();
        for mut t in intent.tenants {
            meta(&mut t.metadata, ns, created);
            s.tenants.push(Arc::new(t));
        }
        for mut x in intent.services {
            meta(&mut x.metadata, ns, created);
            s.services.push(Arc::new(x));
        }
        for mut p in intent.policies {
            meta(&mut p.metadata, ns, created);
            s.policies.push(Arc::new(p));
        }
        for mut r in intent.routers {
            meta(&mut r.metadata, ns, created);
            s.routers.push(Arc::new(r));
        }
        s
    }

    #[test]
    fn a_status_write_leaves_the_fingerprint_and_a_spec_change_or_a_new_object_moves_it() {
        let before = retail("chain", 1_700_000_000);
        let mut after = before.clone();
        let router = Arc::make_mut(&mut after.routers[0]);
        router.status = Some(crate::crd::RouterStatus {
            observed_generation: Some(1),
            config_version: Some("abc".into()),
            ..Default::default()
        });
        router.metadata.resource_version = Some("42".into());
        router.metadata.finalizers = Some(vec!["signpost.dev/cleanup".into()]);
        assert_eq!(before.fingerprint(), after.fingerprint(), "status only");
        Arc::make_mut(&mut after.routers[0]).metadata.generation = Some(2);
        assert_ne!(before.fingerprint(), after.fingerprint(), "spec changed");
        let mut recreated = before.clone();
        Arc::make_mut(&mut recreated.tenants[0]).metadata.uid = Some("new".into());
        assert_ne!(
            before.fingerprint(),
            recreated.fingerprint(),
            "same name, new object"
        );
        let mut fewer = before.clone();
        fewer.policies.pop();
        assert_ne!(before.fingerprint(), fewer.fingerprint(), "deleted");
    }

    #[test]
    fn peers_are_counted_without_decoding() {
        let config = RouterConfig {
            router: "hub".into(),
            peers: vec![Peer::default(), Peer::default(), Peer::default()],
            key_epoch: 4,
            ..Default::default()
        };
        assert_eq!(count_peers(&config.encode_to_vec()), 3);
        assert_eq!(count_peers(&[0xff, 0xff]), 0, "garbage counts nothing");
    }

    #[test]
    fn a_dangling_reference_lands_on_its_object_and_only_changes_are_reported() {
        let mut compiler = ClusterCompiler::new(options());
        let mut snapshot = retail("chain", 1_700_000_000);
        let first = compiler.compile(&snapshot);
        assert!(first.served.configs.contains_key("store-0142"));
        assert_eq!(
            first.bindings.get("store-0142").map(String::as_str),
            Some("chain-store-0142")
        );
        let key = ObjectKey::new(Kind::Router, "chain", "store-0142");
        let facts = first.report.get(&key).expect("facts");
        assert_eq!(facts.generation, Some(1));
        let router = facts.router.clone().unwrap_or_default();
        assert!(router.config_version.is_some() && router.peers.unwrap_or(0) > 0);
        assert!(
            first.changed.contains(&key),
            "everything is new on the first compile"
        );

        // A policy now names a tenant that does not exist.
        let policy = Arc::make_mut(&mut snapshot.policies[0]);
        let policy_name = policy.metadata.name.clone().unwrap_or_default();
        policy.spec.tenants.push("pso".into());
        policy.metadata.generation = Some(2);
        let second = compiler.compile(&snapshot);
        let pkey = ObjectKey::new(Kind::Policy, "chain", &policy_name);
        let facts = second.report.get(&pkey).expect("facts");
        assert_eq!(facts.generation, Some(2));
        assert!(
            facts
                .diagnostics
                .iter()
                .any(|d| d.reason == "UnknownTenant" && d.message.contains("`pso`")),
            "{:?}",
            facts.diagnostics
        );
        assert!(second.changed.contains(&pkey));
        assert!(
            !second
                .changed
                .contains(&ObjectKey::new(Kind::Tenant, "chain", "pos")),
            "unchanged objects are not reported again: {:?}",
            second.changed
        );
    }

    #[test]
    fn a_router_name_taken_in_another_namespace_is_an_error_on_the_younger_one() {
        let mut compiler = ClusterCompiler::new(options());
        let mut snapshot = retail("old", 1_700_000_000);
        let young = retail("young", 1_800_000_000);
        snapshot.routers.extend(young.routers);
        let out = compiler.compile(&snapshot);
        assert_eq!(out.report.router_namespace("store-0142"), Some("old"));
        let facts = out
            .report
            .get(&ObjectKey::new(Kind::Router, "young", "store-0142"))
            .expect("facts");
        assert!(
            facts
                .diagnostics
                .iter()
                .any(|d| d.reason == "RouterNameTaken"
                    && d.message
                        .contains("already used by the Router in namespace `old`")),
            "{:?}",
            facts.diagnostics
        );
        assert_eq!(
            out.bindings.get("store-0142").map(String::as_str),
            Some("old-store-0142")
        );
    }
}
