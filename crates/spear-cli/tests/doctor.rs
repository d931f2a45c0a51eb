//! `spear doctor` passes on the backends CI has, and the binary reports it.

use burn::backend::{Autodiff, Flex, Wgpu};
use spear_cli::doctor;

#[test]
fn doctor_passes_on_the_cpu_backend() {
    let report = doctor::run::<Autodiff<Flex>>(&Default::default());
    assert!(report.passed(), "{report}");
    assert!(report.checks.len() >= 10, "{report}");
    assert_eq!(report.float, "f32");
}

/// WGPU runs through Mesa's lavapipe in CI; elsewhere when a Vulkan driver is installed.
#[test]
fn doctor_passes_on_the_wgpu_backend() {
    if !spear_cli::backend::vulkan_driver_installed() && std::env::var_os("CI").is_none() {
        eprintln!("skipped: no Vulkan driver (apt-get install mesa-vulkan-drivers runs this on the CPU)");
        return;
    }
    let report = doctor::run::<Autodiff<Wgpu>>(&Default::default());
    assert!(report.passed(), "{report}");
}

#[test]
fn the_binary_prints_pass_and_exits_zero() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_spear"))
        .args(["doctor", "--backend", "cpu"])
        .output()
        .expect("run spear");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("backend    cpu"), "{stdout}");
    assert!(stdout.lines().last().is_some_and(|l| l.starts_with("PASS")), "{stdout}");
}

#[test]
fn a_backend_that_was_not_compiled_in_is_refused_with_a_hint() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_spear"))
        .args(["doctor", "--backend", "cuda"])
        .output()
        .expect("run spear");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("without the `cuda` backend") && stderr.contains("cargo xtask"), "{stderr}");
}
