//! Running the `spear` binary that cargo built for the integration tests, and the fixtures it reads.

/// spear-models' test fixtures (tiny PaliGemma, π0, MoGe checkpoints).
#[allow(dead_code)] // not every test file uses it
pub fn fixtures() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../spear-models/tests/fixtures")
}

/// Runs `spear args…`: (success, stdout, stderr).
pub fn run_spear(args: &[&str]) -> (bool, String, String) {
    run_spear_with(args, &[])
}

/// [`run_spear`] with extra environment variables.
pub fn run_spear_with(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_spear"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run spear");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}
