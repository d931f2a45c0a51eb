//! The CUDA devices burn's `Cuda` backend would use, counted without opening burn.
//!
//! burn-cuda (cubecl-cuda 0.10) initialises the driver inside a device thread with `unwrap`, so a
//! machine without the driver library or without a GPU aborts the process. [`devices`] asks the
//! driver first, the way cubecl-cuda will (cudarc's driver API), and reports what is missing.

use std::fmt;
use std::sync::OnceLock;

use cudarc::driver::result;

use crate::{Unavailable, catch_panic};

/// The CUDA devices the driver lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Devices {
    /// Their names, in ordinal order (burn's default device is the first).
    pub names: Vec<String>,
}

impl fmt::Display for Devices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.names.as_slice() {
            [one] => write!(f, "{one}"),
            [first, ..] => write!(f, "{first} (device 0 of {})", self.names.len()),
            [] => f.write_str("no device"),
        }
    }
}

/// The CUDA devices of this machine, probed once per process (later calls return the first answer).
pub fn devices() -> Result<&'static Devices, &'static Unavailable> {
    static PROBE: OnceLock<Result<Devices, Unavailable>> = OnceLock::new();
    PROBE.get_or_init(probe).as_ref()
}

fn probe() -> Result<Devices, Unavailable> {
    let unavailable = |found: String| Unavailable {
        looked_for: "CUDA device".into(),
        found,
        remedy: "CUDA needs an NVIDIA GPU and its driver (`nvidia-smi` lists the GPU; the driver \
                 provides libcuda.so, which must be on the loader's path)"
            .into(),
    };
    // cudarc loads libcuda on first use and panics when it cannot: that panic is the message for
    // "no driver installed".
    let listed = catch_panic(|| -> Result<Vec<String>, result::DriverError> {
        result::init()?;
        (0..result::device::get_count()?)
            .map(|i| result::device::get(i).and_then(result::device::get_name))
            .collect()
    });
    match listed {
        Err(panic) => {
            let message = panic.split(" - searched").next().unwrap_or(&panic);
            Err(unavailable(format!("the CUDA driver library could not be loaded ({message})")))
        }
        Ok(Err(e)) => Err(unavailable(format!("the CUDA driver answered {e}"))),
        Ok(Ok(names)) if names.is_empty() => Err(unavailable("the CUDA driver lists no device".into())),
        Ok(Ok(names)) => Ok(Devices { names }),
    }
}
