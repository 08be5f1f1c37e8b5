//! The router's Prometheus metrics, rendered on each scrape from the same counters the admin
//! API serves ([`super::admin::all_counters`]): packets and bytes per interface, drops by
//! reason, runtime frame events, sessions per tenant and service, and the config in force.

use std::collections::BTreeMap;

use super::Runtime;
use super::admin::all_counters;
use crate::telemetry::{Exposition, MetricKind};

fn help(name: &str) -> &'static str {
    match name {
        "signpost_drops_total" => {
            "Packets the pipeline dropped, by reason (deny by default included)"
        }
        "signpost_runtime_frames_total" => {
            "Frames the runtime handled around the pipeline, by event"
        }
        "signpost_forwarded_packets_total" => "Packets forwarded, by direction",
        "signpost_session_events_total" => "Session lifecycle events",
        "signpost_metadata_packets_total" => "Packets carrying SVR metadata, sent and received",
        "signpost_sessions" => "Live sessions",
        "signpost_sessions_by_service" => "Live sessions per tenant and service",
        "signpost_session_table_bytes" => "Memory held by the session tables",
        "signpost_guard_drops_total" => {
            "New sessions and packets the guard refused, by reason and tenant"
        }
        "signpost_guard_source_entries" => "Sources the per-source session-rate table tracks",
        "signpost_guard_source_evictions_total" => {
            "Per-source rate entries replaced before their bucket was full (table too small for the flood)"
        }
        "signpost_qos_packets_total" => {
            "Packets per shaped WAN interface and class: sent, queued (waited), dropped (queue full)"
        }
        "signpost_qos_bytes_total" => "Bytes per shaped WAN interface and class: sent, dropped",
        "signpost_qos_queue_bytes" => "Bytes waiting per shaped WAN interface and class",
        "signpost_interface_rx_packets_total" => "Frames received per interface",
        "signpost_interface_rx_bytes_total" => "Bytes received per interface",
        "signpost_interface_tx_packets_total" => "Frames sent per interface",
        "signpost_interface_tx_bytes_total" => "Bytes sent per interface",
        "signpost_interface_dropped_rx_total" => "Frames the driver dropped on receive",
        "signpost_interface_dropped_tx_total" => "Frames the driver dropped on transmit",
        "signpost_path_up" => "1 when the peer path's BFD session is up",
        "signpost_path_degraded" => "1 when the path is up but breaks the SLA of a policy using it",
        "signpost_path_latency_us" => {
            "Round-trip latency (smoothed over BFD Poll/Final exchanges), microseconds"
        }
        "signpost_path_jitter_us" => "Round-trip jitter (RFC 3550 estimator), microseconds",
        "signpost_path_loss_ppm" => "Packet loss over the last 10 s, parts per million",
        "signpost_path_sessions" => "Sessions on the path",
        "signpost_bfd_packets_total" => "BFD packets the path monitor handled, by event",
        "signpost_bfd_timer_wakeups_total" => "Path monitor timer wake-ups",
        "signpost_bfd_timer_late_us_total" => {
            "Summed lateness of path monitor timer wake-ups, microseconds"
        }
        "signpost_bfd_timer_late_max_us" => {
            "Largest lateness of a path monitor timer wake-up, microseconds"
        }
        "signpost_location_healthy" => {
            "1 when the service location is healthy: probed here (with address), or as its router reports it"
        }
        "signpost_health_probes_total" => "Service-location health probes, by event",
        "signpost_health_messages_total" => "Service-location health messages, by event",
        "signpost_interface_kernel_rx_dropped_total" => {
            "Frames the kernel dropped before the driver"
        }
        _ => "Signpost router counter",
    }
}

/// Label pairs and value of one sample.
type Sample = (Vec<(String, String)>, u64);

/// The text exposition of every metric.
pub fn render(runtime: &Runtime) -> String {
    let mut families: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    for c in all_counters(runtime) {
        let labels = c.labels.into_iter().map(|l| (l.key, l.value)).collect();
        families.entry(c.name).or_default().push((labels, c.value));
    }
    let mut out = Exposition::new();
    for (name, samples) in &families {
        let kind = if name.ends_with("_total") {
            MetricKind::Counter
        } else {
            MetricKind::Gauge
        };
        out.family(name, help(name), kind);
        for (labels, value) in samples {
            let labels: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            out.sample(&labels, *value);
        }
    }
    let version = runtime
        .slot
        .current()
        .map(|t| t.version.clone())
        .unwrap_or_default();
    out.family(
        "signpost_config_info",
        "The config version in force (1 once a config is applied)",
        MetricKind::Gauge,
    );
    out.sample(&[("version", &version)], u64::from(!version.is_empty()));
    out.family(
        "signpost_config_generation",
        "Configs applied since the router started",
        MetricKind::Gauge,
    );
    out.sample(&[], runtime.slot.generation());
    out.finish()
}
