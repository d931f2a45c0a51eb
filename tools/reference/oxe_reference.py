#!/usr/bin/env python3
"""Reference standardisation of the RLDS fixtures into SPEAR-1's step schema, with numpy and scipy.

Run by a developer, never by CI, after rlds_fixtures.py and with the same pinned environment
(requirements-data.txt, which includes scipy):

    /path/to/venv/bin/python tools/reference/oxe_reference.py

Reads what tfds returned for each fixture dataset (crates/spear-data/tests/fixtures/rlds/<name>.expected.json) and
re-implements, independently of the Rust code, the conversion that docs/datasets.md documents for its registry
entry: end-effector poses (position + scipy Rotation) and gripper values from the named fields, binary gripper
commands, then for every frame j the action chunk of H = 5 actions at 5 Hz: the pose interpolated at
s_j + m/5 s (linear position, scipy Slerp rotation) and action m = (p(t1) - p(t0), R(t0)^-1 R(t1)) as a canonical
(w >= 0) quaternion, the gripper command in force at t0, and mask = t1 <= last frame time. Writes
<name>.standard.json next to the input: per episode the instruction, the source step of each frame, states
[frames][8] (x, y, z, qw, qx, qy, qz, gripper) and chunks [frames][5][8] with masks [frames][5].
"""
import json
import pathlib

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "crates/spear-data/tests/fixtures/rlds"
H, RATE = 5, 5.0


def values(step, key):
    return np.asarray(step[key]["values"], dtype=np.float64)


def text(step, key):
    return bytes.fromhex(step[key]["hex"]).decode("utf-8").strip()


def closedness(v, open_value, closed_value):
    return float(np.clip((v - open_value) / (closed_value - open_value), 0.0, 1.0))


def from_xyzw(q):
    q = np.asarray(q, dtype=np.float64)
    return Rotation.from_quat(q / np.linalg.norm(q))  # scipy is scalar-last


def franka_matrix(m16):
    m = np.asarray(m16, dtype=np.float64).reshape(4, 4).T  # column-major O_T_EE
    u, _, vt = np.linalg.svd(m[:3, :3])  # nearest rotation, as the stored floats are rounded
    return m[:3, 3], Rotation.from_matrix(u @ vt)


# Each: rate, pose(step) -> (position, Rotation), gripper state(step), gripper command(step) (closedness,
# binarised later), instruction(episode steps).
def bridge():
    return dict(
        rate=5.0,
        pose=lambda s: (values(s, "observation/state")[:3],
                        Rotation.from_euler("xyz", values(s, "observation/state")[3:6])),
        state=lambda s: closedness(values(s, "observation/state")[6], 1.0, 0.0),
        command=lambda steps: [closedness(values(s, "action")[6], 1.0, 0.0) for s in steps],
        instruction=lambda steps: text(steps[0], "language_instruction"),
    )


def droid():
    return dict(
        rate=15.0,
        pose=lambda s: (values(s, "observation/cartesian_position")[:3],
                        Rotation.from_euler("xyz", values(s, "observation/cartesian_position")[3:6])),
        state=lambda s: closedness(values(s, "observation/gripper_position")[0], 0.0, 1.0),
        command=lambda steps: [closedness(values(s, "action_dict/gripper_position")[0], 0.0, 1.0) for s in steps],
        instruction=lambda steps: text(steps[0], "language_instruction"),
    )


def rel2abs(events):
    """OpenVLA's rel2abs_gripper_actions, returning closedness (1 = closed) instead of openness."""
    e = np.where(events > 0.1, 1, np.where(events < -0.1, -1, 0))
    nonzero = e[e != 0]
    closed = bool(nonzero[0] < 0) if nonzero.size else False
    out = []
    for x in e:
        if x != 0:
            closed = x > 0
        out.append(float(closed))
    return out


def fractal():
    return dict(
        rate=3.0,
        pose=lambda s: (values(s, "observation/base_pose_tool_reached")[:3],
                        from_xyzw(values(s, "observation/base_pose_tool_reached")[3:7])),
        state=lambda s: closedness(values(s, "observation/gripper_closed")[0], 0.0, 1.0),
        command=lambda steps: rel2abs(np.array([values(s, "action/gripper_closedness_action")[0] for s in steps])),
        instruction=lambda steps: text(steps[0], "observation/natural_language_instruction"),
    )


def language_table():
    def instruction(steps):
        codes = values(steps[0], "observation/instruction").astype(np.int64)
        end = int(np.argmax(codes == 0)) if (codes == 0).any() else len(codes)
        return bytes(codes[:end].astype(np.uint8)).decode("utf-8").strip()

    return dict(
        rate=10.0,
        pose=lambda s: (np.append(values(s, "observation/effector_translation"), 0.0), Rotation.identity()),
        state=lambda s: 0.0,
        command=lambda steps: [0.0] * len(steps),
        instruction=instruction,
    )


def viola():
    return dict(
        rate=20.0,
        pose=lambda s: franka_matrix(values(s, "observation/ee_states")),
        state=lambda s: closedness(values(s, "observation/gripper_states")[0], 0.08, 0.0),
        command=lambda steps: [closedness(values(s, "action/gripper_closedness_action")[0], -1.0, 1.0)
                               for s in steps],
        instruction=lambda steps: text(steps[0], "observation/natural_language_instruction"),
    )


ENTRIES = {
    "bridge_dataset": bridge,
    "droid": droid,
    "fractal20220817_data": fractal,
    "language_table": language_table,
    "viola": viola,
}


def wxyz(rotation):
    x, y, z, w = rotation.as_quat()
    q = np.array([w, x, y, z])
    return -q if q[0] < 0 else q


def standardize(entry, steps):
    poses = [entry["pose"](s) for s in steps]
    return standard_episode(entry["rate"], [p for p, _ in poses], [r for _, r in poses],
                            [entry["state"](s) for s in steps], entry["command"](steps),
                            entry["instruction"](steps), list(range(len(steps))))


def standard_episode(rate, positions, rotations, state, command, instruction, frame_steps):
    """One episode in the step schema from its frames (recorded at `rate` Hz): positions [n][3] (metres, base
    frame), scipy Rotations [n], gripper state closedness [n] and command closedness [n] (binarised here at 0.5),
    the instruction and the episode step of each frame. Also used by oxe_synthetic.py."""
    positions = np.asarray(positions, dtype=np.float64)
    rotations = Rotation.concatenate(list(rotations))
    command = [1.0 if c >= 0.5 else 0.0 for c in command]
    n = len(frame_steps)
    assert len(positions) == len(rotations) == len(state) == len(command) == n
    duration = (n - 1) / rate

    def locate(t):
        x = float(np.clip(t * rate, 0.0, n - 1))
        if abs(x - round(x)) < 1e-9:
            x = float(round(x))
        i = min(int(np.floor(x)), n - 1)
        return (i, 0.0) if i == n - 1 else (i, x - i)

    def pose_at(t):
        i, f = locate(t)
        if f == 0.0:
            return positions[i], rotations[i]
        return positions[i] * (1 - f) + positions[i + 1] * f, Slerp([0.0, 1.0], rotations[i:i + 2])([f])[0]

    states, chunks, masks = [], [], []
    for j in range(n):
        states.append([*positions[j], *wxyz(rotations[j]), state[j]])
        start, chunk, mask = j / rate, [], []
        for m in range(H):
            t0, t1 = start + m / RATE, start + (m + 1) / RATE
            real = t1 <= duration + 1e-9
            if real:
                (p0, r0), (p1, r1) = pose_at(t0), pose_at(t1)
                dp, dq = p1 - p0, wxyz(r0.inv() * r1)
            else:
                dp, dq = np.zeros(3), np.array([1.0, 0.0, 0.0, 0.0])
            chunk.append([*dp, *dq, command[locate(min(t0, duration))[0]]])
            mask.append(real)
        chunks.append(chunk)
        masks.append(mask)
    return {"instruction": instruction, "steps": [int(j) for j in frame_steps], "states": states,
            "chunks": chunks, "masks": masks}


def main():
    for name, make in ENTRIES.items():
        expected = json.loads((FIXTURES / f"{name}.expected.json").read_text())
        entry = make()
        out = {"dataset": name, "horizon": H, "rate_hz": RATE,
               "episodes": [standardize(entry, ep["steps"]) for ep in expected["episodes"]]}
        path = FIXTURES / f"{name}.standard.json"
        path.write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
