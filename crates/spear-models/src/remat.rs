//! Block-level rematerialisation: the training forward pass cut into stages that the backward pass
//! recomputes one at a time (`checkpointing = "blocks"` in spear-train).
//!
//! The stages are the embeddings, each SigLIP block (when SigLIP trains), the join of the towers
//! into the prefix, and each joint layer of Gemma and the action expert. The forward pass runs them
//! on a copy of the model whose weights are not tracked, so that autodiff records nothing, keeping
//! only each stage's input; the loss is taken under autodiff from the last stage's output. Then, from the last stage to the first, the stage is run
//! again under autodiff from its saved input and differentiated alone: the gradient of `Σ yᵢ·gᵢ`
//! over its outputs `y`, with `g` their gradients from the stage after it, is the chain rule's step
//! to the stage's inputs and weights. A step then holds the stage inputs and one stage's
//! activations instead of every stage's, for one more forward pass. Frozen encoders (MoGe's, and
//! SigLIP when it does not train) run once, outside the stages.
//!
//! Both passes run the same operations on the same backend, so the recomputed activations are the
//! forward pass's bit for bit, and the gradients equal those of one backward pass through
//! [`SpearPolicy::loss`] or [`SpearVlm::forward_rows`] up to float rounding (a weight used by two
//! stages, e.g. Gemma's table in the embedding and the LM head, adds its parts in another order).

use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Bool, Int};

use crate::error::ModelError;
use crate::expert::ActionExpert;
use crate::gemma::{Rope, Stream, joint_layer};
use crate::policy::{FlowDraws, Observation, PolicyLoss, SpearPolicy};
use crate::vision::siglip_pixels;
use crate::vlm::SpearVlm;

/// A computation cut into stages: stage 0 starts from nothing (its inputs are the computation's
/// own), stage `i + 1` takes what stage `i` returns.
pub trait Stages<C: Backend> {
    /// Number of stages.
    fn count(&self) -> usize;

    /// Runs stage `index` on `state`.
    fn run(&self, index: usize, state: Vec<Tensor<C, 3>>) -> Vec<Tensor<C, 3>>;

    /// Whether stage 0 has weights that train (every later stage differentiates with respect to
    /// its input, which the backward pass needs anyway).
    fn first_trains(&self) -> bool;
}

/// The gradients of `module`'s parameters through `forward` (the stages on an untracked copy of
/// the weights) and `head` (the loss of the last stage's output, with anything else it returns),
/// recomputing each stage with `replay` (the same stages on `module`'s own weights) in the
/// backward pass. `head` may fail (e.g. on a loss that is not finite) before any backward pass.
pub fn gradients<B, M, T, E>(
    module: &M,
    forward: &impl Stages<B>,
    replay: &impl Stages<B>,
    head: impl FnOnce(Vec<Tensor<B, 3>>) -> Result<(Tensor<B, 1>, T), E>,
) -> Result<(T, GradientsParams), E>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
{
    let mut saved = Vec::with_capacity(forward.count());
    let mut state = Vec::new();
    for index in 0..forward.count() {
        let next = forward.run(index, state.clone());
        saved.push(state);
        state = next;
    }
    let leaves = tracked(state);
    let (loss, out) = head(leaves.clone())?;
    let mut accumulated = GradientsAccumulator::<M>::new();
    let mut upstream = backward(module, loss, &leaves, &mut accumulated);
    while let Some(input) = saved.pop() {
        let leaves = tracked(input);
        let outputs = replay.run(saved.len(), leaves.clone());
        debug_assert_eq!(outputs.len(), upstream.len(), "stage {} changed its state's arity", saved.len());
        let objective = outputs
            .into_iter()
            .zip(upstream)
            .filter_map(|(y, g)| g.map(|g| (y * Tensor::from_inner(g)).sum()))
            .reduce(|a, b| a + b);
        // burn reports only leaves as requiring gradients, so whether the objective is tracked
        // comes from the stages: a backward pass from an untracked tensor is an error.
        upstream = match objective {
            Some(objective) if !saved.is_empty() || replay.first_trains() => {
                backward(module, objective, &leaves, &mut accumulated)
            }
            _ => vec![None; leaves.len()],
        };
    }
    Ok((out, accumulated.grads()))
}

/// `state` (untracked) as autodiff leaves whose gradients the backward pass computes.
fn tracked<B: AutodiffBackend>(state: Vec<Tensor<B, 3>>) -> Vec<Tensor<B, 3>> {
    state.into_iter().map(Tensor::require_grad).collect()
}

/// Back-propagates `objective`: adds `module`'s gradients to `accumulated` and returns those of
/// `leaves` (`None` where a leaf did not reach the objective).
fn backward<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    objective: Tensor<B, 1>,
    leaves: &[Tensor<B, 3>],
    accumulated: &mut GradientsAccumulator<M>,
) -> Vec<Option<Tensor<B::InnerBackend, 3>>> {
    let mut grads = objective.backward();
    let upstream = leaves.iter().map(|leaf| leaf.grad_remove(&mut grads)).collect();
    accumulated.accumulate(module, GradientsParams::from_grads(grads, module));
    upstream
}

/// Whether any parameter of a module receives gradients.
fn trains<B: Backend, M: Module<B>>(module: &M) -> bool {
    struct Any(bool);
    impl<B: Backend> ModuleVisitor<B> for Any {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0 |= param.val().is_require_grad();
        }
    }
    let mut any = Any(false);
    module.visit(&mut any);
    any.0
}

/// What the stages read besides their state.
struct TowerInputs<C: Backend> {
    /// Per camera, RGB `[B, 3, H, W]` in [0, 1].
    cameras: Vec<Tensor<C, 4>>,
    /// Right-padded text ids `[B, L]`.
    ids: Tensor<C, 2, Int>,
    /// The action expert's suffix: state, noisy chunk, time embedding.
    suffix: Option<(Tensor<C, 2>, Tensor<C, 3>, Tensor<C, 2>)>,
    /// The joint attention mask.
    mask: Tensor<C, 3, Bool>,
    /// Rotary tables: the prefix's, then the suffix's.
    ropes: Vec<Rope<C>>,
    /// Which parts train.
    trains: Trains,
}

/// Which parts of the model train, read from its parameters once per staged step.
struct Trains {
    /// SigLIP: its blocks are stages (else its output is computed once).
    siglip: bool,
    /// MoGe's encoder: its features are computed in the join stage (else once).
    moge: bool,
    /// Any weight of the embedding stage: SigLIP's patches and positions, Gemma's table, the
    /// 3D-token rows, the expert's suffix projections (`suffix`).
    embeddings: bool,
}

impl Trains {
    fn of<B: Backend>(vlm: &SpearVlm<B>, suffix: bool) -> Self {
        let siglip = trains(&vlm.siglip);
        let embeddings =
            siglip || suffix || trains(&vlm.gemma.embed_tokens) || vlm.embed_3d.as_ref().is_some_and(trains);
        Self { siglip, moge: vlm.moge.as_ref().is_some_and(trains), embeddings }
    }
}

/// The frozen encoders' outputs per camera, computed once: SigLIP's (after its final norm) when it
/// does not train, MoGe's features when it does not train.
struct Frozen<C: Backend> {
    siglip: Vec<Option<Tensor<C, 3>>>,
    moge: Vec<Option<Tensor<C, 3>>>,
}

impl<C: Backend> Frozen<C> {
    fn of(vlm: &SpearVlm<C>, inputs: &TowerInputs<C>) -> Self {
        let siglip = |c: &Tensor<C, 4>| vlm.siglip.forward(siglip_pixels(c.clone()));
        Self {
            siglip: inputs.cameras.iter().map(|c| (!inputs.trains.siglip).then(|| siglip(c))).collect(),
            moge: inputs
                .cameras
                .iter()
                .map(|c| if inputs.trains.moge { None } else { vlm.moge_features(c.clone()) })
                .collect(),
        }
    }
}

/// The stages of SPEAR-VLM (and of the action expert beside it): `[embed] [SigLIP block]… [join]
/// [joint layer]…`. The state after the embeddings is `[SigLIP tokens per camera…, text, suffix]`
/// (SigLIP's only while it trains; the suffix only with an expert); after the join, `[prefix,
/// suffix]`.
struct TowerStages<'a, C: Backend> {
    vlm: &'a SpearVlm<C>,
    expert: Option<&'a ActionExpert<C>>,
    inputs: &'a TowerInputs<C>,
    frozen: &'a Frozen<C>,
}

impl<C: Backend> TowerStages<'_, C> {
    fn siglip_blocks(&self) -> usize {
        if self.inputs.trains.siglip { self.vlm.siglip.encoder.layers.len() } else { 0 }
    }
}

impl<C: Backend> Stages<C> for TowerStages<'_, C> {
    fn count(&self) -> usize {
        2 + self.siglip_blocks() + self.vlm.gemma.layers.len()
    }

    fn first_trains(&self) -> bool {
        self.inputs.trains.embeddings
    }

    fn run(&self, index: usize, mut state: Vec<Tensor<C, 3>>) -> Vec<Tensor<C, 3>> {
        let (vlm, inputs) = (self.vlm, self.inputs);
        let blocks = self.siglip_blocks();
        let streamed = if blocks > 0 { inputs.cameras.len() } else { 0 };
        if index == 0 {
            let mut out: Vec<_> = inputs
                .cameras
                .iter()
                .take(streamed)
                .map(|c| vlm.siglip.embed(siglip_pixels(c.clone())))
                .collect();
            out.push(vlm.embed_tokens(inputs.ids.clone()));
            if let (Some(expert), Some((s, a, t))) = (self.expert, &inputs.suffix) {
                out.push(expert.embed_suffix(s.clone(), a.clone(), t.clone()));
            }
            return out;
        }
        if index <= blocks {
            let layer = &vlm.siglip.encoder.layers[index - 1];
            for tokens in state.iter_mut().take(streamed) {
                *tokens = layer.forward(tokens.clone());
            }
            return state;
        }
        if index == blocks + 1 {
            let rest = state.split_off(streamed);
            let mut parts: Vec<_> = (0..inputs.cameras.len())
                .map(|c| {
                    let siglip = match &self.frozen.siglip[c] {
                        Some(tokens) => tokens.clone(),
                        None => vlm.siglip.post_layernorm.forward(state[c].clone()),
                    };
                    let moge = match &self.frozen.moge[c] {
                        Some(features) => Some(features.clone()),
                        None => vlm.moge_features(inputs.cameras[c].clone()),
                    };
                    vlm.join_image(siglip, moge)
                })
                .collect();
            let mut rest = rest.into_iter();
            parts.push(rest.next().expect("the text embeddings"));
            return std::iter::once(Tensor::cat(parts, 1)).chain(rest).collect();
        }
        let layer = index - blocks - 2;
        let mut stacks = vec![vlm.gemma.layers.as_slice()];
        stacks.extend(self.expert.map(|e| e.layers.as_slice()));
        let mut streams: Vec<Stream<'_, C>> = stacks
            .into_iter()
            .zip(state)
            .zip(&inputs.ropes)
            .map(|((layers, hidden), rope)| Stream { layers, hidden, rope: rope.clone() })
            .collect();
        joint_layer(&mut streams, layer, &inputs.mask, None);
        streams.into_iter().map(|s| s.hidden).collect()
    }
}

/// A model made of SPEAR-VLM and, for a policy, the action expert beside it.
trait Towers<B: Backend>: Module<B> {
    fn towers(&self) -> (&SpearVlm<B>, Option<&ActionExpert<B>>);
}

impl<B: Backend> Towers<B> for SpearPolicy<B> {
    fn towers(&self) -> (&SpearVlm<B>, Option<&ActionExpert<B>>) {
        (&self.vlm, Some(&self.expert))
    }
}

impl<B: Backend> Towers<B> for SpearVlm<B> {
    fn towers(&self) -> (&SpearVlm<B>, Option<&ActionExpert<B>>) {
        (self, None)
    }
}

/// [`gradients`] through `model`'s [`TowerStages`]: forward on an untracked copy of its weights,
/// the frozen towers run once on it, replay on the weights themselves.
fn tower_gradients<B, M, T, E>(
    model: &M,
    inputs: &TowerInputs<B>,
    head: impl FnOnce(Vec<Tensor<B, 3>>) -> Result<(Tensor<B, 1>, T), E>,
) -> Result<(T, GradientsParams), E>
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + Towers<B>,
{
    let untracked = model.clone().no_grad();
    let (vlm, expert) = untracked.towers();
    let frozen = Frozen::of(vlm, inputs);
    let forward = TowerStages { vlm, expert, inputs, frozen: &frozen };
    let (vlm, expert) = model.towers();
    let replay = TowerStages { vlm, expert, inputs, frozen: &frozen };
    gradients(model, &forward, &replay, head)
}

/// A policy's training loss ready to be differentiated by stages ([`SpearPolicy::staged_loss`]).
pub struct StagedLoss<'a, B: AutodiffBackend> {
    policy: &'a SpearPolicy<B>,
    inputs: TowerInputs<B>,
    actions: Tensor<B, 3>,
    valid: Option<Tensor<B, 2, Bool>>,
    draws: FlowDraws<B>,
}

impl<B: AutodiffBackend> SpearPolicy<B> {
    /// [`Self::loss`] prepared for block-level rematerialisation (see the [module](self)):
    /// checks the batch as [`Self::loss`] does; [`StagedLoss::gradients`] then computes.
    pub fn staged_loss(
        &self,
        obs: &Observation<B>,
        actions: Tensor<B, 3>,
        valid: Option<Tensor<B, 2, Bool>>,
        draws: &FlowDraws<B>,
    ) -> Result<StagedLoss<'_, B>, ModelError> {
        let noisy = self.noisy_actions(obs, &actions, draws)?;
        self.check(obs)?;
        let counts = obs
            .cameras
            .iter()
            .map(|c| self.vlm.check_image(c).map(|[rows, cols]| rows * cols))
            .collect::<Result<Vec<_>, _>>()?;
        let (ids, layout) = self.prompt_layout(obs, &counts);
        let device = actions.device();
        let joint = self.joint_layout(layout, &device);
        let t: Vec<f64> = draws.tau.iter().map(|tau| 1.0 - tau).collect();
        let e = &self.expert;
        let suffix_trains = [&e.state_proj, &e.action_in_proj, &e.action_time_mlp_in, &e.action_time_mlp_out]
            .into_iter()
            .any(trains);
        let inputs = TowerInputs {
            cameras: obs.cameras.clone(),
            ids,
            suffix: Some((obs.state.clone(), noisy, self.expert.time_embedding(&t, &device))),
            mask: joint.mask,
            ropes: vec![
                self.vlm.gemma.rope(&joint.prefix, &device),
                self.vlm.gemma.rope(&joint.suffix, &device),
            ],
            trains: Trains::of(&self.vlm, suffix_trains),
        };
        Ok(StagedLoss { policy: self, inputs, actions, valid, draws: draws.clone() })
    }
}

impl<B: AutodiffBackend> StagedLoss<'_, B> {
    /// The loss and the gradients of its total. `check` sees the loss before any backward pass
    /// and may stop there (e.g. when it is not finite).
    pub fn gradients<E>(
        self,
        check: impl FnOnce(&PolicyLoss<B>) -> Result<(), E>,
    ) -> Result<(PolicyLoss<B>, GradientsParams), E> {
        let policy = self.policy;
        let (actions, valid, draws) = (self.actions, self.valid, self.draws);
        tower_gradients(policy, &self.inputs, |mut state| {
            let velocity = -policy.expert.velocity(state.remove(1));
            let loss = policy.loss_of_velocity(velocity, actions, valid, &draws);
            check(&loss)?;
            Ok((loss.total.clone(), loss))
        })
    }
}

/// A VLM batch of token rows ready to be differentiated by stages ([`SpearVlm::staged_rows`]).
pub struct StagedRows<'a, B: AutodiffBackend> {
    vlm: &'a SpearVlm<B>,
    inputs: TowerInputs<B>,
    image_tokens: usize,
    longest: usize,
}

impl<B: AutodiffBackend> SpearVlm<B> {
    /// [`Self::forward_rows`] prepared for block-level rematerialisation (see the
    /// [module](self)): checks the batch as [`Self::forward_rows`] does; [`StagedRows::gradients`]
    /// then computes.
    pub fn staged_rows(
        &self,
        cameras: &[Tensor<B, 4>],
        rows: &[(&[u32], usize)],
    ) -> Result<StagedRows<'_, B>, ModelError> {
        let first = cameras
            .first()
            .ok_or_else(|| ModelError::Input("at least one camera image is required".into()))?;
        let mut image_tokens = 0;
        for camera in cameras {
            let [rows, cols] = self.check_image(camera)?;
            image_tokens += rows * cols;
        }
        let [batch, ..] = first.dims();
        let text = self.rows_text(rows, batch, image_tokens, &first.device())?;
        let device = first.device();
        let sequence = text.layout.len();
        let inputs = TowerInputs {
            cameras: cameras.to_vec(),
            ids: text.ids,
            suffix: None,
            mask: text.layout.mask(sequence, &device),
            ropes: vec![self.gemma.rope(&text.layout.positions(sequence), &device)],
            trains: Trains::of(self, false),
        };
        Ok(StagedRows { vlm: self, inputs, image_tokens, longest: text.longest })
    }
}

impl<B: AutodiffBackend> StagedRows<'_, B> {
    /// The gradients of the loss that `loss` takes of the text positions' logits (as
    /// [`SpearVlm::forward_rows`] returns them), with whatever else it returns. `loss` may fail,
    /// stopping before any backward pass.
    pub fn gradients<T, E>(
        self,
        loss: impl FnOnce(Tensor<B, 3>) -> Result<(Tensor<B, 1>, T), E>,
    ) -> Result<(T, GradientsParams), E> {
        let vlm = self.vlm;
        let (image_tokens, longest) = (self.image_tokens, self.longest);
        tower_gradients(vlm, &self.inputs, |mut state| {
            let hidden = vlm.gemma.norm.forward(state.remove(0));
            loss(vlm.logits(hidden.narrow(1, image_tokens, longest)))
        })
    }
}
