//! What cluster mode may do to the API server, as data: one [`Grant`] per need, no more.
//!
//! The chart's RBAC (`charts/signpost/templates/operator-rbac.yaml`) and both READMEs' tables
//! are checked against [`GRANTS`] (`operator/tests/chart.rs`), and every call the controller
//! tests see on the mock API server must be one of them ([`allows`], in `fixtures.rs`): a
//! call the code makes but the chart does not grant fails a test, and so does a grant nobody
//! documented.
//!
//! Server-side apply counts as `patch`, and also as `create` when it makes the object.

/// Where a grant applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// The watched namespaces: a ClusterRole, or a Role in the one namespace watched.
    Objects,
    /// The operator's own namespace only (a Role there).
    OwnNamespace,
}

/// One rule: these verbs on these resources of this API group (`""`: core).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    pub group: &'static str,
    pub resources: &'static [&'static str],
    pub verbs: &'static [&'static str],
    pub scope: Scope,
    pub why: &'static str,
}

/// Everything the operator's ServiceAccount needs.
pub const GRANTS: &[Grant] = &[
    Grant {
        group: "signpost.dev",
        resources: &["tenants", "services", "policies"],
        verbs: &["list", "watch"],
        scope: Scope::Objects,
        why: "read the intent (reflectors and controllers)",
    },
    Grant {
        group: "signpost.dev",
        resources: &["routers"],
        verbs: &["list", "watch", "patch"],
        scope: Scope::Objects,
        why: "read the intent; patch adds and removes the Router finalizer",
    },
    Grant {
        group: "signpost.dev",
        resources: &[
            "tenants/status",
            "services/status",
            "policies/status",
            "routers/status",
        ],
        verbs: &["patch"],
        scope: Scope::Objects,
        why: "observedGeneration, Ready / Programmed / Degraded, router versions (server-side apply)",
    },
    Grant {
        group: "signpost.dev",
        resources: &["routers/finalizers"],
        verbs: &["update"],
        scope: Scope::Objects,
        why: "owner references with blockOwnerDeletion from router workloads to their Router",
    },
    Grant {
        group: "apps",
        resources: &["deployments", "daemonsets"],
        verbs: &["list", "watch", "create", "patch", "delete"],
        scope: Scope::Objects,
        why: "router workloads: applied, cached to notice one deleted, the other kind deleted when `perNode` changes",
    },
    Grant {
        group: "",
        resources: &["serviceaccounts"],
        verbs: &["create", "patch"],
        scope: Scope::Objects,
        why: "each router's ServiceAccount (applied)",
    },
    Grant {
        group: "",
        resources: &["secrets"],
        verbs: &["get", "list", "create", "patch", "delete"],
        scope: Scope::Objects,
        why: "identity Secrets (read for expiry, applied); bootstrap tokens (read, marked used, listed and deleted with their Router); the CA Secret",
    },
    Grant {
        group: "events.k8s.io",
        resources: &["events"],
        verbs: &["create", "patch"],
        scope: Scope::Objects,
        why: "Events on the objects (patch counts repeats)",
    },
    Grant {
        group: "coordination.k8s.io",
        resources: &["leases"],
        verbs: &["get", "create", "update"],
        scope: Scope::OwnNamespace,
        why: "leader election: read, create, replace guarded by resourceVersion",
    },
];

/// What the CA Secret needs in the operator's own namespace when the watched namespace is
/// another one (the chart adds it to the own-namespace Role then).
pub const CA_SECRET: Grant = Grant {
    group: "",
    resources: &["secrets"],
    verbs: &["get", "create", "patch"],
    scope: Scope::OwnNamespace,
    why: "the CA Secret, in the operator's namespace outside the watched one",
};

/// Whether [`GRANTS`] allow `verb` on `resource` (`secrets`, `routers/status`) of `group`.
pub fn allows(group: &str, resource: &str, verb: &str) -> bool {
    GRANTS
        .iter()
        .any(|g| g.group == group && g.resources.contains(&resource) && g.verbs.contains(&verb))
}

/// The RBAC verb, API group and resource of a request to the API server, from its method,
/// path and query (`None` for paths that name no resource, such as `/version`). A
/// server-side apply (`PATCH` with an apply content type) is reported as `patch`; it may
/// also create, which [`allows`] callers check separately.
pub fn request_attributes(
    method: &str,
    path: &str,
    query: &str,
) -> Option<(String, String, &'static str)> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    let rest = match rest {
        ["namespaces", _ns, rest @ ..] if !rest.is_empty() => rest,
        other => other,
    };
    let (resource, named) = match rest {
        [resource] => (resource.to_string(), false),
        [resource, _name] => (resource.to_string(), true),
        [resource, _name, sub] => (format!("{resource}/{sub}"), true),
        _ => return None,
    };
    let watching = query
        .split('&')
        .any(|p| p == "watch=true" || p == "watch=1");
    let verb = match (method, named) {
        ("GET", _) if watching => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => return None,
    };
    Some((group.to_string(), resource, verb))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_map_to_the_verbs_rbac_checks() {
        let a = |m, p, q| request_attributes(m, p, q);
        let s = |g: &str, r: &str, v: &'static str| Some((g.to_string(), r.to_string(), v));
        assert_eq!(
            a("GET", "/api/v1/namespaces/chain/secrets/x", ""),
            s("", "secrets", "get")
        );
        assert_eq!(
            a(
                "GET",
                "/api/v1/namespaces/chain/secrets",
                "labelSelector=a%3Db"
            ),
            s("", "secrets", "list")
        );
        assert_eq!(
            a(
                "GET",
                "/apis/apps/v1/deployments",
                "watch=true&resourceVersion=1"
            ),
            s("apps", "deployments", "watch")
        );
        assert_eq!(
            a(
                "PATCH",
                "/apis/signpost.dev/v1alpha1/namespaces/chain/routers/r/status",
                ""
            ),
            s("signpost.dev", "routers/status", "patch")
        );
        assert_eq!(
            a(
                "PUT",
                "/apis/coordination.k8s.io/v1/namespaces/signpost/leases/l",
                ""
            ),
            s("coordination.k8s.io", "leases", "update")
        );
        assert_eq!(a("GET", "/version", ""), None);
        assert!(allows("", "secrets", "get"));
        assert!(!allows("", "secrets", "watch"), "no Secret is watched");
        assert!(
            !allows("signpost.dev", "tenants", "patch"),
            "only Routers carry a finalizer"
        );
    }
}
