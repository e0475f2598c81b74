"""``analyze``: compare a classifier's last layer with the max-margin SVM on its own features.

:mod:`~nnboundary.analysis.api` holds the entry points, :func:`analyze` (a model and its data) and
:func:`analyze_features` (features and a head); :mod:`~nnboundary.analysis.core` is the analysis in memory (the SVMs,
every number, the :class:`Analysis` result and the verdict words); :mod:`~nnboundary.analysis.streamed` runs the same
analysis **streamed** over features larger than memory (a memory-mapped file) and **sharded** over the ranks of a
torchrun job: chunked passes whose per-rank sums, minima and counts are combined, never a gather of the features.
"""

from nnboundary.analysis.api import analyze, analyze_features
from nnboundary.analysis.core import (CLOSENESS, SUMMARY_KEYS, VERDICT_THRESHOLDS, Analysis, claim_status,
                                      claim_verdict, closeness, default_svm, fit_svm, fit_svms, verdict)
from nnboundary.analysis.streamed import CHUNK_BYTES

__all__ = ["Analysis", "analyze", "analyze_features", "default_svm", "fit_svm", "fit_svms", "SUMMARY_KEYS", "CLOSENESS",
           "CHUNK_BYTES", "claim_status", "closeness", "verdict", "claim_verdict", "VERDICT_THRESHOLDS"]
