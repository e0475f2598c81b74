"""Class-incremental protocol, exemplar choices and the forgetting run (tiny digits configs, CPU)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch

from nnboundary.experiments import get_experiment, list_experiments
from nnboundary.experiments.rundir import RunExistsError
from nnboundary.applications._common import Arrays, build_network
from nnboundary.applications.forgetting import (
    MEMORY_STRATEGIES,
    STRATEGIES,
    IncrementalSettings,
    SeenClassCrossEntropy,
    TaskSplit,
    _Anchored,
    _ConsolidatedLoss,
    _forgetting,
    check_tasks,
    herding_selection,
    load_task_split,
    make_task_split,
    random_selection,
    run_forgetting,
    run_strategy,
    svm_selection,
)
from nnboundary.svm import MaxMarginClassifier


TASKS = [[3, 7], [0, 1], [5]]                   # deliberately not sorted: labels follow the task order
DATA = {"source": "real", "name": "digits", "normalize": "unit", "seed": 0, "train_per_class": 15,
        "test_per_class": 6}
MODEL = {"name": "mlp", "kwargs": {"hidden": [16, 4], "activations": "tanh", "init": "torch"}}
SETTINGS = IncrementalSettings(epochs=2, batch_size=16, lr=1e-2, memory_per_class=4, analysis_per_class=0)


@pytest.fixture(scope="module")
def split() -> TaskSplit:
    return load_task_split(DATA, TASKS)


def _model(split: TaskSplit, seed: int = 0):
    return build_network(MODEL, split.x_train.shape[1:], split.n_classes, seed)


# ------------------------------------------------------------------------------------------ protocol
def test_check_tasks_rejects_bad_task_lists():
    assert check_tasks([[0, 1], [2]]) == ((0, 1), (2,))
    with pytest.raises(ValueError, match="more than one task"):
        check_tasks([[0, 1], [1, 2]])
    with pytest.raises(ValueError, match="at least 2"):
        check_tasks([[0], [1, 2]])
    with pytest.raises(ValueError, match="empty"):
        check_tasks([])
    with pytest.raises(ValueError, match="non-empty"):
        check_tasks([[0, 1], []])


def test_split_relabels_in_task_order_and_keeps_classes_apart(split):
    assert split.class_ids == (3, 7, 0, 1, 5)
    assert split.tasks == ((0, 1), (2, 3), (4,))
    assert [split.n_seen(t) for t in range(3)] == [2, 4, 5]
    from nnboundary.data import load_real

    raw = load_real("digits", classes=[3, 7, 0, 1, 5], normalize="unit", subsample=75, test_subsample=30, seed=0)
    np.testing.assert_array_equal(split.x_train, raw.x_train)          # label k is original class class_ids[k]
    for t in range(3):
        assert set(split.y_train[split.task_indices(t)]) == set(split.tasks[t])
        assert set(split.y_train[split.seen_indices(t)]) == set(range(split.n_seen(t)))
    assert np.bincount(split.y_train).tolist() == [15] * 5


def test_make_task_split_checks_class_order():
    rng = np.random.default_rng(0)
    x = rng.random((12, 3)).astype(np.float32)
    y = np.repeat(np.arange(3), 4)
    arrays = Arrays(x, y, x, y, (0, 1, 2), {}, None)
    with pytest.raises(ValueError, match="task order"):
        make_task_split(arrays, [[1, 0], [2]])
    with pytest.raises(ValueError, match="no sample"):
        make_task_split(Arrays(x[:8], y[:8], x, y, (0, 1, 2), {}, None), [[0, 1], [2]])


def test_seen_class_loss_ignores_unseen_logits():
    logits = torch.randn(6, 5, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    SeenClassCrossEntropy(3)(logits, y).backward()
    assert torch.all(logits.grad[:, 3:] == 0)
    assert torch.any(logits.grad[:, :3] != 0)


def test_consolidation_loss_adds_feature_drift_and_trains_only_the_new_model(split):
    model, _ = _model(split)
    old = copy.deepcopy(model).requires_grad_(False)
    net = _Anchored(model, old)
    idx = split.task_indices(0)[:8]
    x = torch.as_tensor(split.x_train[idx].reshape(8, -1))
    y = torch.as_tensor(split.y_train[idx])
    loss = _ConsolidatedLoss(2, split.n_classes, weight=3.0)
    out = net(x)
    assert out.shape == (8, split.n_classes + 2 * model.head.in_features)
    torch.testing.assert_close(loss(out, y), SeenClassCrossEntropy(2)(model(x), y))   # no drift yet
    with torch.no_grad():
        model.body[0].weight.add_(0.5)
    out = net(x)
    h, h_old = model.features(x), old.features(x)
    expected = SeenClassCrossEntropy(2)(model(x), y) + 3.0 * (h - h_old).double().pow(2).mean()
    torch.testing.assert_close(loss(out, y), expected)
    loss(out, y).backward()
    assert all(p.grad is None for p in old.parameters())
    assert model.body[0].weight.grad is not None


def test_forgetting_is_drop_from_best_earlier_accuracy():
    history = [np.array([0.9, 0.8]), np.array([0.5, 0.9, 1.0, 1.0]), np.array([0.7, 0.4, 0.6, 1.0, 0.5])]
    assert np.isnan(_forgetting(history, 0, 0))
    assert _forgetting(history, 1, 2) == pytest.approx(((0.9 - 0.5) + (0.8 - 0.9)) / 2)
    assert _forgetting(history, 2, 4) == pytest.approx(((0.9 - 0.7) + (0.9 - 0.4) + (1.0 - 0.6) + 0.0) / 4)


# ------------------------------------------------------------------------------------ exemplar choice
def test_random_selection_is_distinct_and_seeded():
    a = random_selection(50, 10, np.random.default_rng(1))
    b = random_selection(50, 10, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    assert len(set(a.tolist())) == 10 and a.min() >= 0 and a.max() < 50
    assert len(random_selection(3, 10, np.random.default_rng(0))) == 3


def test_herding_first_pick_is_closest_to_mean_and_picks_are_distinct():
    rng = np.random.default_rng(0)
    H = rng.normal(size=(40, 5)) + 3.0
    order = herding_selection(H, 12)
    assert len(order) == 12 and len(set(order.tolist())) == 12
    Fn = H / np.linalg.norm(H, axis=1, keepdims=True)
    assert order[0] == np.argmin(np.linalg.norm(Fn - Fn.mean(0), axis=1))
    assert sorted(herding_selection(H, 100).tolist()) == list(range(40))
    # the herded mean approximates the class mean better than a typical random subset of the same size
    err = np.linalg.norm(Fn[order].mean(0) - Fn.mean(0))
    rand = [np.linalg.norm(Fn[rng.choice(40, 12, replace=False)].mean(0) - Fn.mean(0)) for _ in range(50)]
    assert err < np.median(rand)


def test_svm_selection_keeps_support_vectors_first():
    rng = np.random.default_rng(0)
    H = np.vstack([rng.normal([0, 0], 0.5, (30, 2)), rng.normal([4, 0], 0.5, (30, 2)),
                   rng.normal([2, 4], 0.5, (30, 2))])
    y = np.repeat([0, 1, 2], 30)
    chosen, info = svm_selection(H, y, classes=[1, 2], m=6)
    support = MaxMarginClassifier().fit(H, y).support_
    assert info["separable"] is True
    for c in (1, 2):
        sel = chosen[c]
        assert len(sel) == 6 and np.all(y[sel] == c) and len(set(sel.tolist())) == 6
        sv_c = np.intersect1d(support, np.flatnonzero(y == c))
        assert len(sv_c) <= 6
        assert set(sv_c.tolist()) <= set(sel.tolist())                    # every support vector is kept
        assert set(sel[:len(sv_c)].tolist()) == set(sv_c.tolist())        # and ranked first
        assert info["n_support_chosen"][c] == len(sv_c)
    assert 0 not in chosen


def test_svm_selection_falls_back_to_soft_margin():
    rng = np.random.default_rng(1)
    H = rng.normal(size=(60, 2))
    y = (rng.random(60) < 0.5).astype(int)                                 # labels independent of H
    chosen, info = svm_selection(H, y, classes=[0, 1], m=5, soft_C=1.0)
    assert info["separable"] is False
    assert all(len(v) == 5 and np.all(y[v] == c) for c, v in chosen.items())


def test_svm_selection_survives_degenerate_features():
    y = np.repeat([0, 1], 10)
    chosen, info = svm_selection(np.zeros((20, 3)), y, classes=[0, 1], m=4)   # a dead feature layer
    assert info.get("degenerate") is True
    assert all(len(v) == 4 and np.all(y[v] == c) for c, v in chosen.items())


# ---------------------------------------------------------------------------------- strategies run
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_strategy_respects_protocol_and_budget(split, strategy):
    model, flatten = _model(split)
    records = run_strategy(split, strategy, model, SETTINGS, seed=0, flatten=flatten)
    assert [r.task for r in records] == [0, 1, 2]
    m = SETTINGS.memory_per_class
    prev_memory: dict[int, np.ndarray] = {}
    for r in records:
        y_used = split.y_train[r.train_indices]
        assert r.train_indices.max() < len(split.y_train)                  # indices into the training set only
        assert set(y_used) <= set(range(r.n_seen))
        assert r.class_accuracy.shape == (r.n_seen,)
        assert np.all((r.class_accuracy >= 0) & (r.class_accuracy <= 1))
        new_idx = split.task_indices(r.task)
        if strategy == "joint":
            np.testing.assert_array_equal(np.sort(r.train_indices), split.seen_indices(r.task))
        elif strategy == "finetune":
            np.testing.assert_array_equal(np.sort(r.train_indices), new_idx)
            assert r.memory == {}
        else:
            expected = np.concatenate([new_idx, *prev_memory.values()]) if prev_memory else new_idx
            np.testing.assert_array_equal(np.sort(r.train_indices), np.sort(expected))
            old = np.setdiff1d(r.train_indices, new_idx)
            for c in range(r.n_seen - len(r.new_classes)):               # old classes: at most m points each
                assert np.sum(split.y_train[old] == c) <= m
        for c, idx in r.memory.items():
            assert len(idx) == min(m, np.sum(split.y_train == c)) and np.all(split.y_train[idx] == c)
        prev_memory = r.memory
    if strategy in MEMORY_STRATEGIES:
        assert sorted(records[-2].memory) == [0, 1, 2, 3]


def test_training_never_touches_test_data(split):
    """Same seed, different test sets: identical training sets, memories and weights."""
    noisy = TaskSplit(split.x_train, split.y_train, np.random.default_rng(5).random(split.x_test.shape,
                      dtype=np.float32), split.y_test, split.tasks, split.class_ids)
    outs = []
    for s in (split, noisy):
        model, flatten = _model(s, seed=3)
        recs = run_strategy(s, "svm", model, SETTINGS, seed=3, flatten=flatten)
        outs.append((recs, [p.detach().clone() for p in model.parameters()]))
    (ra, pa), (rb, pb) = outs
    for a, b in zip(ra, rb):
        np.testing.assert_array_equal(a.train_indices, b.train_indices)
        assert a.memory.keys() == b.memory.keys()
        for c in a.memory:
            np.testing.assert_array_equal(a.memory[c], b.memory[c])
    assert all(torch.equal(x, y) for x, y in zip(pa, pb))


# ---------------------------------------------------------------------------------------- full run
def _tiny_config() -> dict:
    cfg = get_experiment("forgetting-digits", "smoke").settings
    cfg.update(data=dict(DATA), tasks=TASKS, model=copy.deepcopy(MODEL), memory_per_class=4, seeds=[0, 1],
               strategies=["finetune", "random", "svm", "svm_fc", "joint"],
               train={"optimizer": "adam", "lr": 1e-2, "epochs": 2, "batch_size": 16}, analysis={"per_class": 5})
    return cfg


def test_run_forgetting_writes_tables_and_is_deterministic(tmp_path, capsys):
    cfg = _tiny_config()
    a = run_forgetting(cfg, tmp_path / "run")
    for name in ("config.json", "per_task.csv", "per_class.csv", "summary.csv", "summary.json", "report.md", "metrics.jsonl", "figures/forgetting.png"):
        assert (tmp_path / "run" / name).stat().st_size > 0
    pt = pd.read_csv(tmp_path / "run" / "per_task.csv")
    assert len(pt) == 2 * 5 * 3
    assert pt["strategy"].unique().tolist() == cfg["strategies"]
    # task 0 is shared by every strategy of a seed
    first = pt[pt["task"] == 0].groupby("seed")["avg_acc"].nunique()
    assert (first == 1).all()
    assert pt.loc[pt["task"] == 1, "angle_old_before"].notna().all()
    final = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert final["paired"]["svm-random"]["n"] == 2 and "svm_fc-svm" in final["paired"]
    assert set(final["strategies"]) == set(cfg["strategies"])

    capsys.readouterr()
    b = run_forgetting(cfg, None, seeds=[1], progress=True)        # seed 1 alone gives the same numbers
    bar = capsys.readouterr().err                                   # and a bar that names the run in progress
    assert "5/5" in bar and "seed 1: joint" in bar
    cols = [c for c in a.per_task.columns if c != "seconds"]
    pd.testing.assert_frame_equal(a.per_task.loc[a.per_task["seed"] == 1, cols].reset_index(drop=True),
                                  b.per_task[cols])

    with pytest.raises(RunExistsError, match="force"):
        run_forgetting(cfg, tmp_path / "run")


def test_configs_resolve_and_bad_names_are_explained():
    for name in list_experiments(kind="forgetting"):
        for profile in ("smoke", "quick", "paper"):
            cfg = get_experiment(name, profile).settings
            check_tasks(cfg["tasks"])
            assert cfg["name"] == name and cfg["profile"] == profile
            shape = (2,) if cfg["data"]["source"] == "simulated" else (1, 8, 8) if "digits" in name else (1, 28, 28)
            n_classes = sum(len(g) for g in cfg["tasks"])
            model, _ = build_network(cfg["model"], shape, n_classes, seed=0)   # the model kwargs are valid
            assert model.head.out_features == n_classes
            json.dumps(cfg)                                                   # configs are plain data
    with pytest.raises(ValueError, match="forgetting-digits"):
        run_forgetting("forgeting-digits")
    with pytest.raises(ValueError, match="profile"):
        run_forgetting("forgetting-digits", profile="huge")
    with pytest.raises(ValueError, match="Unknown strategies"):
        run_forgetting({**_tiny_config(), "strategies": ["replay-all"]})
