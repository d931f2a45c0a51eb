//! Training batches from a weighted mixture of RLDS datasets: deterministic for a seed, bounded in
//! memory, decoded in parallel, prefetched, and resumable.
//!
//! * **Mixture** ([`MixtureConfig`], TOML): datasets with weights (the paper's Table 4 in
//!   `configs/data/oxe_mixture.toml`) and the loader's settings.
//! * **Sampling**: each dataset's episodes are visited in a fresh seeded permutation per epoch
//!   (episode-level shuffling, by random access through each shard's record offsets). The next
//!   episode always comes from the dataset furthest below its share of the frames read so far
//!   (`weight × total − frames`), so each dataset's share of training frames follows its weight
//!   exactly, whatever its episode lengths (skipped episodes cost nothing; a dataset with no usable
//!   episode is dropped). Every frame with a real first action enters a step-shuffle buffer
//!   bounded by the encoded bytes it holds (`shuffle_buffer_mb`); samples are drawn from it
//!   uniformly at random.
//! * **Batches** ([`Batch`]): plain arrays — images resized without distortion (280×210 external,
//!   112×112 wrist, black when missing), state, 5 Hz action chunks, masks, instructions — decoded by
//!   a rayon pool and prefetched by a producer thread.
//! * **Resuming**: every batch carries the [`LoaderState`] after it; [`Loader::resume`] continues
//!   the exact same stream from it.

mod mixture;
mod normalization;
mod sampler;
mod statistics;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

pub use mixture::{Holdout, LoaderConfig, LoaderError, MixtureConfig, MixtureEntry, Shard};
use mixture::{open_dataset, resolve_spec};
pub use normalization::{Normalization, NormalizationConfig, NormalizerKind, RotationNormalizerKind};
pub use sampler::{BufferedFrame, Cursor, LoaderState};
use sampler::{Sampler, Slot, Source, tracing_skip};
pub use statistics::{DatasetCount, MixtureStats, mixture_statistics};

use crate::images::{self, Image};
use crate::oxe::{Camera, STATE_DIM};
use crate::resample::{ACTION_DIM, ChunkConfig};
use crate::rlds::RldsError;

/// One training batch, as plain row-major arrays.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Samples.
    pub size: usize,
    /// External images, `size × height × width × 3` (the configured external size).
    pub external: Vec<u8>,
    /// Wrist images, `size × height × width × 3`; black where `wrist_present` is false.
    pub wrist: Vec<u8>,
    /// Whether each sample's dataset has a wrist camera.
    pub wrist_present: Vec<bool>,
    /// Instructions.
    pub instructions: Vec<String>,
    /// States, `size × 8` (position normalised when the loader has a state normaliser).
    pub state: Vec<f32>,
    /// Action chunks, `size × horizon × 8` (translation normalised when it has an action normaliser).
    pub actions: Vec<f32>,
    /// `size × horizon`: real actions (false: padding past the episode's end).
    pub mask: Vec<bool>,
    /// Index of each sample's dataset in the mixture.
    pub dataset: Vec<u32>,
    /// Each sample's `(episode, frame)` in its dataset.
    pub source: Vec<(u64, u32)>,
    /// The loader's state after this batch: resume from it to continue after this batch.
    pub state_after: LoaderState,
    /// Whether the samples were decoded. A loader with a [`Shard`] leaves the other ranks'
    /// batches undecoded: their `dataset`, `source` and `state_after` are filled, their arrays empty.
    pub decoded: bool,
}

/// A sample decoded.
#[derive(Clone)]
struct Decoded {
    wrist_present: bool,
    state: [f32; STATE_DIM],
    actions: Vec<f32>,
    mask: Vec<bool>,
    instruction: String,
}

/// The decoding half: images, chunks, normalisation.
struct Decoder {
    config: LoaderConfig,
    normalization: Normalization,
}

impl Decoder {
    /// Decodes one sample, its images straight into their slots of the batch (`external`,
    /// `wrist`; the wrist slot stays black when the dataset has no wrist camera).
    fn decode(
        &self,
        slot: &Slot,
        seed: u64,
        external: &mut [u8],
        wrist: &mut [u8],
    ) -> Result<Decoded, RldsError> {
        let c = &self.config;
        let episode = &slot.data;
        let frame = slot.frame as usize;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut resize = |image: &Image, [w, h]: [usize; 2], out: &mut [u8]| {
            if c.augment.is_active() {
                out.copy_from_slice(&c.augment.apply(image, w, h, c.fit, &mut rng).pixels);
            } else {
                images::resize_into(image, out, w, h, c.fit);
            }
        };
        let image = episode.image(Camera::External, frame)?.expect("every entry has an external camera");
        resize(&image, c.external_size, external);
        let wrist_image = episode.image(Camera::Wrist, frame)?;
        if let Some(image) = &wrist_image {
            resize(image, c.wrist_size, wrist);
        }
        let mut state = episode.state(frame);
        let chunk = episode.chunk(frame, &ChunkConfig { horizon: c.horizon, rate_hz: c.rate_hz });
        let mut actions = chunk.actions;
        self.normalization.normalize_state(&mut state);
        for action in actions.chunks_exact_mut(ACTION_DIM) {
            self.normalization.normalize_action(action);
        }
        Ok(Decoded {
            wrist_present: wrist_image.is_some(),
            state,
            actions,
            mask: chunk.mask,
            instruction: episode.instruction.clone(),
        })
    }
}

/// The loader: a mixture opened and ready to produce batches.
pub struct Loader {
    sampler: Sampler,
    decoder: Arc<Decoder>,
    pool: rayon::ThreadPool,
}

impl Loader {
    /// Opens every dataset of `mixture` (reads `dataset_info.json` and `features.json`; shard
    /// offsets are read on first use).
    pub fn open(mixture: &MixtureConfig) -> Result<Self, LoaderError> {
        let fail = |problem: String| mixture.error(problem);
        mixture.validate().map_err(fail)?;
        let mut sources = Vec::new();
        for entry in &mixture.datasets {
            let spec = resolve_spec(&entry.name).map_err(fail)?;
            let dir = mixture.dataset_dir(entry).map_err(fail)?;
            let dataset = open_dataset(&spec, &dir)?;
            let split = dataset
                .splits
                .iter()
                .position(|s| s.name == mixture.split)
                .ok_or_else(|| dataset.split(&mixture.split).expect_err("absent"))?;
            sources.push(Source::new(spec, dataset, split, entry.weight, &mixture.loader.holdout));
        }
        if sources.iter().all(|s| s.episodes() == 0 || s.weight == 0.0) {
            return Err(LoaderError::Empty("no dataset with a positive weight has an episode".into()));
        }
        let config = mixture.loader.clone();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.workers)
            .thread_name(|i| format!("spear-data-{i}"))
            .build()
            .map_err(|e| fail(e.to_string()))?;
        let sampler = Sampler::new(sources, config.clone());
        let normalization = config.normalization.build().map_err(fail)?;
        Self { sampler, decoder: Arc::new(Decoder { config, normalization: Normalization::default() }), pool }
            .with_normalization(normalization)
    }

    /// Opens `mixture` and continues from `state` (taken from a batch of a loader of the same
    /// mixture and settings).
    pub fn resume(mixture: &MixtureConfig, state: LoaderState) -> Result<Self, LoaderError> {
        let mut loader = Self::open(mixture)?;
        loader.sampler.restore(state)?;
        Ok(loader)
    }

    /// Sets the normalisers (each over 3 dimensions), replacing those of `[loader.normalization]`.
    pub fn with_normalization(mut self, normalization: Normalization) -> Result<Self, LoaderError> {
        normalization
            .validate()
            .map_err(|problem| LoaderError::Config { path: PathBuf::from("normalization"), problem })?;
        self.decoder = Arc::new(Decoder { config: self.decoder.config.clone(), normalization });
        Ok(self)
    }

    /// The mixture's datasets, in order: (RLDS name, episodes it reads: the split's, less or only the held-out ones).
    pub fn datasets(&self) -> Vec<(&'static str, u64)> {
        self.sampler.sources.iter().map(|s| (s.spec.name, s.episodes())).collect()
    }

    /// The state before the next batch.
    pub fn state(&self) -> LoaderState {
        self.sampler.state()
    }

    /// Produces the next batch on this thread (decoding on the pool; with a [`Shard`], only
    /// this rank's batches).
    ///
    /// A sample whose image will not decode (with `skip_bad_episodes`) is replaced by the next
    /// good sample of the same batch, so that the stream never depends on what decoded: a rank
    /// that leaves a batch undecoded stays where the rank decoding it is.
    pub fn next_batch(&mut self) -> Result<Batch, LoaderError> {
        let size = self.sampler.config.batch_size;
        let slots = self.sampler.draw(size)?;
        // One seed per sample from the stream, so augmentation is deterministic and parallel.
        let seeds: Vec<u64> = (0..size).map(|_| self.sampler.rng.random()).collect();
        let number = self.sampler.batches;
        self.sampler.batches += 1;
        let mut batch = Batch {
            size,
            external: Vec::new(),
            wrist: Vec::new(),
            wrist_present: Vec::with_capacity(size),
            instructions: Vec::with_capacity(size),
            state: Vec::with_capacity(size * STATE_DIM),
            actions: Vec::new(),
            mask: Vec::new(),
            dataset: slots.iter().map(|s| s.dataset).collect(),
            source: slots.iter().map(|s| (s.episode, s.frame)).collect(),
            state_after: self.sampler.state(),
            decoded: false,
        };
        if self.decoder.config.shard.is_some_and(|s| !s.decodes(number)) {
            return Ok(batch);
        }
        let decoder = self.decoder.clone();
        let c = &self.decoder.config;
        let external_len = c.external_size[0] * c.external_size[1] * 3;
        let wrist_len = c.wrist_size[0] * c.wrist_size[1] * 3;
        // Zeroed (lazily, by the allocator) so that absent wrist cameras are black.
        let mut external = vec![0u8; size * external_len];
        let mut wrist = vec![0u8; size * wrist_len];
        let mut decoded: Vec<Result<Decoded, RldsError>> = self.pool.install(|| {
            slots
                .par_iter()
                .zip(&seeds)
                .zip(external.par_chunks_mut(external_len))
                .zip(wrist.par_chunks_mut(wrist_len))
                .map(|(((slot, &seed), e), w)| decoder.decode(slot, seed, e, w))
                .collect()
        });
        let mut replaced = false;
        for i in 0..size {
            let Err(e) = &decoded[i] else { continue };
            replaced = true;
            if !self.sampler.config.skip_bad_episodes {
                return Err(decoded.swap_remove(i).err().expect("an error").into());
            }
            tracing_skip(&self.sampler.sources[slots[i].dataset as usize].spec, &e.to_string());
            self.sampler.cursors[slots[i].dataset as usize].bad_frames += 1;
            let Some((good, copy)) = (1..size)
                .map(|k| (i + k) % size)
                .find_map(|j| decoded[j].as_ref().ok().map(|d| (j, d.clone())))
            else {
                return Err(decoded.swap_remove(i).err().expect("an error").into());
            };
            external.copy_within(good * external_len..(good + 1) * external_len, i * external_len);
            wrist.copy_within(good * wrist_len..(good + 1) * wrist_len, i * wrist_len);
            decoded[i] = Ok(copy);
            (batch.dataset[i], batch.source[i]) = (batch.dataset[good], batch.source[good]);
        }
        if replaced {
            // The bad-frame counters moved.
            batch.state_after = self.sampler.state();
        }
        (batch.external, batch.wrist, batch.decoded) = (external, wrist, true);
        batch.actions.reserve(size * c.horizon * ACTION_DIM);
        batch.mask.reserve(size * c.horizon);
        for d in decoded {
            let d = d?;
            batch.wrist_present.push(d.wrist_present);
            batch.instructions.push(d.instruction);
            batch.state.extend(d.state);
            batch.actions.extend(d.actions);
            batch.mask.extend(d.mask);
        }
        Ok(batch)
    }

    /// Moves the loader to a producer thread that keeps `prefetch` batches ready.
    pub fn prefetch(mut self) -> Prefetch {
        let (tx, rx) = sync_channel(self.decoder.config.prefetch.max(1));
        let handle = std::thread::Builder::new()
            .name("spear-data-producer".into())
            .spawn(move || {
                loop {
                    let batch = self.next_batch();
                    let stop = batch.is_err();
                    if tx.send(batch).is_err() || stop {
                        return;
                    }
                }
            })
            .expect("spawn the producer thread");
        Prefetch { rx, _handle: handle }
    }
}

/// Batches produced ahead on a background thread; an iterator that ends after the first error.
pub struct Prefetch {
    rx: Receiver<Result<Batch, LoaderError>>,
    _handle: std::thread::JoinHandle<()>,
}

impl Iterator for Prefetch {
    type Item = Result<Batch, LoaderError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.rx.recv().ok()
    }
}
