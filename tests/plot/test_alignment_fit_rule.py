"""The alignment figure draws the c/log t reference only where the fit holds (metrics.inverse_log_fit_holds)."""

from __future__ import annotations

import numpy as np

from nnboundary.plot.curves import alignment_figure


def _legend(fig):
    return [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]


def test_fit_is_drawn_where_it_holds_and_only_there():
    t = np.array([1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000], dtype=float)
    good = alignment_figure({"step": t, "angle_deg": 30.0 / np.log(np.maximum(t, 2.0))}, metrics=["angle_deg"])
    drawn = [s for s in _legend(good) if s.startswith("fit c/log t")]
    assert len(drawn) == 1 and "c = 30" in drawn[0] and "6 points" in drawn[0]
    flat = alignment_figure({"step": t, "angle_deg": 20.0 + 0 * t}, metrics=["angle_deg"])
    assert not any(s.startswith("fit ") for s in _legend(flat))
    assert any("does not hold" in s and "not drawn" in s for s in _legend(flat))
    short = t[:6]  # 1..50: the later half spans under a decade (10..50)
    few = alignment_figure({"step": short, "angle_deg": 30.0 / np.log(np.maximum(short, 2.0))}, metrics=["angle_deg"])
    assert any("does not hold" in s for s in _legend(few))  # an exact 1/log t, but too short to tell
