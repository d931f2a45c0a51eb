//! `cargo xtask <command> [args…] [--backend auto|cpu|wgpu|cuda] [--debug] [-- args]`
//!
//! Builds the `spear` binary in release with the chosen backend's cargo feature and runs
//! `spear <command> --backend <backend> [args]`; every argument other than `--backend` and
//! `--debug` goes to `spear`. `auto` builds the CPU backend plus the GPU backend whose driver is
//! installed (cuda when an NVIDIA driver is visible, else wgpu when a Vulkan driver is), and
//! `spear --backend auto` then takes the GPU only if its device actually opens.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

const USAGE: &str = "\
usage: cargo xtask <command> [args for spear…] [--backend auto|cpu|wgpu|cuda] [--debug]

commands are `spear` subcommands, built in release with the chosen backend:
  train-vla     train SPEAR-1 (`spear train vla`); with no --config the embedded default: a tiny
                SPEAR-1 on a generated reach-and-rotate task, on the CPU, in minutes, then
                closed-loop rollouts against baselines [--config F] [--set k=v] [--out DIR] [--resume]
                [--dry-run: check the config, print its parameters per part, allocate nothing]
  train-vlm     train SPEAR-VLM (`spear train vlm`); with no --config the embedded default: a tiny
                SPEAR-VLM on generated scenes annotated by the real pipeline [same options]
  doctor        check that the backend computes correctly on this machine
  bench vlm     SPEAR-VLM prefill and decode latency [--full] [--compare-torch PYTHON]
  bench policy  time per action chunk (prefix + 10 flow steps) beside transformers' PI0,
                with the roofline bound [--full] [--compare-torch PYTHON]
  bench train   time of one training step (forward, loss, backward, clip, AdamW) at batch 8
                beside transformers' PI0 [--full] [--batch N] [--compare-torch PYTHON]
  bench data    training-data throughput and memory beside tf.data [--compare-tf PYTHON]
  bench annotate
                outlier removal then oriented box per object cloud (1k, 10k, 100k points)
                beside Open3D, with a parity check [--compare-open3d PYTHON]
  bench serve   openpi's Python client against spear serve at 1, 4, 16 clients (p50, p99, chunks/s,
                server overhead) --client-python PYTHON [--compare-torch PYTHON]
  bench dist    all-reduce throughput of 4-256 MiB buckets between 2 and 4 processes over loopback
                beside torch.distributed's gloo [--compare-torch PYTHON]
  vlm ask       answer a prompt about an image (see `spear vlm ask --help`)
  weights       inspect a checkpoint (`weights inspect PATH`)
  policy act    sample an action chunk (see `spear policy act --help`)
  serve         serve a policy to robot clients over openpi's websocket protocol: --checkpoint DIR
                [--host 127.0.0.1] [--port 8000] [--robot spear|droid|libero|aloha|aloha-sim] [--api-key K]
                [--max-batch N] [--default-prompt TEXT];
                `serve --probe URL` sends one observation to a running server and prints the chunk
  plot          draw RUN_DIR/metrics.jsonl into a PNG, one panel per series
  annotate      3D question-answer data: --images DIR --points DIR --masks DIR [--labels F]
                --out DIR [--config configs/annotate/default.toml]; `annotate preview KEY
                --out F.png …` draws one image's boxes (see `spear annotate --help`)

  --backend     auto (default): builds cpu plus cuda if an NVIDIA driver is visible, else plus
                wgpu if a Vulkan driver is; spear uses the GPU when its device opens, else the
                CPU, and says which
  --debug       build in the dev profile instead of release (faster to build, slower to run)

CUDA builds on a machine without the CUDA toolkit need CUDARC_CUDA_VERSION (e.g. 13000).";

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug)]
struct Args {
    command: String,
    backend: String,
    release: bool,
    forwarded: Vec<String>,
}

fn parse(args: impl Iterator<Item = String>) -> Result<Args> {
    let mut args = args.peekable();
    let mut parsed =
        Args { command: String::new(), backend: "auto".into(), release: true, forwarded: vec![] };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--" => parsed.forwarded.extend(args.by_ref()),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "--debug" => parsed.release = false,
            "--backend" => parsed.backend = args.next().context("--backend needs a value")?,
            _ if arg.starts_with("--backend=") => parsed.backend = arg["--backend=".len()..].to_string(),
            _ if parsed.command.is_empty() && !arg.starts_with('-') => parsed.command = arg,
            _ if !parsed.command.is_empty() => parsed.forwarded.push(arg),
            _ => bail!("unexpected argument `{arg}` before the command\n\n{USAGE}"),
        }
    }
    if parsed.command.is_empty() {
        bail!("{USAGE}");
    }
    Ok(parsed)
}

impl Args {
    /// `train-vla` is `spear train vla`, `train-vlm` is `spear train vlm`.
    fn expand_aliases(&mut self) {
        if let Some(model) = self.command.strip_prefix("train-").map(str::to_string) {
            self.command = "train".into();
            self.forwarded.insert(0, model);
        }
    }

    /// Whether this runs an embedded default: `train vla|vlm` without `--config`.
    fn is_embedded_training(&self) -> bool {
        self.command == "train"
            && matches!(self.forwarded.first().map(String::as_str), Some("vla" | "vlm"))
            && !self.forwarded.iter().any(|a| a.starts_with("--config"))
    }
}

fn run() -> Result<ExitCode> {
    let mut args = parse(std::env::args().skip(1))?;
    args.expand_aliases();
    let embedded = args.is_embedded_training();
    // The features to build and the backend spear is told to use.
    let (features, backend) = match args.backend.as_str() {
        // The embedded defaults' tiny models run fastest on the CPU (a GPU's launch overhead
        // dominates them; lavapipe's WGPU is far slower).
        "auto" if embedded => {
            eprintln!("xtask: backend cpu (the embedded default's tiny model; pass --backend to choose)");
            ("cpu".to_string(), "cpu")
        }
        // Which GPU feature is worth compiling is decided here from the installed drivers; whether
        // its device opens is spear's decision at run time (`--backend auto`), with the CPU
        // backend compiled in as the fallback.
        "auto" => match detect() {
            (Some(gpu), why) => {
                eprintln!(
                    "xtask: building spear with {gpu} and cpu ({why}); spear uses {gpu} if its device opens"
                );
                (format!("{gpu},cpu"), "auto")
            }
            (None, why) => {
                eprintln!("xtask: backend cpu ({why})");
                ("cpu".to_string(), "cpu")
            }
        },
        b @ ("cpu" | "wgpu" | "cuda") => (b.to_string(), b),
        other => bail!("unknown backend `{other}`: expected auto, cpu, wgpu or cuda"),
    };
    // GPU builds tune their kernels (the `cuda` feature implies it).
    let features = if features.contains("wgpu") { format!("{features},autotune") } else { features };
    if features.contains("cuda")
        && std::env::var_os("CUDARC_CUDA_VERSION").is_none()
        && which("nvcc").is_none()
    {
        eprintln!(
            "xtask: no nvcc and no CUDARC_CUDA_VERSION; if the build fails, set it (13000 for CUDA 13 / driver 580)"
        );
    }

    let root = workspace_root();
    let profile = if args.release { "release" } else { "debug" };
    let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    build.current_dir(&root).args([
        "build",
        "-p",
        "spear-cli",
        "--bin",
        "spear",
        "--no-default-features",
        "--features",
        &features,
    ]);
    if args.release {
        build.arg("--release");
    }
    eprintln!("xtask: cargo build {profile} spear --features {features}");
    if !build.status().context("run cargo build")?.success() {
        bail!("building spear with --features {features} failed");
    }

    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let binary = target_dir.join(profile).join("spear");
    let status = Command::new(&binary)
        .env("GLIBC_TUNABLES", malloc_tunables())
        .arg(&args.command)
        .args(["--backend", backend])
        .args(&args.forwarded)
        .status()
        .with_context(|| format!("run {}", binary.display()))?;
    Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// glibc malloc settings for `spear`: burn's CPU backend allocates a fresh buffer for nearly every
/// tensor, and with glibc's defaults the large ones are mapped and unmapped each time (the kernel
/// zeroing pages on every step); keeping freed memory for reuse made a tiny training step 1.6×
/// faster (913 → 578 ms in `spear bench train`, identical losses). The workspace forbids `unsafe`,
/// so `mallopt` is out; an environment variable set by the launcher is not. Settings already in
/// the environment are kept, after ours.
fn malloc_tunables() -> String {
    let ours = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296:\
                glibc.malloc.top_pad=268435456";
    match std::env::var("GLIBC_TUNABLES") {
        Ok(theirs) if !theirs.is_empty() => format!("{ours}:{theirs}"),
        _ => ours.to_string(),
    }
}

/// The GPU backend worth compiling for `auto`, from the drivers installed, with the reason.
fn detect() -> (Option<&'static str>, String) {
    if Path::new("/proc/driver/nvidia/version").exists() {
        return (Some("cuda"), "an NVIDIA driver is loaded (/proc/driver/nvidia/version)".into());
    }
    if let Some(smi) = which("nvidia-smi")
        && Command::new(&smi).arg("-L").output().is_ok_and(|o| o.status.success())
    {
        return (Some("cuda"), format!("{} lists a GPU", smi.display()));
    }
    if let Ok(files) = std::env::var("VK_DRIVER_FILES").or_else(|_| std::env::var("VK_ICD_FILENAMES")) {
        return (Some("wgpu"), format!("the environment names Vulkan drivers ({files})"));
    }
    for dir in ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d", "/usr/local/share/vulkan/icd.d"] {
        let drivers: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if !drivers.is_empty() {
            return (
                Some("wgpu"),
                format!("no NVIDIA driver; Vulkan drivers in {dir}: {}", drivers.join(", ")),
            );
        }
    }
    (None, "no NVIDIA driver and no Vulkan driver found".into())
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(program)).find(|p| p.is_file())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace root").to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Result<Args> {
        parse(line.split_whitespace().map(String::from))
    }

    #[test]
    fn parses_command_backend_and_forwarded_arguments() {
        let a = args("doctor --backend wgpu -- --steps 3").unwrap();
        assert_eq!((a.command.as_str(), a.backend.as_str(), a.release), ("doctor", "wgpu", true));
        assert_eq!(a.forwarded, ["--steps", "3"]);
        let a = args("doctor --backend=cuda --debug").unwrap();
        assert_eq!((a.backend.as_str(), a.release), ("cuda", false));
        assert_eq!(args("doctor").unwrap().backend, "auto");
        let a = args("bench vlm --full --backend cpu --compare-torch python3").unwrap();
        assert_eq!((a.command.as_str(), a.backend.as_str()), ("bench", "cpu"));
        assert_eq!(a.forwarded, ["vlm", "--full", "--compare-torch", "python3"]);
        let a = args("bench policy --repeats 1 --backend=cpu").unwrap();
        assert_eq!((a.command.as_str(), a.backend.as_str()), ("bench", "cpu"));
        assert_eq!(a.forwarded, ["policy", "--repeats", "1"]);
        let a = args("train-vla --set run.steps=5").unwrap();
        assert_eq!(
            (a.command.as_str(), a.forwarded.as_slice()),
            ("train-vla", &["--set".to_string(), "run.steps=5".into()][..])
        );
        let a = args("bench annotate --backend cpu -- --compare-open3d python3").unwrap();
        assert_eq!((a.command.as_str(), a.backend.as_str()), ("bench", "cpu"));
        assert_eq!(a.forwarded, ["annotate", "--compare-open3d", "python3"]);
    }

    #[test]
    fn train_aliases_expand_and_embedded_defaults_are_recognised() {
        let expanded = |line: &str| {
            let mut a = args(line).unwrap();
            a.expand_aliases();
            a
        };
        let a = expanded("train-vla --set run.steps=5");
        assert_eq!(
            (a.command.as_str(), a.forwarded.as_slice()),
            ("train", &["vla", "--set", "run.steps=5"].map(String::from)[..])
        );
        assert!(a.is_embedded_training());
        assert!(expanded("train-vlm").is_embedded_training());
        assert!(!expanded("train-vla -- --config configs/vla/pretrain_oxe.toml").is_embedded_training());
        assert!(
            !expanded("train-vla -- --config=configs/vla/pretrain_oxe.toml --dry-run").is_embedded_training()
        );
        assert!(!expanded("bench train").is_embedded_training());
        assert_eq!(expanded("doctor").command, "doctor");
    }

    #[test]
    fn rejects_missing_commands_and_stray_arguments() {
        assert!(args("").is_err());
        assert!(args("doctor --backend").unwrap_err().to_string().contains("--backend needs a value"));
        assert!(
            args("--full doctor").unwrap_err().to_string().contains("unexpected argument `--full` before")
        );
    }
}
