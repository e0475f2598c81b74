"""Exact, certified maximum-margin linear classifiers on features (``MaxMarginClassifier``).

The QP is solved exactly by a dense interior-point method (``_ipm``, Clarabel as the fallback that certifies
infeasibility) inside a working-set loop; see ``_working_set`` for why that is exact.
"""

from nnboundary.svm._estimator import MaxMarginClassifier, NotSeparableError
from nnboundary.svm._qp import QPSolverError

__all__ = ["MaxMarginClassifier", "NotSeparableError", "QPSolverError"]
