//! `Policy`: who may reach what, and how. Everything not allowed by a Policy is denied.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{ObjectName, Status, SymbolicName};

/// Allows the listed tenants to reach the listed services, with an SLA, a path preference, a
/// QoS priority, an optional rate limit and a transport security mode.
#[derive(CustomResource, KubeSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "signpost.dev",
    version = "v1alpha1",
    kind = "Policy",
    doc = "Allows tenants to reach services, with an SLA, path preference, priority and security.",
    namespaced,
    status = "Status",
    shortname = "spol",
    category = "signpost",
    printcolumn = r#"{"name":"Tenants","type":"string","jsonPath":".spec.tenants"}"#,
    printcolumn = r#"{"name":"Services","type":"string","jsonPath":".spec.services"}"#,
    printcolumn = r#"{"name":"Priority","type":"string","jsonPath":".spec.priority"}"#,
    printcolumn = r#"{"name":"Security","type":"string","jsonPath":".spec.security"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PolicySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub description: Option<String>,
    /// Tenants allowed (a parent tenant covers its nested tenants).
    #[schemars(length(min = 1, max = 64))]
    pub tenants: Vec<ObjectName>,
    /// Services they may reach.
    #[schemars(length(min = 1, max = 64))]
    pub services: Vec<ObjectName>,
    /// Who may open sessions.
    #[serde(default)]
    pub direction: Direction,
    /// The quality a path must offer; paths that break it are avoided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sla: Option<Sla>,
    /// WAN vectors in order of preference (`mpls`, `broadband`, `lte`). Empty: best path first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub path_preference: Vec<SymbolicName>,
    /// QoS priority on WAN links.
    #[serde(default)]
    pub priority: Priority,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// `encrypt` (default), `authenticate`, or `none` for applications that encrypt themselves.
    #[serde(default)]
    pub security: SecurityMode,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// Only the tenant's hosts open sessions.
    #[default]
    FromTenant,
    /// Only the service opens sessions towards the tenant's hosts.
    FromService,
    Both,
}

/// Path quality a session needs. Omitted fields impose nothing.
#[derive(KubeSchema, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[x_kube(validation = kube::core::Rule::new("has(self.maxLatencyMs) || has(self.maxLoss) || has(self.maxJitterMs)").message("an sla needs at least one of maxLatencyMs, maxLoss, maxJitterMs"))]
#[serde(rename_all = "camelCase")]
pub struct Sla {
    /// Round-trip latency, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 60000))]
    pub max_latency_ms: Option<u32>,
    /// Packet loss as a percentage with up to three decimals, `"1%"`, `"0.5%"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 8),
        regex(pattern = r"^(100|[0-9]{1,2}(\.[0-9]{1,3})?)%$")
    )]
    pub max_loss: Option<String>,
    /// Jitter, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 60000))]
    pub max_jitter_ms: Option<u32>,
}

#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    Deserialize,
    Serialize,
    JsonSchema,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Strict priority: served before everything else.
    Critical,
    High,
    #[default]
    Normal,
    Low,
}

/// Limits per tenant x service on each router.
#[derive(KubeSchema, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[x_kube(validation = kube::core::Rule::new("has(self.bandwidth) || has(self.newSessionsPerSecond)").message("a rateLimit needs bandwidth or newSessionsPerSecond"))]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// Sustained bandwidth, `"20Mbps"`, `"500kbps"`, `"1Gbps"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), regex(pattern = r"^[1-9][0-9]{0,5}(k|M|G)?bps$"))]
    pub bandwidth: Option<String>,
    /// New sessions per second from one source address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000))]
    pub new_sessions_per_second: Option<u32>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum SecurityMode {
    /// Payload encrypted with a per-session key; metadata authenticated.
    #[default]
    Encrypt,
    /// Metadata and packets authenticated, payload in clear.
    Authenticate,
    /// Metadata authenticated, nothing added to later packets (the application encrypts).
    None,
}
