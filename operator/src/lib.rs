//! The Signpost operator: CRD types, admission checks usable without a cluster, the config
//! compiler, the certificate authority, config distribution, zero-touch enrollment, local mode
//! and cluster mode (kube-rs controllers).

pub mod admin_cli;
pub mod admission;
pub mod bootstrap;
pub mod compiler;
pub mod controller;
pub mod crd;
pub mod distribution;
pub mod identity;
pub mod local;
pub mod manifests;
pub mod metrics;
pub mod render;
pub mod svr_decode;
