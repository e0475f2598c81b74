"""Exact, certified maximum-margin linear classifiers on features (``MaxMarginClassifier``).

The QP is solved exactly inside a working-set loop (see ``_working_set`` for why that is exact) by the cheaper of two
dense interior-point methods, the primal one of ``_ipm`` and the dual one of ``_dual`` (Clarabel as the fallback that
certifies infeasibility); liblinear's dual coordinate descent picks the first working set (``_warm_start``).
"""

from nnboundary.svm._estimator import MaxMarginClassifier, NotSeparableError
from nnboundary.svm._memory import InsufficientMemoryError
from nnboundary.svm._qp import QPSolverError
from nnboundary.svm._reducer import LocalReducer
from nnboundary.svm._working_set import RoundProgress

__all__ = ["InsufficientMemoryError", "LocalReducer", "MaxMarginClassifier", "NotSeparableError", "QPSolverError", "RoundProgress"]
