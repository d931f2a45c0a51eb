//! The question–answer families of SPEAR-1's VLM pre-training (appendix A.1.1), several phrasings
//! each, and how an example's 1–4 pairs are drawn.
//!
//! Answers are [`Segment`]s: 3D values in the camera frame (metres for MoGe-2; they become 3D
//! tokens), 2D locations normalised to the image (PaliGemma's `<locNNNN>` tokens), and text;
//! each pair also carries its family name and the answer rendered as text. In questions about two
//! objects A is always named before B, and offsets are B − A.
//!
//! | family | question about | answer |
//! |---|---|---|
//! | `keypoints` | object A | closest, furthest and centre points: 9 values |
//! | `box` | object A | the 8 ordered corners: 24 values |
//! | `distance` | A and B | centre-to-centre distance, then its x, y, z components (B − A): 4 values |
//! | `box_distance` | A and B | the 8 corner-to-corner offsets (B − A), then the centre offset: 27 values |
//! | `backprojection` | object A | the 8 corners' pixels as `[y, x]` in [0, 1]; only when all 8 project inside the image |
//! | `closer` | A and B | chain of thought: each one's distance to the camera (its closest point), then which is closer; only when they differ by at least `min_gap` |

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use spear_data::vqa::{QaPair, Segment};

use crate::geometry::{ObjectGeometry, project};
use crate::moge::Intrinsics;
use crate::obb::{norm, sub};

/// A question family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// 3D keypoints of one object.
    Keypoints,
    /// 3D box of one object.
    Box,
    /// Object-to-object distance and its components.
    Distance,
    /// Object-to-object corner and centre offsets.
    BoxDistance,
    /// The box's corners in the image.
    Backprojection,
    /// Which of two objects is closer, reasoned through their distances.
    Closer,
}

impl Task {
    /// All families.
    pub const ALL: [Task; 6] =
        [Task::Keypoints, Task::Box, Task::Distance, Task::BoxDistance, Task::Backprojection, Task::Closer];

    /// Its name in the output and the manifest.
    pub fn name(self) -> &'static str {
        match self {
            Task::Keypoints => "keypoints",
            Task::Box => "box",
            Task::Distance => "distance",
            Task::BoxDistance => "box_distance",
            Task::Backprojection => "backprojection",
            Task::Closer => "closer",
        }
    }

    fn pairwise(self) -> bool {
        matches!(self, Task::Distance | Task::BoxDistance | Task::Closer)
    }

    /// The question phrasings (`{a}`, `{b}`: the objects' labels).
    pub fn phrasings(self) -> &'static [&'static str] {
        match self {
            Task::Keypoints => &[
                "What are the 3D coordinates of the closest, furthest and center points of the {a}?",
                "Output the closest, furthest and center 3D points of the {a} in the camera frame.",
                "Give the 3D keypoints of the {a}: closest point, furthest point, center.",
                "Where are the nearest point, the farthest point and the center of the {a} in 3D?",
            ],
            Task::Box => &[
                "Output the vertices of the 3D bounding box of the {a}.",
                "What are the 8 corners of the 3D bounding box of the {a}?",
                "Give the 3D bounding box of the {a}.",
                "Where is the {a} in 3D? Answer with the corners of its bounding box.",
            ],
            Task::Distance => &[
                "What is the distance between the {a} and the {b}, and its x, y, z components?",
                "How far from the {a} is the {b}? Give the distance and its xyz components.",
                "Output the 3D distance from the {a} to the {b} and its components.",
                "Measure the distance between the centers of the {a} and the {b}, with its xyz components.",
            ],
            Task::BoxDistance => &[
                "Output the distances between the bounding box vertices and the centers of the {a} and the {b}.",
                "What are the offsets from the 3D box corners and center of the {a} to those of the {b}?",
                "Give the vertex-to-vertex and center-to-center offsets between the boxes of the {a} and the {b}.",
            ],
            Task::Backprojection => &[
                "Locate the vertices of the 3D bounding box of the {a} in the image.",
                "Where do the corners of the 3D box of the {a} appear in the image?",
                "Project the 3D bounding box of the {a} onto the image.",
            ],
            Task::Closer => &[
                "Which is closer to the camera, the {a} or the {b}?",
                "Is the {a} or the {b} nearer to the camera?",
                "What is the distance from the camera to the {a}? And to the {b}? Which object is closer?",
            ],
        }
    }
}

/// How pairs are drawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QaConfig {
    /// Fewest pairs per example.
    pub min_pairs: usize,
    /// Most pairs per example.
    pub max_pairs: usize,
    /// Examples drawn per image (each with its own pairs).
    pub examples_per_image: usize,
    /// Relative weight of each family (missing families get 0).
    pub task_weights: std::collections::BTreeMap<Task, f64>,
    /// `closer` is asked only when the two distances differ by at least this much.
    pub min_gap: f64,
}

impl Default for QaConfig {
    fn default() -> Self {
        Self {
            min_pairs: 1,
            max_pairs: 4,
            examples_per_image: 1,
            task_weights: Task::ALL.iter().map(|&t| (t, 1.0)).collect(),
            min_gap: 0.05,
        }
    }
}

impl QaConfig {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), String> {
        if self.min_pairs == 0 || self.min_pairs > self.max_pairs {
            return Err(format!(
                "need 1 ≤ min_pairs ≤ max_pairs (got {}, {})",
                self.min_pairs, self.max_pairs
            ));
        }
        if self.task_weights.values().any(|w| !(w.is_finite() && *w >= 0.0))
            || self.task_weights.values().all(|&w| w == 0.0)
        {
            return Err("task_weights must be finite, non-negative and not all zero".into());
        }
        if !(self.min_gap.is_finite() && self.min_gap >= 0.0) {
            return Err(format!("min_gap must be ≥ 0 (got {})", self.min_gap));
        }
        Ok(())
    }
}

/// The image an example's objects are in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct View {
    /// Pixel intrinsics.
    pub intrinsics: Intrinsics,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
}

/// A drawn pair with what it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct DrawnPair {
    /// Its family.
    pub task: Task,
    /// Indices of the objects asked about.
    pub objects: Vec<usize>,
    /// The pair.
    pub pair: QaPair,
}

/// A seeded generator of an image's examples: the same `(seed, key)` gives the same pairs.
pub fn image_rng(seed: u64, key: &str) -> ChaCha8Rng {
    // FNV-1a of the key: stable across runs and platforms, independent of processing order.
    ChaCha8Rng::seed_from_u64(seed ^ spear_data::hash::fnv1a(key.as_bytes()))
}

/// Draws one example's pairs about `objects` (labels unique), or none when no question applies.
pub fn draw_pairs(
    objects: &[ObjectGeometry],
    view: &View,
    config: &QaConfig,
    rng: &mut impl Rng,
) -> Vec<DrawnPair> {
    let count = rng.random_range(config.min_pairs..=config.max_pairs);
    let mut used: Vec<(Task, Vec<usize>)> = Vec::new();
    let mut pairs = Vec::new();
    // Every feasible question, then weighted draws without repeating one.
    let mut candidates: Vec<(Task, Vec<usize>)> = Vec::new();
    for &task in &Task::ALL {
        if config.task_weights.get(&task).copied().unwrap_or(0.0) <= 0.0 {
            continue;
        }
        for a in 0..objects.len() {
            if task.pairwise() {
                for b in (0..objects.len()).filter(|&b| b != a) {
                    if task != Task::Closer
                        || (objects[a].distance_to_camera() - objects[b].distance_to_camera()).abs()
                            >= config.min_gap
                    {
                        candidates.push((task, vec![a, b]));
                    }
                }
            } else if task != Task::Backprojection || pixels(&objects[a], view).is_some() {
                candidates.push((task, vec![a]));
            }
        }
    }
    while pairs.len() < count {
        let open: Vec<&(Task, Vec<usize>)> = candidates.iter().filter(|c| !used.contains(c)).collect();
        // Weight each family equally whatever its number of candidates.
        let tasks: Vec<Task> = Task::ALL.into_iter().filter(|t| open.iter().any(|c| c.0 == *t)).collect();
        let Ok(&task) = tasks.choose_weighted(rng, |t| config.task_weights[t]) else { break };
        let of_task: Vec<&Vec<usize>> = open.iter().filter(|c| c.0 == task).map(|c| &c.1).collect();
        let ids: Vec<usize> = of_task.choose(rng).expect("non-empty").to_vec();
        let phrasing = task.phrasings().choose(rng).expect("phrasings");
        let pair = make_pair(task, &ids, phrasing, objects, view);
        used.push((task, ids.clone()));
        pairs.push(DrawnPair { task, objects: ids, pair });
    }
    pairs
}

/// The corners' pixels `[y, x]` normalised to [0, 1], if all 8 are in front and inside the image.
pub fn pixels(object: &ObjectGeometry, view: &View) -> Option<[[f64; 2]; 8]> {
    let mut out = [[0.0; 2]; 8];
    for (o, &corner) in out.iter_mut().zip(&object.corners) {
        let [u, v] = project(&view.intrinsics, corner)?;
        let (y, x) = (v / view.height as f64, u / view.width as f64);
        if !((0.0..=1.0).contains(&y) && (0.0..=1.0).contains(&x)) {
            return None;
        }
        *o = [y, x];
    }
    Some(out)
}

fn make_pair(task: Task, ids: &[usize], phrasing: &str, objects: &[ObjectGeometry], view: &View) -> QaPair {
    let a = &objects[ids[0]];
    let b = ids.get(1).map(|&i| &objects[i]);
    let question = phrasing.replace("{a}", &a.label).replace("{b}", b.map_or("", |b| &b.label));
    let coords = |values: Vec<f64>| Segment::Coords { coords: values };
    let answer = match task {
        Task::Keypoints => vec![coords([a.closest, a.furthest, a.center].concat())],
        Task::Box => vec![coords(a.corners.concat())],
        Task::Distance => {
            let d = sub(b.expect("pairwise").center, a.center);
            vec![coords(vec![norm(d), d[0], d[1], d[2]])]
        }
        Task::BoxDistance => {
            let b = b.expect("pairwise");
            let mut values: Vec<f64> = (0..8).flat_map(|k| sub(b.corners[k], a.corners[k])).collect();
            values.extend(sub(b.center, a.center));
            vec![coords(values)]
        }
        Task::Backprojection => {
            pixels(a, view).expect("checked when drawn").iter().map(|&loc| Segment::Loc { loc }).collect()
        }
        Task::Closer => {
            let b = b.expect("pairwise");
            let (da, db) = (a.distance_to_camera(), b.distance_to_camera());
            let nearer = if da <= db { &a.label } else { &b.label };
            vec![
                Segment::Text { text: format!("The {} is ", a.label) },
                coords(vec![da]),
                Segment::Text { text: format!(" from the camera and the {} is ", b.label) },
                coords(vec![db]),
                Segment::Text { text: format!(", so the {nearer} is closer.") },
            ]
        }
    };
    let text = render(&answer);
    QaPair { question, answer, task: Some(task.name().to_owned()), text: Some(text) }
}

/// An answer as plain text: 3D values in groups of three `(x, y, z)` (single values bare), in
/// metres to the millimetre; locations `<y, x>` to 3 decimals.
pub fn render(answer: &[Segment]) -> String {
    let mut out = String::new();
    for segment in answer {
        match segment {
            Segment::Text { text } => out.push_str(text),
            Segment::Coords { coords } if coords.len() % 3 == 0 => {
                let groups: Vec<String> =
                    coords.chunks(3).map(|c| format!("({:.3}, {:.3}, {:.3})", c[0], c[1], c[2])).collect();
                out.push_str(&groups.join(" "));
            }
            Segment::Coords { coords } => {
                let values: Vec<String> = coords.iter().map(|v| format!("{v:.3}")).collect();
                out.push_str(&values.join(" "));
            }
            Segment::Loc { loc } => {
                if !out.is_empty() && !out.ends_with(' ') {
                    out.push(' ');
                }
                out.push_str(&format!("<{:.3}, {:.3}>", loc[0], loc[1]));
            }
        }
    }
    out
}
