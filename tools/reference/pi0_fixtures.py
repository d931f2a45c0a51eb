#!/usr/bin/env python3
"""Golden fixtures for SPEAR-1's policy (spear-models `policy`), from HF transformers 5.24.0's PI0 (PyTorch, float32).

Run by a developer, never by CI, with the pinned reference environment (requirements-pi0.txt) in a virtualenv outside
the repository:

    python3 -m venv /path/to/venv && /path/to/venv/bin/pip install -r tools/reference/requirements-pi0.txt
    /path/to/venv/bin/python tools/reference/pi0_fixtures.py

Everything is deterministic (fixed seeds, CPU, float32). Writes, under crates/spear-models/tests/fixtures/:

* pi0-tiny/                 a tiny random PI0ForConditionalGeneration as `save_pretrained` writes it: config.json
                            (transformers' PI0Config) + model.safetensors (transformers converts the names back to the
                            openpi/lerobot layout on save: `paligemma_with_expert.*`, `action_in_proj.*`, ...).
* pi0_expected.safetensors  inputs and outputs of the tiny π0 in its own (linear, "t = 1 is noise") convention:
                            velocity and per-element loss of a training forward, and a 10-step sampled chunk.
* s3_expected.safetensors   SPEAR-1's S³ mode on the same network: the paper's eqs. 1-10 in numpy (float64) around
                            the network's velocities — loss terms for fixed noise/τ/δ, and a sampled chunk.
* pi0_expected.json         what each tensor is.

The time embedding: transformers computes PI0's sinusoid in float32; openpi's PyTorch port and lerobot (which trained
and converted the released PyTorch π0 checkpoints) compute it in float64 and cast the result. Near the top frequency
(2π/0.004) the two differ by ~1e-4, so the fixture patches PI0TimestepEmbeddings.forward with the float64 computation
(written out below, as in openpi's `create_sinusoidal_pos_embedding`) and records how far the unpatched float32
version lands from it.
"""
import math

import numpy as np
import torch
import transformers
from transformers import PI0Config, PI0ForConditionalGeneration
from transformers.models.gemma.modeling_gemma import GemmaRMSNorm
from transformers.models.pi0 import modeling_pi0

import fixture_io
from fixture_io import OUT, check_sizes, save_tensors, write_json

VOCAB = 1024
IMAGE = 56  # 4×4 SigLIP patches of 14 px
CHUNK = 6
ACTION_DIM = 8  # SPEAR's layout: translation (3), quaternion w,x,y,z (4), gripper (1)
STATE_DIM = 6  # deliberately unlike ACTION_DIM, to catch a swapped projection
STEPS = 10


def sinusoid_f64(time, dimension, min_period, max_period):
    """openpi PyTorch / lerobot: the sinusoid in float64, cast to the time's dtype."""
    fraction = torch.linspace(0.0, 1.0, dimension // 2, dtype=torch.float64)
    period = min_period * (max_period / min_period) ** fraction
    scaling = 1.0 / period * 2 * math.pi
    arg = scaling[None, :] * time.to(torch.float64)[:, None]
    return torch.cat([torch.sin(arg), torch.cos(arg)], dim=1).to(time.dtype)


def patched_forward(self, time):
    c = self.config
    return sinusoid_f64(time, c.dit_config.hidden_size, c.min_period, c.max_period)


def build(vocab=VOCAB, chunk=CHUNK, state_dim=STATE_DIM, action_dim=ACTION_DIM):
    config = PI0Config(
        vlm_config=dict(
            model_type="paligemma",
            text_config=dict(
                model_type="gemma",
                hidden_size=64,
                num_hidden_layers=2,
                intermediate_size=128,
                num_attention_heads=8,
                num_key_value_heads=1,
                head_dim=16,
                vocab_size=vocab,
            ),
            vision_config=dict(
                model_type="siglip_vision_model",
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                patch_size=14,
                image_size=IMAGE,
                vision_use_head=False,
            ),
            projection_dim=64,
            image_token_id=vocab,
        ),
        dit_config=dict(
            model_type="gemma",
            hidden_size=32,
            num_hidden_layers=2,
            intermediate_size=64,
            num_attention_heads=8,
            num_key_value_heads=1,
            head_dim=16,
        ),
        chunk_size=chunk,
        max_state_dim=state_dim,
        max_action_dim=action_dim,
        num_inference_steps=STEPS,
        loss_reduction="none",
    )
    torch.manual_seed(0)
    model = PI0ForConditionalGeneration(config).eval()
    fixture_io.randomize(model, 1, GemmaRMSNorm)
    return model


def inputs(model, seed):
    """Batch of 2: sample 0 sees both cameras and a 5-token prompt; sample 1 only its first camera (the second is
    masked, as a missing wrist camera) and a 3-token prompt. transformers takes `<image>` placeholders only for present
    cameras, right-padded; spear lays out [camera 0][camera 1][prompt] with padding flags — the same attention sets
    and positions."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(2, 2, 3, IMAGE, IMAGE, generator=g)  # RGB in [0, 1]
    camera_mask = torch.tensor([[True, True], [True, False]])
    prompt_lengths = [5, 3]
    prompt = torch.randint(3, VOCAB, (2, 5), generator=g)
    image_id = model.config.vlm_config.image_token_id
    per_camera = (IMAGE // 14) ** 2
    rows = []
    for b in range(2):
        cams = int(camera_mask[b].sum())
        rows.append([image_id] * per_camera * cams + prompt[b, : prompt_lengths[b]].tolist())
    length = max(len(r) for r in rows)
    input_ids = torch.zeros(2, length, dtype=torch.long)
    attention_mask = torch.zeros(2, length, dtype=torch.long)
    for b, r in enumerate(rows):
        input_ids[b, : len(r)] = torch.tensor(r)
        attention_mask[b, : len(r)] = 1
    state = torch.randn(2, STATE_DIM, generator=g)
    return dict(
        images=images,
        camera_mask=camera_mask,
        prompt=prompt,
        prompt_lengths=torch.tensor(prompt_lengths),
        input_ids=input_ids,
        attention_mask=attention_mask,
        state=state,
    )


def hf_kwargs(x):
    return dict(
        input_ids=x["input_ids"],
        attention_mask=x["attention_mask"],
        pixel_values=x["images"] * 2 - 1,  # SigLIP's [-1, 1]
        pixel_attention_mask=x["camera_mask"],
    )


# ---------------------------------------------------------------------------------------------------------------
# S³ flow matching (paper eqs. 1, 5-10), float64 numpy, paper time (τ = 0 noise).


def arc_angle(a, b):
    return 2 * np.arctan2(np.linalg.norm(a - b, axis=-1), np.linalg.norm(a + b, axis=-1))


def slerp(noise, data, tau):  # eq. 1
    th = arc_angle(noise, data)[..., None]
    return (np.sin((1 - tau) * th) * noise + np.sin(tau * th) * data) / np.sin(th)


def slerp_velocity(noise, data, tau):  # eq. 7
    th = arc_angle(noise, data)[..., None]
    return th / np.sin(th) * (-np.cos((1 - tau) * th) * noise + np.cos(tau * th) * data)


def hamilton(a, b):
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        -1,
    )


def conj(q):
    return q * np.array([1, -1, -1, -1])


def integrate(q, v, dt):  # eq. 6: q ⊗ [cos(|ω|dt/2), ω/|ω| sin(|ω|dt/2)], ω = 2 Im(q* ⊗ v)
    omega = 2 * hamilton(conj(q), v)[..., 1:]
    n = np.linalg.norm(omega, axis=-1, keepdims=True)
    half = n * dt / 2
    delta = np.concatenate([np.cos(half), omega / n * np.sin(half)], -1)
    out = hamilton(q, delta)
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


def cosine_loss(v, u):  # eq. 8 with both vectors normalised (spear-geometry documents why)
    return 1 - (v * u).sum(-1) / (np.linalg.norm(v, axis=-1) * np.linalg.norm(u, axis=-1))


def geodesic_loss(a, b):  # eq. 9
    return np.minimum(np.linalg.norm(a - b, axis=-1), np.linalg.norm(a + b, axis=-1))


def canonical(q):
    return np.where(q[..., :1] < 0, -q, q)


def uniform_quaternions(rng, shape):
    q = rng.standard_normal(shape + (4,))
    return canonical(q / np.linalg.norm(q, axis=-1, keepdims=True))


def split(a):
    return a[..., :3], a[..., 3:7], a[..., 7:]


def main():
    assert transformers.__version__ == "5.24.0", transformers.__version__
    modeling_pi0.PI0TimestepEmbeddings.forward = patched_forward
    model = build()
    x = inputs(model, seed=2)
    kw = hf_kwargs(x)
    g = torch.Generator().manual_seed(3)
    B = 2

    # A. π0's own convention: code time t (1 = noise), x_t = t·noise + (1 − t)·actions, target noise − actions.
    noise = torch.randn(B, CHUNK, ACTION_DIM, generator=g)
    actions = torch.randn(B, CHUNK, ACTION_DIM, generator=g)
    t = torch.tensor([0.7, 0.25])
    with torch.no_grad():
        out = model(state=x["state"], noise=noise, timestep=t, actions=actions, **kw)
        velocity, loss = out.logits, out.loss
        time_embedding = model.embed_action_time.sinusoid_embeds(t)
        sample_noise = torch.randn(B, CHUNK, ACTION_DIM, generator=g)
        sampled = model.sample_actions(state=x["state"], noise=sample_noise.clone(), num_steps=STEPS, **kw)
        modeling_pi0.PI0TimestepEmbeddings.forward = modeling_pi0_forward_f32
        velocity_f32 = model(state=x["state"], noise=noise, timestep=t, actions=actions, **kw).logits
        modeling_pi0.PI0TimestepEmbeddings.forward = patched_forward
    f32_gap = float((velocity_f32 - velocity).abs().max())

    # B. SPEAR-1's S³ mode around the same network (paper time τ = 1 − t; the network sees t and predicts d/dt, so
    # the paper's velocity is −output). Translation and gripper are linear, the quaternion follows eqs. 1 and 5-10.
    rng = np.random.default_rng(4)
    data = rng.standard_normal((B, CHUNK, ACTION_DIM))
    data[..., 3:7] = uniform_quaternions(rng, (B, CHUNK))
    s3_noise = rng.standard_normal((B, CHUNK, ACTION_DIM))
    s3_noise[..., 3:7] = uniform_quaternions(rng, (B, CHUNK))
    tau = np.array([0.3, 0.8])[:, None, None]
    delta = np.array([0.2, 0.05])[:, None, None]
    noisy = tau * data + (1 - tau) * s3_noise
    noisy[..., 3:7] = slerp(s3_noise[..., 3:7], data[..., 3:7], tau)

    def network(actions_now, tau_now):
        t_now = torch.tensor(1.0 - tau_now.reshape(-1), dtype=torch.float32)
        with torch.no_grad():
            raw = model(state=x["state"], noise=torch.tensor(actions_now, dtype=torch.float32), timestep=t_now, **kw)
        return raw.logits.double().numpy()

    raw = network(noisy, tau)
    v = -raw
    vx, vq, vg = split(v)
    ex, eq_, eg = split(s3_noise)
    dx, dq, dg = split(data)
    translation = ((vx - (dx - ex)) ** 2).sum(-1)
    gripper = ((vg - (dg - eg)) ** 2).sum(-1)
    cosine = cosine_loss(vq, slerp_velocity(eq_, dq, tau))
    geodesic = geodesic_loss(slerp(eq_, dq, tau + delta), integrate(noisy[..., 3:7], vq, delta))

    # S³ sampling: τ_k = k/N, the network at t = 1 − τ_k, Euler in Rⁿ and eq. 5 on S³, canonical output.
    s3_start = rng.standard_normal((B, CHUNK, ACTION_DIM))
    s3_start[..., 3:7] = uniform_quaternions(rng, (B, CHUNK))
    a = s3_start.copy()
    for k in range(STEPS):
        tau_k = np.full((B, 1, 1), k / STEPS)
        vel = -network(a, tau_k)
        step = 1.0 / STEPS
        nxt = a + step * vel
        nxt[..., 3:7] = integrate(a[..., 3:7], vel[..., 3:7], step)
        a = nxt
    a[..., 3:7] = canonical(a[..., 3:7])

    OUT.mkdir(parents=True, exist_ok=True)
    snapshot = OUT / "pi0-tiny"
    model.save_pretrained(snapshot)
    for extra in snapshot.iterdir():
        if extra.name not in ("config.json", "model.safetensors"):
            extra.unlink()
    shapes = save_tensors(
        OUT / "pi0_expected.safetensors",
        dict(
            images=x["images"],
            camera_mask=x["camera_mask"].long(),
            prompt=x["prompt"],
            prompt_lengths=x["prompt_lengths"],
            state=x["state"],
            noise=noise,
            actions=actions,
            t=t,
            time_embedding=time_embedding,
            velocity=velocity,
            loss=loss,
            sample_noise=sample_noise,
            sampled=sampled,
        ),
    )
    s3_shapes = save_tensors(
        OUT / "s3_expected.safetensors",
        dict(
            data=torch.from_numpy(data),
            noise=torch.from_numpy(s3_noise),
            tau=torch.from_numpy(tau.reshape(-1)),
            delta=torch.from_numpy(delta.reshape(-1)),
            noisy=torch.from_numpy(noisy),
            velocity=torch.from_numpy(v),
            translation=torch.from_numpy(translation),
            gripper=torch.from_numpy(gripper),
            cosine=torch.from_numpy(cosine),
            geodesic=torch.from_numpy(geodesic),
            start=torch.from_numpy(s3_start),
            sampled=torch.from_numpy(a),
        ),
    )
    write_json(
        OUT / "pi0_expected.json",
        {
            "source": "tools/reference/pi0_fixtures.py",
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "sinusoid": "float64 (openpi PyTorch / lerobot), cast to float32",
            "unpatched_float32_sinusoid_max_velocity_gap": f32_gap,
            "pi0_expected.safetensors": {
                "shapes": shapes,
                "images": "[B, cameras, 3, H, W] RGB in [0, 1] (the model saw 2x-1)",
                "camera_mask": "[B, cameras] 1 = present",
                "prompt": "[B, 5] token ids, row b valid for its first prompt_lengths[b] tokens",
                "t": "code time per sample (1 = noise)",
                "velocity": "forward(noise, actions, timestep=t).logits: the predicted d/dt at x_t = t*noise + (1-t)*actions",
                "loss": "per-element (noise - actions - velocity)^2",
                "sampled": "sample_actions(noise=sample_noise, num_steps=10): t = 1, 0.9, ..., 0.1, x += -0.1 * v",
            },
            "s3_expected.safetensors": {
                "shapes": s3_shapes,
                "layout": "action dims [x, y, z, qw, qx, qy, qz, gripper]; paper time tau (0 = noise)",
                "noisy": "eq. 1 on the quaternion, tau*data + (1-tau)*noise elsewhere",
                "velocity": "paper-time velocity = -network(noisy, t = 1 - tau)",
                "translation": "[B, H] sum over xyz of (v - (data - noise))^2",
                "gripper": "[B, H] same for the gripper",
                "cosine": "[B, H] eq. 8 (normalised), against eq. 7",
                "geodesic": "[B, H] eq. 9 between eq. 1 at tau + delta and eq. 6 integration of v over delta",
                "sampled": "10 Euler steps from start: tau_k = k/10, Rn Euler + eq. 5, quaternion canonicalised (w >= 0)",
            },
        },
    )
    check_sizes()


modeling_pi0_forward_f32 = modeling_pi0.PI0TimestepEmbeddings.forward

if __name__ == "__main__":
    main()
