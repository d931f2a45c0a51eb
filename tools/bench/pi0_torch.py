"""transformers' PI0 built from a spear policy config: shared by policy_torch.py and train_torch.py.

`build` turns the serde JSON of spear's SpearPolicyConfig into a `PI0ForConditionalGeneration` of the same shape (random
weights), or exits naming what transformers' PI0 cannot run (MoGe, 3D tokens, S³ flow, non-square or non-native camera
sizes); `inputs` makes the random batch both benchmarks feed it, laid out as spear's bench makes its own: every camera
RGB in [0, 1], the prompt `[BOS]` then ids `(i * 7919) % vocab`, a Gaussian state. Pinned versions:
tools/reference/requirements-pi0.txt (torch 2.9.1, transformers 5.24.0).
"""
import argparse
import json
import sys

import torch
from transformers import PI0Config, PI0ForConditionalGeneration


def setup(**extra):
    """The start both twins share: parses `--config --prompt-tokens --repeats --device --threads` and each `extra`
    `--name` (a required argument of that type, `_` for `-`), loads the config, sets torch's CPU threads and seeds
    it. Returns (arguments, config, device)."""
    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True)
    p.add_argument("--prompt-tokens", type=int, required=True)
    p.add_argument("--repeats", type=int, required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, required=True)
    for name, kind in extra.items():
        p.add_argument("--" + name.replace("_", "-"), type=kind, required=True)
    a = p.parse_args()
    with open(a.config) as f:
        cfg = json.load(f)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    return a, cfg, torch.device(a.device)


def sync(dev):
    """Waits for the work queued on `dev` (CUDA runs asynchronously; on the CPU there is none to wait for)."""
    if dev.type == "cuda":
        torch.cuda.synchronize()


def gemma(c):
    return dict(model_type="gemma", hidden_size=c["hidden_size"], intermediate_size=c["intermediate_size"],
                num_hidden_layers=c["num_layers"], num_attention_heads=c["num_heads"],
                num_key_value_heads=c["num_kv_heads"], head_dim=c["head_dim"], rms_norm_eps=c["rms_norm_eps"],
                rope_theta=c["rope_theta"], hidden_activation="gelu_pytorch_tanh")


def side(cfg):
    """SigLIP's native (square) image side, the one size transformers' PI0 takes for every camera."""
    s = cfg["vlm"]["siglip"]
    return s["position_grid"] * s["patch_size"]


def build(cfg, script, **overrides):
    """`PI0ForConditionalGeneration` of `cfg`'s shape (PI0Config fields in `overrides` replace the defaults), on the
    CPU; exits with `script`'s name and every reason when transformers' PI0 cannot run `cfg`."""
    v, e = cfg["vlm"], cfg["expert"]
    s, g = v["siglip"], v["gemma"]
    n = side(cfg)
    sizes = [v["image_size"]] + [v["wrist_image_size"]] * (cfg["cameras"] - 1)
    problems = []
    if v.get("moge"):
        problems.append("it has no MoGe encoder")
    if v.get("num_3d_tokens"):
        problems.append("it has no 3D tokens")
    if cfg["rotation"] != "linear":
        problems.append(f"it has only linear flow, not {cfg['rotation']}")
    if any(list(size) != [n, n] for size in sizes):
        problems.append(f"every camera must be {n}x{n} (SigLIP's native size), got {sizes}")
    if problems:
        sys.exit(f"{script}: transformers' PI0 cannot run this configuration: " + "; ".join(problems))

    vocab = g["vocab_size"]
    config = PI0Config(
        vlm_config=dict(
            model_type="paligemma",
            text_config=dict(gemma(g), vocab_size=vocab),
            vision_config=dict(model_type="siglip_vision_model", hidden_size=s["hidden_size"],
                               intermediate_size=s["intermediate_size"], num_hidden_layers=s["num_layers"],
                               num_attention_heads=s["num_heads"], patch_size=s["patch_size"], image_size=n,
                               layer_norm_eps=s["layer_norm_eps"], vision_use_head=False),
            projection_dim=g["hidden_size"],
            image_token_id=vocab,
        ),
        dit_config=gemma(e["gemma"]),
        chunk_size=cfg["horizon"],
        max_state_dim=e["state_dim"],
        max_action_dim=e["action_dim"],
        num_inference_steps=cfg["flow"]["num_steps"],
        min_period=e["min_period"],
        max_period=e["max_period"],
        **overrides,
    )
    return PI0ForConditionalGeneration(config)


def inputs(cfg, prompt_tokens, batch, dev):
    """A random batch of `batch` samples: `input_ids` (each camera's image tokens, then the prompt), `attention_mask`,
    `images` `[batch, cameras, 3, side, side]` in [0, 1] (PI0 takes `images * 2 - 1`), `pixel_attention_mask` (all
    cameras present) and `state`."""
    v, e = cfg["vlm"], cfg["expert"]
    n, cams, vocab = side(cfg), cfg["cameras"], v["gemma"]["vocab_size"]
    tokens_per_image = (n // v["siglip"]["patch_size"]) ** 2
    prompt = [v["bos_token_id"]] + [(i * 7919) % vocab for i in range(1, prompt_tokens)]  # as spear's
    input_ids = torch.tensor([[vocab] * tokens_per_image * cams + prompt] * batch, device=dev)
    return dict(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        images=torch.rand(batch, cams, 3, n, n, device=dev),
        pixel_attention_mask=torch.ones(batch, cams, dtype=torch.bool, device=dev),
        state=torch.randn(batch, e["state_dim"], device=dev),
    )
