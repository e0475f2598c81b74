"""Tests of nnboundary.features: head discovery, hooks, streaming extraction, describe."""

import tracemalloc

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nnboundary.features import (
    HeadNotFoundError,
    capture_head_input,
    describe,
    extract_features,
    head_params,
    head_predict,
    split_classifier,
)

torch.set_num_threads(1)
threadpool_limits(1)  # tiny BLAS problems: extra threads only contend on a shared CPU


class Nested(nn.Module):
    """Head two levels down: classifier.fc; registered before the body on purpose."""

    def __init__(self, d_in=4, d=3, K=3):
        super().__init__()
        self.classifier = nn.Sequential()
        self.classifier.add_module("fc", nn.Linear(d, K))
        self.body = nn.Sequential(nn.Linear(d_in, 8), nn.Tanh(), nn.Linear(8, d), nn.ReLU())

    def forward(self, x):
        return self.classifier.fc(self.body(x))


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 5)
        self.head_a = nn.Linear(5, 3)
        self.head_b = nn.Linear(5, 3)
        self.act = nn.ReLU()

    def forward(self, x):
        h = self.act(self.body(x))
        return (self.head_a(h) + self.head_b(h)) / 2


def _mlp(d_in=4, d=3, K=2):
    return nn.Sequential(nn.Linear(d_in, 6), nn.ReLU(), nn.Linear(6, d), nn.Tanh(), nn.Linear(d, K))


# ----------------------------------------------------------------------------- discovery


def test_sequential_head_is_last_linear_even_with_equal_widths():
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))  # hidden and head both 2 -> 2
    split = split_classifier(model)
    assert split.head_name == "2" and split.head is model[2]
    assert (split.n_features, split.n_outputs, split.n_classes) == (2, 2, 2)


def test_nested_head_found_with_n_classes_and_by_extraction():
    model = Nested(d=2)
    split = split_classifier(model, n_classes=3)
    assert split.head_name == "classifier.fc"
    ext = extract_features(model, torch.randn(10, 4))
    assert ext.head_name == "classifier.fc" and ext.features.shape == (10, 2)


def test_structurally_ambiguous_head_is_resolved_by_the_forward_pass():
    model = Nested(d=3)  # body.2 is Linear(8 -> 3) too, and the last leaf is a ReLU
    with pytest.raises(HeadNotFoundError, match=r"Ambiguous.*classifier.fc.*body.2"):
        split_classifier(model, n_classes=3)
    ext = extract_features(model, torch.randn(10, 4))
    assert ext.head_name == "classifier.fc" and ext.features.shape == (10, 3)


def test_last_layer_not_linear_is_a_clear_error():
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3), nn.Softmax(dim=1))
    with pytest.raises(HeadNotFoundError, match=r"'3' \(Softmax\).*not nn.Linear"):
        split_classifier(model)
    with pytest.raises(HeadNotFoundError, match=r"No nn.Linear's output is the model's output.*'3' \(Softmax\)"):
        extract_features(model, torch.randn(6, 4))
    with pytest.raises(HeadNotFoundError, match="Softmax"):
        describe(model)


def test_two_candidate_heads_error_lists_both_and_named_head_works():
    model = TwoHeads()
    with pytest.raises(HeadNotFoundError, match=r"mean of two heads.*head_a.*head_b"):
        extract_features(model, torch.randn(5, 4))
    with pytest.raises(HeadNotFoundError, match="head_a"):
        split_classifier(model, n_classes=3)
    split = split_classifier(model, head="head_b")
    assert split.head is model.head_b
    assert split_classifier(model, head=model.head_a).head_name == "head_a"


def test_bad_head_names():
    model = _mlp()
    with pytest.raises(HeadNotFoundError, match=r"no submodule 'fc'.*4 \(Linear 3->2\)"):
        split_classifier(model, head="fc")
    with pytest.raises(TypeError, match="Tanh, not nn.Linear"):
        split_classifier(model, head="3")
    with pytest.raises(HeadNotFoundError, match="not part of the model"):
        split_classifier(model, head=nn.Linear(3, 2))
    with pytest.raises(HeadNotFoundError, match="has no nn.Linear"):
        split_classifier(nn.Sequential(nn.ReLU()))
    with pytest.raises(HeadNotFoundError, match="out_features=7"):
        split_classifier(model, n_classes=7)


def test_trailing_dropout_and_identity_are_ignored():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2), nn.Dropout(0.5), nn.Identity())
    assert split_classifier(model).head_name == "2"


# ----------------------------------------------------------------------------- hooks


def test_capture_removes_hooks_even_on_error():
    model = _mlp()
    head = model[4]
    with pytest.raises(RuntimeError, match="boom"):
        with capture_head_input(head, outputs=True) as cap:
            model(torch.randn(3, 4))
            raise RuntimeError("boom")
    assert len(cap.inputs) == 1 and cap.inputs[0].shape == (3, 3) and cap.outputs[0].shape == (3, 2)
    assert not head._forward_pre_hooks and not head._forward_hooks


def test_feature_map_returns_head_input_with_grad():
    model = _mlp()
    x = torch.randn(5, 4)
    h = split_classifier(model).feature_map(x)
    torch.testing.assert_close(h, model[:4](x))
    assert h.requires_grad


# ----------------------------------------------------------------------------- extraction


def test_extract_matches_manual_computation_for_all_input_forms():
    torch.manual_seed(0)
    model = _mlp().double()
    X, y = torch.randn(37, 4, dtype=torch.float64), torch.randint(0, 2, (37,))
    H_ref, Z_ref = model[:4](X).detach().numpy(), model(X).detach().numpy()
    forms = [
        dict(data=X, y=y), dict(data=(X, y)), dict(data=X.numpy(), y=y.numpy()),
        dict(data=TensorDataset(X, y)),
        dict(data=DataLoader(TensorDataset(X, y), batch_size=5, shuffle=False)),
    ]
    for f in forms:
        ext = extract_features(model, f["data"], y=f.get("y"), batch_size=8)
        assert ext.features.dtype == np.float64 and ext.features.shape == (37, 3)
        np.testing.assert_allclose(ext.features, H_ref, rtol=1e-12)
        np.testing.assert_allclose(ext.logits, Z_ref, rtol=1e-12)
        np.testing.assert_array_equal(ext.labels, y.numpy())
    H, labels, Z = extract_features(model, X)  # unpacking, no labels
    assert labels is None and H.shape == (37, 3)


def test_extract_with_drop_last_loader_trims_to_what_was_seen():
    model = _mlp()
    loader = DataLoader(TensorDataset(torch.randn(23, 4), torch.zeros(23, dtype=torch.long)),
                        batch_size=5, drop_last=True)
    ext = extract_features(model, loader)
    assert ext.features.shape == (20, 3) and ext.labels.shape == (20,)


def test_extract_restores_each_module_mode_and_uses_no_grad():
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Dropout(0.5), nn.ReLU(), nn.Linear(6, 2))
    model.train()
    model[1].eval()  # a frozen BatchNorm must stay frozen
    X = torch.randn(16, 4)
    mean_before = model[1].running_mean.clone()
    a = extract_features(model, X).features
    b = extract_features(model, X).features
    np.testing.assert_array_equal(a, b)  # eval mode: dropout off, deterministic
    assert model.training and model[0].training and model[2].training and not model[1].training
    torch.testing.assert_close(model[1].running_mean, mean_before)
    assert all(p.grad is None for p in model.parameters())


def test_extract_does_not_double_memory():
    model = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 2))
    X = torch.randn(20000, 8)
    tracemalloc.start()
    ext = extract_features(model, X, batch_size=2048)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1.5 * ext.features.nbytes + ext.logits.nbytes + (1 << 20)


def test_extract_progress_bar_and_float32_cast():
    model = _mlp()  # float32 model, float64 numpy input is cast
    ext = extract_features(model, np.random.default_rng(0).normal(size=(9, 4)), progress=True, batch_size=4)
    assert ext.features.shape == (9, 3)


def test_extract_bad_inputs():
    model = _mlp()
    with pytest.raises(ValueError, match="empty"):
        extract_features(model, torch.empty(0, 4))
    X = torch.randn(6, 4)
    X[2, 0] = float("nan")
    with pytest.raises(ValueError, match=r"NaN/inf in 1 of 6 rows \(first: \[2\]\)"):
        extract_features(model, X)
    with pytest.raises(ValueError, match=r"y must have shape \(6,\)"):
        extract_features(model, torch.randn(6, 4), y=torch.zeros(5))
    with pytest.raises(ValueError, match="not one-hot"):
        extract_features(model, DataLoader(TensorDataset(torch.randn(6, 4), torch.zeros(6, 2)), batch_size=3))
    with pytest.raises(ValueError, match="batch_size"):
        extract_features(model, X, batch_size=0)


def test_head_applied_per_token_is_rejected():
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    with pytest.raises(ValueError, match="one feature vector per sample"):
        extract_features(model, torch.randn(5, 7, 4))


# ----------------------------------------------------------------------------- head evaluation, describe


def test_head_predict_and_params():
    head = nn.Linear(3, 4)
    H = np.random.default_rng(1).normal(size=(10, 3))
    ref = head(torch.tensor(H, dtype=torch.float32)).detach().numpy()
    np.testing.assert_allclose(head_predict(head, H), ref, rtol=1e-5, atol=1e-6)
    W, b = head_params(nn.Linear(3, 2, bias=False))
    assert W.shape == (2, 3) and np.all(b == 0)
    with pytest.raises(ValueError, match=r"expects \(M, 3\)"):
        head_predict(head, np.zeros((2, 5)))


def test_describe_prints_head_shape_and_classes():
    info = describe(Nested(d=2), n_classes=3)
    assert (info.head_name, info.n_features, info.n_classes, info.has_bias) == ("classifier.fc", 2, 3, True)
    text = str(info)
    assert "classifier.fc" in text and "D = 2" in text and "K = 3" in text
    assert describe(Nested(d=3), example=torch.randn(2, 4)).head_name == "classifier.fc"
    single = describe(nn.Sequential(nn.Linear(4, 2), nn.ReLU(), nn.Linear(2, 1)), example=torch.randn(2, 4))
    assert single.n_outputs == 1 and single.n_classes == 2 and "single logit" in str(single)


# ----------------------------------------------------------------------------- features larger than memory


def _deep(d_in=6, D=5, K=3):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(d_in, 16), nn.Tanh(), nn.Linear(16, D), nn.ReLU(), nn.Linear(D, K))


def test_features_streamed_to_a_file_equal_the_in_memory_ones(tmp_path):
    from nnboundary.features import logits_path

    model, X = _deep(), torch.randn(203, 6)
    y = torch.arange(203) % 3
    ref = extract_features(model, X, y=y, batch_size=50)
    got = extract_features(model, X, y=y, batch_size=50, out=tmp_path / "f" / "H.npy")
    assert isinstance(got.features, np.memmap) and not got.features.flags.writeable
    assert np.array_equal(got.features, ref.features) and np.array_equal(got.logits, ref.logits)
    assert np.array_equal(got.labels, ref.labels)
    assert np.array_equal(np.load(logits_path(tmp_path / "f" / "H.npy")), ref.logits)
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == ["H.logits.npy", "H.npy"]  # no temporary left


def test_a_features_file_is_not_overwritten_unless_asked(tmp_path):
    model, X = _deep(), torch.randn(20, 6)
    mine = tmp_path / "H.npy"
    mine.write_bytes(b"someone else's file")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        extract_features(model, X, out=mine)
    assert mine.read_bytes() == b"someone else's file"
    got = extract_features(model, X, out=mine, overwrite=True)
    assert got.features.shape == (20, 5)


def test_a_failed_streamed_extraction_leaves_no_file(tmp_path):
    model = _deep()
    X = torch.randn(30, 6)
    X[25] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        extract_features(model, X, batch_size=10, out=tmp_path / "H.npy")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="known length"):
        extract_features(model, ((x,) for x in X.split(10)), out=tmp_path / "H.npy")
    assert list(tmp_path.iterdir()) == []


def test_streamed_extraction_holds_one_batch_not_the_features(tmp_path):
    model = _deep(d_in=6, D=400, K=3)
    X = torch.randn(3000, 6)
    tracemalloc.start()
    try:
        extract_features(model, X, batch_size=100, out=tmp_path / "H.npy")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 0.25 * 3000 * 400 * 8  # the in-memory path allocates all N·D·8 bytes


def test_select_rows_shards_every_data_form_in_order():
    from torch.utils.data import Subset

    from nnboundary.features import n_rows, select_rows

    X, y = torch.randn(10, 3), torch.arange(10)
    ds = TensorDataset(X, y)
    assert n_rows(X) == n_rows((X, y)) == n_rows(ds) == n_rows(DataLoader(ds, batch_size=3)) == 10
    assert n_rows({"a": X, "b": y}) == 10
    xs, ys = select_rows(X, y, 3, 7)
    assert torch.equal(xs, X[3:7]) and torch.equal(ys, y[3:7])
    (_, yt), none = select_rows((X, y), None, 5, 10)
    assert torch.equal(yt, y[5:]) and none is None
    sub, _ = select_rows(ds, None, 2, 4)
    assert isinstance(sub, Subset) and list(sub.indices) == [2, 3]
    loader, _ = select_rows(DataLoader(ds, batch_size=3), None, 4, 10)
    assert torch.equal(torch.cat([b[1] for b in loader]), y[4:])
    with pytest.raises(TypeError, match="shuffle=False"):
        select_rows(DataLoader(ds, shuffle=True), None, 0, 5)
