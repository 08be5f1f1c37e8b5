//! Logs and traces: the global `tracing` subscriber, and span export over OTLP.
//!
//! [`init`] installs one subscriber for the process: an [`EnvFilter`] (the same directives as
//! `RUST_LOG`), a formatter writing text or one JSON object per line to stderr, and, when an
//! OTLP endpoint is given, a `tracing-opentelemetry` layer whose spans a batch processor sends
//! to that endpoint over OTLP/gRPC (tonic). The returned [`TelemetryGuard`] flushes and shuts
//! the exporter down when dropped.
//!
//! The exporter's gRPC channel lives on the tokio runtime, and the batch processor's own thread
//! waits for it: call [`init`] inside a multi-threaded runtime and drop the guard before that
//! runtime ends (for example, hold it in `async fn main` under `#[tokio::main]`).

use std::io;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields` (with `message`),
    /// and the current `span` and `spans` with their fields. For log collectors.
    Json,
}

/// What [`init`] sets up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogOptions {
    pub format: LogFormat,
    /// `EnvFilter` directives, e.g. `info` or `info,signpost_cnf::control=debug`.
    pub filter: String,
    /// An OTLP/gRPC collector, e.g. `http://127.0.0.1:4317`. `None`: spans are not exported.
    /// Plain `http://` only: the exporter is built without a TLS stack.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` resource attribute of exported spans, e.g. `signpost-router`.
    pub service_name: String,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            filter: "info".to_owned(),
            otlp_endpoint: None,
            service_name: "signpost-router".to_owned(),
        }
    }
}

/// Keeps the OTLP exporter alive; dropping it flushes the spans still queued and shuts the
/// exporter down (waiting up to the exporter's timeout, 10 s, when the collector is slow).
#[must_use = "dropping the guard at once shuts the span exporter down"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Flushes and shuts the exporter down now, reporting a failure instead of logging it.
    pub fn shutdown(mut self) -> Result<(), String> {
        match self.provider.take() {
            Some(provider) => provider
                .shutdown()
                .map_err(|e| format!("shutting down the OTLP span exporter: {e}")),
            None => Ok(()),
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            // The subscriber may still be installed, but the message must not be lost if not.
            eprintln!("signpost: shutting down the OTLP span exporter: {e}");
        }
    }
}

/// Installs the global subscriber described by `options`. Fails when the filter does not
/// parse, the OTLP endpoint is not a usable URL, there is no tokio runtime for the exporter, or
/// a global subscriber is already installed.
pub fn init(options: &LogOptions) -> Result<TelemetryGuard, String> {
    let provider = match &options.otlp_endpoint {
        Some(endpoint) => Some(otlp_tracer_provider(endpoint, &options.service_name)?),
        None => None,
    };
    // Colours only for a person at a terminal, not in a collector's files.
    let ansi = io::IsTerminal::is_terminal(&io::stderr());
    subscriber(options, io::stderr, ansi, provider.as_ref())?
        .try_init()
        .map_err(|e| format!("installing the log subscriber: {e}"))?;
    if let Some(provider) = &provider {
        opentelemetry::global::set_tracer_provider(provider.clone());
    }
    Ok(TelemetryGuard { provider })
}

/// The OTLP endpoint for traces: the command line's `--otlp-endpoint` when given, else the
/// standard `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else `OTEL_EXPORTER_OTLP_ENDPOINT`; empty
/// values count as unset. `None`: no span export.
pub fn otlp_endpoint(flag: Option<&str>) -> Option<String> {
    resolve_otlp_endpoint(flag, |name| std::env::var(name).ok())
}

fn resolve_otlp_endpoint(
    flag: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Option<String> {
    let set = |value: &String| !value.trim().is_empty();
    flag.map(str::to_owned)
        .filter(set)
        .or_else(|| env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").filter(set))
        .or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT").filter(set))
}

/// A tracer provider that batches spans and exports them to `endpoint` over OTLP/gRPC, with
/// `service_name` as the `service.name` resource attribute (`OTEL_RESOURCE_ATTRIBUTES` adds
/// others). Must be called inside a tokio runtime: the gRPC channel is created on it (lazily:
/// an unreachable collector is not an error here, only lost spans later).
pub fn otlp_tracer_provider(
    endpoint: &str,
    service_name: &str,
) -> Result<SdkTracerProvider, String> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(
            "the OTLP exporter needs a tokio runtime: set telemetry up inside the router's runtime"
                .to_owned(),
        );
    }
    if !endpoint.starts_with("http://") {
        return Err(format!(
            "OTLP endpoint `{endpoint}` must start with http:// (OTLP/gRPC without TLS, e.g. \
             http://127.0.0.1:4317)"
        ));
    }
    use opentelemetry_otlp::WithExportConfig as _;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| format!("OTLP endpoint `{endpoint}`: {e}"))?;
    let resource = Resource::builder()
        .with_service_name(service_name.to_owned())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// The subscriber [`init`] installs, writing log lines to `writer` (injectable for tests),
/// with ANSI colours in text lines when `ansi`.
pub(crate) fn subscriber<W>(
    options: &LogOptions,
    writer: W,
    ansi: bool,
    provider: Option<&SdkTracerProvider>,
) -> Result<impl Subscriber + Send + Sync + 'static, String>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(&options.filter)
        .map_err(|e| format!("log filter `{}`: {e}", options.filter))?;
    let otel = provider.map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("signpost"))
            .with_filter(filter_fn(|metadata| {
                !is_exporter_internal(metadata.target())
            }))
    });
    Ok(tracing_subscriber::registry()
        .with(filter)
        .with(fmt_layer(options.format, writer, ansi))
        .with(otel))
}

fn fmt_layer<S, W>(format: LogFormat, writer: W, ansi: bool) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
    match format {
        LogFormat::Text => layer.with_ansi(ansi).boxed(),
        LogFormat::Json => layer.with_ansi(false).json().boxed(),
    }
}

/// Spans of the libraries the exporter itself runs on. Exporting them would make every export
/// produce spans to export (at `debug` and below), so they go to the log only.
fn is_exporter_internal(target: &str) -> bool {
    const INTERNAL: [&str; 6] = ["h2", "hyper", "tonic", "tower", "opentelemetry", "reqwest"];
    INTERNAL.iter().any(|crate_name| {
        target
            .strip_prefix(crate_name)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::") || rest.starts_with('_'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
        TraceService, TraceServiceServer,
    };
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    };
    use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
    use std::sync::{Arc, Mutex};

    /// A writer whose output the test reads back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Captured {
        type Writer = Captured;
        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().expect("lock").clone()).expect("UTF-8 log")
        }
    }

    #[test]
    fn json_format_writes_one_object_per_line_with_the_fields() {
        let captured = Captured::default();
        let options = LogOptions {
            format: LogFormat::Json,
            filter: "info".to_owned(),
            ..LogOptions::default()
        };
        let subscriber = subscriber(&options, captured.clone(), false, None).expect("subscriber");
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("session", tenant = "pos");
            let _entered = span.enter();
            tracing::info!(peer = "hub-1", packets = 3u64, "path up");
            tracing::warn!("quote \" and\nnewline");
            tracing::debug!("filtered out at info");
        });
        let text = captured.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        let first: serde_json::Value = serde_json::from_str(lines[0]).expect("JSON line");
        assert_eq!(first["level"], "INFO");
        assert_eq!(first["target"], module_path!());
        assert_eq!(first["fields"]["message"], "path up");
        assert_eq!(first["fields"]["peer"], "hub-1");
        assert_eq!(first["fields"]["packets"], 3);
        assert_eq!(first["span"]["name"], "session");
        assert_eq!(first["span"]["tenant"], "pos");
        assert!(first["timestamp"].is_string(), "{first}");
        let second: serde_json::Value = serde_json::from_str(lines[1]).expect("JSON line");
        assert_eq!(second["level"], "WARN");
        assert_eq!(second["fields"]["message"], "quote \" and\nnewline");
    }

    #[test]
    fn text_format_is_not_json() {
        let captured = Captured::default();
        let subscriber =
            subscriber(&LogOptions::default(), captured.clone(), false, None).expect("subscriber");
        tracing::subscriber::with_default(subscriber, || tracing::info!("hello"));
        let text = captured.text();
        assert!(text.contains(" INFO ") && text.contains("hello"), "{text}");
        assert!(
            !text.contains('\x1b'),
            "no colour codes when not asked: {text:?}"
        );
        assert!(serde_json::from_str::<serde_json::Value>(text.trim()).is_err());
    }

    #[test]
    fn a_bad_filter_is_reported() {
        let options = LogOptions {
            filter: "info,[".to_owned(),
            ..LogOptions::default()
        };
        let error = subscriber(&options, Captured::default(), false, None)
            .err()
            .expect("an error");
        assert!(error.starts_with("log filter `info,[`"), "{error}");
    }

    #[test]
    fn the_exporter_needs_a_runtime_and_an_http_url() {
        let error =
            otlp_tracer_provider("http://127.0.0.1:4317", "x").expect_err("no runtime here");
        assert!(error.contains("tokio runtime"), "{error}");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let _enter = runtime.enter();
        let error = otlp_tracer_provider("127.0.0.1:4317", "x").expect_err("no scheme");
        assert!(error.contains("must start with http://"), "{error}");
    }

    /// A real OTLP/gRPC collector endpoint: hands each export request to the test.
    struct Receiver(tokio::sync::mpsc::UnboundedSender<ExportTraceServiceRequest>);

    #[tonic::async_trait]
    impl TraceService for Receiver {
        async fn export(
            &self,
            request: tonic::Request<ExportTraceServiceRequest>,
        ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
            let _ = self.0.send(request.into_inner());
            Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
        }
    }

    fn string_value(value: Option<&AnyValue>) -> Option<&str> {
        match value?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s),
            _ => None,
        }
    }

    // Multi-threaded: the batch processor's thread waits on the gRPC channel, which runs on
    // the runtime's other worker while this one blocks in `force_flush`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spans_reach_a_real_otlp_receiver() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(Receiver(tx)))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );

        let provider =
            otlp_tracer_provider(&format!("http://{addr}"), "signpost-test").expect("provider");
        let options = LogOptions {
            filter: "info".to_owned(),
            ..LogOptions::default()
        };
        let captured = Captured::default();
        let subscriber =
            subscriber(&options, captured.clone(), false, Some(&provider)).expect("subscriber");
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("classify_flow", tenant = "pos");
            let _entered = span.enter();
            tracing::info!("classified");
        });
        tokio::task::spawn_blocking(move || {
            provider.force_flush().expect("force flush");
            provider.shutdown().expect("shutdown");
        })
        .await
        .expect("flush task");

        let request = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
            .await
            .expect("an export within 10 s")
            .expect("an export request");
        let resource_spans = request.resource_spans.first().expect("resource spans");
        let resource = resource_spans.resource.as_ref().expect("a resource");
        let service_name = resource
            .attributes
            .iter()
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| string_value(kv.value.as_ref()));
        assert_eq!(service_name, Some("signpost-test"));
        let spans: Vec<_> = resource_spans
            .scope_spans
            .iter()
            .flat_map(|scope| &scope.spans)
            .collect();
        let span = spans
            .iter()
            .find(|span| span.name == "classify_flow")
            .unwrap_or_else(|| panic!("no span `classify_flow` in {spans:?}"));
        let tenant = span
            .attributes
            .iter()
            .find(|kv| kv.key == "tenant")
            .and_then(|kv| string_value(kv.value.as_ref()));
        assert_eq!(tenant, Some("pos"));
        assert_eq!(
            span.events.len(),
            1,
            "the log event is recorded on the span"
        );
        // The log line went to the writer too.
        assert!(captured.text().contains("classified"));
        server.abort();
    }

    #[test]
    fn the_flag_wins_over_the_standard_variables() {
        let env = |traces: Option<&str>, all: Option<&str>| {
            let traces = traces.map(str::to_owned);
            let all = all.map(str::to_owned);
            move |name: &str| match name {
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" => traces.clone(),
                "OTEL_EXPORTER_OTLP_ENDPOINT" => all.clone(),
                _ => None,
            }
        };
        let flag = Some("http://flag:4317");
        let traces = Some("http://traces:4317");
        let all = Some("http://all:4317");
        assert_eq!(
            resolve_otlp_endpoint(flag, env(traces, all)).as_deref(),
            flag
        );
        assert_eq!(
            resolve_otlp_endpoint(None, env(traces, all)).as_deref(),
            traces
        );
        assert_eq!(
            resolve_otlp_endpoint(Some(""), env(Some(" "), all)).as_deref(),
            all
        );
        assert_eq!(resolve_otlp_endpoint(None, env(None, None)), None);
    }

    #[test]
    fn exporter_internal_targets() {
        assert!(is_exporter_internal("h2::proto::connection"));
        assert!(is_exporter_internal("hyper_util::client"));
        assert!(is_exporter_internal("tonic"));
        assert!(is_exporter_internal("opentelemetry_sdk::trace"));
        assert!(!is_exporter_internal("signpost_cnf::control"));
        assert!(!is_exporter_internal("h2o"));
    }
}
