"""Tests of nnboundary.distributed: the one-process case, and the collectives on 2 CPU processes (gloo).

:func:`run_ranks` (a free port, ``torch.multiprocessing`` spawn, a timeout) is also what the other multi-process
tests use.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import time
from datetime import timedelta
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from nnboundary import distributed as D

gloo = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                          reason="torch.distributed with the gloo backend is not available")


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, world: int, port: int, fn: Callable[..., Any], args: tuple[Any, ...],
           env: dict[str, str]) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(world),
                       "RANK": str(rank), "LOCAL_RANK": str(rank), "NODE_RANK": "0", "OMP_NUM_THREADS": "1",
                       **env})
    torch.set_num_threads(1)
    try:
        fn(rank, world, *args)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run_ranks(fn: Callable[..., Any], *args: Any, world: int = 2, timeout: float = 120.0,
              env: dict[str, str] | None = None) -> None:
    """Run ``fn(rank, world, *args)`` in ``world`` fresh processes with torchrun's environment variables set.

    ``fn`` must be a module-level function (it is pickled by name) and calls
    :func:`nnboundary.distributed.init_from_env` itself (or lets Lightning do it). A failure in any process is
    re-raised here with its traceback; processes still running after ``timeout`` seconds are killed and the test
    fails (a collective that never completes).

    The processes come from a fork server that imported ``fn``'s module (torch, nnboundary) once for the whole
    session, so each start costs a fork instead of a Python start-up and its imports; where there is no fork
    server, they are spawned.
    """
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    if method == "forkserver":
        # imported by the server when it starts (at the first call); later calls' modules load in each process
        multiprocessing.set_forkserver_preload(sorted({__name__, fn.__module__} - {"__main__"}))
    ctx = mp.start_processes(_entry, args=(world, free_port(), fn, args, env or {}), nprocs=world, join=False,
                             start_method=method)
    deadline = time.monotonic() + timeout
    while not ctx.join(timeout=1.0):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                if p.is_alive():
                    p.kill()
            pytest.fail(f"{world} processes did not finish within {timeout:.0f} s (a collective hung?)")


# ----------------------------------------------------------------------------- one process (no process group)


def test_one_process_is_rank_0_of_1_and_the_collectives_are_identities(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert D.init_from_env() is False and not dist.is_initialized()
    assert (D.rank(), D.world_size(), D.is_main(), D.is_distributed()) == (0, 1, True, False)
    D.barrier()
    obj = {"a": [1, 2]}
    assert D.all_gather_objects(obj) == [obj] and D.broadcast_object(obj) is obj
    x = np.arange(6.0).reshape(3, 2)
    g = D.all_gather_rows(x)
    assert np.array_equal(g, x) and g is not x
    assert np.array_equal(D.all_gather_rows(torch.ones(2, 3, dtype=torch.float64)), np.ones((2, 3)))
    assert D.run_on_main(lambda: 7) == 7 and D.run_on_all(lambda: 8) == 8
    r = D.TorchReducer()
    assert (r.rank, r.world_size, r.allgather("x")) == (0, 1, ["x"])
    with pytest.raises(ValueError, match="row axis"):
        D.all_gather_rows(np.float64(1.0))


def test_init_from_env_with_world_size_1_initialises_nothing(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert D.init_from_env() is False and not dist.is_initialized()


def test_init_from_env_without_torchrun_variables_says_how_to_start(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    for k in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(RuntimeError, match="torchrun"):
        D.init_from_env()
    assert not dist.is_initialized()


@pytest.mark.parametrize("n", [0, 1, 2, 7, 10, 101])
@pytest.mark.parametrize("world", [1, 2, 3, 8])
def test_shard_range_blocks_cover_range_n_in_rank_order_and_differ_by_at_most_one(n, world):
    blocks = [D.shard_range(n, r, world) for r in range(world)]
    assert [i for a, b in blocks for i in range(a, b)] == list(range(n))
    sizes = [b - a for a, b in blocks]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_shard_range_defaults_to_this_process_and_refuses_bad_arguments():
    assert D.shard_range(5) == (0, 5)
    for bad in [(-1, 0, 1), (5, 2, 2), (5, 0, 0), (5, -1, 2)]:
        with pytest.raises(ValueError, match="shard_range"):
            D.shard_range(*bad)


def test_unwrap_model_reaches_the_module_inside_data_parallel():
    inner = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 2))
    assert D.unwrap_model(torch.nn.DataParallel(torch.nn.DataParallel(inner))) is inner
    assert D.unwrap_model(inner) is inner


def test_run_on_main_and_run_on_all_raise_the_error_itself_in_one_process():
    def boom() -> None:
        raise KeyError("nope")

    for run in (D.run_on_main, D.run_on_all):
        with pytest.raises(KeyError, match="nope"):
            run(boom)


# ----------------------------------------------------------------------------- two processes (gloo)


class _Unpicklable(Exception):
    def __reduce__(self):
        raise TypeError("cannot pickle this")


def _collectives(rank: int, world: int, out: str) -> None:
    assert D.init_from_env(timeout=timedelta(seconds=120)) is True and D.init_from_env() is True  # idempotent
    assert (D.rank(), D.world_size(), D.is_main()) == (rank, world, rank == 0)
    assert dist.get_backend() == "gloo"
    # float64 rows of different counts per rank (rank 1 holds 3, rank 0 holds 5), bit-exact, in rank order
    rng = np.random.default_rng(0)
    full = rng.normal(size=(8, 3)) * 10.0 ** rng.integers(-300, 300, size=(8, 3))
    a, b = (0, 5) if rank == 0 else (5, 8)
    got = D.all_gather_rows(full[a:b])
    assert got.dtype == np.float64 and got.tobytes() == full.tobytes()
    # an empty shard, ints, bools and a 3-d block
    ints = D.all_gather_rows(np.zeros((0, 2), np.int64) if rank == 0 else np.arange(4, dtype=np.int64).reshape(2, 2))
    assert ints.dtype == np.int64 and ints.tolist() == [[0, 1], [2, 3]]
    bools = D.all_gather_rows(np.array([True, False, True][rank:]))
    assert bools.tolist() == [True, False, True, False, True]
    cube = D.all_gather_rows(np.full((1, 2, 2), rank, dtype=np.float32))
    assert cube.shape == (2, 2, 2) and cube[1].tolist() == [[1.0, 1.0], [1.0, 1.0]]
    empty = D.all_gather_rows(np.zeros((0, 4)))
    assert empty.shape == (0, 4)
    with pytest.raises(ValueError, match="rank 1 has rows of shape"):
        D.all_gather_rows(np.zeros((1, 2 + rank)))
    with pytest.raises(ValueError, match="dtype"):
        D.all_gather_rows(np.zeros((1, 2), dtype=np.float64 if rank == 0 else np.float32))
    # objects
    assert D.all_gather_objects({"r": rank}) == [{"r": 0}, {"r": 1}]
    assert D.broadcast_object("from 0" if rank == 0 else "ignored") == "from 0"
    assert D.broadcast_object(rank, src=1) == 1
    reducer = D.TorchReducer()
    assert (reducer.rank, reducer.world_size, reducer.allgather(rank * 2)) == (rank, 2, [0, 2])
    # run_on_main: the result on every rank; rank 0's error (even an unpicklable one) raised on every rank
    assert D.run_on_main(lambda: np.arange(3) + 10 * D.rank()).tolist() == [0, 1, 2]

    def fail_on_main() -> None:
        if D.rank() == 0:
            raise FileExistsError("metrics.jsonl exists")

    with pytest.raises(FileExistsError, match="metrics.jsonl exists"):
        D.run_on_main(fail_on_main)

    def unpicklable() -> None:
        raise _Unpicklable("odd")

    with pytest.raises(_Unpicklable if rank == 0 else RuntimeError, match="odd"):
        D.run_on_main(unpicklable)

    # run_on_all: the failed rank raises its error, the other RankError naming it
    def fail_on_1() -> int:
        if D.rank() == 1:
            raise ValueError("bad shard")
        return 3

    with pytest.raises(ValueError if rank == 1 else D.RankError, match="bad shard"):
        D.run_on_all(fail_on_1)
    assert D.run_on_all(lambda: D.rank()) == rank
    D.barrier()
    with open(os.path.join(out, f"ok{rank}"), "w") as f:  # proof that each rank got to the end
        f.write("ok")


@gloo
def test_collectives_on_two_gloo_processes(tmp_path):
    run_ranks(_collectives, str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["ok0", "ok1"]
