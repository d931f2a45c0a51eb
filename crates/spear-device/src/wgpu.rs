//! The WGPU adapter that burn's default `Wgpu` device would open, found without opening burn.
//!
//! burn-wgpu (cubecl-wgpu 0.10) picks its adapter inside a device thread and panics there when
//! there is none; the panic reaches the caller as a second panic and the process aborts ("double
//! free or corruption"). So a program must know before it touches burn's `Wgpu` whether an
//! adapter exists. [`adapter`] asks the same question cubecl-wgpu asks (the graphics API it uses
//! on this platform, high-performance preference) and also opens a device on the adapter, so a
//! driver that lists an adapter it cannot open counts as none.
//!
//! Not mirrored: cubecl's `CUBECL_WGPU_DEFAULT_DEVICE` override, which selects an adapter by type
//! and index instead; with it set, the adapter probed may differ from the one burn opens.

use std::fmt;
use std::sync::OnceLock;

use burn::backend::wgpu::graphics::{AutoGraphicsApi, GraphicsApi};

use crate::Unavailable;

/// Environment variables that restrict which drivers the Vulkan loader reads, named in the
/// error when set because they are the usual reason a machine with a driver finds none.
const VULKAN_LOADER_VARIABLES: [&str; 4] =
    ["VK_DRIVER_FILES", "VK_ICD_FILENAMES", "VK_LOADER_DRIVERS_SELECT", "VK_LOADER_DRIVERS_DISABLE"];

/// The adapter the probe opened.
#[derive(Debug, Clone)]
pub struct Adapter {
    /// What wgpu reports of it: name, device type, graphics API, driver.
    pub info: ::wgpu::AdapterInfo,
}

impl Adapter {
    /// Whether the adapter is the CPU emulating a GPU (Mesa's lavapipe, SwiftShader): it computes
    /// correctly but is slower than burn's own CPU backend.
    pub fn is_cpu(&self) -> bool {
        self.info.device_type == ::wgpu::DeviceType::Cpu
    }
}

impl fmt::Display for Adapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.info;
        write!(f, "{} ({:?}, {:?}; driver {} {})", i.name, i.device_type, i.backend, i.driver, i.driver_info)
    }
}

/// The adapter burn's default WGPU device would use, probed once per process (later calls return
/// the first answer).
pub fn adapter() -> Result<&'static Adapter, &'static Unavailable> {
    static PROBE: OnceLock<Result<Adapter, Unavailable>> = OnceLock::new();
    PROBE.get_or_init(probe).as_ref()
}

fn probe() -> Result<Adapter, Unavailable> {
    let api = AutoGraphicsApi::backend();
    let unavailable = |found: String| Unavailable {
        looked_for: format!("WGPU adapter ({api:?})"),
        found,
        remedy: remedy(api),
    };
    let instance = ::wgpu::Instance::new(::wgpu::InstanceDescriptor {
        backends: api.into(),
        ..::wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let options = ::wgpu::RequestAdapterOptions {
        power_preference: ::wgpu::PowerPreference::HighPerformance,
        ..Default::default()
    };
    let adapter = pollster::block_on(instance.request_adapter(&options)).map_err(|e| {
        unavailable(format!("{}{}", without_unrequested(&e.to_string()), loader_restrictions(api)))
    })?;
    let found = Adapter { info: adapter.get_info() };
    // Opened with the adapter's own limits, as cubecl-wgpu opens it.
    let descriptor = ::wgpu::DeviceDescriptor {
        label: Some("spear-device probe"),
        required_limits: adapter.limits(),
        memory_hints: ::wgpu::MemoryHints::MemoryUsage,
        ..Default::default()
    };
    pollster::block_on(adapter.request_device(&descriptor))
        .map_err(|e| unavailable(format!("{found} was listed but did not open: {e}")))?;
    Ok(found)
}

/// wgpu's "no adapter" message lists every graphics API it was built with, mostly "… not
/// requested"; only the requested one says anything.
fn without_unrequested(message: &str) -> String {
    message
        .split([';', ','])
        .map(str::trim)
        .filter(|part| !part.is_empty() && !part.ends_with("not requested"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The Vulkan loader variables set in this environment, as a clause for the error.
fn loader_restrictions(api: ::wgpu::Backend) -> String {
    if api != ::wgpu::Backend::Vulkan {
        return String::new();
    }
    let set: Vec<String> = VULKAN_LOADER_VARIABLES
        .iter()
        .filter_map(|name| std::env::var(name).ok().map(|value| format!("{name}={value:?}")))
        .collect();
    if set.is_empty() {
        String::new()
    } else {
        format!(" (the Vulkan loader's search is restricted by {})", set.join(", "))
    }
}

fn remedy(api: ::wgpu::Backend) -> String {
    match api {
        ::wgpu::Backend::Metal => "WGPU uses Metal on macOS, and this Mac's GPU did not answer".into(),
        _ => "WGPU needs a Vulkan driver: the GPU's own (NVIDIA, AMD, Intel), or Mesa's lavapipe, which \
              runs on the CPU (Debian/Ubuntu: apt-get install mesa-vulkan-drivers libvulkan1)"
            .into(),
    }
}

/// Whether a WGPU test should run on this machine, for test suites that skip WGPU tests where no
/// adapter exists. With an adapter: true. Without one: false, after printing the reason as the
/// test's skip message, unless the environment variable `SPEAR_REQUIRE_WGPU` is set (`.ci/run`
/// sets it where it installed lavapipe); then a missing adapter fails the test, so WGPU tests
/// cannot skip silently where they are meant to run.
pub fn test_should_run() -> bool {
    match adapter() {
        Ok(_) => true,
        Err(why) if std::env::var_os("SPEAR_REQUIRE_WGPU").is_some() => {
            panic!("SPEAR_REQUIRE_WGPU is set but there is {why}")
        }
        Err(why) => {
            eprintln!("skipped: {why}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_no_adapter_message_keeps_what_the_requested_api_said() {
        let wgpu29 = "No suitable graphics adapter found; noop not requested, vulkan drivers/libraries could \
                      not be loaded, metal not requested, dx12 not requested, gl not requested, webgpu not requested";
        assert_eq!(
            super::without_unrequested(wgpu29),
            "No suitable graphics adapter found; vulkan drivers/libraries could not be loaded"
        );
        assert_eq!(super::without_unrequested("device lost"), "device lost");
    }
}
