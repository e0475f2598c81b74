"""Training throughput: nnboundary's Trainer vs a plain PyTorch loop (target ratio >= 0.9).

The paper's simulated-data network: FC2000 -> FC2 (the 2-D "transformed space") -> 2 logits, on 4,500
points, full batch, plain gradient descent. Both loops do the same work per step (same model, data, loss
and optimizer); the Trainer also writes checkpoints on its log-spaced schedule (1, 2, 5, 10, ... and the
last step), keeps its history, and evaluates the final model once. Runs alternate (plain, trainer, plain,
...) so that load on a shared machine hits both alike; we report the median and the best of each, by wall
clock and by process CPU time (less sensitive to other processes on a shared machine).

Run::

    python benchmarks/train_throughput.py                      # CPU, 300 steps, 3 repeats
    python benchmarks/train_throughput.py --device cuda --steps 2000
    python benchmarks/train_throughput.py --loss cross_entropy # the float64 logit-gap CE in both loops

Writes a JSON with the numbers and the machine to ``--out``
(default ``benchmarks/results/train_throughput.json``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from nnboundary.train import TrainConfig, Trainer, make_loss


def make_data(n: int, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two Gaussian blobs in 2-D: X (n, 2), y (n,)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    X = torch.randn(n, 2, generator=g) + torch.stack([2.0 * y - 1, torch.zeros(n)], dim=1) * 2
    return X.to(device), y.to(device)


def make_model(seed: int, device: torch.device) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 2000), nn.ReLU(), nn.Linear(2000, 2), nn.ReLU(), nn.Linear(2, 2)).to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plain_loop(X: torch.Tensor, y: torch.Tensor, steps: int, lr: float, loss_name: str,
               device: torch.device) -> float:
    """The reference loop a user would write by hand; returns steps/s by wall clock and by CPU time."""
    model = make_model(0, device)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = (lambda z, t: F.cross_entropy(z, t)) if loss_name == "plain_cross_entropy" else make_loss(loss_name)
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        loss = loss_fn(model(X), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    final = float(loss.detach())     # one sync at the end, as a user printing the final loss would
    _sync(device)
    if final != final:
        raise FloatingPointError("The plain loop diverged; lower --lr.")
    return steps / (time.perf_counter() - t0), steps / (time.process_time() - c0)


def trainer_loop(X: torch.Tensor, y: torch.Tensor, steps: int, lr: float, loss_name: str,
                 device: torch.device) -> float:
    """The same run through Trainer.fit with log-spaced checkpoints; steps/s (wall, CPU) of the whole call."""
    model = make_model(0, device)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(TrainConfig(loss=loss_name, optimizer="sgd", lr=lr, steps=steps, device=device,
                                      progress=False, checkpoint_dir=tmp, checkpoint_schedule="log"))
        _sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        trainer.fit(model, X, y)
        _sync(device)
        return steps / (time.perf_counter() - t0), steps / (time.process_time() - c0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n", type=int, default=4500)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--loss", default="plain_cross_entropy",
                        help="plain_cross_entropy (F.cross_entropy) or any nnboundary loss name")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "train_throughput.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    X, y = make_data(args.n, device)

    plain_loop(X, y, 5, args.lr, args.loss, device)            # warm-up: lazy imports, allocator
    trainer_loop(X, y, 5, args.lr, args.loss, device)
    plain, trainer = [], []
    for _ in range(args.repeats):
        plain.append(plain_loop(X, y, args.steps, args.lr, args.loss, device))
        trainer.append(trainer_loop(X, y, args.steps, args.lr, args.loss, device))

    wall_plain, cpu_plain = [p[0] for p in plain], [p[1] for p in plain]
    wall_trainer, cpu_trainer = [t[0] for t in trainer], [t[1] for t in trainer]
    result = {
        "benchmark": "train_throughput", "model": "FC2000-FC2-2 MLP", "n_samples": args.n, "steps": args.steps,
        "repeats": args.repeats, "loss": args.loss, "device": str(device),
        "plain_steps_per_s": wall_plain, "trainer_steps_per_s": wall_trainer,
        "plain_steps_per_cpu_s": cpu_plain, "trainer_steps_per_cpu_s": cpu_trainer,
        "ratio_median": statistics.median(wall_trainer) / statistics.median(wall_plain),
        "ratio_best": max(wall_trainer) / max(wall_plain),
        "ratio_cpu_median": statistics.median(cpu_trainer) / statistics.median(cpu_plain),
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "cuda": torch.cuda.get_device_name(device) if device.type == "cuda" else None},
    }
    print(f"plain loop : median {statistics.median(wall_plain):8.2f} steps/s   best {max(wall_plain):8.2f}")
    print(f"Trainer    : median {statistics.median(wall_trainer):8.2f} steps/s   best {max(wall_trainer):8.2f}")
    print(f"ratio      : median {result['ratio_median']:.3f}   best {result['ratio_best']:.3f}   "
          f"(CPU-time median {result['ratio_cpu_median']:.3f}; target >= 0.9)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
