"""Exact, certified maximum-margin linear classifiers on features (``MaxMarginClassifier``).

The QP is solved exactly inside a working-set loop (see ``_working_set`` for why that is exact) by the cheaper of two
dense interior-point methods, the primal one of ``_ipm`` and the dual one of ``_dual`` (Clarabel as the fallback that
certifies infeasibility); liblinear's dual coordinate descent picks the first working set (``_warm_start``). The passes over all points are
reductions over chunks of rows and over the shards of several processes (``_shards``, ``_scan``): features may be
memory-mapped, and ``fit(..., reducer=)`` takes one shard per rank (``LocalReducer``: one process).
"""

from nnboundary.svm._estimator import MaxMarginClassifier, NotSeparableError
from nnboundary.svm._memory import InsufficientMemoryError, check_memory
from nnboundary.svm._qp import QPSolverError
from nnboundary.svm._reducer import LocalReducer
from nnboundary.svm._working_set import RoundProgress

__all__ = ["InsufficientMemoryError", "LocalReducer", "check_memory", "MaxMarginClassifier", "NotSeparableError", "QPSolverError", "RoundProgress"]
