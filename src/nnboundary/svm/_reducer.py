"""Reducers: how the processes of a sharded fit (torchrun, SPMD) exchange their small summaries.

A reducer is any object with ``rank: int``, ``world_size: int`` and ``allgather(obj) -> list`` (every rank's
``obj``, in rank order; ``obj`` is a small picklable Python / NumPy object). ``MaxMarginClassifier.fit(X_shard,
y_shard, reducer=...)`` is then called on every rank with that rank's contiguous shard of the rows (the global
order is the shards concatenated in rank order). :class:`LocalReducer` is the one-process reducer (the default);
``nnboundary.distributed.TorchReducer`` implements the same three members on ``torch.distributed`` (this package
imports no torch).
"""

from __future__ import annotations

__all__ = ["LocalReducer", "check_reducer"]


class LocalReducer:
    """The reducer of a single process: rank 0 of 1; ``allgather(obj)`` is ``[obj]``."""

    rank = 0
    world_size = 1

    def allgather(self, obj) -> list:
        return [obj]


def check_reducer(reducer):
    """``reducer`` (None: :class:`LocalReducer`), checked for the three members a fit uses."""
    if reducer is None:
        return LocalReducer()
    missing = [name for name in ("rank", "world_size", "allgather") if not hasattr(reducer, name)]
    if missing:
        raise TypeError(f"reducer must have rank, world_size and allgather(obj) -> list; {type(reducer).__name__} "
                        f"lacks {', '.join(missing)}. Pass nnboundary.svm.LocalReducer() or a TorchReducer.")
    if not (0 <= int(reducer.rank) < int(reducer.world_size)):
        raise ValueError(f"reducer.rank={reducer.rank} must lie in 0..world_size-1 (world_size={reducer.world_size}).")
    return reducer
