"""``AlignmentTracker``: measure the head against the max-margin SVM from inside any training loop.

Call ``tracker.step(step, model)`` after every optimiser step. On the steps of its schedule
(by default the log-spaced 1, 2, 5, 10, 20, 50, ...) it runs :func:`~nnboundary.analysis.analyze`
on its fixed data, appends one JSON line to ``metrics.jsonl`` (flushed at once, so a crash loses
nothing), and warm-starts the next SVM fit from the current support set. Gradient descent moves
the head towards the SVM only like ``1 / log t`` (Soudry et al. 2018), which is why the schedule
and the plot use a log step axis.

Every row also says how much the problem itself moved since the previous evaluation, the first of the two
reasons a head can be far from the SVM: ``svm_step_angle_deg``, the angle between this evaluation's SVM
direction and the previous one's, and ``feature_change``, ``‖H_t − H_prev‖_F / ‖H_prev‖_F`` on the tracked
points (both NaN at the first evaluation). Both near 0: the features have settled, and what is left is the
head's own slow implicit bias on fixed features (see :mod:`nnboundary.experiments.convergence`).
:func:`alignment_rates` fits ``angle ≈ c / log t`` and ``angle ≈ c / log(1/L)`` to the rows.

Example
-------
>>> tracker = AlignmentTracker(X, y, "runs/mlp")           # doctest: +SKIP
>>> for t in range(1, n_steps + 1):                          # doctest: +SKIP
...     train_one_step(model)
...     tracker.step(t, model, loss=float(loss))
>>> nnboundary.plot.plot_alignment_curves(tracker.history, "runs/mlp/alignment.png")  # doctest: +SKIP

Under torch.distributed (DDP)
-----------------------------
Create the tracker on every rank after ``init_process_group`` (e.g. :func:`nnboundary.distributed.init_from_env`)
and call :meth:`~AlignmentTracker.step` on every rank at every step: it is then a collective. Each evaluation
happens once: with ``sharded=True`` every rank extracts the features of its own shard of the tracked points (a
contiguous block, :func:`~nnboundary.distributed.shard_range`), they are gathered in rank order (the global order
of a one-process run) and rank 0 fits the SVM; with ``sharded=False`` (every rank holds all tracked points) rank 0
alone extracts and fits. Rank 0 broadcasts the analysis and its row, so every rank keeps the same records, support
sets and state; only rank 0 reads and writes ``metrics.jsonl`` (the records of a resume reach the others), and
:meth:`~AlignmentTracker.load_state_dict` installs rank 0's state everywhere. A ``DistributedDataParallel`` model is
analysed through its ``.module``. An error on one rank is raised on every rank. The ``**extra`` of a row are rank
0's: pass global values (e.g. the loss all-reduced over the ranks).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nnboundary import distributed
from nnboundary._jsonio import atomic_write, to_jsonable
from nnboundary.analysis import analyze
from nnboundary.metrics import direction_angle, fit_inverse_log, inverse_log_fit_holds
from nnboundary.train import TrainCallback
from nnboundary.analysis import Analysis, analyze_features  # noqa: I001 - the distributed path (kept apart: merges)
from nnboundary.features import ExtractedFeatures, extract_features, head_params

__all__ = ["AlignmentTracker", "is_log_step", "fit_inverse_log", "alignment_rates", "movement"]

logger = logging.getLogger(__name__)

Schedule = str | int | Iterable[int] | Callable[[int], bool] | None


def is_log_step(step: int, mantissas: tuple[int, ...] = (1, 2, 5)) -> bool:
    """True for steps ``m · 10^e`` with m in ``mantissas``: 1, 2, 5, 10, 20, 50, 100, ..."""
    if step < 1:
        return False
    while step % 10 == 0:
        step //= 10
    return step in mantissas


class AlignmentTracker(TrainCallback):
    """Track cosine, angle, margin ratio and bias offset of the head vs the SVM during training.

    Parameters
    ----------
    X : Tensor or ndarray of shape (N, *), tuple (X, y), Dataset or DataLoader
        The (training) data whose features the SVM is fitted on at every evaluation. Keep it
        modest (a few thousand points) so that evaluations stay cheap.
    y : array-like of shape (N,), default=None
        Labels, unless X carries them.
    out : str or PathLike, default=None
        A directory (``metrics.jsonl`` is written inside) or a path ending in ``.jsonl``.
        None keeps the records in memory only.
    schedule : "log", int, iterable of int, callable or None, default="log"
        Which steps are evaluated: "log" = 1, 2, 5, 10, 20, 50, ...; an int k = every k-th
        step; an iterable = exactly those steps; a callable ``f(step) -> bool``; None = none
        (only ``every`` or ``force=True``).
    every : int, default=None
        Also evaluate every ``every`` steps (in addition to ``schedule``).
    head, svm, svm_regularized, soft_C, batch_size, device, grid_resolution :
        Passed to :func:`~nnboundary.analysis.analyze`.
    X_test, y_test : default=None
        Optional test data for ``agreement_test``.
    resume : bool, default=False
        If the jsonl file exists, load its records and continue (already recorded steps are
        not evaluated again). A truncated last line (crash mid-write) is dropped.
    overwrite : bool, default=False
        If the jsonl file exists and ``resume`` is False, start it afresh instead of raising.
    view : callable or None, default=None
        ``view(model)`` is what gets analysed when the tracker runs as a training callback (e.g. a joint
        linear view of a model whose logits are not one ``nn.Linear``); None analyses the model itself.
    on_error : {"raise", "record"}, default="raise"
        As a training callback: "record" logs a failed evaluation in :attr:`errors` and lets training go on.
    sharded : bool, default=False
        Under torch.distributed: X, y (and X_test, y_test) are this rank's shard of the tracked points, and the
        features of all shards are gathered, in rank order, for each evaluation (module docstring). False: every
        rank holds all of them. Without a process group (one process) it changes nothing. Prefer blocks of
        :func:`~nnboundary.distributed.shard_range` to a ``DistributedSampler``, which repeats points to even out
        the shards.

    As a :class:`nnboundary.train.TrainCallback` (``fit(..., callbacks=[tracker])``) it evaluates the
    initialisation (step 0), every scheduled step and the last step.

    Between evaluations it keeps the previous SVM's weights (K·D floats) and the previous features of the
    tracked points (N·D float64: 8·N·D bytes, e.g. 2 000 points × 512 features = 8 MB, 10 000 × 2048 = 164 MB),
    which the evaluation extracts anyway; comparing them costs O(N·D) per evaluation, next to the SVM fit.
    Both go into :meth:`state_dict` as plain lists (JSON-safe, no pickle; a checkpoint grows by N·D numbers, about
    20 bytes each as JSON text), so a run resumed from a checkpoint gives the same rows as an uninterrupted one. A tracker resumed from its jsonl file alone has no previous
    evaluation: its first new row has NaN movement.

    Attributes
    ----------
    records : list of dict
        One row per evaluation: ``step``, the analysis summary, ``svm_step_angle_deg`` and ``feature_change``
        (the movement since the previous evaluation, NaN at the first), ``eval_seconds`` and the ``**extra``
        given to :meth:`step`.
    path : Path or None
        The metrics.jsonl file.
    """

    format = 1

    def __init__(
        self,
        X: Any,
        y: Any = None,
        out: str | os.PathLike[str] | None = None,
        *,
        schedule: Schedule = "log",
        every: int | None = None,
        head: Any = None,
        svm: Any = None,
        svm_regularized: Any = None,
        X_test: Any = None,
        y_test: Any = None,
        soft_C: float = 1.0,
        batch_size: int = 1024,
        device: Any = None,
        grid_resolution: int = 200,
        resume: bool = False,
        overwrite: bool = False,
        view: Callable[[Any], Any] | None = None,
        on_error: str = "raise",
        sharded: bool = False,
    ) -> None:
        if on_error not in ("raise", "record"):
            raise ValueError(f"on_error must be 'raise' or 'record', got {on_error!r}.")
        self.view, self.on_error, self.sharded = view, on_error, bool(sharded)
        self._pending_open: tuple[bool, bool] | None = None  # (resume, overwrite) until the process group exists
        self.total_steps: int | None = None
        self.errors: list[dict[str, Any]] = []
        self.X, self.y, self.X_test, self.y_test = X, y, X_test, y_test
        self.schedule, self.every, self.head = schedule, every, head
        self.svm, self.svm_regularized, self.soft_C = svm, svm_regularized, soft_C
        self.batch_size, self.device, self.grid_resolution = batch_size, device, grid_resolution
        self._is_scheduled = _schedule_fn(schedule, every)
        self.records: list[dict[str, Any]] = []
        self._steps: set[int] = set()
        self._support: np.ndarray | None = None
        self._support_reg: np.ndarray | None = None
        self._head_name: str | None = head if isinstance(head, str) else None
        self._prev_svm: np.ndarray | None = None  # (K, D) or (1, D): the last evaluation's SVM weights
        self._prev_features: np.ndarray | None = None  # (N, D): the last evaluation's features
        self.path = _jsonl_path(out)
        if self.path is not None:
            self._open(resume=resume, overwrite=overwrite)

    # -- file handling -----------------------------------------------------------------------
    def _open(self, *, resume: bool, overwrite: bool) -> None:
        """Prepare the jsonl file; under torch.distributed rank 0 alone touches it and its records (or its
        error) reach every rank.

        Launched with ``WORLD_SIZE > 1`` but no process group yet (Lightning creates it inside ``fit``), the file
        is opened at the first hook instead (:meth:`on_start`, :meth:`step`, :meth:`load_state_dict`).
        """
        if not distributed.is_distributed() and int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
            self._pending_open = (resume, overwrite)
            return
        self._pending_open = None
        self.records = distributed.run_on_main(lambda: self._open_file(resume=resume, overwrite=overwrite))

    def _open_pending(self) -> None:
        if self._pending_open is not None:
            resume, overwrite = self._pending_open
            self._pending_open = None
            self.records = distributed.run_on_main(lambda: self._open_file(resume=resume, overwrite=overwrite))

    def _open_file(self, *, resume: bool, overwrite: bool) -> list[dict[str, Any]]:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists() or self.path.stat().st_size == 0:
            return []
        if resume:
            records = _read_jsonl(self.path)
            logger.info("Resuming %s with %d records.", self.path, len(records))
            return records
        if overwrite:
            self.path.write_text("")
            return []
        else:
            raise FileExistsError(
                f"{self.path} already holds tracking records. Pass resume=True to continue that run, "
                "overwrite=True to start it afresh, or choose another output."
            )

    def _append(self, row: dict[str, Any]) -> None:
        if self.path is None or not distributed.is_main():
            return  # under torch.distributed rank 0 writes
        line = json.dumps(to_jsonable(row), allow_nan=False)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()

    # -- the loop hook -----------------------------------------------------------------------
    def is_scheduled(self, step: int) -> bool:
        """Would :meth:`step` evaluate at this step (ignoring steps already recorded)?"""
        return bool(self._is_scheduled(int(step)))

    def step(self, step: int, model: Any, *, force: bool = False, **extra: Any) -> dict[str, Any] | None:
        """Evaluate on scheduled steps; return the new record, or None if nothing was done.

        Parameters
        ----------
        step : int
            The training step just completed (1 after the first optimiser step).
        model : nn.Module
            The network; it is put in eval mode for the evaluation and restored afterwards.
        force : bool, default=False
            Evaluate even if the step is not on the schedule.
        **extra : float or str
            Added to the record (e.g. ``lr=...``, ``train_loss=...``); tensors become floats.
        """
        step = int(step)
        self._open_pending()
        if not (force or self.is_scheduled(step)):
            return None
        if step in self._recorded_steps():
            return None  # already recorded (e.g. before a resume)
        t0 = time.perf_counter()
        result = self._analyze(model)
        self._head_name = result.head_name
        self._support = np.asarray(result.support)
        if result.svm_regularized is not None and hasattr(result.svm_regularized, "support_"):
            self._support_reg = np.asarray(result.svm_regularized.support_)
        V = getattr(result.svm, "coef_", None)
        V = None if V is None else np.atleast_2d(np.asarray(V, dtype=np.float64))
        H = np.asarray(result.features, dtype=np.float64)
        moved = movement(self._prev_svm, V, self._prev_features, H)
        self._prev_svm, self._prev_features = V, H
        row = {"step": step, **result.summary, **moved, "eval_seconds": time.perf_counter() - t0}
        row.update({k: _scalar(v) for k, v in extra.items()})
        row = distributed.broadcast_object(row)  # rank 0's row (its timing, its extras) on every rank
        self.records.append(row)
        self._append(row)
        return row

    def _analyze(self, model: Any) -> Analysis:
        """One analysis of the tracked points with the current model, the same object on every rank.

        One process: :func:`~nnboundary.analysis.analyze`. Under torch.distributed (module docstring): rank 0
        analyses (the gathered features of every rank's shard when ``sharded``) and broadcasts the result, O(N·D)
        bytes of pickled features and points to every rank.
        """
        model = distributed.unwrap_model(model)
        head = self._head_name if self._head_name is not None else self.head
        # after an evaluation that was not separable, let the LP decide first (the same answer, without the
        # failing QP: most of the cost of the early, not yet separable evaluations)
        hint = False if self.records and self.records[-1].get("separable") is False else None
        fit = dict(svm=self.svm, svm_regularized=self.svm_regularized, soft_C=self.soft_C,
                   grid_resolution=self.grid_resolution, init_support=self._support,
                   init_support_regularized=self._support_reg, separable_hint=hint)
        if not (distributed.is_distributed() and self.sharded):
            return distributed.run_on_main(lambda: analyze(
                model, self.X, self.y, head=head, X_test=self.X_test, y_test=self.y_test,
                batch_size=self.batch_size, device=self.device, distributed=False, **fit))  # rank 0 alone
        tr = self._gathered_features(model, self.X, self.y, head)
        te = None if self.X_test is None else self._gathered_features(model, self.X_test, self.y_test, tr.head_name)
        W, b = head_params(model.get_submodule(tr.head_name))
        return distributed.run_on_main(lambda: analyze_features(
            tr.features, tr.labels, W, b, logits=tr.logits, H_test=None if te is None else te.features,
            y_test=None if te is None else te.labels, logits_test=None if te is None else te.logits,
            head_name=tr.head_name, **fit))

    def _gathered_features(self, model: Any, X: Any, y: Any, head: Any) -> ExtractedFeatures:
        """Features, labels and logits of every rank's shard of (X, y), concatenated in rank order, on every rank.

        Memory: each rank holds the gathered (N, D + K + 1) float64 arrays (twice, while gathering).
        """
        def local() -> ExtractedFeatures:
            ext = extract_features(model, X, head, y=y, batch_size=self.batch_size, device=self.device)
            if ext.labels is None:
                raise ValueError("The tracked points carry no labels; pass y (this rank's labels) with X.")
            return ext

        try:
            ext = distributed.run_on_all(local)
        except ValueError as err:
            if "empty" in str(err):
                raise ValueError(f"{err} With sharded=True every rank needs at least one tracked point "
                                 f"(rank {distributed.rank()} of {distributed.world_size()}).") from err
            raise
        names = distributed.all_gather_objects(ext.head_name)
        if len(set(names)) != 1:
            raise RuntimeError(f"The ranks found different heads {names}; pass head='<name>'.")
        return ExtractedFeatures(features=distributed.all_gather_rows(ext.features),
                                 labels=distributed.all_gather_rows(ext.labels),
                                 logits=distributed.all_gather_rows(ext.logits), head_name=ext.head_name)

    def _recorded_steps(self) -> set[int]:
        if len(self._steps) != len(self.records):
            self._steps = {int(r["step"]) for r in self.records if "step" in r}
        return self._steps

    # -- the training-callback contract (nnboundary.train.TrainCallback) -------------------------
    def on_start(self, step: int, model: Any, *, total_steps: int | None = None) -> None:
        """Remember the last step; evaluate the initialisation when training starts from step 0."""
        self.total_steps = total_steps
        self._open_pending()
        if step == 0:
            self._safe_step(0, model)

    def wants(self, step: int) -> bool:
        """Evaluate on the schedule and at the last step."""
        return step == self.total_steps or self.is_scheduled(step)

    def on_step(self, step: int, model: Any, *, loss: float | None = None,
                accuracy: float | None = None) -> dict[str, Any] | None:
        """Evaluate after update ``step``, recording the batch ``train_loss`` / ``train_batch_accuracy``."""
        extra = {k: v for k, v in (("train_loss", loss), ("train_batch_accuracy", accuracy)) if v is not None}
        return self._safe_step(step, model, **extra)

    def _safe_step(self, step: int, model: Any, **extra: Any) -> dict[str, Any] | None:
        model = distributed.unwrap_model(model)
        target = self.view(model) if self.view is not None else model
        if self.on_error == "raise":
            return self.step(step, target, force=True, **extra)
        try:
            return self.step(step, target, force=True, **extra)
        except Exception as err:  # noqa: BLE001 - on_error="record": a failed evaluation never stops training
            logger.warning("Alignment evaluation at step %d failed: %s", step, err)
            self.errors.append({"step": int(step), "error": f"{type(err).__name__}: {err}"})
            return None

    # -- state -------------------------------------------------------------------------------
    @property
    def state_key(self) -> str:
        """Key under which a checkpoint stores this tracker (includes the head)."""
        return f"AlignmentTracker{{head={self._head_name or self.head}}}"

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs: records, the warm-start support sets and the previous evaluation's SVM
        weights and features — plain lists, like the rest (JSON-safe, no pickle; float64 round-trips exactly)."""
        return {
            "previous_svm": None if self._prev_svm is None else self._prev_svm.tolist(),
            "previous_features": None if self._prev_features is None else self._prev_features.tolist(),
            "format": self.format,
            "records": [dict(r) for r in self.records],
            "support": None if self._support is None else self._support.tolist(),
            "support_regularized": None if self._support_reg is None else self._support_reg.tolist(),
            "head": self._head_name,
            "errors": [dict(e) for e in self.errors],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output; ``metrics.jsonl`` is cut back to its records (see
        ``_match_file_to_records``).

        Under torch.distributed a collective: rank 0's ``state`` is installed on every rank (the others' is
        ignored), so all ranks continue from the same records and warm starts.
        """
        self._open_pending()  # the state, not the file, decides the records
        state = distributed.broadcast_object(state)
        if state.get("format") != self.format:
            raise ValueError(f"Tracker state has format {state.get('format')!r}, expected {self.format}.")
        self.records = [dict(r) for r in state["records"]]
        self._support = None if state.get("support") is None else np.asarray(state["support"], dtype=np.int64)
        sr = state.get("support_regularized")
        self._support_reg = None if sr is None else np.asarray(sr, dtype=np.int64)
        self._head_name = state.get("head") or self._head_name
        self.errors = [dict(e) for e in state.get("errors", [])]
        V, H = state.get("previous_svm"), state.get("previous_features")
        self._prev_svm = None if V is None else np.asarray(V, dtype=np.float64)
        self._prev_features = None if H is None else np.asarray(H, dtype=np.float64)
        self._match_file_to_records()

    def _match_file_to_records(self) -> None:
        """Make ``metrics.jsonl`` hold exactly the restored records (rank 0; atomically).

        A run that stopped after its last checkpoint leaves rows in the file that the checkpoint's state does not
        know; the resumed run evaluates those steps again (identically: same seed, same state) and would append
        them a second time. They are rows this tracker wrote, and they are written again, so dropping them here
        loses nothing."""
        if self.path is None or not distributed.is_main() or not self.path.exists():
            return
        if [r.get("step") for r in _read_jsonl(self.path)] == [r.get("step") for r in self.records]:
            return
        lines = "".join(json.dumps(to_jsonable(r), allow_nan=False) + "\n" for r in self.records)
        atomic_write(self.path, lambda fh: fh.write(lines))

    # -- results -----------------------------------------------------------------------------
    @property
    def history(self) -> pd.DataFrame:
        """All records as a DataFrame, one row per evaluated step."""
        return pd.DataFrame(self.records)

    def __repr__(self) -> str:
        return (f"AlignmentTracker(N={_n(self.X)}, schedule={self.schedule!r}, every={self.every}, "
                f"path={str(self.path) if self.path else None!r}, records={len(self.records)})")


# ----------------------------------------------------------------------------- movement and rates


def movement(V_prev: np.ndarray | None, V: np.ndarray | None, H_prev: np.ndarray | None,
             H: np.ndarray | None) -> dict[str, float]:
    """How far the SVM direction and the features moved between two evaluations.

    Parameters
    ----------
    V_prev, V : ndarray of shape (K, D) or (1, D), or None
        The SVM weights (``coef_``) of the previous and of this evaluation; compared as directions with
        :func:`nnboundary.metrics.direction_angle` (row-centred for K > 2, so scale and a common row shift do not
        count).
    H_prev, H : ndarray of shape (N, D), or None
        The features of the same tracked points at the two evaluations.

    Returns
    -------
    dict
        ``svm_step_angle_deg`` (degrees, in [0, 180]) and ``feature_change`` (``‖H − H_prev‖_F / ‖H_prev‖_F``, ≥ 0);
        NaN where a previous value is missing, the shapes differ or ``H_prev`` is 0. O(N·D).
    """
    nan = float("nan")
    angle = nan
    if V_prev is not None and V is not None and V_prev.shape == V.shape:
        angle = direction_angle(V, V_prev)
    change = nan
    if H_prev is not None and H is not None and H_prev.shape == H.shape:
        base = float(np.linalg.norm(H_prev))
        change = float(np.linalg.norm(H - H_prev)) / base if base > 0 else nan
    return {"svm_step_angle_deg": angle, "feature_change": change}


def alignment_rates(records: Iterable[dict[str, Any]], *, value: str = "angle_deg", fraction: float = 0.5,
                    rule: dict[str, float] | None = None) -> dict[str, dict[str, Any]]:
    """Fit ``value ≈ c / log t`` and ``value ≈ c / log(1/L)`` (the loss clock) to tracked rows.

    Uses the rows with a finite ``value`` whose features were separable (a soft-margin SVM is another target),
    the later ``fraction`` of them by step (see :func:`nnboundary.metrics.fit_inverse_log`); the loss is the
    rows' ``loss`` (the head's mean cross-entropy on the tracked points after the step).

    Returns
    -------
    dict
        ``{"step": fit, "loss": fit}``; each fit as :func:`~nnboundary.metrics.fit_inverse_log` returns it, plus
        ``value`` (the column fitted) and ``holds`` (:func:`~nnboundary.metrics.inverse_log_fit_holds` with
        ``rule``).
    """
    rows = [r for r in records if "step" in r and r.get("separable") is not False]

    def column(name: str) -> np.ndarray:
        return np.array([np.nan if r.get(name) is None else float(r[name]) for r in rows], dtype=np.float64)

    step, v, loss = column("step"), column(value), column("loss")
    out = {}
    for clock, kw in (("step", {}), ("loss", {"loss": loss})):
        fit = fit_inverse_log(step, v, fraction=fraction, **kw)
        out[clock] = {**fit, "value": value, "holds": inverse_log_fit_holds(fit, rule)}
    return out


# ----------------------------------------------------------------------------- helpers


def _n(X: Any) -> Any:
    try:
        return len(X)
    except TypeError:
        return "?"


def _scalar(v: Any) -> Any:
    """Tensors / numpy scalars of one element -> Python numbers; anything else unchanged."""
    if isinstance(v, np.generic):
        return v.item()
    if (hasattr(v, "numel") and v.numel() == 1) or (isinstance(v, np.ndarray) and v.size == 1):
        return v.item()
    return v


def _schedule_fn(schedule: Schedule, every: int | None) -> Callable[[int], bool]:
    if every is not None and (not isinstance(every, int) or every < 1):
        raise ValueError(f"every must be a positive int or None, got {every!r}.")
    if schedule is None:
        base: Callable[[int], bool] = lambda s: False  # noqa: E731
    elif isinstance(schedule, str):
        if schedule != "log":
            raise ValueError(f"Unknown schedule {schedule!r}; use 'log', an int k, a list of steps or a callable.")
        base = is_log_step
    elif isinstance(schedule, bool):
        raise TypeError("schedule must be 'log', an int, an iterable of steps or a callable, not a bool.")
    elif isinstance(schedule, int):
        if schedule < 1:
            raise ValueError(f"An int schedule means 'every k steps' and must be >= 1, got {schedule}.")
        base = lambda s, k=schedule: s >= 1 and s % k == 0  # noqa: E731
    elif callable(schedule):
        base = schedule
    else:
        steps = frozenset(int(s) for s in schedule)
        base = steps.__contains__
    if every is None:
        return base
    return lambda s: base(s) or (s >= 1 and s % every == 0)


def _jsonl_path(out: str | os.PathLike[str] | None) -> Path | None:
    if out is None:
        return None
    p = Path(out)
    return p if p.suffix == ".jsonl" else p / "metrics.jsonl"


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a metrics.jsonl; a corrupt *last* line is dropped and the file repaired."""
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i != len(lines) - 1:
                raise ValueError(f"{path} line {i + 1} is not valid JSON; the file is corrupt.") from None
            logger.warning("Dropping a truncated last line of %s (interrupted write).", path)
            tmp = path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(json.dumps(to_jsonable(r), allow_nan=False) + "\n" for r in records))
            os.replace(tmp, path)
    return records
