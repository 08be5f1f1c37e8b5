//! The metrics endpoint: a small HTTP/1.1 server for Prometheus scrapes and liveness probes.
//!
//! * `GET /metrics` (or `HEAD`): 200, `Content-Type: text/plain; version=0.0.4; charset=utf-8`,
//!   the body from the render function (an [`Exposition`](super::Exposition), usually).
//! * `GET /healthz`: 200 `ok`; with [`serve_metrics_and_probes`], 503 and the liveness
//!   function's reason when it reports one.
//! * `GET /readyz`, served by [`serve_metrics_and_readiness`] and [`serve_metrics_and_probes`]
//!   only: 200 `ok` when the readiness function says so, else 503 `not ready`.
//! * Any other path: 404; another method on a known path: 405.
//!
//! The render function runs on the connection's task for each scrape, so it should be quick
//! (read counters, format them), not wait on anything.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

/// The exposition format's content type, as Prometheus asks for it.
pub const CONTENT_TYPE_0_0_4: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How long in-flight scrapes may take to finish after shutdown is asked for.
const DRAIN: Duration = Duration::from_secs(2);

/// A scrape or probe taking longer than this to send its request is cut off.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `/metrics` and `/healthz` on `listener` until `shutdown` completes, then stops
/// accepting, lets open requests finish for up to 2 s, and returns.
///
/// A failed `accept` (say, out of file descriptors) is logged and retried after 100 ms rather
/// than ending the server: losing metrics for the rest of the process's life would be worse.
/// So this returns `Ok(())` after `shutdown`; the `io::Result` is kept for errors that end it.
pub async fn serve_metrics(
    listener: TcpListener,
    render: Arc<dyn Fn() -> String + Send + Sync>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve(listener, render, Probes::default(), shutdown).await
}

/// [`serve_metrics`], plus `GET /readyz` answered from `ready` (a readiness probe).
pub async fn serve_metrics_and_readiness(
    listener: TcpListener,
    render: Arc<dyn Fn() -> String + Send + Sync>,
    ready: Arc<dyn Fn() -> bool + Send + Sync>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let probes = Probes {
        live: None,
        ready: Some(ready),
    };
    serve(listener, render, probes, shutdown).await
}

/// Liveness: `Ok`, or why the process should be restarted (the body of the 503).
pub type Liveness = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// [`serve_metrics_and_readiness`], with `GET /healthz` answered from `live` (a liveness
/// probe) instead of always `ok`.
pub async fn serve_metrics_and_probes(
    listener: TcpListener,
    render: Arc<dyn Fn() -> String + Send + Sync>,
    live: Liveness,
    ready: Arc<dyn Fn() -> bool + Send + Sync>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let probes = Probes {
        live: Some(live),
        ready: Some(ready),
    };
    serve(listener, render, probes, shutdown).await
}

/// The probe functions an endpoint answers `/healthz` and `/readyz` from.
#[derive(Clone, Default)]
struct Probes {
    live: Option<Liveness>,
    ready: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
}

async fn serve(
    listener: TcpListener,
    render: Arc<dyn Fn() -> String + Send + Sync>,
    probes: Probes,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics endpoint: accept failed; retrying in 100 ms");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let render = Arc::clone(&render);
        let probes = probes.clone();
        let service = service_fn(move |request| {
            let response = respond(&request, render.as_ref(), &probes);
            async move { Ok::<_, Infallible>(response) }
        });
        let connection = http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "metrics endpoint: connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("metrics endpoint: open connections did not finish within 2 s");
    }
    Ok(())
}

fn respond(
    request: &Request<Incoming>,
    render: &(dyn Fn() -> String + Send + Sync),
    probes: &Probes,
) -> Response<Full<Bytes>> {
    let get_or_head = matches!(*request.method(), Method::GET | Method::HEAD);
    let ready = probes.ready.as_deref();
    match request.uri().path() {
        "/metrics" if get_or_head => {
            let mut response = Response::new(Full::new(Bytes::from(render())));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_0_0_4));
            response
        }
        "/healthz" if get_or_head => match probes.live.as_deref().map(|live| live()) {
            Some(Err(why)) => text(StatusCode::SERVICE_UNAVAILABLE, why),
            _ => text(StatusCode::OK, "ok"),
        },
        "/readyz" if get_or_head && ready.is_some() => {
            if ready.is_some_and(|ready| ready()) {
                text(StatusCode::OK, "ok")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready")
            }
        }
        "/metrics" | "/healthz" => method_not_allowed(),
        "/readyz" if ready.is_some() => method_not_allowed(),
        _ => status(StatusCode::NOT_FOUND),
    }
}

fn method_not_allowed() -> Response<Full<Bytes>> {
    let mut response = status(StatusCode::METHOD_NOT_ALLOWED);
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    response
}

fn text(code: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = code;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let body = format!("{}\n", code.canonical_reason().unwrap_or(""));
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = code;
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::{Exposition, MetricKind};
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// Sends one HTTP/1.1 request with `Connection: close` and returns the whole response.
    async fn fetch(addr: std::net::SocketAddr, method: &str, path: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let request =
            format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
            .await
            .expect("response within 5 s")
            .expect("read");
        String::from_utf8(response).expect("UTF-8 response")
    }

    fn head_and_body(response: &str) -> (&str, &str) {
        response
            .split_once("\r\n\r\n")
            .expect("a header/body boundary")
    }

    #[tokio::test]
    async fn a_real_scrape_over_tcp() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let packets = Arc::new(AtomicU64::new(0));
        let render: Arc<dyn Fn() -> String + Send + Sync> = {
            let packets = Arc::clone(&packets);
            Arc::new(move || {
                let mut e = Exposition::new();
                e.family("signpost_packets_total", "Packets.", MetricKind::Counter)
                    .sample(&[("interface", "wan0")], packets.load(Ordering::Relaxed));
                e.finish()
            })
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_metrics(listener, render, async {
            let _ = stopped.await;
        }));

        packets.store(41, Ordering::Relaxed);
        let response = fetch(addr, "GET", "/metrics").await;
        let (head, body) = head_and_body(&response);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
            "{head}"
        );
        assert_eq!(
            body,
            "# HELP signpost_packets_total Packets.\n\
             # TYPE signpost_packets_total counter\n\
             signpost_packets_total{interface=\"wan0\"} 41\n"
        );

        // Rendered per scrape, not once.
        packets.store(42, Ordering::Relaxed);
        let response = fetch(addr, "GET", "/metrics").await;
        assert!(response.ends_with("signpost_packets_total{interface=\"wan0\"} 42\n"));

        let response = fetch(addr, "GET", "/healthz").await;
        let (head, body) = head_and_body(&response);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert_eq!(body, "ok");

        let response = fetch(addr, "GET", "/other").await;
        assert!(
            response.starts_with("HTTP/1.1 404 Not Found\r\n"),
            "{response}"
        );

        let response = fetch(addr, "POST", "/metrics").await;
        assert!(
            response.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{response}"
        );

        stop.send(()).expect("server still running");
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("server stops within 5 s")
            .expect("server task")
            .expect("server result");
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "the listener is closed after shutdown"
        );
    }

    #[tokio::test]
    async fn liveness_answers_503_with_its_reason_and_readiness_stays_separate() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let stalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&stalled);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_metrics_and_probes(
            listener,
            Arc::new(String::new),
            Arc::new(move || {
                if flag.load(Ordering::Relaxed) {
                    Err("packet I/O made no progress for 6 s".to_string())
                } else {
                    Ok(())
                }
            }),
            Arc::new(|| false),
            async {
                let _ = stopped.await;
            },
        ));
        let response = fetch(addr, "GET", "/healthz").await;
        let (head, body) = head_and_body(&response);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert_eq!(body, "ok");
        let response = fetch(addr, "GET", "/readyz").await;
        assert!(
            response.starts_with("HTTP/1.1 503"),
            "alive but not ready: {response}"
        );
        stalled.store(true, Ordering::Relaxed);
        let response = fetch(addr, "GET", "/healthz").await;
        let (head, body) = head_and_body(&response);
        assert!(
            head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{head}"
        );
        assert_eq!(body, "packet I/O made no progress for 6 s");
        let _ = stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    }

    #[tokio::test]
    async fn readiness_follows_its_function_and_only_where_asked_for() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&ready);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_metrics_and_readiness(
            listener,
            Arc::new(String::new),
            Arc::new(move || flag.load(Ordering::Relaxed)),
            async {
                let _ = stopped.await;
            },
        ));
        let response = fetch(addr, "GET", "/readyz").await;
        assert!(
            response.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{response}"
        );
        ready.store(true, Ordering::Relaxed);
        let response = fetch(addr, "GET", "/readyz").await;
        let (head, body) = head_and_body(&response);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert_eq!(body, "ok");
        let response = fetch(addr, "POST", "/readyz").await;
        assert!(response.starts_with("HTTP/1.1 405"), "{response}");
        let _ = stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), server).await;

        // serve_metrics has no readiness endpoint.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_metrics(listener, Arc::new(String::new), async {
            let _ = stopped.await;
        }));
        let response = fetch(addr, "GET", "/readyz").await;
        assert!(response.starts_with("HTTP/1.1 404"), "{response}");
        let _ = stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    }
}
