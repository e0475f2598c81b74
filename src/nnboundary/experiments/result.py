"""What every experiment kind returns besides its own detailed result: the headline numbers and the seed.

The simulated runner returns :class:`~nnboundary.experiments.runner.RunResult`; the image, bias, forgetting
and adversarial kinds return their own detailed objects and, through :func:`kind_result`, a
:class:`KindResult`. Both have ``.summary`` (flat headline numbers), ``.table()`` and ``.report_md()``, which is
all the command line uses.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnboundary.experiments.report import format_value

__all__ = ["KindResult", "flatten_numbers", "write_kind_report"]


def flatten_numbers(tree: Mapping[str, Any], keys: Sequence[str] | None = None, *, sep: str = "/",
                    prefix: str = "") -> dict[str, Any]:
    """Numbers, booleans and short strings of a nested dict as ``{"a/b/c": value}``, in order.

    ``keys`` keeps only the top-level keys named (in that order); nested keys are kept whole.
    """
    out: dict[str, Any] = {}
    items = [(k, tree[k]) for k in keys if k in tree] if keys is not None else list(tree.items())
    for key, value in items:
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_numbers(value, sep=sep, prefix=name + sep))
        elif isinstance(value, (bool, int, float)) or value is None:
            out[name] = value
        elif isinstance(value, str) and len(value) <= 40:
            out[name] = value
    return out


@dataclass
class KindResult:
    """The uniform view of one finished run of any experiment kind.

    Attributes
    ----------
    name, profile, kind : str
        Registered name, profile, and kind (``"image"``, ``"bias"``, ``"forgetting"``, ``"adversarial"``).
    run_dir : Path or None
        The committed run directory (None when the run wrote no files).
    seeds : list of int
        Every seed the run used.
    summary : dict
        Flat headline numbers, ``{"metric": value}``.
    wall_time_s : float
    detail : object
        The kind's own result (a summary dict, a ForgettingResult, an AdversarialResult).
    """

    name: str
    profile: str
    kind: str
    run_dir: Path | None
    seeds: list[int]
    summary: dict[str, Any]
    wall_time_s: float = float("nan")
    detail: Any = field(default=None, repr=False)

    @property
    def report(self) -> Path | None:
        return None if self.run_dir is None else self.run_dir / "report.md"

    @property
    def run_info(self) -> dict[str, Any]:
        return {"seed": self.seeds[0] if len(self.seeds) == 1 else self.seeds}

    def table(self, compact: bool = False) -> tuple[list[str], list[list[str]]]:
        """``(["metric", "value"], rows)`` of the headline numbers (``compact`` is accepted for symmetry)."""
        return ["metric", "value"], [[k, format_value(k.rsplit("/", 1)[-1], v)] for k, v in self.summary.items()]

    def report_md(self) -> str:
        """The run's ``report.md`` (or the same text built from the summary if nothing was written)."""
        if self.report is not None and self.report.is_file():
            return self.report.read_text(encoding="utf-8")
        return _report_text(self, [])


def _report_text(result: KindResult, figures: Sequence[str], notes: Sequence[str] = ()) -> str:
    headers, rows = result.table()
    lines = [f"# {result.name} ({result.profile} profile)", "",
             f"Kind: {result.kind}. Seed(s): {', '.join(map(str, result.seeds))}. "
             f"Wall time: {result.wall_time_s:.1f} s. Settings: `config.json`; all numbers: `summary.json`.", ""]
    if result.profile != "paper":
        lines += [f"**{result.profile} profile: reduced settings, not the paper's run.**", ""]
    lines += [f"| {' | '.join(headers)} |", f"|{'---|' * len(headers)}"]
    lines += [f"| {' | '.join(r)} |" for r in rows]
    lines.append("")
    for note in notes:
        lines += [note, ""]
    for fig in figures:
        lines += [f"![{Path(fig).stem}]({fig})", ""]
    return "\n".join(lines)


def write_kind_report(stage: str | os.PathLike[str], result: KindResult, *, notes: Sequence[str] = ()) -> Path:
    """Write ``report.md`` into ``stage``: the headline table, the seeds, and every figure under ``figures/``."""
    from nnboundary._jsonio import atomic_write

    stage = Path(stage)
    figures = sorted(str(p.relative_to(stage)) for p in (stage / "figures").glob("*.png")) \
        if (stage / "figures").is_dir() else []
    text = _report_text(result, figures, notes)
    return atomic_write(stage / "report.md", lambda fh: fh.write(text))
