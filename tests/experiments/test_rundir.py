"""RunDir: the marker, the lock and --force never touch what nnboundary did not write."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from nnboundary.experiments import run_experiment
from nnboundary.experiments.rundir import MARKER, RunDir, RunExistsError, RunLockedError

NO_PLOTS = {"plots": (), "steps": 5}


def _fake_run(rd: RunDir, *, force: bool = False, resume: bool = False, files=("summary.json", "config.json")):
    with rd.open(force=force, resume=resume) as stage:
        for f in files:
            (stage / f).write_text("{}")


def test_force_refuses_a_folder_without_the_marker(tmp_path) -> None:
    victim = tmp_path / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "precious.txt").write_text("mine")
    (victim / "sub" / "deep.txt").write_text("mine too")
    with pytest.raises(RunExistsError, match="not an nnboundary run directory"):
        run_experiment("blobs", "smoke", victim, progress=False, force=True, overrides=NO_PLOTS)
    assert (victim / "precious.txt").read_text() == "mine" and (victim / "sub" / "deep.txt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["victim"]  # no .partial, no lock left behind


def test_force_on_a_folder_of_runs_is_refused(tmp_path) -> None:
    root = tmp_path / "runs"
    _fake_run(RunDir(root / "a", experiment="a", profile="smoke"))
    with pytest.raises(RunExistsError, match="not an nnboundary run directory"):
        _fake_run(RunDir(root, experiment="x", profile="smoke"), force=True)
    assert RunDir.is_run_dir(root / "a")


def test_force_replaces_a_run_but_keeps_files_a_user_added(tmp_path) -> None:
    rd = RunDir(tmp_path / "run", experiment="e", profile="smoke")
    _fake_run(rd, files=("summary.json", "config.json", "old_only.txt"))
    (rd.path / "notes.txt").write_text("user notes")
    with pytest.raises(RunExistsError, match="--force"):
        _fake_run(rd)
    _fake_run(rd, force=True)
    assert (rd.path / "notes.txt").read_text() == "user notes"          # not ours: kept
    assert not (rd.path / "old_only.txt").exists()                        # ours, from the old run: replaced
    assert json.loads((rd.path / MARKER).read_text())["created"] == ["config.json", "summary.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_partial_without_marker_is_never_deleted(tmp_path) -> None:
    partial = tmp_path / "run.partial"
    partial.mkdir()
    (partial / "x.txt").write_text("not ours")
    with pytest.raises(RunExistsError, match="not an nnboundary run directory"):
        _fake_run(RunDir(tmp_path / "run", experiment="e", profile="smoke"), force=True)
    assert (partial / "x.txt").is_file()


def test_a_second_writer_is_refused_while_the_first_holds_the_lock(tmp_path) -> None:
    rd = RunDir(tmp_path / "run", experiment="e", profile="smoke")
    with rd.open() as stage:
        (stage / "summary.json").write_text("{}")
        other = RunDir(tmp_path / "run", experiment="e", profile="smoke")
        with pytest.raises(RunLockedError, match=f"process {os.getpid()}"):
            _fake_run(other, force=True)
        assert stage.is_dir() and (stage / "summary.json").is_file()     # the writer's work is untouched
        (stage / "config.json").write_text("{}")
    assert rd.is_complete() and not rd.lock_path.exists()


def test_a_stale_lock_is_taken_over(tmp_path) -> None:
    rd = RunDir(tmp_path / "run", experiment="e", profile="smoke")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    rd.lock_path.write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    _fake_run(rd)
    assert rd.is_complete() and not rd.lock_path.exists()


def test_an_error_keeps_the_partial_and_releases_the_lock(tmp_path) -> None:
    rd = RunDir(tmp_path / "run", experiment="e", profile="smoke")
    with pytest.raises(KeyError):
        with rd.open() as stage:
            (stage / "half.txt").write_text("x")
            raise KeyError("boom")
    assert not rd.path.exists() and (rd.partial / "half.txt").is_file() and not rd.lock_path.exists()
    with pytest.raises(RunExistsError, match="--resume"):
        _fake_run(rd)
    _fake_run(rd, resume=True)
    assert (rd.path / "half.txt").is_file() and rd.is_complete()


def test_cli_force_on_a_user_folder_is_one_line_and_exit_2(tmp_path) -> None:
    from typer.testing import CliRunner

    from nnboundary.cli import app

    victim = tmp_path / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "precious.txt").write_text("mine")
    result = CliRunner().invoke(app, ["reproduce", "blobs", "--profile", "smoke", "--out", str(victim), "--force",
                                      "--no-progress"])
    assert result.exit_code == 2 and "not an nnboundary run directory" in result.output
    assert "Traceback" not in result.output
    assert (victim / "precious.txt").read_text() == "mine" and (victim / "sub").is_dir()
