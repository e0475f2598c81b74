"""Batches of every shape people have: tensors, (x, y), HF-style dicts, forward= callables, uint8 images, devices."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import nnboundary
from nnboundary.analysis import analyze_features
from nnboundary.device import DeviceUnavailableError
from nnboundary.features import extract_features, head_params

from tests.zoo import DictDataset, TinyHFClassifier, TinyTimmNet, hf_examples

torch.set_num_threads(1)

_KEYS = ("separable", "cosine", "angle_deg", "nn_margin", "svm_margin", "margin_ratio", "bias_offset", "agreement_train",
         "n_support", "loss", "accuracy", "nc1", "nc2_equinorm", "nc3_self_duality", "nc4_ncc_mismatch")


def _hand_hook(model, loader, *, drop=()):
    """The reference: a pre-hook on model.classifier, model(**inputs) on the true inputs, nothing else."""
    feats, labels, logits = [], [], []
    handle = model.classifier.register_forward_pre_hook(lambda m, a: feats.append(a[0].detach().double()))
    model.eval()
    try:
        with torch.no_grad():
            for batch in loader:
                inputs = {k: v for k, v in batch.items() if k != "labels" and k not in drop}
                logits.append(model(**inputs).logits.double())
                labels.append(batch["labels"])
    finally:
        handle.remove()
    return torch.cat(feats).numpy(), torch.cat(labels).numpy(), torch.cat(logits).numpy()


def test_acceptance_hf_model_with_dict_batches_matches_a_hand_written_hook():
    model = TinyHFClassifier()
    ids, mask, labels = hf_examples()
    loader = DataLoader(DictDataset(ids, mask, labels), batch_size=16)
    result = nnboundary.analyze(model, loader, head="classifier")
    assert model.training  # train/eval flags restored
    H, y, Z = _hand_hook(model, loader)
    W, b = head_params(model.classifier)
    ref = analyze_features(H, y, W, b, logits=Z, head_name="classifier")
    np.testing.assert_allclose(result.features, H, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(result.labels, y)
    for key in _KEYS:
        assert result.summary[key] == pytest.approx(ref.summary[key], rel=1e-9, abs=1e-12, nan_ok=True), key
    H_nomask, _, _ = _hand_hook(model, loader, drop=("attention_mask",))
    assert np.abs(H_nomask - H).max() > 1e-3  # the mask matters: dropping it would analyse another function


def test_hf_output_objects_and_tuples_are_checked_against_the_head():
    model = TinyHFClassifier()
    ids, mask, labels = hf_examples(n=20)
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    ext = extract_features(model, [batch])
    assert ext.head_name == "classifier" and ext.features.shape == (20, 8)
    tup = extract_features(model, [batch], forward=lambda m, b: m(b["input_ids"], b["attention_mask"],
                                                                  return_dict=False))
    np.testing.assert_allclose(tup.features, ext.features)
    with pytest.raises(nnboundary.features.HeadNotFoundError, match="'pooler'.*not the model's output"):
        extract_features(model, [batch], head="pooler")


def test_dict_of_arrays_and_custom_label_key():
    model = TinyHFClassifier()
    ids, mask, labels = hf_examples(n=20)
    a = extract_features(model, {"input_ids": ids, "attention_mask": mask}, y=labels, batch_size=6)
    b = extract_features(model, [{"input_ids": ids, "attention_mask": mask, "target": labels}], label_key="target")
    np.testing.assert_allclose(a.features, b.features, atol=1e-12)
    np.testing.assert_array_equal(a.labels, labels.numpy())
    c = extract_features(model, [({"input_ids": ids, "attention_mask": mask}, labels)])  # (inputs_dict, y)
    np.testing.assert_allclose(c.features, a.features, atol=1e-12)
    with pytest.raises(TypeError, match="'target'.*label_key="):  # the label key went to forward(): say so
        extract_features(model, [{"input_ids": ids, "attention_mask": mask, "target": labels}])


def test_extra_tuple_items_are_never_dropped_silently():
    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x, scale):
            return self.fc(x * scale)

    X, y, s = torch.randn(8, 3), torch.arange(8) % 2, torch.full((8, 1), 2.0)
    with pytest.raises(ValueError, match="3 items.*drop.*forward="):
        extract_features(TwoInputs(), DataLoader(TensorDataset(X, y, s), batch_size=4))
    ext = extract_features(TwoInputs(), DataLoader(TensorDataset(X, y, s), batch_size=4),
                           forward=lambda m, b: m(b[0], b[2]))
    np.testing.assert_allclose(ext.features, (X * 2).double().numpy(), rtol=1e-6)
    np.testing.assert_array_equal(ext.labels, y.numpy())


def test_uint8_images_get_one_clear_error():
    model = TinyTimmNet()
    x = torch.randint(0, 255, (4, 1, 6, 6), dtype=torch.uint8)
    with pytest.raises(TypeError, match=r"uint8.*x.float\(\) / 255"):
        extract_features(model, x)
    ext = extract_features(model, x.float() / 255)
    assert ext.features.shape == (4, 5)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_unavailable_device_is_one_clear_error():
    with pytest.raises(DeviceUnavailableError, match="CUDA is not available"):
        extract_features(nn.Linear(2, 2), torch.randn(3, 2), device="cuda")


def test_lightning_style_module_with_dict_batches_in_the_tracker(tmp_path):
    class LitClassifier(nn.Module):  # a LightningModule's shape: forward + training_step on dict batches
        def __init__(self):
            super().__init__()
            self.net = TinyHFClassifier(K=2)

        def forward(self, input_ids, attention_mask=None):
            return self.net(input_ids, attention_mask=attention_mask).logits

        def training_step(self, batch, batch_idx):
            return nn.functional.cross_entropy(self(batch["input_ids"], batch["attention_mask"]), batch["labels"])

    lit = LitClassifier()
    ids, mask, labels = hf_examples(n=30, K=2)
    loader = DataLoader(DictDataset(ids, mask, labels), batch_size=10)
    tracker = nnboundary.AlignmentTracker(loader, out=tmp_path, schedule=[1, 3])
    opt = torch.optim.SGD(lit.parameters(), lr=0.5)
    for step in range(1, 4):
        for i, batch in enumerate(loader):
            opt.zero_grad()
            lit.training_step(batch, i).backward()
            opt.step()
        tracker.step(step, lit)
    assert [r["step"] for r in tracker.records] == [1, 3]
    assert tracker.records[-1]["head"] == "net.classifier" and "nc1" in tracker.records[-1]


def test_real_lightning_trainer_with_dict_batches_when_installed(tmp_path):
    L = pytest.importorskip("lightning")
    from nnboundary.callbacks import AlignmentCallback

    class Lit(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = TinyHFClassifier(K=2)

        def forward(self, input_ids, attention_mask=None):
            return self.net(input_ids, attention_mask=attention_mask)

        def training_step(self, batch, batch_idx):
            out = self(batch["input_ids"], batch["attention_mask"])
            return nn.functional.cross_entropy(out.logits, batch["labels"])

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=0.05)

    ids, mask, labels = hf_examples(n=24, K=2)
    loader = DataLoader(DictDataset(ids, mask, labels), batch_size=12)
    tracker = nnboundary.AlignmentTracker(loader, out=tmp_path, schedule=[1, 4])
    L.Trainer(max_steps=4, callbacks=[AlignmentCallback(tracker)], logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False).fit(Lit(), loader)
    assert [r["step"] for r in tracker.records] == [0, 1, 4]  # on_train_start evaluates the initialisation
    assert tracker.records[-1]["head"] == "net.classifier"
