"""Exact max-margin SVMs at the size of real classifier heads (issue 10): ours against liblinear, same run.

    python benchmarks/svm_scale.py                       # every case but imagenet-subset
    python benchmarks/svm_scale.py --quick               # small versions of every case (about a minute)
    python benchmarks/svm_scale.py --case cifar10-head --case wide-cs --json rows.json
    python benchmarks/svm_scale.py --big --case imagenet-subset
    python benchmarks/svm_scale.py --device cuda         # ours on the GPU (baselines stay on the CPU)
    python benchmarks/svm_scale.py --case cifar10-head --size 10000,512,10     # another size of a synthetic case

Cases (full size; ``--quick`` shrinks d, n and for the K=100 cases K, so that the solver before issue 10, whose
cost grew like (K·(d+1))³, finishes them too): cifar10-head K=10, d=512, n=50,000 (target: certified and ≤ 3×
liblinear's time); cifar100-20k / cifar100-50k K=100, d=512 (≤ 3× liblinear, peak ≤ 4 GiB); imagenet-subset
K=1000, d=2048, n=100,000 (only with --big or --case; no baseline; ≤ 30 min); wide-cs K=3, n=30, d=5,000 and
wide-binary n=200, d=20,000 (≤ 5 s); mnist-real (the cached MNIST features, all 60,000, K=10; ≤ 3× liblinear);
growth (ours at n = 10k/20k/50k with K=10 and at K = 10/30/100 with n=10k, d=512; the fitted exponents of
log t against log n and log K).

Solvers, each fitted in a fresh subprocess so that its peak memory is its own (peak resident set size of the
process during ``fit``, read from /proc/self/status VmHWM after resetting it once the data is loaded; the data
itself, n·d·8 bytes, is part of it):

- ours: ``MaxMarginClassifier(C=None, bias="free", multiclass="crammer_singer")`` (hard margin, free bias), with
  ``verbose=1`` / ``device=`` only when the estimator accepts them (``get_params()``);
- liblinear Crammer–Singer: ``LinearSVC(multi_class="crammer_singer", C=1e4, tol=1e-8, max_iter=...)`` — a soft
  margin with a regularised intercept (intercept_scaling=1), so it is not the exact hard-margin solution: the row
  gives its angle to ours (between the flattened, row-centred W's) and its margin deficit 1 − margin/ours;
- for binary cases ``SVC(kernel="linear", C=1e6)`` (liblinear-CS there only with ``--binary-liblinear``: for two
  classes sklearn ignores its max_iter, and it ran 100,000 iterations, 194 s, on wide-binary).

All margins are computed here the same way from each solver's (W, b): min over (i, k ≠ yᵢ) of
((w_y − w_k)·hᵢ + b_y − b_k) / ‖W‖_F with W and b row-centred (a binary w is written as the rows (−w/2, w/2)).
"max viol" is max(0, 1 − the smallest functional margin) in the solver's own scaling (ours: ``max_violation_``).
"pairs" is the number of (point, rival) pairs with αᵢₖ > 0 (CS: β_{i,k} < 0 for k ≠ yᵢ in ``dual_coef_``, binary:
support vectors), counted with a relative threshold of 1e-10·max|β|. "recomputed" next to our gap is ‖W‖² − Σα
from ``coef_`` and ``dual_coef_`` (the outside check of the certificate); "+N in fit" is how far the peak rose
above the resident size of the process with its data loaded.

Targets live here, never in a timed test. Each row prints the ratio it is judged by and whether the target is met.
The data: ``scale_data.collapse_features`` (synthetic neural-collapse-like ReLU features, separable by construction)
and ``scale_data.mnist_features`` (an MLP's 512-wide last hidden layer on MNIST, trained once and cached).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import scale_data  # noqa: E402

GiB = 2.0 ** 30
PAIR_THRESHOLD = 1e-10

# ----------------------------------------------------------------------------------------------------------------
# the worker: one solver, one fit, in its own process


def _status_kib(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_mib() -> float:
    hwm = _status_kib("VmHWM")
    if hwm is not None:
        return hwm / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _count_pairs(clf, y: np.ndarray) -> int | None:
    beta = getattr(clf, "dual_coef_", None)
    support = getattr(clf, "support_", None)
    if beta is None or support is None:
        return None
    beta, support = _to_numpy(beta), np.asarray(_to_numpy(support), dtype=np.int64)
    if beta.size == 0:
        return 0
    thr = PAIR_THRESHOLD * float(np.abs(beta).max())
    if beta.shape[0] == 1 and beta.shape[1] == len(support):      # binary: one weight yᵢαᵢ per support vector
        return int((np.abs(beta) > thr).sum())
    classes = np.asarray(_to_numpy(clf.classes_))
    yi = np.searchsorted(classes, y[support])
    rival = beta.copy()
    rival[np.arange(len(yi)), yi] = 0.0
    return int((rival < -thr).sum())


def _to_numpy(a) -> np.ndarray:
    """An estimator attribute as a float64 numpy array (also when it is a torch tensor on a device)."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=float)


def _outside_gap(clf, y: np.ndarray) -> float | None:
    """‖W‖² − Σα recomputed from ``coef_`` and ``dual_coef_`` (the issue's check of ``duality_gap_``)."""
    beta = getattr(clf, "dual_coef_", None)
    if beta is None:
        return None
    beta, W = _to_numpy(beta), _to_numpy(clf.coef_)
    if beta.shape[0] == 1 and W.shape[0] == 1:                     # binary: β = yᵢαᵢ
        alpha_sum = float(np.abs(beta).sum())
    else:                                                          # CS: α_ik = −β_ik for k ≠ yᵢ
        support = np.asarray(_to_numpy(clf.support_), dtype=np.int64)
        yi = np.searchsorted(np.asarray(_to_numpy(clf.classes_)), y[support])
        alpha_sum = float(beta[np.arange(len(yi)), yi].sum())
    return float((W * W).sum()) - alpha_sum


def worker(spec: dict) -> None:
    """Load the data, fit one solver, write its result (JSON + coefficients) atomically."""
    with np.load(spec["data"]) as f:
        H, y = f["H"], f["y"]
    solver, result = spec["solver"], {"solver": spec["solver"]}
    if solver == "ours":
        from nnboundary.svm import MaxMarginClassifier

        params = MaxMarginClassifier().get_params()
        kw = {"C": None, "bias": "free"}
        if "multiclass" in params:
            kw["multiclass"] = "crammer_singer"
        if "verbose" in params and spec.get("verbose", True):
            kw["verbose"] = 1
        X = H
        device = spec.get("device", "cpu")
        result["device"] = "cpu"
        if device != "cpu":
            if "device" in params:
                kw["device"] = device
                result["device"] = f"{device} (device= parameter)"
            else:
                import torch

                X = torch.from_numpy(H).to(device)
                result["device"] = f"{device} (input tensors; the estimator has no device= parameter)"
        est = MaxMarginClassifier(**kw)
        result["params"] = {k: v for k, v in kw.items()}
    elif solver == "liblinear":
        from sklearn.svm import LinearSVC

        est = LinearSVC(multi_class="crammer_singer", C=spec["liblinear_C"], tol=spec["liblinear_tol"],
                        max_iter=spec["liblinear_max_iter"])
        X = H
        result["params"] = {"C": spec["liblinear_C"], "tol": spec["liblinear_tol"],
                            "max_iter": spec["liblinear_max_iter"], "intercept_scaling": 1.0}
    elif solver == "svc":
        from sklearn.svm import SVC

        est = SVC(kernel="linear", C=spec["svc_C"])
        X = H
        result["params"] = {"C": spec["svc_C"]}
    else:
        raise ValueError(solver)
    result["rss_before_mib"] = (_status_kib("VmRSS") or 0.0) / 1024
    result["peak_reset"] = _reset_peak()
    if spec.get("device", "cpu") != "cpu" and solver == "ours":
        import torch

        torch.cuda.reset_peak_memory_stats()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        try:
            est.fit(X, y)
            result["error"] = None
        except Exception as exc:  # a benchmark row, not a crash: the error is the result
            result["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        result["seconds"] = time.perf_counter() - start
    result["peak_mib"] = _peak_mib()
    if spec.get("device", "cpu") != "cpu" and solver == "ours":
        import torch

        result["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    result["warnings"] = sorted({f"{w.category.__name__}: {str(w.message)[:200]}" for w in caught})
    if result["error"] is None:
        coef, intercept = _to_numpy(est.coef_), _to_numpy(est.intercept_)
        np.savez(spec["coef_out"], coef=coef, intercept=intercept)
        result["n_iter"] = int(np.max(getattr(est, "n_iter_", -1)))
        if solver == "ours":
            result["max_violation_own"] = float(_to_numpy(est.max_violation_))
            result["duality_gap"] = float(_to_numpy(est.duality_gap_))
            result["n_support"] = int(len(est.support_))
            result["pairs"] = _count_pairs(est, y)
            try:
                result["gap_recomputed"] = _outside_gap(est, y)
            except Exception as exc:  # a report, not a crash
                result["gap_recomputed_error"] = f"{type(exc).__name__}: {exc}"
        elif solver == "svc":
            result["n_support"] = int(len(est.support_))
            result["pairs"] = int(len(est.support_))
        if solver == "liblinear":
            result["converged"] = not any("ConvergenceWarning" in w for w in result["warnings"])
    tmp = spec["result_out"] + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.replace(tmp, spec["result_out"])


# ----------------------------------------------------------------------------------------------------------------
# the parent: data, subprocesses, comparison, table


def as_rows(coef: np.ndarray, intercept: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(W (K, d), b (K,)) row-centred; a binary (1, d) direction becomes the rows (−w/2, w/2)."""
    coef = np.atleast_2d(coef)
    intercept = np.atleast_1d(intercept).astype(float)
    if coef.shape[0] == 1 and n_classes == 2:
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    return coef - coef.mean(0), intercept - intercept.mean()


def angle_deg(A: np.ndarray, B: np.ndarray) -> float:
    cos = float((A * B).sum() / (np.linalg.norm(A) * np.linalg.norm(B)))
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


class Runner:
    def __init__(self, args: argparse.Namespace, workdir: Path):
        self.args = args
        self.workdir = workdir
        self.rows: list[dict] = []
        self.counter = 0
        self.liblinear_max_iter = args.liblinear_max_iter or 10_000

    def save_data(self, H: np.ndarray, y: np.ndarray) -> str:
        self.counter += 1
        path = self.workdir / f"data{self.counter}.npz"
        np.savez(path, H=H, y=y)
        return str(path)

    def fit(self, solver: str, data_path: str) -> tuple[dict, dict | None]:
        self.counter += 1
        spec = {"solver": solver, "data": data_path, "device": self.args.device if solver == "ours" else "cpu",
                "coef_out": str(self.workdir / f"coef{self.counter}.npz"),
                "result_out": str(self.workdir / f"result{self.counter}.json"),
                "liblinear_C": self.args.liblinear_C, "liblinear_tol": self.args.liblinear_tol,
                "liblinear_max_iter": self.liblinear_max_iter, "svc_C": self.args.svc_C,
                "verbose": not self.args.no_verbose}
        env = dict(os.environ)
        if self.args.threads:
            for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
                env[var] = str(self.args.threads)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
        wall = time.perf_counter()
        try:
            proc = subprocess.run(cmd, env=env, timeout=self.args.timeout)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            return {"solver": solver, "error": f"timeout after {self.args.timeout:.0f} s",
                    "seconds": float("nan")}, None
        if rc != 0 or not os.path.exists(spec["result_out"]):
            return {"solver": solver, "error": f"worker exited with status {rc} "
                    f"(killed for memory?) after {time.perf_counter() - wall:.1f} s", "seconds": float("nan")}, None
        with open(spec["result_out"]) as f:
            result = json.load(f)
        coef = None
        if result.get("error") is None:
            with np.load(spec["coef_out"]) as f:
                coef = {"coef": f["coef"], "intercept": f["intercept"]}
        return result, coef

    def run_case(self, case: str, H: np.ndarray, y: np.ndarray, data_settings: dict, solvers: list[str],
                 target: dict, label: str | None = None) -> list[dict]:
        K = int(len(np.unique(y)))
        n, d = H.shape
        label = label or case
        print(f"\n== {label}: n={n}, d={d}, K={K} ({data_settings.get('kind')})", flush=True)
        data_path = self.save_data(H, y)
        rows, sol = [], {}
        self.liblinear_max_iter = self.args.liblinear_max_iter or LIBLINEAR_MAX_ITER.get(case, 10_000)
        for solver in solvers:
            if solver == "svc" and K != 2:
                continue
            if solver in ("liblinear", "svc") and self.args.skip_baselines:
                continue
            print(f"   fitting {solver} ...", flush=True)
            res, coef = self.fit(solver, data_path)
            row = {"case": case, "label": label, "n": n, "d": d, "K": K, **res}
            if coef is not None:
                W, b = as_rows(coef["coef"], coef["intercept"], K)
                f = scale_data.functional_margin(H, y, W, b)
                row["margin"] = f / float(np.linalg.norm(W))
                row["max_violation_recomputed"] = max(0.0, 1.0 - f)
                row["max_violation"] = res.get("max_violation_own", row["max_violation_recomputed"])
                row["train_accuracy"] = float((np.argmax(H @ W.T + b, axis=1) == y).mean())
                sol[solver] = W
            rows.append(row)
        ours = next((r for r in rows if r["solver"] == "ours"), None)
        for r in rows:
            if r["solver"] != "ours" and ours is not None and "ours" in sol and r["solver"] in sol:
                r["angle_to_ours_deg"] = angle_deg(sol[r["solver"]], sol["ours"])
                r["margin_deficit"] = 1.0 - r["margin"] / ours["margin"]
                if ours.get("seconds") and r.get("seconds"):
                    r["ours_over_this_time"] = ours["seconds"] / r["seconds"]
        if ours is not None:
            ours["target"], ours["target_met"], ours["judged_by"] = judge(ours, rows, target, self.args.tol)
        for r in rows:
            r["data"] = data_settings
            print_row(r)
        os.unlink(data_path)
        self.rows.extend(rows)
        self.write_json()
        return rows

    def write_json(self) -> None:
        if not self.args.json:
            return
        path = Path(self.args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"argv": sys.argv[1:], "device": self.args.device, "quick": self.args.quick,
                   "threads": self.args.threads or "default", "rows": self.rows}
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(_finite(payload), f, indent=1, default=float)
        os.replace(tmp, path)


def _finite(obj):
    """NaN / inf as None, so that the JSON file is strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def judge(ours: dict, rows: list[dict], target: dict, tol: float) -> tuple[str, bool | None, str]:
    """(target text, met? (None: could not be judged), the numbers it was judged by)."""
    parts, verdicts, judged = [f"certified (max viol <= {tol:g})"], [], []
    verdicts.append(ours.get("error") is None and ours.get("max_violation", math.inf) <= tol)
    judged.append(f"max viol {ours.get('max_violation', float('nan')):.1e}")
    if "ratio_to_liblinear" in target:
        lin = next((r for r in rows if r["solver"] == "liblinear"), None)
        parts.append(f"<= {target['ratio_to_liblinear']:g}x liblinear time")
        t_lin = lin.get("seconds") if lin and lin.get("error") is None else None
        if not t_lin or not ours.get("seconds") or math.isnan(ours["seconds"]):
            judged.append("no liblinear time")
            verdicts.append(None)
        else:
            ratio = ours["seconds"] / t_lin
            judged.append(f"time ratio ours/liblinear {ratio:.2f}")
            verdicts.append(ratio <= target["ratio_to_liblinear"])
    if "seconds" in target:
        parts.append(f"<= {target['seconds']:g} s")
        judged.append(f"{ours.get('seconds', float('nan')):.2f} s")
        verdicts.append(ours.get("seconds", math.inf) <= target["seconds"])
    if "peak_gib" in target:
        parts.append(f"peak <= {target['peak_gib']:g} GiB")
        pk = ours.get("peak_mib", math.inf) / 1024
        judged.append(f"peak {pk:.2f} GiB")
        verdicts.append(pk <= target["peak_gib"])
    met = False if False in verdicts else (None if None in verdicts else True)
    return "; ".join(parts), met, ", ".join(judged)


def _fmt(v, spec, width):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—".rjust(width)
    return format(v, spec).rjust(width)


def print_row(r: dict) -> None:
    name = {"ours": "ours", "liblinear": "liblinear-CS", "svc": "SVC(C=1e6)"}[r["solver"]]
    if r.get("error"):
        where = f" [{r['device']}]" if r.get("device", "cpu") != "cpu" else ""
        print(f"   {name:<13} {_fmt(r.get('seconds'), '.2f', 8)} s  ERROR {r['error']}{where}", flush=True)
        if r["solver"] == "ours":
            print(f"   {'':<13} target: {r.get('target')}: NOT MET ({r.get('judged_by')})", flush=True)
        return
    grown = r["peak_mib"] - r["rss_before_mib"] if r.get("peak_mib") and r.get("rss_before_mib") else None
    line = (f"   {name:<13} {_fmt(r.get('seconds'), '.2f', 8)} s  peak {_fmt(r.get('peak_mib'), '.0f', 6)} MiB"
            f" (+{_fmt(grown, '.0f', 5).strip()} in fit)"
            f"  margin {_fmt(r.get('margin'), '.4e', 10)}  max viol {_fmt(r.get('max_violation'), '.1e', 7)}")
    if r["solver"] == "ours":
        line += (f"  gap {_fmt(r.get('duality_gap'), '.1e', 7)} (recomputed {_fmt(r.get('gap_recomputed'), '.1e', 7)})"
                 f"  rounds {_fmt(r.get('n_iter'), 'd', 3)}"
                 f"  SVs {_fmt(r.get('n_support'), 'd', 5)}  pairs {_fmt(r.get('pairs'), 'd', 6)}")
        if r.get("cuda_peak_mib") is not None:
            line += f"  cuda peak {r['cuda_peak_mib']:.0f} MiB"
        if r.get("device", "cpu") != "cpu":
            line += f"  [{r['device']}]"
    else:
        line += (f"  angle to ours {_fmt(r.get('angle_to_ours_deg'), '.3f', 7)} deg"
                 f"  margin deficit {_fmt(r.get('margin_deficit'), '.2e', 9)}"
                 f"  ours/this time {_fmt(r.get('ours_over_this_time'), '.2f', 6)}")
        if r["solver"] == "liblinear":
            line += f"  iters {r.get('n_iter')}{'' if r.get('converged') else ' (NOT converged)'}"
    print(line, flush=True)
    if r["solver"] == "ours" and r.get("max_violation_recomputed") is not None and \
            abs(r["max_violation_recomputed"] - r["max_violation"]) > 1e-6:
        print(f"   {'':<13} note: max violation recomputed here from coef_/intercept_: "
              f"{r['max_violation_recomputed']:.2e}", flush=True)
    for w in r.get("warnings", []):
        print(f"   {'':<13} warning: {w}", flush=True)
    if r["solver"] == "ours":
        verdict = {True: "MET", False: "NOT MET", None: "not judged"}[r.get("target_met")]
        print(f"   {'':<13} target: {r['target']}: {verdict} ({r['judged_by']})", flush=True)


# ----------------------------------------------------------------------------------------------------------------
# cases

# name: (full size, quick size) as (n, d, K), target[, generator knobs]; quick sizes keep K (or shrink it) and shrink
# d so that today's solver, whose cost grows like (K·(d+1))³, finishes them in seconds. imagenet-subset draws 1.8×
# the points it needs: at K=1000, d=2048 the separability filter drops about 35 % of a draw (measured at n=20,000;
# 1.15× left 92,826 of the 100,000 points).
SYNTHETIC = {
    "cifar10-head": ((50_000, 512, 10), (2_000, 48, 10), {"ratio_to_liblinear": 3.0}),
    "cifar100-20k": ((20_000, 512, 100), (2_000, 16, 40), {"ratio_to_liblinear": 3.0, "peak_gib": 4.0}),
    "cifar100-50k": ((50_000, 512, 100), (4_000, 16, 40), {"ratio_to_liblinear": 3.0, "peak_gib": 4.0}),
    "imagenet-subset": ((100_000, 2048, 1000), (5_000, 16, 100), {"seconds": 1800.0}, {"oversample": 1.8}),
    "wide-cs": ((30, 5_000, 3), (30, 1_000, 3), {"seconds": 5.0}),
    "wide-binary": ((200, 20_000, 2), (200, 2_000, 2), {"seconds": 5.0}),
}
# liblinear does not converge at tol=1e-8 on the d >> n cases (measured: wide-cs 51 s at max_iter=10,000, "failed
# to converge"); there it gets fewer iterations unless --liblinear-max-iter is given. For two classes sklearn's
# LinearSVC(crammer_singer) ignores max_iter (measured on wide-binary: n_iter_ = 100,000 and 194 s with
# max_iter=10), so binary cases run SVC only, and liblinear-CS with --binary-liblinear.
LIBLINEAR_MAX_ITER = {"wide-cs": 1_000}
GROWTH_N = ((10_000, 20_000, 50_000), (500, 1_000, 2_000))       # at K=10, d=512 (quick: d=32)
GROWTH_K = ((10, 30, 100), (5, 10, 20))                          # at n=10k, d=512 (quick: n=1000, d=16)
MNIST_QUICK_N = 1_000
CASE_NAMES = list(SYNTHETIC) + ["mnist-real", "growth"]
DEFAULT_CASES = [c for c in CASE_NAMES if c != "imagenet-subset"]


def synthetic_case(runner: Runner, name: str) -> None:
    full, quick, target, *knobs = SYNTHETIC[name]
    n, d, K = runner.args.size or (quick if runner.args.quick else full)
    H, y, s = scale_data.collapse_features(n, d, K, seed=runner.args.seed, **(knobs[0] if knobs else {}))
    solvers = ["ours"] + (["svc"] + (["liblinear"] if runner.args.binary_liblinear else []) if K == 2
                          else ["liblinear"])
    if name == "imagenet-subset":
        solvers = ["ours"]                              # no baseline: liblinear would take hours here
    runner.run_case(name, H, y, s, solvers, target)


def mnist_case(runner: Runner) -> None:
    H, y, s = scale_data.mnist_features()
    if runner.args.quick:
        H, y = H[:MNIST_QUICK_N], y[:MNIST_QUICK_N]
        s = dict(s, subset=f"first {MNIST_QUICK_N} training points")
    runner.run_case("mnist-real", H, y, s, ["ours", "liblinear"], {"ratio_to_liblinear": 3.0})


def slope(xs, ts) -> float:
    xs, ts = np.log(np.asarray(xs, float)), np.asarray(ts, float)
    if len(xs) < 2 or not np.all(np.isfinite(ts)) or np.any(ts <= 0):
        return float("nan")
    return float(np.polyfit(xs, np.log(ts), 1)[0])


def growth_case(runner: Runner) -> None:
    q = 1 if runner.args.quick else 0
    d_n, d_k, n_k = (32, 16, 1_000) if q else (512, 512, 10_000)
    tn, tk = [], []
    for n in GROWTH_N[q]:
        H, y, s = scale_data.collapse_features(n, d_n, 10, seed=runner.args.seed)
        rows = runner.run_case("growth", H, y, s, ["ours"], {}, label=f"growth n={n} (K=10, d={d_n})")
        tn.append(rows[0].get("seconds", float("nan")) if rows[0].get("error") is None else float("nan"))
    for K in GROWTH_K[q]:
        H, y, s = scale_data.collapse_features(n_k, d_k, K, seed=runner.args.seed)
        rows = runner.run_case("growth", H, y, s, ["ours"], {}, label=f"growth K={K} (n={n_k}, d={d_k})")
        tk.append(rows[0].get("seconds", float("nan")) if rows[0].get("error") is None else float("nan"))
    en, ek = slope(GROWTH_N[q], tn), slope(GROWTH_K[q], tk)
    print(f"\n== growth: time ~ n^{en:.2f} (n = {GROWTH_N[q]}, K=10, d={d_n}; times {[round(t, 2) for t in tn]} s)"
          f"   time ~ K^{ek:.2f} (K = {GROWTH_K[q]}, n={n_k}, d={d_k}; times {[round(t, 2) for t in tk]} s)",
          flush=True)
    runner.rows.append({"case": "growth", "label": "growth exponents", "solver": "ours",
                        "exponent_n": en, "n_values": list(GROWTH_N[q]), "seconds_n": tn,
                        "exponent_K": ek, "K_values": list(GROWTH_K[q]), "seconds_K": tk})
    runner.write_json()


def summary(rows: list[dict]) -> None:
    print("\n== summary (ours)")
    print(f"   {'case':<36} {'n':>7} {'d':>6} {'K':>5} {'seconds':>9} {'peak MiB':>9} {'max viol':>9} "
          f"{'pairs':>6} {'baseline s':>15} {'angle deg':>9} {'deficit':>9}  target")
    by_label: dict[str, list[dict]] = {}
    for r in rows:
        if "n" in r:
            by_label.setdefault(r["label"], []).append(r)
    print("   (baseline: liblinear-CS (lib), for binary cases SVC(C=1e6) (SVC); * stopped at max_iter unconverged)")
    for label, rs in by_label.items():
        o = next((r for r in rs if r["solver"] == "ours"), None)
        lin = next((r for r in rs if r["solver"] == "liblinear"), None) or \
            next((r for r in rs if r["solver"] == "svc"), {})
        base = {"liblinear": "lib", "svc": "SVC"}.get(lin.get("solver"), "")
        if o is None:
            continue
        verdict = {True: "MET", False: "NOT MET", None: "not judged"}[o.get("target_met")]
        tgt = f"{verdict} ({o.get('judged_by')})" if o.get("target") else ""
        err = f"  ERROR {o['error'][:60]}" if o.get("error") else ""
        print(f"   {label:<36} {o['n']:>7} {o['d']:>6} {o['K']:>5} {_fmt(o.get('seconds'), '.2f', 9)} "
              f"{_fmt(o.get('peak_mib'), '.0f', 9)} {_fmt(o.get('max_violation'), '.1e', 9)} "
              f"{_fmt(o.get('pairs'), 'd', 6)} {base:>4}{_fmt(lin.get('seconds'), '.2f', 10)}"
              f"{'*' if lin and lin.get('converged') is False else ' '} "
              f"{_fmt(lin.get('angle_to_ours_deg'), '.3f', 9)} {_fmt(lin.get('margin_deficit'), '.2e', 9)}  "
              f"{tgt}{err}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--case", action="append", choices=CASE_NAMES, help="run only this case (repeatable)")
    p.add_argument("--quick", action="store_true", help="small versions of the cases (about a minute)")
    p.add_argument("--big", action="store_true", help="include imagenet-subset in the default run")
    p.add_argument("--device", default="cpu", help="device for ours (cpu or cuda); baselines run on the CPU")
    p.add_argument("--size", type=lambda v: tuple(int(x) for x in v.split(",")), metavar="N,D,K",
                   help="override n, d, K of the synthetic cases run (e.g. --case cifar10-head --size 2000,512,10)")
    p.add_argument("--json", help="write the rows here (atomically, after every case)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-baselines", action="store_true")
    p.add_argument("--threads", type=int, default=0, help="OMP/OpenBLAS/MKL threads of the solver processes "
                   "(default: the libraries' choice)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed per fit (default 3600)")
    p.add_argument("--tol", type=float, default=1e-8, help="largest max violation counted as certified")
    p.add_argument("--liblinear-C", dest="liblinear_C", type=float, default=1e4)
    p.add_argument("--liblinear-tol", dest="liblinear_tol", type=float, default=1e-8)
    p.add_argument("--liblinear-max-iter", dest="liblinear_max_iter", type=int, default=None,
                   help="LinearSVC max_iter (default 10,000; 1,000 for the d >> n cases)")
    p.add_argument("--svc-C", dest="svc_C", type=float, default=1e6)
    p.add_argument("--binary-liblinear", action="store_true",
                   help="also run liblinear-CS on binary cases (slow: sklearn ignores max_iter there)")
    p.add_argument("--no-verbose", action="store_true", help="do not pass verbose=1 to ours")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(json.loads(args.worker))
    if args.device != "cpu":
        import torch

        from nnboundary.device import resolve_device

        resolve_device(args.device)                    # one clear error when the device does not exist
        print(f"ours on {args.device}: {torch.cuda.get_device_name() if args.device.startswith('cuda') else ''}")
    cases = args.case or (DEFAULT_CASES + (["imagenet-subset"] if args.big else []))
    scale_data.CACHE_DIR.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="svm_scale_", dir=scale_data.CACHE_DIR) as tmp:
        runner = Runner(args, Path(tmp))
        for name in cases:
            if name == "mnist-real":
                mnist_case(runner)
            elif name == "growth":
                growth_case(runner)
            else:
                synthetic_case(runner, name)
    summary(runner.rows)
    print(f"\ntotal {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
