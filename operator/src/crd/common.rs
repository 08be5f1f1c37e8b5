//! Types shared by the kinds: status, and strings that carry their own validation.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// Status common to every kind.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Programmed` and `Degraded`, with reasons from the compiler and the routers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

macro_rules! validated_string {
    ($(#[$doc:meta])* $name:ident, $max:expr, [$(($rule:expr, $message:expr)),+ $(,)?]) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_string())
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }

            fn inline_schema() -> bool {
                true
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "type": "string",
                    "minLength": 1,
                    "maxLength": $max,
                    "x-kubernetes-validations": [$({"rule": $rule, "message": $message}),+],
                })
            }
        }
    };
}

validated_string!(
    /// An IPv4 or IPv6 prefix in CIDR notation, `10.20.0.0/16` or `2001:db8:20::/48`.
    Prefix,
    49,
    [("isCIDR(self)", "must be a CIDR prefix such as 10.20.0.0/16 or 2001:db8::/48")]
);

validated_string!(
    /// An interface address with its prefix length, `203.0.113.10/24`.
    InterfaceAddress,
    49,
    [("isCIDR(self)", "must be an address with prefix length such as 203.0.113.10/24")]
);

validated_string!(
    /// A single IPv4 or IPv6 address.
    IpAddress,
    45,
    [("isIP(self)", "must be an IP address such as 10.1.2.3 or 2001:db8::3")]
);

validated_string!(
    /// The name of another Signpost object in the same namespace.
    ObjectName,
    253,
    [(
        "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",
        "must be an object name: lower-case letters, digits, '-' and '.'"
    )]
);

validated_string!(
    /// A short symbolic name chosen by the user: a vector, a neighborhood, a LAN network.
    SymbolicName,
    63,
    [(
        "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",
        "must be a short name: lower-case letters, digits and '-', starting and ending alphanumeric"
    )]
);
