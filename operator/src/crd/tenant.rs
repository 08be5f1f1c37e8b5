//! `Tenant`: who. A group of traffic sources, by LAN network, by prefix, or both.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Prefix, Status, SymbolicName};

/// A group of sources: POS terminals, cameras, guest Wi-Fi, corporate laptops.
///
/// Hosts belong to a tenant when they sit on one of its named LAN `networks` (on any router that
/// has a LAN network of that name) or when their address is in one of its `prefixes`; the longest
/// prefix wins. Tenants nest by name: `pos.corp` is inside `corp`, and a policy that allows `corp`
/// allows `pos.corp` too.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "signpost.dev",
    version = "v1alpha1",
    kind = "Tenant",
    doc = "A group of traffic sources, by LAN network and/or prefix.",
    namespaced,
    status = "Status",
    shortname = "tn",
    category = "signpost",
    printcolumn = r#"{"name":"Networks","type":"string","jsonPath":".spec.networks"}"#,
    printcolumn = r#"{"name":"Prefixes","type":"string","jsonPath":".spec.prefixes"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct TenantSpec {
    /// What the tenant is, for people reading `kubectl describe`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub description: Option<String>,
    /// Named LAN networks (from Routers' LAN interfaces) whose hosts belong to this tenant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub networks: Vec<SymbolicName>,
    /// Source prefixes that belong to this tenant wherever they appear.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub prefixes: Vec<Prefix>,
}
