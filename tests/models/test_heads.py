"""The one head discovery (nnboundary.models.heads): static find_head and the forward-pass probe."""

import pytest
import torch
from torch import nn

import nnboundary

from nnboundary.features import describe, extract_features
from nnboundary.models.heads import HeadNotFoundError, find_head, output_logits, probe_head

from tests.zoo import ModelOutput, TinyDistilledViT, TinyTimmNet, TinyViT

torch.set_num_threads(1)


def test_find_head_without_an_input_for_head_reinit():
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    head, name = find_head(model)
    assert head is model[2] and name == "2"
    head.reset_parameters()  # what training's "retrain the last layer" does with it
    assert find_head(model, "2") == (model[2], "2")
    assert find_head(model, model[2]) == (model[2], "2")


def test_static_discovery_drops_distillation_heads():
    model = TinyDistilledViT()
    head, name = find_head(model)
    assert name == "head" and head is model.head  # head_dist is registered last but must not win


def test_probe_refuses_the_mean_of_two_heads_and_says_why():
    model = TinyDistilledViT().eval()
    x = torch.randn(5, 4)
    with torch.no_grad(), pytest.raises(HeadNotFoundError, match="mean of two heads.*DeiT"):
        probe_head(model, lambda: model(x))
    with torch.no_grad(), pytest.raises(HeadNotFoundError, match="'head_dist'.*not the model's output"):
        probe_head(model, lambda: model(x), "head_dist")


def test_distilled_model_is_analysed_through_a_forward_callable():
    model = TinyDistilledViT()
    X, y = torch.randn(12, 4), torch.arange(12) % 3
    ext = extract_features(model, (X, y), forward=lambda m, batch: m.head(m.forward_features(batch[0])[:, 0]))
    assert ext.head_name == "head" and ext.features.shape == (12, 6)
    with torch.no_grad():
        ref = model.forward_features(X)[:, 0].double().numpy()
    assert abs(ext.features - ref).max() < 1e-6


def test_probe_picks_the_layer_whose_output_is_the_models_output():
    model = TinyTimmNet().eval()
    x = torch.randn(3, 1, 6, 6)
    with torch.no_grad():
        assert probe_head(model, lambda: model(x)) == (model.fc, "fc")
    hidden = nn.Sequential(nn.Linear(4, 64), nn.ReLU(), nn.Linear(64, 10))
    with torch.no_grad(), pytest.raises(HeadNotFoundError, match="'0'.*not the model's output"):
        probe_head(hidden, lambda: hidden(torch.randn(2, 4)), "0")


def test_named_hidden_layer_is_refused_without_data_too():
    model = nn.Sequential(nn.Linear(4, 64), nn.ReLU(), nn.Linear(64, 10))
    with pytest.raises(HeadNotFoundError, match="64 outputs but the model produces 10"):
        describe(model, head="0")
    with pytest.raises(HeadNotFoundError, match="not the model's output"):
        describe(model, head="0", example=torch.randn(2, 4))
    info = describe(model, example=torch.randn(2, 4))
    assert info.head_name == "2" and info.verified and "K = 10" in str(info)


def test_candidate_list_in_errors_is_short():
    model = TinyViT(depth=40)
    with pytest.raises(HeadNotFoundError) as err:
        find_head(model, "nope")
    msg = str(err.value)
    assert "blocks.39.0" in msg and "blocks.0.0" not in msg and "earlier ones" in msg
    info = describe(model, example=torch.randn(2, 5, 2))
    assert info.head_name == "head" and len(info.candidates) <= 8 and info.n_linear == 42


@pytest.mark.parametrize("wrap", [
    lambda z: z, lambda z: (z, z.sum()), lambda z: [z], lambda z: {"logits": z, "hidden": z},
    lambda z: ModelOutput(loss=None, logits=z),
])
def test_output_logits_reads_every_output_form(wrap):
    z = torch.randn(3, 2)
    assert output_logits(wrap(z)) is z


def test_unreadable_output_is_one_clear_error():
    class Weird(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            return {"scores": self.fc(x)}

    with pytest.raises(HeadNotFoundError, match="Could not find logits.*forward="):
        extract_features(Weird(), torch.randn(4, 2))


def test_named_head_registered_before_a_projection_is_kept_without_data():
    class WithProjection(nn.Module):  # the projection is registered last but is not the output
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(4, 6)
            self.fc = nn.Linear(6, 3)
            self.proj = nn.Linear(6, 2)

        def forward(self, x):
            return self.fc(torch.relu(self.body(x)))

    model = WithProjection()
    assert find_head(model, "fc") == (model.fc, "fc")  # what training's head re-init calls
    assert describe(model, head="fc", example=torch.randn(2, 4)).head_name == "fc"
    assert describe(model, example=torch.randn(2, 4)).head_name == "fc"


# ----------------------------------------------------------------------------- optional: the real libraries


def test_timm_models_when_installed():
    timm = pytest.importorskip("timm")
    x = torch.randn(2, 3, 224, 224)
    resnet = timm.create_model("resnet18", pretrained=False, num_classes=3)
    assert extract_features(resnet, x).head_name == "fc"
    deit = timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False, num_classes=3)
    assert find_head(deit)[1] == "head"
    with pytest.raises(HeadNotFoundError, match="mean of two heads"):
        extract_features(deit, x)


def test_hugging_face_bert_when_installed():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=40, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=16, num_labels=3)
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(cfg)
    ids = torch.randint(1, 40, (12, 5))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids),
             "labels": torch.arange(12) % 3}
    batch["attention_mask"][::2, 3:] = 0  # padded rows: the mask changes the features
    ext = extract_features(model, [batch])
    assert ext.head_name == "classifier" and ext.features.shape == (12, 8)
    seen = []
    handle = model.classifier.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().double()))
    try:
        model.eval()
        with torch.no_grad():
            model(**{k: v for k, v in batch.items() if k != "labels"})
            model(input_ids=ids)  # the mask dropped: another function
    finally:
        handle.remove()
    torch.testing.assert_close(torch.from_numpy(ext.features), seen[0])
    assert (seen[1] - seen[0]).abs().max() > 1e-6  # BERT init (std 0.02) keeps activations small
    result = nnboundary.analyze(model, [batch], head="classifier")
    assert result.summary["head"] == "classifier" and "nc1" in result.summary
