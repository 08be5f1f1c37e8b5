//! What the manifests allow, worked out from the Policy objects themselves: the oracle the lab's
//! allowed/denied matrix is checked against. Written independently of the compiler (which is
//! under test) from the rules the README states: deny by default; a policy grants its tenants
//! (and tenants nested in them, `pos.corp` in `corp`) its services when the tenant opens the
//! session; a policy naming a missing tenant or service grants nothing.

use signpost_operator::crd::{Direction, SecurityMode};
use signpost_operator::manifests::Intent;

/// The policy that allows `tenant` to open sessions to `service`, if any (highest priority,
/// then first name, as the compiler breaks ties).
pub fn allowing<'a>(
    intent: &'a Intent,
    tenant: &str,
    service: &str,
) -> Option<&'a signpost_operator::crd::Policy> {
    let exists_tenant = |n: &str| {
        intent
            .tenants
            .iter()
            .any(|t| t.metadata.name.as_deref() == Some(n))
    };
    let exists_service = |n: &str| {
        intent
            .services
            .iter()
            .any(|s| s.metadata.name.as_deref() == Some(n))
    };
    if !exists_tenant(tenant) || !exists_service(service) {
        return None;
    }
    let mut grants: Vec<_> = intent
        .policies
        .iter()
        .filter(|p| matches!(p.spec.direction, Direction::FromTenant | Direction::Both))
        .filter(|p| p.spec.tenants.iter().all(|t| exists_tenant(t.as_str())))
        .filter(|p| p.spec.services.iter().all(|s| exists_service(s.as_str())))
        .filter(|p| p.spec.services.iter().any(|s| s.as_str() == service))
        .filter(|p| {
            p.spec
                .tenants
                .iter()
                .any(|t| tenant == t.as_str() || tenant.ends_with(&format!(".{t}")))
        })
        .collect();
    grants.sort_by(|a, b| {
        // `Priority` orders critical first.
        a.spec
            .priority
            .cmp(&b.spec.priority)
            .then(a.metadata.name.cmp(&b.metadata.name))
    });
    grants.first().copied()
}

/// The security a granted session uses, in the manifests' words.
pub fn security(policy: &signpost_operator::crd::Policy) -> &'static str {
    match policy.spec.security {
        SecurityMode::Encrypt => "encrypt",
        SecurityMode::Authenticate => "authenticate",
        SecurityMode::None => "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signpost_operator::admission::Admission;
    use signpost_operator::manifests;

    #[test]
    fn retail_allows_exactly_its_four_policies() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/retail");
        let docs = manifests::read_documents(&dir).expect("readable");
        let intent = manifests::decode(&docs, &Admission::new()).expect("admitted");
        let mut allowed = Vec::new();
        for t in ["pos", "cameras", "guest", "signage"] {
            for s in [
                "payments",
                "video-archive",
                "inventory",
                "ads-cdn",
                "internet",
            ] {
                if let Some(p) = allowing(&intent, t, s) {
                    allowed.push(format!("{t}->{s}:{}", security(p)));
                }
            }
        }
        assert_eq!(
            allowed,
            [
                "pos->payments:encrypt",
                "cameras->video-archive:none",
                "guest->internet:none",
                "signage->ads-cdn:authenticate"
            ]
        );
    }
}
