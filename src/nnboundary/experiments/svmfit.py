"""The one hard-then-soft SVM fallback of the experiment kinds.

Every experiment compares a network with the *hard*-margin SVM when the points are separable, and with a
soft-margin SVM of a stated ``C`` when they are not (the analysis layer does the same for the transformed
space inside :func:`nnboundary.analysis.analyze`)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["fit_hard_then_soft"]


def fit_hard_then_soft(X: np.ndarray, y: np.ndarray, *, soft_C: float,
                       multiclass: str = "crammer_singer") -> tuple[Any, bool]:
    """Fit the exact hard-margin SVM on ``(X, y)``; if they are not separable, the soft margin ``soft_C``.

    Parameters
    ----------
    X : ndarray of shape (N, D)
    y : ndarray of shape (N,)
    soft_C : float
        C of the soft-margin fallback.
    multiclass : {"crammer_singer", "ovr"}, default="crammer_singer"

    Returns
    -------
    svm : MaxMarginClassifier
        Fitted.
    separable : bool
        True if ``svm`` is the hard-margin one.
    """
    from nnboundary.svm import MaxMarginClassifier, NotSeparableError

    try:
        return MaxMarginClassifier(C=None, multiclass=multiclass).fit(X, y), True
    except NotSeparableError:
        return MaxMarginClassifier(C=soft_C, multiclass=multiclass).fit(X, y), False
