//! Quaternion algebra on tensors of shape `[..., 4]`.

use burn::tensor::{Tensor, backend::Backend};

/// Square of the floor applied to norms: keeps `sqrt` and divisions finite, with gradients, at 0.
const NORM_FLOOR_SQUARED: f64 = 1e-12;

/// Panics, naming the shape, unless the last dimension holds quaternions.
fn assert_quaternions<B: Backend, const D: usize>(q: &Tensor<B, D>) {
    let dims = q.dims();
    assert_eq!(
        dims[D - 1],
        4,
        "expected quaternions (w, x, y, z) in the last dimension, got a tensor of shape {dims:?}"
    );
}

/// Splits `[..., 4]` into its `w, x, y, z` components, each `[..., 1]`.
pub(crate) fn components<B: Backend, const D: usize>(q: Tensor<B, D>) -> [Tensor<B, D>; 4] {
    assert_quaternions(&q);
    let mut parts = q.chunk(4, D - 1).into_iter();
    std::array::from_fn(|_| parts.next().expect("chunk(4) of a size-4 dimension yields 4 parts"))
}

/// Dot product over the last dimension, keeping it: `[..., n]` → `[..., 1]`.
pub fn dot<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> Tensor<B, D> {
    (a * b).sum_dim(D - 1)
}

/// Euclidean norm over the last dimension, floored at 1e-6 so that it and its gradient are finite
/// at zero: `[..., n]` → `[..., 1]`.
pub fn norm<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    x.square().sum_dim(D - 1).clamp_min(NORM_FLOOR_SQUARED).sqrt()
}

/// Hamilton product `a ⊗ b`, broadcasting over leading dimensions.
pub fn hamilton<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> Tensor<B, D> {
    let [aw, ax, ay, az] = components(a);
    let [bw, bx, by, bz] = components(b);
    let w =
        aw.clone() * bw.clone() - ax.clone() * bx.clone() - ay.clone() * by.clone() - az.clone() * bz.clone();
    let x =
        aw.clone() * bx.clone() + ax.clone() * bw.clone() + ay.clone() * bz.clone() - az.clone() * by.clone();
    let y =
        aw.clone() * by.clone() - ax.clone() * bz.clone() + ay.clone() * bw.clone() + az.clone() * bx.clone();
    let z = aw * bz + ax * by - ay * bx + az * bw;
    Tensor::cat(vec![w, x, y, z], D - 1)
}

/// Conjugate `(w, −x, −y, −z)`.
pub fn conjugate<B: Backend, const D: usize>(q: Tensor<B, D>) -> Tensor<B, D> {
    let [w, x, y, z] = components(q);
    Tensor::cat(vec![w, -x, -y, -z], D - 1)
}

/// Flips each quaternion into the half-space `w ≥ 0` (`q` and `−q` are the same rotation).
/// Quaternions with `w = 0` exactly are left unchanged, as in [`crate::quat::canonicalize`].
pub fn canonicalize<B: Backend, const D: usize>(q: Tensor<B, D>) -> Tensor<B, D> {
    assert_quaternions(&q);
    let w = q.clone().narrow(D - 1, 0, 1);
    let sign = w.ones_like().mask_fill(w.lower_elem(0.0), -1.0);
    q * sign
}
