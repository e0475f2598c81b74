"""Saved models and data files: every common way of saving works or gets one line (exit code 2, no traceback)."""

from __future__ import annotations

import json
import os
import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from nnboundary.cli import app
from nnboundary.features import extract_features
from nnboundary.io import ModelLoadError, ScriptedClassifier, check_out_dir, load_model_file

torch.set_num_threads(1)
runner = CliRunner()

FACTORY_SRC = '''
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self, n_classes=2, width=4):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, width), nn.Tanh())
        self.classifier = nn.Linear(width, n_classes)

    def forward(self, x):
        return self.classifier(self.body(x))

def make(n_classes=2):
    torch.manual_seed(0)
    return Net(n_classes)
'''


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def one_line_error(result, *needles):
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    text = " ".join(result.output.split())
    for n in needles:
        assert n in text, (n, text)


@pytest.fixture()
def saved(tmp_path, monkeypatch):
    (tmp_path / "mynets.py").write_text(FACTORY_SRC)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("mynets", None)
    import mynets

    model = mynets.make()
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 20)
    X = (rng.normal(size=(40, 2)) * 0.3 + np.where(y[:, None] == 1, 2.0, -2.0)).astype(np.float32)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(100):
        opt.zero_grad()
        nn.functional.cross_entropy(model(torch.tensor(X)), torch.tensor(y)).backward()
        opt.step()
    torch.save(model.state_dict(), tmp_path / "model.pt")
    np.savez(tmp_path / "data.npz", X=X, y=y)
    return model, tmp_path


def test_state_dict_with_factory_is_the_recommended_path(saved):
    model, d = saved
    loaded = load_model_file(d / "model.pt", factory="mynets:make")
    x = torch.randn(5, 2)
    torch.testing.assert_close(loaded(x), model(x))
    by_file = load_model_file(d / "model.pt", factory=f"{d / 'mynets.py'}:Net")  # a class in a file works too
    torch.testing.assert_close(by_file(x), model(x))
    result = invoke("analyze", d / "model.pt", "--data", d / "data.npz", "--factory", "mynets:make",
                    "--out", d / "out")
    assert result.exit_code == 0, result.output
    assert "Verdict:" in result.output and "classifier" in result.output
    summary = json.loads((d / "out" / "summary.json").read_text())
    assert summary["status"] in ("separable", "not fitted", "not separable") and "nc1" in summary
    assert (d / "out" / "report.md").is_file() and (d / "out" / "figures" / "svm_nn_plane.png").is_file()


def test_lightning_checkpoint_and_prefixes(saved):
    model, d = saved
    ckpt = {"epoch": 3, "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}
    torch.save(ckpt, d / "last.ckpt")
    loaded = load_model_file(d / "last.ckpt", factory="mynets:make")
    x = torch.randn(3, 2)
    torch.testing.assert_close(loaded(x), model(x))


def test_factory_errors_are_one_line(saved):
    _, d = saved
    one_line_error(invoke("analyze", d / "model.pt", "--data", d / "data.npz"), "state_dict", "--factory")
    one_line_error(invoke("analyze", d / "model.pt", "--data", d / "data.npz", "--factory", "mynets:make",
                          "--factory-kwargs", '{"n_classes": 5}'), "shape mismatch", "classifier.weight")
    one_line_error(invoke("analyze", d / "model.pt", "--data", d / "data.npz", "--factory", "nopkg.nomod:f"),
                   "cannot import 'nopkg.nomod'")
    one_line_error(invoke("analyze", d / "model.pt", "--data", d / "data.npz", "--factory", "mynets"),
                   "pkg.module:fn")
    one_line_error(invoke("describe", d / "model.pt", "--factory", "mynets:make", "--factory-kwargs", "[1]"),
                   "JSON object")


class Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(3, 4)
        self.head = nn.Sequential(nn.Linear(4, 2))  # nested head: head.0

    def forward(self, x):
        return self.head(torch.relu(self.body(x)) * 2.0)


@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript_beyond_sequential(tmp_path, how):
    torch.manual_seed(0)
    model = Custom()
    x = torch.randn(6, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sm = torch.jit.script(model) if how == "script" else torch.jit.trace(model, x)
        torch.jit.save(sm, str(tmp_path / "m.pt"))
    loaded = load_model_file(tmp_path / "m.pt")
    assert isinstance(loaded, ScriptedClassifier)
    ext = extract_features(loaded, x)
    assert ext.head_name == "head.0"
    ref = (torch.relu(model.body(x)) * 2.0).detach().double().numpy()
    np.testing.assert_allclose(ext.features, ref, rtol=1e-6)
    np.testing.assert_allclose(ext.logits, model(x).detach().double().numpy(), rtol=1e-5)


def test_torchscript_without_a_reachable_head_says_what_to_do(tmp_path):
    model = nn.Sequential(nn.Linear(3, 2), nn.Softmax(dim=1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(model), str(tmp_path / "s.pt"))
    with pytest.raises(ModelLoadError, match="not the output of a linear layer.*state_dict"):
        load_model_file(tmp_path / "s.pt")


def test_pickled_module_needs_the_opt_in_and_prints_the_warning(saved, tmp_path):
    model, d = saved
    torch.save(model, d / "whole.pt")
    np.savez(d / "d3.npz", X=np.zeros((4, 2), np.float32), y=np.array([0, 1, 0, 1]))
    one_line_error(invoke("describe", d / "whole.pt"), "pickled", "--allow-pickle", "state_dict")
    ok = invoke("describe", d / "whole.pt", "--allow-pickle", "--data", d / "d3.npz")
    assert ok.exit_code == 0, ok.output
    assert "RUNS CODE" in ok.output and "classifier" in ok.output and "verified" in ok.output


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['NNB_MARKER']}",))


def test_a_code_payload_never_runs_without_the_opt_in(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("NNB_MARKER", str(marker))
    torch.save({"model": _Payload()}, tmp_path / "evil.pt")
    np.savez(tmp_path / "d.npz", X=np.zeros((2, 2)), y=np.array([0, 1]))
    for cmd in ("analyze", "describe"):
        args = [cmd, tmp_path / "evil.pt"] + (["--data", tmp_path / "d.npz"] if cmd == "analyze" else [])
        one_line_error(invoke(*args), "--allow-pickle")
    assert not marker.exists()


def test_class_from_the_training_script_is_one_line(tmp_path, monkeypatch):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            return self.fc(x)

    main = sys.modules["__main__"]
    Net.__module__, Net.__qualname__ = "__main__", "Net"
    monkeypatch.setattr(main, "Net", Net, raising=False)
    torch.save(Net(), tmp_path / "net.pt")
    monkeypatch.delattr(main, "Net")
    one_line_error(invoke("describe", tmp_path / "net.pt", "--allow-pickle"), "training script (__main__)",
                   "state_dict", "--factory")


def test_bad_files_are_one_line(saved, tmp_path):
    _, d = saved
    (tmp_path / "notes.txt").write_text("hello\n")
    blob = (d / "model.pt").read_bytes()
    (tmp_path / "half.pt").write_bytes(blob[: len(blob) // 2])
    npz = (d / "data.npz").read_bytes()
    (tmp_path / "half.npz").write_bytes(npz[: len(npz) // 2])
    np.savez(tmp_path / "u8.npz", X=np.full((4, 2), 7, np.uint8), y=np.array([0, 1, 0, 1]))
    data = ["--data", d / "data.npz", "--factory", "mynets:make"]
    one_line_error(invoke("analyze", tmp_path / "notes.txt", *data), "notes.txt")
    one_line_error(invoke("analyze", tmp_path / "half.pt", *data), "truncated")
    one_line_error(invoke("analyze", d / "model.pt", "--data", tmp_path / "half.npz", "--factory", "mynets:make"),
                   "truncated")
    one_line_error(invoke("analyze", d / "model.pt", "--data", tmp_path / "u8.npz", "--factory", "mynets:make"),
                   "uint8", "/ 255")
    one_line_error(invoke("analyze", tmp_path / "nope.pt", *data), "does not exist")


def test_out_is_checked_before_any_work(saved, tmp_path, monkeypatch):
    _, d = saved
    (tmp_path / "file").write_text("x")
    one_line_error(invoke("analyze", tmp_path / "nope.pt", "--data", d / "data.npz", "--out", tmp_path / "file" / "o"),
                   "is a file")
    out = tmp_path / "done"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    one_line_error(invoke("analyze", tmp_path / "nope.pt", "--data", d / "data.npz", "--out", out), "--force")
    assert (out / "summary.json").read_text() == "{}"  # nothing of the user's was touched


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only folders")
def test_read_only_out_is_one_line(saved, tmp_path):
    _, d = saved
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        one_line_error(invoke("analyze", d / "model.pt", "--data", d / "data.npz", "--factory", "mynets:make",
                              "--out", ro / "a"), "not writable")
    finally:
        ro.chmod(0o700)


def test_disk_full_while_saving_is_one_line(saved, monkeypatch):
    _, d = saved
    from nnboundary.analysis import Analysis

    def full(self, *a, **k):
        raise OSError(28, "No space left on device", str(d / "out2" / "features.npz"))

    monkeypatch.setattr(Analysis, "save", full)
    one_line_error(invoke("analyze", d / "model.pt", "--data", d / "data.npz", "--factory", "mynets:make",
                          "--out", d / "out2"), "No space left on device")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_cuda_without_gpu_is_one_line(saved):
    _, d = saved
    one_line_error(invoke("analyze", d / "model.pt", "--data", d / "data.npz", "--factory", "mynets:make",
                          "--device", "cuda"), "CUDA is not available")


def test_describe_prints_a_table_and_refuses_a_hidden_layer(saved):
    _, d = saved
    ok = invoke("describe", d / "model.pt", "--factory", "mynets:make", "--data", d / "data.npz")
    assert ok.exit_code == 0, ok.output
    assert "│" in ok.output and "K = 2" in ok.output and "D = 4" in ok.output
    one_line_error(invoke("describe", d / "model.pt", "--factory", "mynets:make", "--head", "body.0"),
                   "'body.0' has 8 outputs but the model produces 2")
    one_line_error(invoke("describe", d / "model.pt", "--factory", "mynets:make", "--head", "body.2",
                          "--data", d / "data.npz"), "not the model's output")


def test_check_out_dir_creates_nothing(tmp_path):
    target = tmp_path / "a" / "b"
    assert check_out_dir(target) == target and not (tmp_path / "a").exists()


def test_models_of_nnboundary_runs_load_without_pickle_or_factory(tmp_path):
    """A run directory's model.pt is a state_dict with model.json beside it (nnboundary's own registry only)."""
    from nnboundary.io import save_model
    from nnboundary.models import build_model

    kwargs = {"in_features": 2, "n_classes": 3, "hidden": [8, 4], "activations": "relu", "seed": 1}
    model = build_model("mlp", **kwargs)
    save_model(model, tmp_path / "model.pt", name="mlp", kwargs=kwargs)
    assert isinstance(torch.load(tmp_path / "model.pt", weights_only=True), dict)  # no pickled module
    loaded = load_model_file(tmp_path / "model.pt")
    x = torch.randn(5, 2)
    assert torch.equal(loaded(x), model.eval()(x))
    side = tmp_path / "model.json"
    side.write_text(side.read_text().replace("nnboundary.models:build_model", "os:system"))
    with pytest.raises(ModelLoadError, match="only .* are used without asking"):
        load_model_file(tmp_path / "model.pt")
