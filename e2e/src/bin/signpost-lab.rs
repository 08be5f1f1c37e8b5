//! `signpost-lab`: the Harbor Foods retail chain in network namespaces.
//!
//! - `signpost-lab demo` — the guided demo (traffic of every tenant, denied flows, a link cut).
//! - `signpost-lab compare` — Signpost against VXLAN and OpenVPN on the same topology.
//! - `signpost-lab up` — build the lab and keep it running until Ctrl-C, to explore it.
//! - `signpost-lab serve` — a service host's echo servers as a process of their own (the lab
//!   starts it in a host's namespace when a test wants to kill a server, not the host).

use std::time::Duration;

use clap::{Parser, Subcommand};
use signpost_e2e::lab::{LabOptions, RetailLab};

#[derive(Parser)]
#[command(
    version,
    about = "The Signpost lab: a retail chain in network namespaces"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every tenant's traffic, denied flows, a broadband cut and restore; a summary and a chart.
    Demo {
        /// Stores to run (1-3); traffic comes from the first, payments from every one.
        #[arg(long, default_value_t = 1)]
        stores: usize,
        /// Seconds of traffic; the cut is at a third, the restore at two thirds.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// The cameras' upload pace, Mbit/s.
        #[arg(long, default_value_t = 20)]
        camera_mbps: u64,
        /// Where the chart and the summary go.
        #[arg(long, default_value = "target/signpost-lab")]
        out: std::path::PathBuf,
    },
    /// The same flows over Signpost (none, encrypt), VXLAN and OpenVPN: bytes on the wire.
    Compare {
        /// Seconds of the VoIP-like flow (the design target is stated for 60).
        #[arg(long, default_value_t = 60)]
        voip_seconds: u64,
        /// Requests of the API flow.
        #[arg(long, default_value_t = 200)]
        api_requests: u32,
        /// Seconds of the bulk upload.
        #[arg(long, default_value_t = 5)]
        bulk_seconds: u64,
        /// Where the table goes.
        #[arg(long, default_value = "target/signpost-lab")]
        out: std::path::PathBuf,
    },
    /// Build the lab and keep it running until Ctrl-C.
    Up {
        /// Stores to run (1-3).
        #[arg(long, default_value_t = 1)]
        stores: usize,
    },
    /// Serve TCP and UDP echo (the lab hosts' servers) in a namespace until killed.
    Serve {
        /// The network namespace to serve in.
        #[arg(long)]
        netns: String,
        /// TCP ports (repeat for several).
        #[arg(long)]
        tcp: Vec<u16>,
        /// UDP ports (repeat for several).
        #[arg(long)]
        udp: Vec<u16>,
    },
}

fn main() {
    if let Err(e) = signpost_e2e::remove_all_on_signal() {
        eprintln!("signpost-lab: {e}");
        std::process::exit(1);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up { stores } => up(stores),
        Command::Serve { netns, tcp, udp } => serve(&netns, &tcp, &udp),
        Command::Compare {
            voip_seconds,
            api_requests,
            bulk_seconds,
            out,
        } => compare(signpost_e2e::compare::CompareOptions {
            voip: Duration::from_secs(voip_seconds.max(1)),
            api_requests: api_requests.max(1),
            bulk: Duration::from_secs(bulk_seconds.max(1)),
            out_dir: out,
        }),
        Command::Demo {
            stores,
            seconds,
            camera_mbps,
            out,
        } => demo(stores, seconds, camera_mbps, out),
    };
    if let Err(e) = result {
        eprintln!("signpost-lab: {e}");
        std::process::exit(1);
    }
}

fn demo(
    stores: usize,
    seconds: u64,
    camera_mbps: u64,
    out: std::path::PathBuf,
) -> Result<(), String> {
    if let Some(why) = signpost_e2e::lab::available() {
        return Err(why);
    }
    let seconds = seconds.max(6);
    signpost_e2e::demo::run(&signpost_e2e::demo::DemoOptions {
        stores,
        duration: Duration::from_secs(seconds),
        cut_at: Duration::from_secs(seconds / 3),
        restore_at: Duration::from_secs(seconds * 2 / 3),
        camera_bps: camera_mbps * 1_000_000,
        out_dir: out,
    })
    .map(drop)
}

fn compare(options: signpost_e2e::compare::CompareOptions) -> Result<(), String> {
    if let Some(why) = signpost_e2e::lab::available() {
        return Err(why);
    }
    for tool in ["tshark", "openvpn", "openssl"] {
        if std::process::Command::new(tool)
            .arg("--version")
            .output()
            .is_err()
        {
            return Err(format!("compare needs `{tool}` (scripts/demo installs it)"));
        }
    }
    signpost_e2e::compare::run(&options).map(drop)
}

fn serve(netns: &str, tcp: &[u16], udp: &[u16]) -> Result<(), String> {
    let _servers = signpost_e2e::traffic::Servers::start(netns, tcp, udp)?;
    println!("serving tcp {tcp:?} udp {udp:?} in {netns}");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn up(stores: usize) -> Result<(), String> {
    if let Some(why) = signpost_e2e::lab::available() {
        return Err(why);
    }
    let lab = RetailLab::start(LabOptions {
        stores,
        ..LabOptions::default()
    })?;
    println!("the lab is up; its namespaces:");
    for n in lab.namespace_names() {
        println!("  {n}");
    }
    println!("Ctrl-C removes them.");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
