"""nnboundary: where a deep network puts its decision boundary, measured against the max-margin SVM."""

__version__ = "0.1.0"

from nnboundary.analysis import Analysis, analyze, analyze_features  # noqa: E402
from nnboundary.features import describe, extract_features, split_classifier  # noqa: E402
from nnboundary.svm import MaxMarginClassifier, NotSeparableError  # noqa: E402
from nnboundary.tracking import AlignmentTracker  # noqa: E402

__all__ = ["AlignmentTracker", "Analysis", "MaxMarginClassifier", "NotSeparableError", "analyze", "analyze_features",
           "describe", "extract_features", "split_classifier", "__version__"]
