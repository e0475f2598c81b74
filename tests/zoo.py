"""Small stand-ins for the models people have, built inside the tests (no hub downloads).

* :class:`TinyHFClassifier` follows the Hugging Face sequence-classification convention: keyword inputs
  (``input_ids``, ``attention_mask``, optional ``labels``), an output object with ``.loss`` and ``.logits``, a per-token
  encoder, a pooler and a ``classifier`` head.
* :class:`TinyDistilledViT` follows timm's distilled ViTs (DeiT, LeViT): ``forward_features`` gives a class and a
  distillation token, ``head`` and ``head_dist`` score them, eval mode returns the mean of both.
* :class:`TinyTimmNet` follows a timm CNN: ``forward_features``, ``forward_head``, ``get_classifier()`` and an ``fc``.
* :class:`TinyViT` has many per-token linear layers before its ``head`` (like ViT's 49).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F


class ModelOutput(OrderedDict):
    """What HF models return: a dict whose keys are also attributes."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class TinyHFClassifier(nn.Module):
    def __init__(self, vocab: int = 30, d: int = 8, K: int = 3, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.embeddings = nn.Embedding(vocab, d)
        self.encoder = nn.Linear(d, d)  # applied per token: (B, T, d)
        self.pooler = nn.Linear(d, d)
        self.dropout = nn.Dropout(0.1)
        self.classifier = nn.Linear(d, K)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.7)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None, return_dict=True):
        e = torch.tanh(self.encoder(self.embeddings(input_ids)))  # (B, T, d)
        m = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        m = m.unsqueeze(-1).to(e.dtype)  # (B, T, 1)
        pooled = torch.tanh(self.pooler((e * m).sum(1) / m.sum(1).clamp(min=1)))  # (B, d)
        logits = self.classifier(self.dropout(pooled))  # (B, K)
        loss = None if labels is None else F.cross_entropy(logits, labels)
        return ModelOutput(loss=loss, logits=logits) if return_dict else (logits,)


def hf_examples(n: int = 60, T: int = 7, vocab: int = 30, K: int = 3, seed: int = 0):
    """Padded token batches: (input_ids, attention_mask, labels); pads are token 0 and masked out."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (n, T), generator=g)
    lengths = torch.randint(2, T + 1, (n,), generator=g)
    mask = (torch.arange(T)[None, :] < lengths[:, None]).long()
    ids = ids * mask  # pad id 0
    labels = torch.arange(n) % K
    return ids, mask, labels


class DictDataset(torch.utils.data.Dataset):
    """Items are dicts, as HF ``datasets`` give them; the default collate stacks them into dict batches."""

    def __init__(self, ids, mask, labels):
        self.ids, self.mask, self.labels = ids, mask, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": self.mask[i], "labels": self.labels[i]}


class TinyDistilledViT(nn.Module):
    def __init__(self, d_in: int = 4, d: int = 6, K: int = 3):
        super().__init__()
        torch.manual_seed(0)
        self.patch = nn.Linear(d_in, 2 * d)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, K)
        self.head_dist = nn.Linear(d, K)
        self.distilled_training = False
        self.d = d

    def forward_features(self, x):
        return self.norm(torch.tanh(self.patch(x)).view(x.shape[0], 2, self.d))  # (B, 2, d): cls, dist tokens

    def forward_head(self, x):
        a, b = self.head(x[:, 0]), self.head_dist(x[:, 1])
        if self.distilled_training and self.training:
            return a, b
        return (a + b) / 2

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


class TinyTimmNet(nn.Module):
    def __init__(self, K: int = 3, width: int = 5):
        super().__init__()
        torch.manual_seed(0)
        self.conv_stem = nn.Conv2d(1, width, 3, padding=1)
        self.act = nn.ReLU()
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, K)

    def get_classifier(self):
        return self.fc

    def forward_features(self, x):
        return self.act(self.conv_stem(x))

    def forward_head(self, x, pre_logits: bool = False):
        x = self.global_pool(x).flatten(1)
        return x if pre_logits else self.fc(x)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


class TinyViT(nn.Module):
    def __init__(self, d: int = 4, K: int = 3, depth: int = 12):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Linear(2, d)
        self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(d, d), nn.GELU()) for _ in range(depth)])
        self.head = nn.Linear(d, K)

    def forward(self, x):  # x (B, T, 2)
        t = self.embed(x)
        for blk in self.blocks:
            t = t + blk(t)
        return self.head(t.mean(1))
