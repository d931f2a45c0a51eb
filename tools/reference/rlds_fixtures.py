#!/usr/bin/env python3
"""Golden RLDS fixtures for spear-data's TFDS/RLDS reader, written and read back by tensorflow-datasets itself.

Run by a developer, never by CI, with the pinned environment (requirements-data.txt) in a virtualenv outside the
repository:

    python3 -m venv /path/to/venv && /path/to/venv/bin/pip install -r tools/reference/requirements-data.txt
    /path/to/venv/bin/python tools/reference/rlds_fixtures.py

For five real Open X-Embodiment / RLDS datasets it declares a `tfds.core.GeneratorBasedBuilder` whose name, version
and FeaturesDict copy the published dataset (every key, nesting, shape, dtype, feature class — Tensor / Scalar /
Text / Image — and image encoding; the source of each schema is cited next to it below), fills it with 2-4 short
episodes (3-11 steps, enough for 5 Hz actions at every rate) of deterministic, physically plausible synthetic data (smooth images so that every JPEG decoder agrees
closely), lets `builder.download_and_prepare()` write it, and copies the prepared folder. Writes, under
crates/spear-data/tests/fixtures/rlds/:

* <name>/<version>/            dataset_info.json, features.json and the tfrecord shard(s), exactly as tfds wrote them
                               (fractal20220817_data is written as 2 shards of 2 episodes).
* <name>.expected.json         what tfds returns for it (`builder_from_directory(...).as_dataset('train',
                               shuffle_files=False)`, read order = shard order): per episode the flattened
                               non-step features ("episode_metadata") and every step's features, keyed by their
                               '/'-joined path inside a step (`observation/state`, `is_first`, ...). Numbers:
                               {"dtype", "shape", "values"} (row-major; float32/float64 written as the exact double);
                               strings: {"dtype": "string", "shape": [], "utf8", "hex"}; images: {"dtype": "image",
                               "shape", "encoded_format", "encoded_len", "encoded_sha256" (of the bytes stored in the
                               record, read with tfds.decode.SkipDecoding), "decoded_sha256" (of tfds' decoded uint8
                               array), "channel_sums", "samples": [[y, x, [r, g, b]], ...16 fixed positions], and the same three
                               prefixed "accurate_" for libjpeg's accurate IDCT (see decode_accurate())}. Each
                               episode also has "record": the shard file, the record's index and byte offset in it and the raw
                               tf.train.Example keys as the Rust reader sees them ({"steps/observation/state":
                               ["float_list", 28], ...}).
* <name>.<key with '.' for '/'>.png
                               the first step of the first episode of every camera, decoded with libjpeg's accurate
                               IDCT (decode_accurate()), saved losslessly (PNG) so the Rust JPEG/PNG decoder can be
                               compared pixel by pixel.
* corrupt/                     copies of language_table (one shard, two episodes): bad_crc/<name>/<version>/ (one byte
                               in the middle of one record's data flipped, so its data CRC fails), truncated/... (the
                               last shard cut inside its last record), missing_features/... (no features.json); all
                               keep dataset_info.json. corrupt/corrupt.json gives the shard, record index, record
                               header offset, byte offsets and what TensorFlow / tfds report for each.

Deterministic: a second run gives byte-identical files. dataset_info.json holds no timestamps or paths in tfds
4.9.10 (moduleName is pinned to a package created for the run). The one thing plain tfds does not reproduce is the
order of the entries of each tf.train.Example's feature map (the protobuf runtime seeds its map hash per process), so
the Examples are serialised with protobuf's deterministic option (entries sorted by key); see
serialize_deterministically().

Surprises of tfds 4.9.10's serialisation worth knowing on the reading side (all visible in the fixtures):
bool features (Scalar or Tensor) are int64_list 0/1; float64 tensors (DROID) are stored as float32 in a float_list
and cast back to float64 on reading, so they only carry float32 precision; Text and string Tensors are both
bytes_list; every step feature is one feature per episode named "steps/<path>" holding all steps' values
concatenated (images: one bytes entry per step); episode-level features are plain "<path>" keys.
"""
import hashlib
import importlib
import json
import os
import pathlib
import re
import shutil
import struct
import sys
import tempfile

os.environ.setdefault("NO_GCE_CHECK", "true")  # no metadata-server probing: this machine has no network
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/spear-data/tests/fixtures/rlds"
MAX_FILE_BYTES = 2 * 1024 * 1024  # the repository's per-fixture limit (same as fixture_io.check_sizes)

F = tfds.features
STRING = tf.string


def tensor(shape, dtype, doc=None):
    return F.Tensor(shape=shape, dtype=dtype, doc=doc)


def scalar(dtype, doc=None):
    return F.Scalar(dtype=dtype, doc=doc)


def image(shape, encoding_format, doc=None):
    return F.Image(shape=shape, dtype=np.uint8, encoding_format=encoding_format, doc=doc)


# ---------------------------------------------------------------------------------------------------------------
# Synthetic content
# ---------------------------------------------------------------------------------------------------------------


def scene(rng, h, w, n_rect=3, noise=0.0):
    """A camera: frame(t) is a smooth two-axis colour gradient plus a few flat rectangles drifting with t, plus
    Gaussian pixel noise of standard deviation `noise` (0 for the fixtures; the data benchmark uses camera-like
    texture, which makes JPEGs as large and slow to decode as real frames)."""
    base = rng.uniform(60, 190, 3)
    gx = rng.uniform(-50, 50, 3)
    gy = rng.uniform(-50, 50, 3)
    rects = [
        (rng.uniform(0.1, 0.6), rng.uniform(0.1, 0.6), rng.uniform(0.12, 0.3), rng.uniform(0.12, 0.3),
         rng.integers(0, 256, 3).astype(np.float64), rng.uniform(-0.04, 0.04, 2))
        for _ in range(n_rect)
    ]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    yy /= h - 1
    xx /= w - 1

    def frame(t):
        img = base + gx * xx[..., None] + gy * yy[..., None]
        for y0, x0, rh, rw, colour, vel in rects:
            top = int(round((y0 + vel[0] * t) * h))
            left = int(round((x0 + vel[1] * t) * w))
            img[top:top + int(rh * h), left:left + int(rw * w)] = colour
        if noise > 0:
            img = img + np.random.default_rng(seed + t).normal(0.0, noise, img.shape)
        return np.clip(np.round(img), 0, 255).astype(np.uint8)

    seed = int(rng.integers(1 << 31)) if noise > 0 else 0
    return frame


def unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def embedding(rng):
    """A stand-in for a Universal-Sentence-Encoder embedding: 512 floats of unit norm."""
    return unit(rng.standard_normal(512)).astype(np.float32)


def euler_to_matrix(roll, pitch, yaw):
    cr, sr, cp, sp, cy, sy = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw)
    return np.array([
        [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
        [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
        [-sp, cp * sr, cp * cr],
    ])


def euler_to_quat_xyzw(roll, pitch, yaw):
    cr, sr = np.cos(roll / 2), np.sin(roll / 2)
    cp, sp = np.cos(pitch / 2), np.sin(pitch / 2)
    cy, sy = np.cos(yaw / 2), np.sin(yaw / 2)
    return unit([sr * cp * cy - cr * sp * sy, cr * sp * cy + sr * cp * sy, cr * cp * sy - sr * sp * cy,
                 cr * cp * cy + sr * sp * sy])


def random_walk(rng, start, step_scale, n):
    start = np.asarray(start, dtype=np.float64)
    steps = rng.normal(0.0, step_scale, (n - 1, start.size))
    return np.concatenate([start[None], start[None] + np.cumsum(steps, axis=0)], axis=0)


def rlds_flags(i, n, terminal=True):
    return {"is_first": i == 0, "is_last": i == n - 1, "is_terminal": terminal and i == n - 1}


# ---------------------------------------------------------------------------------------------------------------
# Datasets. Each entry: name, version, features(), episodes(rng) -> [(key, example)], num_shards, cameras
# (flat step keys of the Image features).
# ---------------------------------------------------------------------------------------------------------------

# bridge_dataset 1.0.0 — BridgeData V2 as released by its authors (rail.eecs.berkeley.edu/datasets/bridge_release/
# data/tfds/bridge_dataset/1.0.0, the "bridge_orig" of Octo/OpenVLA).
# Source: github.com/kpertsch/bridge_rlds_builder, bridge_dataset/bridge_dataset_dataset_builder.py at commit
# f0d16c5a8384c1476aa1c274a9aef3a5f76cbada (2023-09-06, "update bridge builder", 256x256 numpy_256 inputs; later
# commits switched to 480x640 + depth for a newer release). The same keys/classes appear in Google's re-export
# documented at tensorflow.org/datasets/catalog/bridge (episode_metadata/episode_id Scalar int32, has_image_* and
# has_language Scalar bool, language_embedding (512,)). Docs (descriptions) are the builder's, typos and all.
# Missing cameras are zero images and has_image_k False, as the builder writes them.
def bridge_features():
    img_doc = "Main camera RGB observation."
    return F.FeaturesDict({
        "steps": F.Dataset({
            "observation": F.FeaturesDict({
                "image_0": image((256, 256, 3), "jpeg", img_doc),
                "image_1": image((256, 256, 3), "jpeg", img_doc),
                "image_2": image((256, 256, 3), "jpeg", img_doc),
                "image_3": image((256, 256, 3), "jpeg", img_doc),
                "state": tensor((7,), np.float32, "Robot state, consists of [7x robot joint angles, "
                                "2x gripper position, 1x door opening angle]."),
            }),
            "action": tensor((7,), np.float32, "Robot action, consists of [7x joint velocities, "
                             "2x gripper velocities, 1x terminate episode]."),
            "discount": scalar(np.float32, "Discount if provided, default to 1."),
            "reward": scalar(np.float32, "Reward if provided, 1 on final step for demos."),
            "is_first": scalar(np.bool_, "True on first step of the episode."),
            "is_last": scalar(np.bool_, "True on last step of the episode."),
            "is_terminal": scalar(np.bool_, "True on last step of the episode if it is a terminal step, True for demos."),
            "language_instruction": F.Text(doc="Language Instruction."),
            "language_embedding": tensor((512,), np.float32, "Kona language embedding. "
                                         "See https://tfhub.dev/google/universal-sentence-encoder-large/5"),
        }),
        "episode_metadata": F.FeaturesDict({
            "file_path": F.Text(doc="Path to the original data file."),
            "episode_id": scalar(np.int32, "ID of episode in file_path."),
            "has_image_0": scalar(np.bool_, "True if image0 exists in observation, otherwise dummy value."),
            "has_image_1": scalar(np.bool_, "True if image1 exists in observation, otherwise dummy value."),
            "has_image_2": scalar(np.bool_, "True if image2 exists in observation, otherwise dummy value."),
            "has_image_3": scalar(np.bool_, "True if image3 exists in observation, otherwise dummy value."),
            "has_language": scalar(np.bool_, "True if language exists in observation, otherwise empty string."),
        }),
    })


def bridge_episodes(rng, plans=None, noise=0.0):
    # (steps, cameras present, instruction, source file, episode id in that file)
    plans = plans or [
        (4, (0, 1, 2, 3), "pick up the crème brûlée and put it on the plate",
         "/nfs/kun2/users/homer/datasets/bridge_data_all/numpy_256/bridge_data_v2/toykitchen7/pnp/00/train/out.npy", 12),
        (3, (0, 1), "", "/nfs/kun2/users/homer/datasets/bridge_data_all/scripted_numpy_256/scripted_raw/"
         "sweep_12-03/train/out.npy", 3),
    ]
    out = []
    for n, cams, instruction, path, episode_id in plans:
        frames = {k: scene(rng, 256, 256, noise=noise) for k in cams}
        # state: [x, y, z, roll, pitch, yaw, gripper] of a WidowX 250 end effector, metres / radians, gripper in [0, 1]
        pos = random_walk(rng, [0.30, rng.uniform(-0.05, 0.05), 0.12], 0.01, n)
        rpy = random_walk(rng, [rng.uniform(-0.1, 0.1), rng.uniform(-0.2, 0.0), rng.uniform(-0.3, 0.3)], 0.02, n)
        grip = np.clip(np.linspace(1.0, 0.2, n) + rng.normal(0, 0.02, n), 0.0, 1.0)
        state = np.concatenate([pos, rpy, grip[:, None]], axis=1)
        emb = embedding(rng) if instruction else np.zeros(512, np.float32)
        steps = []
        for i in range(n):
            nxt = state[min(i + 1, n - 1)]
            action = np.concatenate([nxt[:6] - state[i][:6], [1.0 if nxt[6] > 0.5 else 0.0]])
            obs = {"state": state[i].astype(np.float32)}
            for k in range(4):
                obs[f"image_{k}"] = frames[k](i) if k in cams else np.zeros((256, 256, 3), np.uint8)
            steps.append({
                "observation": obs,
                "action": action.astype(np.float32),
                "discount": 1.0,
                "reward": float(i == n - 1),
                **rlds_flags(i, n),
                "language_instruction": instruction,
                "language_embedding": emb,
            })
        meta = {"file_path": path, "episode_id": episode_id, "has_language": bool(instruction)}
        meta.update({f"has_image_{k}": k in cams for k in range(4)})
        out.append((path + str(episode_id), {"steps": steps, "episode_metadata": meta}))
    return out


# droid 1.0.1 — gs://gresearch/robotics/droid/1.0.1.
# Sources: the DROID builder github.com/kpertsch/droid_dataset_builder droid/droid.py (HEAD 8c3f83f, IMAGE_RES =
# (180, 320), jpeg, float64 state/action, Scalar flags, Text language and episode_metadata) and the dataset schema
# published in github.com/droid-dataset/droid docs/the-droid-dataset.md (HEAD 1548722, 2025-03-10), which adds
# language_instruction_2 / _3 (Text); descriptions of those two are from the features.json printed in the same file
# at commit 72fd0ec ("Alternative Language Instruction."). That older printed features.json also had
# language_embedding{,_2,_3} (512,) float32 — an internal 2024-01 build; the current docs and loaders (openpi) have no
# embeddings, so they are left out here.
# Uncertain (not checkable offline): (1) the real droid/1.0.1/dataset_info.json reportedly names the dataset
# "droid_101" with version "0.0.1" and 2048 shards "droid_101-train.tfrecord-XXXXX-of-02048" (two independent GitHub
# projects say so); this fixture uses name "droid" / version 1.0.1 as asked. (2) One copy of a 1.0.1-derived
# features.json (SemanticVLA-TraceX-240K-DROID rlds_features.json on Hugging Face) shows episode_metadata strings as
# Tensor(string) without descriptions instead of Text — the records are the same bytes_list either way.
def droid_features():
    img = lambda doc: image((180, 320, 3), "jpeg", doc)  # noqa: E731
    f64 = lambda n, doc: tensor((n,), np.float64, doc)  # noqa: E731
    return F.FeaturesDict({
        "steps": F.Dataset({
            "observation": F.FeaturesDict({
                "exterior_image_1_left": img("Exterior camera 1 left viewpoint"),
                "exterior_image_2_left": img("Exterior camera 2 left viewpoint"),
                "wrist_image_left": img("Wrist camera RGB left viewpoint"),
                "cartesian_position": f64(6, "Robot Cartesian state"),
                "gripper_position": f64(1, "Gripper position statae"),
                "joint_position": f64(7, "Joint position state"),
            }),
            "action_dict": F.FeaturesDict({
                "cartesian_position": f64(6, "Commanded Cartesian position"),
                "cartesian_velocity": f64(6, "Commanded Cartesian velocity"),
                "gripper_position": f64(1, "Commanded gripper position"),
                "gripper_velocity": f64(1, "Commanded gripper velocity"),
                "joint_position": f64(7, "Commanded joint position"),
                "joint_velocity": f64(7, "Commanded joint velocity"),
            }),
            "action": f64(7, "Robot action, consists of [6x joint velocities, \
                            1x gripper position]."),
            "discount": scalar(np.float32, "Discount if provided, default to 1."),
            "reward": scalar(np.float32, "Reward if provided, 1 on final step for demos."),
            "is_first": scalar(np.bool_, "True on first step of the episode."),
            "is_last": scalar(np.bool_, "True on last step of the episode."),
            "is_terminal": scalar(np.bool_, "True on last step of the episode if it is a terminal step, True for demos."),
            "language_instruction": F.Text(doc="Language Instruction."),
            "language_instruction_2": F.Text(doc="Alternative Language Instruction."),
            "language_instruction_3": F.Text(doc="Alternative Language Instruction."),
        }),
        "episode_metadata": F.FeaturesDict({
            "file_path": F.Text(doc="Path to the original data file."),
            "recording_folderpath": F.Text(doc="Path to the folder of recordings."),
        }),
    })


FRANKA_HOME = np.array([0.0, -0.6, 0.0, -2.4, 0.0, 1.8, 0.8])


def droid_episodes(rng, plans=None, noise=0.0):
    root = "gs://xembodiment_data/r2d2/r2d2-data-full"
    plans = plans or [
        (9, f"{root}/AUTOLab/success/2023-07-07/Fri_Jul__7_09:42:23_2023",
         ("put the marker in the cup", "place the black marker inside the mug", "marker into cup")),
        (3, f"{root}/ILIAD/failure/2023-09-21/Thu_Sep_21_14:05:11_2023", ("", "", "")),
    ]
    out = []
    for n, episode_path, langs in plans:
        cams = {k: scene(rng, 180, 320, noise=noise)
                for k in ("exterior_image_1_left", "exterior_image_2_left", "wrist_image_left")}
        # Cartesian pose [x, y, z, roll, pitch, yaw] of a Franka gripper pointing down (roll near pi), metres / rad.
        xyz = random_walk(rng, [0.45, rng.uniform(-0.1, 0.1), 0.30], 0.012, n + 1)
        rpy = random_walk(rng, [3.10, rng.uniform(-0.1, 0.1), rng.uniform(-0.4, 0.4)], 0.015, n + 1)
        cart = np.concatenate([xyz, rpy], axis=1)
        joints = random_walk(rng, FRANKA_HOME + rng.uniform(-0.1, 0.1, 7), 0.02, n + 1)
        grip = np.clip(np.linspace(0.0, 0.9, n + 1) + rng.normal(0, 0.02, n + 1), 0.0, 1.0)
        steps = []
        for i in range(n):
            action_dict = {
                "cartesian_position": cart[i + 1],
                "cartesian_velocity": np.clip((cart[i + 1] - cart[i]) * 15.0, -1, 1),
                "gripper_position": np.array([grip[i + 1]]),
                "gripper_velocity": np.array([np.clip((grip[i + 1] - grip[i]) * 15.0, -1, 1)]),
                "joint_position": joints[i + 1],
                "joint_velocity": np.clip((joints[i + 1] - joints[i]) * 15.0, -1, 1),
            }
            steps.append({
                "observation": {
                    **{k: f(i) for k, f in cams.items()},
                    "cartesian_position": cart[i],
                    "gripper_position": np.array([grip[i]]),
                    "joint_position": joints[i],
                },
                "action_dict": action_dict,
                # as the builder: commanded Cartesian position + commanded gripper position
                "action": np.concatenate([action_dict["cartesian_position"], action_dict["gripper_position"]]),
                "discount": 1.0,
                "reward": float(i == n - 1 and "success" in episode_path),
                **rlds_flags(i, n),
                "language_instruction": langs[0],
                "language_instruction_2": langs[1],
                "language_instruction_3": langs[2],
            })
        meta = {"file_path": f"{episode_path}/trajectory.h5", "recording_folderpath": f"{episode_path}/recordings/MP4"}
        out.append((episode_path, {"steps": steps, "episode_metadata": meta}))
    return out


# fractal20220817_data 0.1.0 (RT-1) — gs://gresearch/robotics/fractal20220817_data/0.1.0.
# Source: TFDS catalog page generated from the published features.json: github.com/tensorflow/datasets
# docs/catalog/fractal20220817_data.md (Feature structure + Feature documentation tables: class, shape, dtype and
# description of every key). Booleans and strings are Tensor(shape=()) (not Scalar / Text); reward is Scalar.
# Uncertain: the image's encodingFormat is not shown by the catalog. Google's own RT-X exports whose features.json
# beginning could be read (roboturk, nyu_door_opening_surprising_effectiveness, viola in lerobot-raw/*_raw on
# Hugging Face) have Image features without "encodingFormat", so none is declared here; the stored bytes are JPEG
# (encoded here with quality 90 and handed to tfds as bytes), which tfds decodes with tf.image.decode_image.
def fractal_features():
    f32 = lambda shape, doc=None: tensor(shape, np.float32, doc)  # noqa: E731
    return F.FeaturesDict({
        "aspects": F.FeaturesDict({
            "already_success": tensor((), np.bool_),
            "feasible": tensor((), np.bool_),
            "has_aspects": tensor((), np.bool_),
            "success": tensor((), np.bool_),
            "undesirable": tensor((), np.bool_),
        }, doc="Session Aspects for crowdcompute ratings"),
        "attributes": F.FeaturesDict({
            "collection_mode": tensor((), np.int64),
            "collection_mode_name": tensor((), STRING),
            "data_type": tensor((), np.int64),
            "data_type_name": tensor((), STRING),
            "env": tensor((), np.int64),
            "env_name": tensor((), STRING),
            "location": tensor((), np.int64),
            "location_name": tensor((), STRING),
            "objects_family": tensor((), np.int64),
            "objects_family_name": tensor((), STRING),
            "task_family": tensor((), np.int64),
            "task_family_name": tensor((), STRING),
        }),
        "steps": F.Dataset({
            "action": F.FeaturesDict({
                "base_displacement_vector": f32((2,)),
                "base_displacement_vertical_rotation": f32((1,)),
                "gripper_closedness_action": f32((1,), "continuous gripper position"),
                "rotation_delta": f32((3,), "rpy commanded orientation displacement, in base-relative frame"),
                "terminate_episode": tensor((3,), np.int32),
                "world_vector": f32((3,), "commanded end-effector displacement, in base-relative frame"),
            }),
            "is_first": tensor((), np.bool_),
            "is_last": tensor((), np.bool_),
            "is_terminal": tensor((), np.bool_),
            "observation": F.FeaturesDict({
                "base_pose_tool_reached": f32((7,), "end-effector base-relative position+quaternion pose"),
                "gripper_closed": f32((1,)),
                "gripper_closedness_commanded": f32((1,), "continuous gripper position"),
                "height_to_bottom": f32((1,), "height of end-effector from ground"),
                "image": image((256, 320, 3), None),
                "natural_language_embedding": f32((512,)),
                "natural_language_instruction": tensor((), STRING),
                "orientation_box": f32((2, 3)),
                "orientation_start": f32((4,)),
                "robot_orientation_positions_box": f32((3, 3)),
                "rotation_delta_to_go": f32((3,), "rotational displacement from current orientation to target"),
                "src_rotation": f32((4,)),
                "vector_to_go": f32((3,), "displacement from current end-effector position to target"),
                "workspace_bounds": f32((3, 3)),
            }),
            "reward": scalar(np.float32),
        }),
    })


def fractal_episodes(rng):
    # four episodes so that each of the two shards holds two records
    plans = [(3, "pick coke can", 1), (4, "move blue chip bag near apple", 2), (5, "open middle drawer", 3),
             (3, "place coke can upright", 4)]
    out = []
    for e, (n, instruction, family) in enumerate(plans):
        cam = scene(rng, 256, 320)
        emb = embedding(rng)
        pos = random_walk(rng, [0.55, rng.uniform(-0.15, 0.15), 0.85], 0.015, n + 1)
        rpy = random_walk(rng, [rng.uniform(-0.2, 0.2), 1.45, rng.uniform(-0.3, 0.3)], 0.03, n + 1)
        target = pos[-1] + rng.normal(0, 0.01, 3)
        target_rpy = rpy[-1] + rng.normal(0, 0.02, 3)
        start_q = euler_to_quat_xyzw(*rpy[0])
        src_q = euler_to_quat_xyzw(*(rpy[0] + rng.normal(0, 0.05, 3)))
        workspace = np.array([[0.35, -0.35, 0.60], [0.85, 0.35, 1.20], [0.0, 0.0, 0.0]])
        orientation_box = np.array([[-0.5, 1.2, -0.8], [0.5, 1.7, 0.8]])
        robot_box = np.array([[0.35, -0.35, 0.60], [0.85, 0.35, 1.20], [-0.5, 1.2, -0.8]])
        grip = np.clip(np.linspace(0.0, 1.0, n + 1), 0.0, 1.0)
        steps = []
        for i in range(n):
            last = i == n - 1
            steps.append({
                "action": {
                    "base_displacement_vector": np.zeros(2, np.float32),
                    "base_displacement_vertical_rotation": np.zeros(1, np.float32),
                    "gripper_closedness_action": np.array([grip[i + 1] * 2 - 1], np.float32),
                    "rotation_delta": (rpy[i + 1] - rpy[i]).astype(np.float32),
                    # one-hot [terminate, continue, ...] — index 0 set on the final step
                    "terminate_episode": np.array([1, 0, 0] if last else [0, 1, 0], np.int32),
                    "world_vector": (pos[i + 1] - pos[i]).astype(np.float32),
                },
                **rlds_flags(i, n),
                "observation": {
                    "base_pose_tool_reached": np.concatenate([pos[i], euler_to_quat_xyzw(*rpy[i])]).astype(np.float32),
                    "gripper_closed": np.array([float(grip[i] > 0.5)], np.float32),
                    "gripper_closedness_commanded": np.array([grip[i]], np.float32),
                    "height_to_bottom": np.array([pos[i][2] - 0.62], np.float32),
                    "image": tf.io.encode_jpeg(cam(i), quality=90).numpy(),
                    "natural_language_embedding": emb,
                    "natural_language_instruction": instruction,
                    "orientation_box": orientation_box.astype(np.float32),
                    "orientation_start": start_q.astype(np.float32),
                    "robot_orientation_positions_box": robot_box.astype(np.float32),
                    "rotation_delta_to_go": (target_rpy - rpy[i]).astype(np.float32),
                    "src_rotation": src_q.astype(np.float32),
                    "vector_to_go": (target - pos[i]).astype(np.float32),
                    "workspace_bounds": workspace.astype(np.float32),
                },
                "reward": float(last),
            })
        example = {
            "aspects": {"already_success": False, "feasible": True, "has_aspects": e != 1, "success": e != 1,
                        "undesirable": e == 1},
            "attributes": {
                "collection_mode": 1, "collection_mode_name": "teleop",
                "data_type": 2, "data_type_name": "real",
                "env": 10 + e, "env_name": "mk_kitchen_1",
                "location": 4, "location_name": "mountain_view",
                "objects_family": 7, "objects_family_name": "17_objects",
                "task_family": family, "task_family_name": instruction.split()[0],
            },
            "steps": steps,
        }
        out.append((f"fractal_episode_{e}", example))
    return out


# language_table 0.0.1 — gs://gresearch/robotics/language_table/0.0.1 (the version Open X-Embodiment uses: its
# colab's dataset2path() maps language_table to 0.0.1 and every other dataset but robo_net to 0.1.0; 0.1.0 as given
# in the request does not appear in any source found).
# Sources: element_spec printed in github.com/google-research/language-table
# language_table/examples/language_table_tutorial.ipynb (episode_id string; steps action (2,) f32, is_first/is_last/
# is_terminal bool, observation {effector_target_translation (2,), effector_translation (2,) f32, instruction (512,)
# int32, rgb (360, 640, 3) uint8}, reward f32) and the beginning of the published features.json mirrored at
# huggingface.co/datasets/lerobot-raw/language_table_raw (features.json): flags are Tensor(shape=()) bool, reward
# Scalar, rgb jpeg, descriptions of the observation keys as below.
# Uncertain: the feature classes/descriptions of episode_id, action and is_last come from the part of that file that
# could not be read; they are modelled like the visible keys (Tensor, no description).
def language_table_features():
    return F.FeaturesDict({
        "episode_id": tensor((), STRING),
        "steps": F.Dataset({
            "action": tensor((2,), np.float32),
            "is_first": tensor((), np.bool_),
            "is_last": tensor((), np.bool_),
            "is_terminal": tensor((), np.bool_),
            "observation": F.FeaturesDict({
                "effector_target_translation": tensor(
                    (2,), np.float32, "The target location for the end effector as a 2D cartesian setpoint."),
                "effector_translation": tensor(
                    (2,), np.float32, "The current end effector translation as a 2D cartesian coordinate."),
                "instruction": tensor((512,), np.int32, "A UTF-8 encoded string as bytes."),
                "rgb": image((360, 640, 3), "jpeg", "An RGB image of the scene."),
            }),
            "reward": scalar(np.float32),
        }),
    })


def utf8_int32(text, n=512):
    raw = np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int32)
    out = np.zeros(n, np.int32)
    out[:raw.size] = raw
    return out


def language_table_episodes(rng):
    # the second episode ends with is_last but not is_terminal (a truncated, not a terminated, episode)
    plans = [(7, "push the red star to the top left corner", True, "6101325012838477187"),
             (3, "slide the blue moon next to the green cube", False, "16832520712946470251")]
    out = []
    for n, text, terminal, episode_id in plans:
        cam = scene(rng, 360, 640, n_rect=4)
        # table-plane coordinates in metres; each action moves the effector most of the way to its target
        actions = rng.uniform(-0.03, 0.03, (n, 2))
        effector = np.zeros((n, 2))
        effector[0] = [rng.uniform(0.25, 0.5), rng.uniform(-0.2, 0.2)]
        for i in range(1, n):
            effector[i] = effector[i - 1] + actions[i - 1] * 0.9
        steps = []
        for i in range(n):
            steps.append({
                "action": actions[i].astype(np.float32),
                **rlds_flags(i, n, terminal),
                "observation": {
                    "effector_target_translation": (effector[i] + actions[i]).astype(np.float32),
                    "effector_translation": effector[i].astype(np.float32),
                    "instruction": utf8_int32(text),
                    "rgb": cam(i),
                },
                "reward": float(terminal and i == n - 1),
            })
        out.append((episode_id, {"episode_id": episode_id, "steps": steps}))
    return out


# viola 0.1.0 (a Franka with a wrist camera) — gs://gresearch/robotics/viola/0.1.0.
# Sources: TFDS catalog page github.com/tensorflow/datasets docs/catalog/viola.md (every key with class, shape, dtype
# and description: action is a dict of Tensors, two of them shape () float32; flags Tensor bool; reward Scalar;
# natural_language_instruction Tensor string; no episode_metadata) and the beginning of the published features.json
# at huggingface.co/datasets/lerobot-raw/viola_raw (features.json), where agentview_rgb is an Image (224, 224, 3)
# uint8 without "encodingFormat". Uncertain: eye_in_hand_rgb is past the readable part; it is declared the same way.
# With no encodingFormat tfds encodes numpy images as PNG, which is what these fixtures store.
# (The WeiChow/VLATrainingDataset copy of viola has 256x256 jpeg images — a resized re-export, not the original.)
def viola_features():
    f32 = lambda shape, doc=None: tensor(shape, np.float32, doc)  # noqa: E731
    return F.FeaturesDict({
        "steps": F.Dataset({
            "action": F.FeaturesDict({
                "gripper_closedness_action": f32(()),
                "rotation_delta": f32((3,)),
                "terminate_episode": f32(()),
                "world_vector": f32((3,)),
            }),
            "is_first": tensor((), np.bool_),
            "is_last": tensor((), np.bool_),
            "is_terminal": tensor((), np.bool_),
            "observation": F.FeaturesDict({
                "agentview_rgb": image((224, 224, 3), None, "RGB captured by workspace camera"),
                "ee_states": f32((16,), "Pose of the end effector specified as a homogenous matrix."),
                "eye_in_hand_rgb": image((224, 224, 3), None, "RGB captured by in hand camera"),
                "gripper_states": f32((1,), "gripper_states = 0 means the gripper is fully closed. The value "
                                      "represents the gripper width of Franka Panda Gripper."),
                "joint_states": f32((7,), "joint values"),
                "natural_language_embedding": f32((512,)),
                "natural_language_instruction": tensor((), STRING),
            }),
            "reward": scalar(np.float32),
        }),
    })


def viola_episodes(rng):
    # 20 Hz: 11 steps span 0.5 s, two actions at 5 Hz
    plans = [(6, "put the bowl in the drawer and close it"), (11, "make coffee with the moka pot")]
    out = []
    for e, (n, text) in enumerate(plans):
        agent, wrist = scene(rng, 224, 224), scene(rng, 224, 224)
        emb = embedding(rng)
        pos = random_walk(rng, [0.45, rng.uniform(-0.1, 0.1), 0.25], 0.01, n + 1)
        rpy = random_walk(rng, [np.pi, 0.0, rng.uniform(-0.3, 0.3)], 0.02, n + 1)
        joints = random_walk(rng, FRANKA_HOME, 0.02, n + 1)
        width = np.clip(np.linspace(0.078, 0.02, n + 1), 0.0, 0.08)
        steps = []
        for i in range(n):
            pose = np.eye(4)
            pose[:3, :3] = euler_to_matrix(*rpy[i])
            pose[:3, 3] = pos[i]
            steps.append({
                "action": {
                    "gripper_closedness_action": 1.0 if width[i + 1] < 0.05 else -1.0,
                    "rotation_delta": (rpy[i + 1] - rpy[i]).astype(np.float32),
                    "terminate_episode": float(i == n - 1),
                    "world_vector": (pos[i + 1] - pos[i]).astype(np.float32),
                },
                **rlds_flags(i, n),
                "observation": {
                    "agentview_rgb": agent(i),
                    # column-major flattening, as libfranka's O_T_EE (translation in elements 12..14)
                    "ee_states": pose.flatten(order="F").astype(np.float32),
                    "eye_in_hand_rgb": wrist(i),
                    "gripper_states": np.array([width[i]], np.float32),
                    "joint_states": joints[i].astype(np.float32),
                    "natural_language_embedding": emb,
                    "natural_language_instruction": text,
                },
                "reward": float(i == n - 1),
            })
        out.append((f"viola_demo_{e}", {"steps": steps}))
    return out


DATASETS = [
    dict(name="bridge_dataset", version="1.0.0", seed=11, features=bridge_features, episodes=bridge_episodes,
         num_shards=None),
    dict(name="droid", version="1.0.1", seed=12, features=droid_features, episodes=droid_episodes, num_shards=None),
    dict(name="fractal20220817_data", version="0.1.0", seed=13, features=fractal_features,
         episodes=fractal_episodes, num_shards=2),
    dict(name="language_table", version="0.0.1", seed=14, features=language_table_features,
         episodes=language_table_episodes, num_shards=None),
    dict(name="viola", version="0.1.0", seed=15, features=viola_features, episodes=viola_episodes, num_shards=None),
]


# ---------------------------------------------------------------------------------------------------------------
# Writing with tfds
# ---------------------------------------------------------------------------------------------------------------


PACKAGE = "spear_rlds_fixtures"


def serialize_deterministically():
    """tfds serialises each tf.train.Example with a plain SerializeToString(); the order of the entries of its
    `features` map then depends on a per-process hash seed of the protobuf runtime (upb), so every run would write
    different (equally valid) shard bytes. Ask protobuf for its deterministic encoding (map entries sorted by key)
    instead; nothing else about the records changes. A reader must not rely on any entry order."""
    from tensorflow_datasets.core import example_serializer

    def serialize_example(self, example):
        return self.get_tf_example(example).SerializeToString(deterministic=True)

    example_serializer.ExampleSerializer.serialize_example = serialize_example


def install_package(tmp):
    """tfds looks up a builder's code folder through its module's package (DatasetBuilder.code_path), so the builders
    are attributed to an empty package created for the run (also what dataset_info.json records as moduleName)."""
    root = pathlib.Path(tmp) / "pkg"
    (root / PACKAGE).mkdir(parents=True)
    (root / PACKAGE / "__init__.py").write_text("")
    sys.path.insert(0, str(root))
    importlib.import_module(PACKAGE)


def make_builder(spec, data_dir):
    version = spec["version"]

    class Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        name = spec["name"]
        VERSION = tfds.core.Version(version)
        RELEASE_NOTES = {version: "Synthetic spear fixture with the schema of the published release."}
        __module__ = f"{PACKAGE}.{spec['name']}"  # recorded as dataset_info.json moduleName

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                description=spec.get("description",
                                     f"Synthetic episodes with the exact feature schema of {spec['name']} {version}."),
                features=spec["features"](),
            )

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            yield from spec["episodes"](np.random.default_rng(spec["seed"]))

    return Builder(data_dir=data_dir)


def write_dataset(spec, tmp, out=OUT):
    """Prepares `spec` with tfds under `tmp` and copies the folder to out/<name>/<version>/ (also used by
    oxe_synthetic.py)."""
    builder = make_builder(spec, tmp)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(num_shards=spec["num_shards"]))
    src = pathlib.Path(tmp) / spec["name"] / spec["version"]
    dst = out / spec["name"] / spec["version"]
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    names = sorted(p.name for p in src.iterdir())
    for n in names:
        assert n in ("dataset_info.json", "features.json") or ".tfrecord-" in n, f"unexpected file {n}"
        shutil.copyfile(src / n, dst / n)
    return dst


# ---------------------------------------------------------------------------------------------------------------
# Reading back with tfds and dumping
# ---------------------------------------------------------------------------------------------------------------


def flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "/"))
        else:
            out[key] = v
    return out


def image_keys(feature, prefix=""):
    """Flat keys of the Image features inside a FeaturesDict (not descending into Dataset)."""
    keys = []
    for k, f in feature.items():
        if isinstance(f, F.Image):
            keys.append(prefix + k)
        elif isinstance(f, F.FeaturesDict):
            keys += image_keys(f, f"{prefix}{k}/")
    return keys


def skip_decoders(feature):
    """tfds decoders that keep every Image as its stored (encoded) bytes, including inside `steps`."""
    out = {}
    for k, f in feature.items():
        if isinstance(f, F.Image):
            out[k] = tfds.decode.SkipDecoding()
        elif isinstance(f, F.FeaturesDict):
            sub = skip_decoders(f)
            if sub:
                out[k] = sub
        elif isinstance(f, F.Dataset):
            sub = skip_decoders(f.feature)
            if sub:
                out[k] = sub
    return out


def sniff(data):
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    return "unknown"


def sample_positions(h, w):
    ys = [0, h // 3, (2 * h) // 3, h - 1]
    xs = [0, w // 3, (2 * w) // 3, w - 1]
    return [(y, x) for y in ys for x in xs]


def encode_value(v):
    v = np.asarray(v)
    if v.dtype.kind in "SUO":
        raw = v.item()
        raw = raw if isinstance(raw, bytes) else str(raw).encode()
        out = {"dtype": "string", "shape": list(v.shape)}
        try:
            out["utf8"] = raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
        out["hex"] = raw.hex()
        return out
    if v.dtype == np.bool_:
        values = [bool(x) for x in v.flat]
    elif v.dtype.kind == "f":
        values = [float(x) for x in v.flat]
        assert all(np.isfinite(values)), "non-finite value would not survive JSON"
    else:
        values = [int(x) for x in v.flat]
    return {"dtype": v.dtype.name, "shape": list(v.shape), "values": values}


def decode_accurate(encoded):
    """The image as libjpeg's accurate integer IDCT decodes it (PNG: the one exact decode).

    tfds decodes with tf.image.decode_image, whose JPEG default is libjpeg's *fast* integer IDCT
    (dct_method "" = INTEGER_FAST): off by up to ~10 levels at sharp edges. Decoders that use the accurate
    IDCT (libjpeg's default, zune-jpeg) match this one instead, to a level or so."""
    return tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_ACCURATE").numpy() \
        if sniff(encoded) == "jpeg" else tf.io.decode_image(encoded).numpy()


def pixel_summary(decoded, prefix=""):
    h, w, _ = decoded.shape
    return {
        f"{prefix}decoded_sha256": hashlib.sha256(np.ascontiguousarray(decoded).tobytes()).hexdigest(),
        f"{prefix}channel_sums": [int(s) for s in decoded.reshape(-1, decoded.shape[2]).sum(axis=0, dtype=np.int64)],
        f"{prefix}samples": [[y, x, [int(c) for c in decoded[y, x]]] for y, x in sample_positions(h, w)],
    }


def encode_image(decoded, encoded):
    decoded = np.asarray(decoded)
    assert decoded.dtype == np.uint8 and decoded.ndim == 3, decoded.shape
    return {
        "dtype": "image",
        "shape": list(decoded.shape),
        "encoded_format": sniff(encoded),
        "encoded_len": len(encoded),
        "encoded_sha256": hashlib.sha256(encoded).hexdigest(),
        **pixel_summary(decoded),
        **pixel_summary(decode_accurate(encoded), "accurate_"),
    }


def read_tfrecord(path):
    """(offset, data) of every record of a TFRecord file, checking framing only."""
    blob = path.read_bytes()
    out, pos = [], 0
    while pos < len(blob):
        (length,) = struct.unpack_from("<Q", blob, pos)
        out.append((pos, blob[pos + 12:pos + 12 + length]))
        pos += 12 + length + 4
    assert pos == len(blob), path
    return out


def raw_records(dataset_dir, name):
    """[(shard file, index in shard, offset, tf.train.Example)] in shard order, via tf.data.TFRecordDataset."""
    out = []
    for shard in sorted(dataset_dir.glob(f"{name}-train.tfrecord-*")):
        offsets = [off for off, _ in read_tfrecord(shard)]
        for i, rec in enumerate(tf.data.TFRecordDataset(str(shard))):
            out.append((shard.name, i, offsets[i], tf.train.Example.FromString(rec.numpy())))
    return out


def raw_summary(example):
    out = {}
    for key in sorted(example.features.feature):
        f = example.features.feature[key]
        kind = f.WhichOneof("kind")
        out[key] = [kind, len(getattr(f, kind).value)]
    return out


def check_against_raw(example, meta, steps):
    """The tfds values must be exactly what the record holds (bool as 0/1, float64 via float32)."""
    feats = example.features.feature
    for key, value in meta.items():
        assert key in feats, f"{key} missing from the record"
    for key in steps[0]:
        raw_key = "steps/" + key
        assert raw_key in feats, f"{raw_key} missing from the record"
        f = feats[raw_key]
        kind = f.WhichOneof("kind")
        vals = list(getattr(f, kind).value)
        tf_vals = [s[key] for s in steps]
        if kind == "bytes_list":
            assert len(vals) == len(steps), raw_key
        elif kind == "float_list":
            flat = np.concatenate([np.asarray(v, np.float64).ravel() for v in tf_vals])
            assert np.array_equal(np.asarray(vals, np.float32).astype(np.float64), flat), raw_key
        else:
            flat = np.concatenate([np.asarray(v).astype(np.int64).ravel() for v in tf_vals])
            assert np.array_equal(np.asarray(vals, np.int64), flat), raw_key


def dump_dataset(spec, dataset_dir):
    name, version = spec["name"], spec["version"]
    builder = tfds.builder_from_directory(str(dataset_dir))
    assert builder.name == name and str(builder.version) == version
    read_config = tfds.ReadConfig(interleave_cycle_length=1)  # shard after shard, records in file order
    features = builder.info.features
    step_feature = features["steps"].feature
    step_cams = sorted(image_keys(step_feature))
    top_cams = image_keys(features)
    assert not top_cams, "episode-level images are not handled"
    decoded = list(tfds.as_numpy(builder.as_dataset(split="train", shuffle_files=False, read_config=read_config)))
    encoded = list(tfds.as_numpy(builder.as_dataset(
        split="train", shuffle_files=False, read_config=read_config, decoders=skip_decoders(features))))
    records = raw_records(dataset_dir, name)
    assert len(decoded) == len(encoded) == len(records)

    episodes = []
    for index, (ep, ep_enc, (shard, in_shard, offset, example)) in enumerate(zip(decoded, encoded, records)):
        steps = [flatten(s) for s in ep["steps"]]
        steps_enc = [flatten(s) for s in ep_enc["steps"]]
        meta = flatten({k: v for k, v in ep.items() if k != "steps"})
        check_against_raw(example, meta, steps)
        out_steps = []
        for s, s_enc in zip(steps, steps_enc):
            row = {}
            for key in sorted(s):
                if key in step_cams:
                    enc = s_enc[key]
                    enc = enc if isinstance(enc, bytes) else np.asarray(enc).item()
                    row[key] = encode_image(s[key], enc)
                else:
                    row[key] = encode_value(s[key])
            out_steps.append(row)
        if index == 0:
            for key in step_cams:
                png = OUT / f"{name}.{key.replace('/', '.')}.png"
                enc = steps_enc[0][key]
                enc = enc if isinstance(enc, bytes) else np.asarray(enc).item()
                png.write_bytes(tf.io.encode_png(decode_accurate(enc)).numpy())
        episodes.append({
            "index": index,
            "record": {"shard": shard, "index_in_shard": in_shard, "offset": offset,
                       "features": raw_summary(example)},
            "episode_metadata": {k: encode_value(meta[k]) for k in sorted(meta)},
            "steps": out_steps,
        })
    shards = sorted(p.name for p in dataset_dir.glob(f"{name}-train.tfrecord-*"))
    doc = {
        "dataset": name,
        "version": version,
        "splits": {"train": len(episodes)},
        "shards": shards,
        "cameras": step_cams,
        "episodes": episodes,
    }
    write_json(OUT / f"{name}.expected.json", doc)
    return doc


# ---------------------------------------------------------------------------------------------------------------
# Corrupted copies
# ---------------------------------------------------------------------------------------------------------------


def copy_dataset(src, dst, skip=()):
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for p in sorted(src.iterdir()):
        if p.name not in skip:
            shutil.copyfile(p, dst / p.name)


def write_corrupt(spec, dataset_dir):
    name, version = spec["name"], spec["version"]
    base = OUT / "corrupt"
    if base.exists():
        shutil.rmtree(base)
    shards = sorted(dataset_dir.glob(f"{name}-train.tfrecord-*"))
    rel = lambda kind: f"{kind}/{name}/{version}"  # noqa: E731

    # bad_crc: flip one byte in the middle of the data of the first shard's second record (first if only one)
    copy_dataset(dataset_dir, base / rel("bad_crc"))
    shard = base / rel("bad_crc") / shards[0].name
    recs = read_tfrecord(shard)
    rec_index = 1 if len(recs) > 1 else 0
    rec_offset, data = recs[rec_index]
    flip = rec_offset + 12 + len(data) // 2
    blob = bytearray(shard.read_bytes())
    original = blob[flip]
    blob[flip] ^= 0xFF
    shard.write_bytes(bytes(blob))

    # truncated: cut the last shard in the middle of its last record
    copy_dataset(dataset_dir, base / rel("truncated"))
    last = base / rel("truncated") / shards[-1].name
    recs = read_tfrecord(last)
    last_offset, last_data = recs[-1]
    original_len = last.stat().st_size
    cut = last_offset + 12 + len(last_data) // 2
    last.write_bytes(last.read_bytes()[:cut])

    # missing_features: the prepared folder without features.json
    copy_dataset(dataset_dir, base / rel("missing_features"), skip=("features.json",))

    def tf_error(shard):
        """What tf.data.TFRecordDataset (CRC checks on) says when it reaches the damage."""
        try:
            for _ in tf.data.TFRecordDataset(str(shard)):
                pass
        except tf.errors.DataLossError as e:
            match = re.search(r"(corrupted|truncated) record at \d+", str(e))
            return match.group(0) if match else str(e).splitlines()[0]
        raise AssertionError(f"{shard} reads without error")

    def tfds_error(path):
        try:
            tfds.builder_from_directory(str(path))
        except Exception as e:  # noqa: BLE001 - recording whatever tfds raises
            return f"{type(e).__name__}: {str(e).splitlines()[0]}"
        raise AssertionError(f"{path} loads without error")

    write_json(base / "corrupt.json", {
        "dataset": name,
        "version": version,
        "bad_crc": {
            "dir": rel("bad_crc"),
            "shard": shards[0].name,
            "record_index": rec_index,
            "record_offset": rec_offset,
            "record_data_length": len(data),
            "flipped_byte_offset": flip,
            "original_byte": original,
            "new_byte": original ^ 0xFF,
            "records_in_shard": len(read_tfrecord(shard)),
            "tensorflow_reports": tf_error(shard),
        },
        "truncated": {
            "dir": rel("truncated"),
            "shard": shards[-1].name,
            "original_length": original_len,
            "truncated_length": cut,
            "last_complete_record_end": last_offset,
            "complete_records": len(recs) - 1,
            "cut_record_offset": last_offset,
            "cut_record_data_length": len(last_data),
            "tensorflow_reports": tf_error(last),
        },
        "missing_features": {"dir": rel("missing_features"), "missing": "features.json",
                             "tfds_reports": tfds_error(base / rel("missing_features"))},
    })


# ---------------------------------------------------------------------------------------------------------------


# fixture_io.py has the same two helpers but imports torch, which this (TensorFlow) environment does not have.
def write_json(path, obj):
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size} bytes)")


def check_sizes(out=OUT):
    total = 0
    for f in sorted(out.rglob("*")):
        if f.is_file():
            total += f.stat().st_size
            assert f.stat().st_size < MAX_FILE_BYTES, f"{f} is over 2 MB"
    print(f"{out.relative_to(ROOT)}: {total} bytes in all")
    return total


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for old in list(OUT.glob("*.png")) + list(OUT.glob("*.expected.json")):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        install_package(tmp)
        serialize_deterministically()
        for spec in DATASETS:
            dataset_dir = write_dataset(spec, str(pathlib.Path(tmp) / "data"))
            dump_dataset(spec, dataset_dir)
    # language_table by name (one shard of two episodes, which tests/rlds.rs's damage checks assume), not "the
    # smallest": longer episodes made fractal20220817_data (two shards) the smallest.
    source = next(s for s in DATASETS if s["name"] == "language_table")
    assert len(sorted((OUT / source["name"] / source["version"]).glob("*.tfrecord-*"))) == 1
    write_corrupt(source, OUT / source["name"] / source["version"])
    check_sizes()


if __name__ == "__main__":
    main()
