"""The solver's features as row shards read in chunks: one source for in-memory, memory-mapped and sharded data.

Every pass of a fit over all n points (the normalisation's peak, the whole-data check of each working-set round,
the seed's margins) is a reduction over chunks of rows: each chunk's (rows, K) tables are made, summarised into a
few numbers and a few candidate units, and dropped, so the memory of a pass is one chunk's, never the (n, K) table.
The rows of a :class:`FeatureShards` are

* in memory: the normalised features, materialised once (a chunk is a view, no copy);
* streamed: an ndarray-like too big to copy (``np.memmap``, ...) and the normalisation, applied chunk by chunk;
* sharded: this rank's contiguous shard of the global rows (global row ``offset + i`` is local row ``i``; the
  global order is the shards concatenated in rank order). Rows another rank owns are gathered from it with the
  reducer (``rows``), and so are the small per-rank summaries (``allgather``).

Chunks hold ``chunk_rows`` rows (chosen from a memory budget, see :func:`chunk_rows`), or all local rows when the
features live on an accelerator (``device``: the scores come from there in one product).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from nnboundary.svm._memory import available_bytes
from nnboundary.svm._reducer import LocalReducer

__all__ = ["CHUNK_BYTES", "FeatureShards", "chunk_rows", "subsample"]

#: Memory one chunk of a pass over all points may take (its tables and, when streamed, its feature rows).
CHUNK_BYTES = 64 * 2 ** 20


def chunk_rows(bytes_per_row: float, budget: float | None = None) -> int:
    """Rows per chunk so that a chunk takes at most ``budget`` bytes (default: ``CHUNK_BYTES``, or a quarter of
    the memory available now if that is less); at least 1."""
    if budget is None:
        budget = min(CHUNK_BYTES, available_bytes() / 4)
    return max(1, int(budget // max(bytes_per_row, 1.0)))


def subsample(n: int, size: int) -> np.ndarray:
    """A deterministic subsample of ``size`` global row indices out of ``n`` (sorted): all rows when n ≤ size,
    else a seeded random choice — the same whichever way the rows are split into shards."""
    if n <= size:
        return np.arange(n, dtype=np.int64)
    return np.sort(np.random.default_rng(0).choice(n, size=size, replace=False)).astype(np.int64)


class FeatureShards:
    """Rows of the solver's features H (global shape (n_total, d)), this rank holding rows offset..offset+n_local.

    ``data``: the local rows, either H itself (``transform=None``) or raw features from which ``transform(block)``
    makes H's rows (a float64 copy). ``device``: H's local rows on an accelerator (``_backend.DeviceFeatures``).
    """

    def __init__(self, data, *, transform: Callable[[np.ndarray], np.ndarray] | None = None, offset: int = 0,
                 n_total: int | None = None, reducer=None, rows_per_chunk: int | None = None, device=None,
                 n_features: int | None = None):
        self.data, self.transform, self.device = data, transform, device
        self.reducer = LocalReducer() if reducer is None else reducer
        self.n_local = int(data.shape[0])
        self.offset = int(offset)
        self.n_total = self.n_local if n_total is None else int(n_total)
        self.n_features = int(data.shape[1]) if n_features is None else int(n_features)
        self.rows_per_chunk = self.n_local if rows_per_chunk is None or device is not None else int(rows_per_chunk)
        self.chunk_calls = 0  # chunks read so far (tests check that a pass is chunked)
        self._subsamples: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def sharded(self) -> bool:
        return self.reducer.world_size > 1

    @property
    def in_memory(self) -> bool:
        """True when the local rows are H itself (a chunk is a view of it)."""
        return self.transform is None

    def allgather(self, obj) -> list:
        """Every rank's ``obj``, by rank (``[obj]`` in one process)."""
        return self.reducer.allgather(obj) if self.sharded else [obj]

    def block(self, start: int, stop: int) -> np.ndarray:
        """H's local rows start..stop (local indices), shape (stop − start, d)."""
        self.chunk_calls += 1
        rows = self.data[start:stop]
        return rows if self.transform is None else self.transform(np.asarray(rows))

    def chunks(self) -> Iterator[tuple[int, int, np.ndarray | None]]:
        """(global start, number of rows, H rows or None when the device scores them) for each local chunk."""
        step = max(self.rows_per_chunk, 1)
        for start in range(0, self.n_local, step):
            stop = min(start + step, self.n_local)
            yield self.offset + start, stop - start, (None if self.device is not None else self.block(start, stop))

    def local_rows(self, local: np.ndarray) -> np.ndarray:
        """H's rows at sorted local indices, shape (len(local), d); streamed rows are read and normalised a chunk
        at a time into the result, so the memory is the result plus one chunk."""
        if self.transform is None:
            return self.data[local]
        local = np.asarray(local, dtype=np.int64)
        out = np.empty((len(local), self.n_features))
        step = max(self.rows_per_chunk, 1)
        for start in range(0, len(local), step):
            out[start:start + step] = self.transform(np.asarray(self.data[local[start:start + step]]))
        return out

    def rows(self, samples: np.ndarray) -> np.ndarray:
        """H's rows at sorted, distinct global indices, shape (len(samples), d); gathered from their owners when
        sharded (a collective: every rank calls it with the same ``samples``). O(len(samples)·d) memory."""
        samples = np.asarray(samples, dtype=np.int64)
        lo, hi = np.searchsorted(samples, [self.offset, self.offset + self.n_local])
        mine = self.local_rows(samples[lo:hi] - self.offset)
        if not self.sharded:
            if hi - lo != len(samples):
                raise IndexError("sample indices outside the features' rows")
            return mine
        parts = self.allgather(mine)
        return np.concatenate(parts) if parts else np.zeros((0, self.n_features))

    def subsample_rows(self, size: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(global indices (m,), H's rows (m, d)) of :func:`subsample` (n_total, size), gathered once (a
        collective) and kept for the K problems of one-vs-rest — on rank 0 only, which computes the seed from them:
        the other ranks get None for the rows. O(m·d) memory."""
        if size not in self._subsamples:
            samples = subsample(self.n_total, size)
            rows = self.rows(samples)
            self._subsamples[size] = (samples, rows if self.reducer.rank == 0 or not self.sharded else None)
        return self._subsamples[size]

    def reduce_max(self, value: float) -> float:
        """The largest of every rank's ``value``."""
        return float(max(self.allgather(float(value))))


class GatheredRows:
    """The rows of a few global samples, gathered once: what a restricted QP reads (no collective), shape
    (len(samples), d). ``rows`` accepts any sorted subset of ``samples``."""

    def __init__(self, samples: np.ndarray, H: np.ndarray, n_total: int):
        self.samples, self.H, self.n_total = samples, H, n_total
        self.n_features = H.shape[1]
        self.sharded = False

    def rows(self, samples: np.ndarray) -> np.ndarray:
        where = np.searchsorted(self.samples, samples)
        if len(samples) and (where.max() >= len(self.samples) or not np.array_equal(self.samples[where], samples)):
            raise IndexError("rows asked of a restricted problem outside its working set")
        return self.H[where]
