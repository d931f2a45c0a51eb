//! `spear serve`: a policy served to robot clients over openpi's websocket protocol
//! (`spear_serve`); `spear serve --probe URL` sends one observation of the preset's shape to a
//! running server and prints the latency and the chunk.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::backend::AutodiffBackend;
use spear_models::Precision;
use spear_policy::{LoadOptions, Policy};
use spear_serve::client::{Client, actions};
use spear_serve::openpi::NormStats;
use spear_serve::preset::Preset;
use spear_serve::server::{ServeConfig, Server};
use spear_serve::wire::Item;

use crate::backend::{BackendChoice, BackendJob, BackendKind, run_on};

/// `spear serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct Serve {
    /// The policy folder: an export of `spear train vla` (weights, config.json, tokenizer.json,
    /// normalization.json, policy.json).
    #[arg(long, required_unless_present = "probe")]
    pub checkpoint: Option<PathBuf>,
    /// tokenizer.json (default: the checkpoint's; π0 checkpoints ship none).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// The statistics of a π0 checkpoint: openpi's norm_stats.json, lerobot's stats.json or its
    /// policy_preprocessor_step_*_normalizer_processor.safetensors (default: the checkpoint's own,
    /// beside the weights or the one under assets/).
    #[arg(long)]
    pub norm_stats: Option<PathBuf>,
    /// The arithmetic of matrix products: f32, or bf16 operands with f32 results (norms, softmax
    /// and the flow's geometry stay f32).
    #[arg(long, default_value_t = Precision::F32)]
    pub precision: Precision,
    /// Address to listen on. The default answers this machine only; `0.0.0.0` (every interface)
    /// is an explicit choice.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on.
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// What the clients send and expect back.
    #[arg(long, value_enum, default_value_t = Preset::Spear)]
    pub robot: Preset,
    /// Require `Authorization: Api-Key KEY` from clients (read from SPEAR_API_KEY when unset).
    #[arg(long, env = "SPEAR_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Observations sampled together at most (requests that arrive while the model works).
    #[arg(long, default_value_t = 8)]
    pub max_batch: usize,
    /// Largest message accepted, MiB.
    #[arg(long, default_value_t = 128)]
    pub max_message_mib: usize,
    /// The instruction for observations that carry no `prompt` (ALOHA's clients send none).
    #[arg(long)]
    pub default_prompt: Option<String>,
    /// Instead of serving: send one observation of the preset's shape to the server at this URL
    /// (`ws://host:port` or `host:port`), then 10 more, and print the latency and the chunk.
    #[arg(long)]
    pub probe: Option<String>,
}

impl Serve {
    /// Serves (on `backend`) or probes.
    pub fn run(self, backend: BackendChoice) -> Result<()> {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        match &self.probe {
            Some(url) => runtime.block_on(probe(url, self.robot, self.api_key.as_deref())),
            None => run_on(backend, ServeJob { args: self, runtime })?,
        }
    }
}

struct ServeJob {
    args: Serve,
    runtime: tokio::runtime::Runtime,
}

impl BackendJob for ServeJob {
    type Output = Result<()>;
    fn run<B: AutodiffBackend>(self, kind: BackendKind, device: B::Device) -> Result<()> {
        let args = self.args;
        let checkpoint = args.checkpoint.as_ref().expect("clap requires --checkpoint without --probe");
        let options = LoadOptions {
            tokenizer: args.tokenizer.clone(),
            precision: args.precision,
            ..LoadOptions::default()
        };
        // Inference needs no gradients: the backend under Autodiff.
        let policy = Policy::<B::InnerBackend>::load(checkpoint, &options, &device)?;
        let model = checkpoint
            .file_name()
            .map_or_else(|| checkpoint.display().to_string(), |n| n.to_string_lossy().into());
        let config = ServeConfig {
            api_key: args.api_key.clone(),
            max_batch: args.max_batch,
            max_message_bytes: args.max_message_mib << 20,
            default_prompt: args.default_prompt.clone(),
            ..ServeConfig::default()
        };
        let norm_stats = match &args.norm_stats {
            Some(path) => Some(path.clone()),
            None if policy.is_pi0() => NormStats::find(checkpoint).map_err(anyhow::Error::msg)?,
            None => None,
        };
        let norm_stats = norm_stats.map(|p| NormStats::read(&p)).transpose().map_err(anyhow::Error::msg)?;
        let address = format!("{}:{}", args.host, args.port);
        self.runtime.block_on(async {
            let server = Server::bind(&address, policy, &model, args.robot, norm_stats, config).await?;
            eprintln!(
                "spear serve: {} as `{}` on ws://{} (backend {kind}; health: GET /healthz; stop with Ctrl-C)",
                checkpoint.display(),
                args.robot.name(),
                server.local_addr()
            );
            server.run(shutdown_signal()).await;
            eprintln!("spear serve: stopped");
            Ok(())
        })
    }
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate()).expect("install the SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

/// `spear serve --probe URL`.
async fn probe(url: &str, preset: Preset, api_key: Option<&str>) -> Result<()> {
    let started = Instant::now();
    let mut client = Client::connect(url, api_key).await?;
    let connect_ms = started.elapsed().as_secs_f64() * 1e3;
    let metadata = client.metadata().clone();
    println!("server   {url} (connected and metadata read in {connect_ms:.1} ms)");
    if let Item::Map(entries) = &metadata {
        for (key, value) in entries {
            println!("  {key:<13} {}", describe(value));
        }
    }
    let observation = preset.example_observation(&metadata).map_err(anyhow::Error::msg)?;
    let mut latencies = Vec::new();
    let mut last = None;
    for _ in 0..11 {
        let sent = Instant::now();
        let response = client.infer(&observation).await.context("the probe observation")?;
        latencies.push(sent.elapsed().as_secs_f64() * 1e3);
        last = Some(response);
    }
    let response = last.expect("11 requests");
    let first = latencies.remove(0);
    latencies.sort_by(f64::total_cmp);
    let server_ms = match response.get("policy_timing").and_then(|t| t.get("infer_ms")) {
        Some(Item::Float(ms)) => format!(", the model {ms:.1} ms of it"),
        _ => String::new(),
    };
    println!(
        "latency  first {first:.1} ms; next 10: p50 {:.1} ms, min {:.1}, max {:.1}{server_ms}",
        latencies[latencies.len() / 2],
        latencies[0],
        latencies[latencies.len() - 1]
    );
    let chunk = actions(&response)?;
    let [horizon, dim] = [chunk.shape[0], chunk.shape[1]];
    println!("chunk    [{horizon}, {dim}] {}", chunk.dtype.numpy());
    for (k, action) in chunk.to_f64().chunks(dim.max(1)).enumerate() {
        let values: Vec<String> = action.iter().map(|v| format!("{v:+.4}")).collect();
        println!("  step {k}: {}", values.join(" "));
    }
    if horizon == 0 {
        bail!("the server returned an empty chunk");
    }
    client.close().await.ok();
    Ok(())
}

/// A metadata value on one line.
fn describe(item: &Item) -> String {
    match item {
        Item::Str(s) => s.clone(),
        Item::Int(i) => i.to_string(),
        Item::Float(f) => f.to_string(),
        Item::Nil => "-".into(),
        Item::List(items) => items.iter().map(describe).collect::<Vec<_>>().join(", "),
        other => other.kind().into(),
    }
}
