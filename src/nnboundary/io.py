"""Load a model file and a data file for ``nnboundary analyze`` / ``describe`` (the CLI calls these).

Three ways of saving a classifier, in the order we recommend them:

1. **state_dict + factory** (recommended): ``torch.save(model.state_dict(), "model.pt")`` and a *factory* that builds
   the architecture: an import path ``pkg.module:fn`` (any callable returning the ``nn.Module``, a class too), a file
   ``path/to/file.py:fn``, or ``timm:NAME`` (``timm.create_model(NAME, pretrained=False)``, when timm is installed).
   The weights are read with ``torch.load(weights_only=True)``: no code from the file runs. Checkpoints that nest the
   weights (``{"state_dict": ...}`` of Lightning, ``{"model": ...}``) and prefixes such as ``model.`` / ``module.``
   are accepted.
2. **TorchScript** (``torch.jit.save(torch.jit.script(model) or torch.jit.trace(model, x), path)``): loaded without
   unpickling code. Hooks cannot run inside compiled code, so the model's graph is read instead: when its output is
   the output of one linear layer, that layer is rebuilt as an eager ``nn.Linear`` with the same weights and the
   compiled rest of the model returns the head's input alongside (:class:`ScriptedClassifier`). Otherwise a
   :class:`ModelLoadError` says to save a state_dict.
3. **A whole pickled module** (``torch.save(model)``): only with ``allow_pickle=True`` (``--allow-pickle``), because
   unpickling **runs code stored in the file**; :data:`PICKLE_WARNING` is logged (the CLI prints it).

Every failure is a :class:`ModelLoadError` or :class:`DataLoadError` (``ValueError``) whose one line says what to do.
Data files are read without executing code (``np.load(allow_pickle=False)``, ``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import pickle
import sys
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["DataFile", "DataLoadError", "ModelLoadError", "PICKLE_WARNING", "ScriptedClassifier",
           "TRUSTED_SIDECAR_FACTORIES", "build_from_factory", "check_out_dir", "is_torchscript_file",
           "load_data_file", "load_model_file", "save_model"]

logger = logging.getLogger(__name__)

PICKLE_WARNING = ("WARNING: loading a whole pickled model (torch.save(model)) with torch.load(weights_only=False) RUNS "
                  "CODE stored in the file - only load files you trust. Saving model.state_dict() and passing a "
                  "factory (--factory pkg.module:fn) loads the weights without running code and is recommended.")

_STATE_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "weights")


class ModelLoadError(ValueError):
    """A model file could not be turned into a classifier; the message says how to save or load it instead."""


class DataLoadError(ValueError):
    """A data file could not be read; the message says what was expected."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:160]}" if text else type(exc).__name__


# ----------------------------------------------------------------------------------------- out dir


def check_out_dir(out: str | os.PathLike[str], *, force: bool = False, flag: str = "--force",
                  files: tuple[str, ...] = ("summary.json",)) -> Path:
    """Check before any work that results can be written to ``out``; creates nothing.

    Raises
    ------
    FileExistsError
        ``out`` already holds one of ``files`` and ``force`` is False (the message names ``flag``).
    ModelLoadError
        ``out`` or a parent is a regular file, or the nearest existing folder is not writable.
    """
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise ValueError(f"--out {p} is a file, not a folder; choose a folder path.")
    existing = [f for f in files if (p / f).exists()]
    if existing and not force:
        raise FileExistsError(f"{p} already holds an analysis ({', '.join(existing)}). Pass {flag} to overwrite it, "
                              "or choose another --out.")
    parent = p
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"--out {p}: {parent} is a file, so no folder can be made under it; choose another --out.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"--out {p}: the folder {parent} is not writable; choose another --out.")
    return p


# ----------------------------------------------------------------------------------------- factories


def build_from_factory(spec: str, **kwargs: Any) -> nn.Module:
    """Build an untrained model from a factory spec.

    Parameters
    ----------
    spec : str
        ``"pkg.module:fn"`` (imported), ``"path/to/file.py:fn"`` (the file is run as a module: it is your code), or
        ``"timm:NAME"`` (``timm.create_model(NAME, pretrained=False, **kwargs)``; nothing is downloaded).
    **kwargs
        Passed to the factory (e.g. ``num_classes=10``).

    Raises
    ------
    ModelLoadError
        A malformed spec, a module or name that does not exist, timm missing, or a factory that returns no module.
    """
    if not isinstance(spec, str) or ":" not in spec:
        raise ModelLoadError(f"Factory {spec!r} must look like 'pkg.module:fn', 'file.py:fn' or 'timm:NAME'.")
    where, name = spec.rsplit(":", 1)
    if where == "timm":
        try:
            import timm
        except ImportError:
            raise ModelLoadError("Factory 'timm:...' needs timm, which is not installed: pip install timm.") from None
        try:
            model = timm.create_model(name, pretrained=False, **kwargs)
        except Exception as exc:  # noqa: BLE001 - timm's unknown-model error has several types
            raise ModelLoadError(f"timm could not build {name!r} ({_first_line(exc)}); see timm.list_models().") \
                from None
    else:
        fn = _import_factory(where, name, spec)
        try:
            model = fn(**kwargs)
        except TypeError as exc:
            raise ModelLoadError(f"Factory {spec} could not be called with {kwargs or 'no arguments'} "
                                 f"({_first_line(exc)}); pass its arguments with --factory-kwargs.") from None
    if not isinstance(model, nn.Module):
        raise ModelLoadError(f"Factory {spec} returned a {type(model).__name__}, not a torch.nn.Module.")
    return model


def _import_factory(where: str, name: str, spec: str) -> Any:
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise ModelLoadError(f"Factory file {path} does not exist.")
        mod_name = f"_nnboundary_factory_{path.stem}"
        module_spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(module_spec)  # type: ignore[arg-type]
        sys.modules[mod_name] = module
        try:
            module_spec.loader.exec_module(module)  # type: ignore[union-attr]
        except Exception as exc:  # noqa: BLE001 - the user's file: report it in one line
            sys.modules.pop(mod_name, None)
            raise ModelLoadError(f"Running factory file {path} failed ({_first_line(exc)}).") from None
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise ModelLoadError(f"Factory {spec}: cannot import {where!r} ({_first_line(exc)}). Install the package "
                                 "that defines the model, run from its folder, or give 'path/to/file.py:fn'.") \
                from None
    fn = getattr(module, name, None)
    if fn is None or not callable(fn):
        raise ModelLoadError(f"Factory {spec}: {where!r} has no callable {name!r}.")
    return fn


# ----------------------------------------------------------------------------------------- state dicts


def _tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, Tensor) for v in obj.values())


def _state_dict_of(obj: Any, path: Path) -> dict[str, Tensor]:
    if _tensor_dict(obj):
        return dict(obj)
    if isinstance(obj, Mapping):
        for key in _STATE_KEYS:
            if _tensor_dict(obj.get(key)):
                return dict(obj[key])
        raise ModelLoadError(f"{path} holds a dict with keys {sorted(map(str, obj))[:8]} but no state_dict (a dict "
                             f"of tensors, possibly under one of {list(_STATE_KEYS)}). Save model.state_dict().")
    raise ModelLoadError(f"{path} holds a {type(obj).__name__}, not a state_dict; save model.state_dict().")


def _align_prefix(sd: dict[str, Tensor], want: set[str]) -> dict[str, Tensor]:
    """Strip a prefix all keys share (``model.`` of a LightningModule, ``module.`` of DataParallel) if that fits."""
    if set(sd) == want:
        return sd
    firsts = {k.split(".", 1)[0] for k in sd if "." in k}
    for p in sorted(firsts):
        stripped = {k[len(p) + 1:]: v for k, v in sd.items() if k.startswith(p + ".")}
        if set(stripped) == want:
            return stripped
    return sd


def _load_state(model: nn.Module, sd: dict[str, Tensor], path: Path, spec: str) -> None:
    own = model.state_dict()
    sd = _align_prefix(sd, set(own))
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k} (file {tuple(sd[k].shape)}, model {tuple(own[k].shape)})" for k in own
              if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            parts.append("shape mismatch for " + ", ".join(shapes[:3]))
        if missing:
            parts.append(f"{len(missing)} missing key(s) {missing[:3]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) {unexpected[:3]}")
        raise ModelLoadError(f"The weights in {path} do not fit the model built by {spec}: {'; '.join(parts)}. Pass "
                             "the factory's arguments that built the trained model (e.g. --factory-kwargs "
                             "'{\"num_classes\": 10}').")
    model.load_state_dict(sd, strict=True)


# ----------------------------------------------------------------------------------------- TorchScript


def is_torchscript_file(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` is a TorchScript archive (a zip holding ``code/`` and ``constants.pkl``)."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


class ScriptedClassifier(nn.Module):
    """An eager view of a TorchScript classifier: the compiled model up to its head, then an eager ``nn.Linear``.

    The compiled graph is changed (on a copy) to return the head's input beside the logits; the head is rebuilt as an
    ``nn.Linear`` with the same weights under the same dotted name, so hooks reach it. Every forward checks that the
    eager head reproduces the compiled logits.

    Shape: inputs as the scripted model takes them -> logits (B, K).
    """

    def __init__(self, scripted: Any, head_name: str, head: nn.Linear, features_fn: Any) -> None:
        super().__init__()
        object.__setattr__(self, "_scripted", scripted)  # not a child: its compiled submodules are not nn.Linear
        object.__setattr__(self, "_features_fn", features_fn)
        self.head_name = head_name
        parent: nn.Module = self
        parts = head_name.split(".")
        for p in parts[:-1]:
            if not hasattr(parent, p):
                parent.add_module(p, nn.Module())
            parent = getattr(parent, p)
        parent.add_module(parts[-1], head)

    def forward(self, *args: Any) -> Tensor:
        h, z = self._features_fn(self._scripted._c, *args)
        out = self.get_submodule(self.head_name)(h)
        if not torch.allclose(out, z.to(out.dtype), rtol=1e-5, atol=1e-6):
            raise RuntimeError(f"The eager copy of head {self.head_name!r} does not reproduce the TorchScript model's "
                               "logits; save model.state_dict() and load it with a factory instead.")
        return out

    def train(self, mode: bool = True) -> ScriptedClassifier:
        super().train(mode)
        self._scripted.train(mode)
        return self

    def extra_repr(self) -> str:
        return f"scripted={getattr(self._scripted, 'original_name', type(self._scripted).__name__)}"


def _attr_path(value: Any) -> list[str] | None:
    """Dotted attribute path of a ``prim::GetAttr`` chain that starts at the graph's ``self``."""
    names = []
    node = value.node()
    while node.kind() == "prim::GetAttr":
        names.append(node.s("name"))
        value = node.inputsAt(0)
        node = value.node()
    if node.kind() != "prim::Param":
        return None
    return names[::-1]


def _wrap_scripted(sm: Any, path: Path) -> nn.Module:
    """Find the linear layer whose output the compiled graph returns, and expose its input (see ScriptedClassifier)."""
    try:
        g = sm.forward.graph.copy()
        torch._C._jit_pass_inline(g)
        ret = g.return_node()
        out = ret.inputsAt(0)
        if out.node().kind() == "prim::TupleConstruct":
            out = out.node().inputsAt(0)
        node = out.node()
        if node.kind() != "aten::linear":
            raise ModelLoadError(
                f"{path} is TorchScript whose output is not the output of a linear layer (it comes from "
                f"{node.kind()}), so nnboundary cannot reach the head. Save model.state_dict() and load it with "
                "--factory pkg.module:fn (recommended), or call nnboundary.analyze(model, ...) in Python.")
        wpath = _attr_path(node.inputsAt(1))
        if not wpath or wpath[-1] != "weight":
            raise ModelLoadError(f"{path}: the last linear layer's weight is not a module parameter; save "
                                 "model.state_dict() and load it with --factory.")
        head_name = ".".join(wpath[:-1])
        sub = sm
        for part in wpath[:-1]:
            sub = getattr(sub, part)
        w = sub.weight.detach()
        b = getattr(sub, "bias", None)
        head = nn.Linear(w.shape[1], w.shape[0], bias=b is not None, device=w.device, dtype=w.dtype)
        with torch.no_grad():
            head.weight.copy_(w)
            if b is not None:
                head.bias.copy_(b.detach())
        h = node.inputsAt(0)
        tup = g.create("prim::TupleConstruct", [h, out])
        tup.insertBefore(ret)
        tup.output().setType(torch._C.TupleType([h.type(), out.type()]))
        ret.replaceInput(0, tup.output())
        g.lint()
        fn = torch._C._create_function_from_graph("nnboundary_features", g)
    except ModelLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - TorchScript internals: one line, and the recommended way
        raise ModelLoadError(f"{path}: could not read the TorchScript graph ({_first_line(exc)}). Save "
                             "model.state_dict() and load it with --factory pkg.module:fn.") from None
    return ScriptedClassifier(sm, head_name or "head", head, fn)


# ----------------------------------------------------------------------------------------- models


#: The factories a ``model.json`` beside a state_dict may name, so that ``analyze`` needs no ``--factory``: only
#: nnboundary's own model registry (a sidecar that could name any importable function would run code from a file).
TRUSTED_SIDECAR_FACTORIES = ("nnboundary.models:build_model",)


def save_model(model: nn.Module, path: str | os.PathLike[str], *, name: str, kwargs: Mapping[str, Any]) -> Path:
    """Save a model of nnboundary's registry without pickle: its state_dict in ``path`` (read back with
    ``weights_only=True``) and, beside it, ``<stem>.json`` with the factory that rebuilds it
    (``nnboundary.models:build_model(name, **kwargs)``), which :func:`load_model_file` uses when no factory is given.
    Both files are written atomically.
    """
    from nnboundary._jsonio import atomic_write, to_jsonable, write_json

    p = Path(path)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_write(p, lambda f: torch.save(state, f), binary=True)
    write_json(p.with_suffix(".json"), {"factory": TRUSTED_SIDECAR_FACTORIES[0],
                                        "kwargs": to_jsonable({"name": name, **dict(kwargs)})})
    return p


def _sidecar_factory(p: Path) -> tuple[str, dict[str, Any]] | None:
    """The (factory, kwargs) of a ``<stem>.json`` written by :func:`save_model`, or None if there is none."""
    side = p.with_suffix(".json")
    if not side.is_file():
        return None
    import json

    try:
        spec = json.loads(side.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(spec, dict) or "factory" not in spec:
        return None
    if spec["factory"] not in TRUSTED_SIDECAR_FACTORIES:
        raise ModelLoadError(f"{side} names the factory {spec['factory']!r}; only {TRUSTED_SIDECAR_FACTORIES} are "
                             "used without asking. Pass --factory explicitly if you trust it.")
    return spec["factory"], dict(spec.get("kwargs") or {})


def load_model_file(path: str | os.PathLike[str], *, factory: str | None = None,
                    factory_kwargs: Mapping[str, Any] | None = None, allow_pickle: bool = False,
                    map_location: str | torch.device = "cpu") -> nn.Module:
    """Load a classifier saved as a state_dict (with a factory), as TorchScript, or (opt-in) as a pickled module.

    Parameters
    ----------
    path : str or PathLike
    factory : str, default=None
        ``"pkg.module:fn"``, ``"file.py:fn"`` or ``"timm:NAME"`` (see :func:`build_from_factory`); needed for a
        state_dict.
    factory_kwargs : mapping, default=None
        Arguments of the factory (e.g. ``{"num_classes": 10}``).
    allow_pickle : bool, default=False
        Allow ``torch.load(weights_only=False)`` for a whole pickled module. **This runs code stored in the file**;
        :data:`PICKLE_WARNING` is logged.
    map_location : str or torch.device, default="cpu"

    Returns
    -------
    model : nn.Module, in eval mode

    Raises
    ------
    FileNotFoundError
    ModelLoadError
        Every other case, with one line that says what to do.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"Model file {p} does not exist.")
    if is_torchscript_file(p):
        if factory is not None:
            raise ModelLoadError(f"{p} is a TorchScript file; it carries its own architecture, so drop --factory.")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # torch >= 2.9 deprecates torch.jit
                scripted = torch.jit.load(str(p), map_location=map_location)
        except Exception as exc:  # noqa: BLE001
            raise ModelLoadError(f"Could not load the TorchScript file {p} ({_first_line(exc)}).") from None
        return _wrap_scripted(scripted.eval(), p).eval()
    try:
        obj = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" not in str(exc):
            raise ModelLoadError(f"{p} is not a PyTorch model file ({_first_line(exc)}); it may be truncated or "
                                 "another kind of file.") from None
        if factory is not None:
            raise ModelLoadError(f"{p} holds a pickled Python object, not a state_dict, so --factory cannot use it. "
                                 "Save torch.save(model.state_dict(), path) in the training script.") from None
        if not allow_pickle:
            raise ModelLoadError(
                f"{p} holds a whole pickled model (torch.save(model)); loading it runs code stored in the file. "
                "Recommended: save torch.save(model.state_dict(), path) and pass --factory pkg.module:fn. For a "
                "file you trust, pass --allow-pickle.") from None
        return _load_pickled(p, map_location)
    except Exception as exc:  # noqa: BLE001 - truncated zips, OSError 22, ...: one line
        raise ModelLoadError(f"Could not read {p} as a PyTorch file ({_first_line(exc)}); it may be truncated or "
                             "another kind of file. Save it again with torch.save(model.state_dict(), path).") \
            from None
    if factory is None and (side := _sidecar_factory(p)) is not None:
        factory, factory_kwargs = side  # a run directory of nnboundary's: model.json says how to rebuild it
    if factory is None:
        kind = "a state_dict" if _tensor_dict(obj) or isinstance(obj, Mapping) else f"a {type(obj).__name__}"
        raise ModelLoadError(f"{p} holds {kind}, i.e. weights without the architecture. Pass --factory "
                             "pkg.module:fn (a function or class that builds the model) or --factory timm:NAME.")
    model = build_from_factory(factory, **dict(factory_kwargs or {}))
    _load_state(model, _state_dict_of(obj, p), p, factory)
    return model.to(map_location).eval()


def _load_pickled(p: Path, map_location: Any) -> nn.Module:
    logger.warning(PICKLE_WARNING)
    try:
        model = torch.load(p, map_location=map_location, weights_only=False)
    except (AttributeError, ModuleNotFoundError, ImportError) as exc:
        msg = str(exc)
        where = "the training script (__main__)" if "__main__" in msg else "a module that is not importable here"
        raise ModelLoadError(
            f"{p} pickles a model class defined in {where} ({_first_line(exc)}). Save model.state_dict() instead and "
            "pass --factory module:fn (or 'train.py:Net') that builds the same class.") from None
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"Could not unpickle {p} ({_first_line(exc)}).") from None
    if isinstance(model, Mapping):
        raise ModelLoadError(f"{p} holds a dict (a state_dict?), not a model; pass --factory instead of --allow-pickle.")
    if not isinstance(model, nn.Module):
        raise ModelLoadError(f"{p} holds a {type(model).__name__}, not a torch.nn.Module.")
    return model.eval()


# ----------------------------------------------------------------------------------------- data


@dataclass
class DataFile:
    """Arrays read from a data file. X (N, *), y (N,); X_test, y_test optional."""

    X: Any
    y: Any
    X_test: Any = None
    y_test: Any = None


def load_data_file(path: str | os.PathLike[str]) -> DataFile:
    """Read X, y (and optional X_test, y_test) from an ``.npz`` or a ``.pt``/``.pth`` file.

    ``.npz``: ``np.savez(path, X=..., y=..., X_test=..., y_test=...)``, read with ``allow_pickle=False``. ``.pt``: a
    dict of tensors/arrays with the same keys saved with ``torch.save``, read with ``weights_only=True``.

    Raises
    ------
    FileNotFoundError
    DataLoadError
        Unreadable or truncated file, unknown suffix, missing X or y (the message lists the keys found), mismatched
        lengths, or only one of X_test / y_test.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"Data file {p} does not exist.")
    suffix = p.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                d: dict[str, Any] = {k: z[k] for k in z.files}
        elif suffix in (".pt", ".pth"):
            obj = torch.load(p, map_location="cpu", weights_only=True)
            if not isinstance(obj, dict):
                raise DataLoadError(f"{p} holds a {type(obj).__name__}; save a dict with keys X, y (and X_test, "
                                    "y_test).")
            d = dict(obj)
        else:
            raise DataLoadError(f"Unsupported data file {p.name!r}: use .npz or .pt with keys X, y (X_test, y_test).")
    except DataLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - BadZipFile, EOFError, pickled objects, ...: one line
        raise DataLoadError(f"Could not read the data file {p} ({_first_line(exc)}); it may be truncated. Save it "
                            "with np.savez(path, X=..., y=...).") from None
    missing = [k for k in ("X", "y") if k not in d]
    if missing:
        raise DataLoadError(f"{p} lacks {missing}; it has keys {sorted(d)}. Save the inputs as X and the labels as y.")
    if ("X_test" in d) != ("y_test" in d):
        raise DataLoadError(f"{p} has only one of X_test / y_test; save both or neither.")
    for a, b in (("X", "y"), ("X_test", "y_test")):
        if a in d and len(d[a]) != len(d[b]):
            raise DataLoadError(f"{p}: {a} has {len(d[a])} samples but {b} has {len(d[b])}.")
    return DataFile(X=d["X"], y=d["y"], X_test=d.get("X_test"), y_test=d.get("y_test"))
