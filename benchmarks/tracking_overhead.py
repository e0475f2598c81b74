"""How much does ``AlignmentTracker`` at its default (log) schedule slow a training run down?

Trains a small MLP (two moons, 2-unit bottleneck, full-batch Adam) for a few thousand steps twice
in the same process, once without and once with the tracker, and prints both wall times and
their ratio. Target: ratio <= 1.10. Each configuration runs ``--repeats`` times alternately and
the fastest run counts, which damps the noise of a shared machine.

Also printed, because the wall-time ratio moves by ±0.1 when another process shares the cores: the same ratio in
CPU time of this process (``time.process_time``; the run is single-threaded, so waiting for a core does not count),
the median over repeats of each tracked run against the untracked run just before it (a pair runs under about the
same load), and the time the tracker spent evaluating (the ``eval_seconds`` of its rows, fastest repeat) per
evaluation and as a share of the untracked run ("eval share": the overhead itself).

Run::

    python benchmarks/tracking_overhead.py                 # 3000 steps, 1 thread, 3 repeats
    python benchmarks/tracking_overhead.py --steps 5000 --n 1000 --json out.json

Not a test: nothing here gates CI. Writes a JSON of the numbers (with the machine) if asked.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch
from sklearn.datasets import make_moons
from threadpoolctl import threadpool_limits
from torch import nn

from nnboundary.tracking import AlignmentTracker


def make_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                         nn.Linear(64, 2), nn.ReLU(), nn.Linear(2, 2))  # 2-D transformed space


def train(X: torch.Tensor, y: torch.Tensor, steps: int, seed: int,
          tracker: AlignmentTracker | None) -> tuple[float, float, float]:
    """Full-batch Adam on cross-entropy; returns (wall seconds, CPU seconds of this process, final loss)."""
    model = make_model(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    t0, c0 = time.perf_counter(), time.process_time()
    for t in range(1, steps + 1):
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(X), y)
        loss.backward()
        opt.step()
        if tracker is not None:
            tracker.step(t, model)
    return time.perf_counter() - t0, time.process_time() - c0, loss.item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--n", type=int, default=500, help="training points (the tracker uses all of them)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch and BLAS threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="write the numbers to this JSON file")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    Xn, yn = make_moons(args.n, noise=0.1, random_state=args.seed)
    X, y = torch.tensor(Xn, dtype=torch.float32), torch.tensor(yn)
    base, tracked, cpu_base, cpu_tracked, evals, n_evals = [], [], [], [], [], 0
    with threadpool_limits(args.threads):
        for _ in range(args.repeats):
            wall, cpu, _ = train(X, y, args.steps, args.seed, None)
            base.append(wall)
            cpu_base.append(cpu)
            tr = AlignmentTracker(X, y)
            wall, cpu, _ = train(X, y, args.steps, args.seed, tr)
            tracked.append(wall)
            cpu_tracked.append(cpu)
            n_evals = len(tr.records)
            evals.append(np.asarray(tr.history["eval_seconds"], dtype=float))
    t_base, t_tr = min(base), min(tracked)
    ratio, cpu_ratio = t_tr / t_base, min(cpu_tracked) / min(cpu_base)
    paired = float(np.median(np.asarray(tracked) / np.asarray(base)))
    fastest = evals[int(np.argmin([e.sum() for e in evals]))]
    eval_s = float(fastest.sum())
    print(f"steps={args.steps} n={args.n} threads={args.threads} evaluations={n_evals}")
    print(f"without tracker: {t_base:8.3f} s")
    print(f"with tracker:    {t_tr:8.3f} s   (evaluations: {eval_s:.3f} s, fastest repeat; "
          f"{1e3 * eval_s / max(n_evals, 1):.1f} ms each, {1e3 * fastest.min():.1f}-{1e3 * fastest.max():.1f} ms)")
    print(f"ratio:           {ratio:8.3f}   target <= 1.10 -> {'OK' if ratio <= 1.10 else 'OVER'}")
    print(f"CPU-time ratio:  {cpu_ratio:8.3f}   (this process's CPU time, fastest of each)")
    print(f"paired ratio:    {paired:8.3f}   (median of tracked / untracked run just before it)")
    print(f"evaluation time / untracked time: {eval_s / t_base:.3f} "
          "(the overhead itself, less sensitive to a busy machine than the ratio)")
    if args.json:
        out = {"steps": args.steps, "n": args.n, "threads": args.threads, "repeats": args.repeats,
               "evaluations": n_evals, "seconds_without": t_base, "seconds_with": t_tr,
               "seconds_evaluating": eval_s, "eval_ms": (1e3 * fastest).tolist(), "ratio": ratio,
               "cpu_ratio": cpu_ratio, "paired_ratio": paired, "eval_share": eval_s / t_base,
               "machine": platform.platform(), "processor": platform.processor(), "torch": torch.__version__}
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
