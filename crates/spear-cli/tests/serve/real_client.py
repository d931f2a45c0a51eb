#!/usr/bin/env python3
"""openpi's own client (openpi-client 0.1.2 from PyPI) against a running `spear serve --robot spear`.

Run by crates/spear-cli/tests/serve.rs with the virtualenv .ci/run creates (tools/reference/requirements-serve.txt):
    python real_client.py HOST PORT
Exits non-zero, with the failed check, on any difference from the protocol.
"""
import sys
import threading
import urllib.request

import numpy as np
from openpi_client import action_chunk_broker, websocket_client_policy

host, port = sys.argv[1], int(sys.argv[2])

with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=10) as r:
    assert r.status == 200 and r.read() == b"OK\n", "health check"

policy = websocket_client_policy.WebsocketClientPolicy(host, port)
metadata = policy.get_server_metadata()
assert isinstance(metadata, dict), metadata
assert metadata["robot"] == "spear" and metadata["action_dim"] == 8, metadata
horizon = metadata["horizon"]
cameras = metadata["cameras"]
print("metadata:", metadata)

rng = np.random.default_rng(0)


def observation(i=0):
    images = {}
    for k, name in enumerate(cameras):
        if k == 0:
            images[name] = rng.integers(0, 256, size=(224, 224, 3), dtype=np.uint8)  # HWC uint8
        else:
            images[name] = rng.random((3, 96, 128), dtype=np.float32)  # CHW float in [0, 1]
    state = np.array([0.5, 0.01 * i, 0.2, 1.0, 0.0, 0.0, 0.0, 0.0], dtype=np.float64)
    return {"images": images, "state": state, "prompt": "pick up the red block"}


result = policy.infer(observation())
actions = result["actions"]
assert isinstance(actions, np.ndarray) and actions.dtype == np.float32, type(actions)
assert actions.shape == (horizon, 8) and np.isfinite(actions).all(), actions.shape
assert "infer_ms" in result["policy_timing"] and "infer_ms" in result["server_timing"], result.keys()
second = policy.infer(observation(1))
assert "prev_total_ms" in second["server_timing"], second["server_timing"]

broker = action_chunk_broker.ActionChunkBroker(policy, action_horizon=horizon)
for step in range(horizon + 2):
    action = broker.infer(observation(step))["actions"]
    assert action.shape == (8,), action.shape

bad = observation()
del bad["prompt"]
try:
    policy.infer(bad)
    raise AssertionError("a malformed observation was answered")
except RuntimeError as e:
    assert "prompt" in str(e), e
assert policy.infer(observation())["actions"].shape == (horizon, 8), "served after the error"

errors = []


def client(n):
    try:
        c = websocket_client_policy.WebsocketClientPolicy(host, port)
        for i in range(3):
            assert c.infer(observation(n + i))["actions"].shape == (horizon, 8)
    except Exception as e:  # noqa: BLE001
        errors.append(repr(e))


threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert not errors, errors
print("openpi-client: every check passed")
