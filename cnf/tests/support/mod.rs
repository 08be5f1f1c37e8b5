//! Shared by the namespace tests and the `xdp_forward` benchmark.

pub mod netns;
pub mod router;
