//! Running the `spear` binary that cargo built for the integration tests, and the fixtures it reads.

/// spear-models' test fixtures (tiny PaliGemma, π0, MoGe checkpoints).
#[allow(dead_code)] // not every test file uses it
pub fn fixtures() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../spear-models/tests/fixtures")
}

/// Saves a tiny random SPEAR-1 (seeded) into `dir` with the tiny PaliGemma tokenizer.
#[allow(dead_code)] // not every test file uses it
pub fn save_tiny_spear1(dir: &std::path::Path, seed: u64) {
    use burn::backend::Flex;
    use burn::prelude::Backend;
    let device = Default::default();
    Flex::seed(&device, seed);
    let policy = spear_models::SpearPolicyConfig::tiny().init::<Flex>(&device).unwrap();
    spear_models::store::save_policy(&policy, dir).unwrap();
    std::fs::copy(fixtures().join("paligemma-tiny/tokenizer.json"), dir.join("tokenizer.json")).unwrap();
}

/// Whether a test of the binary's WGPU backend should run: the feature compiled in (the README's
/// test command enables it) and an adapter here ([`spear_device::wgpu::test_should_run`]).
#[allow(dead_code)] // not every test file uses it
pub fn wgpu_tests_run() -> bool {
    #[cfg(feature = "wgpu")]
    return spear_device::wgpu::test_should_run();
    #[cfg(not(feature = "wgpu"))]
    {
        eprintln!("skipped: spear was built without the wgpu feature (the README's test command enables it)");
        false
    }
}

/// Runs `spear args…`: (success, stdout, stderr).
pub fn run_spear(args: &[&str]) -> (bool, String, String) {
    run_spear_with(args, &[])
}

/// [`run_spear`] with extra environment variables.
pub fn run_spear_with(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = spear_output(args, env);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// The whole output of `spear args…` run with extra environment variables, exit status included.
pub fn spear_output(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_spear"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run spear")
}
