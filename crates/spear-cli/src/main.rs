//! `spear`: the SPEAR-1 command line. Run `spear --help`.

use anyhow::Result;
use burn::tensor::backend::AutodiffBackend;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use spear_cli::backend::{BackendChoice, BackendJob, BackendKind, run_on};
use spear_cli::{annotate, bench, data, doctor, policy, vlm, weights};

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
    /// Benchmarks, with ratios against the PyTorch reference measured in the same run.
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
    Plot {
        /// The run folder.
        run_dir: PathBuf,
        /// The PNG to write (default: RUN_DIR/metrics.png).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum TrainCommand {
    /// Train SPEAR-1 (VLA pre- or post-training). Without --config: the embedded default, a tiny
    /// SPEAR-1 on a generated reach-and-rotate task, evaluated in closed loop at the end.
    Vla(TrainRunArgs),
    /// Train SPEAR-VLM (stage 1 or 2). Without --config: the embedded default, a tiny SPEAR-VLM
    /// on generated scenes annotated by `spear annotate`'s pipeline.
    Vlm(TrainRunArgs),
}

#[derive(Args)]
struct TrainRunArgs {
    /// The run's config (configs/vla/*.toml, configs/vlm/*.toml; default: the tiny embedded one).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override a field: `section.key=value` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// The run folder (default: runs/<run.name>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in the folder from its last checkpoint.
    #[arg(long)]
    resume: bool,
    /// Load and check the config, then print what the run would train — stage, schedule, and the
    /// parameters per part, trainable and frozen — without allocating any weight or touching the
    /// run folder (so it works for the full-size runs on any machine).
    #[arg(long)]
    dry_run: bool,
    /// With --dry-run: also print the fully resolved config (TOML).
    #[arg(long, requires = "dry_run")]
    resolved: bool,
}

impl TrainRunArgs {
    fn into_args(self) -> spear_cli::train::TrainArgs {
        spear_cli::train::TrainArgs {
            config: self.config,
            overrides: self.overrides,
            out: self.out,
            resume: self.resume,
        }
    }
}

/// `spear train vla|vlm --dry-run`.
struct TrainDryRun(spear_cli::train::Kind, spear_cli::train::TrainArgs, bool);

impl BackendJob for TrainDryRun {
    type Output = anyhow::Result<String>;
    fn run<B: AutodiffBackend>(self, _kind: BackendKind, device: B::Device) -> anyhow::Result<String> {
        spear_cli::train::dry_run::<B>(self.0, &self.1, self.2, &device)
    }
}

struct TrainVla(spear_cli::train::TrainArgs);

struct TrainVlm(spear_cli::train::TrainArgs);

impl BackendJob for TrainVlm {
    type Output = anyhow::Result<()>;
    fn run<B: AutodiffBackend>(self, kind: BackendKind, device: B::Device) -> anyhow::Result<()> {
        spear_cli::train::vlm::<B>(kind, &self.0, &device)
    }
}

impl BackendJob for TrainVla {
    type Output = anyhow::Result<()>;
    fn run<B: AutodiffBackend>(self, kind: BackendKind, device: B::Device) -> anyhow::Result<()> {
        spear_cli::train::vla::<B>(kind, &self.0, &device)
    }
}

#[derive(Args)]
#[command(subcommand_negates_reqs = true)]
struct AnnotateCommand {
    #[command(subcommand)]
    preview: Option<AnnotateSubcommand>,
    #[command(flatten)]
    inputs: AnnotateInputs,
    /// Output folder (shards, their statistics, manifest.json).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Subcommand)]
enum AnnotateSubcommand {
    /// Draw image KEY's projected boxes (corner 0 marked), keypoints (closest red, furthest blue,
    /// centre white) and labels into a PNG.
    Preview {
        /// The image's key: its path under --images without extension.
        key: String,
        #[command(flatten)]
        inputs: AnnotateInputs,
        /// The PNG to write.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Args)]
struct AnnotateInputs {
    /// Images (`<key>.jpg|jpeg|png`, searched recursively).
    #[arg(long, required = true)]
    images: Option<PathBuf>,
    /// Point maps: `<key>/points.exr` (MoGe's `--maps` output) or `<key>/points.npy`.
    #[arg(long, required = true)]
    points: Option<PathBuf>,
    /// Instance masks: `<key>.png` (indexed), `<key>.json` (COCO RLE / Ego-Exo4D) or `<key>/*.png`.
    #[arg(long, required = true)]
    masks: Option<PathBuf>,
    /// Labels: `{"<key>": {"<instance id>": "label"}}` (else the masks JSON's `label`).
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Parameters (TOML; see configs/annotate/default.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Overrides the parameters' seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Overrides the parameters' examples per image.
    #[arg(long)]
    examples_per_image: Option<usize>,
}

impl AnnotateInputs {
    fn resolve(self) -> Result<(spear_annotate::pipeline::Inputs, spear_annotate::pipeline::AnnotateConfig)> {
        let mut config = annotate::load_config(self.config.as_deref())?;
        if let Some(seed) = self.seed {
            config.seed = seed;
        }
        if let Some(n) = self.examples_per_image {
            config.qa.examples_per_image = n;
        }
        let need = |p: Option<PathBuf>, flag: &str| p.ok_or_else(|| anyhow::anyhow!("{flag} is required"));
        let inputs = spear_annotate::pipeline::Inputs {
            images: need(self.images, "--images")?,
            points: need(self.points, "--points")?,
            masks: need(self.masks, "--masks")?,
            labels: self.labels,
        };
        Ok((inputs, config))
    }
}

#[derive(Subcommand)]
enum DataCommand {
    /// A dataset's splits, typed schema, registry entry, and its first episode: steps, duration,
    /// instruction, and frame 0's state and 5 Hz action chunk.
    Inspect {
        /// The dataset's `NAME/VERSION` folder (holding dataset_info.json).
        dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One pass over a mixture: per-dimension statistics (min, max, mean, std, 1st/99th
    /// percentiles) of 5 Hz action translations and state positions, and of action rotation
    /// angles, written as JSON.
    Stats {
        /// Mixture file (e.g. configs/data/oxe_mixture.toml).
        #[arg(long)]
        mixture: PathBuf,
        /// Where to write the statistics.
        #[arg(long)]
        out: PathBuf,
        /// Folder holding the datasets, instead of the mixture's `root`.
        #[arg(long)]
        root: Option<PathBuf>,
    },
    /// A contact sheet (PNG) of frames of one episode: external and wrist cameras and each frame's
    /// action chunk drawn (path top-down and height; green open, red closed, grey padding).
    Preview {
        /// The dataset's `NAME/VERSION` folder.
        dir: PathBuf,
        /// Output PNG.
        #[arg(long)]
        out: PathBuf,
        /// Episode index in the split.
        #[arg(long, default_value_t = 0)]
        episode: usize,
        /// Frames shown, spread over the episode.
        #[arg(long, default_value_t = 6)]
        frames: usize,
    },
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
    /// Proprioceptive state: numbers separated by commas or spaces (SPEAR-1: EE position x,y,z,
    /// EE quaternion w,x,y,z, gripper). Raw (metres) for checkpoints that carry
    /// normalization.json (those `spear train vla` writes), else normalised as in training.
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
    /// Time per action chunk (prefix once + N flow steps): π0's shape beside transformers' PI0,
    /// SPEAR-1's on spear alone, each with its roofline bound from FLOPs, bytes and measured peaks.
    Policy(BenchPolicyArgs),
    /// Time of one training step (flow draws, forward and loss, backward, global-norm clipping,
    /// AdamW) at batch B: π0's shape beside transformers' PI0, SPEAR-1's on spear alone.
    Train(BenchTrainArgs),
    /// Training-data throughput and peak memory of the whole per-step pipeline (read, parse,
    /// standardise, 5 Hz chunks, decode, resize) beside tf.data reading and decoding the same files.
    Data(BenchDataArgs),
    /// Statistical outlier removal then the oriented bounding box, per object cloud (1k, 10k and
    /// 100k points), beside Open3D on the same clouds; also checks that both keep the same points
    /// and fit the same boxes.
    Annotate(BenchAnnotateArgs),
}

#[derive(Args)]
struct BenchAnnotateArgs {
    /// A Python with open3d-cpu 0.20 and numpy (tools/reference/requirements-annotate.txt): also
    /// time `tools/bench/annotate_open3d.py` on the same clouds, print ratios and check parity.
    #[arg(long)]
    compare_open3d: Option<PathBuf>,
    /// Neighbours per point in the outlier removal.
    #[arg(long, default_value_t = 20)]
    nb_neighbors: usize,
    /// The cut: mean neighbour distance + this many standard deviations.
    #[arg(long, default_value_t = 2.0)]
    std_ratio: f64,
    /// Points per cloud, comma-separated; a box and an ellipsoid of each size.
    #[arg(long, value_delimiter = ',', default_values_t = [1_000, 10_000, 100_000])]
    sizes: Vec<usize>,
    /// Timed runs per cloud after one warm-up.
    #[arg(long, default_value_t = 7)]
    repeats: usize,
}

#[derive(Args)]
struct BenchDataArgs {
    /// Mixture to read (default: with --compare-tf, bridge_dataset and droid benchmark datasets
    /// written for the run; without, spear-data's small bundled fixtures).
    #[arg(long)]
    mixture: Option<PathBuf>,
    /// A Python with tensorflow and tensorflow-datasets (tools/reference/requirements-data.txt):
    /// also time `tools/bench/data_tf.py` on the same files and print ratios.
    #[arg(long)]
    compare_tf: Option<PathBuf>,
    /// Samples timed after one warm-up batch.
    #[arg(long, default_value_t = 2048)]
    samples: usize,
    /// Threads for each side (default: the machine's cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Samples per batch.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Memory cap of spear's step-shuffle buffer, MB (its peak memory follows it).
    #[arg(long, default_value_t = 256)]
    shuffle_buffer_mb: usize,
    /// Episodes and steps per episode of each written benchmark dataset.
    #[arg(long, num_args = 2, value_names = ["EPISODES", "STEPS"], default_values_t = [16, 30])]
    bench_data: Vec<usize>,
}

/// The policy shapes `bench policy` and `bench train` time.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum PolicyShape {
    /// π0's (no MoGe, linear flow, square cameras), the one compared with PyTorch.
    Pi0,
    /// SPEAR-1's (MoGe, S³ rotations, 280×210 main + 112×112 wrist), timed on spear alone.
    Spear1,
}

/// What `bench policy` and `bench train` share: which shapes, at which size, beside PyTorch or not.
#[derive(Args)]
struct PolicyShapeArgs {
    /// Full size (PaliGemma 3B + Gemma-300M expert: π0 with 3 cameras 224×224 and 50 actions of 32,
    /// and SPEAR-1) instead of tiny.
    #[arg(long)]
    full: bool,
    /// A Python with torch and transformers 5.24: also time the PyTorch twin
    /// (`tools/bench/policy_torch.py`, `train_torch.py`) on the π0-shaped configuration and print
    /// ratios.
    #[arg(long)]
    compare_torch: Option<PathBuf>,
    /// Device for the PyTorch run (`cpu`, `cuda`).
    #[arg(long, default_value = "cpu")]
    torch_device: String,
    /// Time only this shape (default: both).
    #[arg(long, value_enum)]
    only: Option<PolicyShape>,
}

impl PolicyShapeArgs {
    /// The shapes to time, in order, less those `--only` leaves out: each with its configuration
    /// (full size or tiny) and its name in the report.
    fn selected(&self) -> Vec<(PolicyShape, spear_models::SpearPolicyConfig, String)> {
        use spear_models::SpearPolicyConfig;
        let (size, pi0, spear1) = if self.full {
            ("full-size", SpearPolicyConfig::pi0(), SpearPolicyConfig::spear1())
        } else {
            ("tiny", bench::policy::tiny_pi0(), SpearPolicyConfig::tiny())
        };
        [
            (PolicyShape::Pi0, pi0, "π0-shaped (no MoGe, no 3D tokens, linear flow)"),
            (PolicyShape::Spear1, spear1, "SPEAR-1 (MoGe + S³)"),
        ]
        .into_iter()
        .filter(|(shape, ..)| self.only.is_none_or(|only| only == *shape))
        .map(|(shape, config, name)| (shape, config, format!("{name} {size}")))
        .collect()
    }

    /// The PyTorch side of `shape`'s comparison, when `--compare-torch` named a Python:
    /// `run(python, torch_device)` for π0's shape; for SPEAR-1's, which transformers' PI0 cannot
    /// run, a line saying so and nothing.
    fn torch<T>(
        &self,
        shape: PolicyShape,
        run: impl FnOnce(&std::path::Path, &str) -> Result<T>,
    ) -> Result<Option<T>> {
        match (&self.compare_torch, shape) {
            (Some(python), PolicyShape::Pi0) => run(python, &self.torch_device).map(Some),
            (Some(_), PolicyShape::Spear1) => {
                println!(
                    "  (spear alone: transformers' PI0 has no MoGe encoder and no S³ flow, and its \
                     SigLIP takes one square size for every camera)"
                );
                Ok(None)
            }
            (None, _) => Ok(None),
        }
    }
}

#[derive(Args)]
struct BenchPolicyArgs {
    #[command(flatten)]
    shapes: PolicyShapeArgs,
    /// Prompt tokens.
    #[arg(long, default_value_t = 48)]
    prompt_tokens: usize,
    /// Timed rounds after one warm-up.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
}

struct BenchPolicy(BenchPolicyArgs);

impl BackendJob for BenchPolicy {
    type Output = anyhow::Result<()>;
    fn run<B: AutodiffBackend>(self, kind: BackendKind, device: B::Device) -> anyhow::Result<()> {
        use bench::policy::{ChunkLatency, PolicyBench};
        let args = self.0;
        let threads = bench::policy::cpu_threads();
        let repeats = args.repeats.max(1);
        println!(
            "bench policy: batch 1, {} prompt tokens, median over {repeats} timed round(s) after one warm-up, \
             on {kind} ({threads} CPU threads)",
            args.prompt_tokens.max(1)
        );
        let peak = bench::roofline::probe::<B::InnerBackend>(&device)?;
        println!("  peak      {peak}");
        let row = |who: &str, t: &ChunkLatency| {
            format!(
                "  {who:<12} prefix {:10.2} ms   step {:9.3} ms   chunk {:10.2} ms",
                t.prefix_ms, t.step_ms, t.chunk_ms
            )
        };
        for (shape, config, name) in args.shapes.selected() {
            println!(
                "{name}: {}, {} actions × {}, {} flow steps",
                describe_cameras(&config),
                config.horizon,
                config.expert.action_dim,
                config.flow.num_steps
            );
            let work = bench::roofline::chunk_work(&config, args.prompt_tokens.max(1));
            println!(
                "  work      prefix of {} tokens: {}; per step: {}",
                work.prefix_tokens, work.prefix, work.step
            );
            let spec = PolicyBench { config, prompt_tokens: args.prompt_tokens, repeats };
            // PyTorch first: its process has exited, its memory returned, before spear allocates
            // (full size in f32 is ~14 GB on each side).
            let torch = args
                .shapes
                .torch(shape, |python, device| bench::policy::run_torch(&spec, python, device, threads))?;
            let ours = bench::policy::run::<B::InnerBackend>(&spec, &device)?;
            println!("{}", row(&format!("spear ({kind})"), &ours));
            if let Some((torch, about)) = &torch {
                println!("{}   ({about})", row("torch", torch));
                println!(
                    "{}",
                    ratio_line(&[
                        ("prefix", ours.prefix_ms, torch.prefix_ms),
                        ("step", ours.step_ms, torch.step_ms),
                        ("chunk", ours.chunk_ms, torch.chunk_ms),
                    ])
                );
            }
            let bound = ChunkLatency {
                prefix_ms: peak.seconds(work.prefix) * 1e3,
                step_ms: peak.seconds(work.step) * 1e3,
                chunk_ms: peak.chunk_seconds(&work) * 1e3,
            };
            let limit = |w| if peak.compute_bound(w) { "compute" } else { "memory" };
            println!(
                "{}   (prefix {}-bound, step {}-bound)",
                row("roofline", &bound),
                limit(work.prefix),
                limit(work.step)
            );
            let mut over = format!("  measured/bound   spear {:.1}x", ours.chunk_ms / bound.chunk_ms);
            if let Some((torch, _)) = &torch {
                over += &format!("   torch {:.1}x", torch.chunk_ms / bound.chunk_ms);
            }
            println!("{over}   (per chunk)");
        }
        Ok(())
    }
}

#[derive(Args)]
struct BenchTrainArgs {
    #[command(flatten)]
    shapes: PolicyShapeArgs,
    /// Samples per step.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Prompt tokens.
    #[arg(long, default_value_t = 16)]
    prompt_tokens: usize,
    /// Timed steps after one warm-up step.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
}

impl BackendJob for BenchTrainArgs {
    type Output = anyhow::Result<()>;
    fn run<B: AutodiffBackend>(self, kind: BackendKind, device: B::Device) -> anyhow::Result<()> {
        use bench::train::{StepTime, TrainBench};
        let args = self;
        let threads = bench::policy::cpu_threads();
        let (batch, prompt_tokens, repeats) =
            (args.batch.max(1), args.prompt_tokens.max(1), args.repeats.max(1));
        println!(
            "bench train: one optimiser step (flow draws, forward and loss, backward, global-norm clip, AdamW; \
             all but MoGe trains, as in the paper's VLA stage) at batch {batch}, {prompt_tokens} prompt tokens, \
             median over {repeats} timed step(s) after one warm-up, on {kind} ({threads} CPU threads)"
        );
        for (shape, config, name) in args.shapes.selected() {
            let spec = TrainBench { config, batch, prompt_tokens, repeats };
            let tokens = spec.tokens_per_sample();
            println!(
                "{name}: {}, {} actions × {}, {tokens} tokens per sample ({} prefix + {} suffix)",
                describe_cameras(&spec.config),
                spec.config.horizon,
                spec.config.expert.action_dim,
                tokens - spec.config.horizon - 1,
                spec.config.horizon + 1
            );
            let row = |who: &str, t: &StepTime, memory: String| {
                format!(
                    "  {who:<12} {:10.2} ms/step {:9.3} steps/s {:10.2} samples/s {:12.0} tokens/s   {memory}",
                    t.step_ms,
                    t.per_second(1.0),
                    t.per_second(batch as f64),
                    t.per_second((batch * tokens) as f64)
                )
            };
            let parts = |who: &str, t: &StepTime| {
                format!(
                    "  {who:<12} forward {:10.2} ms   backward {:10.2} ms   update {:9.2} ms   loss {:.4}",
                    t.forward_ms, t.backward_ms, t.update_ms, t.loss
                )
            };
            // PyTorch first: its process has exited, its memory returned, before spear allocates.
            let torch =
                args.shapes.torch(shape, |python, device| bench::train::run_torch(&spec, python, device))?;
            let ours = bench::train::run::<B>(&spec, &device)?;
            let memory = match kind {
                BackendKind::Cpu => format!("peak memory {:.0} MB (process RSS)", ours.peak_rss_mb),
                _ => format!(
                    "peak host RSS {:.0} MB (device memory: burn 0.21 exposes no statistics)",
                    ours.peak_rss_mb
                ),
            };
            let who = format!("spear ({kind})");
            println!("{}", row(&who, &ours, memory));
            if let Some((torch, about)) = &torch {
                let memory = match torch.peak_device_mb {
                    Some(device_mb) => format!("peak device memory {device_mb:.0} MB (max_memory_allocated)"),
                    None => format!("peak memory {:.0} MB (process RSS)", torch.peak_rss_mb),
                };
                println!("{}   ({about})", row("torch", torch, memory));
            }
            println!("{}", parts(&who, &ours));
            if let Some((torch, _)) = &torch {
                println!("{}", parts("torch", torch));
                println!(
                    "{}",
                    ratio_line(&[
                        ("step", ours.step_ms, torch.step_ms),
                        ("forward", ours.forward_ms, torch.forward_ms),
                        ("backward", ours.backward_ms, torch.backward_ms),
                        ("update", ours.update_ms, torch.update_ms),
                    ])
                );
            }
        }
        Ok(())
    }
}

/// `spear bench data`.
fn bench_data(args: BenchDataArgs) -> Result<()> {
    use bench::data::{DataBench, Throughput, run, run_tf, write_bench_data};
    use spear_data::loader::MixtureConfig;
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    let scratch = std::env::temp_dir().join(format!("spear-bench-data-{}", std::process::id()));
    let (mut mixture, about) = match (&args.mixture, &args.compare_tf) {
        (Some(path), _) => (MixtureConfig::from_file(path)?, format!("mixture {}", path.display())),
        (None, Some(python)) => {
            let [episodes, steps] = [args.bench_data[0], args.bench_data[1]];
            let mixture = write_bench_data(python, &scratch, episodes, steps)?;
            (
                mixture,
                format!(
                    "bridge_dataset + droid, {episodes} episodes × {steps} steps each, written for this run"
                ),
            )
        }
        (None, None) => {
            let fixtures =
                concat!(env!("CARGO_MANIFEST_DIR"), "/../spear-data/tests/fixtures/rlds/mixture.toml");
            (MixtureConfig::from_file(fixtures)?, "spear-data's bundled fixtures (tiny episodes)".to_string())
        }
    };
    mixture.loader.workers = threads;
    mixture.loader.batch_size = args.batch_size.max(1);
    mixture.loader.shuffle_buffer_mb = args.shuffle_buffer_mb;
    let spec = DataBench { mixture, samples: args.samples.max(1) };
    let l = &spec.mixture.loader;
    println!(
        "bench data: {about}; batch {}, {} samples timed after one warm-up batch, {threads} thread(s) each side, \
         images {}×{} + {}×{}, shuffle buffer cap {} MB",
        l.batch_size,
        spec.samples,
        l.external_size[0],
        l.external_size[1],
        l.wrist_size[0],
        l.wrist_size[1],
        l.shuffle_buffer_mb
    );
    let row = |who: &str, t: &Throughput| {
        format!(
            "  {who:<8} {:9.1} samples/s   {:9.1} samples/CPU-s   peak memory {:8.1} MB",
            t.samples_per_s, t.samples_per_cpu_s, t.peak_rss_mb
        )
    };
    // tf.data first, in its own process, so that spear's peak memory is its own.
    let tf = args.compare_tf.as_ref().map(|python| run_tf(&spec, python, threads)).transpose()?;
    let ours = run(&spec)?;
    println!("{}   (read, parse, standardise, 5 Hz chunks, decode, resize)", row("spear", &ours));
    if let Some((tf, about)) = &tf {
        println!("{}   (read, parse, decode, resize; {about})", row("tf.data", tf));
        println!(
            "  ratio spear/tf.data   {:.2}x samples/s   {:.2}x per core (samples/CPU-s)   (above 1 = spear faster)",
            ours.samples_per_s / tf.samples_per_s,
            ours.samples_per_cpu_s / tf.samples_per_cpu_s
        );
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

/// `2 cameras 224×224`, or `main 280×210 + wrist 112×112` (width × height).
/// `  ratio spear/torch   NAME 1.23x …   (below 1 = spear faster)` for `(name, spear's time,
/// torch's time)` triples.
fn ratio_line(parts: &[(&str, f64, f64)]) -> String {
    let ratios: String =
        parts.iter().map(|(name, ours, torch)| format!("{name} {:.2}x   ", ours / torch)).collect();
    format!("  ratio spear/torch   {ratios}(below 1 = spear faster)")
}

fn describe_cameras(config: &spear_models::SpearPolicyConfig) -> String {
    let ([h, w], [wh, ww]) = (config.vlm.image_size, config.vlm.wrist_image_size);
    let wrists = config.cameras - 1;
    if wrists == 0 {
        format!("1 camera {w}×{h}")
    } else if [h, w] == [wh, ww] {
        format!("{} cameras {w}×{h}", config.cameras)
    } else {
        let count = if wrists > 1 { format!("{wrists} × ") } else { String::new() };
        format!("main {w}×{h} + wrist {count}{ww}×{wh}")
    }
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

/// Parameter counts of a run on the chosen backend (built lazily: nothing is allocated).
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
        if let Some(device) = kind.device() {
            let label = if kind == BackendKind::Wgpu { "adapter" } else { "device" };
            println!("  {label:<10} {device}");
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
    let kind = cli.backend;
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
        Command::Bench(BenchCommand::Policy(args)) => run_on(kind, BenchPolicy(args))??,
        Command::Bench(BenchCommand::Train(args)) => run_on(kind, args)??,
        Command::Bench(BenchCommand::Data(args)) => bench_data(args)?,
        Command::Bench(BenchCommand::Annotate(args)) => {
            let spec = bench::annotate::AnnotateBench {
                nb_neighbors: args.nb_neighbors,
                std_ratio: args.std_ratio,
                repeats: args.repeats.max(1),
            };
            bench::annotate::run_and_print(&args.sizes, &spec, args.compare_open3d.as_deref())?
        }
        Command::Data(DataCommand::Inspect { dir, json }) => {
            let report = data::inspect(&dir)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", data::render_inspect(&report));
            }
        }
        Command::Data(DataCommand::Stats { mixture, out, root }) => {
            let stats = data::stats(&mixture, root.as_deref(), &out)?;
            for d in &stats.datasets {
                println!(
                    "  {:<56} {:>8} episodes {:>10} frames {:>6} skipped",
                    d.name, d.episodes, d.frames, d.skipped
                );
                for reason in &d.skip_reasons {
                    println!("      skipped: {reason}");
                }
            }
            let f = |v: &[f64]| v.iter().map(|x| format!("{x:+.5}")).collect::<Vec<_>>().join(" ");
            let a = &stats.action_translation;
            println!(
                "action translation (m, 5 Hz, {} actions): q01 [{}] q99 [{}] mean [{}] std [{}]",
                a.count,
                f(&a.q01),
                f(&a.q99),
                f(&a.mean),
                f(&a.std)
            );
            let s = &stats.state_position;
            println!("state position (m, {} frames): q01 [{}] q99 [{}]", s.count, f(&s.q01), f(&s.q99));
            println!("wrote {}", out.display());
        }
        Command::Annotate(AnnotateCommand {
            preview: Some(AnnotateSubcommand::Preview { key, inputs, out }),
            ..
        }) => {
            let (inputs, config) = inputs.resolve()?;
            let objects = annotate::preview(&inputs, &key, &config, &out)?;
            for o in &objects {
                let [x, y, z] = o.center;
                let [a, b, c] = o.obb.extent;
                println!(
                    "  {:<24} {:>6} points  centre ({x:+.3}, {y:+.3}, {z:+.3})  extent {a:.3} × {b:.3} × {c:.3}  {:.3} from the camera",
                    o.label,
                    o.points,
                    o.distance_to_camera()
                );
            }
            println!("wrote {}: {} objects", out.display(), objects.len());
        }
        Command::Annotate(AnnotateCommand { preview: None, inputs, out }) => {
            let out = out.ok_or_else(|| anyhow::anyhow!("--out is required"))?;
            let (inputs, config) = inputs.resolve()?;
            let manifest = annotate::annotate(&inputs, &out, &config)?;
            println!("{}", annotate::render_summary(&manifest, &out));
        }
        Command::Plot { run_dir, out } => {
            let out = out.unwrap_or_else(|| run_dir.join("metrics.png"));
            let names = spear_cli::plot::plot(&run_dir, &out)?;
            println!("wrote {}: {}", out.display(), names.join(", "));
        }
        Command::Train(command) => {
            let (model, args) = match command {
                TrainCommand::Vla(args) => (spear_cli::train::Kind::Vla, args),
                TrainCommand::Vlm(args) => (spear_cli::train::Kind::Vlm, args),
            };
            let (dry_run, resolved) = (args.dry_run, args.resolved);
            let args = args.into_args();
            if dry_run {
                print!("{}", run_on(kind, TrainDryRun(model, args, resolved))??);
            } else if model == spear_cli::train::Kind::Vla {
                run_on(kind, TrainVla(args))??
            } else {
                run_on(kind, TrainVlm(args))??
            }
        }
        Command::Data(DataCommand::Preview { dir, out, episode, frames }) => {
            let drawn = data::preview(&dir, episode, frames, &out)?;
            println!("wrote {}: frames {drawn:?} of episode {episode}", out.display());
        }
    }
    Ok(())
}
