"""Run a registered experiment into a run directory: config, metrics, summary, figures, report.

Layout of ``run_experiment("blobs", "quick", "runs/blobs-quick")``::

    runs/blobs-quick/
        config.json      the resolved ExperimentConfig and the run settings (device, seed, versions)
        data.npz         X, y, X_test, y_test  (``nnboundary analyze model.pt --data data.npz`` works)
        metrics.jsonl    one line per AlignmentTracker evaluation (log-spaced steps, 0 and the last)
        summary.json     the final numbers of every variant (with ``diagnostics``, ``rates`` and, if asked,
                         ``head_alone``: see :func:`nnboundary.analysis.claim_verdict`)
        head_alone.json  the head-alone continuation's curve (``head_continuation_steps`` > 0)
        report.md        the numbers and the figures side by side
        figures/*.png
        model.pt         the trained network's state_dict (no pickle), model.json how to rebuild it
        analysis/        Analysis.save(): summary.json, details.csv, features.npz, settings.json
        snapshots/       weights at the snapshot steps (experiments with a snapshot figure)
        done.json        the variant's final rows and figure list (lets --resume skip finished variants)

A study puts each variant's model.pt, analysis/ and metrics.jsonl under ``variants/<label>/`` and
concatenates the metrics (with a ``variant`` field) at the top.

Atomicity: everything is written into ``<out>.partial/`` and renamed to ``<out>`` only when the run
is complete, so ``<out>`` is never half written. An interrupted run leaves ``<out>.partial/`` with
its checkpoints; ``resume=True`` continues it (finished variants are kept, the running one resumes
from its last checkpoint, bit-identical on CPU). An existing ``<out>`` is replaced only with
``force=True``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nnboundary.io import save_model
from nnboundary.device import resolve_device
from nnboundary._jsonio import to_jsonable
from nnboundary._jsonio import write_json as _write_json
from nnboundary.experiments import _figures as F
from nnboundary.experiments._data import RunData, load_run_data
from nnboundary.experiments._hooks import SnapshotHook, analysis_view
from nnboundary.experiments.registry import (ExperimentConfig, KindConfig, experiment_kind, get_experiment, get_kind,
                                             list_experiments)
from nnboundary.experiments.result import KindResult
from nnboundary.experiments.report import profile_differences, summary_rows, write_report
from nnboundary.experiments.rundir import RunDir, RunExistsError, default_run_dir

__all__ = ["RunExistsError", "RunResult", "default_run_dir", "load_run", "run_all", "run_experiment"]

logger = logging.getLogger(__name__)

_SVM_KEYS = ("cosine", "angle_deg", "margin_ratio", "bias_offset", "agreement_train", "agreement_test",
             "agreement_grid", "n_support", "separable", "svm_multiclass", "svm_C", "sv_overlap_jaccard",
             "sv_overlap_jaccard_loss")


@dataclass
class RunResult:
    """What :func:`run_experiment` returns (and :func:`load_run` reads back).

    Attributes
    ----------
    name, profile : str
    run_dir : Path
    report : Path
        ``run_dir / "report.md"``.
    summaries : dict
        Row label -> flat summary dict (the analysis summary plus training and input-space numbers).
    config : dict
        ``ExperimentConfig.to_dict()``.
    run_info : dict
        Seed, device, versions, wall time.
    wall_time_s : float
    """

    name: str
    profile: str
    run_dir: Path
    report: Path
    summaries: dict[str, dict[str, Any]]
    config: dict[str, Any]
    run_info: dict[str, Any] = field(default_factory=dict)
    wall_time_s: float = float("nan")

    def table(self, compact: bool = False) -> tuple[list[str], list[list[str]]]:
        """``(headers, rows)`` of the results table (see :func:`nnboundary.experiments.report.summary_rows`);
        ``compact`` gives the narrow terminal version."""
        from nnboundary.experiments.report import COMPACT_COLUMNS, TABLE_COLUMNS

        return summary_rows(self.summaries, COMPACT_COLUMNS if compact else TABLE_COLUMNS)

    @property
    def summary(self) -> dict[str, Any]:
        """The headline numbers: the summary of the single run, or ``{"<variant>/<key>": value}`` of a study."""
        if len(self.summaries) == 1:
            return dict(next(iter(self.summaries.values())))
        return {f"{label}/{k}": v for label, s in self.summaries.items() for k, v in s.items()}

    @property
    def seeds(self) -> list[int]:
        return [int(self.run_info.get("seed", self.config.get("seed", 0)))]

    def report_md(self) -> str:
        """The text of the run's ``report.md``."""
        return self.report.read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------------ public
def run_experiment(experiment: str | ExperimentConfig | KindConfig, profile: str = "quick",
                   out_dir: str | os.PathLike[str] | None = None, *, seed: int | None = None, device: str = "cpu",
                   force: bool = False, resume: bool = False, data_dir: str | os.PathLike[str] | None = None,
                   progress: bool = True, overrides: dict[str, Any] | None = None) -> RunResult | KindResult:
    """Run one registered experiment of any kind into a run directory.

    A simulated experiment is trained, tracked, analysed and drawn here (every variant of a study) and gives a
    :class:`RunResult`; an experiment of another kind (image, bias, forgetting, adversarial) goes to its kind's
    runner and gives a :class:`~nnboundary.experiments.result.KindResult`. Both have ``.summary``,
    ``.table()`` and ``.report_md()``. A flag a kind cannot honour raises
    :class:`~nnboundary.experiments.registry.FlagNotSupportedError` before anything runs.

    Parameters
    ----------
    experiment : str, ExperimentConfig or KindConfig
        A registered name (see :func:`~nnboundary.experiments.list_experiments`) or a config.
    profile : {"smoke", "quick", "paper"}, default="quick"
        Ignored when a config is passed (it carries its own).
    out_dir : path-like or None, default=None
        None: ``runs/<name>-<profile>``.
    seed : int or None, default=None
        Replaces the config's seed (data, split, initialisation, minibatch order).
    device : str, default="cpu"
        ``"cpu"`` or ``"cuda"``; same seed on CPU gives the same numbers.
    force : bool, default=False
        Replace an existing run directory (and discard an interrupted one).
    resume : bool, default=False
        Continue an interrupted run from ``<out>.partial`` (a complete run is returned as it is).
    data_dir : path-like or None, default=None
        Where real data sets are read from (simulated ones ignore it).
    progress : bool, default=True
        Show the training progress bar.
    overrides : dict or None, default=None
        Config fields to replace, e.g. ``{"steps": 50, "n_samples": 40}`` (other kinds: ``steps``,
        ``n_samples``, ``settings``, where the kind has them).

    Returns
    -------
    RunResult or KindResult

    Raises
    ------
    RunExistsError
        ``out_dir`` holds a run and ``force`` is False, or an interrupted run is there and neither
        ``resume`` nor ``force`` is given.
    ValueError
        Unknown experiment or profile, an invalid config, or a resume whose config differs.
    """
    if isinstance(experiment, KindConfig) or (isinstance(experiment, str) and experiment_kind(experiment) != "simulated"):
        return _run_kind(experiment, profile, out_dir, seed=seed, device=device, force=force, resume=resume,
                         data_dir=data_dir, progress=progress, overrides=overrides)
    t0 = time.perf_counter()
    cfg = _resolve(experiment, profile, seed, overrides)
    rd = RunDir(out_dir if out_dir is not None else default_run_dir(cfg.name or "experiment", cfg.profile),
                experiment=cfg.name, profile=cfg.profile)
    out = rd.path
    if resume and rd.is_complete() and not rd.has_partial():
        saved = load_run(out)
        _check_same_config(saved.config, cfg.to_dict(), out / "config.json")
        logger.info("%s is already complete; nothing to resume.", out)
        return saved
    resolve_device(device)
    data = load_run_data(cfg, data_dir)  # before any directory is made: a missing data set leaves nothing behind
    with rd.open(force=force, resume=resume) as partial:
        run_info = _run_info(cfg, device, data_dir)
        _write_config(partial, cfg, run_info, resume=resume)
        data.save(partial / "data.npz")
        summaries: dict[str, dict[str, Any]] = {}
        figures: dict[str, list[F.FigureInfo]] = {}
        tracking_errors: dict[str, list[dict[str, Any]]] = {}
        for i, (label, vcfg) in enumerate(cfg.expand()):
            vdir = partial / "variants" / label if cfg.is_study else partial
            prefix = f"{label}-" if cfg.is_study else ""
            logger.info("Running %s / %s (%s profile).", cfg.name, label, cfg.profile)
            done = _run_variant(label, vcfg, data, vdir, partial, prefix, device=device, resume=resume,
                                progress=progress, draw_data=i == 0)
            for row_label, summary in done["rows"].items():
                summaries[row_label if cfg.is_study or len(done["rows"]) > 1 else label] = summary
            figures[label] = [F.FigureInfo(**f) for f in done["figures"]]
            tracking_errors[label] = done["tracking_errors"]
        if cfg.is_study:
            _concat_metrics(partial, [label for label, _ in cfg.expand()])

        run_info["wall_time_s"] = round(time.perf_counter() - t0, 2)
        reference = _paper_reference(cfg)
        _write_json(partial / "summary.json", {
            "experiment": cfg.name, "title": cfg.title, "profile": cfg.profile, "seed": cfg.seed, "device": device,
            "wall_time_s": run_info["wall_time_s"], "variants": summaries,
            "table": dict(zip(("headers", "rows"), summary_rows(summaries))), "config_file": "config.json",
        })
        write_report(partial, config=cfg.to_dict(), summaries=summaries, figures=figures, run_info=run_info,
                     paper_differences=profile_differences(cfg.to_dict(), reference),
                     tracking_errors=tracking_errors)
        _write_config(partial, cfg, run_info, resume=True)  # now with the wall time
    return RunResult(name=cfg.name, profile=cfg.profile, run_dir=out, report=out / "report.md", summaries=summaries,
                     config=cfg.to_dict(), run_info=run_info, wall_time_s=run_info["wall_time_s"])


def _run_kind(experiment: str | KindConfig, profile: str, out_dir: Any, *, seed: int | None, device: str,
              force: bool, resume: bool, data_dir: Any, progress: bool, overrides: dict[str, Any] | None) -> KindResult:
    """Run an experiment of another kind through its kind's runner (flags it cannot honour are refused by name)."""
    extra = {**(overrides or {}), **({} if seed is None else {"seed": seed})}
    cfg = experiment.with_overrides(**extra) if isinstance(experiment, KindConfig) else \
        get_experiment(experiment, profile, **extra)
    kind = get_kind(cfg.kind)
    kind.check_flags(cfg.name, {"resume": resume, "force": force, "data_dir": data_dir})
    resolve_device(device)
    options: dict[str, Any] = {"device": device, "data_dir": data_dir, "progress": progress, "force": force}
    if "resume" in kind.flags:
        options["resume"] = resume
    return kind.run(cfg, Path(out_dir) if out_dir is not None else default_run_dir(cfg.name, cfg.profile), **options)


def run_all(profile: str = "quick", out_root: str | os.PathLike[str] = "runs", *, names: Sequence[str] | None = None,
            seed: int | None = None, overrides: dict[str, Any] | None = None,
            on_start: Callable[[str, ExperimentConfig, Path], None] | None = None,
            **kwargs: Any) -> list[tuple[str, RunResult | BaseException]]:
    """Run every registered experiment (or ``names``) into ``<out_root>/<name>``; failures do not stop the rest.

    Returns ``[(name, RunResult or the exception)]`` in order. ``on_start(name, config, run_dir)`` is called
    before each run; ``kwargs`` go to :func:`run_experiment`.
    """
    results: list[tuple[str, RunResult | BaseException]] = []
    for name in names if names is not None else list_experiments():
        try:
            cfg = _resolve(name, profile, seed, overrides)
            if on_start is not None:
                on_start(name, cfg, Path(out_root) / name)
            results.append((name, run_experiment(cfg, out_dir=Path(out_root) / name, **kwargs)))
        except KeyboardInterrupt:
            raise
        except Exception as err:  # noqa: BLE001 - reported by the caller, the other experiments still run
            logger.error("Experiment %s failed: %s", name, err)
            results.append((name, err))
    return results


def load_run(run_dir: str | os.PathLike[str]) -> RunResult:
    """Read a finished run directory back (summary.json and config.json)."""
    d = Path(run_dir)
    if not _is_complete(d):
        raise FileNotFoundError(f"{d} is not a finished run directory (no summary.json / config.json).")
    summary = json.loads((d / "summary.json").read_text())
    config = json.loads((d / "config.json").read_text())
    return RunResult(name=summary["experiment"], profile=summary["profile"], run_dir=d, report=d / "report.md",
                     summaries=summary["variants"], config=config["experiment"], run_info=config.get("run", {}),
                     wall_time_s=float(summary.get("wall_time_s", float("nan"))))


# ------------------------------------------------------------------------------------------------ config
def _resolve(experiment: str | ExperimentConfig, profile: str, seed: int | None,
             overrides: dict[str, Any] | None) -> ExperimentConfig:
    extra = dict(overrides or {})
    if seed is not None:
        extra["seed"] = int(seed)
    if isinstance(experiment, ExperimentConfig):
        cfg = experiment.with_overrides(**extra)
    elif isinstance(experiment, str):
        cfg = get_experiment(experiment, profile, **extra)
    else:
        raise TypeError(f"experiment must be a registered name or an ExperimentConfig, got {type(experiment).__name__}.")
    return cfg.validate()


def _paper_reference(cfg: ExperimentConfig) -> dict[str, Any] | None:
    if cfg.profile == "paper" or cfg.name not in list_experiments():
        return None
    return get_experiment(cfg.name, "paper").to_dict()


def _run_info(cfg: ExperimentConfig, device: str, data_dir: Any) -> dict[str, Any]:
    from nnboundary import __version__

    return {"experiment": cfg.name, "profile": cfg.profile, "seed": cfg.seed, "device": str(device),
            "data_dir": None if data_dir is None else str(data_dir), "nnboundary": __version__,
            "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "torch_threads": torch.get_num_threads(),
            "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}


def _write_config(partial: Path, cfg: ExperimentConfig, run_info: dict[str, Any], *, resume: bool) -> None:
    path = partial / "config.json"
    if resume and path.exists():
        saved = json.loads(path.read_text())
        _check_same_config(saved["experiment"], cfg.to_dict(), path)
    _write_json(path, {"experiment": cfg.to_dict(), "run": run_info})


def _check_same_config(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    for key in sorted(set(saved) | set(current)):
        if saved.get(key) != current.get(key):
            raise ValueError(f"Cannot resume: {path} has {key}={saved.get(key)!r}, this run asks for "
                             f"{current.get(key)!r}. Use the same settings, or --force to start over.")


def _is_complete(d: Path) -> bool:
    return RunDir.is_run_dir(d) and (d / "summary.json").is_file() and (d / "config.json").is_file()


# ------------------------------------------------------------------------------------------------ one run
def _build_model(cfg: ExperimentConfig, data: RunData) -> torch.nn.Module:
    from nnboundary.models import build_model

    return build_model(cfg.model, **_model_kwargs(cfg, data))


def _model_kwargs(cfg: ExperimentConfig, data: RunData) -> dict[str, Any]:
    """The keyword arguments that build the run's network (also saved beside model.pt, see ``io.save_model``)."""
    from nnboundary.models import model_parameters

    params = model_parameters(cfg.model)
    kwargs: dict[str, Any] = dict(cfg.model_kwargs)
    if "in_features" in params:
        kwargs["in_features"] = data.in_features
    if "n_classes" in params:
        kwargs["n_classes"] = data.n_classes
    elif data.n_classes != 2:
        raise ValueError(f"Model {cfg.model!r} is binary but the data {cfg.data!r} has {data.n_classes} classes.")
    kwargs["seed"] = cfg.seed
    return kwargs


def _svm_template(multiclass: str, n_classes: int) -> Any:
    from nnboundary.svm import MaxMarginClassifier

    if multiclass == "crammer_singer" or n_classes == 2:
        return None  # analyze's default: exact hard margin, bias matching the head, Crammer-Singer
    return MaxMarginClassifier(C=None, bias="free", multiclass=multiclass)


def _view(model: torch.nn.Module) -> torch.nn.Module:
    """What the tracker analyses: the model, or the joint linear view of an asymmetric net."""
    return analysis_view(model)[0]


def _track_schedule(track: Any) -> Any:
    return tuple(track) if isinstance(track, list) else track


def _run_variant(label: str, cfg: ExperimentConfig, data: RunData, vdir: Path, run_dir: Path, prefix: str, *,
                 device: str, resume: bool, progress: bool, draw_data: bool = True) -> dict[str, Any]:
    """Train and analyse one variant; returns (and stores in ``vdir/done.json``) rows, figures, errors."""
    from nnboundary.analysis import analyze
    from nnboundary.tracking import AlignmentTracker
    from nnboundary.train import fit

    done_path = vdir / "done.json"
    if resume and done_path.is_file():
        return json.loads(done_path.read_text())
    vdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model = _build_model(cfg, data)
    _, view_head = analysis_view(model)
    main_mc = cfg.svm_multiclass[0]
    tracker = AlignmentTracker(data.X_train, data.y_train, vdir, schedule=_track_schedule(cfg.track), head=view_head,
                               svm=_svm_template(main_mc, data.n_classes), X_test=data.X_test, y_test=data.y_test,
                               soft_C=cfg.soft_C, grid_resolution=cfg.grid_resolution, resume=resume, overwrite=True,
                               view=_view, on_error="record")
    callbacks: list[Any] = [tracker]
    if "snapshots" in cfg.plots:
        callbacks.append(SnapshotHook(vdir / "snapshots", cfg.snapshots))
    train = fit(model, data.X_train, data.y_train, loss=cfg.loss, loss_kwargs=cfg.loss_kwargs or None,
                optimizer=cfg.optimizer, optimizer_kwargs=cfg.optimizer_kwargs or None, lr=cfg.lr, steps=cfg.steps,
                batch_size=cfg.batch_size, seed=cfg.seed, device=device, dtype=cfg.dtype, callbacks=callbacks,
                checkpoint_dir=vdir / "ckpt", checkpoint_schedule=max(1, cfg.steps // 10), keep_checkpoints=1,
                resume=resume, progress=progress, on_nonfinite="warn", target_loss=cfg.target_loss,
                max_wall_s=cfg.max_wall_s)
    records = _rewrite_metrics(vdir / "metrics.jsonl", tracker.records, tracker.errors)

    base = {"variant": label, "steps": train.steps, "train_objective": cfg.loss, "train_loss": train.final_loss,
            "train_accuracy": train.final_accuracy, "steps_per_second": train.steps_per_second,
            "train_wall_time_s": round(train.wall_time_s, 2), "optimizer": cfg.optimizer, "lr": cfg.lr,
            **_stop_facts(train, cfg)}
    errors: list[str] = []
    view, _ = analysis_view(model)
    analyses: dict[str, Any] = {}
    for mc in cfg.svm_multiclass if data.n_classes > 2 else cfg.svm_multiclass[:1]:
        try:
            analyses[mc] = analyze(view, data.X_train, data.y_train, head=view_head,
                                   svm=_svm_template(mc, data.n_classes), X_test=data.X_test, y_test=data.y_test,
                                   soft_C=cfg.soft_C, grid_resolution=cfg.grid_resolution)
        except Exception as err:  # noqa: BLE001 - e.g. a diverged network: recorded as FAILED, the run goes on
            logger.warning("Analysis of %s (%s SVM) failed: %s", label, mc, err)
            errors.append(f"analysis ({mc}): {type(err).__name__}: {err}")
    base.update(_model_facts(model, data))
    input_svm = _input_svm(data, main_mc, cfg.soft_C) if data.X_train.ndim == 2 else None
    if input_svm is not None:
        base.update(_input_numbers(model, input_svm, data, cfg))
    rows = _rows(label, base, analyses, cfg.svm_multiclass, errors)
    main = analyses.get(main_mc)
    conv = _convergence(cfg, main, records, vdir, device, progress, errors)
    rows[next(iter(rows))].update(conv)  # the main SVM's row; the features' movement holds for every row
    for row in list(rows.values())[1:]:
        row["diagnostics"] = conv["diagnostics"]
    if main is not None:
        main.save(vdir / "analysis", overwrite=True)
        if "sv_vs_loss" in cfg.plots:
            rows[next(iter(rows))].update(_sv_lists(main))
    figures = _draw(cfg, data, model, analyses, input_svm, records, vdir, run_dir, prefix, errors, draw_data)
    save_model(model.to("cpu"), vdir / "model.pt", name=cfg.model, kwargs=_model_kwargs(cfg, data))
    for row in rows.values():
        row["wall_time_s"] = round(time.perf_counter() - t0, 2)
        if errors and "error" not in row:
            row["warnings"] = "; ".join(errors)
    done = {"rows": rows, "figures": [dataclasses.asdict(f) for f in figures], "tracking_errors": tracker.errors}
    _write_json(done_path, done)
    shutil.rmtree(vdir / "ckpt", ignore_errors=True)
    return json.loads(done_path.read_text())


def _stop_facts(train: Any, cfg: ExperimentConfig) -> dict[str, Any]:
    """Why training stopped: ``stop_reason`` (budget / target_loss / wall_clock), ``final_loss`` (the whole
    training set's loss at the end), ``steps_run``, ``budget_steps`` and the ``target_loss`` asked for."""
    return {"stop_reason": train.stop_reason, "final_loss": train.final_loss, "steps_run": train.steps,
            "budget_steps": train.budget_steps, "target_loss": cfg.target_loss}


def _convergence(cfg: ExperimentConfig, main: Any, records: list[dict[str, Any]], vdir: Path, device: str,
                 progress: bool, errors: list[str]) -> dict[str, Any]:
    """The two reasons for a gap and the rates: ``diagnostics`` (the last tracked movement of the SVM direction
    and of the features), ``rates`` (angle ≈ c / log t and c / log(1/L) over the tracked steps) and, when
    ``cfg.head_continuation_steps`` > 0, ``head_alone`` (the head trained alone on the frozen final features; its
    whole curve goes to ``vdir/head_alone.json``)."""
    from nnboundary.tracking import alignment_rates

    out: dict[str, Any] = {"diagnostics": _last_movement(records), "rates": alignment_rates(records)}
    if cfg.head_continuation_steps > 0 and main is not None:
        from nnboundary.experiments.convergence import continue_head

        # gradient descent on a head with a bias approaches the regularised-bias SVM of [h, 1], not the free-bias one
        target, V = (("regularized", main.svm_regularized.coef_) if main.svm_regularized is not None
                     else ("free", main.svm.coef_))
        try:
            ha = continue_head(main.features, main.labels, main.nn_coef, main.nn_intercept, V,
                               steps=cfg.head_continuation_steps, seed=cfg.seed, device=device, progress=progress)
            _write_json(vdir / "head_alone.json", {**ha, "svm_bias": target})
            out["head_alone"] = {**{k: v for k, v in ha.items() if k != "curve"}, "svm_bias": target}
        except Exception as err:  # noqa: BLE001 - a diagnostic, not the result: recorded, the run goes on
            logger.warning("Head-alone continuation failed: %s", err)
            errors.append(f"head_alone: {type(err).__name__}: {err}")
    return out


def _last_movement(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The last tracked row's ``svm_step_angle_deg`` (of the main SVM, named in ``svm``) and ``feature_change``,
    with the step pair they span."""
    rows = [r for r in records if "step" in r and "error" not in r]
    if len(rows) < 2:
        return {}
    last = rows[-1]
    return {"step": int(last["step"]), "previous_step": int(rows[-2]["step"]), "svm": last.get("svm_multiclass"),
            "svm_step_angle_deg": last.get("svm_step_angle_deg"), "feature_change": last.get("feature_change")}


def _rows(label: str, base: dict[str, Any], analyses: dict[str, Any], multiclass: Sequence[str],
          errors: list[str]) -> dict[str, dict[str, Any]]:
    if not analyses:
        return {label: {**base, "error": "; ".join(errors) or "no analysis"}}
    if len(analyses) == 1:
        a = next(iter(analyses.values()))
        return {label: {**base, **a.summary, **_svm_angles(a, analyses)}}
    return {f"{label}/{mc}" if label != "main" else mc: {**base, **a.summary, "svm_multiclass": mc,
                                                          **_svm_angles(a, analyses)}
            for mc, a in analyses.items()}


def _svm_angles(a: Any, analyses: dict[str, Any]) -> dict[str, float]:
    """How far apart the candidate limits are: ``svm_free_vs_reg_deg`` (this analysis's free- vs regularised-bias
    SVM) and, with both multi-class SVMs, ``svm_cs_vs_ovr_deg`` (Crammer–Singer vs one-vs-rest, free bias)."""
    from nnboundary.metrics import direction_angle

    out: dict[str, float] = {}
    if a.svm_regularized is not None:
        out["svm_free_vs_reg_deg"] = direction_angle(a.svm_coef, np.asarray(a.svm_regularized.coef_, dtype=float))
    if {"crammer_singer", "ovr"} <= set(analyses):
        out["svm_cs_vs_ovr_deg"] = direction_angle(analyses["crammer_singer"].svm_coef, analyses["ovr"].svm_coef)
    return out


def _model_facts(model: torch.nn.Module, data: RunData) -> dict[str, Any]:
    from nnboundary.models import dead_units

    if not callable(getattr(model, "features", None)):
        return {}
    try:
        dead = dead_units(model, data.X_train)
    except Exception as err:  # noqa: BLE001
        logger.warning("dead_units failed: %s", err)
        return {}
    return {"transformed_dim": int(dead.size), "dead_units": int(dead.sum())}


def _input_svm(data: RunData, multiclass: str, soft_C: float) -> F.InputSVM | None:
    from nnboundary.analysis import fit_svm
    from nnboundary.svm import MaxMarginClassifier

    X, y = data.X_train, data.y_train
    mc = multiclass if data.n_classes > 2 else "crammer_singer"
    try:
        clf, hard = fit_svm(MaxMarginClassifier(multiclass=mc), X, y, soft_C)
    except Exception as err:  # noqa: BLE001 - an input-space SVM is context, not the result
        logger.warning("Input-space SVM failed: %s", err)
        return None
    return F.InputSVM(coef=np.asarray(clf.coef_, dtype=np.float64), intercept=np.atleast_1d(clf.intercept_),
                      support=np.asarray(clf.support_), hard=hard, C=None if hard else soft_C)


def _input_numbers(model: torch.nn.Module, svm: F.InputSVM, data: RunData, cfg: ExperimentConfig) -> dict[str, Any]:
    from nnboundary import metrics as M

    out: dict[str, Any] = {
        "input_separable": svm.hard, "input_svm_n_support": int(svm.support.size),
        "input_svm_accuracy": M.agreement(M.predict_classes(data.X_train, svm.coef, svm.intercept), data.y_train),
    }
    if data.is_2d:
        res = min(cfg.grid_resolution, 200)
        out["input_agreement"] = F.input_agreement(model, svm, data.X_train, cfg.input_windows[0], res)
        if len(cfg.input_windows) > 1:
            out["input_agreement_far"] = F.input_agreement(model, svm, data.X_train, cfg.input_windows[-1], res)
    return out


def _sv_lists(analysis: Any, cap: int = 50) -> dict[str, Any]:
    support = np.sort(np.asarray(analysis.support))[:cap]
    loss = analysis.points["loss"].to_numpy()
    top = np.sort(np.argsort(-loss, kind="stable")[:len(analysis.support)])[:cap]
    return {"support_indices": support.tolist(), "top_loss_indices": top.tolist()}


def _draw(cfg: ExperimentConfig, data: RunData, model: torch.nn.Module, analyses: dict[str, Any],
          input_svm: F.InputSVM | None, records: list[dict[str, Any]], vdir: Path, run_dir: Path, prefix: str,
          errors: list[str], draw_data: bool = True) -> list[F.FigureInfo]:
    fig_dir = run_dir / "figures"
    res = cfg.grid_resolution
    main = analyses.get(cfg.svm_multiclass[0])
    jobs: list[tuple[str, Any]] = []
    if data.is_2d and "training_data" in cfg.plots and draw_data:  # a study's variants share the data
        jobs.append(("training_data", lambda: F.draw_training_data(data.X_train, data.y_train, input_svm, fig_dir,
                                                                    "", run_dir)))
    if data.is_2d and input_svm is not None and "input_space" in cfg.plots:
        jobs.append(("input_space", lambda: F.draw_input_space(model, input_svm, data.X_train, data.y_train,
                                                                cfg.input_windows, res, fig_dir, prefix, run_dir)))
    if "transformed" in cfg.plots:
        for mc, a in analyses.items():
            suffix = "" if len(analyses) == 1 else f"_{mc}"
            jobs.append(("transformed", lambda a=a, s=suffix: F.draw_transformed(a, s, res, fig_dir, prefix, run_dir)))
        if len(analyses) > 1:  # every candidate SVM's boundary with the network's, in one figure
            jobs.append(("transformed", lambda: F.draw_transformed_svms(analyses, res, fig_dir, prefix, run_dir)))
    if "alignment" in cfg.plots:
        title = f"{cfg.name}{' / ' + prefix.rstrip('-') if prefix else ''} ({cfg.profile})"
        jobs.append(("alignment", lambda: F.draw_alignment(records, title, fig_dir, prefix, run_dir)))
    if "snapshots" in cfg.plots and (data.is_2d or cfg.snapshot_space == "transformed"):
        jobs.append(("snapshots", lambda: F.draw_snapshots(model, vdir / "snapshots", data.X_train, data.y_train,
                                                            cfg.snapshot_space, cfg.input_windows, min(res, 150),
                                                            fig_dir, prefix, run_dir)))
    if "sv_vs_loss" in cfg.plots and main is not None:
        jobs.append(("sv_vs_loss", lambda: F.draw_sv_vs_loss(main, data.X_train, fig_dir, prefix, run_dir)))
    figures: list[F.FigureInfo] = []
    for kind, job in jobs:
        try:
            figures.extend(job())
        except Exception as err:  # noqa: BLE001 - a missing figure is reported, the numbers still stand
            logger.warning("Figure %s failed: %s", kind, err)
            errors.append(f"figure {kind}: {type(err).__name__}: {err}")
    return figures


# ------------------------------------------------------------------------------------------------ files
def _rewrite_metrics(path: Path, records: list[dict[str, Any]], errors: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """Rewrite metrics.jsonl from the tracker's records, one line per step (a resume may have duplicated some).

    A step whose evaluation failed gets a line ``{"step": ..., "error": ...}``.
    """
    by_step = {int(e["step"]): dict(e) for e in errors}
    by_step.update({int(r["step"]): r for r in records})
    rows = [by_step[s] for s in sorted(by_step)]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(json.dumps(to_jsonable(r), allow_nan=False) + "\n" for r in rows), encoding="utf-8")
    os.replace(tmp, path)
    return rows


def _concat_metrics(run_dir: Path, labels: Sequence[str]) -> None:
    lines = []
    for label in labels:
        path = run_dir / "variants" / label / "metrics.jsonl"
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    lines.append(json.dumps({"variant": label, **json.loads(line)}))
    tmp = run_dir / ".metrics.jsonl.tmp"
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.replace(tmp, run_dir / "metrics.jsonl")
