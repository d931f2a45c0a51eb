//! PyTorch-exact bicubic resizing of learned position tables, expressed as a fixed linear map, and
//! PyTorch's antialiased bilinear/bicubic image resize ([`resize_antialiased`], MoGe's
//! preprocessing) in the same way.
//!
//! SigLIP's 16×16 table must become 15×20 for a 280×210 image and 8×8 for a 112×112 wrist image;
//! DINOv2's 37×37 table likewise. PyTorch's `upsample_bicubic2d` (A = −0.75, `align_corners =
//! False`, borders clamped) is separable, so the resized table is `K · T` with
//! `K = R_rows ⊗ R_cols`, a small constant matrix. Doing it as a matmul keeps the table trainable
//! (gradients flow through `K`), runs unchanged on every backend, and avoids burn's bicubic whose
//! default is `align_corners = true`. `K` is computed in f64 once per output grid and cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use burn::prelude::*;

/// How output pixel centres map back to source coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// `F.interpolate(size = …)`: source = (dst + 0.5) · in/out − 0.5. SigLIP (transformers'
    /// `interpolate_pos_encoding`).
    Size,
    /// `F.interpolate(scale_factor = (out + offset)/in)`: source = (dst + 0.5) · in/(out + offset)
    /// − 0.5. DINOv2 and MoGe use an offset of 0.1 to dodge floating-point floor errors, which
    /// shifts the sampling grid by up to a quarter of a source cell against [`Sampling::Size`].
    ScaleFactorOffset(f64),
}

/// The `[output, input]` row weights of PyTorch's 1D bicubic interpolation.
pub fn bicubic_weights(input: usize, output: usize, sampling: Sampling) -> Vec<f64> {
    let ratio = match sampling {
        Sampling::Size => input as f64 / output as f64,
        Sampling::ScaleFactorOffset(offset) => input as f64 / (output as f64 + offset),
    };
    let last = input as i64 - 1;
    let mut weights = vec![0.0; output * input];
    for o in 0..output {
        let source = ratio * (o as f64 + 0.5) - 0.5;
        // PyTorch's guard_index_and_lambda: floor, index capped at the last cell, lambda in [0, 1].
        let index = (source.floor() as i64).min(last);
        let t = (source - index as f64).clamp(0.0, 1.0);
        for (k, c) in cubic_coefficients(t).into_iter().enumerate() {
            let tap = (index - 1 + k as i64).clamp(0, last) as usize;
            weights[o * input + tap] += c;
        }
    }
    weights
}

/// Keys' cubic convolution weights for the four taps around `t`, with A = −0.75 as PyTorch uses.
fn cubic_coefficients(t: f64) -> [f64; 4] {
    const A: f64 = -0.75;
    [keys(t + 1.0, A), keys(t, A), keys(1.0 - t, A), keys(2.0 - t, A)]
}

/// Keys' cubic convolution kernel with parameter `a` at distance `x`.
fn keys(x: f64, a: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    } else {
        0.0
    }
}

/// The filter of an antialiased resize (`F.interpolate(..., antialias=True)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Antialias {
    /// `mode='bilinear'`: the triangle filter.
    Bilinear,
    /// `mode='bicubic'`: Keys' cubic with a = −0.5 (not the −0.75 of the plain bicubic).
    Bicubic,
}

/// The `[output, input]` row weights of PyTorch's antialiased 1D resize (`align_corners=False`),
/// as its `_compute_weights_aa` computes them for f32 images (in f32, with its truncating casts):
/// when shrinking, the filter is stretched by the scale `input/output` (and its support with it);
/// the taps that fall outside the input are dropped and the rest renormalised to sum to one (no
/// border clamping).
pub fn antialias_weights(input: usize, output: usize, filter: Antialias) -> Vec<f32> {
    let scale = input as f32 / output as f32;
    let half = match filter {
        Antialias::Bilinear => 1.0,
        Antialias::Bicubic => 2.0,
    };
    let (support, invscale) = if scale >= 1.0 { (half * scale, 1.0 / scale) } else { (half, 1.0) };
    let kernel = |x: f32| match filter {
        Antialias::Bilinear => (1.0 - x.abs()).max(0.0),
        Antialias::Bicubic => keys(f64::from(x), -0.5) as f32,
    };
    let max_taps = support.ceil() as i64 * 2 + 1;
    let mut weights = vec![0.0; output * input];
    for o in 0..output {
        // PyTorch's expression types: f32 terms, the 0.5 literals (and so the sums) in f64.
        let center = (f64::from(scale) * (o as f64 + 0.5)) as f32;
        let first = (f64::from(center - support) + 0.5) as i64;
        let first = first.max(0);
        let taps = ((f64::from(center + support) + 0.5) as i64).min(input as i64) - first;
        let taps = taps.clamp(0, max_taps);
        let row = &mut weights[o * input..][..input];
        let mut total = 0.0f32;
        for j in 0..taps {
            let x = (f64::from((j + first) as f32 - center) + 0.5) * f64::from(invscale);
            let w = kernel(x as f32);
            row[(first + j) as usize] = w;
            total += w;
        }
        if total != 0.0 {
            row.iter_mut().for_each(|w| *w /= total);
        }
    }
    weights
}

/// Resizes images `[B, C, H, W]` to `[B, C, out_h, out_w]` as PyTorch's
/// `F.interpolate(size=(out_h, out_w), mode=…, antialias=True, align_corners=False)` does: the
/// separable [`antialias_weights`] applied as two matrix products (rows, then columns), so any
/// backend runs it.
pub fn resize_antialiased<B: Backend>(
    images: Tensor<B, 4>,
    size: [usize; 2],
    filter: Antialias,
) -> Tensor<B, 4> {
    let [batch, channels, height, width] = images.dims();
    let device = images.device();
    let matrix = |input: usize, output: usize| {
        Tensor::<B, 2>::from_data(
            TensorData::new(antialias_weights(input, output, filter), [output, input]),
            &device,
        )
    };
    let (rows, cols) = (matrix(height, size[0]), matrix(width, size[1]));
    // [B·C, H, W] → rows · x → [B·C, out_h, W] → · colsᵀ → [B·C, out_h, out_w].
    let x = images.reshape([batch * channels, height, width]);
    let x = rows.unsqueeze::<3>().matmul(x);
    let x = x.matmul(cols.transpose().unsqueeze::<3>());
    x.reshape([batch, channels, size[0], size[1]])
}

/// The `[out_h·out_w, in_h·in_w]` matrix resizing a row-major grid (token = row · width + col).
pub fn grid_resize_matrix(input: [usize; 2], output: [usize; 2], sampling: Sampling) -> Vec<f32> {
    let rows = bicubic_weights(input[0], output[0], sampling);
    let cols = bicubic_weights(input[1], output[1], sampling);
    let (in_cells, out_cells) = (input[0] * input[1], output[0] * output[1]);
    let mut matrix = vec![0.0f32; out_cells * in_cells];
    for r in 0..output[0] {
        for c in 0..output[1] {
            let row = &mut matrix[(r * output[1] + c) * in_cells..][..in_cells];
            for a in 0..input[0] {
                let wr = rows[r * input[0] + a];
                if wr == 0.0 {
                    continue;
                }
                for b in 0..input[1] {
                    row[a * input[1] + b] = (wr * cols[c * input[1] + b]) as f32;
                }
            }
        }
    }
    matrix
}

/// Resize matrices by output grid.
type MatrixCache = Arc<Mutex<HashMap<[usize; 2], Arc<Vec<f32>>>>>;

/// Resizes a square learned position grid to any token grid, caching the resize matrix per grid.
#[derive(Debug, Clone)]
pub struct PositionResizer {
    grid: usize,
    sampling: Sampling,
    cache: MatrixCache,
}

impl PositionResizer {
    /// A resizer for a `grid × grid` table.
    pub fn new(grid: usize, sampling: Sampling) -> Self {
        Self { grid, sampling, cache: Arc::default() }
    }

    /// The side of the learned table.
    pub fn grid(&self) -> usize {
        self.grid
    }

    /// Resizes `table` (`[grid², dim]`, row-major) to `[rows·cols, dim]`. The native grid is
    /// returned untouched, as both transformers and DINOv2 skip interpolation there.
    pub fn resize<B: Backend>(&self, table: Tensor<B, 2>, rows: usize, cols: usize) -> Tensor<B, 2> {
        if rows == self.grid && cols == self.grid {
            return table;
        }
        let matrix = {
            let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            cache
                .entry([rows, cols])
                .or_insert_with(|| Arc::new(grid_resize_matrix([self.grid; 2], [rows, cols], self.sampling)))
                .clone()
        };
        let device = table.device();
        let matrix = Tensor::<B, 2>::from_data(
            TensorData::new(matrix.as_ref().clone(), [rows * cols, self.grid * self.grid]),
            &device,
        );
        matrix.matmul(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_sum_to_one_and_identity_when_sizes_match() {
        for (i, o) in [(16, 15), (16, 20), (16, 8), (37, 15), (5, 5)] {
            let w = bicubic_weights(i, o, Sampling::Size);
            for r in 0..o {
                let s: f64 = w[r * i..(r + 1) * i].iter().sum();
                assert!((s - 1.0).abs() < 1e-12, "{i}->{o} row {r} sums to {s}");
            }
        }
        let w = bicubic_weights(6, 6, Sampling::Size);
        for r in 0..6 {
            for c in 0..6 {
                assert!((w[r * 6 + c] - f64::from(u8::from(r == c))).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn antialiased_rows_sum_to_one_at_moges_sizes() {
        // MoGe-1 at 840×630 and 2551 tokens: 840 → 816 (bicubic), 816 → 812 (bilinear); growing too.
        for filter in [Antialias::Bilinear, Antialias::Bicubic] {
            for (i, o) in [(840, 816), (816, 812), (630, 612), (20, 33), (61, 28), (5, 5)] {
                let w = antialias_weights(i, o, filter);
                for r in 0..o {
                    let s: f32 = w[r * i..(r + 1) * i].iter().sum();
                    assert!((s - 1.0).abs() < 1e-5, "{filter:?} {i}->{o} row {r} sums to {s}");
                }
            }
        }
    }

    #[test]
    fn offset_sampling_differs_from_size_sampling() {
        let a = bicubic_weights(37, 15, Sampling::Size);
        let b = bicubic_weights(37, 15, Sampling::ScaleFactorOffset(0.1));
        let diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
        assert!(diff > 1e-3, "the 0.1 offset must move the sampling grid");
    }
}
