//! The Kubernetes objects that run one Router — pure functions from the Router object (and the
//! operator's settings) to k8s-openapi values, applied with server-side apply by the controller.
//!
//! For Router `R` in namespace `NS`, all in `NS` and owned by the Router (controller owner
//! reference with `blockOwnerDeletion`, so garbage collection removes them with it):
//!
//! | object | name | what |
//! |---|---|---|
//! | ServiceAccount | `signpost-router-R` | the pods' identity in the cluster; no API token is mounted (the router never calls the API server) |
//! | Secret (`kubernetes.io/tls`) | `signpost-router-R-tls` | `ca.pem`, `tls.crt`, `tls.key`: the router's certificate from the operator's CA, bound to the Router's uid — the layout `signpost-router --tls-dir` reads |
//! | Deployment, or DaemonSet with `placement.perNode` | `signpost-router-R` | the router container |
//!
//! The pod: `signpost-router --router R --operator ENDPOINT --tls-dir /etc/signpost/tls
//! --state-dir /var/lib/signpost --metrics 0.0.0.0:9464`; not privileged, no privilege
//! escalation, read-only root filesystem, every capability dropped but `NET_ADMIN` (XDP
//! programs, links), `NET_RAW` (AF_XDP and AF_PACKET sockets), `BPF` (the XSK map and
//! program) and `IPC_LOCK` (UMEM pinning: with it the kernel does not charge UMEM against
//! `RLIMIT_MEMLOCK`, so `SYS_RESOURCE` to raise that limit is not needed; BPF maps are charged
//! to the memory cgroup since Linux 5.11 — the README shows the AF_XDP forwarding test passing
//! under a 64 KiB memlock limit without `SYS_RESOURCE`, and failing without `IPC_LOCK`). It runs as root because capabilities granted to a
//! container reach only a root process without file capabilities. `placement.hostNetwork` puts
//! it in the node's network namespace (DNS policy `ClusterFirstWithHostNet`, so it still
//! resolves the operator's Service) and keeps its state (last-known-good config) in
//! `/var/lib/signpost/R` on the node, so a store router restarted while the cloud is out of
//! reach comes back with its last config; otherwise state is an `emptyDir` (it survives
//! container restarts, not rescheduling). Interfaces with `multus` become the pod's
//! `k8s.v1.cni.cncf.io/networks` annotation, each attachment named after the interface's
//! device. `placement.nodeSelector` and `ha.replicas` are copied; two replicas are kept on
//! different nodes. Updates replace one pod at a time and never surge: two routers must not
//! share a node's devices. Probes, on the metrics port, which the router serves from its start:
//! liveness on `/healthz` (the process answers and, once forwarding, its packet I/O makes
//! progress), readiness on `/readyz` (a config is applied). No startup probe: a router waiting
//! for the operator or enrolling is alive, just not ready.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, Deployment, DeploymentSpec,
    DeploymentStrategy, RollingUpdateDaemonSet, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, ContainerPort, EmptyDirVolumeSource, HTTPGetAction,
    HostPathVolumeSource, PodAffinityTerm, PodAntiAffinity, PodSpec, PodTemplateSpec, Probe,
    Secret, SecretVolumeSource, SecurityContext, ServiceAccount, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use crate::crd::Router;
use crate::identity::{CA_CERT_FILE, CERT_FILE, Issued, KEY_FILE};

/// The field manager of everything the operator applies.
pub const FIELD_MANAGER: &str = "signpost-operator";
/// Labels every router object carries; `ROUTER_LABEL`'s value is the Router's name.
pub const ROUTER_LABEL: &str = "signpost.dev/router";
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// Annotation on the identity Secret: the uid its certificate is bound to.
pub const UID_ANNOTATION: &str = "signpost.dev/router-uid";
pub const MULTUS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/networks";

pub const TLS_MOUNT: &str = "/etc/signpost/tls";
pub const STATE_MOUNT: &str = "/var/lib/signpost";
pub const METRICS_PORT: i32 = 9464;
/// Host directory holding host-network routers' state, one subdirectory per router.
pub const HOST_STATE_DIR: &str = "/var/lib/signpost";

/// What the operator tells every router pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadSettings {
    /// The router container image.
    pub image: String,
    /// What router pods dial: `https://signpost-operator.NS.svc:7443`.
    pub distribution_endpoint: String,
}

/// The default router image: this operator's version.
pub fn default_image() -> String {
    format!(
        "ghcr.io/signpost-dev/signpost-router:{}",
        env!("CARGO_PKG_VERSION")
    )
}

/// Why a Router's workload cannot be built; the Router reports it as `Degraded`
/// (`WorkloadInvalid`) with this text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadError(pub String);

impl std::fmt::Display for WorkloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WorkloadError {}

/// The router's pods: a Deployment, or a DaemonSet (`placement.perNode`).
#[derive(Clone, Debug, PartialEq)]
pub enum App {
    Deployment(Deployment),
    DaemonSet(DaemonSet),
}

/// Object names for Router `name`.
pub fn workload_name(router: &str) -> String {
    format!("signpost-router-{router}")
}

pub fn secret_name(router: &str) -> String {
    format!("signpost-router-{router}-tls")
}

fn checked_name(router: &Router) -> Result<String, WorkloadError> {
    let name = router.name_any();
    // Label values hold at most 63 characters; the Router's name is one.
    if name.len() > 63 {
        return Err(WorkloadError(format!(
            "router name `{name}` has {} characters; its workload is labelled with it and \
             Kubernetes labels hold at most 63: shorten metadata.name",
            name.len()
        )));
    }
    Ok(name)
}

fn owner(router: &Router) -> Result<OwnerReference, WorkloadError> {
    let mut owner = router.controller_owner_ref(&()).ok_or_else(|| {
        WorkloadError("the Router has no uid yet (it was not read from the API server)".into())
    })?;
    owner.block_owner_deletion = Some(true);
    Ok(owner)
}

fn selector_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME_LABEL.to_string(), "signpost-router".to_string()),
        (ROUTER_LABEL.to_string(), name.to_string()),
    ])
}

/// Every label of a router object.
pub fn labels(name: &str) -> BTreeMap<String, String> {
    let mut l = selector_labels(name);
    l.insert("app.kubernetes.io/instance".into(), name.to_string());
    l.insert("app.kubernetes.io/component".into(), "router".into());
    l.insert(
        "app.kubernetes.io/managed-by".into(),
        "signpost-operator".into(),
    );
    l
}

fn meta(router: &Router, object_name: String, name: &str) -> Result<ObjectMeta, WorkloadError> {
    Ok(ObjectMeta {
        name: Some(object_name),
        namespace: router.namespace(),
        labels: Some(labels(name)),
        owner_references: Some(vec![owner(router)?]),
        ..ObjectMeta::default()
    })
}

pub fn service_account(router: &Router) -> Result<ServiceAccount, WorkloadError> {
    let name = checked_name(router)?;
    Ok(ServiceAccount {
        metadata: meta(router, workload_name(&name), &name)?,
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    })
}

/// The identity Secret holding `issued`.
pub fn identity_secret(router: &Router, issued: &Issued) -> Result<Secret, WorkloadError> {
    let name = checked_name(router)?;
    let mut metadata = meta(router, secret_name(&name), &name)?;
    metadata.annotations = Some(BTreeMap::from([(
        UID_ANNOTATION.to_string(),
        router.uid().unwrap_or_default(),
    )]));
    let bytes = |s: &str| ByteString(s.as_bytes().to_vec());
    Ok(Secret {
        metadata,
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            (CA_CERT_FILE.to_string(), bytes(&issued.ca_pem)),
            (CERT_FILE.to_string(), bytes(&issued.cert_pem)),
            (KEY_FILE.to_string(), bytes(&issued.key_pem)),
        ])),
        ..Secret::default()
    })
}

/// The Deployment or DaemonSet for `router`.
pub fn app(router: &Router, settings: &WorkloadSettings) -> Result<App, WorkloadError> {
    let name = checked_name(router)?;
    let placement = router.spec.placement.clone().unwrap_or_default();
    let replicas = router
        .spec
        .ha
        .as_ref()
        .map_or(1, |ha| i32::from(ha.replicas));
    let template = pod_template(router, &name, settings, replicas > 1)?;
    let selector = LabelSelector {
        match_labels: Some(selector_labels(&name)),
        ..LabelSelector::default()
    };
    let metadata = meta(router, workload_name(&name), &name)?;
    let one_at_a_time = (Some(IntOrString::Int(0)), Some(IntOrString::Int(1)));
    if placement.per_node {
        return Ok(App::DaemonSet(DaemonSet {
            metadata,
            spec: DaemonSetSpec {
                selector,
                template,
                update_strategy: Some(DaemonSetUpdateStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDaemonSet {
                        max_surge: one_at_a_time.0,
                        max_unavailable: one_at_a_time.1,
                    }),
                }),
                ..DaemonSetSpec::default()
            },
            ..DaemonSet::default()
        }));
    }
    Ok(App::Deployment(Deployment {
        metadata,
        spec: DeploymentSpec {
            replicas: Some(replicas),
            selector,
            template,
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: one_at_a_time.0,
                    max_unavailable: one_at_a_time.1,
                }),
            }),
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }))
}

/// The Multus attachments, as the annotation's JSON list.
fn multus_networks(router: &Router) -> Result<Option<String>, WorkloadError> {
    let host_network = router
        .spec
        .placement
        .as_ref()
        .is_some_and(|p| p.host_network);
    let mut attachments = Vec::new();
    for i in &router.spec.interfaces {
        let Some(multus) = &i.multus else { continue };
        if host_network {
            return Err(WorkloadError(format!(
                "interface `{}` is attached with Multus, but placement.hostNetwork is set: a \
                 host-network pod gets no Multus attachments; drop one of them",
                i.name
            )));
        }
        let device = i.device.clone().unwrap_or_else(|| i.name.to_string());
        let mut a = serde_json::Map::new();
        match multus.network_attachment.split_once('/') {
            Some((ns, nad)) => {
                a.insert("namespace".into(), ns.into());
                a.insert("name".into(), nad.into());
            }
            None => {
                a.insert("name".into(), multus.network_attachment.clone().into());
            }
        }
        a.insert("interface".into(), device.into());
        attachments.push(serde_json::Value::Object(a));
    }
    if attachments.is_empty() {
        return Ok(None);
    }
    serde_json::to_string(&attachments)
        .map(Some)
        .map_err(|e| WorkloadError(format!("the Multus annotation: {e}")))
}

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("metrics".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Probe::default()
    }
}

fn pod_template(
    router: &Router,
    name: &str,
    settings: &WorkloadSettings,
    spread: bool,
) -> Result<PodTemplateSpec, WorkloadError> {
    let placement = router.spec.placement.clone().unwrap_or_default();
    let mut annotations = BTreeMap::new();
    if let Some(networks) = multus_networks(router)? {
        annotations.insert(MULTUS_ANNOTATION.to_string(), networks);
    }
    let args = [
        "--router",
        name,
        "--operator",
        &settings.distribution_endpoint,
        "--tls-dir",
        TLS_MOUNT,
        "--state-dir",
        STATE_MOUNT,
        "--metrics",
        "0.0.0.0:9464",
        "--log-format",
        "json",
    ]
    .map(str::to_string)
    .to_vec();
    let capabilities = ["NET_ADMIN", "NET_RAW", "BPF", "IPC_LOCK"].map(str::to_string);
    let container = Container {
        name: "router".into(),
        image: Some(settings.image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        args: Some(args),
        ports: Some(vec![ContainerPort {
            name: Some("metrics".into()),
            container_port: METRICS_PORT,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        security_context: Some(SecurityContext {
            privileged: Some(false),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_user: Some(0),
            run_as_non_root: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: Some(capabilities.to_vec()),
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "tls".into(),
                mount_path: TLS_MOUNT.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "state".into(),
                mount_path: STATE_MOUNT.into(),
                ..VolumeMount::default()
            },
        ]),
        liveness_probe: Some(http_probe("/healthz", 10, 3)),
        readiness_probe: Some(http_probe("/readyz", 5, 2)),
        ..Container::default()
    };
    let state = if placement.host_network {
        Volume {
            name: "state".into(),
            host_path: Some(HostPathVolumeSource {
                path: format!("{HOST_STATE_DIR}/{name}"),
                type_: Some("DirectoryOrCreate".into()),
            }),
            ..Volume::default()
        }
    } else {
        Volume {
            name: "state".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        }
    };
    let tls = Volume {
        name: "tls".into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret_name(name)),
            default_mode: Some(0o400),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    };
    let affinity = spread.then(|| Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            required_during_scheduling_ignored_during_execution: Some(vec![PodAffinityTerm {
                label_selector: Some(LabelSelector {
                    match_labels: Some(selector_labels(name)),
                    ..LabelSelector::default()
                }),
                topology_key: "kubernetes.io/hostname".into(),
                ..PodAffinityTerm::default()
            }]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    });
    Ok(PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(name)),
            annotations: (!annotations.is_empty()).then_some(annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            service_account_name: Some(workload_name(name)),
            automount_service_account_token: Some(false),
            host_network: placement.host_network.then_some(true),
            dns_policy: placement
                .host_network
                .then(|| "ClusterFirstWithHostNet".to_string()),
            node_selector: (!placement.node_selector.is_empty())
                .then(|| placement.node_selector.clone()),
            affinity,
            termination_grace_period_seconds: Some(10),
            containers: vec![container],
            volumes: Some(vec![tls, state]),
            ..PodSpec::default()
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{HighAvailability, Multus, Placement, RouterSpec};

    fn router(yaml: &str) -> Router {
        let spec: RouterSpec = serde_yaml_ng::from_str(yaml).expect("spec");
        let mut r = Router::new("store-0142", spec);
        r.metadata.namespace = Some("chain".into());
        r.metadata.uid = Some("uid-0142".into());
        r
    }

    const STORE: &str = "
role: edge
interfaces:
  - {name: broadband, role: wan, device: eth1, neighborhood: internet, vector: broadband}
  - {name: lan, role: lan, networks: [{name: pos, prefixes: [10.1.0.0/24]}]}
";

    fn settings() -> WorkloadSettings {
        WorkloadSettings {
            image: "registry.example/signpost-router:1.2.3".into(),
            distribution_endpoint: "https://signpost-operator.signpost.svc:7443".into(),
        }
    }

    fn pod(app: &App) -> PodSpec {
        let template = match app {
            App::Deployment(d) => d.spec.template.clone(),
            App::DaemonSet(d) => d.spec.template.clone(),
        };
        template.spec.expect("a pod spec")
    }

    #[test]
    fn a_router_runs_as_a_deployment_with_only_the_capabilities_it_needs() {
        let r = router(STORE);
        let app = app(&r, &settings()).expect("workload");
        let App::Deployment(d) = &app else {
            panic!("a Deployment without perNode: {app:?}")
        };
        assert_eq!(
            d.metadata.name.as_deref(),
            Some("signpost-router-store-0142")
        );
        assert_eq!(d.metadata.namespace.as_deref(), Some("chain"));
        let owner = &d.metadata.owner_references.as_deref().unwrap_or_default()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("Router", "store-0142", "uid-0142")
        );
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.block_owner_deletion, Some(true));
        let spec = &d.spec;
        assert_eq!(spec.replicas, Some(1));
        let rolling = spec
            .strategy
            .as_ref()
            .and_then(|s| s.rolling_update.clone())
            .expect("rolling update");
        assert_eq!(
            rolling.max_surge,
            Some(IntOrString::Int(0)),
            "never two on one node's devices"
        );

        let pod = pod(&app);
        assert_eq!(
            pod.service_account_name.as_deref(),
            Some("signpost-router-store-0142")
        );
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert_eq!(pod.host_network, None);
        let c = &pod.containers[0];
        assert_eq!(
            c.image.as_deref(),
            Some("registry.example/signpost-router:1.2.3")
        );
        assert_eq!(
            c.args.clone().unwrap_or_default().join(" "),
            "--router store-0142 --operator https://signpost-operator.signpost.svc:7443 \
             --tls-dir /etc/signpost/tls --state-dir /var/lib/signpost --metrics 0.0.0.0:9464 \
             --log-format json"
        );
        let sc = c.security_context.clone().expect("security context");
        assert_eq!(sc.privileged, Some(false));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        let caps = sc.capabilities.expect("capabilities");
        assert_eq!(caps.drop, Some(vec!["ALL".to_string()]));
        assert_eq!(
            caps.add,
            Some(
                ["NET_ADMIN", "NET_RAW", "BPF", "IPC_LOCK"]
                    .map(String::from)
                    .to_vec()
            )
        );
        for (probe, path) in [
            (&c.liveness_probe, "/healthz"),
            (&c.readiness_probe, "/readyz"),
        ] {
            let get = probe
                .as_ref()
                .and_then(|p| p.http_get.clone())
                .expect("HTTP probe");
            assert_eq!(get.path.as_deref(), Some(path));
            assert_eq!(get.port, IntOrString::String("metrics".into()));
        }
        assert_eq!(
            c.startup_probe, None,
            "the router answers its probes from its start"
        );
        assert_eq!(
            c.ports.as_deref().unwrap_or_default()[0].container_port,
            9464
        );
        let volumes = pod.volumes.unwrap_or_default();
        assert_eq!(
            volumes[0]
                .secret
                .as_ref()
                .and_then(|s| s.secret_name.as_deref()),
            Some("signpost-router-store-0142-tls")
        );
        assert!(volumes[1].empty_dir.is_some());
    }

    #[test]
    fn per_node_host_network_routers_are_a_daemonset_pinned_to_the_store_node() {
        let mut r = router(STORE);
        r.spec.placement = Some(Placement {
            node_selector: BTreeMap::from([("signpost.dev/store".into(), "0142".into())]),
            host_network: true,
            per_node: true,
        });
        let app = app(&r, &settings()).expect("workload");
        assert!(matches!(app, App::DaemonSet(_)), "{app:?}");
        let pod = pod(&app);
        assert_eq!(pod.host_network, Some(true));
        assert_eq!(pod.dns_policy.as_deref(), Some("ClusterFirstWithHostNet"));
        assert_eq!(
            pod.node_selector,
            Some(BTreeMap::from([(
                "signpost.dev/store".into(),
                "0142".into()
            )]))
        );
        let state = &pod.volumes.unwrap_or_default()[1];
        assert_eq!(
            state.host_path.as_ref().map(|h| h.path.as_str()),
            Some("/var/lib/signpost/store-0142"),
            "the last good config survives the pod"
        );
    }

    #[test]
    fn multus_interfaces_become_attachments_named_after_their_devices() {
        let mut r = router(STORE);
        r.spec.interfaces[0].multus = Some(Multus {
            network_attachment: "net-system/wan-macvlan".into(),
        });
        r.spec.interfaces[1].multus = Some(Multus {
            network_attachment: "lan-vlan".into(),
        });
        r.spec.ha = Some(HighAvailability {
            replicas: 2,
            state_sync: true,
        });
        let app = app(&r, &settings()).expect("workload");
        let App::Deployment(d) = &app else {
            panic!("{app:?}")
        };
        assert_eq!(d.spec.replicas, Some(2));
        let template = d.spec.template.clone();
        let annotation = template
            .metadata
            .and_then(|m| m.annotations)
            .and_then(|a| a.get(MULTUS_ANNOTATION).cloned())
            .expect("annotation");
        let parsed: serde_json::Value = serde_json::from_str(&annotation).expect("JSON");
        assert_eq!(
            parsed,
            serde_json::json!([
                {"namespace": "net-system", "name": "wan-macvlan", "interface": "eth1"},
                {"name": "lan-vlan", "interface": "lan"}
            ])
        );
        let pod = template.spec.expect("pod");
        let anti = pod
            .affinity
            .and_then(|a| a.pod_anti_affinity)
            .and_then(|a| a.required_during_scheduling_ignored_during_execution)
            .expect("two replicas are spread");
        assert_eq!(anti[0].topology_key, "kubernetes.io/hostname");

        r.spec.placement = Some(Placement {
            host_network: true,
            ..Placement::default()
        });
        let err = super::app(&r, &settings())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("a host-network pod gets no Multus attachments"),
            "{err}"
        );
    }

    #[test]
    fn the_identity_secret_has_the_router_tls_layout_and_names_too_long_are_refused() {
        let r = router(STORE);
        let issued = Issued {
            ca_pem: "CA".into(),
            cert_pem: "CERT".into(),
            key_pem: "KEY".into(),
        };
        let s = identity_secret(&r, &issued).expect("secret");
        assert_eq!(
            s.metadata.name.as_deref(),
            Some("signpost-router-store-0142-tls")
        );
        assert_eq!(s.type_.as_deref(), Some("kubernetes.io/tls"));
        let data = s.data.unwrap_or_default();
        let keys: Vec<&str> = data.keys().map(String::as_str).collect();
        assert_eq!(keys, ["ca.pem", "tls.crt", "tls.key"]);
        assert_eq!(
            data.get("tls.key").map(|b| b.0.as_slice()),
            Some(&b"KEY"[..])
        );
        let sa = service_account(&r).expect("service account");
        assert_eq!(sa.automount_service_account_token, Some(false));
        assert_eq!(
            sa.metadata
                .labels
                .unwrap_or_default()
                .get(ROUTER_LABEL)
                .map(String::as_str),
            Some("store-0142")
        );

        let long = Router::new(&"s".repeat(64), r.spec.clone());
        let err = app(&long, &settings())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("Kubernetes labels hold at most 63"), "{err}");
    }
}
