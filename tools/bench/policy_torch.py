#!/usr/bin/env python3
"""PyTorch twin of `spear bench policy`: transformers' PI0 on the same π0-shaped configuration, timed the same way.

Called by `spear bench policy --compare-torch PYTHON` (never by CI) with the spear policy config (serde of
SpearPolicyConfig) as JSON; prints one JSON line {"prefix_ms": ..., "step_ms": ..., "chunk_ms": ...} (medians over the
timed rounds). Weights are random: latency does not depend on their values. Pinned versions:
tools/reference/requirements-pi0.txt (torch 2.9.1, transformers 5.24.0).

Work per round, identical to spear's `encode` + `sample_encoded` at batch 1: every camera through SigLIP and the
projector, the prompt's embeddings, the PaliGemma decoder over [cameras, prompt] into a KV cache (the prefix); then
`flow.num_steps` Euler steps, each running the action expert over [state, H actions] against the cache. The loop below
is `PI0ForConditionalGeneration.sample_actions` of transformers 5.24.0 split in two so that the prefix can be timed
alone; the warm-up round runs `sample_actions` itself and the timed rounds must reproduce its actions.

The model and the random inputs come from pi0_torch.py (shared with train_torch.py). transformers' PI0 has no MoGe
encoder and only linear flow, and takes one square image size (SigLIP's native one) for every camera: other
configurations are refused with the reason. CPU threads are set to `--threads` (spear passes the
number its rayon pool uses), so both sides compute on the same cores.
"""
import json
import statistics
import sys
import time

import torch
import transformers

from pi0_torch import build, inputs, setup, sync


def main():
    a, cfg, dev = setup()

    horizon, steps = cfg["horizon"], cfg["flow"]["num_steps"]
    model = build(cfg, "policy_torch.py").to(dev).eval()
    attn = model.config.vlm_config.text_config._attn_implementation

    batch = inputs(cfg, a.prompt_tokens, 1, dev)
    input_ids, attention_mask, images = batch["input_ids"], batch["attention_mask"], batch["images"]
    pixel_attention_mask, state = batch["pixel_attention_mask"], batch["state"]
    noise = torch.randn(1, horizon, cfg["expert"]["action_dim"], device=dev)

    def prefix():  # sample_actions, step 2
        pixel_values = images * 2 - 1  # SigLIP's [-1, 1]; spear converts inside its timed prefix too
        position_ids = attention_mask.cumsum(-1) - 1
        inputs_embeds = model.model.embed_prefix(input_ids, pixel_values, pixel_attention_mask)
        token_type_ids = torch.zeros_like(inputs_embeds)[:, :, 0]
        return model.model.vlm(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                               position_ids=position_ids, token_type_ids=token_type_ids, use_cache=True).cache

    def denoise(cache, x):  # sample_actions, step 3
        prefix_length = cache.get_seq_length()
        dt = -1.0 / steps
        for step in range(steps):
            time_tensor = torch.full((1,), 1.0 + step * dt, dtype=torch.float32, device=dev)
            out = model(state=state, noise=x, timestep=time_tensor, pixel_attention_mask=pixel_attention_mask,
                        attention_mask=attention_mask, cache=cache)
            cache.crop(prefix_length - cache.get_seq_length())
            x = x + dt * out.logits
        return x

    prefix_ms, step_ms, chunk_ms, gap = [], [], [], 0.0
    with torch.inference_mode():
        reference = model.sample_actions(state=state, noise=noise.clone(), input_ids=input_ids,
                                         attention_mask=attention_mask, pixel_values=images * 2 - 1,
                                         pixel_attention_mask=pixel_attention_mask, num_steps=steps).cpu()
        for _ in range(a.repeats):
            sync(dev)
            t0 = time.perf_counter()
            cache = prefix()
            sync(dev)
            t1 = time.perf_counter()
            actions = denoise(cache, noise.clone()).cpu()
            t2 = time.perf_counter()
            prefix_ms.append((t1 - t0) * 1e3)
            step_ms.append((t2 - t1) * 1e3 / steps)
            chunk_ms.append((t2 - t0) * 1e3)
            gap = max(gap, float((actions - reference).abs().max()))
    if not gap <= 1e-5:
        sys.exit(f"policy_torch.py: the split loop's actions differ from sample_actions' by {gap}")
    print(json.dumps({"prefix_ms": statistics.median_high(prefix_ms), "step_ms": statistics.median_high(step_ms),
                      "chunk_ms": statistics.median_high(chunk_ms), "sample_actions_max_abs_gap": gap,
                      "attention": attn, "torch": torch.__version__, "transformers": transformers.__version__,
                      "threads": torch.get_num_threads(), "device": str(dev)}))


if __name__ == "__main__":
    main()
