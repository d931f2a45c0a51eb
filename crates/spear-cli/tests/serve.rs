//! `spear serve` through the binary: a tiny SPEAR-1 export and a tiny π0 served on 127.0.0.1,
//! probed by `spear serve --probe` and by openpi's own Python client (openpi-client 0.1.2, from the
//! virtualenv `.ci/run` creates) with SPEAR-1-, DROID-, LIBERO- and ALOHA-shaped observations,
//! stopped by SIGTERM; a checkpoint of another action space refused.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use spear_data::loader::Normalization;
use spear_policy::PolicySpec;

mod common;
use common::{fixtures, run_spear, save_tiny_spear1};

/// A tiny random SPEAR-1 export: weights, config, tokenizer, identity normalisers, policy.json.
fn tiny_export() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("spear-cli-serve-{}", std::process::id()));
        save_tiny_spear1(&dir, 3);
        Normalization::default().write_file(&dir.join(Normalization::FILE_NAME)).unwrap();
        let spec = PolicySpec { rate_hz: Some(5.0), ..PolicySpec::spear(2) };
        spec.write_file(&dir.join(PolicySpec::FILE_NAME)).unwrap();
        dir
    })
    .clone()
}

/// A running `spear serve` and the address it listens on.
struct Served {
    child: Child,
    address: String,
    log: BufReader<std::process::ChildStderr>,
}

/// The tiny π0 of spear-serve's DROID fixture (openpi's 32-wide state and actions, 10 actions per
/// chunk) with its norm_stats.json.
fn tiny_pi0() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../spear-serve/tests/fixtures/pi0_droid")
}

impl Served {
    fn start(dir: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_spear"))
            .args(["--backend", "cpu", "serve", "--checkpoint", dir.to_str().unwrap(), "--port", "0"])
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start spear serve");
        let mut log = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        let address = loop {
            line.clear();
            assert!(log.read_line(&mut line).unwrap() > 0, "spear serve ended before listening");
            if let Some(rest) = line.split("ws://").nth(1) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        Self { child, address, log }
    }

    /// SIGTERM, then the exit status and the rest of the log.
    fn stop(mut self) -> (bool, String) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let status = self.child.wait().unwrap();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut self.log, &mut rest).unwrap();
        (status.success(), rest)
    }
}

#[test]
fn probe_and_sigterm() {
    let served = Served::start(&tiny_export(), &[]);
    let (ok, out, err) = run_spear(&["serve", "--probe", &served.address]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("robot         spear") && out.contains("chunk    [5, 8] <f4"), "{out}");
    assert_eq!(out.lines().filter(|l| l.trim_start().starts_with("step ")).count(), 5, "{out}");
    let (ok, log) = served.stop();
    assert!(ok && log.contains("stopped"), "{log}");
}

/// The python of `SPEAR_OPENPI_PYTHON`, or `None` (the test is skipped) when it is not set and
/// `SPEAR_REQUIRE_OPENPI` is not either.
fn openpi_python() -> Option<std::ffi::OsString> {
    let Some(python) = std::env::var_os("SPEAR_OPENPI_PYTHON") else {
        assert!(
            std::env::var_os("SPEAR_REQUIRE_OPENPI").is_none(),
            "SPEAR_REQUIRE_OPENPI is set but SPEAR_OPENPI_PYTHON is not"
        );
        eprintln!(
            "skipped: SPEAR_OPENPI_PYTHON is not set (a python with tools/reference/requirements-serve.txt; .ci/run makes one)"
        );
        return None;
    };
    Some(python)
}

/// tests/serve/real_client.py as `robot`'s client against `served`, which it then stops.
fn real_client(python: &std::ffi::OsStr, served: Served, robot: &str) {
    let (host, port) = served.address.rsplit_once(':').unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/serve/real_client.py");
    let out = Command::new(python)
        .arg(script)
        .args([host, port, robot])
        .env("NO_PROXY", "127.0.0.1,localhost")
        .output()
        .expect("run the openpi client script");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let (ok, log) = served.stop();
    assert!(out.status.success(), "openpi client ({robot}) failed:\n{stdout}\n{stderr}\nserver log:\n{log}");
    assert!(stdout.contains("every check passed"), "{stdout}");
    assert!(ok, "{log}");
}

#[test]
fn openpi_client_against_spear_serve() {
    let Some(python) = openpi_python() else { return };
    real_client(&python, Served::start(&tiny_export(), &["--max-batch", "4"]), "spear");
}

#[test]
fn openpi_client_against_a_pi0_served_as_droid_libero_and_aloha() {
    let Some(python) = openpi_python() else { return };
    let tokenizer = fixtures().join("paligemma-tiny/tokenizer.json");
    let aloha_stats =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../spear-serve/tests/fixtures/aloha/norm_stats.json");
    for (robot, extra) in [
        ("droid", vec![]),
        ("libero", vec![]),
        ("aloha", vec!["--norm-stats", aloha_stats.to_str().unwrap(), "--default-prompt", "fold the towel"]),
    ] {
        let mut args = vec!["--tokenizer", tokenizer.to_str().unwrap(), "--robot", robot, "--max-batch", "4"];
        args.extend(extra);
        real_client(&python, Served::start(&tiny_pi0(), &args), robot);
    }
}

#[test]
fn a_checkpoint_of_another_action_space_is_refused_before_listening() {
    let pi0 = fixtures().join("pi0-tiny");
    let tokenizer = fixtures().join("paligemma-tiny/tokenizer.json");
    let (ok, out, err) = run_spear(&[
        "--backend",
        "cpu",
        "serve",
        "--checkpoint",
        pi0.to_str().unwrap(),
        "--tokenizer",
        tokenizer.to_str().unwrap(),
        "--port",
        "0",
    ]);
    assert!(!ok && !out.contains("ws://") && !err.contains("ws://"), "{out}\n{err}");
    assert!(err.contains("π0 checkpoint") && err.contains("spear"), "{err}");
}

#[test]
fn the_droid_preset_refuses_spear1_and_a_pi0_narrower_than_droid() {
    let export = tiny_export();
    let (ok, _, err) = run_spear(&[
        "--backend",
        "cpu",
        "serve",
        "--checkpoint",
        export.to_str().unwrap(),
        "--robot",
        "droid",
    ]);
    assert!(!ok && err.contains("joint velocities") && err.contains("--robot spear"), "{err}");
    // The tiny π0 fixture's state is 6 wide; DROID sends 8.
    let stats =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../spear-serve/tests/fixtures/droid/norm_stats.json");
    let (ok, _, err) = run_spear(&[
        "--backend",
        "cpu",
        "serve",
        "--checkpoint",
        fixtures().join("pi0-tiny").to_str().unwrap(),
        "--tokenizer",
        fixtures().join("paligemma-tiny/tokenizer.json").to_str().unwrap(),
        "--robot",
        "droid",
        "--norm-stats",
        stats.to_str().unwrap(),
        "--port",
        "0",
    ]);
    assert!(!ok && err.contains("narrower than DROID's 8"), "{err}");
}
