//! New vocabulary rows initialised by "mean resizing" (Hewitt 2021; transformers'
//! `resize_token_embeddings(mean_resizing=True)`): each new row is drawn from
//! `N(μ, 10⁻⁹·Σ)`, the mean and (biased) covariance of the existing rows.

use burn::prelude::*;
use burn::tensor::Distribution;

/// The covariance scale transformers uses (`_init_added_embeddings_weights_with_mean`, 4.57).
pub const MEAN_RESIZING_COVARIANCE_SCALE: f64 = 1e-9;

/// Rows of old-embedding-matrix products per chunk, to bound memory for a 257k-row vocabulary.
const CHUNK_ROWS: usize = 16384;

/// Draws `count` rows from `N(μ, 10⁻⁹·Σ)` of `old` `[V, d]` (exactly that distribution, without
/// forming Σ: `μ + √(10⁻⁹/V) · Z (W − μ)` with `Z ~ N(0, I)` `[count, V]`). When `V ≤ d` the
/// covariance cannot be positive definite and transformers falls back to the mean; so does this.
/// Seed the backend (`B::seed`) for reproducible rows.
pub fn mean_resized_rows<B: Backend>(old: Tensor<B, 2>, count: usize) -> Tensor<B, 2> {
    let [vocab, width] = old.dims();
    let device = old.device();
    let mean = old.clone().mean_dim(0);
    if vocab <= width {
        return mean.repeat_dim(0, count);
    }
    let mut noise = Tensor::<B, 2>::zeros([count, width], &device);
    let mut start = 0;
    while start < vocab {
        let rows = CHUNK_ROWS.min(vocab - start);
        let centred = old.clone().narrow(0, start, rows) - mean.clone();
        let z = Tensor::<B, 2>::random([count, rows], Distribution::Normal(0.0, 1.0), &device);
        noise = noise + z.matmul(centred);
        start += rows;
    }
    mean + noise * (MEAN_RESIZING_COVARIANCE_SCALE / vocab as f64).sqrt()
}
