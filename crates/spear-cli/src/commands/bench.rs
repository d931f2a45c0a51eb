//! `spear bench`: each benchmark beside its reference tool, measured in the same run, with the
//! ratios printed by one function ([`ratio_line`]).
//!
//! `spear bench vlm` lives in [`vlm`]; `spear bench policy` in [`policy`], its FLOP/byte model and
//! the machine's measured peaks in [`roofline`]; `spear bench train` in [`train`]; `spear bench
//! data` in [`data`]; `spear bench annotate` in [`annotate`]; `spear bench serve` in [`serve`].
//! Each module owns its arguments, its run and its report.

pub mod annotate;
pub mod data;
pub mod dist;
pub mod policy;
pub mod roofline;
pub mod serve;
pub mod train;
pub mod vlm;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use spear_models::SpearPolicyConfig;

use crate::backend::{BackendChoice, run_on};

/// `spear bench …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum BenchCommand {
    /// SPEAR-VLM prefill (main 280×210 + wrist 112×112 + prompt) and per-token decode latency.
    Vlm(vlm::BenchVlmArgs),
    /// Time per action chunk (prefix once + N flow steps): π0's shape beside transformers' PI0,
    /// SPEAR-1's on spear alone, each with its roofline bound from FLOPs, bytes and measured peaks.
    Policy(policy::BenchPolicyArgs),
    /// Time of one training step (flow draws, forward and loss, backward, global-norm clipping,
    /// AdamW) at batch B: π0's shape beside transformers' PI0, SPEAR-1's on spear alone.
    Train(train::BenchTrainArgs),
    /// Training-data throughput and peak memory of the whole per-step pipeline (read, parse,
    /// standardise, 5 Hz chunks, decode, resize) beside tf.data reading and decoding the same files.
    Data(data::BenchDataArgs),
    /// Statistical outlier removal then the oriented bounding box, per object cloud (1k, 10k and
    /// 100k points), beside Open3D on the same clouds; also checks that both keep the same points
    /// and fit the same boxes.
    Annotate(annotate::BenchAnnotateArgs),
    /// openpi's Python client against `spear serve` (a π0 checkpoint as `droid`) at 1, 4 and 16
    /// concurrent clients, beside openpi's server design around transformers' PI0: p50 and p99
    /// round trips, chunks per second, server overhead.
    Serve(serve::BenchServeArgs),
    /// Throughput of summing gradient buckets (4–256 MiB) between 2 and 4 processes over
    /// loopback, through burn-collective's global mode, beside torch.distributed's gloo backend.
    Dist(dist::BenchDistArgs),
}

impl BenchCommand {
    /// Runs the benchmark (on `backend` where it computes with burn) and prints its report.
    pub fn run(self, backend: BackendChoice) -> Result<()> {
        match self {
            BenchCommand::Vlm(args) => run_on(backend, args)?,
            BenchCommand::Policy(args) => run_on(backend, args)?,
            BenchCommand::Train(args) => run_on(backend, args)?,
            BenchCommand::Data(args) => args.run(),
            BenchCommand::Annotate(args) => args.run(),
            BenchCommand::Serve(args) => run_on(backend, args)?,
            BenchCommand::Dist(args) => args.run(),
        }
    }
}

/// Which way a ratio is good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// Times: below 1, spear is faster.
    Lower,
    /// Throughputs: above 1, spear is faster.
    Higher,
}

/// `  ratio spear/REFERENCE   NAME 1.23x …   (below 1 = spear faster)` for `(name, spear's value,
/// the reference's value)` triples: the one line every benchmark ends its comparison with.
pub fn ratio_line(reference: &str, parts: &[(&str, f64, f64)], better: Better) -> String {
    let ratios: String =
        parts.iter().map(|(name, ours, theirs)| format!("{name} {:.2}x   ", ours / theirs)).collect();
    let reading = match better {
        Better::Lower => "below 1 = spear faster",
        Better::Higher => "above 1 = spear faster",
    };
    format!("  ratio spear/{reference}   {ratios}({reading})")
}

/// The cameras of a policy shape: `2 cameras 224×224`, or `main 280×210 + wrist 112×112`
/// (width × height).
pub fn describe_cameras(config: &SpearPolicyConfig) -> String {
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

/// The policy shapes `bench policy` and `bench train` time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PolicyShape {
    /// π0's (no MoGe, linear flow, square cameras), the one compared with PyTorch.
    Pi0,
    /// SPEAR-1's (MoGe, S³ rotations, 280×210 main + 112×112 wrist), timed on spear alone.
    Spear1,
}

/// The PyTorch side of the model benchmarks (`bench vlm`, `bench policy`, `bench train`).
#[derive(Debug, Clone, clap::Args)]
pub struct TorchArgs {
    /// A Python with torch and transformers (tools/reference/requirements-vlm.txt for `bench vlm`,
    /// requirements-pi0.txt for `bench policy` and `bench train`): also time the PyTorch twin
    /// (`tools/bench/*_torch.py`) on the same configuration and print the ratios.
    #[arg(long)]
    pub compare_torch: Option<PathBuf>,
    /// Device for the PyTorch run (`cpu`, `cuda`).
    #[arg(long, default_value = "cpu")]
    pub torch_device: String,
}

/// What `bench policy` and `bench train` share: which shapes, at which size, beside PyTorch or not
/// (only π0's shape has a PyTorch twin).
#[derive(Debug, Clone, clap::Args)]
pub struct PolicyShapeArgs {
    /// Full size (PaliGemma 3B + Gemma-300M expert: π0 with 3 cameras 224×224 and 50 actions of 32,
    /// and SPEAR-1) instead of tiny.
    #[arg(long)]
    full: bool,
    /// Mid size instead (≈ 0.5 B parameters: the full shapes with 4 Gemma and expert layers at
    /// width 1024, 6 SigLIP and 4 MoGe blocks), small enough to train on a CPU: what the memory
    /// plan is checked on.
    #[arg(long, conflicts_with = "full")]
    mid: bool,
    #[command(flatten)]
    torch: TorchArgs,
    /// Time only this shape (default: both).
    #[arg(long, value_enum)]
    only: Option<PolicyShape>,
}

/// `full` cut to mid size ([`PolicyShapeArgs::mid`]).
fn mid(mut full: SpearPolicyConfig) -> SpearPolicyConfig {
    let narrow = |g: spear_models::gemma::GemmaConfig| {
        g.with_num_layers(4)
            .with_hidden_size(1024)
            .with_intermediate_size(4096)
            .with_num_heads(8)
            .with_head_dim(128)
    };
    full.vlm.gemma = narrow(full.vlm.gemma);
    full.expert.gemma = narrow(full.expert.gemma);
    full.vlm.siglip = full.vlm.siglip.with_num_layers(6);
    if let Some(moge) = &mut full.vlm.moge {
        *moge = spear_models::vlm::MogeEncoderConfig::last_four(moge.dinov2.clone().with_num_layers(4));
    }
    full
}

impl PolicyShapeArgs {
    /// The shapes to time, in order, less those `--only` leaves out: each with its configuration
    /// (full size or tiny) and its name in the report.
    pub fn selected(&self) -> Vec<(PolicyShape, SpearPolicyConfig, String)> {
        let (size, pi0, spear1) = if self.full {
            ("full-size", SpearPolicyConfig::pi0(), SpearPolicyConfig::spear1())
        } else if self.mid {
            ("mid-size", mid(SpearPolicyConfig::pi0()), mid(SpearPolicyConfig::spear1()))
        } else {
            ("tiny", policy::tiny_pi0(), SpearPolicyConfig::tiny())
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
    pub fn torch<T>(
        &self,
        shape: PolicyShape,
        run: impl FnOnce(&Path, &str) -> Result<T>,
    ) -> Result<Option<T>> {
        match (&self.torch.compare_torch, shape) {
            (Some(python), PolicyShape::Pi0) => run(python, &self.torch.torch_device).map(Some),
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

/// The median (the upper one for an even count); `v` must not be empty.
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Peak resident memory of this process, MB (`VmHWM`), since it started or since the last
/// [`reset_peak_rss`].
pub(crate) fn peak_rss_mb() -> Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/self/status")?;
    Ok(kb / 1024.0)
}

/// Restarts [`peak_rss_mb`] from the current resident memory (Linux ≥ 4.0: writing 5 to
/// `/proc/self/clear_refs`), so that one process can report the peak of each of several runs.
pub(crate) fn reset_peak_rss() -> Result<()> {
    std::fs::write("/proc/self/clear_refs", "5").context("resetting VmHWM through /proc/self/clear_refs")
}

/// Runs `tools/bench/<script>` with `python`, `--config` naming a temporary file that holds
/// `config` as JSON, and `args`; returns the JSON object the script printed last on stdout and a
/// line about the run (torch version, device, threads).
pub(crate) fn run_script(
    python: &Path,
    script: &str,
    config: serde_json::Value,
    args: &[(&str, String)],
) -> Result<(serde_json::Value, String)> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools/bench").join(script);
    let stem = script.file_stem().unwrap_or_default().to_string_lossy();
    let path = std::env::temp_dir().join(format!("spear-bench-{stem}-{}.json", std::process::id()));
    std::fs::write(&path, config.to_string())?;
    let mut command = Command::new(python);
    command.arg(&script).args(["--config", &path.display().to_string()]);
    for (flag, value) in args {
        command.args([flag, value.as_str()]);
    }
    let output =
        command.output().with_context(|| format!("running {} {}", python.display(), script.display()));
    let _ = std::fs::remove_file(&path);
    let output = output?;
    if !output.status.success() {
        bail!("{} failed:\n{}", script.display(), String::from_utf8_lossy(&output.stderr));
    }
    let line = String::from_utf8_lossy(&output.stdout);
    let json: serde_json::Value = serde_json::from_str(line.trim().lines().last().unwrap_or_default())
        .with_context(|| format!("{} printed no JSON: {line}", script.display()))?;
    let about = format!("torch {} on {}, {} threads", json["torch"], json["device"], json["threads"]);
    Ok((json, about.replace('"', "")))
}
