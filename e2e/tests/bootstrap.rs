//! Zero-touch enrollment with the real binaries: `signpost-operator` in local mode,
//! `signpostctl bootstrap create` minting a token the way an administrator would, and
//! `signpost-router --bootstrap-token-file` enrolling with it and then streaming over mutual
//! TLS. A second router presenting the spent token exits with the operator's reason.
//!
//! Everything runs in one fresh network namespace (only `lo`), so the router can touch no
//! device of the machine: it enrolls and connects, then fails to open the example's devices,
//! which do not exist there. Without root the tests print `SKIPPED: ...` and pass (under `CI`
//! as root, a missing tool fails).
//!
//! A second test gives the namespace the devices the router's config names and follows the
//! probes a router pod is given: `/healthz` answers while the router waits to enroll,
//! `/readyz` says 503 until the data plane runs with the config, then 200.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use signpost_e2e::{Child, Namespace, binary, in_namespace};

const WAIT: Duration = Duration::from_secs(20);

fn path(p: impl AsRef<Path>) -> String {
    p.as_ref().display().to_string()
}

/// `signpostctl bootstrap create --router store-0142` against the local-mode operator's TLS
/// directory, writing `token` and `ca.pem` into `boxed`; the token.
fn mint(tls: &Path, boxed: &Path) -> Result<String, String> {
    let minted = Command::new(binary("signpostctl")?)
        .args([
            "bootstrap",
            "create",
            "--router",
            "store-0142",
            "--ttl",
            "1h",
        ])
        .args(["--dir", &path(tls), "--out", &path(boxed)])
        .output()
        .map_err(|e| e.to_string())?;
    if !minted.status.success() {
        return Err(format!(
            "signpostctl bootstrap create: {}",
            String::from_utf8_lossy(&minted.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&minted.stdout).trim().to_string())
}

fn operator(ns: &Namespace, tls: &Path, listen: &str) -> Result<Child, String> {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/retail");
    let mut cmd = ns.command(&path(binary("signpost-operator")?));
    cmd.args(["--manifests", &path(&examples), "--listen", listen])
        .args(["--tls-dir", &path(tls)])
        .env("RUST_LOG", "info");
    Child::spawn("signpost-operator", cmd)
}

/// The router enrolling as store-0142; `metrics` is its `--metrics` (or `off`).
fn router(
    ns: &Namespace,
    addr: &str,
    boxed: &Path,
    state: &Path,
    metrics: &str,
) -> Result<Command, String> {
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
        metrics,
        "--driver",
        "af-packet",
    ])
    .env("RUST_LOG", "info");
    Ok(cmd)
}

#[test]
fn a_router_enrolls_with_a_minted_token_and_a_spent_token_is_refused() {
    if signpost_e2e::skip_unless_able(signpost_e2e::available()) {
        return;
    }
    let result = (|| -> Result<(), String> {
        let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
        let ns = Namespace::create("boot")?;
        let tls = tmp.path().join("operator");
        let mut operator = operator(&ns, &tls, "127.0.0.1:0")?;
        let line = operator.wait_for_line("listening on", WAIT)?;
        let addr = line
            .rsplit("listening on ")
            .next()
            .map(str::trim)
            .unwrap_or_default()
            .to_string();

        let boxed = tmp.path().join("box");
        let token = mint(&tls, &boxed)?;
        let file = std::fs::read_to_string(boxed.join("token")).map_err(|e| e.to_string())?;
        assert_eq!(file.trim(), token, "--out writes the token it printed");

        let state = tmp.path().join("state");
        let mut first = Child::spawn("router", router(&ns, &addr, &boxed, &state, "off")?)?;
        first.wait_for_line("enrolled with the bootstrap token", WAIT)?;
        first.wait_for_line("connected to the operator", WAIT)?;
        operator.wait_for_line("router enrolled with a bootstrap token", WAIT)?;
        operator.wait_for_line("router connected", WAIT)?;
        first.stop(Duration::from_secs(3));
        assert!(state.join("identity/tls.crt").is_file());

        // Started again, it uses the identity it has: no second enrollment.
        let mut again = Child::spawn("router again", router(&ns, &addr, &boxed, &state, "off")?)?;
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
        let mut copy = Child::spawn(
            "router copy",
            router(&ns, &addr, &boxed, &other_state, "off")?,
        )?;
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

/// `GET PATH` on the router's metrics port inside `ns`: the status code and body.
fn probe(ns: &Namespace, path: &'static str) -> Result<(u16, String), String> {
    in_namespace(ns, move || {
        let mut s = TcpStream::connect("127.0.0.1:9464").map_err(|e| format!("{path}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: router\r\nConnection: close\r\n\r\n"
        )
        .map_err(|e| e.to_string())?;
        let mut text = String::new();
        s.read_to_string(&mut text).map_err(|e| e.to_string())?;
        let code = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("{path}: not an HTTP response: {text}"))?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        Ok((code, body.to_string()))
    })
    .join()
    .map_err(|_| "probe thread panicked".to_string())?
}

#[test]
fn probes_answer_from_the_start_and_readiness_follows_the_config() {
    if signpost_e2e::skip_unless_able(signpost_e2e::available()) {
        return;
    }
    let result = (|| -> Result<(), String> {
        let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
        let ns = Namespace::create("probe")?;
        // The devices store-0142's config names, so that its data plane can start here.
        for device in ["eth0", "wwan0", "eth1"] {
            let peer = format!("{device}p");
            ns.ip(&["link", "add", device, "type", "veth", "peer", "name", &peer])?;
            ns.ip(&["link", "set", device, "up"])?;
            ns.ip(&["link", "set", &peer, "up"])?;
        }
        // The router starts first: no operator, no token yet. It keeps trying to enroll.
        let boxed = tmp.path().join("box");
        let state = tmp.path().join("state");
        let cmd = router(&ns, "127.0.0.1:7443", &boxed, &state, "127.0.0.1:9464")?;
        let mut router = Child::spawn("router", cmd)?;
        router.wait_for_line("metrics listening", WAIT)?;
        assert_eq!(probe(&ns, "/healthz")?, (200, "ok".to_string()));
        let (code, body) = probe(&ns, "/readyz")?;
        assert_eq!((code, body.as_str()), (503, "not ready"), "no config yet");
        assert_eq!(probe(&ns, "/metrics")?.0, 200);

        let tls = tmp.path().join("operator");
        let mut operator = operator(&ns, &tls, "127.0.0.1:7443")?;
        operator.wait_for_line("listening on", WAIT)?;
        mint(&tls, &boxed)?;
        router.wait_for_line("enrolled with the bootstrap token", WAIT)?;
        router.wait_for_line("packet I/O started", WAIT)?;
        let deadline = Instant::now() + WAIT;
        loop {
            match probe(&ns, "/readyz")? {
                (200, body) if body == "ok" => break,
                other if Instant::now() >= deadline => {
                    return Err(format!(
                        "/readyz still {other:?} after the data plane started"
                    ));
                }
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        assert_eq!(
            probe(&ns, "/healthz")?,
            (200, "ok".to_string()),
            "packet I/O is alive"
        );
        let (code, metrics) = probe(&ns, "/metrics")?;
        assert!(
            code == 200 && metrics.contains("signpost_config_info"),
            "{metrics}"
        );
        router.stop(Duration::from_secs(3));
        Ok(())
    })();
    if let Err(e) = result {
        panic!("{e}");
    }
}
