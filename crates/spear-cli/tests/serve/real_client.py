#!/usr/bin/env python3
"""openpi's own client (openpi-client 0.1.2 from PyPI) against a running `spear serve --robot ROBOT`.

Run by crates/spear-cli/tests/serve.rs with the virtualenv .ci/run creates (tools/reference/requirements-serve.txt):
    python real_client.py HOST PORT ROBOT
ROBOT is the server's preset: spear (a SPEAR-1 export), droid, libero or aloha (a π0 checkpoint). Observations are
shaped as openpi's example clients send them (examples/droid, examples/libero, examples/aloha_real). Exits non-zero,
with the failed check, on any difference from the protocol.
"""
import sys
import threading
import urllib.request

import numpy as np
from openpi_client import action_chunk_broker, websocket_client_policy

host, port, robot = sys.argv[1], int(sys.argv[2]), sys.argv[3]

with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=10) as r:
    assert r.status == 200 and r.read() == b"OK\n", "health check"

policy = websocket_client_policy.WebsocketClientPolicy(host, port)
metadata = policy.get_server_metadata()
assert isinstance(metadata, dict), metadata
print("metadata:", metadata)
# What each preset returns per step, and in which dtype (openpi's own policies return float64).
dim, dtype = {"spear": (8, np.float32), "droid": (8, np.float64), "libero": (7, np.float64),
              "aloha": (14, np.float64)}[robot]
assert metadata["robot"] == robot and metadata["action_dim"] == dim, metadata
horizon = metadata["horizon"]
rng = np.random.default_rng(0)


def observation(i=0):
    if robot == "spear":
        images = {}
        for k, name in enumerate(metadata["cameras"]):
            if k == 0:
                images[name] = rng.integers(0, 256, size=(224, 224, 3), dtype=np.uint8)  # HWC uint8
            else:
                images[name] = rng.random((3, 96, 128), dtype=np.float32)  # CHW float in [0, 1]
        state = np.array([0.5, 0.01 * i, 0.2, 1.0, 0.0, 0.0, 0.0, 0.0], dtype=np.float64)
        return {"images": images, "state": state, "prompt": "pick up the red block"}
    if robot == "droid":  # examples/droid/main.py: frames resized with padding to 224 client-side
        return {
            "observation/exterior_image_1_left": rng.integers(0, 256, size=(224, 224, 3), dtype=np.uint8),
            "observation/wrist_image_left": rng.integers(0, 256, size=(224, 224, 3), dtype=np.uint8),
            "observation/joint_position": rng.normal(size=7) * 0.1 + 0.01 * i,
            "observation/gripper_position": np.array([0.5]),
            "prompt": "put the marker in the cup",
        }
    if robot == "libero":  # examples/libero/main.py: 224x224 frames, 8-value end-effector state
        return {
            "observation/image": rng.integers(0, 256, size=(224, 224, 3), dtype=np.uint8),
            "observation/wrist_image": rng.integers(0, 256, size=(224, 224, 3), dtype=np.uint8),
            "observation/state": np.concatenate([rng.normal(size=6) * 0.1, [0.04, -0.04]]),
            "prompt": "put the bowl on the plate",
        }
    # examples/aloha_real/env.py: a dict of CHW uint8 frames, 14 joint values, no prompt.
    cams = ["cam_high", "cam_low", "cam_left_wrist", "cam_right_wrist"]
    state = rng.normal(size=14) * 0.1
    state[[6, 13]] = [0.3, 0.7]
    return {"images": {c: rng.integers(0, 256, size=(3, 224, 224), dtype=np.uint8) for c in cams}, "state": state}


def check(result):
    actions = result["actions"]
    assert isinstance(actions, np.ndarray) and actions.dtype == dtype, (type(actions), actions.dtype)
    assert actions.shape == (horizon, dim) and np.isfinite(actions).all(), actions.shape


result = policy.infer(observation())
check(result)
assert set(result) == {"actions", "policy_timing", "server_timing"}, result.keys()
assert "infer_ms" in result["policy_timing"] and "infer_ms" in result["server_timing"], result.keys()
second = policy.infer(observation(1))
assert "prev_total_ms" in second["server_timing"], second["server_timing"]

broker = action_chunk_broker.ActionChunkBroker(policy, action_horizon=horizon)
for step in range(horizon + 2):
    action = broker.infer(observation(step))["actions"]
    assert action.shape == (dim,), action.shape

bad = observation()
del bad["state" if robot in ("spear", "aloha") else "observation/joint_position" if robot == "droid" else
        "observation/state"]
try:
    policy.infer(bad)
    raise AssertionError("a malformed observation was answered")
except RuntimeError as e:
    assert "state" in str(e) or "joint_position" in str(e), e
check(policy.infer(observation()))  # served after the error

errors = []


def client(n):
    try:
        c = websocket_client_policy.WebsocketClientPolicy(host, port)
        for i in range(3):
            check(c.infer(observation(n + i)))
    except Exception as e:  # noqa: BLE001
        errors.append(repr(e))


threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert not errors, errors
print(f"openpi-client ({robot}): every check passed")
