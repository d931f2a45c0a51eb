#!/usr/bin/env python3
"""PyTorch twin of `spear bench vlm`: the same SPEAR-VLM forward in transformers, timed the same way.

Called by `spear bench vlm --compare-torch PYTHON` (never by CI) with the spear model config as
JSON; prints one JSON line {"prefill_ms": ..., "decode_ms": ...} (medians). Weights are random:
latency does not depend on their values. Pinned versions: tools/reference/requirements-vlm.txt.

Work per call, identical to spear's: both cameras through SigLIP (+ projector) and, when the
config has MoGe, DINOv2 (chosen blocks through the final norm, concatenated, projected; mean of the
two projections); token embeddings; a bidirectional Gemma prefill over [images, prompt] with a KV
cache and the logits of the last position; then `decode_steps` single-token steps on the cache.
"""
import argparse
import json
import statistics
import time

import torch
from transformers import (Dinov2Config, Dinov2Model, GemmaConfig, GemmaForCausalLM, SiglipVisionConfig,
                          SiglipVisionModel)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True)
    p.add_argument("--prompt-tokens", type=int, required=True)
    p.add_argument("--decode-steps", type=int, required=True)
    p.add_argument("--repeats", type=int, required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    a = p.parse_args()
    cfg = json.load(open(a.config))
    dev, dtype = torch.device(a.device), getattr(torch, a.dtype)
    torch.manual_seed(0)

    s, g, m = cfg["siglip"], cfg["gemma"], cfg.get("moge")
    siglip = SiglipVisionModel(SiglipVisionConfig(
        hidden_size=s["hidden_size"], intermediate_size=s["intermediate_size"], num_hidden_layers=s["num_layers"],
        num_attention_heads=s["num_heads"], patch_size=s["patch_size"], image_size=s["position_grid"] * s["patch_size"],
        layer_norm_eps=s["layer_norm_eps"], attn_implementation="sdpa"))
    width = g["hidden_size"]
    gemma = GemmaForCausalLM(GemmaConfig(
        vocab_size=g["vocab_size"] + cfg["num_3d_tokens"], hidden_size=width, intermediate_size=g["intermediate_size"],
        num_hidden_layers=g["num_layers"], num_attention_heads=g["num_heads"], num_key_value_heads=g["num_kv_heads"],
        head_dim=g["head_dim"], rms_norm_eps=g["rms_norm_eps"], rope_theta=g["rope_theta"],
        hidden_activation="gelu_pytorch_tanh", attn_implementation="sdpa"))
    proj_s = torch.nn.Linear(s["hidden_size"], width)
    mods = [siglip, gemma, proj_s]
    if m:
        d = m["dinov2"]
        dino = Dinov2Model(Dinov2Config(
            hidden_size=d["hidden_size"], num_hidden_layers=d["num_layers"], num_attention_heads=d["num_heads"],
            mlp_ratio=d["intermediate_size"] / d["hidden_size"], patch_size=d["patch_size"],
            image_size=d["position_grid"] * d["patch_size"], layer_norm_eps=d["layer_norm_eps"],
            attn_implementation="sdpa"))
        proj_m = torch.nn.Linear(d["hidden_size"] * len(m["layers"]), width)
        mods += [dino, proj_m]
    for mod in mods:
        mod.to(dev, dtype).eval()

    cams = [torch.rand(1, 3, *cfg["image_size"], device=dev, dtype=dtype),
            torch.rand(1, 3, *cfg["wrist_image_size"], device=dev, dtype=dtype)]
    mean = torch.tensor([0.485, 0.456, 0.406], device=dev, dtype=dtype).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=dev, dtype=dtype).view(1, 3, 1, 1)
    ids = torch.randint(0, g["vocab_size"], (1, a.prompt_tokens), device=dev)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def prefill():
        feats = []
        for img in cams:
            f = proj_s(siglip(pixel_values=img * 2 - 1, interpolate_pos_encoding=True).last_hidden_state)
            if m:
                hs = dino((img - mean) / std, output_hidden_states=True).hidden_states
                layers = [dino.layernorm(hs[i + 1])[:, 1:] for i in m["layers"]]
                f = (f + proj_m(torch.cat(layers, -1))) / 2
            feats.append(f)
        # GemmaModel scales every input embedding by sqrt(width); the cost is the same.
        emb = torch.cat(feats + [gemma.model.embed_tokens(ids)], 1)
        n = emb.shape[1]
        mask = torch.zeros(1, 1, n, n, device=dev, dtype=dtype)  # bidirectional prefix
        out = gemma(inputs_embeds=emb, attention_mask=mask, use_cache=True, logits_to_keep=1)
        return out.past_key_values, out.logits[:, -1].argmax(-1), n

    def decode(cache, token, n):
        for _ in range(a.decode_steps):
            pos = torch.tensor([[n]], device=dev)
            out = gemma(input_ids=token[:, None], past_key_values=cache, use_cache=True, position_ids=pos,
                        cache_position=pos[0])
            cache, token, n = out.past_key_values, out.logits[:, -1].argmax(-1), n + 1
            token.item()

    prefill_ms, decode_ms = [], []
    with torch.inference_mode():
        for r in range(a.repeats + 1):
            sync()
            t0 = time.perf_counter()
            cache, token, n = prefill()
            token.item()
            sync()
            t1 = time.perf_counter()
            decode(cache, token, n)
            sync()
            t2 = time.perf_counter()
            if r > 0:  # the first round warms up
                prefill_ms.append((t1 - t0) * 1e3)
                decode_ms.append((t2 - t1) * 1e3 / max(a.decode_steps, 1))
    print(json.dumps({"prefill_ms": statistics.median(prefill_ms), "decode_ms": statistics.median(decode_ms),
                      "torch": torch.__version__, "threads": torch.get_num_threads(), "device": str(dev)}))


if __name__ == "__main__":
    main()
