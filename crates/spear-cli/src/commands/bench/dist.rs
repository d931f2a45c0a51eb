//! `spear bench dist`: the throughput of summing SPEAR-1-sized gradient buckets between 2 and 4
//! processes on this machine over loopback, through the dist layer's ring between nodes (each
//! process a node, node 0 hosting the rendezvous), beside PyTorch's
//! `torch.distributed` gloo backend doing the same all-reduce in the same run
//! (`tools/bench/dist_gloo.py`); and what a data-parallel step of the tiny model exchanges.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use burn::tensor::Distribution;
use spear_train::dist::{Launch, Nodes, Rank, Ring, free_ports};

use super::{Better, median, ratio_line};

type Cpu = burn::backend::Flex;

/// `spear bench dist`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchDistArgs {
    /// Processes per measurement, each a node on 127.0.0.1.
    #[arg(long, value_delimiter = ',', default_value = "2,4")]
    processes: Vec<usize>,
    /// Bucket sizes, MiB of float32 (spear's default bucket is 256).
    #[arg(long, value_delimiter = ',', default_value = "4,64,256")]
    mib: Vec<f64>,
    /// Timed all-reduces per size (after one warm-up).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// A Python with torch (tools/bench/requirements-dist.txt): the same all-reduces through
    /// torch.distributed's gloo backend, and the ratios.
    #[arg(long)]
    compare_torch: Option<PathBuf>,
    /// Seconds an all-reduce may wait for the other processes.
    #[arg(long, default_value_t = 120)]
    dist_timeout: u64,
    /// One process of a measurement: `PROCESSES,RANK,PORT` (the bench starts these itself).
    #[arg(long, hide = true)]
    worker: Option<String>,
}

impl BenchDistArgs {
    /// Runs the benchmark, or one process of it.
    pub fn run(self) -> Result<()> {
        if let Some(worker) = &self.worker {
            return self.work(worker);
        }
        let tiny = tiny_gradient_values()?;
        println!(
            "bench dist: all-reduce (sum) of float32 buckets between processes on 127.0.0.1, each a node of \
             spear's ring (reduce-scatter then all-gather over TCP); median of {} after one warm-up; algorithm \
             bandwidth = bucket bytes / time",
            self.repeats
        );
        let mut rows = Vec::new();
        for &processes in &self.processes {
            let mut sizes = self.mib.clone();
            sizes.push(tiny as f64 * 4.0 / (1 << 20) as f64);
            let spear = self.spear(processes, &sizes)?;
            let gloo = match &self.compare_torch {
                Some(python) => Some(gloo(python, processes, &self.mib, self.repeats)?),
                None => None,
            };
            rows.push((processes, spear, gloo));
        }
        println!(
            "  {:>9} {:>9}   {:>12} {:>10}   {:>12} {:>10}",
            "processes", "bucket", "spear time", "GB/s", "gloo time", "GB/s"
        );
        let mut ratios = Vec::new();
        for (processes, spear, gloo) in &rows {
            for (i, &mib) in self.mib.iter().enumerate() {
                let gb = mib * (1 << 20) as f64 / 1e9;
                let ours = spear[i];
                let theirs = gloo.as_ref().map(|g| g[i]);
                let theirs_text =
                    theirs.map(|t| format!("   {:>9.2} ms {:>10.2}", t * 1e3, gb / t)).unwrap_or_default();
                println!(
                    "  {processes:>9} {:>5} MiB   {:>9.2} ms {:>10.2}{theirs_text}",
                    mib,
                    ours * 1e3,
                    gb / ours
                );
                if let Some(t) = theirs {
                    ratios.push((format!("{processes}×{mib}MiB"), gb / ours, gb / t));
                }
            }
        }
        if !ratios.is_empty() {
            let parts: Vec<(&str, f64, f64)> = ratios.iter().map(|(n, a, b)| (n.as_str(), *a, *b)).collect();
            println!("{}  GB/s by processes × bucket", ratio_line("gloo", &parts, Better::Higher));
        }
        for (processes, spear, _) in &rows {
            println!(
                "  a data-parallel step of the tiny SPEAR-1 ({tiny} trainable values, one bucket) exchanges its \
                 gradients in {:.2} ms between {processes} processes",
                spear[self.mib.len()] * 1e3
            );
        }
        Ok(())
    }

    /// Rank 0's median seconds per size, `processes` processes of this binary.
    fn spear(&self, processes: usize, sizes: &[f64]) -> Result<Vec<f64>> {
        let port = free_ports(processes + 1)?;
        let exe = std::env::current_exe()?;
        let sizes_text: Vec<String> = sizes.iter().map(|m| m.to_string()).collect();
        let mut children = Vec::new();
        for rank in 0..processes {
            let child = Command::new(&exe)
                .args(["bench", "dist", "--worker", &format!("{processes},{rank},{port}")])
                .args(["--mib", &sizes_text.join(","), "--repeats", &self.repeats.to_string()])
                .args(["--dist-timeout", &self.dist_timeout.to_string()])
                .stdout(if rank == 0 { Stdio::piped() } else { Stdio::null() })
                .spawn()
                .with_context(|| format!("starting {}", exe.display()))?;
            children.push(child);
        }
        let mut outputs = Vec::new();
        for child in children {
            outputs.push(child.wait_with_output()?);
        }
        if let Some(failed) = outputs.iter().position(|o| !o.status.success()) {
            bail!("process {failed} of {processes} failed ({})", outputs[failed].status);
        }
        parse_times(&String::from_utf8_lossy(&outputs[0].stdout), sizes.len())
    }

    /// One process: joins the others, then times each size; rank 0 prints `MIB SECONDS…`.
    fn work(&self, spec: &str) -> Result<()> {
        let parts: Vec<usize> = spec.split(',').map(|s| s.parse()).collect::<Result<_, _>>()?;
        let [count, rank, port] = parts[..] else { bail!("--worker PROCESSES,RANK,PORT") };
        let nodes = Nodes {
            count,
            rank,
            master_addr: "127.0.0.1".into(),
            master_port: port as u16,
            node_addr: "127.0.0.1".into(),
            data_port: (port + 1 + rank) as u16,
        };
        let mut launch = Launch::single(Default::default()).on_nodes(Some(nodes.clone()));
        launch.timeout = std::time::Duration::from_secs(self.dist_timeout);
        let ring = Ring::connect(&nodes, launch.timeout).map_err(anyhow::Error::msg)?;
        let rank = Rank::join::<Cpu>(&launch, 0, Some(ring))?;
        let device = Default::default();
        for &mib in &self.mib {
            let n = (mib * (1 << 20) as f64 / 4.0) as usize;
            let mut times = Vec::new();
            for round in 0..=self.repeats {
                // A fresh bucket each time, as training concatenates one.
                let tensor = Tensor::<Cpu, 1>::random([n], Distribution::Normal(0.0, 1.0), &device);
                rank.barrier::<Cpu>(&device)?;
                let start = Instant::now();
                rank.sum(tensor, "the bench's all-reduce")?;
                if round > 0 {
                    times.push(start.elapsed().as_secs_f64());
                }
            }
            if rank.is_main() {
                println!("{mib} {}", median(times));
            }
        }
        rank.finish::<Cpu>()?;
        Ok(())
    }
}

/// `tools/bench/dist_gloo.py` on `python`: gloo's median seconds per size.
fn gloo(python: &PathBuf, processes: usize, mib: &[f64], repeats: usize) -> Result<Vec<f64>> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools/bench/dist_gloo.py");
    let sizes: Vec<String> = mib.iter().map(|m| m.to_string()).collect();
    let output = Command::new(python)
        .arg(&script)
        .args(["--processes", &processes.to_string(), "--mib", &sizes.join(",")])
        .args(["--repeats", &repeats.to_string(), "--port", &free_ports(1)?.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {} {}", python.display(), script.display()))?;
    if !output.status.success() {
        bail!("{} failed ({})", script.display(), output.status);
    }
    parse_times(&String::from_utf8_lossy(&output.stdout), mib.len())
}

/// `MIB SECONDS` lines, in order.
fn parse_times(text: &str, count: usize) -> Result<Vec<f64>> {
    let times: Vec<f64> =
        text.lines().filter_map(|l| l.split_whitespace().nth(1).and_then(|t| t.parse().ok())).collect();
    if times.len() != count {
        bail!("expected {count} timings, got {text:?}");
    }
    Ok(times)
}

/// The trainable values of the embedded tiny SPEAR-1 (configs/vla/tiny.toml): what one of its
/// data-parallel steps sums.
fn tiny_gradient_values() -> Result<u64> {
    let config = crate::commands::train::default_config(crate::commands::train::Kind::Vla)?;
    let config = spear_train::config::TrainConfig::load(&config, &[])?;
    let parts = spear_train::plan::parameter_counts::<Cpu>(&config, &Default::default());
    Ok(parts.iter().map(|p| p.trainable).sum())
}
