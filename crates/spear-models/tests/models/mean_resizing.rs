use burn::prelude::*;
use spear_models::embedding::mean_resized_rows;

use crate::common::*;

/// Column means and biased covariance of `[n, d]` rows.
fn moments(rows: &[f32], d: usize) -> (Vec<f64>, Vec<f64>) {
    let n = rows.len() / d;
    let mut mean = vec![0.0; d];
    for r in rows.chunks(d) {
        for (m, &x) in mean.iter_mut().zip(r) {
            *m += f64::from(x) / n as f64;
        }
    }
    let mut cov = vec![0.0; d * d];
    for r in rows.chunks(d) {
        for i in 0..d {
            for j in 0..d {
                cov[i * d + j] += (f64::from(r[i]) - mean[i]) * (f64::from(r[j]) - mean[j]) / n as f64;
            }
        }
    }
    (mean, cov)
}

/// Our rows and transformers' rows come from the same N(μ, 1e-9·Σ): equal means (the noise is
/// ~3e-5 of the spread) and covariances equal to 1e-9·Σ within sampling error.
#[test]
fn new_rows_have_transformers_distribution() {
    let device = Default::default();
    Cpu::seed(&device, 7);
    let old = read("mean_resize_expected.safetensors", "old_embeddings");
    let [_, d] = [old.shape[0], old.shape[1]];
    let theirs: Vec<f32> = read("mean_resize_expected.safetensors", "new_rows").to_vec().unwrap();
    let count = theirs.len() / d;
    let ours: Vec<f32> = mean_resized_rows(Tensor::<Cpu, 2>::from_data(old.clone(), &device), count)
        .into_data()
        .to_vec()
        .unwrap();
    let (old_mean, old_cov) = moments(&old.to_vec::<f32>().unwrap(), d);
    let (our_mean, our_cov) = moments(&ours, d);
    let (their_mean, their_cov) = moments(&theirs, d);
    for i in 0..d {
        let sd = old_cov[i * d + i].sqrt();
        assert!((our_mean[i] - old_mean[i]).abs() < 1e-5 * sd.max(1.0), "mean[{i}]");
        assert!((their_mean[i] - old_mean[i]).abs() < 1e-5 * sd.max(1.0), "transformers mean[{i}]");
    }
    // Sampling error of a covariance entry over n rows ≈ sqrt(2/n) of the diagonal scale.
    let tol = 6.0 * (2.0 / count as f64).sqrt();
    for i in 0..d {
        for j in 0..d {
            let scale = 1e-9 * (old_cov[i * d + i] * old_cov[j * d + j]).sqrt();
            let want = 1e-9 * old_cov[i * d + j];
            assert!(
                (our_cov[i * d + j] - want).abs() < tol * scale,
                "cov[{i},{j}] ours {} want {want}",
                our_cov[i * d + j]
            );
            assert!((their_cov[i * d + j] - want).abs() < tol * scale, "transformers cov[{i},{j}]");
        }
    }
}
