//! The real `signpost-operator` binary as a child process, in local mode on a copy of
//! `examples/retail`, with a router certificate issued by the real `signpostctl certs issue`
//! and the router's control client dialing it over 127.0.0.1: a manifest edit reaches the
//! router within a second, a broken manifest changes nothing, a foreign certificate is refused
//! in the operator's log, and a killed operator leaves the router running its config until it
//! is back.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{DEADLINE, Pki, Router, examples};

/// A running `signpost-operator`, killed when dropped.
struct OperatorProcess {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl OperatorProcess {
    fn spawn(manifests: &Path, tls_dir: &Path, listen: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_signpost-operator"))
            .args(["--manifests".as_ref(), manifests.as_os_str()])
            .args(["--listen", listen])
            .args(["--tls-dir".as_ref(), tls_dir.as_os_str()])
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("signpost-operator starts");
        let log = Arc::new(Mutex::new(String::new()));
        if let Some(stderr) = child.stderr.take() {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Ok(mut l) = log.lock() {
                        l.push_str(&line);
                        l.push('\n');
                    }
                }
            });
        }
        let (tx, rx) = mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(addr) = line.strip_prefix("listening on ") {
                        let _ = tx.send(addr.trim().to_string());
                    }
                }
            });
        }
        let addr = match rx.recv_timeout(DEADLINE) {
            Ok(a) => a.parse().expect("an address"),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "signpost-operator did not start listening: {}",
                    log.lock().map(|l| l.clone()).unwrap_or_default()
                );
            }
        };
        Self { child, addr, log }
    }

    fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Waits until the operator's log has a line containing all of `needles`.
    async fn until_logged(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let log = self.log();
            if let Some(line) = log.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
                return line.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {needles:?}:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("readable") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

/// `signpostctl certs issue`, the way an administrator would.
fn issue(ca_dir: &Path, router: &str, out: &Path) {
    let status = Command::new(env!("CARGO_BIN_EXE_signpostctl"))
        .args(["certs", "issue", "--dir"])
        .arg(ca_dir)
        .args(["--router", router, "--days", "1", "--out"])
        .arg(out)
        .status()
        .expect("signpostctl runs");
    assert!(status.success(), "signpostctl certs issue failed");
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_process_pushes_edits_keeps_serving_through_mistakes_and_survives_a_kill() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let manifests = tmp.path().join("manifests");
    copy_dir(&examples(), &manifests);
    let tls_dir = tmp.path().join("operator-tls");
    let mut operator = OperatorProcess::spawn(&manifests, &tls_dir, "127.0.0.1:0");
    operator.until_logged(&["created a new CA"]).await;

    let router_tls: PathBuf = tmp.path().join("store-0142-tls");
    issue(&tls_dir, "store-0142", &router_tls);
    let state = tmp.path().join("store-0142-state");
    let mut router = Router::start("store-0142", operator.addr, &router_tls, &state);
    let first = router
        .until("the first config", |s| s.applied_version.is_some())
        .await
        .applied_version
        .unwrap_or_default();
    operator
        .until_logged(&["router applied config", "store-0142", &first])
        .await;

    // An edit that changes store-0142's config reaches it within a second.
    let stores = manifests.join("routers-stores.yaml");
    let text = std::fs::read_to_string(&stores).expect("read");
    let started = Instant::now();
    std::fs::write(&stores, text.replacen("city: portland", "city: salem", 1)).expect("write");
    let second = router
        .until("the edited config", |s| {
            s.applied_version.as_ref().is_some_and(|v| *v != first)
        })
        .await
        .applied_version
        .unwrap_or_default();
    let took = started.elapsed();
    eprintln!(
        "manifest edit -> router applied the new version: {:.0} ms (poll 200 ms, {} cores)",
        took.as_secs_f64() * 1000.0,
        cores()
    );
    assert!(took < Duration::from_secs(1), "took {took:?}");
    let tables = router.sink.tables.current().expect("tables");
    assert_eq!(tables.version, second);
    operator
        .until_logged(&["router applied config", "store-0142", &second])
        .await;

    // A broken manifest: logged, and the last good configs stay served.
    let broken = manifests.join("zz-broken.yaml");
    std::fs::write(&broken, "kind: Router\nmetadata: {name: [\n").expect("write");
    operator
        .until_logged(&["still serving the last good configs"])
        .await;
    assert!(
        operator.log().contains("zz-broken.yaml"),
        "the file is named"
    );
    assert!(router.status.borrow().connected);
    assert_eq!(router.sink.version().as_ref(), Some(&second));
    std::fs::remove_file(&broken).expect("rm");

    // A router certificate from another CA is refused, and the operator's log says why.
    let other = Pki::new();
    let mut stranger = Router::start(
        "store-0217",
        operator.addr,
        &other.router("store-0217"),
        &tmp.path().join("stranger"),
    );
    stranger
        .until("a refusal", |s| s.last_error.is_some())
        .await;
    let line = operator
        .until_logged(&["refused", "the router refused this operator's certificate"])
        .await;
    eprintln!("operator log: {line}");
    stranger.stop().await;

    // The operator dies: the router keeps its config and keeps trying.
    let applied_before = router.sink.applied().len();
    operator.kill();
    let status = router
        .until("the loss noticed", |s| {
            !s.connected && s.last_error.is_some()
        })
        .await;
    assert_eq!(status.applied_version.as_ref(), Some(&second));
    assert_eq!(router.sink.version().as_ref(), Some(&second));

    // Back on the same address (same CA, same key master): the router reconnects, and since
    // its version is current no snapshot is needed.
    let operator = OperatorProcess::spawn(&manifests, &tls_dir, &operator.addr.to_string());
    let started = Instant::now();
    router
        .until("reconnected", |s| s.connected && s.connections >= 2)
        .await;
    eprintln!(
        "operator restarted -> router reconnected: {:.0} ms (backoff 20-200 ms, {} cores)",
        started.elapsed().as_secs_f64() * 1000.0,
        cores()
    );
    operator
        .until_logged(&["router connected", "store-0142", &second])
        .await;
    assert_eq!(
        router.sink.applied().len(),
        applied_before,
        "no snapshot was re-sent"
    );
    router.stop().await;
}
