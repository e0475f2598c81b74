"""Tests for the ``nnboundary`` command line (typer's CliRunner, in-process)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from nnboundary import __version__
from nnboundary.cli import app
from nnboundary.experiments import get_experiment, list_experiments

torch.set_num_threads(1)  # the test machine is small and shared

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def test_help_lists_the_commands() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("list", "reproduce", "demo", "analyze", "describe"):
        assert command in result.output


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0 and result.output.strip() == f"nnboundary {__version__}"


def test_list_prints_one_line_per_experiment() -> None:
    result = invoke("list")
    assert result.exit_code == 0
    lines = result.output.strip().splitlines()
    assert [line.split()[0] for line in lines][:len(list_experiments())] == list_experiments()
    assert "[quick: 6 runs x 1500 steps]" in next(line for line in lines if line.startswith("activations"))


def test_reproduce_writes_a_run_and_refuses_to_overwrite(tmp_path) -> None:
    out = tmp_path / "blobs"
    args = ("reproduce", "blobs", "--profile", "smoke", "--out", str(out), "--no-progress", "--steps", "15")
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    assert "Report:" in first.output and "report.md" in first.output and "angle" in first.output
    assert "blobs [smoke profile]" in first.output and "15 steps" in first.output  # the settings come with it
    assert json.loads((out / "config.json").read_text())["experiment"]["steps"] == 15

    again = invoke(*args)
    assert again.exit_code == 2
    assert "already holds a run" in again.output and "--force" in again.output
    forced = invoke(*args, "--force")
    assert forced.exit_code == 0, forced.output


def test_reproduce_needs_exactly_one_of_name_and_all() -> None:
    assert invoke("reproduce").exit_code == 2
    assert invoke("reproduce", "blobs", "--all").exit_code == 2


def test_reproduce_unknown_experiment_suggests_names(tmp_path) -> None:
    result = invoke("reproduce", "mons", "--out", str(tmp_path / "x"))
    assert result.exit_code == 2 and "moons" in result.output


def test_demo_is_the_blobs_quick_run_and_reruns_into_fresh_dirs(tmp_path, monkeypatch) -> None:
    import nnboundary.experiments as experiments

    asked = []
    real = experiments.get_experiment

    def smoke_instead(name, profile="quick", **kw):  # the real quick run takes about a minute
        asked.append((name, profile))
        return real(name, "smoke", **kw)

    monkeypatch.setattr(experiments, "get_experiment", smoke_instead)
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        result = invoke("demo", "--no-progress")
        assert result.exit_code == 0, result.output
        assert "Report:" in result.output and "angle" in result.output
    assert asked == [("blobs", "quick")] * 2
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(runs) == 2 and all(r.startswith("demo-") for r in runs)


@pytest.fixture()
def saved_model(tmp_path):
    """A small MLP trained to separate blobs, saved whole, with its data as .npz."""
    from nnboundary.data import make_simulated, train_test_split
    from nnboundary.models import MLP
    from nnboundary.train import fit

    train, test = train_test_split(make_simulated("blobs", n_samples=80, seed=0))
    model = MLP(2, hidden=(8, 2), activations="tanh", seed=0)
    fit(model, train.X, train.y, optimizer="adam", lr=1e-2, steps=150, progress=False)
    torch.save(model, tmp_path / "model.pt")
    np.savez(tmp_path / "data.npz", X=train.X, y=train.y, X_test=test.X, y_test=test.y)
    return tmp_path / "model.pt", tmp_path / "data.npz"


def test_analyze_prints_describe_and_summary_and_saves(saved_model, tmp_path) -> None:
    model_file, data_file = saved_model
    out = tmp_path / "analysis"
    result = invoke("analyze", str(model_file), "--data", str(data_file), "--out", str(out), "--allow-pickle")
    assert result.exit_code == 0, result.output
    assert "head" in result.output and "D = 2" in result.output  # describe() first
    assert "angle_deg" in result.output and "agreement_test" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_samples"] == 72 and summary["head"] == "head"
    assert f"{summary['angle_deg']:.3g}" in result.output or f"{summary['angle_deg']:.1f}" in result.output
    assert invoke("analyze", str(model_file), "--data", str(data_file), "--out", str(out)).exit_code == 2
    assert invoke("analyze", str(model_file), "--data", str(data_file), "--out", str(out), "--force",
                  "--allow-pickle").exit_code == 0


def test_analyze_with_a_features_file_streams_and_matches_the_in_memory_run(saved_model, tmp_path) -> None:
    model_file, data_file = saved_model
    mem = invoke("analyze", str(model_file), "--data", str(data_file), "--out", str(tmp_path / "mem"),
                 "--allow-pickle")
    assert mem.exit_code == 0, mem.output
    feats = tmp_path / "feats" / "H.npy"
    args = ("analyze", str(model_file), "--data", str(data_file), "--out", str(tmp_path / "disk"), "--allow-pickle",
            "--features-file", str(feats))
    disk = invoke(*args)
    assert disk.exit_code == 0, disk.output
    assert np.load(feats, mmap_mode="r").shape == (72, 2) and "Report:   not written" in disk.output
    a, b = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("mem", "disk"))
    for k, v in a.items():
        assert b[k] == (pytest.approx(v, rel=1e-9, abs=1e-12) if isinstance(v, float) else v), k
    assert json.loads((tmp_path / "disk" / "settings.json").read_text())["features_file"] == str(feats)
    again = invoke(*args[:5], str(tmp_path / "other"), *args[6:])  # the features file exists: refused
    assert again.exit_code == 2 and "already exists" in again.output and not (tmp_path / "other").exists()


def test_analyze_help_warns_that_pickles_run_code() -> None:
    result = invoke("analyze", "--help")
    assert result.exit_code == 0 and "runs code" in " ".join(result.output.split()).lower()


def test_analyze_reports_bad_files_clearly(saved_model, tmp_path) -> None:
    model_file, _ = saved_model
    np.savez(tmp_path / "bad.npz", inputs=np.zeros((3, 2)))
    result = invoke("analyze", str(model_file), "--data", str(tmp_path / "bad.npz"), "--allow-pickle")
    assert result.exit_code == 2 and "lacks" in result.output
    missing = invoke("analyze", str(tmp_path / "nope.pt"), "--data", str(tmp_path / "bad.npz"))
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_describe(saved_model) -> None:
    model_file, data_file = saved_model
    result = invoke("describe", str(model_file), "--data", str(data_file), "--allow-pickle")
    assert result.exit_code == 0, result.output
    assert "Linear(2 -> 2" in result.output and "K = 2" in result.output


def test_profiles_offered_by_the_cli_exist() -> None:
    for profile in ("smoke", "quick", "paper"):
        assert get_experiment("blobs", profile).profile == profile


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_reproduce_on_cuda_without_gpu_fails_cleanly(tmp_path) -> None:
    out = tmp_path / "gpu"
    result = invoke("reproduce", "blobs", "--profile", "smoke", "--device", "cuda", "--out", str(out))
    assert result.exit_code == 2 and "CUDA" in result.output
    assert not out.exists() and not (tmp_path / "gpu.partial").exists()


def test_list_and_reproduce_reach_the_experiments_with_their_own_runners(tmp_path):
    listing = runner.invoke(app, ["list"])
    assert listing.exit_code == 0
    for name in ("mnist01-resnet", "bias-reinit-blobs", "forgetting-digits", "adversarial-digits"):
        assert name in listing.output
    out = tmp_path / "fd"
    first = runner.invoke(app, ["reproduce", "forgetting-digits", "--profile", "smoke", "--out", str(out)])
    assert first.exit_code == 0, first.output
    assert (out / "config.json").exists() and (out / "summary.json").exists()
    again = runner.invoke(app, ["reproduce", "forgetting-digits", "--profile", "smoke", "--out", str(out)])
    assert again.exit_code != 0 and "force" in again.output.lower()


def test_reproduce_all_writes_the_claims_table(tmp_path, monkeypatch):
    import nnboundary.experiments as E
    from nnboundary.experiments import run_experiment

    done = run_experiment("blobs", "smoke", tmp_path / "all" / "blobs", progress=False, overrides={"plots": ()})
    monkeypatch.setattr(E, "run_all", lambda profile, root, **kw: [("blobs", done), ("disc", ValueError("boom"))])
    result = invoke("reproduce", "--all", "--profile", "smoke", "--out", str(tmp_path / "all"), "--no-progress")
    assert result.exit_code == 1  # one experiment failed; the table of the others is still written
    text = (tmp_path / "all" / "claims.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| blobs |"))
    assert row.count("|") == 13 and ("supported" in row or "not reached within budget" in row)
    assert "disc" not in text
