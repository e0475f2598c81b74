"""Experiments that have runners of their own — real images, the bias re-initialisation study, and the two
applications — looked up by name, so that ``nnboundary list`` and ``nnboundary reproduce NAME`` reach them
beside the simulated-data registry."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


@dataclass(frozen=True)
class OtherExperiment:
    """A named experiment with its own runner: ``run(out_dir, profile, seed, device, data_dir, force) -> summary``."""

    name: str
    title: str
    run: Callable[..., Any]


def other_experiments() -> dict[str, OtherExperiment]:
    """Every experiment outside the simulated-data registry, by name."""
    from nnboundary.applications import (ADVERSARIAL_EXPERIMENTS, FORGETTING_EXPERIMENTS, run_adversarial,
                                         run_forgetting)
    from nnboundary.experiments.bias import BIAS_EXPERIMENTS, run_bias_reinit
    from nnboundary.experiments.images import IMAGE_EXPERIMENTS, run_image_experiment

    def by_name(runner):  # these runners keep their own default seed when none is given
        return lambda name, out_dir, profile, seed, **kw: runner(name, profile, out_dir,
                                                                  **({} if seed is None else {"seed": seed}), **kw)

    def by_config(runner):
        return lambda name, out_dir, profile, seed, **kw: runner(name, out_dir, profile=profile, seeds=seed, **kw)

    found = {}
    for table, runner in ((IMAGE_EXPERIMENTS, by_name(run_image_experiment)),
                          (BIAS_EXPERIMENTS, by_name(run_bias_reinit)),
                          (FORGETTING_EXPERIMENTS, by_config(run_forgetting)),
                          (ADVERSARIAL_EXPERIMENTS, by_config(run_adversarial))):
        for name, entry in table.items():
            found[name] = OtherExperiment(name, entry["title"], lambda *a, _r=runner, _n=name, **kw: _r(_n, *a, **kw))
    return found


def run_other(name: str, out_dir: Path, *, profile: str = "quick", seed: int | None = None, device: str = "cpu",
              data_dir: Path | None = None, force: bool = False) -> Any:
    """Run one experiment of :func:`other_experiments` into ``out_dir``; returns its runner's summary."""
    experiment = other_experiments()[name]
    return experiment.run(out_dir, profile, seed, device=device, data_dir=data_dir, force=force)
