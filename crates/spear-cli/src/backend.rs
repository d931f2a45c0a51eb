//! The compute backends compiled into this binary, and running a job on the chosen one.
//!
//! Each backend is a cargo feature (`cpu`, `wgpu`, `cuda`); only this crate names concrete burn
//! backends. Every backend is wrapped in `Autodiff`, which costs nothing when no gradient is asked
//! for and lets training run on the same type.

use std::fmt;

use burn::tensor::backend::AutodiffBackend;

/// A compute backend `spear` can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// burn-flex on the CPU, f32.
    Cpu,
    /// WGPU: Vulkan, Metal or DirectX 12 GPUs (and Mesa's lavapipe on the CPU).
    Wgpu,
    /// CUDA on NVIDIA GPUs.
    Cuda,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Cpu => "cpu",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Cuda => "cuda",
        })
    }
}

impl BackendKind {
    /// The backends compiled into this binary, most capable first.
    pub fn compiled() -> Vec<BackendKind> {
        [
            (cfg!(feature = "cuda"), BackendKind::Cuda),
            (cfg!(feature = "wgpu"), BackendKind::Wgpu),
            (cfg!(feature = "cpu"), BackendKind::Cpu),
        ]
        .into_iter()
        .filter_map(|(on, kind)| on.then_some(kind))
        .collect()
    }

    /// The hardware the backend runs on, where the backend can say more than its device name:
    /// for WGPU, the adapter that burn's default device picks (the high-performance one), so that
    /// a user sees whether it is their GPU or a CPU fallback such as lavapipe.
    pub fn adapter(self) -> Option<String> {
        match self {
            #[cfg(feature = "wgpu")]
            BackendKind::Wgpu => {
                // Vulkan / Metal / DX12, as cubecl-wgpu uses; not GL, whose probe only adds noise.
                let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
                    backends: wgpu::Backends::PRIMARY,
                    ..wgpu::InstanceDescriptor::new_without_display_handle()
                });
                let options = wgpu::RequestAdapterOptions {
                    power_preference: wgpu::PowerPreference::HighPerformance,
                    ..Default::default()
                };
                Some(match pollster::block_on(instance.request_adapter(&options)) {
                    Ok(adapter) => {
                        let info = adapter.get_info();
                        format!(
                            "{} ({:?}, {:?}; driver {} {})",
                            info.name, info.device_type, info.backend, info.driver, info.driver_info
                        )
                    }
                    Err(e) => format!("none found ({e})"),
                })
            }
            _ => None,
        }
    }

    /// What the backend is, for humans: the burn backend and the device it runs on.
    pub fn describe(self) -> &'static str {
        match self {
            BackendKind::Cpu => "burn-flex (CPU, multi-threaded, SIMD)",
            BackendKind::Wgpu => "burn-wgpu (CubeCL over wgpu: Vulkan / Metal / DX12)",
            BackendKind::Cuda => "burn-cuda (CubeCL over CUDA)",
        }
    }
}

/// Directories where Vulkan loaders look for installed drivers (ICD manifests).
const VULKAN_ICD_DIRS: [&str; 3] =
    ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d", "/usr/local/share/vulkan/icd.d"];

/// Whether a Vulkan driver is installed (an ICD manifest in a standard place, or
/// `VK_ICD_FILENAMES` set). WGPU needs one on Linux; Mesa's lavapipe is one that runs on the CPU.
pub fn vulkan_driver_installed() -> bool {
    std::env::var_os("VK_ICD_FILENAMES").is_some()
        || VULKAN_ICD_DIRS
            .iter()
            .any(|dir| std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()))
}

/// Work that runs on whichever backend the user picked. Subcommands implement it once,
/// generically, and [`run_on`] monomorphises it for the compiled backends.
pub trait BackendJob {
    /// What the job returns.
    type Output;
    /// Runs the job on backend `B`, device `device`.
    fn run<B: AutodiffBackend>(self, kind: BackendKind, device: B::Device) -> Self::Output;
}

/// Runs `job` on `kind`, or errors when `kind` was not compiled in.
pub fn run_on<J: BackendJob>(kind: BackendKind, job: J) -> anyhow::Result<J::Output> {
    match kind {
        #[cfg(feature = "cpu")]
        BackendKind::Cpu => {
            Ok(job.run::<burn::backend::Autodiff<burn::backend::Flex>>(kind, Default::default()))
        }
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => {
            Ok(job.run::<burn::backend::Autodiff<burn::backend::Wgpu>>(kind, Default::default()))
        }
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => {
            Ok(job.run::<burn::backend::Autodiff<burn::backend::Cuda>>(kind, Default::default()))
        }
        #[allow(unreachable_patterns)]
        other => anyhow::bail!(
            "this spear binary was built without the `{other}` backend (compiled: {}); rebuild with \
             `cargo xtask <command> --backend {other}` or `--features {other}`",
            BackendKind::compiled().iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        ),
    }
}
