//! `spear doctor` passes on the backends CI has, and the binary reports it; the binary chooses a
//! backend that works here and refuses, without panicking, one that cannot run.

use burn::backend::{Autodiff, Flex};
use spear_cli::commands::doctor;

mod common;
use common::{run_spear, spear_output};

#[test]
fn doctor_passes_on_the_cpu_backend() {
    let report = doctor::run::<Autodiff<Flex>>(&Default::default());
    assert!(report.passed(), "{report}");
    assert!(report.checks.len() >= 10, "{report}");
    assert_eq!(report.float, "f32");
}

/// WGPU runs through Mesa's lavapipe in CI; elsewhere where an adapter opens. The test command
/// builds `spear` with the `wgpu` feature, so this goes through the binary's dispatch.
#[test]
fn doctor_passes_on_the_wgpu_backend_and_names_the_adapter() {
    if !common::wgpu_tests_run() {
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
    assert!(
        stderr.contains("--backend cuda cannot run here: no `cuda` backend in this spear binary")
            && stderr.contains("cargo xtask <command> --backend cuda"),
        "{stderr}"
    );
}

/// The Vulkan loader pointed at a driver list that does not exist: no adapter, as on a machine
/// without a Vulkan driver, whatever this one has installed.
const NO_VULKAN_DRIVER: [(&str, &str); 2] = [
    ("VK_DRIVER_FILES", "/nonexistent/spear-no-icd.json"),
    ("VK_ICD_FILENAMES", "/nonexistent/spear-no-icd.json"),
];

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn auto_runs_on_the_cpu_when_no_gpu_adapter_opens_and_says_why() {
    let out = spear_output(&["doctor"], &NO_VULKAN_DRIVER);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("backend    cpu"), "{stdout}");
    let line = stderr.lines().find(|l| l.starts_with("spear: backend ")).unwrap_or_default();
    assert!(line.starts_with("spear: backend cpu ("), "{stderr}");
    if cfg!(feature = "wgpu") {
        assert!(line.contains("wgpu: no WGPU adapter") && line.contains("VK_DRIVER_FILES"), "{line}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Every command that computes goes through the same choice; these are three of them, refused
/// before any file is read.
#[test]
fn an_explicit_wgpu_backend_without_an_adapter_is_a_clear_error_not_an_abort() {
    if !cfg!(feature = "wgpu") {
        eprintln!("skipped: spear was built without the wgpu feature (the README's test command enables it)");
        return;
    }
    let commands: [&[&str]; 3] = [
        &["doctor"],
        &["train", "vla", "--dry-run"],
        &[
            "policy",
            "act",
            "--checkpoint",
            "/nonexistent",
            "--image",
            "x.png",
            "--state",
            "0",
            "--prompt",
            "p",
        ],
    ];
    for command in commands {
        let args = [&["--backend", "wgpu"], command].concat();
        let out = spear_output(&args, &NO_VULKAN_DRIVER);
        let stderr = text(&out.stderr);
        // 1 is anyhow's error exit; a panic gives 101 and the old abort 134 (SIGABRT).
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        for wanted in
            ["--backend wgpu cannot run here: no WGPU adapter", "mesa-vulkan-drivers", "--backend auto"]
        {
            assert!(stderr.contains(wanted), "{args:?}: {wanted:?} missing from {stderr}");
        }
        assert!(!stderr.contains("panicked") && !stderr.contains("double free"), "{args:?}: {stderr}");
    }
}

/// Without the Vulkan loader restricted, `auto` decides as spear-device's probe finds this machine:
/// a WGPU adapter on a GPU is taken, lavapipe (CI) is passed over for the CPU backend, no adapter
/// means the CPU.
#[test]
fn auto_takes_a_gpu_adapter_and_passes_over_a_cpu_emulated_one() {
    let out = spear_output(&["doctor"], &[]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    #[cfg(feature = "wgpu")]
    let (kind, reason) = match spear_device::wgpu::adapter() {
        Ok(adapter) if adapter.is_cpu() => ("cpu", "the CPU emulating a GPU".to_string()),
        Ok(adapter) => ("wgpu", adapter.to_string()),
        Err(_) => ("cpu", "wgpu: no WGPU adapter".to_string()),
    };
    #[cfg(not(feature = "wgpu"))]
    let (kind, reason) = ("cpu", "the only backend".to_string());
    assert!(stdout.contains(&format!("backend    {kind}")), "{stdout}");
    let line = stderr.lines().find(|l| l.starts_with("spear: backend ")).unwrap_or_default();
    assert!(line.starts_with(&format!("spear: backend {kind} (")) && line.contains(&reason), "{stderr}");
}
