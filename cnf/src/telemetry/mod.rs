//! The router's telemetry: logs and traces ([`init`]) and the Prometheus endpoint
//! ([`Exposition`], [`serve_metrics`]).
//!
//! Like [`control`](crate::control), this is I/O at the edge: the sans-IO core emits `tracing`
//! events and keeps counters; this module decides where they go.
//!
//! * [`init`] installs the process's `tracing` subscriber from [`LogOptions`]: text or JSON
//!   lines on stderr, filtered by `EnvFilter` directives, and spans exported over OTLP/gRPC
//!   when an endpoint is given ([`otlp_endpoint`] picks `--otlp-endpoint` or the standard
//!   `OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`). Keep the returned [`TelemetryGuard`] until exit: dropping it flushes spans.
//! * [`Exposition`] builds the text exposition format 0.0.4; [`serve_metrics`] answers
//!   `GET /metrics` with it (rendered per scrape) and `GET /healthz` with `ok`;
//!   [`serve_metrics_and_probes`] also answers `/healthz` and `/readyz` from probe functions.
//! * [`Heartbeat`] tells a live loop from a dead one by whether its progress counter moves.

mod exposition;
mod health;
mod logging;
mod metrics_http;

pub use exposition::{Exposition, MetricKind, SampleValue};
pub use health::Heartbeat;
pub use logging::{
    LogFormat, LogOptions, TelemetryGuard, init, otlp_endpoint, otlp_tracer_provider,
};
pub use metrics_http::{
    CONTENT_TYPE_0_0_4, Liveness, serve_metrics, serve_metrics_and_probes,
    serve_metrics_and_readiness,
};
