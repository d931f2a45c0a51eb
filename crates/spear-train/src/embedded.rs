//! The embedded defaults (`data.source = "embedded"`).
//!
//! * **VLA**: the generated reach-and-rotate task ([`crate::reach`]) written as an RLDS dataset and
//!   read through the real pipeline (standardise, 5 Hz chunks, quantile normalisers from its
//!   statistics, the mixture loader), and, after training, closed-loop rollouts of the trained
//!   policy beside the untrained one, the mean action and the demonstrator.
//! * **VLM**: generated tabletop scenes with exact point maps (`spear_annotate::synthetic`),
//!   annotated by `spear annotate`'s pipeline ([`vqa_annotations`]).

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::prelude::*;
use spear_data::loader::{
    LoaderConfig, MixtureConfig, MixtureEntry, NormalizationConfig, NormalizerKind, RotationNormalizerKind,
    mixture_statistics,
};
use spear_data::resample::{ACTION_DIM, ChunkConfig};
use spear_policy::{Frame, Policy, RawObservation};

use crate::config::TrainConfig;
use crate::reach::{
    self, Chunk, DATASET_NAME, ReachConfig, ReachObservation, ReachReport, expert_policy, mean_action_policy,
    mean_chunk,
};
use crate::run::TrainError;

/// The run's reach task: `[data.reach]`, with the cameras at the model's sizes.
pub fn reach_config(config: &TrainConfig, policy: &spear_models::SpearPolicyConfig) -> ReachConfig {
    let mut reach = config.data.reach.clone().unwrap_or_default();
    let ([h, w], [wh, ww]) = (policy.vlm.image_size, policy.vlm.wrist_image_size);
    (reach.image_size, reach.wrist_size) = ([w, h], [ww, wh]);
    reach
}

fn reach_error(e: reach::ReachError) -> TrainError {
    TrainError::task("the embedded reach task", e)
}

/// Writes the task's dataset into `data_dir` (`data.embedded.episodes` training and
/// `val_episodes` validation episodes; kept when resuming) and its statistics, and returns the
/// one-dataset mixture over it, translations and positions quantile-normalised as the paper's
/// runs are (and rotations angle-scaled when `data.embedded.rotation_angle_deg` is set).
pub fn reach_mixture(
    config: &TrainConfig,
    reach: &ReachConfig,
    data_dir: &Path,
    resume: bool,
) -> Result<MixtureConfig, TrainError> {
    reach::register();
    let dataset = reach::dataset_dir(data_dir);
    let stats = data_dir.join("stats.json");
    let e = &config.data.embedded;
    let mut mixture = MixtureConfig {
        root: Some(data_dir.to_path_buf()),
        split: "train".into(),
        datasets: vec![MixtureEntry { name: DATASET_NAME.into(), weight: 1.0, path: Some(dataset.clone()) }],
        loader: LoaderConfig {
            shuffle_buffer_mb: 64,
            rate_hz: config.model.rate_hz(),
            ..LoaderConfig::default()
        },
        file: None,
    };
    if !(resume && dataset.join("dataset_info.json").is_file() && stats.is_file()) {
        reach::write_dataset(data_dir, reach, config.run.seed, e.episodes, e.val_episodes)
            .map_err(reach_error)?;
        let computed = mixture_statistics(&mixture, &|_, _, _| {})
            .map_err(|e| TrainError::task("statistics of the embedded dataset", e))?;
        let json = serde_json::to_string_pretty(&computed).expect("statistics serialise");
        std::fs::write(&stats, json).map_err(|e| TrainError::task(stats.display(), e))?;
    }
    mixture.loader.normalization = NormalizationConfig {
        stats: Some(stats),
        actions: NormalizerKind::Quantile,
        state: NormalizerKind::Quantile,
        rotations: match e.rotation_angle_deg {
            Some(_) => RotationNormalizerKind::AngleQuantile,
            None => RotationNormalizerKind::None,
        },
        rotation_angle_deg: e.rotation_angle_deg,
        ..NormalizationConfig::default()
    };
    Ok(mixture)
}

/// A policy as the rollouts call it, through the inference pipeline a robot's observations take:
/// observations in, chunks in metres out (noise from the backend's current seed).
fn reach_policy<B: Backend>(policy: &mut Policy<B>) -> impl FnMut(&[ReachObservation]) -> Vec<Chunk> + '_ {
    move |observations| {
        let raw: Vec<RawObservation> = observations
            .iter()
            .map(|o| RawObservation {
                cameras: vec![Some(Frame::from(o.main.clone())), Some(Frame::from(o.wrist.clone()))],
                state: o.state.to_vec(),
                prompt: o.instruction.clone(),
            })
            .collect();
        let chunks = policy.act(&raw).expect("the task's observations fit the policy it trained");
        chunks
            .into_iter()
            .map(|chunk| {
                chunk.into_iter().map(|a| <[f32; ACTION_DIM]>::try_from(a).expect("8 values")).collect()
            })
            .collect()
    }
}

/// Closed-loop results of each policy, in the order printed.
pub struct ReachEvaluation {
    /// `(policy, report)`.
    pub rows: Vec<(String, ReachReport)>,
    /// Held-out scenes per policy.
    pub scenes: usize,
    /// Chunks per rollout at most.
    pub chunks: usize,
}

impl ReachEvaluation {
    /// A Markdown table.
    pub fn table(&self) -> String {
        let mut out = format!("{}\n", ReachReport::TABLE_HEADER);
        for (name, report) in &self.rows {
            out += &report.table_row(name);
            out.push('\n');
        }
        out
    }
}

/// Rolls out `trained`, `untrained`, the training set's mean chunk and the demonstrator on
/// `data.embedded.eval_scenes` held-out scenes, the same scenes and noise for the two networks.
pub fn evaluate<B: Backend>(
    config: &TrainConfig,
    reach: &ReachConfig,
    dataset: &Path,
    trained: &mut Policy<B>,
    untrained: &mut Policy<B>,
    device: &B::Device,
) -> Result<ReachEvaluation, TrainError> {
    let e = &config.data.embedded;
    let (seed, scenes, chunks) = (config.run.seed, e.eval_scenes, e.eval_chunks);
    let horizon = trained.model().horizon();
    let mut rows = Vec::new();
    for (name, policy) in [("trained", trained), ("untrained", untrained)] {
        B::seed(device, seed);
        let act = reach_policy(policy);
        rows.push((
            name.to_string(),
            reach::evaluate(reach, seed, scenes, chunks, act).map_err(reach_error)?,
        ));
    }
    let chunking = ChunkConfig { horizon, rate_hz: config.model.rate_hz() };
    let mean = mean_chunk(dataset, "train", &chunking).map_err(reach_error)?;
    let report =
        reach::evaluate(reach, seed, scenes, chunks, mean_action_policy(mean)).map_err(reach_error)?;
    rows.push(("mean action".to_string(), report));
    let report =
        reach::evaluate(reach, seed, scenes, chunks, expert_policy(reach, horizon)).map_err(reach_error)?;
    rows.push(("demonstrator".to_string(), report));
    Ok(ReachEvaluation { rows, scenes, chunks })
}

/// What [`vqa_annotations`] made (nothing when a resumed run reused its data).
#[derive(Debug, Clone, PartialEq)]
pub struct VqaMade {
    /// Scenes rendered.
    pub scenes: usize,
    /// Their `[width, height]`: the model's input size.
    pub size: [usize; 2],
    /// Examples annotated.
    pub examples: usize,
    /// Seconds it took.
    pub seconds: f64,
}

/// The embedded VLM data under `data_dir`: `data.embedded.episodes` generated tabletop scenes at
/// the model's image size (`data_dir/scenes`), annotated by `spear annotate`'s pipeline into
/// `data_dir/vqa`, whose path is returned. A resumed run reuses them.
pub fn vqa_annotations(
    config: &TrainConfig,
    data_dir: &Path,
    resume: bool,
) -> Result<(PathBuf, Option<VqaMade>), TrainError> {
    use spear_annotate::pipeline::{AnnotateConfig, run};
    use spear_annotate::synthetic::{SceneConfig, write_scenes};
    let vqa = data_dir.join("vqa");
    if resume && vqa.join("manifest.json").is_file() {
        return Ok((vqa, None));
    }
    let scenes = config.data.embedded.episodes;
    // Rendered at the model's input size, so that no resizing blurs them.
    let (tokenizer, _) = crate::model::load_tokenizer(config)?;
    let [height, width] = crate::model::vlm_config(config, &tokenizer).image_size;
    let scene_config = SceneConfig { width, height, ..SceneConfig::default() };
    let started = Instant::now();
    let inputs = write_scenes(&data_dir.join("scenes"), &scene_config, config.run.seed, scenes)
        .map_err(|e| TrainError::task("the embedded VLM scenes", e))?;
    // The rendered point maps are exact: no flying pixels at object borders to erode.
    let mut annotate = AnnotateConfig { seed: config.run.seed, ..AnnotateConfig::default() };
    annotate.geometry.erode_px = 0;
    let manifest = run(&inputs, &vqa, &annotate, &|_, _| {})
        .map_err(|e| TrainError::task("annotating the embedded VLM scenes", e))?;
    let made = VqaMade {
        scenes,
        size: [width, height],
        examples: manifest.counts.examples,
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok((vqa, Some(made)))
}
