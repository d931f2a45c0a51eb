//! `spear`: the SPEAR-1 command line. Run `spear --help`.

use anyhow::Result;
use burn::tensor::backend::AutodiffBackend;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use spear_cli::backend::{BackendJob, BackendKind, run_on};
use spear_cli::{bench, doctor, policy, vlm, weights};

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
    /// Checkpoint files.
    #[command(subcommand)]
    Weights(WeightsCommand),
    /// SPEAR-VLM (or PaliGemma) inference.
    #[command(subcommand)]
    Vlm(VlmCommand),
    /// SPEAR-1 (or π0) policy inference.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Benchmarks, with ratios against the PyTorch reference measured in the same run.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Sample one action chunk for an observation (images, state, instruction): the prefix is
    /// encoded once, then the flow's Euler steps run the action expert alone.
    Act(ActArgs),
}

#[derive(Args)]
struct ActArgs {
    /// Checkpoint folder: weights and config.json (spear, transformers PI0, lerobot or openpi π0).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Main camera image (PNG or JPEG); centre-cropped to the policy's aspect ratio, never stretched.
    #[arg(long)]
    image: PathBuf,
    /// Wrist camera image; repeat for policies with several wrist cameras.
    #[arg(long)]
    wrist: Vec<PathBuf>,
    /// Proprioceptive state, normalised as in training: numbers separated by commas or spaces
    /// (SPEAR-1: EE position x,y,z, EE quaternion w,x,y,z, gripper).
    #[arg(long, allow_hyphen_values = true)]
    state: String,
    /// Zero-pad a shorter state to the policy's state width (π0 pads to 32).
    #[arg(long)]
    pad_state: bool,
    /// The instruction.
    #[arg(long)]
    prompt: String,
    /// tokenizer.json (default: the checkpoint's).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Cameras the policy was trained with (π0 checkpoints do not record it; default 3 for them).
    #[arg(long)]
    cameras: Option<usize>,
    /// Seed of the sampling noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print the chunk as JSON.
    #[arg(long)]
    json: bool,
}

struct Act(ActArgs);

impl BackendJob for Act {
    type Output = anyhow::Result<()>;
    fn run<B: AutodiffBackend>(self, _kind: BackendKind, device: B::Device) -> anyhow::Result<()> {
        let a = self.0;
        let request = policy::Act {
            checkpoint: a.checkpoint,
            tokenizer: a.tokenizer,
            image: a.image,
            wrist: a.wrist,
            state: policy::parse_state(&a.state)?,
            pad_state: a.pad_state,
            prompt: a.prompt,
            cameras: a.cameras,
            seed: a.seed,
        };
        let chunk = policy::act::<B::InnerBackend>(&request, &device)?;
        if a.json {
            println!("{}", chunk.to_json());
        } else {
            print!("{}", chunk.render());
        }
        Ok(())
    }
}

#[derive(Subcommand)]
enum BenchCommand {
    /// SPEAR-VLM prefill (main 280×210 + wrist 112×112 + prompt) and per-token decode latency.
    Vlm(BenchVlmArgs),
}

#[derive(Args)]
struct BenchVlmArgs {
    /// The paper's full-size model (PaliGemma 3B + MoGe ViT-L) instead of the tiny one.
    #[arg(long)]
    full: bool,
    /// A Python with torch and transformers: also time `tools/bench/vlm_torch.py` and print ratios.
    #[arg(long)]
    compare_torch: Option<PathBuf>,
    /// Device for the PyTorch run (`cpu`, `cuda`).
    #[arg(long, default_value = "cpu")]
    torch_device: String,
    /// Prompt tokens.
    #[arg(long, default_value_t = 48)]
    prompt_tokens: usize,
    /// Decode steps per round.
    #[arg(long, default_value_t = 16)]
    decode_steps: usize,
    /// Timed rounds after one warm-up.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
}

struct BenchVlm(BenchVlmArgs);

impl BackendJob for BenchVlm {
    type Output = anyhow::Result<()>;
    fn run<B: AutodiffBackend>(self, kind: BackendKind, device: B::Device) -> anyhow::Result<()> {
        let args = self.0;
        let config = if args.full {
            spear_models::SpearVlmConfig::spear_vlm()
        } else {
            spear_models::SpearVlmConfig::tiny()
        };
        let spec = bench::VlmBench {
            config,
            prompt_tokens: args.prompt_tokens,
            decode_steps: args.decode_steps,
            repeats: args.repeats.max(1),
        };
        println!(
            "bench vlm: {} model, main {:?} + wrist {:?}, {} prompt tokens, {} decode steps, median of {}",
            if args.full { "full-size" } else { "tiny" },
            spec.config.image_size,
            spec.config.wrist_image_size,
            spec.prompt_tokens,
            spec.decode_steps,
            spec.repeats
        );
        let ours = bench::run::<B::InnerBackend>(&spec, &device)?;
        println!(
            "  spear ({kind})   prefill {:9.2} ms   decode {:8.3} ms/token",
            ours.prefill_ms, ours.decode_ms
        );
        if let Some(python) = &args.compare_torch {
            let (torch, about) = bench::run_torch(&spec, python, &args.torch_device)?;
            println!(
                "  torch            prefill {:9.2} ms   decode {:8.3} ms/token   ({about})",
                torch.prefill_ms, torch.decode_ms
            );
            println!(
                "  ratio spear/torch  prefill {:.2}x   decode {:.2}x   (below 1 = spear faster)",
                ours.prefill_ms / torch.prefill_ms,
                ours.decode_ms / torch.decode_ms
            );
        }
        Ok(())
    }
}

#[derive(Subcommand)]
enum WeightsCommand {
    /// List a checkpoint's tensors, recognise its layout (PaliGemma, openpi π0, MoGe-1/2, spear)
    /// and show what would load, what is missing and what is left over. Reads no tensor data.
    Inspect {
        /// A snapshot folder, a `.safetensors` file or a `model.pt`.
        path: PathBuf,
        /// Also list every stored tensor with its dtype and shape.
        #[arg(long)]
        list: bool,
    },
}

#[derive(Subcommand)]
enum VlmCommand {
    /// Answer a prompt about an image with greedy, KV-cached decoding.
    Ask(AskArgs),
    /// Build SPEAR-VLM's starting checkpoint: PaliGemma + MoGe encoder weights, a fresh MoGe
    /// projector and mean-resized 3D-token embeddings (paper §3.1).
    Init(InitArgs),
}

#[derive(Args)]
struct InitArgs {
    /// PaliGemma snapshot folder.
    #[arg(long)]
    paligemma: PathBuf,
    /// MoGe-1 or MoGe-2 `model.pt`.
    #[arg(long)]
    moge: PathBuf,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// DINOv2 blocks to fuse (default: the last four, as the paper; MoGe-2 uses 5,11,17,23).
    #[arg(long, value_delimiter = ',')]
    moge_layers: Option<Vec<usize>>,
    /// Number of 3D tokens.
    #[arg(long, default_value_t = 1024)]
    num_3d_tokens: usize,
    /// Seed for the fresh weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

struct Init(InitArgs);

impl BackendJob for Init {
    type Output = anyhow::Result<()>;
    fn run<B: AutodiffBackend>(self, _kind: BackendKind, device: B::Device) -> anyhow::Result<()> {
        let a = self.0;
        let request = vlm::Init {
            paligemma: a.paligemma,
            moge: a.moge,
            out: a.out.clone(),
            moge_layers: a.moge_layers,
            num_3d_tokens: a.num_3d_tokens,
            seed: a.seed,
        };
        let config = vlm::init::<B::InnerBackend>(&request, &device)?;
        let moge = config.moge.as_ref().expect("init fuses MoGe");
        println!(
            "wrote {}: SPEAR-VLM with MoGe blocks {:?} and {} 3D tokens (ids {}..{})",
            a.out.display(),
            moge.layers,
            config.num_3d_tokens,
            config.gemma.vocab_size,
            config.gemma.vocab_size + config.num_3d_tokens
        );
        Ok(())
    }
}

#[derive(Args)]
struct AskArgs {
    /// Checkpoint folder (weights, config.json, tokenizer.json).
    #[arg(long)]
    weights: PathBuf,
    /// Main camera image (PNG or JPEG).
    #[arg(long)]
    image: PathBuf,
    /// Wrist camera image.
    #[arg(long)]
    wrist: Option<PathBuf>,
    /// The question.
    #[arg(long)]
    prompt: String,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 64)]
    max_new_tokens: usize,
    /// Also print the prompt and answer token ids.
    #[arg(long)]
    ids: bool,
}

struct Ask(AskArgs);

impl BackendJob for Ask {
    type Output = anyhow::Result<()>;
    fn run<B: AutodiffBackend>(self, _kind: BackendKind, device: B::Device) -> anyhow::Result<()> {
        let args = self.0;
        let request = vlm::Ask {
            weights: args.weights,
            image: args.image,
            wrist: args.wrist,
            prompt: args.prompt,
            max_new: args.max_new_tokens,
        };
        // Inference needs no gradients: run on the backend under Autodiff.
        let answer = vlm::ask::<B::InnerBackend>(&request, &device)?;
        if args.ids {
            println!("prompt ids: {:?}", answer.prompt_ids);
            println!("answer ids: {:?}", answer.tokens);
        }
        println!("{}", answer.render());
        Ok(())
    }
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
        Command::Weights(WeightsCommand::Inspect { path, list }) => {
            print!("{}", weights::inspect(&path, list)?)
        }
        Command::Vlm(VlmCommand::Ask(args)) => run_on(kind, Ask(args))??,
        Command::Vlm(VlmCommand::Init(args)) => run_on(kind, Init(args))??,
        Command::Policy(PolicyCommand::Act(args)) => run_on(kind, Act(args))??,
        Command::Bench(BenchCommand::Vlm(args)) => run_on(kind, BenchVlm(args))??,
    }
    Ok(())
}
