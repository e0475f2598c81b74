"""Checkpoints hold tensors and JSON only: a tampered file is rejected and runs nothing."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch import nn

from nnboundary.train import CheckpointError, fit, list_checkpoints, load_checkpoint, save_checkpoint


def _data():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(40, 2, generator=g)
    return X, (X[:, 0] > 0).long()


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2))


class _RunsCode:
    """Unpickling this calls ``open(path, "w")``: what a malicious checkpoint would do."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_round_trip_keeps_types_and_values(tmp_path) -> None:
    payload = {"step": 3, "state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.ones(2)}},
               "betas": (0.9, 0.999), "arr": np.arange(4.0), "nan": float("nan"), "none": None,
               "nested": [{"a": (1, 2)}], "__odd": 1}
    path = save_checkpoint(tmp_path / "step_0000000003.pt", payload)
    back = load_checkpoint(path)
    assert list(back["state"]) == [0] and torch.equal(back["state"][0]["exp_avg"], torch.ones(2))
    assert back["betas"] == (0.9, 0.999) and back["nested"] == [{"a": (1, 2)}] and back["__odd"] == 1
    assert isinstance(back["arr"], np.ndarray) and np.array_equal(back["arr"], np.arange(4.0))
    assert np.isnan(back["nan"]) and back["none"] is None


def test_objects_that_need_pickle_are_refused_at_save_time(tmp_path) -> None:
    with pytest.raises(TypeError, match="no pickle"):
        save_checkpoint(tmp_path / "step_0000000001.pt", {"fn": lambda: None})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_tampered_checkpoint_is_rejected_without_running_code(tmp_path) -> None:
    X, y = _data()
    ckpt = tmp_path / "ckpt"
    fit(_model(), X, y, lr=0.1, steps=6, checkpoint_dir=ckpt, checkpoint_schedule=3, progress=False)
    path = list_checkpoints(ckpt)[-1][1]
    witness = tmp_path / "pwned.txt"
    torch.save({"format": 2, "meta": "{}", "tensors": {}, "evil": _RunsCode(str(witness))}, path)
    with pytest.raises(CheckpointError, match="Nothing in it was run"):
        fit(_model(), X, y, lr=0.1, steps=9, checkpoint_dir=ckpt, checkpoint_schedule=3, resume=True,
            progress=False)
    assert not witness.exists()

    with open(path, "wb") as fh:                      # a plain pickle, not even a torch file
        pickle.dump(_RunsCode(str(witness)), fh)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert not witness.exists()


def test_a_checkpoint_with_missing_parts_gets_a_clear_error(tmp_path) -> None:
    X, y = _data()
    ckpt = tmp_path / "ckpt"
    fit(_model(), X, y, lr=0.1, steps=6, checkpoint_dir=ckpt, checkpoint_schedule=3, progress=False)
    path = list_checkpoints(ckpt)[-1][1]
    payload = load_checkpoint(path)
    del payload["settings"]
    save_checkpoint(path, payload)
    with pytest.raises(CheckpointError, match="settings"):
        fit(_model(), X, y, lr=0.1, steps=9, checkpoint_dir=ckpt, checkpoint_schedule=3, resume=True,
            progress=False)
    torch.save({"format": 2, "meta": '{"model": {"__tensor__": "t9"}}', "tensors": {}}, path)
    with pytest.raises(CheckpointError, match="t9"):
        load_checkpoint(path)
    torch.save({"format": 1, "step": 3}, path)
    with pytest.raises(CheckpointError, match="format 2"):
        load_checkpoint(path)
