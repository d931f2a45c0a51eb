#![doc = include_str!("../README.md")]

#[cfg(feature = "cuda")]
pub mod cuda;
#[cfg(feature = "wgpu")]
pub mod wgpu;

/// A backend's device that was looked for and is not here: what was looked for, what the probe
/// got instead, and what would provide one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no {looked_for}: {found}. {remedy}")]
pub struct Unavailable {
    /// What was looked for, e.g. "WGPU adapter (Vulkan, high performance)".
    pub looked_for: String,
    /// What the probe found instead, in the driver's words where it has some.
    pub found: String,
    /// What provides such a device.
    pub remedy: String,
}

/// Runs `probe`, turning a panic inside it into an error carrying the panic's message, without
/// printing it. For driver libraries whose "not installed" is a panic rather than an error
/// (cudarc when libcuda is absent). Swapping the process's panic hook is global, so this is
/// meant for probes that run once, before the work starts.
#[cfg(any(feature = "cuda", test))]
fn catch_panic<T>(probe: impl FnOnce() -> T + std::panic::UnwindSafe) -> Result<T, String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(probe);
    std::panic::set_hook(hook);
    result.map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the driver library panicked".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_probe_becomes_its_message() {
        assert_eq!(catch_panic(|| 7), Ok(7));
        assert_eq!(catch_panic(|| -> u8 { panic!("no libcuda") }), Err("no libcuda".to_string()));
        let code = 3;
        assert_eq!(
            catch_panic(|| -> u8 { panic!("library {code} missing") }),
            Err("library 3 missing".to_string())
        );
    }

    #[test]
    fn unavailable_says_what_was_looked_for_what_came_back_and_the_remedy() {
        let e = Unavailable {
            looked_for: "WGPU adapter (Vulkan)".into(),
            found: "the Vulkan loader found no driver".into(),
            remedy: "Install one.".into(),
        };
        assert_eq!(
            e.to_string(),
            "no WGPU adapter (Vulkan): the Vulkan loader found no driver. Install one."
        );
    }
}
