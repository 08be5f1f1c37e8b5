//! `signpostctl sessions | paths | counters | explain`: a client of a router's local admin API
//! (`signpost.v1.Admin`), printing tables for people or JSON for scripts.
//!
//! The router serves the admin API over plain HTTP/2 on a local address, `127.0.0.1:7900` by
//! default; like FRR's `vtysh`, it is for someone on the router's host (or `kubectl exec` into
//! its pod), so there is no TLS and no authentication beyond reaching the address.
//!
//! ```text
//! signpostctl sessions [--tenant T] [--service S] [--limit N] [--router ADDR] [--json]
//! signpostctl paths [--router ADDR] [--json]
//! signpostctl counters [--prefix P] [--router ADDR] [--json]
//! signpostctl explain --ingress NAME --src A --dst B --proto tcp|udp|icmp [--sport N] [--dport N]
//!                     [--router ADDR] [--json]
//! ```
//!
//! * `sessions`: one row per session — short id, tenant, service, the original 5-tuple, the
//!   waypoint 5-tuple on the WAN (`-` when local), peer/path, security mode, packets, bytes,
//!   age, idle time, state — then `N of TOTAL sessions` (the router caps the list at `--limit`
//!   or its own default, and counts all that match).
//! * `paths`: peer, path id, state, latency, jitter, loss, sessions on the path; then the
//!   service locations' health (probed here, or as their router reports it).
//! * `counters`: `name{label="value",...} value`, sorted by name, then labels.
//! * `explain`: whether a flow's first packet arriving on `--ingress` (a LAN network or WAN
//!   interface) would be allowed, by which tenant, service and policy, over which peer/path,
//!   and each step of the decision. Exits 0 whether allowed or denied (the answer is the
//!   output); `--dport` is required for tcp and udp, ports are ignored for icmp.
//!
//! `--json` prints the router's response as one JSON object with the proto's field names:
//! integers are numbers, enums are lowercase words (`"tcp"`, `"encrypt"`, `"up"`), and an
//! absent message is `null`. Durations and sizes keep their unit in the field name (`age_ms`,
//! `latency_us`, `loss_ppm`, `bytes`).
//!
//! Exit codes: 0 answered; 1 the router could not be reached ("cannot reach router admin API
//! at ADDR: cause") or answered with an error; 2 bad arguments.

use std::fmt::{self, Write as _};
use std::net::IpAddr;
use std::time::Duration;

use serde_json::{Value, json};
use signpost_proto::v1::admin_client::AdminClient;
use signpost_proto::v1::{
    Counter, ExplainRequest, ExplainResponse, FiveTuple, GetCountersRequest, GetCountersResponse,
    ListPathsRequest, ListPathsResponse, ListSessionsRequest, ListSessionsResponse, LocationState,
    PathState, PathStatus, Protocol, SecurityMode, SessionInfo,
};
use tonic::transport::{Channel, Endpoint};

/// Where the router's admin API listens unless `--router` says otherwise.
pub const DEFAULT_ROUTER: &str = "127.0.0.1:7900";

/// How long to wait for the TCP connection to the router.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one admin call may take, connection included.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// One question to the router.
#[derive(Clone, Debug, PartialEq)]
pub enum Query {
    Sessions(ListSessionsRequest),
    Paths,
    Counters { prefix: String },
    Explain(ExplainRequest),
}

/// What went wrong talking to the router.
#[derive(Debug)]
pub enum AdminError {
    /// No connection: wrong address, router not running, admin API not enabled, or the
    /// connection was lost.
    Unreachable { addr: String, cause: String },
    /// The router answered the call with an error status.
    Call {
        addr: String,
        call: &'static str,
        status: tonic::Status,
    },
}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminError::Unreachable { addr, cause } => {
                write!(f, "cannot reach router admin API at {addr}: {cause}")
            }
            AdminError::Call { addr, call, status } => write!(
                f,
                "router admin API at {addr} failed {call}: {} ({:?})",
                status.message(),
                status.code()
            ),
        }
    }
}

impl std::error::Error for AdminError {}

/// Asks `query` of the router at `addr` (`HOST:PORT`, or an `http://` URL) and returns what
/// to print: a table, or pretty JSON when `json`. Ends with a newline.
pub async fn run(addr: &str, query: Query, json: bool) -> Result<String, AdminError> {
    let mut client = connect(addr).await?;
    let text = match query {
        Query::Sessions(request) => {
            let response = client
                .list_sessions(request)
                .await
                .map_err(|status| call_error(addr, "ListSessions", status))?
                .into_inner();
            if json {
                pretty(&sessions_json(&response))
            } else {
                sessions_table(&response)
            }
        }
        Query::Paths => {
            let response = client
                .list_paths(ListPathsRequest {})
                .await
                .map_err(|status| call_error(addr, "ListPaths", status))?
                .into_inner();
            if json {
                pretty(&paths_json(&response))
            } else {
                paths_table(&response)
            }
        }
        Query::Counters { prefix } => {
            let response = client
                .get_counters(GetCountersRequest { prefix })
                .await
                .map_err(|status| call_error(addr, "GetCounters", status))?
                .into_inner();
            if json {
                pretty(&counters_json(&response))
            } else {
                counters_text(&response)
            }
        }
        Query::Explain(request) => {
            let response = client
                .explain(request)
                .await
                .map_err(|status| call_error(addr, "Explain", status))?
                .into_inner();
            if json {
                pretty(&explain_json(&response))
            } else {
                explain_text(&response)
            }
        }
    };
    Ok(text)
}

/// Connects to the admin API now (not lazily), so an unreachable router is reported as such
/// before any call.
pub async fn connect(addr: &str) -> Result<AdminClient<Channel>, AdminError> {
    let unreachable = |cause: String| AdminError::Unreachable {
        addr: addr.to_owned(),
        cause,
    };
    let uri = if addr.contains("://") {
        if !addr.starts_with("http://") {
            return Err(unreachable(
                "the admin API is plain HTTP/2: give HOST:PORT or an http:// URL".to_owned(),
            ));
        }
        addr.to_owned()
    } else {
        format!("http://{addr}")
    };
    let endpoint = Endpoint::from_shared(uri)
        .map_err(|e| unreachable(format!("not a HOST:PORT address ({})", chain(&e))))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CALL_TIMEOUT);
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| unreachable(chain(&e)))?;
    Ok(AdminClient::new(channel))
}

/// A call that failed because the connection did is reported like a failed connect.
fn call_error(addr: &str, call: &'static str, status: tonic::Status) -> AdminError {
    if status.code() == tonic::Code::Unavailable {
        AdminError::Unreachable {
            addr: addr.to_owned(),
            cause: status.message().to_owned(),
        }
    } else {
        AdminError::Call {
            addr: addr.to_owned(),
            call,
            status,
        }
    }
}

/// An error's sources, "b: c", or its own message when it has none: tonic's own message is
/// just "transport error", the cause is in the sources.
fn chain(error: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if parts.last().is_none_or(|last| !last.ends_with(&next)) {
            parts.push(next);
        }
        source = e.source();
    }
    if parts.is_empty() {
        error.to_string()
    } else {
        parts.join(": ")
    }
}

/// The `explain` request from the command line's words, checked.
pub fn explain_request(
    ingress: &str,
    src: &str,
    dst: &str,
    protocol: &str,
    src_port: Option<u16>,
    dst_port: Option<u16>,
) -> Result<ExplainRequest, String> {
    let src_ip: IpAddr = src
        .parse()
        .map_err(|_| format!("--src `{src}` is not an IP address"))?;
    let dst_ip: IpAddr = dst
        .parse()
        .map_err(|_| format!("--dst `{dst}` is not an IP address"))?;
    if src_ip.is_ipv4() != dst_ip.is_ipv4() {
        return Err(format!(
            "--src `{src}` and --dst `{dst}` are not the same IP version"
        ));
    }
    let protocol = match protocol.to_ascii_lowercase().as_str() {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        "icmp" | "icmpv6" if dst_ip.is_ipv6() => Protocol::Icmpv6,
        "icmp" => Protocol::Icmp,
        other => return Err(format!("--proto `{other}`: expected tcp, udp or icmp")),
    };
    let ports = matches!(protocol, Protocol::Tcp | Protocol::Udp);
    let (src_port, dst_port) = match (ports, dst_port) {
        (true, None) => return Err("--dport is required for tcp and udp".to_owned()),
        (true, Some(dport)) => (src_port.unwrap_or(0), dport),
        (false, _) => (0, 0),
    };
    if ingress.is_empty() {
        return Err("--ingress must name a LAN network or WAN interface".to_owned());
    }
    Ok(ExplainRequest {
        ingress: ingress.to_owned(),
        flow: Some(FiveTuple {
            src: src_ip.to_string(),
            dst: dst_ip.to_string(),
            src_port: u32::from(src_port),
            dst_port: u32::from(dst_port),
            protocol: protocol as i32,
        }),
    })
}

// ----- tables -----

/// The `sessions` table and its `N of TOTAL sessions` line.
pub fn sessions_table(response: &ListSessionsResponse) -> String {
    let rows = response.sessions.iter().map(|s| {
        vec![
            short_id(&s.id),
            dash(&s.tenant),
            dash(&s.service),
            tuple_text(s.original.as_ref()),
            tuple_text(s.waypoint.as_ref()),
            peer_path(&s.peer, &s.path_id),
            security_word(s.security).to_owned(),
            s.packets.to_string(),
            bytes_text(s.bytes),
            millis_text(s.age_ms),
            millis_text(s.idle_ms),
            dash(&s.state),
        ]
    });
    let mut out = table(
        &[
            "ID",
            "TENANT",
            "SERVICE",
            "ORIGINAL",
            "WAYPOINT",
            "PEER/PATH",
            "SECURITY",
            "PACKETS",
            "BYTES",
            "AGE",
            "IDLE",
            "STATE",
        ],
        rows,
    );
    let _ = writeln!(
        out,
        "{} of {} sessions",
        response.sessions.len(),
        response.total
    );
    out
}

/// The `paths` table, then the locations' health when there is any.
pub fn paths_table(response: &ListPathsResponse) -> String {
    let mut out = if response.paths.is_empty() {
        "no paths\n".to_owned()
    } else {
        path_rows(response)
    };
    if !response.locations.is_empty() {
        let rows = response.locations.iter().map(|l| {
            vec![
                dash(&l.service),
                dash(&l.router),
                dash(&l.address),
                location_state_word(l.state).to_owned(),
                format!("{:.1} s", l.since_ms as f64 / 1000.0),
                dash(&l.detail),
            ]
        });
        out.push('\n');
        out += &table(
            &[
                "SERVICE", "LOCATION", "ADDRESS", "HEALTH", "SINCE", "DETAIL",
            ],
            rows,
        );
    }
    out
}

fn location_state_word(state: i32) -> &'static str {
    match LocationState::try_from(state) {
        Ok(LocationState::Up) => "up",
        Ok(LocationState::Down) => "down",
        _ => "-",
    }
}

fn path_rows(response: &ListPathsResponse) -> String {
    let rows = response.paths.iter().map(|p| {
        vec![
            dash(&p.peer),
            dash(&p.path_id),
            path_state_word(p.state).to_owned(),
            micros_text(p.latency_us),
            micros_text(p.jitter_us),
            loss_text(p.loss_ppm),
            p.sessions.to_string(),
        ]
    });
    table(
        &[
            "PEER", "PATH", "STATE", "LATENCY", "JITTER", "LOSS", "SESSIONS",
        ],
        rows,
    )
}

/// `name{label="value",...} value` per counter, sorted by name and then labels.
pub fn counters_text(response: &GetCountersResponse) -> String {
    let mut lines: Vec<(String, u64)> = response
        .counters
        .iter()
        .map(|c| (counter_key(c), c.value))
        .collect();
    lines.sort();
    if lines.is_empty() {
        return "no counters\n".to_owned();
    }
    lines
        .iter()
        .map(|(key, value)| format!("{key} {value}\n"))
        .collect()
}

/// The `explain` answer, one field a line, then the numbered steps.
pub fn explain_text(response: &ExplainResponse) -> String {
    let mut out = String::new();
    let verdict = if response.allowed {
        "allowed"
    } else {
        "denied"
    };
    let _ = writeln!(out, "verdict:  {verdict}");
    let _ = writeln!(out, "tenant:   {}", dash(&response.tenant));
    let _ = writeln!(out, "service:  {}", dash(&response.service));
    let _ = writeln!(out, "policy:   {}", dash(&response.policy));
    if !response.allowed || !response.reason.is_empty() {
        let _ = writeln!(out, "reason:   {}", dash(&response.reason));
    }
    let _ = writeln!(
        out,
        "path:     {}",
        peer_path(&response.peer, &response.path_id)
    );
    if response.steps.is_empty() {
        let _ = writeln!(out, "steps:    -");
    } else {
        let _ = writeln!(out, "steps:");
        for (i, step) in response.steps.iter().enumerate() {
            let _ = writeln!(out, "  {}. {step}", i + 1);
        }
    }
    out
}

/// Left-aligned columns two spaces apart, no trailing spaces.
fn table(headers: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let rows: Vec<Vec<String>> = rows.collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header_cells: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header_cells).chain(&rows) {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            let _ = write!(line, "{cell:<width$}  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        s.to_owned()
    }
}

/// The first 8 hex digits: enough to tell sessions apart on one router.
fn short_id(id: &str) -> String {
    match id.get(..8) {
        Some(prefix) => prefix.to_owned(),
        None => dash(id),
    }
}

fn peer_path(peer: &str, path: &str) -> String {
    match (peer.is_empty(), path.is_empty()) {
        (true, true) => "-".to_owned(),
        (false, true) => peer.to_owned(),
        (true, false) => format!("-/{path}"),
        (false, false) => format!("{peer}/{path}"),
    }
}

/// `tcp 10.0.0.1:40000 -> 10.1.0.2:443`; `icmp 10.0.0.1 -> 10.1.0.2`; `-` when absent.
fn tuple_text(tuple: Option<&FiveTuple>) -> String {
    let Some(t) = tuple.filter(|t| !t.src.is_empty() || !t.dst.is_empty()) else {
        return "-".to_owned();
    };
    let protocol = protocol_word(t.protocol);
    if matches!(
        Protocol::try_from(t.protocol),
        Ok(Protocol::Tcp | Protocol::Udp)
    ) {
        format!(
            "{protocol} {} -> {}",
            host_port(&t.src, t.src_port),
            host_port(&t.dst, t.dst_port)
        )
    } else {
        format!("{protocol} {} -> {}", t.src, t.dst)
    }
}

fn host_port(host: &str, port: u32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn protocol_word(protocol: i32) -> String {
    match Protocol::try_from(protocol) {
        Ok(Protocol::Tcp) => "tcp".to_owned(),
        Ok(Protocol::Udp) => "udp".to_owned(),
        Ok(Protocol::Icmp) => "icmp".to_owned(),
        Ok(Protocol::Icmpv6) => "icmpv6".to_owned(),
        Ok(Protocol::Unspecified) => "unspecified".to_owned(),
        // A protocol this signpostctl does not know yet: show its number.
        Err(_) => format!("proto-{protocol}"),
    }
}

fn security_word(mode: i32) -> &'static str {
    match SecurityMode::try_from(mode) {
        Ok(SecurityMode::None) => "none",
        Ok(SecurityMode::Authenticate) => "authenticate",
        Ok(SecurityMode::Encrypt) => "encrypt",
        Ok(SecurityMode::Unspecified) => "-",
        Err(_) => "unknown",
    }
}

fn path_state_word(state: i32) -> &'static str {
    match PathState::try_from(state) {
        Ok(PathState::Down) => "down",
        Ok(PathState::Init) => "init",
        Ok(PathState::Up) => "up",
        Ok(PathState::Degraded) => "degraded",
        Ok(PathState::Unspecified) => "-",
        Err(_) => "unknown",
    }
}

/// `512 B`, `1.5 KiB`, `3.2 MiB`, `1.0 GiB`.
fn bytes_text(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `850ms`, `12.3s`, `5m02s`, `3h04m`, `2d03h`.
fn millis_text(ms: u64) -> String {
    let s = ms / 1000;
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{}.{}s", s, (ms % 1000) / 100),
        60_000..3_600_000 => format!("{}m{:02}s", s / 60, s % 60),
        3_600_000..86_400_000 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// `850 µs`, `12.3 ms`.
fn micros_text(us: u32) -> String {
    if us < 1000 {
        format!("{us} µs")
    } else {
        format!("{:.1} ms", f64::from(us) / 1000.0)
    }
}

/// Parts per million as a percentage: `0.25%`.
fn loss_text(ppm: u32) -> String {
    format!("{:.2}%", f64::from(ppm) / 10_000.0)
}

/// `name{key="value",...}` with label values escaped as in the Prometheus text format.
fn counter_key(counter: &Counter) -> String {
    let mut key = counter.name.clone();
    if !counter.labels.is_empty() {
        key.push('{');
        for (i, label) in counter.labels.iter().enumerate() {
            if i > 0 {
                key.push(',');
            }
            key.push_str(&label.key);
            key.push_str("=\"");
            for c in label.value.chars() {
                match c {
                    '\\' => key.push_str("\\\\"),
                    '"' => key.push_str("\\\""),
                    '\n' => key.push_str("\\n"),
                    c => key.push(c),
                }
            }
            key.push('"');
        }
        key.push('}');
    }
    key
}

// ----- JSON -----

fn pretty(value: &Value) -> String {
    // Serializing a `Value` cannot fail (its keys are strings), but say so if it ever does.
    let mut text = serde_json::to_string_pretty(value)
        .unwrap_or_else(|e| format!("{{\"error\": \"printing JSON: {e}\"}}"));
    text.push('\n');
    text
}

fn tuple_json(tuple: Option<&FiveTuple>) -> Value {
    match tuple {
        None => Value::Null,
        Some(t) => json!({
            "src": t.src,
            "dst": t.dst,
            "src_port": t.src_port,
            "dst_port": t.dst_port,
            "protocol": protocol_word(t.protocol),
        }),
    }
}

fn session_json(s: &SessionInfo) -> Value {
    json!({
        "id": s.id,
        "tenant": s.tenant,
        "service": s.service,
        "original": tuple_json(s.original.as_ref()),
        "waypoint": tuple_json(s.waypoint.as_ref()),
        "peer": s.peer,
        "path_id": s.path_id,
        "security": security_json(s.security),
        "packets": s.packets,
        "bytes": s.bytes,
        "age_ms": s.age_ms,
        "idle_ms": s.idle_ms,
        "state": s.state,
    })
}

fn security_json(mode: i32) -> &'static str {
    match security_word(mode) {
        "-" => "unspecified",
        word => word,
    }
}

/// `{"sessions": [...], "total": N}`.
pub fn sessions_json(response: &ListSessionsResponse) -> Value {
    json!({
        "sessions": response.sessions.iter().map(session_json).collect::<Vec<_>>(),
        "total": response.total,
    })
}

fn path_json(p: &PathStatus) -> Value {
    let state = match path_state_word(p.state) {
        "-" => "unspecified",
        word => word,
    };
    json!({
        "peer": p.peer,
        "path_id": p.path_id,
        "state": state,
        "latency_us": p.latency_us,
        "jitter_us": p.jitter_us,
        "loss_ppm": p.loss_ppm,
        "sessions": p.sessions,
    })
}

/// `{"paths": [...], "locations": [...]}`.
pub fn paths_json(response: &ListPathsResponse) -> Value {
    let locations: Vec<Value> = response
        .locations
        .iter()
        .map(|l| {
            json!({
                "service": l.service,
                "router": l.router,
                "address": l.address,
                "state": match location_state_word(l.state) {
                    "-" => "unspecified",
                    word => word,
                },
                "detail": l.detail,
                "since_ms": l.since_ms,
            })
        })
        .collect();
    json!({
        "paths": response.paths.iter().map(path_json).collect::<Vec<_>>(),
        "locations": locations,
    })
}

/// `{"counters": [{"name", "labels": {key: value}, "value"}]}`, sorted as the text is.
pub fn counters_json(response: &GetCountersResponse) -> Value {
    let mut counters: Vec<&Counter> = response.counters.iter().collect();
    counters.sort_by_cached_key(|c| (counter_key(c), c.value));
    let counters: Vec<Value> = counters
        .into_iter()
        .map(|c| {
            let labels: serde_json::Map<String, Value> = c
                .labels
                .iter()
                .map(|l| (l.key.clone(), Value::from(l.value.clone())))
                .collect();
            json!({ "name": c.name, "labels": labels, "value": c.value })
        })
        .collect();
    json!({ "counters": counters })
}

/// The response's fields as they are.
pub fn explain_json(response: &ExplainResponse) -> Value {
    json!({
        "allowed": response.allowed,
        "tenant": response.tenant,
        "service": response.service,
        "policy": response.policy,
        "reason": response.reason,
        "peer": response.peer,
        "path_id": response.path_id,
        "steps": response.steps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_sizes_and_rates_carry_their_units() {
        assert_eq!(millis_text(850), "850ms");
        assert_eq!(millis_text(12_345), "12.3s");
        assert_eq!(millis_text(302_000), "5m02s");
        assert_eq!(millis_text(3 * 3_600_000 + 4 * 60_000), "3h04m");
        assert_eq!(millis_text(2 * 86_400_000 + 3 * 3_600_000), "2d03h");
        assert_eq!(bytes_text(512), "512 B");
        assert_eq!(bytes_text(1536), "1.5 KiB");
        assert_eq!(bytes_text(3 * 1024 * 1024 + 200 * 1024), "3.2 MiB");
        assert_eq!(bytes_text(u64::MAX), "16384.0 PiB");
        assert_eq!(micros_text(850), "850 µs");
        assert_eq!(micros_text(12_345), "12.3 ms");
        assert_eq!(loss_text(2_500), "0.25%");
        assert_eq!(loss_text(1_000_000), "100.00%");
    }

    #[test]
    fn tuples_read_as_flows() {
        let tcp = FiveTuple {
            src: "10.0.0.1".into(),
            dst: "2001:db8::2".into(),
            src_port: 40000,
            dst_port: 443,
            protocol: Protocol::Tcp as i32,
        };
        assert_eq!(
            tuple_text(Some(&tcp)),
            "tcp 10.0.0.1:40000 -> [2001:db8::2]:443"
        );
        let icmp = FiveTuple {
            protocol: Protocol::Icmp as i32,
            ..tcp.clone()
        };
        assert_eq!(tuple_text(Some(&icmp)), "icmp 10.0.0.1 -> 2001:db8::2");
        assert_eq!(tuple_text(None), "-");
        assert_eq!(tuple_text(Some(&FiveTuple::default())), "-");
        let odd = FiveTuple {
            protocol: 132,
            ..tcp
        };
        assert_eq!(tuple_text(Some(&odd)), "proto-132 10.0.0.1 -> 2001:db8::2");
    }

    #[test]
    fn explain_arguments_are_checked() {
        let request = explain_request("pos-lan", "10.0.0.1", "10.1.0.2", "tcp", None, Some(443))
            .expect("valid");
        let flow = request.flow.expect("a flow");
        assert_eq!((flow.src_port, flow.dst_port), (0, 443));
        assert_eq!(flow.protocol, Protocol::Tcp as i32);
        let icmp6 =
            explain_request("lan", "fd00::1", "fd00::2", "icmp", None, None).expect("valid");
        assert_eq!(
            icmp6.flow.expect("a flow").protocol,
            Protocol::Icmpv6 as i32
        );
        let error = |r: Result<ExplainRequest, String>| r.expect_err("invalid");
        assert_eq!(
            error(explain_request(
                "lan", "10.0.0.1", "10.0.0.2", "udp", None, None
            )),
            "--dport is required for tcp and udp"
        );
        assert_eq!(
            error(explain_request(
                "lan",
                "pos",
                "10.0.0.2",
                "udp",
                None,
                Some(53)
            )),
            "--src `pos` is not an IP address"
        );
        assert!(
            error(explain_request(
                "lan",
                "10.0.0.1",
                "::1",
                "udp",
                None,
                Some(53)
            ))
            .contains("not the same IP version")
        );
        assert!(
            error(explain_request(
                "lan",
                "10.0.0.1",
                "10.0.0.2",
                "sctp",
                None,
                Some(1)
            ))
            .contains("expected tcp, udp or icmp")
        );
    }

    #[test]
    fn short_ids_never_slice_inside_a_character() {
        assert_eq!(short_id("0123456789abcdef"), "01234567");
        assert_eq!(short_id("abc"), "abc");
        assert_eq!(short_id(""), "-");
        assert_eq!(short_id("ééééé"), "éééé");
    }
}
