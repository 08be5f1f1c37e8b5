//! `signpost-lab`: the Harbor Foods retail chain in network namespaces.
//!
//! - `signpost-lab demo` — the guided demo (traffic of every tenant, denied flows, a link cut).
//! - `signpost-lab compare` — Signpost against VXLAN and OpenVPN on the same topology.
//! - `signpost-lab up` — build the lab and keep it running until Ctrl-C, to explore it.

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
    /// Build the lab and keep it running until Ctrl-C.
    Up {
        /// Stores to run (1-3).
        #[arg(long, default_value_t = 1)]
        stores: usize,
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
    };
    if let Err(e) = result {
        eprintln!("signpost-lab: {e}");
        std::process::exit(1);
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
