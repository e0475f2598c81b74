"""The import layering of nnboundary, enforced on the source text (every import, lazy ones included).

Data flows one way: data -> models -> train -> features -> svm -> metrics -> analysis -> tracking -> plot ->
experiments -> cli. A module may import its own layer and the layers to its left, never one to its right.
``device.py`` and ``_jsonio.py`` are bottom-level utilities any layer may use. ``svm/`` and ``metrics.py`` never
import torch. No private name (``_x``, module or attribute) is imported from another package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "nnboundary"
ORDER = ("data", "models", "train", "features", "svm", "metrics", "analysis", "tracking", "plot", "experiments",
         "cli")
UTILITIES = {"device", "distributed", "_jsonio"}
#: Modules outside ORDER, and the layer they belong to.
PLACED = {"callbacks": "tracking",        # the Lightning adapter of AlignmentTracker
          "io": "analysis",               # model / data files for the analyze command
          "applications": "experiments"}  # experiment kinds of their own


def _layer(module: str) -> str | None:
    """Layer of ``nnboundary.<top>...``; None for the utilities and the package itself."""
    parts = module.split(".")
    if parts[0] != "nnboundary" or len(parts) == 1:
        return None
    top = parts[1]
    if top in UTILITIES or top == "__version__":
        return None
    if top in ORDER:
        return top
    if top in PLACED:
        return PLACED[top]
    raise AssertionError(f"nnboundary.{top} has no place in the layering; add it to ORDER or PLACED.")


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(parts), path))
    return out


def _imports(path: Path, module: str) -> list[tuple[str, list[str], int]]:
    """``(imported module, imported names, line)`` for every import statement, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names = [alias.name for alias in node.names]
            found.append((base, names, node.lineno))
            # ``from nnboundary import metrics`` imports the module nnboundary.metrics
            if base == "nnboundary":
                found += [(f"nnboundary.{n}", [], node.lineno) for n in names]
    return found


MODULES = _modules()


@pytest.mark.parametrize("module, path", MODULES, ids=[m for m, _ in MODULES])
def test_imports_follow_the_layering(module: str, path: Path) -> None:
    if module == "nnboundary":
        return  # the package facade re-exports the public API of every layer
    own = _layer(module)
    if own is None:
        assert all(not target.startswith("nnboundary.") or _layer(target) is None
                   for target, _, _ in _imports(path, module)), f"{module} is a utility: it imports no layer"
        return
    for target, _, line in _imports(path, module):
        theirs = _layer(target) if target.startswith("nnboundary") else None
        if theirs is None:
            continue
        assert ORDER.index(theirs) <= ORDER.index(own), \
            f"{path.relative_to(SRC.parent)}:{line}: {own} imports {target} ({theirs} is to its right)"


@pytest.mark.parametrize("module, path", [(m, p) for m, p in MODULES if m.startswith(("nnboundary.svm",
                                                                                        "nnboundary.metrics"))])
def test_svm_and_metrics_never_import_torch(module: str, path: Path) -> None:
    for target, _, line in _imports(path, module):
        assert target.split(".")[0] != "torch", f"{path.relative_to(SRC.parent)}:{line} imports {target}"


def _package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])


@pytest.mark.parametrize("module, path", MODULES, ids=[m for m, _ in MODULES])
def test_no_private_names_across_packages(module: str, path: Path) -> None:
    home = _package_of(module)
    for target, names, line in _imports(path, module):
        if not target.startswith("nnboundary.") or _package_of(target) == home:
            continue
        if target.split(".")[1] in UTILITIES:
            continue
        where = f"{path.relative_to(SRC.parent)}:{line}"
        assert not any(p.startswith("_") for p in target.split(".")[2:]), f"{where} imports private module {target}"
        assert not [n for n in names if n.startswith("_") and n != "__version__"], \
            f"{where} imports private names {names} from {target}"


def test_the_layering_test_sees_every_layer() -> None:
    seen = {_layer(m) for m, _ in MODULES}
    assert set(ORDER) <= seen
