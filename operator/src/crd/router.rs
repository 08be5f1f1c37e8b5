//! `Router`: where. A router instance — a hub in a cloud cluster or an edge in a store — with its
//! interfaces, placement and HA.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{InterfaceAddress, IpAddress, ObjectName, Prefix, SymbolicName};
use super::service::PortRange;

/// A Signpost router. The operator compiles its configuration, runs its workload and reports
/// whether it has applied the configuration.
#[derive(CustomResource, KubeSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "signpost.dev",
    version = "v1alpha1",
    kind = "Router",
    doc = "A Signpost router instance: a hub in a cloud cluster or an edge in a store.",
    namespaced,
    status = "RouterStatus",
    shortname = "srt",
    category = "signpost",
    printcolumn = r#"{"name":"Role","type":"string","jsonPath":".spec.role"}"#,
    printcolumn = r#"{"name":"Applied","type":"string","jsonPath":".status.appliedVersion","priority":1}"#,
    printcolumn = r#"{"name":"Peers","type":"integer","jsonPath":".status.peers"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RouterSpec {
    /// `hub` (cloud) or `edge` (store).
    pub role: RouterRole,
    /// Labels describing the site (`region`, `provider`, `store`), copied into the config.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    pub site: BTreeMap<String, String>,
    /// WAN and LAN interfaces. Names are unique.
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(validation = kube::core::Rule::new("self.all(i, self.exists_one(j, j.name == i.name))").message("interface names must be unique"))]
    pub interfaces: Vec<Interface>,
    /// Which peers this router has besides the defaults (edges peer with hubs, hubs mesh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peering: Option<Peering>,
    /// Where and how the router's pods run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha: Option<HighAvailability>,
    /// How much state the router holds and how fast it lets tenants create it (the DoS guard).
    /// Unset fields take the router's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<RouterLimits>,
    /// How the router watches its peer paths (BFD). Absent: 50 ms × 3, authenticated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_monitoring: Option<PathMonitoring>,
}

/// Session limits of one router. Unset: the router's default.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RouterLimits {
    /// Sessions the router holds in total (default 1,048,576).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_sessions: Option<u32>,
    /// Sessions one tenant may hold (default: no per-tenant limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_sessions_per_tenant: Option<u32>,
    /// Half-open TCP sessions (SYN seen, handshake not complete) in total (default: an eighth
    /// of `maxSessions`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_half_open: Option<u32>,
    /// Half-open TCP sessions one tenant may hold (default: half of `maxHalfOpen`), so that a
    /// SYN flood from one tenant cannot use up the budget of the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_half_open_per_tenant: Option<u32>,
    /// New sessions per second one tenant may open on this router (default: unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000000))]
    pub new_sessions_per_second_per_tenant: Option<u32>,
    /// Seconds a half-open TCP session is kept without an answer (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub tcp_half_open_timeout_seconds: Option<u32>,
    /// Seconds an answered UDP session is kept without a packet (default 120). With the
    /// router's in-kernel fast path, keep it above a few seconds: a busy offloaded session's
    /// activity is read back from the kernel in rounds of up to 2.6 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub udp_idle_timeout_seconds: Option<u32>,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum RouterRole {
    Hub,
    Edge,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum InterfaceRole {
    /// Faces a transport network shared with peers.
    Wan,
    /// Faces the site's hosts.
    Lan,
}

/// One interface of the router.
#[derive(KubeSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[x_kube(
    validation = kube::core::Rule::new("self.role != 'wan' || (has(self.neighborhood) && has(self.vector))").message("a wan interface needs a neighborhood and a vector"),
    validation = kube::core::Rule::new("self.role != 'lan' || (has(self.networks) && size(self.networks) > 0)").message("a lan interface needs at least one network"),
    validation = kube::core::Rule::new("self.role != 'lan' || (!has(self.neighborhood) && !has(self.vector) && !has(self.capacity))").message("neighborhood, vector and capacity apply to wan interfaces only"),
    validation = kube::core::Rule::new("self.role != 'wan' || !has(self.networks)").message("networks apply to lan interfaces only"),
    validation = kube::core::Rule::new("!has(self.networks) || self.networks.all(n, self.networks.exists_one(m, m.name == n.name))").message("network names must be unique on an interface")
)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    /// The interface's name in Signpost (`broadband`, `lte`, `lan`).
    pub name: SymbolicName,
    pub role: InterfaceRole,
    /// The Linux device in the router's network namespace; defaults to `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 15), regex(pattern = r"^[A-Za-z0-9_.@-]+$"))]
    pub device: Option<String>,
    /// Addresses with prefix length. Empty on a WAN interface means "learned (DHCP)".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub addresses: Vec<InterfaceAddress>,
    /// WAN: next hop for the interface's neighborhood. LAN: next hop for destinations outside
    /// the interface's subnets and networks (a cloud's egress gateway, for internet breakout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddress>,
    /// WAN only: routers sharing a neighborhood reach each other over it (`internet`, `lte`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neighborhood: Option<SymbolicName>,
    /// WAN only: the name policies use in `pathPreference` (`broadband`, `lte`, `mpls`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<SymbolicName>,
    /// WAN only: link capacity, `"100Mbps"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), regex(pattern = r"^[1-9][0-9]{0,5}(k|M|G)?bps$"))]
    pub capacity: Option<String>,
    /// WAN only: relative cost; lower is preferred among paths of equal quality.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 1000))]
    pub cost: Option<u16>,
    /// WAN only: ports for this router's waypoints; default 16384-65535.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waypoint_ports: Option<PortRange>,
    /// LAN only: the named networks on this interface.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub networks: Vec<LanNetwork>,
    /// Attach the interface with Multus instead of host networking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multus: Option<Multus>,
}

/// A named network on a LAN interface; tenants refer to it by name.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LanNetwork {
    pub name: SymbolicName,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub prefixes: Vec<Prefix>,
    /// 802.1Q VLAN id; omitted when untagged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4094))]
    pub vlan: Option<u16>,
}

/// A Multus NetworkAttachmentDefinition to attach an interface with.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Multus {
    /// `name` or `namespace/name` of the NetworkAttachmentDefinition.
    #[schemars(length(min = 1, max = 253))]
    pub network_attachment: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Peering {
    /// Edge only: also peer with other edges sharing a neighborhood.
    #[serde(default)]
    pub edges: bool,
    /// Edge only: peer with these hubs only (default: every hub sharing a neighborhood).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub hubs: Vec<ObjectName>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    /// Nodes the router may run on (a store's k3s node, a cloud node pool).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 16))]
    pub node_selector: BTreeMap<String, String>,
    /// Run in the node's network namespace (the usual choice at stores).
    #[serde(default)]
    pub host_network: bool,
    /// Run one pod per selected node (DaemonSet) instead of a Deployment.
    #[serde(default)]
    pub per_node: bool,
}

#[derive(KubeSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[x_kube(validation = kube::core::Rule::new("self.replicas == 1 || self.stateSync").message("two replicas need stateSync so sessions survive a switchover"))]
#[serde(rename_all = "camelCase")]
pub struct HighAvailability {
    #[schemars(range(min = 1, max = 2))]
    pub replicas: u8,
    /// Replicate the session table to the standby.
    #[serde(default)]
    pub state_sync: bool,
}

/// BFD on the router's peer paths. Both routers of a pair must agree on `authentication`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PathMonitoring {
    /// BFD transmit and receive interval once a path is up, in milliseconds (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 60000))]
    pub interval_ms: Option<u32>,
    /// Packets missed before a path counts as down (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 255))]
    pub multiplier: Option<u8>,
    /// `peerKey` (default: Meticulous Keyed SHA1 with a key from the peer key) or `none`
    /// (for BFD peers without it; peers behind NAT then cannot be learned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<BfdAuthentication>,
    /// How long a recovered path must meet its SLAs before sessions move back (default 5000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 600000))]
    pub hold_down_ms: Option<u32>,
    /// No BFD: every path counts as up.
    #[serde(default)]
    pub disabled: bool,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum BfdAuthentication {
    PeerKey,
    None,
}

/// Router status: the common fields plus what the router has applied.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RouterStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The version of the config compiled for this router.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_version: Option<String>,
    /// The version the router last acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_version: Option<String>,
    /// Peers in the compiled config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers: Option<u32>,
}
