"""Tests for nnboundary.experiments: the registry (configs as data), the runner (run directories), the report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from nnboundary.experiments import (
    PROFILES,
    ExperimentConfig,
    RunExistsError,
    Variant,
    get_experiment,
    list_experiments,
    load_run,
    run_experiment,
)
from nnboundary.experiments import runner as runner_mod
from nnboundary.experiments._data import load_run_data
from nnboundary.experiments._hooks import JointLinearView, analysis_view
from nnboundary.tracking import AlignmentTracker
from nnboundary.experiments.report import profile_differences, status_of, summary_rows, write_report


#: The experiments issue 4 asks for, by registry name.
REQUIRED = ("blobs", "blobs-large", "plate", "disc", "difficult-sectors", "difficult-sectors-large", "sectors-not-sep",
            "moons", "activations", "optimizers", "losses", "architectures", "asymmetric", "three-blobs", "sv-vs-loss")
NAMES = list_experiments()
NO_PLOTS = {"plots": ()}


# ------------------------------------------------------------------------------------------------ registry
def test_registry_covers_the_issue_list() -> None:
    assert set(REQUIRED) <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_quick_profile_validates_and_builds(name: str) -> None:
    cfg = get_experiment(name, "quick").validate()
    assert cfg.name == name and cfg.profile == "quick"
    json.dumps(cfg.to_dict())  # plain data
    for label, vcfg in cfg.expand():
        data = load_run_data(vcfg)
        model = runner_mod._build_model(vcfg, data)
        logits = model(torch.as_tensor(data.X_train[:3], dtype=torch.float32))
        assert logits.shape == (3, data.n_classes), label
        assert len(data.y_train) + len(data.y_test) == vcfg.n_samples
    for profile in PROFILES:  # every profile is a valid config (paper ones are not built: 2000-wide nets)
        get_experiment(name, profile).validate()


@pytest.mark.parametrize("name", NAMES)
def test_quick_is_a_reduced_paper_run(name: str) -> None:
    quick, paper = get_experiment(name, "quick"), get_experiment(name, "paper")
    assert quick.steps < paper.steps
    assert quick.data == paper.data and len(quick.variants) == len(paper.variants)
    assert profile_differences(quick.to_dict(), paper.to_dict())  # the report can say what was reduced


def test_studies_have_the_issue_variants() -> None:
    labels = {name: [v.label for v in get_experiment(name).variants] for name in
              ("activations", "optimizers", "losses", "architectures")}
    assert labels["activations"] == ["square", "tanh", "softsign", "selu", "relu", "leaky_relu"]
    assert labels["optimizers"] == ["sgd", "momentum", "rmsprop", "adam"]
    assert {"cross_entropy", "hinge_ovr", "mse", "l1"} <= set(labels["losses"])
    assert labels["architectures"] == ["1fc", "2fc", "fc_conv1d"]
    assert get_experiment("three-blobs").svm_multiclass == ("crammer_singer", "ovr")


def test_overrides_merge_dicts_and_reach_every_variant() -> None:
    cfg = get_experiment("activations", "smoke", steps=7, seed=3, model_kwargs={"hidden": [4, 4]})
    for label, v in cfg.expand():
        assert v.steps == 7 and v.seed == 3
        assert v.model_kwargs == {"hidden": [4, 4], "activations": label}  # merged, variant's activation kept
    lr_override = get_experiment("optimizers", "smoke", lr=0.123)
    assert {v.lr for _, v in lr_override.expand()} == {0.123}  # a user override beats the variants'


def test_unknown_names_and_fields_get_helpful_errors() -> None:
    with pytest.raises(ValueError, match="Did you mean blobs"):
        get_experiment("blobz")
    with pytest.raises(ValueError, match="profile"):
        get_experiment("blobs", "fast")
    with pytest.raises(TypeError, match="settable fields"):
        get_experiment("blobs", stepz=3)


@pytest.mark.parametrize("bad, match", [
    ({"model_kwargs": {"widths": [3]}}, "does not take"),
    ({"plots": ("histogram",)}, "Unknown plot"),
    ({"optimizer": "adamw"}, "Unknown optimizer"),
    ({"data": "mooons"}, "Did you mean 'moons'"),
    ({"steps": 0}, "steps must be a positive int"),
    ({"snapshots": (5000,)}, "snapshots"),
])
def test_validate_rejects_bad_configs(bad: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        get_experiment("blobs", "smoke", **bad).validate()


def test_duplicate_variant_labels_are_rejected() -> None:
    cfg = ExperimentConfig(name="x", variants=(Variant("a", {}), Variant("a", {"lr": 0.1})))
    with pytest.raises(ValueError, match="unique"):
        cfg.validate()


# ------------------------------------------------------------------------------------------------ runs
@pytest.mark.parametrize("name", NAMES)
def test_smoke_profile_of_every_experiment_runs(name: str, tmp_path) -> None:
    result = run_experiment(name, "smoke", tmp_path / name, progress=False, overrides=NO_PLOTS)
    d = result.run_dir
    for f in ("config.json", "summary.json", "metrics.jsonl", "report.md", "data.npz"):
        assert (d / f).is_file(), f
    assert not d.with_name(d.name + ".partial").exists()
    cfg = get_experiment(name, "smoke")
    assert len(result.summaries) == max(1, len(cfg.variants)) * len(cfg.svm_multiclass)  # multi-class: CS and OvR
    for label, s in result.summaries.items():
        status = status_of(s)
        assert status in ("separable", "not separable", "not fitted", "FAILED")
        if status != "FAILED":
            assert 0.0 <= s["agreement_train"] <= 1.0 and s["steps"] == cfg.steps, label
        if status == "separable":  # (all-zero features, e.g. dead ReLUs, have no SVM direction: angle None)
            assert 0.0 <= s["angle_deg"] <= 180.0, label
    lines = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
    assert {0, cfg.steps} <= {r["step"] for r in lines}  # tracked at the initialisation and at the end


def test_blobs_smoke_writes_the_whole_run_directory(tmp_path) -> None:
    result = run_experiment("blobs", "smoke", tmp_path / "run", progress=False)
    d = result.run_dir
    figures = sorted(p.name for p in (d / "figures").glob("*.png"))
    assert figures == ["alignment.png", "input_space.png", "input_space_w1.png", "training_data.png",
                       "transformed.png"]
    assert all((d / "figures" / f).stat().st_size > 5000 for f in figures)
    report = (d / "report.md").read_text()
    assert "SMOKE" in report and "figures/transformed.png" in report and "angle (°)" in report
    config = json.loads((d / "config.json").read_text())
    assert config["experiment"]["steps"] == get_experiment("blobs", "smoke").steps
    assert config["run"]["seed"] == 0 and config["run"]["device"] == "cpu"
    summary = json.loads((d / "summary.json").read_text())
    assert summary["variants"]["main"]["n_samples"] == len(np.load(d / "data.npz")["y"])
    assert (d / "analysis" / "summary.json").is_file() and (d / "model.pt").is_file()
    assert load_run(d).summaries == result.summaries


def test_same_seed_same_numbers_other_seed_other_data(tmp_path) -> None:
    a = run_experiment("blobs", "smoke", tmp_path / "a", progress=False, overrides=NO_PLOTS)
    b = run_experiment("blobs", "smoke", tmp_path / "b", progress=False, overrides=NO_PLOTS)
    c = run_experiment("blobs", "smoke", tmp_path / "c", progress=False, seed=1, overrides=NO_PLOTS)
    keys = ("angle_deg", "margin_ratio", "bias_offset", "loss")
    assert [a.summaries["main"][k] for k in keys] == [b.summaries["main"][k] for k in keys]
    assert not np.array_equal(np.load(a.run_dir / "data.npz")["X"], np.load(c.run_dir / "data.npz")["X"])


def test_existing_run_needs_force(tmp_path) -> None:
    out = tmp_path / "run"
    run_experiment("blobs", "smoke", out, progress=False, overrides=NO_PLOTS)
    stamp = (out / "summary.json").stat().st_mtime_ns
    with pytest.raises(RunExistsError, match="--force"):
        run_experiment("blobs", "smoke", out, progress=False, overrides=NO_PLOTS)
    assert (out / "summary.json").stat().st_mtime_ns == stamp  # untouched
    run_experiment("blobs", "smoke", out, progress=False, force=True, overrides=NO_PLOTS)
    assert (out / "summary.json").stat().st_mtime_ns != stamp
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no .partial / .old left behind


def test_interrupted_run_is_refused_then_resumed_exactly(tmp_path, monkeypatch) -> None:
    overrides = {"plots": (), "steps": 30, "track": (10, 20)}
    reference = run_experiment("blobs", "smoke", tmp_path / "ref", progress=False, overrides=overrides)

    original = AlignmentTracker.on_step

    def crash(self, step, model, **extra):
        if step == 20:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C after the step-18 checkpoint
        return original(self, step, model, **extra)

    monkeypatch.setattr(AlignmentTracker, "on_step", crash)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_experiment("blobs", "smoke", out, progress=False, overrides=overrides)
    monkeypatch.setattr(AlignmentTracker, "on_step", original)
    assert not out.exists() and (tmp_path / "run.partial").is_dir()
    with pytest.raises(RunExistsError, match="--resume"):
        run_experiment("blobs", "smoke", out, progress=False, overrides=overrides)
    with pytest.raises(ValueError, match="Cannot resume"):
        run_experiment("blobs", "smoke", out, progress=False, resume=True, overrides={**overrides, "lr": 0.5})
    resumed = run_experiment("blobs", "smoke", out, progress=False, resume=True, overrides=overrides)
    for key in ("angle_deg", "margin_ratio", "bias_offset", "loss", "train_loss"):
        assert resumed.summaries["main"][key] == reference.summaries["main"][key], key
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 10, 20, 30]  # no duplicates from the re-evaluated steps


def test_study_resume_keeps_finished_variants(tmp_path, monkeypatch) -> None:
    calls = []
    original = runner_mod._run_variant

    def count(label, *args, **kwargs):
        calls.append(label)
        if label == "momentum" and len(calls) == 2:
            raise KeyboardInterrupt
        return original(label, *args, **kwargs)

    monkeypatch.setattr(runner_mod, "_run_variant", count)
    out = tmp_path / "opt"
    overrides = {**NO_PLOTS, "steps": 10}
    with pytest.raises(KeyboardInterrupt):
        run_experiment("optimizers", "smoke", out, progress=False, overrides=overrides)
    done = tmp_path / "opt.partial" / "variants" / "sgd" / "done.json"
    assert done.is_file()
    stamp = done.stat().st_mtime_ns
    result = run_experiment("optimizers", "smoke", out, progress=False, resume=True, overrides=overrides)
    assert list(result.summaries) == ["sgd", "momentum", "rmsprop", "adam"]
    assert (out / "variants" / "sgd" / "done.json").stat().st_mtime_ns == stamp  # reused, not recomputed
    variants = {json.loads(x)["variant"] for x in (out / "metrics.jsonl").read_text().splitlines()}
    assert variants == {"sgd", "momentum", "rmsprop", "adam"}


def test_non_separable_features_are_reported_not_fatal(tmp_path) -> None:
    # hidden=[]: the "network" is linear, its transformed space is the input, which no line separates
    result = run_experiment("sectors-not-sep", "smoke", tmp_path / "ns", progress=False,
                            overrides={"model_kwargs": {"hidden": []}, "plots": ("transformed",),
                                       "n_samples": 1000})
    s = result.summaries["main"]
    assert s["separable"] is False and s["accuracy"] < 1.0 and status_of(s) == "not separable"
    assert s["svm_C"] == 1.0  # compared with the soft-margin SVM
    assert "NOT linearly separable" in result.report.read_text()


def test_three_blobs_compares_crammer_singer_and_ovr(tmp_path) -> None:
    result = run_experiment("three-blobs", "smoke", tmp_path / "tb", progress=False,
                            overrides={"plots": ("transformed",)})
    assert set(result.summaries) == {"crammer_singer", "ovr"}
    assert {s["svm_multiclass"] for s in result.summaries.values()} == {"crammer_singer", "ovr"}
    assert {p.name for p in (result.run_dir / "figures").glob("*.png")} == {
        "transformed_crammer_singer.png", "transformed_ovr.png", "transformed_svms.png"}
    cs, ovr = result.summaries["crammer_singer"], result.summaries["ovr"]
    assert cs["svm_cs_vs_ovr_deg"] == ovr["svm_cs_vs_ovr_deg"] > 0  # the two limits, measured once for the pair
    assert cs["svm_cs_vs_ovr_deg"] >= abs(cs["angle_deg"] - ovr["angle_deg"]) - 1e-6  # triangle inequality
    assert 0 <= cs["svm_free_vs_reg_deg"] <= 180


def test_asymmetric_net_is_analysed_on_joint_features_with_snapshots(tmp_path) -> None:
    result = run_experiment("asymmetric", "smoke", tmp_path / "asym", progress=False,
                            overrides={"plots": ("snapshots",), "input_windows": (None,)})
    s = result.summaries["main"]
    assert s["head"] == "joint_head" and s["n_features"] == 8 + 2  # D hidden units + the 2 raw inputs
    assert (result.run_dir / "figures" / "snapshots.png").stat().st_size > 5000


def test_moons_transformed_snapshots_and_sv_vs_loss_figures(tmp_path) -> None:
    moons = run_experiment("moons", "smoke", tmp_path / "m", progress=False, overrides={"plots": ("snapshots",)})
    assert (moons.run_dir / "figures" / "snapshots.png").is_file()
    sv = run_experiment("sv-vs-loss", "smoke", tmp_path / "sv", progress=False, overrides={"plots": ("sv_vs_loss",)})
    s = sv.summaries["main"]
    assert len(s["support_indices"]) == len(s["top_loss_indices"]) == min(s["n_support"], 50)
    assert 0.0 <= s["sv_overlap_jaccard_loss"] <= 1.0
    assert {p.name for p in (sv.run_dir / "figures").glob("*.png")} == {"support_vectors.png", "highest_loss.png"}


def test_real_data_plumbing_with_bundled_digits(tmp_path) -> None:
    cfg = ExperimentConfig(name="digits-mlp", profile="smoke", data="digits", data_kwargs={"classes": [0, 1]},
                           n_samples=60, model="mlp", model_kwargs={"hidden": [8, 2]}, lr=1e-2, steps=20,
                           plots=("transformed", "alignment"), track=(), grid_resolution=40)
    result = run_experiment(cfg, out_dir=tmp_path / "digits", progress=False)
    s = result.summaries["main"]
    assert s["n_features"] == 2 and s["n_samples"] == 60
    assert "input_agreement" not in s  # 64-D inputs: no input-space figure or agreement


# ------------------------------------------------------------------------------------------------ pieces
def test_joint_linear_view_reproduces_the_asymmetric_logits() -> None:
    from nnboundary.models import AsymmetricMLP, MLP

    model = AsymmetricMLP(2, hidden=(6, 6), split=4, seed=0)
    view, head = analysis_view(model)
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    assert isinstance(view, JointLinearView) and head == "joint_head"
    torch.testing.assert_close(view(x), model(x))
    plain = MLP(2, hidden=(4, 2), seed=0)
    assert analysis_view(plain) == (plain, None)


def _summary(**kw) -> dict:
    base = {"angle_deg": 1.5, "margin_ratio": 0.99, "bias_offset": 0.01, "agreement_train": 1.0, "n_support": 3,
            "sv_overlap_jaccard": 0.5, "loss": 1e-3, "accuracy": 1.0, "separable": True}
    return {**base, **kw}


def test_status_and_table_rows() -> None:
    assert status_of(_summary()) == "separable"
    assert status_of(_summary(separable=False)) == "not separable"
    assert status_of(_summary(accuracy=0.9)) == "not fitted"
    assert status_of({"error": "boom"}) == "FAILED"
    headers, rows = summary_rows({"a": _summary(), "b": {"error": "boom"}})
    assert headers[0] == "variant" and headers[-1] == "status"
    assert "agree test" not in headers  # absent everywhere: column dropped
    assert rows[0][headers.index("angle (°)")] == "1.5" and rows[1][headers.index("angle (°)")] == "—"
    assert rows[1][-1] == "FAILED"


def test_report_labels_reduced_profiles_and_failures(tmp_path) -> None:
    cfg = get_experiment("blobs", "quick").to_dict()
    diffs = profile_differences(cfg, get_experiment("blobs", "paper").to_dict())
    assert any(d.startswith("steps 2000") for d in diffs)
    path = write_report(tmp_path, config=cfg, summaries={"main": _summary(separable=False)}, figures={"main": []},
                        run_info={"seed": 0}, paper_differences=diffs)
    text = path.read_text()
    assert "Profile: QUICK" in text and "steps 2000 (paper: 50001)" in text
    assert "NOT linearly separable" in text and math.isfinite(len(text))


# ------------------------------------------------------------------------------------------------ issue 13
def test_multiclass_cs_vs_ovr_reports_both_svms_per_geometry(tmp_path) -> None:
    result = run_experiment("multiclass-cs-vs-ovr", "smoke", tmp_path / "cs", progress=False, overrides=NO_PLOTS)
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert set(summary["variants"]) == {f"{v}/{mc}" for v in ("2d", "16d") for mc in ("crammer_singer", "ovr")}
    for label, s in summary["variants"].items():
        assert s["svm_multiclass"] == label.split("/")[1]
        assert s["transformed_dim"] == (2 if label.startswith("2d") else 16)
        assert s["angle_deg"] is None or 0.0 <= s["angle_deg"] <= 180.0


def test_bias_free_vs_reg_reports_both_angles_and_offsets(tmp_path) -> None:
    result = run_experiment("bias-free-vs-reg", "smoke", tmp_path / "b", progress=False, overrides=NO_PLOTS)
    s = json.loads((result.run_dir / "summary.json").read_text())["variants"]["main"]
    for key in ("angle_deg", "angle_deg_reg", "bias_offset", "bias_offset_reg"):
        assert key in s, key
    assert get_experiment("bias-free-vs-reg", "quick").dtype == "float64"


def test_transformed_figure_draws_both_multiclass_svms(tmp_path) -> None:
    from nnboundary.analysis import analyze
    from nnboundary.data import make_simulated
    from nnboundary.experiments._figures import draw_transformed_svms
    from nnboundary.models import build_model
    from nnboundary.svm import MaxMarginClassifier
    from nnboundary.train import fit

    ds = make_simulated("cs_ovr_blobs", n_samples=80, seed=0)
    model = build_model("mlp", in_features=2, n_classes=4, hidden=[8, 2], activations="relu", seed=0)
    fit(model, ds.X, ds.y, optimizer="adam", lr=1e-2, steps=300, dtype="float64", progress=False)
    analyses = {"crammer_singer": analyze(model, ds.X, ds.y, grid_resolution=20),
                "ovr": analyze(model, ds.X, ds.y, grid_resolution=20,
                               svm=MaxMarginClassifier(C=1.0, multiclass="ovr"))}
    figs = draw_transformed_svms(analyses, 40, tmp_path / "figures", "", tmp_path)
    assert [f.path for f in figs] == ["figures/transformed_svms.png"]
    assert (tmp_path / "figures" / "transformed_svms.png").stat().st_size > 0
    assert "Crammer-Singer" in figs[0].caption and "one-vs-rest" in figs[0].caption
    assert draw_transformed_svms({"crammer_singer": analyses["crammer_singer"]}, 40, tmp_path, "", tmp_path) == []
