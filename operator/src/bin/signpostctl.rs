//! `signpostctl`: the operator's command line.
//!
//!     signpostctl render --manifests DIR [--router NAME] [--format yaml|json]
//!
//! `render` reads the manifests as the operator's local mode would, checks them as admission
//! would, compiles them, prints what each router would receive and every diagnostic, and exits
//! non-zero when any object is refused or any error is found — a GitOps CI check.
//!
//!     signpostctl svr decode FILE.pcap [--json]
//!
//! `svr decode` takes a capture apart down to the SVR metadata of each packet, with the
//! router's own codec. It exits 0 when the file was read, whatever the packets hold, and 1 when
//! the file cannot be read (after printing the packets read before a damaged record).
//!
//!     signpostctl certs init --dir DIR
//!     signpostctl certs issue --dir DIR --router NAME [--days N] --out DIR
//!
//! `certs init` creates the operator's CA in DIR (`ca.pem`, `ca.key` 0600) unless it exists;
//! `certs issue` signs a router certificate with it and writes `ca.pem`, `tls.crt`, `tls.key`
//! into `--out`, the layout of a cert-manager Secret, which is what the router reads.
//!
//!     signpostctl bootstrap create --router NAME [--ttl 24h] [--out DIR]
//!         (local mode)   --dir TLS_DIR
//!         (cluster mode) [--namespace NS] [--operator-namespace signpost] [--ca-secret signpost-ca]
//!
//! `bootstrap create` mints a one-time token a router enrolls with (`signpost-router
//! --bootstrap-token-file`): it prints the token on standard output, once; the operator keeps
//! only its hash. With `--dir` (the local-mode operator's `--tls-dir`) the record goes to
//! `DIR/bootstrap/`; otherwise it is a Secret next to the Router in the cluster of the current
//! kubeconfig context. `--out DIR` also writes `DIR/token` and `DIR/ca.pem`: what the router's
//! box needs (`--tls-dir DIR --bootstrap-token-file DIR/token`).
//!
//!     signpostctl sessions [--tenant T] [--service S] [--limit N] [--router ADDR] [--json]
//!     signpostctl paths [--router ADDR] [--json]
//!     signpostctl counters [--prefix P] [--router ADDR] [--json]
//!     signpostctl explain --ingress NAME --src A --dst B --proto tcp|udp|icmp [--sport N]
//!                         [--dport N] [--router ADDR] [--json]
//!
//! Ask a running router, through its local admin API (default `127.0.0.1:7900`), what it is
//! doing: see `signpost_operator::admin_cli`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use signpost_operator::admin_cli::{self, Query};
use signpost_operator::admission::Admission;
use signpost_operator::bootstrap::{self, LocalTokens};
use signpost_operator::compiler::{self, Options, Severity};
use signpost_operator::controller;
use signpost_operator::identity::{self, CertificateAuthority, Validity};
use signpost_operator::{manifests, render, svr_decode};

#[derive(Parser)]
#[command(
    name = "signpostctl",
    version,
    about = "Signpost: check, render and inspect; certificates; ask a running router"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print what each router would receive from a directory of manifests.
    Render {
        /// A directory (read recursively) or a file of YAML/JSON manifests.
        #[arg(long, value_name = "DIR")]
        manifests: PathBuf,
        /// Only this router's config (diagnostics are still all printed).
        #[arg(long, value_name = "NAME")]
        router: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Yaml)]
        format: Format,
        /// The key rotation epoch to render with.
        #[arg(long, default_value_t = 0)]
        key_epoch: u64,
    },
    /// Secure Vector Routing tools.
    Svr {
        #[command(subcommand)]
        command: SvrCommand,
    },
    /// The operator's certificate authority and router certificates.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// One-time tokens routers enroll with (zero-touch).
    Bootstrap {
        #[command(subcommand)]
        command: BootstrapCommand,
    },
    /// A router's sessions: 5-tuples, waypoints, paths, counts, ages.
    Sessions {
        /// Only sessions of this tenant.
        #[arg(long, value_name = "T")]
        tenant: Option<String>,
        /// Only sessions of this service.
        #[arg(long, value_name = "S")]
        service: Option<String>,
        /// At most N sessions (0: the router's default).
        #[arg(long, value_name = "N", default_value_t = 0)]
        limit: u32,
        #[command(flatten)]
        router: RouterArgs,
    },
    /// A router's paths to its peers: state, latency, jitter, loss.
    Paths {
        #[command(flatten)]
        router: RouterArgs,
    },
    /// A router's counters, sorted.
    Counters {
        /// Only counters whose name starts with P.
        #[arg(long, value_name = "P", default_value = "")]
        prefix: String,
        #[command(flatten)]
        router: RouterArgs,
    },
    /// Why a router would allow or deny a flow, and which path it would take.
    Explain {
        /// The LAN interface the first packet arrives on, `NAME@VLAN` for a tagged network (`lan@10`).
        #[arg(long, value_name = "NAME")]
        ingress: String,
        /// Source IP address.
        #[arg(long, value_name = "A")]
        src: String,
        /// Destination IP address.
        #[arg(long, value_name = "B")]
        dst: String,
        /// tcp, udp or icmp (icmp means ICMPv6 for IPv6 addresses).
        #[arg(long = "proto", value_name = "PROTO")]
        protocol: String,
        /// Source port (default 0).
        #[arg(long, value_name = "N")]
        sport: Option<u16>,
        /// Destination port (required for tcp and udp).
        #[arg(long, value_name = "N")]
        dport: Option<u16>,
        #[command(flatten)]
        router: RouterArgs,
    },
}

/// Which router to ask, and how to print its answer.
#[derive(Args)]
struct RouterArgs {
    /// The router's admin API: HOST:PORT (plain HTTP/2, local only).
    #[arg(long, value_name = "ADDR", default_value = admin_cli::DEFAULT_ROUTER)]
    router: String,
    /// Print the router's response as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Create the CA (ca.pem, ca.key) in DIR, unless it is already there.
    Init {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// Issue a router's certificate: writes ca.pem, tls.crt and tls.key into --out.
    Issue {
        /// The CA directory (as created by `certs init`, or the operator's --tls-dir).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The Router object's name; the certificate names it (URI spiffe://signpost/router/NAME and DNS NAME).
        #[arg(long, value_name = "NAME")]
        router: String,
        /// Days of validity.
        #[arg(long, default_value_t = 365)]
        days: u32,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum BootstrapCommand {
    /// Mint a token for a router; prints it once.
    Create {
        /// The Router's name.
        #[arg(long, value_name = "NAME")]
        router: String,
        /// How long the token stays valid (s, m, h, d; at most 365d).
        #[arg(long, default_value = "24h")]
        ttl: String,
        /// Local mode: the operator's --tls-dir. Without it: cluster mode (kubeconfig).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Cluster mode: the Router's namespace (default: the kubeconfig context's).
        #[arg(long, value_name = "NS", conflicts_with = "dir")]
        namespace: Option<String>,
        /// Cluster mode: the operator's namespace, where its CA Secret is (read with --out).
        #[arg(long, value_name = "NS", default_value = "signpost")]
        operator_namespace: String,
        /// Cluster mode: the operator's CA Secret.
        #[arg(long, value_name = "NAME", default_value = "signpost-ca")]
        ca_secret: String,
        /// Also write DIR/token and DIR/ca.pem for the router's box.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum SvrCommand {
    /// Show the SVR metadata in each packet of a pcap capture (tcpdump/tshark `-F pcap`).
    Decode {
        /// A classic pcap file: Ethernet, raw IP or Linux cooked (`-i any`).
        file: PathBuf,
        /// Print a JSON array, one object per packet.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Yaml,
    Json,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Render {
            manifests,
            router,
            format,
            key_epoch,
        } => render_command(&manifests, router.as_deref(), format, key_epoch),
        Command::Svr {
            command: SvrCommand::Decode { file, json },
        } => decode_command(&file, json),
        Command::Certs { command } => certs_command(command),
        Command::Bootstrap { command } => bootstrap_command(command),
        Command::Sessions {
            tenant,
            service,
            limit,
            router,
        } => admin_command(
            &router,
            Ok(Query::Sessions(signpost_proto::v1::ListSessionsRequest {
                tenant: tenant.unwrap_or_default(),
                service: service.unwrap_or_default(),
                limit,
            })),
        ),
        Command::Paths { router } => admin_command(&router, Ok(Query::Paths)),
        Command::Counters { prefix, router } => {
            admin_command(&router, Ok(Query::Counters { prefix }))
        }
        Command::Explain {
            ingress,
            src,
            dst,
            protocol,
            sport,
            dport,
            router,
        } => admin_command(
            &router,
            admin_cli::explain_request(&ingress, &src, &dst, &protocol, sport, dport)
                .map(Query::Explain),
        ),
    }
}

/// Asks the router `query`, or reports a bad argument (exit 2) or a failure (exit 1).
fn admin_command(router: &RouterArgs, query: Result<Query, String>) -> ExitCode {
    let query = match query {
        Ok(query) => query,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(admin_cli::run(&router.router, query, router.json)) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn certs_command(command: CertsCommand) -> ExitCode {
    let result = match command {
        CertsCommand::Init { dir } => {
            CertificateAuthority::load_or_create(&dir).map(|(_, created)| {
                if created {
                    println!("created the CA in {}", dir.display());
                } else {
                    println!("the CA in {} exists; left as it is", dir.display());
                }
            })
        }
        CertsCommand::Issue {
            dir,
            router,
            days,
            out,
        } => CertificateAuthority::load(&dir)
            .and_then(|ca| ca.issue_router(&router, Validity::days_from_now(days)))
            .and_then(|issued| issued.write(&out))
            .map(|()| {
                println!(
                    "issued router `{router}`'s certificate for {days} days: {}",
                    out.display()
                )
            }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bootstrap_command(command: BootstrapCommand) -> ExitCode {
    let BootstrapCommand::Create {
        router,
        ttl,
        dir,
        namespace,
        operator_namespace,
        ca_secret,
        out,
    } = command;
    let result = (|| -> Result<(String, String, String), String> {
        let ttl = bootstrap::parse_ttl(&ttl)?;
        let now = std::time::SystemTime::now();
        let (token, ca_pem) = match dir {
            Some(dir) => {
                let token = LocalTokens::new(&dir).mint(&router, ttl, now)?;
                let ca_path = dir.join(identity::CA_CERT_FILE);
                let ca_pem = std::fs::read_to_string(&ca_path)
                    .map_err(|e| format!("{}: {e}", ca_path.display()))?;
                (token, ca_pem)
            }
            None => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("starting the async runtime: {e}"))?
                .block_on(async {
                    let client = kube::Client::try_default()
                        .await
                        .map_err(|e| format!("the cluster (kubeconfig): {e}"))?;
                    let ns = namespace.unwrap_or_else(|| client.default_namespace().to_string());
                    let token =
                        controller::tokens::mint(client.clone(), &ns, &router, ttl, now).await?;
                    let ca_pem = if out.is_some() {
                        let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
                            kube::Api::namespaced(client, &operator_namespace);
                        let secret = secrets.get(&ca_secret).await.map_err(|e| {
                            format!("reading Secret {operator_namespace}/{ca_secret}: {e}")
                        })?;
                        secret
                            .data
                            .and_then(|d| d.get(identity::CA_CERT_FILE).cloned())
                            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                            .ok_or_else(|| {
                                format!("Secret {operator_namespace}/{ca_secret} has no ca.pem")
                            })?
                    } else {
                        String::new()
                    };
                    Ok::<_, String>((token, ca_pem))
                })?,
        };
        Ok((token.to_string(), bootstrap::rfc3339(now + ttl), ca_pem))
    })();
    let (token, expires, ca_pem) = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(out) = &out {
        let written = std::fs::create_dir_all(out)
            .and_then(|()| std::fs::write(out.join(identity::CA_CERT_FILE), &ca_pem))
            .map_err(|e| e.to_string())
            .and_then(|()| {
                identity::write_atomic(&out.join("token"), format!("{token}\n").as_bytes(), 0o600)
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = written {
            eprintln!("error: writing {}: {e}", out.display());
            return ExitCode::FAILURE;
        }
        eprintln!(
            "wrote {0}/token and {0}/ca.pem: start the router with --tls-dir {0} \
             --bootstrap-token-file {0}/token",
            out.display()
        );
    }
    eprintln!("bootstrap token for router `{router}`, good for one enrollment until {expires}:");
    println!("{token}");
    ExitCode::SUCCESS
}

fn decode_command(file: &std::path::Path, json: bool) -> ExitCode {
    let bytes = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let decoded = match svr_decode::decode(&bytes) {
        Ok(decoded) => decoded,
        Err(e) => {
            eprintln!("error: {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    if json {
        match serde_json::to_string_pretty(&svr_decode::json(&decoded)) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("error: printing JSON: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", svr_decode::text(&decoded));
    }
    match &decoded.stopped_by {
        Some(e) => {
            eprintln!(
                "error: {}: {e}; the {} packets before it are shown",
                file.display(),
                decoded.packets.len()
            );
            ExitCode::FAILURE
        }
        None => ExitCode::SUCCESS,
    }
}

fn render_command(
    dir: &std::path::Path,
    only: Option<&str>,
    format: Format,
    key_epoch: u64,
) -> ExitCode {
    let documents = match manifests::read_documents(dir) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Refused documents are reported, and the rest is still compiled so that one mistake does
    // not hide the others.
    let (intent, refused) = manifests::decode_admitted(&documents, &Admission::new());
    let mut failed = !refused.is_empty();
    for e in refused {
        eprintln!("error: {e}");
    }
    // Rendering shows structure, not secrets: keys come from a fixed master and are printed
    // only as fingerprints, so versions here are comparable between renders, not with a
    // running operator's.
    let compiled = compiler::compile(
        &intent,
        &Options {
            key_master: [0; 32],
            key_epoch,
        },
    );
    let outputs: Vec<serde_json::Value> = match compiled
        .routers
        .iter()
        .filter(|(name, _)| only.is_none_or(|n| name.as_str() == n))
        .map(|(_, o)| render::router(o))
        .collect()
    {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: decoding a compiled config: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(name) = only
        && outputs.is_empty()
    {
        eprintln!(
            "error: no config for router `{name}` (it does not exist or has errors; see below)"
        );
        failed = true;
    }
    let printed = match format {
        Format::Json => serde_json::to_string_pretty(&outputs).map_err(|e| e.to_string()),
        Format::Yaml => outputs
            .iter()
            .map(|o| serde_yaml_ng::to_string(o).map(|y| format!("---\n{y}")))
            .collect::<Result<String, _>>()
            .map_err(|e| e.to_string()),
    };
    match printed {
        Ok(text) => println!("{}", text.trim_end()),
        Err(e) => {
            eprintln!("error: printing the configs: {e}");
            return ExitCode::FAILURE;
        }
    }
    for d in &compiled.diagnostics {
        eprintln!("{d}");
        failed |= d.severity == Severity::Error;
    }
    let errors = compiled
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    eprintln!(
        "{} routers compiled, {} errors, {} warnings",
        compiled.routers.len(),
        errors,
        compiled.diagnostics.len() - errors
    );
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
