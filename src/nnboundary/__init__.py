"""nnboundary: where a deep network puts its decision boundary, measured against the max-margin SVM."""
__version__ = "0.1.0"

from nnboundary.svm import MaxMarginClassifier, NotSeparableError  # noqa: E402

__all__ = ["MaxMarginClassifier", "NotSeparableError", "__version__"]
