//! The Helm chart (`charts/signpost`): `helm lint` and `helm template` with each values file,
//! every rendered object validated offline against its schema (Kubernetes' own through
//! kubernetes-validate, strict; prometheus-operator's ServiceMonitor through its CRD's schema),
//! and what the rendered objects must say: RBAC exactly the documented set, the operator
//! non-root without capabilities, the flags of the operator's contract, optional objects only
//! when asked for.
//!
//! Tools are found by `tools/` (installed by `.ci/run`); missing ones fail in CI and print
//! `SKIPPED: ...` elsewhere.

mod tools;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use signpost_operator::admission::Admission;
use signpost_operator::controller::rbac;
use signpost_operator::crd;

fn chart() -> PathBuf {
    tools::root().join("charts/signpost")
}

const NAMESPACE: &str = "signpost";

/// `helm template signpost charts/signpost -n signpost --include-crds ARGS`; an argument
/// `values-*.yaml` names that file in the chart.
fn render(helm: &Path, args: &[&str]) -> Result<Vec<Value>, String> {
    let args = args.iter().map(|a| {
        if a.starts_with("values-") {
            chart().join(a).into_os_string()
        } else {
            a.into()
        }
    });
    let out = tools::run(
        Command::new(helm)
            .args(["template", "signpost"])
            .arg(chart())
            .args(["--namespace", NAMESPACE, "--include-crds"])
            .args(args),
    )?;
    Ok(tools::documents(&out))
}

fn helm() -> Option<PathBuf> {
    tools::require(tools::helm(), "helm")
}

fn rendered(helm: &Path, args: &[&str]) -> Vec<Value> {
    render(helm, args).unwrap_or_else(|e| panic!("{e}"))
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

fn kinds(objects: &[Value]) -> BTreeSet<String> {
    objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Values combinations the checks render: the three files and the switches they leave off.
const SCENARIOS: [&[&str]; 7] = [
    &[],
    &["-f", "values-hub.yaml"],
    &["-f", "values-edge.yaml"],
    &[
        "-f",
        "values-hub.yaml",
        "--set",
        "serviceMonitor.enabled=true",
    ],
    &["--set", "operator.watchNamespace=signpost"],
    &[
        "--set",
        "operator.watchNamespace=retail,operator.replicas=1",
        "--set",
        "operator.distribution.external.enabled=true,operator.distribution.external.type=NodePort,operator.distribution.external.nodePort=30743",
    ],
    &[
        "--set",
        "networkPolicy.enabled=true,operator.image.digest=sha256:0000000000000000000000000000000000000000000000000000000000000000",
    ],
];

#[test]
fn chart_lints_with_each_values_file() {
    let Some(helm) = helm() else { return };
    for values in [None, Some("values-hub.yaml"), Some("values-edge.yaml")] {
        let mut command = Command::new(&helm);
        command.args(["lint", "--strict"]).arg(chart());
        if let Some(v) = values {
            command.arg("-f").arg(chart().join(v));
        }
        let out = tools::run(&mut command).unwrap_or_else(|e| panic!("{e}"));
        assert!(out.contains("0 chart(s) failed"), "{out}");
        assert!(!out.contains("[WARNING]"), "{out}");
    }
}

#[test]
fn every_rendered_object_matches_its_schema() {
    let Some(helm) = helm() else { return };
    let Some(validators) = tools::validators() else {
        return;
    };
    let mut all = Vec::new();
    for args in SCENARIOS {
        let objects = rendered(&helm, args);
        assert!(!objects.is_empty(), "{args:?} renders objects");
        all.extend(objects);
    }
    let core: Vec<&Value> = all
        .iter()
        .filter(|o| tools::schemas_for(o) == tools::Schemas::Kubernetes)
        .collect();
    let third: Vec<&Value> = all
        .iter()
        .filter(|o| tools::schemas_for(o) == tools::Schemas::ThirdParty)
        .collect();
    assert!(
        all.iter()
            .all(|o| tools::schemas_for(o) != tools::Schemas::Signpost),
        "the chart renders no Signpost objects of its own"
    );
    assert_eq!(third.len(), 1, "the ServiceMonitor of one scenario");
    validators
        .kubernetes(&core)
        .unwrap_or_else(|e| panic!("{e}"));
    validators
        .third_party(&third)
        .unwrap_or_else(|e| panic!("{e}"));
}

/// The checks above can fail: a misspelt field, a kind with no schema and a wrongly typed
/// ServiceMonitor are each refused.
#[test]
fn schema_checks_refuse_bad_objects() {
    let Some(validators) = tools::validators() else {
        return;
    };
    let misspelt = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
        "spec": {"ports": [{"port": 7443, "targetport": 7443}]}});
    let err = validators
        .kubernetes(&[&misspelt])
        .expect_err("unknown field refused");
    assert!(err.contains("targetport"), "{err}");
    let unknown =
        json!({"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "x"}});
    validators
        .kubernetes(&[&unknown])
        .expect_err("a kind without a schema is not a pass");
    let monitor = json!({"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
        "metadata": {"name": "x"}, "spec": {"selector": {}, "endpoints": [{"port": 9090}]}});
    let err = validators
        .third_party(&[&monitor])
        .expect_err("port must be a string");
    assert!(err.contains("port"), "{err}");
}

/// The CRDs Helm installs are the generated ones (`operator/tests/crds.rs` keeps the files in
/// step; this checks Helm ships them) and admit every example.
#[test]
fn chart_installs_the_generated_crds() {
    let Some(helm) = helm() else { return };
    let objects = rendered(&helm, &[]);
    let crds: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
        .collect();
    let generated: Vec<Value> = crd::all()
        .iter()
        .map(|c| serde_json::to_value(c).expect("serializes"))
        .collect();
    assert_eq!(crds.len(), generated.len());
    for want in &generated {
        assert!(
            crds.contains(&want),
            "{} missing or different",
            tools::name_of(want)
        );
    }
    let parsed: Vec<_> = crds
        .iter()
        .map(|c| serde_json::from_value((*c).clone()).expect("a CRD"))
        .collect();
    let admission = Admission::from_crds(&parsed);
    let dir = tools::root().join("examples/retail");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("examples/retail") {
        let path = entry.expect("entry").path();
        if path.file_name().is_some_and(|n| n == "kustomization.yaml")
            || path.extension().is_none_or(|e| e != "yaml")
        {
            continue;
        }
        for object in tools::documents(&std::fs::read_to_string(&path).expect("reads")) {
            if let Err(r) = admission.check(&object) {
                panic!(
                    "{}: {} refused: {r:?}",
                    path.display(),
                    tools::name_of(&object)
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 10, "{checked} examples checked");
}

/// One RBAC grant: (apiGroup, resource, verbs), flattened from rules.
type Grant = (String, String, BTreeSet<String>);

fn grants(role: &Value) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_array().expect("rules") {
        let verbs: BTreeSet<String> = strings(&rule["verbs"]).into_iter().collect();
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                out.insert((group.clone(), resource, verbs.clone()));
            }
        }
    }
    out
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn grant(group: &str, resource: &str, verbs: &str) -> Grant {
    (
        group.to_string(),
        resource.to_string(),
        verbs.split(' ').map(String::from).collect(),
    )
}

/// The grants of `rules`, flattened.
fn flatten<'a>(rules: impl IntoIterator<Item = &'a rbac::Grant>) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for g in rules {
        for resource in g.resources {
            out.insert((
                g.group.to_string(),
                resource.to_string(),
                g.verbs.iter().map(|v| v.to_string()).collect(),
            ));
        }
    }
    out
}

/// The operator's permissions on the objects it reconciles and the workloads it creates: what
/// the code declares it needs (`controller::rbac::GRANTS`, which every mock-API call of the
/// controller tests is checked against).
fn workload_grants() -> BTreeSet<Grant> {
    flatten(
        rbac::GRANTS
            .iter()
            .filter(|g| g.scope == rbac::Scope::Objects),
    )
}

fn lease_grants() -> BTreeSet<Grant> {
    flatten(
        rbac::GRANTS
            .iter()
            .filter(|g| g.scope == rbac::Scope::OwnNamespace),
    )
}

/// Roles and bindings of a render: (kind, namespace) of each role with its grants, and every
/// binding's subject is the operator's ServiceAccount.
fn roles(objects: &[Value]) -> Vec<(String, String, BTreeSet<Grant>)> {
    for binding in objects
        .iter()
        .filter(|o| o["kind"] == "RoleBinding" || o["kind"] == "ClusterRoleBinding")
    {
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": "signpost-operator", "namespace": NAMESPACE}])
        );
        let role = &binding["roleRef"];
        let bound = find(
            objects,
            role["kind"].as_str().expect("kind"),
            role["name"].as_str().expect("name"),
        )
        .unwrap_or_else(|| panic!("{} binds a missing role", tools::name_of(binding)));
        assert_eq!(
            bound["metadata"]["namespace"],
            binding["metadata"]["namespace"]
        );
    }
    let out: Vec<_> = objects
        .iter()
        .filter(|o| o["kind"] == "Role" || o["kind"] == "ClusterRole")
        .map(|o| {
            (
                o["kind"].as_str().expect("kind").to_string(),
                o["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                grants(o),
            )
        })
        .collect();
    sorted(out)
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

#[test]
fn operator_rbac_is_exactly_the_documented_set() {
    let Some(helm) = helm() else { return };
    // Every namespace: a ClusterRole for the objects and workloads, a Role for the Lease.
    assert_eq!(
        roles(&rendered(&helm, &[])),
        sorted(vec![
            ("ClusterRole".into(), "".into(), workload_grants()),
            ("Role".into(), NAMESPACE.into(), lease_grants()),
        ])
    );
    // Watching the release namespace: no cluster-wide grant at all.
    let objects = rendered(&helm, &["--set", "operator.watchNamespace=signpost"]);
    assert!(!kinds(&objects).contains("ClusterRole"));
    assert!(!kinds(&objects).contains("ClusterRoleBinding"));
    assert_eq!(
        roles(&objects),
        sorted(vec![
            ("Role".into(), NAMESPACE.into(), lease_grants()),
            ("Role".into(), NAMESPACE.into(), workload_grants()),
        ])
    );
    // Watching another namespace: the CA Secret in the operator's own stays reachable.
    let objects = rendered(&helm, &["--set", "operator.watchNamespace=retail"]);
    let mut own = lease_grants();
    own.extend(flatten([&rbac::CA_SECRET]));
    assert_eq!(
        roles(&objects),
        sorted(vec![
            ("Role".into(), "retail".into(), workload_grants()),
            ("Role".into(), NAMESPACE.into(), own),
        ])
    );
    let deployment = find(&objects, "Deployment", "signpost-operator").expect("Deployment");
    assert!(args(deployment).contains(&"--namespace=retail".to_string()));
}

/// Both READMEs' RBAC tables (the chart's and the repository's) list the grants the chart
/// renders.
#[test]
fn readme_rbac_tables_match_the_chart() {
    let mut want = workload_grants();
    want.extend(lease_grants());
    for readme in [chart().join("README.md"), tools::root().join("README.md")] {
        let text = std::fs::read_to_string(&readme).expect("README");
        assert_eq!(rbac_table(&text), want, "{}", readme.display());
    }
}

/// The grants of the table between `<!-- rbac -->` markers:
/// `| `group` | `resources`, ... | verbs | scope | why |`.
fn rbac_table(readme: &str) -> BTreeSet<Grant> {
    let table = readme
        .split_once("<!-- rbac -->")
        .and_then(|(_, rest)| rest.split_once("<!-- /rbac -->"))
        .map(|(table, _)| table)
        .expect("an RBAC table between <!-- rbac --> markers");
    let mut documented = BTreeSet::new();
    for line in table.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let group = cells[1].trim_matches('`');
        let group = if group == "core" { "" } else { group };
        let verbs = cells[3].replace(['`', ','], "");
        for resource in cells[2].split(',') {
            documented.insert(grant(
                group,
                resource.trim().trim_matches('`'),
                verbs.trim(),
            ));
        }
    }
    documented
}

/// Liveness on `/healthz`, readiness on `/readyz`, both on the port named `metrics`.
fn assert_probes(container: &Value) {
    assert_eq!(
        container["livenessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": "metrics"})
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": "metrics"})
    );
}

fn assert_has_arg(args: &[String], want: &str) {
    assert!(
        args.iter().any(|a| a == want),
        "{want} missing from {args:?}"
    );
}

fn args(deployment: &Value) -> Vec<String> {
    strings(&deployment["spec"]["template"]["spec"]["containers"][0]["args"])
}

#[test]
fn operator_runs_non_root_without_capabilities() {
    let Some(helm) = helm() else { return };
    for values in [&[][..], &["-f", "values-hub.yaml"][..]] {
        let objects = rendered(&helm, values);
        let deployment = find(&objects, "Deployment", "signpost-operator").expect("Deployment");
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert!(
            pod["securityContext"]["runAsUser"]
                .as_i64()
                .is_some_and(|u| u > 0)
        );
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        for key in ["hostNetwork", "hostPID", "hostIPC"] {
            assert!(pod[key].is_null() || pod[key] == false, "{key}");
        }
        let containers = pod["containers"].as_array().expect("containers");
        assert_eq!(containers.len(), 1);
        let c = &containers[0];
        let sc = &c["securityContext"];
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert_eq!(sc["readOnlyRootFilesystem"], true);
        assert_eq!(sc["privileged"], false);
        assert_eq!(
            sc["capabilities"],
            json!({"drop": ["ALL"]}),
            "no capability added"
        );
        assert!(
            c["resources"]["requests"].is_object()
                && c["resources"]["limits"]["memory"].is_string()
        );
        // Probes on the metrics port, as the operator serves them.
        assert_probes(c);
        let ports: Vec<(&str, i64)> = c["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().expect("name"),
                    p["containerPort"].as_i64().expect("port"),
                )
            })
            .collect();
        assert_eq!(ports, vec![("distribution", 7443), ("metrics", 9090)]);
        let env: Vec<(&str, &str)> = c["env"]
            .as_array()
            .expect("env")
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().expect("name"),
                    e["valueFrom"]["fieldRef"]["fieldPath"]
                        .as_str()
                        .expect("fieldRef"),
                )
            })
            .collect();
        assert_eq!(
            env,
            vec![
                ("POD_NAMESPACE", "metadata.namespace"),
                ("POD_NAME", "metadata.name")
            ]
        );
        // The operator's command-line contract.
        let args = args(deployment);
        for want in [
            "--listen=0.0.0.0:7443",
            "--metrics=0.0.0.0:9090",
            "--ca-secret=signpost-ca",
            "--server-name=signpost-operator.signpost.svc",
            "--router-image=ghcr.io/signpost-dev/signpost-router:0.1.0",
            "--distribution-endpoint=https://signpost-operator.signpost.svc:7443",
            "--lease-name=signpost-operator",
        ] {
            assert_has_arg(&args, want);
        }
        assert!(
            !args.iter().any(|a| a.starts_with("--namespace")),
            "all namespaces by default"
        );
        assert_eq!(
            deployment["spec"]["replicas"], 2,
            "HA: leader election is always on"
        );
        assert!(
            pod["affinity"]["podAntiAffinity"].is_object(),
            "replicas spread over nodes"
        );
        // The Service carries both ports; the selector matches the pods.
        let service = find(&objects, "Service", "signpost-operator").expect("Service");
        assert_eq!(service["spec"]["type"], "ClusterIP");
        let labels = &deployment["spec"]["template"]["metadata"]["labels"];
        for (k, v) in service["spec"]["selector"].as_object().expect("selector") {
            assert_eq!(&labels[k], v);
        }
        let service_ports: Vec<i64> = service["spec"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .map(|p| p["port"].as_i64().expect("port"))
            .collect();
        assert_eq!(service_ports, vec![7443, 9090]);
    }
}

#[test]
fn optional_objects_only_when_asked_for() {
    let Some(helm) = helm() else { return };
    let default = kinds(&rendered(&helm, &[]));
    assert!(!default.contains("ServiceMonitor"));
    assert!(!default.contains("NetworkPolicy"));
    assert!(
        !default.contains("DaemonSet"),
        "the operator creates router workloads, not the chart"
    );
    assert!(
        default.contains("PodDisruptionBudget"),
        "two replicas get a PDB"
    );

    let objects = rendered(
        &helm,
        &[
            "--set",
            "serviceMonitor.enabled=true,serviceMonitor.labels.release=prom",
        ],
    );
    let monitor = find(&objects, "ServiceMonitor", "signpost-operator").expect("ServiceMonitor");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prom");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");

    let single = kinds(&rendered(&helm, &["--set", "operator.replicas=1"]));
    assert!(
        !single.contains("PodDisruptionBudget"),
        "a PDB on one replica would block drains"
    );

    let objects = rendered(&helm, &["--set", "networkPolicy.enabled=true"]);
    let policy = find(&objects, "NetworkPolicy", "signpost-operator").expect("NetworkPolicy");
    let ingress = policy["spec"]["ingress"].as_array().expect("ingress");
    assert_eq!(
        ingress[0],
        json!({"ports": [{"port": "distribution", "protocol": "TCP"}]}),
        "distribution open"
    );
    assert_eq!(
        ingress[1]["ports"],
        json!([{"port": "metrics", "protocol": "TCP"}])
    );
    assert_eq!(
        ingress[1]["from"],
        json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}])
    );
}

#[test]
fn hub_exposes_only_distribution_to_the_stores() {
    let Some(helm) = helm() else { return };
    let objects = rendered(&helm, &["-f", "values-hub.yaml"]);
    let external =
        find(&objects, "Service", "signpost-operator-external").expect("external Service");
    assert_eq!(external["spec"]["type"], "LoadBalancer");
    assert_eq!(external["spec"]["ports"].as_array().map(Vec::len), Some(1));
    assert_eq!(external["spec"]["ports"][0]["port"], 7443);
    let deployment = find(&objects, "Deployment", "signpost-operator").expect("Deployment");
    assert!(
        args(deployment).contains(&"--server-name=signpost.hub.example.com".to_string()),
        "the name stores dial is in the operator's certificate"
    );
    assert!(kinds(&objects).contains("NetworkPolicy"));
    assert!(kinds(&objects).contains("PodDisruptionBudget"));

    let objects = rendered(
        &helm,
        &[
            "--set",
            "operator.distribution.external.enabled=true,operator.distribution.external.type=NodePort,operator.distribution.external.nodePort=30743",
        ],
    );
    let external =
        find(&objects, "Service", "signpost-operator-external").expect("external Service");
    assert_eq!(external["spec"]["type"], "NodePort");
    assert_eq!(external["spec"]["ports"][0]["nodePort"], 30743);
}

/// A well-formed bootstrap token, as `signpostctl bootstrap create` prints one.
const TOKEN: &str = "abc123.0123456789abcdefghijklmnopqrstuv";

/// A CA certificate file (`ca.pem`, public) and its key file, in a directory that lives as long
/// as the returned guard.
fn hub_ca() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, key_pem) =
        signpost_operator::identity::CertificateAuthority::generate().expect("a CA");
    let (cert, key) = (dir.path().join("ca.pem"), dir.path().join("ca.key"));
    std::fs::write(&cert, ca.cert_pem()).expect("write ca.pem");
    std::fs::write(&key, key_pem).expect("write ca.key");
    (dir, cert, key)
}

/// `values-edge.yaml` with the token and CA certificate as values instead of a Secret.
fn edge_inline_args(ca_file: &Path) -> Vec<String> {
    vec![
        "-f".into(),
        "values-edge.yaml".into(),
        "--set".into(),
        format!("edgeRouter.bootstrap.existingSecret=,edgeRouter.bootstrap.token={TOKEN}"),
        "--set-file".into(),
        format!("edgeRouter.bootstrap.caCert={}", ca_file.display()),
    ]
}

fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

#[test]
fn edge_runs_the_store_router_and_no_operator() {
    let Some(helm) = helm() else { return };
    let objects = rendered(&helm, &["-f", "values-edge.yaml"]);
    let present = kinds(&objects);
    for absent in [
        "Deployment",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Service",
    ] {
        assert!(!present.contains(absent), "edge renders no {absent}");
    }
    let ds = find(&objects, "DaemonSet", "signpost-router").expect("router DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(
        pod["automountServiceAccountToken"], false,
        "the router needs no API access"
    );
    assert_eq!(pod["nodeSelector"], json!({"signpost.dev/store": "0142"}));
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(
        sc["capabilities"],
        json!({"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW", "BPF", "IPC_LOCK"]})
    );
    let args = strings(&c["args"]);
    for want in [
        "--router=store-0142",
        "--operator=https://signpost.hub.example.com:7443",
        "--tls-dir=/etc/signpost/bootstrap",
        "--bootstrap-token-file=/etc/signpost/bootstrap/token",
        "--state-dir=/var/lib/signpost",
        "--metrics=0.0.0.0:9464",
        "--log-format=json",
    ] {
        assert_has_arg(&args, want);
    }
    assert_eq!(c["image"], "ghcr.io/signpost-dev/signpost-router:0.1.0");
    // Probes the router answers from its start: no startup probe to wait out enrolling.
    assert_probes(c);
    assert!(c["startupProbe"].is_null(), "{c}");
    let volumes = pod["volumes"].as_array().expect("volumes");
    assert_eq!(
        volumes[0]["secret"],
        json!({
            "secretName": "signpost-router-bootstrap",
            "optional": true,
            "items": [{"key": "token", "path": "token"}, {"key": "ca.pem", "path": "ca.pem"}],
            "defaultMode": 256
        }),
        "the token and the CA certificate, nothing else"
    );
    assert_eq!(
        volumes[1]["hostPath"]["path"], "/var/lib/signpost/store-0142",
        "identity and last-known-good config on the node"
    );
    assert_eq!(
        find(&objects, "Secret", "signpost-router-bootstrap"),
        None,
        "values-edge.yaml names a Secret made beforehand"
    );
    assert_no_ca_key(&objects);

    // Without what it needs the chart says what is missing instead of rendering a broken pod.
    let err = render(
        &helm,
        &[
            "--set",
            "operator.enabled=false,edgeRouter.enabled=true,edgeRouter.name=store-0142",
        ],
    )
    .expect_err("no endpoint, no token");
    assert!(
        err.contains("edgeRouter.bootstrap: set existingSecret"),
        "{err}"
    );
}

/// Nothing rendered for a store holds, names or mounts the hub CA's key.
fn assert_no_ca_key(objects: &[Value]) {
    for o in objects {
        let text = o.to_string();
        assert!(
            !text.contains("ca.key") && !text.contains("PRIVATE KEY"),
            "{} carries a CA key: {text}",
            tools::name_of(o)
        );
    }
    for ds in objects.iter().filter(|o| o["kind"] == "DaemonSet") {
        for v in ds["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if v["secret"].is_object() {
                let keys: Vec<&str> = v["secret"]["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|i| i["key"].as_str())
                    .collect();
                assert_eq!(keys, ["token", "ca.pem"], "{v}");
            }
        }
    }
}

#[test]
fn edge_with_the_token_as_a_value_renders_its_secret_and_refuses_a_ca_key() {
    let Some(helm) = helm() else { return };
    let (_dir, ca_pem, ca_key) = hub_ca();
    let objects = rendered(&helm, &as_strs(&edge_inline_args(&ca_pem)));
    let secret =
        find(&objects, "Secret", "signpost-router-bootstrap").expect("the bootstrap Secret");
    let data = secret["stringData"].as_object().expect("stringData");
    assert_eq!(
        data.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        BTreeSet::from(["ca.pem", "token"]),
        "the token and the CA certificate, nothing else"
    );
    assert_eq!(data["token"], TOKEN);
    let pem = std::fs::read_to_string(&ca_pem).expect("ca.pem");
    assert_eq!(
        data["ca.pem"].as_str().map(str::trim),
        Some(pem.trim()),
        "the certificate, byte for byte"
    );
    let ds = find(&objects, "DaemonSet", "signpost-router").expect("DaemonSet");
    assert_eq!(
        ds["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"],
        "signpost-router-bootstrap"
    );
    assert_no_ca_key(&objects);
    if let Some(validators) = tools::validators() {
        let core: Vec<&Value> = objects
            .iter()
            .filter(|o| tools::schemas_for(o) == tools::Schemas::Kubernetes)
            .collect();
        validators
            .kubernetes(&core)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    // The CA key pasted in place of the certificate, a mangled token, or both sources: refused
    // with what to give instead.
    let mut key = edge_inline_args(&ca_key);
    let err = render(&helm, &as_strs(&key)).expect_err("a private key is refused");
    assert!(err.contains("caCert holds a private key"), "{err}");
    key[3] = "edgeRouter.bootstrap.existingSecret=,edgeRouter.bootstrap.token=abc".into();
    key[5] = format!("edgeRouter.bootstrap.caCert={}", ca_pem.display());
    let err = render(&helm, &as_strs(&key)).expect_err("a bad token is refused");
    assert!(err.contains("is not a bootstrap token"), "{err}");
    key[3] = format!("edgeRouter.bootstrap.token={TOKEN}");
    let err = render(&helm, &as_strs(&key)).expect_err("two sources are refused");
    assert!(err.contains("not both"), "{err}");
}

/// The store's install instructions (chart README, values-edge.yaml, the repository README)
/// need nothing of the hub's CA but its certificate: no `ca.key`, no `certs issue`.
#[test]
fn edge_instructions_need_no_ca_key() {
    let chart_readme = std::fs::read_to_string(chart().join("README.md")).expect("README");
    let edge = chart_readme
        .split_once("## Store edge")
        .and_then(|(_, rest)| rest.split_once("\n## "))
        .map(|(section, _)| section)
        .expect("a Store edge section");
    let root_readme = std::fs::read_to_string(tools::root().join("README.md")).expect("README");
    let store = root_readme
        .split_once("**Store edge**")
        .and_then(|(_, rest)| rest.split_once("**GitOps**"))
        .map(|(section, _)| section)
        .expect("a Store edge paragraph");
    let values = std::fs::read_to_string(chart().join("values-edge.yaml")).expect("values");
    for (what, text) in [
        ("charts/signpost/README.md", edge),
        ("README.md", store),
        ("values-edge.yaml", values.as_str()),
    ] {
        for banned in ["ca.key", "certs issue"] {
            assert!(
                !text.contains(banned),
                "{what} tells the store to use `{banned}`"
            );
        }
        assert!(
            text.contains("bootstrap create"),
            "{what} mints a bootstrap token"
        );
    }
}
