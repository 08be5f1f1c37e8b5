//! The contract between the Signpost operator and its routers.
//!
//! The Rust code is generated from `proto/signpost/v1/*.proto` by
//! `cargo run -p signpost-proto --example protogen` and checked in under `src/gen/`; a test
//! fails when it drifts from the .proto files. See `config.proto` for the compatibility rules.

/// `signpost.v1`: `RouterConfig`, the `Distribution` stream and the router's `Admin` service.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    include!("gen/signpost.v1.rs");
}
