"""README's code blocks run as written.

Convention (an HTML comment on the line before a fenced block):

* a ```` ```python ```` block with no marker is executed (each in a fresh namespace, in order, in one temporary
  folder, so a later block may read the files an earlier one wrote);
* ``<!-- readme-test: skip (why) -->``: not executed (a fragment, a download, minutes of work);
* ``<!-- readme-test: needs lightning -->``: executed when Lightning is installed, else the test skips;
* ``<!-- readme-test: run -->`` before a ```` ```bash ```` block: each line is run with ``bash``, ``nnboundary`` being
  this checkout's CLI. Other bash blocks are not run.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import nnboundary

torch.set_num_threads(1)  # the blocks train tiny models: one thread is fastest on a shared machine

README = Path(__file__).resolve().parents[1] / "README.md"
_FENCE = re.compile(r"^```(\w+)\s*$")
_MARK = re.compile(r"^<!--\s*readme-test:\s*(skip|needs \w+|run)\b.*-->\s*$")


def _blocks() -> list[tuple[int, str, str, str | None]]:
    """(line number, language, code, marker) of every fenced block."""
    lines = README.read_text(encoding="utf-8").splitlines()
    out, i = [], 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m:
            start, lang = i, m.group(1)
            j = i + 1
            while j < len(lines) and lines[j].strip() != "```":
                j += 1
            prev = next((lines[k] for k in range(start - 1, -1, -1) if lines[k].strip()), "")
            mark = _MARK.match(prev.strip())
            out.append((start + 1, lang, "\n".join(lines[start + 1:j]), mark.group(1) if mark else None))
            i = j + 1
        else:
            i += 1
    return out


def _run_bash(code: str, where: Path) -> None:
    src = str(Path(nnboundary.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]), "COLUMNS": "160"}
    script = f'nnboundary() {{ "{sys.executable}" -m nnboundary.cli "$@"; }}\nset -e\n{code}\n'
    proc = subprocess.run(["bash", "-c", script], cwd=where, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def _run(blocks, tmp_path, monkeypatch) -> int:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    ran = 0
    for line, lang, code, mark in blocks:
        if lang == "python" and mark is None:
            exec(compile(code, f"README.md:{line}", "exec"), {"__name__": f"readme_{line}"})
            ran += 1
        elif lang == "bash" and mark == "run":
            _run_bash(code, tmp_path)
            ran += 1
    return ran


def test_every_block_is_runnable_or_marked():
    blocks = _blocks()
    assert blocks, "README has no code blocks"
    for line, lang, code, mark in blocks:
        if lang == "python" and mark == "run":
            pytest.fail(f"README.md:{line}: 'run' is for bash blocks; python blocks run by default")
        if mark and mark.startswith("needs"):
            assert lang == "python", f"README.md:{line}: 'needs' marks python blocks"


def test_readme_python_blocks_run_as_written(tmp_path, monkeypatch):
    blocks = [b for b in _blocks() if not (b[3] or "").startswith("needs")]
    assert _run(blocks, tmp_path, monkeypatch) >= 4
    assert (tmp_path / "analysis" / "report.md").is_file()  # the CLI block ran on the files the block before wrote
    assert (tmp_path / "runs" / "readme-tracker" / "alignment.png").is_file()


def test_readme_lightning_block(tmp_path, monkeypatch):
    if importlib.util.find_spec("lightning") is None:
        pytest.skip("Lightning is not installed (pip install 'nnboundary[lightning]')")
    blocks = [(n, "python", c, None) for n, lang, c, m in _blocks() if m == "needs lightning"]
    assert blocks
    _run(blocks, tmp_path, monkeypatch)
