"""``analyze`` on shards: wall time with 1 vs 2 processes (torchrun, gloo) on 100k × 512 × 10 synthetic features.

The features come from ``scale_data.collapse_features`` (neural-collapse-like ReLU features, separable by
construction; seed 0) and are written once to a ``.npy`` file; the head is the nearest-class-mean rule of the
features tilted by a seeded perturbation (a head close to, not at, the max-margin SVM). Each run is::

    python -m torch.distributed.run --standalone --nproc-per-node=P benchmarks/distributed_analyze.py --worker ...

where every rank reads its contiguous shard of the rows (``nnboundary.distributed.shard_range``) into memory and
calls ``analyze_features(H_shard, y_shard, W, b, reducer=TorchReducer())`` — the same streamed code for P = 1 and
P = 2 — and rank 0 records the wall time of that call (extraction is not part of it: the features are given). The
driver prints both times, their ratio, and checks that the two runs give the same summary to 1e-9.

torchrun sets ``OMP_NUM_THREADS=1`` in every process unless it is set (``--threads`` sets it), so with the default
one process computes on one core and two processes on two. On a 2-core machine the ratio nevertheless shows the
cost of sharding, not a speed-up: the restricted QP is solved on rank 0 alone while the other rank waits, the
gathers and the work repeated on every rank (the per-point table, the small reductions) add time, and the two
cores are also the ones everything else on the machine runs on (the load average is printed). A speed-up needs
ranks on cores or machines of their own and a problem whose passes over the data dominate.

    python benchmarks/distributed_analyze.py                 # n=100000, d=512, K=10
    python benchmarks/distributed_analyze.py --n 20000       # a quicker look
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def make_features(n: int, d: int, K: int, folder: Path) -> tuple[Path, Path]:
    """Write H (n, d) float64 to ``folder/H.npy`` and y, W, b to ``folder/head.npz``; returns both paths."""
    sys.path.insert(0, str(HERE))
    from scale_data import collapse_features

    H, y, _ = collapse_features(n, d, K, seed=0)
    means = np.stack([H[y == k].mean(axis=0) for k in range(K)])  # (K, d)
    rng = np.random.default_rng(1)
    W = means + 0.05 * np.linalg.norm(means, axis=1, keepdims=True) * rng.normal(size=means.shape) / np.sqrt(d)
    b = -0.5 * (means ** 2).sum(axis=1)
    np.save(folder / "H.npy", H)
    np.savez(folder / "head.npz", y=y, W=W, b=b)
    return folder / "H.npy", folder / "head.npz"


def worker(features: Path, head: Path, result: Path) -> None:
    """One rank: its shard of the rows in memory, ``analyze_features`` with the torch reducer, timed on rank 0."""
    from nnboundary import distributed as dist
    from nnboundary.analysis import analyze_features

    dist.init_from_env(backend="gloo")
    mm = np.load(features, mmap_mode="r")
    with np.load(head) as z:
        y, W, b = z["y"], z["W"], z["b"]
    start, stop = dist.shard_range(mm.shape[0])
    H = np.array(mm[start:stop])  # this rank's rows, in memory
    dist.barrier()
    t0 = time.perf_counter()
    res = analyze_features(H, y[start:stop], W, b, reducer=dist.TorchReducer())
    wall = time.perf_counter() - t0
    if dist.is_main():
        out = {"world_size": dist.world_size(), "wall_s": wall, "summary": res.summary,
               "support": res.support.tolist()}
        result.write_text(json.dumps(out, default=float))
    if dist.is_distributed():
        import torch.distributed

        torch.distributed.destroy_process_group()


def run(P: int, features: Path, head: Path, folder: Path, threads: int | None) -> dict:
    result = folder / f"result-{P}.json"
    env = {**os.environ, "PYTHONPATH": f"{HERE.parent / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={P}", __file__,
           "--worker", str(features), str(head), str(result)]
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True)
    out = json.loads(result.read_text())
    out["launch_s"] = time.perf_counter() - t0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--K", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS per process (default: torch's)")
    ap.add_argument("--worker", nargs=3, type=Path, metavar=("FEATURES", "HEAD", "RESULT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    with tempfile.TemporaryDirectory(prefix="nnb-dist-bench-") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        features, head = make_features(args.n, args.d, args.K, folder)
        print(f"features: n={args.n}, d={args.d}, K={args.K} (collapse_features, seed 0), "
              f"{args.n * args.d * 8 / 2**20:.0f} MiB, made in {time.perf_counter() - t0:.1f} s; "
              f"{os.cpu_count()} CPU cores here, load average {os.getloadavg()[0]:.1f}", flush=True)
        runs = {P: run(P, features, head, folder, args.threads) for P in (1, 2)}
    one, two = runs[1], runs[2]
    worst = 0.0
    for k, v in one["summary"].items():
        w = two["summary"][k]
        if isinstance(v, float) and isinstance(w, float) and np.isfinite(v):
            worst = max(worst, abs(w - v) / max(abs(v), 1e-12))
        elif v != w:
            raise SystemExit(f"summary[{k!r}] differs: 1 process {v!r}, 2 processes {w!r}")
    if one["support"] != two["support"]:
        raise SystemExit("the support vectors differ between 1 and 2 processes")
    print(f"1 process : analyze_features {one['wall_s']:.1f} s (launch to exit {one['launch_s']:.1f} s)")
    print(f"2 processes: analyze_features {two['wall_s']:.1f} s (launch to exit {two['launch_s']:.1f} s)")
    print(f"ratio 2 / 1 processes: {two['wall_s'] / one['wall_s']:.2f} (same numbers: largest relative difference "
          f"{worst:.1e}, {one['summary']['n_support']} support vectors, identical)")
    print(f"load average at the end {os.getloadavg()[0]:.1f}.")
    if (os.cpu_count() or 1) <= 2:
        print("On this 2-core machine the ratio is the overhead of sharding (the restricted QP on rank 0 alone, the "
              "gathers, work repeated on every rank, cores shared with the rest of the machine), not a speed-up: "
              "that needs ranks on cores or machines of their own.")


if __name__ == "__main__":
    main()
