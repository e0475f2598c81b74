"""Speed and exactness of MaxMarginClassifier against scikit-learn baselines measured in the same run.

    python benchmarks/svm_speed.py            # all cases (~8 min here: the baselines SVC ~2 min, LinearSVC-CS ~5 min)
    python benchmarks/svm_speed.py --case binary-10k
    python benchmarks/svm_speed.py --skip-baselines
    python benchmarks/svm_speed.py --case memmap-50k   # CS K=10 50k x 512: in memory and from a memmap file

Data: ReLU features ``max(Z A, 0)`` (like a penultimate layer) labelled by a random linear teacher, with the points
closest to the teacher's boundary removed, so the classes are separable with a small margin.
Each case prints our time, the baseline's time, the ratio, the angle between the two solutions, our largest
margin violation over all points (the certificate), and the peak memory of our fit (tracemalloc, numpy buffers).
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
import warnings

import numpy as np

from nnboundary.svm import MaxMarginClassifier


def relu_features(n: int, d: int, n_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(X (n, d), y (n,)): separable ReLU features, the 10% of points closest to the teacher boundary dropped."""
    rng = np.random.default_rng(seed)
    m = int(n * 1.2)
    A = rng.standard_normal((d, d)) / np.sqrt(d)
    X = np.maximum(rng.standard_normal((m, d)) @ A, 0.0)
    T = rng.standard_normal((d, max(n_classes, 2)))
    scores = X @ T
    if n_classes == 2:
        s = scores[:, 0] - np.median(scores[:, 0])
        y, gap = (s > 0).astype(int), np.abs(s)
    else:
        scores -= np.median(scores, axis=0)
        top2 = np.sort(scores, axis=1)[:, -2:]
        y, gap = scores.argmax(1), top2[:, 1] - top2[:, 0]
    keep = np.argsort(-gap)[:n]
    return X[keep], y[keep]


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    cos = float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b)))
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def ours(X, y):
    tracemalloc.start()
    clf, seconds = timed(lambda: MaxMarginClassifier().fit(X, y))
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return clf, seconds, peak


def report(name, clf, t_ours, peak, baseline_name=None, t_base=None, angle=None, target=""):
    ratio = f"{t_base / t_ours:6.1f}x faster" if t_base else "   (no baseline)"
    base = f"{baseline_name} {t_base:7.2f}s" if t_base else ""
    ang = f"angle to baseline {angle:.2e} deg" if angle is not None else ""
    print(f"{name:<22} ours {t_ours:7.2f}s  {base:<22} {ratio}  max_violation {clf.max_violation_:.1e}  "
          f"gap {clf.duality_gap_:.1e}  rounds {clf.n_iter_:3d}  n_support {len(clf.support_):5d}  "
          f"peak {peak:7.1f} MiB  {ang}  [{target}]", flush=True)


def case_binary_10k(skip_baselines):
    X, y = relu_features(10_000, 256, 2)
    clf, t, peak = ours(X, y)
    if skip_baselines:
        return report("binary 10k x 256", clf, t, peak, target="target: >=10x faster than SVC(C=1e6)")
    from sklearn.svm import SVC
    svc, t_svc = timed(lambda: SVC(kernel="linear", C=1e6, tol=1e-6).fit(X, y))
    report("binary 10k x 256", clf, t, peak, "SVC(C=1e6)", t_svc, angle_deg(clf.coef_, svc.coef_),
           "target: >=10x faster than SVC(C=1e6), max_violation <= 1e-6")


def case_binary_60k(skip_baselines):
    X, y = relu_features(60_000, 512, 2)
    clf, t, peak = ours(X, y)
    report("binary 60k x 512", clf, t, peak, target="target: <= 20 s, peak well under 4 GiB")


def case_cs_10k(skip_baselines):
    X, y = relu_features(10_000, 128, 10)
    clf, t, peak = ours(X, y)
    if skip_baselines:
        return report("CS K=10 10k x 128", clf, t, peak, target="target: <= 15 s, exact")
    from sklearn.svm import LinearSVC
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lin, t_lin = timed(lambda: LinearSVC(multi_class="crammer_singer", C=1e4, intercept_scaling=100,
                                             max_iter=20_000).fit(X, y))
    report("CS K=10 10k x 128", clf, t, peak, "LinearSVC-CS", t_lin, angle_deg(clf.coef_, lin.coef_),
           "target: <= 15 s, exact; LinearSVC(crammer_singer) is fast but not the hard-margin solution")


def case_memmap_50k(skip_baselines):
    """The same Crammer–Singer fit (K=10, d=512, n=50,000 neural-collapse-like features) from an in-memory array
    and from a memory-mapped .npy file (streamed in chunks, never read whole): the time ratio is the cost of streaming; "peak" is the fit's own allocations
    (tracemalloc; the mapped file's pages are not among them)."""
    import sys
    import tempfile
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import scale_data  # the neural-collapse-like features of svm_scale.py (few rounds: the passes dominate)

    X, y, _ = scale_data.collapse_features(50_000, 512, 10, seed=0)
    clf, t, peak = ours(X, y)
    report("CS K=10 50k x 512", clf, t, peak, target="in memory")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "features.npy"
        out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=X.shape)
        out[:] = X
        out.flush()
        del out, X
        mapped = np.load(path, mmap_mode="r")
        streamed, t_map, peak_map = ours(mapped, y)
        del mapped
    cos = float((clf.coef_ * streamed.coef_).sum() / np.linalg.norm(clf.coef_) / np.linalg.norm(streamed.coef_))
    report("  same, memmap", streamed, t_map, peak_map,
           target=f"memmap / in-memory time {t_map / t:.2f}, peak {peak_map / peak:.2f}x; 1 - cos {1 - cos:.1e}")


CASES = {"binary-10k": case_binary_10k, "binary-60k": case_binary_60k, "cs-10k": case_cs_10k,
         "memmap-50k": case_memmap_50k}
DEFAULT = ["binary-10k", "binary-60k", "cs-10k"]  # memmap-50k only when asked for (--case memmap-50k)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=sorted(CASES), action="append")
    parser.add_argument("--skip-baselines", action="store_true")
    args = parser.parse_args()
    for name in args.case or DEFAULT:
        CASES[name](args.skip_baselines)


if __name__ == "__main__":
    main()
