"""Figures: decision regions and boundaries of the NN and the SVM in 2-D, overlays, training snapshots,
the bias experiment, and alignment curves.

Displays (:class:`BoundaryDisplay`, :class:`OverlayDisplay`) compute on a grid in their ``from_*``
classmethods, with no matplotlib involved, and draw in ``plot(ax=None)``. The ``plot_*`` functions lay out
whole figures on an Agg canvas (no pyplot state) and write them atomically, returning the path.
matplotlib is imported only when something is drawn, so importing this package stays light.

Examples
--------
>>> import numpy as np
>>> from nnboundary.plot import BoundaryDisplay
>>> H = np.array([[0.0, 0.0], [1.0, 0.5], [0.2, 1.0], [1.2, 1.4]]); y = np.array([0, 1, 0, 1])
>>> disp = BoundaryDisplay.from_linear(np.array([[1.0, 0.0]]), np.array([-0.6]), H, y, resolution=50)
>>> disp.region.shape, int(disp.region.max())
((50, 50), 1)
"""

from nnboundary.plot._grid import MAX_DISPLAY_POINTS, auto_window, make_grid
from nnboundary.plot.curves import fit_inverse_log, plot_alignment_curves
from nnboundary.plot.regions import (
    BoundaryDisplay,
    OverlayDisplay,
    plot_input_space,
    plot_nn_vs_svm,
    plot_nn_vs_svms,
    plot_snapshots,
    plot_three_panel_bias,
    plot_training_data,
    snapshot_displays,
)

__all__ = [
    "MAX_DISPLAY_POINTS",
    "BoundaryDisplay",
    "OverlayDisplay",
    "auto_window",
    "fit_inverse_log",
    "make_grid",
    "plot_alignment_curves",
    "plot_input_space",
    "plot_nn_vs_svm",
    "plot_nn_vs_svms",
    "plot_snapshots",
    "plot_three_panel_bias",
    "plot_training_data",
    "snapshot_displays",
]
