//! Exact k-nearest-neighbour search over a static 3D cloud: a k-d tree split at the median of
//! the widest axis, leaves of up to 16 points. Distances are squared, `(dx² + dy²) + dz²` as
//! Open3D's nanoflann adds them, so scores built on them match Open3D bit for bit.

type P = [f64; 3];

const LEAF: usize = 16;

enum Node {
    Leaf { start: u32, end: u32 },
    Split { axis: u8, value: f64, left: u32, right: u32 },
}

/// A k-d tree over borrowed points.
pub(crate) struct KdTree<'a> {
    points: &'a [P],
    order: Vec<u32>,
    nodes: Vec<Node>,
}

pub(crate) fn squared_distance(a: &P, b: &P) -> f64 {
    let (dx, dy, dz) = (a[0] - b[0], a[1] - b[1], a[2] - b[2]);
    (dx * dx + dy * dy) + dz * dz
}

impl<'a> KdTree<'a> {
    pub(crate) fn new(points: &'a [P]) -> Self {
        let mut tree = Self { points, order: (0..points.len() as u32).collect(), nodes: Vec::new() };
        if !points.is_empty() {
            tree.build(0, points.len());
        }
        tree
    }

    fn build(&mut self, start: usize, end: usize) -> u32 {
        let id = self.nodes.len() as u32;
        if end - start <= LEAF {
            self.nodes.push(Node::Leaf { start: start as u32, end: end as u32 });
            return id;
        }
        let slice = &mut self.order[start..end];
        let points = self.points;
        let (mut lo, mut hi) = ([f64::INFINITY; 3], [f64::NEG_INFINITY; 3]);
        for &i in slice.iter() {
            for d in 0..3 {
                lo[d] = lo[d].min(points[i as usize][d]);
                hi[d] = hi[d].max(points[i as usize][d]);
            }
        }
        let axis = (0..3).max_by(|&a, &b| (hi[a] - lo[a]).total_cmp(&(hi[b] - lo[b]))).unwrap_or(0);
        let mid = slice.len() / 2;
        slice.select_nth_unstable_by(mid, |&a, &b| {
            points[a as usize][axis].total_cmp(&points[b as usize][axis])
        });
        let value = points[slice[mid] as usize][axis];
        self.nodes.push(Node::Leaf { start: 0, end: 0 }); // replaced below
        let left = self.build(start, start + mid);
        let right = self.build(start + mid, end);
        self.nodes[id as usize] = Node::Split { axis: axis as u8, value, left, right };
        id
    }

    /// The squared distances to the `k` nearest points of `query` (itself included when it is in
    /// the cloud), ascending, into `out` (cleared first; fewer when the cloud is smaller).
    pub(crate) fn nearest_squared(&self, query: &P, k: usize, out: &mut Vec<f64>) {
        out.clear();
        if k > 0 && !self.nodes.is_empty() {
            self.search(0, query, k, out);
        }
    }

    fn search(&self, node: u32, q: &P, k: usize, best: &mut Vec<f64>) {
        match self.nodes[node as usize] {
            Node::Leaf { start, end } => {
                for &i in &self.order[start as usize..end as usize] {
                    let d = squared_distance(q, &self.points[i as usize]);
                    if best.len() < k {
                        let at = best.partition_point(|&b| b <= d);
                        best.insert(at, d);
                    } else if d < best[k - 1] {
                        best.pop();
                        let at = best.partition_point(|&b| b <= d);
                        best.insert(at, d);
                    }
                }
            }
            Node::Split { axis, value, left, right } => {
                let diff = q[axis as usize] - value;
                let (near, far) = if diff < 0.0 { (left, right) } else { (right, left) };
                self.search(near, q, k, best);
                if best.len() < k || diff * diff < best[k - 1] {
                    self.search(far, q, k, best);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_exhaustive_search_with_duplicates_and_ties() {
        let mut points: Vec<P> = (0..500)
            .map(|i| {
                let t = i as f64;
                [(t * 0.37).sin(), (t * 0.11).cos() * 2.0, ((t * 0.05).floor() * 0.1)]
            })
            .collect();
        points.extend_from_within(..40); // exact duplicates
        points.extend((0..30).map(|i| [0.0, 0.0, i as f64 * 0.0])); // one point 30 times
        let tree = KdTree::new(&points);
        let mut got = Vec::new();
        for k in [1, 5, 17, 64] {
            for q in &points {
                tree.nearest_squared(q, k, &mut got);
                let mut all: Vec<f64> = points.iter().map(|p| squared_distance(q, p)).collect();
                all.sort_by(f64::total_cmp);
                assert_eq!(got, all[..k]);
            }
        }
    }
}
