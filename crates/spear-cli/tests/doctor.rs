//! `spear doctor` passes on the backends CI has, and the binary reports it.

use burn::backend::{Autodiff, Flex};
use spear_cli::doctor;

mod common;
use common::run_spear;

#[test]
fn doctor_passes_on_the_cpu_backend() {
    let report = doctor::run::<Autodiff<Flex>>(&Default::default());
    assert!(report.passed(), "{report}");
    assert!(report.checks.len() >= 10, "{report}");
    assert_eq!(report.float, "f32");
}

/// WGPU runs through Mesa's lavapipe in CI; elsewhere when a Vulkan driver is installed. The test
/// command builds `spear` with the `wgpu` feature, so this goes through the binary's dispatch.
#[test]
fn doctor_passes_on_the_wgpu_backend_and_names_the_adapter() {
    if !cfg!(feature = "wgpu") {
        eprintln!("skipped: spear was built without the wgpu feature (the README's test command enables it)");
        return;
    }
    if !spear_cli::backend::vulkan_driver_installed() && std::env::var_os("CI").is_none() {
        eprintln!("skipped: no Vulkan driver (apt-get install mesa-vulkan-drivers runs this on the CPU)");
        return;
    }
    let (ok, stdout, stderr) = run_spear(&["doctor", "--backend", "wgpu"]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.lines().any(|l| l.starts_with("  adapter ")), "{stdout}");
    assert!(stdout.lines().last().is_some_and(|l| l.starts_with("PASS")), "{stdout}");
}

#[test]
fn the_binary_prints_pass_and_exits_zero() {
    let (ok, stdout, stderr) = run_spear(&["doctor", "--backend", "cpu"]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("backend    cpu"), "{stdout}");
    assert!(stdout.lines().last().is_some_and(|l| l.starts_with("PASS")), "{stdout}");
}

#[test]
fn a_backend_that_was_not_compiled_in_is_refused_with_a_hint() {
    let (ok, _, stderr) = run_spear(&["doctor", "--backend", "cuda"]);
    assert!(!ok);
    assert!(stderr.contains("without the `cuda` backend") && stderr.contains("cargo xtask"), "{stderr}");
}
