//! `spear bench annotate`: the per-object step of 3D annotation, statistical outlier removal and
//! then the oriented bounding box of the kept points (`spear-annotate`), beside Open3D 0.20 doing
//! the same on the same points in the same run (`tools/bench/annotate_open3d.py`).
//!
//! What is timed, per object cloud and on both sides: the outlier removal (neighbour search,
//! scores, cut, and the kept points gathered into a new cloud, as Open3D's
//! `remove_statistical_outlier` returns one), then the box fit on the kept points (convex hull,
//! PCA of its vertices, extents; Open3D's `get_oriented_bounding_box(robust=False)`). Building the
//! input cloud is not timed. One warm-up run, then the median of the timed runs: spear on rayon's
//! pool (every core) and then on a one-thread pool, Open3D with its default threads and then with
//! `set_max_threads(1)`. "Cores" is the process's CPU time over wall time during the timed runs.
//!
//! The clouds ([`object_clouds`]) are seeded and look like what a camera sees of an object: points
//! on the visible side of a box or an ellipsoid 10–40 cm across, 1–2 m away, with depth noise, plus
//! 3 % flying pixels (surface points pushed along their ray), in pixel order. spear writes them
//! to raw little-endian f64 files that the Python side reads, so both time the same points; and since
//! spear follows Open3D's semantics, the benchmark is also a parity check ([`Parity`]): the same
//! removed points, and box centres and extents within [`PARITY_TOLERANCE`].

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use nalgebra::{Quaternion, UnitQuaternion, Vector3};
use rand::{Rng, SeedableRng, rngs::StdRng};
use spear_annotate::obb::{OrientedBox, oriented_bounding_box};
use spear_annotate::outliers::remove_statistical_outliers;

use super::{median, run_script};

/// `spear bench annotate`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchAnnotateArgs {
    /// A Python with open3d-cpu 0.20 and numpy (tools/reference/requirements-annotate.txt): also
    /// time `tools/bench/annotate_open3d.py` on the same clouds, print ratios and check parity.
    #[arg(long)]
    compare_open3d: Option<PathBuf>,
    /// Neighbours per point in the outlier removal.
    #[arg(long, default_value_t = 20)]
    nb_neighbors: usize,
    /// The cut: mean neighbour distance + this many standard deviations.
    #[arg(long, default_value_t = 2.0)]
    std_ratio: f64,
    /// Points per cloud, comma-separated; a box and an ellipsoid of each size.
    #[arg(long, value_delimiter = ',', default_values_t = [1_000, 10_000, 100_000])]
    sizes: Vec<usize>,
    /// Timed runs per cloud after one warm-up.
    #[arg(long, default_value_t = 7)]
    repeats: usize,
}

impl BenchAnnotateArgs {
    /// Runs the benchmark (Open3D first, in its own process) and prints the report.
    pub fn run(self) -> Result<()> {
        let spec = AnnotateBench {
            nb_neighbors: self.nb_neighbors,
            std_ratio: self.std_ratio,
            repeats: self.repeats.max(1),
        };
        run_and_print(&self.sizes, &spec, self.compare_open3d.as_deref())
    }
}

/// Largest difference allowed between spear's and Open3D's box centre or extent, metres.
pub const PARITY_TOLERANCE: f64 = 1e-9;

/// Share of a cloud's points that are flying pixels.
pub const OUTLIER_FRACTION: f64 = 0.03;

/// Depth noise of the surface points, as a fraction of their depth (1–2 mm at 1–2 m).
const DEPTH_NOISE: f64 = 1e-3;

/// Focal length in pixels of the camera whose raster order the points come in.
const FOCAL_PX: f64 = 600.0;

/// What to measure.
#[derive(Debug, Clone)]
pub struct AnnotateBench {
    /// Neighbours per point in the outlier removal (Open3D's `nb_neighbors`).
    pub nb_neighbors: usize,
    /// Standard deviations above the mean score where the cut lies (Open3D's `std_ratio`).
    pub std_ratio: f64,
    /// Timed runs per cloud, after one warm-up run.
    pub repeats: usize,
}

/// The object an [`ObjectCloud`] is the visible side of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A box: up to three faces visible, flat, with sharp edges.
    Box,
    /// An ellipsoid: a curved cap.
    Ellipsoid,
}

/// One object's points, camera frame (metres, camera at the origin looking along +z).
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectCloud {
    /// `box 10k`, `ellipsoid 1k`, ….
    pub name: String,
    /// The points in pixel order, flying pixels among the surface points.
    pub points: Vec<[f64; 3]>,
}

/// Median times in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// Outlier removal then box.
    pub total_ms: f64,
    /// Outlier removal alone.
    pub sor_ms: f64,
    /// Box alone.
    pub obb_ms: f64,
    /// CPU seconds of the process per wall second over the timed runs (NaN where unreadable).
    pub cores: f64,
}

/// What one side found for one cloud.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// Kept points.
    pub kept: usize,
    /// Indices of the removed points, ascending.
    pub removed: Vec<usize>,
    /// The box's centre.
    pub center: [f64; 3],
    /// The box's full side lengths, along its axes (descending principal component).
    pub extent: [f64; 3],
}

/// One side's numbers for one cloud.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudResult {
    /// On every core (spear: rayon's global pool; Open3D: its default threads).
    pub all_threads: Timing,
    /// On one thread.
    pub one_thread: Timing,
    /// The result (the same on every run).
    pub found: Found,
}

/// How spear's result for one cloud compares with Open3D's.
#[derive(Debug, Clone, PartialEq)]
pub struct Parity {
    /// Kept points: spear, Open3D.
    pub kept: [usize; 2],
    /// Whether the removed indices are the same.
    pub same_removed: bool,
    /// Largest difference of the box centres' coordinates, metres.
    pub center: f64,
    /// Largest difference of the box extents, metres.
    pub extent: f64,
}

impl Parity {
    /// Compares spear's result with Open3D's.
    pub fn new(spear: &Found, open3d: &Found) -> Self {
        // The largest difference, NaN if any is (f64::max would drop it).
        let max_diff = |a: [f64; 3], b: [f64; 3]| {
            (0..3).map(|d| (a[d] - b[d]).abs()).fold(0.0, |m, d| if d.is_nan() || d > m { d } else { m })
        };
        Parity {
            kept: [spear.kept, open3d.kept],
            same_removed: spear.removed == open3d.removed,
            center: max_diff(spear.center, open3d.center),
            extent: max_diff(spear.extent, open3d.extent),
        }
    }

    /// Same kept count and removed indices, centre and extent within [`PARITY_TOLERANCE`] (a NaN
    /// difference fails).
    pub fn ok(&self) -> bool {
        self.kept[0] == self.kept[1]
            && self.same_removed
            && self.center <= PARITY_TOLERANCE
            && self.extent <= PARITY_TOLERANCE
    }
}

impl std::fmt::Display for Parity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verdict = if self.ok() { "OK" } else { "MISMATCH" };
        let removed = if self.same_removed { "same removed indices" } else { "DIFFERENT removed indices" };
        write!(
            f,
            "{verdict}: kept {} (open3d {}), {removed}, centre Δ {:.1e} m, extent Δ {:.1e} m",
            self.kept[0], self.kept[1], self.center, self.extent
        )
    }
}

/// A box and an ellipsoid cloud of each size in `sizes`, seeded by shape and size.
pub fn object_clouds(sizes: &[usize]) -> Vec<ObjectCloud> {
    sizes
        .iter()
        .flat_map(|&n| {
            [(Shape::Box, "box"), (Shape::Ellipsoid, "ellipsoid")].into_iter().enumerate().map(
                move |(k, (shape, name))| ObjectCloud {
                    name: format!("{name} {}", size_label(n)),
                    points: object_cloud(shape, n, (n as u64) << 1 | k as u64),
                },
            )
        })
        .collect()
}

/// `1k` for 1000, `1500` for 1500.
fn size_label(n: usize) -> String {
    if n >= 1000 && n.is_multiple_of(1000) { format!("{}k", n / 1000) } else { n.to_string() }
}

/// `points` points of `shape` seen by a camera at the origin (see the module documentation).
pub fn object_cloud(shape: Shape, points: usize, seed: u64) -> Vec<[f64; 3]> {
    let mut rng = StdRng::seed_from_u64(seed);
    let half: [f64; 3] = std::array::from_fn(|_| rng.random_range(0.05..0.20));
    let center = [rng.random_range(-0.3..0.3), rng.random_range(-0.2..0.2), rng.random_range(1.0..2.0)];
    // A uniformly random rotation, from a random unit quaternion.
    let q: [f64; 4] = std::array::from_fn(|_| gaussian(&mut rng));
    let rotation = UnitQuaternion::new_normalize(Quaternion::new(q[0], q[1], q[2], q[3]));
    let rotate = |v: [f64; 3]| -> [f64; 3] { (rotation * Vector3::from(v)).into() };
    let outliers = ((points as f64 * OUTLIER_FRACTION).round() as usize).min(points);
    let surface = points - outliers;
    let mut cloud = Vec::with_capacity(points);
    while cloud.len() < surface {
        let (local, normal) = match shape {
            Shape::Box => {
                // A face with probability proportional to its area, a uniform point on it.
                let areas = [half[1] * half[2], half[0] * half[2], half[0] * half[1]];
                let mut pick = rng.random_range(0.0..areas.iter().sum::<f64>());
                let axis = (0..3)
                    .find(|&d| {
                        pick -= areas[d];
                        pick < 0.0
                    })
                    .unwrap_or(2);
                let side = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
                let mut local: [f64; 3] = std::array::from_fn(|d| rng.random_range(-half[d]..half[d]));
                local[axis] = side * half[axis];
                let mut normal = [0.0; 3];
                normal[axis] = side;
                (local, normal)
            }
            Shape::Ellipsoid => {
                let u: [f64; 3] = std::array::from_fn(|_| gaussian(&mut rng));
                let u = u.map(|v| v / u.iter().map(|v| v * v).sum::<f64>().sqrt());
                (std::array::from_fn(|d| half[d] * u[d]), std::array::from_fn(|d| u[d] / half[d]))
            }
        };
        let (offset, normal) = (rotate(local), rotate(normal));
        let p: [f64; 3] = std::array::from_fn(|d| center[d] + offset[d]);
        if (0..3).map(|d| normal[d] * p[d]).sum::<f64>() >= 0.0 {
            continue; // faces away from the camera
        }
        let depth = 1.0 + DEPTH_NOISE * gaussian(&mut rng);
        cloud.push(p.map(|v| v * depth));
    }
    for _ in 0..outliers {
        // A flying pixel: a surface point's ray at a wrong depth.
        let p = cloud[rng.random_range(0..surface.max(1))];
        let depth = rng.random_range(0.8..1.3);
        cloud.push(p.map(|v| v * depth));
    }
    // Pixel (raster) order, as a cloud read through an object's mask comes: rows, then columns,
    // of a 600 px focal length camera.
    let (row, column) = (|p: &[f64; 3]| (p[1] / p[2] * FOCAL_PX).floor(), |p: &[f64; 3]| p[0] / p[2]);
    cloud.sort_by(|a, b| row(a).total_cmp(&row(b)).then(column(a).total_cmp(&column(b))));
    cloud
}

/// A standard normal sample (Box–Muller).
fn gaussian(rng: &mut StdRng) -> f64 {
    let u: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * rng.random::<f64>()).cos()
}

/// CPU nanoseconds of every thread of this process so far (`/proc/self/task/*/schedstat`).
fn cpu_ns() -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let stat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// Outlier removal then box on `points`, with the two parts' seconds.
fn annotate(points: &[[f64; 3]], bench: &AnnotateBench) -> Result<(Found, f64, f64)> {
    let start = Instant::now();
    let removal = remove_statistical_outliers(points, bench.nb_neighbors, bench.std_ratio)?;
    let kept: Vec<[f64; 3]> = removal.kept.iter().map(|&i| points[i]).collect();
    let removed = start.elapsed().as_secs_f64();
    let fit = oriented_bounding_box(&kept)?;
    let boxed = start.elapsed().as_secs_f64() - removed;
    std::hint::black_box(&fit);
    let OrientedBox { center, extent, .. } = fit.obb;
    let mut keep = removal.kept.iter().copied().peekable();
    let removed_indices = (0..points.len()).filter(|&i| keep.next_if_eq(&i).is_none()).collect();
    Ok((Found { kept: removal.kept.len(), removed: removed_indices, center, extent }, removed, boxed))
}

/// One warm-up run and `bench.repeats` timed runs on the current rayon pool.
fn time_cloud(points: &[[f64; 3]], bench: &AnnotateBench) -> Result<(Timing, Found)> {
    let (found, ..) = annotate(points, bench)?;
    let (mut total, mut sor, mut obb) = (Vec::new(), Vec::new(), Vec::new());
    let (cpu, start) = (cpu_ns(), Instant::now());
    for _ in 0..bench.repeats.max(1) {
        let (again, removed, boxed) = annotate(points, bench)?;
        if again != found {
            bail!("two runs on the same cloud disagree");
        }
        sor.push(removed * 1e3);
        obb.push(boxed * 1e3);
        total.push((removed + boxed) * 1e3);
    }
    let wall = start.elapsed().as_secs_f64();
    let cores = match (cpu, cpu_ns()) {
        (Some(a), Some(b)) => (b.saturating_sub(a)) as f64 * 1e-9 / wall,
        _ => f64::NAN,
    };
    let timing = Timing { total_ms: median(total), sor_ms: median(sor), obb_ms: median(obb), cores };
    Ok((timing, found))
}

/// Times spear on each cloud, on rayon's global pool and then on a one-thread pool.
pub fn run(clouds: &[ObjectCloud], bench: &AnnotateBench) -> Result<Vec<CloudResult>> {
    let single = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    clouds
        .iter()
        .map(|cloud| {
            let (all_threads, found) =
                time_cloud(&cloud.points, bench).with_context(|| format!("spear on {}", cloud.name))?;
            let (one_thread, _) = single.install(|| time_cloud(&cloud.points, bench))?;
            Ok(CloudResult { all_threads, one_thread, found })
        })
        .collect()
}

/// Open3D's numbers for each cloud, and a line about its run (versions, threads).
#[derive(Debug, Clone)]
pub struct Open3dRun {
    /// One per cloud, in order.
    pub clouds: Vec<CloudResult>,
    /// Open3D and numpy versions, `os.cpu_count()`, Open3D's thread limit.
    pub about: String,
}

/// Writes the clouds to raw f64 files in `dir` and times `tools/bench/annotate_open3d.py` on them
/// with `python`.
pub fn run_open3d(
    clouds: &[ObjectCloud],
    bench: &AnnotateBench,
    python: &Path,
    dir: &Path,
) -> Result<Open3dRun> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut files = Vec::new();
    for (i, cloud) in clouds.iter().enumerate() {
        let path = dir.join(format!("cloud-{i}.f64"));
        let bytes: Vec<u8> = cloud.points.iter().flatten().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        files.push(serde_json::json!({ "name": cloud.name, "path": path, "points": cloud.points.len() }));
    }
    let config = serde_json::json!({
        "nb_neighbors": bench.nb_neighbors, "std_ratio": bench.std_ratio, "clouds": files,
    });
    let (json, _) =
        run_script(python, "annotate_open3d.py", config, &[("--repeats", bench.repeats.to_string())])?;
    let number =
        |v: &serde_json::Value, key: &str| v[key].as_f64().with_context(|| format!("no {key} in {v}"));
    let timing = |v: &serde_json::Value| -> Result<Timing> {
        Ok(Timing {
            total_ms: number(v, "total_ms")?,
            sor_ms: number(v, "sor_ms")?,
            obb_ms: number(v, "obb_ms")?,
            cores: number(v, "cores")?,
        })
    };
    let triple = |v: &serde_json::Value, key: &str| -> Result<[f64; 3]> {
        let values: Vec<f64> =
            serde_json::from_value(v[key].clone()).with_context(|| format!("{key} in {v}"))?;
        values.try_into().map_err(|_| anyhow::anyhow!("{key} is not 3 numbers"))
    };
    let results = json["clouds"].as_array().with_context(|| format!("no clouds in {json}"))?;
    if results.len() != clouds.len() {
        bail!("annotate_open3d.py timed {} clouds, not {}", results.len(), clouds.len());
    }
    let clouds = results
        .iter()
        .map(|c| {
            Ok(CloudResult {
                all_threads: timing(&c["all_threads"])?,
                one_thread: timing(&c["one_thread"])?,
                found: Found {
                    kept: c["kept"].as_u64().context("no kept count")? as usize,
                    removed: serde_json::from_value(c["removed"].clone()).context("removed indices")?,
                    center: triple(c, "center")?,
                    extent: triple(c, "extent")?,
                },
            })
        })
        .collect::<Result<_>>()?;
    let omp = json["omp_num_threads"].as_str().map_or("unset".into(), |v| format!("={v}"));
    let about = format!(
        "open3d {} (numpy {}): os.cpu_count() {}, get_max_threads() {} by default (nothing set; OMP_NUM_THREADS {omp}), \
         then set_max_threads(1) (get_max_threads() {})",
        json["open3d"].as_str().unwrap_or("?"),
        json["numpy"].as_str().unwrap_or("?"),
        json["cpu_count"],
        json["max_threads"],
        json["max_threads_single"],
    );
    Ok(Open3dRun { clouds, about })
}

/// Runs the benchmark (Open3D first, in its own process, when `python` is given) and prints the
/// table; fails after printing it when spear and Open3D disagree on a cloud.
pub fn run_and_print(sizes: &[usize], bench: &AnnotateBench, python: Option<&Path>) -> Result<()> {
    let clouds = object_clouds(sizes);
    println!(
        "bench annotate: statistical outlier removal (nb_neighbors {}, std_ratio {}) then the oriented bounding box \
         of the kept points, per object cloud; median ms of {} run(s) after one warm-up",
        bench.nb_neighbors,
        bench.std_ratio,
        bench.repeats.max(1)
    );
    println!(
        "  clouds: visible side of a box or an ellipsoid 10–40 cm across, 1–2 m away, {:.1} % depth noise, \
         {:.0} % flying pixels; seeded",
        DEPTH_NOISE * 100.0,
        OUTLIER_FRACTION * 100.0
    );
    println!("  spear: rayon, {} threads by default, then a 1-thread pool", rayon::current_num_threads());
    let scratch = std::env::temp_dir().join(format!("spear-bench-annotate-{}", std::process::id()));
    let open3d = python.map(|python| run_open3d(&clouds, bench, python, &scratch));
    let _ = std::fs::remove_dir_all(&scratch);
    let open3d = open3d.transpose()?;
    if let Some(run) = &open3d {
        println!("  {}", run.about);
    }
    let ours = run(&clouds, bench)?;

    let mut header =
        format!("  {:<16} {:>7} {:>7} │ {:>9} {:>9}", "cloud", "points", "kept", "spear", "1 thread");
    if open3d.is_some() {
        header += &format!(" │ {:>9} {:>9} │ {:>12} {:>9}", "open3d", "1 thread", "open3d/spear", "1 thread");
    }
    println!("{header}");
    for (i, (cloud, s)) in clouds.iter().zip(&ours).enumerate() {
        let mut row = format!(
            "  {:<16} {:>7} {:>7} │ {:>9.3} {:>9.3}",
            cloud.name,
            cloud.points.len(),
            s.found.kept,
            s.all_threads.total_ms,
            s.one_thread.total_ms
        );
        if let Some(run) = &open3d {
            let o = &run.clouds[i];
            row += &format!(
                " │ {:>9.3} {:>9.3} │ {:>11.2}x {:>8.2}x",
                o.all_threads.total_ms,
                o.one_thread.total_ms,
                o.all_threads.total_ms / s.all_threads.total_ms,
                o.one_thread.total_ms / s.one_thread.total_ms
            );
        }
        println!("{row}");
    }
    if open3d.is_some() {
        println!("  (ms; open3d/spear above 1 = spear faster)");
    }
    println!("  split, all threads (ms: outlier removal + box; cores = CPU time / wall time):");
    for (i, (cloud, s)) in clouds.iter().zip(&ours).enumerate() {
        let part = |t: &Timing| format!("{:>8.3} + {:>7.3} ({:.1} cores)", t.sor_ms, t.obb_ms, t.cores);
        let mut row = format!("  {:<16} spear {}", cloud.name, part(&s.all_threads));
        if let Some(run) = &open3d {
            row += &format!("   open3d {}", part(&run.clouds[i].all_threads));
        }
        println!("{row}");
    }
    let Some(run) = &open3d else {
        return Ok(());
    };
    println!(
        "  parity with open3d (kept points, removed indices, box centre and extent within {PARITY_TOLERANCE:.0e} m):"
    );
    let mut mismatches = 0;
    for ((cloud, s), o) in clouds.iter().zip(&ours).zip(&run.clouds) {
        let parity = Parity::new(&s.found, &o.found);
        mismatches += usize::from(!parity.ok());
        let flag = if parity.ok() { "" } else { "  <<<<<<<<<<" };
        println!("  {:<16} {parity}{flag}", cloud.name);
    }
    if mismatches > 0 {
        bail!("PARITY MISMATCH: spear and Open3D disagree on {mismatches} of {} clouds", clouds.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clouds_are_seeded_sized_and_object_like() {
        let clouds = object_clouds(&[1000, 1500]);
        assert_eq!(clouds, object_clouds(&[1000, 1500]));
        let names: Vec<&str> = clouds.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["box 1k", "ellipsoid 1k", "box 1500", "ellipsoid 1500"]);
        for cloud in &clouds {
            assert_eq!(cloud.points.len(), if cloud.name.ends_with("1k") { 1000 } else { 1500 });
            assert!(cloud.points.iter().flatten().all(|v| v.is_finite()));
            // In front of the camera, around 1–2 m (flying pixels scale depths by 0.8–1.3).
            assert!(cloud.points.iter().all(|p| (0.4..3.5).contains(&p[2])), "{}", cloud.name);
        }
    }

    #[test]
    fn spear_removes_the_flying_pixels_and_boxes_the_object() {
        let bench = AnnotateBench { nb_neighbors: 20, std_ratio: 2.0, repeats: 1 };
        let clouds = object_clouds(&[2000]);
        for result in run(&clouds, &bench).unwrap() {
            let found = &result.found;
            assert_eq!(found.kept + found.removed.len(), 2000);
            assert!((40..=200).contains(&found.removed.len()), "{} removed", found.removed.len());
            // Full extents of an object 10–40 cm across (a box's diagonal cap can exceed 40 cm).
            assert!(found.extent.iter().all(|&e| e > 0.0 && e < 1.0), "{:?}", found.extent);
            assert!(result.all_threads.total_ms > 0.0 && result.one_thread.total_ms > 0.0);
        }
    }

    #[test]
    fn parity_flags_any_difference() {
        let found = Found { kept: 3, removed: vec![1], center: [0.0, 0.0, 1.0], extent: [0.3, 0.2, 0.1] };
        assert!(Parity::new(&found, &found).ok());
        assert!(Parity::new(&found, &found).to_string().starts_with("OK: kept 3 (open3d 3), same removed"));
        let mut other = found.clone();
        other.center[2] += 1e-6;
        assert!(!Parity::new(&found, &other).ok());
        let mut other = found.clone();
        other.removed = vec![2];
        let parity = Parity::new(&found, &other);
        assert!(!parity.ok() && parity.to_string().starts_with("MISMATCH"));
        let mut other = found.clone();
        other.extent[0] = f64::NAN;
        assert!(!Parity::new(&found, &other).ok());
    }
}
