//! The Signpost operator: CRD types, admission checks usable without a cluster, and (as they
//! land) the config compiler, controllers and config distribution.

pub mod admission;
pub mod compiler;
pub mod crd;
pub mod manifests;
pub mod render;
pub mod svr_decode;
