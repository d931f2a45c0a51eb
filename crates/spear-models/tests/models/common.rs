use std::path::PathBuf;

use burn::prelude::*;
use spear_models::import::checkpoint::Checkpoint;

pub type Cpu = burn::backend::Flex;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// One tensor of a fixture safetensors file, as `[dims]` f32 data.
pub fn read(file: &str, name: &str) -> TensorData {
    let checkpoint = Checkpoint::open(fixtures().join(file)).unwrap();
    let entry = checkpoint.tensors.get(name).unwrap_or_else(|| panic!("{file} has no tensor {name}"));
    entry.read().unwrap()
}

/// A fixture tensor on a device.
pub fn tensor<B: Backend, const D: usize>(file: &str, name: &str, device: &B::Device) -> Tensor<B, D> {
    Tensor::from_data(read(file, name), device)
}

/// Max |got − want| relative to max(1, max |want|); panics above `tol` naming `what`.
pub fn assert_close<B: Backend, const D: usize>(got: Tensor<B, D>, want: &TensorData, tol: f64, what: &str) {
    let got_data = got.into_data();
    assert_eq!(got_data.shape, want.shape, "{what}: shape");
    let got: Vec<f32> = got_data.convert::<f32>().to_vec().unwrap();
    let want: Vec<f32> = want.clone().convert::<f32>().to_vec().unwrap();
    let scale = want.iter().fold(1.0f64, |m, w| m.max(f64::from(w.abs())));
    let err = got.iter().zip(&want).fold(0.0f64, |m, (g, w)| {
        let d = f64::from((g - w).abs());
        if d.is_nan() { f64::INFINITY } else { m.max(d) }
    });
    assert!(err / scale <= tol, "{what}: max error {err:.3e} (scale {scale:.3}) exceeds {tol:e}");
    eprintln!("{what}: max error {err:.3e} (relative {:.3e})", err / scale);
}
