//! Checkpoint layouts: recognising which model a file holds from its tensor names, mapping each
//! name onto SPEAR-VLM's module paths, and loading with a full account of what was loaded, what
//! is missing, what was left over and what had the wrong shape.
//!
//! Module paths are transformers' names with the family prefix replaced: `siglip.*` (SigLIP
//! without `vision_model`), `siglip_projector.*`, `gemma.*` (Gemma without `model.`), `moge.*`
//! (MoGe's DINOv2 `backbone.*`), `moge_projector.*`, `embed_3d.*`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use burn::module::{ModuleVisitor, Param};
use burn::prelude::*;
use burn_store::{ModuleSnapshot, PyTorchToBurnAdapter};
use regex::Regex;

use crate::error::ModelError;
use crate::import::checkpoint::Checkpoint;

/// The model layouts recognised by their tensor names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// PaliGemma as transformers saves it (`vision_tower.vision_model.*`,
    /// `multi_modal_projector.linear.*`, `language_model.model.*`): the Hub checkpoints and
    /// `save_pretrained` of every version.
    PaliGemma,
    /// PaliGemma with transformers ≥ 4.52 in-memory names (`model.vision_tower.*`,
    /// `model.language_model.*`, `lm_head.weight`), with or without 5.x's dropped `vision_model`.
    PaliGemmaInMemory,
    /// π0 on disk: openpi's PyTorch port (`paligemma_with_expert.paligemma.*`,
    /// `paligemma_with_expert.gemma_expert.*`, `action_in_proj.*`, …), lerobot (the same under
    /// `model.`) and transformers' `save_pretrained` of `PI0ForConditionalGeneration`.
    Openpi,
    /// π0 with transformers 5 in-memory names (`model.vlm.*`, `model.dit.*`,
    /// `embed_action_time.*`, `action_out_proj.*`).
    Pi0InMemory,
    /// MoGe-1 `model.pt` (`backbone.*` DINOv2, `head.*`).
    MogeV1,
    /// MoGe-2 `model.pt` (`encoder.backbone.*`, `neck.*`, `*_head.*`).
    MogeV2,
    /// A checkpoint saved by spear (module paths as names).
    Spear,
}

/// What a stored tensor name means for SPEAR-VLM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapping {
    /// Loads into this module path.
    Module(String),
    /// Deliberately not loaded, with the reason.
    Ignored(&'static str),
    /// Not part of the model: reported as left over.
    Unknown,
}

const OPENPI: &str = r"(?:model\.)?(?:paligemma_with_expert\.paligemma\.)?";

impl Layout {
    /// Recognises the layout from the tensor names, or `None`.
    pub fn detect<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<Self> {
        let names: Vec<&str> = names.into_iter().collect();
        let any = |prefix: &str| names.iter().any(|n| n.starts_with(prefix));
        Some(if any("paligemma_with_expert.") || any("model.paligemma_with_expert.") {
            Self::Openpi
        } else if any("model.dit.") || any("embed_action_time.") {
            Self::Pi0InMemory
        } else if any("vision_tower.") || any("language_model.model.") || any("multi_modal_projector.") {
            Self::PaliGemma
        } else if any("model.vision_tower.")
            || any("model.language_model.")
            || any("model.multi_modal_projector.")
        {
            Self::PaliGemmaInMemory
        } else if any("encoder.backbone.") {
            Self::MogeV2
        } else if any("backbone.blocks.") {
            Self::MogeV1
        } else if any("gemma.layers.")
            || any("siglip.encoder.")
            || any("moge.blocks.")
            || any("vlm.gemma.layers.")
        {
            Self::Spear
        } else {
            return None;
        })
    }

    /// A human description of the layout.
    pub fn describe(self) -> &'static str {
        match self {
            Self::PaliGemma => "PaliGemma (transformers safetensors, Hub/save_pretrained names)",
            Self::PaliGemmaInMemory => "PaliGemma (transformers >= 4.52 in-memory names)",
            Self::Openpi => {
                "pi0 (openpi PyTorch / lerobot / transformers save_pretrained: PaliGemma + action expert)"
            }
            Self::Pi0InMemory => "pi0 (transformers 5 in-memory names: PaliGemma + action expert)",
            Self::MogeV1 => "MoGe-1 model.pt (DINOv2 ViT backbone + point-map head)",
            Self::MogeV2 => "MoGe-2 model.pt (DINOv2 ViT encoder + neck and heads)",
            Self::Spear => "spear checkpoint",
        }
    }

    /// Whether the layout carries MoGe weights (and no PaliGemma).
    pub fn is_moge(self) -> bool {
        matches!(self, Self::MogeV1 | Self::MogeV2)
    }

    /// Whether the layout is a whole π0 policy (VLM + action expert).
    pub fn is_policy(self) -> bool {
        matches!(self, Self::Openpi | Self::Pi0InMemory)
    }

    fn rules(self) -> Vec<(Regex, Rule)> {
        use Rule::*;
        let paligemma = |prefix: &str| {
            vec![
                (format!(r"^{prefix}(?:model\.)?(?:language_model\.)?lm_head\.weight$"), Ignore(TIED_HEAD)),
                (
                    format!(r"^{prefix}(?:model\.)?vision_tower\.(?:vision_model\.)?head\."),
                    Ignore(SIGLIP_HEAD),
                ),
                (format!(r"^{prefix}(?:model\.)?vision_tower\.(?:vision_model\.)?(.+)$"), To("siglip.$1")),
                (
                    format!(r"^{prefix}(?:model\.)?multi_modal_projector\.linear\.(.+)$"),
                    To("siglip_projector.$1"),
                ),
                (format!(r"^{prefix}(?:model\.)?language_model\.(?:model\.)?(.+)$"), To("gemma.$1")),
            ]
        };
        let moge = |prefix: &str| {
            vec![
                (format!(r"^{prefix}backbone\.mask_token$"), Ignore("DINOv2 mask token (pre-training only)")),
                (format!(r"^{prefix}backbone\.(.+)$"), To("moge.$1")),
                (format!(r"^{prefix}image_(?:mean|std)$"), Ignore("ImageNet normalisation (built in)")),
            ]
        };
        // π0's top-level projections, named as openpi (lerobot's older `time_mlp_*` too).
        let projections = |prefix: &str| {
            vec![
                (format!(r"^{prefix}(action_in_proj|state_proj|action_out_proj)\.(.+)$"), To("expert.$1.$2")),
                (
                    format!(r"^{prefix}(?:action_)?time_mlp_(in|out)\.(.+)$"),
                    To("expert.action_time_mlp_$1.$2"),
                ),
            ]
        };
        let rules: Vec<(String, Rule)> = match self {
            Self::PaliGemma | Self::PaliGemmaInMemory => paligemma(""),
            Self::Openpi => {
                let expert = r"(?:model\.)?paligemma_with_expert\.gemma_expert\.";
                let mut r = vec![
                    (format!(r"^{expert}lm_head\.weight$"), Ignore("the action expert's LM head (unused)")),
                    (format!(r"^{expert}model\.embed_tokens\.weight$"), Ignore(EXPERT_EMBEDDING)),
                    (format!(r"^{expert}model\.(.+)$"), To("expert.$1")),
                ];
                r.extend(projections(r"(?:model\.)?"));
                r.extend(paligemma(OPENPI));
                r
            }
            Self::Pi0InMemory => {
                let mut r = vec![
                    (r"^model\.dit\.embed_tokens\.weight$".into(), Ignore(EXPERT_EMBEDDING)),
                    (r"^model\.dit\.(.+)$".into(), To("expert.$1")),
                    (r"^embed_action_time\.(.+)$".into(), To("expert.$1")),
                ];
                r.extend(projections(""));
                r.extend(paligemma(r"model\.vlm\."));
                r
            }
            Self::MogeV1 => {
                let mut r = moge("");
                r.push((r"^head\.".into(), Ignore("MoGe-1 point-map head (SPEAR uses the encoder only)")));
                r
            }
            Self::MogeV2 => {
                let mut r = moge(r"encoder\.");
                r.push((
                    r"^(?:encoder\.output_projections|neck|points_head|mask_head|normal_head|scale_head)\."
                        .into(),
                    Ignore("MoGe-2 decoder (SPEAR uses the encoder only)"),
                ));
                r
            }
            Self::Spear => vec![(r"^(.+)$".into(), To("$1"))],
        };
        rules.into_iter().map(|(p, r)| (Regex::new(&p).expect("static pattern"), r)).collect()
    }

    /// Maps every stored name of `names` onto SPEAR-VLM's module paths.
    pub fn map_names<'a>(self, names: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, Mapping> {
        let rules = self.rules();
        let mut mapping: BTreeMap<String, Mapping> = names
            .into_iter()
            .map(|name| {
                let mapping =
                    rules.iter().find(|(re, _)| re.is_match(name)).map_or(Mapping::Unknown, |(re, rule)| {
                        match rule {
                            Rule::To(to) => Mapping::Module(re.replace(name, *to).into_owned()),
                            Rule::Ignore(why) => Mapping::Ignored(why),
                        }
                    });
                (name.to_string(), mapping)
            })
            .collect();
        // Tied weights may be stored once under the LM head's name alone (safetensors'
        // `save_model`, as openpi's converter uses it, keeps one name per shared tensor): the
        // embedding then loads from it.
        let embedding = "gemma.embed_tokens.weight";
        if !mapping.values().any(|m| *m == Mapping::Module(embedding.into())) {
            let head = mapping
                .iter_mut()
                .find(|(name, m)| matches!(m, Mapping::Ignored(TIED_HEAD)) && !name.contains("gemma_expert"));
            if let Some((_, m)) = head {
                *m = Mapping::Module(embedding.into());
            }
        }
        mapping
    }
}

/// Why the action expert's token embedding (π0's expert sees only embeddings) is not loaded.
const EXPERT_EMBEDDING: &str = "the action expert's token embedding (unused)";

/// Why SigLIP's attention-pooling head is not loaded: a snapshot saved with
/// `vision_use_head: true` carries it, transformers builds and loads it, and PaliGemma never calls
/// it (the projector takes every patch token of `last_hidden_state`, not the pooled one).
const SIGLIP_HEAD: &str =
    "SigLIP's pooling head (vision_use_head; PaliGemma uses every patch token, not the pooled one)";

/// Why the PaliGemma LM head is not loaded.
const TIED_HEAD: &str = "LM head is tied to the token embedding";

#[derive(Debug, Clone, Copy)]
enum Rule {
    To(&'static str),
    Ignore(&'static str),
}

/// The tensors a module expects: path → shape in PyTorch convention (`Linear` weights `[out, in]`),
/// read without allocating lazily initialised parameters.
pub fn expected_tensors<B: Backend, M: Module<B>>(module: &M) -> BTreeMap<String, Vec<usize>> {
    struct Lister {
        path: Vec<String>,
        containers: Vec<String>,
        out: BTreeMap<String, Vec<usize>>,
    }
    impl Lister {
        fn record(&mut self, mut shape: Vec<usize>) {
            let linear_weight = self.containers.last().is_some_and(|c| c == "Struct:Linear")
                && self.path.last().is_some_and(|p| p == "weight");
            if linear_weight {
                shape.reverse();
            }
            let is_norm = self.containers.last().is_some_and(|c| c == "Struct:LayerNorm");
            let mut path = self.path.clone();
            if is_norm && let Some(last) = path.last_mut() {
                *last = match last.as_str() {
                    "gamma" => "weight".into(),
                    "beta" => "bias".into(),
                    other => other.into(),
                };
            }
            self.out.insert(path.join("."), shape);
        }
    }
    impl<B: Backend> ModuleVisitor<B> for Lister {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.path.push(name.to_string());
            self.containers.push(container_type.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
            self.containers.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.record(param.lazy_shape().to_vec());
        }
    }
    let mut lister = Lister { path: Vec::new(), containers: Vec::new(), out: BTreeMap::new() };
    module.visit(&mut lister);
    lister.out
}

/// The account of matching a checkpoint against a model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Module paths that load (present with the right shape).
    pub loaded: Vec<String>,
    /// Module paths the checkpoint does not provide.
    pub missing: Vec<String>,
    /// Stored names that map to nothing in the model.
    pub unexpected: Vec<String>,
    /// Stored names deliberately skipped, with the reason.
    pub ignored: Vec<(String, &'static str)>,
    /// `path: expected [..], found [..]` for shape mismatches.
    pub mismatched: Vec<String>,
}

impl LoadReport {
    /// Problems that make a strict load fail, given module-path prefixes allowed to stay missing.
    pub fn problems(&self, allow_missing: &[&str]) -> Vec<String> {
        let mut out: Vec<String> = self
            .missing
            .iter()
            .filter(|m| !allow_missing.iter().any(|p| m.starts_with(p)))
            .map(|m| format!("missing: {m}"))
            .collect();
        out.extend(self.unexpected.iter().map(|u| format!("unexpected (left over): {u}")));
        out.extend(self.mismatched.iter().map(|m| format!("wrong shape: {m}")));
        out
    }

    /// A readable summary, one tensor per line under each heading.
    pub fn render(&self, verbose: bool) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "loads:      {} tensors", self.loaded.len());
        let section = |s: &mut String, title: &str, items: &[String]| {
            let _ = writeln!(s, "{title} {}", items.len());
            for item in items {
                let _ = writeln!(s, "  {item}");
            }
        };
        if verbose {
            section(&mut s, "  of which:", &self.loaded);
        }
        section(&mut s, "missing:   ", &self.missing);
        section(&mut s, "left over: ", &self.unexpected);
        section(&mut s, "bad shape: ", &self.mismatched);
        let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, why) in &self.ignored {
            *reasons.entry(why).or_default() += 1;
        }
        let _ = writeln!(s, "ignored:    {}", self.ignored.len());
        for (why, n) in reasons {
            let _ = writeln!(s, "  {n} × {why}");
        }
        s
    }
}

/// Compares a checkpoint's mapped names and shapes with what `expected` lists, reading no tensor data.
/// `mapping` is [`Layout::map_names`] of the checkpoint (possibly rewritten by the caller).
pub fn plan(
    checkpoint: &Checkpoint,
    mapping: BTreeMap<String, Mapping>,
    expected: &BTreeMap<String, Vec<usize>>,
) -> (LoadReport, BTreeMap<String, String>) {
    let mut report = LoadReport::default();
    let mut sources = BTreeMap::new();
    let mut provided = BTreeSet::new();
    for (name, mapping) in mapping {
        match mapping {
            Mapping::Ignored(why) => report.ignored.push((name, why)),
            Mapping::Unknown => report.unexpected.push(name),
            Mapping::Module(path) => match expected.get(&path) {
                None => report.unexpected.push(name),
                Some(shape) => {
                    provided.insert(path.clone());
                    let stored = &checkpoint.tensors[&name].shape;
                    if stored == shape {
                        report.loaded.push(path.clone());
                        sources.insert(path, name);
                    } else {
                        report
                            .mismatched
                            .push(format!("{name} → {path}: expected {shape:?}, found {stored:?}"));
                    }
                }
            },
        }
    }
    report.missing = expected.keys().filter(|k| !provided.contains(*k)).cloned().collect();
    (report, sources)
}

/// Loads `checkpoint`'s VLM tensors into `module` (a π0 checkpoint's action expert is skipped). Fails, naming every tensor, when anything is missing (other
/// than paths under `allow_missing`, which keep their initialisation), left over, or mis-shaped;
/// a partial load must therefore be asked for explicitly.
pub fn load<B: Backend, M: Module<B> + ModuleSnapshot<B>>(
    module: &mut M,
    checkpoint: &Checkpoint,
    layout: Layout,
    allow_missing: &[&str],
    model: &str,
) -> Result<LoadReport, ModelError> {
    load_mapped(module, checkpoint, vlm_only(layout.map_names(checkpoint.names())), allow_missing, model)
}

/// [`load`] with an explicit name mapping, e.g. a layout's mapping with a prefix removed to load a
/// single part (`moge.*` into a bare [`crate::dinov2::Dinov2`]).
pub fn load_mapped<B: Backend, M: Module<B> + ModuleSnapshot<B>>(
    module: &mut M,
    checkpoint: &Checkpoint,
    mapping: BTreeMap<String, Mapping>,
    allow_missing: &[&str],
    model: &str,
) -> Result<LoadReport, ModelError> {
    let (report, sources) = plan(checkpoint, mapping, &expected_tensors::<B, M>(module));
    let problems = report.problems(allow_missing);
    if !problems.is_empty() {
        return Err(ModelError::Incomplete {
            path: checkpoint.path.clone(),
            model: model.to_string(),
            report: problems.join("\n"),
        });
    }
    let snapshots = sources.iter().map(|(path, name)| checkpoint.tensors[name].snapshot(path)).collect();
    let result = module.apply(snapshots, None, Some(Box::new(PyTorchToBurnAdapter)), false);
    if !result.errors.is_empty() {
        return Err(ModelError::Incomplete {
            path: checkpoint.path.clone(),
            model: model.to_string(),
            report: result.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"),
        });
    }
    tracing::info!(path = %checkpoint.path.display(), loaded = result.applied.len(), "checkpoint loaded");
    Ok(report)
}

/// A policy layout's mapping for loading the VLM alone: the action expert's tensors are ignored.
pub fn vlm_only(mapping: BTreeMap<String, Mapping>) -> BTreeMap<String, Mapping> {
    mapping
        .into_iter()
        .map(|(name, m)| match m {
            Mapping::Module(path) if path.starts_with("expert.") => {
                (name, Mapping::Ignored("the action expert (not part of the VLM)"))
            }
            other => (name, other),
        })
        .collect()
}

/// A layout's mapping onto [`crate::policy::SpearPolicy`]'s module paths: the VLM's parts move
/// under `vlm.`, the expert's stay under `expert.`.
pub fn for_policy(mapping: BTreeMap<String, Mapping>) -> BTreeMap<String, Mapping> {
    mapping
        .into_iter()
        .map(|(name, m)| match m {
            Mapping::Module(path) if !path.starts_with("expert.") => {
                (name, Mapping::Module(format!("vlm.{path}")))
            }
            other => (name, other),
        })
        .collect()
}

/// Rewrites module paths under `prefix.` to paths relative to it (others become unknown), to load
/// one part of a layout into that part's module alone.
pub fn strip_prefix(mapping: BTreeMap<String, Mapping>, prefix: &str) -> BTreeMap<String, Mapping> {
    let dotted = format!("{prefix}.");
    mapping
        .into_iter()
        .map(|(name, m)| {
            let m = match m {
                Mapping::Module(path) => {
                    path.strip_prefix(&dotted).map_or(Mapping::Unknown, |p| Mapping::Module(p.to_string()))
                }
                other => other,
            };
            (name, m)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapped(layout: Layout, name: &str) -> Mapping {
        layout.map_names([name]).remove(name).unwrap()
    }

    fn module(path: &str) -> Mapping {
        Mapping::Module(path.into())
    }

    /// Every PaliGemma key layout of the notes reaches the same module paths.
    #[test]
    fn paligemma_key_variants_map_to_one_model() {
        let cases = [
            // transformers on disk (Hub, save_pretrained)
            (
                "vision_tower.vision_model.encoder.layers.3.mlp.fc1.weight",
                "siglip.encoder.layers.3.mlp.fc1.weight",
            ),
            (
                "language_model.model.layers.0.self_attn.q_proj.weight",
                "gemma.layers.0.self_attn.q_proj.weight",
            ),
            ("multi_modal_projector.linear.bias", "siglip_projector.bias"),
            // transformers 4.52–4.57 in memory
            ("model.vision_tower.vision_model.post_layernorm.weight", "siglip.post_layernorm.weight"),
            ("model.language_model.norm.weight", "gemma.norm.weight"),
            // transformers 5: no vision_model level
            (
                "model.vision_tower.embeddings.patch_embedding.weight",
                "siglip.embeddings.patch_embedding.weight",
            ),
            // openpi's PyTorch π0
            (
                "paligemma_with_expert.paligemma.model.language_model.embed_tokens.weight",
                "gemma.embed_tokens.weight",
            ),
            (
                "paligemma_with_expert.paligemma.model.multi_modal_projector.linear.weight",
                "siglip_projector.weight",
            ),
        ];
        for (name, path) in cases {
            let layout = Layout::detect([name]).unwrap();
            assert_eq!(mapped(layout, name), module(path), "{name} ({layout:?})");
        }
        for (tied, embedding) in [
            ("language_model.lm_head.weight", "language_model.model.embed_tokens.weight"),
            ("lm_head.weight", "model.language_model.embed_tokens.weight"),
            (
                "paligemma_with_expert.paligemma.lm_head.weight",
                "paligemma_with_expert.paligemma.model.language_model.embed_tokens.weight",
            ),
        ] {
            let layout = Layout::detect([tied, embedding]).unwrap();
            let mapping = layout.map_names([tied, embedding]);
            assert!(matches!(mapping[tied], Mapping::Ignored(_)), "{tied}");
            assert_eq!(mapping[embedding], module("gemma.embed_tokens.weight"), "{embedding}");
        }
        for head in [
            "vision_tower.vision_model.head.probe",
            "model.vision_tower.vision_model.head.attention.in_proj_weight",
            "model.vision_tower.head.mlp.fc2.bias",
            "paligemma_with_expert.paligemma.model.vision_tower.vision_model.head.layernorm.weight",
        ] {
            let layout = Layout::detect([head]).unwrap();
            assert_eq!(mapped(layout, head), Mapping::Ignored(SIGLIP_HEAD), "{head} ({layout:?})");
        }
        let expert = "paligemma_with_expert.gemma_expert.model.layers.0.mlp.up_proj.weight";
        assert!(
            matches!(vlm_only(Layout::Openpi.map_names([expert])).remove(expert), Some(Mapping::Ignored(_))),
            "the action expert is not part of the VLM"
        );
    }

    #[test]
    fn a_head_stored_without_its_tied_embedding_loads_as_the_embedding() {
        let head = "paligemma_with_expert.paligemma.lm_head.weight";
        let expert_head = "paligemma_with_expert.gemma_expert.lm_head.weight";
        let alone = Layout::Openpi.map_names([head, expert_head]);
        assert_eq!(alone[head], module("gemma.embed_tokens.weight"));
        assert!(matches!(alone[expert_head], Mapping::Ignored(_)));
        let embedding = "paligemma_with_expert.paligemma.model.language_model.embed_tokens.weight";
        let both = Layout::Openpi.map_names([head, embedding]);
        assert!(matches!(both[head], Mapping::Ignored(_)), "the stored embedding wins");
    }

    /// π0's names in openpi, lerobot (old and new) and transformers reach the same policy paths.
    #[test]
    fn pi0_key_variants_map_to_one_policy() {
        use Layout::{Openpi, Pi0InMemory};
        let cases = [
            (
                Openpi,
                "paligemma_with_expert.gemma_expert.model.layers.1.self_attn.q_proj.weight",
                "expert.layers.1.self_attn.q_proj.weight",
            ),
            (Openpi, "model.paligemma_with_expert.gemma_expert.model.norm.weight", "expert.norm.weight"),
            (Openpi, "action_time_mlp_in.weight", "expert.action_time_mlp_in.weight"),
            (Openpi, "model.time_mlp_out.bias", "expert.action_time_mlp_out.bias"),
            (Openpi, "model.state_proj.weight", "expert.state_proj.weight"),
            (
                Openpi,
                "model.paligemma_with_expert.paligemma.model.language_model.layers.0.mlp.up_proj.weight",
                "vlm.gemma.layers.0.mlp.up_proj.weight",
            ),
            (
                Openpi,
                "paligemma_with_expert.paligemma.model.language_model.model.embed_tokens.weight",
                "vlm.gemma.embed_tokens.weight",
            ),
            (Pi0InMemory, "model.dit.layers.0.mlp.down_proj.weight", "expert.layers.0.mlp.down_proj.weight"),
            (Pi0InMemory, "embed_action_time.action_in_proj.bias", "expert.action_in_proj.bias"),
            (Pi0InMemory, "action_out_proj.weight", "expert.action_out_proj.weight"),
            (Pi0InMemory, "model.vlm.vision_tower.post_layernorm.bias", "vlm.siglip.post_layernorm.bias"),
            (Pi0InMemory, "model.vlm.multi_modal_projector.linear.weight", "vlm.siglip_projector.weight"),
        ];
        for (layout, name, path) in cases {
            if let Some(detected) = Layout::detect([name]) {
                assert_eq!(detected, layout, "{name}");
            }
            assert_eq!(for_policy(layout.map_names([name])).remove(name).unwrap(), module(path), "{name}");
        }
        for unused in ["paligemma_with_expert.gemma_expert.lm_head.weight", "model.dit.embed_tokens.weight"] {
            let layout = Layout::detect([unused]).unwrap();
            assert!(matches!(mapped(layout, unused), Mapping::Ignored(_)), "{unused}");
        }
    }

    #[test]
    fn moge_key_variants_map_to_the_encoder() {
        assert_eq!(mapped(Layout::MogeV1, "backbone.blocks.7.ls2.gamma"), module("moge.blocks.7.ls2.gamma"));
        assert_eq!(mapped(Layout::MogeV2, "encoder.backbone.pos_embed"), module("moge.pos_embed"));
        assert!(matches!(mapped(Layout::MogeV2, "scale_head.4.bias"), Mapping::Ignored(_)));
        assert!(matches!(mapped(Layout::MogeV1, "backbone.mask_token"), Mapping::Ignored(_)));
        assert_eq!(mapped(Layout::MogeV1, "mystery.weight"), Mapping::Unknown);
    }
}
