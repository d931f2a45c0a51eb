//! The training loop every stage shares: a [`Task`] supplies micro-batches, their loss and a
//! validation pass; [`train`] does the rest — gradient accumulation, clipping by the global norm,
//! AdamW at the warmup-cosine rate, the EMA of the weights, metrics, validation, checkpoints and
//! resuming.
//!
//! **Draws by micro-batch.** Micro-batches are numbered over the whole run (step × micro-batches
//! per step + place in the step). Each gets a generator seeded from `(seed, number)` alone
//! ([`micro_batch_rng`]) for its random draws (flow times, noise), and the backend's generator is
//! re-seeded from the same pair before it, so a micro-batch draws the same numbers whatever ran
//! before it and wherever it runs. The loader's stream lives in the task's state, which each
//! checkpoint carries.
//!
//! **Exact resuming.** A run
//! killed at any point and resumed with `--resume` from its last checkpoint therefore writes the
//! same metrics, bit for bit, as a run that was never interrupted (on the CPU backend with one
//! thread; tested — with several, burn-flex sums tensors of over 64K elements in parallel chunks
//! whose partial sums rayon's adaptive splitting associates, and any two runs can differ in the
//! last bits).

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::{GradientsAccumulator, GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, CheckpointError};
use crate::config::{Checkpointing, TrainConfig};
use crate::dist::{DistError, Launch, Owners, Rank, code_version, parameter_list};
use crate::metrics::{MetricsError, MetricsWriter};
use crate::optim::{Ema, WarmupCosine, adamw, clip_global_norm, scale_grads};

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The run folder cannot be used.
    #[error("{path}: {problem}")]
    RunDir {
        /// The folder.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A checkpoint could not be written or read.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// Metrics could not be written.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// The loss stopped being a number.
    #[error(
        "step {step}: the loss is {value} (diverged; try a lower optim.peak_lr or a tighter optim.clip_norm)"
    )]
    Diverged {
        /// The optimiser step (1-based).
        step: u64,
        /// The loss.
        value: f64,
    },
    /// The task failed (data, model input, export).
    #[error("{0}")]
    Task(String),
    /// Exchanging with the other ranks failed.
    #[error("step {step}: {error}")]
    Dist {
        /// The optimiser step (1-based).
        step: u64,
        /// What failed.
        error: DistError,
    },
    /// A rank of a data-parallel run stopped the run.
    #[error("rank {rank} of {world}: {error}")]
    Rank {
        /// The rank.
        rank: usize,
        /// The world size.
        world: usize,
        /// Why it stopped.
        error: Box<TrainError>,
    },
}

impl TrainError {
    /// A task error with context.
    pub fn task(context: impl std::fmt::Display, error: impl std::fmt::Display) -> Self {
        Self::Task(format!("{context}: {error}"))
    }
}

/// A micro-batch's mean loss (`[1]`, differentiable) and named parts of it to log (their values,
/// already read back).
pub type Loss<B> = (Tensor<B, 1>, Vec<(&'static str, f64)>);

/// One model's training: where its batches, loss and validation come from.
pub trait Task<B: AutodiffBackend> {
    /// The model being trained (frozen parts already marked).
    type Model: AutodiffModule<B>;
    /// One micro-batch (`run.batch_size / run.grad_accum` samples), ready for the device.
    type Batch;

    /// The next micro-batch of the training stream.
    fn next_batch(&mut self) -> Result<Self::Batch, TrainError>;

    /// Passes over the next micro-batch (another rank's), leaving the stream where
    /// [`Task::next_batch`] would: by default, takes it and drops it.
    fn skip_batch(&mut self) -> Result<(), TrainError> {
        self.next_batch().map(drop)
    }

    /// This task feeds rank `index` of `world`, which computes the stream's micro-batches whose
    /// number is `index` modulo `world` and skips the others ([`Task::skip_batch`]): a task may
    /// leave those unprepared from here on. By default, nothing changes.
    fn shard(&mut self, _index: usize, _world: usize) -> Result<(), TrainError> {
        Ok(())
    }

    /// The micro-batch's loss, its random draws (flow times, noise) taken from `rng`, the
    /// micro-batch's own generator ([`micro_batch_rng`]).
    fn loss(
        &mut self,
        model: &Self::Model,
        batch: Self::Batch,
        rng: &mut ChaCha8Rng,
    ) -> Result<Loss<B>, TrainError>;

    /// The micro-batch's loss, its parts and gradients ([`MicroStep`]) with the run's activation
    /// `checkpointing`: [`Task::loss`] and one backward pass ([`backward_pass`]), or with
    /// [`Checkpointing::Blocks`], [`Task::gradients_by_blocks`].
    fn gradients(
        &mut self,
        model: &Self::Model,
        batch: Self::Batch,
        rng: &mut ChaCha8Rng,
        step: u64,
        checkpointing: Checkpointing,
    ) -> Result<MicroStep, TrainError> {
        match checkpointing {
            Checkpointing::Blocks => self.gradients_by_blocks(model, batch, rng, step),
            Checkpointing::None | Checkpointing::Balanced => backward_pass(self, model, batch, rng, step),
        }
    }

    /// [`Task::gradients`] with block rematerialisation (`spear_models::remat`). By default
    /// refused: a task must cut its model into blocks.
    fn gradients_by_blocks(
        &mut self,
        _model: &Self::Model,
        _batch: Self::Batch,
        _rng: &mut ChaCha8Rng,
        _step: u64,
    ) -> Result<MicroStep, TrainError> {
        Err(TrainError::Task(
            "this task cannot recompute its model block by block (checkpointing = \"blocks\")".into(),
        ))
    }

    /// Validation metrics of `model` (the EMA weights when the run keeps them), named
    /// `val_…`. Must not change the training stream.
    fn validate(
        &mut self,
        model: &<Self::Model as AutodiffModule<B>>::InnerModule,
    ) -> Result<Vec<(String, f64)>, TrainError>;

    /// Everything the training stream needs to continue exactly (loader position, generators).
    fn state(&self) -> serde_json::Value;

    /// Continues from a [`Task::state`].
    fn restore(&mut self, state: &serde_json::Value) -> Result<(), TrainError>;
}

/// What a run reports as it goes (a progress bar, log lines).
pub trait Observer {
    /// Training starts at `step` (0, or a checkpoint's) of `steps`.
    fn start(&mut self, _step: u64, _steps: u64) {}
    /// Optimiser step `step` (1-based) is done.
    fn step(&mut self, _step: u64, _loss: f64, _lr: f64) {}
    /// A metrics line was written.
    fn metrics(&mut self, _step: u64, _values: &[(String, f64)]) {}
    /// Something worth telling the user (validation, checkpoints, resuming).
    fn message(&mut self, _text: &str) {}
}

/// An observer that reports nothing.
pub struct Quiet;

impl Observer for Quiet {}

/// Sums of the logged values since the last metrics line (kept in checkpoints, so that a
/// resumed run's first line averages the same steps as the uninterrupted run's).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Window {
    steps: u64,
    sums: Vec<(String, f64)>,
}

/// The value named `name` in a list of named values, appended as 0 when absent.
fn named<'v, 'l, K: AsRef<str> + From<&'l str>>(list: &'v mut Vec<(K, f64)>, name: &'l str) -> &'v mut f64 {
    let at = match list.iter().position(|(n, _)| n.as_ref() == name) {
        Some(at) => at,
        None => {
            list.push((K::from(name), 0.0));
            list.len() - 1
        }
    };
    &mut list[at].1
}

impl Window {
    fn add(&mut self, values: &[(&str, f64)]) {
        self.steps += 1;
        for (name, value) in values {
            *named(&mut self.sums, name) += value;
        }
    }

    fn take_means(&mut self) -> Vec<(String, f64)> {
        let steps = self.steps.max(1) as f64;
        let means = self.sums.drain(..).map(|(n, s)| (n, s / steps)).collect();
        self.steps = 0;
        means
    }
}

/// The trained model and where the run left it.
pub struct Trained<B: AutodiffBackend, M: AutodiffModule<B>> {
    /// The model after the last step.
    pub model: M,
    /// The EMA weights, when the run keeps them.
    pub ema: Option<Ema<M::InnerModule>>,
    /// Steps taken in all (resumed runs included).
    pub steps: u64,
    /// The step the run started from (0, or the checkpoint's).
    pub resumed_from: u64,
    /// The last value of every metric written.
    pub last: Vec<(String, f64)>,
    /// The final checkpoint.
    pub checkpoint: PathBuf,
    /// Seconds spent in this process's steps, validations and checkpoints.
    pub seconds: f64,
    _backend: std::marker::PhantomData<B>,
}

impl<B: AutodiffBackend, M: AutodiffModule<B>> Trained<B, M> {
    /// The weights to export and evaluate: the EMA's when kept, else the model's.
    pub fn weights(&self) -> M::InnerModule {
        weights(&self.model, self.ema.as_ref())
    }
}

/// The weights validation, export and evaluation use: the EMA's when the run keeps one.
fn weights<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    ema: Option<&Ema<M::InnerModule>>,
) -> M::InnerModule {
    ema.map_or_else(|| model.valid(), |e| e.model.clone())
}

/// Tells `observer` and the log (`tracing`, for runs whose output is not a terminal) the same
/// thing.
pub fn notify(observer: &mut dyn Observer, text: &str) {
    tracing::info!("{text}");
    observer.message(text);
}

/// The backend seed of micro-batch `index` (0-based, numbered over the run; with one
/// micro-batch per step, the step): a function of the run's seed and the index alone.
pub fn step_seed(seed: u64, index: u64) -> u64 {
    // splitmix64 of the pair, so that neighbouring micro-batches get unrelated streams.
    use spear_data::hash::{GOLDEN, mix64};
    mix64(seed ^ index.wrapping_add(1).wrapping_mul(GOLDEN))
}

/// The generator of micro-batch `index`'s random draws: a function of the run's seed and the
/// index alone, unrelated to the backend's stream of the same index.
pub fn micro_batch_rng(seed: u64, index: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(spear_data::hash::mix64(step_seed(seed, index) ^ 0xF10))
}

/// One micro-batch's share of a training step ([`Task::gradients`]).
pub struct MicroStep {
    /// The loss, read back.
    pub loss: f64,
    /// Its parts (e.g. the S³ terms), read back.
    pub parts: Vec<(&'static str, f64)>,
    /// The gradients of the model's parameters.
    pub grads: GradientsParams,
}

/// [`Task::loss`] then [`gradients`]: the default [`Task::gradients`].
pub fn backward_pass<B: AutodiffBackend, T: Task<B> + ?Sized>(
    task: &mut T,
    model: &T::Model,
    batch: T::Batch,
    rng: &mut ChaCha8Rng,
    step: u64,
) -> Result<MicroStep, TrainError> {
    let (loss, parts) = task.loss(model, batch, rng)?;
    let (loss, grads) = gradients(model, loss, step)?;
    Ok(MicroStep { loss, parts, grads })
}

/// The loss read back, failing as [`TrainError::Diverged`] at optimiser step `step` (1-based)
/// when it is not finite.
pub fn finite_loss<B: Backend>(loss: &Tensor<B, 1>, step: u64) -> Result<f64, TrainError> {
    let value = f64::from(loss.clone().into_scalar().elem::<f32>());
    if !value.is_finite() {
        return Err(TrainError::Diverged { step, value });
    }
    Ok(value)
}

/// The first half of a training step on one micro-batch: its loss read back ([`finite_loss`])
/// and the gradients of `model`'s parameters. [`train`] accumulates these over
/// `run.grad_accum` micro-batches; `spear bench train` times this and [`update`] as the step.
pub fn gradients<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    loss: Tensor<B, 1>,
    step: u64,
) -> Result<(f64, GradientsParams), TrainError> {
    // Read before the backward pass, so that a diverged loss stops the run without one.
    let value = finite_loss(&loss, step)?;
    Ok((value, GradientsParams::from_grads(loss.backward(), model)))
}

/// The second half of a training step: `grads` clipped to the global norm `clip_norm` (0: not
/// clipped), then one step of `optimizer` at learning rate `lr` — over the parameters rank
/// `shard.1` owns when the optimiser state is sharded (`shard`: the [`Owners`]; the caller then
/// shares the updated values, [`Rank::sync_owned`]). Returns the updated model and the gradients'
/// norm before clipping.
pub fn update<B, M, O>(
    optimizer: &mut O,
    model: M,
    grads: GradientsParams,
    lr: f64,
    clip_norm: f64,
    shard: Option<(&Owners, usize)>,
) -> (M, f64)
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B>,
{
    let (grads, norm) = clip_global_norm(&model, grads, clip_norm);
    let grads = match shard {
        Some((owners, rank)) => owners.keep(rank, &model, grads),
        None => grads,
    };
    (optimizer.step(lr, model, grads), norm)
}

/// Makes `run_dir` ready: a new run refuses a folder that already holds checkpoints (pass
/// `resume`); a resumed run needs one. Writes the resolved config as `config.toml`. Returns the
/// checkpoint to resume from.
pub fn prepare_run_dir(
    run_dir: &Path,
    config: &TrainConfig,
    resume: bool,
) -> Result<Option<PathBuf>, TrainError> {
    let fail = |problem: String| TrainError::RunDir { path: run_dir.to_path_buf(), problem };
    std::fs::create_dir_all(run_dir).map_err(|e| fail(e.to_string()))?;
    let from = checkpoint::latest(run_dir)?;
    match (&from, resume) {
        (Some(dir), false) => {
            return Err(fail(format!(
                "holds a run already (last checkpoint {}); pass --resume to continue it, or choose \
                 another --out",
                dir.display()
            )));
        }
        (None, true) => return Err(fail("--resume: no checkpoint to resume from".into())),
        _ => {}
    }
    let path = run_dir.join("config.toml");
    std::fs::write(&path, config.to_toml()).map_err(|e| fail(format!("{}: {e}", path.display())))?;
    Ok(from)
}

/// Trains `model` on `task` as `config` says, in `run_dir` (see [`prepare_run_dir`]), resuming
/// from its last checkpoint when `resume`, as `rank` of a data-parallel run ([`Rank::single`]:
/// on one device).
///
/// With several ranks, each step has `run.grad_accum × world` micro-batches; every rank passes
/// through each of them in `task` (so every rank's stream, and its state, is the one-device
/// stream) but prepares and computes only those whose place in the step is its index modulo the
/// world size ([`Task::shard`], [`Task::skip_batch`]). Gradients are
/// summed over the ranks after accumulation, then scaled by one over the step's micro-batches,
/// before clipping: every rank takes the same update. Only the main rank (0) prepares the run
/// folder, validates, writes metrics and checkpoints; the others wait for its checkpoints. All
/// ranks must start from the same `model`. A rank that stops on an error releases the others
/// ([`Rank::abort`]), which then stop too, each with a [`TrainError::Dist`] that says so.
#[allow(clippy::too_many_arguments)]
pub fn train<B, T>(
    config: &TrainConfig,
    task: &mut T,
    model: T::Model,
    run_dir: &Path,
    resume: bool,
    device: &B::Device,
    observer: &mut dyn Observer,
    rank: &Rank,
) -> Result<Trained<B, T::Model>, TrainError>
where
    B: AutodiffBackend,
    T: Task<B>,
{
    // The whole run as one fallible body, so that any error releases the other ranks.
    let run = move || -> Result<Trained<B, T::Model>, TrainError> {
        let dist = |step: u64| move |error: DistError| TrainError::Dist { step, error };
        let facts = [
            ("config", config.to_toml()),
            ("code version", code_version()),
            ("parameter list", parameter_list(&model)),
        ];
        rank.agree::<B::InnerBackend>(&facts, device).map_err(dist(0))?;
        let model = rank.share_weights(model).map_err(dist(0))?;
        let from = if rank.is_main() {
            prepare_run_dir(run_dir, config, resume)?
        } else if resume {
            checkpoint::latest(run_dir)?
        } else {
            None
        };
        let started = Instant::now();
        let r = &config.run;
        let schedule = WarmupCosine::new(&config.optim);
        let mut optimizer = adamw(&config.optim).init::<B, T::Model>();
        let mut ema = (config.ema.decay > 0.0).then(|| Ema::of(&model, config.ema.decay));
        let mut model = model;
        let mut window = Window::default();
        let mut step = 0;
        if rank.world() > 1 {
            task.shard(rank.index(), rank.world())?;
        }
        // ZeRO-1: each rank steps (and averages) only its share of the trainable parameters.
        let sharded = config.memory.shard_optimizer && rank.world() > 1;
        if let Some(dir) = &from {
            let shard = sharded.then_some(rank.index());
            let restored = checkpoint::load(dir, config, rank.world(), model, optimizer, ema, shard, device)?;
            (model, optimizer, ema) = (restored.model, restored.optimizer, restored.ema);
            step = restored.state.step;
            let extra = &restored.state.extra;
            task.restore(&extra["task"])?;
            window = serde_json::from_value(extra["window"].clone()).unwrap_or_default();
            notify(observer, &format!("resuming from {} (step {step})", dir.display()));
        }
        let start = step;
        let owners = sharded.then(|| Owners::new(&model, rank.world()));
        if step >= r.steps {
            notify(observer, &format!("the run has its {} steps already", r.steps));
        }
        let mut metrics = match rank.is_main() {
            true => Some(MetricsWriter::open(run_dir, from.as_ref().map(|_| step))?),
            false => None,
        };
        let world = rank.world();
        let micro = r.grad_accum * world;
        let share = 1.0 / micro as f64;
        let mut last: Vec<(String, f64)> = Vec::new();
        let mut last_checkpoint = from.clone();
        tracing::info!(run_dir = %run_dir.display(), from = step, steps = r.steps, "training");
        observer.start(step, r.steps);
        while step < r.steps {
            rank.at_step(step + 1);
            let lr = schedule.lr(step);
            let mut accumulated = GradientsAccumulator::<T::Model>::new();
            // This rank's micro-batches' values (loss first), in order.
            let (mut names, mut mine): (Vec<&str>, Vec<f64>) = (Vec::new(), Vec::new());
            for k in 0..micro {
                if k % world != rank.index() {
                    task.skip_batch()?;
                    continue;
                }
                let batch = task.next_batch()?;
                let index = step * micro as u64 + k as u64;
                B::seed(device, step_seed(r.seed, index));
                let mut rng = micro_batch_rng(r.seed, index);
                let checkpointing = config.memory.checkpointing;
                let MicroStep { loss: value, parts, grads } =
                    task.gradients(&model, batch, &mut rng, step + 1, checkpointing)?;
                accumulated.accumulate(&model, grads);
                names = std::iter::once("loss").chain(parts.iter().map(|(n, _)| *n)).collect();
                mine.extend(std::iter::once(value).chain(parts.iter().map(|(_, v)| *v)));
            }
            // Every micro-batch's values, added in the order one device would have added them.
            let all = rank.gather::<B::InnerBackend>(&mine, device).map_err(dist(step + 1))?;
            let mut values: Vec<(&str, f64)> = Vec::new();
            for k in 0..micro {
                let (of, at) = (k % world, k / world);
                for (i, name) in names.iter().enumerate() {
                    *named(&mut values, name) += all[of][at * names.len() + i] * share;
                }
            }
            let grads = rank.all_reduce_grads(&model, accumulated.grads()).map_err(dist(step + 1))?;
            let grads = if micro > 1 { scale_grads(&model, grads, share) } else { grads };
            let shard = owners.as_ref().map(|o| (o, rank.index()));
            let (updated, norm) = update(&mut optimizer, model, grads, lr, config.optim.clip_norm, shard);
            model = match &owners {
                Some(owners) => rank.sync_owned(updated, owners).map_err(dist(step + 1))?,
                None => updated,
            };
            if let Some(ema) = &mut ema {
                match &owners {
                    Some(o) => ema.update_owned(&model, |id| o.owner(id) == Some(rank.index())),
                    None => ema.update(&model),
                }
            }
            step += 1;
            let loss = values[0].1;
            values.push(("grad_norm", norm));
            window.add(&values);
            observer.step(step, loss, lr);

            let evaluate = r.eval_every > 0 && (step.is_multiple_of(r.eval_every) || step == r.steps);
            let save = step.is_multiple_of(r.checkpoint_every) || step == r.steps;
            // A sharded EMA made whole (on every rank: it is a collective) where it is read.
            let whole = match (&owners, &ema) {
                (Some(o), Some(e)) if evaluate || save => {
                    Some(Ema::new(rank.gather_ema(e.model.clone(), o).map_err(dist(step))?, e.decay))
                }
                _ => None,
            };
            let ema_now = whole.as_ref().or(ema.as_ref());
            if let Some(metrics) = metrics.as_mut() {
                let mut line: Vec<(String, f64)> = Vec::new();
                if step.is_multiple_of(r.log_every) || step == r.steps {
                    line.extend(window.take_means());
                    line.push(("lr".into(), lr));
                }
                if evaluate {
                    line.extend(task.validate(&weights(&model, ema_now))?);
                }
                if !line.is_empty() {
                    let refs: Vec<(&str, f64)> = line.iter().map(|(n, v)| (n.as_str(), *v)).collect();
                    metrics.write(step, &refs)?;
                    tracing::info!(
                        step,
                        "{}",
                        line.iter().map(|(n, v)| format!("{n}={v:.6}")).collect::<Vec<_>>().join(" ")
                    );
                    observer.metrics(step, &line);
                    for (name, value) in &line {
                        *named(&mut last, name) = *value;
                    }
                }
            }
            if save {
                if rank.is_main() {
                    checkpoint::begin(run_dir, step)?;
                }
                if owners.is_some() {
                    // Every rank writes its optimiser shard into the folder the main rank started.
                    rank.barrier::<B::InnerBackend>(device).map_err(dist(step))?;
                    checkpoint::save_optimizer_shard(run_dir, step, rank.index(), &optimizer)?;
                    rank.barrier::<B::InnerBackend>(device).map_err(dist(step))?;
                }
                if rank.is_main() {
                    let extra =
                        serde_json::json!({ "task": task.state(), "window": window, "world": rank.world() });
                    let whole_optimizer = owners.is_none().then_some(&optimizer);
                    let dir =
                        checkpoint::finish(run_dir, step, config, &model, whole_optimizer, ema_now, &extra)?;
                    checkpoint::prune(run_dir, r.keep_checkpoints, &dir)?;
                    notify(observer, &format!("checkpoint {}", dir.display()));
                }
                // The others wait for the main rank's checkpoint, then name it as it did.
                rank.barrier::<B::InnerBackend>(device).map_err(dist(step))?;
                last_checkpoint = checkpoint::latest(run_dir)?;
            }
            if step == r.steps && whole.is_some() {
                ema = whole;
            }
        }
        let checkpoint = last_checkpoint.ok_or_else(|| TrainError::RunDir {
            path: run_dir.to_path_buf(),
            problem: "no checkpoint was written".into(),
        })?;
        Ok(Trained {
            model,
            ema,
            steps: step,
            resumed_from: start,
            last,
            checkpoint,
            seconds: started.elapsed().as_secs_f64(),
            _backend: std::marker::PhantomData,
        })
    };
    run().inspect_err(|_| rank.abort::<B::InnerBackend>())
}

/// Refuses a world size that does not divide the batch into whole micro-batches.
pub fn check_world(config: &TrainConfig, world: usize) -> Result<(), TrainError> {
    let (batch, accum) = (config.run.batch_size, config.run.grad_accum);
    if world == 0 || !batch.is_multiple_of(accum * world) {
        return Err(TrainError::Task(format!(
            "run.batch_size {batch} does not split into run.grad_accum {accum} × {world} devices of whole \
             micro-batches"
        )));
    }
    Ok(())
}

/// Runs this process's ranks of `launch`, one per device (burn-collective's local mode; with
/// several nodes, first joining the ring between them, [`crate::dist::Ring`]): local rank 0 on
/// this thread through `main`, the others on their own threads through `peer`. A rank that fails
/// to join, stops on an error or panics releases the others of this process
/// ([`crate::dist::abort`]) and closes the ring, so the run always ends on every node; the error returned is the one
/// that stopped it (not the others' "another rank stopped"), naming its rank. On one device of
/// one process, `main` runs alone with [`Rank::single`].
pub fn data_parallel<B, R>(
    launch: &Launch<B::Device>,
    main: impl FnOnce(&Rank, &B::Device) -> Result<R, TrainError>,
    peer: impl Fn(&Rank, &B::Device) -> Result<(), TrainError> + Sync,
) -> Result<R, TrainError>
where
    B: AutodiffBackend,
{
    let world = launch.world();
    let devices = &launch.devices;
    if world == 1 {
        return main(&Rank::single(), &devices[0]);
    }
    // The ring between nodes, once per process, for its first rank.
    let ring = match &launch.nodes {
        Some(nodes) => Some(crate::dist::Ring::connect(nodes, launch.timeout).map_err(|problem| {
            let rank = launch.rank_index(0);
            let error =
                DistError { rank, world, what: "joining the other nodes", problem, peer_stopped: false };
            TrainError::Rank { rank, world, error: Box::new(TrainError::Dist { step: 0, error }) }
        })?),
        None => None,
    };
    // One rank's body: joined, guarded against panics, releasing the others when it stops.
    fn guarded<B: AutodiffBackend, R>(
        launch: &Launch<B::Device>,
        local: usize,
        ring: Option<crate::dist::Ring>,
        body: impl FnOnce(&Rank, &B::Device) -> Result<R, TrainError>,
    ) -> Result<R, TrainError> {
        let device = &launch.devices[local];
        let outcome = Rank::join::<B::InnerBackend>(launch, local, ring)
            .map_err(|error| TrainError::Dist { step: 0, error })
            .and_then(|rank| {
                let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&rank, device)))
                    .unwrap_or_else(|panic| {
                        let text = panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        Err(TrainError::Task(format!("panicked: {text}")))
                    });
                if out.is_ok() {
                    rank.finish::<B::InnerBackend>().map_err(|error| TrainError::Dist { step: 0, error })?;
                }
                out
            });
        if outcome.is_err() {
            crate::dist::abort::<B::InnerBackend>();
        }
        let (rank, world) = (launch.rank_index(local), launch.world());
        outcome.map_err(|e| TrainError::Rank { rank, world, error: Box::new(e) })
    }
    let peer = &peer;
    std::thread::scope(|scope| {
        let others: Vec<_> = (1..devices.len())
            .map(|local| scope.spawn(move || guarded::<B, ()>(launch, local, None, peer)))
            .collect();
        let main = guarded::<B, R>(launch, 0, ring, main);
        let mut errors: Vec<TrainError> =
            others.into_iter().filter_map(|h| h.join().expect("a rank's panic is caught").err()).collect();
        match main {
            Ok(trained) if errors.is_empty() => Ok(trained),
            main => {
                if let Err(e) = main {
                    errors.insert(0, e);
                }
                let echo = |e: &TrainError| {
                    matches!(e, TrainError::Rank { error, .. }
                        if matches!(**error, TrainError::Dist { ref error, .. } if error.peer_stopped))
                };
                let cause = errors.iter().position(|e| !echo(e)).unwrap_or(0);
                Err(errors.swap_remove(cause))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    use super::micro_batch_rng;

    #[test]
    fn a_micro_batch_draws_by_its_number_alone() {
        let draws = |seed, index| -> Vec<u64> {
            let mut rng = micro_batch_rng(seed, index);
            (0..4).map(|_| rng.random()).collect()
        };
        assert_eq!(draws(7, 3), draws(7, 3));
        assert_ne!(draws(7, 3), draws(7, 4));
        assert_ne!(draws(7, 3), draws(8, 3));
        // Not the backend's stream of the same number either.
        assert_ne!(draws(7, 3)[0], super::step_seed(7, 3));
    }
}
