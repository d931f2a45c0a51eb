//! The compute backends compiled into this binary, the choice of one that works on this machine,
//! and running a job on it.
//!
//! Each backend is a cargo feature (`cpu`, `wgpu`, `cuda`); only this crate names concrete burn
//! backends. Every backend is wrapped in `Autodiff`, which costs nothing when no gradient is asked
//! for and lets training run on the same type.
//!
//! burn's GPU backends abort the process when their device is missing (a panic in their device
//! thread), so no job reaches them before `spear-device` has found their device: `--backend auto`
//! skips a backend without one, and a backend named explicitly is refused with what was looked for.

use std::fmt;
use std::sync::OnceLock;

use anyhow::bail;
use burn::tensor::backend::AutodiffBackend;
use clap::builder::PossibleValue;
use spear_device::Unavailable;

/// A compute backend `spear` can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
        f.write_str(self.name())
    }
}

impl BackendKind {
    /// The name `--backend` and the cargo feature use.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Cpu => "cpu",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Cuda => "cuda",
        }
    }

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

    /// What the backend is, for humans: the burn backend and the device it runs on.
    pub fn describe(self) -> &'static str {
        match self {
            BackendKind::Cpu => "burn-flex (CPU, multi-threaded, SIMD)",
            BackendKind::Wgpu => "burn-wgpu (CubeCL over wgpu: Vulkan / Metal / DX12)",
            BackendKind::Cuda => "burn-cuda (CubeCL over CUDA)",
        }
    }

    /// Whether this backend can run here, and on what. Probed once per process by `spear-device`,
    /// without touching burn (whose GPU backends abort when their device is missing).
    pub fn availability(self) -> Availability {
        match self {
            BackendKind::Cpu => Availability::Ready(None),
            #[cfg(feature = "wgpu")]
            BackendKind::Wgpu => match spear_device::wgpu::adapter() {
                Ok(adapter) if adapter.is_cpu() => Availability::Emulated(adapter.to_string()),
                Ok(adapter) => Availability::Ready(Some(adapter.to_string())),
                Err(why) => Availability::Missing(why.clone()),
            },
            #[cfg(feature = "cuda")]
            BackendKind::Cuda => match spear_device::cuda::devices() {
                Ok(devices) => Availability::Ready(Some(devices.to_string())),
                Err(why) => Availability::Missing(why.clone()),
            },
            #[allow(unreachable_patterns)]
            _ => Availability::Missing(Unavailable {
                looked_for: format!("`{self}` backend in this spear binary"),
                found: format!(
                    "it was built with {}",
                    BackendKind::compiled().iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                ),
                remedy: format!(
                    "Rebuild it with `cargo xtask <command> --backend {self}` or `--features {self}`"
                ),
            }),
        }
    }

    /// The device the backend runs on here where it names one: WGPU's adapter (the user's GPU, or
    /// a CPU fallback such as lavapipe) and CUDA's GPU.
    pub fn device(self) -> Option<String> {
        match self.availability() {
            Availability::Ready(device) => device,
            Availability::Emulated(device) => Some(device),
            Availability::Missing(_) => None,
        }
    }
}

/// Whether a backend can run on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// It runs, on the device named (`None` for the CPU backend, which needs none).
    Ready(Option<String>),
    /// It runs, but on the CPU emulating a GPU (WGPU on lavapipe): correct, and slower than the
    /// CPU backend, so `auto` passes it over when the CPU backend is compiled in.
    Emulated(String),
    /// It cannot run here: what was looked for, what came back, and what would provide it.
    Missing(Unavailable),
}

/// What `--backend` asks for: a backend by name, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// A CUDA device, else a WGPU adapter on a real GPU, else the CPU (among those compiled in).
    #[default]
    Auto,
    /// This backend, or an error saying why it cannot run here.
    Only(BackendKind),
}

impl clap::ValueEnum for BackendChoice {
    fn value_variants<'a>() -> &'a [Self] {
        use BackendKind::*;
        &[BackendChoice::Auto, BackendChoice::Only(Cpu), BackendChoice::Only(Wgpu), BackendChoice::Only(Cuda)]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            BackendChoice::Auto => PossibleValue::new("auto")
                .help("a CUDA device, else a WGPU adapter on a GPU, else the CPU, among those compiled in"),
            BackendChoice::Only(kind) => PossibleValue::new(kind.name()).help(kind.describe()),
        })
    }
}

/// The backend a command runs on, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// The backend.
    pub kind: BackendKind,
    /// Why it was chosen, for the one line `auto` prints: the device it found, and why each more
    /// capable backend was passed over.
    pub reason: String,
}

/// Resolves `choice` on this machine. `auto` is decided once per process and said on stderr in one
/// line; a backend named explicitly that cannot run here is an error saying what was looked for
/// and how to get it.
pub fn select(choice: BackendChoice) -> anyhow::Result<BackendKind> {
    match choice {
        BackendChoice::Auto => {
            static AUTO: OnceLock<Result<Selected, String>> = OnceLock::new();
            let mut first = false;
            let selected = AUTO.get_or_init(|| {
                first = true;
                choose_auto(&BackendKind::compiled(), BackendKind::availability)
            });
            match selected {
                Ok(s) => {
                    if first {
                        eprintln!("spear: backend {} ({})", s.kind, s.reason);
                    }
                    Ok(s.kind)
                }
                Err(why) => bail!("{why}"),
            }
        }
        BackendChoice::Only(kind) => match kind.availability() {
            Availability::Missing(why) => bail!(
                "--backend {kind} cannot run here: {why}. Or run on another backend: `--backend auto` \
                     picks one that works on this machine"
            ),
            Availability::Ready(_) | Availability::Emulated(_) => Ok(kind),
        },
    }
}

/// `auto`'s decision over `compiled` (most capable first), given each backend's availability: the
/// first that is ready; a CPU-emulated GPU only when no CPU backend is compiled in.
pub fn choose_auto(
    compiled: &[BackendKind],
    availability: impl Fn(BackendKind) -> Availability,
) -> Result<Selected, String> {
    // Why each backend before the chosen one was passed over.
    let mut passed_over: Vec<(BackendKind, String)> = Vec::new();
    let mut emulated = None;
    let reason = |device: Option<String>, passed_over: Vec<(BackendKind, String)>| {
        let parts: Vec<String> =
            device.into_iter().chain(passed_over.into_iter().map(|(_, why)| why)).collect();
        if parts.is_empty() {
            "the only backend this spear binary was built with".into()
        } else {
            parts.join("; ")
        }
    };
    for &kind in compiled {
        match availability(kind) {
            Availability::Ready(device) => return Ok(Selected { kind, reason: reason(device, passed_over) }),
            Availability::Emulated(device) => {
                passed_over.push((
                    kind,
                    format!(
                        "{kind} only finds {device}, the CPU emulating a GPU, slower than the cpu backend \
                         (`--backend {kind}` uses it)"
                    ),
                ));
                emulated.get_or_insert((kind, device));
            }
            Availability::Missing(why) => {
                passed_over.push((kind, format!("{kind}: no {} ({})", why.looked_for, why.found)))
            }
        }
    }
    match emulated {
        Some((kind, device)) => {
            passed_over.retain(|(k, _)| *k != kind);
            let device = format!("{device}, the only device found");
            Ok(Selected { kind, reason: reason(Some(device), passed_over) })
        }
        None => Err(format!(
            "no backend of this spear binary can run here ({}); a binary with the cpu backend \
             (`cargo xtask <command> --backend cpu`) runs anywhere",
            passed_over.into_iter().map(|(_, why)| why).collect::<Vec<_>>().join("; ")
        )),
    }
}

/// Work that runs on whichever backend the user picked. Subcommands implement it once,
/// generically, and [`run_on`] monomorphises it for the compiled backends.
pub trait BackendJob {
    /// What the job returns.
    type Output;
    /// Runs the job on backend `B`, device `device`.
    fn run<B: AutodiffBackend>(self, kind: BackendKind, device: B::Device) -> Self::Output;
}

/// Runs `job` on the backend `choice` resolves to ([`select`]), or errors when that backend was not
/// compiled in or cannot run here.
pub fn run_on<J: BackendJob>(choice: BackendChoice, job: J) -> anyhow::Result<J::Output> {
    let kind = select(choice)?;
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
        other => unreachable!("select returned `{other}`, which is not compiled in"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BackendKind::*;

    fn machine(cuda: Availability, wgpu: Availability) -> impl Fn(BackendKind) -> Availability {
        move |kind| match kind {
            Cuda => cuda.clone(),
            Wgpu => wgpu.clone(),
            Cpu => Availability::Ready(None),
        }
    }

    fn missing(looked_for: &str, found: &str) -> Availability {
        Availability::Missing(Unavailable {
            looked_for: looked_for.into(),
            found: found.into(),
            remedy: "Install it".into(),
        })
    }

    #[test]
    fn auto_takes_the_most_capable_backend_with_a_device() {
        let gpu = machine(Availability::Ready(Some("H100".into())), Availability::Ready(Some("RTX".into())));
        let s = choose_auto(&[Cuda, Wgpu, Cpu], &gpu).unwrap();
        assert_eq!((s.kind, s.reason.as_str()), (Cuda, "H100"));
        let s = choose_auto(&[Wgpu, Cpu], &gpu).unwrap();
        assert_eq!((s.kind, s.reason.as_str()), (Wgpu, "RTX"));
        let no_cuda = machine(missing("CUDA device", "no driver"), Availability::Ready(Some("RTX".into())));
        let s = choose_auto(&[Cuda, Wgpu, Cpu], &no_cuda).unwrap();
        assert_eq!((s.kind, s.reason.as_str()), (Wgpu, "RTX; cuda: no CUDA device (no driver)"));
    }

    #[test]
    fn auto_falls_back_to_the_cpu_and_says_why() {
        let bare = machine(
            missing("CUDA device", "no driver"),
            missing("WGPU adapter (Vulkan)", "no Vulkan driver"),
        );
        let s = choose_auto(&[Cuda, Wgpu, Cpu], &bare).unwrap();
        assert_eq!(s.kind, Cpu);
        assert_eq!(
            s.reason,
            "cuda: no CUDA device (no driver); wgpu: no WGPU adapter (Vulkan) (no Vulkan driver)"
        );
        let s = choose_auto(&[Cpu], &bare).unwrap();
        assert_eq!((s.kind, s.reason.as_str()), (Cpu, "the only backend this spear binary was built with"));
    }

    #[test]
    fn auto_passes_over_lavapipe_unless_it_is_all_there_is() {
        let lavapipe =
            machine(missing("CUDA device", "none"), Availability::Emulated("llvmpipe (Cpu)".into()));
        let s = choose_auto(&[Wgpu, Cpu], &lavapipe).unwrap();
        assert_eq!(s.kind, Cpu);
        assert!(s.reason.starts_with("wgpu only finds llvmpipe (Cpu), the CPU emulating"), "{}", s.reason);
        let s = choose_auto(&[Cuda, Wgpu], &lavapipe).unwrap();
        assert_eq!(
            (s.kind, s.reason.as_str()),
            (Wgpu, "llvmpipe (Cpu), the only device found; cuda: no CUDA device (none)")
        );
    }

    #[test]
    fn auto_without_any_usable_backend_is_an_error_naming_each() {
        let bare = machine(missing("CUDA device", "no driver"), missing("WGPU adapter", "no Vulkan"));
        let e = choose_auto(&[Cuda, Wgpu], &bare).unwrap_err();
        assert!(
            e.contains("cuda: no CUDA device (no driver); wgpu: no WGPU adapter (no Vulkan)")
                && e.contains("--backend cpu"),
            "{e}"
        );
    }

    #[test]
    fn backend_choices_parse_as_the_command_line_spells_them() {
        use clap::ValueEnum;
        assert_eq!(BackendChoice::from_str("auto", false), Ok(BackendChoice::Auto));
        assert_eq!(BackendChoice::from_str("wgpu", false), Ok(BackendChoice::Only(Wgpu)));
        assert_eq!(BackendChoice::from_str("cuda", false), Ok(BackendChoice::Only(Cuda)));
        assert!(BackendChoice::from_str("metal", false).is_err());
    }
}
