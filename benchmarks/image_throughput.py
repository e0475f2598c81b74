"""Image experiments: training throughput per model, and the memory of feature extraction + SVM.

1. Training throughput (images/s) of the network of every image experiment, for one profile (default
   ``quick``): :func:`nnboundary.train.fit` on random inputs of the data set's shape with the
   profile's optimizer, learning rate and batch size, after a short warm-up (the content of the images
   does not change the cost of a step).
2. Feature extraction + max-margin SVMs (free and regularised bias) on the full MNIST 0/1 training set
   (12 665 images), each measured in a fresh process: peak resident memory (``ru_maxrss``) before and
   after each stage, the Python-heap peak of the SVM fits (``tracemalloc``, numpy included), and the
   times. The network is the one of a finished ``mnist01-resnet`` run (``--model-dir``), else an
   untrained network of the profile (its features are then not separable and the SVM is soft-margin).

Run::

    python benchmarks/image_throughput.py --data-dir ../shared/data
    python benchmarks/image_throughput.py --model-dir runs/mnist01-resnet-quick --threads 1
    python benchmarks/image_throughput.py --device cuda --profile paper

Writes ``--out`` (default ``benchmarks/results/image_throughput.json``) with the numbers and the machine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nnboundary.experiments import get_experiment, list_experiments
from nnboundary.experiments.images import model_kwargs
from nnboundary.models import build_model
from nnboundary.train import TrainCallback, fit

_SHAPES = {"mnist": (1, 28, 28), "fashion_mnist": (1, 28, 28), "cifar10": (3, 32, 32), "digits": (1, 8, 8)}


class _Shape:
    """Stands in for an ImageDataset where only the image shape and the number of classes matter."""

    def __init__(self, shape: tuple[int, int, int], n_classes: int) -> None:
        self.image_shape, self.n_classes = shape, n_classes


def _rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _StepClock(TrainCallback):
    """Training callback recording the wall clock after every update (synchronising CUDA first)."""

    def __init__(self, device: str) -> None:
        self.device, self.times = device, []

    def on_step(self, step: int, model: torch.nn.Module, *, loss: float, accuracy: float) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
        self.times.append(time.perf_counter())


def throughput(name: str, profile: str, *, steps: int, warmup: int, device: str, repeats: int) -> dict[str, Any]:
    """Images/s of whole-network training for one experiment profile (best and median of ``repeats``)."""
    cfg = get_experiment(name, profile).settings
    data = cfg["data"]
    K = len(data["classes"]) if data.get("classes") else 10
    shape = _SHAPES[data["name"]]
    train = dict(cfg["train"])
    train.pop("epochs", None)
    train.pop("steps", None)
    B = train["batch_size"]
    g = torch.Generator().manual_seed(0)
    X = torch.randn(B * 4, *shape, generator=g)
    y = torch.arange(B * 4) % K
    model = build_model(cfg["model"]["name"], **model_kwargs(cfg, _Shape(shape, K)), seed=0)
    fit(model, X, y, steps=warmup, device=device, progress=False, **train)            # warm-up
    rates = []
    for _ in range(repeats):
        clock = _StepClock(device)
        fit(model, X, y, steps=steps, device=device, progress=False, callbacks=[clock], **train)
        rates.append((steps - 1) * B / (clock.times[-1] - clock.times[0]))
    n_params = sum(p.numel() for p in model.parameters())
    return {"experiment": name, "profile": profile, "model": cfg["model"]["name"], "n_parameters": n_params,
            "batch_size": B, "optimizer": train["optimizer"], "steps_timed": steps, "repeats": repeats,
            "images_per_s_best": max(rates), "images_per_s_median": float(np.median(rates)),
            "note": "timed from the end of update 1 to the end of the last update (no set-up, no final evaluation)"}


def _memory_worker(args: dict[str, Any], queue: mp.Queue) -> None:
    """In a fresh process: load MNIST 0/1, extract features, fit both SVMs; report memory and times."""
    torch.set_num_threads(args["threads"])
    from nnboundary.data import load_real
    from nnboundary.experiments.images import build_image_model, load_trained_model
    from nnboundary.features import extract_features
    from nnboundary.svm import MaxMarginClassifier

    out: dict[str, Any] = {"batch_size": args["batch_size"]}
    out["rss_start_mib"] = _rss_mib()
    ds = load_real("mnist", data_dir=args["data_dir"], classes=(0, 1), normalize="unit")
    out["n_train"] = int(len(ds.y_train))
    if args["model_dir"]:
        model, _ = load_trained_model(args["model_dir"], device=args["device"])
        out["network"] = f"trained ({args['model_dir']})"
    else:
        model, _ = build_image_model(get_experiment("mnist01-resnet", args["profile"]).settings, ds, seed=0)
        model = model.to(args["device"])
        out["network"] = f"untrained mnist01-resnet/{args['profile']}"
    out["rss_after_load_mib"] = _rss_mib()
    t0 = time.perf_counter()
    ext = extract_features(model, ds.x_train, "head", y=ds.y_train, batch_size=args["batch_size"],
                           device=args["device"])
    out["extract_s"] = time.perf_counter() - t0
    out["rss_after_extract_mib"] = _rss_mib()
    for bias in ("free", "regularized"):
        tracemalloc.start()
        t0 = time.perf_counter()
        try:
            svm = MaxMarginClassifier(bias=bias).fit(ext.features, ext.labels)
            kind = "hard margin"
        except ValueError:                                   # NotSeparableError: compare with soft margin
            svm = MaxMarginClassifier(bias=bias, C=1.0).fit(ext.features, ext.labels)
            kind = "soft margin C=1 (features not separable)"
        out[f"svm_{bias}_s"] = time.perf_counter() - t0
        out[f"svm_{bias}_tracemalloc_peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        out[f"svm_{bias}_kind"] = kind
        out[f"svm_{bias}_n_support"] = int(len(svm.support_))
    out["rss_after_svm_mib"] = _rss_mib()
    queue.put(out)


def extraction_memory(batch_size: int, **args: Any) -> dict[str, Any]:
    """Run :func:`_memory_worker` in a fresh (spawned) process so its peak memory is its own."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_memory_worker, args=({"batch_size": batch_size, **args}, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="quick", choices=["smoke", "quick", "paper"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=21, help="updates per repeat (the first is not timed)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--data-dir", default=None, help="folder with mnist.npz (for the memory part)")
    parser.add_argument("--model-dir", default=None, help="a finished mnist01-resnet run (for the memory part)")
    parser.add_argument("--batch-sizes", default="256,1024", help="feature-extraction batch sizes")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--out", default="benchmarks/results/image_throughput.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    for name in list_experiments(kind="image"):
        row = throughput(name, args.profile, steps=args.steps, warmup=args.warmup, device=args.device,
                         repeats=args.repeats)
        rows.append(row)
        print(f"{name:32s} {row['model']:13s} {row['n_parameters']:>9,d} params  batch {row['batch_size']:4d}  "
              f"{row['images_per_s_median']:8.1f} img/s (median; best {row['images_per_s_best']:.1f})", flush=True)
    memory = []
    if not args.skip_memory:
        for bs in (int(b) for b in args.batch_sizes.split(",")):
            m = extraction_memory(bs, data_dir=args.data_dir, model_dir=args.model_dir, device=args.device,
                                  threads=args.threads, profile=args.profile)
            memory.append(m)
            print(f"MNIST 0/1 train ({m['n_train']} images), {m['network']}, extraction batch {bs}: peak RSS "
                  f"{m['rss_after_load_mib']:.0f} MiB after loading -> {m['rss_after_extract_mib']:.0f} MiB after "
                  f"extraction ({m['extract_s']:.1f} s) -> {m['rss_after_svm_mib']:.0f} MiB after both SVMs; "
                  f"SVM free {m['svm_free_s']:.2f} s (heap peak {m['svm_free_tracemalloc_peak_mib']:.1f} MiB, "
                  f"{m['svm_free_kind']}), regularised {m['svm_regularized_s']:.2f} s "
                  f"(heap peak {m['svm_regularized_tracemalloc_peak_mib']:.1f} MiB)", flush=True)
    result = {"throughput": rows, "memory": memory, "settings": vars(args),
              "machine": {"platform": platform.platform(), "processor": platform.processor(),
                          "cpu_count": os.cpu_count(), "torch": torch.__version__, "threads": args.threads,
                          "cuda": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
