//! `spear`: the SPEAR-1 command line. Run `spear --help`.

use anyhow::Result;
use burn::tensor::backend::AutodiffBackend;
use clap::{Parser, Subcommand};
use spear_cli::backend::{BackendJob, BackendKind, run_on};
use spear_cli::doctor;

#[derive(Parser)]
#[command(name = "spear", version, about = "SPEAR-1: a 3D-aware vision-language-action model")]
struct Cli {
    /// Compute backend, among those compiled in (default: the most capable compiled).
    #[arg(long, global = true)]
    backend: Option<BackendKind>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check that the backend computes correctly here: a matmul, the S³ flow-matching operations
    /// and an autodiff gradient against an f64 CPU reference. Exits non-zero on failure.
    Doctor,
}

struct Doctor;

impl BackendJob for Doctor {
    type Output = bool;
    fn run<B: AutodiffBackend>(self, kind: BackendKind, device: B::Device) -> bool {
        println!("spear doctor");
        println!("  backend    {kind}: {}", kind.describe());
        if let Some(adapter) = kind.adapter() {
            println!("  adapter    {adapter}");
        }
        let report = doctor::run::<B>(&device);
        println!("{report}");
        report.passed()
    }
}

/// Logs go to stderr through `tracing` (`log` records from burn and wgpu included); `RUST_LOG`
/// overrides the default level, `warn`.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    init_logging();
    let kind = match cli.backend {
        Some(kind) => kind,
        None => *BackendKind::compiled().first().ok_or_else(|| {
            anyhow::anyhow!("built with no backend: enable one of the features cpu, wgpu, cuda")
        })?,
    };
    if kind == BackendKind::Wgpu && !spear_cli::backend::vulkan_driver_installed() {
        eprintln!(
            "warning: no Vulkan driver found; WGPU will likely find no adapter \
             (on Debian: apt-get install mesa-vulkan-drivers libvulkan1)"
        );
    }
    match cli.command {
        Command::Doctor => {
            if !run_on(kind, Doctor)? {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}
