"""BLAS thread pools for the solvers: one thread for the whole of a fit.

The products of a fit are thin (n×d by d×K) and BLAS threads that spin beside other work made them 20–40× slower on
a shared 2-core machine. Even the dual method's Cholesky factors of a few thousand rows, where two threads should
help, ran 2.4× slower with two threads than with one on this 2-core machine while other processes were running
(K=100, d=512, n=20,000: 112 s against 46 s), so a fit keeps one thread throughout.
"""

from __future__ import annotations

import functools

from threadpoolctl import ThreadpoolController


@functools.cache
def blas_controller() -> ThreadpoolController:
    """The thread pools of the BLAS libraries loaded now (numpy's, scipy's), found once: a fresh search of every
    loaded library per fit took 6 ms with torch loaded, a third of a small fit."""
    return ThreadpoolController()


def one_thread():
    """Context: BLAS limited to one thread (the whole of a fit)."""
    return blas_controller().limit(limits=1, user_api="blas")
