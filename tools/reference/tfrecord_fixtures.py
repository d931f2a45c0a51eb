#!/usr/bin/env python3
"""Golden fixtures for spear-data's TFRecord and tf.train.Example readers, written by TensorFlow itself.

Run by a developer, never by CI, with the pinned environment (requirements-data.txt) in a virtualenv outside the
repository:

    python3 -m venv /path/to/venv && /path/to/venv/bin/pip install -r tools/reference/requirements-data.txt
    /path/to/venv/bin/python tools/reference/tfrecord_fixtures.py

Writes, under crates/spear-data/tests/fixtures/:

* examples.tfrecord       4 records written by tf.io.TFRecordWriter: an Example with every feature kind and edge
                          values (empty bytes, binary and UTF-8 bytes, ±0, ±inf, NaN, f32 extremes, int64 extremes,
                          empty lists, a feature with no kind), a 1000-float Example (multi-byte packed lengths), an
                          empty Example, and a ~200 KB bytes Example (reads across buffer boundaries).
* examples_expected.json  what TensorFlow reads back (tf.data.TFRecordDataset + tf.train.Example.FromString), per
                          record: feature -> {"kind", "values"}; floats as IEEE-754 bit patterns (u32), int64 as
                          decimal strings, bytes as hex — exact, whatever JSON does with numbers.
"""
import json
import pathlib

import numpy as np
import tensorflow as tf

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/spear-data/tests/fixtures"


def feature(kind, values):
    if kind == "bytes":
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
    if kind == "float":
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def examples():
    rng = np.random.default_rng(0)
    first = {
        "steps/language_instruction": feature("bytes", ["put the carrot on the plate ✓".encode()]),
        "bytes/edge": feature("bytes", [b"", bytes(range(256)), b"\x00\xff"]),
        "steps/action": feature(
            "float",
            [0.0, -0.0, 1.5, -3.25e-8, float("inf"), float("-inf"), float("nan"), 3.4028234663852886e38, 1e-45],
        ),
        "steps/is_first": feature("int64", [0, -1, 2**63 - 1, -(2**63), 300, 1]),
        "empty/bytes": feature("bytes", []),
        "empty/float": feature("float", []),
        "empty/int64": feature("int64", []),
        "no_kind": tf.train.Feature(),
    }
    long_floats = {"steps/observation/state": feature("float", rng.standard_normal(1000).astype(np.float32).tolist())}
    big = {"steps/observation/image": feature("bytes", [rng.integers(0, 256, 200_000, dtype=np.uint8).tobytes()])}
    return [first, long_floats, {}, big]


def describe(example):
    out = {}
    for name, f in example.features.feature.items():
        kind = f.WhichOneof("kind")
        if kind == "bytes_list":
            values = [v.hex() for v in f.bytes_list.value]
        elif kind == "float_list":
            values = np.array(f.float_list.value, dtype=np.float32).view(np.uint32).tolist()
        elif kind == "int64_list":
            values = [str(v) for v in f.int64_list.value]
        else:
            kind, values = "none", []
        out[name] = {"kind": kind, "values": values}
    return out


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "examples.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for features in examples():
            writer.write(tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString())
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size} bytes)")
    records = [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(str(path))]
    expected = {
        "source": "tools/reference/tfrecord_fixtures.py",
        "tensorflow": tf.__version__,
        "records": [describe(e) for e in records],
        "record_lengths": [len(r.numpy()) for r in tf.data.TFRecordDataset(str(path))],
    }
    out = OUT / "examples_expected.json"
    out.write_text(json.dumps(expected, indent=1) + "\n")
    print(f"wrote {out.relative_to(ROOT)} ({out.stat().st_size} bytes)")
    for f in OUT.rglob("*"):
        assert f.stat().st_size < 2 * 1024 * 1024, f


if __name__ == "__main__":
    main()
