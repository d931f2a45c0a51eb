//! `spear`: the SPEAR-1 command line. Run `spear --help`.
//!
//! This file parses and dispatches; each subcommand's arguments, backend job and rendering live in
//! its module of the `spear_cli` library.

use anyhow::Result;
use clap::{Parser, Subcommand};
use spear_cli::backend::BackendChoice;
use spear_cli::commands::annotate::AnnotateCommand;
use spear_cli::commands::bench::BenchCommand;
use spear_cli::commands::data::DataCommand;
use spear_cli::commands::plot::PlotArgs;
use spear_cli::commands::policy::PolicyCommand;
use spear_cli::commands::serve::Serve;
use spear_cli::commands::train::TrainCommand;
use spear_cli::commands::vlm::VlmCommand;
use spear_cli::commands::weights::WeightsCommand;

#[derive(Parser)]
#[command(name = "spear", version, about = "SPEAR-1: a 3D-aware vision-language-action model")]
struct Cli {
    /// Compute backend, among those compiled in. `auto` takes a CUDA device, else a WGPU adapter on
    /// a GPU, else the CPU, and says which on stderr.
    #[arg(long, global = true, value_enum, default_value_t = BackendChoice::Auto)]
    backend: BackendChoice,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check that the backend computes correctly here: a matmul, the S³ flow-matching operations
    /// and an autodiff gradient against an f64 CPU reference. Exits non-zero on failure.
    Doctor,
    /// Checkpoint files.
    #[command(subcommand)]
    Weights(WeightsCommand),
    /// SPEAR-VLM (or PaliGemma) inference.
    #[command(subcommand)]
    Vlm(VlmCommand),
    /// SPEAR-1 (or π0) policy inference.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Benchmarks, with ratios against the reference tool measured in the same run.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Open X-Embodiment RLDS datasets and mixtures (no compute backend involved).
    #[command(subcommand)]
    Data(DataCommand),
    /// Build SPEAR-VLM's 3D question–answer data from images, MoGe point maps and instance masks:
    /// per object an outlier-free cloud and Open3D's oriented box, then 1–4 templated pairs per
    /// example, written as sharded JSON lines with a manifest (resumes where a run stopped).
    /// `spear annotate preview KEY --out F.png` draws one image's boxes and keypoints.
    Annotate(AnnotateCommand),
    /// Training runs (configs/vlm, configs/vla; see docs/training.md).
    #[command(subcommand)]
    Train(TrainCommand),
    /// Draw a run's metrics (RUN_DIR/metrics.jsonl) into a PNG, one panel per series.
    Plot(PlotArgs),
    /// Serve a policy to robot clients over openpi's websocket protocol (openpi-client, its DROID,
    /// LIBERO and ALOHA examples, spear-serve's Rust client); `--probe URL` checks a running server.
    Serve(Serve),
}

/// Logs go to stderr through `tracing` (`log` records from burn and wgpu included); `RUST_LOG`
/// overrides the default level, `warn`.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

/// `spear … | head` closes stdout before the output ends, and Rust's print macros panic on the
/// broken pipe (the runtime ignores SIGPIPE, and resetting it needs `unsafe`). End as a process
/// killed by SIGPIPE would, quietly with status 141, instead of printing a panic.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info)
    }));
}

fn main() -> Result<()> {
    quiet_on_broken_pipe();
    let cli = Cli::parse();
    init_logging();
    // The datasets this binary can generate are read by name like the mixture's.
    spear_train::reach::register();
    let backend = cli.backend;
    match cli.command {
        Command::Doctor => {
            if !spear_cli::commands::doctor::command(backend)? {
                std::process::exit(1);
            }
        }
        Command::Weights(command) => command.run()?,
        Command::Vlm(command) => command.run(backend)?,
        Command::Policy(command) => command.run(backend)?,
        Command::Bench(command) => command.run(backend)?,
        Command::Data(command) => command.run()?,
        Command::Annotate(command) => command.run()?,
        Command::Train(command) => command.run(backend)?,
        Command::Plot(args) => args.run()?,
        Command::Serve(args) => args.run(backend)?,
    }
    Ok(())
}
