"""Feature sets for ``svm_scale.py``: synthetic neural-collapse-like ReLU features and real MNIST features.

Every function returns ``(H, y, settings)``: ``H`` float64 of shape (n, d), ``y`` int64 of shape (n,) with labels
0..K-1, and a dict of the settings that made it (and a few measured facts about it), so a benchmark row can say
exactly what it ran on. Everything is deterministic for a given seed.

Synthetic features (:func:`collapse_features`)
----------------------------------------------
A penultimate layer late in training looks like this (Papyan, Han & Donoho 2020, "neural collapse"): the K class means
form a scaled simplex, the points of a class scatter around their mean, and the features are ReLU outputs. The
generator draws

    z_i = separation * m_{y_i} + t_i * separation * (m_{r_i} - m_{y_i}) + noise * (g_i * s),      h_i = max(z_i, 0)

with ``m_k`` the vertices of a regular simplex (unit norm, pairwise equal angles) placed in a random K-dimensional
subspace of R^d (for K > d: K random unit directions), ``g_i`` standard normal, ``s`` a per-coordinate scale with a
power-law spectrum on randomly permuted coordinates (``s_j ∝ j^(-decay/2)``, j = 1..d, mean of s² = 1; decay=0
is isotropic), and for a fraction
``hard_fraction`` of the points a pull ``t_i ~ U(0, pull)`` toward a random rival class ``r_i`` (the confusable
points that become support vectors; t_i = 0 for the others).

Knobs (defaults: separation=20, noise=1, hard_fraction=0.1, pull=0.45, decay=2), and what they did to the
hard-margin problem in this session's measurements (K=100, d=512, n=20,000; support pairs estimated as below):

- ``separation / noise``: the signal-to-noise ratio of the class means. Larger: fewer support pairs (decay=2:
  separation 14 → about 3,300 pairs, 20 → about 2,700) and fewer points dropped by the filter (1.6 % → 0.16 %).
- ``decay``: anisotropy of the within-class noise (real features have a few strong directions). With isotropic-like
  noise (decay=1) almost every point is near the boundary in some of the d directions: about 10,000–14,000 pairs
  for separation 10–14; decay=2 gives a few thousand.
- ``hard_fraction``, ``pull``: how many points are pulled toward a rival class mean, and how far (``pull`` close to
  0.5 puts them near the midpoint). They add confusable points near the boundaries.

Separability is guaranteed, not hoped for. When n ≤ d and the n points are affinely independent (rank of [H, 1]
is n, checked), every labelling is separable and the first n points are returned. Otherwise the nearest-class-mean
classifier of the features (a linear classifier, ``score_k = μ_k·h − ½‖μ_k‖²`` with ``μ_k`` the feature means of
the classes) is computed on an oversampled draw, the points it does not classify with a relative score gap of at
least ``min_gap`` are dropped, and the first ``n`` remaining points (in draw order) are returned.
``settings["dropped_fraction"]`` says how many were dropped (with the defaults a small fraction, so the set is not
truncated into a trivially collapsed one); ``settings["ncm_margin"]`` is that classifier's geometric margin on the
returned set (> 0: a certificate that the hard-margin problem is feasible).

Measured with the defaults (seed 0, d=512) on the 2-core development machine, from the exact solution: K=10,
n=10,000: 180 support (point, rival) pairs on 177 points, 0.03 % of the draw dropped; K=100, n=2,000 (20 points
a class): 3,988 pairs on 886 points. Estimated as the pairs with functional margin ≤ 1.001 under liblinear's
C=1e4 solution (an estimate that gave 181 for those 180): K=10, n=50,000: about 297; K=100, n=20,000: about
2,683 pairs on 1,086 points; K=100, n=50,000: about 2,542 on 1,741.

Real features (:func:`mnist_features`)
-------------------------------------
An MLP 784 → 1024 → 512 → 10 (ReLU) trained on the MNIST training set (``/work/shared/data/mnist.npz`` or
``$NNBOUNDARY_DATA/mnist.npz``) with a fixed seed on the CPU until its training accuracy is 100 % (checked after
every epoch, on the points it was trained on) or ``max_epochs`` is reached. The features are its 512-wide last hidden
layer on those training points. The result is cached in ``benchmarks/.cache/mnist512_<hash>.npz`` (hash of the
settings; written to a temporary file and moved into place with ``os.replace``), so later runs load it in a second.
Measured with the defaults: 100 % training accuracy on all 60,000 after 10 epochs (test accuracy 98.54 %); the
network's own last layer has geometric margin 0.113 on the features, and the exact SVM certifies them separable
(361 support pairs on 343 points). Training took 490 s here while two other jobs shared the 2 cores (the first
epochs took 7 s each on the less loaded machine).

    python benchmarks/scale_data.py --check          # LinearSVC separability check of a small synthetic case
    python benchmarks/scale_data.py --mnist          # train (or load) the MNIST features and print their facts
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

CACHE_DIR = Path(__file__).resolve().parent / ".cache"


# ----------------------------------------------------------------------------------------------------------------
# synthetic features


def _simplex_directions(n_classes: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """(K, dim) unit vectors with pairwise cosine −1/(K−1) (a regular simplex) in a random subspace; random unit
    vectors when K > dim."""
    K = n_classes
    if K <= dim:
        basis, _ = np.linalg.qr(rng.standard_normal((dim, K)))          # (dim, K), orthonormal columns
        simplex = (np.eye(K) - 1.0 / K) * np.sqrt(K / (K - 1.0))         # rows: unit norm, centred
        return simplex @ basis.T
    M = rng.standard_normal((K, dim))
    return M / np.linalg.norm(M, axis=1, keepdims=True)


def _ncm_scores(H: np.ndarray, means: np.ndarray) -> np.ndarray:
    return H @ means.T - 0.5 * (means * means).sum(1)


def _ncm_gap(H: np.ndarray, y: np.ndarray, means: np.ndarray, chunk: int = 20_000) -> np.ndarray:
    """Score of the true class minus the best rival's under the nearest-class-mean classifier, per point."""
    out = np.empty(len(y))
    for s in range(0, len(y), chunk):
        sc = _ncm_scores(H[s:s + chunk], means)
        yi = y[s:s + chunk]
        true = sc[np.arange(len(yi)), yi]
        sc[np.arange(len(yi)), yi] = -np.inf
        out[s:s + chunk] = true - sc.max(1)
    return out


def collapse_features(n: int, d: int, n_classes: int, *, seed: int = 0, separation: float = 20.0,
                      noise: float = 1.0, hard_fraction: float = 0.1, pull: float = 0.45, decay: float = 2.0,
                      min_gap: float = 1e-3, oversample: float = 1.15) -> tuple[np.ndarray, np.ndarray, dict]:
    """Neural-collapse-like ReLU features (see the module docstring): (H (n, d) float64, y (n,) int64, settings)."""
    if n_classes < 2 or n < n_classes or d < 1:
        raise ValueError(f"need n_classes >= 2, n >= n_classes and d >= 1 (got n={n}, d={d}, K={n_classes})")
    K = n_classes
    rng = np.random.default_rng(seed)
    dirs = _simplex_directions(K, d, rng)                                  # (K, d)
    scale = (np.arange(1, d + 1, dtype=float)) ** (-decay / 2.0)
    scale = scale / np.sqrt(np.mean(scale ** 2))
    scale = scale[rng.permutation(d)]                                      # strong directions on random axes
    m = int(np.ceil(n * oversample)) + K
    y = rng.permutation(np.arange(m) % K)
    hard = rng.random(m) < hard_fraction
    rival = (y + rng.integers(1, K, size=m)) % K
    t = np.where(hard, rng.random(m) * pull, 0.0)
    H = np.empty((m, d))
    chunk = 10_000
    for s in range(0, m, chunk):
        e = min(m, s + chunk)
        ys, rs, ts = y[s:e], rival[s:e], t[s:e, None]
        Z = separation * (dirs[ys] + ts * (dirs[rs] - dirs[ys]))
        Z += noise * rng.standard_normal((e - s, d)) * scale
        H[s:e] = np.maximum(Z, 0.0)
    settings = {
        "kind": "collapse", "n": n, "d": d, "n_classes": K, "seed": seed, "separation": separation,
        "noise": noise, "hard_fraction": hard_fraction, "pull": pull, "decay": decay, "min_gap": min_gap,
        "oversample": oversample, "drawn": m,
    }
    if n <= d and np.linalg.matrix_rank(np.hstack([H[:n], np.ones((n, 1))])) == n:
        # n affinely independent points: every labelling is linearly separable (with a bias); no filter needed
        H, y = H[:n], y[:n]
        settings.update(certificate="affinely independent points (rank of [H, 1] = n)", dropped_fraction=0.0)
    else:
        means = np.stack([H[y == k].mean(0) for k in range(K)])
        gap = _ncm_gap(H, y, means)
        typical = float(np.sqrt(np.mean((means - means.mean(0)) ** 2) * d))  # spread of the means (a length)
        ok = gap > min_gap * typical ** 2
        keep = np.flatnonzero(ok)[:n]
        if len(keep) < n:
            raise ValueError(f"only {len(keep)} of {m} drawn points pass the separability filter; lower "
                             f"hard_fraction or pull, or raise separation/noise")
        H, y = H[keep], y[keep]
        # the nearest-class-mean classifier that filtered the draw is one fixed linear classifier: its margin on
        # the returned set is > 0 by construction, a certificate that the hard-margin problem is feasible
        gap_ret = gap[keep]
        W = means - means.mean(0)
        settings.update(certificate="nearest-class-mean classifier margin > 0",
                        dropped_fraction=float(1.0 - ok[: keep[-1] + 1].mean()),
                        ncm_margin=float(gap_ret.min() / np.linalg.norm(W)), ncm_separates=bool(gap_ret.min() > 0))
    settings["zero_fraction"] = float(np.mean(H == 0.0))
    return np.ascontiguousarray(H), y.astype(np.int64), settings


# ----------------------------------------------------------------------------------------------------------------
# real MNIST features


def mnist_path() -> Path:
    for base in (os.environ.get("NNBOUNDARY_DATA"), "/work/shared/data",
                 Path(__file__).resolve().parents[2] / "shared" / "data"):
        if base and (Path(base) / "mnist.npz").is_file():
            return Path(base) / "mnist.npz"
    raise FileNotFoundError("mnist.npz not found: set NNBOUNDARY_DATA to the folder that holds it "
                            "(no download is attempted)")


MNIST_DEFAULTS = {"widths": [1024, 512], "seed": 0, "n_train": 60_000, "batch_size": 128, "lr": 1e-3,
                  "lr_decay": 0.8, "max_epochs": 40, "threads": 2}


def _settings_hash(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def _atomic_savez(path: Path, **arrays) -> None:
    """np.savez through nnboundary's atomic writer (temp file, fsync, os.replace)."""
    from nnboundary._jsonio import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda fh: np.savez(fh, **arrays), binary=True)


def _train_mnist(settings: dict, log=print) -> dict:
    import torch

    torch.set_num_threads(int(settings["threads"]))
    torch.manual_seed(settings["seed"])
    data = np.load(mnist_path())
    n = int(settings["n_train"])
    X = data["x_train"][:n].reshape(n, -1).astype(np.float32) / 255.0
    X = torch.from_numpy((X - 0.1307) / 0.3081)
    y = torch.from_numpy(data["y_train"][:n].astype(np.int64))
    layers, prev = [], X.shape[1]
    for w in settings["widths"]:
        layers += [torch.nn.Linear(prev, w), torch.nn.ReLU()]
        prev = w
    body = torch.nn.Sequential(*layers)
    head = torch.nn.Linear(prev, 10)
    net = torch.nn.Sequential(body, head)
    opt = torch.optim.Adam(net.parameters(), lr=settings["lr"])
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=settings["lr_decay"])
    gen = torch.Generator().manual_seed(settings["seed"])
    bs = int(settings["batch_size"])

    def train_accuracy() -> float:
        net.eval()
        with torch.no_grad():
            correct = sum(int((net(X[s:s + 8192]).argmax(1) == y[s:s + 8192]).sum()) for s in range(0, n, 8192))
        net.train()
        return correct / n

    start = time.perf_counter()
    acc, epoch = 0.0, 0
    for epoch in range(1, int(settings["max_epochs"]) + 1):
        perm = torch.randperm(n, generator=gen)
        for s in range(0, n, bs):
            idx = perm[s:s + bs]
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(net(X[idx]), y[idx]).backward()
            opt.step()
        sched.step()
        acc = train_accuracy()
        log(f"  mnist epoch {epoch:3d}  train accuracy {acc:.5f}  {time.perf_counter() - start:6.1f} s")
        if acc == 1.0:
            break
    net.eval()
    with torch.no_grad():
        H = torch.cat([body(X[s:s + 8192]) for s in range(0, n, 8192)]).double().numpy()
        Xt = torch.from_numpy(((data["x_test"].reshape(len(data["x_test"]), -1).astype(np.float32) / 255.0)
                               - 0.1307) / 0.3081)
        test_acc = float((net(Xt).argmax(1).numpy() == data["y_test"]).mean())
    return {"H": H, "y": y.numpy(), "head_weight": head.weight.detach().double().numpy(),
            "head_bias": head.bias.detach().double().numpy(), "epochs": epoch, "train_accuracy": acc,
            "test_accuracy": test_acc, "train_seconds": time.perf_counter() - start}


def mnist_features(cache_dir: Path | str | None = None, *, retrain: bool = False, log=print,
                   **overrides) -> tuple[np.ndarray, np.ndarray, dict]:
    """Last-hidden-layer (512-wide) features of an MLP trained on MNIST: (H, y, settings), cached.

    Only the points the network was trained on are returned (all 60,000 by default); ``settings`` holds the
    training accuracy on them (1.0 when the network separates them, i.e. its own last layer is a feasible point of
    the hard-margin problem), the test accuracy, the epochs and the training time of the run that made the cache.
    """
    import torch

    settings = dict(MNIST_DEFAULTS, **overrides)
    unknown = set(overrides) - set(MNIST_DEFAULTS)
    if unknown:
        raise TypeError(f"unknown MNIST settings {sorted(unknown)}")
    settings["torch"] = torch.__version__
    key = _settings_hash(settings)
    path = Path(cache_dir or CACHE_DIR) / f"mnist512_{key}.npz"
    if path.is_file() and not retrain:
        with np.load(path) as f:
            facts = json.loads(str(f["facts"]))
            H, y, W, b = f["H"], f["y"], f["head_weight"], f["head_bias"]
        log(f"  mnist features loaded from {path}")
    else:
        log(f"  training the MNIST network ({settings}); cache {path}")
        out = _train_mnist(settings, log=log)
        W, b = out["head_weight"], out["head_bias"]
        facts = dict(settings, kind="mnist", hash=key, n=int(out["H"].shape[0]), d=int(out["H"].shape[1]),
                     n_classes=10, epochs=out["epochs"], train_accuracy=out["train_accuracy"],
                     test_accuracy=out["test_accuracy"], train_seconds=round(out["train_seconds"], 1),
                     zero_fraction=float(np.mean(out["H"] == 0.0)))
        H, y = out["H"], out["y"]
        _atomic_savez(path, H=H, y=y, head_weight=W, head_bias=b, facts=np.array(json.dumps(facts)))
    facts["cache"] = str(path)
    # the network's own last layer on the features: its geometric margin (> 0 iff it separates them)
    facts["head_margin"] = float(cs_margin(H, y, W, b))
    return np.ascontiguousarray(H, dtype=np.float64), y.astype(np.int64), facts


def cs_margin(H: np.ndarray, y: np.ndarray, W: np.ndarray, b: np.ndarray, chunk: int = 20_000) -> float:
    """min over (i, k ≠ yᵢ) of ((w_y − w_k)·hᵢ + b_y − b_k) / ‖W‖_F with W, b row-centred (a binary (1, d) w:
    the rows (−w/2, w/2))."""
    W, b = np.atleast_2d(W), np.atleast_1d(b)
    if W.shape[0] == 1:                                       # binary direction w: the rows (−w/2, w/2)
        W, b = np.vstack([-W[0] / 2, W[0] / 2]), np.array([-b[0] / 2, b[0] / 2])
    W = W - W.mean(0)
    b = b - b.mean()
    return functional_margin(H, y, W, b, chunk) / float(np.linalg.norm(W))


def functional_margin(H: np.ndarray, y: np.ndarray, W: np.ndarray, b: np.ndarray, chunk: int = 20_000) -> float:
    """min over (i, k ≠ yᵢ) of (w_y − w_k)·hᵢ + b_y − b_k, in chunks of ``chunk`` rows."""
    worst = np.inf
    for s in range(0, len(y), chunk):
        sc = H[s:s + chunk] @ W.T + b
        yi = y[s:s + chunk]
        r = np.arange(len(yi))
        true = sc[r, yi].copy()
        sc[r, yi] = -np.inf
        worst = min(worst, float((true[:, None] - sc).min()))
    return worst


# ----------------------------------------------------------------------------------------------------------------


def _check(n: int, d: int, K: int) -> None:
    import warnings

    from sklearn.svm import LinearSVC

    H, y, s = collapse_features(n, d, K)
    print(json.dumps(s, indent=None))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lin = LinearSVC(multi_class="crammer_singer", C=1e4, tol=1e-8, max_iter=20_000).fit(H, y)
    acc = float((lin.predict(H) == y).mean())
    m = cs_margin(H, y, lin.coef_, lin.intercept_)
    print(f"LinearSVC(crammer_singer, C=1e4) training accuracy {acc:.5f}, geometric margin {m:.3e} "
          f"(> 0: separable); certificate of the generator: {s['certificate']}"
          + (f", margin {s['ncm_margin']:.3e}" if "ncm_margin" in s else ""))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="separability check of a small synthetic case")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--d", type=int, default=512)
    p.add_argument("--K", type=int, default=10)
    p.add_argument("--mnist", action="store_true", help="train (or load) the MNIST features")
    p.add_argument("--retrain", action="store_true")
    a = p.parse_args()
    if a.check:
        _check(a.n, a.d, a.K)
    if a.mnist:
        H, y, facts = mnist_features(retrain=a.retrain)
        print(json.dumps(facts, indent=1))
    if not (a.check or a.mnist):
        p.print_help(sys.stderr)


if __name__ == "__main__":
    main()
