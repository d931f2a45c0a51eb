"""openpi's serving design around transformers' PI0: the Python side of `spear bench serve`.

The server is built as openpi's `WebsocketPolicyServer` (serving/websocket_policy_server.py) is: a `websockets` asyncio
server, no compression, no message size limit, `GET /healthz` answered in `process_request`, the metadata frame first,
then per message: `msgpack_numpy.unpackb`, the policy's `infer` run inline in the connection's handler (one request at a
time, no batching: the event loop waits on the model), `server_timing` {infer_ms, prev_total_ms} added, `packb`.
The policy is openpi's `Policy.infer` for `pi0_droid` (policies/policy.py): DroidInputs, Normalize, ResizeImages
(openpi_client's resize_with_pad), the π0 tokenisation, PadStatesAndActions, transformers' PI0 `sample_actions`,
Unnormalize, DroidOutputs; `policy_timing` {infer_ms} around the model.

Usage (started by `spear bench serve --compare-torch PYTHON`, from the repository root):
    PYTHON tools/bench/serve_pi0_torch.py --checkpoint DIR --tokenizer tokenizer.json --norm-stats norm_stats.json \
        --threads N [--port 0]
Prints one JSON line ({"port", "bare_ms", "torch", "device", "threads"}: `bare_ms` is the median time of `infer` on one
DROID-shaped observation in process, without the server) once it listens, then serves until it is terminated.

Environment: tools/bench/requirements-serve-torch.txt.
"""
import argparse
import asyncio
import http
import json
import pathlib
import sys
import time

import numpy as np
import tokenizers
import torch
import websockets.asyncio.server
import websockets.http11
from openpi_client import image_tools, msgpack_numpy
from transformers import PI0ForConditionalGeneration

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "reference"))
from openpi_transforms import normalize_and_pad, parse_image, pi0_prompt_ids, unnormalize  # noqa: E402


class Pi0DroidPolicy:
    """openpi's Policy.infer with the pi0_droid transforms around transformers' PI0."""

    def __init__(self, checkpoint, tokenizer, norm_stats):
        self.model = PI0ForConditionalGeneration.from_pretrained(checkpoint).eval()
        self.tokenizer = tokenizers.Tokenizer.from_file(tokenizer)
        self.bos = self.tokenizer.token_to_id("<bos>")
        self.stats = json.loads(pathlib.Path(norm_stats).read_text())["norm_stats"]
        config = self.model.config
        self.side = config.vlm_config.vision_config.image_size
        patch = config.vlm_config.vision_config.patch_size
        self.per_camera = (self.side // patch) ** 2
        self.image_token = config.vlm_config.image_token_id

    def infer(self, obs):
        state = np.concatenate([obs["observation/joint_position"], obs["observation/gripper_position"]])
        state = normalize_and_pad(state, self.stats["state"])
        frames = [image_tools.resize_with_pad(parse_image(obs[k]), self.side, self.side)
                  for k in ("observation/exterior_image_1_left", "observation/wrist_image_left")]
        frames.append(np.zeros_like(frames[0]))
        ids = pi0_prompt_ids(self.tokenizer, obs["prompt"], self.bos)
        pixels = torch.from_numpy(np.stack(frames)).float() / 255.0 * 2 - 1
        start = time.monotonic()
        with torch.no_grad():
            actions = self.model.sample_actions(
                state=torch.tensor(state, dtype=torch.float32)[None],
                input_ids=torch.tensor([[self.image_token] * self.per_camera * 2 + ids]),
                attention_mask=torch.ones(1, self.per_camera * 2 + len(ids), dtype=torch.long),
                pixel_values=pixels.permute(0, 3, 1, 2)[None],
                pixel_attention_mask=torch.tensor([[True, True, False]]),
            )[0]
        model_ms = (time.monotonic() - start) * 1000
        actions = unnormalize(actions.numpy(), self.stats["actions"])[..., :8]
        return {"actions": actions, "policy_timing": {"infer_ms": model_ms}}


def example(seed=0):
    """A DROID client's observation (examples/droid/main.py: frames padded to 224 client-side)."""
    rng = np.random.default_rng(seed)
    return {
        "observation/exterior_image_1_left": rng.integers(0, 256, size=(224, 224, 3), dtype=np.uint8),
        "observation/wrist_image_left": rng.integers(0, 256, size=(224, 224, 3), dtype=np.uint8),
        "observation/joint_position": rng.normal(size=7) * 0.1,
        "observation/gripper_position": np.array([0.5]),
        "prompt": "put the marker in the cup",
    }


async def serve(policy, port, ready):
    metadata = {"model": "pi0-tiny", "robot": "droid"}

    async def handler(websocket):
        await websocket.send(msgpack_numpy.packb(metadata))
        prev_total = None
        while True:
            try:
                start = time.monotonic()
                obs = msgpack_numpy.unpackb(await websocket.recv())
                infer_start = time.monotonic()
                result = policy.infer(obs)
                infer_ms = (time.monotonic() - infer_start) * 1000
                result["server_timing"] = {"infer_ms": infer_ms}
                if prev_total is not None:
                    result["server_timing"]["prev_total_ms"] = prev_total
                await websocket.send(msgpack_numpy.packb(result))
                prev_total = (time.monotonic() - start) * 1000
            except websockets.ConnectionClosed:
                break

    def health(connection, request):
        if request.path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        return None

    async with websockets.asyncio.server.serve(handler, "127.0.0.1", port, compression=None, max_size=None,
                                               process_request=health) as server:
        ready(server.sockets[0].getsockname()[1])
        await server.serve_forever()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--norm-stats", required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--port", type=int, default=0)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    policy = Pi0DroidPolicy(a.checkpoint, a.tokenizer, a.norm_stats)
    obs = example()
    for _ in range(3):
        policy.infer(obs)
    times = []
    for _ in range(20):
        start = time.monotonic()
        policy.infer(obs)
        times.append((time.monotonic() - start) * 1000)

    def ready(port):
        print(json.dumps({"port": port, "bare_ms": float(np.median(times)), "torch": torch.__version__,
                          "device": "cpu", "threads": torch.get_num_threads()}), flush=True)

    asyncio.run(serve(policy, a.port, ready))


if __name__ == "__main__":
    main()
