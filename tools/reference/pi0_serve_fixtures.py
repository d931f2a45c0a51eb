#!/usr/bin/env python3
"""Golden fixture for `spear serve --robot droid` end to end: a tiny π0 as openpi serves it to its DROID client.

Run by a developer, never by CI, in the pinned π0 environment (requirements-pi0.txt), from the repository root:

    /path/to/venv/bin/python tools/reference/pi0_serve_fixtures.py

Writes crates/spear-serve/tests/fixtures/pi0_droid/:

* config.json, model.safetensors  a tiny random PI0ForConditionalGeneration (transformers 5.24.0) with openpi's
                                  32-wide state and actions, a 10-action chunk and the vocabulary of the tiny
                                  PaliGemma tokenizer (crates/spear-models/tests/fixtures/paligemma-tiny).
* norm_stats.json                 openpi's format, DROID-sized statistics (8 state values, 8 action values).
* lerobot_stats.json              the same statistics as lerobot writes a dataset's meta/stats.json (per feature
                                  mean, std, min, max, count, quantiles; an image feature's nested per-channel lists).
* policy_preprocessor_step_3_normalizer_processor.safetensors
                                  the same as a lerobot (>= 0.4) policy saves its normaliser: the processor's
                                  state_dict, keys `{feature}.{statistic}`, float32.
* images.bin                      each observation's exterior frame (56 x 56 x 3 uint8, HWC) then its wrist frame
                                  (3 x 56 x 56 float32 in [0, 1], CHW, as some stacks send), in order.
* expected.json                   the observations' other fields, the starting noise, the token ids, the state the
                                  model saw, and the actions openpi returns.

The pipeline is openpi's pi0_droid around the model (openpi_transforms.py; docs/reference/openpi-serving.md):
DroidInputs (_parse_image; state = 7 joints + gripper; base and left-wrist cameras, the right wrist absent), Normalize,
PadStatesAndActions (32), ResizeImages (a no-op: the frames are at the model's 56 x 56, as DROID's client resizes
them to the model's size before sending), the π0 tokenisation (openpi's PaligemmaTokenizer: the newline encoded on its
own, 48 tokens), then transformers' PI0 `sample_actions` from the recorded noise, Unnormalize and DroidOutputs
([..., :8]) in float64. The frames enter the model as openpi's Observation.from_dict makes them: x / 255 * 2 - 1.
"""
import json

import numpy as np
import tokenizers
import torch
import transformers
from safetensors.torch import save_file
from transformers.models.pi0 import modeling_pi0

from fixture_io import ROOT
from openpi_transforms import normalize_and_pad, parse_image, pi0_prompt_ids, unnormalize
from pi0_fixtures import IMAGE, build, patched_forward

OUT = ROOT / "crates/spear-serve/tests/fixtures/pi0_droid"
TOKENIZER = ROOT / "crates/spear-models/tests/fixtures/paligemma-tiny/tokenizer.json"
CHUNK = 10  # openpi's pi0_droid action horizon
WIDTH = 32  # openpi's π0 action_dim: state and actions padded to it
CAMERAS = 3  # base_0_rgb, left_wrist_0_rgb, right_wrist_0_rgb
PROMPTS = ["  pick_up the\nred cup. ", "put the marker in the mug"]


def main():
    assert transformers.__version__ == "5.24.0", transformers.__version__
    modeling_pi0.PI0TimestepEmbeddings.forward = patched_forward
    tokenizer = tokenizers.Tokenizer.from_file(str(TOKENIZER))
    vocab = tokenizer.get_vocab_size(with_added_tokens=True)
    bos = tokenizer.token_to_id("<bos>")
    model = build(vocab=vocab, chunk=CHUNK, state_dim=WIDTH, action_dim=WIDTH)

    rng = np.random.default_rng(11)
    stats = {
        "state": {"mean": rng.normal(size=8).tolist(), "std": rng.uniform(0.05, 2.0, size=8).tolist(),
                  "q01": rng.normal(size=8).tolist(), "q99": rng.normal(size=8).tolist()},
        "actions": {"mean": rng.normal(size=8).tolist(), "std": rng.uniform(0.05, 2.0, size=8).tolist(),
                    "q01": rng.normal(size=8).tolist(), "q99": rng.normal(size=8).tolist()},
    }
    observations = []
    for prompt in PROMPTS:
        observations.append({
            "observation/exterior_image_1_left": rng.integers(0, 256, size=(IMAGE, IMAGE, 3), dtype=np.uint8),
            "observation/wrist_image_left": rng.random((3, IMAGE, IMAGE), dtype=np.float32),
            "observation/joint_position": rng.normal(size=7),
            "observation/gripper_position": rng.uniform(0, 1, size=1),
            "prompt": prompt,
        })

    # DroidInputs, Normalize, PadStatesAndActions, tokenisation.
    states, frames, prompt_ids = [], [], []
    for o in observations:
        state = np.concatenate([o["observation/joint_position"], o["observation/gripper_position"]])
        states.append(normalize_and_pad(state, stats["state"]))
        base = parse_image(o["observation/exterior_image_1_left"])
        wrist = parse_image(o["observation/wrist_image_left"])
        assert base.shape == wrist.shape == (IMAGE, IMAGE, 3)  # ResizeImages leaves them as they are
        frames.append([base, wrist, np.zeros_like(base)])
        prompt_ids.append(pi0_prompt_ids(tokenizer, o["prompt"], bos))
    state = torch.tensor(np.stack(states), dtype=torch.float32)

    # transformers' PI0 takes `<image>` placeholders for present cameras only, then the text, right-padded.
    pixels = torch.tensor(np.stack([np.stack(f) for f in frames]), dtype=torch.float32)  # [B, cams, H, W, 3]
    pixel_values = (pixels / 255.0 * 2 - 1).permute(0, 1, 4, 2, 3).contiguous()
    camera_mask = torch.tensor([[True, True, False]] * len(observations))
    per_camera = (IMAGE // 14) ** 2
    rows = [[vocab] * per_camera * 2 + ids for ids in prompt_ids]
    length = max(len(r) for r in rows)
    input_ids = torch.zeros(len(rows), length, dtype=torch.long)
    attention_mask = torch.zeros(len(rows), length, dtype=torch.long)
    for b, r in enumerate(rows):
        input_ids[b, : len(r)] = torch.tensor(r)
        attention_mask[b, : len(r)] = 1

    noise = torch.randn(len(observations), CHUNK, WIDTH, generator=torch.Generator().manual_seed(12))
    with torch.no_grad():
        sampled = model.sample_actions(
            state=state, input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values,
            pixel_attention_mask=camera_mask, noise=noise.clone(), num_steps=10,
        )
    # Unnormalize (float64, as openpi's numpy output transforms), DroidOutputs.
    actions = unnormalize(sampled.double().numpy(), stats["actions"])[..., :8]

    OUT.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(OUT)
    for extra in OUT.iterdir():
        if extra.name not in ("config.json", "model.safetensors"):
            extra.unlink()
    (OUT / "norm_stats.json").write_text(json.dumps({"norm_stats": stats}, indent=2) + "\n")
    lerobot = {"observation.images.exterior_image_1_left": {"mean": [[[0.5]], [[0.4]], [[0.3]]],
                                                            "std": [[[0.2]], [[0.2]], [[0.2]]]}}
    for feature, key in [("observation.state", "state"), ("action", "actions")]:
        st = stats[key]
        lerobot[feature] = {"mean": st["mean"], "std": st["std"], "min": (np.array(st["mean"]) - 3).tolist(),
                            "max": (np.array(st["mean"]) + 3).tolist(), "count": [1000], "q01": st["q01"],
                            "q99": st["q99"]}
    (OUT / "lerobot_stats.json").write_text(json.dumps(lerobot, indent=4) + "\n")
    save_file({f"{feature}.{stat}": torch.tensor(lerobot[feature][stat], dtype=torch.float32)
               for feature in ("observation.state", "action") for stat in ("mean", "std", "min", "max")},
              str(OUT / "policy_preprocessor_step_3_normalizer_processor.safetensors"))
    blob = b"".join(o["observation/exterior_image_1_left"].tobytes() + o["observation/wrist_image_left"].tobytes()
                    for o in observations)
    (OUT / "images.bin").write_bytes(blob)
    expected = {
        "generator": f"tools/reference/pi0_serve_fixtures.py (transformers {transformers.__version__}, "
                     f"torch {torch.__version__}, tokenizers {tokenizers.__version__}, numpy {np.__version__})",
        "observations": [{
            "joint_position": o["observation/joint_position"].tolist(),
            "gripper_position": o["observation/gripper_position"].tolist(),
            "prompt": o["prompt"],
        } for o in observations],
        "images": "images.bin: per observation, observation/exterior_image_1_left (56 x 56 x 3 uint8) then "
                  "observation/wrist_image_left (3 x 56 x 56 float32, little-endian)",
        "prompt_ids": prompt_ids,
        "state": np.stack(states).tolist(),
        "noise": noise.tolist(),
        "actions": actions.tolist(),
    }
    (OUT / "expected.json").write_text(json.dumps(expected) + "\n")
    for f in sorted(OUT.iterdir()):
        size = f.stat().st_size
        assert size < 2 * 1024 * 1024, f"{f} is over 2 MB"
        print(f"wrote {f.relative_to(ROOT)} ({size} bytes)")
    print("prompt ids:", prompt_ids)
    print("actions[0][0]:", actions[0][0])


if __name__ == "__main__":
    main()
