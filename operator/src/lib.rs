//! The Signpost operator: CRD types, admission checks usable without a cluster, the config
//! compiler, the certificate authority, config distribution and local mode; (as they land)
//! controllers.

pub mod admin_cli;
pub mod admission;
pub mod bootstrap;
pub mod compiler;
pub mod crd;
pub mod distribution;
pub mod identity;
pub mod local;
pub mod manifests;
pub mod render;
pub mod svr_decode;
