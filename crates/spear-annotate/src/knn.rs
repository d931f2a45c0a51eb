//! Exact k-nearest-neighbour search over a static 3D cloud: a k-d tree split at the median of
//! the widest axis, leaves of up to 16 points. Distances are squared, `(dx² + dy²) + dz²` as
//! Open3D's nanoflann adds them, so scores built on them match Open3D bit for bit.

type P = [f64; 3];

const LEAF: usize = 16;

enum Node {
    Leaf { start: u32, end: u32 },
    Split { axis: u8, value: f64, left: u32, right: u32 },
}

/// A k-d tree over a copy of the points in leaf order (so that a leaf's points are contiguous).
pub(crate) struct KdTree {
    /// The points, reordered: leaf `start..end` ranges index this.
    points: Vec<P>,
    /// `order[i]` = the original index of `points[i]`.
    order: Vec<u32>,
    nodes: Vec<Node>,
}

pub(crate) fn squared_distance(a: &P, b: &P) -> f64 {
    let (dx, dy, dz) = (a[0] - b[0], a[1] - b[1], a[2] - b[2]);
    (dx * dx + dy * dy) + dz * dz
}

impl KdTree {
    pub(crate) fn new(points: &[P]) -> Self {
        let mut order: Vec<u32> = (0..points.len() as u32).collect();
        let mut nodes = Vec::new();
        if !points.is_empty() {
            build(points, &mut order, 0, points.len(), &mut nodes);
        }
        Self { points: order.iter().map(|&i| points[i as usize]).collect(), order, nodes }
    }

    /// Original indices in leaf order: querying in this order keeps consecutive queries close.
    pub(crate) fn leaf_order(&self) -> &[u32] {
        &self.order
    }

    /// The squared distances to the `k` nearest points of `query` (itself included when it is in
    /// the cloud), ascending, into `out` (cleared first; fewer when the cloud is smaller).
    pub(crate) fn nearest_squared(&self, query: &P, k: usize, out: &mut Vec<f64>) {
        out.clear();
        if k > 0 && !self.nodes.is_empty() {
            self.search(0, query, k, out, [0.0; 3], 0.0);
        }
    }

    /// `offsets[d]`: how far the query lies outside this node's cell along d (0 inside);
    /// `cell_distance` = their sum of squares, a lower bound on any distance in the cell.
    fn search(
        &self,
        node: u32,
        q: &P,
        k: usize,
        best: &mut Vec<f64>,
        mut offsets: [f64; 3],
        cell_distance: f64,
    ) {
        match self.nodes[node as usize] {
            Node::Leaf { start, end } => {
                for p in &self.points[start as usize..end as usize] {
                    let d = squared_distance(q, p);
                    if best.len() == k {
                        if d >= best[k - 1] {
                            continue;
                        }
                        best.pop();
                    }
                    // Insertion into the short sorted list, after equal values.
                    let mut at = best.len();
                    while at > 0 && best[at - 1] > d {
                        at -= 1;
                    }
                    best.insert(at, d);
                }
            }
            Node::Split { axis, value, left, right } => {
                let axis = axis as usize;
                let diff = q[axis] - value;
                let (near, far) = if diff < 0.0 { (left, right) } else { (right, left) };
                self.search(near, q, k, best, offsets, cell_distance);
                let far_distance = cell_distance - offsets[axis] * offsets[axis] + diff * diff;
                // The bound is computed incrementally and may round up past a true distance by a
                // few ulps: prune with a margin so that no neighbour is ever lost (scores must be
                // bit-equal to an exhaustive search's).
                if best.len() < k || far_distance < best[k - 1] * (1.0 + 1e-9) {
                    offsets[axis] = diff;
                    self.search(far, q, k, best, offsets, far_distance);
                }
            }
        }
    }
}

fn build(points: &[P], order: &mut [u32], start: usize, end: usize, nodes: &mut Vec<Node>) -> u32 {
    let id = nodes.len() as u32;
    if end - start <= LEAF {
        nodes.push(Node::Leaf { start: start as u32, end: end as u32 });
        return id;
    }
    let slice = &mut order[start..end];
    let (mut lo, mut hi) = ([f64::INFINITY; 3], [f64::NEG_INFINITY; 3]);
    for &i in slice.iter() {
        for d in 0..3 {
            lo[d] = lo[d].min(points[i as usize][d]);
            hi[d] = hi[d].max(points[i as usize][d]);
        }
    }
    let axis = (0..3).max_by(|&a, &b| (hi[a] - lo[a]).total_cmp(&(hi[b] - lo[b]))).unwrap_or(0);
    let mid = slice.len() / 2;
    slice.select_nth_unstable_by(mid, |&a, &b| points[a as usize][axis].total_cmp(&points[b as usize][axis]));
    let value = points[slice[mid] as usize][axis];
    nodes.push(Node::Leaf { start: 0, end: 0 }); // replaced below
    let left = build(points, order, start, start + mid, nodes);
    let right = build(points, order, start + mid, end, nodes);
    nodes[id as usize] = Node::Split { axis: axis as u8, value, left, right };
    id
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
