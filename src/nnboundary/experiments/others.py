"""The experiment kinds with runners of their own (real images, the bias study, the two applications), reached
by name beside the simulated-data registry, all through one call::

    result = run_other("forgetting-digits", "runs/forgetting-digits-quick", profile="quick", seed=0)
    result.summary, result.table(), result.report_md()      # a KindResult, like the simulated RunResult

Every kind states which command-line flags it takes (:attr:`OtherExperiment.flags`). A flag a kind cannot
honour is refused by name (:class:`FlagNotSupportedError`) instead of being silently ignored. Every kind writes
its run directory through :class:`~nnboundary.experiments.rundir.RunDir` (marker, lock, staging), so ``--force``
and the lock behave the same everywhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnboundary.experiments.result import KindResult

__all__ = ["FLAGS", "FlagNotSupportedError", "OtherExperiment", "other_experiments", "run_other"]

#: The flags of ``nnboundary reproduce`` that carry a value into a run (besides --profile and --out).
FLAGS: tuple[str, ...] = ("steps", "seed", "n_samples", "resume", "force", "device", "data_dir")


class FlagNotSupportedError(ValueError):
    """A flag was given to an experiment kind that cannot honour it."""


@dataclass(frozen=True)
class OtherExperiment:
    """A named experiment with its own runner.

    Attributes
    ----------
    name, title, kind : str
    flags : frozenset of str
        The :data:`FLAGS` this kind honours; the others are refused by name.
    flag_help : dict
        What each honoured flag does for this kind (shown in the refusal message of the others).
    run : callable
        ``run(name, profile, out_dir, options) -> KindResult``.
    """

    name: str
    title: str
    kind: str
    flags: frozenset[str]
    flag_help: dict[str, str]
    run: Callable[..., KindResult]

    def check_flags(self, given: dict[str, Any]) -> None:
        """Raise :class:`FlagNotSupportedError` naming every given flag this kind does not take."""
        bad = sorted(k for k, v in given.items() if k not in self.flags and v not in (None, False))
        if bad:
            names = ", ".join("--" + b.replace("_", "-") for b in bad)
            takes = ", ".join("--" + f.replace("_", "-") for f in sorted(self.flags))
            raise FlagNotSupportedError(f"{self.name} ({self.kind} experiment) does not take {names}. "
                                        f"It takes {takes}.")


# ------------------------------------------------------------------------------------------------ runners
def _run_image(name: str, profile: str, out: Path, o: dict[str, Any]) -> KindResult:
    from nnboundary.experiments.images import image_headline, run_image_experiment

    overrides: dict[str, Any] = {}
    if o.get("steps") is not None:
        overrides["train"] = {"steps": o["steps"]}
    if o.get("n_samples") is not None:
        overrides["data"] = {"subsample": o["n_samples"]}
    seed = 0 if o.get("seed") is None else o["seed"]
    t0 = time.perf_counter()
    summary = run_image_experiment(name, profile, out, seed=seed, device=o["device"], data_dir=o.get("data_dir"),
                                   force=o["force"], resume=o["resume"], overrides=overrides or None,
                                   progress=o.get("progress", False))
    return KindResult(name, profile, "image", out, [seed], image_headline(summary),
                      float(summary.get("wall_time_s", time.perf_counter() - t0)), summary)


def _run_bias(name: str, profile: str, out: Path, o: dict[str, Any]) -> KindResult:
    from nnboundary.experiments.bias import bias_headline, run_bias_reinit

    overrides = {"head": {"steps": o["steps"]}} if o.get("steps") is not None else None
    summary = run_bias_reinit(name, profile, out, seed=o.get("seed"), device=o["device"], data_dir=o.get("data_dir"),
                              force=o["force"], overrides=overrides, progress=o.get("progress", False))
    return KindResult(name, profile, "bias", out, list(summary["network_seeds"]), bias_headline(summary),
                      float(summary["wall_time_s"]), summary)


def _run_forgetting(name: str, profile: str, out: Path, o: dict[str, Any]) -> KindResult:
    from nnboundary.applications import run_forgetting

    return run_forgetting(name, out, seeds=o.get("seed"), device=o["device"], profile=profile,
                          data_dir=o.get("data_dir"), force=o["force"]).as_kind_result()


def _run_adversarial(name: str, profile: str, out: Path, o: dict[str, Any]) -> KindResult:
    from nnboundary.applications import run_adversarial

    return run_adversarial(name, out, seeds=o.get("seed"), device=o["device"], profile=profile,
                           data_dir=o.get("data_dir"), force=o["force"]).as_kind_result()


_COMMON = {"seed": "the seed (replaces the profile's seed list with this one seed)",
           "force": "replace an earlier run directory", "device": "where to train",
           "data_dir": "folder with the real data files"}
_KINDS: dict[str, tuple[Callable[..., KindResult], dict[str, str]]] = {
    "image": (_run_image, {**_COMMON, "seed": "seed of subsampling, initialisation and batches",
                           "steps": "training updates (replaces the profile's epochs)",
                           "n_samples": "training images (data.subsample)",
                           "resume": "continue an interrupted run from its last checkpoint"}),
    "bias": (_run_bias, {**_COMMON, "seed": "one network seed (replaces network_seeds)",
                         "steps": "updates of each retrained head (head.steps)"}),
    "forgetting": (_run_forgetting, dict(_COMMON)),
    "adversarial": (_run_adversarial, dict(_COMMON)),
}


def other_experiments() -> dict[str, OtherExperiment]:
    """Every experiment outside the simulated-data registry, by name."""
    from nnboundary.applications import ADVERSARIAL_EXPERIMENTS, FORGETTING_EXPERIMENTS
    from nnboundary.experiments.bias import BIAS_EXPERIMENTS
    from nnboundary.experiments.images import IMAGE_EXPERIMENTS

    found = {}
    for kind, table in (("image", IMAGE_EXPERIMENTS), ("bias", BIAS_EXPERIMENTS),
                        ("forgetting", FORGETTING_EXPERIMENTS), ("adversarial", ADVERSARIAL_EXPERIMENTS)):
        run, helps = _KINDS[kind]
        for name, entry in table.items():
            found[name] = OtherExperiment(name, entry["title"], kind, frozenset(helps), helps, run)
    return found


def run_other(name: str, out_dir: str | Path, *, profile: str = "quick", seed: int | None = None,
              steps: int | None = None, n_samples: int | None = None, resume: bool = False, force: bool = False,
              device: str = "cpu", data_dir: str | Path | None = None, progress: bool = False) -> KindResult:
    """Run one experiment of :func:`other_experiments` into ``out_dir``.

    Raises
    ------
    FlagNotSupportedError
        A flag the kind does not take (named, with the ones it does take); raised before anything runs.
    KeyError
        Unknown name.
    """
    experiment = other_experiments()[name]
    options = {"seed": seed, "steps": steps, "n_samples": n_samples, "resume": resume, "force": force,
               "device": device, "data_dir": data_dir}
    experiment.check_flags({k: v for k, v in options.items() if k != "device" or v != "cpu"})
    return experiment.run(name, profile, Path(out_dir), {**options, "progress": progress})
