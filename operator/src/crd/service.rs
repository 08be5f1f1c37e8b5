//! `Service`: what. Something sessions can be opened to, possibly in several locations.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{IpAddress, ObjectName, Prefix, Status};

/// Something reachable: payments, a video archive, an inventory API, the internet.
///
/// The kind name collides with core `v1/Service` in `kubectl get services`: use the short name
/// `ssvc` or the full name `services.signpost.dev`.
#[derive(CustomResource, KubeSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "signpost.dev",
    version = "v1alpha1",
    kind = "Service",
    doc = "Something reachable: addresses or a hostname, transports, and the routers that front it.",
    namespaced,
    status = "Status",
    shortname = "ssvc",
    category = "signpost",
    printcolumn = r#"{"name":"Class","type":"string","jsonPath":".spec.trafficClass"}"#,
    printcolumn = r#"{"name":"Balancing","type":"string","jsonPath":".spec.loadBalancing"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = kube::core::Rule::new("(has(self.addresses) && size(self.addresses) > 0) || has(self.hostname)").message("a service needs addresses or a hostname"))]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub description: Option<String>,
    /// Destination prefixes that identify the service (`0.0.0.0/0` for internet breakout).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub addresses: Vec<Prefix>,
    /// A DNS-like name for the service, `payments.example.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub hostname: Option<String>,
    /// Protocols and ports the service accepts. At least one.
    #[schemars(length(min = 1, max = 16))]
    pub transports: Vec<Transport>,
    /// Routers that front the service. At least one.
    #[schemars(length(min = 1, max = 64))]
    pub locations: Vec<ServiceLocation>,
    /// How the service's packets are marked and queued on WAN links.
    #[serde(default)]
    pub traffic_class: TrafficClass,
    /// How sessions are spread across locations.
    #[serde(default)]
    pub load_balancing: LoadBalancing,
    /// How the routers that front the service check that its servers answer. Unset: every
    /// second, down after 3 misses, up after 2 answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
}

/// Probes of each location's real addresses from the router that fronts it: ICMP echo, and
/// for a service with a TCP transport a half-open TCP connection (SYN, then RST to the
/// SYN-ACK), which decides. A location whose addresses are all down is reported to every peer,
/// which sends new sessions to another location and re-establishes live ones there.
#[derive(KubeSchema, Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[x_kube(validation = kube::core::Rule::new("!has(self.timeoutMs) || self.timeoutMs <= (has(self.intervalMs) ? self.intervalMs : 1000)").message("timeoutMs must not exceed intervalMs (default 1000)"))]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    /// Off: a location counts as healthy whenever its router is reachable.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    /// Time between probes, milliseconds (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 100, max = 60000))]
    pub interval_ms: Option<u32>,
    /// How long an answer may take, milliseconds (default: the interval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 60000))]
    pub timeout_ms: Option<u32>,
    /// Consecutive misses before an address is down (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10))]
    pub unhealthy_threshold: Option<u32>,
    /// Consecutive answers before it is up again (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10))]
    pub healthy_threshold: Option<u32>,
    /// The TCP port to probe (default: the service's first TCP port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,
}

/// A protocol and the destination ports the service listens on.
#[derive(KubeSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[x_kube(validation = kube::core::Rule::new("!(self.protocol in ['icmp', 'icmpv6']) || !has(self.ports) || size(self.ports) == 0").message("ICMP has no ports: remove `ports`"))]
#[serde(rename_all = "camelCase")]
pub struct Transport {
    pub protocol: Protocol,
    /// Destination ports; empty means every port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub ports: Vec<PortRange>,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
}

/// A port, or a range from `port` to `endPort` inclusive (as in NetworkPolicy).
#[derive(KubeSchema, Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[x_kube(validation = kube::core::Rule::new("!has(self.endPort) || self.endPort >= self.port").message("endPort must not be below port"))]
#[serde(rename_all = "camelCase")]
pub struct PortRange {
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub end_port: Option<u16>,
}

/// A place where the service lives.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceLocation {
    /// The Router that fronts the service here.
    pub router: ObjectName,
    /// Real addresses behind that router, when they differ from the service's addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub addresses: Vec<IpAddress>,
    /// Order for `failover` balancing: lower is tried first.
    #[serde(default)]
    #[schemars(range(max = 1000))]
    pub priority: u16,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum TrafficClass {
    /// Voice and video calls: DSCP EF.
    Realtime,
    /// Payments and other short request/response exchanges: DSCP AF31.
    Transactional,
    /// Interactive applications: DSCP AF21.
    Interactive,
    /// Uploads, backups, archives: DSCP AF11.
    Bulk,
    /// Everything else: DSCP 0.
    #[default]
    BestEffort,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum LoadBalancing {
    /// The location with the lowest measured latency.
    #[default]
    Proximity,
    /// The location with the fewest sessions.
    LeastLoaded,
    /// Locations in priority order.
    Failover,
}
