"""The run report: a Markdown file with the final numbers and the figures side by side.

:func:`summary_rows` turns per-variant summaries into table rows (shared with the CLI's rich table);
:func:`write_report` writes ``report.md``. Plain text only: no plotting, no printing.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nnboundary.analysis import claim_status, claim_verdict

__all__ = ["CLAIMS_HEADERS", "COMPACT_COLUMNS", "TABLE_COLUMNS", "claims_markdown", "claims_rows", "format_value",
           "profile_differences", "status_of", "summary_rows", "write_claims", "write_report"]

#: (summary key, column header) of the results table, in order. Columns absent from every row are dropped.
TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("n_features", "D"),
    ("angle_deg", "angle (°)"),
    ("angle_deg_reg", "angle reg-bias (°)"),
    ("margin_ratio", "margin ratio"),
    ("bias_offset", "bias offset"),
    ("agreement_train", "agree train"),
    ("agreement_test", "agree test"),
    ("input_agreement", "agree input grid"),
    ("sv_overlap_jaccard", "SV∩low-margin (Jaccard)"),
    ("sv_overlap_jaccard_loss", "SV∩high-loss (Jaccard)"),
    ("n_support", "#SV"),
    ("loss", "CE loss"),
    ("accuracy", "train acc"),
    ("test_accuracy", "test acc"),
    ("status", "status"),
)

#: A narrower table for terminals (the CLI): short headers, the core numbers.
COMPACT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("angle_deg", "angle°"),
    ("margin_ratio", "margin ratio"),
    ("bias_offset", "bias off."),
    ("agreement_train", "agree"),
    ("agreement_test", "agree test"),
    ("input_agreement", "agree input"),
    ("sv_overlap_jaccard", "SV Jacc."),
    ("loss", "CE loss"),
    ("accuracy", "acc"),
    ("status", "status"),
)

_EXPLAIN = {
    "D": "width of the transformed space h (the last hidden layer) the SVM is fitted on",
    "angle (°)": "angle between the NN's last-layer direction and the SVM's (0 = same direction)",
    "angle reg-bias (°)": "the same against the SVM with a regularised bias, min (|w|² + b²)/2, which gradient "
                          "descent on a layer with a bias approaches",
    "margin ratio": "NN normalised margin / SVM margin (1 = max margin)",
    "bias offset": "NN boundary position along the SVM normal, in SVM margins (0 = same place, ±1 = on a support hyperplane)",
    "agree train": "fraction of training points where NN and SVM (on h) predict the same class",
    "agree test": "same on the test split",
    "agree input grid": "NN vs linear SVM on the raw inputs, on a grid over the data (input-space figures)",
    "SV∩low-margin (Jaccard)": "Jaccard overlap of the SVM's support vectors with the k points of smallest NN margin",
    "SV∩high-loss (Jaccard)": "same with the k highest-loss points",
    "#SV": "support vectors of the SVM on h",
    "CE loss": "mean cross-entropy of the final logits on the training split",
}


def format_value(key: str, value: Any) -> str:
    """Short, table-friendly text for one summary value (``—`` for missing)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if key in ("loss", "train_loss", "test_loss"):
            return f"{value:.2e}"
        if key in ("cosine", "cosine_reg"):
            return f"{value:.8f}"
        if key in ("angle_deg", "angle_deg_reg"):
            return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
        if key in ("accuracy", "test_accuracy", "agreement_train", "agreement_test", "input_agreement",
                   "agreement_grid", "sv_overlap_jaccard", "sv_overlap_jaccard_loss"):
            return f"{value:.3f}"
        return f"{value:.3g}"
    return str(value)


def status_of(summary: Mapping[str, Any]) -> str:
    """One word on whether the numbers can be read as a test of the claim.

    ``FAILED`` (no analysis), ``not separable`` (features not linearly separable: compared with a
    soft-margin SVM, the hard-margin claim does not apply), ``not fitted`` (separable features but the
    NN does not classify every training point), ``separable`` otherwise.
    """
    if summary.get("error"):
        return "FAILED"
    return claim_status(dict(summary))  # the words of analyze's verdict, decided in one place


def summary_rows(summaries: Mapping[str, Mapping[str, Any]],
                 columns: Sequence[tuple[str, str]] = TABLE_COLUMNS) -> tuple[list[str], list[list[str]]]:
    """``(headers, rows)`` of the results table: one row per variant, values formatted.

    Parameters
    ----------
    summaries : mapping label -> summary dict
        As in ``summary.json``'s ``"variants"``.
    columns : sequence of (summary key, header), default=TABLE_COLUMNS
        :data:`COMPACT_COLUMNS` gives the narrow terminal table.
    """
    present = [(k, h) for k, h in columns
               if k == "status" or any(s.get(k) is not None for s in summaries.values())]
    headers = ["variant", *[h for _, h in present]]
    rows = []
    for label, s in summaries.items():
        values = {**s, "status": status_of(s)}
        rows.append([label, *[format_value(k, values.get(k)) for k, _ in present]])
    return headers, rows


#: Columns of the claims-at-convergence table (:func:`claims_rows`).
CLAIMS_HEADERS: tuple[str, ...] = (
    "experiment", "variant", "final loss", "steps (budget, stop)", "angle free / reg (°)", "margin ratio free / reg",
    "offset free / reg", "rate angle ≈ c/log t", "head alone (°)", "verdict free-bias SVM", "verdict reg-bias SVM",
    "reason (free / reg)")


def claims_rows(name: str, summaries: Mapping[str, Mapping[str, Any]]) -> list[list[str]]:
    """One row per variant of experiment ``name`` for the claims-at-convergence table (:data:`CLAIMS_HEADERS`).

    Each row holds where training stopped (final loss, steps run of the budget, why), the end numbers against the
    free- and the regularised-bias SVM, the fitted rate ``angle(t) ≈ c / log t`` over the tracked steps (c, R², and
    whether the fit holds by :func:`nnboundary.metrics.inverse_log_fit_holds`), the head trained alone on the frozen
    final features, and :func:`nnboundary.analysis.claim_verdict` against each SVM with its reason.
    """
    rows = []
    for label, s in summaries.items():
        if s.get("error"):
            rows.append([name, label, "—", "—", "—", "—", "—", "—", "—", "FAILED", "FAILED", str(s["error"])[:120]])
            continue
        free, reg = claim_verdict(dict(s)), claim_verdict(dict(s), angle_key="angle_deg_reg",
                                                          ratio_key="margin_ratio_reg", offset_key="bias_offset_reg")
        rate = (s.get("rates") or {}).get("step") or {}
        rate_text = ("—" if not rate or rate.get("c") is None else
                     f"c = {format_value('c', rate.get('c'))}, R² {format_value('r2', rate.get('r2'))}"
                     f"{'' if rate.get('holds') else ' (does not hold)'}")
        ha = s.get("head_alone") or {}
        alone = ("—" if not ha else f"{format_value('a', ha.get('angle_start'))} → "
                 f"{format_value('a', ha.get('angle_end'))} in {ha.get('steps_run', ha.get('steps'))} steps")
        def both(k1: str, k2: str, s: Mapping[str, Any] = s) -> str:
            return f"{format_value(k1, s.get(k1))} / {format_value(k2, s.get(k2))}"

        steps = f"{s.get('steps_run', s.get('steps'))} ({s.get('budget_steps', '—')}, {s.get('stop_reason', '—')})"
        rows.append([name, label, format_value("loss", s.get("train_loss", s.get("loss"))), steps,
                     both("angle_deg", "angle_deg_reg"), both("margin_ratio", "margin_ratio_reg"),
                     both("bias_offset", "bias_offset_reg"), rate_text, alone, free["verdict"], reg["verdict"],
                     f"{free['reason']} / {reg['reason']}"])
    return rows


def claims_markdown(results: Sequence[Any]) -> str:
    """The claims-at-convergence table of several runs (objects with ``name`` and ``summaries``, e.g.
    :class:`~nnboundary.experiments.RunResult` or :func:`~nnboundary.experiments.load_run`'s), as markdown."""
    rows = [row for res in results for row in claims_rows(res.name, res.summaries)]
    return _md_table(CLAIMS_HEADERS, rows)


def write_claims(root: str | os.PathLike[str], results: Sequence[Any], *, profile: str) -> Path:
    """Write ``<root>/claims.md``: the claims-at-convergence table of ``results`` (atomically); returns its path."""
    from nnboundary._jsonio import atomic_write

    path = Path(root) / "claims.md"
    text = (f"# Claims at the end of training ({profile} profile)\n\nOne row per run (and SVM); verdicts by "
            "`nnboundary.analysis.claim_verdict`, against the free- and the regularised-bias SVM. The settings of each "
            "run: `<experiment>/config.json` beside this file.\n\n"
            + claims_markdown(results) + "\n")
    return atomic_write(path, lambda fh: fh.write(text))


def profile_differences(config: Mapping[str, Any], reference: Mapping[str, Any] | None) -> list[str]:
    """``["steps 2000 (paper: 50001)", ...]``: the top-level and model settings that differ from ``reference``."""
    if reference is None:
        return []
    out = []
    for key in ("n_samples", "steps", "batch_size", "lr", "optimizer"):
        if config.get(key) != reference.get(key):
            out.append(f"{key} {config.get(key)} (paper: {reference.get(key)})")
    mk, rk = config.get("model_kwargs", {}), reference.get("model_kwargs", {})
    for key in sorted(set(mk) | set(rk)):
        if mk.get(key) != rk.get(key):
            out.append(f"{key} {mk.get(key)} (paper: {rk.get(key)})")
    for cv, rv in zip(config.get("variants", []), reference.get("variants", [])):
        for key in sorted(set(cv["overrides"]) | set(rv["overrides"])):
            a, b = cv["overrides"].get(key), rv["overrides"].get(key)
            if a != b and key not in ("model_kwargs", "track"):
                out.append(f"{cv['label']}: {key} {a} (paper: {b})")
    return out


# ------------------------------------------------------------------------------------------- markdown
def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _transpose(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> tuple[list[str], list[list[str]]]:
    """A one-row table as (metric, value) pairs, which fits next to a figure."""
    return ["metric", "value"], [[h, rows[0][i]] for i, h in enumerate(headers) if i > 0]


def _img(path: str, width: int) -> str:
    return f'<img src="{html.escape(path)}" width="{width}">'


def write_report(run_dir: str | os.PathLike[str], *, config: Mapping[str, Any], summaries: Mapping[str, Mapping[str, Any]],
                 figures: Mapping[str, Sequence[Any]], run_info: Mapping[str, Any],
                 paper_differences: Sequence[str] = (), tracking_errors: Mapping[str, Sequence[Any]] | None = None) -> Path:
    """Write ``run_dir/report.md`` and return its path.

    Parameters
    ----------
    run_dir : path-like
        Figures are referenced relative to it.
    config : dict
        The resolved config (``ExperimentConfig.to_dict()``).
    summaries : mapping label -> summary dict
    figures : mapping label -> sequence of FigureInfo (``kind``, ``path``, ``caption``)
    run_info : dict
        Device, seed, wall time, versions, command.
    paper_differences : sequence of str
        For reduced profiles: how the settings differ from the paper profile.
    tracking_errors : mapping label -> list of {"step", "error"}, optional
    """
    run_dir = Path(run_dir)
    profile = str(config.get("profile", ""))
    name = config.get("name") or "experiment"
    lines = [f"# {name}: {config.get('title', '')}", ""]
    lines += _profile_banner(profile, paper_differences)
    lines += [f"**Source.** original_code.md {config.get('paper_ref', '')}".rstrip(), "",
              f"**Claim tested.** {config.get('claim', '')}", ""]
    if config.get("notes"):
        lines += [f"**Notes.** {config['notes']}", ""]
    headers, rows = summary_rows(summaries)
    main_figs = {label: sorted((f for f in figs if f.kind in ("transformed", "input_space")),
                               key=lambda f: f.kind != "transformed")  # the transformed space first
                 for label, figs in figures.items()}
    lines += ["## Final numbers", ""]
    if len(rows) == 1 and next(iter(main_figs.values()), []):
        th, tr = _transpose(headers, rows)
        fig = next(iter(main_figs.values()))[0]
        lines += ["<table><tr><td valign=\"top\">", "", _html_table(th, tr), "", "</td><td>",
                  _img(fig.path, 640), f"<br><em>{html.escape(fig.caption)}</em>", "</td></tr></table>", ""]
    else:
        lines += [_md_table(headers, rows), ""]
    lines += _status_notes(summaries)
    lines += ["<details><summary>What the columns mean</summary>", ""]
    lines += [f"- **{h}**: {_EXPLAIN[h]}" for h in headers if h in _EXPLAIN]
    lines += ["- **status**: `separable` = the features are linearly separable and the NN fits every training "
              "point (the claim applies); `not fitted` = separable but the NN still misclassifies training "
              "points; `not separable` = no hard-margin SVM exists, the NN is compared with a soft-margin SVM "
              "(C = soft_C) and the claim does not apply; `FAILED` = no analysis (see the error).", "", "</details>", ""]
    lines += ["## Figures", ""]
    for label, figs in figures.items():
        if not figs:
            continue
        if len(figures) > 1:
            lines += [f"### {label}", ""]
        cells = [f"<td>{_img(f.path, 420)}<br><em>{html.escape(f.caption)}</em></td>" for f in figs]
        for i in range(0, len(cells), 2):
            lines += ["<table><tr>" + "".join(cells[i:i + 2]) + "</tr></table>", ""]
    if tracking_errors and any(tracking_errors.values()):
        lines += ["## Tracking evaluations that failed", ""]
        for label, errs in tracking_errors.items():
            for e in errs:
                lines.append(f"- {label} step {e['step']}: {e['error']}")
        lines.append("")
    lines += ["## Settings", "", "Everything above was produced by these settings (also in `config.json`).", "",
              _md_table(["setting", "value"], [[k, f"`{v}`"] for k, v in run_info.items()]), "",
              "```json", _json(config), "```", ""]
    path = run_dir / "report.md"
    tmp = path.with_name(".report.md.tmp")
    tmp.write_text("\n".join(lines), encoding="utf-8")
    os.replace(tmp, path)
    return path


def _profile_banner(profile: str, differences: Sequence[str]) -> list[str]:
    if profile == "paper":
        return ["**Profile: paper** (the original's settings).", ""]
    what = "QUICK" if profile == "quick" else profile.upper()
    if profile == "converge":
        out = ["> **Profile: CONVERGE** — the quick networks and data trained full batch in float64 with the "
               "loss-based step size until the training loss reaches the target or the step budget is used "
               "(see stop_reason below)."]
        if differences:
            out.append("> Differs from the paper profile in: " + "; ".join(differences) + ".")
        return [*out, ""]
    out = [f"> **Profile: {what}** — reduced settings for a CPU run in about a minute; these are *not* the "
           "paper's runs, and a claim about converged training may not be testable at this length."]
    if differences:
        out.append("> Differs from the paper profile in: " + "; ".join(differences) + ".")
    return [*out, ""]


def _status_notes(summaries: Mapping[str, Mapping[str, Any]]) -> list[str]:
    out = []
    for label, s in summaries.items():
        st = status_of(s)
        if st == "FAILED":
            out.append(f"- **{label}: FAILED** — {s.get('error')}")
        elif st == "not separable":
            out.append(f"- **{label}: the last hidden layer's features are NOT linearly separable** (training "
                       f"accuracy {format_value('accuracy', s.get('accuracy'))}); the NN is compared with a "
                       f"soft-margin SVM (C={s.get('svm_C')}), so these numbers do not test the hard-margin claim.")
        elif st == "not fitted":
            out.append(f"- **{label}: not converged** — the features are separable but the NN misclassifies training "
                       f"points (accuracy {format_value('accuracy', s.get('accuracy'))}).")
        if s.get("target_loss") is not None and s.get("stop_reason") != "target_loss":
            out.append(f"- **{label}: target loss NOT reached** — stopped by its "
                       f"{'step budget' if s.get('stop_reason') == 'budget' else 'wall-clock cap (not reproducible)'}"
                       f" after {s.get('steps_run')} of {s.get('budget_steps')} steps at training loss "
                       f"{format_value('loss', s.get('final_loss'))} (target {s.get('target_loss'):g}).")
        elif s.get("stop_reason") == "target_loss":
            out.append(f"- {label}: reached the target loss {s.get('target_loss'):g} after {s.get('steps_run')} of "
                       f"{s.get('budget_steps')} budget steps (final training loss "
                       f"{format_value('loss', s.get('final_loss'))}).")
        if s.get("dead_units"):
            out.append(f"- {label}: {s['dead_units']} dead unit(s) in the transformed space.")
    return [*out, ""] if out else []


def _json(obj: Any) -> str:
    import json

    return json.dumps(obj, indent=2, default=str)
