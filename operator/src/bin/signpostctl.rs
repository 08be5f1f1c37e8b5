//! `signpostctl`: the operator's command line.
//!
//!     signpostctl render --manifests DIR [--router NAME] [--format yaml|json]
//!
//! `render` reads the manifests as the operator's local mode would, checks them as admission
//! would, compiles them, prints what each router would receive and every diagnostic, and exits
//! non-zero when any object is refused or any error is found — a GitOps CI check.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use signpost_operator::admission::Admission;
use signpost_operator::compiler::{self, Options, Severity};
use signpost_operator::{manifests, render};

#[derive(Parser)]
#[command(
    name = "signpostctl",
    version,
    about = "Signpost: check, render and inspect"
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
