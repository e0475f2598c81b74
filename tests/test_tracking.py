"""Tests of nnboundary.tracking (AlignmentTracker) and nnboundary.callbacks (Lightning adapter)."""

import json
import sys
import types

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits
from torch import nn

from nnboundary.tracking import AlignmentTracker, fit_inverse_log, is_log_step

torch.set_num_threads(1)
threadpool_limits(1)  # tiny BLAS problems: extra threads only contend on a shared CPU


def _data(K, N=60, D=3, seed=0, gap=0.3):
    """N points in D dims labelled by the argmax of K random linear scores, with a gap: separable."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(4 * N, D))
    S = X @ rng.normal(size=(K, D)).T
    top = np.sort(S, axis=1)
    keep = (top[:, -1] - top[:, -2]) > gap
    return torch.tensor(X[keep][:N]), torch.tensor(S.argmax(1)[keep][:N])


def _train_gd(model, X, y, tracker, n_steps=2000, lr=1.0):
    """Full-batch gradient descent on the mean cross-entropy (logistic loss for one logit)."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for t in range(1, n_steps + 1):
        opt.zero_grad()
        z = model(X)
        if z.shape[1] == 1:
            loss = nn.functional.binary_cross_entropy_with_logits(z[:, 0], y.double())
        else:
            loss = nn.functional.cross_entropy(z, y)
        loss.backward()
        opt.step()
        tracker.step(t, model, train_loss=loss.detach())
    return tracker.history


# ----------------------------------------------------------------------------- Soudry et al. on real GD


@pytest.mark.parametrize("n_out", [1, 2])
def test_logistic_regression_gd_angle_to_hard_margin_svm_decreases(n_out):
    X, y = _data(K=2)
    model = nn.Linear(3, n_out, bias=False).double()  # homogeneous: Soudry et al.'s exact setting
    nn.init.zeros_(model.weight)
    h = _train_gd(model, X, y, AlignmentTracker(X, y))
    assert list(h["step"]) == [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000]
    assert h["svm_bias"].iloc[0] == "none" and h["separable"].all()
    angle, ratio = h["angle_deg"].to_numpy(), h["margin_ratio"].to_numpy()
    # Strictly decreasing over the log-spaced steps up to t = 1000. Near 0 the angle may bounce
    # (w(t) = ŵ log t + ρ(t): the residual ρ can swing through the SVM direction): with two
    # logits (twice the effective step on w₁ − w₀) it is 0.15° at t = 1000 and 0.22° at t = 2000.
    assert np.all(np.diff(angle[:10]) < 0), angle
    assert np.all(np.diff(ratio) > 0), ratio
    assert angle[-1] < 0.5 and angle[-1] < angle[3] / 10  # runs reach 0.16 / 0.22 deg (from 8.0 / 6.1 at t=10)
    assert ratio[-1] > 0.98  # reaches 0.990 / 0.999
    assert np.all(np.diff(h["loss"]) < 0) and np.all(np.diff(h["weight_norm"]) > 0)
    assert h["train_loss"].dtype == np.float64  # extra=tensor recorded as a float
    assert np.all(h["train_loss"] > h["loss"])  # loss before the step > loss after it (GD descends)


def test_multiclass_gd_approaches_crammer_singer_and_centring_makes_row_shift_invisible():
    X, y = _data(K=3)
    runs = []
    for shift in (0.0, 1.0):
        model = nn.Linear(3, 3, bias=False).double()
        with torch.no_grad():  # every row starts at the same vector: the centred head starts at 0
            model.weight.copy_(shift * torch.tensor([[2.0, -1.0, 0.5]]).expand(3, 3))
        runs.append(_train_gd(model, X, y, AlignmentTracker(X, y)))
    h0, h1 = runs
    angle = h0["angle_deg"].to_numpy()
    assert (h0["svm_multiclass"] == "crammer_singer").all() and (h0["n_classes"] == 3).all()
    assert np.all(np.diff(angle) < 0), angle
    assert angle[-1] < 4.0 and angle[-1] < angle[0] / 4  # this run: 16.4 deg -> 3.0 deg
    assert np.all(np.diff(h0["margin_ratio"]) > 0) and h0["margin_ratio"].iloc[-1] > 0.75  # reaches 0.79
    # GD keeps the row mean at its initial value, and the centred comparison ignores it
    np.testing.assert_allclose(h1["angle_deg"], h0["angle_deg"], atol=1e-6)
    np.testing.assert_allclose(h1["margin_ratio"], h0["margin_ratio"], rtol=1e-8)
    assert not np.allclose(h1["weight_norm"], h0["weight_norm"])  # the raw heads do differ


# ----------------------------------------------------------------------------- schedule


def test_log_schedule_and_other_schedules():
    assert [s for s in range(0, 1001) if is_log_step(s)] == [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
    X, y = _data(K=2, N=10)
    assert AlignmentTracker(X, y, schedule=3).is_scheduled(9) and not AlignmentTracker(X, y, schedule=3).is_scheduled(10)
    t = AlignmentTracker(X, y, schedule=[4, 7], every=100)
    assert [s for s in range(1, 301) if t.is_scheduled(s)] == [4, 7, 100, 200, 300]
    assert AlignmentTracker(X, y, schedule=lambda s: s == 42).is_scheduled(42)
    with pytest.raises(ValueError, match="Unknown schedule"):
        AlignmentTracker(X, y, schedule="linear")
    with pytest.raises(ValueError, match="every"):
        AlignmentTracker(X, y, every=0)


def test_step_skips_unscheduled_and_force_evaluates():
    X, y = _data(K=2, N=30)
    model = nn.Linear(3, 2).double()
    tr = AlignmentTracker(X, y, schedule=None)
    assert tr.step(5, model) is None and tr.records == []
    row = tr.step(5, model, force=True, lr=0.1)
    assert row["step"] == 5 and row["lr"] == 0.1 and "cosine_reg" in row
    assert tr.step(5, model, force=True) is None  # a step is recorded once


# ----------------------------------------------------------------------------- files and resume


def test_jsonl_written_per_eval_and_resume(tmp_path):
    X, y = _data(K=2, N=30)
    model = nn.Linear(3, 2).double()
    tr = AlignmentTracker(X, y, tmp_path / "run")
    for t in range(1, 13):
        tr.step(t, model)
    path = tmp_path / "run" / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]  # strict JSON: no NaN tokens
    assert [r["step"] for r in rows] == [1, 2, 5, 10]
    with pytest.raises(FileExistsError, match="resume=True"):
        AlignmentTracker(X, y, tmp_path / "run")
    tr2 = AlignmentTracker(X, y, path, resume=True)
    assert [r["step"] for r in tr2.records] == [1, 2, 5, 10]
    for t in range(5, 21):  # training resumed from an earlier checkpoint: 5 and 10 are not redone
        tr2.step(t, model)
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2, 5, 10, 20]
    fresh = AlignmentTracker(X, y, path, overwrite=True)
    assert fresh.records == [] and path.read_text() == ""


def test_resume_drops_truncated_last_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 1, "angle_deg": 3.0}\n{"step": 2, "ang')
    tr = AlignmentTracker(np.zeros((2, 2)), np.array([0, 1]), path, resume=True)
    assert tr.records == [{"step": 1, "angle_deg": 3.0}]
    assert path.read_text() == '{"step": 1, "angle_deg": 3.0}\n'
    path.write_text('{"step": 1\n{"step": 2}\n')
    with pytest.raises(ValueError, match="line 1"):
        AlignmentTracker(np.zeros((2, 2)), np.array([0, 1]), path, resume=True)


def test_state_dict_roundtrip_keeps_curves_and_warm_start():
    X, y = _data(K=2, N=30)
    model = nn.Linear(3, 2).double()
    tr = AlignmentTracker(X, y)
    tr.step(1, model)
    state = tr.state_dict()
    assert state["format"] == 1 and state["support"] and state["head"] == ""
    other = AlignmentTracker(X, y)
    other.load_state_dict(json.loads(json.dumps(state)))  # survives a JSON checkpoint
    assert other.history.equals(tr.history) and other.state_key == tr.state_key
    other.step(7, model, force=True)  # a forced evaluation
    assert list(other.history["step"]) == [1, 7]
    with pytest.raises(ValueError, match="format"):
        other.load_state_dict({"format": 99, "records": []})


def test_the_tracker_history_draws_with_plot(tmp_path):
    """The tracker only records; nnboundary.plot draws its history (one alignment figure in the package)."""
    from nnboundary.plot import plot_alignment_curves
    from nnboundary.plot.curves import alignment_figure

    X, y = _data(K=2, N=40)
    tr = AlignmentTracker(X, y)
    steps = [1, 2, 5, 10, 20, 50, 100, 200]
    records = [{"step": t, "angle_deg": 9 / np.log(t + 1), "margin_ratio": 1 - 1 / np.log(t + 1),
                "bias_offset": None if t == 1 else 0.5 / np.log(t)} for t in steps]  # None: a gap
    tr.load_state_dict({"format": 1, "records": records})
    plot_alignment_curves(tr.history, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    fig = alignment_figure(tr.history)
    assert fig.axes[-1].get_xscale() == "log"
    assert not hasattr(AlignmentTracker, "plot")


def test_fit_inverse_log_recovers_constant():
    t = np.array([1, 10, 100, 1000, 10000.0])
    assert fit_inverse_log(t, 3.0 / np.log(np.maximum(t, 2)), fraction=1.0)["c"] == pytest.approx(3.0)
    assert fit_inverse_log(t, 1 - 2.0 / np.log(np.maximum(t, 2)), target=1.0, fraction=1.0)["c"] == pytest.approx(-2.0)
    assert np.isnan(fit_inverse_log(np.array([1.0]), np.array([1.0]))["c"])


# ----------------------------------------------------------------------------- Lightning adapter


def test_callback_without_lightning_raises_helpful_import_error(monkeypatch):
    import nnboundary.callbacks as cb

    monkeypatch.setattr(cb, "_CACHE", {})
    for name in ("lightning", "lightning.pytorch", "pytorch_lightning"):
        monkeypatch.setitem(sys.modules, name, None)  # makes the import fail even if installed
    assert not cb.lightning_available()
    with pytest.raises(ImportError, match=r"nnboundary\[lightning\]"):
        cb.AlignmentCallback


def test_callback_adapter_with_stub_lightning(monkeypatch):
    import nnboundary.callbacks as cb

    class Callback:  # the minimal surface of lightning.pytorch.Callback
        pass

    pkg, sub = types.ModuleType("lightning"), types.ModuleType("lightning.pytorch")
    sub.Callback = Callback
    pkg.pytorch = sub
    monkeypatch.setitem(sys.modules, "lightning", pkg)
    monkeypatch.setitem(sys.modules, "lightning.pytorch", sub)
    monkeypatch.setattr(cb, "_CACHE", {})
    X, y = _data(K=2, N=30)
    model = nn.Linear(3, 2).double()
    logged = {}
    model.log_dict = logged.update
    callback = cb.AlignmentCallback(AlignmentTracker(X, y))
    assert isinstance(callback, Callback)
    trainer = types.SimpleNamespace(global_step=2, sanity_checking=True)
    callback.on_train_batch_end(trainer, model, None, None, 0)
    assert logged == {}  # sanity check skipped
    trainer.sanity_checking = False
    callback.on_train_batch_end(trainer, model, None, None, 0)
    assert "boundary/cosine" in logged and "boundary/separable" not in logged
    trainer.global_step = 3
    callback.on_train_batch_end(trainer, model, None, None, 0)  # not on the log schedule
    assert len(callback.state_dict()["records"]) == 1


# ----------------------------------------------------------------------------- movement between evaluations


def _rotation(theta):
    c, s = np.cos(theta), np.sin(theta)
    return torch.tensor([[c, -s], [s, c]], dtype=torch.float64)


def _rotating_model():
    """Features = R·x (a rotation, set by the test), then a linear head: the SVM of the features is rotated by R."""
    feat = nn.Linear(2, 2, bias=False).double()
    head = nn.Linear(2, 2).double()
    with torch.no_grad():
        feat.weight.copy_(torch.eye(2, dtype=torch.float64))
        head.weight.copy_(torch.tensor([[-1.0, -0.5], [1.0, 0.5]]))
        head.bias.zero_()
    return nn.Sequential(feat, head), feat


def test_unchanged_features_do_not_move_and_a_rotation_moves_by_its_angle():
    X, y = _data(K=2, N=40, D=2)
    model, feat = _rotating_model()
    tr = AlignmentTracker(X, y, schedule=None)
    first = tr.step(1, model, force=True)
    assert np.isnan(first["svm_step_angle_deg"]) and np.isnan(first["feature_change"])  # nothing to compare with
    same = tr.step(2, model, force=True)
    assert same["feature_change"] == 0.0
    assert same["svm_step_angle_deg"] == pytest.approx(0.0, abs=1e-5)
    theta = np.radians(17.0)
    with torch.no_grad():
        feat.weight.copy_(_rotation(theta))
    turned = tr.step(3, model, force=True)
    # a rotation maps the max-margin SVM onto the max-margin SVM of the rotated points
    assert turned["svm_step_angle_deg"] == pytest.approx(17.0, abs=1e-3)
    # ‖X(R − I)ᵀ‖_F = 2 sin(θ/2) ‖X‖_F for a 2-D rotation
    assert turned["feature_change"] == pytest.approx(2 * np.sin(theta / 2), rel=1e-9)
    back = tr.step(4, model, force=True)
    assert back["feature_change"] == 0.0 and back["svm_step_angle_deg"] == pytest.approx(0.0, abs=1e-5)


def test_movement_survives_a_json_state_round_trip():
    X, y = _data(K=3, N=45, D=2)
    model = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    tr = AlignmentTracker(X, y, schedule=None)
    tr.step(1, model, force=True)
    other = AlignmentTracker(X, y, schedule=None)
    other.load_state_dict(json.loads(json.dumps(tr.state_dict())))
    with torch.no_grad():
        model[0].weight.mul_(1.5)
    a, b = tr.step(2, model, force=True), other.step(2, model, force=True)
    assert a["feature_change"] > 0 and np.isfinite(a["svm_step_angle_deg"])
    assert (a["feature_change"], a["svm_step_angle_deg"]) == (b["feature_change"], b["svm_step_angle_deg"])


def test_resumed_training_gives_the_rows_of_an_uninterrupted_run(tmp_path):
    from nnboundary.train import fit

    X, y = _data(K=2, N=40)

    def model():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).double()

    def run(out, steps, resume=False):
        tr = AlignmentTracker(X, y, out, resume=resume)
        fit(model(), X, y, lr=0.5, steps=steps, dtype="float64", callbacks=[tr], checkpoint_dir=out / "ckpt",
            checkpoint_schedule=10, resume=resume, progress=False)
        return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]

    full = run(tmp_path / "full", 50)
    run(tmp_path / "cut", 10)  # interrupted after step 10 (its checkpoint holds the tracker's state)
    resumed = run(tmp_path / "cut", 50, resume=True)
    drop = lambda rows: [{k: v for k, v in r.items() if k != "eval_seconds"} for r in rows]  # noqa: E731
    assert [r["step"] for r in full] == [0, 1, 2, 5, 10, 20, 50]
    assert drop(resumed) == drop(full)
    assert full[0]["svm_step_angle_deg"] is None and full[-1]["feature_change"] > 0  # NaN is written as null

    # a run that stopped after its last checkpoint (step 10) but whose file already holds later rows: resumed, it
    # evaluates steps 20 and 50 again, and the file ends with each step once, as in the uninterrupted run
    run(tmp_path / "late", 10)
    (tmp_path / "late" / "metrics.jsonl").write_text((tmp_path / "full" / "metrics.jsonl").read_text())
    late = run(tmp_path / "late", 50, resume=True)
    assert [r["step"] for r in late] == [0, 1, 2, 5, 10, 20, 50] and drop(late) == drop(full)


def test_alignment_rates_fit_both_clocks_and_say_whether_they_hold():
    from nnboundary.tracking import alignment_rates

    t = np.array([0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000], dtype=float)
    loss = 1.0 / (t + 2.0)  # GD-like: L ~ 1/t
    rows = [{"step": int(s), "angle_deg": 40.0 / np.log(max(s, 2.0)), "loss": L, "separable": True}
            for s, L in zip(t, loss)]
    rows.append({"step": 20000, "angle_deg": 0.0, "loss": 1e-5, "separable": False})  # soft-margin: left out
    rates = alignment_rates(rows)
    assert rates["step"]["c"] == pytest.approx(40.0) and rates["step"]["holds"]
    assert rates["step"]["step_max"] == 10000 and rates["step"]["value"] == "angle_deg"
    assert rates["loss"]["clock"] == "loss" and rates["loss"]["r2"] > 0.99 and rates["loss"]["holds"]
    flat = alignment_rates([{**r, "angle_deg": 20.0} for r in rows])  # a plateau is no 1/log t
    assert not flat["step"]["holds"] and not flat["loss"]["holds"]
