#!/usr/bin/env python3
"""Golden fixtures for spear-geometry, from scipy's Rotation/Slerp/stats and the paper's equations in numpy.

Writes crates/spear-geometry/tests/fixtures/geometry.json. Run by a developer, never by CI:

    python3 tools/reference/geometry_fixtures.py

Quaternions are (w, x, y, z) everywhere in the output. Every quantity the paper defines by an
equation (eqs. 1, 6, 7, 8, 9, 10) is computed from that equation in float64 numpy, and wherever
scipy can say the same thing (rotation composition, rotation vectors) the script asserts that
scipy agrees before writing it.
"""
import json
import pathlib

import numpy as np
import scipy
from scipy.spatial.transform import Rotation, Slerp
from scipy.stats import beta as beta_dist

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates/spear-geometry/tests/fixtures/geometry.json"
rng = np.random.default_rng(20251125)


def unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def random_quats(n):
    return unit(rng.standard_normal((n, 4)))


def canonical(q):
    return np.where(q[..., :1] < 0, -q, q)


def ham(a, b):
    aw, ax, ay, az = a
    bw, bx, by, bz = b
    return np.array([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ])


def conj(q):
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def rot(q):
    return Rotation.from_quat(q, scalar_first=True)


def same_rotation(a, b, tol=1e-12):
    return min(np.abs(a - b).max(), np.abs(a + b).max()) < tol


def eq1(noise, data, tau):
    theta = np.arccos(np.clip(noise @ data, -1.0, 1.0))
    return (np.sin((1 - tau) * theta) * noise + np.sin(tau * theta) * data) / np.sin(theta)


def eq7(noise, data, tau):
    theta = np.arccos(np.clip(noise @ data, -1.0, 1.0))
    return theta / np.sin(theta) * (-np.cos((1 - tau) * theta) * noise + np.cos(tau * theta) * data)


def eq6(q, qdot, dt):
    omega = 2.0 * ham(conj(q), qdot)[1:]
    angle = np.linalg.norm(omega) * dt
    axis = omega / np.linalg.norm(omega)
    dq = np.concatenate([[np.cos(angle / 2)], axis * np.sin(angle / 2)])
    out = ham(q, dq)
    # scipy: the same rotation as composing q with the rotation vector ω·dt.
    assert same_rotation(canonical(out), (rot(q) * Rotation.from_rotvec(omega * dt)).as_quat(canonical=True, scalar_first=True))
    return out


def eq8(v, u):
    # Normalised, with norms floored at 1e-3 (see spear_geometry::s3::cosine_loss for why).
    return 1.0 - v @ u / (max(np.linalg.norm(v), 1e-3) * max(np.linalg.norm(u), 1e-3))


def check_eq1_eq7_independently(noise, data, tau):
    """eq. 1 is scipy's Slerp where the pair is in one hemisphere; eq. 7 is eq. 1's derivative."""
    if noise @ data > 0 and 0 <= tau <= 1:
        slerp = Slerp([0, 1], Rotation.concatenate([rot(noise), rot(data)]))([tau])
        assert same_rotation(canonical(eq1(noise, data, tau)), slerp.as_quat(canonical=True, scalar_first=True)[0], 1e-10)
    h = 1e-6
    fd = (eq1(noise, data, tau + h) - eq1(noise, data, tau - h)) / (2 * h)
    assert np.abs(fd - eq7(noise, data, tau)).max() < 1e-5 * max(1.0, 1.0 / np.sin(np.arccos(np.clip(noise @ data, -1, 1))))


def eq9(a, b):
    return min(np.linalg.norm(a - b), np.linalg.norm(a + b))


def pairs_with_angles(n):
    """Random pairs, plus pairs at controlled small and near-π arc angles."""
    noise = random_quats(n)
    data = random_quats(n)
    for i, angle in enumerate([1e-3, 1e-2, 0.5, np.pi - 1e-2, np.pi - 1e-3]):
        # rotate noise[i] within a random plane by `angle` on S³
        perp = unit(rng.standard_normal(4))
        perp = unit(perp - (perp @ noise[i]) * noise[i])
        data[i] = np.cos(angle) * noise[i] + np.sin(angle) * perp
    return noise, data


def main():
    cases = {"versions": {"numpy": np.__version__, "scipy": scipy.__version__}}

    noise, data = pairs_with_angles(40)
    taus = rng.uniform(0, 1, 40)
    taus[5:8] = [0.0, 1.0, 0.5]
    for n, d, t in zip(noise, data, taus):
        check_eq1_eq7_independently(n, d, t)
    cases["flow"] = [
        {
            "noise": n.tolist(), "data": d.tolist(), "tau": float(t),
            "angle": float(np.arccos(np.clip(n @ d, -1, 1))),
            "interpolate": eq1(n, d, t).tolist(),
            "target_velocity": eq7(n, d, t).tolist(),
        }
        for n, d, t in zip(noise, data, taus)
    ]

    qs = random_quats(30)
    vels = rng.standard_normal((30, 4)) * rng.uniform(0.01, 3.0, (30, 1))
    dts = rng.uniform(-0.5, 1.0, 30)
    cases["integrate"] = [
        {"q": q.tolist(), "velocity": v.tolist(), "dt": float(dt), "expected": eq6(q, v, dt).tolist()}
        for q, v, dt in zip(qs, vels, dts)
    ]

    a, b = random_quats(30), random_quats(30)
    b[:3] = a[:3] * np.array([[1.0], [-1.0], [1.0]])  # equal, antipodal (same rotation), equal
    cases["geodesic_loss"] = [{"a": x.tolist(), "b": y.tolist(), "expected": float(eq9(x, y))} for x, y in zip(a, b)]

    v, u = rng.standard_normal((30, 4)), rng.standard_normal((30, 4))
    cases["cosine_loss"] = [{"predicted": x.tolist(), "target": y.tolist(), "expected": float(eq8(x, y))} for x, y in zip(v, u)]

    chunks = []
    for _ in range(10):
        h = 5
        n, d = canonical(random_quats(h)), canonical(random_quats(h))
        pred = rng.standard_normal((h, 4))
        tau = float(rng.uniform(0, 0.98))
        delta = float(rng.uniform(0.01, 1 - tau))
        total = sum(
            eq8(pred[k], eq7(n[k], d[k], tau)) + eq9(eq1(n[k], d[k], tau + delta), eq6(eq1(n[k], d[k], tau), pred[k], delta))
            for k in range(h)
        )
        chunks.append({"noise": n.tolist(), "data": d.tolist(), "predicted": pred.tolist(), "tau": tau, "delta": delta, "expected": float(total)})
    cases["rotation_loss"] = chunks

    a, b = random_quats(30), random_quats(30)
    products = []
    for x, y in zip(a, b):
        p = ham(x, y)
        assert same_rotation(canonical(p), (rot(x) * rot(y)).as_quat(canonical=True, scalar_first=True))
        products.append({"a": x.tolist(), "b": y.tolist(), "expected": p.tolist()})
    cases["hamilton"] = products

    euler = np.column_stack([rng.uniform(-np.pi, np.pi, 30), rng.uniform(-np.pi / 2, np.pi / 2, 30), rng.uniform(-np.pi, np.pi, 30)])
    cases["euler_to_quat"] = [
        {"euler": e.tolist(), "expected": Rotation.from_euler("xyz", e).as_quat(canonical=True, scalar_first=True).tolist()}
        for e in euler
    ]
    qs = canonical(random_quats(30))
    # Gimbal lock (pitch = ±π/2): scipy reports yaw = 0 and folds the rotation into roll.
    locked = Rotation.from_euler("xyz", [[0.3, np.pi / 2, 0.0], [-1.2, -np.pi / 2, 0.0]])
    # Tiny and near-half-turn rotations: action deltas are mostly the former.
    axes = unit(rng.standard_normal((4, 3)))
    edges = Rotation.from_rotvec(axes * np.array([[1e-9], [1e-5], [np.pi - 1e-6], [np.pi]]))
    qs = np.concatenate([qs, locked.as_quat(canonical=True, scalar_first=True), edges.as_quat(canonical=True, scalar_first=True)])
    cases["quat_conversions"] = [
        {
            "q": q.tolist(),
            "euler_xyz": rot(q).as_euler("xyz").tolist(),
            "matrix": rot(q).as_matrix().tolist(),
            "rotvec": rot(q).as_rotvec().tolist(),
        }
        for q in qs
    ]

    sixd = rng.standard_normal((30, 6))
    gs = []
    for s in sixd:
        b1 = unit(s[:3])
        b2 = unit(s[3:] - (b1 @ s[3:]) * b1)
        m = np.column_stack([b1, b2, np.cross(b1, b2)])
        gs.append({"sixd": s.tolist(), "matrix": m.tolist(), "quat": Rotation.from_matrix(m).as_quat(canonical=True, scalar_first=True).tolist()})
    cases["sixd"] = gs

    a, b = random_quats(20), random_quats(20)
    ts = rng.uniform(0, 1, 20)
    cases["slerp"] = [
        {"a": x.tolist(), "b": y.tolist(), "t": float(t),
         "expected": Slerp([0, 1], Rotation.concatenate([rot(x), rot(y)]))([t]).as_quat(canonical=True, scalar_first=True)[0].tolist()}
        for x, y, t in zip(a, b, ts)
    ]

    p0, p1 = rng.standard_normal((20, 3)), rng.standard_normal((20, 3))
    r0, r1 = random_quats(20), random_quats(20)
    cases["pose_delta"] = [
        {"p0": a.tolist(), "q0": x.tolist(), "p1": b.tolist(), "q1": y.tolist(),
         "translation": (b - a).tolist(),
         "rotation": (rot(x).inv() * rot(y)).as_quat(canonical=True, scalar_first=True).tolist()}
        for a, b, x, y in zip(p0, p1, r0, r1)
    ]

    probs = [0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95]
    cases["beta_quantiles"] = [
        {"alpha": al, "beta": be, "probabilities": probs, "quantiles": beta_dist.ppf(probs, al, be).tolist(),
         "mean": float(beta_dist.mean(al, be)), "variance": float(beta_dist.var(al, be))}
        for al, be in [(1.5, 1.0), (2.0, 5.0), (0.5, 0.5)]
    ]

    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(cases, indent=1))
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
