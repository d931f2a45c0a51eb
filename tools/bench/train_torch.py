#!/usr/bin/env python3
"""PyTorch twin of `spear bench train`: one optimiser step of transformers' PI0 on the same π0-shaped configuration.

Called by `spear bench train --compare-torch PYTHON` (never by CI) with the spear policy config (serde of
SpearPolicyConfig) as JSON; prints one JSON line {"step_ms": ..., "forward_ms": ..., "backward_ms": ...,
"update_ms": ..., "loss": ..., "peak_rss_mb": ..., ...} (medians over the timed steps, after one warm-up step).
Weights are random: the time does not depend on their values. Pinned versions: tools/reference/requirements-pi0.txt
(torch 2.9.1, transformers 5.24.0); the model and the random batch come from pi0_torch.py.

Work per step, the same as spear's (`SpearPolicy::draw`, `SpearPolicy::loss`, then spear_train's `gradients` and
`update`), which is openpi's train step: draw the noise `[B, H, action_dim]` and one flow time per sample
(`Beta(1.5, 1) * 0.999 + 0.001`, PI0's own distribution) and pass both to `model(..., actions=...)` so that the model
draws nothing itself; its per-element flow-matching loss (`loss_reduction="none"`) → `.mean()` → backward →
`clip_grad_norm_` → AdamW, with the optimiser settings spear passes (openpi's: β = (0.9, 0.95), ε = 1e-8, weight
decay 1e-10, clip 1, a fixed learning rate). The loss is read back each step (`.item()`) just before the backward
pass, where spear reads it. Every parameter trains (spear
freezes only MoGe, which this shape has not).

`--precision bf16` runs the forward under `torch.autocast(dtype=torch.bfloat16)` (parameters, gradients and AdamW stay
f32, as spear's `[memory] precision = "bf16"`).

`--checkpointing blocks` rematerialises every transformer block, as openpi's PyTorch port does and as spear's
`checkpointing = "blocks"`: transformers' own gradient checkpointing cannot train PI0 (enabling it turns the language
model's KV cache off, and PI0's expert reads the prefix from that cache: `cache.get_seq_length()` on None), so the
step runs PI0's forward by hand, layer by layer, on the model's own modules: each SigLIP layer, and each pair of
layers — PaliGemma's on the prefix, then the expert's on the suffix over a fresh cache holding that layer's prefix keys
and values — under `torch.utils.checkpoint` (non-reentrant). Masks, positions and rotary tables are the ones PI0's own
forward builds (recorded once from it). Before timing, the hand-run forward without checkpointing is checked against
PI0's loss on the same draws.

CPU threads are set to `--threads` (spear passes the number its rayon pool uses), so both sides compute on the same
cores. `peak_rss_mb` is the process's peak resident memory (ru_maxrss); on CUDA `peak_device_mb` is
`torch.cuda.max_memory_allocated`.
"""
import json
import resource
import statistics
import time

import torch
import torch.nn.functional as F
import transformers
from torch.utils.checkpoint import checkpoint
from transformers import DynamicCache

from pi0_torch import build, inputs, setup, sync


def recorded_kwargs(layer, run):
    """The keyword arguments (masks, positions, rotary tables) `layer` is called with while `run()` runs."""
    seen = {}

    def hook(_module, _args, kwargs):
        seen.update(kwargs)

    handle = layer.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        run()
    finally:
        handle.remove()
    return {k: v for k, v in seen.items() if k in ("attention_mask", "position_ids", "position_embeddings")}


class LayerByLayer:
    """PI0's training forward run by hand on its own modules, optionally with every block checkpointed."""

    def __init__(self, model, batch, record):
        self.model, self.batch = model, batch
        vlm, dit = model.model.vlm, model.model.dit
        self.text, self.dit = vlm.language_model, dit
        self.prefix_kwargs = recorded_kwargs(self.text.layers[0], record)
        self.suffix_kwargs = recorded_kwargs(dit.layers[0], record)
        self.siglip = vlm.vision_tower.encoder.layers

    def loss(self, noise, timestep, actions, blocks):
        model, b = self.model, self.batch
        originals = [layer.forward for layer in self.siglip]
        if blocks:
            for layer, forward in zip(self.siglip, originals):
                layer.forward = lambda *a, _f=forward, **k: checkpoint(_f, *a, use_reentrant=False, **k)
        try:
            prefix = model.model.embed_prefix(b["input_ids"], b["images"] * 2 - 1, b["pixel_attention_mask"])
        finally:
            for layer, forward in zip(self.siglip, originals):
                layer.forward = forward
        t = timestep[:, None, None]
        noisy = t * noise + (1 - t) * actions
        suffix = model.embed_action_time(b["state"], noisy, timestep)
        for i, (text_layer, dit_layer) in enumerate(zip(self.text.layers, self.dit.layers)):
            def pair(p, s, _text=text_layer, _dit=dit_layer):
                cache = DynamicCache(config=self.text.config)
                p = _text(p, cache=cache, use_cache=True, **self.prefix_kwargs)
                return p, _dit(s, cache=cache, use_cache=True, **self.suffix_kwargs)
            prefix, suffix = checkpoint(pair, prefix, suffix, use_reentrant=False) if blocks else pair(prefix, suffix)
        velocity = model.action_out_proj(self.dit.norm(suffix)[:, -actions.shape[1]:])
        return F.mse_loss(noise - actions, velocity, reduction="none").float().mean()


def main():
    a, cfg, dev = setup(batch=int, lr=float, b1=float, b2=float, eps=float, weight_decay=float, clip_norm=float,
                        precision=str, checkpointing=str)

    model = build(cfg, "train_torch.py", loss_reduction="none").to(dev).train()
    bf16 = a.precision == "bf16"
    attn = model.config.vlm_config.text_config._attn_implementation
    optimizer = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(a.b1, a.b2), eps=a.eps, weight_decay=a.weight_decay)
    flow = cfg["flow"]
    beta = torch.distributions.Beta(torch.tensor(flow["time_alpha"]), torch.tensor(flow["time_beta"]))

    batch = inputs(cfg, a.prompt_tokens, a.batch, dev)
    # Target chunks of the shape spear uses (its own noise layout; values do not change the time).
    actions = torch.randn(a.batch, cfg["horizon"], cfg["expert"]["action_dim"], device=dev)

    def pi0_loss(noise, timestep):
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(state=batch["state"], noise=noise, timestep=timestep, input_ids=batch["input_ids"],
                        attention_mask=batch["attention_mask"], pixel_values=batch["images"] * 2 - 1,
                        pixel_attention_mask=batch["pixel_attention_mask"], actions=actions)
        return out.loss.float().mean()

    def draws():
        noise = torch.randn_like(actions)
        return noise, (beta.sample((a.batch,)) * flow["time_scale"] + flow["time_offset"]).float().to(dev)

    if a.checkpointing not in ("none", "blocks"):
        raise SystemExit(f"train_torch.py: --checkpointing none or blocks, not {a.checkpointing}")
    blocks = a.checkpointing == "blocks"
    if blocks:
        noise, timestep = draws()
        with torch.no_grad():
            by_hand = LayerByLayer(model, batch, lambda: pi0_loss(noise, timestep))
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=bf16):
                ours = by_hand.loss(noise, timestep, actions, blocks=False).item()
            theirs = pi0_loss(noise, timestep).item()
        if abs(ours - theirs) > (2e-3 if bf16 else 1e-5) * abs(theirs):
            raise SystemExit(f"train_torch.py: the layer-by-layer forward gives loss {ours}, PI0's {theirs}")

    def step():
        """One optimiser step; returns the loss and the times after the forward, the backward and the update."""
        noise, timestep = draws()
        if blocks:
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=bf16):
                loss = by_hand.loss(noise, timestep, actions, blocks=True)
        else:
            loss = pi0_loss(noise, timestep)
        sync(dev)
        forward = time.perf_counter()
        value = loss.item()  # in the backward's time, as spear reads its loss in `gradients`
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        sync(dev)
        backward = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip_norm)
        optimizer.step()
        sync(dev)
        return value, forward, backward, time.perf_counter()

    step()  # warm-up: allocations, AdamW's moments
    times = {"step_ms": [], "forward_ms": [], "backward_ms": [], "update_ms": []}
    for _ in range(a.repeats):
        sync(dev)
        t0 = time.perf_counter()
        loss, t1, t2, t3 = step()
        for key, ms in zip(times, [t3 - t0, t1 - t0, t2 - t1, t3 - t2]):
            times[key].append(ms * 1e3)
    result = {key: statistics.median_high(v) for key, v in times.items()}
    result.update(loss=loss, peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  peak_device_mb=torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None,
                  attention=attn, precision=a.precision, checkpointing=a.checkpointing, torch=torch.__version__, transformers=transformers.__version__,
                  threads=torch.get_num_threads(), device=str(dev))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
