//! The sequential, deterministic half of the loader: each dataset's episode order, the choice of
//! the next dataset by its share of frames, the step-shuffle buffer bounded by bytes, and the
//! [`LoaderState`] that resumes it exactly.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use rand::{Rng, SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{Holdout, LoaderConfig, LoaderError};
use crate::oxe::{DatasetSpec, StandardEpisode, standardize};
use crate::resample::ChunkConfig;
use crate::rlds::{EpisodeSource, RldsDataset, RldsError};
use crate::tfrecord::{read_record_at, record_offsets};

/// A dataset opened for sampling.
pub(super) struct Source {
    pub(super) spec: DatasetSpec,
    dataset: RldsDataset,
    split: usize,
    pub(super) weight: f64,
    /// First global episode index of each shard.
    shard_starts: Vec<u64>,
    /// The episodes this loader reads (all, or one side of the holdout), ascending.
    selected: Vec<u64>,
    /// Record offsets of each shard, read on first use.
    offsets: HashMap<usize, Vec<u64>>,
}

impl Source {
    /// A dataset's `split`, reading the episodes `holdout` leaves to this loader.
    pub(super) fn new(
        spec: DatasetSpec,
        dataset: RldsDataset,
        split: usize,
        weight: f64,
        holdout: &Holdout,
    ) -> Self {
        let mut shard_starts = Vec::new();
        let mut episodes = 0;
        for shard in &dataset.splits[split].shards {
            shard_starts.push(episodes);
            episodes += shard.episodes;
        }
        let selected = holdout.select(spec.name, episodes);
        Self { spec, dataset, split, weight, shard_starts, selected, offsets: HashMap::new() }
    }

    /// How many episodes this loader reads.
    pub(super) fn episodes(&self) -> u64 {
        self.selected.len() as u64
    }

    fn read(&mut self, episode: u64) -> Result<StandardEpisode, RldsError> {
        let shard = self.shard_starts.partition_point(|&s| s <= episode) - 1;
        let record = episode - self.shard_starts[shard];
        let path = self.dataset.splits[self.split].shards[shard].path.clone();
        let offsets = match self.offsets.entry(shard) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(record_offsets(&path)?),
        };
        let offset = *offsets.get(record as usize).ok_or_else(|| RldsError::Info {
            path: path.clone(),
            problem: format!("holds {} records, but dataset_info.json says more", offsets.len()),
        })?;
        let bytes = read_record_at(&path, offset, record)?;
        // Only the fields the registry reads are decoded: other cameras, embeddings etc. are skipped.
        let source = EpisodeSource { file: path, record, offset };
        let episode = self.dataset.decode_only(&bytes, source, &self.spec.fields_read())?;
        let mut standard = standardize(&self.spec, episode)?;
        // Only the cameras are read after this: free the rest.
        let cameras = [Some(self.spec.external), self.spec.wrist];
        standard.episode.steps.retain(|key, _| cameras.contains(&Some(key.as_str())));
        Ok(standard)
    }
}

/// Where each dataset is in its episode order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// Completed passes over the dataset.
    pub epoch: u64,
    /// Position in this epoch's permutation.
    pub position: u64,
    /// Frames taken from this dataset so far.
    pub frames: u64,
    /// Episodes skipped (unreadable, or without instruction when those are dropped).
    pub skipped: u64,
    /// Episodes used.
    pub usable: u64,
    /// Episodes skipped since the last usable one (twice the episode count drops the dataset).
    pub failed_in_a_row: u64,
    /// Frames skipped at batch time because an image would not decode.
    pub bad_frames: u64,
}

/// Everything needed to continue a loader's stream exactly: the random generator, each dataset's
/// cursor and the shuffle buffer's contents (by dataset, episode and frame).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoaderState {
    /// The generator, mid-stream.
    pub rng: ChaCha8Rng,
    /// One per dataset of the mixture, in its order.
    pub cursors: Vec<Cursor>,
    /// The buffer's frames, in order.
    pub buffer: Vec<BufferedFrame>,
    /// The id the next episode read into the buffer gets.
    pub next_insertion: u64,
    /// Batches produced.
    pub batches: u64,
    /// Each dataset's name and episode count when the state was taken (checked on resume).
    pub datasets: Vec<(String, u64)>,
}

/// A frame in the shuffle buffer, as the loader state records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BufferedFrame {
    /// Index of the dataset in the mixture.
    pub dataset: u32,
    /// Episode index in its split.
    pub episode: u64,
    /// Frame in the episode.
    pub frame: u32,
    /// Which read of the episode (frames of one read share its memory).
    pub insertion: u64,
}

/// A buffered frame.
pub(super) struct Slot {
    pub(super) dataset: u32,
    pub(super) episode: u64,
    pub(super) frame: u32,
    pub(super) data: Arc<StandardEpisode>,
    /// Which read of the episode it belongs to: its bytes stay charged until the last frame of
    /// that read leaves the buffer, since the episode stays in memory until then.
    insertion: u64,
}

/// The sequential, deterministic half of the loader: which frames make each batch.
pub(super) struct Sampler {
    pub(super) sources: Vec<Source>,
    pub(super) config: LoaderConfig,
    pub(super) rng: ChaCha8Rng,
    pub(super) cursors: Vec<Cursor>,
    buffer: Vec<Slot>,
    /// Per read episode in the buffer: its bytes and its frames still buffered.
    held: HashMap<u64, (usize, usize)>,
    /// Bytes of the episodes held.
    bytes: usize,
    next_insertion: u64,
    pub(super) batches: u64,
    /// Each dataset's episode order for its current epoch.
    orders: Vec<Option<(u64, Vec<u64>)>>,
}

/// Bytes an episode holds in memory (encoded images, arrays), for the buffer's cap.
fn episode_bytes(episode: &StandardEpisode) -> usize {
    use crate::rlds::Values;
    let columns = episode.episode.steps.values().chain(episode.episode.metadata.values());
    columns
        .map(|c| match &c.values {
            Values::Bytes(v) => v.iter().map(Vec::len).sum(),
            Values::F32(v) => v.len() * 4,
            Values::F64(v) => v.len() * 8,
            Values::Int(v) => v.len() * 8,
            Values::Bool(v) => v.len(),
        })
        .sum()
}

impl Sampler {
    /// A sampler at the start of its stream.
    pub(super) fn new(sources: Vec<Source>, config: LoaderConfig) -> Self {
        let n = sources.len();
        let cursor = Cursor {
            epoch: 0,
            position: 0,
            frames: 0,
            skipped: 0,
            usable: 0,
            failed_in_a_row: 0,
            bad_frames: 0,
        };
        Self {
            sources,
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            cursors: vec![cursor; n],
            buffer: Vec::new(),
            held: HashMap::new(),
            bytes: 0,
            next_insertion: 0,
            batches: 0,
            orders: vec![None; n],
            config,
        }
    }

    /// Continues from `state` (taken from a sampler of the same mixture and settings): the
    /// buffered episodes are read again and the buffer, generator and cursors restored.
    pub(super) fn restore(&mut self, state: LoaderState) -> Result<(), LoaderError> {
        let fail = |problem: String| LoaderError::Config { path: PathBuf::from("loader state"), problem };
        let now: Vec<(String, u64)> =
            self.sources.iter().map(|s| (s.spec.name.to_string(), s.episodes())).collect();
        if state.datasets != now || state.cursors.len() != now.len() {
            return Err(fail(format!("taken on datasets {:?}, but the mixture has {now:?}", state.datasets)));
        }
        for (c, (name, episodes)) in state.cursors.iter().zip(&now) {
            if c.position >= (*episodes).max(1) {
                return Err(fail(format!("{name}: position {} of {episodes} episodes", c.position)));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for f in &state.buffer {
            if f.dataset as usize >= now.len()
                || self.sources[f.dataset as usize].selected.binary_search(&f.episode).is_err()
                || !seen.insert((f.insertion, f.frame))
            {
                return Err(fail(format!("buffer entry {f:?} does not fit the mixture")));
            }
        }
        // One read per insertion, frames in buffer order: the same memory accounting as before.
        let mut reads: Vec<(u64, u32, u64, Vec<u32>)> = Vec::new();
        let mut index: HashMap<u64, usize> = HashMap::new();
        let mut order = Vec::with_capacity(state.buffer.len());
        for f in &state.buffer {
            let i = *index.entry(f.insertion).or_insert_with(|| {
                reads.push((f.insertion, f.dataset, f.episode, Vec::new()));
                reads.len() - 1
            });
            reads[i].3.push(f.frame);
            order.push(f);
        }
        let mut episodes: HashMap<(u32, u64), Arc<StandardEpisode>> = HashMap::new();
        for (insertion, d, e, frames) in &reads {
            let data = match episodes.entry((*d, *e)) {
                std::collections::hash_map::Entry::Occupied(o) => o.get().clone(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(Arc::new(self.sources[*d as usize].read(*e)?)).clone()
                }
            };
            if let Some(f) = frames.iter().find(|&&f| f as usize >= data.len()) {
                return Err(fail(format!(
                    "frame {f} of episode {e} of {}, which has {}",
                    now[*d as usize].0,
                    data.len()
                )));
            }
            self.insert(*d, *e, data, frames, *insertion);
        }
        // `insert` appended read by read; restore the recorded buffer order exactly.
        let mut slots: HashMap<(u64, u32), Slot> =
            self.buffer.drain(..).map(|slot| ((slot.insertion, slot.frame), slot)).collect();
        self.buffer =
            order.iter().map(|f| slots.remove(&(f.insertion, f.frame)).expect("inserted above")).collect();
        self.next_insertion = state.next_insertion;
        (self.rng, self.cursors, self.batches) = (state.rng, state.cursors, state.batches);
        Ok(())
    }

    /// The episode order of `dataset` in `epoch`: a permutation seeded by (seed, dataset, epoch).
    fn order(&mut self, dataset: usize, epoch: u64) -> &[u64] {
        if self.orders[dataset].as_ref().is_none_or(|(e, _)| *e != epoch) {
            let mut order: Vec<u64> = self.sources[dataset].selected.clone();
            let seed = self.config.seed
                ^ (dataset as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                ^ epoch.rotate_left(32);
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
            self.orders[dataset] = Some((epoch, order));
        }
        &self.orders[dataset].as_ref().expect("just set").1
    }

    /// The dataset furthest below its share of the frames read so far.
    fn next_dataset(&self) -> Option<usize> {
        let total: u64 = self.cursors.iter().map(|c| c.frames).sum();
        let weights: f64 = self.sources.iter().filter(|s| s.episodes() > 0).map(|s| s.weight).sum();
        (0..self.sources.len())
            .filter(|&d| {
                let s = &self.sources[d];
                s.episodes() > 0 && s.weight > 0.0 && self.cursors[d].failed_in_a_row < 2 * s.episodes()
            })
            .max_by(|&a, &b| {
                let deficit = |d: usize| {
                    self.sources[d].weight / weights * total as f64 - self.cursors[d].frames as f64
                };
                deficit(a).total_cmp(&deficit(b)).then(b.cmp(&a))
            })
    }

    fn insert(
        &mut self,
        dataset: u32,
        episode: u64,
        data: Arc<StandardEpisode>,
        frames: &[u32],
        insertion: u64,
    ) {
        // The frames' own bookkeeping counts too, so that no episode is free.
        let bytes = episode_bytes(&data) + frames.len() * std::mem::size_of::<Slot>();
        for &frame in frames {
            self.buffer.push(Slot { dataset, episode, frame, data: data.clone(), insertion });
        }
        self.held.insert(insertion, (bytes, frames.len()));
        self.bytes += bytes;
        self.next_insertion = self.next_insertion.max(insertion + 1);
    }

    /// Reads the next usable episode into the buffer.
    fn fill_one(&mut self) -> Result<(), LoaderError> {
        loop {
            let Some(d) = self.next_dataset() else {
                let skipped: Vec<String> = self
                    .sources
                    .iter()
                    .zip(&self.cursors)
                    .map(|(s, c)| format!("{}: {} skipped", s.spec.name, c.skipped))
                    .collect();
                return Err(LoaderError::Empty(skipped.join(", ")));
            };
            let (epoch, position) = (self.cursors[d].epoch, self.cursors[d].position);
            let episode = self.order(d, epoch)[position as usize];
            let cursor = &mut self.cursors[d];
            cursor.position += 1;
            if cursor.position == self.sources[d].episodes() {
                (cursor.epoch, cursor.position) = (cursor.epoch + 1, 0);
            }
            let config = ChunkConfig { horizon: self.config.horizon, rate_hz: self.config.rate_hz };
            let problem = match self.sources[d].read(episode) {
                Ok(data) if self.config.drop_empty_instructions && data.instruction.is_empty() => None,
                Ok(data) => {
                    // Frames whose first action is padding (the episode's last fifth of a second)
                    // have nothing to learn: left out, so that every sample has a real target.
                    let frames: Vec<u32> = (0..data.len())
                        .filter(|&f| data.trajectory.first_action_real(f, &config))
                        .map(|f| f as u32)
                        .collect();
                    if !frames.is_empty() {
                        let cursor = &mut self.cursors[d];
                        (cursor.frames, cursor.usable, cursor.failed_in_a_row) =
                            (cursor.frames + frames.len() as u64, cursor.usable + 1, 0);
                        self.insert(d as u32, episode, Arc::new(data), &frames, self.next_insertion);
                        return Ok(());
                    }
                    None
                }
                Err(e) if self.config.skip_bad_episodes => Some(e),
                Err(e) => return Err(e.into()),
            };
            if let Some(e) = problem {
                tracing_skip(&self.sources[d].spec, &e.to_string());
            }
            // Skipped episodes cost no frames, so the dataset is asked again until it delivers its
            // share of usable frames; one that yields nothing in twice its episode count (a run
            // that must hold a whole epoch) has no usable episode and is dropped.
            let cursor = &mut self.cursors[d];
            cursor.skipped += 1;
            cursor.failed_in_a_row += 1;
        }
    }

    /// Draws `n` frames from the buffer, refilling it up to its cap first.
    pub(super) fn draw(&mut self, n: usize) -> Result<Vec<Slot>, LoaderError> {
        let cap = self.config.shuffle_buffer_mb.saturating_mul(1 << 20);
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            while self.buffer.is_empty() || self.bytes < cap {
                self.fill_one()?;
            }
            let slot = self.buffer.swap_remove(self.rng.random_range(0..self.buffer.len()));
            let held = self.held.get_mut(&slot.insertion).expect("buffered frames are held");
            held.1 -= 1;
            if held.1 == 0 {
                self.bytes -= held.0;
                self.held.remove(&slot.insertion);
            }
            out.push(slot);
        }
        Ok(out)
    }

    pub(super) fn state(&self) -> LoaderState {
        LoaderState {
            rng: self.rng.clone(),
            cursors: self.cursors.clone(),
            buffer: self
                .buffer
                .iter()
                .map(|s| BufferedFrame {
                    dataset: s.dataset,
                    episode: s.episode,
                    frame: s.frame,
                    insertion: s.insertion,
                })
                .collect(),
            next_insertion: self.next_insertion,
            datasets: self.sources.iter().map(|s| (s.spec.name.to_string(), s.episodes())).collect(),
            batches: self.batches,
        }
    }
}

pub(super) fn tracing_skip(spec: &DatasetSpec, error: &str) {
    eprintln!("spear-data: skipping in {}: {error}", spec.name);
}
