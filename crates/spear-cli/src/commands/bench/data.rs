//! `spear bench data`: throughput and memory of the training data pipeline (read, parse,
//! standardise, resample to 5 Hz, chunk, decode, resize) beside the tf.data pipeline of Octo and
//! OpenVLA reading and decoding the same files (`tools/bench/data_tf.py`) in the same run.
//!
//! Both sides are measured in wall-clock samples per second and in samples per CPU-second (user +
//! system time of the process during the timed part), the per-core figure the comparison is about:
//! it does not depend on how each side spreads its threads.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use spear_data::loader::{Loader, MixtureConfig, MixtureEntry};

use super::{Better, peak_rss_mb, ratio_line, run_script};

/// `spear bench data`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchDataArgs {
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

impl BenchDataArgs {
    /// Runs the benchmark (tf.data first, in its own process) and prints the report.
    pub fn run(self) -> Result<()> {
        let args = self;
        let threads =
            args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
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
                (
                    MixtureConfig::from_file(fixtures)?,
                    "spear-data's bundled fixtures (tiny episodes)".to_string(),
                )
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
            let parts = [
                ("samples/s", ours.samples_per_s, tf.samples_per_s),
                ("per core (samples/CPU-s)", ours.samples_per_cpu_s, tf.samples_per_cpu_s),
            ];
            println!("{}", ratio_line("tf.data", &parts, Better::Higher));
        }
        let _ = std::fs::remove_dir_all(&scratch);
        Ok(())
    }
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct DataBench {
    /// The mixture (datasets, weights, loader settings).
    pub mixture: MixtureConfig,
    /// Samples timed after one warm-up batch.
    pub samples: usize,
}

/// One side's numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throughput {
    /// Samples per second, wall clock.
    pub samples_per_s: f64,
    /// Samples per CPU-second.
    pub samples_per_cpu_s: f64,
    /// Peak resident memory of the process, MB.
    pub peak_rss_mb: f64,
}

/// User + system CPU seconds of this process so far (`/proc/self/stat`).
fn cpu_seconds() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = stat.rsplit_once(") ").context("unexpected /proc/self/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / clock_ticks())
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`; 100 on every mainstream Linux).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Times the loader: one warm-up batch, then `samples` samples through the prefetching iterator.
pub fn run(bench: &DataBench) -> Result<Throughput> {
    let mut batches = Loader::open(&bench.mixture)?.prefetch();
    batches.next().context("no batch")??;
    let size = bench.mixture.loader.batch_size;
    let count = bench.samples.div_ceil(size).max(1);
    let (start, cpu) = (Instant::now(), cpu_seconds()?);
    for _ in 0..count {
        let batch = batches.next().context("the loader stopped")??;
        std::hint::black_box(&batch.external);
    }
    let (seconds, cpu) = (start.elapsed().as_secs_f64(), cpu_seconds()? - cpu);
    let samples = (count * size) as f64;
    Ok(Throughput {
        samples_per_s: samples / seconds,
        samples_per_cpu_s: samples / cpu.max(1e-9),
        peak_rss_mb: peak_rss_mb()?,
    })
}

/// Times `tools/bench/data_tf.py` on the same mixture with `threads` threads.
pub fn run_tf(bench: &DataBench, python: &Path, threads: usize) -> Result<(Throughput, String)> {
    let mut datasets = Vec::new();
    for entry in &bench.mixture.datasets {
        let spec = spear_data::oxe::spec_for_mixture(&entry.name)
            .with_context(|| format!("{} is not in the registry", entry.name))?;
        let dir = bench.mixture.dataset_dir(entry).map_err(anyhow::Error::msg)?;
        datasets.push(serde_json::json!({
            "dir": dir, "weight": entry.weight, "external": spec.external, "wrist": spec.wrist,
        }));
    }
    let l = &bench.mixture.loader;
    let config = serde_json::json!({
        "datasets": datasets, "batch_size": l.batch_size, "external_size": l.external_size, "wrist_size": l.wrist_size,
    });
    let args = [("--samples", bench.samples.to_string()), ("--threads", threads.to_string())];
    let (json, _) = run_script(python, "data_tf.py", config, &args)?;
    let get = |key: &str| json[key].as_f64().with_context(|| format!("no {key} in {json}"));
    let throughput = Throughput {
        samples_per_s: get("steps_per_s")?,
        samples_per_cpu_s: get("steps_per_cpu_s")?,
        peak_rss_mb: get("peak_rss_mb")?,
    };
    Ok((throughput, json["about"].as_str().unwrap_or_default().to_string()))
}

/// Writes the benchmark datasets (bridge_dataset and droid with `episodes` × `steps` and camera-like
/// images) into `dir` with `tools/bench/data_tf.py --write`, and returns a mixture over them with
/// Table 4's weights for the two.
pub fn write_bench_data(python: &Path, dir: &Path, episodes: usize, steps: usize) -> Result<MixtureConfig> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools/bench/data_tf.py");
    let output = std::process::Command::new(python)
        .arg(&script)
        .args([
            "--write",
            &dir.display().to_string(),
            "--episodes",
            &episodes.to_string(),
            "--steps",
            &steps.to_string(),
        ])
        .output()
        .with_context(|| format!("running {} {}", python.display(), script.display()))?;
    if !output.status.success() {
        anyhow::bail!("{} --write failed:\n{}", script.display(), String::from_utf8_lossy(&output.stderr));
    }
    let entry = |name: &str, weight: f64| MixtureEntry { name: name.into(), weight, path: None };
    Ok(MixtureConfig {
        root: Some(dir.to_path_buf()),
        split: "train".into(),
        datasets: vec![entry("bridge_dataset", 18.0), entry("droid", 35.0)],
        loader: Default::default(),
        file: None,
    })
}
