//! Zero-touch enrollment with the real binaries: `signpost-operator` in local mode,
//! `signpostctl bootstrap create` minting a token the way an administrator would, and
//! `signpost-router --bootstrap-token-file` enrolling with it and then streaming over mutual
//! TLS. A second router presenting the spent token exits with the operator's reason.
//!
//! Everything runs in one fresh network namespace (only `lo`), so the router can touch no
//! device of the machine: it enrolls and connects, then fails to open the example's devices,
//! which do not exist there. Without root the test prints `SKIPPED: ...` and passes.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use signpost_e2e::{Child, Namespace, binary};

const WAIT: Duration = Duration::from_secs(20);

fn path(p: impl AsRef<Path>) -> String {
    p.as_ref().display().to_string()
}

fn router(ns: &Namespace, addr: &str, boxed: &Path, state: &Path) -> Result<Command, String> {
    let mut cmd = ns.command(&path(binary("signpost-router")?));
    cmd.args([
        "--router",
        "store-0142",
        "--operator",
        &format!("https://{addr}"),
    ])
    .args(["--server-name", "localhost"])
    .args(["--tls-dir", &path(boxed), "--state-dir", &path(state)])
    .args(["--bootstrap-token-file", &path(boxed.join("token"))])
    .args([
        "--admin",
        "off",
        "--metrics",
        "off",
        "--driver",
        "af-packet",
    ])
    .env("RUST_LOG", "info");
    Ok(cmd)
}

#[test]
fn a_router_enrolls_with_a_minted_token_and_a_spent_token_is_refused() {
    if let Some(why) = signpost_e2e::available() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let result = (|| -> Result<(), String> {
        let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
        let ns = Namespace::create("boot")?;
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/retail");
        let tls = tmp.path().join("operator");
        let mut cmd = ns.command(&path(binary("signpost-operator")?));
        cmd.args(["--manifests", &path(&examples), "--listen", "127.0.0.1:0"])
            .args(["--tls-dir", &path(&tls)])
            .env("RUST_LOG", "info");
        let mut operator = Child::spawn("signpost-operator", cmd)?;
        let line = operator.wait_for_line("listening on", WAIT)?;
        let addr = line
            .rsplit("listening on ")
            .next()
            .map(str::trim)
            .unwrap_or_default()
            .to_string();

        let boxed = tmp.path().join("box");
        let minted = Command::new(binary("signpostctl")?)
            .args([
                "bootstrap",
                "create",
                "--router",
                "store-0142",
                "--ttl",
                "1h",
            ])
            .args(["--dir", &path(&tls), "--out", &path(&boxed)])
            .output()
            .map_err(|e| e.to_string())?;
        if !minted.status.success() {
            return Err(format!(
                "signpostctl bootstrap create: {}",
                String::from_utf8_lossy(&minted.stderr)
            ));
        }
        let token = String::from_utf8_lossy(&minted.stdout).trim().to_string();
        let file = std::fs::read_to_string(boxed.join("token")).map_err(|e| e.to_string())?;
        assert_eq!(file.trim(), token, "--out writes the token it printed");

        let state = tmp.path().join("state");
        let mut first = Child::spawn("router", router(&ns, &addr, &boxed, &state)?)?;
        first.wait_for_line("enrolled with the bootstrap token", WAIT)?;
        first.wait_for_line("connected to the operator", WAIT)?;
        operator.wait_for_line("router enrolled with a bootstrap token", WAIT)?;
        operator.wait_for_line("router connected", WAIT)?;
        first.stop(Duration::from_secs(3));
        assert!(state.join("identity/tls.crt").is_file());

        // Started again, it uses the identity it has: no second enrollment.
        let mut again = Child::spawn("router again", router(&ns, &addr, &boxed, &state)?)?;
        again.wait_for_line("connected to the operator", WAIT)?;
        assert!(
            !again.output().contains("enrolled with the bootstrap token"),
            "{}",
            again.output()
        );
        again.stop(Duration::from_secs(3));

        // Another box with the same token: refused, and the router gives up at once.
        let other_state = tmp.path().join("other-state");
        let started = Instant::now();
        let mut copy = Child::spawn("router copy", router(&ns, &addr, &boxed, &other_state)?)?;
        let refusal = copy.wait_for_line("was already used at", WAIT)?;
        assert!(
            refusal.contains("the operator refused the bootstrap token"),
            "{refusal}"
        );
        let status = copy.stop(Duration::from_secs(5));
        assert!(
            status.is_some_and(|s| !s.success()),
            "a refused router exits with an error: {status:?}"
        );
        assert!(started.elapsed() < WAIT);
        assert!(!other_state.join("identity/tls.crt").exists());
        operator.wait_for_line("bootstrap refused", WAIT)?;
        Ok(())
    })();
    if let Err(e) = result {
        panic!("{e}");
    }
}
