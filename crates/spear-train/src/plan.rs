//! What a run would train, before it allocates anything: the model its config builds, with
//! parameter counts per part read from the parameters' lazy shapes (so a full-size plan costs no
//! weight memory) and each part trainable or frozen as `[trainable]` says (the models crate's
//! `with_trainable` applies exactly those flags; the freezing tests check it does).

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use spear_models::SpearPolicyConfig;
use spear_models::vlm::{SpearVlm, SpearVlmConfig};

use crate::config::{ModelSize, TrainConfig};

/// One part of the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartCount {
    /// Its name.
    pub name: &'static str,
    /// Parameters.
    pub params: u64,
    /// Of which receive gradients.
    pub trainable: u64,
}

/// Counts parameters without initialising them.
#[derive(Default)]
struct Count(u64);

impl<B: Backend> ModuleVisitor<B> for Count {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0 += param.lazy_shape().num_elements() as u64;
    }
}

fn params<B: Backend, M: Module<B>>(module: &M) -> u64 {
    let mut c = Count::default();
    module.visit(&mut c);
    c.0
}

fn part(name: &'static str, params: u64, trainable: bool) -> PartCount {
    PartCount { name, params, trainable: if trainable { params } else { 0 } }
}

fn vlm_parts<B: Backend>(vlm: &SpearVlm<B>, config: &TrainConfig) -> Vec<PartCount> {
    let t = &config.trainable;
    let mut parts = vec![part("SigLIP vision tower", params(&vlm.siglip), t.siglip)];
    if let Some(moge) = &vlm.moge {
        parts.push(part("MoGe encoder (DINOv2)", params(moge), t.moge));
    }
    let projectors = params(&vlm.siglip_projector) + vlm.moge_projector.as_ref().map_or(0, params);
    parts.push(part("projectors (SigLIP, MoGe)", projectors, t.projectors));
    parts.push(part("Gemma (with its embedding)", params(&vlm.gemma), t.llm));
    if let Some(rows) = &vlm.embed_3d {
        parts.push(part("3D-token rows", params(rows), t.new_embeddings));
    }
    parts
}

/// The parameter counts of the model `config` trains, per part, trainable or frozen by its
/// `[trainable]`. Builds the model lazily on `device`: no weight is allocated.
pub fn parameter_counts<B: Backend>(config: &TrainConfig, device: &B::Device) -> Vec<PartCount> {
    let full = config.model.size == ModelSize::Full;
    if config.stage.is_vlm() {
        let vlm_config = if full { SpearVlmConfig::spear_vlm() } else { SpearVlmConfig::tiny() }
            .with_num_3d_tokens(config.model.num_3d_tokens);
        vlm_parts(&vlm_config.init::<B>(device), config)
    } else {
        let mut policy_config = if full { SpearPolicyConfig::spear1() } else { SpearPolicyConfig::tiny() };
        policy_config.vlm.num_3d_tokens = config.model.num_3d_tokens;
        let policy = policy_config.init::<B>(device).expect("the presets are valid");
        let mut parts = vlm_parts(&policy.vlm, config);
        parts.push(part("action expert", params(&policy.expert), config.trainable.action_expert));
        parts
    }
}

/// The counts as a table, with totals.
pub fn render(parts: &[PartCount]) -> String {
    let millions = |n: u64| format!("{:.1} M", n as f64 / 1e6);
    let mut out = format!("  {:<28} {:>12} {:>12} {:>12}\n", "part", "parameters", "trainable", "frozen");
    for p in parts {
        out += &format!(
            "  {:<28} {:>12} {:>12} {:>12}\n",
            p.name,
            millions(p.params),
            millions(p.trainable),
            millions(p.params - p.trainable)
        );
    }
    let (all, trainable) = parts.iter().fold((0, 0), |(a, t), p| (a + p.params, t + p.trainable));
    out += &format!(
        "  {:<28} {:>12} {:>12} {:>12}\n",
        "total",
        millions(all),
        millions(trainable),
        millions(all - trainable)
    );
    out
}
