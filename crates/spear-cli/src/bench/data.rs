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

use super::{peak_rss_mb, run_script};

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
