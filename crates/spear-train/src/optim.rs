//! The optimisation pieces of a training step: openpi's learning-rate schedule, AdamW, clipping by
//! the global gradient norm, exponential moving averages of the weights, and the VLM's
//! λ-weighted next-token loss.

use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Int, Tensor, activation};

use crate::config::OptimSection;

/// optax's `warmup_cosine_decay_schedule` as openpi configures it: linear from
/// `peak / (warmup + 1)` at step 0 to `peak` at `warmup`, then cosine to `end` at `decay_steps`,
/// `end` after.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WarmupCosine {
    /// Peak learning rate.
    pub peak: f64,
    /// Warmup steps.
    pub warmup: u64,
    /// Step where the cosine reaches `end`.
    pub decay_steps: u64,
    /// Final learning rate.
    pub end: f64,
}

impl WarmupCosine {
    /// The schedule of an `[optim]` section.
    pub fn new(optim: &OptimSection) -> Self {
        Self {
            peak: optim.peak_lr,
            warmup: optim.warmup_steps,
            decay_steps: optim.decay_steps,
            end: optim.decay_lr,
        }
    }

    /// The learning rate of optimiser step `step` (0-based).
    pub fn lr(&self, step: u64) -> f64 {
        if step < self.warmup {
            // optax.linear_schedule(init, peak, warmup)
            let init = self.peak / (self.warmup + 1) as f64;
            let frac = 1.0 - step as f64 / self.warmup as f64;
            (init - self.peak) * frac + self.peak
        } else {
            // optax.cosine_decay_schedule(peak, decay_steps - warmup, alpha = end / peak)
            let span = self.decay_steps - self.warmup;
            if span == 0 {
                return self.end;
            }
            let t = (step - self.warmup).min(span) as f64 / span as f64;
            let alpha = self.end / self.peak;
            let cosine = 0.5 * (1.0 + (std::f64::consts::PI * t).cos());
            self.peak * ((1.0 - alpha) * cosine + alpha)
        }
    }
}

/// burn's AdamW with the section's β, ε and (decoupled) weight decay; clipping is done by
/// [`clip_global_norm`] (burn's own clips each tensor separately, openpi the global norm).
pub fn adamw(optim: &OptimSection) -> AdamWConfig {
    AdamWConfig::new()
        .with_beta_1(optim.b1 as f32)
        .with_beta_2(optim.b2 as f32)
        .with_epsilon(optim.eps as f32)
        .with_weight_decay(optim.weight_decay as f32)
}

/// Sums the squares of every gradient of `model`'s parameters.
struct SquaredNorm<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    total: Option<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SquaredNorm<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(grad) = self.grads.get::<B::InnerBackend, D>(param.id) {
            let squares = grad.square().sum();
            self.total = Some(match self.total.take() {
                Some(total) => total + squares,
                None => squares,
            });
        }
    }
}

/// Scales every gradient of `model`'s parameters.
struct Scale<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    factor: f64,
    _backend: std::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(grad) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            self.grads.register(param.id, grad.mul_scalar(self.factor));
        }
    }
}

/// Multiplies every gradient of `model`'s parameters by `factor` — e.g. `1 / n` after summing
/// the gradients of `n` equal micro-batches with burn's `GradientsAccumulator`, which makes them
/// the gradient of the whole batch's mean loss (`run.grad_accum`).
pub fn scale_grads<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    mut grads: GradientsParams,
    factor: f64,
) -> GradientsParams {
    model.visit(&mut Scale::<B> { grads: &mut grads, factor, _backend: std::marker::PhantomData });
    grads
}

/// The global L2 norm of `grads` over `model`'s parameters, and the gradients scaled down so that
/// it is at most `max_norm` (optax's `clip_by_global_norm`; `max_norm = 0` leaves them).
pub fn clip_global_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    mut grads: GradientsParams,
    max_norm: f64,
) -> (GradientsParams, f64) {
    let mut visitor = SquaredNorm::<B> { grads: &grads, total: None };
    model.visit(&mut visitor);
    let norm = visitor.total.map_or(0.0, |t| f64::from(t.into_scalar().elem::<f32>()).sqrt());
    if max_norm > 0.0 && norm > max_norm {
        let mut scale =
            Scale::<B> { grads: &mut grads, factor: max_norm / norm, _backend: std::marker::PhantomData };
        model.visit(&mut scale);
    }
    (grads, norm)
}

/// An exponential moving average of a model's weights (`ema ← d · ema + (1 − d) · w`), kept on
/// the inner (non-autodiff) backend.
#[derive(Debug, Clone)]
pub struct Ema<M> {
    /// The averaged weights.
    pub model: M,
    /// The decay `d`.
    pub decay: f64,
}

/// Blends the visited module's parameters toward `current`'s, by id: those `averages` says,
/// the others become `current`'s (another rank averages them; sharing the model's tensor costs
/// no memory).
struct Blend<'a, B: Backend, F> {
    current: &'a GradientsParams,
    decay: f64,
    averages: F,
    _backend: std::marker::PhantomData<B>,
}

impl<B: Backend, F: Fn(ParamId) -> bool> ModuleMapper<B> for Blend<'_, B, F> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let Some(current) = self.current.get::<B, D>(param.id) else { return param };
        if !(self.averages)(param.id) {
            return param.map(|_| current);
        }
        let decay = self.decay;
        param.map(|ema| ema.mul_scalar(decay) + current.mul_scalar(1.0 - decay))
    }
}

/// Holds a module's trainable parameters by id (values on the inner backend).
struct Snapshot<'a, B: AutodiffBackend> {
    into: &'a mut GradientsParams,
    _backend: std::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Snapshot<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let value = param.val();
        if value.is_require_grad() {
            self.into.register(param.id, value.inner());
        }
    }
}

/// Draws every parameter of `model` that is still lazy, in place. burn initialises parameters on
/// first use, and a clone taken before that draws its own values: materialise a model before
/// copying it (EMA, a reference copy, a checkpoint's starting point).
pub fn materialize<B: Backend, M: Module<B>>(model: &M) {
    struct Touch;
    impl<B: Backend> ModuleVisitor<B> for Touch {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let _ = param.val();
        }
    }
    model.visit(&mut Touch);
}

impl<M> Ema<M> {
    /// Starts the average at `model`, which must hold the trained model's weights (see
    /// [`Ema::of`]).
    pub fn new(model: M, decay: f64) -> Self {
        Self { model, decay }
    }

    /// Starts the average at `model`'s current weights (materialised first, so the average and
    /// the model start equal).
    pub fn of<B: AutodiffBackend, A: AutodiffModule<B, InnerModule = M>>(model: &A, decay: f64) -> Self {
        materialize(model);
        Self::new(model.valid(), decay)
    }

    /// Moves the average toward `model`'s current weights (parameters matched by id). Frozen
    /// parameters are not averaged: they keep the values the average started from, which are
    /// theirs.
    pub fn update<B: AutodiffBackend, A: AutodiffModule<B, InnerModule = M>>(&mut self, model: &A)
    where
        M: Module<B::InnerBackend>,
    {
        self.update_owned(model, |_| true);
    }

    /// [`Self::update`] for the trainable parameters `owned` says (this rank's share when the
    /// optimiser state is sharded); the others take `model`'s current values, so that the
    /// average holds no copy of them (`crate::dist::Rank::gather_ema` makes it whole).
    pub fn update_owned<B: AutodiffBackend, A: AutodiffModule<B, InnerModule = M>>(
        &mut self,
        model: &A,
        owned: impl Fn(ParamId) -> bool,
    ) where
        M: Module<B::InnerBackend>,
    {
        let mut current = GradientsParams::new();
        model.visit(&mut Snapshot::<B> { into: &mut current, _backend: std::marker::PhantomData });
        let mut blend = Blend::<B::InnerBackend, _> {
            current: &current,
            decay: self.decay,
            averages: owned,
            _backend: std::marker::PhantomData,
        };
        self.model = self.model.clone().map(&mut blend);
    }
}

/// SPEAR-VLM's next-token loss (§3.1): cross-entropy of `logits` `[B, T, V]` against `targets`
/// `[B, T]` on the positions where `loss_mask` `[B, T]` is 1, each 3D-token position
/// (`is_3d` = 1) weighted by `lambda`, divided by the number of loss positions (so `lambda = 1`
/// is the plain mean).
pub fn vqa_loss<B: Backend>(
    logits: Tensor<B, 3>,
    targets: Tensor<B, 2, Int>,
    loss_mask: Tensor<B, 2>,
    is_3d: Tensor<B, 2>,
    lambda: f64,
) -> Tensor<B, 1> {
    let log_probs = activation::log_softmax(logits, 2);
    let nll = -log_probs.gather(2, targets.unsqueeze_dim::<3>(2)).squeeze_dim::<2>(2);
    let weights = loss_mask.clone() * (is_3d.mul_scalar(lambda - 1.0) + 1.0);
    let count = loss_mask.sum().clamp_min(1.0);
    (nll * weights).sum() / count
}
