//! `spear train vla` and `spear train vlm` through the binary, on the embedded defaults shrunk to
//! seconds: generated data through the real pipelines, training, export, the closed-loop table,
//! the exported models answering `spear policy act` / `spear vlm ask`, and a run stopped at a
//! checkpoint and resumed writing the uninterrupted run's metrics byte for byte.

use std::path::{Path, PathBuf};

mod common;
use common::{run_spear as spear, run_spear_with};

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("spear-cli-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// `spear train MODEL --out DIR --set …` with the shrunk settings plus `extra`.
fn train(model: &str, dir: &Path, settings: &[&str], extra: &[&str]) -> (bool, String, String) {
    train_on("cpu", model, dir, settings, extra)
}

/// [`train`] on `backend`.
fn train_on(
    backend: &str,
    model: &str,
    dir: &Path,
    settings: &[&str],
    extra: &[&str],
) -> (bool, String, String) {
    let dir = dir.display().to_string();
    let mut args = vec!["--backend", backend, "train", model, "--out", dir.as_str()];
    for s in settings {
        args.extend(["--set", s]);
    }
    args.extend_from_slice(extra);
    // The CPU backend on one thread: burn-flex sums tensors over 64K elements in parallel chunks
    // whose partial sums rayon's adaptive splitting associates, which can change a metric's last
    // bit between two runs; the byte-for-byte comparisons below are about resuming, not about that.
    // (WGPU's reductions are not bit-reproducible either; it has its own test below.)
    run_spear_with(&args, &[("RAYON_NUM_THREADS", "1")])
}

/// `spear policy act` on the export `final_dir` with a run's example frames (`example/`).
fn act_on(
    final_dir: &Path,
    example: &Path,
    state: &str,
    prompt: &str,
    extra: &[&str],
) -> (bool, String, String) {
    let (image, wrist) = (example.join("main.png"), example.join("wrist.png"));
    let checkpoint = final_dir.to_str().unwrap();
    let mut args = vec!["policy", "act", "--checkpoint", checkpoint, "--image", image.to_str().unwrap()];
    args.extend(["--wrist", wrist.to_str().unwrap(), "--state", state, "--prompt", prompt]);
    args.extend_from_slice(extra);
    spear(&args)
}

fn metrics(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap()
}

const VLA: [&str; 11] = [
    "run.batch_size=4",
    "run.log_every=2",
    "run.eval_every=2",
    "run.checkpoint_every=2",
    "optim.warmup_steps=2",
    "data.embedded.episodes=12",
    "data.embedded.val_episodes=4",
    "data.embedded.eval_scenes=2",
    "data.embedded.eval_chunks=2",
    "data.embedded.rotation_angle_deg=90",
    "data.reach.frames=20",
];

#[test]
fn two_devices_train_as_one_device_accumulating_two_micro_batches() {
    // Two data-parallel peers on the CPU, one micro-batch each per step, against one device
    // taking both: the same metrics, byte for byte.
    let mut settings = VLA.to_vec();
    settings.push("run.steps=4");
    let one = temp("vla-accumulated");
    let (ok, out, err) = train("vla", &one, &[&settings[..], &["run.grad_accum=2"]].concat(), &[]);
    assert!(ok, "{out}\n{err}");
    let two = temp("vla-two-devices");
    let (ok, out, err) = train("vla", &two, &settings, &["--devices", "2"]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("| trained |"), "{out}");
    assert_eq!(metrics(&two), metrics(&one), "the metrics of --devices 2 and of run.grad_accum=2");

    // Two processes on 127.0.0.1 (two nodes of one device each): the same metrics again.
    let nodes = temp("vla-two-nodes");
    let outs = on_nodes(2, &nodes, &settings, &[], &[]);
    assert!(outs.iter().all(|(ok, ..)| *ok), "{outs:?}");
    assert!(outs[1].1.contains("node 1 of 2: trained its 1 rank(s) to step 4"), "{}", outs[1].1);
    assert_eq!(metrics(&nodes), metrics(&one), "the metrics of two processes and of run.grad_accum=2");
    assert!(nodes.join("final/model.safetensors").is_file() && nodes.join("data-node1").is_dir());

    // Two processes of two ranks each (a node's ranks summed in process, then the ring, then
    // handed back): one device accumulating four, to rounding (the sums associate otherwise).
    let four = temp("vla-accumulated-four");
    let (ok, out, err) = train("vla", &four, &[&settings[..], &["run.grad_accum=4"]].concat(), &[]);
    assert!(ok, "{out}\n{err}");
    let grid = temp("vla-two-nodes-of-two");
    let two_each: &[&str] = &["--devices", "2"];
    let outs = on_nodes(2, &grid, &settings, &[two_each, two_each], &[]);
    assert!(outs.iter().all(|(ok, ..)| *ok), "{outs:?}");
    let losses = |dir: &Path| -> Vec<f64> {
        metrics(dir)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].as_f64().unwrap())
            .collect()
    };
    let (a, b) = (losses(&four), losses(&grid));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() <= 1e-5 * x.abs(), "losses {a:?} and {b:?}");
    }

    // A batch that does not split over the devices is refused, in the dry run too.
    let (ok, _, err) = train("vla", &temp("vla-three"), &settings, &["--devices", "3", "--dry-run"]);
    assert!(!ok && err.contains("does not split into run.grad_accum 1 × 3 devices"), "{err}");
    let (ok, out, err) = train("vla", &temp("vla-dry"), &settings, &["--devices", "2", "--dry-run"]);
    assert!(ok && out.contains("2 device(s) (1 node(s) × 2): global batch 4, per device 2"), "{out}\n{err}");
    for dir in [one, two, nodes, four, grid] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// ZeRO-1 (`memory.shard_optimizer`) on two CPU peers: the metrics and exported weights of the
/// unsharded run, byte for byte; checkpoints with one optimiser file per rank; a sharded run
/// stopped at a checkpoint resumes to the same metrics, on two devices or on one.
#[test]
fn a_sharded_optimizer_trains_and_resumes_as_the_unsharded_one() {
    let settings = [&VLA[..], &["run.steps=4"]].concat();
    let plain = temp("vla-unsharded");
    let (ok, out, err) = train("vla", &plain, &settings, &["--devices", "2"]);
    assert!(ok, "{out}\n{err}");
    let sharded = temp("vla-sharded");
    let shard = [&settings[..], &["memory.shard_optimizer=true"]].concat();
    let (ok, out, err) = train("vla", &sharded, &shard, &["--devices", "2"]);
    assert!(ok, "{out}\n{err}");
    assert_eq!(metrics(&sharded), metrics(&plain), "sharded and unsharded metrics");
    let weights = |dir: &Path| std::fs::read(dir.join("final/model.safetensors")).unwrap();
    assert!(weights(&sharded) == weights(&plain), "sharded and unsharded exported (EMA) weights differ");
    let last = sharded.join("step-000000004");
    assert!(last.join("optimizer-rank0000.mpk").is_file() && last.join("optimizer-rank0001.mpk").is_file());
    assert!(!last.join("optimizer.mpk").exists());
    // Each rank holds about half of the moments.
    let size = |path: PathBuf| std::fs::metadata(path).unwrap().len() as f64;
    let whole = size(plain.join("step-000000004/optimizer.mpk"));
    for rank in 0..2 {
        let part = size(last.join(format!("optimizer-rank000{rank}.mpk"))) / whole;
        assert!((0.3..0.7).contains(&part), "rank {rank} holds {part:.2} of the optimiser state");
    }

    let resumed = temp("vla-sharded-resumed");
    let half = [&shard[..], &["run.steps=2"]].concat();
    let (ok, out, err) = train("vla", &resumed, &half, &["--devices", "2"]);
    assert!(ok, "{out}\n{err}");
    let one_device = temp("vla-sharded-resumed-on-one");
    copy_dir(&resumed, &one_device);
    let (ok, out, err) = train("vla", &resumed, &shard, &["--devices", "2", "--resume"]);
    assert!(ok, "{out}\n{err}");
    assert_eq!(metrics(&resumed), metrics(&sharded), "a sharded run resumed");
    // On one device the shards are merged (and the step's two micro-batches accumulated).
    let (ok, out, err) =
        train("vla", &one_device, &[&shard[..], &["run.grad_accum=2"]].concat(), &["--resume"]);
    assert!(ok, "{out}\n{err}");
    assert_eq!(metrics(&one_device), metrics(&sharded), "a sharded run resumed on one device");
    for dir in [plain, sharded, resumed, one_device] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Copies a run folder (files and sub-folders).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// `spear train vla` as `count` processes (nodes) on 127.0.0.1 in `dir`, `extra[r]` appended to
/// node r's arguments (when given), each node's output as (success, stdout, stderr). A watchdog
/// kills them all and fails the test when they have not all ended within two minutes.
fn on_nodes(
    count: usize,
    dir: &Path,
    settings: &[&str],
    extra: &[&[&str]],
    until: &[(usize, &dyn Fn() -> bool)],
) -> Vec<(bool, String, String)> {
    let port = spear_train::dist::free_ports(count + 1).unwrap();
    let children: Vec<_> = (0..count)
        .map(|rank| {
            let mut args: Vec<String> =
                ["--backend", "cpu", "train", "vla", "--out"].map(String::from).to_vec();
            args.push(dir.display().to_string());
            for s in settings {
                args.extend(["--set".into(), s.to_string()]);
            }
            let nodes = ["--nnodes", &count.to_string(), "--node-rank", &rank.to_string()].map(String::from);
            args.extend(nodes);
            args.extend(["--master-addr", "127.0.0.1", "--master-port", &port.to_string()].map(String::from));
            args.extend(
                extra
                    .get(rank)
                    .map(|e| e.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                    .unwrap_or_default(),
            );
            std::process::Command::new(env!("CARGO_BIN_EXE_spear"))
                .args(&args)
                .env("RAYON_NUM_THREADS", "1")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut children: Vec<Option<std::process::Child>> = children.into_iter().map(Some).collect();
    let started = std::time::Instant::now();
    let mut killed = vec![false; count];
    loop {
        // Kill node r once its condition holds (a fault injected mid-run).
        for (r, condition) in until {
            if !killed[*r] && condition() {
                children[*r].as_mut().unwrap().kill().unwrap();
                killed[*r] = true;
            }
        }
        if children.iter_mut().all(|c| c.as_mut().unwrap().try_wait().unwrap().is_some()) {
            break;
        }
        if started.elapsed() > std::time::Duration::from_secs(120) {
            for c in children.iter_mut().flatten() {
                let _ = c.kill();
            }
            panic!("the nodes hung: killed after two minutes");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    children
        .iter_mut()
        .map(|c| {
            let out = c.take().unwrap().wait_with_output().unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
        .collect()
}

#[test]
fn a_node_killed_mid_run_stops_the_other_within_the_timeout_and_the_run_resumes_exactly() {
    let mut settings = VLA.to_vec();
    settings.extend(["run.steps=12", "run.log_every=1"]);
    let straight = temp("vla-nodes-straight");
    let (ok, out, err) = train("vla", &straight, &[&settings[..], &["run.grad_accum=2"]].concat(), &[]);
    assert!(ok, "{out}\n{err}");

    // Node 1 is killed once the step-2 checkpoint is written; node 0 stops with a named error.
    let dir = temp("vla-nodes-killed");
    let checkpoint = dir.join("step-000000002");
    let written = || checkpoint.is_dir();
    let timeout: &[&str] = &["--dist-timeout", "20"];
    let started = std::time::Instant::now();
    let outs = on_nodes(2, &dir, &settings, &[timeout, timeout], &[(1, &written)]);
    let (ok, _, err) = &outs[0];
    assert!(!ok, "node 0 went on without node 1");
    assert!(err.contains("rank 0 of 2") && err.contains("step ") && err.contains("node 1"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "{:?}", started.elapsed());
    assert!(!dir.join("step-000000012").exists(), "the kill came after the run's end");

    // Both resume from the last checkpoint into the uninterrupted run's metrics.
    let outs = on_nodes(2, &dir, &settings, &[&["--resume"], &["--resume"]], &[]);
    assert!(outs.iter().all(|(ok, ..)| *ok), "{outs:?}");
    assert_eq!(metrics(&dir), metrics(&straight), "resumed on two nodes against one device, uninterrupted");

    // Nodes that disagree on the config refuse to train together, each saying what differs.
    let refused = temp("vla-nodes-differ");
    let outs = on_nodes(2, &refused, &settings, &[&[], &["--set", "run.seed=9"]], &[]);
    for (ok, _, err) in &outs {
        assert!(!ok && err.contains("differ in their config (rank 1 against rank 0's)"), "{err}");
    }
    assert!(!refused.join("step-000000002").exists());
    for dir in [straight, dir, refused] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn the_embedded_vla_default_trains_evaluates_exports_and_resumes_exactly() {
    let straight = temp("vla-straight");
    let mut settings = VLA.to_vec();
    settings.push("run.steps=4");
    let (ok, out, err) = train("vla", &straight, &settings, &[]);
    assert!(ok, "{out}\n{err}");
    for row in ["| trained |", "| untrained |", "| mean action |", "| demonstrator |"] {
        assert!(out.contains(row), "{row} missing:\n{out}");
    }
    assert!(out.contains("closed loop on 2 held-out scenes"), "{out}");
    let final_dir = straight.join("final");
    for file in ["model.safetensors", "config.json", "tokenizer.json", "normalization.json", "policy.json"] {
        assert!(final_dir.join(file).is_file(), "{file}");
    }
    let lines = metrics(&straight);
    assert_eq!(lines.lines().count(), 2);
    assert!(lines.contains("\"val_loss\"") && lines.contains("\"val_turn_error_deg\""), "{lines}");

    // The exported policy acts on the written example, taking the raw state and answering in metres.
    let example = straight.join("example");
    let observation: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(example.join("observation.json")).unwrap()).unwrap();
    let state: Vec<String> =
        observation["state"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap().to_string()).collect();
    let act = || {
        let prompt = observation["instruction"].as_str().unwrap();
        let (ok, out, err) = act_on(&final_dir, &example, &state.join(","), prompt, &["--json"]);
        assert!(ok, "{out}\n{err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    let chunk = act();
    assert_eq!(chunk["translation"], "metres");
    assert_eq!(chunk["actions"].as_array().unwrap().len(), 5);
    // The normalisers are what made them metres: without the file the same noise gives other
    // numbers, labelled normalised.
    std::fs::remove_file(final_dir.join("normalization.json")).unwrap();
    let raw = act();
    assert_eq!(raw["translation"], "normalised");
    assert_ne!(raw["actions"], chunk["actions"]);

    // Two steps, then resumed to four: the same metrics, byte for byte.
    let resumed = temp("vla-resumed");
    let mut first = VLA.to_vec();
    first.push("run.steps=2");
    let (ok, out, err) = train("vla", &resumed, &first, &[]);
    assert!(ok, "{out}\n{err}");
    // A new run refuses the folder; --resume continues it, longer.
    let (ok, _, err) = train("vla", &resumed, &settings, &[]);
    assert!(!ok && err.contains("--resume"), "{err}");
    let (ok, out, err) = train("vla", &resumed, &settings, &["--resume"]);
    assert!(ok, "{out}\n{err}");
    assert!(err.contains("resuming from") || out.contains("steps 2..4"), "{out}\n{err}");
    assert_eq!(metrics(&resumed), lines, "resumed metrics equal the uninterrupted run's");
    // A change that is not the length or the cadence is refused, naming the field.
    let (ok, _, err) =
        train("vla", &resumed, &[&settings[..], &["optim.peak_lr=0.01"]].concat(), &["--resume"]);
    assert!(!ok && err.contains("optim.peak_lr"), "{err}");
    for dir in [straight, resumed] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// `model.horizon` is the one place H is set: the loader's chunks, the training, the closed-loop
/// rollouts and the exported policy follow it.
#[test]
fn the_horizon_set_once_reaches_the_loader_the_rollouts_and_the_export() {
    let dir = temp("vla-horizon");
    let settings = [&VLA[..], &["run.steps=2", "model.horizon=3"]].concat();
    let (ok, out, err) = train("vla", &dir, &settings, &[]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("| trained |"), "the rollouts ran on chunks of 3:\n{out}");
    let final_dir = dir.join("final");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(final_dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["horizon"], 3);
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(final_dir.join("policy.json")).unwrap()).unwrap();
    assert_eq!(spec["rate_hz"], 5.0);
    let (ok, out, err) = act_on(&final_dir, &dir.join("example"), "0.5,0,0.2,1,0,0,0,0", "go", &[]);
    assert!(ok, "{out}\n{err}");
    assert_eq!(out.lines().count(), 3, "{out}");
    let _ = std::fs::remove_dir_all(dir);
}

/// `[memory]`: balanced checkpointing writes the same metrics byte for byte (it recomputes, it does
/// not change the arithmetic); `precision = "bf16"` keeps the losses within bf16's rounding of f32's.
#[test]
fn memory_settings_train_as_documented() {
    let run_of = |kind: &str, precision: &str, checkpointing: &str| {
        let dir = temp(&format!("{kind}-{precision}-{checkpointing}"));
        let memory = [
            format!("memory.precision=\"{precision}\""),
            format!("memory.checkpointing=\"{checkpointing}\""),
        ];
        let base = if kind == "vla" { &VLA[..] } else { &VLM[..] };
        let settings = [base, &["run.steps=2", "run.log_every=1", &memory[0], &memory[1]]].concat();
        let (ok, out, err) = train(kind, &dir, &settings, &[]);
        assert!(ok, "{out}\n{err}");
        let config = std::fs::read_to_string(dir.join("config.toml")).unwrap();
        assert!(config.contains(&format!("precision = \"{precision}\"")), "{config}");
        let lines = metrics(&dir);
        let _ = std::fs::remove_dir_all(dir);
        lines
    };
    let series = |lines: &str, key: &str| -> Vec<f64> {
        let values = lines.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap());
        values.filter_map(|l| l[key].as_f64()).collect()
    };
    let run = |precision: &str, checkpointing: &str| run_of("vla", precision, checkpointing);
    let exact = run("f32", "none");
    assert_eq!(run("f32", "balanced"), exact, "balanced checkpointing changed the metrics");
    // Block rematerialisation: the same losses and gradient norms up to float rounding, for the
    // policy and for the VLM.
    for (kind, exact) in [("vla", exact.clone()), ("vlm", run_of("vlm", "f32", "none"))] {
        let blocks = run_of(kind, "f32", "blocks");
        for key in ["loss", "grad_norm"] {
            let (a, b) = (series(&exact, key), series(&blocks, key));
            assert!(a.len() == 2 && a.len() == b.len(), "{kind} {key}: {a:?} vs {b:?}");
            for (x, y) in a.iter().zip(&b) {
                assert!(((x - y) / x).abs() < 1e-5, "{kind} {key} without and with blocks: {a:?} vs {b:?}");
            }
        }
    }
    let (exact, bf16) = (series(&exact, "loss"), series(&run("bf16", "none"), "loss"));
    assert_eq!(exact.len(), 2);
    for (a, b) in exact.iter().zip(&bf16) {
        assert!(a != b && ((a - b) / a).abs() < 1e-2, "losses f32 {exact:?} vs bf16 {bf16:?}");
    }
}

const VLM: [&str; 8] = [
    "run.batch_size=4",
    "run.log_every=1",
    "run.eval_every=1",
    "run.checkpoint_every=1",
    "optim.warmup_steps=1",
    "data.embedded.episodes=24",
    "data.val_fraction=0.25",
    "model.image_size=[56, 56]",
];

#[test]
fn the_embedded_vlm_default_trains_exports_answers_and_resumes_exactly() {
    let straight = temp("vlm-straight");
    let mut settings = VLM.to_vec();
    settings.push("run.steps=2");
    let (ok, out, err) = train("vlm", &straight, &settings, &[]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("untrained model") && out.contains("prior"), "{out}");
    let final_dir = straight.join("final");
    for file in ["model.safetensors", "config.json", "tokenizer.json", "coord_tokens.json"] {
        assert!(final_dir.join(file).is_file(), "{file}");
    }
    let lines = metrics(&straight);
    assert!(lines.contains("\"val_3d_error_m\""), "{lines}");
    // The exported model answers.
    let image = straight.join("data/scenes/images/scene-000000.png");
    let (ok, out, err) = spear(&[
        "vlm",
        "ask",
        "--weights",
        final_dir.to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
        "--prompt",
        "Where is the red block?",
        "--max-new-tokens",
        "4",
    ]);
    assert!(ok, "{out}\n{err}");

    let resumed = temp("vlm-resumed");
    let mut first = VLM.to_vec();
    first.push("run.steps=1");
    let (ok, out, err) = train("vlm", &resumed, &first, &[]);
    assert!(ok, "{out}\n{err}");
    let (ok, out, err) = train("vlm", &resumed, &settings, &["--resume"]);
    assert!(ok, "{out}\n{err}");
    assert_eq!(metrics(&resumed), lines, "resumed metrics equal the uninterrupted run's");

    // Two data-parallel peers equal one device accumulating their two micro-batches.
    let accumulated = temp("vlm-accumulated");
    let (ok, out, err) = train("vlm", &accumulated, &[&settings[..], &["run.grad_accum=2"]].concat(), &[]);
    assert!(ok, "{out}\n{err}");
    let two = temp("vlm-two-devices");
    let (ok, out, err) = train("vlm", &two, &settings, &["--devices", "2"]);
    assert!(ok, "{out}\n{err}");
    assert_eq!(metrics(&two), metrics(&accumulated), "the metrics of --devices 2 and of run.grad_accum=2");
    for dir in [straight, resumed, accumulated, two] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn a_vla_config_is_refused_by_train_vlm_with_the_reason() {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/vla/tiny.toml");
    let (ok, _, err) =
        spear(&["train", "vlm", "--config", config.to_str().unwrap(), "--out", "/nonexistent"]);
    assert!(!ok && err.contains("spear train vla"), "{err}");
}

#[test]
fn dry_run_counts_the_paper_run_without_touching_its_folder() {
    let out = temp("dry-run");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/vla/pretrain_oxe.toml");
    let (config, dir) = (config.display().to_string(), out.display().to_string());
    let base = ["train", "vla", "--config", config.as_str(), "--out", dir.as_str(), "--dry-run"];
    let (ok, text, err) = spear(&[&base[..], &["--set", "run.batch_size=512", "--resolved"]].concat());
    assert!(ok, "{err}");
    assert!(text.contains("300000 steps × batch 512"), "{text}");
    assert!(text.contains("action expert                     314.6 M      314.6 M        0.0 M"), "{text}");
    assert!(text.contains("MoGe encoder (DINOv2)             304.4 M        0.0 M      304.4 M"), "{text}");
    assert!(text.contains("batch_size = 512"), "the resolved config: {text}");
    assert!(!out.exists(), "a dry run wrote {}", out.display());
    assert!(text.contains("memory: f32 matrix products, checkpointing none, optimiser state and EMA whole"));
    let memory = ["--set", "memory.precision=\"bf16\"", "--set", "memory.shard_optimizer=true"];
    let (ok, text, err) = spear(&[&base[..], &memory, &["--devices", "8", "--device-memory", "80"]].concat());
    assert!(ok, "{err}");
    assert!(
        text.contains(
            "memory: bf16 matrix products, checkpointing none, optimiser state and EMA sharded over 8 ranks"
        ),
        "{text}"
    );
    // The memory plan: sharded state, bf16 casts, both peaks, and what fits 80 GB.
    for line in [
        "AdamW moments (a 8th share)",
        "bf16 weight casts kept",
        "peak of the update",
        "micro-batch that fits",
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }
    // Block rematerialisation brings the paper's 64 samples per device under 80 GB.
    let blocks = ["--set", "memory.checkpointing=\"blocks\"", "--set", "run.grad_accum=4"];
    let (ok, text, err) =
        spear(&[&base[..], &memory, &blocks, &["--devices", "8", "--device-memory", "80"]].concat());
    assert!(ok, "{err}");
    assert!(text.contains("activations (micro-batch of 64)") && text.contains("(fits 80 GB)"), "{text}");
    assert!(!text.contains("bf16 weight casts kept"), "{text}");
    // The model command must match the config's stage; a mistyped field is named.
    let (ok, _, err) = spear(&["train", "vlm", "--config", config.as_str(), "--dry-run"]);
    assert!(!ok && err.contains("stage VlaPretrain is not a vlm run"), "{err}");
    let (ok, _, err) = spear(&[&base[..], &["--set", "run.batch_sze=4"]].concat());
    assert!(!ok && err.contains("run.batch_sze") && err.contains("unknown field"), "{err}");
}

#[test]
fn the_embedded_vla_default_trains_on_wgpu() {
    if !common::wgpu_tests_run() {
        return;
    }
    // Lavapipe in CI: the WGPU kernels of the whole step (forward, backward, AdamW) and of the
    // closed-loop sampling; the values are the backend's own (its generator initialises the
    // weights), so what is checked is that the run completes with finite, logged metrics.
    let dir = temp("vla-wgpu");
    let mut settings = VLA.to_vec();
    settings.push("run.steps=2");
    let (ok, out, err) = train_on("wgpu", "vla", &dir, &settings, &[]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("on wgpu") && out.contains("| trained |"), "{out}");
    let line: serde_json::Value = serde_json::from_str(metrics(&dir).lines().last().unwrap()).unwrap();
    for key in ["loss", "grad_norm", "val_loss", "val_rotation_error_deg"] {
        let value = line[key].as_f64().unwrap_or(f64::NAN);
        assert!(value.is_finite() && value > 0.0, "{key} = {value}: {line}");
    }
    // Block rematerialisation on WGPU's kernels (fused): the same logged loss and gradient norm.
    let blocks = temp("vla-wgpu-blocks");
    settings.push("memory.checkpointing=\"blocks\"");
    let (ok, out, err) = train_on("wgpu", "vla", &blocks, &settings, &[]);
    assert!(ok, "{out}\n{err}");
    let (a, b): (serde_json::Value, serde_json::Value) =
        (line, serde_json::from_str(metrics(&blocks).lines().last().unwrap()).unwrap());
    for key in ["loss", "grad_norm"] {
        let (x, y) = (a[key].as_f64().unwrap(), b[key].as_f64().unwrap());
        assert!(((x - y) / x).abs() < 1e-4, "{key} without and with blocks on WGPU: {x} vs {y}");
    }
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(blocks);
}

#[test]
fn a_closed_stdout_ends_quietly() {
    // `spear … | head`: the reader is gone before the output is written (closed before the
    // start, so that no scheduling lets the write land first).
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/vla/pretrain_oxe.toml");
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_spear"))
        .args(["train", "vla", "--dry-run", "--config", config.to_str().unwrap()])
        .stdout(writer)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(141), "{err}");
}
