"""Speed and exactness of MaxMarginClassifier against scikit-learn baselines measured in the same run.

    python benchmarks/svm_speed.py            # all cases (~8 min here: the baselines SVC ~2 min, LinearSVC-CS ~5 min)
    python benchmarks/svm_speed.py --case binary-10k
    python benchmarks/svm_speed.py --skip-baselines

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


CASES = {"binary-10k": case_binary_10k, "binary-60k": case_binary_60k, "cs-10k": case_cs_10k}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=sorted(CASES), action="append")
    parser.add_argument("--skip-baselines", action="store_true")
    args = parser.parse_args()
    for name in args.case or list(CASES):
        CASES[name](args.skip_baselines)


if __name__ == "__main__":
    main()
