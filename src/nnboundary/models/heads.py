"""The one head discovery of nnboundary: which ``nn.Linear`` produces a classifier's logits.

The *head* is the linear layer whose output **is the model's output** (its logits). Two entry points:

* :func:`find_head` ``(model, head=None) -> (module, name)`` decides from the module tree alone, without running
  the model (training uses it to re-initialise the head; ``describe`` without data uses it).
* :func:`probe_head` ``(model, run, head=None) -> (module, name)`` runs one forward pass (``run()`` returns the
  model's output) with a hook on every ``nn.Linear`` and keeps the layer whose output equals the model's logits.
  A named head whose output is not the model's is refused. This is what ``analyze`` and ``describe --data`` use.

Static rules (:func:`find_head` with ``head=None``), in order:

1. K is ``n_classes`` when known, else the ``out_features`` of the model's last leaf module (trailing
   ``nn.Identity``/``nn.Dropout`` skipped), which must then be an ``nn.Linear`` (a final Softmax is an error: the
   comparison needs raw logits).
2. The candidates are the ``nn.Linear`` layers with ``out_features == K``. Distillation heads (a name whose last
   part contains ``dist``, e.g. DeiT's and LeViT's ``head_dist``) are dropped when another candidate remains:
   they are not the classifier's head.
3. One candidate left: the head. Several: the model's last leaf if it is one of them, else
   :class:`HeadNotFoundError` lists them. Nothing is guessed silently.

The model output may be a tensor, a tuple/list (first element), a dict or an object with ``.logits`` (Hugging Face
``ModelOutput``); :func:`output_logits` reads the logits from any of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["HeadNotFoundError", "find_head", "probe_head", "output_logits", "linear_modules", "candidates_text"]

# Modules that do nothing to the logits in eval mode and may follow the head.
_PASSTHROUGH = (nn.Identity, nn.Dropout)
_MAX_LISTED = 8  # candidates shown in an error message


class HeadNotFoundError(ValueError):
    """The classifier's head (the ``nn.Linear`` producing its logits) could not be identified."""


def linear_modules(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """All ``nn.Linear`` submodules of ``model`` as ``(dotted_name, module)``, in registration order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]


def _fmt(name: str, m: nn.Linear) -> str:
    return f"{name or '<model>'} (Linear {m.in_features}->{m.out_features})"


def candidates_text(model: nn.Module) -> str:
    """A short list of the model's linear layers for messages: the last ``_MAX_LISTED`` (those nearest the output)."""
    lins = linear_modules(model)
    if not lins:
        return "the model has no nn.Linear modules"
    shown = [_fmt(n, m) for n, m in lins[-_MAX_LISTED:]]
    more = f"{len(lins) - _MAX_LISTED} earlier ones and " if len(lins) > _MAX_LISTED else ""
    return f"nn.Linear modules: [{more}{', '.join(shown)}]"


def _last_leaf(model: nn.Module) -> tuple[str, nn.Module] | None:
    leaves = [(n, m) for n, m in model.named_modules() if not any(True for _ in m.children())]
    for name, m in reversed(leaves):
        if not isinstance(m, _PASSTHROUGH):
            return name, m
    return None


def _is_distillation_head(name: str) -> bool:
    return "dist" in name.rsplit(".", 1)[-1].lower()


def _resolve(model: nn.Module, head: str | nn.Module) -> tuple[nn.Linear, str]:
    if isinstance(head, str):
        try:
            mod = model.get_submodule(head)
        except AttributeError:
            raise HeadNotFoundError(f"The model has no submodule {head!r}. Pass one of the "
                                    f"{candidates_text(model)}.") from None
        name = head
    elif isinstance(head, nn.Module):
        found = [n for n, m in model.named_modules() if m is head]
        if not found:
            raise HeadNotFoundError(f"The given head module is not part of the model. {candidates_text(model)}.")
        name, mod = found[0], head
    else:
        raise TypeError(f"head must be a str, an nn.Module or None, got {type(head).__name__}.")
    if not isinstance(mod, nn.Linear):
        raise TypeError(f"Head {name!r} is a {type(mod).__name__}, not nn.Linear; nnboundary compares a linear last "
                        f"layer with the SVM. {candidates_text(model)}.")
    return mod, name


def find_head(model: nn.Module, head: str | nn.Module | None = None, *,
              n_classes: int | None = None, strict: bool = False) -> tuple[nn.Linear, str]:
    """The classifier's head and its dotted name, from the module tree alone (no forward pass).

    Parameters
    ----------
    model : nn.Module
    head : str or nn.Module, default=None
        Dotted name (``"fc"``, ``"classifier.2"``) or the module itself; None discovers it (module docstring).
    n_classes : int, default=None
        Number of logits the model produces, if known (1 for a single-logit binary head). A named head with another
        ``out_features`` is refused.
    strict : bool, default=False
        With a named head and ``n_classes`` unknown: refuse it when the model ends in an ``nn.Linear`` of another
        width (a hidden layer was named). Off by default, because a layer registered last need not run last (a
        projection head registered after the classifier); ``describe`` without data turns it on.

    Returns
    -------
    head : nn.Linear
    name : str
        Dotted name in ``model.named_modules()`` (``""`` if the model itself is the head).

    Raises
    ------
    HeadNotFoundError
        No head, several possible heads, a last layer that is not ``nn.Linear``, or a head whose width is not the
        number of logits; the message lists the candidates.
    TypeError
        ``model`` is not an ``nn.Module`` or the named head is not an ``nn.Linear``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    if head is not None:
        mod, name = _resolve(model, head)
        K = n_classes if n_classes is not None else (_static_n_outputs(model) if strict else None)
        if K is not None and mod.out_features != K:
            how = "" if n_classes is not None else " (its last layer, by registration order)"
            raise HeadNotFoundError(
                f"Head {name!r} has {mod.out_features} outputs but the model produces {K} logits{how}, so its output "
                "is not the model's output (a hidden layer?). Pass the layer that produces the logits, or pass data "
                f"to check with one forward pass; {candidates_text(model)}.")
        return mod, name
    lins = linear_modules(model)
    if not lins:
        raise HeadNotFoundError(f"{type(model).__name__} has no nn.Linear layer, so it has no linear head to compare "
                                "with the SVM. nnboundary needs logits = Linear(features).")
    last = _last_leaf(model)
    if n_classes is None:
        if last is None or not isinstance(last[1], nn.Linear):
            lname, lmod = last if last is not None else ("?", None)
            raise HeadNotFoundError(
                f"The last layer of {type(model).__name__}, {lname!r} ({type(lmod).__name__}), is not nn.Linear. "
                "The comparison needs raw logits: remove the final activation (cross-entropy takes logits) or pass "
                f"head='<name>'. {candidates_text(model)}.")
        n_classes = last[1].out_features
    cands = [(n, m) for n, m in lins if m.out_features == n_classes]
    if len(cands) > 1 and any(not _is_distillation_head(n) for n, _ in cands):
        cands = [(n, m) for n, m in cands if not _is_distillation_head(n)]
    if len(cands) == 1:
        return cands[0][1], cands[0][0]
    if not cands:
        raise HeadNotFoundError(f"No nn.Linear in {type(model).__name__} has out_features={n_classes} (the number "
                                f"of logits). Pass head='<name>'; {candidates_text(model)}.")
    if last is not None and any(m is last[1] for _, m in cands):
        return last[1], last[0]  # type: ignore[return-value]
    raise HeadNotFoundError(
        f"Ambiguous head: {len(cands)} nn.Linear layers have out_features={n_classes}: "
        f"[{', '.join(_fmt(n, m) for n, m in cands[:_MAX_LISTED])}]. Pass head='<name>' to choose one.")


def _static_n_outputs(model: nn.Module) -> int | None:
    """The number of logits if the model ends in an ``nn.Linear`` (registration order), else None (unknown)."""
    last = _last_leaf(model)
    return last[1].out_features if last is not None and isinstance(last[1], nn.Linear) else None


def output_logits(output: Any) -> Tensor | None:
    """The logits in a model's output: a tensor, ``.logits`` (HF ``ModelOutput``), ``["logits"]``, or element 0 of a
    tuple/list. None if none of these holds a tensor."""
    if isinstance(output, Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    if isinstance(output, Mapping):
        logits = output.get("logits")
        return logits if isinstance(logits, Tensor) else None
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    return None


def _same(a: Tensor, b: Tensor) -> bool:
    if a.shape != b.shape:
        if a.numel() != b.numel() or a.shape[:1] != b.shape[:1]:
            return False
        a = a.reshape(b.shape)  # a single logit (B, 1) vs a squeezed model output (B,)
    return bool(torch.allclose(a.to(b.dtype), b, rtol=1e-5, atol=1e-6, equal_nan=True))


def probe_head(model: nn.Module, run: Callable[[], Any], head: str | nn.Module | None = None) -> tuple[nn.Linear, str]:
    """The head chosen by one forward pass: the ``nn.Linear`` whose output is the model's output.

    Parameters
    ----------
    model : nn.Module
    run : callable () -> model output
        Runs ``model`` on one batch (e.g. ``lambda: model(x)`` or ``lambda: model(**batch)``); the output may be any
        form :func:`output_logits` reads. Called once, under the caller's ``no_grad``/eval settings.
    head : str or nn.Module, default=None
        A named head is checked: refused if its output is not the model's output.

    Returns
    -------
    head : nn.Linear
    name : str

    Raises
    ------
    HeadNotFoundError
        No linear layer (or not the named one) produces the model's output, or several do; the message says which
        layers ran and what to pass.
    """
    named = _resolve(model, head) if head is not None else None
    lins = linear_modules(model)
    if not lins:
        raise HeadNotFoundError(f"{type(model).__name__} has no nn.Linear layer, so it has no linear head to compare "
                                "with the SVM. nnboundary needs logits = Linear(features).")
    outs: dict[str, Tensor] = {}

    def _keep(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, out: Any) -> None:
            if isinstance(out, Tensor) and out.ndim <= 2:  # (B, K); per-token layers (B, T, K) cannot be the head
                outs[name] = out
        return hook

    handles = [m.register_forward_hook(_keep(n)) for n, m in lins]
    try:
        out = run()
    finally:
        for h in handles:
            h.remove()  # never leave a hook on a user's model
    z = output_logits(out)
    if z is None:
        raise HeadNotFoundError(
            f"Could not find logits in the model's output of type {type(out).__name__}: nnboundary reads a tensor, "
            "`.logits`, a dict's 'logits' or a tuple's first element. Pass forward=<callable(model, batch) returning "
            "the logits>.")
    if z.ndim > 2:
        raise HeadNotFoundError(
            f"The model's logits have shape {tuple(z.shape)}, not (B, K): a head applied per token or per pixel. "
            "nnboundary needs one feature vector per sample and a head that maps (B, D) to logits (pool first, or "
            "pass forward=<callable returning (B, K) logits>).")
    same = [n for n, _ in lins if n in outs and _same(outs[n], z)]
    if named is not None:
        mod, name = named
        if name in same:
            return mod, name
        ran = "did not run" if name not in outs else "produced other values than the model's output"
        raise HeadNotFoundError(
            f"Head {name!r} {ran}: its output is not the model's output of shape {tuple(z.shape)}, so it is not the "
            "layer that produces the logits (a hidden layer, or something such as a Softmax, a scaling or a skip "
            "connection is applied after it). "
            + (f"The layer whose output is the model's: {same[0]!r}." if len(same) == 1 else candidates_text(model)
               + "."))
    if len(same) == 1:
        return model.get_submodule(same[0]), same[0]  # type: ignore[return-value]
    if len(same) > 1:
        non_dist = [n for n in same if not _is_distillation_head(n)]
        if len(non_dist) == 1:
            return model.get_submodule(non_dist[0]), non_dist[0]  # type: ignore[return-value]
        raise HeadNotFoundError(f"Ambiguous head: {len(same)} nn.Linear layers produce the model's output: "
                                f"{same[:_MAX_LISTED]}. Pass head='<name>' to choose one.")
    width = [n for n, _ in lins if n in outs and outs[n].shape[-1:] == z.shape[-1:]]
    hint = ""
    if len(width) >= 2 and any(_same((outs[a] + outs[b]) / 2, z) for i, a in enumerate(width) for b in width[i + 1:]):
        hint = (" It is the mean of two heads (a distilled model such as DeiT/LeViT averages head and head_dist): the "
                "logits are not one linear layer's output. Analyse one head with forward=<callable returning that "
                "head's logits>.")
    last = _last_leaf(model)
    if not hint and last is not None and not isinstance(last[1], nn.Linear):
        hint = (f" The last layer, {last[0]!r} ({type(last[1]).__name__}), changes the head's output: remove a final "
                "Softmax/LogSoftmax (the comparison needs raw logits).")
    raise HeadNotFoundError(
        f"No nn.Linear's output is the model's output (logits of shape {tuple(z.shape)}).{hint} Layers of that width: "
        f"{width[-_MAX_LISTED:] or 'none'}; {candidates_text(model)}.")
