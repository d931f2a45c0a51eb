//! `spear train vla|vlm`: a training run from its config — the paper's runs on real data, or,
//! with no config, the embedded defaults (a tiny model on generated data, on this machine, in
//! minutes) — with a progress bar, messages above it, and a summary at the end.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
use burn::tensor::backend::AutodiffBackend;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use spear_policy::Policy;
use spear_train::config::{Checkpointing, DataSource, TrainConfig};
use spear_train::dist::{Launch, NodeFlags, Nodes};
use spear_train::embedded;
use spear_train::run::Observer;

use crate::backend::{BackendChoice, BackendJob, BackendKind, run_on};

/// Which model a run trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// SPEAR-1 (`configs/vla`).
    Vla,
    /// SPEAR-VLM (`configs/vlm`).
    Vlm,
}

impl Kind {
    fn folder(self) -> &'static str {
        match self {
            Kind::Vla => "vla",
            Kind::Vlm => "vlm",
        }
    }
}

/// `spear train …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum TrainCommand {
    /// Train SPEAR-1 (VLA pre- or post-training). Without --config: the embedded default, a tiny
    /// SPEAR-1 on a generated reach-and-rotate task, evaluated in closed loop at the end.
    Vla(TrainArgs),
    /// Train SPEAR-VLM (stage 1 or 2). Without --config: the embedded default, a tiny SPEAR-VLM
    /// on generated scenes annotated by `spear annotate`'s pipeline.
    Vlm(TrainArgs),
}

impl TrainCommand {
    /// Runs the training (or its dry run) on `backend`.
    pub fn run(self, backend: BackendChoice) -> Result<()> {
        let job = match self {
            TrainCommand::Vla(args) => TrainJob { kind: Kind::Vla, args },
            TrainCommand::Vlm(args) => TrainJob { kind: Kind::Vlm, args },
        };
        run_on(backend, job)?
    }
}

/// A training request from the command line.
#[derive(Debug, Clone, clap::Args)]
pub struct TrainArgs {
    /// The run's config (configs/vla/*.toml, configs/vlm/*.toml; default: the tiny embedded one).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override a field: `section.key=value` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// The run folder (default: runs/<run.name>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in the folder from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Load and check the config, then print what the run would train — stage, schedule, and the
    /// parameters per part, trainable and frozen — without allocating any weight or touching the
    /// run folder (so it works for the full-size runs on any machine).
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: also print the fully resolved config (TOML).
    #[arg(long, requires = "dry_run")]
    pub resolved: bool,
    /// With --dry-run: say whether the memory plan fits devices of this many GB (10⁹ bytes), and
    /// if not the largest micro-batch that does.
    #[arg(long, requires = "dry_run")]
    pub device_memory: Option<f64>,
    /// Data-parallel devices of this process, one rank each: a count (`4`: CUDA ordinals 0–3; on
    /// the CPU, four ranks on the one device, for testing) or CUDA ordinals (`0,1,2,3`; `5,` for
    /// ordinal 5 alone). The global batch stays `run.batch_size`, split into `run.grad_accum ×
    /// ranks` micro-batches per step.
    #[arg(long, default_value = "1", value_parser = parse_devices)]
    pub devices: Devices,
    /// Several processes (nodes), and how ranks exchange.
    #[command(flatten, next_help_heading = "Several nodes")]
    pub nodes: NodeArgs,
}

/// `--devices`: how many, or which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Devices {
    /// The first N devices (on the CPU: N ranks on its one device).
    Count(usize),
    /// These CUDA ordinals.
    Ordinals(Vec<usize>),
}

fn parse_devices(text: &str) -> std::result::Result<Devices, String> {
    let bad = || format!("{text:?}: give a count (4) or CUDA ordinals (0,1,2,3)");
    if text.contains(',') {
        let ordinals: Vec<usize> = text
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().parse().map_err(|_| bad()))
            .collect::<std::result::Result<_, _>>()?;
        let mut unique = ordinals.clone();
        unique.sort();
        unique.dedup();
        match (ordinals.is_empty(), unique.len() == ordinals.len()) {
            (true, _) => Err(bad()),
            (_, false) => Err(format!("{text:?}: an ordinal appears twice")),
            _ => Ok(Devices::Ordinals(ordinals)),
        }
    } else {
        match text.trim().parse() {
            Ok(0) | Err(_) => Err(bad()),
            Ok(n) => Ok(Devices::Count(n)),
        }
    }
}

impl Devices {
    /// Ranks in this process.
    pub fn ranks(&self) -> usize {
        match self {
            Devices::Count(n) => *n,
            Devices::Ordinals(o) => o.len(),
        }
    }

    /// The backend's devices these name: on CUDA by ordinal (checked against the devices CUDA
    /// sees); elsewhere a count of ranks on the backend's one device.
    pub fn resolve<B: burn::tensor::backend::Backend>(
        &self,
        backend: BackendKind,
        default: &B::Device,
    ) -> Result<Vec<B::Device>> {
        use burn::tensor::backend::{Device, DeviceId};
        if backend != BackendKind::Cuda {
            return match self {
                Devices::Count(n) => Ok(vec![default.clone(); *n]),
                Devices::Ordinals(_) => {
                    anyhow::bail!(
                        "--devices with ordinals needs the cuda backend; {backend} runs a count of ranks"
                    )
                }
            };
        }
        let ordinals = match self {
            Devices::Count(n) => (0..*n).collect(),
            Devices::Ordinals(o) => o.clone(),
        };
        let type_id = default.to_id().type_id;
        let seen = B::device_count(type_id);
        if let Some(o) = ordinals.iter().find(|&&o| o >= seen) {
            anyhow::bail!(
                "--devices: CUDA sees {seen} device(s), ordinals 0–{}; there is no {o}",
                seen.max(1) - 1
            );
        }
        Ok(ordinals
            .into_iter()
            .map(|o| B::Device::from_id(DeviceId { type_id, index_id: o as u16 }))
            .collect())
    }
}

/// A run over several processes (nodes): each flag falls back to the environment (ours,
/// torchrun's, Slurm's inside `srun`: see docs/training.md).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct NodeArgs {
    /// Processes (nodes) in the run, one per node holding its --devices [env: SPEAR_NNODES,
    /// WORLD_SIZE, SLURM_STEP_NUM_TASKS].
    #[arg(long)]
    pub nnodes: Option<usize>,
    /// This node's place, 0 to nnodes − 1; node 0 hosts the rendezvous and writes the run
    /// [env: SPEAR_NODE_RANK, RANK, SLURM_PROCID].
    #[arg(long)]
    pub node_rank: Option<usize>,
    /// Node 0's address [env: SPEAR_MASTER_ADDR, MASTER_ADDR, first host of SLURM_STEP_NODELIST].
    #[arg(long)]
    pub master_addr: Option<String>,
    /// Node 0's rendezvous port (default 29500) [env: SPEAR_MASTER_PORT, MASTER_PORT].
    #[arg(long)]
    pub master_port: Option<u16>,
    /// This node's address as the others reach it (default: the one it reaches node 0 from)
    /// [env: SPEAR_NODE_ADDR].
    #[arg(long)]
    pub node_addr: Option<String>,
    /// The port this node's ring connection comes in on (default: master port + 1 + node rank) [env: SPEAR_DATA_PORT].
    #[arg(long)]
    pub data_port: Option<u16>,
    /// Seconds a rank waits for the others in one exchange before it stops the run (exit 75).
    #[arg(long, default_value_t = 120, env = "SPEAR_DIST_TIMEOUT")]
    pub dist_timeout: u64,
    /// Largest bucket of gradients summed at once, MiB (one host copy of it per exchange between nodes).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=512))]
    pub bucket_mb: u64,
}

impl NodeArgs {
    /// This process's launch over `devices`: its node, if any, from the flags and then the
    /// environment.
    pub fn launch<D: Clone>(&self, devices: Vec<D>) -> Result<Launch<D>> {
        let flags = NodeFlags {
            nnodes: self.nnodes,
            node_rank: self.node_rank,
            master_addr: self.master_addr.clone(),
            master_port: self.master_port,
            node_addr: self.node_addr.clone(),
            data_port: self.data_port,
        };
        let nodes = Nodes::resolve(&flags, |name| std::env::var(name).ok()).map_err(anyhow::Error::msg)?;
        let mut launch = Launch::local(devices).on_nodes(nodes);
        launch.timeout = Duration::from_secs(self.dist_timeout.max(1));
        launch.bucket_bytes = (self.bucket_mb as usize) << 20;
        Ok(launch)
    }
}

/// One `spear train` command on the chosen backend.
struct TrainJob {
    kind: Kind,
    args: TrainArgs,
}

impl BackendJob for TrainJob {
    type Output = Result<()>;
    fn run<B: AutodiffBackend>(self, backend: BackendKind, device: B::Device) -> Result<()> {
        // burn's checkpointing strategy is part of the autodiff backend's type.
        let checkpointing = resolve(self.kind, &self.args)?.0.memory.checkpointing;
        match self.kind {
            _ if self.args.dry_run => print!("{}", dry_run::<B>(self.kind, &self.args, &device)?),
            _ if checkpointing == Checkpointing::Balanced => {
                type Balanced<B> = Autodiff<<B as AutodiffBackend>::InnerBackend, BalancedCheckpointing>;
                match self.kind {
                    Kind::Vla => vla::<Balanced<B>>(backend, &self.args, &device)?,
                    Kind::Vlm => vlm::<Balanced<B>>(backend, &self.args, &device)?,
                }
            }
            Kind::Vla => vla::<B>(backend, &self.args, &device)?,
            Kind::Vlm => vlm::<B>(backend, &self.args, &device)?,
        }
        Ok(())
    }
}

/// The embedded default's config: `configs/<kind>/tiny.toml` under the working folder, else in
/// the source tree this binary was built from.
pub fn default_config(kind: Kind) -> Result<PathBuf> {
    let relative = Path::new("configs").join(kind.folder()).join("tiny.toml");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(&relative);
    [relative, source].into_iter().find(|p| p.is_file()).with_context(|| {
        format!("no configs/{}/tiny.toml here or in the source tree: pass --config", kind.folder())
    })
}

/// Loads the run's config and picks its folder.
pub fn resolve(kind: Kind, args: &TrainArgs) -> Result<(TrainConfig, PathBuf)> {
    let path = match &args.config {
        Some(path) => path.clone(),
        None => default_config(kind)?,
    };
    let config = TrainConfig::load(&path, &args.overrides)?;
    let vlm = config.stage.is_vlm();
    if vlm != (kind == Kind::Vlm) {
        anyhow::bail!(
            "{}: stage {:?} is not a {} run (use `spear train {}`)",
            path.display(),
            config.stage,
            kind.folder(),
            if vlm { "vlm" } else { "vla" }
        );
    }
    let out = args.out.clone().unwrap_or_else(|| Path::new("runs").join(&config.run.name));
    Ok((config, out))
}

/// What `--dry-run` prints: the checked config's run, schedule, run folder and parameters per
/// part (trainable and frozen), counted without allocating a weight; `--resolved` appends the
/// fully resolved config.
pub fn dry_run<B: burn::tensor::backend::Backend>(
    kind: Kind,
    args: &TrainArgs,
    device: &B::Device,
) -> Result<String> {
    let (config, out) = resolve(kind, args)?;
    let (r, o) = (&config.run, &config.optim);
    let mut text = format!(
        "{}: {:?}, {:?} model, {} steps × batch {} (accumulation {}), seed {}\n",
        r.name, config.stage, config.model.size, r.steps, r.batch_size, r.grad_accum, r.seed
    );
    let launch = args.nodes.launch(vec![(); args.devices.ranks()])?;
    let world = launch.world();
    spear_train::run::check_world(&config, world)?;
    let nodes = launch.nodes.as_ref().map_or(1, |n| n.count);
    text += &format!(
        "  {world} device(s) ({nodes} node(s) × {}): global batch {}, per device {} a step in {} micro-batch(es) \
         of {}\n",
        launch.devices.len(),
        r.batch_size,
        r.batch_size / world,
        r.grad_accum,
        r.batch_size / (world * r.grad_accum)
    );
    text += &format!(
        "  AdamW lr {:e} (warmup {}, cosine to {:e} at {}), β ({}, {}), wd {:e}, clip {}, EMA {}\n",
        o.peak_lr,
        o.warmup_steps,
        o.decay_lr,
        o.decay_steps,
        o.b1,
        o.b2,
        o.weight_decay,
        o.clip_norm,
        config.ema.decay
    );
    let m = &config.memory;
    text += &format!(
        "  memory: {} matrix products, checkpointing {}, optimiser state and EMA {}\n",
        m.precision,
        m.checkpointing,
        if m.shard_optimizer && world > 1 {
            format!("sharded over {world} ranks")
        } else {
            "whole on each rank".into()
        }
    );
    text += &format!(
        "  run folder {}{}\n",
        out.display(),
        if args.resume { " (resuming from its last checkpoint)" } else { "" }
    );
    text += &spear_train::plan::render(&spear_train::plan::parameter_counts::<B>(&config, device));
    let (vla_text, vlm_text) = spear_train::plan::PLAN_TEXT_TOKENS;
    text += &format!(
        "  memory per device at the peak of a step (activations for {} text tokens per sample):\n",
        if config.stage.is_vlm() { vlm_text } else { vla_text }
    );
    text += &spear_train::plan::memory_plan::<B>(&config, world, device).render(args.device_memory);
    if args.resolved {
        text += &config.to_toml();
    }
    Ok(text)
}

/// The progress bar of a run on a terminal (step, loss, learning rate, steps/s, ETA; messages
/// printed above it), or a plain line per metrics line elsewhere (logs, CI).
pub struct Progress {
    bar: Option<ProgressBar>,
    started: Instant,
    first: u64,
}

impl Progress {
    /// A bar when stderr is a terminal.
    pub fn new() -> Self {
        let target = ProgressDrawTarget::stderr();
        let bar = (!target.is_hidden()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), target);
            bar.set_style(
                ProgressStyle::with_template(
                    "  {bar:30.cyan/blue} step {pos}/{len}  {msg}  {per_sec}  ETA {eta}",
                )
                .expect("a valid template")
                .progress_chars("█▌ "),
            );
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        Self { bar, started: Instant::now(), first: 0 }
    }

    /// Prints above the bar (or plainly).
    pub fn println(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Observer for Progress {
    fn start(&mut self, step: u64, steps: u64) {
        (self.started, self.first) = (Instant::now(), step);
        if let Some(bar) = &self.bar {
            bar.set_length(steps);
            bar.set_position(step);
            bar.reset_eta();
        }
    }

    fn step(&mut self, step: u64, loss: f64, lr: f64) {
        if let Some(bar) = &self.bar {
            bar.set_position(step);
            bar.set_message(format!("loss {loss:.4}  lr {lr:.2e}"));
        }
    }

    fn metrics(&mut self, step: u64, values: &[(String, f64)]) {
        let validation = values.iter().any(|(n, _)| n.starts_with("val_"));
        if self.bar.is_some() && !validation {
            return;
        }
        let rate = (step - self.first) as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        let shown: Vec<String> = values
            .iter()
            .filter(|(n, _)| self.bar.is_none() || n.starts_with("val_"))
            .map(|(n, v)| format!("{n} {}", short(*v)))
            .collect();
        self.println(&format!("  step {step:>6}  {}  ({rate:.2} steps/s)", shown.join("  ")));
    }

    fn message(&mut self, text: &str) {
        self.println(&format!("  {text}"));
    }
}

/// A number in 4 significant digits, scientific when tiny.
pub fn short(v: f64) -> String {
    if v != 0.0 && v.abs() < 1e-3 { format!("{v:.3e}") } else { format!("{v:.4}") }
}

/// `1 min 23 s`.
pub fn duration(seconds: f64) -> String {
    let s = seconds.round() as u64;
    if s >= 60 { format!("{} min {} s", s / 60, s % 60) } else { format!("{seconds:.1} s") }
}

/// Resolves the run's config and folder and prints what it is about to do.
fn start(kind: Kind, args: &TrainArgs, backend: BackendKind) -> Result<(TrainConfig, PathBuf)> {
    let (config, out) = resolve(kind, args)?;
    let r = &config.run;
    println!(
        "train {}: {} ({:?}, {:?} model), {} steps × batch {} on {backend}; run folder {}",
        kind.folder(),
        r.name,
        config.stage,
        config.model.size,
        r.steps,
        r.batch_size,
        out.display()
    );
    Ok((config, out))
}

/// The end of a run: the steps taken, the last metrics, the checkpoint.
fn print_trained<B: burn::tensor::backend::AutodiffBackend, M: burn::module::AutodiffModule<B>>(
    t: &spear_train::run::Trained<B, M>,
) {
    println!("  trained     steps {}..{} in {}", t.resumed_from, t.steps, duration(t.seconds));
    print!("{}", render_last(&t.last));
    println!("  checkpoint  {}", t.checkpoint.display());
}

/// The metrics of the run's end, one per line.
pub fn render_last(last: &[(String, f64)]) -> String {
    last.iter().map(|(n, v)| format!("    {n:<24} {}\n", short(*v))).collect()
}

/// The run folder's folder for the embedded default's generated data: `data`, and on the
/// nodes after 0 of a multi-node run `data-node<rank>` (each node generates the same data; two
/// writing one folder at once would corrupt it).
fn data_folder<D: Clone>(launch: &Launch<D>) -> String {
    match &launch.nodes {
        Some(n) if n.rank > 0 => format!("data-node{}", n.rank),
        _ => "data".into(),
    }
}

/// What a node other than 0 prints at the end: it trained its share; node 0 writes the rest.
fn follower_done<D: Clone>(launch: &Launch<D>, steps: u64) {
    let nodes = launch.nodes.as_ref().expect("only nodes after 0 follow");
    println!(
        "  node {} of {}: trained its {} rank(s) to step {steps}; node 0 writes the checkpoints and the export",
        nodes.rank,
        nodes.count,
        launch.devices.len()
    );
}

/// `spear train vla` on backend `B`.
pub fn vla<B: AutodiffBackend>(backend: BackendKind, args: &TrainArgs, device: &B::Device) -> Result<()> {
    let (config, out) = start(Kind::Vla, args, backend)?;
    let launch = args.nodes.launch(args.devices.resolve::<B::InnerBackend>(backend, device)?)?;
    let mut progress = Progress::new();
    let embedded = config.data.source == DataSource::Embedded;
    let policy_config = spear_train::stages::vla::configs(&config)?;
    let reach = embedded::reach_config(&config, &policy_config);
    let data_dir = out.join(data_folder(&launch));
    let mixture = if embedded {
        let started = Instant::now();
        let mixture = embedded::reach_mixture(&config, &reach, &data_dir, args.resume)?;
        let e = &config.data.embedded;
        progress.println(&format!(
            "  data        the reach-and-rotate task: {} training and {} validation episodes, {}×{} main and \
             {}×{} wrist cameras, written as RLDS in {} ({})",
            e.episodes,
            e.val_episodes,
            reach.image_size[0],
            reach.image_size[1],
            reach.wrist_size[0],
            reach.wrist_size[1],
            duration(started.elapsed().as_secs_f64()),
            spear_train::reach::dataset_dir(&data_dir).display()
        ));
        mixture
    } else {
        spear_train::stages::vla::mixture_file(&config)?
    };
    let mut untrained = None;
    let outcome = spear_train::stages::vla::run::<B>(
        &config,
        mixture,
        &out,
        args.resume,
        &launch,
        &mut progress,
        &mut |p| untrained = Some(p.clone()),
    )?;
    progress.finish();
    let t = &outcome.trained;
    if !launch.is_main() {
        follower_done(&launch, t.steps);
        return Ok(());
    }
    let datasets: Vec<String> = outcome.datasets.iter().map(|(n, e)| format!("{n} ({e} episodes)")).collect();
    println!("  data        {}", datasets.join(", "));
    print_trained(t);
    println!("  policy      {}", outcome.export.display());
    let act = |image: &str, wrist: &str, state: &str, prompt: &str| {
        format!(
            "spear policy act --checkpoint {} --image {image} --wrist {wrist} --state \"{state}\" --prompt \"{prompt}\"",
            outcome.export.display()
        )
    };
    let mut next = act("MAIN.png", "WRIST.png", "x,y,z,qw,qx,qy,qz,gripper", "…");
    if embedded {
        let started = Instant::now();
        let (tokenizer, _) = spear_train::model::load_tokenizer(&config)?;
        let untrained = untrained.context("the untrained weights were not kept")?;
        let normalization = Some(outcome.normalization.clone());
        let policy = |model| {
            Policy::new(model, tokenizer.clone(), normalization.clone(), outcome.spec.clone(), device)
        };
        let evaluation = embedded::evaluate(
            &config,
            &reach,
            &spear_train::reach::dataset_dir(&data_dir),
            &mut policy(t.weights())?,
            &mut policy(untrained)?,
            device,
        )?;
        println!(
            "closed loop on {} held-out scenes, at most {} chunks each ({}; success: within {} cm and {}°):",
            evaluation.scenes,
            evaluation.chunks,
            duration(started.elapsed().as_secs_f64()),
            spear_train::reach::SUCCESS_DISTANCE_M * 100.0,
            spear_train::reach::SUCCESS_ANGLE_DEG
        );
        print!("{}", evaluation.table());
        let example_dir = out.join("example");
        let example = spear_train::reach::write_example(&example_dir, &reach, config.run.seed)?;
        let state: Vec<String> = example.state.iter().map(|v| format!("{v:.4}")).collect();
        next = act(
            &example_dir.join("main.png").display().to_string(),
            &example_dir.join("wrist.png").display().to_string(),
            &state.join(","),
            &example.instruction,
        );
    }
    println!("next:");
    println!("  spear plot {}", out.display());
    println!("  {next}");
    Ok(())
}

/// `spear train vlm` on backend `B`.
pub fn vlm<B: AutodiffBackend>(backend: BackendKind, args: &TrainArgs, device: &B::Device) -> Result<()> {
    use spear_train::run::Task;
    let (config, out) = start(Kind::Vlm, args, backend)?;
    let launch = args.nodes.launch(args.devices.resolve::<B::InnerBackend>(backend, device)?)?;
    let mut progress = Progress::new();
    let annotations = match &config.data.source {
        DataSource::Embedded => {
            embedded_vqa(&config, &out.join(data_folder(&launch)), args.resume, &progress)?
        }
        DataSource::Annotations(dir) => dir.clone(),
        DataSource::Mixture(_) => unreachable!("the config's validation refuses a mixture for a VLM stage"),
    };
    let mut untrained = Vec::new();
    let outcome = spear_train::stages::vlm::run::<B>(
        &config,
        &annotations,
        &out,
        args.resume,
        &launch,
        &mut progress,
        &mut |model, task| {
            if !args.resume {
                untrained = task.validate(model)?;
            }
            Ok(())
        },
    )?;
    progress.finish();
    let t = &outcome.trained;
    if !launch.is_main() {
        follower_done(&launch, t.steps);
        return Ok(());
    }
    println!("  data        {} training and {} validation examples", outcome.examples.0, outcome.examples.1);
    print_trained(t);
    if !untrained.is_empty() {
        println!("  untrained model (the same validation):");
        print!("{}", render_last(&untrained));
    }
    if let Some(prior) = outcome.prior_3d_error_m {
        println!(
            "  prior (the training set's mean value per question family and slot): val_3d_error_m {}",
            short(prior)
        );
    }
    println!("  model       {}", outcome.export.display());
    println!("next:");
    println!("  spear plot {}", out.display());
    let (image, question) = outcome.example.clone().unwrap_or_else(|| {
        (PathBuf::from("IMAGE.png"), "What is the 3D position of the red block?".to_string())
    });
    println!(
        "  spear vlm ask --weights {} --image {} --prompt {question:?}",
        outcome.export.display(),
        image.display()
    );
    Ok(())
}

/// The embedded VLM data ([`embedded::vqa_annotations`]), said in one line when made.
fn embedded_vqa(config: &TrainConfig, data_dir: &Path, resume: bool, progress: &Progress) -> Result<PathBuf> {
    let (dir, made) = embedded::vqa_annotations(config, data_dir, resume)?;
    if let Some(m) = made {
        let [width, height] = m.size;
        progress.println(&format!(
            "  data        {} generated scenes ({width}×{height}) annotated into {} examples in {} ({})",
            m.scenes,
            m.examples,
            duration(m.seconds),
            dir.display()
        ));
    }
    Ok(dir)
}
