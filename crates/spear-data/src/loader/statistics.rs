//! The statistics pass (`spear data stats`): one streaming read of a whole mixture, whose result
//! the normalisers are built from.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{LoaderError, MixtureConfig, open_dataset, resolve_spec};
use crate::oxe::standardize;
use crate::resample::ChunkConfig;
use crate::rlds::RldsError;

/// Statistics of one mixture, saved beside a run (`spear data stats`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MixtureStats {
    /// Of the 5 Hz action translations (the first action of every frame's chunk, real ones only).
    pub action_translation: crate::stats::Stats,
    /// Of the state positions.
    pub state_position: crate::stats::Stats,
    /// Of the rotation angles (radians) of the same actions (absent in files written before it
    /// existed).
    #[serde(default)]
    pub action_rotation_angle: Option<crate::stats::Stats>,
    /// Per dataset, in the mixture's order.
    pub datasets: Vec<DatasetCount>,
}

/// What a statistics pass read of one dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetCount {
    /// RLDS name.
    pub name: String,
    /// Episodes used.
    pub episodes: u64,
    /// Frames used.
    pub frames: u64,
    /// Episodes skipped (unreadable or failing standardisation).
    pub skipped: u64,
    /// The first skip reasons.
    pub skip_reasons: Vec<String>,
}

/// One streaming pass over every episode of every dataset of `mixture` (shards in parallel on
/// `workers` threads): per-dimension statistics of action translations and state positions, and
/// the distribution of action rotation angles. Held-out episodes (`loader.holdout`) are counted
/// too: the statistics describe the data, and a run's normalisers do not change with its split.
/// `progress(shards done, shards in all, frames so far)` is called after each shard.
pub fn mixture_statistics(
    mixture: &MixtureConfig,
    progress: &(dyn Fn(usize, usize, u64) + Sync),
) -> Result<MixtureStats, LoaderError> {
    use crate::stats::RunningStats;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    let fail = |problem: String| mixture.error(problem);
    mixture.validate().map_err(fail)?;
    let mut jobs = Vec::new();
    let mut datasets = Vec::new();
    for (d, entry) in mixture.datasets.iter().enumerate() {
        let spec = resolve_spec(&entry.name).map_err(fail)?;
        let dataset = open_dataset(&spec, &mixture.dataset_dir(entry).map_err(fail)?)?;
        let shards = dataset.split(&mixture.split)?.shards.clone();
        jobs.extend(shards.into_iter().map(|shard| (d, shard)));
        datasets.push((spec, dataset));
    }
    let chunk = ChunkConfig { horizon: 1, rate_hz: mixture.loader.rate_hz };
    let (done, frames_seen) = (AtomicUsize::new(0), AtomicU64::new(0));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(mixture.loader.workers)
        .build()
        .map_err(|e| fail(e.to_string()))?;
    struct Part {
        actions: RunningStats,
        angles: RunningStats,
        states: RunningStats,
        counts: Vec<DatasetCount>,
    }
    let empty = || Part {
        actions: RunningStats::new(3),
        angles: RunningStats::new(1),
        states: RunningStats::new(3),
        counts: datasets
            .iter()
            .map(|(s, _)| DatasetCount {
                name: s.name.into(),
                episodes: 0,
                frames: 0,
                skipped: 0,
                skip_reasons: vec![],
            })
            .collect(),
    };
    let skip = mixture.loader.skip_bad_episodes;
    let merge = |mut total: Part, part: Part| {
        total.actions.merge(&part.actions).expect("3 dimensions");
        total.angles.merge(&part.angles).expect("1 dimension");
        total.states.merge(&part.states).expect("3 dimensions");
        for (t, p) in total.counts.iter_mut().zip(part.counts) {
            t.episodes += p.episodes;
            t.frames += p.frames;
            t.skipped += p.skipped;
            t.skip_reasons.extend(p.skip_reasons);
            t.skip_reasons.truncate(5);
        }
        total
    };
    // Shards run in at most 64 fixed groups, each folded in order, and the groups are merged in
    // order: the histograms' re-binning makes merging order-sensitive, and this order does not
    // depend on the thread count or on scheduling, so the statistics are reproducible.
    let run = |(d, shard): &(usize, crate::rlds::Shard), part: &mut Part| -> Result<(), LoaderError> {
        let (spec, dataset) = &datasets[*d];
        let count = &mut part.counts[*d];
        let before = count.frames;
        let on_corrupt =
            if skip { crate::tfrecord::OnCorrupt::Skip } else { crate::tfrecord::OnCorrupt::Fail };
        let mut episodes = dataset.shard_episodes(shard, on_corrupt)?;
        for episode in episodes.by_ref() {
            let standard = episode.and_then(|e| standardize(spec, e));
            let standard = match standard {
                Ok(s) => s,
                Err(e) if skip => {
                    count.skipped += 1;
                    if count.skip_reasons.len() < 5 {
                        count.skip_reasons.push(e.to_string());
                    }
                    if matches!(e, RldsError::Record(_)) {
                        break;
                    }
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            count.episodes += 1;
            count.frames += standard.len() as u64;
            for frame in 0..standard.len() {
                let state = standard.state(frame);
                part.states
                    .push(&state[..3].iter().map(|&x| f64::from(x)).collect::<Vec<_>>())
                    .expect("finite");
                let c = standard.chunk(frame, &chunk);
                if c.mask[0] {
                    part.actions
                        .push(&c.actions[..3].iter().map(|&x| f64::from(x)).collect::<Vec<_>>())
                        .expect("finite");
                    let q: [f32; 4] = c.actions[3..7].try_into().expect("8 values");
                    part.angles.push(&[crate::stats::rotation_angle(q)]).expect("finite");
                }
            }
        }
        count.skipped += episodes.skipped().len() as u64;
        let added = count.frames - before;
        let frames = frames_seen.fetch_add(added, Ordering::Relaxed) + added;
        progress(done.fetch_add(1, Ordering::Relaxed) + 1, jobs.len(), frames);
        Ok(())
    };
    let group = jobs.len().div_ceil(64).max(1);
    let parts: Vec<Part> = pool.install(|| {
        jobs.par_chunks(group)
            .map(|jobs| {
                let mut part = empty();
                for job in jobs {
                    run(job, &mut part)?;
                }
                Ok::<_, LoaderError>(part)
            })
            .collect::<Result<_, _>>()
    })?;
    let total = parts.into_iter().fold(empty(), merge);
    Ok(MixtureStats {
        action_translation: total.actions.summary(),
        state_position: total.states.summary(),
        action_rotation_angle: Some(total.angles.summary()),
        datasets: total.counts,
    })
}
