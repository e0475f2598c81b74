"""``analyze``: compare a classifier's last layer with the max-margin SVM on its own features.

:mod:`~nnboundary.analysis.api` holds the entry points, :func:`analyze` (a model and its data) and
:func:`analyze_features` (features and a head); :mod:`~nnboundary.analysis.core` is the analysis in memory (every
number and the :class:`Analysis` result), with :mod:`~nnboundary.analysis.fitting` (the SVMs),
:mod:`~nnboundary.analysis.tables` (the per-pair and per-point tables) and :mod:`~nnboundary.analysis.verdict` (the
verdict words); :mod:`~nnboundary.analysis.streamed` runs the same analysis **streamed** over features larger than
memory (a memory-mapped file) and **sharded** over the ranks of a torchrun job: chunked passes whose per-rank sums,
minima and counts are combined, never a gather of the features.
"""

from nnboundary.analysis.api import analyze, analyze_features
from nnboundary.analysis.core import SUMMARY_KEYS, Analysis
from nnboundary.analysis.fitting import default_svm, fit_svm, fit_svms
from nnboundary.analysis.streamed import CHUNK_BYTES
from nnboundary.analysis.verdict import CLOSENESS, VERDICT_THRESHOLDS, claim_status, claim_verdict, closeness, verdict

__all__ = ["Analysis", "analyze", "analyze_features", "default_svm", "fit_svm", "fit_svms", "SUMMARY_KEYS", "CLOSENESS",
           "CHUNK_BYTES", "claim_status", "closeness", "verdict", "claim_verdict", "VERDICT_THRESHOLDS"]
