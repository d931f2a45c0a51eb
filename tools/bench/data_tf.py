#!/usr/bin/env python3
"""tf.data twin of `spear bench data`, and the writer of its benchmark datasets.

Two modes, both run by `spear bench data --compare-tf PYTHON` (never by CI), with the pinned environment of
tools/reference/requirements-data.txt (tensorflow-cpu 2.21.0, tensorflow-datasets 4.9.10):

  --write DIR --episodes N --steps S
      writes bridge_dataset 1.0.0 and droid 1.0.1 (the published schemas, through tools/reference/rlds_fixtures.py's
      builders) with N episodes of S steps each and camera-like noisy images, so that JPEGs are as large and as slow
      to decode as real frames (~20 KB at 256x256).

  --config FILE --samples N --threads K
      times the Octo/OpenVLA-style tf.data pipeline on the mixture described in FILE (JSON from spear: per dataset its
      folder, weight, external and wrist camera keys; batch size; image sizes): per dataset, tfds
      `as_dataset` (records read and parsed, every image left encoded), flattened to steps, the external and wrist
      images decoded (tf.io.decode_image) and resized without distortion (centre crop to the target aspect, then
      tf.image.resize bilinear with antialias); datasets interleaved with sample_from_datasets by weight; batched;
      prefetched. All of tf.data and TensorFlow's op pools are limited to K threads, as spear's loader is. After
      one warm-up batch, N samples are timed; prints one JSON line {"steps_per_s", "steps_per_cpu_s" (per second of
      the process's user + system CPU time), "peak_rss_mb", "about"}.

The work is a subset of spear's per-step pipeline (which also standardises poses, resamples to 5 Hz, chunks and
normalises): reading and decoding the same files is what the comparison holds fixed.
"""
import argparse
import json
import pathlib
import resource
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]


def write(out, episodes, steps):
    sys.path.insert(0, str(ROOT / "tools/reference"))
    import rlds_fixtures as rf

    out = pathlib.Path(out)
    bridge = [(steps, (0, 1, 2, 3), f"bench task {i}", f"/bench/bridge/{i}.npy", i) for i in range(episodes)]
    droid = [(steps, f"/bench/droid/{i}", (f"bench task {i}", "", "")) for i in range(episodes)]
    specs = [
        dict(name="bridge_dataset", version="1.0.0", seed=1, features=rf.bridge_features,
             episodes=lambda rng: rf.bridge_episodes(rng, bridge, noise=6.0), num_shards=4),
        dict(name="droid", version="1.0.1", seed=2, features=rf.droid_features,
             episodes=lambda rng: rf.droid_episodes(rng, droid, noise=6.0), num_shards=4),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        rf.install_package(tmp)
        for spec in specs:
            rf.write_dataset(spec, str(pathlib.Path(tmp) / "data"), out=out)
    print(json.dumps({"written": str(out)}))


def time_tf(config, samples, threads):
    import tensorflow as tf
    import tensorflow_datasets as tfds

    tf.config.threading.set_inter_op_parallelism_threads(threads)
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    ew, eh = config["external_size"]
    ww, wh = config["wrist_size"]

    def fit(image, width, height):
        # Centre crop to the target's aspect ratio, then resize: never stretched, like spear's Fit::Crop.
        shape = tf.shape(image)
        h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
        scale = tf.minimum(w / width, h / height)
        ch, cw = tf.cast(tf.round(height * scale), tf.int32), tf.cast(tf.round(width * scale), tf.int32)
        top, left = (shape[0] - ch) // 2, (shape[1] - cw) // 2
        image = tf.image.crop_to_bounding_box(image, top, left, ch, cw)
        return tf.cast(tf.image.resize(image, (height, width), antialias=True), tf.uint8)

    def pipeline(entry):
        builder = tfds.builder_from_directory(entry["dir"])
        features = builder.info.features
        decoders = {"steps": {"observation": {k: tfds.decode.SkipDecoding()
                                              for k, f in features["steps"]["observation"].items()
                                              if isinstance(f, tfds.features.Image)}}}
        external = entry["external"].split("/")[-1]
        wrist = entry["wrist"].split("/")[-1] if entry["wrist"] else None
        options = tf.data.Options()
        options.threading.private_threadpool_size = threads
        ds = builder.as_dataset(split="train", shuffle_files=True, decoders=decoders,
                                read_config=tfds.ReadConfig(options=options)).repeat()
        ds = ds.flat_map(lambda episode: episode["steps"])

        def decode(step):
            obs = step["observation"]
            out = {"external": fit(tf.io.decode_image(obs[external], channels=3, expand_animations=False), ew, eh)}
            out["wrist"] = (fit(tf.io.decode_image(obs[wrist], channels=3, expand_animations=False), ww, wh)
                            if wrist else tf.zeros((wh, ww, 3), tf.uint8))
            return out

        return ds.map(decode, num_parallel_calls=threads, deterministic=False)

    datasets = [pipeline(e) for e in config["datasets"]]
    weights = np.array([e["weight"] for e in config["datasets"]], dtype=np.float64)
    mixed = tf.data.Dataset.sample_from_datasets(datasets, weights=list(weights / weights.sum()), seed=0)
    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    batch = config["batch_size"]
    mixed = mixed.batch(batch).prefetch(4).with_options(options)
    it = iter(mixed)
    next(it)  # warm-up: pipelines built, files opened, first shuffle/interleave buffers filled
    batches = max(1, -(-samples // batch))
    cpu = lambda: sum(resource.getrusage(resource.RUSAGE_SELF)[:2])  # noqa: E731  user + system seconds
    start, cpu_start = time.perf_counter(), cpu()
    for _ in range(batches):
        b = next(it)
        b["external"].numpy()
    seconds, cpu_seconds = time.perf_counter() - start, cpu() - cpu_start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    about = f"tensorflow {tf.__version__}, tfds {tfds.__version__}, {threads} threads"
    print(json.dumps({"steps_per_s": batches * batch / seconds, "steps_per_cpu_s": batches * batch / cpu_seconds,
                      "peak_rss_mb": peak_mb, "about": about}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--write")
    p.add_argument("--episodes", type=int, default=16)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--config")
    p.add_argument("--samples", type=int, default=1024)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    if a.write:
        write(a.write, a.episodes, a.steps)
    else:
        time_tf(json.loads(pathlib.Path(a.config).read_text()), a.samples, a.threads)


if __name__ == "__main__":
    main()
