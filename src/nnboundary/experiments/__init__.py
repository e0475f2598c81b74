"""Every experiment of nnboundary as a named, seeded configuration, and the one runner that reproduces it.

One registry (:func:`register_experiment`) holds every kind: the paper's simulated-data experiments
(:class:`ExperimentConfig`) and the image, bias, forgetting and adversarial kinds (:class:`KindConfig`, each
kind registered with :func:`~nnboundary.experiments.registry.register_kind`). :func:`run_experiment` runs any of
them into one :class:`~nnboundary.experiments.rundir.RunDir` (staged, atomic, locked, with a marker so that
``force=True`` replaces only a run directory) and returns a result with ``.summary``, ``.table()`` and
``.report_md()``. A flag that a kind cannot honour raises :class:`FlagNotSupportedError`.

>>> from nnboundary.experiments import list_experiments, get_experiment, run_experiment
>>> "blobs" in list_experiments()
True
>>> get_experiment("blobs", "quick").steps
2000
>>> result = run_experiment("blobs", "quick", "runs/blobs-quick")        # doctest: +SKIP
>>> result.report                                                         # doctest: +SKIP
PosixPath('runs/blobs-quick/report.md')

Profiles: ``paper`` (the original's settings), ``quick`` (about a minute on 2 CPU cores),
``smoke`` (seconds, for tests). See :mod:`nnboundary.experiments.registry` for the config fields and
:mod:`nnboundary.experiments.runner` for the run-directory layout.
"""

from nnboundary.experiments.registry import (
    FLAGS,
    PLOTS,
    PROFILES,
    ExperimentConfig,
    FlagNotSupportedError,
    KindConfig,
    Profile,
    Variant,
    describe_experiment,
    experiment_kind,
    get_experiment,
    list_experiments,
    register_experiment,
)
from nnboundary.experiments import _catalog  # noqa: F401  (importing the definitions registers them)
from nnboundary.experiments.report import summary_rows, write_report
from nnboundary.experiments.result import KindResult
from nnboundary.experiments.rundir import RunDir, RunLockedError
from nnboundary.experiments.runner import (
    RunExistsError,
    RunResult,
    default_run_dir,
    load_run,
    run_all,
    run_experiment,
)

__all__ = [
    "FLAGS",
    "PLOTS",
    "PROFILES",
    "ExperimentConfig",
    "FlagNotSupportedError",
    "KindConfig",
    "Profile",
    "KindResult",
    "RunDir",
    "RunExistsError",
    "RunLockedError",
    "RunResult",
    "Variant",
    "default_run_dir",
    "describe_experiment",
    "experiment_kind",
    "get_experiment",
    "list_experiments",
    "load_run",
    "register_experiment",
    "run_all",
    "run_experiment",
    "summary_rows",
    "write_report",
]
