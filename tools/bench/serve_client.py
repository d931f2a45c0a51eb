"""The load of `spear bench serve`: openpi's own client (openpi-client 0.1.2) against a server, N clients at once.

Each client is a process (so the clients do not share one interpreter's lock) with its own `WebsocketClientPolicy`: it
connects, sends `--warmup` observations, waits for every other client at a barrier, then sends `--requests` DROID-shaped
observations one after another (as a robot does: the next after the chunk came back) and records each round trip.
Prints one JSON line: {"latencies_ms": [...], "wall_s": from the barrier to the last answer, "openpi_client": version}.

Usage: PYTHON tools/bench/serve_client.py --host 127.0.0.1 --port P --clients N --requests R [--warmup 2]
Environment: tools/reference/requirements-serve.txt.
"""
import argparse
import importlib.metadata
import json
import multiprocessing
import time

import numpy as np
from openpi_client import websocket_client_policy


def observation(rng, i):
    """examples/droid/main.py's observation: frames padded to 224 client-side, 7 joints, the gripper, a prompt."""
    return {
        "observation/exterior_image_1_left": rng.integers(0, 256, size=(224, 224, 3), dtype=np.uint8),
        "observation/wrist_image_left": rng.integers(0, 256, size=(224, 224, 3), dtype=np.uint8),
        "observation/joint_position": rng.normal(size=7) * 0.1 + 0.001 * i,
        "observation/gripper_position": np.array([0.5]),
        "prompt": "put the marker in the cup",
    }


def client(n, a, barrier, results):
    rng = np.random.default_rng(n)
    policy = websocket_client_policy.WebsocketClientPolicy(a.host, a.port)
    observations = [observation(rng, i) for i in range(a.requests)]
    for i in range(a.warmup):
        policy.infer(observations[i % len(observations)])
    barrier.wait()
    latencies = []
    for obs in observations:
        start = time.perf_counter()
        actions = policy.infer(obs)["actions"]
        latencies.append((time.perf_counter() - start) * 1000)
        assert np.isfinite(actions).all()
    results.put(latencies)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--clients", type=int, required=True)
    p.add_argument("--requests", type=int, required=True)
    p.add_argument("--warmup", type=int, default=2)
    a = p.parse_args()
    barrier = multiprocessing.Barrier(a.clients + 1)
    results = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=client, args=(n, a, barrier, results)) for n in range(a.clients)]
    for proc in procs:
        proc.start()
    barrier.wait(timeout=300)
    start = time.perf_counter()
    latencies = [v for _ in procs for v in results.get(timeout=600)]
    wall = time.perf_counter() - start
    for proc in procs:
        proc.join()
        assert proc.exitcode == 0, f"a client failed ({proc.exitcode})"
    print(json.dumps({"latencies_ms": latencies, "wall_s": wall,
                      "openpi_client": importlib.metadata.version("openpi-client")}))


if __name__ == "__main__":
    main()
