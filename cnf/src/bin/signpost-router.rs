//! The router process. Its runtime — AF_XDP driver, config stream from the operator, admin API,
//! telemetry — is not built yet (see the README's status table); until it is, the binary says so
//! and fails instead of pretending to route.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "signpost-router {}: the router runtime is not built yet (AF_XDP driver, config \
         stream, admin API). See README, \"What works today\".",
        env!("CARGO_PKG_VERSION")
    );
    ExitCode::from(2)
}
