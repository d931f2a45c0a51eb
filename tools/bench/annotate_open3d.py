#!/usr/bin/env python3
"""Open3D twin of `spear bench annotate`: statistical outlier removal, then an oriented bounding box of the kept
points, per object cloud.

Run by `spear bench annotate --compare-open3d PYTHON` (never by CI), with the pinned environment of
tools/reference/requirements-annotate.txt (open3d-cpu 0.20.0, numpy).

  --config FILE --repeats N

FILE is JSON from spear: {"nb_neighbors", "std_ratio", "clouds": [{"name", "path", "points"}]}, each cloud a raw
little-endian f64 file of `points` x, y, z triples (metres, camera frame). For each cloud, built once as an Open3D
PointCloud (not timed), one warm-up run and then N timed runs of

    kept, ind = pcd.remove_statistical_outlier(nb_neighbors, std_ratio)
    box = kept.get_oriented_bounding_box()          # robust=False

first with Open3D's default threads (nothing set: its detected hardware concurrency), then again with
open3d.utility.set_max_threads(1). Prints one JSON line: versions, os.cpu_count(), Open3D's get_max_threads() for
each pass, and per cloud the median (upper median for an even N) milliseconds of the whole step, of the outlier
removal and of the box, the process's CPU seconds per wall second over the timed runs, the removed indices, and the
box's centre and extent.
"""
import argparse
import json
import os
import pathlib
import resource
import time

import numpy as np
import open3d as o3d


def median(values):
    return sorted(values)[len(values) // 2]


def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def time_cloud(pcd, nb_neighbors, std_ratio, repeats):
    total, sor, obb = [], [], []
    cpu_seconds = wall_seconds = 0.0
    for run in range(repeats + 1):
        c0, t0 = cpu(), time.perf_counter()
        kept, ind = pcd.remove_statistical_outlier(nb_neighbors=nb_neighbors, std_ratio=std_ratio)
        t1 = time.perf_counter()
        box = kept.get_oriented_bounding_box(robust=False)
        t2, c2 = time.perf_counter(), cpu()
        if run > 0:
            total.append((t2 - t0) * 1e3)
            sor.append((t1 - t0) * 1e3)
            obb.append((t2 - t1) * 1e3)
            cpu_seconds += c2 - c0
            wall_seconds += t2 - t0
    timing = {"total_ms": median(total), "sor_ms": median(sor), "obb_ms": median(obb),
              "cores": cpu_seconds / wall_seconds}
    return timing, ind, box


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True)
    p.add_argument("--repeats", type=int, default=7)
    a = p.parse_args()
    config = json.loads(pathlib.Path(a.config).read_text())
    nb, ratio, repeats = config["nb_neighbors"], config["std_ratio"], max(1, a.repeats)
    clouds = []
    for c in config["clouds"]:
        points = np.fromfile(c["path"], dtype="<f8").reshape(-1, 3)
        assert len(points) == c["points"], f"{c['path']}: {len(points)} points, expected {c['points']}"
        clouds.append((c["name"], o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points)), len(points)))

    default_threads = o3d.utility.get_max_threads()
    results = []
    for name, pcd, n in clouds:
        timing, ind, box = time_cloud(pcd, nb, ratio, repeats)
        kept = set(ind)
        results.append({"name": name, "all_threads": timing, "kept": len(ind),
                        "removed": [i for i in range(n) if i not in kept],
                        "center": np.asarray(box.center).tolist(), "extent": np.asarray(box.extent).tolist()})
    o3d.utility.set_max_threads(1)
    single_threads = o3d.utility.get_max_threads()
    for (name, pcd, _), result in zip(clouds, results):
        result["one_thread"] = time_cloud(pcd, nb, ratio, repeats)[0]

    print(json.dumps({
        "open3d": o3d.__version__, "numpy": np.__version__, "cpu_count": os.cpu_count(),
        "max_threads": default_threads, "max_threads_single": single_threads,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "clouds": results,
    }))


if __name__ == "__main__":
    main()
