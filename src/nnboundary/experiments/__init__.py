"""The paper's simulated-data experiments as named, seeded configurations, and the runner that reproduces them.

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
    PLOTS,
    PROFILES,
    ExperimentConfig,
    Profile,
    Variant,
    describe_experiment,
    get_experiment,
    list_experiments,
    register_experiment,
)
from nnboundary.experiments import _catalog  # noqa: F401  (importing the definitions registers them)
from nnboundary.experiments.report import summary_rows, write_report
from nnboundary.experiments.runner import (
    RunExistsError,
    RunResult,
    default_run_dir,
    load_run,
    run_all,
    run_experiment,
)

__all__ = [
    "PLOTS",
    "PROFILES",
    "ExperimentConfig",
    "Profile",
    "RunExistsError",
    "RunResult",
    "Variant",
    "default_run_dir",
    "describe_experiment",
    "get_experiment",
    "list_experiments",
    "load_run",
    "register_experiment",
    "run_all",
    "run_experiment",
    "summary_rows",
    "write_report",
]
