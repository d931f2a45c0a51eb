//! `spear doctor`: does this backend compute correctly on this machine?
//!
//! Runs a matmul, the batched S³ flow-matching operations and one autodiff gradient on the chosen
//! backend and compares each with an f64 reference computed on the CPU.

use std::fmt;

use burn::tensor::{Tensor, TensorData, backend::AutodiffBackend};
use rand::{Rng, SeedableRng, rngs::StdRng};
use spear_geometry::tensor::{self as geo, selfcheck};

use crate::backend::{BackendChoice, BackendJob, BackendKind, run_on};

/// One comparison against the f64 reference.
#[derive(Debug, Clone)]
pub struct Check {
    /// What was computed.
    pub name: String,
    /// Max error against the reference (absolute, or relative where the name says so).
    pub error: f64,
    /// The largest error that passes.
    pub tolerance: f64,
}

impl Check {
    /// Whether the error is within tolerance (NaN never is).
    pub fn passed(&self) -> bool {
        self.error <= self.tolerance
    }
}

/// Everything `spear doctor` measured on one backend.
#[derive(Debug, Clone)]
pub struct Report {
    /// The device, as the backend names it.
    pub device: String,
    /// The backend's float element type.
    pub float: &'static str,
    /// The comparisons, in the order they ran.
    pub checks: Vec<Check>,
}

impl Report {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(Check::passed)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  device     {}", self.device)?;
        writeln!(
            f,
            "  precision  {} (checks run in {} against an f64 CPU reference)",
            self.float, self.float
        )?;
        writeln!(f)?;
        writeln!(f, "  {:<34} {:>12} {:>10}  result", "check", "max error", "tolerance")?;
        for c in &self.checks {
            let verdict = if c.passed() { "PASS" } else { "FAIL" };
            writeln!(f, "  {:<34} {:>12.3e} {:>10.0e}  {verdict}", c.name, c.error, c.tolerance)?;
        }
        writeln!(f)?;
        let failed = self.checks.iter().filter(|c| !c.passed()).count();
        if failed == 0 {
            write!(f, "PASS: all {} checks", self.checks.len())
        } else {
            write!(f, "FAIL: {failed} of {} checks", self.checks.len())
        }
    }
}

/// Batch size of the geometry comparison.
const GEOMETRY_BATCH: usize = 1024;
/// f32 rounding through the S³ operations (see `spear_geometry::tensor::selfcheck`).
const GEOMETRY_TOLERANCE: f64 = 1e-4;
/// Relative matmul error allowed: f32 is ~1e-7; this also admits TF32 tensor cores (10-bit
/// mantissa), which GPU backends may use for f32 matmuls.
const MATMUL_TOLERANCE: f64 = 2e-3;

/// `spear doctor` on `backend`: prints the backend, its device and every check; `false` when one
/// failed.
pub fn command(backend: BackendChoice) -> anyhow::Result<bool> {
    run_on(backend, Doctor)
}

struct Doctor;

impl BackendJob for Doctor {
    type Output = bool;
    fn run<B: AutodiffBackend>(self, kind: BackendKind, device: B::Device) -> bool {
        println!("spear doctor");
        println!("  backend    {kind}: {}", kind.describe());
        if let Some(device) = kind.device() {
            let label = if kind == BackendKind::Wgpu { "adapter" } else { "device" };
            println!("  {label:<10} {device}");
        }
        let report = run::<B>(&device);
        println!("{report}");
        report.passed()
    }
}

/// Runs every check on `device`.
pub fn run<B: AutodiffBackend>(device: &B::Device) -> Report {
    let mut checks = vec![matmul::<B>(device, [128, 256, 96])];
    checks.extend(selfcheck::compare_with_scalar::<B>(device, GEOMETRY_BATCH, 0).into_iter().map(|e| {
        Check {
            name: format!("s3 {} (batch {GEOMETRY_BATCH})", e.name),
            error: e.max_abs_error,
            tolerance: GEOMETRY_TOLERANCE,
        }
    }));
    checks.push(geodesic_gradient::<B>(device));
    Report { device: format!("{device:?}"), float: std::any::type_name::<B::FloatElem>(), checks }
}

fn random(rng: &mut StdRng, n: usize) -> Vec<f64> {
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

fn upload<B: AutodiffBackend>(values: &[f64], shape: [usize; 2], device: &B::Device) -> Tensor<B, 2> {
    let data: Vec<f32> = values.iter().map(|&x| x as f32).collect();
    Tensor::from_data(TensorData::new(data, shape), device)
}

fn download<B: AutodiffBackend>(t: Tensor<B, 2>) -> Vec<f64> {
    t.into_data().iter::<f64>().collect()
}

/// `[m, k] · [k, n]` on the device against an f64 triple loop; error relative to the largest
/// entry of the product.
fn matmul<B: AutodiffBackend>(device: &B::Device, [m, k, n]: [usize; 3]) -> Check {
    let mut rng = StdRng::seed_from_u64(1);
    let (a, b) = (random(&mut rng, m * k), random(&mut rng, k * n));
    let product = download(upload::<B>(&a, [m, k], device).matmul(upload::<B>(&b, [k, n], device)));
    let reference: Vec<f64> =
        (0..m * n).map(|ij| (0..k).map(|l| a[ij / n * k + l] * b[l * n + ij % n]).sum()).collect();
    let scale = reference.iter().fold(0.0f64, |s, x| s.max(x.abs()));
    Check {
        name: format!("matmul {m}x{k}·{k}x{n} (relative)"),
        error: selfcheck::max_abs_error(&product, &reference) / scale,
        tolerance: MATMUL_TOLERANCE,
    }
}

/// Autodiff through the geodesic loss against its closed-form gradient
/// `∂/∂a min(‖a − b‖, ‖a + b‖) = (a ∓ b)/‖a ∓ b‖` (the smaller branch).
fn geodesic_gradient<B: AutodiffBackend>(device: &B::Device) -> Check {
    let n = 256;
    let mut rng = StdRng::seed_from_u64(2);
    let (a, b) = (random(&mut rng, 4 * n), random(&mut rng, 4 * n));
    let a_tensor = upload::<B>(&a, [n, 4], device).require_grad();
    let grads = geo::geodesic_loss(a_tensor.clone(), upload::<B>(&b, [n, 4], device)).sum().backward();
    let gradient =
        a_tensor.grad(&grads).map(|g| g.into_data().iter::<f64>().collect::<Vec<_>>()).unwrap_or_default();
    let reference: Vec<f64> = a
        .chunks(4)
        .zip(b.chunks(4))
        .flat_map(|(a, b)| {
            let minus: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
            let plus: Vec<f64> = a.iter().zip(b).map(|(x, y)| x + y).collect();
            let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
            let branch = if norm(&minus) <= norm(&plus) { minus } else { plus };
            let length = norm(&branch);
            branch.into_iter().map(move |x| x / length)
        })
        .collect();
    Check {
        name: "autodiff d(geodesic)/da".into(),
        error: selfcheck::max_abs_error(&gradient, &reference),
        tolerance: GEOMETRY_TOLERANCE,
    }
}
