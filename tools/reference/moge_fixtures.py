#!/usr/bin/env python3
"""Golden fixtures for MoGe's post-processing, from MoGe's own code (dlr-moge 2.0.0, byte-identical to microsoft/MoGe
at 0744441; pinned in requirements-moge.txt). Run by a developer, never by CI:

    python3 -m venv /path/to/venv && /path/to/venv/bin/pip install -r tools/reference/requirements-moge.txt
    /path/to/venv/bin/pip install --no-deps dlr-moge==2.0.0 dlr-utils3d==1.3
    /path/to/venv/bin/python tools/reference/moge_fixtures.py

Writes crates/spear-models/tests/fixtures/moge_post_expected.safetensors and moge_post.json:

* `resize_<name>_in` / `_out`: PyTorch's antialiased bicubic and bilinear resizes (MoGe's preprocessing), shrinking,
  growing and mixed, on random [1, 3, h, w] images.
* `<name>_raw_mask` and `<name>_infer[_fov]_{points,depth,mask,intrinsics}` for `tall` and `noisy`: what MoGe-1's own
  `infer` returns after its network (threshold, focal and shift, intrinsics, depth, the map re-projected from the
  depth, +inf outside the mask), without and with the field of view given (`<name>_fov_x_deg`).
* `uv_<h>x<w>`: `normalized_view_plane_uv(w, h)` (f32) for the sizes below.
* For each case `<name>`: `<name>_points` [H, W, 3] (MoGe's affine-invariant map: camera-space points whose z lost
  a shift), `<name>_mask` [H, W] (1 valid), and what `moge.utils.geometry_torch.recover_focal_shift` returns for it:
  `<name>_focal`, `<name>_shift` (f32 scalars, focal relative to the half diagonal), and with the true focal given
  (`infer`'s `fov_x` path: `focal = a/sqrt(1+a^2)/tan(fov_x/2)`), `<name>_shift_given`. Also the intrinsics MoGe's
  `infer` derives from the recovered focal (`intrinsics_from_focal_center(fx, fy, 0.5, 0.5)` with
  `fx = focal/2·sqrt(1+a^2)/a`, `fy = focal/2·sqrt(1+a^2)`), `<name>_fx`, `<name>_fy`, and the true focal/shift the map
  was made with (`<name>_true_focal`, `<name>_true_shift`).

The maps: a smooth depth field seen through a pinhole of known focal, the shift subtracted from z; sizes odd and
non-4:3; one with noise (where scipy's Levenberg–Marquardt stopping at ftol=1e-3 matters), one with holes, and two
with a single valid pixel: upsampled to 64×64 it is repeated (a degenerate fit that stays at the start, shift 0), while
downsampled it is missed (below two valid pixels MoGe returns focal 1, shift 0). Narrow fields of view (focal ≳ 2) are
left out: the shift is then barely determined and scipy's solver can wander to a far, meaningless optimum.
"""
import math

import numpy as np
import torch
from moge.utils.geometry_torch import normalized_view_plane_uv, recover_focal_shift

from fixture_io import OUT, save_tensors, write_json

CASES = [
    # name, height, width, true focal (half-diagonal units), true shift, noise, hole fraction
    ("exact", 30, 40, 1.2, 1.5, 0.0, 0.0),
    ("odd", 37, 53, 0.8, -0.4, 0.0, 0.0),
    ("tall", 90, 41, 1.0, -0.5, 0.0, 0.2),
    ("noisy", 70, 100, 1.6, 0.7, 0.01, 0.1),
    ("lonely", 20, 24, 1.0, 0.5, 0.0, 1.0),
    ("sparse", 100, 130, 1.0, 0.5, 0.0, 1.0),
]


def case(name, h, w, focal, shift, noise, holes, rng):
    uv = normalized_view_plane_uv(w, h, dtype=torch.float64).numpy()
    i, j = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    depth = 2.0 + 0.6 * np.sin(i / h * 3.1) * np.cos(j / w * 2.3) + 0.3 * (j / w)
    xy = uv * depth[..., None] / focal
    points = np.concatenate([xy, (depth - shift)[..., None]], axis=-1)
    if noise:
        points = points + rng.normal(0.0, noise, points.shape)
    mask = rng.random((h, w)) >= holes
    if holes >= 1.0:
        mask[h // 2, w // 2] = True  # one valid pixel: below two, MoGe gives up
    points_t = torch.tensor(points, dtype=torch.float32)
    mask_t = torch.tensor(mask)
    got_focal, got_shift = recover_focal_shift(points_t, mask_t)
    aspect = w / h
    given = torch.tensor(focal, dtype=torch.float32)
    fov_x = 2 * math.atan(aspect / math.sqrt(1 + aspect**2) / focal)
    focal_from_fov = aspect / math.sqrt(1 + aspect**2) / math.tan(fov_x / 2)
    _, shift_given = recover_focal_shift(points_t, mask_t, focal=torch.tensor(focal_from_fov, dtype=torch.float32))
    f = float(got_focal)
    print(f"{name}: focal {f:.6f} (true {focal}), shift {float(got_shift):.6f} (true {shift}), "
          f"with focal given {float(shift_given):.6f}")
    return {
        f"{name}_points": points_t,
        f"{name}_mask": mask_t.to(torch.int64),
        f"{name}_focal": torch.tensor([f], dtype=torch.float32),
        f"{name}_shift": got_shift.reshape(1).float(),
        f"{name}_shift_given": shift_given.reshape(1).float(),
        f"{name}_fov_x": torch.tensor([fov_x], dtype=torch.float32),
        f"{name}_fx": torch.tensor([f / 2 * math.sqrt(1 + aspect**2) / aspect], dtype=torch.float32),
        f"{name}_fy": torch.tensor([f / 2 * math.sqrt(1 + aspect**2)], dtype=torch.float32),
        f"{name}_true_focal": torch.tensor([focal], dtype=torch.float32),
        f"{name}_true_shift": torch.tensor([shift], dtype=torch.float32),
    }, given


# Antialiased resizes as MoGe's preprocessing runs them (F.interpolate(..., antialias=True, align_corners=False)):
# name, mode, input (h, w), output (h, w) — shrinking, growing, and one axis each way.
RESIZES = [
    ("bicubic_down", "bicubic", (37, 53), (30, 41)),
    ("bicubic_up", "bicubic", (20, 24), (33, 50)),
    ("bicubic_mixed", "bicubic", (61, 47), (28, 56)),
    ("bilinear_down", "bilinear", (37, 53), (28, 42)),
    ("bilinear_mixed", "bilinear", (61, 47), (28, 56)),
]


def resizes():
    """`resize_<name>_in` [1, 3, h, w] uniform in [0, 1] and `resize_<name>_out`, PyTorch's antialiased resize."""
    torch.manual_seed(1)
    out = {}
    for name, mode, size_in, size_out in RESIZES:
        x = torch.rand(1, 3, *size_in)
        out[f"resize_{name}_in"] = x
        out[f"resize_{name}_out"] = torch.nn.functional.interpolate(x, size_out, mode=mode, antialias=True,
                                                                    align_corners=False)
    return out


def infer_outputs(name, points, mask, fov_x=None):
    """What MoGe-1's own `infer` returns after its network, for a network output of `points` [H, W, 3] and raw mask
    [H, W]: `MoGeModel.infer` run with a stand-in `self` whose `forward` returns them (fp32, mask threshold 0.5,
    `force_projection` and `apply_mask` on, as the CLI runs it)."""
    import types
    from moge.model.v1 import MoGeModel
    h, w = mask.shape
    fake = types.SimpleNamespace(
        dtype=torch.float32, device=torch.device("cpu"), num_tokens_range=[1200, 2500], mask_threshold=0.5,
        forward=lambda image, num_tokens: {"points": points[None], "mask": mask[None]})
    out = MoGeModel.infer(fake, torch.zeros(1, 3, h, w), fov_x=fov_x, use_fp16=False)
    tag = f"{name}_infer" if fov_x is None else f"{name}_infer_fov"
    return {f"{tag}_points": out["points"][0], f"{tag}_depth": out["depth"][0],
            f"{tag}_mask": out["mask"][0].to(torch.int64), f"{tag}_intrinsics": out["intrinsics"][0]}


def main():
    rng = np.random.default_rng(0)
    tensors = resizes()
    for name, h, w, focal, shift, noise, holes in CASES:
        out, _ = case(name, h, w, focal, shift, noise, holes, rng)
        tensors.update(out)
    # MoGe-1's `infer` on two of the maps, with a raw mask around the 0.5 threshold, without and with a known fov.
    for name in ["tall", "noisy"]:
        points = tensors[f"{name}_points"]
        valid = tensors[f"{name}_mask"].bool()
        raw = torch.where(valid, 0.5 + torch.rand(valid.shape) * 0.5, torch.rand(valid.shape) * 0.5)
        tensors[f"{name}_raw_mask"] = raw
        tensors.update(infer_outputs(name, points, raw))
        fov = math.degrees(float(tensors[f"{name}_fov_x"]))
        tensors[f"{name}_fov_x_deg"] = torch.tensor([fov], dtype=torch.float32)
        tensors.update(infer_outputs(name, points, raw, fov_x=fov))
    for h, w in [(30, 40), (37, 53), (64, 64)]:
        tensors[f"uv_{h}x{w}"] = normalized_view_plane_uv(w, h, dtype=torch.float32)
    meta = save_tensors(OUT / "moge_post_expected.safetensors", tensors)
    write_json(OUT / "moge_post.json", {
        "source": "dlr-moge 2.0.0 (microsoft/MoGe 0744441): moge.utils.geometry_torch.recover_focal_shift, "
                  "normalized_view_plane_uv; scipy least_squares(method='lm', x0=0, ftol=1e-3) inside",
        "cases": [dict(zip(["name", "height", "width", "focal", "shift", "noise", "holes"], c)) for c in CASES],
        "resizes": [dict(zip(["name", "mode", "input", "output"], r)) for r in RESIZES],
        "tensors": meta,
    })


if __name__ == "__main__":
    main()
