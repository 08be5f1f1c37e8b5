//! Bootstrap tokens in cluster mode: one Secret per token, next to its Router.
//!
//! ```yaml
//! apiVersion: v1
//! kind: Secret
//! type: signpost.dev/bootstrap-token
//! metadata:
//!   name: signpost-bootstrap-<id>
//!   namespace: <the Router's namespace>
//!   labels: {signpost.dev/bootstrap-token: "true", signpost.dev/router: <router>}
//!   annotations: {signpost.dev/used-at: <RFC 3339>, signpost.dev/used-by: <peer>}  # once used
//! data: {router: <router>, secret-sha256: <hex>, expires: <RFC 3339>}
//! ```
//!
//! `signpostctl bootstrap create` writes it ([`mint`]); the operator redeems it
//! ([`SecretTokens`]) by a merge patch that carries the `resourceVersion` it read, which the
//! API server treats as a precondition: of two redemptions racing, the second gets 409 and,
//! reading again, finds the token used. Any replica may redeem (routers dial any replica);
//! the precondition keeps that safe without the leader. When the Router is deleted its
//! finalizer deletes its token Secrets ([`delete_for_router`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;

use super::workloads::ROUTER_LABEL;
use super::world::{Kind, ObjectKey, Report};
use crate::bootstrap::{
    self, Redeemed, Refusal, Token, TokenRecord, TokenStore, TokenUse, parse_rfc3339, rfc3339,
};

pub const TOKEN_LABEL: &str = "signpost.dev/bootstrap-token";
pub const SECRET_TYPE: &str = "signpost.dev/bootstrap-token";
pub const USED_AT: &str = "signpost.dev/used-at";
pub const USED_BY: &str = "signpost.dev/used-by";

pub fn secret_name(id: &str) -> String {
    format!("signpost-bootstrap-{id}")
}

/// Token Secrets carry their router's name as a label value, which holds at most 63
/// characters; a longer router name (Kubernetes allows 253) can have no tokens.
fn fits_a_label(router: &str) -> bool {
    router.len() <= 63
}

/// The Secret for a new token.
pub fn token_secret(record: &TokenRecord, namespace: &str) -> Secret {
    let bytes = |s: &str| ByteString(s.as_bytes().to_vec());
    Secret {
        metadata: ObjectMeta {
            name: Some(secret_name(&record.id)),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([
                (TOKEN_LABEL.to_string(), "true".to_string()),
                (ROUTER_LABEL.to_string(), record.router.clone()),
                (
                    "app.kubernetes.io/managed-by".to_string(),
                    "signpostctl".to_string(),
                ),
            ])),
            ..ObjectMeta::default()
        },
        type_: Some(SECRET_TYPE.into()),
        data: Some(BTreeMap::from([
            ("router".to_string(), bytes(&record.router)),
            (
                "secret-sha256".to_string(),
                bytes(&hex::encode(record.secret_sha256)),
            ),
            ("expires".to_string(), bytes(&rfc3339(record.expires))),
        ])),
        ..Secret::default()
    }
}

/// A token record from its Secret.
pub fn record_of(secret: &Secret, id: &str) -> Result<TokenRecord, String> {
    let name = secret.metadata.name.as_deref().unwrap_or("?");
    if secret.type_.as_deref() != Some(SECRET_TYPE) {
        return Err(format!("Secret {name} is not of type {SECRET_TYPE}"));
    }
    let data = secret.data.clone().unwrap_or_default();
    let field = |key: &str| {
        data.get(key)
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            .ok_or_else(|| format!("Secret {name} has no `{key}`"))
    };
    let mut secret_sha256 = [0u8; 32];
    hex::decode_to_slice(field("secret-sha256")?.trim(), &mut secret_sha256)
        .map_err(|e| format!("Secret {name}: secret-sha256: {e}"))?;
    let annotations = secret.metadata.annotations.clone().unwrap_or_default();
    let used = match annotations.get(USED_AT) {
        Some(at) => Some(TokenUse {
            at: parse_rfc3339(at).map_err(|e| format!("Secret {name}: {USED_AT}: {e}"))?,
            by: annotations.get(USED_BY).cloned().unwrap_or_default(),
        }),
        None => None,
    };
    Ok(TokenRecord {
        id: id.to_string(),
        router: field("router")?.trim().to_string(),
        secret_sha256,
        expires: parse_rfc3339(&field("expires")?)
            .map_err(|e| format!("Secret {name}: expires: {e}"))?,
        used,
    })
}

/// Mints a token for `router` (which must exist in `namespace`) and creates its Secret;
/// returns the token, which is shown once and stored nowhere.
pub async fn mint(
    client: Client,
    namespace: &str,
    router: &str,
    ttl: Duration,
    now: SystemTime,
) -> Result<Token, String> {
    let routers: Api<crate::crd::Router> = Api::namespaced(client.clone(), namespace);
    match routers.get_opt(router).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return Err(format!(
                "there is no Router `{router}` in namespace `{namespace}`: create it first \
                 (or pass --namespace)"
            ));
        }
        Err(e) => return Err(format!("reading Router {namespace}/{router}: {e}")),
    }
    if !fits_a_label(router) {
        return Err(format!(
            "router name `{router}` has {} characters; token Secrets are labelled with it and \
             Kubernetes labels hold at most 63 (its workload cannot be labelled either): shorten \
             the Router's metadata.name",
            router.len()
        ));
    }
    let (token, record) = TokenRecord::mint(router, ttl, now)?;
    let secrets: Api<Secret> = Api::namespaced(client, namespace);
    secrets
        .create(&PostParams::default(), &token_secret(&record, namespace))
        .await
        .map_err(|e| {
            format!(
                "creating Secret {namespace}/{}: {e}",
                secret_name(token.id())
            )
        })?;
    Ok(token)
}

/// Deletes `router`'s token Secrets; returns how many. A name too long for a label has none
/// (and a selector with it would be refused forever, wedging the Router's deletion).
pub async fn delete_for_router(secrets: &Api<Secret>, router: &str) -> Result<usize, kube::Error> {
    if !fits_a_label(router) {
        return Ok(0);
    }
    let selector = format!("{TOKEN_LABEL}=true,{ROUTER_LABEL}={router}");
    let list = secrets
        .list_metadata(&ListParams::default().labels(&selector))
        .await?;
    let mut n = 0;
    for item in list.items {
        let Some(name) = item.metadata.name else {
            continue;
        };
        match secrets.delete(&name, &DeleteParams::default()).await {
            Ok(_) => n += 1,
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The operator's token store: Secrets in the Router's namespace, found through the last
/// compile's report (which knows every Router's namespace and uid).
pub struct SecretTokens {
    client: Client,
    report: watch::Receiver<Arc<Report>>,
}

impl SecretTokens {
    pub fn new(client: Client, report: watch::Receiver<Arc<Report>>) -> Self {
        Self { client, report }
    }

    async fn read(
        &self,
        secrets: &Api<Secret>,
        token: &Token,
    ) -> Result<Option<(TokenRecord, Option<String>)>, Refusal> {
        let name = secret_name(token.id());
        match secrets.get_opt(&name).await {
            Ok(None) => Ok(None),
            Ok(Some(secret)) => match record_of(&secret, token.id()) {
                Ok(record) => Ok(Some((record, secret.metadata.resource_version))),
                Err(e) => {
                    // Not a token this operator can read: to the router, unknown.
                    tracing::warn!("bootstrap: {e}");
                    Ok(None)
                }
            },
            Err(e) => Err(Refusal::Unavailable(format!("reading Secret {name}: {e}"))),
        }
    }
}

#[tonic::async_trait]
impl TokenStore for SecretTokens {
    async fn redeem(
        &self,
        router: &str,
        token: &Token,
        by: &str,
        now: SystemTime,
    ) -> Result<Redeemed, Refusal> {
        let (namespace, uid) = {
            let report = self.report.borrow();
            let Some(ns) = report.router_namespace(router) else {
                return Err(Refusal::NoSuchRouter {
                    router: router.to_string(),
                });
            };
            let uid = report
                .get(&ObjectKey::new(Kind::Router, ns, router))
                .and_then(|f| f.uid.clone());
            (ns.to_string(), uid)
        };
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &namespace);
        let read = self.read(&secrets, token).await?;
        bootstrap::check(read.as_ref().map(|(r, _)| r), token, router, now)?;
        let name = secret_name(token.id());
        // Without a resourceVersion the patch below would carry no precondition, and two
        // redemptions could both succeed. The API server always sends one; refuse if not.
        let Some(resource_version) = read.and_then(|(_, rv)| rv) else {
            return Err(Refusal::Unavailable(format!(
                "Secret {namespace}/{name} came without a resourceVersion, so its use cannot be \
                 recorded safely"
            )));
        };
        let patch = serde_json::json!({
            "metadata": {
                // A precondition: the patch fails with 409 if the Secret changed since it was read.
                "resourceVersion": resource_version,
                "annotations": {USED_AT: rfc3339(now), USED_BY: by},
            }
        });
        match secrets
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(Redeemed { uid }),
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {
                // Someone redeemed (or deleted) it first: read again and say what happened.
                let again = self.read(&secrets, token).await?;
                bootstrap::check(again.as_ref().map(|(r, _)| r), token, router, now)?;
                Err(Refusal::Unavailable(format!(
                    "Secret {namespace}/{name} keeps changing; try again"
                )))
            }
            Err(e) => Err(Refusal::Unavailable(format!(
                "recording the use of Secret {namespace}/{name}: {e}"
            ))),
        }
    }
}
