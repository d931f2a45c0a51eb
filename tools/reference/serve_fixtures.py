#!/usr/bin/env python3
"""Golden fixtures for spear-serve's wire format, from openpi-client 0.1.2's own msgpack_numpy (msgpack 1.2.4).

Run by a developer, never by CI, with the pinned environment (requirements-serve.txt) in a virtualenv outside the
repository:

    python3 -m venv /path/to/venv && /path/to/venv/bin/pip install -r tools/reference/requirements-serve.txt
    /path/to/venv/bin/python tools/reference/serve_fixtures.py

Writes crates/spear-serve/tests/fixtures/wire/: one NAME.msgpack per case (the bytes `msgpack_numpy.packb` gives)
and cases.json, which describes each case's decoded value (arrays as dtype, shape and values in C order) and whether
re-encoding the decoded value must give the same bytes (not for numpy scalars, which decode to plain numbers).

And crates/spear-serve/tests/fixtures/{droid,libero}/: an observation of openpi's DROID and LIBERO clients, a
norm_stats.json, and what openpi's transforms (written out in numpy from openpi's code) feed π0 and return.

And crates/spear-data/tests/fixtures/resize_with_pad/: images of several sizes and what openpi's
`image_tools.resize_with_pad` (PIL bilinear, the resize openpi's server applies to every camera of a π0 policy)
makes of them at two target sizes (cases.json + the bytes of inputs and outputs, uint8 HWC, in order).
"""
import json
import pathlib

import numpy as np
from openpi_client import msgpack_numpy

from openpi_transforms import (aloha_decode_state, aloha_encode_actions, make_bool_mask, normalize_and_pad,
                               parse_image, unnormalize)

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/spear-serve/tests/fixtures/wire"


def rng_image(seed, shape):
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def cases():
    droid = {
        "observation/exterior_image_1_left": rng_image(1, (6, 8, 3)),
        "observation/wrist_image_left": rng_image(2, (6, 8, 3)),
        "observation/joint_position": np.random.default_rng(3).normal(size=7),
        "observation/gripper_position": np.array([0.25]),
        "prompt": "pick up the red cup",
    }
    libero = {
        "observation/image": rng_image(4, (5, 5, 3)),
        "observation/wrist_image": rng_image(5, (5, 5, 3)),
        "observation/state": np.random.default_rng(6).normal(size=8),
        "prompt": "put the bowl on the plate",
    }
    aloha = {
        "state": np.random.default_rng(7).normal(size=14),
        "images": {name: rng_image(8 + i, (3, 4, 4)) for i, name in
                   enumerate(["cam_high", "cam_low", "cam_left_wrist", "cam_right_wrist"])},
    }
    dtypes = {str(np.dtype(t)): np.arange(-3, 3).astype(t) if np.dtype(t).kind in "if" else np.arange(6).astype(t)
              for t in ["u1", "<u2", "<u4", "<u8", "i1", "<i2", "<i4", "<i8", "<f2", "<f4", "<f8"]}
    dtypes["bool"] = np.array([True, False, True])
    transposed = np.arange(12, dtype=np.float32).reshape(3, 4).T  # not C-contiguous: tobytes() is C order
    return {
        # The 77-byte example of the serving notes.
        "actions_example": ({"actions": np.arange(6, dtype=np.float32).reshape(2, 3)}, True),
        "response": ({
            "actions": np.linspace(-1, 1, 5 * 8, dtype=np.float32).reshape(5, 8),
            "policy_timing": {"infer_ms": 12.5},
            "server_timing": {"infer_ms": 13.25, "prev_total_ms": 20.0},
        }, True),
        "droid": (droid, True),
        "libero": (libero, True),
        "aloha": (aloha, True),
        "dtypes": (dtypes, True),
        "shapes": ({"scalar_array": np.array(2.5, dtype=np.float32), "empty": np.zeros((0, 3), dtype=np.float32),
                    "transposed": transposed, "big": np.arange(300, dtype=np.int16)}, True),
        "plain": ({"none": None, "true": True, "false": False, "ints": [0, 1, 127, 128, 255, 256, 65535, 65536,
                   2**32, 2**40, -1, -32, -33, -128, -129, -32768, -32769, -2**31 - 1, -2**40],
                   "floats": [0.0, 1.5, -2.25, 1e300], "bytes": b"\x00\x01\xff", "tuple": (1, "two", 3.0),
                   "long_str": "x" * 40, "longer_str": "y" * 300, "long_list": list(range(20)),
                   "nested": {"a": {"b": {"c": [1, {"d": "e"}]}}}}, True),
        "big_map": ({f"key{i:02}": i for i in range(20)}, True),
        "metadata": ({"model": "spear1-tiny", "horizon": 5, "action_dim": 8, "rate_hz": 5.0,
                      "cameras": ["main", "wrist"]}, True),
        "empty": ({}, True),
        "numpy_scalars": ({"f4": np.float32(1.5), "i8": np.int64(-3), "b": np.bool_(True), "u1": np.uint8(200)}, False),
    }


def describe(x):
    if isinstance(x, np.ndarray):
        values = x.reshape(-1).tolist()
        if x.dtype.kind == "f":
            values = [float(v) for v in values]
        return {"array": {"dtype": x.dtype.str, "shape": list(x.shape), "values": values}}
    if isinstance(x, np.generic):
        return describe(x.item())
    if isinstance(x, dict):
        return {"map": [[k, describe(v)] for k, v in x.items()]}
    if isinstance(x, (list, tuple)):
        return {"list": [describe(v) for v in x]}
    if isinstance(x, bytes):
        return {"bytes": list(x)}
    if isinstance(x, bool):
        return {"bool": x}
    if isinstance(x, int):
        return {"int": x}
    if isinstance(x, float):
        return {"float": x}
    if isinstance(x, str):
        return {"str": x}
    if x is None:
        return {"nil": None}
    raise TypeError(type(x))


def resize_with_pad_cases():
    from openpi_client import image_tools

    out = ROOT / "crates/spear-data/tests/fixtures/resize_with_pad"
    out.mkdir(parents=True, exist_ok=True)
    blob, cases = bytearray(), []
    for i, (h, w) in enumerate([(90, 160), (100, 150), (61, 47), (256, 320), (56, 56), (20, 30), (180, 96)]):
        image = rng_image(100 + i, (h, w, 3))
        # Smooth structure as well as noise: a gradient plus the noise at a quarter.
        yy, xx = np.mgrid[0:h, 0:w]
        image = ((image.astype(np.int32) // 4 + (xx * 191 // max(w - 1, 1))[..., None]) % 256).astype(np.uint8)
        for th, tw in [(56, 56), (28, 40)]:
            resized = image_tools.resize_with_pad(image, th, tw)
            assert resized.dtype == np.uint8 and resized.shape == (th, tw, 3)
            cases.append({"input": [h, w], "target": [th, tw], "input_offset": len(blob)})
            blob += image.tobytes()
            cases[-1]["output_offset"] = len(blob)
            blob += resized.tobytes()
    (out / "images.bin").write_bytes(bytes(blob))
    (out / "cases.json").write_text(json.dumps({
        "generator": "tools/reference/serve_fixtures.py: openpi_client.image_tools.resize_with_pad "
                     "(openpi-client 0.1.2, Pillow 13.0.0)",
        "layout": "images.bin holds each case's input (h x w x 3 uint8) then its output (target h x w x 3) at the offsets",
        "cases": cases,
    }, indent=1) + "\n")
    print(f"resize_with_pad: {len(cases)} cases, {len(blob)} bytes")


def droid_transforms():
    """openpi's DROID pipeline for π0 around the model, in numpy as openpi's transforms compute it
    (docs/reference/openpi-serving.md): DroidInputs (_parse_image: float -> uint8 by truncation, CHW -> HWC;
    state = joints + gripper), Normalize (z-score, eps 1e-6 on std, stats cut to the state), PadStatesAndActions (32),
    ResizeImages (openpi_client.image_tools.resize_with_pad, here to the test model's 56x56); and on the way out
    Unnormalize (stats padded with mean 0, std 1) then DroidOutputs ([..., :8])."""
    from openpi_client import image_tools

    out = ROOT / "crates/spear-serve/tests/fixtures/droid"
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(42)
    # State statistics longer than DROID's 8 values (cut on the way in); action statistics shorter than the model's
    # 32 (padded on the way out).
    stats = {
        "state": {"mean": rng.normal(size=10).tolist(), "std": rng.uniform(0.05, 2.0, size=10).tolist(),
                  "q01": rng.normal(size=10).tolist(), "q99": rng.normal(size=10).tolist()},
        "actions": {"mean": rng.normal(size=8).tolist(), "std": rng.uniform(0.05, 2.0, size=8).tolist()},
    }
    (out / "norm_stats.json").write_text(json.dumps({"norm_stats": stats}, indent=2) + "\n")
    observation = {
        "observation/exterior_image_1_left": rng.integers(0, 256, size=(90, 160, 3), dtype=np.uint8),
        "observation/wrist_image_left": rng.random((3, 60, 80), dtype=np.float32),  # CHW float, as some stacks send
        "observation/joint_position": rng.normal(size=7),
        "observation/gripper_position": np.array([0.37]),
        "prompt": "put the marker in the cup",
    }
    (out / "observation.msgpack").write_bytes(msgpack_numpy.packb(observation))

    state = np.concatenate([observation["observation/joint_position"], observation["observation/gripper_position"]])
    state = normalize_and_pad(state, stats["state"])
    base = image_tools.resize_with_pad(parse_image(observation["observation/exterior_image_1_left"]), 56, 56)
    wrist = image_tools.resize_with_pad(parse_image(observation["observation/wrist_image_left"]), 56, 56)
    (out / "images.bin").write_bytes(base.tobytes() + wrist.tobytes())
    # The float CHW wrist frame as _parse_image leaves it (before the resize, whose kernel rounds differently).
    (out / "wrist_parsed.bin").write_bytes(parse_image(observation["observation/wrist_image_left"]).tobytes())

    model_output = rng.normal(size=(4, 32)).astype(np.float32)  # what the model would return, normalised and padded
    actions = unnormalize(model_output, stats["actions"])[..., :8]
    assert actions.dtype == np.float64
    (out / "expected.json").write_text(json.dumps({
        "generator": "tools/reference/serve_fixtures.py (openpi-client 0.1.2's resize_with_pad, numpy 1.26.4)",
        "state": state.tolist(),
        "images": "images.bin: the base camera then the left wrist camera, 56 x 56 x 3 uint8 each; the right wrist "
                  "camera is absent (openpi: zeros, mask False)",
        "model_output": model_output.tolist(),
        "actions": actions.tolist(),
    }, indent=1) + "\n")
    print("droid: state", state.shape, "actions", actions.shape)


def libero_transforms():
    """openpi's pi0_libero pipeline around the model, in numpy as openpi computes it: LiberoInputs (_parse_image;
    the 8-value state passed through), Normalize, PadStatesAndActions (32), ResizeImages (here 56x56); on the way out
    Unnormalize of the actions and of the state the model saw (statistics padded with mean 0, std 1),
    AbsoluteActions (make_bool_mask(6, -1): the state added to the first 6 values) and LiberoOutputs ([..., :7]).
    The state added back is unnormalize(float32(normalised state)), as openpi's output path holds it."""
    from openpi_client import image_tools

    out = ROOT / "crates/spear-serve/tests/fixtures/libero"
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    stats = {
        "state": {"mean": rng.normal(size=8).tolist(), "std": rng.uniform(0.05, 2.0, size=8).tolist()},
        "actions": {"mean": rng.normal(size=7).tolist(), "std": rng.uniform(0.05, 2.0, size=7).tolist()},
    }
    (out / "norm_stats.json").write_text(json.dumps({"norm_stats": stats}, indent=2) + "\n")
    observation = {
        "observation/image": rng.integers(0, 256, size=(224, 224, 3), dtype=np.uint8),
        "observation/wrist_image": rng.integers(0, 256, size=(120, 160, 3), dtype=np.uint8),
        "observation/state": rng.normal(size=8),
        "prompt": "put both the alphabet soup and the tomato sauce in the basket",
    }
    (out / "observation.msgpack").write_bytes(msgpack_numpy.packb(observation))
    state = normalize_and_pad(observation["observation/state"], stats["state"])
    base = image_tools.resize_with_pad(parse_image(observation["observation/image"]), 56, 56)
    wrist = image_tools.resize_with_pad(parse_image(observation["observation/wrist_image"]), 56, 56)
    (out / "images.bin").write_bytes(base.tobytes() + wrist.tobytes())
    model_output = rng.normal(size=(4, 32)).astype(np.float32)
    seen_state = unnormalize(state.astype(np.float32), stats["state"])
    actions = unnormalize(model_output, stats["actions"])
    actions[..., :6] += np.expand_dims(seen_state[:6], axis=-2)
    actions = actions[..., :7]
    (out / "expected.json").write_text(json.dumps({
        "generator": "tools/reference/serve_fixtures.py (openpi-client 0.1.2's resize_with_pad, numpy 1.26.4)",
        "state": state.tolist(),
        "images": "images.bin: the agent-view camera then the wrist camera, 56 x 56 x 3 uint8 each; the right wrist "
                  "camera is absent (openpi: zeros, mask False)",
        "model_output": model_output.tolist(),
        "actions": actions.tolist(),
    }, indent=1) + "\n")
    print("libero: state", state.shape, "actions", actions.shape)


def aloha_transforms():
    """openpi's pi0_aloha pipeline around the model, in numpy as openpi computes it: AlohaInputs(adapt_to_pi=True)
    (each frame float -> uint8 by truncation and CHW -> HWC; cam_high to the base slot, cam_left_wrist and
    cam_right_wrist to the wrist slots, cam_low ignored, an absent camera masked; the state's joint signs flipped and
    its grippers converted to π0's angles), Normalize, PadStatesAndActions (32), ResizeImages (here 56x56), no prompt
    from the client; on the way out Unnormalize of the actions and of the state the model saw, AbsoluteActions
    (make_bool_mask(6, -1, 6, -1): the state added to the 12 joints) and AlohaOutputs ([:, :14], signs flipped back,
    grippers to ALOHA's joint). And pi0_aloha_sim's, the same without AbsoluteActions."""
    from openpi_client import image_tools

    out = ROOT / "crates/spear-serve/tests/fixtures/aloha"
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(9)
    stats = {
        "state": {"mean": rng.normal(size=14).tolist(), "std": rng.uniform(0.05, 2.0, size=14).tolist()},
        "actions": {"mean": rng.normal(size=14).tolist(), "std": rng.uniform(0.05, 2.0, size=14).tolist()},
    }
    (out / "norm_stats.json").write_text(json.dumps({"norm_stats": stats}, indent=2) + "\n")
    state = rng.normal(scale=0.5, size=14)
    state[[6, 13]] = rng.uniform(0.05, 0.95, size=2)  # gripper positions, normalised linear travel
    observation = {
        "state": state,
        "images": {
            "cam_high": rng.integers(0, 256, size=(3, 224, 224), dtype=np.uint8),
            "cam_low": rng.integers(0, 256, size=(3, 8, 8), dtype=np.uint8),  # accepted, unused
            "cam_left_wrist": rng.random((3, 90, 120), dtype=np.float32),
        },
    }
    (out / "observation.msgpack").write_bytes(msgpack_numpy.packb(observation))
    pi_state = aloha_decode_state(observation["state"].copy())
    normalised = normalize_and_pad(pi_state, stats["state"])
    base = image_tools.resize_with_pad(parse_image(observation["images"]["cam_high"]), 56, 56)
    wrist = image_tools.resize_with_pad(parse_image(observation["images"]["cam_left_wrist"]), 56, 56)
    (out / "images.bin").write_bytes(base.tobytes() + wrist.tobytes())
    model_output = rng.normal(size=(4, 32)).astype(np.float32)
    seen_state = unnormalize(normalised.astype(np.float32), stats["state"])
    absolute = unnormalize(model_output, stats["actions"])
    mask = np.asarray(make_bool_mask(6, -1, 6, -1))
    absolute[..., :14] += np.expand_dims(np.where(mask, seen_state[:14], 0), axis=-2)
    actions = aloha_encode_actions(absolute)
    sim_actions = aloha_encode_actions(unnormalize(model_output, stats["actions"]))
    (out / "expected.json").write_text(json.dumps({
        "generator": "tools/reference/serve_fixtures.py (openpi-client 0.1.2's resize_with_pad, numpy 1.26.4)",
        "state": normalised.tolist(),
        "images": "images.bin: cam_high then cam_left_wrist, 56 x 56 x 3 uint8 each; the right wrist camera is "
                  "absent (openpi: zeros, mask False)",
        "model_output": model_output.tolist(),
        "actions": actions.tolist(),
        "sim_actions": sim_actions.tolist(),
    }, indent=1) + "\n")
    print("aloha: state", normalised.shape, "actions", actions.shape)


def main():
    resize_with_pad_cases()
    droid_transforms()
    libero_transforms()
    aloha_transforms()
    OUT.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for name, (obj, roundtrip) in cases().items():
        packed = msgpack_numpy.packb(obj)
        (OUT / f"{name}.msgpack").write_bytes(packed)
        back = msgpack_numpy.unpackb(packed)
        assert json.dumps(describe(back)) == json.dumps(describe(obj)), name
        manifest[name] = {"value": describe(obj), "roundtrip": roundtrip, "bytes": len(packed)}
        print(f"{name}: {len(packed)} bytes")
    assert manifest["actions_example"]["bytes"] == 77
    (OUT / "cases.json").write_text(json.dumps({
        "generator": "tools/reference/serve_fixtures.py with openpi-client 0.1.2, msgpack 1.2.4, numpy 1.26.4",
        "cases": manifest,
    }, indent=1) + "\n")


if __name__ == "__main__":
    main()
