//! Oriented bounding boxes as Open3D fits them (`PointCloud::get_oriented_bounding_box()`,
//! `robust = False`, Open3D 0.20), so that boxes agree with Open3D's to rounding:
//!
//! 1. the convex hull's vertices, as Qhull (`Qt`) selects them: only *corners* — points where at
//!    least three non-coplanar hull faces meet; points lying on a flat face or a straight edge
//!    of the hull (within Qhull-sized rounding) are not vertices, which matters for clouds with
//!    flat sides (on a box's surface it is 91 vertices instead of 162, and 1–3 % in the extents);
//! 2. mean and covariance of those vertices, one pass, `E[xy] − E[x]E[y]`;
//! 3. eigenvectors sorted by descending eigenvalue, the first two normalised and the third their
//!    cross product (`det R = +1`);
//! 4. the axis-aligned box of the hull vertices in that frame, mapped back.
//!
//! Where Open3D's Qhull throws (fewer than 4 points, all points identical, collinear or
//! coplanar) this returns the matching [`ObbError`] instead of a flat box.

use nalgebra::{Matrix3, SymmetricEigen, Vector3};

/// Why no box can be fitted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ObbError {
    /// Fewer than 4 points (Qhull needs a simplex).
    #[error("{0} points: a 3D box needs at least 4")]
    TooFewPoints(usize),
    /// A point is NaN or infinite.
    #[error("point {0} is not finite")]
    NonFinite(usize),
    /// Every point is the same.
    #[error("all points coincide")]
    Identical,
    /// The points lie on a line.
    #[error("the points are collinear")]
    Collinear,
    /// The points lie in a plane.
    #[error("the points are coplanar (a flat object)")]
    Coplanar,
    /// The hull's topology broke (cannot happen with exact predicates; kept as an error, not a
    /// panic, should it ever).
    #[error("the convex hull failed: {0}")]
    Numerical(&'static str),
}

/// An oriented box: `center`, axes as the columns of `rotation`, full side lengths `extent`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OrientedBox {
    /// Centre, camera frame.
    pub center: [f64; 3],
    /// Row-major 3×3; column `k` is axis `k` (descending principal component).
    pub rotation: [[f64; 3]; 3],
    /// Full side lengths along the axes.
    pub extent: [f64; 3],
}

impl OrientedBox {
    /// Axis `k` (column `k` of the rotation).
    pub fn axis(&self, k: usize) -> [f64; 3] {
        [self.rotation[0][k], self.rotation[1][k], self.rotation[2][k]]
    }

    /// The corner with signs `s` (each ±1) along the axes: `center + R · (s ⊙ extent / 2)`.
    pub fn corner(&self, s: [f64; 3]) -> [f64; 3] {
        std::array::from_fn(|r| {
            self.center[r] + (0..3).map(|k| self.rotation[r][k] * s[k] * self.extent[k] / 2.0).sum::<f64>()
        })
    }

    /// The 8 corners in Open3D's `get_box_points()` order: signs −−−, +−−, −+−, −−+, +++, −++,
    /// +−+, ++−.
    pub fn open3d_box_points(&self) -> [[f64; 3]; 8] {
        const SIGNS: [[f64; 3]; 8] = [
            [-1.0, -1.0, -1.0],
            [1.0, -1.0, -1.0],
            [-1.0, 1.0, -1.0],
            [-1.0, -1.0, 1.0],
            [1.0, 1.0, 1.0],
            [-1.0, 1.0, 1.0],
            [1.0, -1.0, 1.0],
            [1.0, 1.0, -1.0],
        ];
        SIGNS.map(|s| self.corner(s))
    }

    /// Volume.
    pub fn volume(&self) -> f64 {
        self.extent.iter().product()
    }
}

/// The box and the hull vertices it was fitted to.
#[derive(Debug, Clone, PartialEq)]
pub struct BoxFit {
    /// The box.
    pub obb: OrientedBox,
    /// Indices of the hull's vertices (corners), ascending.
    pub hull_vertices: Vec<usize>,
    /// Eigenvalues of the hull vertices' covariance, descending.
    pub eigenvalues: [f64; 3],
}

/// Open3D's `get_oriented_bounding_box()` (PCA over the convex hull's vertices).
pub fn oriented_bounding_box(points: &[[f64; 3]]) -> Result<BoxFit, ObbError> {
    let hull_vertices = hull_vertices(points)?;
    let n = hull_vertices.len() as f64;
    // One pass of sums, as Open3D's ComputeMeanAndCovariance.
    let mut c = [0.0f64; 9];
    for &i in &hull_vertices {
        let p = points[i];
        c[0] += p[0];
        c[1] += p[1];
        c[2] += p[2];
        c[3] += p[0] * p[0];
        c[4] += p[0] * p[1];
        c[5] += p[0] * p[2];
        c[6] += p[1] * p[1];
        c[7] += p[1] * p[2];
        c[8] += p[2] * p[2];
    }
    c.iter_mut().for_each(|v| *v /= n);
    let mean = Vector3::new(c[0], c[1], c[2]);
    let (xx, xy, xz) = (c[3] - c[0] * c[0], c[4] - c[0] * c[1], c[5] - c[0] * c[2]);
    let (yy, yz, zz) = (c[6] - c[1] * c[1], c[7] - c[1] * c[2], c[8] - c[2] * c[2]);
    let covariance = Matrix3::new(xx, xy, xz, xy, yy, yz, xz, yz, zz);
    let eigen = SymmetricEigen::new(covariance);
    let mut order = [0usize, 1, 2];
    order.sort_by(|&a, &b| eigen.eigenvalues[b].total_cmp(&eigen.eigenvalues[a]));
    let col0 = eigen.eigenvectors.column(order[0]).normalize();
    let col1 = eigen.eigenvectors.column(order[1]).normalize();
    let rotation = Matrix3::from_columns(&[col0, col1, col0.cross(&col1)]);
    let (mut lo, mut hi) = (Vector3::repeat(f64::INFINITY), Vector3::repeat(f64::NEG_INFINITY));
    for &i in &hull_vertices {
        let local = rotation.transpose() * (Vector3::from(points[i]) - mean);
        lo = lo.inf(&local);
        hi = hi.sup(&local);
    }
    let center = rotation * ((lo + hi) / 2.0) + mean;
    let extent = hi - lo;
    Ok(BoxFit {
        obb: OrientedBox {
            center: center.into(),
            rotation: std::array::from_fn(|r| std::array::from_fn(|k| rotation[(r, k)])),
            extent: extent.into(),
        },
        hull_vertices,
        eigenvalues: order.map(|k| eigen.eigenvalues[k]),
    })
}

type V3 = [f64; 3];

pub(crate) fn sub(a: V3, b: V3) -> V3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}
fn dot(a: V3, b: V3) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
fn cross(a: V3, b: V3) -> V3 {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}
pub(crate) fn norm(a: V3) -> f64 {
    dot(a, a).sqrt()
}

/// A hull triangle: vertices counter-clockwise seen from outside; `neighbour[e]` lies across the
/// edge from `v[e]` to `v[(e + 1) % 3]`.
struct Face {
    v: [u32; 3],
    normal: V3,
    offset: f64,
    /// Bound on the rounding error of [`Hull::distance`] for this face: beyond it the float
    /// distance has the exact sign.
    slack: f64,
    neighbour: [u32; 3],
    outside: Vec<u32>,
    alive: bool,
}

struct Hull<'a> {
    points: &'a [V3],
    faces: Vec<Face>,
    /// Qhull-sized rounding tolerance on point–plane distances (for degeneracy and for which
    /// vertices are corners; the construction itself uses exact predicates).
    eps: f64,
    /// Largest coordinate magnitude and the cloud's bounding-box diagonal (for [`Face::slack`]).
    max_abs: f64,
    diameter: f64,
}

impl Hull<'_> {
    fn distance(&self, face: usize, p: u32) -> f64 {
        let f = &self.faces[face];
        dot(f.normal, self.points[p as usize]) - f.offset
    }

    /// Whether `p` lies strictly outside `face`, decided exactly, so the hull stays convex and its
    /// visible regions discs whatever the rounding: the float distance where it is clearly
    /// beyond its error bound, else Shewchuk's adaptive `orient3d`.
    fn outside(&self, face: usize, p: u32) -> bool {
        let d = self.distance(face, p);
        let slack = self.faces[face].slack;
        if d > slack {
            return true;
        }
        if d < -slack {
            return false;
        }
        let c = |i: u32| {
            let [x, y, z] = self.points[i as usize];
            robust::Coord3D { x, y, z }
        };
        let [a, b, d] = self.faces[face].v;
        // orient3d > 0 when the point is below the counter-clockwise triangle.
        robust::orient3d(c(a), c(b), c(d), c(p)) < 0.0
    }

    fn push_face(&mut self, v: [u32; 3]) -> u32 {
        let [a, b, c] = v.map(|i| self.points[i as usize]);
        let n = cross(sub(b, a), sub(c, a));
        let len = norm(n);
        let normal = n.map(|x| x / len);
        let centroid: V3 = std::array::from_fn(|d| (a[d] + b[d] + c[d]) / 3.0);
        // The unit normal's direction error is about ε·|e1||e2|/|e1 × e2| (large for slivers),
        // times how far a point can be from the centroid, plus the dot products' own rounding.
        let sliver = norm(sub(b, a)) * norm(sub(c, a)) / len;
        let slack = 16.0 * f64::EPSILON * (sliver * self.diameter + self.max_abs);
        self.faces.push(Face {
            v,
            normal,
            offset: dot(normal, centroid),
            slack: if slack.is_finite() { slack } else { f64::INFINITY },
            neighbour: [u32::MAX; 3],
            outside: Vec::new(),
            alive: true,
        });
        (self.faces.len() - 1) as u32
    }

    /// Puts each candidate on the first of `faces` it lies outside of, else drops it.
    fn assign(&mut self, candidates: impl IntoIterator<Item = u32>, faces: &[u32]) {
        for p in candidates {
            if let Some(&f) = faces.iter().find(|&&f| self.outside(f as usize, p)) {
                self.faces[f as usize].outside.push(p);
            }
        }
    }

    /// Adds the furthest outside point of `face`; returns the new faces.
    fn add_point(&mut self, face: usize) -> Result<Vec<u32>, ObbError> {
        let outside = std::mem::take(&mut self.faces[face].outside);
        let apex = *outside
            .iter()
            .max_by(|&&a, &&b| self.distance(face, a).total_cmp(&self.distance(face, b)))
            .expect("called on faces with outside points");
        // Faces the apex sees, by flood fill from `face`.
        let mut visible = vec![face as u32];
        self.faces[face].alive = false;
        let mut orphans = outside;
        let mut horizon: Vec<(u32, u32, u32)> = Vec::new(); // (from, to, face beyond)
        let mut stack = vec![face as u32];
        while let Some(f) = stack.pop() {
            for e in 0..3 {
                let g = self.faces[f as usize].neighbour[e];
                if !self.faces[g as usize].alive {
                    continue;
                }
                if self.outside(g as usize, apex) {
                    self.faces[g as usize].alive = false;
                    orphans.append(&mut self.faces[g as usize].outside);
                    visible.push(g);
                    stack.push(g);
                } else {
                    let v = self.faces[f as usize].v;
                    horizon.push((v[e], v[(e + 1) % 3], g));
                }
            }
        }
        let mut starts = std::collections::HashMap::with_capacity(horizon.len());
        let mut new_faces = Vec::with_capacity(horizon.len());
        for &(a, b, beyond) in &horizon {
            let f = self.push_face([a, b, apex]);
            if starts.insert(a, f).is_some() {
                return Err(ObbError::Numerical("the visible region is not a disc"));
            }
            self.faces[f as usize].neighbour[0] = beyond;
            let g = &mut self.faces[beyond as usize];
            let e =
                (0..3).find(|&e| g.v[e] == b && g.v[(e + 1) % 3] == a).ok_or(ObbError::Numerical("edge"))?;
            g.neighbour[e] = f;
            new_faces.push(f);
        }
        for &f in &new_faces {
            let b = self.faces[f as usize].v[1];
            // Across (b, apex) is the new face starting at b; across (apex, a) the one ending at a.
            let next = *starts.get(&b).ok_or(ObbError::Numerical("open horizon"))?;
            self.faces[f as usize].neighbour[1] = next;
            self.faces[next as usize].neighbour[2] = f;
        }
        orphans.retain(|&p| p != apex);
        self.assign(orphans, &new_faces);
        Ok(new_faces)
    }
}

/// The indices of the convex hull's corner vertices, ascending (see the module documentation).
pub fn hull_vertices(points: &[[f64; 3]]) -> Result<Vec<usize>, ObbError> {
    build_hull(points).map(|hull| corners(&hull))
}

fn build_hull(points: &[[f64; 3]]) -> Result<Hull<'_>, ObbError> {
    if let Some(i) = points.iter().position(|p| !p.iter().all(|v| v.is_finite())) {
        return Err(ObbError::NonFinite(i));
    }
    if points.len() < 4 {
        return Err(ObbError::TooFewPoints(points.len()));
    }
    // Qhull's rounding error of a distance (qh_distround: ε · (d · max Σ|x| + max |x|)).
    let max_abs = points.iter().flatten().fold(0.0f64, |m, v| m.max(v.abs()));
    let max_sum = points.iter().fold(0.0f64, |m, p| m.max(p.iter().map(|v| v.abs()).sum()));
    let eps = 4.0 * f64::EPSILON * (3.0 * max_sum + max_abs);

    // Initial simplex: the furthest pair of axis extremes, the point furthest from their line,
    // the point furthest from their plane.
    let extremes: Vec<usize> = (0..3)
        .flat_map(|d| {
            let by = |a: &&[f64; 3], b: &&[f64; 3]| a[d].total_cmp(&b[d]);
            let lo = points.iter().enumerate().min_by(|a, b| by(&a.1, &b.1)).map(|x| x.0);
            let hi = points.iter().enumerate().max_by(|a, b| by(&a.1, &b.1)).map(|x| x.0);
            [lo.unwrap(), hi.unwrap()]
        })
        .collect();
    let (mut i0, mut i1, mut best) = (0, 0, -1.0);
    for &a in &extremes {
        for &b in &extremes {
            let d = norm(sub(points[a], points[b]));
            if d > best {
                (i0, i1, best) = (a, b, d);
            }
        }
    }
    if best <= eps {
        return Err(ObbError::Identical);
    }
    let direction = sub(points[i1], points[i0]);
    let line_distance = |p: &V3| norm(cross(direction, sub(*p, points[i0]))) / best;
    let i2 = argmax(points, line_distance);
    if line_distance(&points[i2]) <= eps {
        return Err(ObbError::Collinear);
    }
    let normal = cross(direction, sub(points[i2], points[i0]));
    let normal = normal.map(|x| x / norm(normal));
    let plane_distance = |p: &V3| dot(normal, sub(*p, points[i0])).abs();
    let i3 = argmax(points, plane_distance);
    if plane_distance(&points[i3]) <= eps {
        return Err(ObbError::Coplanar);
    }
    let (mut a, mut b) = (i0 as u32, i1 as u32);
    let (c, d) = (i2 as u32, i3 as u32);
    if dot(normal, sub(points[i3], points[i0])) > 0.0 {
        std::mem::swap(&mut a, &mut b); // so that abc faces away from d
    }
    let (mut lo, mut hi) = ([f64::INFINITY; 3], [f64::NEG_INFINITY; 3]);
    for p in points {
        for d in 0..3 {
            lo[d] = lo[d].min(p[d]);
            hi[d] = hi[d].max(p[d]);
        }
    }
    let mut hull = Hull { points, faces: Vec::new(), eps, max_abs, diameter: norm(sub(hi, lo)) };
    let simplex = [[a, b, c], [a, d, b], [b, d, c], [c, d, a]];
    let ids: Vec<u32> = simplex.iter().map(|&v| hull.push_face(v)).collect();
    for &f in &ids {
        for e in 0..3 {
            let v = hull.faces[f as usize].v;
            let (from, to) = (v[e], v[(e + 1) % 3]);
            let g = ids.iter().copied().find(|&g| {
                let w = hull.faces[g as usize].v;
                (0..3).any(|k| w[k] == to && w[(k + 1) % 3] == from)
            });
            hull.faces[f as usize].neighbour[e] = g.ok_or(ObbError::Numerical("simplex"))?;
        }
    }
    let simplex_points = [a, b, c, d];
    hull.assign((0..points.len() as u32).filter(|p| !simplex_points.contains(p)), &ids);

    let mut work = ids;
    while let Some(f) = work.pop() {
        if hull.faces[f as usize].alive && !hull.faces[f as usize].outside.is_empty() {
            work.extend(hull.add_point(f as usize)?);
        }
    }
    Ok(hull)
}

fn argmax(points: &[V3], key: impl Fn(&V3) -> f64) -> usize {
    (0..points.len()).max_by(|&a, &b| key(&points[a]).total_cmp(&key(&points[b]))).unwrap_or(0)
}

/// Hull vertices where at least three non-coplanar faces meet (Qhull merges coplanar facets
/// and drops the vertices left inside a merged face or on a straight edge).
fn corners(hull: &Hull<'_>) -> Vec<usize> {
    let alive: Vec<usize> = (0..hull.faces.len()).filter(|&f| hull.faces[f].alive).collect();
    let mut first_face = std::collections::BTreeMap::new();
    for &f in &alive {
        for &v in &hull.faces[f].v {
            first_face.entry(v).or_insert(f);
        }
    }
    let coplanar = |f: usize, g: usize| {
        let opposite = |f: usize, g: usize| {
            let w = hull.faces[g].v;
            w.iter().copied().find(|x| !hull.faces[f].v.contains(x))
        };
        [(f, g), (g, f)]
            .iter()
            .all(|&(f, g)| opposite(f, g).is_none_or(|p| hull.distance(f, p).abs() <= hull.eps))
    };
    first_face
        .into_iter()
        .filter(|&(v, start)| {
            // Walk the fan of faces around v and count the creases between consecutive faces.
            let (mut f, mut creases, mut steps) = (start, 0, 0);
            loop {
                let e = (0..3).find(|&e| hull.faces[f].v[e] == v).expect("v is on its fan");
                let next = hull.faces[f].neighbour[(e + 2) % 3] as usize;
                creases += usize::from(!coplanar(f, next));
                f = next;
                steps += 1;
                if f == start || steps > alive.len() {
                    break;
                }
            }
            creases >= 3
        })
        .map(|(v, _)| v as usize)
        .collect()
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    /// A closed triangulated hull containing every point, on awkward inputs: lattices (many
    /// coplanar and cospherical points), float32-rounded flat faces, spheres, a table top.
    #[test]
    fn the_hull_is_closed_and_contains_every_point() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut clouds: Vec<Vec<V3>> = Vec::new();
        for n in [2usize, 3, 5, 8] {
            clouds.push(
                (0..n * n * n).map(|i| [i % n, i / n % n, i / (n * n)].map(|k| k as f64 * 0.1)).collect(),
            );
        }
        let r = rotation_from(&mut rng);
        clouds.push(
            (0..3000)
                .map(|_| {
                    let mut p: V3 = std::array::from_fn(|_| rng.random_range(-1.0..1.0));
                    let axis = rng.random_range(0..3);
                    p[axis] = p[axis].signum();
                    let q = mul(&r, p);
                    q.map(|v| f64::from((v * 0.2 + 1.5) as f32))
                })
                .collect(),
        );
        clouds.push(
            (0..2000)
                .map(|_| {
                    let p: V3 = std::array::from_fn(|_| rng.random_range(-1.0f64..1.0));
                    let l = norm(p);
                    p.map(|v| v / l)
                })
                .collect(),
        );
        // The same in f64: faces coplanar up to the last bit (Qhull merges such facets).
        clouds.push(
            (0..2000)
                .map(|_| {
                    let mut p: V3 = [
                        rng.random_range(-0.15..0.15),
                        rng.random_range(-0.1..0.1),
                        rng.random_range(-0.05..0.05),
                    ];
                    let axis = rng.random_range(0..3);
                    p[axis] = p[axis].signum() * [0.15, 0.1, 0.05][axis];
                    mul(&r, p).map(|v| v + 1.0)
                })
                .collect(),
        );
        // A slab a few rounding errors thick.
        clouds.push(
            (0..500)
                .map(|_| {
                    let p = [
                        rng.random_range(-0.5..0.5),
                        rng.random_range(-0.5..0.5),
                        rng.random_range(-1e-13..1e-13),
                    ];
                    mul(&r, p).map(|v| v + 2.0)
                })
                .collect(),
        );
        // A table top seen by a camera (one f32 plane) with a box standing on it.
        clouds.push(
            (0..4000)
                .map(|i| {
                    let (u, v): (f64, f64) = (rng.random_range(-0.5..0.5), rng.random_range(-0.3..0.3));
                    let h = if i % 4 == 0 && u.abs() < 0.1 && v.abs() < 0.1 {
                        rng.random_range(0.0..0.15)
                    } else {
                        0.0
                    };
                    mul(&r, [u, v, h]).map(|x| f64::from((x + 1.0) as f32))
                })
                .collect(),
        );
        for (c, cloud) in clouds.iter().enumerate() {
            let hull = build_hull(cloud).unwrap_or_else(|e| panic!("cloud {c}: {e}"));
            let faces: Vec<&Face> = hull.faces.iter().filter(|f| f.alive).collect();
            let mut vertices: Vec<u32> = faces.iter().flat_map(|f| f.v).collect();
            vertices.sort_unstable();
            vertices.dedup();
            // Euler: V − E + F = 2 with E = 3F / 2.
            assert_eq!(vertices.len() as i64 - faces.len() as i64 / 2, 2, "cloud {c}: not a closed surface");
            for (f, face) in faces.iter().enumerate() {
                for e in 0..3 {
                    let g = &hull.faces[face.neighbour[e] as usize];
                    assert!(g.alive, "cloud {c}: face {f} borders a deleted face");
                }
            }
            let worst = cloud
                .iter()
                .map(|p| faces.iter().map(|f| dot(f.normal, *p) - f.offset).fold(f64::NEG_INFINITY, f64::max))
                .fold(f64::NEG_INFINITY, f64::max);
            assert!(
                worst <= 4.0 * hull.eps,
                "cloud {c}: a point {worst:e} outside the hull (eps {:e})",
                hull.eps
            );
            // Exactly inside or on every face (orient3d alone, without the float filter).
            let exact = |i: u32| {
                let [x, y, z] = cloud[i as usize];
                robust::Coord3D { x, y, z }
            };
            for face in &faces {
                let [a, b, d] = face.v;
                assert!(
                    (0..cloud.len() as u32)
                        .all(|p| robust::orient3d(exact(a), exact(b), exact(d), exact(p)) >= 0.0),
                    "cloud {c}: a point outside a face"
                );
            }
            let corners = corners(&hull);
            assert!(corners.len() >= 4 && corners.len() <= vertices.len(), "cloud {c}");
        }
        // A lattice's corners are its 8 corners; on a flat-faced box, points inside faces are no corners.
        assert_eq!(hull_vertices(&clouds[3]).unwrap(), vec![0, 7, 56, 63, 448, 455, 504, 511]);
        let hull = build_hull(&clouds[6]).unwrap();
        let all = hull
            .faces
            .iter()
            .filter(|f| f.alive)
            .flat_map(|f| f.v)
            .collect::<std::collections::BTreeSet<_>>();
        let kept = corners(&hull).len();
        assert!(kept < all.len(), "face-interior points dropped: {kept} corners of {} vertices", all.len());
    }

    fn rotation_from(rng: &mut impl Rng) -> [[f64; 3]; 3] {
        let (a, b) = (rng.random_range(0.0..6.0f64), rng.random_range(0.0..6.0f64));
        let (ca, sa, cb, sb) = (a.cos(), a.sin(), b.cos(), b.sin());
        [[ca, -sa * cb, sa * sb], [sa, ca * cb, -ca * sb], [0.0, sb, cb]]
    }

    fn mul(r: &[[f64; 3]; 3], p: V3) -> V3 {
        std::array::from_fn(|i| dot(r[i], p))
    }
}
