"""Experiments as data: named, seeded configurations with ``smoke``, ``quick`` and ``paper`` profiles.

Every experiment of the paper's simulated-data evidence (``original_code.md`` §8) is one registered
function ``fn(profile) -> ExperimentConfig``. The function states its settings once and lets the profile
pick the numbers that differ::

    @register_experiment("blobs", "Two blobs, 2-unit tanh layer: NN vs SVM in input and transformed space")
    def _blobs(p: Profile) -> ExperimentConfig:
        return ExperimentConfig(data="blobs", n_samples=p.pick(paper=5000, quick=1000, smoke=60), ...)

Profiles
--------
``paper``  the original's settings (§3.3 / §8): widths 2000, 10^4-10^5 steps, Adam 1e-4, batch 200.
``quick``  CPU, about a minute or less on 2 cores: hidden width 200 (or 100), 1-2k points, 1-3k
           full-batch steps with a larger learning rate. The report marks these runs as quick.
``smoke``  seconds, for the test suite: tiny widths, tens of points, tens of steps.
``converge`` train to the limit the theory speaks of: the quick config, then :func:`converge_rule` in one
           place (full batch, float64, loss-based step size after an Adam warm-up, a deterministic step
           budget, stop at CE <= 1e-250). An entry changes a number for it with ``p.pick(..., converge=...)``.

A *study* (activations, optimizers, losses, architectures) is one entry with ``variants``: each
:class:`Variant` overrides a few fields of the base config, and the run reports a comparison table.
Nothing here trains anything; :func:`nnboundary.experiments.run_experiment` does.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import fnmatch
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nnboundary._jsonio import to_jsonable

__all__ = [
    "FLAGS",
    "PLOTS",
    "PROFILES",
    "ExperimentConfig",
    "FlagNotSupportedError",
    "Kind",
    "KindConfig",
    "Profile",
    "Variant",
    "deep_merge",
    "describe_experiment",
    "experiment_kind",
    "get_experiment",
    "get_kind",
    "converge_optimizer",
    "converge_rule",
    "CONVERGE_TARGET_LOSS",
    "CONVERGE_STEPS",
    "CONVERGE_HEAD_STEPS",
    "list_experiments",
    "register_experiment",
    "register_kind",
    "register_settings",
]

#: Profile names, cheapest first.
PROFILES: tuple[str, ...] = ("smoke", "quick", "paper", "converge")

#: Figure kinds a config may ask for (see :mod:`nnboundary.experiments.runner`).
PLOTS: tuple[str, ...] = ("training_data", "input_space", "transformed", "alignment", "snapshots",
                          "sv_vs_loss")

_SVM_MULTICLASS = ("crammer_singer", "ovr")
_SNAPSHOT_SPACES = ("input", "transformed")
_DTYPES = ("float32", "float64")


# ---------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class Variant:
    """One arm of a study: a label and the config fields it overrides.

    ``overrides`` maps :class:`ExperimentConfig` field names to values; ``model_kwargs``,
    ``data_kwargs``, ``loss_kwargs`` and ``optimizer_kwargs`` are *merged* into the base dicts
    rather than replacing them.
    """

    label: str
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that defines one experiment run, as plain JSON-serialisable data.

    Attributes
    ----------
    name, profile, title : str
        Registry name (kebab-case), profile (``smoke``/``quick``/``paper``), one-line title.
    data : str
        A key of :data:`nnboundary.data.SIMULATED` (or of ``REAL_DATASETS``).
    n_samples : int or None
        Total points before the train/test split; None keeps the generator's default.
    data_kwargs : dict
        Further generator arguments (e.g. ``{"margin": 0.2}`` for the plate).
    test_fraction : float
        Share of each class held out (the original used 0.1).
    model, model_kwargs : str, dict
        ``nnboundary.models.build_model(model, in_features=..., n_classes=..., seed=..., **model_kwargs)``.
    optimizer, lr, optimizer_kwargs : str, float, dict
        See :func:`nnboundary.train.make_optimizer` (no weight decay).
    loss, loss_kwargs : str, dict
        See :func:`nnboundary.train.make_loss`.
    steps : int
        Optimizer updates.
    batch_size : int or None
        None = full batch; else seeded, cycled minibatches.
    seed : int
        Seeds the data, the split, the initialisation and the minibatch order.
    target_loss : float or None
        Stop once the full-batch training loss is at most this (``steps`` is then the budget); None: run
        all ``steps``. See :class:`nnboundary.train.TrainConfig`.
    max_wall_s : float or None
        Optional wall-clock cap of the training (reported; not reproducible). None in every profile.
    dtype : {"float32", "float64"}
    svm_multiclass : tuple of str
        SVMs to compare with: the first is the main one; K > 2 may add ``"ovr"`` next to
        ``"crammer_singer"``.
    soft_C : float
        C of the soft-margin SVM used when the features are not separable.
    track : "log", int or tuple of int
        Steps on which the ``AlignmentTracker`` evaluates (always also step 0 and the last step).
    plots : tuple of str
        Figures to draw, from :data:`PLOTS`.
    input_windows : tuple of (xmin, xmax, ymin, ymax) or None
        Windows of the input-space figures; None = around the data. Several give near/far views.
    snapshots : tuple of int
        Steps at which the model is saved for the snapshot figure (0 = initialisation).
    snapshot_space : {"input", "transformed"}
    grid_resolution : int
        Grid points per axis for the figures and the grid agreement.
    head_continuation_steps : int
        After training, continue training the head alone on the frozen final features for this many steps
        (:func:`nnboundary.experiments.convergence.continue_head`: loss-based step size, float64, full batch) and
        report how fast it approaches their SVM (``head_alone`` in the summary). 0 = off.
    variants : tuple of Variant
        Empty for a single run; otherwise one run per variant, compared in one table.
    paper_ref, claim, notes : str
        Where the experiment comes from, what the paper claims, caveats.
    """

    name: str = ""
    profile: str = "quick"
    title: str = ""
    data: str = "blobs"
    n_samples: int | None = None
    data_kwargs: dict[str, Any] = field(default_factory=dict)
    test_fraction: float = 0.1
    model: str = "mlp"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    optimizer: str = "adam"
    lr: float = 1e-4
    optimizer_kwargs: dict[str, Any] = field(default_factory=dict)
    loss: str = "cross_entropy"
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    steps: int = 1000
    batch_size: int | None = None
    seed: int = 0
    target_loss: float | None = None
    max_wall_s: float | None = None
    dtype: str = "float32"
    svm_multiclass: tuple[str, ...] = ("crammer_singer",)
    soft_C: float = 1.0
    track: Any = "log"
    plots: tuple[str, ...] = ("training_data", "input_space", "transformed", "alignment")
    input_windows: tuple[Any, ...] = (None,)
    snapshots: tuple[int, ...] = ()
    snapshot_space: str = "input"
    grid_resolution: int = 200
    head_continuation_steps: int = 0
    variants: tuple[Variant, ...] = ()
    paper_ref: str = ""
    claim: str = ""
    notes: str = ""

    # -- derived -------------------------------------------------------------------------------
    @property
    def is_study(self) -> bool:
        """True if the run compares several variants."""
        return len(self.variants) > 0

    def expand(self) -> list[tuple[str, ExperimentConfig]]:
        """``[(label, config)]`` for every run: the variants (without ``variants``), or ``[("main", self)]``."""
        if not self.variants:
            return [("main", self)]
        return [(v.label, _apply(dataclasses.replace(self, variants=()), v.overrides)) for v in self.variants]

    def with_overrides(self, **overrides: Any) -> ExperimentConfig:
        """A copy with fields replaced (dict fields merged); applied to every variant as well.

        Raises
        ------
        TypeError
            An unknown field name (the message lists the fields).
        """
        if not overrides:
            return self
        _check_fields(overrides)
        base = _apply(self, overrides)
        if not self.variants:
            return base
        # a user override beats the variants' own settings: re-apply it on top of each variant
        variants = tuple(Variant(v.label, _merge_overrides(v.overrides, overrides)) for v in self.variants)
        return dataclasses.replace(base, variants=variants)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (tuples become lists)."""
        return to_jsonable(dataclasses.asdict(self))

    # -- validation ----------------------------------------------------------------------------
    def validate(self) -> ExperimentConfig:
        """Check every field (and every variant) without training; return self.

        Raises
        ------
        ValueError
            An unknown data set, model, optimizer, loss, plot, profile or SVM; a non-positive
            step count, learning rate or batch size; or model keywords the model does not take.
        """
        runs = self.expand()
        labels = [label for label, _ in runs]
        if len(set(labels)) != len(labels):
            raise ValueError(f"Experiment {self.name!r}: variant labels must be unique, got {labels}.")
        for label, cfg in runs:
            try:
                cfg._validate_one()
            except (ValueError, TypeError) as err:
                where = f"variant {label!r} of " if self.is_study else ""
                raise type(err)(f"{where}experiment {self.name or '<unnamed>'!r} ({self.profile}): {err}") from None
        return self

    def _validate_one(self) -> None:
        from nnboundary.data import REAL_DATASETS, SIMULATED
        from nnboundary.models import list_models
        from nnboundary.train import available_losses, available_optimizers

        if self.profile not in PROFILES:
            raise ValueError(f"profile must be one of {PROFILES}, got {self.profile!r}.")
        if self.data not in SIMULATED and self.data not in REAL_DATASETS:
            raise ValueError(_unknown("data set", self.data, [*SIMULATED, *REAL_DATASETS]))
        if self.model not in list_models():
            raise ValueError(_unknown("model", self.model, list_models()))
        opt = self.optimizer.lower().replace("-", "_")
        if opt not in available_optimizers() and opt not in ("gd", "heavy_ball", "rms_prop"):
            raise ValueError(_unknown("optimizer", self.optimizer, available_optimizers()))
        try:
            from nnboundary.train import make_loss

            make_loss(self.loss, **self.loss_kwargs)
        except (ValueError, TypeError) as err:
            raise ValueError(f"loss {self.loss!r} with {self.loss_kwargs}: {err} "
                             f"Available: {available_losses()}.") from None
        _positive_int(self.steps, "steps")
        if self.batch_size is not None:
            _positive_int(self.batch_size, "batch_size")
        if self.n_samples is not None:
            _positive_int(self.n_samples, "n_samples")
        _positive_int(self.grid_resolution, "grid_resolution")
        for name in ("target_loss", "max_wall_s"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool)
                                          and value >= 0):
                raise ValueError(f"{name} must be None or a number >= 0, got {value!r}.")
        if isinstance(self.head_continuation_steps, bool) or not isinstance(self.head_continuation_steps, int) \
                or self.head_continuation_steps < 0:
            raise ValueError("head_continuation_steps must be a non-negative int (0 = no head-alone continuation), "
                             f"got {self.head_continuation_steps!r}.")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}.")
        if not 0.0 < float(self.test_fraction) < 1.0:
            raise ValueError(f"test_fraction must lie in (0, 1), got {self.test_fraction!r}.")
        if not self.soft_C > 0:
            raise ValueError(f"soft_C must be > 0, got {self.soft_C!r}.")
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {_DTYPES}, got {self.dtype!r}.")
        bad = [p for p in self.plots if p not in PLOTS]
        if bad:
            raise ValueError(f"Unknown plot(s) {bad}; choose from {PLOTS}.")
        bad = [m for m in self.svm_multiclass if m not in _SVM_MULTICLASS]
        if bad or not self.svm_multiclass:
            raise ValueError(f"svm_multiclass must be a non-empty tuple from {_SVM_MULTICLASS}, got "
                             f"{self.svm_multiclass!r}.")
        if self.snapshot_space not in _SNAPSHOT_SPACES:
            raise ValueError(f"snapshot_space must be one of {_SNAPSHOT_SPACES}, got {self.snapshot_space!r}.")
        if any(not isinstance(s, int) or s < 0 or s > self.steps for s in self.snapshots):
            raise ValueError(f"snapshots must be steps in [0, steps={self.steps}], got {self.snapshots!r}.")
        if "snapshots" in self.plots and not self.snapshots:
            raise ValueError("plots asks for 'snapshots' but snapshots=() is empty; list the steps to save.")
        for w in self.input_windows:
            if w is not None and (len(w) != 4 or not (w[0] < w[1] and w[2] < w[3])):
                raise ValueError(f"input windows must be None or (xmin, xmax, ymin, ymax) with min < max, got {w!r}.")
        if not (self.track == "log" or isinstance(self.track, int) or isinstance(self.track, (tuple, list))):
            raise ValueError(f"track must be 'log', an int k (every k steps) or a tuple of steps, got {self.track!r}.")
        _check_model_kwargs(self.model, self.model_kwargs)


def _positive_int(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")


def _unknown(what: str, name: str, available: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(name), list(available), n=3)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    return f"Unknown {what} {name!r}.{hint} Available: {', '.join(available)}."


def _check_model_kwargs(model: str, kwargs: Mapping[str, Any]) -> None:
    from nnboundary.models import model_parameters

    params = model_parameters(model)
    reserved = {"in_features", "n_classes", "seed"} & set(kwargs)
    if reserved:
        raise ValueError(f"model_kwargs must not set {sorted(reserved)}: the runner derives them from the "
                         "data and the seed.")
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ValueError(f"Model {model!r} does not take {unknown}; it takes {list(params)}.")


_DICT_FIELDS = ("data_kwargs", "model_kwargs", "loss_kwargs", "optimizer_kwargs")
_FIELDS = tuple(f.name for f in dataclasses.fields(ExperimentConfig))


def _check_fields(overrides: Mapping[str, Any]) -> None:
    unknown = sorted(set(overrides) - set(_FIELDS))
    if unknown:
        raise TypeError(f"Unknown experiment setting(s) {unknown}; settable fields: {list(_FIELDS)}.")


def _apply(cfg: ExperimentConfig, overrides: Mapping[str, Any]) -> ExperimentConfig:
    """``dataclasses.replace`` that merges the ``*_kwargs`` dicts instead of replacing them."""
    _check_fields(overrides)
    values = dict(overrides)
    for key in _DICT_FIELDS:
        if key in values:
            values[key] = {**getattr(cfg, key), **values[key]}
    return dataclasses.replace(cfg, **values)


def _merge_overrides(first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(first)
    for key, value in second.items():
        out[key] = {**out.get(key, {}), **value} if key in _DICT_FIELDS else value
    return out


# ---------------------------------------------------------------------------------------------- registry
_AS_QUICK = object()  # Profile.pick's default for smoke and converge: the quick value


@dataclass(frozen=True)
class Profile:
    """The profile an experiment function is asked for; :meth:`pick` chooses a value by profile name."""

    name: str

    def pick(self, *, paper: Any, quick: Any, smoke: Any = _AS_QUICK, converge: Any = _AS_QUICK) -> Any:
        """The value for this profile; ``smoke`` and ``converge`` default to ``quick`` when not given
        (``smoke=None`` is None). A simulated experiment's converge config is then finished by
        :func:`converge_rule`, which leaves alone every field an entry set with ``converge=``."""
        if self.name == "paper":
            return paper
        if self.name == "quick":
            return quick
        if self.name == "converge":
            return quick if converge is _AS_QUICK else converge
        return quick if smoke is _AS_QUICK else smoke


#: The converge profile's stop: training CE at most this, far past the 1e-12 at which the claim is usually stated
#: (float64 and ``stable_cross_entropy`` resolve it; the loss floor is 1e-300). Measured: with the loss-based step
#: size the loss reaches 1e-12 within 60-300 steps on most simulated runs while the features still move (20-100 %
#: between evaluations); the ReLU arm of the activation study is 7.1° from the regularised-bias SVM at 1e-12,
#: 0.43° at 1e-50 and 0.16° at 1e-250, a few hundred steps later.
CONVERGE_TARGET_LOSS = 1e-250
#: The converge profile's deterministic step budget per run (a study: per variant). Measured on 2 CPU cores
#: (shared): the quick 2-unit nets do 100-300 loss-based steps/s, so the budget is about 1-4 min per run.
CONVERGE_STEPS = 20_000
#: Head-alone steps on the frozen final features after a converge run (:mod:`nnboundary.experiments.convergence`):
#: the second diagnostic of a remaining gap, the head's own implicit bias on fixed features.
CONVERGE_HEAD_STEPS = 2_000


def converge_optimizer(warmup_lr: float = 1e-3) -> dict[str, Any]:
    """The converge profile's training step, the one definition every kind uses: full batch, ``loss_based`` with
    initial ``alpha`` 0.1 after an Adam warm-up at ``warmup_lr`` until the loss is <= 0.5, heavy-ball momentum 0.98
    (see :class:`nnboundary.train.LossBasedGD` for why the warm-up and the momentum)."""
    return {"optimizer": "loss_based", "lr": 0.1, "batch_size": None,
            "optimizer_kwargs": {"warmup": "adam", "warmup_lr": float(warmup_lr), "switch_loss": 0.5, "momentum": 0.98}}


def converge_rule(quick: ExperimentConfig, converge: ExperimentConfig) -> ExperimentConfig:
    """The converge profile of a simulated experiment, in one place.

    Starting from ``converge`` (the entry's config for the converge profile, i.e. its quick config unless it
    used ``p.pick(..., converge=...)``), every field below that still equals the ``quick`` config's gets the
    rule's value; a field the entry changed for converge keeps the entry's value:

    ``batch_size=None`` (full batch), ``dtype="float64"``, ``optimizer="loss_based"`` with ``lr=0.1`` (the
    initial ``alpha``) and ``optimizer_kwargs={"warmup": "adam", "warmup_lr": <quick Adam lr, else 1e-3>,
    "switch_loss": 0.5, "momentum": 0.98}`` (see :class:`nnboundary.train.LossBasedGD` for why the warm-up
    and the momentum; ``up`` keeps its default 1.1),
    ``steps=CONVERGE_STEPS`` (the budget), ``target_loss=CONVERGE_TARGET_LOSS``, ``track="log"``,
    ``head_continuation_steps=CONVERGE_HEAD_STEPS``.
    Variants keep their own overrides: a study whose every variant sets its optimizer (the optimizer study) keeps
    the optimizers, learning rates and optimizer keywords it compares (the rule's warm-up keywords would not fit
    them) and gets the rest of the rule (full batch, float64, the budget and the target loss).
    """
    warmup_lr = quick.lr if quick.optimizer == "adam" else 1e-3
    rule: dict[str, Any] = {
        **converge_optimizer(warmup_lr), "dtype": "float64", "steps": CONVERGE_STEPS, "target_loss": CONVERGE_TARGET_LOSS, "track": "log",
        "head_continuation_steps": CONVERGE_HEAD_STEPS,
    }
    keep = {k: v for k, v in rule.items() if getattr(converge, k) == getattr(quick, k)}
    if converge.variants and all("optimizer" in v.overrides for v in converge.variants):
        keep.pop("optimizer", None)      # a study of optimizers compares its own, now to the limit
    if "optimizer" not in keep:          # the entry chose its own optimizer: its kwargs and lr are its own too
        keep = {k: v for k, v in keep.items() if k not in ("optimizer_kwargs", "lr")}
    cfg = dataclasses.replace(converge, **keep)
    snapshots = tuple(s for s in cfg.snapshots if s <= cfg.steps)
    return dataclasses.replace(cfg, snapshots=snapshots)


@dataclass(frozen=True)
class _Entry:
    name: str
    summary: str
    fn: Callable[[Profile], Any]
    kind: str = "simulated"


_EXPERIMENTS: dict[str, _Entry] = {}


def register_experiment(name: str, summary: str, *, kind: str = "simulated") -> Callable[[Callable[[Profile], Any]],
                                                                                        Callable[[Profile], Any]]:
    """Decorator: register ``fn(profile) -> config`` under ``name`` with a one-line summary.

    ``kind`` names the runner: ``"simulated"`` (an :class:`ExperimentConfig`, run by
    :func:`~nnboundary.experiments.run_experiment`) or a kind registered with :func:`register_kind`
    (``"image"``, ``"bias"``, ``"forgetting"``, ``"adversarial"``; ``fn`` returns a :class:`KindConfig`, which
    :func:`register_settings` builds from the kind's settings dict).

    Raises
    ------
    ValueError
        ``name`` is already registered.
    """

    def deco(fn: Callable[[Profile], Any]) -> Callable[[Profile], Any]:
        if name in _EXPERIMENTS:
            raise ValueError(f"Experiment {name!r} is registered twice (second in {fn.__module__}).")
        _EXPERIMENTS[name] = _Entry(name, summary, fn, kind)
        return fn

    return deco


def list_experiments(pattern: str = "*", *, kind: str | None = "simulated") -> list[str]:
    """Registered names matching the shell-style ``pattern``, in registration order.

    ``kind="simulated"`` (the default: the paper's simulated-data set that ``reproduce --all`` runs), another
    kind's name, or None for every kind.
    """
    if kind != "simulated":
        _load_kinds()
    return [n for n, e in _EXPERIMENTS.items() if fnmatch.fnmatch(n, pattern) and (kind is None or e.kind == kind)]


def experiment_kind(name: str) -> str:
    """The kind of experiment ``name`` (``"simulated"``, ``"image"``, ...)."""
    return _entry(name).kind


def describe_experiment(name: str) -> str:
    """The one-line summary of experiment ``name``."""
    return _entry(name).summary


def _entry(name: str) -> _Entry:
    if name not in _EXPERIMENTS:
        _load_kinds()
    if name not in _EXPERIMENTS:
        close = difflib.get_close_matches(str(name), list(_EXPERIMENTS), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"Unknown experiment {name!r}.{hint} Run `nnboundary list` to see all.")
    return _EXPERIMENTS[name]


def get_experiment(name: str, profile: str = "quick", *, kind: str | None = None,
                   **overrides: Any) -> ExperimentConfig:
    """The resolved config of experiment ``name`` for ``profile``, with ``overrides`` applied.

    A simulated experiment gives an :class:`ExperimentConfig`; the other kinds a validated :class:`KindConfig`
    (overrides as in :meth:`KindConfig.with_overrides`, e.g. ``settings={"train": {"epochs": 2}}``).

    Parameters
    ----------
    name : str
        A registered name (see :func:`list_experiments`).
    profile : {"smoke", "quick", "paper", "converge"}, default="quick"
        A kind that has no converge settings raises ``ValueError`` saying so.
    kind : str or None, default=None
        The kind ``name`` must be (``"image"``, ...); None accepts any.
    **overrides
        Config fields to replace, e.g. ``steps=50, n_samples=40, seed=3``; the ``*_kwargs`` dicts
        are merged. They apply to every variant of a study.

    Raises
    ------
    ValueError
        Unknown name (close names are suggested) or profile, or ``name`` is not of ``kind``.
    TypeError
        An unknown field in ``overrides``.
    FlagNotSupportedError
        An override the experiment's kind cannot honour (named).
    """
    entry = _entry(name)
    if kind is not None and entry.kind != kind:
        raise ValueError(f"{name!r} is a {entry.kind} experiment, not of kind {kind!r}; {kind} experiments: "
                         f"{', '.join(list_experiments(kind=kind))}.")
    if profile not in PROFILES:
        raise ValueError(f"Unknown profile {profile!r}; choose one of {', '.join(PROFILES)}.")
    cfg = entry.fn(Profile(profile))
    if entry.kind == "simulated" and profile == "converge":
        cfg = converge_rule(entry.fn(Profile("quick")), cfg)
    cfg = dataclasses.replace(cfg, name=name, profile=profile, title=cfg.title or entry.summary)
    if entry.kind != "simulated":
        return cfg.with_overrides(**overrides)
    if profile == "smoke":  # seconds, not minutes: coarse figures, tracking at step 0 and the last step only
        cfg = dataclasses.replace(cfg, grid_resolution=min(cfg.grid_resolution, 40), track=())
    return cfg.with_overrides(**overrides)


# ---------------------------------------------------------------------------------------------- other kinds
#: The flags of ``nnboundary reproduce`` that carry a value into a run (besides --profile and --out).
FLAGS: tuple[str, ...] = ("steps", "seed", "n_samples", "resume", "force", "device", "data_dir")


class FlagNotSupportedError(ValueError):
    """A flag (override) was given to an experiment kind that cannot honour it."""


@dataclass(frozen=True)
class Kind:
    """An experiment kind with a runner of its own.

    Attributes
    ----------
    name : str
        ``"image"``, ``"bias"``, ``"forgetting"``, ``"adversarial"``.
    run : callable
        ``run(cfg, run_dir, *, device, data_dir, progress, force, resume) -> KindResult``.
    validate : callable
        ``validate(settings)`` raises ``ValueError`` on a bad resolved settings dict.
    flags : dict
        The :data:`FLAGS` the kind honours -> what each does for it.
    settings_for : dict
        ``steps`` / ``n_samples`` -> ``f(value) -> settings override`` (the one place a flag meets a kind's
        settings).
    name_key : str, default="name"
        The settings key that holds the experiment's name (``"experiment"`` for the image and bias kinds).
    merge : callable, default=deep_merge
        ``merge(settings, override) -> settings``; a kind with a rule of its own (the image kind: ``steps``
        and ``epochs`` replace each other) wraps :func:`deep_merge`.
    """

    name: str
    run: Callable[..., Any]
    validate: Callable[[dict[str, Any]], None]
    flags: Mapping[str, str]
    settings_for: Mapping[str, Callable[[Any], dict[str, Any]]] = field(default_factory=dict)
    merge: Callable[[Mapping[str, Any], Mapping[str, Any]], dict[str, Any]] | None = None
    name_key: str = "name"

    def check_flags(self, experiment: str, given: Mapping[str, Any]) -> None:
        """Raise :class:`FlagNotSupportedError` naming every given flag this kind does not take."""
        bad = sorted(k for k, v in given.items() if k not in self.flags and v not in (None, False))
        if bad:
            names = ", ".join("--" + b.replace("_", "-") for b in bad)
            takes = ", ".join("--" + f.replace("_", "-") for f in sorted(self.flags))
            raise FlagNotSupportedError(f"{experiment} ({self.name} experiment) does not take {names}. "
                                        f"It takes {takes}.")


_KINDS: dict[str, Kind] = {}
_KIND_MODULES = ("nnboundary.experiments.images", "nnboundary.experiments.bias", "nnboundary.applications")


def register_kind(kind: Kind) -> Kind:
    """Register an experiment kind (its module then registers its experiments with ``kind=kind.name``)."""
    if kind.name in _KINDS or kind.name == "simulated":
        raise ValueError(f"Experiment kind {kind.name!r} is registered twice.")
    _KINDS[kind.name] = kind
    return kind


_SettingsFn = Callable[[Profile], dict[str, Any]]


def register_settings(kind: str, name: str, title: str, **meta: Any) -> Callable[[_SettingsFn], _SettingsFn]:
    """Decorator: register ``fn(profile) -> settings`` as experiment ``name`` of ``kind`` (the dict kinds' form of
    :func:`register_experiment`: ``fn`` writes the kind's settings once, with :meth:`Profile.pick` where the
    profiles differ).

    :func:`get_experiment` gives ``KindConfig(kind, settings, title=title)``, validated by the kind, whose settings
    are ``fn``'s followed by ``{Kind.name_key: name, "profile": ..., "title": title}`` and ``meta`` (e.g. the
    ``source`` and ``reference`` of an image experiment), deep-copied: no two configs share a dict.
    """

    def deco(fn: _SettingsFn) -> _SettingsFn:
        register_experiment(name, title, kind=kind)(functools.partial(_kind_config, kind, name, title, meta, fn))
        return fn

    return deco


def _kind_config(kind: str, name: str, title: str, meta: Mapping[str, Any], fn: _SettingsFn,
                 p: Profile) -> KindConfig:
    spec = get_kind(kind)
    raw = fn(p)
    if p.name == "converge" and raw == fn(Profile("quick")):
        raise ValueError(f"{name} ({kind} experiment) has no converge settings: its converge profile would be its "
                         "quick one. Run it with --profile quick, or give it converge values with "
                         "p.pick(..., converge=...).")
    settings = copy.deepcopy({**raw, spec.name_key: name, "profile": p.name, "title": title, **meta})
    spec.validate(settings)
    return KindConfig(kind, settings, title=title)


def get_kind(name: str) -> Kind:
    _load_kinds()
    return _KINDS[name]


def _load_kinds() -> None:
    """Import the modules that register the other kinds (lazily: they import this module)."""
    import importlib

    for module in _KIND_MODULES:
        importlib.import_module(module)


@dataclass(frozen=True)
class KindConfig:
    """The frozen config of an experiment of another kind: its resolved settings dict plus the run's seed.

    Attributes
    ----------
    name, profile, title, kind : str
    settings : dict
        The kind's resolved settings (data, model, train, ...); read it, do not change it: use
        :meth:`with_overrides`.
    seed : int or None
        None keeps the kind's own default (its profile's seed list, or 0).
    """

    kind: str
    settings: dict[str, Any]
    name: str = ""
    profile: str = "quick"
    title: str = ""
    seed: int | None = None

    def with_overrides(self, **overrides: Any) -> KindConfig:
        """A copy with ``seed``, ``steps``, ``n_samples`` or ``settings`` (a dict, deep-merged) replaced.

        Raises
        ------
        FlagNotSupportedError
            ``steps`` / ``n_samples`` for a kind that has no such setting.
        TypeError
            Any other key.
        """
        if not overrides:
            return self
        kind = get_kind(self.kind)
        unknown = sorted(set(overrides) - {"seed", "steps", "n_samples", "settings"})
        if unknown:
            raise TypeError(f"Unknown setting(s) {unknown} for {self.name} ({self.kind}); pass seed=, steps=, "
                            "n_samples= or settings={...}.")
        kind.check_flags(self.name, {k: v for k, v in overrides.items() if k != "settings"})
        merge = kind.merge or deep_merge
        settings = merge(self.settings, overrides.get("settings") or {})
        for flag in ("steps", "n_samples"):
            if overrides.get(flag) is not None:
                settings = merge(settings, kind.settings_for[flag](overrides[flag]))
        kind.validate(settings)
        seed = self.seed if overrides.get("seed") is None else int(overrides["seed"])
        return dataclasses.replace(self, settings=settings, seed=seed)

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(dataclasses.asdict(self))


# ---------------------------------------------------------------------------------------------- merging
def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """The one override rule for dict-shaped configs (image, bias, forgetting, adversarial kinds).

    ``base`` updated by ``override``: nested dicts are merged key by key, everything else replaced. A nested
    dict whose ``"name"`` differs from the base's (another model, another data set) replaces the base dict
    whole, so that a ResNet's ``kwargs`` never leak into a DenseNet's.
    """
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        renamed = (isinstance(value, Mapping) and isinstance(out.get(key), Mapping) and "name" in value
                   and value["name"] != out[key].get("name"))
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) and not renamed:
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
