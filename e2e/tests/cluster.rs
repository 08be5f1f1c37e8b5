//! The cluster tier: Signpost installed on a real Kubernetes cluster (k3s, kind, a cloud).
//!
//! Runs when `KUBECONFIG` names a reachable cluster (`kubectl version`, `kubectl get --raw
//! /readyz`) and the images to test are named: `SIGNPOST_OPERATOR_IMAGE` and
//! `SIGNPOST_ROUTER_IMAGE` (built from `deploy/docker/`, pullable by the cluster). Otherwise it
//! prints `SKIPPED: ...` and passes; with `SIGNPOST_REQUIRE_CLUSTER=1` a skip is a failure.
//!
//! What it does, in namespaces of its own (`signpost-e2e-PID` for the operator,
//! `retail-e2e-PID` for the intent), undoing every step on the way out, also on failure:
//!
//! 1. applies the chart's CRDs (server-side) and `helm install`s the chart, the operator
//!    watching the intent's namespace, waiting for its pods to be ready and a leader to hold
//!    the Lease;
//! 2. on one node, labels it and creates two veth devices through a pod with NET_ADMIN, so
//!    a test Router (`e2e-store`, an edge with host networking on that node) has real devices
//!    to open: the examples' routers name `eth0`/`eth1` on store nodes, and taking a test
//!    node's `eth0` would cut the node off;
//! 3. applies `examples/retail` (`kubectl apply -k`) and the test Router;
//! 4. waits (bounded) for every Tenant, Service and Policy to be `Ready` for its current
//!    generation, every Router to have a compiled `configVersion`, and `e2e-store` to be `Ready`
//!    with `appliedVersion == configVersion`: its router pod, created by the operator, dialed
//!    the operator, applied the config and acknowledged it;
//! 5. uninstalls (and deletes the CRDs only if it created them).
//!
//! The examples' own routers get workloads too, which schedule no pod here (their
//! `placement.nodeSelector` names hub and store nodes the test cluster does not have).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const SKIP_NO_CLUSTER: &str = "no cluster (KUBECONFIG unset or unreachable)";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Prints the skip, or fails when a cluster run was required.
fn skip(why: &str) {
    if std::env::var_os("SIGNPOST_REQUIRE_CLUSTER").is_some_and(|v| v == "1") {
        panic!("SIGNPOST_REQUIRE_CLUSTER=1 but {why}");
    }
    eprintln!("SKIPPED: {why}");
}

/// An image reference split into the chart's `repository` and `tag` or `digest` values.
#[derive(Debug, PartialEq, Eq)]
struct ImageRef {
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl ImageRef {
    fn parse(reference: &str) -> Result<Self, String> {
        let reference = reference.trim();
        if reference.is_empty() || reference.contains(char::is_whitespace) {
            return Err(format!("`{reference}` is not an image reference"));
        }
        if let Some((repository, digest)) = reference.split_once('@') {
            if !digest.starts_with("sha256:") {
                return Err(format!("`{reference}`: a digest is sha256:HEX"));
            }
            return Ok(Self {
                repository: repository.to_string(),
                tag: None,
                digest: Some(digest.to_string()),
            });
        }
        // A colon after the last slash separates the tag; one before it is a registry's port.
        let last = reference
            .rsplit_once('/')
            .map_or(reference, |(_, name)| name);
        match last.split_once(':') {
            Some((_, tag)) if !tag.is_empty() => Ok(Self {
                repository: reference[..reference.len() - tag.len() - 1].to_string(),
                tag: Some(tag.to_string()),
                digest: None,
            }),
            Some(_) => Err(format!("`{reference}`: empty tag")),
            None => Ok(Self {
                repository: reference.to_string(),
                tag: Some("latest".to_string()),
                digest: None,
            }),
        }
    }

    /// `--set` assignments for the chart value `prefix` (`operator.image`, `router.image`).
    fn helm_set(&self, prefix: &str) -> Vec<String> {
        let mut out = vec![format!("{prefix}.repository={}", self.repository)];
        if let Some(tag) = &self.tag {
            out.push(format!("{prefix}.tag={tag}"));
        }
        if let Some(digest) = &self.digest {
            out.push(format!("{prefix}.digest={digest}"));
        }
        out
    }
}

/// The devices the test Router runs on (≤ 15 characters, unlikely to exist).
const WAN_DEVICE: &str = "spe2e-wan0";
const LAN_DEVICE: &str = "spe2e-lan0";
const TEST_ROUTER: &str = "e2e-store";

/// An edge on the labeled node, peering with the examples' hubs (neighborhood `internet`),
/// with the `pos` network on its LAN so it is given tenants, services and peer keys.
fn test_router(node_label: &str) -> String {
    format!(
        r#"apiVersion: signpost.dev/v1alpha1
kind: Router
metadata:
  name: {TEST_ROUTER}
spec:
  role: edge
  site:
    store: e2e
  interfaces:
    - name: broadband
      role: wan
      device: {WAN_DEVICE}
      addresses: [192.0.2.200/24]
      gateway: 192.0.2.1
      neighborhood: internet
      vector: broadband
    - name: lan
      role: lan
      device: {LAN_DEVICE}
      addresses: [10.250.0.1/16]
      networks:
        - name: pos
          prefixes: [10.250.10.0/24]
  placement:
    nodeSelector:
      signpost.dev/e2e: "{node_label}"
    hostNetwork: true
    perNode: true
"#
    )
}

/// The shell commands that create the test Router's devices (veth pairs: every kernel has them,
/// and AF_XDP on veth is what the lab runs on) and remove them.
fn device_commands() -> (String, String) {
    let up = [WAN_DEVICE, LAN_DEVICE]
        .map(|d| format!("ip link add {d} type veth peer name {d}p && ip link set {d} up && ip link set {d}p up"))
        .join(" && ");
    let down = [WAN_DEVICE, LAN_DEVICE]
        .map(|d| format!("ip link del {d}"))
        .join("; ");
    (up, down)
}

/// A pod that creates the test Router's devices in the node's network namespace and removes
/// them when it is deleted. Its image is the router image by default (it has iproute2).
fn device_pod(name: &str, namespace: &str, node: &str, image: &str) -> String {
    let (up, down) = device_commands();
    let up = format!("{up} && touch /tmp/ready");
    let down = format!("{down}; exit 0");
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: {namespace}
spec:
  nodeName: {node}
  hostNetwork: true
  restartPolicy: Never
  terminationGracePeriodSeconds: 15
  containers:
    - name: devices
      image: {image}
      command: [sh, -c, 'trap "{down}" TERM; {up} && while true; do sleep 1; done']
      readinessProbe:
        exec:
          command: [cat, /tmp/ready]
        periodSeconds: 1
      securityContext:
        capabilities:
          drop: [ALL]
          add: [NET_ADMIN]
"#
    )
}

fn kubectl_path() -> PathBuf {
    let tools = std::env::var_os("SIGNPOST_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/signpost/tools")
        });
    let installed = tools.join("bin/kubectl");
    if !on_path("kubectl") && installed.is_file() {
        return installed;
    }
    PathBuf::from("kubectl")
}

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

fn helm_path() -> Option<PathBuf> {
    if on_path("helm") {
        return Some("helm".into());
    }
    let tools = std::env::var_os("SIGNPOST_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/signpost/tools")
        });
    Some(tools.join("bin/helm")).filter(|p| p.is_file())
}

/// Runs a command with stdin `input`; `Err` has the command and its output.
fn run(program: &PathBuf, args: &[&str], input: Option<&str>) -> Result<String, String> {
    use std::io::Write;
    let shown = format!("{} {}", program.display(), args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{shown}: {e}"))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| format!("{shown}: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{shown}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{shown}: {}\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn kubectl(args: &[&str]) -> Result<String, String> {
    let mut all = vec!["--request-timeout=30s"];
    all.extend_from_slice(args);
    run(&kubectl_path(), &all, None)
}

fn kubectl_json(args: &[&str]) -> Result<Value, String> {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&kubectl(&all)?).map_err(|e| format!("kubectl {args:?}: {e}"))
}

/// Whether KUBECONFIG names a cluster that answers; `Err` says why not.
fn reachable() -> Result<(), String> {
    match std::env::var_os("KUBECONFIG") {
        Some(v) if !v.is_empty() => {}
        _ => return Err("KUBECONFIG is unset".into()),
    }
    run(
        &kubectl_path(),
        &["version", "--request-timeout=5s", "-o", "json"],
        None,
    )?;
    let ready = run(
        &kubectl_path(),
        &["get", "--raw", "/readyz", "--request-timeout=5s"],
        None,
    )?;
    if ready.trim() != "ok" {
        return Err(format!("/readyz answered `{}`", ready.trim()));
    }
    Ok(())
}

/// Polls `check` every 2 s until it returns `Some` or `timeout` passes; the error names what
/// was awaited and the last state seen.
fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<Option<T>, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("nothing observed");
    loop {
        match check() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last = e,
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "timed out after {timeout:?} waiting for {what}: {last}"
            ));
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn condition<'a>(object: &'a Value, kind: &str) -> Option<&'a Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

/// `Ready=True` for the object's current generation, or why not.
fn ready(object: &Value) -> Result<(), String> {
    let name = object["metadata"]["name"].as_str().unwrap_or("?");
    let generation = object["metadata"]["generation"].as_i64();
    let observed = object["status"]["observedGeneration"].as_i64();
    if observed.is_none() || observed < generation {
        return Err(format!(
            "{name}: observedGeneration {observed:?}, generation {generation:?}"
        ));
    }
    match condition(object, "Ready") {
        Some(c) if c["status"] == "True" => Ok(()),
        Some(c) => Err(format!(
            "{name}: Ready={} {} {}",
            c["status"], c["reason"], c["message"]
        )),
        None => Err(format!("{name}: no Ready condition")),
    }
}

/// Undo steps, run in reverse order on drop, each bounded by kubectl's and helm's timeouts.
#[derive(Default)]
struct Cleanup(Vec<(PathBuf, Vec<String>)>);

impl Cleanup {
    fn push(&mut self, program: PathBuf, args: &[&str]) {
        self.0
            .push((program, args.iter().map(|a| a.to_string()).collect()));
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        while let Some((program, args)) = self.0.pop() {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            if let Err(e) = run(&program, &args, None) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

#[test]
fn signpost_installs_and_routers_apply_their_config_on_a_cluster() {
    if let Err(why) = reachable() {
        skip(&format!("{SKIP_NO_CLUSTER}: {why}"));
        return;
    }
    let images = (
        std::env::var("SIGNPOST_OPERATOR_IMAGE"),
        std::env::var("SIGNPOST_ROUTER_IMAGE"),
    );
    let (Ok(operator_image), Ok(router_image)) = images else {
        skip(
            "a cluster is reachable but SIGNPOST_OPERATOR_IMAGE / SIGNPOST_ROUTER_IMAGE are not \
             set: build the images (deploy/docker/), push them where the cluster pulls from, \
             and name them",
        );
        return;
    };
    let operator_image = ImageRef::parse(&operator_image).unwrap_or_else(|e| panic!("{e}"));
    let router_image = ImageRef::parse(&router_image).unwrap_or_else(|e| panic!("{e}"));
    let helm = helm_path().expect("a cluster run needs helm (install it with .ci/run)");
    let kubectl_bin = kubectl_path();
    let device_image = std::env::var("SIGNPOST_DEVICE_POD_IMAGE")
        .unwrap_or_else(|_| std::env::var("SIGNPOST_ROUTER_IMAGE").unwrap_or_default());

    let pid = std::process::id().to_string();
    let ns = format!("signpost-e2e-{pid}");
    let retail = format!("retail-e2e-{pid}");
    let release = "signpost-e2e";
    let mut cleanup = Cleanup::default();
    let crds = root().join("charts/signpost/crds");
    let crds = crds.to_str().expect("UTF-8 path");

    // 1. CRDs and the chart.
    let crds_existed = kubectl(&["get", "crd", "routers.signpost.dev"]).is_ok();
    kubectl(&["apply", "--server-side", "--force-conflicts", "-f", crds])
        .unwrap_or_else(|e| panic!("{e}"));
    if !crds_existed {
        cleanup.push(
            kubectl_bin.clone(),
            &["delete", "--ignore-not-found", "--timeout=120s", "-f", crds],
        );
    }
    for namespace in [&ns, &retail] {
        kubectl(&["create", "namespace", namespace]).unwrap_or_else(|e| panic!("{e}"));
        cleanup.push(
            kubectl_bin.clone(),
            &[
                "delete",
                "namespace",
                namespace,
                "--ignore-not-found",
                "--timeout=180s",
            ],
        );
    }
    let mut set = operator_image.helm_set("operator.image");
    set.extend(router_image.helm_set("router.image"));
    set.push(format!("operator.watchNamespace={retail}"));
    let chart = root().join("charts/signpost");
    let mut args = vec![
        "install",
        release,
        chart.to_str().expect("UTF-8 path"),
        "--namespace",
        &ns,
        "--skip-crds",
        "--wait",
        "--timeout",
        "5m",
    ];
    for s in &set {
        args.extend(["--set", s]);
    }
    // Uninstall is registered first so that it also runs when the install half-failed.
    cleanup.push(
        helm.clone(),
        &[
            "uninstall",
            release,
            "--namespace",
            &ns,
            "--wait",
            "--timeout",
            "3m",
        ],
    );
    run(&helm, &args, None).unwrap_or_else(|e| panic!("{e}"));
    let holder = wait_for(
        "a leader holding the operator's Lease",
        Duration::from_secs(90),
        || {
            let lease = kubectl_json(&["get", "lease", "signpost-operator", "-n", &ns])?;
            Ok(lease["spec"]["holderIdentity"]
                .as_str()
                .filter(|h| !h.is_empty())
                .map(String::from))
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("leader: {holder}");

    // 2. A node with devices for the test Router.
    let nodes = kubectl_json(&["get", "nodes"]).unwrap_or_else(|e| panic!("{e}"));
    let node = nodes["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| {
            n["spec"]["unschedulable"] != true
                && condition(n, "Ready").is_some_and(|c| c["status"] == "True")
        })
        .and_then(|n| n["metadata"]["name"].as_str())
        .expect("a Ready, schedulable node")
        .to_string();
    let label = format!("signpost.dev/e2e={pid}");
    kubectl(&["label", "node", &node, &label]).unwrap_or_else(|e| panic!("{e}"));
    cleanup.push(
        kubectl_bin.clone(),
        &["label", "node", &node, "signpost.dev/e2e-"],
    );
    let pod = "signpost-e2e-devices";
    run(
        &kubectl_bin,
        &["apply", "-f", "-"],
        Some(&device_pod(pod, &ns, &node, &device_image)),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    cleanup.push(
        kubectl_bin.clone(),
        &[
            "delete",
            "pod",
            pod,
            "-n",
            &ns,
            "--ignore-not-found",
            "--timeout=60s",
        ],
    );
    kubectl(&[
        "wait",
        "pod",
        pod,
        "-n",
        &ns,
        "--for=condition=Ready",
        "--timeout=120s",
    ])
    .unwrap_or_else(|e| panic!("devices on {node}: {e}"));

    // 3. The intent; removed first on the way out, while the operator can still finalize it.
    cleanup.push(
        kubectl_bin.clone(),
        &[
            "delete",
            "-n",
            &retail,
            "--all",
            "--ignore-not-found",
            "--timeout=120s",
            "routers.signpost.dev,policies.signpost.dev,services.signpost.dev,tenants.signpost.dev",
        ],
    );
    let examples = root().join("examples/retail");
    kubectl(&[
        "apply",
        "-n",
        &retail,
        "-k",
        examples.to_str().expect("UTF-8 path"),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    run(
        &kubectl_bin,
        &["apply", "-n", &retail, "-f", "-"],
        Some(&test_router(&pid)),
    )
    .unwrap_or_else(|e| panic!("{e}"));

    // 4. Ready, compiled, applied.
    let bound = Duration::from_secs(240);
    for kind in [
        "tenants.signpost.dev",
        "services.signpost.dev",
        "policies.signpost.dev",
    ] {
        wait_for(&format!("every {kind} Ready"), bound, || {
            let list = kubectl_json(&["get", kind, "-n", &retail])?;
            let items = list["items"].as_array().cloned().unwrap_or_default();
            if items.is_empty() {
                return Err(format!("no {kind}"));
            }
            items.iter().try_for_each(ready)?;
            Ok(Some(()))
        })
        .unwrap_or_else(|e| panic!("{e}"));
    }
    let versions = wait_for("every Router compiled, e2e-store applied", bound, || {
        let list = kubectl_json(&["get", "routers.signpost.dev", "-n", &retail])?;
        let items = list["items"].as_array().cloned().unwrap_or_default();
        for router in &items {
            if router["status"]["configVersion"]
                .as_str()
                .is_none_or(str::is_empty)
            {
                return Err(format!("{}: no configVersion", router["metadata"]["name"]));
            }
        }
        let test = items
            .iter()
            .find(|r| r["metadata"]["name"] == TEST_ROUTER)
            .ok_or("e2e-store missing")?;
        ready(test)?;
        let compiled = test["status"]["configVersion"].as_str();
        let applied = test["status"]["appliedVersion"].as_str();
        if compiled != applied {
            return Err(format!(
                "e2e-store: configVersion {compiled:?}, appliedVersion {applied:?}"
            ));
        }
        Ok(Some((items.len(), compiled.map(String::from))))
    })
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "{} routers compiled; e2e-store applied {:?}",
        versions.0, versions.1
    );

    // The workload the operator made for e2e-store runs the router image the chart passed it.
    let daemonsets =
        kubectl_json(&["get", "daemonsets", "-n", &retail]).unwrap_or_else(|e| panic!("{e}"));
    let images: Vec<String> = daemonsets["items"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|d| {
            d["spec"]["template"]["spec"]["containers"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|c| c["image"].as_str().map(String::from))
        .collect();
    let want = match (&router_image.tag, &router_image.digest) {
        (_, Some(d)) => format!("{}@{d}", router_image.repository),
        (Some(t), None) => format!("{}:{t}", router_image.repository),
        (None, None) => router_image.repository.clone(),
    };
    assert!(
        images.contains(&want),
        "router DaemonSets run {images:?}, not {want}"
    );

    // 5. Undo (also on any panic above): the intent first, while the operator still runs to
    // remove the workloads and finalizers, then devices, label, release, namespaces, CRDs.
    drop(cleanup);
}

// --- the parts that run without a cluster ---

#[test]
fn image_references_become_chart_values() {
    let parse = |s| ImageRef::parse(s).expect("parses");
    assert_eq!(
        parse("ghcr.io/signpost-dev/signpost-operator:0.1.0").helm_set("operator.image"),
        [
            "operator.image.repository=ghcr.io/signpost-dev/signpost-operator",
            "operator.image.tag=0.1.0"
        ]
    );
    assert_eq!(
        parse("localhost:5000/signpost-router").helm_set("router.image"),
        [
            "router.image.repository=localhost:5000/signpost-router",
            "router.image.tag=latest"
        ]
    );
    assert_eq!(
        parse("localhost:5000/signpost-router:dev").tag.as_deref(),
        Some("dev")
    );
    let pinned = parse("r.example/op@sha256:abcd");
    assert_eq!(pinned.digest.as_deref(), Some("sha256:abcd"));
    assert_eq!(
        pinned.helm_set("x"),
        ["x.repository=r.example/op", "x.digest=sha256:abcd"]
    );
    for bad in ["", "a b", "r/op@md5:1", "r/op:"] {
        assert!(ImageRef::parse(bad).is_err(), "{bad:?}");
    }
}

/// The test Router and the examples compile together, and the test Router gets a config with
/// peers and tenants (what the cluster run expects it to apply).
#[test]
fn test_router_compiles_with_the_examples() {
    let signpostctl = signpost_e2e::binary("signpostctl").unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(root().join("examples/retail")).expect("examples") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, dir.path().join(path.file_name().expect("name"))).expect("copy");
    }
    std::fs::write(dir.path().join("e2e-store.yaml"), test_router("1")).expect("write");
    let out = Command::new(signpostctl)
        .args([
            "render",
            "--format",
            "json",
            "--router",
            TEST_ROUTER,
            "--manifests",
        ])
        .arg(dir.path())
        .output()
        .expect("signpostctl runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "render failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [WAN_DEVICE, LAN_DEVICE, "hub-aws", "pos"] {
        assert!(
            stdout.contains(want),
            "e2e-store's config lacks {want}:\n{stdout}"
        );
    }
}

/// The device pod's commands, run for real in a private network namespace (`unshare -n`, gone
/// with the process): they create both devices and remove them again.
#[test]
fn device_commands_create_and_remove_the_devices() {
    if let Some(why) = signpost_e2e::available() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let (up, down) = device_commands();
    let script = format!(
        "{up} && ip -o link show | grep -c 'spe2e-' && {down} && ! ip -o link show | grep -q spe2e-"
    );
    let out = Command::new("unshare")
        .args(["-n", "sh", "-ec", &script])
        .output()
        .expect("unshare runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "4",
        "two veth pairs"
    );
}

#[test]
fn manifests_of_the_cluster_run_parse() {
    // kubectl would refuse them at apply time; catch a broken format! here instead.
    for (text, kind) in [
        (test_router("1"), "Router"),
        (device_pod("p", "ns", "node-1", "busybox:1.36"), "Pod"),
    ] {
        let value: Value = serde_json::to_value(
            serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&text).expect("YAML"),
        )
        .expect("JSON");
        assert_eq!(value["kind"], kind);
    }
}
