//! Running the `spear` binary that cargo built for the integration tests.

/// Runs `spear args…`: (success, stdout, stderr).
pub fn run_spear(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_spear")).args(args).output().expect("run spear");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}
