//! `spear weights inspect`: what a checkpoint holds, which layout it is, and what would load into
//! the model it describes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::backend::Flex;
use spear_models::SpearVlmConfig;
use spear_models::import::checkpoint::Checkpoint;
use spear_models::import::hf_config::{dinov2_config_from_moge, policy_config, vlm_config};
use spear_models::import::layout::{Layout, LoadReport, expected_tensors, for_policy, plan, vlm_only};

/// `spear weights …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum WeightsCommand {
    /// List a checkpoint's tensors, recognise its layout (PaliGemma, openpi π0, MoGe-1/2, spear)
    /// and show what would load, what is missing and what is left over. Reads no tensor data.
    Inspect {
        /// A snapshot folder, a `.safetensors` file or a `model.pt`.
        path: PathBuf,
        /// Also list every stored tensor with its dtype and shape.
        #[arg(long)]
        list: bool,
    },
}

impl WeightsCommand {
    /// Runs the command (no compute backend involved).
    pub fn run(self) -> Result<()> {
        match self {
            WeightsCommand::Inspect { path, list } => print!("{}", inspect(&path, list)?),
        }
        Ok(())
    }
}

/// The model a checkpoint is matched against: its description and expected tensors.
struct Target {
    description: String,
    expected: BTreeMap<String, Vec<usize>>,
    /// A whole policy (VLM + action expert) rather than a VLM or an encoder.
    policy: bool,
}

/// Reads `path` and renders the inspection report. `list` adds every stored tensor.
pub fn inspect(path: &Path, list: bool) -> Result<String> {
    let checkpoint = Checkpoint::open(path)?;
    let layout = Layout::detect(checkpoint.names()).with_context(|| {
        let first: Vec<&str> = checkpoint.names().take(5).collect();
        format!("{}: no known model layout recognised (first tensors: {})", path.display(), first.join(", "))
    })?;
    let target = target(&checkpoint, layout)?;
    let mut mapping = layout.map_names(checkpoint.names());
    mapping = match (target.policy, layout.is_policy()) {
        (true, true) => for_policy(mapping),
        (true, false) => mapping,
        (false, _) => vlm_only(mapping),
    };
    let (report, _) = plan(&checkpoint, mapping, &target.expected);

    let mut s = String::new();
    let _ = writeln!(s, "{}", path.display());
    let _ = writeln!(s, "format:     {:?}", checkpoint.format);
    let mut dtypes: BTreeMap<String, usize> = BTreeMap::new();
    for t in checkpoint.tensors.values() {
        *dtypes.entry(format!("{:?}", t.dtype)).or_default() += 1;
    }
    let dtypes: Vec<String> = dtypes.iter().map(|(d, n)| format!("{n} {d}")).collect();
    let _ = writeln!(
        s,
        "tensors:    {} ({}), {} parameters",
        checkpoint.tensors.len(),
        dtypes.join(", "),
        group_digits(checkpoint.num_elements())
    );
    let _ = writeln!(s, "layout:     {}", layout.describe());
    let _ = writeln!(s, "model:      {}", target.description);
    if list {
        for (name, t) in &checkpoint.tensors {
            let _ = writeln!(s, "  {name} {:?} {:?}", t.dtype, t.shape);
        }
    }
    s.push_str(&report.render(false));
    let _ = write!(s, "{}", verdict(&report, layout));
    Ok(s)
}

fn verdict(report: &LoadReport, layout: Layout) -> String {
    let problems = report.problems(&spear_models::vlm::NEW_PARTS);
    if problems.is_empty() {
        let note = if layout.is_moge() { " (the MoGe encoder of SPEAR-VLM)" } else { "" };
        format!("verdict:    loads completely{note}\n")
    } else {
        format!("verdict:    {} problem(s); a strict load fails\n", problems.len())
    }
}

/// The model the checkpoint describes, built lazily (nothing is allocated).
fn target(checkpoint: &Checkpoint, layout: Layout) -> Result<Target> {
    let device = Default::default();
    if layout.is_moge() {
        let config = dinov2_config_from_moge(checkpoint, layout)?;
        let description = format!(
            "DINOv2 ViT ({} wide, {} blocks, patch {}, {}×{} positions)",
            config.hidden_size,
            config.num_layers,
            config.patch_size,
            config.position_grid,
            config.position_grid
        );
        let expected = expected_tensors::<Flex, _>(&config.init::<Flex>(&device))
            .into_iter()
            .map(|(k, v)| (format!("moge.{k}"), v))
            .collect();
        return Ok(Target { description, expected, policy: false });
    }
    let is_spear_policy = checkpoint.config.as_ref().is_some_and(|json| json.get("expert").is_some());
    if layout.is_policy() || is_spear_policy {
        let json = checkpoint.config.as_ref().context("no config.json beside the policy checkpoint")?;
        let config = policy_config(json)?;
        let e = &config.expert;
        let description = format!(
            "policy: {} + action expert ({}×{} layers), {} actions of {} per chunk, {:?} rotations",
            if config.vlm.moge.is_some() { "SPEAR-VLM" } else { "PaliGemma" },
            e.gemma.hidden_size,
            e.gemma.num_layers,
            config.horizon,
            e.action_dim,
            config.rotation,
        );
        let expected = expected_tensors::<Flex, _>(&config.init::<Flex>(&device)?);
        return Ok(Target { description, expected, policy: true });
    }
    let config = match &checkpoint.config {
        Some(json) => vlm_config(json)?,
        None => {
            let rows = checkpoint
                .tensors
                .iter()
                .find(|(k, _)| k.ends_with("embed_tokens.weight"))
                .map(|(_, t)| t.shape[0])
                .context("no config.json beside the checkpoint and no embed_tokens to size the vocabulary")?;
            let mut config = SpearVlmConfig::paligemma_3b();
            config.gemma.vocab_size = rows;
            config
        }
    };
    let description = format!(
        "{} (SigLIP {}×{} layers, Gemma {}×{} layers, vocab {}{}{})",
        if config.moge.is_some() { "SPEAR-VLM" } else { "PaliGemma" },
        config.siglip.hidden_size,
        config.siglip.num_layers,
        config.gemma.hidden_size,
        config.gemma.num_layers,
        config.gemma.vocab_size,
        config.moge.as_ref().map_or(String::new(), |m| format!(", MoGe layers {:?}", m.layers)),
        if config.num_3d_tokens > 0 {
            format!(" + {} 3D tokens", config.num_3d_tokens)
        } else {
            String::new()
        },
    );
    Ok(Target {
        description,
        expected: expected_tensors::<Flex, _>(&config.init::<Flex>(&device)),
        policy: false,
    })
}

fn group_digits(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
