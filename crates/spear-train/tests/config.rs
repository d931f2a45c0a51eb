//! Every run of the paper has a config that loads and validates; errors name the field and file;
//! `extends`, `--set` and the resolved form behave as documented.

use std::path::{Path, PathBuf};

use spear_train::config::{ConfigError, DataSource, ModelSize, Rotation, Stage, TrainConfig};

fn configs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs")
}

fn load(name: &str) -> TrainConfig {
    TrainConfig::load(configs().join(name), &[]).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The mixture file a VLA config names.
fn mixture_of(config: &TrainConfig) -> &Path {
    match &config.data.source {
        DataSource::Mixture(path) => path,
        other => panic!("not a mixture: {other:?}"),
    }
}

#[test]
fn every_paper_run_loads_with_the_papers_numbers() {
    let s1 = load("vlm/stage1.toml");
    assert_eq!((s1.stage, s1.run.batch_size, s1.run.steps), (Stage::VlmStage1, 512, 2000));
    assert!(
        s1.trainable.projectors && s1.trainable.new_embeddings && !s1.trainable.llm && !s1.trainable.siglip
    );
    let s2 = load("vlm/stage2.toml");
    assert_eq!(
        (s2.stage, s2.run.batch_size, s2.run.steps, s2.loss.lambda_3d),
        (Stage::VlmStage2, 512, 10_000, 2.0)
    );
    assert!(s2.trainable.llm && s2.model.init.as_ref().unwrap().ends_with("runs/spear-vlm-stage1/final"));
    assert!(s2.model.paligemma.is_none() && s2.model.moge.is_none());
    let pre = load("vla/pretrain_oxe.toml");
    assert_eq!((pre.stage, pre.run.batch_size, pre.run.steps), (Stage::VlaPretrain, 2048, 300_000));
    assert!(pre.trainable.siglip && !pre.trainable.moge && pre.trainable.action_expert);
    assert_eq!((pre.loss.rotation, pre.ema.decay), (Rotation::S3, 0.99));
    for (name, mixture) in
        [("vla/posttrain_bridge.toml", "bridge.toml"), ("vla/posttrain_droid.toml", "droid.toml")]
    {
        let post = load(name);
        assert_eq!((post.stage, post.run.steps), (Stage::VlaPosttrain, 50_000), "{name}");
        assert!(mixture_of(&post).ends_with(mixture), "{name}");
        // The run reads the mixture (its datasets need not be downloaded for that): no loader
        // setting of the run's in it.
        let mixture = spear_train::stages::vla::mixture_file(&post).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(mixture.datasets.len(), 1, "{name}");
    }
    // Table 4's 24 datasets but roboset (joint-space only; docs/datasets.md).
    assert_eq!(spear_train::stages::vla::mixture_file(&pre).unwrap().datasets.len(), 23);
    let s1_source = &s1.data.source;
    assert!(matches!(s1_source, DataSource::Annotations(dir) if dir.ends_with("data/vqa")), "{s1_source:?}");
    for name in ["vlm/tiny.toml", "vla/tiny.toml"] {
        let tiny = load(name);
        assert_eq!((tiny.model.size, &tiny.data.source), (ModelSize::Tiny, &DataSource::Embedded), "{name}");
        // The inherited weight paths are cleared: tiny runs start from random weights.
        assert!(
            tiny.model.paligemma.is_none() && tiny.model.moge.is_none() && tiny.model.init.is_none(),
            "{name}"
        );
    }
}

#[test]
fn the_resolved_config_reads_back_the_same() {
    let config = load("vla/posttrain_droid.toml");
    let dir = std::env::temp_dir().join(format!("spear-train-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("resolved.toml");
    std::fs::write(&path, config.to_toml()).unwrap();
    assert_eq!(TrainConfig::load(&path, &[]).unwrap(), config);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn overrides_apply_last_and_are_checked() {
    let path = configs().join("vla/tiny.toml");
    let set = |v: &[&str]| TrainConfig::load(&path, &v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    let config = set(&["optim.peak_lr=0.01", "run.name=mine", "trainable.moge=true"]).unwrap();
    assert_eq!((config.optim.peak_lr, config.run.name.as_str(), config.trainable.moge), (0.01, "mine", true));
    let error = set(&["optim.peak_lrr=0.01"]).unwrap_err().to_string();
    assert!(
        error.contains("optim.peak_lrr") && error.contains("tiny.toml") && error.contains("unknown field"),
        "{error}"
    );
    let error = set(&["optim.peak_lr=fast"]).unwrap_err().to_string();
    assert!(error.contains("optim.peak_lr") && error.contains("invalid type"), "{error}");
    let error = set(&["ema.decay=1.5"]).unwrap_err().to_string();
    assert!(error.contains("ema.decay") && error.contains("[0, 1)"), "{error}");
    let error = set(&["run.grad_accum=3"]).unwrap_err().to_string();
    assert!(error.contains("run.grad_accum") && error.contains("multiple"), "{error}");
    assert!(matches!(set(&["optim.peak_lr"]), Err(ConfigError::Override(_))));
    // The embedded defaults' sections are checked as strictly.
    let error = set(&["data.reach.max_turn_deg=120"]).unwrap_err().to_string();
    assert!(error.contains("data.reach.max_turn_deg") && error.contains("(0, 90]"), "{error}");
    let error = set(&["data.reach.colour=\"red\""]).unwrap_err().to_string();
    assert!(error.contains("data.reach") && error.contains("unknown field"), "{error}");
    let error = set(&["model.image_size=[50, 56]"]).unwrap_err().to_string();
    assert!(error.contains("model.image_size") && error.contains("14-pixel"), "{error}");
    let error = set(&["data.embedded.rotation_angle_deg=0"]).unwrap_err().to_string();
    assert!(error.contains("data.embedded.rotation_angle_deg"), "{error}");
    let error = set(&["trainable.action_expert=false", "stage=\"vlm_stage2\"", "data.source.mixture=m.toml"])
        .unwrap_err()
        .to_string();
    assert!(error.contains("data.source") && error.contains("not a mixture"), "{error}");
    let error = set(&["data.source.annotations=vqa"]).unwrap_err().to_string();
    assert!(error.contains("data.source") && error.contains("not annotations"), "{error}");
    let error = set(&["data.source=\"somewhere\""]).unwrap_err().to_string();
    assert!(error.contains("data.source") && error.contains("unknown variant"), "{error}");
    // One place sets H and the action rate; the generated task steps at its own rate.
    assert_eq!(set(&["model.horizon=3"]).unwrap().model.horizon, Some(3));
    let memory = set(&["memory.precision=\"bf16\""]).unwrap().memory;
    assert_eq!(memory.precision, spear_models::Precision::Bf16);
    let error = set(&["memory.precision=\"fp16\""]).unwrap_err().to_string();
    assert!(error.contains("memory.precision") && error.contains("fp16"), "{error}");
    let error = set(&["model.horizon=0"]).unwrap_err().to_string();
    assert!(error.contains("model.horizon"), "{error}");
    let error = set(&["model.rate_hz=10"]).unwrap_err().to_string();
    assert!(error.contains("model.rate_hz") && error.contains("steps at 5 Hz"), "{error}");
    // A mixture named over the embedded default: a `--set` path is the working folder's.
    let config = set(&["data.source.mixture=configs/data/bridge.toml"]).unwrap();
    assert_eq!(config.data.source, DataSource::Mixture("configs/data/bridge.toml".into()));
}

/// The seed, batch size, camera sizes, horizon and rate are the run's: a mixture file that sets
/// one is refused, naming the field in both places, rather than silently overridden.
#[test]
fn a_mixture_that_sets_what_the_run_owns_is_refused() {
    let dir = std::env::temp_dir().join(format!("spear-train-owned-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mixture = dir.join("mixture.toml");
    let path = configs().join("vla/posttrain_bridge.toml");
    let overrides = [format!("data.source.mixture={}", mixture.display())];
    let config = TrainConfig::load(&path, &overrides).unwrap();
    for (key, owner) in
        [("horizon = 10", "model.horizon"), ("rate_hz = 10.0", "model.rate_hz"), ("seed = 1", "run.seed")]
    {
        std::fs::write(
            &mixture,
            format!("[loader]\n{key}\n\n[[dataset]]\nname = \"bridge\"\nweight = 1.0\n"),
        )
        .unwrap();
        let error = spear_train::stages::vla::mixture_file(&config).expect_err("refused").to_string();
        let field = key.split(' ').next().unwrap();
        assert!(
            error.contains("mixture.toml")
                && error.contains(&format!("loader.{field}"))
                && error.contains(owner),
            "{error}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_files_name_themselves() {
    let dir = std::env::temp_dir().join(format!("spear-train-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let unknown = write("unknown.toml", "extends = \"../../x.toml\"\n");
    let error = TrainConfig::load(&unknown, &[]).unwrap_err().to_string();
    assert!(error.contains("x.toml"), "{error}");
    let nested =
        write("nested.toml", &format!("extends = {:?}\n[trainig]\nx = 1\n", configs().join("vla/tiny.toml")));
    let error = TrainConfig::load(&nested, &[]).unwrap_err().to_string();
    assert!(error.contains("nested.toml") && error.contains("trainig"), "{error}");
    // Paths inherited through `extends` stay relative to the file that wrote them.
    let child = write("child.toml", &format!("extends = {:?}\n", configs().join("vlm/stage1.toml")));
    let config = TrainConfig::load(&child, &[]).unwrap();
    assert_eq!(config.model.paligemma.unwrap(), configs().join("vlm/../../weights/paligemma-3b-pt-224"));
    let cycle = write("cycle.toml", "extends = \"cycle.toml\"\n");
    let error = TrainConfig::load(&cycle, &[]).unwrap_err().to_string();
    assert!(error.contains("cycle"), "{error}");
    let syntax = write("syntax.toml", "[run\n");
    let error = TrainConfig::load(&syntax, &[]).unwrap_err().to_string();
    assert!(error.contains("syntax.toml"), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
}
