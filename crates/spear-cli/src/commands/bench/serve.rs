//! `spear bench serve`: openpi's own Python client (`tools/bench/serve_client.py`, one process per
//! client) against `spear serve` and, in the same run, against openpi's serving design around
//! transformers' PI0 (`tools/bench/serve_pi0_torch.py`) on the same checkpoint, at 1, 4 and 16
//! concurrent clients: round-trip p50 and p99, chunks per second, and each server's overhead
//! (the p50 of one client less the bare sampling time, measured in process).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::backend::AutodiffBackend;
use spear_policy::{LoadOptions, Policy};
use spear_serve::openpi::NormStats;
use spear_serve::preset::Preset;
use spear_serve::server::{ServeConfig, Server, facts};

use super::policy::cpu_threads;
use super::{Better, median, ratio_line};
use crate::backend::{BackendJob, BackendKind};

/// `spear bench serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchServeArgs {
    /// A Python with openpi-client 0.1.2 (tools/reference/requirements-serve.txt): the clients.
    #[arg(long, env = "SPEAR_OPENPI_PYTHON")]
    client_python: PathBuf,
    /// A Python with torch, transformers, websockets and openpi-client
    /// (tools/bench/requirements-serve-torch.txt): also serve the checkpoint from openpi's server
    /// design around transformers' PI0 and print the ratios.
    #[arg(long)]
    compare_torch: Option<PathBuf>,
    /// A π0 checkpoint with its norm_stats.json, served as `droid` (default: the tiny π0 of
    /// spear-serve's test fixtures).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Its tokenizer.json (default: the tiny PaliGemma tokenizer of the fixtures).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Concurrent clients, one measurement each.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    clients: Vec<usize>,
    /// Timed requests per client (after 2 warm-up requests).
    #[arg(long, default_value_t = 30)]
    requests: usize,
    /// spear serve's --max-batch.
    #[arg(long, default_value_t = 8)]
    max_batch: usize,
}

/// One load's numbers, as the client saw them.
struct Load {
    p50_ms: f64,
    p99_ms: f64,
    chunks_per_s: f64,
}

impl BackendJob for BenchServeArgs {
    type Output = Result<()>;
    fn run<B: AutodiffBackend>(self, kind: BackendKind, device: B::Device) -> Result<()> {
        let tools = tools();
        let root = tools.ancestors().nth(2).unwrap_or(&tools);
        let checkpoint = self
            .checkpoint
            .clone()
            .unwrap_or_else(|| root.join("crates/spear-serve/tests/fixtures/pi0_droid"));
        let tokenizer = self
            .tokenizer
            .clone()
            .unwrap_or_else(|| root.join("crates/spear-models/tests/fixtures/paligemma-tiny/tokenizer.json"));
        let stats_path = NormStats::find(&checkpoint).map_err(anyhow::Error::msg)?.with_context(|| {
            format!("{}: no norm_stats.json beside the weights or under assets/", checkpoint.display())
        })?;
        let norm_stats = NormStats::read(&stats_path).map_err(anyhow::Error::msg)?;
        let options = LoadOptions { tokenizer: Some(tokenizer.clone()), ..LoadOptions::default() };
        let mut policy = Policy::<B::InnerBackend>::load(&checkpoint, &options, &device)?;
        let threads = cpu_threads();
        let preset = Preset::Droid;
        let facts = facts(&policy, "bench", Some(norm_stats.clone()));
        preset.check(&facts).map_err(anyhow::Error::msg)?;
        println!(
            "bench serve: {} as `{}` (chunks of {} actions, the model's {} values cut to DROID's 8), \
             openpi-client's WebsocketClientPolicy, one process per client, {} timed requests each after 2 \
             warm-up, DROID-shaped observations (two 224×224 frames), 127.0.0.1",
            checkpoint.display(),
            preset.name(),
            facts.horizon,
            facts.action_dim,
            self.requests
        );

        // Bare sampling: the policy in process, one observation, no server.
        let message = preset.example_observation(&preset.metadata(&facts)).map_err(anyhow::Error::msg)?;
        let observation = preset.observation(&message, &facts).map_err(anyhow::Error::msg)?;
        let mut times = Vec::new();
        for round in 0..23 {
            let start = Instant::now();
            policy.act(std::slice::from_ref(&observation))?;
            if round >= 3 {
                times.push(start.elapsed().as_secs_f64() * 1e3);
            }
        }
        let spear_bare = median(times);
        println!(
            "  spear   {kind} backend, {threads} CPU threads, --max-batch {}; bare sampling {spear_bare:.2} ms \
             (Policy::act, one observation, median of 20)",
            self.max_batch
        );

        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        let config = ServeConfig { max_batch: self.max_batch, ..ServeConfig::default() };
        let server = runtime.block_on(Server::bind(
            "127.0.0.1:0",
            policy,
            "bench",
            preset,
            Some(norm_stats),
            config,
        ))?;
        let port = server.local_addr().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = runtime.spawn(server.run(async move {
            let _ = stopped.await;
        }));
        let spear: Vec<Load> = self
            .clients
            .iter()
            .map(|&n| load(&self.client_python, port, n, self.requests))
            .collect::<Result<_>>()?;
        let _ = stop.send(());
        runtime.block_on(serving)?;

        let torch = match &self.compare_torch {
            Some(python) => {
                let (mut child, port, bare, about) =
                    start_torch(python, &checkpoint, &tokenizer, &stats_path, threads)?;
                println!(
                    "  python  openpi's server design around transformers' PI0 ({about}); bare sampling {bare:.2} ms \
                     (Policy.infer, one observation, median of 20)"
                );
                let loads: Result<Vec<Load>> =
                    self.clients.iter().map(|&n| load(&self.client_python, port, n, self.requests)).collect();
                let _ = child.kill();
                let _ = child.wait();
                Some((loads?, bare))
            }
            None => None,
        };

        println!(
            "  {:>7}   {:>9} {:>9} {:>9}   {:>10} {:>9} {:>9}",
            "clients", "spear p50", "p99", "chunks/s", "python p50", "p99", "chunks/s"
        );
        for (i, (&n, ours)) in self.clients.iter().zip(&spear).enumerate() {
            let theirs = torch.as_ref().map_or(String::new(), |(loads, _)| {
                let t = &loads[i];
                format!("   {:>7.2} ms {:>6.2} ms {:>9.1}", t.p50_ms, t.p99_ms, t.chunks_per_s)
            });
            println!(
                "  {n:>7}   {:>6.2} ms {:>6.2} ms {:>9.1}{theirs}",
                ours.p50_ms, ours.p99_ms, ours.chunks_per_s
            );
        }
        if let Some((loads, _)) = &torch {
            let names: Vec<String> = self.clients.iter().map(|n| format!("{n}")).collect();
            let p99: Vec<(&str, f64, f64)> = names
                .iter()
                .zip(spear.iter().zip(loads))
                .map(|(n, (a, b))| (n.as_str(), a.p99_ms, b.p99_ms))
                .collect();
            let rate: Vec<(&str, f64, f64)> = names
                .iter()
                .zip(spear.iter().zip(loads))
                .map(|(n, (a, b))| (n.as_str(), a.chunks_per_s, b.chunks_per_s))
                .collect();
            println!("{}  p99 by clients", ratio_line("python", &p99, Better::Lower));
            println!("{}  chunks/s by clients", ratio_line("python", &rate, Better::Higher));
        }
        if let Some(one) = self.clients.iter().position(|&n| n == 1) {
            let mut line = format!(
                "  server overhead (p50 at 1 client less bare sampling): spear {:.2} ms",
                spear[one].p50_ms - spear_bare
            );
            if let Some((loads, bare)) = &torch {
                line += &format!(", python {:.2} ms", loads[one].p50_ms - bare);
            }
            println!("{line}");
        }
        Ok(())
    }
}

/// `n` clients of `tools/bench/serve_client.py` against the server on `port`.
fn load(python: &Path, port: u16, n: usize, requests: usize) -> Result<Load> {
    let script = tools().join("serve_client.py");
    let output = Command::new(python)
        .arg(&script)
        .args(["--port", &port.to_string(), "--clients", &n.to_string(), "--requests", &requests.to_string()])
        .env("NO_PROXY", "127.0.0.1,localhost")
        .output()
        .with_context(|| format!("running {} {}", python.display(), script.display()))?;
    if !output.status.success() {
        bail!("{} failed:\n{}", script.display(), String::from_utf8_lossy(&output.stderr));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let json: serde_json::Value = serde_json::from_str(stdout.trim().lines().last().unwrap_or_default())
        .with_context(|| format!("{} printed no JSON: {stdout}", script.display()))?;
    let mut latencies: Vec<f64> = json["latencies_ms"]
        .as_array()
        .context("no latencies_ms")?
        .iter()
        .filter_map(serde_json::Value::as_f64)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let wall = json["wall_s"].as_f64().context("no wall_s")?;
    Ok(Load {
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        chunks_per_s: latencies.len() as f64 / wall,
    })
}

/// The `q` quantile of sorted `values`, interpolated linearly (numpy's default).
fn percentile(values: &[f64], q: f64) -> f64 {
    let at = q * (values.len() - 1) as f64;
    let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
    values[lo] + (values[hi] - values[lo]) * (at - lo as f64)
}

/// `tools/bench/serve_pi0_torch.py` started and listening: the child, its port, its bare sampling
/// time and a line about it.
fn start_torch(
    python: &Path,
    checkpoint: &Path,
    tokenizer: &Path,
    norm_stats: &Path,
    threads: usize,
) -> Result<(Child, u16, f64, String)> {
    let script = tools().join("serve_pi0_torch.py");
    let log = std::env::temp_dir().join(format!("spear-bench-serve-torch-{}.log", std::process::id()));
    let mut child = Command::new(python)
        .arg(&script)
        .arg("--checkpoint")
        .arg(checkpoint)
        .arg("--tokenizer")
        .arg(tokenizer)
        .arg("--norm-stats")
        .arg(norm_stats)
        .args(["--threads", &threads.to_string()])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .with_context(|| format!("starting {} {}", python.display(), script.display()))?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    let json: serde_json::Value = match serde_json::from_str(line.trim()) {
        Ok(json) => json,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            let err = std::fs::read_to_string(&log).unwrap_or_default();
            bail!("{} did not start: {line}{err}", script.display());
        }
    };
    let port = json["port"].as_u64().context("no port")? as u16;
    let bare = json["bare_ms"].as_f64().context("no bare_ms")?;
    let about = format!("torch {} on {}, {} threads", json["torch"], json["device"], json["threads"]);
    Ok((child, port, bare, about.replace('"', "")))
}

/// `tools/bench/` of the repository this binary was built from.
fn tools() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools/bench");
    path.canonicalize().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_interpolate_as_numpy() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 5.5);
        assert!((percentile(&v, 0.99) - 9.91).abs() < 1e-12);
        assert_eq!(percentile(&[3.0], 0.99), 3.0);
    }
}
