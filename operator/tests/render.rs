//! `signpostctl render` as a GitOps CI check: the real binary on the example directories.

use std::path::PathBuf;
use std::process::Command;

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn render(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_signpostctl"))
        .arg("render")
        .args(args)
        .output()
        .expect("signpostctl runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn retail_renders_cleanly() {
    let dir = examples().join("retail");
    let (ok, stdout, stderr) = render(&[
        "--manifests",
        dir.to_str().expect("utf-8 path"),
        "--format",
        "json",
    ]);
    assert!(ok, "{stderr}");
    let configs: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    let names: Vec<&str> = configs
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|c| c.get("router").and_then(|r| r.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            "hub-aws",
            "hub-azure",
            "store-0142",
            "store-0217",
            "store-0388"
        ]
    );
    assert!(stderr.contains("5 routers compiled, 0 errors"), "{stderr}");
}

#[test]
fn one_router_in_yaml() {
    let dir = examples().join("retail");
    let (ok, stdout, _) = render(&[
        "--manifests",
        dir.to_str().expect("utf-8 path"),
        "--router",
        "store-0217",
    ]);
    assert!(ok);
    assert!(stdout.starts_with("---\nrouter: store-0217\n"), "{stdout}");
    assert_eq!(
        stdout.matches("\n---\n").count() + usize::from(stdout.starts_with("---\n")),
        1
    );
    let (ok, _, stderr) = render(&[
        "--manifests",
        dir.to_str().expect("utf-8 path"),
        "--router",
        "store-9999",
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("no config for router `store-9999`"),
        "{stderr}"
    );
}

#[test]
fn each_reference_error_fails_with_its_documented_message() {
    let dir = examples().join("invalid/references");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    assert!(files.len() >= 6);
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable");
        let expect = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect:"))
            .expect("expect line")
            .trim();
        let (ok, _, stderr) = render(&["--manifests", file.to_str().expect("utf-8 path")]);
        assert!(!ok, "{}: exit status 0", file.display());
        assert!(
            stderr.contains(expect),
            "{}: expected `{expect}` in:\n{stderr}",
            file.display()
        );
    }
}

#[test]
fn schema_errors_fail_and_the_rest_is_still_compiled() {
    let file = examples().join("invalid/schema/policy-unknown-security.yaml");
    let (ok, _, stderr) = render(&["--manifests", file.to_str().expect("utf-8 path")]);
    assert!(!ok);
    assert!(
        stderr.contains("Unsupported value: \"encrypted\""),
        "{stderr}"
    );
}

#[test]
fn a_store_shows_the_services_it_knows_but_cannot_reach() {
    // `inventory` lies inside `internet` (0.0.0.0/0), which the store's guests may reach: the
    // store knows it — name, prefix, transports — with no location and no access entry.
    let dir = examples().join("retail");
    let (ok, stdout, stderr) = render(&[
        "--manifests",
        dir.to_str().expect("utf-8 path"),
        "--router",
        "store-0142",
        "--format",
        "json",
    ]);
    assert!(ok, "{stderr}");
    let configs: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    let store = &configs[0];
    let inventory = store["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|s| s["name"] == "inventory")
        .unwrap_or_else(|| panic!("store-0142 does not show inventory: {stdout}"));
    assert_eq!(inventory["prefixes"], serde_json::json!(["10.255.3.10/32"]));
    assert!(
        inventory["transports"]
            .as_array()
            .is_some_and(|t| !t.is_empty())
    );
    assert!(
        inventory
            .get("locations")
            .is_none_or(|l| l.as_array().is_some_and(|l| l.is_empty())),
        "{inventory}"
    );
    let access = store["access"].as_array().expect("access");
    assert!(
        !access.iter().any(|a| a["service"] == "inventory"),
        "{access:?}"
    );
}
