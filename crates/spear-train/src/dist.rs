//! Data parallelism on burn's collective engine (`burn::collective`): a run's [`Rank`]s each
//! take their share of every step's micro-batches and, after accumulating, sum their gradients
//! with the others'; every rank then takes the same update.
//!
//! **Gradients in module order.** burn's own `GradientsParams::all_reduce` pairs tensors by
//! sorted `ParamId`, and ids are random per process: two processes would sum different tensors
//! of equal shape without a word. [`Rank::all_reduce_grads`] visits the model's parameters in
//! module order instead (the same order on every rank of the same model), packs their gradients
//! into buckets of at most [`Rank::bucket_bytes`] and sums each bucket once.
//!
//! **Exact metrics.** Scalar values (losses, their parts) are gathered, not summed on the device:
//! each rank writes the bits of its values, as 16-bit pieces that float32 holds exactly, into
//! its own slots of a zeroed buffer, the buffers are summed (one piece plus zeros), and every rank
//! decodes every rank's values and adds them on the host in the order one device would have.
//!
//! Local mode only so far: several peers in one process (one per device; on the CPU, threads on
//! the one device), through burn-collective's in-process server.

use burn::collective::{self, CollectiveConfig, CollectiveError, PeerId, ReduceOperation};
use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::TensorPrimitive;
use burn::tensor::backend::AutodiffBackend;

/// Why a collective operation failed.
#[derive(Debug, thiserror::Error)]
#[error("rank {rank} of {world}: {what}: {problem}")]
pub struct DistError {
    /// The rank that saw it.
    pub rank: usize,
    /// The world size.
    pub world: usize,
    /// The operation.
    pub what: &'static str,
    /// burn-collective's error, or that another rank stopped.
    pub problem: String,
    /// Whether it only reflects another rank's stop ([`Rank::abort`]): that rank has the cause.
    pub peer_stopped: bool,
}

/// One rank of a data-parallel run, or the only one.
#[derive(Debug, Clone)]
pub struct Rank {
    index: usize,
    world: usize,
    bucket_bytes: usize,
}

/// Default largest bucket of gradients summed at once.
pub const BUCKET_BYTES: usize = 256 << 20;

impl Rank {
    /// A run on one device: nothing to exchange.
    pub fn single() -> Self {
        Self { index: 0, world: 1, bucket_bytes: BUCKET_BYTES }
    }

    /// Peer `index` of `world` peers in this process (burn-collective's local mode), on
    /// `device` of the inner backend `B`. Every peer must call this, each from its own thread.
    pub fn local<B: Backend>(index: usize, world: usize, device: &B::Device) -> Result<Self, DistError> {
        assert!(index < world, "rank {index} of {world}");
        let rank = Self { index, world, bucket_bytes: BUCKET_BYTES };
        if world > 1 {
            let config = CollectiveConfig::default().with_num_devices(world);
            collective::register::<B>(rank.peer(), device.clone(), config)
                .map_err(|e| rank.error("joining the collective", e))?;
        }
        Ok(rank)
    }

    /// The same rank summing gradients in buckets of at most `bytes`.
    pub fn with_bucket_bytes(mut self, bytes: usize) -> Self {
        self.bucket_bytes = bytes.max(4);
        self
    }

    /// This rank's index (0: the one that logs and checkpoints).
    pub fn index(&self) -> usize {
        self.index
    }

    /// Ranks in the run.
    pub fn world(&self) -> usize {
        self.world
    }

    /// Largest bucket of gradients summed at once, bytes.
    pub fn bucket_bytes(&self) -> usize {
        self.bucket_bytes
    }

    /// Whether this rank logs, validates and writes checkpoints.
    pub fn is_main(&self) -> bool {
        self.index == 0
    }

    fn peer(&self) -> PeerId {
        PeerId(self.index as u32)
    }

    fn error(&self, what: &'static str, e: CollectiveError) -> DistError {
        // What a rank waiting in, or arriving at, an operation gets after another rank's abort.
        let peer_stopped =
            matches!(e, CollectiveError::LocalServerMissing | CollectiveError::RegisterNotFirstOperation);
        let problem = if peer_stopped { "another rank stopped".to_string() } else { format!("{e:?}") };
        DistError { rank: self.index, world: self.world, what, problem, peer_stopped }
    }

    /// Releases every other rank of this process from the collective: those waiting in an
    /// operation, and those that reach one later, get an error ([`DistError::peer_stopped`])
    /// instead of waiting forever for this rank. Called by [`crate::run::train`] when this rank
    /// stops on an error.
    pub fn abort<B: Backend>(&self) {
        if self.world > 1 {
            abort::<B>();
        }
    }

    /// `grads` of `model` summed over every rank, parameter by parameter in module order.
    pub fn all_reduce_grads<B: AutodiffBackend, M: AutodiffModule<B>>(
        &self,
        model: &M,
        mut grads: GradientsParams,
    ) -> Result<GradientsParams, DistError> {
        if self.world == 1 {
            return Ok(grads);
        }
        let mut order = InOrder::<B::InnerBackend> { grads: &mut grads, taken: Vec::new() };
        model.visit(&mut order);
        let taken = order.taken;
        let mut start = 0;
        while start < taken.len() {
            // One bucket: consecutive gradients up to the byte cap (at least one).
            let len = |i: usize| taken[i].1.dims()[0];
            let mut end = start + 1;
            let mut bytes = len(start) * 4;
            while end < taken.len() && bytes + len(end) * 4 <= self.bucket_bytes {
                bytes += len(end) * 4;
                end += 1;
            }
            let flat: Vec<Tensor<B::InnerBackend, 1>> =
                taken[start..end].iter().map(|(_, t, _)| t.clone()).collect();
            let summed = self.sum(Tensor::cat(flat, 0))?;
            let mut at = 0;
            for (id, tensor, dims) in &taken[start..end] {
                let n = tensor.dims()[0];
                let part = summed.clone().narrow(0, at, n);
                at += n;
                restore(&mut grads, *id, part, dims);
            }
            start = end;
        }
        Ok(grads)
    }

    /// Every rank's `values` (the same count on each), in rank order: exact.
    pub fn gather<B: Backend>(&self, values: &[f64], device: &B::Device) -> Result<Vec<Vec<f64>>, DistError> {
        if self.world == 1 {
            return Ok(vec![values.to_vec()]);
        }
        // Each f64 as four 16-bit pieces, each exact in float32; this rank's slots only.
        let per = values.len() * 4;
        let mut slots = vec![0f32; per * self.world];
        for (i, v) in values.iter().enumerate() {
            let bits = v.to_bits();
            for p in 0..4 {
                slots[self.index * per + i * 4 + p] = ((bits >> (16 * p)) & 0xFFFF) as f32;
            }
        }
        let summed =
            self.sum(Tensor::<B, 1>::from_data(TensorData::new(slots, [per * self.world]), device))?;
        let pieces: Vec<f32> = summed.into_data().convert::<f32>().to_vec().expect("f32 pieces");
        Ok(pieces
            .chunks(per.max(1))
            .take(self.world)
            .map(|rank| {
                rank.chunks(4)
                    .map(|p| f64::from_bits(p.iter().rev().fold(0u64, |bits, &x| (bits << 16) | x as u64)))
                    .collect()
            })
            .collect())
    }

    /// Waits until every rank is here.
    pub fn barrier<B: Backend>(&self, device: &B::Device) -> Result<(), DistError> {
        self.gather::<B>(&[0.0], device).map(|_| ())
    }

    /// `tensor` summed over the ranks.
    fn sum<B: Backend>(&self, tensor: Tensor<B, 1>) -> Result<Tensor<B, 1>, DistError> {
        let primitive = tensor.into_primitive().tensor();
        let summed = collective::all_reduce::<B>(self.peer(), primitive, ReduceOperation::Sum)
            .map_err(|e| self.error("summing gradients", e))?;
        Ok(Tensor::from_primitive(TensorPrimitive::Float(summed)))
    }

    /// Leaves the collective (every rank, at the end of the run).
    pub fn finish<B: Backend>(&self) -> Result<(), DistError> {
        if self.world > 1 {
            collective::finish_collective::<B>(self.peer())
                .map_err(|e| self.error("leaving the collective", e))?;
        }
        Ok(())
    }
}

/// A gradient taken out of [`GradientsParams`]: its parameter, its values, its shape.
type Taken<B> = (ParamId, Tensor<B, 1>, Vec<usize>);

/// Takes the gradients out of `grads` in module visit order, flattened.
struct InOrder<'a, B: Backend> {
    grads: &'a mut GradientsParams,
    taken: Vec<Taken<B>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for InOrder<'_, B::InnerBackend> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(grad) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            let dims = grad.dims().to_vec();
            self.taken.push((param.id, grad.reshape([-1]), dims));
        }
    }
}

/// Puts a summed, flat gradient back under `id` with its shape.
fn restore<B: Backend>(grads: &mut GradientsParams, id: ParamId, flat: Tensor<B, 1>, dims: &[usize]) {
    macro_rules! rank {
        ($($d:literal),*) => {
            match dims.len() {
                $($d => grads.register::<B, $d>(id, flat.reshape(<[usize; $d]>::try_from(dims).expect("rank"))),)*
                other => panic!("a parameter of rank {other}"),
            }
        };
    }
    rank!(1, 2, 3, 4, 5, 6);
}

/// Releases every rank of this process from burn-collective's local server (see
/// [`Rank::abort`]); also for a rank that failed before it could join.
pub fn abort<B: Backend>() {
    collective::reset_collective::<B>();
}

/// `model` with every parameter a new autodiff leaf of the same values, parameter ids and
/// trainability: what each rank of this process must train. Clones share their parameters'
/// autodiff nodes, and burn-autodiff 0.21 merges the graphs of threads that share a node under
/// locks taken in opposite orders by its backward pass and its graph registration: ranks training
/// clones of one model deadlock, now and then.
pub fn own_copy<B: AutodiffBackend, M: AutodiffModule<B>>(model: M) -> M {
    struct Fresh;
    impl<B: AutodiffBackend> ModuleMapper<B> for Fresh {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            param.map(|tensor| {
                let fresh = Tensor::from_inner(tensor.clone().inner());
                if tensor.is_require_grad() { fresh.require_grad() } else { fresh }
            })
        }
    }
    model.map(&mut Fresh)
}
