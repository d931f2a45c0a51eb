"""Helpers shared by the fixture scripts of tools/reference/: writing JSON and safetensors, drawing random weights that
make parity meaningful, and the fixture size limit. Works with both pinned environments (requirements-*.txt)."""
import json
import math
import pathlib

import torch
from safetensors.torch import save_file

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/spear-models/tests/fixtures"


def write_json(path, obj):
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size} bytes)")


def save_tensors(path, tensors):
    """float32 (ids int64), contiguous, via safetensors.torch.save_file; returns {name: {shape, dtype}}. float64 inputs
    (numpy references) are rounded to float32."""
    out = {}
    for name, t in tensors.items():
        t = torch.as_tensor(t).detach().cpu()
        if t.dtype == torch.float64:
            t = t.float()
        assert t.dtype in (torch.float32, torch.int64), (name, t.dtype)
        out[name] = t.contiguous()
    save_file(out, str(path))
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size} bytes)")
    return {n: {"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")} for n, t in out.items()}


def randomize(model, seed, rms_norm_class, extra_rules=()):
    """Overwrite every parameter with draws that make parity meaningful (HF's init leaves norms at 1/0, biases at 0,
    layer scales at 1): Linear/Conv weights N(0, 1/sqrt(fan_in)), biases N(0, 0.1), LayerNorm 1+N(0, 0.1) / N(0, 0.1),
    Gemma RMSNorm weight (zero-centred) N(0, 0.2), token embeddings N(0, 1), position tables N(0, 0.5).
    `extra_rules` are (module class, function(param_name, param) -> None) for other parameter owners. Tied parameters
    are drawn once (first owner wins)."""
    torch.manual_seed(seed)
    done = set()
    with torch.no_grad():
        for mod_name, mod in model.named_modules():
            for p_name, p in mod.named_parameters(recurse=False):
                if id(p) in done:
                    continue
                done.add(id(p))
                full = f"{mod_name}.{p_name}"
                if isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d)):
                    if p_name == "weight":
                        fan_in = p[0].numel()
                        p.copy_(torch.randn_like(p) / math.sqrt(fan_in))
                    else:
                        p.copy_(torch.randn_like(p) * 0.1)
                elif isinstance(mod, torch.nn.LayerNorm):
                    p.copy_((1.0 if p_name == "weight" else 0.0) + torch.randn_like(p) * 0.1)
                elif isinstance(mod, rms_norm_class):
                    p.copy_(torch.randn_like(p) * 0.2)
                elif isinstance(mod, torch.nn.Embedding):
                    p.copy_(torch.randn_like(p) * (0.5 if "position" in mod_name else 1.0))
                else:
                    rule = next((r for cls, r in extra_rules if isinstance(mod, cls)), None)
                    assert rule is not None, f"no randomisation rule for {full} ({type(mod).__name__})"
                    rule(p_name, p)
    assert done == {id(p) for p in model.parameters()}
    return model


def check_sizes():
    for f in sorted(OUT.rglob("*")):
        if f.is_file():
            assert f.stat().st_size < 2 * 1024 * 1024, f"{f} is over 2 MB"
