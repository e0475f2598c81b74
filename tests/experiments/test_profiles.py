"""Every experiment of every kind resolves, for every profile, to a frozen config of its own: written once with
``Profile.pick``, stamped with its name and profile, valid, plain data, and sharing no dict or list with any other
config (the kinds' helpers reuse module-level constants such as the analysis options)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from nnboundary.experiments import (PROFILES, ExperimentConfig, KindConfig, Profile, experiment_kind,
                                    get_experiment, list_experiments)
from nnboundary.experiments.registry import CONVERGE_STEPS, CONVERGE_TARGET_LOSS, get_kind


def _has_converge(name: str) -> bool:
    try:
        get_experiment(name, "converge")
    except ValueError as err:
        assert "no converge settings" in str(err)                  # the one clear refusal
        return False
    return True


CONVERGE = [name for name in list_experiments(kind=None) if _has_converge(name)]
ALL = [(name, profile) for name in list_experiments(kind=None) for profile in PROFILES
       if profile != "converge" or name in CONVERGE]


def _containers(x):
    """Every dict and list inside ``x``, outermost first."""
    if isinstance(x, (dict, list)):
        yield x
        for v in (x.values() if isinstance(x, dict) else x):
            yield from _containers(v)


def test_pick_chooses_by_profile_and_smoke_defaults_to_quick() -> None:
    assert [Profile(p).pick(paper=3, quick=2, smoke=1, converge=4) for p in PROFILES] == [1, 2, 3, 4]
    assert Profile("smoke").pick(paper=3, quick=2) == 2
    assert Profile("converge").pick(paper=3, quick=2, smoke=1) == 2                # converge defaults to quick
    assert Profile("smoke").pick(paper=3, quick=2, smoke=None) is None       # None is a value, not "as quick"


@pytest.mark.parametrize("name, profile", ALL)
def test_every_config_is_frozen_stamped_valid_and_plain_data(name: str, profile: str) -> None:
    cfg = get_experiment(name, profile)
    assert dataclasses.is_dataclass(cfg) and cfg.name == name and cfg.profile == profile and cfg.title
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.name = "other"
    kind = experiment_kind(name)
    if kind == "simulated":
        assert isinstance(cfg, ExperimentConfig)
        cfg.validate()
    else:
        assert isinstance(cfg, KindConfig) and cfg.kind == kind and cfg.seed is None
        spec = get_kind(kind)
        assert cfg.settings[spec.name_key] == name and cfg.settings["profile"] == profile
        assert cfg.settings["title"] == cfg.title
        spec.validate(cfg.settings)
        with pytest.raises(ValueError, match="not of kind"):
            get_experiment(name, profile, kind="simulated")
    assert json.loads(json.dumps(cfg.to_dict(), allow_nan=False)) == cfg.to_dict()


def test_no_two_configs_share_a_dict_or_a_list() -> None:
    kinds = [(n, p) for n, p in ALL if experiment_kind(n) != "simulated"]
    before = {key: get_experiment(*key).to_dict() for key in kinds}
    resolved = [get_experiment(*key) for key in kinds]
    for cfg in resolved:                        # vandalise every container of one resolution ...
        for box in list(_containers(cfg.settings)):
            if isinstance(box, dict):
                box["vandal"] = True
            else:
                box.append("vandal")
    for key in kinds:                           # ... and every later resolution is untouched
        assert get_experiment(*key).to_dict() == before[key], key
    ids = [id(box) for cfg in resolved for box in _containers(cfg.settings)]
    assert len(ids) == len(set(ids))           # and no container is shared between two configs


# ------------------------------------------------------------------------------------------ converge
def test_converge_resolves_for_every_simulated_experiment_and_the_two_image_networks() -> None:
    for name in [*list_experiments(), "mnist01-resnet", "mnist012-densenet"]:
        assert name in CONVERGE, name


def test_an_experiment_without_converge_settings_is_refused_clearly() -> None:
    missing = [n for n in list_experiments(kind=None) if n not in CONVERGE]
    assert "cifar10-airplane-bird-densenet" in missing
    with pytest.raises(ValueError, match="no converge settings.*--profile quick"):
        get_experiment("cifar10-airplane-bird-densenet", "converge")


@pytest.mark.parametrize("name", list_experiments())
def test_converge_rule_is_the_quick_config_trained_full_batch_in_float64_to_the_target(name: str) -> None:
    quick, conv = get_experiment(name, "quick"), get_experiment(name, "converge")
    assert conv.batch_size is None and conv.dtype == "float64"
    assert conv.steps == CONVERGE_STEPS and conv.target_loss == CONVERGE_TARGET_LOSS
    if conv.variants and all("optimizer" in v.overrides for v in conv.variants):  # the optimizer study keeps its own
        assert (conv.optimizer, conv.lr, conv.optimizer_kwargs) == (quick.optimizer, quick.lr, quick.optimizer_kwargs)
    else:
        assert conv.optimizer == "loss_based" and conv.optimizer_kwargs["warmup"] == "adam" and conv.lr > 0
    same = ("data", "n_samples", "data_kwargs", "model", "model_kwargs", "loss", "seed", "svm_multiclass", "variants")
    assert {k: getattr(conv, k) for k in same} == {k: getattr(quick, k) for k in same}


def test_an_entry_overrides_the_rule_with_pick_converge(monkeypatch) -> None:
    from nnboundary.experiments import registry
    from nnboundary.experiments.registry import ExperimentConfig, register_experiment

    @register_experiment("tmp-converge-override", "test only")
    def _tmp(p):
        return ExperimentConfig(data="blobs", n_samples=40, steps=p.pick(paper=9, quick=5, converge=77),
                                optimizer="adam", lr=p.pick(paper=1e-4, quick=1e-3, converge=0.5))

    try:
        cfg = get_experiment("tmp-converge-override", "converge")
        assert cfg.steps == 77 and cfg.lr == 0.5                         # the entry's own converge values
        assert cfg.dtype == "float64" and cfg.optimizer == "loss_based"    # the rest from the rule
        assert get_experiment("tmp-converge-override", "quick").steps == 5
    finally:
        registry._EXPERIMENTS.pop("tmp-converge-override")


# Known quick numbers (catalog and image settings as of the converge profile's introduction): unchanged by it.
_QUICK = {
    "blobs": {"steps": 2000, "lr": 1e-3, "optimizer": "adam", "batch_size": None, "dtype": "float32",
              "n_samples": 1000, "target_loss": None},
    "three-blobs": {"steps": 2000, "lr": 1e-3, "n_samples": 900, "batch_size": None, "dtype": "float32"},
    "disc": {"steps": 2000, "lr": 1e-3, "n_samples": 1000, "model_kwargs": {"hidden": [100, 100],
                                                                          "activations": "relu", "init": "torch"}},
    "moons": {"steps": 3000, "snapshots": (0, 100, 1000, 3000)},
    "asymmetric": {"steps": 3000, "optimizer": "momentum", "lr": 5e-2},
    "activations": {"steps": 1500, "n_samples": 600, "track": (1, 10, 100, 300, 1000)},
}


@pytest.mark.parametrize("name", sorted(_QUICK))
def test_quick_configs_are_unchanged(name: str) -> None:
    cfg = get_experiment(name, "quick")
    assert {k: getattr(cfg, k) for k in _QUICK[name]} == _QUICK[name]


def test_image_quick_and_smoke_training_are_unchanged() -> None:
    quick = get_experiment("mnist01-resnet", "quick").settings
    assert quick["train"] == {"optimizer": "adam", "lr": 3e-3, "batch_size": 32, "epochs": 30, "loss": "cross_entropy"}
    assert quick["data"]["subsample"] == 1000 and quick["label"] == "quick (CPU, reduced)"
    assert get_experiment("mnist012-densenet", "smoke").settings["train"]["epochs"] == 8
    conv = get_experiment("mnist01-resnet", "converge").settings
    assert conv["train"]["optimizer"] == "loss_based" and conv["train"]["batch_size"] is None
    assert conv["train"]["target_loss"] == 1e-12 and conv["model"] == quick["model"]


def test_a_converge_run_reports_why_it_stopped(tmp_path) -> None:
    from nnboundary.experiments import run_experiment

    kw = dict(n_samples=60, model_kwargs={"hidden": [8, 2]}, grid_resolution=20, track=(10,), plots=())
    done = run_experiment(get_experiment("blobs", "converge", steps=400, **kw), out_dir=tmp_path / "a", progress=False)
    row = json.loads((done.run_dir / "summary.json").read_text())["variants"]["main"]
    assert row["stop_reason"] == "target_loss" and row["steps_run"] < row["budget_steps"] == 400
    assert row["final_loss"] <= CONVERGE_TARGET_LOSS and row["target_loss"] == CONVERGE_TARGET_LOSS
    assert "reached the target loss" in done.report_md()
    short = run_experiment(get_experiment("blobs", "converge", steps=3, **kw), out_dir=tmp_path / "b", progress=False)
    row = json.loads((short.run_dir / "summary.json").read_text())["variants"]["main"]
    assert row["stop_reason"] == "budget" and row["steps_run"] == row["budget_steps"] == 3
    assert "target loss NOT reached" in short.report_md() and "step budget" in short.report_md()


@pytest.mark.parametrize("name", list_experiments())
def test_every_converge_run_builds_its_optimizer(name):
    """The converge rule's optimizer keywords reach only the optimizer they belong to (the optimizer study's SGD
    once got the loss-based warm-up keywords and failed at its first step)."""
    import torch

    from nnboundary.train import make_optimizer

    for label, cfg in get_experiment(name, "converge").expand():
        make_optimizer(cfg.optimizer, [torch.nn.Parameter(torch.zeros(2))], cfg.lr, **cfg.optimizer_kwargs)
        assert cfg.dtype == "float64" and cfg.batch_size is None and cfg.target_loss == CONVERGE_TARGET_LOSS, label
