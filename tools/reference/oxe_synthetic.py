#!/usr/bin/env python3
"""Schema-faithful synthetic episodes for the Open X-Embodiment registry entries that rlds_fixtures.py does not cover,
written by tensorflow-datasets itself, and their standardisation computed independently with numpy/scipy.

Run by a developer, never by CI, with the pinned environment (requirements-data.txt) in a virtualenv outside the
repository:

    python3 -m venv /path/to/venv && /path/to/venv/bin/pip install -r tools/reference/requirements-data.txt
    /path/to/venv/bin/python tools/reference/oxe_synthetic.py

It reuses rlds_fixtures.py's tfds machinery (temporary builder package, deterministic Example serialisation, prepare and
copy) and oxe_reference.py's generic 5 Hz resampling and chunking (standard_episode()).

For each of the 18 entries of docs/datasets.md listed in DATASETS below (every non-excluded registry entry but the
five of rlds_fixtures.py; robo_set is excluded from the mixture), it

1. builds a `tfds.core.GeneratorBasedBuilder` named and versioned as the published dataset whose features are
   `tfds.features.FeaturesDict.from_json()` of the dataset's reconstructed features.json tree in
   tools/reference/oxe_schemas/<name>.json (sources and open points listed in each file). Three datasets have depth
   tensors too large for a fixture (float_lists cost 4 bytes per value whatever the content, int64_lists at least
   1): fmb's four (256, 256) float32 depth images (1 MB per step), taco_play's (150, 200) + (84, 84) float32 depths
   (148 kB per step) and nyu_franka_play's two (128, 128, 1) int32 depths (32 kB per step) are declared here with
   shapes shrunk to (8, 8), (15, 20), (12, 12) and (16, 16, 1) (SHRUNK below; key, class, dtype and rank unchanged;
   no registry entry reads them). The shrunk shapes are what the written features.json and dataset_info.json's
   description say; everything else is the published schema;
2. writes ONE episode covering at least 1.2 s at the dataset's native rate (so several real 5 Hz actions exist; 6 steps
   = 2.5 s for ucsd_kitchen's 2 Hz), every feature filled with the right dtype and shape: small solid images with a
   moving rectangle, unit-norm language embeddings, and a smooth random-walk end-effector motion (a few mm and a few
   degrees per step) stored in the dataset's documented layout (column-major 4x4 matrices, xyzw / wxyz quaternions,
   xyz / zxy Euler angles, millimetres and degrees, per-step deltas for the datasets without a pose, the next frame's
   pose in iamlab's action) with the gripper switching at least once (widths, 0/1 states, +-1 commands, +1/-1/0 events,
   bools). Several Franka datasets point the gripper down (roll near pi; austin_buds starts exactly at roll = pi,
   where the quaternion's w is 0); kuka's zlib-encoded fields go through tfds' own zlib Tensor encoding;
3. reads the prepared dataset back with `tfds.builder_from_directory(...).as_dataset()` and converts what tfds returns
   into SPEAR-1's step schema following docs/datasets.md (the per-dataset field reading in REFERENCE below is written
   from that page, not from crates/spear-data/src/oxe/), then resamples and chunks it (H = 5 at 5 Hz) with
   oxe_reference.standard_episode().

Writes, under crates/spear-data/tests/fixtures/oxe/:

* <name>/<version>/     dataset_info.json, features.json and the tfrecord shard, exactly as tfds wrote them;
* <name>.standard.json  in oxe_reference.py's format: {"dataset", "horizon", "rate_hz", "episodes": [{"instruction",
                        "steps" (the episode step of each frame), "states" [frames][8] (x, y, z, qw, qx, qy, qz,
                        gripper closedness), "chunks" [frames][5][8], "masks" [frames][5]}]}.

Deterministic (seeded; Examples serialised with protobuf's deterministic option as rlds_fixtures.py does): a second
run gives byte-identical files. Every file stays under 2 MB (the largest is ~180 kB) and the folder under
MAX_TOTAL_BYTES; about 1.9 MB in all, a third of it the 512-float language embedding every step carries (2 kB a
step, whatever its values), a fifth the .standard.json files.
"""
import copy
import json
import pathlib
import shutil
import tempfile
import zlib

import rlds_fixtures as rf  # sets TensorFlow's environment before importing it
from oxe_reference import H, RATE, rel2abs, standard_episode

import numpy as np  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402
from scipy.spatial.transform import Rotation  # noqa: E402

ROOT = rf.ROOT
SCHEMAS = pathlib.Path(__file__).resolve().parent / "oxe_schemas"
OUT = ROOT / "crates/spear-data/tests/fixtures/oxe"
MAX_TOTAL_BYTES = 2_000_000  # the folder, all 18 datasets
F = tfds.features

# Fixture-only shape reductions (see the docstring): (path of keys in the features tree) -> (published, fixture).
SHRUNK = {
    "fmb": {("steps", "observation", f"image_{cam}_depth"): ((256, 256), (8, 8))
            for cam in ("side_1", "side_2", "wrist_1", "wrist_2")},
    "nyu_franka_play_dataset_converted_externally_to_rlds": {
        ("steps", "observation", "depth"): ((128, 128, 1), (16, 16, 1)),
        ("steps", "observation", "depth_additional_view"): ((128, 128, 1), (16, 16, 1))},
    "taco_play": {("steps", "observation", "depth_static"): ((150, 200), (15, 20)),
                  ("steps", "observation", "depth_gripper"): ((84, 84), (12, 12))},
}

FRANKA_HOME = rf.FRANKA_HOME
FRANKA_WIDTH = 0.08  # the Franka Hand's full opening (docs/datasets.md: widths map 0.08 m open -> 0 closed)


# ---------------------------------------------------------------------------------------------------------------
# Schema and generic filling
# ---------------------------------------------------------------------------------------------------------------


def load_schema(name):
    """The dataset's schema file and its features tree with SHRUNK applied."""
    doc = json.loads((SCHEMAS / f"{name}.json").read_text())
    assert doc["name"] == name
    tree = copy.deepcopy(doc["features"])
    for path, (published, shrunk) in SHRUNK.get(name, {}).items():
        node = tree
        for key in path:
            if "sequence" in node:
                node = node["sequence"]["feature"]
            node = node["featuresDict"]["features"][key]
        dims = node["tensor"]["shape"]["dimensions"]
        assert [int(d) for d in dims] == list(published), (name, path, dims)
        node["tensor"]["shape"]["dimensions"] = [str(d) for d in shrunk]
    return doc, tree


EMBEDDING_KEYS = ("language_embedding", "natural_language_embedding", "episode_language_embedding")


def camera_image(key, shape, dtype, t):
    """A solid colour (from the key) with a darker rectangle that moves right from frame to frame."""
    h, w, c = shape
    if np.dtype(dtype) == np.float32:  # a depth image, metres
        img = np.full(shape, 0.8, np.float32)
        img[h // 4:h // 2, (t * w // 64) % (w // 2):(t * w // 64) % (w // 2) + w // 4] = 0.55
        return img
    crc = zlib.crc32(key.encode())
    colour = np.array([(crc >> s) & 0xFF for s in (0, 8, 16)][:c], np.uint8) // 2 + 64
    img = np.empty(shape, np.uint8)
    img[:] = colour
    left = (t * max(w // 32, 1)) % (w // 2)
    img[h // 4:h // 2, left:left + w // 4] = colour // 2
    return img


def default_value(feature, key, t, embedding):
    """A schema-faithful placeholder for one leaf: zeros of the right dtype and shape, "" for strings, solid images,
    the episode's unit-norm embedding for language embeddings."""
    if isinstance(feature, F.Image):
        return camera_image(key, feature.shape, feature.np_dtype, t)
    if isinstance(feature, F.Text):
        return ""
    leaf = key.rsplit("/", 1)[-1]
    if leaf in EMBEDDING_KEYS:
        assert feature.shape == (512,)
        return embedding
    dtype = np.dtype(feature.np_dtype)
    if dtype.kind in "OSU":
        return b""
    return np.zeros(feature.shape, dtype)


def defaults(features, t, embedding, prefix=""):
    out = {}
    for k, f in features.items():
        if isinstance(f, F.Dataset):
            continue
        if isinstance(f, F.FeaturesDict):
            out[k] = defaults(f, t, embedding, f"{prefix}{k}/")
        else:
            out[k] = default_value(f, prefix + k, t, embedding)
    return out


def locate(tree, path):
    """The dict holding leaf `path` and the leaf's key: `path` is '/'-separated, but a key may itself contain '/'
    (kuka's 'clip_function_input/base_pose_tool_reached')."""
    while path not in tree:
        head, _, rest = path.partition("/")
        assert head in tree and rest, f"no feature {path!r} (have {sorted(tree)})"
        tree, path = tree[head], rest
    assert not isinstance(tree[path], dict), path
    return tree, path


def put(tree, path, value):
    """Sets an existing leaf, keeping its dtype and checking its shape."""
    node, key = locate(tree, path)
    old = node[key]
    if isinstance(old, np.ndarray):
        value = np.asarray(value, dtype=old.dtype)
        assert value.shape == old.shape, (path, value.shape, old.shape)
    node[key] = value


class Episode:
    """One episode's features, filled with defaults; datasets overwrite the leaves that carry meaning."""

    def __init__(self, features, n, rng):
        self.n, self.rng = n, rng
        embedding = rf.embedding(rng)
        self.steps = [defaults(features["steps"].feature, t, embedding) for t in range(n)]
        self.meta = defaults({k: f for k, f in features.items() if k != "steps"}, 0, embedding)
        for t, step in enumerate(self.steps):
            for flag, v in rf.rlds_flags(t, n).items():
                put(step, flag, v)
            if "reward" in step:
                put(step, "reward", float(t == n - 1))
            if "discount" in step:
                put(step, "discount", 1.0)

    def set(self, path, values):
        """One value per step."""
        assert len(values) == self.n, (path, len(values))
        for step, v in zip(self.steps, values):
            put(step, path, v)

    def const(self, path, value):
        self.set(path, [value] * self.n)

    def fill(self, path, value):
        """Every element of an array leaf (whatever its shape), every step."""
        for step in self.steps:
            node, key = locate(step, path)
            put(step, path, np.full_like(node[key], value))

    def example(self):
        return {**self.meta, "steps": self.steps}


# ---------------------------------------------------------------------------------------------------------------
# Motion
# ---------------------------------------------------------------------------------------------------------------


def motion(rng, n, p0, r0, step_m, step_deg, smooth=0.8):
    """A smooth random walk of the end effector: linear and angular (base-frame) per-step velocities are AR(1)
    processes with per-component standard deviations step_m (metres) and step_deg (degrees)."""
    v = rng.normal(0.0, step_m, 3)
    w = rng.normal(0.0, np.radians(step_deg), 3)
    ps, rs = [np.asarray(p0, np.float64)], [r0]
    keep = np.sqrt(1 - smooth ** 2)
    for _ in range(n - 1):
        ps.append(ps[-1] + v)
        rs.append(Rotation.from_rotvec(w) * rs[-1])
        v = smooth * v + keep * rng.normal(0.0, step_m, 3)
        w = smooth * w + keep * rng.normal(0.0, np.radians(step_deg), 3)
    return np.array(ps), Rotation.concatenate(rs)


def down(yaw=0.0, roll=np.pi, pitch=0.0):
    """A gripper pointing down: roll near pi about the base x axis."""
    return Rotation.from_euler("xyz", [roll, pitch, yaw])


def walk(rng, start, scale, n):
    return rf.random_walk(rng, start, scale, n)


def matrix_column_major(p, r):
    m = np.eye(4)
    m[:3, :3] = r.as_matrix()
    m[:3, 3] = p
    return m.flatten(order="F")  # libfranka O_T_EE: column by column, translation in elements 12..14


def xyzw(r):
    return r.as_quat()  # scipy is scalar-last


def wxyz(r):
    x, y, z, w = r.as_quat()
    return np.array([w, x, y, z])


def base_delta(rs, t):
    """R[t+1] = D R[t]: the rotation from frame t to t + 1 expressed in the base frame (identity at the end)."""
    return rs[min(t + 1, len(rs) - 1)] * rs[t].inv()


def ee_delta(rs, t):
    return rs[t].inv() * rs[min(t + 1, len(rs) - 1)]


def next_diff(a, t):
    return a[min(t + 1, len(a) - 1)] - a[t]


def closes_at(n, k, reopen=None):
    """Binary closedness per step: closed from step k (to reopen, if given)."""
    c = np.zeros(n)
    c[k:reopen] = 1.0
    return c


def width_after(closed, open_w=0.078, held_w=0.018, rate=0.015):
    """Franka finger width following a binary close command one step late: closing by `rate` per step to the
    object's width, opening likewise."""
    w, out = open_w, []
    for c in np.concatenate([[closed[0]], closed[:-1]]):
        w = max(held_w, w - rate) if c else min(open_w, w + rate)
        out.append(w)
    return np.array(out)


# ---------------------------------------------------------------------------------------------------------------
# Datasets: rate (Hz, docs/datasets.md), steps, instruction, and the leaves with meaning
# ---------------------------------------------------------------------------------------------------------------


def deoxys_common(e, ps, rs, closed, instruction):
    """UT-Austin deoxys recordings: OSC_POSE action = normalised translation (x 0.05 m), base-frame rotation vector,
    gripper -1 open / +1 close."""
    n = e.n
    e.set("action", [np.concatenate([np.clip(next_diff(ps, t) / 0.05, -1, 1), base_delta(rs, t).as_rotvec(),
                                     [1.0 if closed[t] else -1.0]]) for t in range(n)])
    e.const("language_instruction", instruction)
    put(e.meta, "episode_metadata/file_path", "/data/synthetic/demo_0.hdf5")
    joints = walk(e.rng, FRANKA_HOME, 0.01, n)
    return joints


def franka_state24(e, ps, rs, width, joints):
    """[7 joint angles, gripper width, 16 O_T_EE column-major]."""
    e.set("observation/state", [np.concatenate([joints[t], [width[t]], matrix_column_major(ps[t], rs[t])])
                                for t in range(e.n)])


def gen_austin_buds(e):
    # starts exactly at roll = pi (w = 0 at frame 0)
    ps, rs = motion(e.rng, e.n, [0.45, 0.05, 0.20], down(), 0.003, 1.2)
    closed = closes_at(e.n, 9, 20)
    width = width_after(closed)
    joints = deoxys_common(e, ps, rs, closed, "Take the lid off the pot, put the pot on the plate.")
    franka_state24(e, ps, rs, width, joints)


def gen_utaustin_mutex(e):
    ps, rs = motion(e.rng, e.n, [0.50, -0.10, 0.30], down(0.4, np.pi - 0.05), 0.003, 1.5)
    closed = closes_at(e.n, 12)
    width = width_after(closed)
    joints = deoxys_common(e, ps, rs, closed, "Open the microwave door and put the bowl inside.")
    franka_state24(e, ps, rs, width, joints)


def gen_austin_sailor(e):
    ps, rs = motion(e.rng, e.n, [0.40, 0.12, 0.25], down(-0.3, np.pi + 0.04), 0.003, 1.5)
    closed = closes_at(e.n, 7)
    width = width_after(closed, open_w=0.077)
    joints = deoxys_common(e, ps, rs, closed, "Set the table.")
    e.set("observation/state_ee", [matrix_column_major(ps[t], rs[t]) for t in range(e.n)])
    e.set("observation/state_gripper", [[w] for w in width])
    e.set("observation/state_joint", joints)
    # [3 ee position, 4 ee quaternion (xyzw), 1 gripper width] (the description's "3x ee quat" is a typo)
    e.set("observation/state", [np.concatenate([ps[t], xyzw(rs[t]), [width[t]]]) for t in range(e.n)])


def gen_austin_sirius(e):
    ps, rs = motion(e.rng, e.n, [0.55, 0.0, 0.15], down(0.2), 0.003, 1.5)
    closed = closes_at(e.n, 5, 18)
    width = width_after(closed, open_w=0.077)
    joints = deoxys_common(e, ps, rs, closed, "Insert the gear onto the shaft.")
    e.set("observation/state_ee", [matrix_column_major(ps[t], rs[t]) for t in range(e.n)])
    e.set("observation/state_gripper", [[w] for w in width])
    e.set("observation/state_joint", joints)
    e.set("observation/state", [np.concatenate([joints[t], [width[t]]]) for t in range(e.n)])
    # robot execution (0), a human intervention from step 18 (1); the 15 steps before it are labelled -10
    e.set("action_mode", [[1.0] if t >= 18 else [0.0] for t in range(e.n)])
    e.set("intv_label", [[1.0] if t >= 18 else ([-10.0] if t >= 3 else [0.0]) for t in range(e.n)])


def gen_iamlab(e):
    # n steps give n - 1 frames (1..n-1): action[t] is the pose of frame t + 1.
    ps, rs = motion(e.rng, e.n, [0.45, 0.0, 0.30], down(0.1, np.pi - 0.1), 0.003, 1.5)
    open_ = 1.0 - closes_at(e.n, 11)  # 1 open, 0 closed
    e.set("action", [np.concatenate([ps[min(t + 1, e.n - 1)], wxyz(rs[min(t + 1, e.n - 1)]), [open_[t]]])
                     for t in range(e.n)])
    joints = walk(e.rng, FRANKA_HOME, 0.01, e.n)
    gripper_state = np.concatenate([[open_[0]], open_[:-1]])
    wrench = e.rng.normal(0, 0.5, (e.n, 12))
    e.set("observation/state", [np.concatenate([joints[t], [gripper_state[t]], wrench[t]]) for t in range(e.n)])
    e.const("language_instruction", "Pick up the peg and insert it into the hole.")
    put(e.meta, "episode_metadata/file_path", "/data/iamlab/pickup_insert/episode_17/data.pkl")


def gen_berkeley_autolab_ur5(e):
    # a UR5 gripper pointing down (rotated about y), quaternion xyzw in robot_state[9:13]
    ps, rs = motion(e.rng, e.n, [0.35, -0.2, 0.12], Rotation.from_euler("xyz", [0.0, np.pi - 0.2, 0.3]), 0.012, 3.0)
    events = np.zeros(e.n)
    events[2], events[6] = 1.0, -1.0  # close, later open
    closed = np.array(rel2abs_like(events))
    state_closed = np.concatenate([[closed[0]], closed[:-1]])
    joints = walk(e.rng, [0.0, -1.6, 1.6, -1.6, -1.57, 0.0], 0.03, e.n)
    e.set("observation/robot_state", [np.concatenate([joints[t], ps[t], xyzw(rs[t]), [state_closed[t], 0.0]])
                                      for t in range(e.n)])
    integrated_deltas(e, ps, rs)  # "Delta change in XYZ" / "in roll, pitch, yaw"
    e.set("action/gripper_closedness_action", events)
    e.const("observation/natural_language_instruction",
            b"take the tiger out of the red bowl and put it in the grey bowl")


def rel2abs_like(events):
    """Closedness that events (+1 close, -1 open, 0 nothing) imply when the gripper starts opposite to the first."""
    first = next((x for x in events if x != 0), 0)
    state, out = float(first < 0), []
    for x in events:
        state = 1.0 if x > 0 else (0.0 if x < 0 else state)
        out.append(state)
    return out


def integrated_deltas(e, ps, rs):
    """world_vector / rotation_delta as the per-step change between frames: position difference and the base-frame
    rotation as xyz Euler angles."""
    e.set("action/world_vector", [next_diff(ps, t) for t in range(e.n)])
    e.set("action/rotation_delta", [base_delta(rs, t).as_euler("xyz") for t in range(e.n)])
    e.set("action/terminate_episode", [float(t == e.n - 1) for t in range(e.n)])


def gen_berkeley_cable_routing(e):
    # planar cable routing: translation in x/y, rotation about z only ("Angular velocity about the z axis")
    rng = e.rng
    yaw = np.cumsum(np.concatenate([[0.0], rng.normal(0.0, np.radians(3.0), e.n - 1)]))
    rs = Rotation.from_euler("xyz", np.stack([np.full(e.n, np.pi), np.zeros(e.n), 0.5 + yaw], axis=1))
    ps, _ = motion(rng, e.n, [0.5, 0.0, 0.05], Rotation.identity(), 0.008, 0.0)
    ps[:, 2] = 0.05 + 0.001 * np.arange(e.n)
    integrated_deltas(e, ps, rs)
    e.set("observation/robot_state", [np.concatenate([ps[t], xyzw(rs[t])]) for t in range(e.n)])
    e.const("observation/natural_language_instruction", b"route cable")


def gen_roboturk(e):
    ps, rs = motion(e.rng, e.n, [0.6, 0.1, 0.2], down(0.0), 0.008, 2.5)
    integrated_deltas(e, ps, rs)
    e.set("action/gripper_closedness_action", [[1.0] if c else [-1.0] for c in closes_at(e.n, 6)])
    e.const("observation/natural_language_instruction", b"layout laundry")


def gen_toto(e):
    ps, rs = motion(e.rng, e.n, [0.5, 0.0, 0.3], down(0.2), 0.002, 1.0)
    integrated_deltas(e, ps, rs)
    e.set("action/open_gripper", [not c for c in closes_at(e.n, 14, 30)])
    e.set("observation/state", walk(e.rng, FRANKA_HOME, 0.005, e.n))
    e.const("observation/natural_language_instruction", b"pour")


def gen_berkeley_fanuc(e):
    ps, rs = motion(e.rng, e.n, [0.9, 0.1, 0.4], Rotation.from_euler("xyz", [0.1, np.pi / 2 - 0.1, 0.0]), 0.006, 2.5)
    closed = closes_at(e.n, 5)
    quats = [xyzw(rs[t]) * (-1.0 if t in (3, 4, 9) else 1.0) for t in range(e.n)]  # q and -q: the same rotation
    e.set("observation/end_effector_state", [np.concatenate([ps[t], quats[t]]) for t in range(e.n)])
    joints = walk(e.rng, [0.0, 0.3, -0.2, 0.0, -0.8, 0.0], 0.02, e.n)
    e.set("observation/state", [np.concatenate([joints[t], [closed[t]], np.zeros(6)]) for t in range(e.n)])
    e.set("action", [np.concatenate([next_diff(ps, t), base_delta(rs, t).as_euler("xyz")]) for t in range(e.n)])
    e.const("language_instruction", "Pick up the cup and place it on the saucer.")
    put(e.meta, "episode_metadata/file_path", "/data/fanuc/pick_cup/episode_3.npy")


def gen_dlr_edan(e):
    ps, rs = motion(e.rng, e.n, [0.6, -0.3, 0.9], Rotation.from_euler("zxy", [1.2, -0.4, 0.3]), 0.012, 3.0)
    closed = closes_at(e.n, 3)
    e.set("observation/state", [np.concatenate([ps[t], rs[t].as_euler("zxy"), [closed[t]]]) for t in range(e.n)])
    # README: position delta in the base frame, orientation delta as "zxy"; action[6] is a copy of the state's gripper
    e.set("action", [np.concatenate([next_diff(ps, t), base_delta(rs, t).as_euler("zxy"), [closed[t]]])
                     for t in range(e.n)])
    e.const("language_instruction", "Pour into the mug.")
    put(e.meta, "episode_metadata/file_path", "/data/dlr/pour/2022-10-05_session3.pkl")


def gen_fmb(e):
    ps, rs = motion(e.rng, e.n, [0.5, 0.05, 0.15], down(-0.2), 0.006, 2.5)
    command = closes_at(e.n, 6)
    state = np.concatenate([[0.0], command[:-1]])
    # q and -q are the same rotation: scipy's as_quat is not canonical, the robot server's neither
    e.set("observation/eef_pose", [np.concatenate([ps[t], xyzw(rs[t]) * (-1.0 if t >= 8 else 1.0)])
                                   for t in range(e.n)])
    e.set("observation/state_gripper_pose", state)
    e.set("action", [np.concatenate([next_diff(ps, t), base_delta(rs, t).as_euler("xyz"), [command[t]]])
                     for t in range(e.n)])
    joints = walk(e.rng, FRANKA_HOME, 0.01, e.n)
    e.set("observation/joint_pos", joints)
    e.set("observation/joint_vel", [next_diff(joints, t) * 10 for t in range(e.n)])
    e.set("observation/eef_vel", [np.concatenate([next_diff(ps, t), base_delta(rs, t).as_rotvec()]) * 10
                                  for t in range(e.n)])
    e.set("observation/eef_force", e.rng.normal(0, 1.0, (e.n, 3)))
    e.set("observation/eef_torque", e.rng.normal(0, 0.1, (e.n, 3)))
    for key in ("side_1", "side_2", "wrist_1", "wrist_2"):
        e.fill(f"observation/image_{key}_depth", 0.6)
    e.const("observation/color_id", 2)
    e.const("observation/shape_id", 5)
    e.const("observation/object_id", 17)
    e.const("observation/length", b"long")
    e.const("observation/size", b"medium")
    e.set("observation/primitive", [b"grasp" if t < 8 else b"insert" for t in range(e.n)])
    e.const("language_instruction", b"grasp the blue hexagon peg and insert it")
    put(e.meta, "episode_metadata/episode_language_instruction", b"insert the blue hexagon peg into the board")
    put(e.meta, "episode_metadata/episode_task", b"single_object_insertion")
    put(e.meta, "episode_metadata/file_path", b"/data/fmb/single_object/insert_only_hexagon_blue_0042.npy")


def gen_furniture_bench(e):
    ps, rs = motion(e.rng, e.n, [0.55, 0.0, 0.10], down(0.3, np.pi - 0.08), 0.006, 2.5)
    closed = closes_at(e.n, 5, 11)
    width = width_after(closed, rate=0.02)
    joints = walk(e.rng, FRANKA_HOME, 0.01, e.n)
    state = []
    for t in range(e.n):
        lin, ang = next_diff(ps, t) * 10, base_delta(rs, t).as_rotvec() * 10
        state.append(np.concatenate([ps[t], xyzw(rs[t]), lin, ang, joints[t], next_diff(joints, t) * 10,
                                     e.rng.normal(0, 1, 7), [width[t]]]))
    e.set("observation/state", state)
    # [3 position delta, 4 delta quaternion xyzw (end-effector frame), grip: -1 open / +1 close]
    e.set("action", [np.concatenate([next_diff(ps, t), xyzw(ee_delta(rs, t)), [1.0 if closed[t] else -1.0]])
                     for t in range(e.n)])
    e.set("skill_completion", [float(t == 10) for t in range(e.n)])
    e.const("language_instruction", "assemble lamp")
    put(e.meta, "episode_metadata/furniture", "lamp")
    put(e.meta, "episode_metadata/initial_randomness", "low")
    put(e.meta, "episode_metadata/file_path", "/data/furniture_bench/lamp/low/2023-02-07-11:47:31.pkl")


def gen_kuka(e):
    ps, rs = motion(e.rng, e.n, [0.55, 0.0, 0.35], down(0.5), 0.01, 2.5)
    # the first event opens (the gripper starts closed), small values are no event
    events = np.array([0.0, 0.05, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, -0.05, 0.0, 0.0, 0.0])
    assert len(events) == e.n
    closed = rel2abs_like(np.where(np.abs(events) > 0.1, events, 0.0))
    state = np.concatenate([[closed[0]], closed[:-1]])
    quats = [xyzw(rs[t]) * (-1.0 if t % 5 == 4 else 1.0) for t in range(e.n)]
    e.set("observation/clip_function_input/base_pose_tool_reached",
          [np.concatenate([ps[t], quats[t]]) for t in range(e.n)])
    e.const("observation/clip_function_input/workspace_bounds",
            np.array([[0.3, -0.3, 0.15], [0.8, 0.3, 0.6], [0.0, 0.0, 0.0]]))
    e.set("observation/gripper_closed", [[s] for s in state])
    e.set("observation/height_to_bottom", [[p[2] - 0.1] for p in ps])
    e.const("observation/task_id", [3.0])
    e.set("action/world_vector", [next_diff(ps, t) for t in range(e.n)])
    e.set("action/rotation_delta", [base_delta(rs, t).as_euler("xyz") for t in range(e.n)])
    e.set("action/gripper_closedness_action", [[x] for x in events])
    e.set("action/terminate_episode", [[1, 0, 0] if t == e.n - 1 else [0, 1, 0] for t in range(e.n)])
    e.const("observation/natural_language_instruction", b"pick anything")
    put(e.meta, "success", True)


def gen_nyu_franka_play(e):
    ps, rs = motion(e.rng, e.n, [0.45, 0.05, 0.35], down(0.1, np.pi - 0.3), 0.02, 4.0)
    rpy = np.array([r.as_euler("xyz") for r in rs])
    target = np.array([1.0, 1.0, -1.0, -1.0, 1.0])  # +1 open, -1 close
    joints = walk(e.rng, FRANKA_HOME, 0.03, e.n)
    e.set("observation/state", [np.concatenate([joints[t], ps[t], rpy[t]]) for t in range(e.n)])
    # [7 joint velocities, 3 xyz delta, 3 rpy delta (component-wise), gripper target, terminate]
    e.set("action", [np.concatenate([next_diff(joints, t) * 3, next_diff(ps, t), next_diff(rpy, t), [target[t]],
                                     [float(t == e.n - 1)]]) for t in range(e.n)])
    e.fill("observation/depth", 850)  # millimetres
    e.fill("observation/depth_additional_view", 920)
    e.const("language_instruction", "play with the kitchen")
    put(e.meta, "episode_metadata/file_path", "/data/nyu_franka_play/train/0042")


def gen_stanford_hydra(e):
    ps, rs = motion(e.rng, e.n, [0.5, -0.05, 0.25], down(-0.4, np.pi - 0.02), 0.006, 2.5)
    command = closes_at(e.n, 4)
    width = width_after(command, open_w=0.08, held_w=0.03, rate=0.02)
    joints = walk(e.rng, FRANKA_HOME, 0.01, e.n)
    state = []
    for t in range(e.n):
        state.append(np.concatenate([ps[t], xyzw(rs[t]), rs[t].as_euler("xyz"), joints[t], next_diff(joints, t) * 10,
                                     [width[t], 1.0 - width[t] / FRANKA_WIDTH, float(width[t] > 0.07)]]))
    e.set("observation/state", state)
    e.set("action", [np.concatenate([next_diff(ps, t), base_delta(rs, t).as_euler("xyz"), [command[t]]])
                     for t in range(e.n)])
    e.set("is_dense", [t % 3 != 0 for t in range(e.n)])
    e.const("language_instruction", "make a cup of coffee with the keurig machine ")
    put(e.meta, "episode_metadata/file_path", "/data/hydra/coffee/demo_7.hdf5")


def gen_taco_play(e):
    # CALVIN-style gripper pointing down: the roll crosses pi, so the stored Euler roll wraps from ~+pi to ~-pi
    ps, rs = motion(e.rng, e.n, [0.1, -0.5, 0.55], down(0.3, np.pi - 0.03), 0.006, 2.0)
    rpy = np.array([r.as_euler("xyz") for r in rs])
    open_cmd = np.where(closes_at(e.n, 7), -1.0, 1.0)  # the recorded gripper action: close = -1, open = 1
    width = width_after(open_cmd < 0)
    joints = walk(e.rng, FRANKA_HOME, 0.01, e.n)
    e.set("observation/robot_obs", [np.concatenate([ps[t], rpy[t], [width[t]], joints[t], [open_cmd[t]]])
                                    for t in range(e.n)])
    nxt = lambda a, t: a[min(t + 1, e.n - 1)]  # noqa: E731
    # actions: the absolute target (next pose); rel_*: deltas scaled by 50 (position) / 20 (Euler) and clipped;
    # their last value is the same recorded gripper action
    e.set("action/actions", [np.concatenate([nxt(ps, t), nxt(rpy, t), [open_cmd[t]]]) for t in range(e.n)])
    e.set("action/rel_actions_world", [np.concatenate([np.clip(next_diff(ps, t) * 50, -1, 1),
                                                       np.clip(base_delta(rs, t).as_euler("xyz") * 20, -1, 1),
                                                       [open_cmd[t]]]) for t in range(e.n)])
    e.set("action/rel_actions_gripper", [np.concatenate([np.clip(rs[t].inv().apply(next_diff(ps, t)) * 50, -1, 1),
                                                         np.clip(ee_delta(rs, t).as_euler("xyz") * 20, -1, 1),
                                                         [open_cmd[t]]]) for t in range(e.n)])
    e.set("action/terminate_episode", [float(t == e.n - 1) for t in range(e.n)])
    e.fill("observation/depth_static", 1.2)
    e.fill("observation/depth_gripper", 0.15)
    e.const("observation/natural_language_instruction", b"grasp the pink block and lift it")
    e.const("observation/structured_language_instruction", b"lift_pink_block_table")


def gen_ucsd_kitchen(e):
    # the xArm's absolute pose: millimetres and xyz Euler degrees, action[6] 1 = closed, action[7] terminate
    ps, rs = motion(e.rng, e.n, [0.35, 0.1, 0.25], down(0.6, np.pi - 0.1), 0.02, 5.0)
    closed = closes_at(e.n, 3)
    e.set("action", [np.concatenate([ps[t] * 1000, np.degrees(rs[t].as_euler("xyz")), [closed[t]],
                                     [float(t == e.n - 1)]]) for t in range(e.n)])
    joints = walk(e.rng, [0.0, -0.5, 0.0, 0.6, 0.0, 1.1, 0.0], 0.05, e.n)
    e.set("observation/state", [np.concatenate([joints[t], next_diff(joints, t) * 2, e.rng.normal(0, 2, 7)])
                                for t in range(e.n)])
    e.const("language_instruction", "Open the oven door.")
    put(e.meta, "episode_metadata/file_path", "/data/ucsd_kitchen/open_oven/episode_5.npy")


# name: (version, rate Hz, steps, seed, generator)
DATASETS = {
    "austin_buds_dataset_converted_externally_to_rlds": ("0.1.0", 20.0, 25, 31, gen_austin_buds),
    "austin_sailor_dataset_converted_externally_to_rlds": ("0.1.0", 20.0, 25, 32, gen_austin_sailor),
    "austin_sirius_dataset_converted_externally_to_rlds": ("0.1.0", 20.0, 25, 33, gen_austin_sirius),
    "berkeley_autolab_ur5": ("0.1.0", 5.0, 8, 34, gen_berkeley_autolab_ur5),
    "berkeley_cable_routing": ("0.1.0", 10.0, 13, 35, gen_berkeley_cable_routing),
    "berkeley_fanuc_manipulation": ("0.1.0", 10.0, 13, 36, gen_berkeley_fanuc),
    "dlr_edan_shared_control_converted_externally_to_rlds": ("0.1.0", 5.0, 7, 37, gen_dlr_edan),
    "fmb": ("0.0.1", 10.0, 13, 38, gen_fmb),
    "furniture_bench_dataset_converted_externally_to_rlds": ("0.1.0", 10.0, 13, 39, gen_furniture_bench),
    "iamlab_cmu_pickup_insert_converted_externally_to_rlds": ("0.1.0", 20.0, 26, 40, gen_iamlab),
    "kuka": ("0.1.0", 10.0, 13, 41, gen_kuka),
    "nyu_franka_play_dataset_converted_externally_to_rlds": ("0.1.0", 3.0, 5, 42, gen_nyu_franka_play),
    "roboturk": ("0.1.0", 10.0, 13, 43, gen_roboturk),
    "stanford_hydra_dataset_converted_externally_to_rlds": ("0.1.0", 10.0, 13, 44, gen_stanford_hydra),
    "taco_play": ("0.1.0", 15.0, 19, 45, gen_taco_play),
    "toto": ("0.1.0", 30.0, 37, 46, gen_toto),
    "ucsd_kitchen_dataset_converted_externally_to_rlds": ("0.1.0", 2.0, 6, 47, gen_ucsd_kitchen),
    "utaustin_mutex": ("0.1.0", 20.0, 25, 48, gen_utaustin_mutex),
}


# ---------------------------------------------------------------------------------------------------------------
# Reference standardisation, from docs/datasets.md, of what tfds returns
# ---------------------------------------------------------------------------------------------------------------


def col(steps, key):
    """A step field as float64 rows [steps][values]."""
    return np.array([np.asarray(s[key], dtype=np.float64).reshape(-1) for s in steps])


def text(steps, key):
    raw = steps[0][key]
    raw = raw if isinstance(raw, bytes) else np.asarray(raw).item()
    return raw.decode("utf-8").strip()


def linear(v, open_value, closed_value):
    """Closedness in [0, 1] from a value's open and closed ends (clamped)."""
    return np.clip((np.asarray(v, np.float64) - open_value) / (closed_value - open_value), 0.0, 1.0)


def quats_xyzw(q):
    q = np.asarray(q, np.float64)
    return Rotation.from_quat(q / np.linalg.norm(q, axis=1, keepdims=True))


def quats_wxyz(q):
    return quats_xyzw(np.asarray(q)[:, [1, 2, 3, 0]])


def franka_matrices(m16):
    """Column-major 4x4 (libfranka O_T_EE): R[i][j] = m[4 j + i], translation m[12:15]. scipy's from_matrix
    returns the rotation nearest to the float32-rounded matrix."""
    m = np.asarray(m16, np.float64).reshape(-1, 4, 4).transpose(0, 2, 1)
    return m[:, :3, 3], Rotation.from_matrix(m[:, :3, :3])


def integrated(steps):
    """No pose recorded: integrate world_vector (base-frame metres) and rotation_delta (base-frame xyz Euler,
    R' = dR R) from the identity pose; frame t is the pose before step t's delta."""
    dp, de = col(steps, "action/world_vector"), col(steps, "action/rotation_delta")
    n = len(steps)
    positions = np.vstack([np.zeros(3), np.cumsum(dp, axis=0)[:n - 1]])
    rots = [Rotation.identity()]
    for t in range(n - 1):
        rots.append(Rotation.from_euler("xyz", de[t]) * rots[-1])
    return positions, Rotation.concatenate(rots)


def binary_sign(v):
    """"< 0 open, > 0 close" (furniture_bench)."""
    v = np.asarray(v, np.float64)
    assert not np.any(v == 0.0), "no command at exactly 0 in the fixture"
    return (v > 0).astype(np.float64)


def ref_deoxys(state_pose, width_key, width_index=0, instruction="language_instruction"):
    def read(steps):
        if state_pose == "state24":
            s = col(steps, "observation/state")
            pos, rot = franka_matrices(s[:, 8:24])
            width = s[:, 7]
        else:
            pos, rot = franka_matrices(col(steps, state_pose))
            width = col(steps, width_key)[:, width_index]
        return dict(positions=pos, rotations=rot, state=linear(width, FRANKA_WIDTH, 0.0),
                    command=linear(col(steps, "action")[:, 6], -1.0, 1.0), instruction=text(steps, instruction))
    return read


def ref_ur5(steps):
    rs = col(steps, "observation/robot_state")
    return dict(positions=rs[:, 6:9], rotations=quats_xyzw(rs[:, 9:13]), state=linear(rs[:, 13], 0.0, 1.0),
                command=rel2abs(col(steps, "action/gripper_closedness_action")[:, 0]),
                instruction=text(steps, "observation/natural_language_instruction"))


def ref_cable(steps):
    pos, rot = integrated(steps)
    n = len(steps)
    return dict(positions=pos, rotations=rot, state=np.ones(n), command=np.ones(n),
                instruction=text(steps, "observation/natural_language_instruction"))


def ref_fanuc(steps):
    ee, s = col(steps, "observation/end_effector_state"), col(steps, "observation/state")
    g = linear(s[:, 6], 0.0, 1.0)
    return dict(positions=ee[:, :3], rotations=quats_xyzw(ee[:, 3:7]), state=g, command=g,
                instruction=text(steps, "language_instruction"))


def ref_dlr(steps):
    s = col(steps, "observation/state")
    return dict(positions=s[:, :3], rotations=Rotation.from_euler("zxy", s[:, 3:6]), state=linear(s[:, 6], 0.0, 1.0),
                command=linear(col(steps, "action")[:, 6], 0.0, 1.0), instruction=text(steps, "language_instruction"))


def ref_fmb(steps):
    p = col(steps, "observation/eef_pose")
    return dict(positions=p[:, :3], rotations=quats_xyzw(p[:, 3:7]),
                state=linear(col(steps, "observation/state_gripper_pose")[:, 0], 0.0, 1.0),
                command=linear(col(steps, "action")[:, 6], 0.0, 1.0), instruction=text(steps, "language_instruction"))


def ref_furniture(steps):
    s = col(steps, "observation/state")
    return dict(positions=s[:, :3], rotations=quats_xyzw(s[:, 3:7]), state=linear(s[:, 34], FRANKA_WIDTH, 0.0),
                command=binary_sign(col(steps, "action")[:, 7]), instruction=text(steps, "language_instruction"))


def ref_iamlab(steps):
    a, s = col(steps, "action"), col(steps, "observation/state")
    # frame t (t >= 1) has the pose stored in action[t - 1]; frame 0 has none and is dropped
    return dict(frames=list(range(1, len(steps))), positions=a[:-1, :3], rotations=quats_wxyz(a[:-1, 3:7]),
                state=linear(s[1:, 7], 1.0, 0.0), command=linear(a[1:, 7], 1.0, 0.0),
                instruction=text(steps, "language_instruction"))


def ref_kuka(steps):
    p = col(steps, "observation/clip_function_input/base_pose_tool_reached")
    return dict(positions=p[:, :3], rotations=quats_xyzw(p[:, 3:7]),
                state=linear(col(steps, "observation/gripper_closed")[:, 0], 0.0, 1.0),
                command=rel2abs(col(steps, "action/gripper_closedness_action")[:, 0]),
                instruction=text(steps, "observation/natural_language_instruction"))


def ref_nyu(steps):
    s = col(steps, "observation/state")
    g = linear(col(steps, "action")[:, 13], 1.0, -1.0)
    return dict(positions=s[:, 7:10], rotations=Rotation.from_euler("xyz", s[:, 10:13]), state=g, command=g,
                instruction=text(steps, "language_instruction"))


def ref_roboturk(steps):
    pos, rot = integrated(steps)
    g = linear(col(steps, "action/gripper_closedness_action")[:, 0], 0.0, 1.0)
    return dict(positions=pos, rotations=rot, state=g, command=g,
                instruction=text(steps, "observation/natural_language_instruction"))


def ref_hydra(steps):
    s = col(steps, "observation/state")
    return dict(positions=s[:, :3], rotations=quats_xyzw(s[:, 3:7]), state=linear(s[:, 25], 0.0, 1.0),
                command=linear(col(steps, "action")[:, 6], 0.0, 1.0), instruction=text(steps, "language_instruction"))


def ref_taco(steps):
    o = col(steps, "observation/robot_obs")
    return dict(positions=o[:, :3], rotations=Rotation.from_euler("xyz", o[:, 3:6]),
                state=linear(o[:, 6], FRANKA_WIDTH, 0.0), command=linear(o[:, 14], 1.0, -1.0),
                instruction=text(steps, "observation/natural_language_instruction"))


def ref_toto(steps):
    pos, rot = integrated(steps)
    g = 1.0 - col(steps, "action/open_gripper")[:, 0]  # True = open
    return dict(positions=pos, rotations=rot, state=g, command=g,
                instruction=text(steps, "observation/natural_language_instruction"))


def ref_ucsd(steps):
    a = col(steps, "action")
    g = linear(a[:, 6], 0.0, 1.0)
    return dict(positions=a[:, :3] / 1000.0, rotations=Rotation.from_euler("xyz", np.radians(a[:, 3:6])), state=g,
                command=g, instruction=text(steps, "language_instruction"))


REFERENCE = {
    "austin_buds_dataset_converted_externally_to_rlds": ref_deoxys("state24", None),
    "austin_sailor_dataset_converted_externally_to_rlds": ref_deoxys("observation/state_ee",
                                                                     "observation/state_gripper"),
    "austin_sirius_dataset_converted_externally_to_rlds": ref_deoxys("observation/state_ee",
                                                                     "observation/state_gripper"),
    "berkeley_autolab_ur5": ref_ur5,
    "berkeley_cable_routing": ref_cable,
    "berkeley_fanuc_manipulation": ref_fanuc,
    "dlr_edan_shared_control_converted_externally_to_rlds": ref_dlr,
    "fmb": ref_fmb,
    "furniture_bench_dataset_converted_externally_to_rlds": ref_furniture,
    "iamlab_cmu_pickup_insert_converted_externally_to_rlds": ref_iamlab,
    "kuka": ref_kuka,
    "nyu_franka_play_dataset_converted_externally_to_rlds": ref_nyu,
    "roboturk": ref_roboturk,
    "stanford_hydra_dataset_converted_externally_to_rlds": ref_hydra,
    "taco_play": ref_taco,
    "toto": ref_toto,
    "ucsd_kitchen_dataset_converted_externally_to_rlds": ref_ucsd,
    "utaustin_mutex": ref_deoxys("state24", None),
}


def read_back(dataset_dir, name, version):
    """Every episode's steps as tfds returns them (images left encoded), keyed by '/'-joined paths."""
    builder = tfds.builder_from_directory(str(dataset_dir))
    assert builder.name == name and str(builder.version) == version
    ds = builder.as_dataset(split="train", shuffle_files=False, decoders=rf.skip_decoders(builder.info.features))
    return [[rf.flatten(s) for s in ep["steps"]] for ep in tfds.as_numpy(ds)]


def reference_episode(name, rate, steps):
    r = REFERENCE[name](steps)
    frames = r.get("frames", list(range(len(steps))))
    rotations = [r["rotations"][i] for i in range(len(frames))]
    return standard_episode(rate, r["positions"], rotations, [float(x) for x in r["state"]],
                            [float(x) for x in r["command"]], r["instruction"], frames)


# ---------------------------------------------------------------------------------------------------------------


def spec_for(name):
    version, rate, n, seed, gen = DATASETS[name]
    doc, tree = load_schema(name)
    assert doc["version"] == version, (name, doc["version"])
    shrunk = SHRUNK.get(name)
    description = f"One synthetic episode with the feature schema of {name} {version} (tools/reference/oxe_schemas)"
    if shrunk:
        description += "; depth tensors shrunk for size: " + ", ".join(
            f"{p[-1]} {a} -> {b}" for p, (a, b) in shrunk.items())
    description += "."

    def episodes(rng):
        features = F.FeaturesDict.from_json(tree)
        e = Episode(features, n, rng)
        gen(e)
        return [(f"{name}_synthetic_0", e.example())]

    return dict(name=name, version=version, seed=seed, num_shards=None, description=description,
                features=lambda: F.FeaturesDict.from_json(tree), episodes=episodes), rate


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for old in sorted(OUT.iterdir()):
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        rf.install_package(tmp)
        rf.serialize_deterministically()
        for name in DATASETS:
            spec, rate = spec_for(name)
            dataset_dir = rf.write_dataset(spec, str(pathlib.Path(tmp) / "data"), out=OUT)
            episodes = [reference_episode(name, rate, steps) for steps in read_back(dataset_dir, name, spec["version"])]
            doc = {"dataset": name, "horizon": H, "rate_hz": RATE, "episodes": episodes}
            rf.write_json(OUT / f"{name}.standard.json", doc)
            ep = episodes[0]
            real = sum(sum(m) for m in ep["masks"])
            shard = sum(p.stat().st_size for p in dataset_dir.glob("*.tfrecord-*"))
            print(f"  {name}: {DATASETS[name][2]} steps at {rate:g} Hz, {len(ep['steps'])} frames, "
                  f"{real} real 5 Hz actions, shard {shard} bytes")
    total = rf.check_sizes(OUT)
    assert total < MAX_TOTAL_BYTES, f"{OUT} holds {total} bytes"


if __name__ == "__main__":
    main()
