//! SPEAR-1 training (paper §3.2, §4, appendix A.2): the policy — from random tiny weights, from a
//! SPEAR-VLM checkpoint plus a fresh action expert (pre-training), or from a SPEAR-1 checkpoint
//! (post-training) — trained with flow matching (translation and gripper linear, rotations on S³)
//! on batches of the mixture loader, with the stage's parts frozen, and exported with its
//! tokenizer and normalisers so that `spear policy act` takes raw states and returns actions in
//! metres.

use std::path::{Path, PathBuf};

use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use spear_data::loader::{
    Batch, Loader, LoaderError, LoaderState, MixtureConfig, Normalization, Prefetch, Shard,
};
use spear_data::oxe::STATE_DIM;
use spear_data::resample::ACTION_DIM;
use spear_models::policy::{FlowDraws, Observation, PolicyLoss};
use spear_models::store::{load_policy, save_policy};
use spear_models::{RotationMode, SpearPolicy, SpearPolicyConfig};

use crate::config::{DataSource, ModelSize, Rotation, Stage, TrainConfig};
use spear_policy::PolicySpec;
use spear_policy::inputs::{Prompts, image_batch};

use crate::dist::{Launch, Rank, own_copy};
use crate::model::{export_tokenizer, load_spear_vlm, load_tokenizer, vlm_config};
use crate::optim::materialize;
use crate::run::{
    Loss, MicroStep, Observer, Quiet, Task, TrainError, Trained, data_parallel, finite_loss, notify, train,
};

/// The policy a run trains: SPEAR-1 (or its tiny version) with the run's VLM, rotation mode and
/// rotation weight.
pub fn policy_config(config: &TrainConfig, vlm: spear_models::SpearVlmConfig) -> SpearPolicyConfig {
    let mut policy = match config.model.size {
        ModelSize::Full => SpearPolicyConfig::spear1(),
        ModelSize::Tiny => SpearPolicyConfig::tiny(),
    };
    policy.vlm = vlm;
    policy.rotation = match config.loss.rotation {
        Rotation::S3 => RotationMode::S3,
        Rotation::Linear => RotationMode::Linear,
    };
    policy.flow.rotation_weight = config.loss.rotation_weight;
    if let Some(horizon) = config.model.horizon {
        policy.horizon = horizon;
    }
    policy
}

/// The policy a run trains, from its config and tokenizer (which sets a tiny model's
/// vocabulary).
pub fn configs(config: &TrainConfig) -> Result<SpearPolicyConfig, TrainError> {
    let (tokenizer, _) = load_tokenizer(config)?;
    Ok(policy_config(config, vlm_config(config, &tokenizer)))
}

/// Builds the policy a run starts from (see the module documentation), with every weight drawn
/// or loaded and the stage's parts frozen.
pub fn initial_policy<B: AutodiffBackend>(
    config: &TrainConfig,
    policy_config: &SpearPolicyConfig,
    device: &B::Device,
) -> Result<SpearPolicy<B>, TrainError> {
    config.memory.precision.check::<B>(device).map_err(|e| TrainError::task("memory.precision", e))?;
    B::seed(device, config.run.seed);
    let fail = |e: spear_models::ModelError| TrainError::task("model.init", e);
    let policy = match (&config.model.init, config.stage) {
        (None, _) => policy_config.init::<B>(device).map_err(fail)?,
        (Some(dir), Stage::VlaPosttrain) => {
            let loaded: SpearPolicy<B> = load_policy(dir, device).map_err(fail)?;
            let mut want = policy_config.clone();
            // The cameras' sizes may change between runs (the position tables are resized).
            want.vlm.image_size = loaded.config().vlm.image_size;
            want.vlm.wrist_image_size = loaded.config().vlm.wrist_image_size;
            if loaded.config() != &want {
                return Err(TrainError::Task(format!(
                    "model.init: {} is a different policy from the run's (checkpoint {:?}, run {:?})",
                    dir.display(),
                    loaded.config(),
                    want
                )));
            }
            let mut policy = policy_config.init::<B>(device).map_err(fail)?;
            (policy.vlm, policy.expert) = (loaded.vlm, loaded.expert);
            policy
        }
        (Some(dir), _) => {
            // SPEAR-VLM and a fresh action expert: the VLM's weights into the policy's VLM.
            let mut policy = policy_config.init::<B>(device).map_err(fail)?;
            load_spear_vlm(&mut policy.vlm, dir)?;
            policy
        }
    };
    materialize(&policy);
    Ok(policy
        .with_trainable(config.trainable.vlm(), config.trainable.action_expert)
        .with_precision(config.memory.precision))
}

/// The mixture a run reads, set up for the run: the run's seed, micro-batch, camera sizes,
/// horizon and action rate (the mixture file may not set these: [`mixture_file`]), and the
/// training side of the holdout (see [`validation_mixture`]).
pub fn training_mixture(
    mut mixture: MixtureConfig,
    config: &TrainConfig,
    policy: &SpearPolicyConfig,
    world: usize,
) -> MixtureConfig {
    let l = &mut mixture.loader;
    l.seed = config.run.seed;
    l.batch_size = config.run.batch_size / (config.run.grad_accum * world);
    let ([h, w], [wh, ww]) = (policy.vlm.image_size, policy.vlm.wrist_image_size);
    (l.external_size, l.wrist_size) = ([w, h], [ww, wh]);
    l.horizon = policy.horizon;
    l.rate_hz = config.model.rate_hz();
    l.holdout.fraction = config.data.val_fraction;
    l.holdout.held_out = false;
    mixture
}

/// The validation side of a training mixture: each dataset's `val` split when every dataset
/// has one (then `train` is read whole), else the held-out episodes of `train`.
pub fn validation_mixture(training: &mut MixtureConfig) -> Result<Option<MixtureConfig>, TrainError> {
    let mut all_have_val = true;
    for entry in &training.datasets {
        let dir = training.dataset_dir(entry).map_err(|e| TrainError::task("data.source", e))?;
        let dataset =
            spear_data::rlds::RldsDataset::open(&dir).map_err(|e| TrainError::task("data.source", e))?;
        all_have_val &= dataset.splits.iter().any(|s| s.name == "val");
    }
    let mut validation = training.clone();
    validation.loader.augment = Default::default();
    if all_have_val {
        training.loader.holdout.fraction = 0.0;
        validation.split = "val".into();
        validation.loader.holdout.fraction = 0.0;
    } else if training.loader.holdout.fraction > 0.0 {
        validation.loader.holdout.held_out = true;
    } else {
        return Ok(None);
    }
    Ok(Some(validation))
}

/// Samples from the validation stream held in memory, so every validation pass sees the same
/// ones (at most this many).
const VALIDATION_SAMPLES: usize = 256;
/// Seed of validation's noise and flow times (fixed, so passes are comparable).
const VALIDATION_SEED: u64 = 0x5EA1;

/// A batch as the policy takes it.
struct DeviceBatch<B: Backend> {
    observation: Observation<B>,
    actions: Tensor<B, 3>,
    mask: Tensor<B, 2, Bool>,
}

/// The tensors of a loader batch.
fn device_batch<B: Backend>(
    batch: &Batch,
    policy: &SpearPolicyConfig,
    prompts: &mut Prompts,
    device: &B::Device,
) -> Result<DeviceBatch<B>, TrainError> {
    let n = batch.size;
    let horizon = policy.horizon;
    let cameras = vec![
        image_batch::<B>(&batch.external, n, policy.vlm.image_size, device),
        image_batch::<B>(&batch.wrist, n, policy.vlm.wrist_image_size, device),
    ];
    let observation = Observation {
        cameras,
        camera_present: Some(vec![vec![true; n], batch.wrist_present.clone()]),
        prompts: batch
            .instructions
            .iter()
            .map(|text| {
                prompts.encode(text).map_err(|e| TrainError::task(format!("instruction {text:?}"), e))
            })
            .collect::<Result<_, _>>()?,
        state: Tensor::from_data(TensorData::new(batch.state.clone(), [n, STATE_DIM]), device),
    };
    let actions = Tensor::from_data(TensorData::new(batch.actions.clone(), [n, horizon, ACTION_DIM]), device);
    let mask = Tensor::from_data(TensorData::new(batch.mask.clone(), [n, horizon]), device);
    Ok(DeviceBatch { observation, actions, mask })
}

/// The trainer's state in a checkpoint.
#[derive(Serialize, Deserialize)]
struct VlaState {
    loader: LoaderState,
}

/// SPEAR-1's training task.
pub struct VlaTask<B: AutodiffBackend> {
    mixture: MixtureConfig,
    batches: Prefetch,
    /// The loader's state after the last batch taken (what a checkpoint must resume from).
    loader_state: LoaderState,
    prompts: Prompts,
    policy: SpearPolicyConfig,
    validation: Vec<Batch>,
    normalization: Normalization,
    datasets: Vec<(String, u64)>,
    device: B::Device,
}

impl<B: AutodiffBackend> VlaTask<B> {
    /// Opens the training stream of `mixture` (see [`training_mixture`]) and reads the validation
    /// samples.
    pub fn new(
        mixture: MixtureConfig,
        validation: Option<MixtureConfig>,
        policy: SpearPolicyConfig,
        prompts: Prompts,
        device: B::Device,
    ) -> Result<Self, TrainError> {
        let fail = |e: LoaderError| TrainError::task("data.source", e);
        let loader = Loader::open(&mixture).map_err(fail)?;
        let normalization =
            mixture.loader.normalization.build().map_err(|e| TrainError::task("data.source", e))?;
        let loader_state = loader.state();
        let datasets = loader.datasets().into_iter().map(|(n, e)| (n.to_string(), e)).collect();
        let mut validation_batches = Vec::new();
        if let Some(validation) = validation {
            // A held-out part with no episode (a tiny dataset) means no validation, not an error.
            let mut loader = match Loader::open(&validation) {
                Err(LoaderError::Empty(_)) => None,
                other => Some(other.map_err(fail)?),
            };
            let mut samples = 0;
            while let Some(l) = loader.as_mut()
                && samples < VALIDATION_SAMPLES
            {
                match l.next_batch() {
                    Ok(batch) => {
                        samples += batch.size;
                        validation_batches.push(batch);
                    }
                    Err(LoaderError::Empty(_)) => loader = None,
                    Err(e) => return Err(fail(e)),
                }
            }
        }
        Ok(Self {
            batches: loader.prefetch(),
            mixture,
            loader_state,
            prompts,
            policy,
            validation: validation_batches,
            normalization,
            datasets,
            device,
        })
    }

    /// The normalisers the loader applies (exported with the policy).
    pub fn normalization(&self) -> &Normalization {
        &self.normalization
    }

    /// Samples in the validation set.
    pub fn validation_samples(&self) -> usize {
        self.validation.iter().map(|b| b.size).sum()
    }
}

/// How far sampled chunks are from the demonstrations', at the real steps, after undoing the
/// normalisation.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct ChunkErrors {
    /// Mean translation distance, metres.
    translation_m: f64,
    /// Mean rotation angle between sampled and demonstrated deltas, degrees.
    rotation_deg: f64,
    /// The same over the steps that turn (more than 1°): whether the policy turns as shown.
    turn_deg: f64,
    /// Share of steps whose gripper command (≥ 0.5: close) matches.
    gripper: f64,
}

/// Minimum rotation of a demonstrated step that counts as turning, degrees.
const TURNING_DEG: f64 = 1.0;

fn chunk_errors(
    sampled: &[f32],
    target: &[f32],
    mask: &[bool],
    normalization: &Normalization,
) -> ChunkErrors {
    let q = |a: &[f32]| {
        let [w, x, y, z] = [a[3], a[4], a[5], a[6]].map(f64::from);
        nalgebra::UnitQuaternion::from_quaternion(nalgebra::Quaternion::new(w, x, y, z))
    };
    let (mut sums, mut count, mut turning) = (ChunkErrors::default(), 0usize, 0usize);
    for ((s, t), &real) in sampled.chunks(ACTION_DIM).zip(target.chunks(ACTION_DIM)).zip(mask) {
        if !real {
            continue;
        }
        let (mut s, mut t) = (s.to_vec(), t.to_vec());
        normalization.denormalize_action(&mut s);
        normalization.denormalize_action(&mut t);
        sums.translation_m += (0..3).map(|i| f64::from(s[i] - t[i]).powi(2)).sum::<f64>().sqrt();
        let target = q(&t);
        let angle = q(&s).angle_to(&target).to_degrees();
        sums.rotation_deg += angle;
        if target.angle().to_degrees() > TURNING_DEG {
            sums.turn_deg += angle;
            turning += 1;
        }
        sums.gripper += f64::from(u8::from((s[7] >= 0.5) == (t[7] >= 0.5)));
        count += 1;
    }
    let (n, m) = (count.max(1) as f64, turning.max(1) as f64);
    ChunkErrors {
        translation_m: sums.translation_m / n,
        rotation_deg: sums.rotation_deg / n,
        turn_deg: sums.turn_deg / m,
        gripper: sums.gripper / n,
    }
}

impl<B: AutodiffBackend> VlaTask<B> {
    /// A decoded micro-batch on the device and its flow draws from `rng`.
    fn prepare(
        &mut self,
        model: &SpearPolicy<B>,
        batch: &Batch,
        rng: &mut ChaCha8Rng,
    ) -> Result<(DeviceBatch<B>, FlowDraws<B>), TrainError> {
        if !batch.decoded {
            return Err(TrainError::Task(
                "the loader left this micro-batch undecoded (another rank's)".into(),
            ));
        }
        let b = device_batch::<B>(batch, &self.policy, &mut self.prompts, &self.device)?;
        Ok((b, model.draw(batch.size, rng, &self.device)))
    }
}

/// The policy's loss read back ([`finite_loss`] at optimiser step `step`), the loss and its
/// gradients by block rematerialisation ([`SpearPolicy::staged_loss`]): the `checkpointing =
/// "blocks"` twin of [`crate::run::gradients`].
pub fn staged_gradients<B: AutodiffBackend>(
    policy: &SpearPolicy<B>,
    obs: &Observation<B>,
    actions: Tensor<B, 3>,
    valid: Option<Tensor<B, 2, Bool>>,
    draws: &FlowDraws<B>,
    step: u64,
) -> Result<(f64, PolicyLoss<B>, GradientsParams), TrainError> {
    let staged =
        policy.staged_loss(obs, actions, valid, draws).map_err(|e| TrainError::task("policy loss", e))?;
    let mut value = f64::NAN;
    let (loss, grads) = staged.gradients(|loss| {
        value = finite_loss(&loss.total, step)?;
        Ok::<_, TrainError>(())
    })?;
    Ok((value, loss, grads))
}

/// The S³ loss terms' means, read back (none in linear mode).
fn loss_parts<B: Backend>(loss: &PolicyLoss<B>) -> Vec<(&'static str, f64)> {
    let mean = |t: &Tensor<B, 2>| f64::from(t.clone().mean().into_scalar().elem::<f32>());
    match (&loss.cosine, &loss.geodesic) {
        (Some(cosine), Some(geodesic)) => {
            vec![("rotation_cosine", mean(cosine)), ("rotation_geodesic", mean(geodesic))]
        }
        _ => Vec::new(),
    }
}

impl<B: AutodiffBackend> Task<B> for VlaTask<B> {
    type Model = SpearPolicy<B>;
    type Batch = Batch;

    fn next_batch(&mut self) -> Result<Batch, TrainError> {
        let batch = self
            .batches
            .next()
            .ok_or_else(|| TrainError::Task("the loader stopped".into()))?
            .map_err(|e| TrainError::task("data.source", e))?;
        self.loader_state = batch.state_after.clone();
        Ok(batch)
    }

    fn loss(
        &mut self,
        model: &SpearPolicy<B>,
        batch: Batch,
        rng: &mut ChaCha8Rng,
    ) -> Result<Loss<B>, TrainError> {
        let (b, draws) = self.prepare(model, &batch, rng)?;
        let loss = model
            .loss(&b.observation, b.actions, Some(b.mask), &draws)
            .map_err(|e| TrainError::task("policy loss", e))?;
        let parts = loss_parts(&loss);
        Ok((loss.total, parts))
    }

    fn gradients_by_blocks(
        &mut self,
        model: &SpearPolicy<B>,
        batch: Batch,
        rng: &mut ChaCha8Rng,
        step: u64,
    ) -> Result<MicroStep, TrainError> {
        let (b, draws) = self.prepare(model, &batch, rng)?;
        let (value, loss, grads) =
            staged_gradients(model, &b.observation, b.actions, Some(b.mask), &draws, step)?;
        Ok(MicroStep { loss: value, parts: loss_parts(&loss), grads })
    }

    fn validate(&mut self, model: &SpearPolicy<B::InnerBackend>) -> Result<Vec<(String, f64)>, TrainError> {
        if self.validation.is_empty() {
            return Ok(Vec::new());
        }
        B::InnerBackend::seed(&self.device, VALIDATION_SEED);
        let mut rng = ChaCha8Rng::seed_from_u64(VALIDATION_SEED);
        let (mut total, mut samples) = (0.0, 0usize);
        let mut errors = ChunkErrors::default();
        for (i, batch) in self.validation.iter().enumerate() {
            let b = device_batch::<B::InnerBackend>(batch, &self.policy, &mut self.prompts, &self.device)?;
            let draws = model.draw(batch.size, &mut rng, &self.device);
            let loss = model
                .loss(&b.observation, b.actions, Some(b.mask), &draws)
                .map_err(|e| TrainError::task("validation loss", e))?;
            total += f64::from(loss.total.into_scalar().elem::<f32>()) * batch.size as f64;
            samples += batch.size;
            if i == 0 {
                // How far sampled chunks are from the demonstrations (one batch: sampling runs
                // the flow's N steps).
                let noise = model.noise(batch.size, &self.device);
                let sampled = model
                    .sample(&b.observation, noise)
                    .map_err(|e| TrainError::task("validation sampling", e))?;
                let sampled: Vec<f32> = sampled.into_data().convert::<f32>().to_vec().expect("f32");
                errors = chunk_errors(&sampled, &batch.actions, &batch.mask, &self.normalization);
            }
        }
        Ok(vec![
            ("val_loss".into(), total / samples.max(1) as f64),
            ("val_translation_error_m".into(), errors.translation_m),
            ("val_rotation_error_deg".into(), errors.rotation_deg),
            ("val_turn_error_deg".into(), errors.turn_deg),
            ("val_gripper_accuracy".into(), errors.gripper),
        ])
    }

    fn shard(&mut self, index: usize, world: usize) -> Result<(), TrainError> {
        // The loader decodes this rank's batches only; the others cost their draw.
        self.mixture.loader.shard = Some(Shard { index, count: world });
        self.restore(&self.state())
    }

    fn state(&self) -> serde_json::Value {
        serde_json::to_value(VlaState { loader: self.loader_state.clone() }).expect("the state serialises")
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<(), TrainError> {
        let state: VlaState = serde_json::from_value(state.clone())
            .map_err(|e| TrainError::task("checkpoint state.json (task)", e))?;
        let loader = Loader::resume(&self.mixture, state.loader.clone())
            .map_err(|e| TrainError::task("resuming the loader", e))?;
        // The old producer thread ends when its channel closes.
        self.batches = loader.prefetch();
        self.loader_state = state.loader;
        Ok(())
    }
}

/// How the policy a run trains is fed: its cameras (`main`, then `wrist`) fitted as the loader
/// fitted them, and the loader's action rate.
pub fn policy_spec(mixture: &MixtureConfig, policy: &SpearPolicyConfig) -> PolicySpec {
    let mut spec = PolicySpec::spear(policy.cameras);
    spec.cameras.iter_mut().for_each(|camera| camera.fit = mixture.loader.fit);
    spec.rate_hz = Some(mixture.loader.rate_hz);
    spec
}

/// Writes a trained policy for `spear_policy::Policy::load` (`spear policy act`): weights and
/// `config.json`, `tokenizer.json`, `normalization.json` (the loader's normalisers, applied to
/// states and undone on actions) and `policy.json` (`spec`).
pub fn export<B: Backend>(
    policy: &SpearPolicy<B>,
    tokenizer: &Path,
    normalization: &Normalization,
    spec: &PolicySpec,
    dir: &Path,
) -> Result<PathBuf, TrainError> {
    save_policy(policy, dir).map_err(|e| TrainError::task(dir.display(), e))?;
    export_tokenizer(tokenizer, dir)?;
    normalization
        .write_file(&dir.join(Normalization::FILE_NAME))
        .map_err(|e| TrainError::task("exporting the normalisers", e))?;
    spec.write_file(&dir.join(PolicySpec::FILE_NAME)).map_err(TrainError::Task)?;
    Ok(dir.to_path_buf())
}

/// The loader settings a run owns, with the run field that sets them: a mixture file that sets one
/// is refused rather than silently overridden.
const RUN_OWNED: [(&str, &str); 6] = [
    ("seed", "run.seed"),
    ("batch_size", "run.batch_size (with run.grad_accum)"),
    ("external_size", "model.image_size"),
    ("wrist_size", "model.wrist_image_size"),
    ("horizon", "model.horizon"),
    ("rate_hz", "model.rate_hz"),
];

/// Opens the mixture file a run names (`data.source = { mixture = … }`), refusing the loader
/// settings the run owns.
pub fn mixture_file(config: &TrainConfig) -> Result<MixtureConfig, TrainError> {
    let DataSource::Mixture(path) = &config.data.source else {
        return Err(TrainError::Task("data.source names no mixture file".into()));
    };
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::task(path.display(), e))?;
    let table: toml::Table = text.parse().map_err(|e| TrainError::task(path.display(), e))?;
    if let Some(loader) = table.get("loader").and_then(toml::Value::as_table)
        && let Some((key, owner)) = RUN_OWNED.iter().find(|(key, _)| loader.contains_key(*key))
    {
        return Err(TrainError::Task(format!(
            "{}: loader.{key} is set by the training run ({owner}), not by its mixture; remove it from the \
             mixture file",
            path.display()
        )));
    }
    MixtureConfig::from_file(path).map_err(|e| TrainError::task("data.source", e))
}

/// What a finished VLA run leaves.
pub struct VlaOutcome<B: AutodiffBackend> {
    /// The training's end state.
    pub trained: Trained<B, SpearPolicy<B>>,
    /// The exported policy (`RUN/final`).
    pub export: PathBuf,
    /// The datasets read, with their episodes.
    pub datasets: Vec<(String, u64)>,
    /// Validation samples (0: no validation data).
    pub validation_samples: usize,
    /// The normalisers the policy was trained with (exported beside it).
    pub normalization: Normalization,
    /// How the policy is fed (exported beside it).
    pub spec: PolicySpec,
}

/// Runs a VLA training as `config` says, in `run_dir`, on `mixture` (a file's, or the embedded
/// task's), and exports the result to `RUN/final`. `initial` receives the starting weights (for
/// baselines) before training.
///
/// With several devices or nodes (`launch`), the run is data-parallel over them, one rank per
/// device (on the CPU the same device may be named several times): every rank starts from rank
/// 0's model, each step's `run.batch_size` is split into `run.grad_accum × world` micro-batches,
/// and this thread holds this process's first rank. Only rank 0's process exports.
pub fn run<B: AutodiffBackend>(
    config: &TrainConfig,
    mixture: MixtureConfig,
    run_dir: &Path,
    resume: bool,
    launch: &Launch<B::Device>,
    observer: &mut dyn Observer,
    initial: &mut dyn FnMut(&SpearPolicy<B::InnerBackend>),
) -> Result<VlaOutcome<B>, TrainError> {
    let world = launch.world();
    let device = launch.devices.first().ok_or_else(|| TrainError::Task("no device to train on".into()))?;
    crate::run::check_world(config, world)?;
    let (tokenizer, tokenizer_file) = load_tokenizer(config)?;
    let policy_config = policy_config(config, vlm_config(config, &tokenizer));
    let mut training = training_mixture(mixture, config, &policy_config, world);
    let spec = policy_spec(&training, &policy_config);
    let validation = validation_mixture(&mut training)?;
    let model = initial_policy::<B>(config, &policy_config, device)?;
    initial(&model.valid());
    // Every rank's task reads the same stream, on its own device.
    let task_on = |device: &B::Device| {
        let prompts = Prompts::new(tokenizer.clone());
        VlaTask::<B>::new(
            training.clone(),
            validation.clone(),
            policy_config.clone(),
            prompts,
            device.clone(),
        )
    };
    let peer = |rank: &Rank, device: &B::Device| -> Result<(), TrainError> {
        let model = own_copy(model.clone().fork(device));
        train(config, &mut task_on(device)?, model, run_dir, resume, device, &mut Quiet, rank)?;
        Ok(())
    };
    let mut task = task_on(device)?;
    let datasets = task.datasets.clone();
    let validation_samples = task.validation_samples();
    if validation_samples == 0 {
        notify(
            observer,
            "no validation data (no `val` split, and no episode held out by data.val_fraction): validation skipped",
        );
    }
    let main = |rank: &Rank, device: &B::Device| {
        train(config, &mut task, model.clone(), run_dir, resume, device, observer, rank)
    };
    let trained = data_parallel::<B, _>(launch, main, peer)?;
    let final_dir = run_dir.join("final");
    // Only the process of rank 0 writes the export (the others of a multi-node run trained along).
    let export = match launch.is_main() {
        true => export(&trained.weights(), &tokenizer_file, task.normalization(), &spec, &final_dir)?,
        false => final_dir,
    };
    let normalization = task.normalization().clone();
    Ok(VlaOutcome { trained, export, datasets, validation_samples, normalization, spec })
}
