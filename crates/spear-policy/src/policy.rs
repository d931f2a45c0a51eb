//! [`Policy`]: an exported SPEAR-1 (or a π0 checkpoint) with everything between a robot's raw
//! observation and actions in its units: frames fitted as in training, the state normalised with
//! the run's normalisers, the instruction tokenised, one KV-cached sample, the actions
//! denormalised.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use spear_data::loader::Normalization;
use spear_data::tokenizer::PaliGemmaTokenizer;
use spear_models::import::checkpoint::Checkpoint;
use spear_models::import::layout::Layout;
use spear_models::policy::Observation;
use spear_models::store::load_policy;
use spear_models::{ModelError, Precision, RotationMode, SpearPolicy};

use crate::frame::Frame;
use crate::inputs::{Prompts, fit_frame, image_batch};
use crate::spec::PolicySpec;

/// What went wrong, naming the file or the observation and its field.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The checkpoint's weights or config.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A file of the policy folder other than the weights (tokenizer, normalisers, `policy.json`).
    #[error("{}: {problem}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// An observation the policy cannot take.
    #[error("observation {index}: {problem}")]
    Observation {
        /// Its index in the batch.
        index: usize,
        /// What is wrong, naming the camera or the state.
        problem: String,
    },
}

/// How to load a policy folder.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `tokenizer.json`; default: the folder's (π0 checkpoints ship none).
    pub tokenizer: Option<PathBuf>,
    /// Cameras the policy takes; default: its config's (π0 checkpoints do not record theirs).
    pub cameras: Option<usize>,
    /// Zero-pad a shorter state to the policy's width (π0 pads to 32 after normalising).
    pub pad_state: bool,
    /// The arithmetic of the model's matrix products (`spear_models::precision`).
    pub precision: Precision,
}

/// One observation as a robot sends it.
#[derive(Debug, Clone)]
pub struct RawObservation {
    /// One entry per camera of the policy's [`PolicySpec`], in its order; `None` for a camera the
    /// robot does not have (a black frame the model does not attend to, as in training).
    pub cameras: Vec<Option<Frame>>,
    /// The proprioceptive state in the robot's units (normalised here when the policy has
    /// normalisers).
    pub state: Vec<f32>,
    /// The instruction.
    pub prompt: String,
}

/// What the model sees for a batch of observations, on the host: the bytes of each fitted frame,
/// the normalised states, the prompts' token ids. Training's loader batches hold the same.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInputs {
    /// Per camera, `n × height × width × 3` RGB bytes at the model's size (black when absent).
    pub cameras: Vec<Vec<u8>>,
    /// Per camera, per observation: whether the frame was given.
    pub camera_present: Vec<Vec<bool>>,
    /// Per observation, `<bos>` prompt `"\n"` as token ids.
    pub prompts: Vec<Vec<u32>>,
    /// `n × state_dim`, normalised.
    pub state: Vec<f32>,
}

/// A loaded policy and its input and output transforms.
pub struct Policy<B: Backend> {
    model: SpearPolicy<B>,
    prompts: Prompts,
    normalization: Option<Normalization>,
    spec: PolicySpec,
    pad_state: bool,
    pi0: bool,
    device: B::Device,
}

impl<B: Backend> Policy<B> {
    /// Loads a policy folder: an export of `spear train vla` (weights, `config.json`,
    /// `tokenizer.json`, `normalization.json`, `policy.json`) or a π0 checkpoint (openpi's
    /// PyTorch port, lerobot, transformers), whose inputs are taken as openpi feeds them.
    pub fn load(dir: &Path, options: &LoadOptions, device: &B::Device) -> Result<Self, PolicyError> {
        options.precision.check::<B>(device)?;
        let mut model: SpearPolicy<B> = load_policy(dir, device)?;
        model.set_precision(options.precision);
        if let Some(cameras) = options.cameras {
            model = model.with_cameras(cameras);
        }
        let tokenizer_path = options.tokenizer.clone().unwrap_or_else(|| dir.join("tokenizer.json"));
        let tokenizer = PaliGemmaTokenizer::from_file(&tokenizer_path).map_err(|e| PolicyError::File {
            path: tokenizer_path.clone(),
            problem: format!("{e} (a π0 checkpoint needs its PaliGemma tokenizer passed explicitly)"),
        })?;
        let file = |name: &str| Some(dir.join(name)).filter(|p| p.exists());
        let normalization = file(Normalization::FILE_NAME)
            .map(|path| {
                Normalization::read_file(&path)
                    .map_err(|e| PolicyError::File { path, problem: e.to_string() })
            })
            .transpose()?;
        let cameras = model.config().cameras;
        let pi0 = is_pi0(dir)?;
        let spec = match file(PolicySpec::FILE_NAME) {
            Some(path) => {
                PolicySpec::read_file(&path).map_err(|problem| PolicyError::File { path, problem })?
            }
            None if pi0 => PolicySpec::pi0(cameras),
            None => PolicySpec::spear(cameras),
        };
        let mut policy = Self::new(model, tokenizer.clone(), normalization, spec, device)?;
        policy.pad_state = options.pad_state;
        if pi0 {
            policy.pi0 = true;
            policy.prompts = Prompts::pi0(tokenizer);
        }
        Ok(policy)
    }

    /// A policy from its parts (a model just trained, say), its cameras checked against `spec`.
    pub fn new(
        model: SpearPolicy<B>,
        tokenizer: PaliGemmaTokenizer,
        normalization: Option<Normalization>,
        spec: PolicySpec,
        device: &B::Device,
    ) -> Result<Self, PolicyError> {
        let cameras = model.config().cameras;
        if spec.cameras.len() != cameras {
            return Err(PolicyError::File {
                path: PolicySpec::FILE_NAME.into(),
                problem: format!("names {} cameras; the model takes {cameras}", spec.cameras.len()),
            });
        }
        Ok(Self {
            model,
            prompts: Prompts::new(tokenizer),
            normalization,
            spec,
            pad_state: false,
            pi0: false,
            device: device.clone(),
        })
    }

    /// The network.
    pub fn model(&self) -> &SpearPolicy<B> {
        &self.model
    }

    /// Its cameras and action rate.
    pub fn spec(&self) -> &PolicySpec {
        &self.spec
    }

    /// Whether it was loaded from a π0 checkpoint (openpi, lerobot, transformers names): its
    /// actions are padded to 32 values in the space of the robot it was trained on.
    pub fn is_pi0(&self) -> bool {
        self.pi0
    }

    /// Whether actions come back in the robot's units (the policy has normalisers) rather than
    /// in the policy's normalised space.
    pub fn in_robot_units(&self) -> bool {
        self.normalization.is_some()
    }

    /// How rotations are generated (S³: actions are `[x, y, z, qw, qx, qy, qz, gripper]`).
    pub fn rotation(&self) -> RotationMode {
        self.model.config().rotation
    }

    /// `[height, width]` of camera `k`: the main camera's size, then the wrist cameras'.
    fn camera_size(&self, k: usize) -> [usize; 2] {
        let vlm = &self.model.config().vlm;
        if k == 0 { vlm.image_size } else { vlm.wrist_image_size }
    }

    /// The model's inputs for `observations`, exactly as it will see them.
    pub fn inputs(&mut self, observations: &[RawObservation]) -> Result<ModelInputs, PolicyError> {
        let state_dim = self.model.config().expert.state_dim;
        let cameras = self.spec.cameras.len();
        let mut inputs = ModelInputs {
            cameras: (0..cameras)
                .map(|k| Vec::with_capacity(pixels(self.camera_size(k)) * observations.len()))
                .collect(),
            camera_present: vec![Vec::with_capacity(observations.len()); cameras],
            prompts: Vec::with_capacity(observations.len()),
            state: Vec::with_capacity(state_dim * observations.len()),
        };
        for (index, observation) in observations.iter().enumerate() {
            let fail = |problem: String| PolicyError::Observation { index, problem };
            if observation.cameras.len() != cameras {
                let names: Vec<&str> = self.spec.cameras.iter().map(|c| c.name.as_str()).collect();
                return Err(fail(format!(
                    "{} cameras given; this policy takes {cameras} ({})",
                    observation.cameras.len(),
                    names.join(", ")
                )));
            }
            if observation.cameras.iter().all(Option::is_none) {
                return Err(fail("no camera frame given".into()));
            }
            for (k, (frame, camera)) in observation.cameras.iter().zip(&self.spec.cameras).enumerate() {
                let size = self.camera_size(k);
                match frame {
                    Some(frame) => {
                        let fitted = fit_frame(frame, size, camera.fit)
                            .map_err(|e| fail(format!("camera `{}`: {e}", camera.name)))?;
                        inputs.cameras[k].extend(fitted);
                    }
                    None => {
                        let slot = &mut inputs.cameras[k];
                        slot.resize(slot.len() + pixels(size), 0)
                    }
                }
                inputs.camera_present[k].push(frame.is_some());
            }
            let mut state = observation.state.clone();
            if self.pad_state && state.len() < state_dim {
                state.resize(state_dim, 0.0);
            }
            if state.len() != state_dim {
                let hint = if state.len() < state_dim && !self.pad_state {
                    " (zero-pad it as π0 does with the pad-state option)"
                } else {
                    ""
                };
                return Err(fail(format!(
                    "state has {} values; this policy takes {state_dim}{hint}",
                    state.len()
                )));
            }
            if let Some(i) = state.iter().position(|v| !v.is_finite()) {
                return Err(fail(format!("state value {i} is {}", state[i])));
            }
            if let Some(n) = &self.normalization {
                n.normalize_state(&mut state);
            }
            inputs.state.extend(state);
            let ids = self
                .prompts
                .encode(&observation.prompt)
                .map_err(|e| fail(format!("instruction {:?}: {e}", observation.prompt)))?;
            inputs.prompts.push(ids);
        }
        Ok(inputs)
    }

    /// The observation tensors of `inputs`.
    pub fn observation(&self, inputs: &ModelInputs) -> Observation<B> {
        let n = inputs.prompts.len();
        let state_dim = self.model.config().expert.state_dim;
        let all_present = inputs.camera_present.iter().flatten().all(|&p| p);
        Observation {
            cameras: inputs
                .cameras
                .iter()
                .enumerate()
                .map(|(k, pixels)| image_batch::<B>(pixels, n, self.camera_size(k), &self.device))
                .collect(),
            camera_present: (!all_present).then(|| inputs.camera_present.clone()),
            prompts: inputs.prompts.clone(),
            state: Tensor::from_data(TensorData::new(inputs.state.clone(), [n, state_dim]), &self.device),
        }
    }

    /// One action chunk per observation: `horizon` actions each, denormalised into the robot's
    /// units when the policy has normalisers. The noise comes from the backend's generator (seed
    /// it for reproducible chunks).
    pub fn act(&mut self, observations: &[RawObservation]) -> Result<Vec<Vec<Vec<f32>>>, PolicyError> {
        let noise = self.model.noise(observations.len(), &self.device);
        self.act_from(observations, noise)
    }

    /// [`Policy::act`] from given starting noise, `[observations, horizon, action_dim]` (to
    /// compare with a reference implementation fed the same noise).
    pub fn act_from(
        &mut self,
        observations: &[RawObservation],
        noise: Tensor<B, 3>,
    ) -> Result<Vec<Vec<Vec<f32>>>, PolicyError> {
        let inputs = self.inputs(observations)?;
        let observation = self.observation(&inputs);
        let sampled = self.model.sample(&observation, noise)?;
        let (horizon, dim) = (self.model.horizon(), self.model.action_dim());
        let values: Vec<f32> = sampled.into_data().convert::<f32>().to_vec().expect("f32 actions");
        Ok(values
            .chunks(horizon * dim)
            .map(|chunk| {
                chunk
                    .chunks(dim)
                    .map(|a| {
                        let mut action = a.to_vec();
                        if let Some(n) = &self.normalization {
                            n.denormalize_action(&mut action);
                        }
                        action
                    })
                    .collect()
            })
            .collect())
    }
}

/// Bytes of one RGB frame of `[height, width]`.
fn pixels([height, width]: [usize; 2]) -> usize {
    height * width * 3
}

/// Whether `dir` holds a π0 checkpoint (openpi, lerobot, transformers names) rather than spear's.
fn is_pi0(dir: &Path) -> Result<bool, PolicyError> {
    let checkpoint = Checkpoint::open(dir)?;
    Ok(Layout::detect(checkpoint.names()).is_some_and(|l| l.is_policy()))
}
