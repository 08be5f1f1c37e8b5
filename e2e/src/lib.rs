//! The Signpost lab's building blocks: network namespaces joined by veth pairs, the project's
//! binaries as child processes, threads that run inside a namespace, lab traffic, and (feature
//! `lab`, on by default) the retail lab built from a chain's manifests. The end-to-end tests in
//! `e2e/tests/` and `signpost-lab` are built from them; every namespace and process a test
//! creates is removed when its owner is dropped, also when the test fails.
//!
//! Needs root, `ip` (iproute2) and `ethtool` (the lab also `bridge`, `nft` and `sysctl`).
//! [`available`] says whether this machine can; a test that cannot run prints
//! `SKIPPED: <why>` so the skip is visible — except as root under `CI`, where
//! [`skip_unless_able`] fails instead, so a missing tool cannot pass for a green run.

#[cfg(feature = "bench")]
pub mod bench;
pub mod capture;
#[cfg(feature = "lab")]
pub mod compare;
#[cfg(feature = "lab")]
pub mod demo;
#[cfg(feature = "lab")]
pub mod lab;
pub mod netns;
pub mod plot;
pub mod process;
#[cfg(feature = "bench")]
pub mod router_pair;
pub mod traffic;

pub use netns::{Namespace, available, enter, in_namespace, remove_all_on_signal};
pub use process::{Child, binary};

/// For a test: `true` (after printing `SKIPPED: why`) when `why` says the machine cannot run
/// it. Not being root is a skip anywhere; a missing tool as root with `CI` set is a failure
/// (CI installs every tool in `.ci/run`, so the gap is CI's to fix, not to hide).
pub fn skip_unless_able(why: Option<String>) -> bool {
    let Some(why) = why else { return false };
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root && std::env::var_os("CI").is_some() {
        panic!("CI is set but this test cannot run: {why}");
    }
    skipped(&why);
    true
}

/// Prints `SKIPPED: why` where it is seen: straight to the process's stderr, past the test
/// harness's capture of `eprintln!`, so a skipped test does not pass silently.
pub fn skipped(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED: {why}");
}
