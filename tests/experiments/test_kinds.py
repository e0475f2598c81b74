"""Every experiment kind takes the command-line flags it can honour and refuses the others by name; every kind that
trains with checkpoints resumes to the same numbers."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from nnboundary.cli import app
from nnboundary.experiments import (FLAGS, FlagNotSupportedError, KindConfig, experiment_kind, get_experiment,
                                    list_experiments, run_experiment)
from nnboundary.experiments.registry import get_kind
from nnboundary.experiments.rundir import RunDir

OTHERS = {n: get_kind(experiment_kind(n)) for n in list_experiments(kind=None) if experiment_kind(n) != "simulated"}


def run_other(name, out, *, profile, **flags):
    """run_experiment with the CLI's flags, split the way the CLI splits them."""
    overrides = {k: flags.pop(k) for k in ("steps", "n_samples") if k in flags}
    return run_experiment(name, profile, out, overrides=overrides, progress=False, **flags)
DIGITS01 = {"data": {"name": "digits", "classes": [0, 1], "subsample": None, "test_subsample": None}}
#: A value for each flag, as run_other takes it.
VALUES = {"steps": 3, "seed": 4, "n_samples": 10, "resume": True, "force": True, "device": "cpu",
          "data_dir": "/nonexistent-data"}


def test_one_registry_holds_every_kind() -> None:
    assert not set(OTHERS) & set(list_experiments())          # the default: the simulated set of --all
    assert {k.name for k in OTHERS.values()} == {"image", "bias", "forgetting", "adversarial"}
    for name, kind in OTHERS.items():
        assert set(kind.flags) <= set(FLAGS) and {"seed", "force", "device", "data_dir"} <= set(kind.flags)
        for profile in ("smoke", "quick", "paper"):
            cfg = get_experiment(name, profile)
            assert isinstance(cfg, KindConfig) and cfg.name == name and cfg.profile == profile
            assert cfg.with_overrides(seed=3).seed == 3 and cfg.seed is None


@pytest.mark.parametrize("name", sorted(OTHERS))
def test_flags_a_kind_cannot_honour_are_refused_by_name(name: str, tmp_path) -> None:
    refused = sorted(set(FLAGS) - set(OTHERS[name].flags))
    for flag in refused:
        with pytest.raises(FlagNotSupportedError, match=f"--{flag.replace('_', '-')}"):
            run_other(name, tmp_path / "run", profile="smoke", **{flag: VALUES[flag]})
    assert list(tmp_path.iterdir()) == []  # refused before anything was written
    if refused:
        flag = refused[0]
        args = ["reproduce", name, "--profile", "smoke", "--out", str(tmp_path / "cli")]
        args += [f"--{flag.replace('_', '-')}"] + ([] if isinstance(VALUES[flag], bool) else [str(VALUES[flag])])
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and f"--{flag.replace('_', '-')}" in result.output
        assert "Traceback" not in result.output and not (tmp_path / "cli").exists()


@pytest.mark.parametrize("name", sorted(OTHERS))
def test_flags_a_kind_honours_reach_its_runner(name: str, tmp_path, monkeypatch) -> None:
    import nnboundary.experiments.bias as bias
    import nnboundary.experiments.images as images

    seen: dict = {}

    def record(*args, **kwargs):
        seen.update(kwargs, args=args)
        raise KeyboardInterrupt  # stop before any work

    import nnboundary.applications.adversarial as adv
    import nnboundary.applications.forgetting as fgt

    for mod, fn in ((images, "_run_resolved"), (bias, "_run_resolved"), (fgt, "run_forgetting"),
                    (adv, "run_adversarial")):
        monkeypatch.setattr(mod, fn, record)
    given = {f: VALUES[f] for f in OTHERS[name].flags}
    with pytest.raises(KeyboardInterrupt):
        run_other(name, tmp_path / "run", profile="smoke", **given)
    kind = OTHERS[name].name
    assert seen["device"] == "cpu" and seen["data_dir"] == "/nonexistent-data" and seen["force"] is True
    if kind == "image":
        cfg = seen["args"][0]
        assert seen["seed"] == 4 and seen["resume"] is True
        assert cfg["train"]["steps"] == 3 and "epochs" not in cfg["train"] and cfg["data"]["subsample"] == 10
    elif kind == "bias":
        assert seen["seed"] == 4 and seen["args"][0]["head"]["steps"] == 3
    else:
        assert seen["seeds"] == 4


def test_image_run_resumes_to_the_same_numbers(tmp_path, monkeypatch) -> None:
    from nnboundary.experiments.images import run_image_experiment
    from nnboundary.train.loop import Trainer

    overrides = {**DIGITS01, "analysis": {"figures": []}}
    reference = run_image_experiment("mnist01-resnet", "smoke", tmp_path / "ref", overrides=overrides)
    original = Trainer._save

    def crash_after_second_checkpoint(self, run, step):
        original(self, run, step)
        if len(run.written) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_save", crash_after_second_checkpoint)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_image_experiment("mnist01-resnet", "smoke", out, overrides=overrides)
    monkeypatch.setattr(Trainer, "_save", original)
    rd = RunDir(out, experiment="mnist01-resnet", profile="smoke")
    assert not out.exists() and rd.has_partial() and not rd.lock_path.exists()
    resumed = run_image_experiment("mnist01-resnet", "smoke", out, overrides=overrides, resume=True)
    assert resumed["train"]["settings"] == reference["train"]["settings"]
    assert 0 < resumed["train"]["steps"] and resumed["train"]["steps"] == reference["train"]["steps"]
    for key in ("test_accuracy", "angle_deg", "margin_ratio", "bias_offset"):
        assert resumed[key] == reference[key], key
    assert (out / "metrics.jsonl").is_file() and rd.is_complete()
    again = run_image_experiment("mnist01-resnet", "smoke", out, overrides=overrides, resume=True)
    assert again["test_accuracy"] == reference["test_accuracy"]  # a complete run is returned as it is


def test_one_override_rule_another_model_replaces_the_kwargs() -> None:
    cfg = get_experiment("mnist01-resnet", "quick")
    assert "width" in cfg.settings["model"]["kwargs"]
    other = cfg.with_overrides(settings={"model": {"name": "densenet", "kwargs": {"depth": 7, "growth_rate": 2}}})
    assert other.settings["model"] == {"name": "densenet", "kwargs": {"depth": 7, "growth_rate": 2}}  # no width leak
    same = cfg.with_overrides(settings={"model": {"kwargs": {"width": 8}}})                   # same model: merged
    assert same.settings["model"]["kwargs"]["width"] == 8 and "stages" in same.settings["model"]["kwargs"]
    assert cfg.settings["model"]["kwargs"]["width"] != 8                                       # frozen original
    with pytest.raises(ValueError, match="no_such"):
        cfg.with_overrides(settings={"model": {"kwargs": {"no_such": 1}}})
    with pytest.raises(TypeError, match="Unknown setting"):
        cfg.with_overrides(epochs=3)
