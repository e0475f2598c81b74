"""The one ``torch.distributed`` layer of nnboundary: process group, shards and the few collectives it needs.

nnboundary runs under ``torchrun`` (one process per rank) on PyTorch's own engine, ``torch.distributed``; there is
no engine of its own. Everything here also works **without** an initialised process group: that is the
one-process case (rank 0 of a world of 1), so library code calls these functions unconditionally and a plain
``python script.py`` behaves exactly as before.

* :func:`init_from_env` starts the default process group from torchrun's environment (``WORLD_SIZE``,
  ``RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), gloo on CPU and nccl on CUDA (:mod:`nnboundary.device` decides).
* :func:`rank`, :func:`world_size`, :func:`is_main`, :func:`barrier`: who am I, how many are we, wait for all.
* :func:`shard_range`: this rank's contiguous block of ``n`` items; the shards in rank order are the global order.
* :func:`all_gather_objects`, :func:`broadcast_object`: small picklable objects (settings, results, states).
* :func:`all_gather_rows`: arrays with a different number of rows per rank, concatenated in rank order,
  bit-exact for every fixed-size dtype (float64 included: the bytes travel, not a conversion).
* :func:`run_on_main`, :func:`run_on_all`: run a step on rank 0 (result broadcast) or on every rank, and make an
  exception on one rank an exception on all of them (no rank is left waiting in a collective).
* :func:`unwrap_model`: the module inside ``DistributedDataParallel`` / ``DataParallel``.
* :class:`TorchReducer`: the reducer object the SVM solver takes (``rank``, ``world_size``, ``allgather``); the
  solver itself (``svm/``) never imports torch.

This is a bottom-level utility (like ``device.py``): it imports only torch, numpy and ``nnboundary.device``.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from nnboundary.device import resolve_device

__all__ = ["init_from_env", "rank", "world_size", "is_main", "barrier", "shard_range", "all_gather_objects",
           "broadcast_object", "all_gather_rows", "TorchReducer", "is_distributed", "run_on_main", "run_on_all",
           "unwrap_model", "RankError"]

T = TypeVar("T")


class RankError(RuntimeError):
    """Raised on the ranks where a collective step did *not* fail, when another rank's did (its message says which
    rank and why), so that every rank stops at the same point instead of waiting forever for the failed one."""


logger = logging.getLogger(__name__)


def _initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def init_from_env(backend: str | None = None, *, timeout: timedelta | None = None) -> bool:
    """Initialise the default process group from torchrun's environment when there is more than one process.

    Parameters
    ----------
    backend : {"gloo", "nccl", None}, default=None
        None picks nccl when CUDA is available here (``nnboundary.device.resolve_device()``), else gloo. With nccl,
        the process's CUDA device is set to ``LOCAL_RANK`` first.
    timeout : timedelta, default=None
        How long a collective may wait for the other ranks (torch's default: 30 min for gloo, 10 min for nccl).
        Work done on rank 0 alone while the others wait (an SVM fit of the tracker, the restricted problem of a
        distributed solve) must finish within it.

    Returns
    -------
    bool
        True when running distributed (a process group with more than one rank exists afterwards, whether this
        call or the caller created it); False for the one-process case (``WORLD_SIZE`` unset or 1), in which
        nothing is initialised.

    Raises
    ------
    RuntimeError
        ``WORLD_SIZE > 1`` but this torch build has no ``torch.distributed``, or ``MASTER_ADDR``/``MASTER_PORT`` are
        missing (start the program with ``torchrun``, which sets them).
    """
    if _initialized():
        return dist.get_world_size() > 1
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return False
    if not dist.is_available():
        raise RuntimeError(f"WORLD_SIZE={world} but this PyTorch build has no torch.distributed; run one process.")
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise RuntimeError(f"WORLD_SIZE={world} but {', '.join(missing)} not set: start the program with "
                           "`torchrun --nproc-per-node=N ...`, which sets them.")
    if backend is None:
        backend = "nccl" if resolve_device(None).type == "cuda" and dist.is_nccl_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend, init_method="env://",
                            **({} if timeout is None else {"timeout": timeout}))
    logger.info("torch.distributed: rank %d of %d (%s).", dist.get_rank(), dist.get_world_size(), backend)
    return True


def is_distributed() -> bool:
    """True when a process group with more than one rank is initialised."""
    return _initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank in the default group; 0 without a process group."""
    return _this_rank()


def _this_rank() -> int:
    return dist.get_rank() if _initialized() else 0


def world_size() -> int:
    """Number of ranks in the default group; 1 without a process group."""
    return dist.get_world_size() if _initialized() else 1


def is_main() -> bool:
    """True on rank 0 (the rank that writes files and logs); always True in one process."""
    return rank() == 0


def barrier() -> None:
    """Wait until every rank reaches this point; nothing to wait for in one process."""
    if is_distributed():
        dist.barrier()


def shard_range(n: int, rank: int | None = None, world: int | None = None) -> tuple[int, int]:
    """This rank's contiguous block ``[start, stop)`` of ``n`` items.

    The first ``n % world`` ranks get one item more, so sizes differ by at most one, and concatenating the blocks
    in rank order gives ``range(n)`` (the global order is the one-process order). A rank may get an empty block
    when ``n < world``.

    Parameters
    ----------
    n : int
        Number of items (>= 0).
    rank, world : int, default=None
        Default: this process's :func:`rank` and :func:`world_size`.
    """
    r = _this_rank() if rank is None else int(rank)
    w = world_size() if world is None else int(world)
    if n < 0 or w < 1 or not 0 <= r < w:
        raise ValueError(f"shard_range needs n >= 0, world >= 1 and 0 <= rank < world; got n={n}, rank={r}, "
                         f"world={w}.")
    base, extra = divmod(int(n), w)
    start = r * base + min(r, extra)
    return start, start + base + (1 if r < extra else 0)


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), as a list indexed by rank; ``[obj]`` in one process.

    Meant for small objects (settings, summaries, candidate lists): each is pickled and sent to every rank,
    O(world · size) memory per rank. Arrays of many rows go through :func:`all_gather_rows`.
    """
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (the others' argument is ignored); ``obj`` itself in one process."""
    if not is_distributed():
        return obj
    box = [obj if dist.get_rank() == src else None]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def _collective_device() -> torch.device:
    """Where tensors for a collective must live: the current CUDA device for nccl, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_gather_rows(arr: Any) -> np.ndarray:
    """Concatenate every rank's rows in rank order: ``(n_r, *shape)`` on rank r -> ``(sum n_r, *shape)`` everywhere.

    Row counts may differ between ranks (an empty shard is fine); the trailing shape and the dtype must agree (an
    error says which rank differs). The raw bytes are gathered, so the result is bit-identical to the inputs for
    every fixed-size dtype (float64, int64, bool, ...). One process: a copy of ``arr`` as an ndarray.

    Memory: each rank receives ``world · max_r n_r`` rows (shards are padded to the largest) plus the result,
    about twice the gathered size; time is one all-gather of that many bytes.

    Parameters
    ----------
    arr : array-like of shape (n_r, *shape)
        This rank's rows (a tensor is moved to the CPU).
    """
    if isinstance(arr, torch.Tensor):
        arr = arr.detach().cpu().numpy()
    a = np.asarray(arr)
    if a.ndim == 0:
        raise ValueError("all_gather_rows needs an array with a row axis (ndim >= 1), got a scalar.")
    a = np.ascontiguousarray(a)
    if not is_distributed():
        return a.copy()
    metas = all_gather_objects((a.shape[0], a.shape[1:], a.dtype.str))
    counts = [m[0] for m in metas]
    _, shape0, dtype0 = metas[0]
    for r, (_, shape, dtype) in enumerate(metas):
        if shape != shape0 or dtype != dtype0:  # the same message on every rank
            raise ValueError(f"all_gather_rows: rank {r} has rows of shape {shape} and dtype {dtype}, rank 0 of "
                             f"shape {shape0} and dtype {dtype0}; every rank must pass the same trailing shape "
                             "and dtype.")
    if a.dtype.hasobject:
        return np.concatenate(all_gather_objects(a), axis=0)
    row_bytes = a.dtype.itemsize * int(np.prod(a.shape[1:], dtype=np.int64))
    top = max(counts)
    if top == 0 or row_bytes == 0:
        return np.empty((sum(counts), *a.shape[1:]), dtype=a.dtype)
    dev = _collective_device()
    local = torch.zeros((top, row_bytes), dtype=torch.uint8, device=dev)
    if a.shape[0]:
        raw_local = a.reshape(a.shape[0], -1).view(np.uint8)
        if dev.type == "cpu":
            local.numpy()[: a.shape[0]] = raw_local  # no extra copy; works for read-only (memmap) inputs
        else:
            local[: a.shape[0]] = torch.tensor(raw_local, device=dev)
    parts = [torch.empty_like(local) for _ in counts]
    dist.all_gather(parts, local)
    raw = np.concatenate([p[:c].cpu().numpy() for p, c in zip(parts, counts)], axis=0)
    return raw.view(a.dtype).reshape(sum(counts), *a.shape[1:])


class TorchReducer:
    """The reducer the SVM solver takes for per-rank shards, backed by ``torch.distributed``.

    ``fit(X_shard, y_shard, reducer=TorchReducer())``: the solver asks ``reducer.rank``, ``reducer.world_size``
    and ``reducer.allgather(obj)`` (every rank's ``obj`` by rank) and never imports torch. Without a process group
    it is the one-process reducer (rank 0 of 1).
    """

    @property
    def rank(self) -> int:
        """This process's rank."""
        return rank()

    @property
    def world_size(self) -> int:
        """Number of ranks."""
        return world_size()

    def allgather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, indexed by rank (:func:`all_gather_objects`)."""
        return all_gather_objects(obj)

    def __repr__(self) -> str:
        return f"TorchReducer(rank={self.rank}, world_size={self.world_size})"


def _portable(err: BaseException) -> BaseException:
    """``err`` itself if it survives pickling (to travel to the other ranks), else a RuntimeError with its text."""
    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:  # noqa: BLE001 - any unpicklable exception becomes a plain one
        return RuntimeError(f"{type(err).__name__}: {err}")


def run_on_main(fn: Callable[[], T], src: int = 0) -> T:
    """Run ``fn()`` on rank ``src`` only and return its result on every rank (broadcast, so it must pickle).

    If ``fn`` raises on rank ``src``, every rank raises that exception (a copy of it on the others), so that no
    rank waits for a result that never comes. In one process this is just ``fn()``. A collective: every rank must
    call it at the same point.
    """
    if not is_distributed():
        return fn()
    if dist.get_rank() == src:
        try:
            value = fn()
        except Exception as err:  # noqa: BLE001 - re-raised here and, as a copy, on every other rank
            broadcast_object((False, _portable(err)), src=src)
            raise
        broadcast_object((True, value), src=src)
        return value
    ok, value = broadcast_object(None, src=src)
    if not ok:
        raise value
    return value


def run_on_all(fn: Callable[[], T]) -> T:
    """Run ``fn()`` on every rank; if it raises on any rank, raise on every rank.

    The failed ranks raise their own exception; the others raise :class:`RankError` naming the first failed rank
    and its message. Costs one small all-gather; in one process this is just ``fn()``. A collective.
    """
    if not is_distributed():
        return fn()
    try:
        value, err = fn(), None
    except Exception as exc:  # noqa: BLE001 - re-raised below, on every rank
        value, err = None, exc
    failed = [(r, msg) for r, msg in enumerate(all_gather_objects(
        None if err is None else f"{type(err).__name__}: {err}")) if msg is not None]
    if err is not None:
        raise err
    if failed:
        r, msg = failed[0]
        raise RankError(f"Rank {r} failed ({msg}); rank {dist.get_rank()} stops too.")
    return value  # type: ignore[return-value]


def unwrap_model(model: Any) -> Any:
    """The user's module inside ``DistributedDataParallel`` or ``DataParallel`` (nested wrappers too); any other
    object unchanged.

    Analyse the unwrapped module: its layer names are those of a one-process run (``fc``, not ``module.fc``), and
    its forward pass is local (a DDP forward may broadcast buffers, a collective that would wait for ranks that are
    not running the model).
    """
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return model
