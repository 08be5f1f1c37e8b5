//! The Signpost lab's building blocks: network namespaces joined by veth pairs, the project's
//! binaries as child processes, and threads that run inside a namespace. The end-to-end tests
//! in `e2e/tests/` are built from them; every namespace and process a test creates is removed
//! when its owner is dropped, also when the test fails.
//!
//! Needs root, `ip` (iproute2) and `ethtool`. [`available`] says whether this machine can; a
//! test that cannot run prints `SKIPPED: <why>` so the skip is visible.

pub mod bench;
pub mod netns;
pub mod process;
pub mod router_pair;

pub use netns::{Namespace, available, enter, in_namespace};
pub use process::{Child, binary};
