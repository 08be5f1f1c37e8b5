//! The operator's CA and peer-key master secret in cluster mode: one Secret in the operator's
//! namespace (`--ca-secret`, default `signpost-ca`) with `ca.pem`, `ca.key` and `key-master`.
//!
//! When the Secret is absent, the operator creates it with a new CA and a random key master;
//! when several replicas start at once, the first create wins (409 for the others, which then
//! read the winner's). A Secret that exists with none of the three keys (made empty by an
//! installer) is filled in, guarded by its `resourceVersion`. A Secret with some of the keys
//! but not all is an error that names what is missing: making a new CA would silently cut off
//! every router, and a new key master would rotate every peer key.
//!
//! The operator's serving certificate is issued from this CA in memory at start, for the
//! `--server-name`s, for a year, and issued again 30 days before it ends
//! (`controller::renew_serving`): new handshakes present the new one.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};

use crate::identity::{CA_CERT_FILE, CA_KEY_FILE, CertificateAuthority};

pub const KEY_MASTER: &str = "key-master";

/// What the CA Secret holds.
pub struct ClusterCa {
    pub ca: CertificateAuthority,
    pub key_master: [u8; 32],
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa")
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

fn new_material() -> Result<BTreeMap<String, ByteString>, String> {
    let (ca, key_pem) = CertificateAuthority::generate().map_err(|e| e.to_string())?;
    let mut key_master = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key_master)
        .map_err(|_| "the system random generator failed".to_string())?;
    Ok(BTreeMap::from([
        (
            CA_CERT_FILE.to_string(),
            ByteString(ca.cert_pem().as_bytes().to_vec()),
        ),
        (CA_KEY_FILE.to_string(), ByteString(key_pem.into_bytes())),
        (
            KEY_MASTER.to_string(),
            ByteString(hex::encode(key_master).into_bytes()),
        ),
    ]))
}

/// Reads the CA Secret's contents; `origin` names it in errors.
pub fn parse(data: &BTreeMap<String, ByteString>, origin: &str) -> Result<ClusterCa, String> {
    let missing: Vec<&str> = [CA_CERT_FILE, CA_KEY_FILE, KEY_MASTER]
        .into_iter()
        .filter(|k| !data.contains_key(*k))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "Secret {origin} lacks {}: restore them from a backup, or delete the Secret to make \
             a new CA and key master (every router then needs a new certificate, and every peer \
             key changes)",
            missing.join(", ")
        ));
    }
    let text = |k: &str| String::from_utf8_lossy(&data[k].0).into_owned();
    let ca = CertificateAuthority::from_pem(
        &text(CA_CERT_FILE),
        &text(CA_KEY_FILE),
        &PathBuf::from(format!("{origin}/{CA_CERT_FILE}")),
        &PathBuf::from(format!("{origin}/{CA_KEY_FILE}")),
    )
    .map_err(|e| e.to_string())?;
    let raw = &data[KEY_MASTER].0;
    let key_master = match <[u8; 32]>::try_from(raw.as_slice()) {
        Ok(k) => k,
        Err(_) => {
            let mut k = [0u8; 32];
            hex::decode_to_slice(String::from_utf8_lossy(raw).trim(), &mut k).map_err(|e| {
                format!(
                    "Secret {origin}: {KEY_MASTER} is not a key master ({e}): it must hold 64 \
                     hex digits or 32 raw bytes"
                )
            })?;
            k
        }
    };
    Ok(ClusterCa { ca, key_master })
}

/// Loads the CA Secret `name` from `api` (the operator's namespace), creating or filling it
/// when needed.
pub async fn load_or_create(api: &Api<Secret>, name: &str) -> Result<ClusterCa, String> {
    let origin = format!("{}/{name}", api.namespace().unwrap_or("?"));
    for _ in 0..3 {
        let existing = api
            .get_opt(name)
            .await
            .map_err(|e| format!("reading Secret {origin}: {e}"))?;
        match existing {
            Some(secret) => {
                let data = secret.data.clone().unwrap_or_default();
                let ours = [CA_CERT_FILE, CA_KEY_FILE, KEY_MASTER];
                if !ours.iter().any(|k| data.contains_key(*k)) {
                    let patch = serde_json::json!({
                        "metadata": {"resourceVersion": secret.metadata.resource_version},
                        "data": new_material()?,
                    });
                    match api
                        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                    {
                        Ok(_) => {
                            tracing::info!("filled Secret {origin} with a new CA and key master");
                            continue;
                        }
                        Err(kube::Error::Api(s)) if s.code == 409 => continue,
                        Err(e) => return Err(format!("filling Secret {origin}: {e}")),
                    }
                }
                return parse(&data, &origin);
            }
            None => {
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(name.to_string()),
                        labels: Some(BTreeMap::from([(
                            "app.kubernetes.io/managed-by".to_string(),
                            "signpost-operator".to_string(),
                        )])),
                        ..ObjectMeta::default()
                    },
                    type_: Some("Opaque".into()),
                    data: Some(new_material()?),
                    ..Secret::default()
                };
                match api.create(&PostParams::default(), &secret).await {
                    Ok(created) => {
                        tracing::info!("created Secret {origin} with a new CA and key master");
                        return parse(&created.data.unwrap_or_default(), &origin);
                    }
                    // Another replica was quicker: read its Secret.
                    Err(kube::Error::Api(s)) if s.code == 409 => continue,
                    Err(e) => return Err(format!("creating Secret {origin}: {e}")),
                }
            }
        }
    }
    Err(format!(
        "Secret {origin} kept changing while being read; restart the operator"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_material_parses_and_half_a_secret_names_what_is_missing() {
        let data = new_material().expect("material");
        let ca = parse(&data, "signpost/signpost-ca").expect("parses");
        assert!(ca.ca.cert_pem().contains("BEGIN CERTIFICATE"));
        let mut half = data.clone();
        half.remove(CA_KEY_FILE);
        let err = parse(&half, "signpost/signpost-ca")
            .err()
            .unwrap_or_default();
        assert!(
            err.starts_with("Secret signpost/signpost-ca lacks ca.key:"),
            "{err}"
        );
        let mut bad = data;
        bad.insert(KEY_MASTER.into(), ByteString(b"nope".to_vec()));
        let err = parse(&bad, "s").err().unwrap_or_default();
        assert!(err.contains("64 hex digits or 32 raw bytes"), "{err}");
    }
}
