//! `signpostctl sessions | paths | counters | explain`: the real binary against a real tonic
//! `signpost.v1.Admin` server in the test, which answers fixed responses and records each
//! request, so the tests check both what is asked (filters, flow) and what is printed.

use std::net::SocketAddr;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use signpost_proto::v1::admin_server::{Admin, AdminServer};
use signpost_proto::v1::{
    Counter, ExplainRequest, ExplainResponse, FiveTuple, GetCountersRequest, GetCountersResponse,
    Label, ListPathsRequest, ListPathsResponse, ListSessionsRequest, ListSessionsResponse,
    LocationHealth, LocationState, PathState, PathStatus, Protocol, SecurityMode, SessionInfo,
};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

/// The requests the router received, in order, as their Debug text.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    fn push(&self, request: String) {
        if let Ok(mut seen) = self.0.lock() {
            seen.push(request);
        }
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().expect("lock"))
    }
}

struct FixedRouter {
    seen: Seen,
}

fn tcp(src: &str, sport: u32, dst: &str, dport: u32) -> Option<FiveTuple> {
    Some(FiveTuple {
        src: src.to_owned(),
        dst: dst.to_owned(),
        src_port: sport,
        dst_port: dport,
        protocol: Protocol::Tcp as i32,
    })
}

#[tonic::async_trait]
impl Admin for FixedRouter {
    async fn list_sessions(
        &self,
        request: Request<ListSessionsRequest>,
    ) -> Result<Response<ListSessionsResponse>, Status> {
        self.seen.push(format!("{:?}", request.into_inner()));
        Ok(Response::new(ListSessionsResponse {
            sessions: vec![
                SessionInfo {
                    id: "9f3c2a1b00112233445566778899aabb".to_owned(),
                    tenant: "pos".to_owned(),
                    service: "payments".to_owned(),
                    original: tcp("10.1.0.5", 50000, "10.9.0.7", 443),
                    waypoint: tcp("192.0.2.10", 16384, "198.51.100.20", 16385),
                    peer: "hub-1".to_owned(),
                    path_id: "wan0-mpls".to_owned(),
                    security: SecurityMode::Encrypt as i32,
                    packets: 1200,
                    bytes: 1_572_864,
                    age_ms: 302_000,
                    idle_ms: 850,
                    state: "established".to_owned(),
                },
                SessionInfo {
                    id: "0a0b0c0d".to_owned(),
                    tenant: "guest".to_owned(),
                    service: "dns".to_owned(),
                    original: Some(FiveTuple {
                        src: "fd00::5".to_owned(),
                        dst: "fd00::53".to_owned(),
                        src_port: 40000,
                        dst_port: 53,
                        protocol: Protocol::Udp as i32,
                    }),
                    waypoint: None,
                    peer: String::new(),
                    path_id: String::new(),
                    security: SecurityMode::Unspecified as i32,
                    packets: 2,
                    bytes: 180,
                    age_ms: 12_345,
                    idle_ms: 12_000,
                    state: "local".to_owned(),
                },
            ],
            total: 7,
        }))
    }

    async fn list_paths(
        &self,
        request: Request<ListPathsRequest>,
    ) -> Result<Response<ListPathsResponse>, Status> {
        self.seen.push(format!("{:?}", request.into_inner()));
        Ok(Response::new(ListPathsResponse {
            paths: vec![
                PathStatus {
                    peer: "hub-1".to_owned(),
                    path_id: "wan0-mpls".to_owned(),
                    state: PathState::Up as i32,
                    latency_us: 12_345,
                    jitter_us: 850,
                    loss_ppm: 2_500,
                    sessions: 41,
                },
                PathStatus {
                    peer: "hub-1".to_owned(),
                    path_id: "wan1-lte".to_owned(),
                    state: PathState::Degraded as i32,
                    latency_us: 80_000,
                    jitter_us: 15_000,
                    loss_ppm: 30_000,
                    sessions: 1,
                },
            ],
            locations: vec![LocationHealth {
                service: "payments".to_owned(),
                router: "hub-1".to_owned(),
                address: String::new(),
                state: LocationState::Down as i32,
                detail: "reported down by hub-1 0.4 s ago".to_owned(),
                since_ms: 400,
            }],
        }))
    }

    async fn get_counters(
        &self,
        request: Request<GetCountersRequest>,
    ) -> Result<Response<GetCountersResponse>, Status> {
        self.seen.push(format!("{:?}", request.into_inner()));
        let label = |key: &str, value: &str| Label {
            key: key.to_owned(),
            value: value.to_owned(),
        };
        // Deliberately out of order: the output is sorted.
        Ok(Response::new(GetCountersResponse {
            counters: vec![
                Counter {
                    name: "signpost_packets_total".to_owned(),
                    labels: vec![label("interface", "wan1")],
                    value: 5,
                },
                Counter {
                    name: "signpost_drops_total".to_owned(),
                    labels: vec![label("reason", "no-policy \"x\"")],
                    value: 3,
                },
                Counter {
                    name: "signpost_packets_total".to_owned(),
                    labels: vec![label("interface", "wan0")],
                    value: 12,
                },
                Counter {
                    name: "signpost_config_applies_total".to_owned(),
                    labels: vec![],
                    value: 1,
                },
            ],
        }))
    }

    async fn explain(
        &self,
        request: Request<ExplainRequest>,
    ) -> Result<Response<ExplainResponse>, Status> {
        let request = request.into_inner();
        self.seen.push(format!("{request:?}"));
        let denied = request
            .flow
            .as_ref()
            .is_some_and(|flow| flow.dst_port == 23);
        Ok(Response::new(if denied {
            ExplainResponse {
                allowed: false,
                tenant: "pos".to_owned(),
                service: String::new(),
                policy: String::new(),
                reason: "no-service".to_owned(),
                peer: String::new(),
                path_id: String::new(),
                steps: vec![
                    "arrived on LAN network `pos-lan`: tenant `pos`".to_owned(),
                    "no service matches 10.9.0.7 tcp/23".to_owned(),
                ],
            }
        } else {
            ExplainResponse {
                allowed: true,
                tenant: "pos".to_owned(),
                service: "payments".to_owned(),
                policy: "pos-to-pay".to_owned(),
                reason: String::new(),
                peer: "hub-1".to_owned(),
                path_id: "wan0-mpls".to_owned(),
                steps: vec![
                    "arrived on LAN network `pos-lan`: tenant `pos`".to_owned(),
                    "10.9.0.7 tcp/443 is service `payments`".to_owned(),
                    "policy `pos-to-pay` allows tenant `pos`".to_owned(),
                    "best path to hub-1: wan0-mpls (up, 12.3 ms)".to_owned(),
                ],
            }
        }))
    }
}

/// A router admin API on a free loopback port, served until the runtime ends.
async fn start_router() -> (SocketAddr, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let seen = Seen::default();
    let router = FixedRouter { seen: seen.clone() };
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AdminServer::new(router))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    (addr, seen)
}

/// Runs signpostctl off the runtime's threads (the server keeps answering meanwhile).
async fn signpostctl(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_signpostctl"))
            .args(&args)
            .output()
            .expect("run signpostctl")
    })
    .await
    .expect("signpostctl task")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "signpostctl failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("UTF-8 stdout")
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_str(&stdout(output)).expect("stdout is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_table_and_json() {
    let (addr, seen) = start_router().await;
    let addr = addr.to_string();

    let output = signpostctl(&[
        "sessions", "--router", &addr, "--tenant", "pos", "--limit", "2",
    ])
    .await;
    let text = stdout(&output);
    assert_eq!(
        text,
        "\
ID        TENANT  SERVICE   ORIGINAL                              WAYPOINT                                     PEER/PATH        SECURITY  PACKETS  BYTES    AGE    IDLE   STATE
9f3c2a1b  pos     payments  tcp 10.1.0.5:50000 -> 10.9.0.7:443    tcp 192.0.2.10:16384 -> 198.51.100.20:16385  hub-1/wan0-mpls  encrypt   1200     1.5 MiB  5m02s  850ms  established
0a0b0c0d  guest   dns       udp [fd00::5]:40000 -> [fd00::53]:53  -                                            -                -         2        180 B    12.3s  12.0s  local
2 of 7 sessions
"
    );
    assert_eq!(
        seen.take(),
        [r#"ListSessionsRequest { tenant: "pos", service: "", limit: 2 }"#]
    );

    let value = json(&signpostctl(&["sessions", "--router", &addr, "--json"]).await);
    assert_eq!(value["total"], 7);
    let first = &value["sessions"][0];
    assert_eq!(first["id"], "9f3c2a1b00112233445566778899aabb");
    assert_eq!(first["original"]["src"], "10.1.0.5");
    assert_eq!(first["original"]["dst_port"], 443);
    assert_eq!(first["original"]["protocol"], "tcp");
    assert_eq!(first["waypoint"]["dst"], "198.51.100.20");
    assert_eq!(first["security"], "encrypt");
    assert_eq!(first["bytes"], 1_572_864);
    assert_eq!(first["age_ms"], 302_000);
    assert_eq!(value["sessions"][1]["waypoint"], serde_json::Value::Null);
    assert_eq!(value["sessions"][1]["original"]["protocol"], "udp");
    assert_eq!(
        seen.take(),
        [r#"ListSessionsRequest { tenant: "", service: "", limit: 0 }"#]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_table_and_json() {
    let (addr, _seen) = start_router().await;
    let addr = addr.to_string();
    let text = stdout(&signpostctl(&["paths", "--router", &addr]).await);
    assert_eq!(
        text,
        "PEER   PATH       STATE     LATENCY  JITTER   LOSS   SESSIONS\n\
         hub-1  wan0-mpls  up        12.3 ms  850 µs   0.25%  41\n\
         hub-1  wan1-lte   degraded  80.0 ms  15.0 ms  3.00%  1\n\
         \n\
         SERVICE   LOCATION  ADDRESS  HEALTH  SINCE  DETAIL\n\
         payments  hub-1     -        down    0.4 s  reported down by hub-1 0.4 s ago\n"
    );
    let value = json(&signpostctl(&["paths", "--router", &addr, "--json"]).await);
    assert_eq!(value["paths"][1]["state"], "degraded");
    assert_eq!(value["paths"][1]["latency_us"], 80_000);
    assert_eq!(value["paths"][0]["loss_ppm"], 2_500);
    assert_eq!(value["locations"][0]["state"], "down");
    assert_eq!(value["locations"][0]["service"], "payments");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_are_sorted_and_the_prefix_is_sent() {
    let (addr, seen) = start_router().await;
    let addr = addr.to_string();
    let text =
        stdout(&signpostctl(&["counters", "--router", &addr, "--prefix", "signpost_"]).await);
    assert_eq!(
        text,
        "signpost_config_applies_total 1\n\
         signpost_drops_total{reason=\"no-policy \\\"x\\\"\"} 3\n\
         signpost_packets_total{interface=\"wan0\"} 12\n\
         signpost_packets_total{interface=\"wan1\"} 5\n"
    );
    assert_eq!(
        seen.take(),
        [r#"GetCountersRequest { prefix: "signpost_" }"#]
    );
    let value = json(&signpostctl(&["counters", "--router", &addr, "--json"]).await);
    assert_eq!(
        value["counters"][0]["name"],
        "signpost_config_applies_total"
    );
    assert_eq!(value["counters"][1]["labels"]["reason"], "no-policy \"x\"");
    assert_eq!(value["counters"][2]["value"], 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_allowed_denied_and_bad_arguments() {
    let (addr, seen) = start_router().await;
    let addr = addr.to_string();
    let flow = |dport: &'static str| {
        [
            "explain",
            "--router",
            "",
            "--ingress",
            "pos-lan",
            "--src",
            "10.1.0.5",
            "--dst",
            "10.9.0.7",
            "--proto",
            "tcp",
            "--sport",
            "50000",
            "--dport",
            dport,
        ]
    };
    let mut args = flow("443");
    args[2] = &addr;
    let text = stdout(&signpostctl(&args).await);
    assert_eq!(
        text,
        "verdict:  allowed\n\
         tenant:   pos\n\
         service:  payments\n\
         policy:   pos-to-pay\n\
         path:     hub-1/wan0-mpls\n\
         steps:\n  \
           1. arrived on LAN network `pos-lan`: tenant `pos`\n  \
           2. 10.9.0.7 tcp/443 is service `payments`\n  \
           3. policy `pos-to-pay` allows tenant `pos`\n  \
           4. best path to hub-1: wan0-mpls (up, 12.3 ms)\n"
    );
    assert_eq!(
        seen.take(),
        [
            "ExplainRequest { ingress: \"pos-lan\", flow: Some(FiveTuple { src: \"10.1.0.5\", \
             dst: \"10.9.0.7\", src_port: 50000, dst_port: 443, protocol: Tcp }) }"
        ]
    );

    let mut args = flow("23");
    args[2] = &addr;
    let text = stdout(&signpostctl(&args).await);
    assert!(
        text.starts_with("verdict:  denied\ntenant:   pos\nservice:  -\n"),
        "{text}"
    );
    assert!(text.contains("\nreason:   no-service\n"), "{text}");
    assert!(text.contains("\npath:     -\n"), "{text}");

    let mut args = flow("23").to_vec();
    args[2] = &addr;
    args.push("--json");
    let value = json(&signpostctl(&args).await);
    assert_eq!(value["allowed"], false);
    assert_eq!(value["reason"], "no-service");
    assert_eq!(value["steps"][1], "no service matches 10.9.0.7 tcp/23");
    assert_eq!(seen.take().len(), 2, "the two denied explains were asked");

    // A bad argument is refused before the router is asked.
    let output = signpostctl(&[
        "explain",
        "--router",
        &addr,
        "--ingress",
        "pos-lan",
        "--src",
        "10.1.0.5",
        "--dst",
        "10.9.0.7",
        "--proto",
        "udp",
    ])
    .await;
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "error: --dport is required for tcp and udp\n"
    );
    assert!(seen.take().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_router_is_a_clear_error() {
    // A port that was free a moment ago and has no listener now.
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("local addr").to_string()
    };
    for command in ["sessions", "paths", "counters"] {
        let output = signpostctl(&[command, "--router", &addr]).await;
        assert_eq!(output.status.code(), Some(1), "{command}");
        assert!(output.stdout.is_empty(), "{command}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.starts_with(&format!("error: cannot reach router admin API at {addr}: ")),
            "{command}: {stderr}"
        );
        assert!(
            stderr.contains("refused"),
            "{command}: the cause is shown: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_the_admin_api_is_reported() {
    // Something answers gRPC on the address, but not signpost.v1.Admin.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr").to_string();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_routes(tonic::service::Routes::default())
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let output = signpostctl(&["paths", "--router", &addr]).await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with(&format!(
            "error: router admin API at {addr} failed ListPaths: "
        )),
        "{stderr}"
    );
    assert!(stderr.contains("Unimplemented"), "{stderr}");
}
