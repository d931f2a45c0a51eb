#!/usr/bin/env python3
"""Golden fixtures for spear-annotate (issue 7), from the reference implementations: Open3D (statistical outlier
removal, oriented bounding boxes, convex hulls), scipy (an independent k-NN and Qhull), pycocotools (COCO RLE), the
PyPI `lzstring` package (Ego-Exo4D's LZString wrapping) and OpenCV (MoGe's EXR/PNG/JPEG writer, used exactly as MoGe's
moge/scripts/infer.py uses it).

Run by a developer, never by CI, with the pinned environment (Open3D needs libusb-1.0-0 from apt on Debian):

    python3 -m venv /path/to/venv && /path/to/venv/bin/pip install -r tools/reference/requirements-annotate.txt
    /path/to/venv/bin/python tools/reference/annotate_fixtures.py

Writes, under crates/spear-annotate/tests/fixtures/ (every file < 2 MB, everything seeded and deterministic):

* sor.json   `PointCloud.remove_statistical_outlier(nb_neighbors, std_ratio)` on Gaussian blobs with far outliers
             (N = 200, 1000, 5000), exact duplicates, N < k, N = 1 / 2 / 3, nb_neighbors = 1, a noisy plane, an exact
             binary lattice (exact distance ties), an empty cloud and illegal parameters. Per cloud: the float64 input
             points (JSON numbers written with Python's shortest round-trip repr, plus the SHA-256 of the
             little-endian f64 bytes so a reader can assert it parsed them bit-exactly); per run: the parameters,
             Open3D's kept indices (or its error), and the per-point mean neighbour distances, cloud mean, std and
             threshold recomputed independently (scipy cKDTree + numpy, self counted among the k neighbours, Open3D's
             summation order), asserted to reproduce Open3D's kept set and compared bit-for-bit with the mean
             distances that Open3D's own KDTreeFlann gives.
* obb.json   `get_oriented_bounding_box(robust=False)` and `robust=True` on elongated blobs with a known rotation, a
             uniform box, a box's surface (exact and noisy), 4 / 6 / 10 points, and the degenerate cases (coplanar,
             coplanar + 1e-9 noise, collinear, identical points, 0-3 points): center, R (columns = axes), extent,
             volume and get_box_points() in Open3D's order, or the exception's text; the hull vertex indices Open3D
             uses (`compute_convex_hull(joggle_inputs=robust)`), whether scipy's Qhull (ConvexHull with the same
             options) picks the same vertex set, the hull's mean / covariance / eigenvalues, and a numpy re-derivation
             of the box from those hull vertices (how close it comes, and how much the QJ joggle moves it).
* rle.json   COCO RLE: masks (blobs, empty, full, single pixel, first / last pixel, 7x13 noise, 1x1, a 120x160 blob)
             with pycocotools.mask.encode's compressed `counts`, the uncompressed run lengths (column-major, starting
             with a 0-run), the decoded mask as row strings, area and toBbox; an independent Python port of cocoapi's
             rleToString / rleFrString is asserted to agree. Plus one Ego-Exo4D relations-style annotation whose
             `encodedMask` is LZString.compressToEncodedURIComponent(counts), decoded the way
             ego4d/research/util/masks.py decodes it.
* moge/      a MoGe `--maps` output folder for a synthetic 48x64 scene (pinhole camera pitched 20 deg down, 0.6 m over a
             table plane, two yawed boxes): points.exr (cv2, RGB2BGR, float32, so R=x G=y B=z; +inf where invalid),
             depth.exr (one channel, "Y"), mask.png (255 valid), fov.json (degrees, 2 decimals), image.jpg; plus
             scene.json (not a MoGe file) with the ground truth: intrinsics, labels, instance masks masks/<id>.png
             (the true silhouette dilated by one pixel, like a loose segmenter), each box's true pose / corners, and
             what Open3D gives on each object's cloud (SOR then OBB), read back from the EXR as the Rust tool will.
             The files are read back with cv2, and the EXRs are also decoded by hand (header + zlib) to check that
             channel R holds x and that depth.exr's single channel is "Y".
"""
import hashlib
import importlib.metadata
import json
import math
import os
import pathlib
import struct
import zlib

os.environ["OPENCV_IO_ENABLE_OPENEXR"] = "1"  # as MoGe's infer.py does, before importing cv2

import cv2  # noqa: E402
import lzstring  # noqa: E402
import numpy as np  # noqa: E402
import open3d as o3d  # noqa: E402
import pycocotools.mask as mask_utils  # noqa: E402
from scipy.spatial import ConvexHull, cKDTree  # noqa: E402
from scipy.spatial.transform import Rotation  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/spear-annotate/tests/fixtures"
MAX_BYTES = 2 * 1024 * 1024

o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)

VERSIONS = {"open3d": o3d.__version__} | {name: importlib.metadata.version(name) for name in
                                           ("numpy", "scipy", "opencv-python-headless", "pycocotools", "lzstring")}


# ---------------------------------------------------------------------------------------------------------------- io

def _dump(obj, ind=0):
    """JSON with dicts indented one space per level and lists of scalars (or of lists of scalars) on one line."""
    pad, pad1 = " " * ind, " " * (ind + 1)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{pad1}{json.dumps(str(k))}: {_dump(v, ind + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, (list, tuple)):
        flat = all(not isinstance(v, (dict, list, tuple)) and not (isinstance(v, str) and len(v) > 40) for v in obj)
        rows = all(isinstance(v, (list, tuple)) and all(not isinstance(w, (dict, list, tuple)) for w in v) for v in obj)
        if flat or rows:
            return json.dumps(obj, separators=(",", ":"), allow_nan=False)
        return "[\n" + ",\n".join(pad1 + _dump(v, ind + 1) for v in obj) + "\n" + pad + "]"
    return json.dumps(obj, allow_nan=False)


def write_json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_dump(obj) + "\n")
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size} bytes)")


def fl(a):
    """float64 array -> nested lists of Python floats (repr round-trips exactly); non-finite -> None."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 0:
        v = float(a)
        return v if math.isfinite(v) else None
    return [fl(x) for x in a]


def sha(points):
    return hashlib.sha256(np.ascontiguousarray(points, dtype="<f8").tobytes()).hexdigest()


def cloud(points):
    return o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(points, dtype=np.float64).reshape(-1, 3)))


def err_text(e):
    """The first line of an Open3D / Qhull exception, without ANSI colours and without the C++ signature."""
    s = str(e).replace("\x1b[1;31m", "").replace("\x1b[0;m", "").strip()
    first = s.splitlines()[0] if s else ""
    if first.startswith("[Open3D Error]") and ": " in first:
        first = "[Open3D Error] " + first.rsplit(": ", 1)[1]
    return {"type": type(e).__name__, "message": first}


def points_entry(P):
    return {"n": int(len(P)), "points_sha256_f64le": sha(P.reshape(-1, 3)), "points": fl(P.reshape(-1, 3))}


# ---------------------------------------------------------------------------------------------------------------- SOR

def sor_reference(P, k):
    """Open3D's RemoveStatisticalOutliers recomputed: per point, the min(k, N) nearest squared distances (self
    included) as (dx*dx + dy*dy) + dz*dz (nanoflann's order), sorted ascending, sqrt'ed, summed left to right, divided
    by their count. cKDTree only proposes candidates (k + 8, so ULP-level disagreements in its own distances cannot
    change which k values are smallest); the distances are recomputed here."""
    n = len(P)
    kk = min(k, n)
    q = min(n, kk + 8)
    _, idx = cKDTree(P).query(P, k=q)
    idx = idx.reshape(n, q)
    d = P[idx] - P[:, None, :]
    d2 = (d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1]) + d[..., 2] * d[..., 2]
    d2 = np.sort(d2, axis=1)[:, :kk]
    dist = np.sqrt(d2)
    s = np.zeros(n)
    for j in range(kk):
        s = s + dist[:, j]
    return s / kk


def open3d_knn_avg(P, k):
    """The same mean distances from Open3D's own KDTreeFlann (nanoflann): its squared distances, Open3D's arithmetic."""
    tree = o3d.geometry.KDTreeFlann(cloud(P))
    out = np.empty(len(P))
    for i, p in enumerate(P):
        _, _, d2 = tree.search_knn_vector_3d(p, k)
        dist = np.sqrt(np.asarray(d2))
        acc = 0.0
        for v in dist:
            acc += float(v)
        out[i] = acc / len(dist)
    return out


def sor_threshold(avg):
    """cloud_mean, std and threshold numerator exactly as PointCloud.cpp: sums left to right in index order, avg <= 0
    adds nothing but still counts in the denominator (valid_distances = N), Bessel's correction."""
    n = len(avg)
    mean = 0.0
    for a in avg:
        mean = mean + float(a) if a > 0 else mean
    mean /= n
    sq = 0.0
    for a in avg:
        sq = sq + ((float(a) - mean) * (float(a) - mean) if a > 0 else 0.0)
    std = math.sqrt(sq / (n - 1)) if n > 1 else float("nan")
    return mean, std


def sor_case(name, P, runs, note=""):
    P = np.asarray(P, dtype=np.float64).reshape(-1, 3)
    case = {"name": name}
    if note:
        case["note"] = note
    case.update(points_entry(P))
    case["runs"] = []
    for k, ratio in runs:
        run = {"nb_neighbors": k, "std_ratio": ratio}
        try:
            _, kept = cloud(P).remove_statistical_outlier(nb_neighbors=k, std_ratio=ratio)
            kept = [int(i) for i in kept]
        except RuntimeError as e:
            run["error"] = err_text(e)
            assert k < 1 or ratio <= 0, (name, k, ratio, e)
            case["runs"].append(run)
            continue
        run["kept"] = kept
        if len(P) == 0:
            assert kept == []
            run.update({"avg_distances": [], "cloud_mean": None, "std": None, "threshold": None})
            case["runs"].append(run)
            continue
        avg = sor_reference(P, k)
        o3d_avg = open3d_knn_avg(P, k)
        bit_equal = bool(np.array_equal(avg, o3d_avg))
        mean, std = sor_threshold(avg)
        thr = mean + ratio * std
        predicted = [i for i in range(len(P)) if avg[i] > 0 and avg[i] < thr]
        run["avg_distances"] = fl(avg)
        run["cloud_mean"] = fl(mean)
        run["std"] = fl(std)
        run["threshold"] = fl(thr)
        pos = avg[avg > 0]
        run["min_margin_to_threshold"] = fl(np.abs(pos - thr).min()) if len(pos) and math.isfinite(thr) else None
        run["zero_avg_count"] = int((avg == 0).sum())
        run["checks"] = {
            "numpy_avg_bit_equal_to_open3d_kdtreeflann": bit_equal,
            "max_abs_avg_diff": float(np.abs(avg - o3d_avg).max()),
            "recomputed_kept_equals_open3d": predicted == kept,
        }
        if predicted != kept:
            run["checks"]["disagreement"] = {"only_open3d": sorted(set(kept) - set(predicted)),
                                             "only_recomputed": sorted(set(predicted) - set(kept))}
            print(f"  !! SOR {name} k={k} ratio={ratio}: recomputation disagrees with Open3D")
        case["runs"].append(run)
    return case


def blob_with_outliers(rng, n_in, n_out, center, sigma, r_out):
    inl = rng.standard_normal((n_in, 3)) * sigma + center
    dirs = rng.standard_normal((n_out, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    out = center + dirs * rng.uniform(r_out[0], r_out[1], (n_out, 1))
    P = np.concatenate([inl, out])
    return P[rng.permutation(len(P))]


def make_sor():
    rng = np.random.default_rng(20260701)
    c = np.array([0.12, -0.05, 1.4])
    cases = []
    b200 = blob_with_outliers(rng, 195, 5, c, [0.03, 0.02, 0.025], (0.3, 0.6))
    cases.append(sor_case("blob_200", b200, [(20, 2.0), (10, 1.2), (1, 2.0)],
                          "Gaussian blob (sigma 2-3 cm) with 5 far outliers, shuffled; nb_neighbors = 1 removes all"))
    cases.append(sor_case("blob_1000", blob_with_outliers(rng, 990, 10, c, [0.04, 0.03, 0.02], (0.3, 0.8)),
                          [(20, 2.0), (10, 1.2), (50, 0.5)]))
    cases.append(sor_case("blob_5000", blob_with_outliers(rng, 4975, 25, c, [0.05, 0.04, 0.03], (0.4, 1.0)),
                          [(20, 2.0)]))

    base = rng.standard_normal((120, 3)) * 0.02 + c
    dup25 = np.repeat(base[7:8], 24, axis=0)  # with base[7] itself: 25 identical points
    dup2 = base[30:31].copy()  # with base[30]: 2 identical points
    dup3 = np.repeat(base[55:56], 2, axis=0)  # with base[55]: 3 identical points
    P = np.concatenate([base, dup25, dup2, dup3])
    P = P[rng.permutation(len(P))]
    cases.append(sor_case("duplicates", P, [(20, 2.0), (2, 2.0), (3, 1.0), (26, 2.0)],
                          "120 blob points plus exact copies: one point 25 times, one twice, one 3 times; a group of "
                          ">= k identical points has mean distance 0 and is removed"))

    cases.append(sor_case("n5_k20", rng.standard_normal((5, 3)) * 0.1 + c, [(20, 2.0)], "N < k: all N points used"))
    cases.append(sor_case("n3_k20", rng.standard_normal((3, 3)) * 0.1 + c, [(20, 2.0)]))
    cases.append(sor_case("n2_k20", rng.standard_normal((2, 3)) * 0.1 + c, [(20, 2.0)],
                          "both means equal the cloud mean, std = 0, threshold = mean; strict < removes both"))
    cases.append(sor_case("n1_k20", rng.standard_normal((1, 3)) * 0.1 + c, [(20, 2.0)],
                          "mean distance 0 (self only) and std = sqrt(0/0) = NaN: nothing kept"))

    R = Rotation.from_euler("xyz", [35, -20, 10], degrees=True).as_matrix()
    uv = rng.uniform(-0.5, 0.5, (600, 2)) * [0.8, 0.6]
    plane = np.c_[uv, rng.standard_normal(600) * 0.001] @ R.T + [0.0, 0.2, 1.8]
    off = np.c_[rng.uniform(-0.3, 0.3, (8, 2)), rng.choice([-1, 1], 8) * rng.uniform(0.05, 0.2, 8)] @ R.T + [0.0, 0.2,
                                                                                                           1.8]
    P = np.concatenate([plane, off])
    cases.append(sor_case("plane_noise", P[rng.permutation(len(P))], [(20, 2.0), (10, 1.2)],
                          "tilted 0.8 x 0.6 m plane, 1 mm normal noise, 8 points 5-20 cm off the plane"))

    g = np.arange(6) * 0.125
    lat = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3) + [0.5, -0.25, 1.0]
    cases.append(sor_case("lattice", lat, [(7, 1.0), (6, 0.5), (27, 1.0)],
                          "6x6x6 grid, spacing 0.125 (binary-exact coordinates and distances): many exact ties in "
                          "the k-NN distances and in the mean distances"))
    cases.append(sor_case("empty", np.zeros((0, 3)), [(20, 2.0)]))
    cases.append(sor_case("illegal_parameters", rng.standard_normal((5, 3)), [(0, 2.0), (20, 0.0), (20, -1.0)],
                          "nb_neighbors < 1 or std_ratio <= 0 raise RuntimeError in Open3D 0.20"))
    for cs in cases:
        for r in cs["runs"]:
            ck = r.get("checks")
            if ck:
                assert ck["recomputed_kept_equals_open3d"], (cs["name"], r["nb_neighbors"])
    write_json(OUT / "sor.json", {
        "generator": "tools/reference/annotate_fixtures.py",
        "versions": VERSIONS,
        "algorithm": (
            "Open3D 0.20 PointCloud::RemoveStatisticalOutliers. For each point i: the min(k, N) nearest neighbours "
            "INCLUDING i itself (distance 0), squared distance (dx*dx + dy*dy) + dz*dz, sqrt, summed in ascending "
            "order, divided by their count -> avg[i]. valid = N. cloud_mean = (sum over avg > 0, in index order) / N. "
            "std = sqrt((sum over avg > 0 of (avg - cloud_mean)^2) / (N - 1)). threshold = cloud_mean + std_ratio * "
            "std. Keep i iff avg[i] > 0 and avg[i] < threshold (strict); kept indices ascending. nb_neighbors < 1 "
            "or std_ratio <= 0 is an error; an empty cloud gives an empty result."),
        "notes": [
            "points are float64; parse with a correctly rounded parser (Rust's str::parse::<f64> or serde_json with "
            "its float_roundtrip feature) and check points_sha256_f64le (SHA-256 of the little-endian f64 bytes, "
            "row-major xyz) to be sure the input is bit-exact",
            "avg_distances, cloud_mean, std and threshold are the independent numpy/scipy recomputation; where "
            "checks.numpy_avg_bit_equal_to_open3d_kdtreeflann is true they are also bit-equal to what Open3D's "
            "KDTreeFlann gives",
            "min_margin_to_threshold is how close the nearest point is to the cut: a Rust kept set may only differ "
            "from Open3D's if its arithmetic differs by more than that",
            "null stands for NaN (std of a single point) or for no value (empty cloud)",
        ],
        "cases": cases,
    })


# ---------------------------------------------------------------------------------------------------------------- OBB

def hull_info(P, robust):
    mesh, idx = cloud(P).compute_convex_hull(joggle_inputs=robust)
    idx = [int(i) for i in idx]
    V = np.asarray(mesh.vertices)
    try:
        sh = ConvexHull(P, qhull_options="QJ" if robust else "")  # scipy always adds Qt: same options as Open3D
        scipy_set = sorted(int(i) for i in sh.vertices)
        scipy_same = scipy_set == sorted(idx)
    except Exception as e:  # noqa: BLE001
        scipy_set, scipy_same = err_text(e), False
    return mesh, idx, V, scipy_set, scipy_same


def cumulant_mean_cov(V):
    """utility::ComputeMeanAndCovariance: one pass of sums of x, x*x, x*y ..., divided by N, then E[xy] - E[x]E[y]."""
    c = np.zeros(9)
    for p in V:
        x, y, z = (float(v) for v in p)
        c += [x, y, z, x * x, x * y, x * z, y * y, y * z, z * z]
    c /= len(V)
    m = c[:3]
    cov = np.array([[c[3] - m[0] * m[0], c[4] - m[0] * m[1], c[5] - m[0] * m[2]],
                    [c[4] - m[0] * m[1], c[6] - m[1] * m[1], c[7] - m[1] * m[2]],
                    [c[5] - m[0] * m[2], c[7] - m[1] * m[2], c[8] - m[2] * m[2]]])
    return m, cov


def numpy_obb(P, idx, V):
    """OrientedBoundingBox::CreateFromPoints recomputed with numpy's eigh: mean / covariance of the hull mesh's vertex
    coordinates V (joggled ones under QJ), eigenvectors sorted by descending eigenvalue, col2 = col0 x col1, AABB of
    the ORIGINAL coordinates P[idx] in that frame."""
    mean, cov = cumulant_mean_cov(V)
    w, E = np.linalg.eigh(cov)
    order = np.argsort(-w, kind="stable")
    w, E = w[order], E[:, order]
    E[:, 0] /= np.linalg.norm(E[:, 0])
    E[:, 1] /= np.linalg.norm(E[:, 1])
    E[:, 2] = np.cross(E[:, 0], E[:, 1])
    Q = (P[idx] - mean) @ E
    lo, hi = Q.min(0), Q.max(0)
    center = E @ ((lo + hi) * 0.5) + mean
    return center, E, hi - lo, w


def obb_case(name, P, note="", truth=None):
    P = np.asarray(P, dtype=np.float64).reshape(-1, 3)
    case = {"name": name}
    if note:
        case["note"] = note
    if truth:
        case["truth"] = truth
    case.update(points_entry(P))
    for robust in (False, True):
        key = "robust" if robust else "plain"
        res = {"robust": robust}
        try:
            o = cloud(P).get_oriented_bounding_box(robust=robust)
        except RuntimeError as e:
            res["error"] = err_text(e)
            try:
                hull_info(P, robust)
                res["hull_error"] = None
            except RuntimeError as e2:
                res["hull_error"] = err_text(e2)
            case[key] = res
            continue
        R = np.asarray(o.R)
        res.update({
            "center": fl(o.center), "R": fl(R), "extent": fl(o.extent), "volume": fl(o.volume()),
            "det_R": fl(np.linalg.det(R)), "box_points": fl(np.asarray(o.get_box_points())),
        })
        mesh, idx, V, scipy_set, scipy_same = hull_info(P, robust)
        hull_mean, hull_cov = cloud(V).compute_mean_and_covariance()
        res["hull"] = {
            "open3d_vertex_indices": idx,
            "vertex_indices_sorted": sorted(idx),
            "n_vertices": len(idx),
            "n_triangles": int(len(mesh.triangles)),
            "scipy_convexhull_vertices": scipy_set,
            "scipy_same_vertex_set": scipy_same,
            "mesh_vertices_equal_original_points": bool(np.array_equal(V, P[idx])),
            "max_joggle": float(np.abs(V - P[idx]).max()),
            "mean": fl(hull_mean), "covariance": fl(hull_cov),
        }
        c2, E2, ext2, w2 = numpy_obb(P, idx, V)
        res["hull"]["eigenvalues_desc"] = fl(w2)
        axis_dots = [float(abs(E2[:, j] @ R[:, j])) for j in range(3)]
        chk = {
            "numpy_center_max_abs_diff": float(np.abs(c2 - o.center).max()),
            "numpy_extent_max_abs_diff": float(np.abs(ext2 - o.extent).max()),
            "numpy_axis_abs_dots": axis_dots,
        }
        if robust and not res["hull"]["mesh_vertices_equal_original_points"]:
            c3, E3, ext3, _ = numpy_obb(P, idx, P[idx])
            chk["unjoggled_center_max_abs_diff"] = float(np.abs(c3 - o.center).max())
            chk["unjoggled_extent_max_abs_diff"] = float(np.abs(ext3 - o.extent).max())
            chk["unjoggled_axis_abs_dots"] = [float(abs(E3[:, j] @ R[:, j])) for j in range(3)]
        res["checks"] = chk
        # Points must be inside the box (Open3D's own test, with a little slack for rounding).
        d = (P - o.center) @ R
        res["checks"]["all_points_inside_with_1e-9_slack"] = bool(np.all(np.abs(d) <= o.extent / 2 + 1e-9))
        case[key] = res
    return case


def box_truth(center, R, extent):
    ob = o3d.geometry.OrientedBoundingBox(np.asarray(center, float), np.asarray(R, float), np.asarray(extent, float))
    return {"center": fl(center), "R": fl(R), "extent": fl(extent), "box_points": fl(np.asarray(ob.get_box_points()))}


def box_surface(rng, n, ext):
    """n points uniformly on the surface of an axis-aligned box of full extents ext, centred at 0."""
    a = np.array([ext[1] * ext[2], ext[0] * ext[2], ext[0] * ext[1]])
    face_axis = rng.choice(3, n, p=a / a.sum())
    Q = (rng.uniform(-0.5, 0.5, (n, 3))) * ext
    sign = rng.choice([-0.5, 0.5], n)
    Q[np.arange(n), face_axis] = sign * np.asarray(ext)[face_axis]
    return Q


def make_obb():
    rng = np.random.default_rng(20260702)
    cases = []
    R1 = Rotation.from_euler("zyx", [30, 15, -10], degrees=True).as_matrix()
    t1 = np.array([0.2, -0.1, 2.5])
    P = rng.standard_normal((500, 3)) * [0.5, 0.15, 0.05] @ R1.T + t1
    cases.append(obb_case("gaussian_elongated_500", P, "Gaussian, sigma (0.5, 0.15, 0.05) along R_true's columns",
                          {"R_true": fl(R1), "center_true": fl(t1), "sigma": [0.5, 0.15, 0.05]}))
    R2 = Rotation.from_rotvec([0.3, -0.8, 0.5]).as_matrix()
    t2 = np.array([-0.4, 0.3, 1.7])
    e2 = np.array([0.6, 0.3, 0.1])
    P = rng.uniform(-0.5, 0.5, (2000, 3)) * e2 @ R2.T + t2
    cases.append(obb_case("uniform_box_2000", P, "uniform inside a box", box_truth(t2, R2, e2)))
    R3 = Rotation.from_euler("yxz", [40, -25, 5], degrees=True).as_matrix()
    t3 = np.array([0.05, 0.25, 1.2])
    e3 = np.array([0.4, 0.25, 0.12])
    S = box_surface(rng, 1200, e3)
    cases.append(obb_case("box_surface_1200", S @ R3.T + t3,
                          "uniform on a box's surface, rotated: many (nearly) coplanar points on each face",
                          box_truth(t3, R3, e3)))
    cases.append(obb_case("box_surface_noisy_1200", (S + rng.standard_normal(S.shape) * 0.001) @ R3.T + t3,
                          "the same surface points with 1 mm Gaussian noise", box_truth(t3, R3, e3)))
    cases.append(obb_case("tetrahedron_4", [[0.1, 0.2, 1.0], [0.5, 0.1, 1.1], [0.2, 0.6, 1.05], [0.3, 0.3, 1.6]]))
    cases.append(obb_case("small_6", rng.standard_normal((6, 3)) * 0.1 + [0, 0, 1.5]))
    cases.append(obb_case("small_10", rng.standard_normal((10, 3)) * [0.2, 0.1, 0.05] + [0.3, -0.2, 2.0],
                          "10 points: some are inside the hull"))
    xy = rng.uniform(-0.6, 0.6, (200, 2))
    cases.append(obb_case("coplanar_exact", np.c_[xy, np.full(200, 1.0)], "z = 1.0 exactly"))
    cases.append(obb_case("coplanar_noise_1e-9", np.c_[xy, 1.0 + rng.standard_normal(200) * 1e-9]))
    x = rng.uniform(-1.0, 1.0, 20)
    cases.append(obb_case("collinear", np.c_[x, np.full(20, 0.5), np.full(20, 2.0)], "y, z constant"))
    cases.append(obb_case("identical_10", np.tile([[0.1, 0.2, 0.3]], (10, 1))))
    cases.append(obb_case("three_points", [[0.0, 0.0, 1.0], [1.0, 0.0, 1.0], [0.0, 1.0, 1.5]]))
    cases.append(obb_case("two_points", [[0.0, 0.0, 1.0], [1.0, 0.5, 1.5]]))
    cases.append(obb_case("empty", np.zeros((0, 3))))
    write_json(OUT / "obb.json", {
        "generator": "tools/reference/annotate_fixtures.py",
        "versions": VERSIONS,
        "algorithm": (
            "Open3D 0.20 OrientedBoundingBox::CreateFromPoints(points, robust): Qhull with options 'Qt' (robust: "
            "'Qt QJ'); mean and covariance (E[xy] - E[x]E[y], one pass) of the hull mesh's vertex coordinates; "
            "Eigen SelfAdjointEigenSolver, columns reordered by descending eigenvalue; R.col0, R.col1 normalised, "
            "R.col2 = col0 x col1; AABB of R^T (points[hull_idx] - mean) over the ORIGINAL coordinates; "
            "center = R * aabb_center + mean, extent = aabb extent."),
        "box_points_order": "center + R*(sx*ex/2, sy*ey/2, sz*ez/2) with (sx,sy,sz) = "
                            "---, +--, -+-, --+, +++, -++, +-+, ++-",
        "notes": [
            "the signs of R's columns are Eigen's choice (arbitrary): compare axes up to sign (|dot| ~ 1), and "
            "box_points as a set or after mapping your R's signs to these; center, extent and volume do not depend "
            "on the signs",
            "hull.open3d_vertex_indices is the order Open3D's mesh lists the hull vertices (first appearance over "
            "Qhull's facets); the set (vertex_indices_sorted) is what matters for the box",
            "hull.scipy_same_vertex_set: scipy.spatial.ConvexHull with the same Qhull options selects the same "
            "vertices (it is the same Qhull 2020.2)",
            "under QJ (robust) the hull mesh's vertex coordinates are the JOGGLED ones (hull.max_joggle), and Open3D "
            "takes the mean / covariance from them: the joggle moves R and the center by ~1e-10 (checks.unjoggled_*); "
            "the AABB itself uses the original coordinates",
            "extent is the AABB size in the PCA frame, not the variance: it is usually but not always descending "
            "(coplanar_noise_1e-9 with robust=true is not)",
            "on points lying on flat faces (box_surface_1200) the two hull modes pick different vertex sets: 'Qt' "
            "merges coplanar facets so face-interior points are not vertices, 'Qt QJ' joggles every point into "
            "general position and keeps far more of them; the PCA, and so the box, differs by a few percent. Any "
            "other hull (parry3d, ...) must be checked against the robust=false vertex set on such input",
            "points are float64 (see sor.json's note on parsing; points_sha256_f64le checks it)",
            "error: the exception Open3D raised (RuntimeError with Qhull's message); hull_error: what "
            "compute_convex_hull raised for the same input, null when it succeeded",
        ],
        "cases": cases,
    })
    return cases


# ---------------------------------------------------------------------------------------------------------------- RLE

def rle_counts(mask):
    """Uncompressed COCO RLE: column-major runs, starting with a (possibly empty) 0-run."""
    flat = np.asarray(mask, dtype=np.uint8).flatten(order="F")
    counts, cur, run = [], 0, 0
    for v in flat:
        if v != cur:
            counts.append(run)
            cur, run = v, 0
        run += 1
    counts.append(run)
    return counts


def rle_to_string(cnts):
    """cocoapi maskApi.c rleToString."""
    out = []
    for i, x in enumerate(cnts):
        if i > 2:
            x -= cnts[i - 2]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def rle_from_string(s):
    """cocoapi maskApi.c rleFrString."""
    cnts, p = [], 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(cnts) > 2:
            x += cnts[-2]
        cnts.append(x)
    return cnts


def rows(mask):
    return ["".join("1" if v else "0" for v in r) for r in np.asarray(mask)]


def discs(h, w, spec):
    yy, xx = np.mgrid[0:h, 0:w]
    m = np.zeros((h, w), bool)
    for cy, cx, r in spec:
        m |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    return m


def rle_case(name, mask, note=""):
    mask = np.asarray(mask, dtype=np.uint8)
    h, w = mask.shape
    enc = mask_utils.encode(np.asfortranarray(mask))
    counts = enc["counts"].decode("ascii")
    cnts = rle_counts(mask)
    assert enc["size"] == [h, w]
    assert rle_to_string(cnts) == counts, name
    assert rle_from_string(counts) == cnts, name
    unc = mask_utils.frPyObjects({"size": [h, w], "counts": cnts}, h, w)  # SAM2 "uncompressed_rle" -> compressed
    assert unc["counts"].decode("ascii") == counts, name
    dec = mask_utils.decode({"size": [h, w], "counts": counts.encode("ascii")})
    assert np.array_equal(dec, mask), name
    area = int(mask_utils.area(enc))
    assert area == int(mask.sum())
    bbox = [float(v) for v in mask_utils.toBbox(enc)]
    case = {"name": name}
    if note:
        case["note"] = note
    case.update({"size": [h, w], "counts": counts, "uncompressed_counts": cnts, "area": area, "bbox_xywh": bbox,
                 "mask_rows": rows(mask)})
    return case


def make_rle():
    rng = np.random.default_rng(20260703)
    cases = [
        rle_case("blobs_24x32", discs(24, 32, [(6, 8, 4.5), (15, 20, 6), (20, 5, 2.2)]),
                 "three discs (two overlap)"),
        rle_case("empty_10x12", np.zeros((10, 12)), "all zero: counts [h*w]"),
        rle_case("full_10x12", np.ones((10, 12)), "all one: counts [0, h*w]"),
        rle_case("single_pixel_7x13", np.pad(np.ones((1, 1)), ((3, 3), (5, 7))), "pixel (row 3, col 5)"),
        rle_case("first_pixel_7x13", np.pad(np.ones((1, 1)), ((0, 6), (0, 12))),
                 "pixel (0, 0): the counts start with an empty 0-run"),
        rle_case("last_pixel_7x13", np.pad(np.ones((1, 1)), ((6, 0), (12, 0))), "pixel (6, 12)"),
        rle_case("noise_7x13", rng.random((7, 13)) < 0.5, "Bernoulli(0.5): many short runs, negative deltas"),
        rle_case("column_stripes_7x13", np.tile(np.arange(13) % 3 == 0, (7, 1)),
                 "full columns: runs of exactly h"),
        rle_case("row_stripes_7x13", np.tile((np.arange(7) % 2 == 1)[:, None], (1, 13)),
                 "full rows: shows the column-major order"),
        rle_case("one_1x1", np.ones((1, 1))),
        rle_case("zero_1x1", np.zeros((1, 1))),
        rle_case("blob_120x160", discs(120, 160, [(60, 70, 35), (30, 130, 12)]) & ~discs(120, 160, [(60, 70, 10)]),
                 "large runs: multi-character counts; a disc with a hole plus a small disc"),
    ]
    # Ego-Exo4D relations: encodedMask = LZString.compressToEncodedURIComponent(COCO compressed counts)
    eh, ew = 60, 80
    emask = discs(eh, ew, [(30, 35, 14), (12, 65, 6)]).astype(np.uint8)
    counts = mask_utils.encode(np.asfortranarray(emask))["counts"].decode("ascii")
    lz = lzstring.LZString()
    encoded = lz.compressToEncodedURIComponent(counts)
    assert lz.decompressFromEncodedURIComponent(encoded) == counts
    dec = mask_utils.decode({"size": [eh, ew], "counts": lz.decompressFromEncodedURIComponent(encoded).encode()})
    assert np.array_equal(dec, emask)
    take = "0b5ad7e1-0000-4000-8000-spearfixture"
    ego = {
        "note": ("relations_{train,val,test}.json layout (annotations -> take_uid -> object_masks -> object name -> "
                 "camera name -> annotation -> frame index -> {width, height, encodedMask}); decode as "
                 "ego4d/research/util/masks.py: decompressFromEncodedURIComponent(encodedMask) gives the COCO "
                 "compressed counts string, then {size: [height, width], counts} -> pycocotools.mask.decode. "
                 "The take uid, names and frame numbers here are made up. The PyPI lzstring output was also "
                 "checked (by hand, not by this script) to be identical to the JavaScript lz-string 1.5.0's "
                 "compressToEncodedURIComponent, and to decode with its decompressFromEncodedURIComponent."),
        "relations": {"annotations": {take: {
            "take_name": "spear_fixture_take",
            "object_masks": {"cutting board_0": {"aria01_214-1": {
                "annotated_frames": [30, 60],
                "annotation": {"30": {"width": ew, "height": eh, "encodedMask": encoded}},
            }}},
        }}},
        "expected": {"take_uid": take, "object": "cutting board_0", "camera": "aria01_214-1", "frame": "30",
                     "counts": counts, "area": int(emask.sum()),
                     "bbox_xywh": [float(v) for v in mask_utils.toBbox(mask_utils.encode(np.asfortranarray(emask)))],
                     "mask_rows": rows(emask)},
    }
    write_json(OUT / "rle.json", {
        "generator": "tools/reference/annotate_fixtures.py",
        "versions": VERSIONS,
        "format": ("COCO RLE (cocoapi maskApi.c): size = [h, w]; the mask is read column-major (Fortran order: down "
                   "each column, columns left to right); counts alternate 0-runs and 1-runs starting with a 0-run "
                   "(0 if the first pixel is 1). Compressed string: for count i, "
                   "x = cnts[i] - (i > 2 ? cnts[i-2] : 0); 5-bit groups low first, each char = 48 + (group | 0x20 "
                   "if more), more = (group & 0x10) ? x != -1 : x != 0 after x >>= 5 (arithmetic); the decoder "
                   "sign-extends when the last group has 0x10."),
        "notes": [
            "mask_rows[r][c] is pixel (row r, column c), '1' = set",
            "bbox_xywh is pycocotools toBbox: [x, y, w, h] in pixels (floats), [0, 0, 0, 0] for an empty mask",
            "pycocotools.mask.encode needs a Fortran-ordered uint8 array; frPyObjects on the uncompressed counts "
            "(SAM2's 'uncompressed_rle') gives the same compressed string",
        ],
        "cases": cases,
        "ego_exo4d": ego,
    })
    return encoded, counts


# ---------------------------------------------------------------------------------------------------------------- MoGe

H, W = 48, 64
FX = FY = 57.6
PITCH = math.radians(20.0)
CAM_HEIGHT = 0.6


def rot_y(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def ray_box(d, center, R, ext):
    """Slab test for rays from the origin along d (H, W, 3); returns t (inf when missed) and the hit face axis."""
    o = -(R.T @ center)
    dl = d @ R
    half = np.asarray(ext) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (-half - o) / dl
        t2 = (half - o) / dl
    tmin = np.minimum(t1, t2)
    tmax = np.maximum(t1, t2)
    tn = tmin.max(-1)
    tf = tmax.min(-1)
    hit = (tn <= tf) & (tf > 0) & (tn > 0)
    return np.where(hit, tn, np.inf), tmin.argmax(-1)


def exr_header(path):
    """Channels and compression from an OpenEXR header (scanline, single part)."""
    b = path.read_bytes()
    assert struct.unpack("<I", b[:4])[0] == 20000630
    p, attrs = 8, {}
    while b[p] != 0:
        e = b.index(b"\0", p)
        name = b[p:e].decode()
        e2 = b.index(b"\0", e + 1)
        typ = b[e + 1:e2].decode()
        size = struct.unpack("<i", b[e2 + 1:e2 + 5])[0]
        attrs[name] = (typ, b[e2 + 5:e2 + 5 + size])
        p = e2 + 5 + size
    chans, q, raw = [], 0, attrs["channels"][1]
    while raw[q] != 0:
        e = raw.index(b"\0", q)
        ptype = struct.unpack("<i", raw[e + 1:e + 5])[0]
        chans.append({"name": raw[q:e].decode(), "pixel_type": {0: "UINT", 1: "HALF", 2: "FLOAT"}[ptype]})
        q = e + 1 + 16
    comp = ["NONE", "RLE", "ZIPS", "ZIP", "PIZ", "PXR24", "B44", "B44A", "DWAA", "DWAB"][attrs["compression"][1][0]]
    return {"channels": chans, "compression": comp}


def exr_channel(path, name, h, w):
    """One FLOAT channel of a single-part scanline ZIP/ZIPS OpenEXR file, decoded with zlib only: per chunk (y, size,
    zlib data); undo the predictor (t[i] = t[i-1] + t[i] - 128) and the byte interleave; scanlines hold each channel
    (sorted by name) as w little-endian float32 values."""
    b = path.read_bytes()
    info = exr_header(path)
    assert info["compression"] in ("ZIP", "ZIPS") and all(c["pixel_type"] == "FLOAT" for c in info["channels"])
    names = [c["name"] for c in info["channels"]]
    lines_per_chunk = 16 if info["compression"] == "ZIP" else 1
    p = 8
    while b[p] != 0:  # skip the header's attributes
        e = b.index(b"\0", b.index(b"\0", p) + 1)
        p = e + 5 + struct.unpack("<i", b[e + 1:e + 5])[0]
    p += 1
    n_chunks = -(-h // lines_per_chunk)
    offsets = struct.unpack(f"<{n_chunks}Q", b[p:p + 8 * n_chunks])
    out = np.empty((h, w), np.float32)
    for off in offsets:
        y, size = struct.unpack("<ii", b[off:off + 8])
        n_lines = min(lines_per_chunk, h - y)
        data = b[off + 8:off + 8 + size]
        expect = n_lines * len(names) * w * 4
        if size < expect:
            raw = np.frombuffer(zlib.decompress(data), np.uint8).astype(np.int64)
            pred = raw.copy()
            for i in range(1, len(pred)):
                pred[i] = (pred[i - 1] + raw[i] - 128) % 256
            half = (len(pred) + 1) // 2
            inter = np.empty(len(pred), np.uint8)
            inter[0::2] = pred[:half]
            inter[1::2] = pred[half:]
            data = inter.tobytes()
        assert len(data) == expect
        arr = np.frombuffer(data, "<f4").reshape(n_lines, len(names), w)
        out[y:y + n_lines] = arr[:, names.index(name), :]
    return out


def make_moge():
    d = OUT / "moge"
    (d / "masks").mkdir(parents=True, exist_ok=True)
    # Camera frame = OpenCV (x right, y down, z forward). World frame: y down (gravity), z horizontal forward.
    # p_cam = R_wc p_world; the camera is pitched down by PITCH, CAM_HEIGHT above the plane y_world = CAM_HEIGHT.
    R_wc = np.array([[1.0, 0.0, 0.0],
                     [0.0, math.cos(PITCH), -math.sin(PITCH)],
                     [0.0, math.sin(PITCH), math.cos(PITCH)]])
    up_cam = R_wc @ np.array([0.0, -1.0, 0.0])
    jj, ii = np.meshgrid(np.arange(W), np.arange(H))
    xn = (jj + 0.5 - W / 2) / FX
    yn = (ii + 0.5 - H / 2) / FY
    dirs = np.stack([xn, yn, np.ones_like(xn)], -1)  # z = 1: the ray parameter t is the depth
    denom = dirs @ up_cam
    with np.errstate(divide="ignore"):
        t_plane = np.where(denom < 0, -CAM_HEIGHT / denom, np.inf)
    objects = [
        {"id": 1, "label": "red box", "size_wdh": (0.30, 0.20, 0.25), "pos_xz": (-0.25, 1.25), "yaw_deg": 25.0,
         "color": (200, 40, 40)},
        {"id": 2, "label": "blue box", "size_wdh": (0.16, 0.16, 0.36), "pos_xz": (0.35, 1.7), "yaw_deg": -15.0,
         "color": (40, 60, 210)},
    ]
    depth64 = t_plane.copy()
    label = np.zeros((H, W), np.int32)
    face = np.full((H, W), -1)
    for ob in objects:
        wdt, dep, hgt = ob["size_wdh"]
        ext = np.array([wdt, hgt, dep])  # box axes: x (width), y (height, down), z (depth)
        c_world = np.array([ob["pos_xz"][0], CAM_HEIGHT - hgt / 2, ob["pos_xz"][1]])
        R_cam = R_wc @ rot_y(math.radians(ob["yaw_deg"]))
        c_cam = R_wc @ c_world
        t, fa = ray_box(dirs, c_cam, R_cam, ext)
        closer = t < depth64
        depth64 = np.where(closer, t, depth64)
        label = np.where(closer, ob["id"], label)
        face = np.where(closer, fa, face)
        ob["center"], ob["R"], ob["extent"] = c_cam, R_cam, ext
    valid = np.isfinite(depth64)
    # MoGe: depth (float32) and points = depth * (x_n, y_n, 1) (force_projection), +inf where the mask is false.
    depth = np.where(valid, depth64, np.inf).astype(np.float32)
    points = np.where(valid[..., None], depth.astype(np.float64)[..., None] * dirs, np.inf).astype(np.float32)
    assert np.array_equal(points[..., 2], depth)
    mask = valid
    # Colour image: sky, checkered table, shaded box faces.
    img = np.zeros((H, W, 3), np.uint8)
    img[:] = (150, 190, 235)
    hitp = points.astype(np.float64) @ R_wc  # camera -> world (R_wc^T p)
    check = ((np.floor(hitp[..., 0] / 0.2) + np.floor(hitp[..., 2] / 0.2)) % 2 == 0)
    img[valid & (label == 0) & check] = (170, 150, 120)
    img[valid & (label == 0) & ~check] = (120, 100, 80)
    for ob in objects:
        for f, s in enumerate((0.75, 1.0, 0.55)):
            sel = (label == ob["id"]) & (face == f)
            img[sel] = (np.array(ob["color"]) * s).astype(np.uint8)
    # The files, as moge/scripts/infer.py writes them.
    cv2.imwrite(str(d / "image.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(d / "depth.exr"), depth, [cv2.IMWRITE_EXR_TYPE, cv2.IMWRITE_EXR_TYPE_FLOAT])
    cv2.imwrite(str(d / "mask.png"), (mask * 255).astype(np.uint8))
    cv2.imwrite(str(d / "points.exr"), cv2.cvtColor(points, cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_EXR_TYPE, cv2.IMWRITE_EXR_TYPE_FLOAT])
    fx_n, fy_n = FX / W, FY / H  # MoGe's normalised intrinsics (cx_n = cy_n = 0.5)
    fov_x, fov_y = 2 * math.atan(0.5 / fx_n), 2 * math.atan(0.5 / fy_n)  # utils3d intrinsics_to_fov
    with open(d / "fov.json", "w") as f:
        json.dump({"fov_x": round(float(np.rad2deg(fov_x)), 2), "fov_y": round(float(np.rad2deg(fov_y)), 2)}, f)
    # Read back and check.
    back = cv2.imread(str(d / "points.exr"), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.float32 and back.shape == (H, W, 3)
    assert np.array_equal(cv2.cvtColor(back, cv2.COLOR_BGR2RGB), points)
    dback = cv2.imread(str(d / "depth.exr"), cv2.IMREAD_UNCHANGED)
    assert dback.dtype == np.float32 and dback.shape == (H, W) and np.array_equal(dback, depth)
    mback = cv2.imread(str(d / "mask.png"), cv2.IMREAD_UNCHANGED)
    assert mback.dtype == np.uint8 and np.array_equal(mback, (mask * 255).astype(np.uint8))
    hp, hd = exr_header(d / "points.exr"), exr_header(d / "depth.exr")
    assert [c["name"] for c in hp["channels"]] == ["B", "G", "R"], hp  # OpenEXR lists channels sorted by name
    assert [c["name"] for c in hd["channels"]] == ["Y"], hd
    # Independently of cv2's reader: decode the EXR's ZIP blocks by hand and check that channel R holds x.
    for ch, comp in (("R", 0), ("G", 1), ("B", 2)):
        assert np.array_equal(exr_channel(d / "points.exr", ch, H, W), points[..., comp]), ch
    assert np.array_equal(exr_channel(d / "depth.exr", "Y", H, W), depth)
    fx_round = json.loads((d / "fov.json").read_text())
    fx_from_fov = 0.5 * W / math.tan(math.radians(fx_round["fov_x"]) / 2)
    fy_from_fov = 0.5 * H / math.tan(math.radians(fx_round["fov_y"]) / 2)

    # Objects: instance masks (silhouette dilated by 1 px, 4-connected), clouds as the Rust tool will build them.
    pts_back = cv2.cvtColor(back, cv2.COLOR_BGR2RGB).astype(np.float64)
    finite = np.isfinite(pts_back).all(-1)
    objs_out = []
    kernel = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8)
    for ob in objects:
        sil = (label == ob["id"])
        inst = cv2.dilate(sil.astype(np.uint8), kernel) > 0
        cv2.imwrite(str(d / "masks" / f"{ob['id']}.png"), inst.astype(np.uint8) * 255)
        assert np.array_equal(cv2.imread(str(d / "masks" / f"{ob['id']}.png"), cv2.IMREAD_UNCHANGED) > 0, inst)
        sel = inst & (mback > 0) & finite
        rr, cc = np.nonzero(sel)  # row-major pixel order
        P = pts_back[rr, cc]
        on_obj = label[rr, cc] == ob["id"]
        pipeline = []
        for k, ratio in ((20, 2.0), (10, 1.2)):
            _, kept = cloud(P).remove_statistical_outlier(nb_neighbors=k, std_ratio=ratio)
            kept = [int(i) for i in kept]
            avg = sor_reference(P, k)
            mean, std = sor_threshold(avg)
            thr = mean + ratio * std
            assert [i for i in range(len(P)) if 0 < avg[i] < thr] == kept
            K = P[kept]
            o = cloud(K).get_oriented_bounding_box(robust=False)
            _, hidx = cloud(K).compute_convex_hull(joggle_inputs=False)
            aabb = cloud(K).get_axis_aligned_bounding_box()
            pipeline.append({
                "sor": {"nb_neighbors": k, "std_ratio": ratio, "kept": kept, "threshold": fl(thr),
                        "removed_background_pixels": int((~on_obj[np.setdiff1d(np.arange(len(P)), kept)]).sum()),
                        "kept_background_pixels": int((~on_obj[kept]).sum())},
                "obb": {"center": fl(o.center), "R": fl(np.asarray(o.R)), "extent": fl(o.extent),
                        "volume": fl(o.volume()), "box_points": fl(np.asarray(o.get_box_points())),
                        "hull_vertex_indices_sorted": sorted(int(i) for i in hidx)},
                "get_center": fl(cloud(K).get_center()),
                "aabb_min": fl(aabb.get_min_bound()), "aabb_max": fl(aabb.get_max_bound()),
            })
        # The same on the true silhouette (the on_object subset, same order): what a perfect segmenter would give.
        Ps = P[on_obj]
        _, kept_s = cloud(Ps).remove_statistical_outlier(nb_neighbors=20, std_ratio=2.0)
        kept_s = [int(i) for i in kept_s]
        os_ = cloud(Ps[kept_s]).get_oriented_bounding_box(robust=False)
        silhouette_pipeline = {
            "cloud": "the points whose on_object flag is true, in the same order; indices below are into that list",
            "sor": {"nb_neighbors": 20, "std_ratio": 2.0, "kept": kept_s},
            "obb": {"center": fl(os_.center), "R": fl(np.asarray(os_.R)), "extent": fl(os_.extent),
                    "volume": fl(os_.volume()), "box_points": fl(np.asarray(os_.get_box_points()))},
        }
        objs_out.append({
            "id": ob["id"], "label": ob["label"], "mask": f"masks/{ob['id']}.png",
            "true_box": box_truth(ob["center"], ob["R"], ob["extent"]) | {
                "note": "the whole box; only its visible faces are in the point map, so a box fitted to the cloud "
                        "is smaller"},
            "silhouette_pixels": int(sil.sum()), "mask_pixels": int(inst.sum()),
            "cloud": {"pixels_row_col": [[int(r), int(c)] for r, c in zip(rr, cc)],
                      "on_object": [bool(v) for v in on_obj], "points": fl(P),
                      "points_sha256_f64le": sha(P)},
            "pipeline": pipeline,
            "silhouette_pipeline": silhouette_pipeline,
        })
    write_json(d / "scene.json", {
        "generator": "tools/reference/annotate_fixtures.py",
        "versions": VERSIONS,
        "note": ("Ground truth for the MoGe-style folder beside this file (image.jpg, points.exr, depth.exr, "
                 "mask.png, fov.json are written exactly as moge/scripts/infer.py --maps writes them; this file and "
                 "masks/ are not MoGe's). Camera frame = OpenCV (x right, y down, z forward), metres."),
        "image_size_hw": [H, W],
        "intrinsics_px": {"fx": FX, "fy": FY, "cx": W / 2, "cy": H / 2,
                          "convention": "u = fx*X/Z + cx, v = fy*Y/Z + cy; pixel (row i, col j) has its centre at "
                                        "(u, v) = (j + 0.5, i + 0.5); points[i, j] = depth * ((j+0.5-cx)/fx, "
                                        "(i+0.5-cy)/fy, 1)"},
        "intrinsics_normalized_moge": {"fx": fx_n, "fy": fy_n, "cx": 0.5, "cy": 0.5},
        "fov_exact_deg": {"fov_x": math.degrees(fov_x), "fov_y": math.degrees(fov_y)},
        "fov_json": fx_round,
        "focal_from_fov_json_px": {"fx": fx_from_fov, "fy": fy_from_fov,
                                   "note": "0.5*W/tan(fov_x/2), 0.5*H/tan(fov_y/2) from the 2-decimal fov.json"},
        "camera": {"pitch_down_deg": math.degrees(PITCH), "height_above_plane_m": CAM_HEIGHT,
                   "R_world_to_camera": fl(R_wc),
                   "plane": {"normal_up_cam": fl(up_cam), "equation": "normal_up_cam . p = -height"}},
        "files": {
            "points.exr": hp | {"layout": "float32 H x W; R = x, G = y, B = z (written from RGB2BGR by cv2); +inf "
                                          "at invalid pixels"},
            "depth.exr": hd | {"layout": "float32 H x W, == points z; +inf at invalid pixels"},
            "mask.png": "uint8 gray, 255 = valid, 0 = invalid (here: rays above the horizon)",
            "image.jpg": "RGB (cv2 default JPEG quality 95); only for display",
            "masks/<id>.png": "uint8 gray 0/255 instance masks (not MoGe): the silhouette dilated by 1 px",
        },
        "counts": {"valid_pixels": int(mask.sum()), "invalid_pixels": int((~mask).sum()),
                   "invalid_rows": [int(r) for r in np.nonzero(~mask.any(1))[0]]},
        "objects": objs_out,
        "object_cloud_rule": ("pixels where instance mask > 0 and mask.png > 0 and x, y, z are all finite, in "
                              "row-major order (row, then column); each point is the EXR's float32 triple widened "
                              "to f64; pipeline[k] = Open3D SOR with those parameters on that cloud, then "
                              "get_oriented_bounding_box(robust=False), get_center() and the AABB of the kept points"),
    })
    return objs_out


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    make_sor()
    make_obb()
    make_rle()
    make_moge()
    for f in sorted(OUT.rglob("*")):
        if f.is_file():
            assert f.stat().st_size < MAX_BYTES, f"{f} is over 2 MB"


if __name__ == "__main__":
    main()
