//! Closed-loop evaluation on held-out scenes, and the baselines it is compared with: the
//! demonstrator as a policy and the dataset's mean chunk.

use std::path::Path;

use nalgebra::{UnitQuaternion, Vector3};
use rayon::prelude::*;
use serde::Serialize;
use spear_data::oxe::standardize;
use spear_data::resample::{ACTION_DIM, ChunkConfig};
use spear_data::rlds::RldsDataset;
use spear_data::tfrecord::OnCorrupt;
use spear_geometry::pose::Pose;

use super::demonstrator::{expert_step, pose_row, state_pose};
use super::scene::rotation_angle;
use super::{
    DATASET_NAME, HELD_OUT, ReachConfig, ReachError, ReachObservation, SPEC, SUCCESS_ANGLE_DEG,
    SUCCESS_DISTANCE_M, Scene,
};

/// An action chunk: `[x, y, z, qw, qx, qy, qz, gripper]` per action (translation in metres in the
/// base frame, rotation delta in the end-effector frame, gripper ≥ 0.5 closes).
pub type Chunk = Vec<[f32; ACTION_DIM]>;

/// One held-out scene's rollout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReachOutcome {
    /// Distance from the start to the goal, metres.
    pub initial_position_error_m: f64,
    /// Rotation from the start to the goal, degrees.
    pub initial_rotation_error_deg: f64,
    /// Final distance to the goal, metres.
    pub position_error_m: f64,
    /// Final rotation to the goal (geodesic angle, tilt included), degrees.
    pub rotation_error_deg: f64,
    /// Whether the policy closed the gripper (which ends the rollout).
    pub closed: bool,
    /// Chunks executed.
    pub chunks: usize,
}

impl ReachOutcome {
    /// Within [`SUCCESS_DISTANCE_M`] of the goal.
    pub fn reached(&self) -> bool {
        self.position_error_m <= SUCCESS_DISTANCE_M
    }

    /// Reached and within [`SUCCESS_ANGLE_DEG`] of the goal's orientation.
    pub fn succeeded(&self) -> bool {
        self.reached() && self.rotation_error_deg <= SUCCESS_ANGLE_DEG
    }
}

/// A policy's closed-loop results over the held-out scenes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReachReport {
    /// Fraction of scenes that succeeded (position ≤ 2 cm and rotation ≤ 10°).
    pub success_rate: f64,
    /// Fraction of scenes whose final position is within 2 cm.
    pub reach_rate: f64,
    /// Fraction of scenes where the policy closed the gripper.
    pub closed_rate: f64,
    /// Mean final position error, centimetres.
    pub mean_position_error_cm: f64,
    /// Mean final rotation error, degrees.
    pub mean_rotation_error_deg: f64,
    /// Each scene's rollout, in order.
    pub outcomes: Vec<ReachOutcome>,
}

impl ReachReport {
    /// The header of [`ReachReport::table_row`]'s Markdown table.
    pub const TABLE_HEADER: &str = "| policy | scenes | success | reach | closed | position error (cm) \
                                    | rotation error (°) |\n|---|---|---|---|---|---|---|";

    fn from_outcomes(outcomes: Vec<ReachOutcome>) -> Self {
        let n = outcomes.len() as f64;
        let rate = |f: fn(&ReachOutcome) -> bool| outcomes.iter().filter(|o| f(o)).count() as f64 / n;
        let mean = |f: fn(&ReachOutcome) -> f64| outcomes.iter().map(f).sum::<f64>() / n;
        Self {
            success_rate: rate(ReachOutcome::succeeded),
            reach_rate: rate(ReachOutcome::reached),
            closed_rate: rate(|o| o.closed),
            mean_position_error_cm: 100.0 * mean(|o| o.position_error_m),
            mean_rotation_error_deg: mean(|o| o.rotation_error_deg),
            outcomes,
        }
    }

    /// One Markdown table row for the policy called `policy`.
    pub fn table_row(&self, policy: &str) -> String {
        format!(
            "| {policy} | {} | {:.1}% | {:.1}% | {:.1}% | {:.2} | {:.1} |",
            self.outcomes.len(),
            100.0 * self.success_rate,
            100.0 * self.reach_rate,
            100.0 * self.closed_rate,
            self.mean_position_error_cm,
            self.mean_rotation_error_deg
        )
    }
}

/// The delta of an action, or why it cannot be executed.
fn action_delta(action: &[f32; ACTION_DIM]) -> Result<Pose, String> {
    if let Some(i) = action.iter().position(|v| !v.is_finite()) {
        return Err(format!("value {i} of an action is {}", action[i]));
    }
    let a = action.map(f64::from);
    let q = nalgebra::Quaternion::new(a[3], a[4], a[5], a[6]);
    let rotation = UnitQuaternion::try_new(q, 1e-6)
        .ok_or_else(|| format!("rotation quaternion {:?} has no direction", &a[3..7]))?;
    Ok(Pose::new(Vector3::new(a[0], a[1], a[2]), rotation))
}

/// Closed-loop rollouts of `policy` on `scenes` held-out scenes of `seed` (indices
/// [`HELD_OUT`]`..`, so never a training scene): observe every unfinished scene, ask the policy
/// for one chunk per observation (one call per round, batched over scenes), execute every action
/// of each chunk (`pose ← pose ∘ delta`, position clamped to the workspace, quaternion normalised;
/// an action whose gripper value is ≥ 0.5 closes the gripper after its motion and ends the
/// rollout), and repeat for at most `max_chunks` rounds. Errors when the policy returns the wrong
/// number of chunks, an empty chunk or a value that is not finite.
pub fn evaluate(
    config: &ReachConfig,
    seed: u64,
    scenes: usize,
    max_chunks: usize,
    mut policy: impl FnMut(&[ReachObservation]) -> Vec<Chunk>,
) -> Result<ReachReport, ReachError> {
    config.validate()?;
    if scenes == 0 {
        return Err(ReachError::Argument("evaluate: scenes must be at least 1".into()));
    }
    let scenes: Vec<Scene> =
        (0..scenes as u64).map(|i| Scene::sample(config, seed, HELD_OUT + i)).collect::<Result<_, _>>()?;
    let mut poses: Vec<Pose> = scenes.iter().map(|s| s.start).collect();
    let mut closed = vec![false; scenes.len()];
    let mut chunks = vec![0; scenes.len()];
    for _ in 0..max_chunks {
        let active: Vec<usize> = (0..scenes.len()).filter(|&i| !closed[i]).collect();
        if active.is_empty() {
            break;
        }
        let observations: Vec<ReachObservation> =
            active.par_iter().map(|&i| scenes[i].observe(config, &poses[i], 0.0)).collect();
        let answers = policy(&observations);
        if answers.len() != active.len() {
            return Err(ReachError::Policy {
                scene: active[0],
                problem: format!("{} chunks for {} observations", answers.len(), active.len()),
            });
        }
        for (&i, chunk) in active.iter().zip(&answers) {
            let fail = |problem: String| ReachError::Policy { scene: i, problem };
            if chunk.is_empty() {
                return Err(fail("an empty chunk".into()));
            }
            chunks[i] += 1;
            for action in chunk {
                let delta = action_delta(action).map_err(fail)?;
                let moved = poses[i].apply_delta(&delta);
                poses[i] = Pose::new(config.clamp(moved.translation), moved.rotation);
                if action[ACTION_DIM - 1] >= 0.5 {
                    closed[i] = true;
                    break;
                }
            }
        }
    }
    let outcomes = scenes
        .iter()
        .zip(&poses)
        .zip(closed.iter().zip(&chunks))
        .map(|((scene, pose), (&closed, &chunks))| {
            let target = scene.target_pose();
            let error = |p: &Pose| {
                (
                    (p.translation - target.translation).norm(),
                    rotation_angle(&p.rotation, &target.rotation).to_degrees(),
                )
            };
            let (initial_position_error_m, initial_rotation_error_deg) = error(&scene.start);
            let (position_error_m, rotation_error_deg) = error(pose);
            ReachOutcome {
                initial_position_error_m,
                initial_rotation_error_deg,
                position_error_m,
                rotation_error_deg,
                closed,
                chunks,
            }
        })
        .collect();
    Ok(ReachReport::from_outcomes(outcomes))
}

/// The demonstrator as a policy: from each observation's state, its next `horizon` moves toward
/// the (privileged) goal, as the dataset's 5 Hz chunks hold them; the close command once within
/// 1 cm and 5°. Shows that the task is solvable at the evaluation's tolerances.
pub fn expert_policy(
    config: &ReachConfig,
    horizon: usize,
) -> impl FnMut(&[ReachObservation]) -> Vec<Chunk> + use<> {
    let config = config.clone();
    move |observations| {
        observations
            .iter()
            .map(|o| {
                let mut pose = state_pose(&o.state);
                (0..horizon)
                    .map(|_| {
                        let (delta, close) = expert_step(&config, &pose, &o.target);
                        pose = pose.apply_delta(&delta);
                        pose_row(&delta, if close { 1.0 } else { 0.0 })
                    })
                    .collect()
            })
            .collect()
    }
}

/// A policy that answers every observation with `chunk` (e.g. [`mean_chunk`]: what a policy that
/// ignores its inputs would best do).
pub fn mean_action_policy(chunk: Chunk) -> impl FnMut(&[ReachObservation]) -> Vec<Chunk> {
    move |observations| vec![chunk.clone(); observations.len()]
}

/// The mean 5 Hz chunk of a written dataset's `split`, through the same path as training
/// (`standardize`, then `chunking` chunks of every frame whose first action is real): per action
/// slot, the mean translation, the normalised mean quaternion (all have `w ≥ 0` and lie near the
/// identity, so the mean is meaningful) and the mean gripper command over real actions (the
/// identity with gripper 0 where a slot has none).
pub fn mean_chunk(dataset_dir: &Path, split: &str, chunking: &ChunkConfig) -> Result<Chunk, ReachError> {
    let dataset = RldsDataset::open(dataset_dir)?;
    if dataset.name != DATASET_NAME {
        return Err(ReachError::Argument(format!(
            "{}: dataset `{}`, not {DATASET_NAME}",
            dataset_dir.display(),
            dataset.name
        )));
    }
    let mut sums = vec![[0f64; ACTION_DIM]; chunking.horizon];
    let mut counts = vec![0usize; chunking.horizon];
    for episode in dataset.episodes(split, OnCorrupt::Fail)? {
        let episode = standardize(&SPEC, episode?)?;
        for frame in (0..episode.len()).filter(|&j| episode.trajectory.first_action_real(j, chunking)) {
            let chunk = episode.chunk(frame, chunking);
            for (m, action) in
                chunk.actions.chunks_exact(ACTION_DIM).enumerate().filter(|(m, _)| chunk.mask[*m])
            {
                sums[m].iter_mut().zip(action).for_each(|(s, &a)| *s += f64::from(a));
                counts[m] += 1;
            }
        }
    }
    Ok(sums
        .iter()
        .zip(&counts)
        .map(|(sum, &count)| {
            let mean = sum.map(|s| s / count.max(1) as f64);
            let q = nalgebra::Quaternion::new(mean[3], mean[4], mean[5], mean[6]);
            let rotation = UnitQuaternion::try_new(q, 1e-9).unwrap_or_else(UnitQuaternion::identity);
            pose_row(&Pose::new(Vector3::new(mean[0], mean[1], mean[2]), rotation), mean[7])
        })
        .collect())
}
