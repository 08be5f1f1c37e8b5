//! A readable view of a compiled `RouterConfig` for people and CI (`signpostctl render`): enums
//! by name, empty fields left out, and key material never printed — only a key's id, epoch and
//! a short fingerprint, so two renders can be compared without leaking secrets into CI logs.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use signpost_proto::v1 as pb;

use crate::compiler::RouterOutput;

fn enum_name<E: TryFrom<i32>>(value: i32, name: impl Fn(E) -> &'static str) -> Value {
    match E::try_from(value) {
        Ok(e) => Value::String(name(e).to_string()),
        Err(_) => Value::from(value),
    }
}

/// Drops null, empty and zero members so the output shows what is set.
fn object(pairs: Vec<(&str, Value)>) -> Value {
    let mut map = Map::new();
    for (k, v) in pairs {
        let empty = match &v {
            Value::Null => true,
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            Value::Number(n) => n.as_u64() == Some(0),
            Value::Bool(b) => !b,
        };
        if !empty {
            map.insert(k.to_string(), v);
        }
    }
    Value::Object(map)
}

fn ports(ranges: &[pb::PortRange]) -> Value {
    ranges.iter().map(port_range).collect()
}

fn port_range(r: &pb::PortRange) -> Value {
    if r.first == r.last {
        json!(r.first.to_string())
    } else {
        json!(format!("{}-{}", r.first, r.last))
    }
}

/// One router's output as a JSON value.
pub fn router(output: &RouterOutput) -> Result<Value, prost::DecodeError> {
    let c = &output.config()?;
    Ok(object(vec![
        ("router", json!(c.router)),
        ("version", json!(output.version)),
        (
            "role",
            enum_name(c.role, |r: pb::RouterRole| r.as_str_name()),
        ),
        (
            "site",
            c.site_labels
                .iter()
                .map(|l| (l.key.clone(), json!(l.value)))
                .collect::<Map<_, _>>()
                .into(),
        ),
        ("wanInterfaces", c.wan_interfaces.iter().map(wan).collect()),
        ("lanInterfaces", c.lan_interfaces.iter().map(lan).collect()),
        ("tenants", c.tenants.iter().map(tenant).collect()),
        ("services", c.services.iter().map(service).collect()),
        ("access", c.access.iter().map(access).collect()),
        ("peers", c.peers.iter().map(peer).collect()),
        ("keyEpoch", json!(c.key_epoch)),
    ]))
}

fn wan(i: &pb::WanInterface) -> Value {
    object(vec![
        ("name", json!(i.name)),
        ("device", json!(i.device)),
        ("neighborhood", json!(i.neighborhood)),
        ("vector", json!(i.vector)),
        ("addresses", json!(i.addresses)),
        ("gateway", json!(i.gateway)),
        ("capacityBps", json!(i.capacity_bps)),
        ("cost", json!(i.cost)),
        (
            "waypointPorts",
            i.waypoint_ports
                .as_ref()
                .map(port_range)
                .unwrap_or(Value::Null),
        ),
        ("globalId", json!(i.global_id)),
    ])
}

fn lan(i: &pb::LanInterface) -> Value {
    object(vec![
        ("name", json!(i.name)),
        ("device", json!(i.device)),
        ("addresses", json!(i.addresses)),
        (
            "networks",
            i.networks
                .iter()
                .map(|n| {
                    object(vec![
                        ("name", json!(n.name)),
                        ("prefixes", json!(n.prefixes)),
                        ("vlan", json!(n.vlan)),
                    ])
                })
                .collect(),
        ),
    ])
}

fn tenant(t: &pb::Tenant) -> Value {
    object(vec![
        ("name", json!(t.name)),
        ("parent", json!(t.parent)),
        ("networks", json!(t.networks)),
        ("prefixes", json!(t.prefixes)),
    ])
}

fn service(s: &pb::Service) -> Value {
    object(vec![
        ("name", json!(s.name)),
        ("prefixes", json!(s.prefixes)),
        ("hostname", json!(s.hostname)),
        (
            "transports",
            s.transports
                .iter()
                .map(|t| {
                    object(vec![
                        (
                            "protocol",
                            enum_name(t.protocol, |p: pb::Protocol| p.as_str_name()),
                        ),
                        ("ports", ports(&t.ports)),
                    ])
                })
                .collect(),
        ),
        (
            "locations",
            s.locations
                .iter()
                .map(|l| {
                    object(vec![
                        ("router", json!(l.router)),
                        ("addresses", json!(l.addresses)),
                        ("priority", json!(l.priority)),
                    ])
                })
                .collect(),
        ),
        (
            "trafficClass",
            enum_name(s.traffic_class, |c: pb::TrafficClass| c.as_str_name()),
        ),
        (
            "loadBalancing",
            enum_name(s.load_balancing, |l: pb::LoadBalancing| l.as_str_name()),
        ),
    ])
}

fn access(a: &pb::AccessRule) -> Value {
    object(vec![
        ("tenant", json!(a.tenant)),
        ("service", json!(a.service)),
        ("policy", json!(a.policy)),
        (
            "direction",
            enum_name(a.direction, |d: pb::Direction| d.as_str_name()),
        ),
        (
            "priority",
            enum_name(a.priority, |p: pb::Priority| p.as_str_name()),
        ),
        (
            "security",
            enum_name(a.security, |s: pb::SecurityMode| s.as_str_name()),
        ),
        ("pathPreference", json!(a.path_preference)),
        (
            "sla",
            a.sla
                .as_ref()
                .map(|s| {
                    object(vec![
                        ("maxLatencyMs", json!(s.max_latency_ms)),
                        ("maxLossPpm", json!(s.max_loss_ppm)),
                        ("maxJitterMs", json!(s.max_jitter_ms)),
                    ])
                })
                .unwrap_or(Value::Null),
        ),
        (
            "rateLimit",
            a.rate_limit
                .as_ref()
                .map(|r| {
                    object(vec![
                        ("bitsPerSecond", json!(r.bits_per_second)),
                        ("burstBytes", json!(r.burst_bytes)),
                        ("newSessionsPerSecond", json!(r.new_sessions_per_second)),
                    ])
                })
                .unwrap_or(Value::Null),
        ),
    ])
}

fn peer(p: &pb::Peer) -> Value {
    object(vec![
        ("name", json!(p.name)),
        ("role", enum_name(p.role, |r: pb::RouterRole| r.as_str_name())),
        (
            "paths",
            p.paths
                .iter()
                .map(|path| {
                    object(vec![
                        ("id", json!(path.id)),
                        ("vector", json!(path.vector)),
                        ("neighborhood", json!(path.neighborhood)),
                        ("remoteAddress", json!(path.remote_address)),
                        (
                            "remoteWaypointPorts",
                            path.remote_waypoint_ports.as_ref().map(port_range).unwrap_or(Value::Null),
                        ),
                        ("cost", json!(path.cost)),
                    ])
                })
                .collect(),
        ),
        (
            "keys",
            p.keys
                .iter()
                .map(|k| {
                    let fingerprint = hex::encode(&Sha256::digest(&k.key)[..4]);
                    json!({"securityId": k.security_id, "epoch": k.epoch, "fingerprint": fingerprint})
                })
                .collect(),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compiler::{Options, compile};
    use crate::manifests;

    #[test]
    fn keys_are_never_printed() {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/retail");
        let docs = manifests::read_documents(&dir).expect("readable");
        let intent =
            manifests::decode(&docs, &crate::admission::Admission::new()).expect("admitted");
        let c = compile(
            &intent,
            &Options {
                key_master: [9; 32],
                key_epoch: 1,
            },
        );
        let out = &c.routers["store-0142"];
        let text = router(out).expect("decodes").to_string();
        for peer in &out.config().expect("decodes").peers {
            for key in &peer.keys {
                assert!(!text.contains(&hex::encode(&key.key)));
            }
        }
        assert!(text.contains("\"fingerprint\""));
        assert!(text.contains("\"security\":\"SECURITY_MODE_ENCRYPT\""));
    }
}
