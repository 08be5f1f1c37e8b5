//! The router's admin API (`signpost.v1.Admin`): sessions, paths, counters, and "explain" —
//! what the router would do with a flow's first packet, step by step. Served on a local
//! address in plain HTTP/2 (like FRR's vtysh, it is for whoever is on the router's host or pod);
//! `signpostctl sessions | paths | counters | explain --router ADDR` reads it.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use signpost_proto::v1::admin_server::{Admin, AdminServer};
use signpost_proto::v1::{
    Counter, ExplainRequest, ExplainResponse, FiveTuple, GetCountersRequest, GetCountersResponse,
    Label, ListPathsRequest, ListPathsResponse, ListSessionsRequest, ListSessionsResponse,
    LocationHealth, LocationState, PathState, PathStatus, Protocol, SessionInfo,
};
use tonic::{Request, Response, Status};

use super::Runtime;
use crate::classify::TenantId;
use crate::packet::ip_protocol;
use crate::path::bfd::State as BfdState;
use crate::path::book::Liveness;
use crate::session::FlowKey;

/// Sessions returned when a request asks for no limit.
pub const DEFAULT_SESSION_LIMIT: usize = 1000;

/// The admin service over a running router.
pub struct AdminService {
    runtime: Arc<Runtime>,
}

impl AdminService {
    pub fn new(runtime: Arc<Runtime>) -> AdminServer<Self> {
        AdminServer::new(Self { runtime })
    }
}

fn five_tuple(key: &FlowKey) -> FiveTuple {
    FiveTuple {
        src: key.src().to_string(),
        dst: key.dst().to_string(),
        src_port: u32::from(key.src_port()),
        dst_port: u32::from(key.dst_port()),
        protocol: match key.protocol() {
            ip_protocol::TCP => Protocol::Tcp,
            ip_protocol::UDP => Protocol::Udp,
            ip_protocol::ICMP => Protocol::Icmp,
            _ => Protocol::Unspecified,
        } as i32,
    }
}

fn counter(name: &str, labels: &[(&str, &str)], value: u64) -> Counter {
    let mut labels: Vec<Label> = labels
        .iter()
        .map(|(k, v)| Label {
            key: (*k).to_string(),
            value: (*v).to_string(),
        })
        .collect();
    labels.sort_by(|a, b| a.key.cmp(&b.key));
    Counter {
        name: name.to_string(),
        labels,
        value,
    }
}

/// The paths' state (BFD and SLA), as `ListPaths` and the metrics show it.
fn path_statuses(runtime: &Runtime) -> Vec<PathStatus> {
    let (monitor, _) = runtime.path_monitor(Instant::now());
    runtime
        .paths()
        .into_iter()
        .map(|p| {
            let bfd = monitor
                .iter()
                .find(|m| m.peer == p.peer && m.path == p.path)
                .map(|m| m.state);
            let state = match (bfd, p.health.liveness) {
                _ if p.degraded => PathState::Degraded,
                (Some(BfdState::Up), _) | (None, Liveness::Up) => PathState::Up,
                (Some(BfdState::Init), _) => PathState::Init,
                (Some(_), _) | (None, Liveness::Down) => PathState::Down,
                // No monitor verdict yet (or monitoring disabled): in use, state unknown.
                (None, Liveness::Unknown) => PathState::Unspecified,
            };
            let q = p.health.quality;
            PathStatus {
                peer: p.peer,
                path_id: p.path,
                state: state as i32,
                latency_us: q.latency_us.unwrap_or(0),
                jitter_us: q.jitter_us.unwrap_or(0),
                loss_ppm: q.loss_ppm.unwrap_or(0),
                sessions: p.sessions,
            }
        })
        .collect()
}

/// Service-location health as `ListPaths` shows it.
fn location_statuses(runtime: &Runtime) -> Vec<LocationHealth> {
    let (views, _, _) = runtime.service_health(Instant::now());
    views
        .into_iter()
        .map(|v| LocationHealth {
            service: v.service,
            router: v.router,
            address: v.address.map(|a| a.to_string()).unwrap_or_default(),
            state: if v.up {
                LocationState::Up
            } else {
                LocationState::Down
            } as i32,
            detail: v.detail,
            since_ms: u64::try_from(v.since.as_millis()).unwrap_or(u64::MAX),
        })
        .collect()
}

/// Location gauges and the probe and health-message counters.
fn location_counters(runtime: &Runtime) -> Vec<Counter> {
    let mut out = Vec::new();
    for l in location_statuses(runtime) {
        out.push(counter(
            "signpost_location_healthy",
            &[
                ("service", l.service.as_str()),
                ("router", l.router.as_str()),
                ("address", l.address.as_str()),
            ],
            u64::from(l.state == LocationState::Up as i32),
        ));
    }
    let (_, probes, messages) = runtime.service_health(Instant::now());
    for (name, _, value) in probes.named() {
        out.push(counter(
            "signpost_health_probes_total",
            &[("event", name)],
            value,
        ));
    }
    for (name, _, value) in messages.named() {
        out.push(counter(
            "signpost_health_messages_total",
            &[("event", name)],
            value,
        ));
    }
    out
}

/// Path gauges (state, quality, sessions) and the path monitor's counters.
fn path_counters(runtime: &Runtime) -> Vec<Counter> {
    let mut out = Vec::new();
    for p in path_statuses(runtime) {
        let labels = [("peer", p.peer.as_str()), ("path", p.path_id.as_str())];
        let up = matches!(
            PathState::try_from(p.state),
            Ok(PathState::Up | PathState::Degraded)
        );
        out.push(counter("signpost_path_up", &labels, u64::from(up)));
        out.push(counter(
            "signpost_path_degraded",
            &labels,
            u64::from(p.state == PathState::Degraded as i32),
        ));
        out.push(counter(
            "signpost_path_latency_us",
            &labels,
            u64::from(p.latency_us),
        ));
        out.push(counter(
            "signpost_path_jitter_us",
            &labels,
            u64::from(p.jitter_us),
        ));
        out.push(counter(
            "signpost_path_loss_ppm",
            &labels,
            u64::from(p.loss_ppm),
        ));
        out.push(counter("signpost_path_sessions", &labels, p.sessions));
    }
    let (_, bfd) = runtime.path_monitor(Instant::now());
    for (name, _, value) in bfd.named() {
        out.push(counter(
            "signpost_bfd_packets_total",
            &[("event", name)],
            value,
        ));
    }
    let t = runtime.path_monitor_timing();
    out.push(counter("signpost_bfd_timer_wakeups_total", &[], t.wakeups));
    out.push(counter(
        "signpost_bfd_timer_late_us_total",
        &[],
        t.late_total_us,
    ));
    out.push(counter(
        "signpost_bfd_timer_late_max_us",
        &[],
        t.late_max_us,
    ));
    out
}

/// Every counter of the router, named as the Prometheus exporter names them.
pub fn all_counters(runtime: &Runtime) -> Vec<Counter> {
    let snap = runtime.counters();
    let p = &snap.pipeline;
    let mut out = Vec::new();
    for reason in super::drop_reasons() {
        out.push(counter(
            "signpost_drops_total",
            &[("reason", reason.name())],
            p.dropped(*reason),
        ));
    }
    for (name, _, value) in snap.runtime.named() {
        out.push(counter(
            "signpost_runtime_frames_total",
            &[("event", name)],
            value,
        ));
    }
    for (name, value) in [
        ("to-wan", p.to_wan),
        ("to-lan", p.to_lan),
        ("local", p.local),
    ] {
        out.push(counter(
            "signpost_forwarded_packets_total",
            &[("direction", name)],
            value,
        ));
    }
    for (name, value) in [
        ("created", p.sessions_created),
        ("expired", p.sessions_expired),
        ("closed-by-peer", p.sessions_closed_by_peer),
        ("rebound", p.sessions_rebound),
        ("sla-fallback", p.sessions_sla_fallback),
        ("relocated", p.sessions_relocated),
        ("reset-location-down", p.sessions_reset),
    ] {
        out.push(counter(
            "signpost_session_events_total",
            &[("event", name)],
            value,
        ));
    }
    out.push(counter(
        "signpost_metadata_packets_total",
        &[("direction", "sent")],
        p.metadata_sent,
    ));
    out.push(counter(
        "signpost_metadata_packets_total",
        &[("direction", "received")],
        p.metadata_received,
    ));
    out.push(counter("signpost_sessions", &[], snap.sessions));
    for ((tenant, service), n) in &snap.sessions_by {
        out.push(counter(
            "signpost_sessions_by_service",
            &[("tenant", tenant), ("service", service)],
            *n,
        ));
    }
    out.push(counter(
        "signpost_session_table_bytes",
        &[],
        snap.session_table_bytes,
    ));
    for ((tenant, reason), n) in &snap.guard_drops {
        out.push(counter(
            "signpost_guard_drops_total",
            &[("reason", reason.name()), ("tenant", tenant)],
            *n,
        ));
    }
    out.push(counter(
        "signpost_guard_source_entries",
        &[],
        snap.guard_sources,
    ));
    out.push(counter(
        "signpost_guard_source_evictions_total",
        &[],
        snap.guard_source_evictions,
    ));
    for ((wan, class), s) in &snap.qos {
        let labels = [("interface", wan.as_str()), ("class", *class)];
        for (event, packets) in [
            ("sent", s.sent_packets),
            ("queued", s.queued_packets),
            ("dropped", s.dropped_packets),
        ] {
            let with_event = [labels[0], labels[1], ("event", event)];
            out.push(counter("signpost_qos_packets_total", &with_event, packets));
        }
        for (event, bytes) in [("sent", s.sent_bytes), ("dropped", s.dropped_bytes)] {
            let with_event = [labels[0], labels[1], ("event", event)];
            out.push(counter("signpost_qos_bytes_total", &with_event, bytes));
        }
        out.push(counter("signpost_qos_queue_bytes", &labels, s.queue_bytes));
    }
    out.extend(path_counters(runtime));
    out.extend(location_counters(runtime));
    if let Some(fast) = runtime.fast_path() {
        // The XDP program's own counts: forwarded in the kernel, or punted and why.
        for (stat, value) in crate::io::fastpath::Stat::ALL.iter().zip(fast.stats) {
            out.push(counter(
                "signpost_fast_path_total",
                &[("event", stat.name())],
                value,
            ));
        }
        out.push(counter("signpost_fast_path_sessions", &[], fast.sessions));
        out.push(counter(
            "signpost_fast_path_installs_total",
            &[],
            fast.installs,
        ));
        out.push(counter(
            "signpost_fast_path_insert_errors_total",
            &[],
            fast.insert_errors,
        ));
        out.push(counter(
            "signpost_fast_path_synced_packets_total",
            &[],
            p.fast_path,
        ));
    }
    for (device, s) in runtime.port_stats() {
        for (what, value) in [
            ("rx_packets", s.rx_packets),
            ("rx_bytes", s.rx_bytes),
            ("tx_packets", s.tx_packets),
            ("tx_bytes", s.tx_bytes),
            ("dropped_rx", s.dropped_rx),
            ("dropped_tx", s.dropped_tx),
            ("kernel_rx_dropped", s.kernel_rx_dropped),
        ] {
            out.push(counter(
                &format!("signpost_interface_{what}_total"),
                &[("interface", &device)],
                value,
            ));
        }
    }
    out
}

fn parse_protocol(p: i32) -> Result<u8, Status> {
    match Protocol::try_from(p) {
        Ok(Protocol::Tcp) => Ok(ip_protocol::TCP),
        Ok(Protocol::Udp) => Ok(ip_protocol::UDP),
        Ok(Protocol::Icmp) => Ok(ip_protocol::ICMP),
        _ => Err(Status::invalid_argument(
            "flow.protocol must be tcp, udp or icmp",
        )),
    }
}

/// What the router's tables say about a first packet arriving on `ingress` (a LAN interface
/// name, optionally `NAME@VLAN`), in words.
pub fn explain(runtime: &Runtime, request: &ExplainRequest) -> Result<ExplainResponse, Status> {
    let Some(tables) = runtime.slot.current() else {
        return Err(Status::failed_precondition("this router has no config yet"));
    };
    let flow = request
        .flow
        .as_ref()
        .ok_or_else(|| Status::invalid_argument("flow is required"))?;
    let src: IpAddr = flow.src.parse().map_err(|_| {
        Status::invalid_argument(format!("flow.src `{}` is not an address", flow.src))
    })?;
    let dst: IpAddr = flow.dst.parse().map_err(|_| {
        Status::invalid_argument(format!("flow.dst `{}` is not an address", flow.dst))
    })?;
    let protocol = parse_protocol(flow.protocol)?;
    let port = u16::try_from(flow.dst_port)
        .map_err(|_| Status::invalid_argument("flow.dst_port is above 65535"))?;
    let (name, vlan) = match request.ingress.split_once('@') {
        Some((n, v)) => (
            n,
            Some(
                v.parse::<u16>()
                    .map_err(|_| Status::invalid_argument(format!("`{v}` is not a VLAN id")))?,
            ),
        ),
        None => (request.ingress.as_str(), None),
    };
    let mut out = ExplainResponse::default();
    let deny = |mut out: ExplainResponse, reason: &str, step: String| {
        out.reason = reason.to_string();
        out.steps.push(step);
        Ok(out)
    };
    let Some(lan) = tables.lans.iter().position(|l| l.name == name) else {
        let names: Vec<&str> = tables.lans.iter().map(|l| l.name.as_str()).collect();
        return Err(Status::invalid_argument(format!(
            "`{name}` is not a LAN interface of router {} (it has: {})",
            tables.router,
            names.join(", ")
        )));
    };
    let c = &tables.classifier;
    let Some(tenant) = c.tenant(lan, vlan, src) else {
        return deny(
            out,
            "no-tenant",
            format!("source {src} on {} belongs to no tenant", request.ingress),
        );
    };
    out.tenant = c.tenant_info(tenant).name.clone();
    out.steps.push(format!(
        "source {src} on {} → tenant {}",
        request.ingress, out.tenant
    ));
    let Some(service) = c.service(dst, protocol, port) else {
        return deny(
            out,
            "no-service",
            format!("{dst} port {port} matches no service"),
        );
    };
    out.service = c.service_info(service).name.clone();
    out.steps
        .push(format!("{dst} port {port} → service {}", out.service));
    // The tenant or an enclosing one may hold the rule, as in the pipeline.
    let mut holder = Some(tenant);
    let mut rule = None;
    while let Some(t) = holder {
        if let Some(r) = c.rule(t, service) {
            rule = Some(r);
            break;
        }
        holder = c.tenant_info(TenantId(t.0)).parent;
    }
    let Some(rule) = rule else {
        let step = format!(
            "no policy allows {} to reach {} (deny by default)",
            out.tenant, out.service
        );
        return deny(out, "no-policy", step);
    };
    let info = c.rule_info(rule);
    out.policy = info.policy.clone();
    out.steps.push(format!(
        "policy {} allows it, security {}",
        info.policy,
        crate::pipeline::Pipeline::security_name(info.security)
    ));
    out.steps.push(guard_and_qos_step(&tables, rule));
    let (health, _, _) = runtime.service_health(Instant::now());
    let health = health.into_iter().filter(|l| l.service == out.service);
    if tables.fronted_addresses(service).is_some() {
        out.allowed = true;
        out.steps
            .push("this router fronts the service: delivered on its LAN".into());
        for l in health.filter(|l| l.router == tables.router) {
            out.steps.push(format!(
                "health of {} here: {} ({})",
                l.address.map(|a| a.to_string()).unwrap_or_default(),
                if l.up { "up" } else { "down" },
                l.detail
            ));
        }
        return Ok(out);
    }
    for l in health.filter(|l| !l.up && l.address.is_none()) {
        out.steps
            .push(format!("location at {} skipped: {}", l.router, l.detail));
    }
    if tables.routes_of(service).is_empty() {
        let step = format!("no peer of this router fronts {}", out.service);
        return deny(out, "no-route", step);
    }
    let preference = info.path_preference.join(", ");
    let Some((peer, path, fallback)) = runtime.path_choice(&tables, service, rule) else {
        let step = format!(
            "no path the policy allows ([{preference}]) is up towards any location of {}",
            out.service
        );
        return deny(out, "no-path", step);
    };
    let Some(peer) = tables.peers.get(usize::from(peer)) else {
        return deny(out, "no-route", "the service's peer is gone".into());
    };
    let Some(p) = peer.paths.get(usize::from(path)) else {
        return deny(out, "no-path", "the chosen path is gone".into());
    };
    out.peer = peer.name.clone();
    out.path_id = p.id.clone();
    out.allowed = true;
    let why = if fallback {
        "no allowed path meets the policy's SLA now: the least bad one"
    } else {
        "the best allowed path that is up and meets the policy's SLA"
    };
    out.steps.push(format!(
        "to peer {} over path {} ({}), path preference [{preference}]: {why}",
        peer.name, p.id, p.vector,
    ));
    Ok(out)
}

/// The class, rate limits and admission limits a session under `rule` gets, in words.
fn guard_and_qos_step(tables: &crate::pipeline::Tables, rule: crate::classify::RuleId) -> String {
    let (class, dscp) = tables.qos.rule_class(usize::from(rule.0));
    let spec = tables.qos.classes.get(class);
    let mut text = format!(
        "class {} ({}, DSCP {dscp})",
        spec.map_or("?", |s| s.name()),
        match spec {
            Some(s) if s.strict && s.limit_percent > 0 => {
                format!(
                    "strict priority, at most {}% of a shaped link",
                    s.limit_percent
                )
            }
            Some(s) if s.strict => "strict priority".to_string(),
            Some(s) => format!("weight {}", s.weight),
            None => "unknown".to_string(),
        }
    );
    if let Some((rate, burst)) = tables.qos.rule_rate(usize::from(rule.0)) {
        text += &format!(
            "; rate limit {} bit/s per tenant x service (burst {burst} bytes)",
            rate * 8
        );
    }
    let per_source = tables.guard.source_rate(rule);
    if per_source > 0 {
        text += &format!("; at most {per_source} new sessions/s per source");
    }
    if tables.guard.tenant_rate() > 0 {
        text += &format!(
            "; the tenant at most {} new sessions/s",
            tables.guard.tenant_rate()
        );
    }
    text += &format!(
        "; half-open TCP at most {} per tenant, {} in all",
        tables.limits.max_half_open_per_tenant, tables.limits.max_half_open
    );
    text
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn list_sessions(
        &self,
        request: Request<ListSessionsRequest>,
    ) -> Result<Response<ListSessionsResponse>, Status> {
        let r = request.into_inner();
        let limit = if r.limit == 0 {
            DEFAULT_SESSION_LIMIT
        } else {
            r.limit as usize
        };
        let mut views = self.runtime.sessions(Instant::now());
        views.retain(|v| {
            (r.tenant.is_empty() || v.tenant == r.tenant)
                && (r.service.is_empty() || v.service == r.service)
        });
        views.sort_by(|a, b| a.idle.cmp(&b.idle).then_with(|| a.id.cmp(&b.id)));
        let total = views.len() as u64;
        let sessions = views
            .into_iter()
            .take(limit)
            .map(|v| SessionInfo {
                id: v.id,
                tenant: v.tenant,
                service: v.service,
                original: Some(five_tuple(&v.original)),
                waypoint: Some(five_tuple(&v.waypoint)),
                peer: v.peer,
                path_id: v.path,
                security: v.security as i32,
                packets: 0,
                bytes: v.bytes,
                age_ms: 0,
                idle_ms: u64::try_from(v.idle.as_millis()).unwrap_or(u64::MAX),
                state: format!("{} {}", v.role, v.state),
            })
            .collect();
        Ok(Response::new(ListSessionsResponse { sessions, total }))
    }

    async fn list_paths(
        &self,
        _request: Request<ListPathsRequest>,
    ) -> Result<Response<ListPathsResponse>, Status> {
        let paths = path_statuses(&self.runtime);
        Ok(Response::new(ListPathsResponse {
            paths,
            locations: location_statuses(&self.runtime),
        }))
    }

    async fn get_counters(
        &self,
        request: Request<GetCountersRequest>,
    ) -> Result<Response<GetCountersResponse>, Status> {
        let prefix = request.into_inner().prefix;
        let counters = all_counters(&self.runtime)
            .into_iter()
            .filter(|c| c.name.starts_with(&prefix))
            .collect();
        Ok(Response::new(GetCountersResponse { counters }))
    }

    async fn explain(
        &self,
        request: Request<ExplainRequest>,
    ) -> Result<Response<ExplainResponse>, Status> {
        explain(&self.runtime, &request.into_inner()).map(Response::new)
    }
}
