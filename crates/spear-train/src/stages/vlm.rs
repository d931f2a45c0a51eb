//! SPEAR-VLM training (paper §3.1, appendix A.1): 3D question–answer examples from the
//! annotation output (`spear annotate`'s JSON-lines shards), each 3D value one of the run's 3D
//! tokens, next-token loss on the answers with the 3D tokens weighted by λ, the stage's parts
//! frozen; validation reports the loss and the teacher-forced 3D-token error in metres on held-out
//! images. The export (`RUN/final`) is what `spear vlm ask` and a VLA run's `model.init` read.
//!
//! The 3D-token quantiser (appendix A.1.3) is part of the model: it is fitted on the training
//! images of the first run, then inherited from `model.init` (`coord_tokens.json`), so that a
//! token means the same coordinate in stage 1, stage 2 and the policy.

use std::path::{Path, PathBuf};

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use spear_data::coord_tokens::CoordQuantizer;
use spear_data::loader::Holdout;
use spear_data::tokenizer::PaliGemmaTokenizer;
use spear_data::vqa::{Segment, VqaExample, encode, fit_quantizer, read_examples};
use spear_models::store::{assemble_vlm, save_vlm};
use spear_models::{SpearVlm, SpearVlmConfig};

use crate::config::TrainConfig;
use spear_policy::Frame;
use spear_policy::inputs::{VLM_FIT, fit_frame, image_batch};

use crate::dist::{Launch, Rank, own_copy};
use crate::model::{export_tokenizer, load_spear_vlm, load_tokenizer, vlm_config};
use crate::optim::{materialize, vqa_loss};
use crate::run::{
    Loss, MicroStep, Observer, Quiet, Task, TrainError, Trained, data_parallel, finite_loss, train,
};

/// One training row: its image and tokens.
#[derive(Debug, Clone)]
pub struct VqaRow {
    /// The image file.
    pub image: PathBuf,
    /// Token ids, `<bos>` first.
    pub ids: Vec<u32>,
    /// Prefix length (bidirectional part).
    pub prefix_len: usize,
    /// Positions trained on.
    pub loss: Vec<bool>,
    /// Positions holding 3D tokens.
    pub is_3d: Vec<bool>,
    /// The annotated value (metres) of each 3D token, in order.
    pub values: Vec<f32>,
}

/// Whether an image is held out: a fixed share by a hash (the loader's holdout hash) of its path
/// below the folder it shares with the annotations — not of its absolute path, so that the split
/// does not change when the data moves.
fn held_out(image: &Path, annotations: &Path, fraction: f64) -> bool {
    let common = image.components().zip(annotations.components()).take_while(|(a, b)| a == b).count();
    let key: PathBuf = image.components().skip(common).collect();
    Holdout { fraction, held_out: true }.is_held_out(&key.to_string_lossy(), 0)
}

/// Every example of an annotation folder (`*.jsonl` shards, in name order).
pub fn read_annotations(dir: &Path) -> Result<Vec<VqaExample>, TrainError> {
    let fail = |e: String| TrainError::Task(format!("data.vqa {}: {e}", dir.display()));
    let mut shards: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| fail(e.to_string()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    shards.sort();
    if shards.is_empty() {
        return Err(fail("no *.jsonl annotation shards (the output of `spear annotate`)".into()));
    }
    let mut examples = Vec::new();
    for shard in &shards {
        examples.extend(read_examples(shard).map_err(|e| TrainError::task("data.vqa", e))?);
    }
    Ok(examples)
}

/// Each 3D value of an example with its key: the question family and the value's place in its
/// pair's answer.
fn keyed_values(example: &VqaExample) -> impl Iterator<Item = ((String, usize), f64)> + '_ {
    example.pairs.iter().flat_map(|pair| {
        let family = pair.task.clone().unwrap_or_default();
        let values = pair.answer.iter().filter_map(|s| match s {
            Segment::Coords { coords } => Some(coords.iter().copied()),
            _ => None,
        });
        values.flatten().enumerate().map(move |(slot, v)| ((family.clone(), slot), v))
    })
}

/// The mean absolute error (metres) of answering each 3D value of `validation` with the mean of
/// the training values of the same question family and slot: what a model that ignores the
/// image can reach, the bar a trained model must clear.
pub fn prior_error(train: &[VqaExample], validation: &[VqaExample]) -> Option<f64> {
    let mut sums: std::collections::HashMap<(String, usize), (f64, usize)> = Default::default();
    let (mut all, mut count) = (0.0, 0usize);
    for (key, v) in train.iter().flat_map(keyed_values) {
        let entry = sums.entry(key).or_default();
        (entry.0, entry.1) = (entry.0 + v, entry.1 + 1);
        (all, count) = (all + v, count + 1);
    }
    let fallback = all / count.max(1) as f64;
    let errors: Vec<f64> = validation
        .iter()
        .flat_map(keyed_values)
        .map(|(key, v)| {
            let mean = sums.get(&key).map_or(fallback, |(s, n)| s / *n as f64);
            (mean - v).abs()
        })
        .collect();
    (!errors.is_empty()).then(|| errors.iter().sum::<f64>() / errors.len() as f64)
}

/// Rows of `examples` as the model's tokens.
pub fn rows(
    examples: &[VqaExample],
    tokenizer: &PaliGemmaTokenizer,
    quantizer: &CoordQuantizer,
    base_vocab: u32,
) -> Result<Vec<VqaRow>, TrainError> {
    examples
        .iter()
        .map(|example| {
            let tokens = encode(&example.pairs, tokenizer, quantizer, base_vocab).map_err(|e| {
                TrainError::task(format!("data.vqa example of {}", example.image.display()), e)
            })?;
            Ok(VqaRow {
                image: example.image.clone(),
                ids: tokens.ids,
                prefix_len: tokens.prefix_len,
                loss: tokens.loss,
                is_3d: tokens.is_3d,
                // The 3D values of the answers, in token order.
                values: keyed_values(example).map(|(_, v)| v as f32).collect(),
            })
        })
        .collect()
}

/// The row's image, decoded and fitted to `[height, width]` without distortion.
fn load_image(path: &Path, size: [usize; 2]) -> Result<Vec<u8>, TrainError> {
    let frame = Frame::read(path).map_err(TrainError::Task)?;
    fit_frame(&frame, size, VLM_FIT).map_err(|e| TrainError::task(path.display(), e))
}

/// A micro-batch: images and padded targets, on the host.
pub struct VqaBatch {
    rows: Vec<VqaRow>,
    pixels: Vec<u8>,
}

/// Inputs and targets of a batch on the device: logits at text position `t` predict token
/// `t + 1`.
struct Targets<B: Backend> {
    targets: Tensor<B, 2, Int>,
    loss_mask: Tensor<B, 2>,
    is_3d: Tensor<B, 2>,
}

fn targets<B: Backend>(rows: &[VqaRow], device: &B::Device) -> Targets<B> {
    let longest = rows.iter().map(|r| r.ids.len()).max().unwrap_or(0);
    let (mut ids, mut mask, mut is_3d) = (Vec::new(), Vec::new(), Vec::new());
    for row in rows {
        for t in 0..longest {
            let next = t + 1;
            let real = next < row.ids.len();
            ids.push(if real { i64::from(row.ids[next]) } else { 0 });
            mask.push(if real && row.loss[next] { 1.0f32 } else { 0.0 });
            is_3d.push(if real && row.is_3d[next] { 1.0f32 } else { 0.0 });
        }
    }
    let shape = [rows.len(), longest];
    Targets {
        targets: Tensor::from_data(TensorData::new(ids, shape), device),
        loss_mask: Tensor::from_data(TensorData::new(mask, shape), device),
        is_3d: Tensor::from_data(TensorData::new(is_3d, shape), device),
    }
}

/// The trainer's state in a checkpoint: where the epoch's order is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Cursor {
    epoch: u64,
    position: usize,
}

/// Held-out rows evaluated at each validation (at most this many).
const VALIDATION_ROWS: usize = 256;

/// SPEAR-VLM's training task.
#[derive(Clone)]
pub struct VlmTask<B: AutodiffBackend> {
    train: Vec<VqaRow>,
    validation: Vec<VqaRow>,
    quantizer: CoordQuantizer,
    lambda: f64,
    seed: u64,
    micro_batch: usize,
    image_size: [usize; 2],
    cursor: Cursor,
    order: Vec<usize>,
    device: B::Device,
}

impl<B: AutodiffBackend> VlmTask<B> {
    fn order(seed: u64, epoch: u64, n: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ epoch.rotate_left(32)));
        order
    }

    /// Training rows, validation rows.
    pub fn sizes(&self) -> (usize, usize) {
        (self.train.len(), self.validation.len())
    }

    /// The 3D-token quantiser of the run.
    pub fn quantizer(&self) -> &CoordQuantizer {
        &self.quantizer
    }

    /// The next micro-batch's rows (their indices), moving the cursor past them.
    fn choose(&mut self) -> Vec<usize> {
        let mut chosen = Vec::with_capacity(self.micro_batch);
        while chosen.len() < self.micro_batch {
            if self.cursor.position == self.order.len() {
                self.cursor = Cursor { epoch: self.cursor.epoch + 1, position: 0 };
                self.order = Self::order(self.seed, self.cursor.epoch, self.train.len());
            }
            chosen.push(self.order[self.cursor.position]);
            self.cursor.position += 1;
        }
        chosen
    }

    fn batch_of(&self, rows: Vec<VqaRow>) -> Result<VqaBatch, TrainError> {
        let pixels: Vec<Vec<u8>> =
            rows.par_iter().map(|r| load_image(&r.image, self.image_size)).collect::<Result<_, _>>()?;
        Ok(VqaBatch { rows, pixels: pixels.concat() })
    }

    fn logits<M: Backend>(
        model: &SpearVlm<M>,
        batch: &VqaBatch,
        image_size: [usize; 2],
        device: &M::Device,
    ) -> Result<Tensor<M, 3>, TrainError> {
        let cameras = [image_batch::<M>(&batch.pixels, batch.rows.len(), image_size, device)];
        let rows: Vec<(&[u32], usize)> =
            batch.rows.iter().map(|r| (r.ids.as_slice(), r.prefix_len)).collect();
        model.forward_rows(&cameras, &rows).map_err(|e| TrainError::task("VLM forward", e))
    }
}

impl<B: AutodiffBackend> Task<B> for VlmTask<B> {
    type Model = SpearVlm<B>;
    type Batch = VqaBatch;

    fn next_batch(&mut self) -> Result<VqaBatch, TrainError> {
        let chosen = self.choose().into_iter().map(|i| self.train[i].clone()).collect();
        self.batch_of(chosen)
    }

    fn skip_batch(&mut self) -> Result<(), TrainError> {
        // Another rank's: its rows are chosen, their images not read.
        self.choose();
        Ok(())
    }

    fn loss(
        &mut self,
        model: &SpearVlm<B>,
        batch: VqaBatch,
        _: &mut ChaCha8Rng,
    ) -> Result<Loss<B>, TrainError> {
        let logits = Self::logits(model, &batch, self.image_size, &self.device)?;
        let t = targets::<B>(&batch.rows, &self.device);
        Ok((vqa_loss(logits, t.targets, t.loss_mask, t.is_3d, self.lambda), Vec::new()))
    }

    fn gradients_by_blocks(
        &mut self,
        model: &SpearVlm<B>,
        batch: VqaBatch,
        _: &mut ChaCha8Rng,
        step: u64,
    ) -> Result<MicroStep, TrainError> {
        let cameras = [image_batch::<B>(&batch.pixels, batch.rows.len(), self.image_size, &self.device)];
        let rows: Vec<(&[u32], usize)> =
            batch.rows.iter().map(|r| (r.ids.as_slice(), r.prefix_len)).collect();
        let staged = model.staged_rows(&cameras, &rows).map_err(|e| TrainError::task("VLM forward", e))?;
        let t = targets::<B>(&batch.rows, &self.device);
        let (loss, grads) = staged.gradients(|logits| {
            let loss = vqa_loss(logits, t.targets, t.loss_mask, t.is_3d, self.lambda);
            let value = finite_loss(&loss, step)?;
            Ok::<_, TrainError>((loss, value))
        })?;
        Ok(MicroStep { loss, parts: Vec::new(), grads })
    }

    fn validate(&mut self, model: &SpearVlm<B::InnerBackend>) -> Result<Vec<(String, f64)>, TrainError> {
        if self.validation.is_empty() {
            return Ok(Vec::new());
        }
        let base = model.base_vocab();
        let count_3d = model.num_3d_tokens();
        let (mut loss_sum, mut loss_rows) = (0.0, 0usize);
        let (mut error_sum, mut exact, mut tokens) = (0.0, 0usize, 0usize);
        for chunk in self.validation.chunks(self.micro_batch) {
            let batch = self.batch_of(chunk.to_vec())?;
            let logits = Self::logits(model, &batch, self.image_size, &self.device)?;
            let t = targets::<B::InnerBackend>(&batch.rows, &self.device);
            // λ = 1 here: the plain mean next-token loss, comparable across stages.
            let loss = vqa_loss(logits.clone(), t.targets, t.loss_mask, t.is_3d, 1.0);
            loss_sum += f64::from(loss.into_scalar().elem::<f32>()) * chunk.len() as f64;
            loss_rows += chunk.len();
            // Teacher forced: at each position before a 3D token, the most likely 3D token.
            let [b, l, _] = logits.dims();
            let best: Vec<i64> = logits
                .narrow(2, base, count_3d)
                .argmax(2)
                .reshape([b * l])
                .into_data()
                .convert::<i64>()
                .to_vec()
                .expect("ids");
            for (r, row) in batch.rows.iter().enumerate() {
                let positions = (1..row.ids.len()).filter(|&next| row.is_3d[next]);
                for (k, next) in positions.enumerate() {
                    let predicted = best[r * l + next - 1] as u32;
                    let value =
                        self.quantizer.decode(predicted).map_err(|e| TrainError::task("3D token", e))?;
                    error_sum += f64::from((value - row.values[k]).abs());
                    exact += usize::from(u64::from(predicted) + base as u64 == u64::from(row.ids[next]));
                    tokens += 1;
                }
            }
        }
        Ok(vec![
            ("val_loss".into(), loss_sum / loss_rows.max(1) as f64),
            ("val_3d_error_m".into(), error_sum / tokens.max(1) as f64),
            ("val_3d_exact".into(), exact as f64 / tokens.max(1) as f64),
        ])
    }

    fn state(&self) -> serde_json::Value {
        serde_json::to_value(self.cursor).expect("the cursor serialises")
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<(), TrainError> {
        let cursor: Cursor = serde_json::from_value(state.clone())
            .map_err(|e| TrainError::task("checkpoint state.json (task)", e))?;
        if cursor.position > self.train.len() {
            return Err(TrainError::Task(format!(
                "checkpoint: position {} in an epoch of {} examples (was the data changed?)",
                cursor.position,
                self.train.len()
            )));
        }
        self.order = Self::order(self.seed, cursor.epoch, self.train.len());
        self.cursor = cursor;
        Ok(())
    }
}

/// The VLM a run starts from, every weight drawn or loaded, the stage's parts frozen: random
/// (tiny, no `model.init`), a spear VLM checkpoint (`model.init`), or PaliGemma + MoGe assembled
/// as §3.1 says (`model.paligemma` and `model.moge`).
pub fn initial_vlm<B: AutodiffBackend>(
    config: &TrainConfig,
    vlm_config: &SpearVlmConfig,
    device: &B::Device,
) -> Result<SpearVlm<B>, TrainError> {
    config.memory.precision.check::<B>(device).map_err(|e| TrainError::task("memory.precision", e))?;
    B::seed(device, config.run.seed);
    let fail = |e: spear_models::ModelError| TrainError::task("model.init", e);
    let m = &config.model;
    let model = match (&m.init, &m.paligemma, &m.moge) {
        (Some(dir), _, _) => {
            let mut model = vlm_config.init::<B>(device);
            load_spear_vlm(&mut model, dir)?;
            model
        }
        (None, Some(paligemma), Some(moge)) => {
            assemble_vlm::<B>(vlm_config, paligemma, moge, device).map_err(fail)?.0
        }
        _ => vlm_config.init::<B>(device),
    };
    materialize(&model);
    Ok(model.with_trainable(config.trainable.vlm()).with_precision(config.memory.precision))
}

/// Called with the starting weights and the task before training (e.g. to evaluate the
/// untrained model as a baseline).
pub type BeforeTraining<'a, B> = dyn FnMut(&SpearVlm<<B as AutodiffBackend>::InnerBackend>, &mut VlmTask<B>) -> Result<(), TrainError>
    + 'a;

/// What a finished VLM run leaves.
pub struct VlmOutcome<B: AutodiffBackend> {
    /// The training's end state.
    pub trained: Trained<B, SpearVlm<B>>,
    /// The exported model (`RUN/final`).
    pub export: PathBuf,
    /// Training and validation examples.
    pub examples: (usize, usize),
    /// The validation error of the image-blind prior ([`prior_error`]).
    pub prior_3d_error_m: Option<f64>,
    /// A held-out image and its first question, to try the export on.
    pub example: Option<(PathBuf, String)>,
}

/// Runs a VLM training on the annotation folder `annotations`, in `run_dir`, and exports the
/// result to `RUN/final` (weights, `config.json`, `tokenizer.json`, `coord_tokens.json`).
/// `initial` receives the starting weights, and the validation rows' evaluation, before training.
pub fn run<B: AutodiffBackend>(
    config: &TrainConfig,
    annotations: &Path,
    run_dir: &Path,
    resume: bool,
    launch: &Launch<B::Device>,
    observer: &mut dyn Observer,
    initial: &mut BeforeTraining<'_, B>,
) -> Result<VlmOutcome<B>, TrainError> {
    let world = launch.world();
    let device = launch.devices.first().ok_or_else(|| TrainError::Task("no device to train on".into()))?;
    crate::run::check_world(config, world)?;
    let (tokenizer, tokenizer_file) = load_tokenizer(config)?;
    let vlm_config = vlm_config(config, &tokenizer);
    let examples = read_annotations(annotations)?;
    let fraction = config.data.val_fraction;
    let (validation, train_examples): (Vec<VqaExample>, Vec<VqaExample>) =
        examples.into_iter().partition(|e| held_out(&e.image, annotations, fraction));
    if train_examples.is_empty() {
        return Err(TrainError::Task(format!(
            "data.vqa {}: every example is held out",
            annotations.display()
        )));
    }
    let inherited = config.model.init.as_ref().map(|d| d.join("coord_tokens.json")).filter(|p| p.exists());
    let tokens = config.model.num_3d_tokens as u32;
    let quantizer = match inherited {
        Some(path) => {
            CoordQuantizer::from_json_file(&path).map_err(|e| TrainError::task(path.display(), e))?
        }
        None => fit_quantizer(&train_examples, tokens)
            .map_err(|e| TrainError::task("fitting the 3D tokens", e))?,
    };
    if quantizer.num_tokens() != tokens {
        return Err(TrainError::Task(format!(
            "model.num_3d_tokens is {tokens}, but the inherited coord_tokens.json has {}",
            quantizer.num_tokens()
        )));
    }
    let base = vlm_config.gemma.vocab_size as u32;
    let mut validation = validation;
    validation.truncate(VALIDATION_ROWS);
    let prior_3d_error_m = prior_error(&train_examples, &validation);
    let example = validation.first().map(|e| (e.image.clone(), e.pairs[0].question.clone()));
    let validation = rows(&validation, &tokenizer, &quantizer, base)?;
    let train_rows = rows(&train_examples, &tokenizer, &quantizer, base)?;
    let model = initial_vlm::<B>(config, &vlm_config, device)?;
    let seed = config.run.seed;
    let mut task = VlmTask::<B> {
        order: VlmTask::<B>::order(seed, 0, train_rows.len()),
        train: train_rows,
        validation,
        quantizer,
        lambda: config.loss.lambda_3d,
        seed,
        micro_batch: config.run.batch_size / (config.run.grad_accum * world),
        image_size: vlm_config.image_size,
        cursor: Cursor { epoch: 0, position: 0 },
        device: device.clone(),
    };
    initial(&model.valid(), &mut task)?;
    let examples = task.sizes();
    let peer = |rank: &Rank, device: &B::Device| -> Result<(), TrainError> {
        let mut task = VlmTask { device: device.clone(), ..task.clone() };
        let model = own_copy(model.clone().fork(device));
        train(config, &mut task, model, run_dir, resume, device, &mut Quiet, rank).map(|_| ())
    };
    let mut main_task = task.clone();
    let main = |rank: &Rank, device: &B::Device| {
        train(config, &mut main_task, model.clone(), run_dir, resume, device, observer, rank)
    };
    let trained = data_parallel::<B, _>(launch, main, peer)?;
    let task = main_task;
    let export = run_dir.join("final");
    // Only the process of rank 0 writes the export (the others of a multi-node run trained along).
    if launch.is_main() {
        save_vlm(&trained.weights(), &vlm_config, &export)
            .map_err(|e| TrainError::task(export.display(), e))?;
        export_tokenizer(&tokenizer_file, &export)?;
        let path = export.join("coord_tokens.json");
        task.quantizer.to_json_file(&path).map_err(|e| TrainError::task(path.display(), e))?;
    }
    Ok(VlmOutcome { trained, export, examples, prior_3d_error_m, example })
}
