//! Data parallelism on burn's collective engine (`burn::collective`): a run's [`Rank`]s each
//! take their share of every step's micro-batches and, after accumulating, sum their gradients
//! with the others'; every rank then takes the same update.
//!
//! **Within a process and between processes.** A process runs one rank per device (on the CPU
//! the one device may carry several, for testing); burn-collective's local mode sums their
//! tensors. A run over several processes (nodes, [`Nodes`]) then sums the nodes' sums over a ring
//! of TCP connections ([`ring`]), from each node's first rank, which hands the result to its
//! node's other ranks. A [`Launch`] says which devices and nodes.
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
//! **Nothing waits forever.** Between nodes every read and write has the run's timeout
//! ([`Launch::timeout`]): a node that dies is an error at once, one that hangs is an error
//! after the timeout, each naming the rank, step and node. burn-collective's local operations
//! have no timeout and cannot be cancelled, so every rank also has a watchdog: when one of them
//! has waited past the timeout (twice the timeout on several nodes, where the ring's own errors
//! come first), it prints which rank, step and operation, and ends the process with
//! [`EXIT_TIMEOUT`] (as PyTorch's NCCL watchdog does). Checkpoints are written whole or not at
//! all, so the last one is intact and `--resume` continues.

pub mod ring;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use burn::collective::{self, CollectiveConfig, CollectiveError, PeerId, ReduceOperation};
use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::TensorPrimitive;
use burn::tensor::backend::AutodiffBackend;
pub use ring::Ring;
use sha2::{Digest, Sha256};

/// Why a collective operation failed.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {problem}")]
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
    /// This rank's place among its process's ranks, and their number.
    local: usize,
    local_world: usize,
    /// Whether the ranks span several processes (their models were built apart).
    global: bool,
    /// The ring between nodes, held by each node's first rank.
    ring: Option<Arc<Mutex<Ring>>>,
    bucket_bytes: usize,
    watch: Option<Arc<Watch>>,
}

/// Which rank owns each trainable parameter when the optimiser state is sharded (ZeRO-1,
/// `[memory] shard_optimizer`): the trainable parameters in module order, cut into `world`
/// contiguous runs of about equal size (a parameter goes to the rank whose equal share of all
/// trainable elements holds its middle element). Each rank keeps AdamW's moments and the EMA of
/// its own parameters only, updates them, and [`Rank::sync_owned`] hands the new values to the
/// others. A function of the model's parameter list alone: every rank computes the same.
#[derive(Debug, Clone, PartialEq)]
pub struct Owners {
    owners: std::collections::HashMap<ParamId, usize>,
}

impl Owners {
    /// The ownership of `model`'s trainable parameters over `world` ranks.
    pub fn new<B: AutodiffBackend, M: AutodiffModule<B>>(model: &M, world: usize) -> Self {
        struct Sizes(Vec<(ParamId, u64)>);
        impl<B: AutodiffBackend> ModuleVisitor<B> for Sizes {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                if param.val().is_require_grad() {
                    self.0.push((param.id, param.lazy_shape().num_elements() as u64));
                }
            }
        }
        let mut sizes = Sizes(Vec::new());
        model.visit(&mut sizes);
        let total: u64 = sizes.0.iter().map(|(_, n)| n).sum::<u64>().max(1);
        let world = world.max(1);
        let (mut owners, mut before) = (std::collections::HashMap::new(), 0u64);
        for (id, n) in sizes.0 {
            let middle = u128::from(before + n / 2);
            owners.insert(id, ((middle * world as u128 / u128::from(total)) as usize).min(world - 1));
            before += n;
        }
        Self { owners }
    }

    /// The rank owning parameter `id`; `None` for a frozen parameter (or one of another model).
    pub fn owner(&self, id: ParamId) -> Option<usize> {
        self.owners.get(&id).copied()
    }

    /// `grads` of `model` without the gradients of parameters `rank` does not own: what its
    /// optimiser steps.
    pub fn keep<B: AutodiffBackend, M: AutodiffModule<B>>(
        &self,
        rank: usize,
        model: &M,
        mut grads: GradientsParams,
    ) -> GradientsParams {
        struct Drop<'a, B> {
            owners: &'a Owners,
            rank: usize,
            grads: &'a mut GradientsParams,
            _backend: std::marker::PhantomData<B>,
        }
        impl<B: AutodiffBackend> ModuleVisitor<B> for Drop<'_, B> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                if self.owners.owner(param.id).is_some_and(|o| o != self.rank) {
                    self.grads.remove::<B::InnerBackend, D>(param.id);
                }
            }
        }
        model.visit(&mut Drop::<B> {
            owners: self,
            rank,
            grads: &mut grads,
            _backend: std::marker::PhantomData,
        });
        grads
    }
}

/// How a parameter of backend `B` travels in an exchange: on the backend the collective operations
/// take, and back.
trait Wire<B: Backend> {
    /// The backend exchanged on.
    type On: Backend;
    /// The values to send.
    fn send<const D: usize>(tensor: Tensor<B, D>) -> Tensor<Self::On, D>;
    /// The parameter from received `values`, shaped and marked like `like`.
    fn receive<const D: usize>(values: Tensor<Self::On, D>, like: &Tensor<B, D>) -> Tensor<B, D>;
}

/// Tensors of a plain backend, as they are.
struct Plain;

impl<B: Backend> Wire<B> for Plain {
    type On = B;
    fn send<const D: usize>(tensor: Tensor<B, D>) -> Tensor<B, D> {
        tensor
    }
    fn receive<const D: usize>(values: Tensor<B, D>, _like: &Tensor<B, D>) -> Tensor<B, D> {
        values
    }
}

/// Autodiff parameters: their inner values sent, a fresh leaf of the same trainability received.
struct Leaf;

impl<B: AutodiffBackend> Wire<B> for Leaf {
    type On = B::InnerBackend;
    fn send<const D: usize>(tensor: Tensor<B, D>) -> Tensor<B::InnerBackend, D> {
        tensor.inner()
    }
    fn receive<const D: usize>(values: Tensor<B::InnerBackend, D>, like: &Tensor<B, D>) -> Tensor<B, D> {
        leaf_like(values, like)
    }
}

/// Default largest bucket of gradients summed at once.
pub const BUCKET_BYTES: usize = 256 << 20;

/// Default time a collective operation may wait for the other ranks.
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// The exit status of a process whose watchdog fired (`EX_TEMPFAIL`: resuming may succeed).
pub const EXIT_TIMEOUT: i32 = 75;

/// How a data-parallel run is laid out: this process's devices (one rank each) and, for a run
/// over several processes, where this one stands among them.
#[derive(Debug, Clone)]
pub struct Launch<D> {
    /// This process's devices, one rank each (on the CPU the one device may repeat).
    pub devices: Vec<D>,
    /// The nodes of a multi-process run (`None`: this process is the whole run).
    pub nodes: Option<Nodes>,
    /// How long a collective operation may wait for the other ranks.
    pub timeout: Duration,
    /// Largest bucket of gradients summed at once, bytes.
    pub bucket_bytes: usize,
}

impl<D: Clone> Launch<D> {
    /// One process on `devices`.
    pub fn local(devices: Vec<D>) -> Self {
        Self { devices, nodes: None, timeout: TIMEOUT, bucket_bytes: BUCKET_BYTES }
    }

    /// One process on one device.
    pub fn single(device: D) -> Self {
        Self::local(vec![device])
    }

    /// The same launch as node `nodes.rank` of `nodes.count`.
    pub fn on_nodes(mut self, nodes: Option<Nodes>) -> Self {
        self.nodes = nodes;
        self
    }

    /// Ranks in the whole run: devices per node × nodes.
    pub fn world(&self) -> usize {
        self.devices.len() * self.nodes.as_ref().map_or(1, |n| n.count)
    }

    /// Whether this process holds rank 0 (which logs, checkpoints and exports).
    pub fn is_main(&self) -> bool {
        self.nodes.as_ref().is_none_or(|n| n.rank == 0)
    }

    /// The global index of this process's `local`-th rank.
    pub fn rank_index(&self, local: usize) -> usize {
        self.nodes.as_ref().map_or(0, |n| n.rank) * self.devices.len() + local
    }
}

impl Rank {
    /// A run on one device: nothing to exchange.
    pub fn single() -> Self {
        Self {
            index: 0,
            world: 1,
            local: 0,
            local_world: 1,
            global: false,
            ring: None,
            bucket_bytes: BUCKET_BYTES,
            watch: None,
        }
    }

    /// This process's `local`-th rank of `launch`, on its device (inner backend `B`): joins
    /// this process's other ranks. With several nodes, the first rank brings the `ring`
    /// ([`Ring::connect`], once per process). Every local rank must call this, each from its own
    /// thread.
    pub fn join<B: Backend>(
        launch: &Launch<B::Device>,
        local: usize,
        ring: Option<Ring>,
    ) -> Result<Self, DistError> {
        let world = launch.world();
        let local_world = launch.devices.len();
        assert!(local < local_world, "rank {local} of {local_world} devices");
        assert_eq!(
            ring.is_some(),
            launch.nodes.is_some() && local == 0,
            "the first rank of each node holds the ring"
        );
        let mut rank = Self {
            index: launch.rank_index(local),
            world,
            local,
            local_world,
            global: launch.nodes.is_some(),
            ring: ring.map(|r| Arc::new(Mutex::new(r))),
            bucket_bytes: launch.bucket_bytes.max(4),
            watch: None,
        };
        if world == 1 {
            return Ok(rank);
        }
        // On several nodes the ring times out first, and says more.
        let limit = if rank.global { launch.timeout * 2 } else { launch.timeout };
        rank.watch = Some(Watch::start(rank.index, world, limit));
        if local_world > 1 {
            let config = CollectiveConfig::default().with_num_devices(local_world);
            let device = launch.devices[local].clone();
            rank.guard("joining the collective", || collective::register::<B>(rank.peer(), device, config))?;
        }
        Ok(rank)
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

    /// Tells the watchdog which optimiser step (1-based) the collective operations belong to.
    pub fn at_step(&self, step: u64) {
        if let Some(watch) = &self.watch {
            watch.step.store(step, Ordering::Relaxed);
        }
    }

    fn peer(&self) -> PeerId {
        PeerId(self.local as u32)
    }

    fn fail(&self, what: &'static str, problem: String) -> DistError {
        DistError { rank: self.index, world: self.world, what, problem, peer_stopped: false }
    }

    /// Runs one collective operation under the watchdog.
    fn guard<T>(
        &self,
        what: &'static str,
        op: impl FnOnce() -> Result<T, CollectiveError>,
    ) -> Result<T, DistError> {
        if let Some(watch) = &self.watch {
            *watch.waiting.lock().expect("watchdog lock") = Some((Instant::now(), what));
        }
        let out = op();
        if let Some(watch) = &self.watch {
            *watch.waiting.lock().expect("watchdog lock") = None;
        }
        out.map_err(|e| {
            // What a rank waiting in, or arriving at, an operation gets after another rank's abort.
            let peer_stopped =
                matches!(e, CollectiveError::LocalServerMissing | CollectiveError::RegisterNotFirstOperation);
            let problem = if peer_stopped { "another rank stopped".to_string() } else { format!("{e:?}") };
            DistError { rank: self.index, world: self.world, what, problem, peer_stopped }
        })
    }

    /// Releases every other rank of this process from the collective: those waiting in an
    /// operation, and those that reach one later, get an error ([`DistError::peer_stopped`])
    /// instead of waiting forever for this rank; the ring is closed, so the neighbouring nodes
    /// stop at once too. Called by [`crate::run::train`] when this rank stops on an error.
    pub fn abort<B: Backend>(&self) {
        if let Some(ring) = &self.ring
            && let Ok(mut ring) = ring.try_lock()
        {
            ring.close();
        }
        if self.local_world > 1 {
            abort::<B>();
        }
    }

    /// Refuses to go on unless every rank has the same `facts` (a name and its text: the
    /// config, the code version, the parameter list), naming those that differ and where.
    pub fn agree<B: Backend>(&self, facts: &[(&str, String)], device: &B::Device) -> Result<(), DistError> {
        if self.world == 1 {
            return Ok(());
        }
        // Each fact's digest as two exact 32-bit halves.
        let digests: Vec<f64> = facts
            .iter()
            .flat_map(|(_, text)| {
                let hash = Sha256::digest(text.as_bytes());
                let word = u64::from_le_bytes(hash[..8].try_into().expect("8 bytes"));
                [(word >> 32) as f64, (word & 0xFFFF_FFFF) as f64]
            })
            .collect();
        let all = self.gather::<B>(&digests, device)?;
        let mut differ = Vec::new();
        for (i, (name, _)) in facts.iter().enumerate() {
            let odd: Vec<String> = (1..self.world)
                .filter(|&r| all[r][2 * i..2 * i + 2] != all[0][2 * i..2 * i + 2])
                .map(|r| r.to_string())
                .collect();
            if !odd.is_empty() {
                differ.push(format!("{name} (rank {} against rank 0's)", odd.join(", ")));
            }
        }
        match differ.is_empty() {
            true => Ok(()),
            false => Err(self.fail(
                "checking that the ranks run the same thing",
                format!("they differ in their {}", differ.join(" and ")),
            )),
        }
    }

    /// `model` with rank 0's values on every rank (each value passes through one sum with
    /// negative zeros, which leaves every float as it is), in module order: the ranks of a run
    /// over several processes built their models apart. Within one process, a no-op.
    pub fn share_weights<B: AutodiffBackend, M: AutodiffModule<B>>(&self, model: M) -> Result<M, DistError> {
        if !self.global || self.world == 1 {
            return Ok(model);
        }
        self.take_from_sources::<B, M, Leaf>(model, |_| Some(0), "sharing rank 0's weights")
    }

    /// `model` with each trainable parameter taken from the rank that owns it under `owners`
    /// (which alone updated it, [`Owners`]); frozen parameters are not exchanged.
    pub fn sync_owned<B: AutodiffBackend, M: AutodiffModule<B>>(
        &self,
        model: M,
        owners: &Owners,
    ) -> Result<M, DistError> {
        self.take_from_sources::<B, M, Leaf>(model, |id| owners.owner(id), "sharing the updated parameters")
    }

    /// `model` (on any backend) with each parameter that `source` names a rank for replaced by
    /// that rank's value: the others contribute negative zeros to one sum per parameter, in
    /// module order, which leaves the source's floats exactly as they are.
    fn take_from_sources<B: Backend, M: Module<B>, W: Wire<B>>(
        &self,
        model: M,
        source: impl Fn(ParamId) -> Option<usize>,
        what: &'static str,
    ) -> Result<M, DistError> {
        struct Take<'a, B: Backend, W: Wire<B>, F> {
            source: &'a F,
            index: usize,
            taken: Vec<Tensor<W::On, 1>>,
        }
        impl<B: Backend, W: Wire<B>, F: Fn(ParamId) -> Option<usize>> ModuleVisitor<B> for Take<'_, B, W, F> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                if let Some(from) = (self.source)(param.id) {
                    let value = W::send(param.val()).reshape([-1]);
                    let mine = from == self.index;
                    self.taken.push(if mine {
                        value
                    } else {
                        Tensor::full(value.shape(), -0.0f32, &value.device())
                    });
                }
            }
        }
        let mut take = Take::<B, W, _> { source: &source, index: self.index, taken: Vec::new() };
        model.visit(&mut take);
        let shared = self.sum_in_buckets(take.taken, what)?;
        struct Put<'a, B, W, F, I> {
            source: &'a F,
            values: I,
            _wire: std::marker::PhantomData<(B, W)>,
        }
        impl<B: Backend, W: Wire<B>, F: Fn(ParamId) -> Option<usize>, I: Iterator<Item = Tensor<W::On, 1>>>
            ModuleMapper<B> for Put<'_, B, W, F, I>
        {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
                if (self.source)(param.id).is_none() {
                    return param;
                }
                let flat = self.values.next().expect("one value per exchanged parameter");
                param.map(|tensor| W::receive(flat.reshape(tensor.dims()), &tensor))
            }
        }
        let mut put = Put::<B, W, _, _> {
            source: &source,
            values: shared.into_iter(),
            _wire: std::marker::PhantomData,
        };
        Ok(model.map(&mut put))
    }

    /// The EMA `ema` of a sharded run ([`crate::optim::Ema::update_owned`]: each rank averages the
    /// trainable parameters it owns) made whole: every rank gets every owner's averages.
    pub fn gather_ema<B: Backend, M: Module<B>>(&self, ema: M, owners: &Owners) -> Result<M, DistError> {
        self.take_from_sources::<B, M, Plain>(ema, |id| owners.owner(id), "gathering the EMA shards")
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
        let (ids, (flat, dims)): (Vec<ParamId>, (Vec<_>, Vec<_>)) =
            order.taken.into_iter().map(|(id, t, d)| (id, (t, d))).unzip();
        let summed = self.sum_in_buckets(flat, "summing gradients")?;
        for ((id, part), dims) in ids.into_iter().zip(summed).zip(dims) {
            restore(&mut grads, id, part, &dims);
        }
        Ok(grads)
    }

    /// Each of `flat` summed over the ranks, consecutive ones packed into buckets of at most
    /// [`Self::bucket_bytes`] (a larger tensor alone).
    fn sum_in_buckets<B: Backend>(
        &self,
        flat: Vec<Tensor<B, 1>>,
        what: &'static str,
    ) -> Result<Vec<Tensor<B, 1>>, DistError> {
        let mut out = Vec::with_capacity(flat.len());
        let mut start = 0;
        while start < flat.len() {
            let len = |i: usize| flat[i].dims()[0];
            let mut end = start + 1;
            let mut bytes = len(start) * 4;
            while end < flat.len() && bytes + len(end) * 4 <= self.bucket_bytes {
                bytes += len(end) * 4;
                end += 1;
            }
            let summed = self.sum(Tensor::cat(flat[start..end].to_vec(), 0), what)?;
            let mut at = 0;
            for i in start..end {
                out.push(summed.clone().narrow(0, at, len(i)));
                at += len(i);
            }
            start = end;
        }
        Ok(out)
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
        let slots = Tensor::<B, 1>::from_data(TensorData::new(slots, [per * self.world]), device);
        let summed = self.sum(slots, "gathering values")?;
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

    /// `tensor` summed over the ranks: over this process's devices, then over the nodes (one
    /// exchange each, whatever its size).
    pub fn sum<B: Backend>(
        &self,
        tensor: Tensor<B, 1>,
        what: &'static str,
    ) -> Result<Tensor<B, 1>, DistError> {
        let local = match self.local_world {
            1 => tensor,
            _ => {
                let primitive = tensor.into_primitive().tensor();
                let summed = self.guard(what, || {
                    collective::all_reduce::<B>(self.peer(), primitive, ReduceOperation::Sum)
                })?;
                Tensor::from_primitive(TensorPrimitive::Float(summed))
            }
        };
        if !self.global {
            return Ok(local);
        }
        let Some(ring) = &self.ring else {
            // The node's first rank brings the nodes' sum.
            let got = self.guard(what, || collective::broadcast::<B>(self.peer(), None))?;
            return Ok(Tensor::from_primitive(TensorPrimitive::Float(got)));
        };
        let device = local.device();
        // Summed in place in the tensor's own host copy (no second copy into a Vec).
        let mut data = local.into_data().convert::<f32>();
        let values = data.as_mut_slice::<f32>().map_err(|e| self.fail(what, format!("{e:?}")))?;
        ring.lock()
            .expect("the ring's lock")
            .all_reduce(values)
            .map_err(|problem| self.fail(what, problem))?;
        let summed = Tensor::<B, 1>::from_data(data, &device);
        if self.local_world == 1 {
            return Ok(summed);
        }
        let primitive = summed.into_primitive().tensor();
        let got = self.guard(what, || collective::broadcast::<B>(self.peer(), Some(primitive)))?;
        Ok(Tensor::from_primitive(TensorPrimitive::Float(got)))
    }

    /// Leaves the collective (every rank, at the end of the run).
    pub fn finish<B: Backend>(&self) -> Result<(), DistError> {
        if let Some(ring) = &self.ring {
            ring.lock().expect("the ring's lock").close();
        }
        if self.local_world > 1 {
            self.guard("leaving the collective", || collective::finish_collective::<B>(self.peer()))?;
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

/// `values` as a new autodiff leaf, trainable as `like` is.
fn leaf_like<B: AutodiffBackend, const D: usize>(
    values: Tensor<B::InnerBackend, D>,
    like: &Tensor<B, D>,
) -> Tensor<B, D> {
    let fresh = Tensor::from_inner(values);
    if like.is_require_grad() { fresh.require_grad() } else { fresh }
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
            param.map(|tensor| leaf_like(tensor.clone().inner(), &tensor))
        }
    }
    model.map(&mut Fresh)
}

/// A rank's watchdog: what it is waiting for, since when, at which step.
#[derive(Debug)]
struct Watch {
    waiting: Mutex<Option<(Instant, &'static str)>>,
    step: AtomicU64,
}

impl Watch {
    /// Starts the watchdog thread of rank `index`; it ends with the last [`Rank`] clone.
    fn start(index: usize, world: usize, timeout: Duration) -> Arc<Self> {
        let watch = Arc::new(Self { waiting: Mutex::new(None), step: AtomicU64::new(0) });
        let weak = Arc::downgrade(&watch);
        let tick = (timeout / 8).clamp(Duration::from_millis(10), Duration::from_secs(1));
        std::thread::Builder::new()
            .name(format!("spear-watchdog-{index}"))
            .spawn(move || {
                while let Some(watch) = weak.upgrade() {
                    let waiting = *watch.waiting.lock().expect("watchdog lock");
                    if let Some((since, what)) = waiting
                        && since.elapsed() > timeout
                    {
                        eprintln!(
                            "error: rank {index} of {world}, step {}: {what}: no answer from the other ranks \
                             within {} s (one of them stopped, died or hangs); stopping. The run folder's last \
                             checkpoint is intact: `--resume` continues from it.",
                            watch.step.load(Ordering::Relaxed),
                            timeout.as_secs_f64()
                        );
                        std::process::exit(EXIT_TIMEOUT);
                    }
                    drop(watch);
                    std::thread::sleep(tick);
                }
            })
            .expect("spawn the watchdog thread");
        watch
    }
}

/// Where this process stands in a run over several processes (nodes), one per node, holding
/// that node's devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nodes {
    /// Processes in the run.
    pub count: usize,
    /// This one's place (0: hosts the rendezvous and holds rank 0).
    pub rank: usize,
    /// Node 0's address, as the others reach it.
    pub master_addr: String,
    /// Node 0's rendezvous port.
    pub master_port: u16,
    /// This node's address, as the others reach it (its ring connection comes in there).
    pub node_addr: String,
    /// The port this node's ring connection comes in on.
    pub data_port: u16,
}

/// Multi-node settings given on the command line; each one unset comes from the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeFlags {
    /// `--nnodes`.
    pub nnodes: Option<usize>,
    /// `--node-rank`.
    pub node_rank: Option<usize>,
    /// `--master-addr`.
    pub master_addr: Option<String>,
    /// `--master-port`.
    pub master_port: Option<u16>,
    /// `--node-addr`.
    pub node_addr: Option<String>,
    /// `--data-port`.
    pub data_port: Option<u16>,
}

/// Node 0's rendezvous port when nothing sets one (torchrun's default too).
pub const MASTER_PORT: u16 = 29500;

impl Nodes {
    /// The nodes `flags` and then the environment (`env`: a variable's value) describe, or
    /// `None` for a run in one process. Each setting comes from its flag, else from the first
    /// variable set among ours (`SPEAR_NNODES`, `SPEAR_NODE_RANK`, `SPEAR_MASTER_ADDR`,
    /// `SPEAR_MASTER_PORT`, `SPEAR_NODE_ADDR`, `SPEAR_DATA_PORT`), torchrun's (`WORLD_SIZE`,
    /// `RANK`, `MASTER_ADDR`, `MASTER_PORT`, with `--nproc-per-node 1`) and Slurm's inside `srun`
    /// (`SLURM_STEP_NUM_TASKS`, `SLURM_PROCID`, the first host of `SLURM_STEP_NODELIST`, with one
    /// task per node). The port defaults to [`MASTER_PORT`] (under torchrun, the one above its
    /// `MASTER_PORT`, which torchrun's own store holds); a node's ring connection comes in on the
    /// master port + 1 + its rank; a node's address defaults to the one this machine reaches node
    /// 0 from.
    pub fn resolve(flags: &NodeFlags, env: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, String> {
        // The first of `names` set, with its name (for errors).
        let var = |names: &[&'static str]| names.iter().find_map(|n| env(n).map(|v| (*n, v)));
        fn parse<T: std::str::FromStr>((name, value): (&str, String)) -> Result<T, String> {
            value.trim().parse().map_err(|_| format!("{name}={value:?} is not a valid value"))
        }
        if let Some(tasks) = env("LOCAL_WORLD_SIZE").or_else(|| env("SLURM_NTASKS_PER_NODE"))
            && tasks.trim() != "1"
            && flags.nnodes.is_none()
            && env("SPEAR_NNODES").is_none()
        {
            return Err(format!(
                "{tasks} processes per node were started (LOCAL_WORLD_SIZE or SLURM_NTASKS_PER_NODE): spear \
                 runs one process per node, holding all its devices (--devices); start one task per node"
            ));
        }
        let count = match flags.nnodes {
            Some(n) => n,
            None => match var(&["SPEAR_NNODES", "WORLD_SIZE", "SLURM_STEP_NUM_TASKS"]) {
                Some(v) => parse(v)?,
                None => 1,
            },
        };
        if count == 0 {
            return Err("--nnodes must be at least 1".into());
        }
        if count == 1 {
            return Ok(None);
        }
        let rank: usize = match flags.node_rank {
            Some(r) => r,
            None => parse(
                var(&["SPEAR_NODE_RANK", "RANK", "SLURM_PROCID"])
                    .ok_or(format!("{count} nodes: --node-rank (or SPEAR_NODE_RANK) is needed"))?,
            )?,
        };
        if rank >= count {
            return Err(format!("node rank {rank} is not below the node count {count}"));
        }
        let master_addr = match &flags.master_addr {
            Some(a) => a.clone(),
            None => match var(&["SPEAR_MASTER_ADDR", "MASTER_ADDR"]) {
                Some((_, a)) => a,
                None => {
                    let list = var(&["SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST"])
                        .ok_or(format!("{count} nodes: --master-addr (or SPEAR_MASTER_ADDR) is needed"))?;
                    first_host(&list.1).ok_or(format!("{}={:?}: no host in it", list.0, list.1))?
                }
            },
        };
        let master_port: u16 = match flags.master_port {
            Some(p) => p,
            None => match (env("SPEAR_MASTER_PORT"), env("MASTER_PORT")) {
                (Some(p), _) => parse(("SPEAR_MASTER_PORT", p))?,
                (None, Some(p)) => {
                    let port: u16 = parse(("MASTER_PORT", p))?;
                    match env("TORCHELASTIC_RUN_ID") {
                        Some(_) => port.checked_add(1).ok_or("MASTER_PORT + 1 is past 65535")?,
                        None => port,
                    }
                }
                (None, None) => MASTER_PORT,
            },
        };
        let data_port: u16 = match flags.data_port {
            Some(p) => p,
            None => match env("SPEAR_DATA_PORT") {
                Some(p) => parse(("SPEAR_DATA_PORT", p))?,
                None => u16::try_from(master_port as usize + 1 + rank)
                    .map_err(|_| format!("the data port {} + 1 + {rank} is past 65535", master_port))?,
            },
        };
        let node_addr = match flags.node_addr.clone().or_else(|| env("SPEAR_NODE_ADDR")) {
            Some(a) => a,
            None => route_to(&master_addr, master_port).map_err(|e| {
                format!("finding this node's address towards {master_addr}: {e} (pass --node-addr)")
            })?,
        };
        Ok(Some(Self { count, rank, master_addr, master_port, node_addr, data_port }))
    }
}

/// A free port of this machine with the `n − 1` after it free too (a master port, then the
/// nodes' data ports at their default places): for runs and tests of several processes on one
/// machine. Free when asked, so another program may still take one first.
pub fn free_ports(n: usize) -> std::io::Result<u16> {
    for _ in 0..100 {
        let base = std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port();
        let free = (0..n as u16).all(|i| {
            base.checked_add(i).is_some_and(|p| std::net::TcpListener::bind(("0.0.0.0", p)).is_ok())
        });
        if free {
            return Ok(base);
        }
    }
    Err(std::io::Error::other(format!("no {n} consecutive free ports")))
}

/// The first host of a Slurm node list (`gpu[007-010,012],cpu1` → `gpu007`).
pub fn first_host(list: &str) -> Option<String> {
    let list = list.trim();
    let (head, rest) = match list.find(['[', ',']) {
        Some(i) => list.split_at(i),
        None => (list, ""),
    };
    let host = match rest.strip_prefix('[') {
        Some(ranges) => {
            let first = ranges.split([',', '-', ']']).next()?;
            format!("{head}{first}")
        }
        None => head.to_string(),
    };
    (!host.is_empty()).then_some(host)
}

/// This machine's address on the route to `host`:`port` (no packet is sent).
fn route_to(host: &str, port: u16) -> std::io::Result<String> {
    let socket = std::net::UdpSocket::bind(("0.0.0.0", 0))?;
    socket.connect((host, port))?;
    Ok(socket.local_addr()?.ip().to_string())
}

/// The code a rank runs: this crate's version and, when built from a git checkout, its commit.
pub fn code_version() -> String {
    format!("{} {}", env!("CARGO_PKG_VERSION"), env!("SPEAR_GIT_COMMIT"))
}

/// `model`'s parameters in module order: path, shape and whether it trains, one per line.
pub fn parameter_list<B: Backend, M: Module<B>>(model: &M) -> String {
    struct List(String);
    impl<B: Backend> ModuleVisitor<B> for List {
        fn visit_float_with_path<const D: usize>(
            &mut self,
            path: &[String],
            _: ParamId,
            tensor: &Tensor<B, D>,
        ) {
            let line = format!("{} {:?} {}\n", path.join("."), tensor.dims(), tensor.is_require_grad());
            self.0.push_str(&line);
        }
    }
    let mut list = List(String::new());
    model.visit(&mut list);
    list.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn one_node_unless_told_otherwise() {
        assert_eq!(Nodes::resolve(&NodeFlags::default(), env(&[])), Ok(None));
        let flags = NodeFlags { nnodes: Some(1), ..Default::default() };
        assert_eq!(Nodes::resolve(&flags, env(&[("WORLD_SIZE", "4")])), Ok(None));
    }

    #[test]
    fn flags_come_before_our_variables_before_torchrun_before_slurm() {
        let flags = NodeFlags {
            nnodes: Some(2),
            node_rank: Some(1),
            master_addr: Some("10.0.0.1".into()),
            node_addr: Some("10.0.0.2".into()),
            ..Default::default()
        };
        let nodes = Nodes::resolve(&flags, env(&[("SPEAR_MASTER_PORT", "4000"), ("MASTER_PORT", "5000")]))
            .unwrap()
            .unwrap();
        assert_eq!((nodes.count, nodes.rank, nodes.master_port, nodes.data_port), (2, 1, 4000, 4002));
        assert_eq!((nodes.master_addr.as_str(), nodes.node_addr.as_str()), ("10.0.0.1", "10.0.0.2"));

        // torchrun, one process per node: its store holds MASTER_PORT, the rendezvous the next.
        let torchrun = env(&[
            ("WORLD_SIZE", "4"),
            ("RANK", "3"),
            ("LOCAL_WORLD_SIZE", "1"),
            ("MASTER_ADDR", "127.0.0.1"),
            ("MASTER_PORT", "29400"),
            ("TORCHELASTIC_RUN_ID", "x"),
        ]);
        let nodes = Nodes::resolve(&NodeFlags::default(), torchrun).unwrap().unwrap();
        assert_eq!((nodes.count, nodes.rank, nodes.master_port, nodes.data_port), (4, 3, 29401, 29405));
        assert_eq!(nodes.node_addr, "127.0.0.1");

        // srun with one task per node: the first host of the step's node list.
        let srun = env(&[
            ("SLURM_STEP_NUM_TASKS", "4"),
            ("SLURM_PROCID", "2"),
            ("SLURM_NTASKS_PER_NODE", "1"),
            ("SLURM_STEP_NODELIST", "localhost"),
        ]);
        let nodes = Nodes::resolve(&NodeFlags::default(), srun).unwrap().unwrap();
        assert_eq!((nodes.count, nodes.rank, nodes.master_addr.as_str()), (4, 2, "localhost"));
        assert_eq!((nodes.master_port, nodes.data_port), (MASTER_PORT, MASTER_PORT + 3));
    }

    #[test]
    fn missing_or_bad_settings_are_named() {
        let two = NodeFlags { nnodes: Some(2), ..Default::default() };
        assert!(Nodes::resolve(&two, env(&[])).unwrap_err().contains("--node-rank"));
        let ranked = NodeFlags { node_rank: Some(0), ..two.clone() };
        assert!(Nodes::resolve(&ranked, env(&[])).unwrap_err().contains("--master-addr"));
        let err = Nodes::resolve(&NodeFlags::default(), env(&[("SPEAR_NNODES", "two")])).unwrap_err();
        assert!(err.contains("SPEAR_NNODES=\"two\""), "{err}");
        let far = NodeFlags { node_rank: Some(2), ..two };
        assert!(Nodes::resolve(&far, env(&[])).unwrap_err().contains("node rank 2"));
        let per_gpu = env(&[("WORLD_SIZE", "16"), ("LOCAL_WORLD_SIZE", "8")]);
        assert!(Nodes::resolve(&NodeFlags::default(), per_gpu).unwrap_err().contains("one process per node"));
    }

    #[test]
    fn slurm_node_lists_give_their_first_host() {
        assert_eq!(first_host("gpu[007-010,012],cpu1").as_deref(), Some("gpu007"));
        assert_eq!(first_host("node12,node13").as_deref(), Some("node12"));
        assert_eq!(first_host("a-b-c").as_deref(), Some("a-b-c"));
        assert_eq!(first_host("[3]").as_deref(), Some("3"));
        assert_eq!(first_host(""), None);
    }
}
