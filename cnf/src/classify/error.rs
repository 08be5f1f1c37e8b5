//! Why a `RouterConfig` cannot be compiled into a classifier: each error names the object, the
//! field and the value, and what the operator or its user must fix.

use core::fmt;

/// A config the router refuses. It keeps running its previous config and reports this text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// A prefix field does not hold `address/length`.
    Prefix {
        /// The object holding it, e.g. "service `payments`".
        object: String,
        field: &'static str,
        value: String,
    },
    /// A LAN interface address is not `address/length`.
    InterfaceAddress { interface: String, value: String },
    /// An address field does not hold a single IP address.
    Address {
        object: String,
        field: &'static str,
        value: String,
    },
    /// An access rule names a tenant the config does not carry.
    UnknownTenant { rule: String, tenant: String },
    /// An access rule names a service the config does not carry.
    UnknownService { rule: String, service: String },
    /// A tenant's parent is not in the config.
    UnknownParent { tenant: String, parent: String },
    /// Following parents from a tenant comes back to it.
    ParentCycle { tenant: String },
    /// Two objects of one kind share a name, so names cannot identify them.
    DuplicateName { kind: &'static str, name: String },
    /// More objects of one kind than 16-bit ids can number.
    TooMany { kind: &'static str, count: usize },
    /// A port range outside 0-65535 or with `first > last`.
    PortRange {
        service: String,
        transport: usize,
        first: u32,
        last: u32,
    },
    /// An enum field holds a value this router does not know (or `UNSPECIFIED` where a value
    /// is needed to act).
    Enum {
        object: String,
        field: &'static str,
        value: i32,
    },
    /// A LAN network's VLAN id is not 0 (untagged) or 1-4094.
    Vlan {
        interface: String,
        network: String,
        vlan: u32,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Prefix {
                object,
                field,
                value,
            } => write!(
                f,
                "{object}: {field} `{value}` is not a CIDR prefix such as 10.20.0.0/16 or \
                 2001:db8::/48"
            ),
            ConfigError::InterfaceAddress { interface, value } => write!(
                f,
                "LAN interface `{interface}`: address `{value}` is not an address with prefix \
                 length such as 10.1.0.1/24"
            ),
            ConfigError::Address {
                object,
                field,
                value,
            } => write!(
                f,
                "{object}: {field} `{value}` is not an IP address such as 10.1.2.3 or \
                 2001:db8::3"
            ),
            ConfigError::UnknownTenant { rule, tenant } => write!(
                f,
                "{rule}: tenant `{tenant}` is not among the config's tenants; the operator \
                 must send every tenant an access rule names"
            ),
            ConfigError::UnknownService { rule, service } => write!(
                f,
                "{rule}: service `{service}` is not among the config's services; the operator \
                 must send every service an access rule names"
            ),
            ConfigError::UnknownParent { tenant, parent } => write!(
                f,
                "tenant `{tenant}`: parent `{parent}` is not among the config's tenants; the \
                 operator must send a tenant's enclosing tenants with it"
            ),
            ConfigError::ParentCycle { tenant } => write!(
                f,
                "tenant `{tenant}`: following `parent` leads back to `{tenant}`; parents must \
                 form a tree"
            ),
            ConfigError::DuplicateName { kind, name } => write!(
                f,
                "two {kind}s are named `{name}`; a router needs unique names to tell them apart"
            ),
            ConfigError::TooMany { kind, count } => write!(
                f,
                "the config has {count} {kind}s; a router holds at most {} — split the \
                 router's scope",
                u16::MAX
            ),
            ConfigError::PortRange {
                service,
                transport,
                first,
                last,
            } => write!(
                f,
                "service `{service}`: transport {transport} has port range {first}-{last}; \
                 ports are 0-65535 and `first` must not exceed `last`"
            ),
            ConfigError::Enum {
                object,
                field,
                value: 0,
            } => write!(f, "{object}: {field} is unspecified; set a {field}"),
            ConfigError::Enum {
                object,
                field,
                value,
            } => write!(
                f,
                "{object}: {field} {value} is not a value this router knows; upgrade the router \
                 or set a known {field}"
            ),
            ConfigError::Vlan {
                interface,
                network,
                vlan,
            } => write!(
                f,
                "LAN interface `{interface}` network `{network}`: VLAN {vlan} is not 1-4094 \
                 (0 means untagged)"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}
